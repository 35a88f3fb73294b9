"""The measured child processes: one provider SDK, one mode (baseline, ours or a peer).

A child is started as ``python <entry script> --child '<json config>'`` and answers on stdout
with ``RESULT <json>`` lines. Kinds of child (``task``):

- ``time``: start-up and memory figures, then timed blocks on the parent's command (stdin);
- ``callgrind``: under valgrind, each scenario as warm-up, marker, K calls, marker, 2K calls;
- ``profile``: cProfile of the sync call and the largest sync stream.

Every child checks that it measures what it claims (see :func:`check_call`) and refuses any
network connection (see :func:`forbid_network`).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import resource
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import instrumentations, providers, wire
from .instrumentations import Mode
from .providers import Provider, Scenario

ROOT = Path(__file__).resolve().parents[2]

#: Metrics our instrumentation must have recorded by the end of a child.
OUR_METRICS = frozenset({"llm.cost", "llm.tokens", "llm.requests"})

_NETWORK_ATTEMPTS: list[str] = []


def forbid_network() -> None:
    """Make every connection attempt (and name lookup) fail, and remember it: the checks fail
    the child if anything tried. Nothing in the measured paths connects (the transports are
    in-process), so this costs nothing there."""

    def refuse(what: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            _NETWORK_ATTEMPTS.append(f"{what}{args[1:2] or args[:1]}")
            raise OSError(f"benchmark child: network access refused ({what})")

        return refused

    socket.socket.connect = refuse("connect")  # type: ignore[method-assign]
    socket.socket.connect_ex = refuse("connect_ex")  # type: ignore[method-assign]
    socket.getaddrinfo = refuse("getaddrinfo")
    socket.create_connection = refuse("create_connection")


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Telemetry:
    """The OpenTelemetry SDK set-up every mode shares (global providers, in-memory export)."""

    def __init__(self) -> None:
        from opentelemetry import metrics, trace
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.reader = InMemoryMetricReader()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        trace.set_tracer_provider(tracer_provider)
        metrics.set_meter_provider(MeterProvider(metric_readers=[self.reader]))

    def metric_names(self) -> set[str]:
        data = self.reader.get_metrics_data()
        names: set[str] = set()
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                names.update(metric.name for metric in sm.metrics)
        return names


class Runner:
    """One scenario: its client (with its own canned transport) and its call."""

    def __init__(self, provider: Provider, scenario: Scenario) -> None:
        self.provider = provider
        self.scenario = scenario
        self.call: Callable[[], Any] = provider.make_call(scenario)

    async def once(self) -> int:
        if self.scenario.is_async:
            return await self.call()
        return self.call()

    async def block_ns(self, calls: int) -> tuple[int, int]:
        """Wall-clock and CPU (this thread) nanoseconds of ``calls`` back-to-back calls."""
        fn = self.call
        if self.scenario.is_async:
            cpu = time.thread_time_ns()
            start = time.perf_counter_ns()
            for _ in range(calls):
                await fn()
            wall = time.perf_counter_ns() - start
            return wall, time.thread_time_ns() - cpu
        cpu = time.thread_time_ns()
        start = time.perf_counter_ns()
        for _ in range(calls):
            fn()
        wall = time.perf_counter_ns() - start
        return wall, time.thread_time_ns() - cpu


def _strings(span: Any) -> list[str]:
    """Every string a span carries (attributes, event attributes)."""
    out = [v for v in (span.attributes or {}).values() if isinstance(v, str)]
    for event in span.events or ():
        out.extend(v for v in (event.attributes or {}).values() if isinstance(v, str))
    return out


def check_call(runner: Runner, seen: int, telemetry: Telemetry, mode: Mode) -> None:
    """Fail loudly if the benchmark is not measuring what it claims to (after one call)."""
    provider, scenario = runner.provider, runner.scenario
    where = f"{provider.name} {scenario.key} ({mode.name})"
    if scenario.chunks is not None and seen != provider.expected_seen(scenario.chunks):
        raise AssertionError(
            f"{where}: the caller saw {seen} chunks, expected "
            f"{provider.expected_seen(scenario.chunks)}"
        )
    spans = telemetry.exporter.get_finished_spans()
    if mode.load is None:
        foreign = [s for s in spans if s.instrumentation_scope.name not in provider.baseline_scopes]
        if foreign:
            raise AssertionError(f"{where}: spans recorded without instrumentation: {foreign}")
        return
    mine = [s for s in spans if s.instrumentation_scope.name in mode.scopes]
    if len(mine) != 1:
        scopes = sorted({s.instrumentation_scope.name for s in spans})
        raise AssertionError(
            f"{where}: {len(mine)} spans of {sorted(mode.scopes)} (scopes: {scopes})"
        )
    span = mine[0]
    leaked = [s for s in _strings(span) if wire.PROMPT_MARKER in s]
    if leaked:
        raise AssertionError(f"{where}: message content captured on the span: {leaked[0][:120]}")
    attrs = span.attributes or {}
    if attrs.get("gen_ai.request.model") != provider.request_model:
        raise AssertionError(f"{where}: gen_ai.request.model missing or wrong: {dict(attrs)}")
    if mode.ours and mode.env.get("OTEL_LLM_COST_STREAM_USAGE") != "false":
        expected = provider.expected_span()
        wrong = {k: attrs.get(k) for k, v in expected.items() if attrs.get(k) != v}
        if wrong or not attrs.get("llm.cost.usd"):
            raise AssertionError(f"{where}: unexpected span attributes {wrong or dict(attrs)}")
    elif scenario.chunks is None and wire.PROMPT_TOKENS not in attrs.values():
        # Every peer records the usage of a non-streamed call (input tokens, cached included).
        raise AssertionError(f"{where}: no input token count on the span: {dict(attrs)}")


def check_finish(mode: Mode, telemetry: Telemetry) -> list[str]:
    """The metrics at the end of a child; fails if they are not what the mode records."""
    names = telemetry.metric_names()
    if _NETWORK_ATTEMPTS:
        raise AssertionError(f"{mode.name}: network access attempted: {_NETWORK_ATTEMPTS[:5]}")
    if mode.load is None:
        if any(name.startswith(("llm.", "gen_ai.")) for name in names):
            raise AssertionError(f"baseline, but metrics were recorded: {sorted(names)}")
    elif mode.ours:
        if not names >= OUR_METRICS:
            raise AssertionError(f"instrumented, but metrics are missing: {sorted(names)}")
    elif not names:
        raise AssertionError(f"{mode.name}: no metric recorded")
    return sorted(names)


def setup(mode: Mode) -> tuple[Telemetry, dict[str, Any]]:
    """The shared OpenTelemetry set-up, then the mode's import and instrument(), timed."""
    telemetry = Telemetry()
    info: dict[str, Any] = {}
    if mode.load is not None:
        before = set(sys.modules)
        start = time.perf_counter_ns()
        instrument = mode.load()
        imported = time.perf_counter_ns()
        instrument()
        done = time.perf_counter_ns()
        added: dict[str, int] = {}
        for name in set(sys.modules) - before:
            top = name.partition(".")[0]
            added[top] = added.get(top, 0) + 1
        info["import_ms"] = (imported - start) / 1e6
        info["instrument_ms"] = (done - imported) / 1e6
        info["modules_imported"] = dict(sorted(added.items(), key=lambda kv: -kv[1]))
    info["versions"] = installed_versions(
        ["openai", "opentelemetry-sdk", "opentelemetry-instrumentation", *mode.distributions]
    )
    return telemetry, info


