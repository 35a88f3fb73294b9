"""The collector is SIGKILLed and restarted while an app keeps making calls.

What is lost and what is not:

- Totals are not lost. The SDK's counters are cumulative: every export carries the totals since
  the app started, so the app's first export to the restarted collector supersedes whatever the
  killed one held (or never got), and Prometheus' final ``sum(llm_cost_USD_total)`` is the full
  total, exactly.
- Exports made while the collector is down are retried by the OTLP/HTTP exporter (the Python
  SDK's, 1.45): connection refused is retryable, with backoff of about 1, 2, 4 s (+-20 %) within
  ``OTEL_EXPORTER_OTLP_TIMEOUT`` (10 s by default), i.e. attempts at about 0, 1, 3 and 7 s. An
  outage shorter than about 5 s therefore loses no export; after that the batch is dropped (for
  metrics the next cumulative export makes up for it, for spans it is gone). Meanwhile the
  reader and span processor threads wait; nothing blocks the app's calls.
- Resolution is lost: Prometheus' scrapes fail during the outage (``up == 0``), and the
  restarted collector shows nothing until the app's next export, so the series have a gap and
  the first sample after it is one step up from the last before: ``increase()``/``rate()`` over
  the gap show the whole outage's spend at once.
- Spans that the killed collector had accepted but not yet exported (its batch processor holds
  them up to 1 s) are lost with it: the app got its 200 and does not send them again.
"""

from __future__ import annotations

import itertools
import time

from tests.e2e import plan
from tests.e2e.conftest import wait_until

ROUNDS = 2  # 18 calls
PAUSE = 0.5  # seconds after each call: about 9 s of calls
OUTAGE_CALLS = 5  # calls the app makes while the collector is down: about 2.5 s


def test_collector_restart_keeps_exact_totals(
    fake_openai, start_collector, start_prometheus, run_workload
):
    used = plan.scripts(ROUNDS)
    server = fake_openai(used)
    collector = start_collector()
    prometheus = start_prometheus([collector])
    started = time.time()
    app = run_workload(
        "e2e-restart",
        server,
        collector,
        WORKLOAD_ROUNDS=str(ROUNDS),
        WORKLOAD_PAUSE=str(PAUSE),
    )

    # Kill the collector once data has gone all the way through it to Prometheus.
    prometheus.wait_for("sum(llm_requests_total)", lambda v: v is not None and v >= 1, 60)
    calls_at_kill = len(server.exchanges)
    collector.kill()
    killed = time.monotonic()
    # The app goes on while the collector is down.
    wait_until(
        lambda: len(server.exchanges) >= calls_at_kill + OUTAGE_CALLS,
        30,
        "calls during the outage",
    )
    calls_at_restart = len(server.exchanges)
    collector.start()
    outage = time.monotonic() - killed
    assert calls_at_restart < len(used), "the app must make calls after the restart too"

    app.wait_exit(90)
    exp = plan.expected(server.exchanges, used)
    # The whole point: exact totals despite the outage.
    plan.assert_totals(prometheus, exp)

    # What the outage did cost (printed with -s; the asserts are what must hold).
    window = f"{int(time.time() - started) + 5}s"
    up = prometheus.query(f'up{{job="otel-collector"}}[{window}]')
    assert isinstance(up, list) and up
    failed_scrapes = sum(1 for _, value in up[0]["values"] if value == 0)
    assert failed_scrapes >= 1, "Prometheus saw the outage"
    samples = prometheus.query(f"sum(llm_requests_total)[{window}:1s]")
    assert isinstance(samples, list) and samples
    points = samples[0]["values"]
    gap, before, after = max((b[0] - a[0], a[1], b[1]) for a, b in itertools.pairwise(points))
    assert gap > 1.5 and after > before, "a gap in the series, and a step over it"

    # Spans: everything that ended after the kill was retried to the restarted collector;
    # only what the killed one held in its batch processor can be missing.
    wait_until(
        lambda: collector.spans_exported(1) >= exp.calls - calls_at_kill,
        15,
        "the spans of the calls made after the kill",
    )
    time.sleep(1.5)  # the batch processor's 1 s timeout: nothing more is on its way
    first, second = collector.spans_exported(0), collector.spans_exported(1)
    assert first + second <= exp.calls
    stderr = app.proc.log.read_text(errors="replace")
    print(
        f"\nrestart: {exp.calls} calls, {calls_at_kill} before the kill, "
        f"{calls_at_restart - calls_at_kill} during the {outage:.1f} s outage; "
        f"{failed_scrapes} failed scrape(s); largest gap in sum(llm_requests_total): "
        f"{gap:.0f} s, {before:.0f} -> {after:.0f}; spans logged by the collector: "
        f"{first} before the kill + {second} after = {first + second}/{exp.calls}; "
        f"app exporter retries: {stderr.count('Transient error')}, "
        f"exports given up: {stderr.count('Failed to export')}; "
        f"final cost {exp.cost:.9f} USD, exact"
    )
