"""What the instrumentation adds to an openai call: wall clock, instructions, start-up, memory.

Run from the repository root::

    python bench/overhead.py               # wall clock, start-up, memory (about 4 minutes)
    python bench/overhead.py --callgrind   # and instructions per call under valgrind (+~10 min)
    python bench/overhead.py --quick       # tiny sizes, a few seconds (the CI smoke test)
    python bench/overhead.py --profile     # cProfile of the instrumented per-call path
    python bench/overhead.py --json out.json

The real openai SDK talks to an in-process fake (``httpx2.MockTransport``) that answers canned,
pre-serialized bytes: a ``chat.completion`` with usage (cached and reasoning tokens), and SSE
streams of ``chat.completion.chunk``. No socket is opened.

Every measurement runs in a fresh child process with the same OpenTelemetry SDK set-up (a
global TracerProvider with SimpleSpanProcessor(InMemorySpanExporter), a global MeterProvider
with an InMemoryMetricReader); the instrumented child calls ``otel_llm_cost.instrument()`` after
that set-up, the baseline child does not. The parent keeps one child of each kind alive per
round and asks them for timed blocks in turn (block pairs), and reports medians. See
bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
HERE = Path(__file__).resolve()

CLOCKS = ("wall", "cpu")
BASE = "base"
INSTR = "instr"
#: Start-up only: the openai instrumentor alone, not every installed SDK's.
OPENAI_ONLY = "openai_only"
MODES = (BASE, INSTR)

# -- the canned exchange -----------------------------------------------------------------------

REQUEST_MODEL = "o4-mini"
RESPONSE_MODEL = "o4-mini-2025-04-16"
PROMPT_TOKENS = 1480
CACHED_TOKENS = 1024
REASONING_TOKENS = 192
ANSWER_TOKENS = 320
MESSAGES = [
    {"role": "system", "content": "You are a concise assistant for a billing dashboard."},
    {
        "role": "user",
        "content": "Summarize why the March invoice is 14% higher than February's, "
        "in three bullet points, citing the line items that changed.",
    },
]
_WORDS = (
    " The", " March", " invoice", " grew", " because", " output", " tokens", " rose",
    ",", " mostly", " from", " the", " support", " agent", "'s", " longer", " answers", ".",
)  # fmt: skip
_CREATED = 1_763_726_400
_ID = "chatcmpl-BENCHb6y1ZkQx9MzL3vTqRWn4pHaEo"

#: The marker whose C function (``os_getpgrp``) triggers a callgrind dump between segments.
_MARKER_SYMBOL = "os_getpgrp"


def _compact(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _usage(completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": REASONING_TOKENS,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_body() -> bytes:
    """A non-streamed ``chat.completion`` as OpenAI sends it (compact JSON)."""
    text = "".join(_WORDS[i % len(_WORDS)] for i in range(ANSWER_TOKENS)).strip()
    return _compact(
        {
            "id": _ID,
            "object": "chat.completion",
            "created": _CREATED,
            "model": RESPONSE_MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": text,
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(ANSWER_TOKENS + REASONING_TOKENS),
            "service_tier": "default",
            "system_fingerprint": None,
        }
    )


def stream_events(chunks: int, include_usage: bool) -> list[bytes]:
    """SSE events of a chat stream with ``chunks`` content chunks, one bytes object per event.

    Layout as OpenAI sends it: a role chunk, the content chunks, a ``finish_reason`` chunk, and,
    when the request asked for ``stream_options.include_usage``, ``"usage":null`` on every chunk
    plus a final usage-only chunk (``choices: []``); then ``[DONE]``.
    """
    head = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": _CREATED,
        "model": RESPONSE_MODEL,
        "service_tier": "default",
        "system_fingerprint": None,
    }

    def event(choices: list[Any], usage: Any = None, last: bool = False) -> bytes:
        payload = dict(head, choices=choices)
        if include_usage:
            payload["usage"] = usage
        return b"data: " + _compact(payload) + b"\n\n"

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [event([choice({"role": "assistant", "content": "", "refusal": None})])]
    events.extend(event([choice({"content": _WORDS[i % len(_WORDS)]})]) for i in range(chunks))
    events.append(event([choice({}, "stop")]))
    if include_usage:
        events.append(event([], _usage(chunks + REASONING_TOKENS)))
    events.append(b"data: [DONE]\n\n")
    return events


def _http() -> Any:
    """The HTTP library the installed openai SDK takes clients of: ``httpx2`` (openai 3), else
    ``httpx`` (older openai releases, which the package also supports)."""
    try:
        import httpx2
    except ImportError:
        import httpx

        return httpx
    return httpx2


def _make_transport(chunks: int | None) -> Any:
    """An ``httpx2.MockTransport`` answering every request with pre-built bytes.

    ``chunks=None``: the non-streamed completion. Otherwise a stream of ``chunks`` content
    chunks, with usage when the request body asks for it (the SDK sends compact JSON).
    """
    httpx2 = _http()

    class Body(httpx2.SyncByteStream, httpx2.AsyncByteStream):
        """The response body, delivered one pre-built part (one SSE event) per read."""

        __slots__ = ("parts",)

        def __init__(self, parts: list[bytes]) -> None:
            self.parts = parts

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.parts)

        async def __aiter__(self) -> Any:
            for part in self.parts:
                yield part

    common = [("x-request-id", "req_bench0000000000000000000000"), ("openai-processing-ms", "412")]
    if chunks is None:
        body = [completion_body()]
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body[0]))),
            *common,
        ]

        def answer(request: Any) -> Any:
            return httpx2.Response(200, headers=headers, stream=Body(body), request=request)

        return httpx2.MockTransport(answer)

    plain = stream_events(chunks, include_usage=False)
    with_usage = stream_events(chunks, include_usage=True)
    sse_headers = [("content-type", "text/event-stream; charset=utf-8"), *common]

    def answer_stream(request: Any) -> Any:
        content = request.content
        if b'"stream":true' not in content:
            raise AssertionError(f"expected a streamed request, got {content[:200]!r}")
        parts = with_usage if b'"include_usage":true' in content else plain
        return httpx2.Response(200, headers=sse_headers, stream=Body(parts), request=request)

    return httpx2.MockTransport(answer_stream)


# -- scenarios ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    key: str
    is_async: bool
    chunks: int | None  # None: not streamed

    @property
    def label(self) -> str:
        kind = "async" if self.is_async else "sync"
        if self.chunks is None:
            return f"{kind} call"
        return f"{kind} stream N={self.chunks}"


def scenarios(sizes: tuple[int, ...]) -> list[Scenario]:
    out = [Scenario("sync_call", False, None), Scenario("async_call", True, None)]
    for is_async in (False, True):
        prefix = "async" if is_async else "sync"
        out.extend(Scenario(f"{prefix}_stream_{n}", is_async, n) for n in sizes)
    return out


# -- child side ---------------------------------------------------------------------------------


def _rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Telemetry:
    """The OpenTelemetry SDK set-up both modes share (global providers, in-memory export)."""

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
    """One openai client per scenario (each with its own canned transport) and its call."""

    def __init__(self, scenario: Scenario) -> None:
        import openai

        httpx2 = _http()
        self.scenario = scenario
        transport = _make_transport(scenario.chunks)
        common = {"api_key": "k", "base_url": "http://127.0.0.1/v1", "max_retries": 0}
        if scenario.is_async:
            self.client: Any = openai.AsyncOpenAI(
                http_client=httpx2.AsyncClient(transport=transport), **common
            )
        else:
            self.client = openai.OpenAI(http_client=httpx2.Client(transport=transport), **common)
        self.kwargs: dict[str, Any] = {"model": REQUEST_MODEL, "messages": MESSAGES}
        if scenario.chunks is not None:
            self.kwargs["stream"] = True
        self.call: Callable[[], Any] = self._pick()

    def _pick(self) -> Callable[[], Any]:
        # The method is looked up on every call, as applications do: a bound method taken
        # before instrument() would bypass the wrapper.
        client = self.client
        kwargs = self.kwargs
        if self.scenario.chunks is None:
            if self.scenario.is_async:

                async def acall() -> int:
                    response = await client.chat.completions.create(**kwargs)
                    return len(response.choices[0].message.content)

                return acall

            def call() -> int:
                response = client.chat.completions.create(**kwargs)
                return len(response.choices[0].message.content)

            return call

        if self.scenario.is_async:

            async def astream() -> int:
                seen = 0
                async for chunk in await client.chat.completions.create(**kwargs):
                    if chunk.choices:
                        chunk.choices[0].delta.content  # noqa: B018 - what a consumer reads
                    seen += 1
                return seen

            return astream

        def stream() -> int:
            seen = 0
            for chunk in client.chat.completions.create(**kwargs):
                if chunk.choices:
                    chunk.choices[0].delta.content  # noqa: B018 - what a consumer reads
                seen += 1
            return seen

        return stream

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


def _check(runner: Runner, seen: int, telemetry: Telemetry, mode: str) -> None:
    """Fail loudly if the benchmark is not measuring what it claims to."""
    scenario = runner.scenario
    if scenario.chunks is not None and seen != scenario.chunks + 2:
        raise AssertionError(
            f"{scenario.key}: the caller saw {seen} chunks, expected {scenario.chunks + 2} "
            "(role + content + finish; the usage chunk must stay hidden)"
        )
    spans = telemetry.exporter.get_finished_spans()
    if mode == BASE:
        if spans:
            raise AssertionError(f"{scenario.key}: spans recorded without instrumentation")
        return
    if not spans:
        raise AssertionError(f"{scenario.key}: instrumented, but no span was recorded")
    attrs = spans[-1].attributes or {}
    expected = {
        "gen_ai.request.model": REQUEST_MODEL,
        "gen_ai.response.model": RESPONSE_MODEL,
        "gen_ai.usage.input_tokens": PROMPT_TOKENS,
        "gen_ai.usage.cache_read.input_tokens": CACHED_TOKENS,
        "gen_ai.usage.reasoning.output_tokens": REASONING_TOKENS,
        "llm.usage.source": "provider",
        "llm.price.status": "catalog",
    }
    wrong = {k: attrs.get(k) for k, v in expected.items() if attrs.get(k) != v}
    if wrong or not attrs.get("llm.cost.usd"):
        raise AssertionError(f"{scenario.key}: unexpected span attributes {wrong or attrs}")


def _setup(mode: str) -> tuple[Telemetry, dict[str, Any]]:
    """Shared set-up, then (instrumented mode) ``otel_llm_cost.instrument()``, timed."""
    telemetry = Telemetry()
    info: dict[str, Any] = {}
    if mode != BASE:
        before = set(sys.modules)
        start = time.perf_counter_ns()
        import otel_llm_cost

        imported = time.perf_counter_ns()
        if mode == OPENAI_ONLY:
            from otel_llm_cost.providers.openai import OpenAIInstrumentor

            OpenAIInstrumentor().instrument()
        else:
            otel_llm_cost.instrument()
        done = time.perf_counter_ns()
        added: dict[str, int] = {}
        for name in set(sys.modules) - before:
            top = name.partition(".")[0]
            added[top] = added.get(top, 0) + 1
        info["import_ms"] = (imported - start) / 1e6
        info["instrument_ms"] = (done - imported) / 1e6
        info["modules_imported"] = dict(sorted(added.items(), key=lambda kv: -kv[1]))
    return telemetry, info


def _reply(payload: dict[str, Any]) -> None:
    sys.stdout.write("RESULT " + json.dumps(payload) + "\n")
    sys.stdout.flush()


async def _time_child(cfg: dict[str, Any]) -> None:
    """A timing child: start-up and memory figures first, then blocks on the parent's command.

    The parent keeps a baseline and an instrumented child alive side by side and asks them for
    blocks in turn (one waits on its stdin while the other runs), so each baseline block has an
    instrumented partner measured a few milliseconds away, under the same machine load.
    """
    mode = cfg["mode"]
    import openai  # noqa: F401 - imported before the baseline RSS, in both modes

    _http()

    runners = {s.key: Runner(s) for s in scenarios(tuple(cfg["sizes"]))}
    gc.collect()
    rss0 = _rss_kib()
    telemetry, startup = _setup(mode)
    rss1 = _rss_kib()

    # First call in this process (SDK lazy set-up; instrumented: pricer built from the catalog),
    # then enough calls to reach cfg["memory_calls"]; memory read with the span buffer emptied.
    first = runners["sync_call"]
    start = time.perf_counter_ns()
    first.call()
    startup["first_call_ms"] = (time.perf_counter_ns() - start) / 1e6
    start = time.perf_counter_ns()
    first.call()
    startup["second_call_ms"] = (time.perf_counter_ns() - start) / 1e6
    for _ in range(cfg["memory_calls"] - 2):
        first.call()
    spans = len(telemetry.exporter.get_finished_spans())
    if (mode == BASE and spans) or (mode != BASE and spans < cfg["memory_calls"]):
        raise AssertionError(
            f"{mode}: {spans} spans for {cfg['memory_calls']} calls (an internal error of the "
            "instrumentation is logged above)"
        )
    telemetry.exporter.clear()
    gc.collect()
    rss2 = _rss_kib()
    startup.update(
        rss_before_kib=rss0,
        rss_after_instrument_kib=rss1,
        rss_after_calls_kib=rss2,
        maxrss_kib=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    )
    _reply({"mode": mode, "startup": startup})
    if cfg.get("startup_only"):
        return

    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "warmup":
            # Warm-up, a check that each scenario does what it claims, a per-call estimate.
            estimates = {}
            for key, runner in runners.items():
                telemetry.exporter.clear()
                seen = await runner.once()
                _check(runner, seen, telemetry, mode)
                deadline = time.perf_counter_ns() + int(cfg["warmup_s"] * 1e9)
                done = 1
                while done < cfg["warmup_calls"] and time.perf_counter_ns() < deadline:
                    await runner.once()
                    done += 1
                probe = max(1, min(done // 4, 20))
                estimates[key] = (await runner.block_ns(probe))[0] / probe
                telemetry.exporter.clear()
            _reply({"per_call_ns": estimates})
        elif op == "block":
            wall, cpu = await runners[command["key"]].block_ns(command["calls"])
            telemetry.exporter.clear()
            _reply({"wall": wall, "cpu": cpu})
        elif op == "finish":
            names = telemetry.metric_names()
            if mode == INSTR and not {"llm.cost", "llm.tokens", "llm.requests"} <= names:
                raise AssertionError(f"instrumented, but metrics are missing: {sorted(names)}")
            _reply({})
            return


async def _callgrind_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """Runs each scenario as: warm-up, marker, K calls, marker, 2K calls, marker.

    Under ``valgrind --tool=callgrind --dump-before=os_getpgrp`` every marker dumps (and zeroes)
    the counters, so each segment's instruction count lands in its own file.
    """
    mode = cfg["mode"]
    only = set(cfg["only"]) if cfg.get("only") else None
    runners = [Runner(s) for s in _cg_scenarios(cfg) if only is None or s.key in only]
    telemetry, _ = _setup(mode)
    marker = os.getpgrp
    for runner in runners:
        key = runner.scenario.key
        k, warmup = _cg_counts(cfg, runner.scenario)
        seen = await runner.once()
        _check(runner, seen, telemetry, mode)
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
    return {"mode": mode, "keys": [r.scenario.key for r in runners]}


def _short(path: str) -> str:
    for marker in ("site-packages/", "/lib/python3", str(ROOT) + "/"):
        if marker in path:
            tail = path.split(marker, 1)[1]
            return tail.split("/", 1)[1] if marker == "/lib/python3" else tail
    return path


async def _profile_child(cfg: dict[str, Any]) -> dict[str, Any]:
    """cProfile of sync calls and streams, every function's calls and times per operation.

    The parent runs this in both modes and subtracts: what is left is the instrumentation's
    (its own code, and the OpenTelemetry SDK and stdlib work it causes).
    """
    import cProfile
    import pstats

    mode = cfg["mode"]
    runners = [Runner(s) for s in scenarios(tuple(cfg["sizes"])) if not s.is_async]
    _setup(mode)
    report: dict[str, Any] = {}
    for name, runner, calls in (
        ("call", runners[0], cfg["profile_calls"]),
        ("stream", runners[-1], cfg["profile_streams"]),
    ):
        for _ in range(max(3, calls // 5)):
            runner.call()
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            runner.call()
        profiler.disable()
        stats = pstats.Stats(profiler)
        functions = {}
        for (path, line, func), (_cc, ncalls, tottime, cumtime, _) in stats.stats.items():  # type: ignore[attr-defined]
            key = f"{_short(path)}:{line}({func})" if line else func
            functions[key] = (ncalls / calls, tottime / calls * 1e6, cumtime / calls * 1e6)
        report[name] = functions
    return report


def profile_diff(cfg: dict[str, Any]) -> dict[str, Any]:
    """Per function: instrumented minus baseline calls and own time per operation."""
    runs = {mode: _run_child({**cfg, "task": "profile", "mode": mode}) for mode in MODES}
    out: dict[str, Any] = {}
    for name in ("call", "stream"):
        base, inst = runs[BASE][name], runs[INSTR][name]
        rows = []
        for key in set(base) | set(inst):
            b = base.get(key, (0.0, 0.0, 0.0))
            i = inst.get(key, (0.0, 0.0, 0.0))
            rows.append(
                {
                    "function": key,
                    "calls_added": i[0] - b[0],
                    "own_us_added": i[1] - b[1],
                    "incl_us_instrumented": i[2],
                }
            )
        rows.sort(key=lambda r: -r["own_us_added"])
        # Functions called as often in both modes differ by noise between the two processes.
        added = [r for r in rows if abs(r["calls_added"]) >= 0.5]
        out[name] = {
            "total_own_us_added": sum(r["own_us_added"] for r in added),
            "top": added[: cfg["profile_top"]],
        }
    return out


def child_main(cfg: dict[str, Any]) -> None:
    sys.path.insert(0, str(ROOT))
    if cfg["task"] == "time":
        asyncio.run(_time_child(cfg))
        return
    task = {"callgrind": _callgrind_child, "profile": _profile_child}
    _reply(asyncio.run(task[cfg["task"]](cfg)))


# -- parent side --------------------------------------------------------------------------------


def _child_env() -> dict[str, str]:
    # Same defaults in both modes: no OTEL_* configuration leaks in from the caller's shell.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env["PYTHONHASHSEED"] = "0"
    env.pop("PYTHONDEVMODE", None)
    return env


def _run_child(cfg: dict[str, Any], prefix: tuple[str, ...] = ()) -> dict[str, Any]:
    cmd = [*prefix, sys.executable, str(HERE), "--child", json.dumps(cfg)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_child_env(), cwd=ROOT)
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-6000:])
        raise SystemExit(f"child {cfg['task']}/{cfg.get('mode')} failed ({proc.returncode})")
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    sys.stderr.write(proc.stdout[-3000:] + proc.stderr[-3000:])
    raise SystemExit(f"child {cfg['task']}/{cfg.get('mode')} printed no result")


def _med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


class Child:
    """A timing child the parent talks to: one JSON command per line, one result line back."""

    def __init__(self, cfg: dict[str, Any], mode: str) -> None:
        self.mode = mode
        self.stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            [sys.executable, str(HERE), "--child", json.dumps({**cfg, "mode": mode})],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.stderr,
            text=True,
            env=_child_env(),
            cwd=ROOT,
        )
        self.startup = self.read()["startup"]

    def read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("RESULT "):
                return json.loads(line[7:])
        self.proc.wait()
        self.stderr.seek(0)
        sys.stderr.write(self.stderr.read()[-6000:])
        raise SystemExit(f"timing child {self.mode} failed ({self.proc.returncode})")

    def ask(self, op: str, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps({"op": op, **args}) + "\n")
        self.proc.stdin.flush()
        return self.read()

    def close(self) -> None:
        self.ask("finish")
        self.proc.wait()
        self.stderr.close()


def _round(cfg: dict[str, Any], r: int) -> dict[str, Any]:
    """One round: a fresh baseline and a fresh instrumented child (started one after the
    other, so start-up figures do not compete), then paired blocks, alternating which goes
    first."""
    cfg = {**cfg, "task": "time"}
    order = MODES if r % 2 == 0 else MODES[::-1]
    children = {mode: Child(cfg, mode) for mode in order}
    try:
        estimates = {mode: children[mode].ask("warmup")["per_call_ns"] for mode in order}
        keys = list(estimates[BASE])
        # The same number of calls per block in both modes, sized on the baseline.
        calls = {k: max(1, round(cfg["block_ms"] * 1e6 / estimates[BASE][k])) for k in keys}
        samples: dict[str, dict[str, dict[str, list[float]]]] = {
            mode: {clock: {k: [] for k in keys} for clock in CLOCKS} for mode in MODES
        }
        for b in range(cfg["blocks"]):
            for k in keys:
                pair = order if b % 2 == 0 else order[::-1]
                for mode in pair:
                    result = children[mode].ask("block", key=k, calls=calls[k])
                    for clock in CLOCKS:
                        samples[mode][clock][k].append(result[clock] / calls[k])
    finally:
        for child in children.values():
            if child.proc.poll() is None:
                child.close()
    return {
        "calls_per_block": calls,
        "startup": {mode: children[mode].startup for mode in MODES},
        "samples_ns": samples,
    }


def measure_wall_clock(cfg: dict[str, Any], rounds: int, progress: bool) -> dict[str, Any]:
    rounds_data = []
    only_runs = []
    for r in range(rounds):
        if progress:
            print(f"  round {r + 1}/{rounds}", file=sys.stderr, flush=True)
        rounds_data.append(_round(cfg, r))
        only = {**cfg, "task": "time", "mode": OPENAI_ONLY, "startup_only": True}
        only_runs.append(_run_child(only))
    runs: dict[str, list[dict[str, Any]]] = {
        mode: [{"startup": rd["startup"][mode]} for rd in rounds_data] for mode in MODES
    }
    runs[OPENAI_ONLY] = only_runs

    sizes = tuple(cfg["sizes"])
    keys = [s.key for s in scenarios(sizes)]
    small, large = min(sizes), max(sizes)
    rows: dict[str, dict[str, Any]] = {key: {} for key in keys}
    per_chunk: dict[str, dict[str, Any]] = {"sync": {}, "async": {}}
    for clock in CLOCKS:
        # Per round: medians of the baseline blocks, of the instrumented blocks, and of the
        # block-pair differences; then the median over rounds.
        base: dict[str, list[float]] = {k: [] for k in keys}
        inst: dict[str, list[float]] = {k: [] for k in keys}
        over: dict[str, list[float]] = {k: [] for k in keys}
        for rd in rounds_data:
            b_s, i_s = rd["samples_ns"][BASE][clock], rd["samples_ns"][INSTR][clock]
            for k in keys:
                base[k].append(_med(b_s[k]))
                inst[k].append(_med(i_s[k]))
                over[k].append(_med([i - b for b, i in zip(b_s[k], i_s[k], strict=True)]))
        for k in keys:
            rows[k][clock] = {
                "baseline_us": _med(base[k]) / 1e3,
                "instrumented_us": _med(inst[k]) / 1e3,
                "overhead_us": _med(over[k]) / 1e3,
                "overhead_pct": 100 * _med(over[k]) / _med(base[k]),
                "rounds_overhead_us": [o / 1e3 for o in over[k]],
            }
        for kind in ("sync", "async"):
            k1, kn = f"{kind}_stream_{small}", f"{kind}_stream_{large}"
            chunk_base = [
                (bn - b1) / (large - small) for b1, bn in zip(base[k1], base[kn], strict=True)
            ]
            chunk_over = [
                (on - o1) / (large - small) for o1, on in zip(over[k1], over[kn], strict=True)
            ]
            per_chunk[kind][clock] = {
                "from": [small, large],
                "baseline_us": _med(chunk_base) / 1e3,
                "overhead_us": _med(chunk_over) / 1e3,
                "overhead_pct": 100 * _med(chunk_over) / _med(chunk_base),
                "rounds_overhead_us": [o / 1e3 for o in chunk_over],
            }

    def startup_med(mode: str, field: str) -> float:
        return _med([run["startup"][field] for run in runs[mode]])

    def rss_delta(mode: str, a: str, b: str) -> float:
        return _med([run["startup"][b] - run["startup"][a] for run in runs[mode]])

    startup = {
        "import_ms": startup_med(INSTR, "import_ms"),
        "instrument_ms": startup_med(INSTR, "instrument_ms"),
        "modules_imported_by_instrument": runs[INSTR][0]["startup"]["modules_imported"],
        "first_call_baseline_ms": startup_med(BASE, "first_call_ms"),
        "first_call_instrumented_ms": startup_med(INSTR, "first_call_ms"),
        "second_call_baseline_ms": startup_med(BASE, "second_call_ms"),
        "second_call_instrumented_ms": startup_med(INSTR, "second_call_ms"),
    }
    startup["first_call_added_ms"] = _med(
        [
            i["startup"]["first_call_ms"] - b["startup"]["first_call_ms"]
            for b, i in zip(runs[BASE], runs[INSTR], strict=True)
        ]
    )
    startup["instrument_and_first_call_added_ms"] = _med(
        [
            i["startup"]["instrument_ms"]
            + i["startup"]["import_ms"]
            + i["startup"]["first_call_ms"]
            - b["startup"]["first_call_ms"]
            for b, i in zip(runs[BASE], runs[INSTR], strict=True)
        ]
    )
    startup["openai_only_instrument_ms"] = startup_med(OPENAI_ONLY, "instrument_ms")
    startup["openai_only_first_call_ms"] = startup_med(OPENAI_ONLY, "first_call_ms")
    startup["modules_imported_by_openai_only"] = runs[OPENAI_ONLY][0]["startup"]["modules_imported"]
    memory = {
        "calls": cfg["memory_calls"],
        "rss_baseline_kib": startup_med(BASE, "rss_after_calls_kib"),
        "rss_instrumented_kib": startup_med(INSTR, "rss_after_calls_kib"),
        "instrument_kib": rss_delta(INSTR, "rss_before_kib", "rss_after_instrument_kib"),
        "calls_baseline_kib": rss_delta(BASE, "rss_after_instrument_kib", "rss_after_calls_kib"),
        "calls_instrumented_kib": rss_delta(
            INSTR, "rss_after_instrument_kib", "rss_after_calls_kib"
        ),
        "total_added_kib": rss_delta(INSTR, "rss_before_kib", "rss_after_calls_kib")
        - rss_delta(BASE, "rss_before_kib", "rss_after_calls_kib"),
        "maxrss_baseline_kib": startup_med(BASE, "maxrss_kib"),
        "maxrss_instrumented_kib": startup_med(INSTR, "maxrss_kib"),
        "openai_only_instrument_kib": rss_delta(
            OPENAI_ONLY, "rss_before_kib", "rss_after_instrument_kib"
        ),
        "openai_only_total_added_kib": rss_delta(
            OPENAI_ONLY, "rss_before_kib", "rss_after_calls_kib"
        )
        - rss_delta(BASE, "rss_before_kib", "rss_after_calls_kib"),
    }
    return {
        "rows": rows,
        "per_chunk": per_chunk,
        "startup": startup,
        "memory": memory,
        "rounds": rounds_data,
    }


def _dump_totals(out_dir: Path, stem: str) -> list[int]:
    """Instruction totals of each callgrind dump, in dump order (the final dump last)."""
    parts: list[tuple[int, int]] = []
    for path in out_dir.glob(stem + "*"):
        text = path.read_text(errors="replace")
        part = re.search(r"^part: (\d+)$", text, re.M)
        total = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if total is None:
            continue
        parts.append((int(part.group(1)) if part else 1, int(total.group(1))))
    return [total for _, total in sorted(parts)]


def _cg_scenarios(cfg: dict[str, Any]) -> list[Scenario]:
    """Under callgrind: the calls, and streams of the smallest and the largest size only."""
    return scenarios((min(cfg["sizes"]), max(cfg["sizes"])))


def _cg_counts(cfg: dict[str, Any], scenario: Scenario) -> tuple[int, int]:
    """(K, warm-up calls) of a scenario under callgrind: fewer for the long streams."""
    if scenario.chunks is not None and scenario.chunks > 100:
        return cfg["k_big"], cfg["warmup_big"]
    return cfg["k"], cfg["warmup"]


def _callgrind(cfg: dict[str, Any], mode: str, out_dir: Path) -> tuple[list[int], float]:
    """Run one callgrind child (its dumps in a directory of its own): (Ir per dump, seconds)."""
    run_dir = Path(tempfile.mkdtemp(prefix=f"{mode}-", dir=out_dir))
    prefix = (
        "valgrind",
        "--tool=callgrind",
        f"--dump-before={_MARKER_SYMBOL}",
        "--dump-line=no",
        f"--callgrind-out-file={run_dir / 'callgrind.out'}",
    )
    start = time.monotonic()
    _run_child({**cfg, "task": "callgrind", "mode": mode}, prefix)
    return _dump_totals(run_dir, "callgrind.out"), time.monotonic() - start


def measure_instructions(cfg: dict[str, Any], progress: bool) -> dict[str, Any]:
    """Instructions per call: (Ir of 2K calls - Ir of K calls) / K after a warm-up, so the
    start-up, the warm-up and the per-segment bookkeeping cancel out."""
    cg_scenarios = _cg_scenarios(cfg)
    keys = [s.key for s in cg_scenarios]
    k_of = {s.key: _cg_counts(cfg, s)[0] for s in cg_scenarios}
    per_call: dict[str, dict[str, float]] = {BASE: {}, INSTR: {}}
    seconds = 0.0
    with tempfile.TemporaryDirectory(prefix="overhead-cg-") as tmp:
        out_dir = Path(tmp)
        if progress:
            print("  callgrind: both modes in parallel...", file=sys.stderr, flush=True)
        # Instruction counts do not depend on load: the two modes run side by side.
        import concurrent.futures

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            futures = {mode: pool.submit(_callgrind, cfg, mode, out_dir) for mode in MODES}
            results = {mode: f.result() for mode, f in futures.items()}
        for mode, (totals, took) in results.items():
            seconds += took
            expected = 3 * len(keys) + 1
            if len(totals) == expected:
                for index, key in enumerate(keys):
                    k_ir, k2_ir = totals[3 * index + 1], totals[3 * index + 2]
                    per_call[mode][key] = (k2_ir - k_ir) / k_of[key]
                continue
            # No marker dumps (a stripped libpython): one process per scenario and count.
            if progress:
                print(
                    f"  callgrind: {_MARKER_SYMBOL} not found ({len(totals)} dumps), falling "
                    "back to whole-process totals per scenario (slow)",
                    file=sys.stderr,
                    flush=True,
                )
            for key in keys:
                k = k_of[key]
                ir = []
                for calls in (k, 2 * k):
                    sub = {**cfg, "only": [key], "counts_override": {key: [calls]}}
                    totals, took = _callgrind(sub, mode, out_dir)
                    seconds += took
                    ir.append(sum(totals))
                per_call[mode][key] = (ir[1] - ir[0]) / k
    rows = {}
    for key in keys:
        b, i = per_call[BASE][key], per_call[INSTR][key]
        rows[key] = {
            "baseline_ir": b,
            "instrumented_ir": i,
            "overhead_ir": i - b,
            "overhead_pct": 100 * (i - b) / b,
        }
    small, large = min(cfg["sizes"]), max(cfg["sizes"])
    per_chunk = {}
    for kind in ("sync", "async"):
        k1, kn = f"{kind}_stream_{small}", f"{kind}_stream_{large}"
        base = (per_call[BASE][kn] - per_call[BASE][k1]) / (large - small)
        inst = (per_call[INSTR][kn] - per_call[INSTR][k1]) / (large - small)
        per_chunk[kind] = {
            "from": [small, large],
            "baseline_ir": base,
            "instrumented_ir": inst,
            "overhead_ir": inst - base,
            "overhead_pct": 100 * (inst - base) / base,
        }
    return {"rows": rows, "per_chunk": per_chunk, "cpu_seconds": seconds}


# -- report -------------------------------------------------------------------------------------


def _loadavg() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "?"


def _tree_state() -> str | None:
    """The commit of the measured package and whether its files differ from it (read-only)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "otel_llm_cost"],
            capture_output=True,
            text=True,
            cwd=ROOT,
        ).stdout.strip()
    except OSError:
        return None
    if not head:
        return None
    return f"{head}{' + uncommitted changes' if dirty else ''}"


