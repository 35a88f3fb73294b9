"""Where the instructions otel_llm_cost adds to a non-streamed call go: the histogram records,
the span, and the rest (our own code: attribution, the call record, pricing, counters' sums).

Run from the repository root, with ``valgrind`` on ``PATH``::

    python bench/call_breakdown.py                              # openai, sync call
    python bench/call_breakdown.py --providers openai,anthropic,google-genai,google-generativeai

Same calls, fake transports, OpenTelemetry set-up and callgrind method as ``overhead.py``
(``(Ir of 2K calls - Ir of K calls) / K`` after a warm-up, ``PYTHONHASHSEED=0``), one child per
variant, all of a provider's children side by side:

- ``base``: uninstrumented;
- ``ours``: ``otel_llm_cost.instrument()``;
- ``no histograms``: the same, with the ``record`` method of our four histogram instruments
  replaced by a function that does nothing;
- ``no histograms, no span``: and our tracer replaced by OpenTelemetry's no-op tracer.

The differences between the rows are what the histogram records and the span cost. The two
stripped variants are diagnostics only: they record less than the contract asks. For anthropic
the rest is negative: instrumented, the SDK's own span is switched off (ours replaces it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import providers
from harness.child import MARKER_SYMBOL, ROOT, Runner, Telemetry, forbid_network
from harness.measure import _dump_totals, child_env

HERE = Path(__file__).resolve()
VARIANTS = {
    "base": "uninstrumented",
    "ours": "instrumented",
    "no_histograms": "instrumented, histogram records made no-ops",
    "no_histograms_no_span": "instrumented, no histogram records and a no-op tracer",
}
K = 20
WARMUP = 30


def _strip(variant: str) -> None:
    """Instrument, then take out what ``variant`` leaves out (diagnostics only)."""
    from opentelemetry.trace import NoOpTracer

    import otel_llm_cost
    from otel_llm_cost.instrumentor import shared_recorder

    otel_llm_cost.instrument()
    recorder = shared_recorder()
    if variant.startswith("no_histograms"):
        for histogram in (
            recorder.duration,
            recorder.token_usage,
            recorder.request_cost,
            recorder.time_to_first_chunk,
        ):
            histogram.record = lambda *_args, **_kwargs: None
    if variant.endswith("no_span"):
        recorder.tracer = NoOpTracer()


def child(provider_name: str, variant: str) -> None:
    """Warm-up, marker, K calls, marker, 2K calls, marker: each marker dumps under callgrind."""
    import gc

    sys.path.insert(0, str(ROOT))
    forbid_network()
    provider = providers.get(provider_name)
    provider.import_sdk()
    scenario = next(s for s in provider.scenarios((1,), ("sync",)) if s.chunks is None)
    runner = Runner(provider, scenario)
    telemetry = Telemetry()
    if variant != "base":
        _strip(variant)
    call = runner.call
    for _ in range(WARMUP):
        call()
    marker = os.getpgrp
    for calls in (K, 2 * K):
        telemetry.exporter.clear()
        gc.collect()
        marker()
        for _ in range(calls):
            call()
    spans = len(telemetry.exporter.get_finished_spans())
    telemetry.exporter.clear()
    gc.collect()
    marker()
    # What the variant recorded (the last segment's spans, every metric): checked by the tests.
    print("RESULT " + json.dumps({"spans": spans, "metrics": sorted(telemetry.metric_names())}))


def _run(provider: str, variant: str, out_dir: Path) -> float:
    """Ir per call of one variant."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{variant}-", dir=out_dir))
    cmd = [
        "valgrind",
        "--tool=callgrind",
        f"--dump-before={MARKER_SYMBOL}",
        "--dump-line=no",
        f"--callgrind-out-file={run_dir / 'callgrind.out'}",
        sys.executable,
        str(HERE),
        "--child",
        json.dumps([provider, variant]),
    ]
    env = child_env("base")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{provider}/{variant} failed ({proc.returncode})")
    totals = _dump_totals(run_dir, "callgrind.out")
    if len(totals) != 4:
        raise SystemExit(f"{provider}/{variant}: {len(totals)} callgrind dumps, expected 4")
    return (totals[2] - totals[1]) / K


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--providers", default="openai", help="comma-separated")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*json.loads(args.child))
        return
    for name in args.providers.split(","):
        providers.get(name)  # an unknown name fails here
        with tempfile.TemporaryDirectory(prefix="breakdown-") as tmp, ThreadPoolExecutor(2) as pool:
            futures = {v: pool.submit(_run, name, v, Path(tmp)) for v in VARIANTS}
            ir = {v: f.result() for v, f in futures.items()}
        print_breakdown(name, ir)


def print_breakdown(name: str, ir: dict[str, float]) -> None:
    base = ir["base"]
    print(f"{name}: sync non-streamed call, instructions per call (callgrind Ir, K={K})")
    for variant, label in VARIANTS.items():
        added = ir[variant] - base
        extra = f"   {added / 1e3:+9,.1f} k ({100 * added / base:+.2f}%)" if added else ""
        print(f"  {label:55} {ir[variant] / 1e3:9,.1f} k{extra}")
    parts = {
        "histogram records (ours - no histograms)": ir["ours"] - ir["no_histograms"],
        "span (no histograms - no histograms, no span)": ir["no_histograms"]
        - ir["no_histograms_no_span"],
        "the rest (no histograms, no span - uninstrumented)": ir["no_histograms_no_span"] - base,
    }
    for label, value in parts.items():
        print(f"  {label:55} {value / 1e3:9,.1f} k ({100 * value / base:.2f}%)")


if __name__ == "__main__":
    main()