def installed_versions(distributions: list[str]) -> dict[str, str | None]:
    from importlib import metadata

    out: dict[str, str | None] = {}
    for dist in distributions:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    return out


def reply(payload: dict[str, Any]) -> None:
    sys.stdout.write("RESULT " + json.dumps(payload) + "\n")
    sys.stdout.flush()


def _context(cfg: dict[str, Any]) -> tuple[Provider, Mode, list[Scenario]]:
    provider = providers.get(cfg["provider"])
    scenarios = provider.scenarios(tuple(cfg["sizes"]), tuple(cfg["kinds"]))
    if cfg.get("only"):
        scenarios = [s for s in scenarios if s.key in cfg["only"]]
    return provider, instrumentations.get(cfg["mode"]), scenarios


async def time_child(cfg: dict[str, Any]) -> None:
    """A timing child: start-up and memory figures first, then blocks on the parent's command.

    The parent keeps one child per mode alive side by side and asks them for blocks in turn
    (the others wait on their stdin), so each baseline block has partners measured a few
    milliseconds away, under the same machine load.
    """
    provider, mode, scenarios = _context(cfg)
    provider.import_sdk()  # imported before the baseline RSS, in every mode
    runners = {s.key: Runner(provider, s) for s in scenarios}
    gc.collect()
    rss0 = rss_kib()
    telemetry, startup = setup(mode)
    rss1 = rss_kib()

    # First call in this process (SDK lazy set-up; instrumented: e.g. the pricer built from the
    # catalog), then enough calls to reach cfg["memory_calls"]; memory read with the span
    # buffer emptied.
    first = runners[scenarios[0].key]
    start = time.perf_counter_ns()
    await first.once()
    startup["first_call_ms"] = (time.perf_counter_ns() - start) / 1e6
    start = time.perf_counter_ns()
    await first.once()
    startup["second_call_ms"] = (time.perf_counter_ns() - start) / 1e6
    for _ in range(cfg["memory_calls"] - 2):
        await first.once()
    telemetry.exporter.clear()
    gc.collect()
    rss2 = rss_kib()
    startup.update(
        rss_before_kib=rss0,
        rss_after_instrument_kib=rss1,
        rss_after_calls_kib=rss2,
        maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    reply({"mode": mode.name, "startup": startup})

    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "warmup":
            # Warm-up, a check that each scenario does what it claims, a per-call estimate.
            estimates = {}
            for key, runner in runners.items():
                telemetry.exporter.clear()
                seen = await runner.once()
                check_call(runner, seen, telemetry, mode)
                deadline = time.perf_counter_ns() + int(cfg["warmup_s"] * 1e9)
                done = 1
                while done < cfg["warmup_calls"] and time.perf_counter_ns() < deadline:
                    await runner.once()
                    done += 1
                probe = max(1, min(done // 4, 20))
                estimates[key] = (await runner.block_ns(probe))[0] / probe
                telemetry.exporter.clear()
            reply({"per_call_ns": estimates})
        elif op == "block":
            wall, cpu = await runners[command["key"]].block_ns(command["calls"])
            telemetry.exporter.clear()
            reply({"wall": wall, "cpu": cpu})
        elif op == "finish":
            reply({"metrics": check_finish(mode, telemetry)})
            return


#: The marker whose C function (``os_getpgrp``) triggers a callgrind dump between segments.
MARKER_SYMBOL = "os_getpgrp"


def callgrind_scenarios(provider: Provider, cfg: dict[str, Any]) -> list[Scenario]:
    """Under callgrind: the calls, and streams of the smallest and the largest size only."""
    sizes = tuple(cfg["sizes"])
    return provider.scenarios((min(sizes), max(sizes)), tuple(cfg["kinds"]))


def callgrind_counts(cfg: dict[str, Any], scenario: Scenario) -> tuple[int, int]:
    """(K, warm-up calls) of a scenario under callgrind: fewer for streams of 100 chunks or more."""
    if scenario.chunks is not None and scenario.chunks >= 100:
        return cfg["k_big"], cfg["warmup_big"]
    return cfg["k"], cfg["warmup"]


async def callgrind_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Runs each scenario as: warm-up, marker, K calls, marker, 2K calls, marker.

    Under ``valgrind --tool=callgrind --dump-before=os_getpgrp`` every marker dumps (and zeroes)
    the counters, so each segment's instruction count lands in its own file.
    """
    provider, mode, _ = _context(cfg)
    only = set(cfg["only"]) if cfg.get("only") else None
    chosen = [s for s in callgrind_scenarios(provider, cfg) if only is None or s.key in only]
    provider.import_sdk()
    runners = [Runner(provider, s) for s in chosen]
    telemetry, _ = setup(mode)
    marker = os.getpgrp
    for runner in runners:
        key = runner.scenario.key
        k, warmup = callgrind_counts(cfg, runner.scenario)
        telemetry.exporter.clear()
        seen = await runner.once()
        check_call(runner, seen, telemetry, mode)
        for _ in range(warmup):
            await runner.once()
        for calls in cfg.get("counts_override", {}).get(key, (k, 2 * k)):
            telemetry.exporter.clear()
            gc.collect()
            marker()
            for _ in range(calls):
                await runner.once()
        telemetry.exporter.clear()
        gc.collect()
        marker()
    check_finish(mode, telemetry)
    return {"mode": mode.name, "keys": [r.scenario.key for r in runners]}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" else tail
    return path


async def profile_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """cProfile of the sync call and the largest sync stream, every function's calls and times
    per operation. The parent runs this in two modes and subtracts."""
    import cProfile
    import pstats

    provider, mode, scenarios = _context(cfg)
    provider.import_sdk()
    sync = [s for s in scenarios if not s.is_async]
    runners = [Runner(provider, sync[0]), Runner(provider, sync[-1])]
    setup(mode)
    report: dict[str, Any] = {}
    for name, runner, calls in (
        ("call", runners[0], cfg["profile_calls"]),
        ("stream", runners[1], cfg["profile_streams"]),
    ):
        for _ in range(max(3, calls // 5)):
            await runner.once()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            await runner.once()
        profiler.disable()
        stats = pstats.Stats(profiler)
        functions = {}
        for (path, line, func), (_cc, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
            key = f"{_short(path)}:{line}({func})" if line else func
            functions[key] = (ncalls / calls, tottime / calls * 1e6, cumtime / calls * 1e6)
        report[name] = functions
    report["stream_label"] = sync[-1].label
    return report


def child_main(cfg: dict[str, Any]) -> None:
    """The entry point of every child (``--child``)."""
    sys.path.insert(0, str(ROOT))
    forbid_network()
    if cfg["task"] == "time":
        asyncio.run(time_child(cfg))
        return
    task = {"callgrind": callgrind_child, "profile": profile_child}
    reply(asyncio.run(task[cfg["task"]](cfg)))