def _versions() -> dict[str, Any]:
    from importlib import metadata

    out: dict[str, Any] = {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "machine": platform.machine(),
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    for dist in (
        "openai",
        "httpx2",
        "httpx",
        "opentelemetry-sdk",
        "wrapt",
        "pydantic",
        "otel-llm-cost",
    ):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = None
    out["package_tree"] = _tree_state()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as cpuinfo:
        for line in cpuinfo:
            if line.startswith("model name"):
                out["cpu"] = line.split(":", 1)[1].strip()
                break
    return out


def _us(value: float, digits: int = 1) -> str:
    return f"{value:.{digits}f} µs"


def _over(value: float, pct: float, digits: int = 1, unit: str = "µs") -> str:
    return f"{value:+.{digits}f} {unit} ({pct:+.1f}%)"


def _spread(values: list[float], digits: int) -> str:
    return f"{min(values):+.{digits}f}..{max(values):+.{digits}f}"


def _table(rows: list[list[str]], header: list[str] | None = None) -> str:
    """Rows with the first column left-aligned and the others right-aligned (a two-column
    table without header is a list of ``name  value``, left-aligned)."""
    every = [header, *rows] if header else rows
    widths = [max(len(r[i]) for r in every) for i in range(len(every[0]))]
    lines = []
    for row in every:
        if header is None and len(row) == 2:
            cells = [row[0].ljust(widths[0]), row[1]]
        else:
            cells = [row[0].ljust(widths[0])]
            cells += [c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "   ".join(cells).rstrip())
    return "\n".join(lines)


def _print_report(result: dict[str, Any], cfg: dict[str, Any]) -> None:
    v = result["environment"]
    sizes = tuple(cfg["sizes"])
    small, large = min(sizes), max(sizes)
    print()
    print(
        f"otel_llm_cost overhead: Python {v['python']}, openai {v['openai']}, "
        f"httpx2 {v['httpx2']}, httpx {v['httpx']}, "
        f"opentelemetry-sdk {v['opentelemetry-sdk']}, wrapt {v['wrapt']}, "
        f"pydantic {v['pydantic']}; otel_llm_cost at {v['package_tree'] or '?'}; "
        f"nproc {v['nproc']} ({v.get('cpu', '?')}); "
        f"load average {v['loadavg_start']} -> {result['loadavg_end']}"
    )

    wall = result["wall_clock"]
    print()
    print(
        f"Wall clock per call: median over {cfg['rounds']} rounds, each a fresh baseline and a "
        f"fresh instrumented process\nrunning {cfg['blocks']} blocks per scenario in turn "
        "(block pairs); overhead = median of the pair differences;\nCPU = the same from this "
        "thread's CPU time; rounds min..max = spread of the per-round overheads"
    )
    rows = []
    for sc in scenarios(sizes):
        w, c = wall["rows"][sc.key]["wall"], wall["rows"][sc.key]["cpu"]
        rows.append(
            [
                sc.label,
                _us(w["baseline_us"]),
                _us(w["instrumented_us"]),
                _over(w["overhead_us"], w["overhead_pct"]),
                _spread(w["rounds_overhead_us"], 0),
                _over(c["overhead_us"], c["overhead_pct"]),
            ]
        )
    for kind in ("sync", "async"):
        w, c = wall["per_chunk"][kind]["wall"], wall["per_chunk"][kind]["cpu"]
        rows.append(
            [
                f"{kind} chunk (N={small}..{large})",
                _us(w["baseline_us"], 2),
                "",
                _over(w["overhead_us"], w["overhead_pct"], 2),
                _spread(w["rounds_overhead_us"], 1),
                _over(c["overhead_us"], c["overhead_pct"], 2),
            ]
        )
    header = ["", "baseline", "instrumented", "overhead", "rounds min..max", "overhead (CPU)"]
    print(_table(rows, header))
    print(
        "  A chunk row: baseline = (base_N - base_1) / (N - 1); overhead = ((instr_N - base_N)\n"
        "  - (instr_1 - base_1)) / (N - 1), the per-streamed-call part taken out.\n"
        "  Instrumented streams ask for usage (the instrumentation injects\n"
        '  stream_options.include_usage), so the fake server sends "usage":null on every\n'
        "  chunk and one more usage-only chunk, as OpenAI does; the uninstrumented request\n"
        "  does not ask, so its stream has one chunk less. That is the honest comparison: the\n"
        "  extra chunk is in the per-call overhead, the nulls in the per-chunk one."
    )

    cg = result.get("instructions")
    if cg:
        print()
        print(
            "Instructions per call (callgrind Ir, deterministic): (Ir of 2K calls - Ir of K "
            f"calls) / K after a warm-up; K={cfg['k']} (K={cfg['k_big']} for streams of N>100)"
        )
        rows = []
        for sc in _cg_scenarios(cfg):
            r = cg["rows"][sc.key]
            rows.append(
                [
                    sc.label,
                    f"{r['baseline_ir'] / 1e3:,.0f} k",
                    f"{r['instrumented_ir'] / 1e3:,.0f} k",
                    _over(r["overhead_ir"] / 1e3, r["overhead_pct"], 0, "k"),
                ]
            )
        for kind in ("sync", "async"):
            r = cg["per_chunk"][kind]
            rows.append(
                [
                    f"{kind} chunk (N={small}..{large})",
                    f"{r['baseline_ir'] / 1e3:,.1f} k",
                    f"{r['instrumented_ir'] / 1e3:,.1f} k",
                    _over(r["overhead_ir"] / 1e3, r["overhead_pct"], 2, "k"),
                ]
            )
        print(_table(rows, ["", "baseline", "instrumented", "overhead"]))

    st, mem = wall["startup"], wall["memory"]
    print()
    print("Start-up (fresh process, median over rounds)")

    def mods(counts: dict[str, int]) -> str:
        return ", ".join(f"{name} {n}" for name, n in list(counts.items())[:6])

    rows = [
        ["import otel_llm_cost", f"{st['import_ms']:.1f} ms"],
        ["otel_llm_cost.instrument()", f"{st['instrument_ms']:.1f} ms"],
        ["  modules it imports", mods(st["modules_imported_by_instrument"])],
        ["OpenAIInstrumentor().instrument() alone", f"{st['openai_only_instrument_ms']:.1f} ms"],
        ["  modules it imports", mods(st["modules_imported_by_openai_only"])],
        [
            "first call, baseline",
            f"{st['first_call_baseline_ms']:.2f} ms (2nd: {st['second_call_baseline_ms']:.2f})",
        ],
        [
            "first call, instrumented",
            f"{st['first_call_instrumented_ms']:.2f} ms "
            f"(2nd: {st['second_call_instrumented_ms']:.2f})",
        ],
        ["first call, added", f"{st['first_call_added_ms']:+.2f} ms"],
        [
            "import + instrument() + first call, added",
            f"{st['instrument_and_first_call_added_ms']:+.1f} ms",
        ],
    ]
    print(_table(rows))
    print(
        "  instrument() imports the openai resource modules a baseline process only imports on\n"
        "  its first call, so the first instrumented call can be faster than the baseline's."
    )
    print()
    print(
        f"Memory (VmRSS; {mem['calls']} sync calls; span buffer emptied and gc.collect() "
        "before reading)"
    )

    def mib(kib: float) -> str:
        return f"{kib / 1024:+.1f} MiB"

    rows = [
        ["otel_llm_cost.instrument()", mib(mem["instrument_kib"])],
        [f"{mem['calls']} calls, baseline", mib(mem["calls_baseline_kib"])],
        [f"{mem['calls']} calls, instrumented", mib(mem["calls_instrumented_kib"])],
        ["memory added (instrument + calls)", mib(mem["total_added_kib"])],
        ["  with OpenAIInstrumentor alone", mib(mem["openai_only_total_added_kib"])],
        [
            "peak RSS, baseline / instrumented",
            f"{mem['maxrss_baseline_kib'] / 1024:.1f} / "
            f"{mem['maxrss_instrumented_kib'] / 1024:.1f} MiB",
        ],
    ]
    print(_table(rows))

    prof = result.get("profile")
    if prof:
        for name, data in prof.items():
            what = "sync call" if name == "call" else f"sync stream N={large}"
            print()
            print(
                f"cProfile, {what}: instrumented minus baseline, per operation, functions called "
                f"more often, by own time (sum {data['total_own_us_added']:+.0f} µs; cProfile "
                "inflates small functions: a ranking, not a measurement)"
            )
            rows = [
                [f"{row['own_us_added']:+.1f}", f"{row['calls_added']:+.1f}", row["function"]]
                for row in data["top"]
            ]
            print(_table([[r[2], r[0], r[1]] for r in rows], ["function", "own µs", "calls"]))


def config(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        cfg = {
            "sizes": [1, 10, 50],
            "rounds": 1,
            "blocks": 3,
            "block_ms": 4.0,
            "warmup_calls": 20,
            "warmup_s": 0.05,
            "memory_calls": 100,
            "k": 3,
            "k_big": 2,
            "warmup": 3,
            "warmup_big": 1,
        }
    else:
        cfg = {
            "sizes": [1, 100, 1000],
            "rounds": 6,
            "blocks": 15,
            "block_ms": 30.0,
            "warmup_calls": 200,
            "warmup_s": 0.5,
            "memory_calls": 1000,
            "k": 10,
            "k_big": 3,
            "warmup": 20,
            "warmup_big": 1,
        }
    if args.rounds:
        cfg["rounds"] = args.rounds
    cfg["profile_calls"] = 200 if args.quick else 2000
    cfg["profile_streams"] = 2 if args.quick else 20
    cfg["profile_top"] = 15
    return cfg


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--profile", action="store_true", help="also cProfile the call path")
    parser.add_argument("--rounds", type=int, help="paired rounds (default 6, quick 1)")
    parser.add_argument("--json", metavar="FILE", help="save all results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0

    cfg = config(args)
    if args.callgrind and shutil.which("valgrind") is None:
        parser.error("--callgrind needs valgrind on PATH")
    progress = sys.stderr.isatty()
    started = time.monotonic()
    result: dict[str, Any] = {"environment": _versions(), "config": cfg}
    result["environment"]["loadavg_start"] = _loadavg()
    result["wall_clock"] = measure_wall_clock(cfg, cfg["rounds"], progress)
    if args.callgrind:
        result["instructions"] = measure_instructions(cfg, progress)
    if args.profile:
        result["profile"] = profile_diff(cfg)
    result["seconds"] = time.monotonic() - started
    result["loadavg_end"] = _loadavg()
    _print_report(result, cfg)
    print(f"\n(took {result['seconds']:.0f} s)")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        print(f"results saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
