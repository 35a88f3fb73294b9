"""Memory stays flat over very many calls and abandoned streams.

The real openai SDK talks to an in-process transport (``httpx2.MockTransport``, or ``httpx``'s
for SDKs older than 3.x) that answers canned chat completions and SSE streams, so that 100,000
calls take minutes, not hours. The workload mixes, sync and async: plain calls, streams read to
the end, and streams abandoned after one chunk (dropped without ``close()``, so only garbage
collection finalizes them). Spans go to an in-memory exporter that is counted and cleared as we go.

After a warm-up, and again at the end, after ``gc.collect()`` (and glibc's ``malloc_trim``, so
that freed heap pages do not count): resident memory (``VmRSS`` from ``/proc/self/status``) and
the live objects of ours (``CallRecord``, stream proxies and their finalizers), of the SDK
(``Stream``/``AsyncStream``) and of OpenTelemetry (spans). Every call must have been recorded
exactly once (abandoned streams as ``estimated``), the live objects must be back to their warm-up
counts, and RSS may grow by at most a bound that a leak of one small object per call would exceed.

Size: ``OTEL_LLM_COST_LOAD_SCALE``: unset (or ``ci``) is the CI size, 4,000 calls and 400 abandoned
streams; a number multiplies both; ``full`` is 100,000 calls and 10,000 abandoned streams.
"""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan

import otel_llm_cost
from otel_llm_cost import streams
from otel_llm_cost.record import CallRecord

from .conftest import Telemetry, make_recorder

openai = pytest.importorskip("openai")

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/status"), reason="reads VmRSS from /proc/self/status"
)

MODEL = "gpt-4o-mini"
MESSAGES = [{"role": "user", "content": "How much memory does this take?"}]
USAGE = {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}
WORDS = ["Memory", " stays", " flat", " over", " time."]

#: RSS growth allowed between the warm-up and the end: a fixed slack for the allocator plus a
#: quarter KiB per recorded call. A leak of 2 KiB per call (a span, or a CallRecord with its
#: attribute dicts, is more) exceeds it at the CI size, one of 0.3 KiB at the full size.
RSS_FIXED_MIB = 6.0
RSS_PER_CALL_KIB = 0.25


def load_size() -> tuple[int, int]:
    """(calls, abandoned streams) for ``OTEL_LLM_COST_LOAD_SCALE``."""
    raw = (os.environ.get("OTEL_LLM_COST_LOAD_SCALE") or "ci").strip().lower()
    if raw == "full":
        return 100_000, 10_000
    scale = 1.0 if raw == "ci" else float(raw)
    return max(100, round(4000 * scale)), max(10, round(400 * scale))


# -- the in-process transport ------------------------------------------------------------------


def _httpx() -> Any:
    """The HTTP library the installed openai SDK is built on (httpx2 from 3.x, httpx before)."""
    base = sys.modules.get("openai._base_client")
    return getattr(base, "httpx2", None) or getattr(base, "httpx")  # noqa: B009


def _completion(n: int) -> bytes:
    return json.dumps(
        {
            "id": f"chatcmpl-{n}",
            "object": "chat.completion",
            "created": 1700000000,
            "model": MODEL,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "".join(WORDS)},
                    "finish_reason": "stop",
                    "logprobs": None,
                }
            ],
            "usage": USAGE,
        }
    ).encode()


def _sse(n: int, include_usage: bool) -> bytes:
    def chunk(choices: list[Any], usage: Any = None) -> str:
        body = {"id": f"chatcmpl-{n}", "object": "chat.completion.chunk", "created": 1700000000,
                "model": MODEL, "choices": choices}  # fmt: skip
        if include_usage:
            body["usage"] = usage
        return f"data: {json.dumps(body)}\n\n"

    parts = [chunk([{"index": 0, "delta": {"role": "assistant", "content": ""}}])]
    parts += [chunk([{"index": 0, "delta": {"content": w}, "finish_reason": None}]) for w in WORDS]
    parts.append(chunk([{"index": 0, "delta": {}, "finish_reason": "stop"}]))
    if include_usage:
        parts.append(chunk([], USAGE))
    parts.append("data: [DONE]\n\n")
    return "".join(parts).encode()


class Canned:
    """Answers /chat/completions in-process, JSON or SSE as asked."""

    def __init__(self) -> None:
        self.requests = 0

    def __call__(self, request: Any) -> Any:
        httpx = _httpx()
        self.requests += 1
        body = json.loads(request.content)
        if body.get("stream"):
            usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return httpx.Response(
                200,
                headers={"content-type": "text/event-stream"},
                content=_sse(self.requests, usage),
            )
        return httpx.Response(
            200, headers={"content-type": "application/json"}, content=_completion(self.requests)
        )


# -- measuring ---------------------------------------------------------------------------------


def _trim() -> None:
    """Give the C heap's free pages back (glibc), so that VmRSS counts what is in use."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def rss_mib() -> float:
    """VmRSS after a full collection and a heap trim."""
    gc.collect()
    _trim()
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS in /proc/self/status")


TRACKED: dict[type, str] = {
    CallRecord: "CallRecord",
    streams.StreamProxy: "StreamProxy",
    streams.AsyncStreamProxy: "AsyncStreamProxy",
    streams._CloseHook: "_CloseHook",
    streams._Finalizer: "_Finalizer",
    openai.Stream: "openai.Stream",
    openai.AsyncStream: "openai.AsyncStream",
}


def live_objects() -> Counter[str]:
    gc.collect()
    gc.collect()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        kind = type(obj)
        name = TRACKED.get(kind)
        if name is not None:
            counts[name] += 1
        elif issubclass(kind, ReadableSpan):  # not isinstance(): no __class__ of lazy proxies
            counts["span"] += 1
    for name in (*TRACKED.values(), "span"):
        counts.setdefault(name, 0)
    return counts


# -- the workload ------------------------------------------------------------------------------


class Workload:
    def __init__(self, telemetry: Telemetry) -> None:
        httpx = _httpx()
        self.telemetry = telemetry
        self.transport = Canned()
        self.client = openai.OpenAI(
            api_key="k",
            base_url="http://memory.test/v1",
            max_retries=0,
            http_client=httpx.Client(transport=httpx.MockTransport(self.transport)),
        )
        self.aclient = openai.AsyncOpenAI(
            api_key="k",
            base_url="http://memory.test/v1",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=httpx.MockTransport(self.transport)),
        )
        self.spans = 0
        self.completed = 0
        self.abandoned = 0

    def drain_spans(self) -> None:
        exporter = self.telemetry.exporter
        self.spans += len(exporter.get_finished_spans())
        exporter.clear()

    def _abandon(self) -> None:
        stream = self.client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        next(iter(stream))
        del stream  # neither read to the end nor closed
        self.abandoned += 1

    async def _abandon_async(self) -> None:
        stream = await self.aclient.chat.completions.create(
            model=MODEL, messages=MESSAGES, stream=True
        )
        await stream.__anext__()
        del stream
        self.abandoned += 1

    def run(self, calls: int, abandoned: int) -> None:
        """``calls`` completed calls and ``abandoned`` abandoned streams, one in ten of each
        through AsyncOpenAI."""
        asyncio.run(self._run_async(calls // 10, abandoned // 10))
        self._run_sync(calls - calls // 10, abandoned - abandoned // 10)
        gc.collect()
        self.drain_spans()

    def _run_sync(self, calls: int, abandoned: int) -> None:
        every = max(1, calls // max(1, abandoned))
        left = abandoned
        for i in range(calls):
            if i % 2:
                chunks = list(
                    self.client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
                )
                assert len(chunks) == len(WORDS) + 2  # the usage-only chunk stays hidden
            else:
                self.client.chat.completions.create(model=MODEL, messages=MESSAGES)
            self.completed += 1
            if left and i % every == every - 1:
                self._abandon()
                left -= 1
            if i % 1000 == 999:
                self.drain_spans()
        for _ in range(left):
            self._abandon()

    async def _run_async(self, calls: int, abandoned: int) -> None:
        every = max(1, calls // max(1, abandoned))
        left = abandoned
        for i in range(calls):
            if i % 2:
                stream = await self.aclient.chat.completions.create(
                    model=MODEL, messages=MESSAGES, stream=True
                )
                chunks = [c async for c in stream]
                assert len(chunks) == len(WORDS) + 2
            else:
                await self.aclient.chat.completions.create(model=MODEL, messages=MESSAGES)
            self.completed += 1
            if left and i % every == every - 1:
                await self._abandon_async()
                left -= 1
            if i % 1000 == 999:
                self.drain_spans()
        for _ in range(left):
            await self._abandon_async()
        gc.collect()  # abandoned async streams are finalized while the loop still runs


@pytest.fixture
def telemetry() -> Iterator[Telemetry]:
    recorder, exporter, reader = make_recorder()
    otel_llm_cost.instrument(recorder=recorder)
    try:
        yield Telemetry(exporter, reader)
    finally:
        otel_llm_cost.uninstrument()


def test_memory_stays_flat(telemetry: Telemetry) -> None:
    calls, abandoned = load_size()
    work = Workload(telemetry)

    # Warm-up: imports, caches, pools, and the allocator's arenas reach their working size.
    work.run(max(1000, calls // 10), max(100, abandoned // 10))
    warm_calls = work.completed + work.abandoned
    live_objects()  # once before measuring: whatever walking every object sets off
    objects_before = live_objects()
    rss_before = rss_mib()  # nothing but the workload between the two readings

    started = time.perf_counter()
    work.run(calls, abandoned)
    elapsed = time.perf_counter() - started
    rss_after = rss_mib()
    objects_after = live_objects()

    total = work.completed + work.abandoned
    assert work.transport.requests == total
    assert work.spans == total
    by_source: Counter[str] = Counter()
    for point in telemetry.requests():
        by_source[point.attributes["llm.usage.source"]] += int(point.value)
    assert by_source == {"provider": work.completed, "estimated": work.abandoned}
    output_tokens = telemetry.tokens().get("output", 0)
    assert output_tokens >= work.completed * USAGE["completion_tokens"]

    growth = rss_after - rss_before
    budget = RSS_FIXED_MIB + RSS_PER_CALL_KIB * (total - warm_calls) / 1024
    report = (
        f"\nmemory: {calls} calls + {abandoned} abandoned streams after a warm-up "
        f"of {warm_calls}, in {elapsed:.1f} s ({total - warm_calls} recorded)\n"
        f"  VmRSS {rss_before:.1f} MiB -> {rss_after:.1f} MiB ({growth:+.1f} MiB, "
        f"budget {budget:.1f} MiB)\n"
        f"  live objects before {dict(objects_before)}\n"
        f"  live objects after  {dict(objects_after)}"
    )
    print(report)
    for name in ("CallRecord", "StreamProxy", "AsyncStreamProxy", "_CloseHook", "_Finalizer"):
        assert objects_after[name] <= objects_before[name] + 2, (name, report)
    for name in ("openai.Stream", "openai.AsyncStream", "span"):
        assert objects_after[name] <= objects_before[name] + 2, (name, report)
    assert objects_after["CallRecord"] <= 2, report
    assert growth < budget, report
