"""Many threads and many asyncio tasks at once, three providers, per-caller attribution.

Each caller (a thread, or an asyncio task) makes calls through the real openai, anthropic and
google-genai SDKs against their fake servers, streamed and not, inside its own attribution
(``usage_context`` with agent/user/feature, nested per-call contexts with a session, OpenTelemetry
baggage, or none at all). Every prompt carries a tag naming the caller's agent and user, so the
usage each fake server sent can be summed per (provider, agent, user) straight from the wire.

Checked:

- totals per label set are exact: ``llm.tokens`` by type, ``llm.cost`` and ``llm.requests`` per
  (provider, ``gen_ai.agent.name``, ``user.id``) equal the wire's usage and genai-prices' cost
  (``user.id`` is promoted to a metric label with ``OTEL_LLM_COST_METRIC_ATTRIBUTES=user.id``);
- attribution never leaks: each call's span (found by its ``gen_ai.response.id``, which the caller
  read from the response it got) carries exactly the attribution of the caller's own context,
  nothing more, nothing less, and the right provider;
- one span per call, one exchange per call, every response id distinct.

Size: ``OTEL_LLM_COST_LOAD_SCALE``: unset (or ``ci``) is the CI size, 16 threads x 150 calls and
300 concurrent tasks x 2 calls (3,000 calls); a number multiplies the calls per thread and the
number of tasks; ``full`` is 32 threads x 1,000 calls and 3,000 concurrent tasks x 2 calls
(38,000 calls).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry import baggage
from opentelemetry import context as otel_context

import otel_llm_cost
from otel_llm_cost.config import Settings
from otel_llm_cost.fakes._base import FakeHTTPServer

from .conftest import Telemetry, make_recorder
from .expected import close_to, genai_cost

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")
genai = pytest.importorskip("google.genai")
genai_types = pytest.importorskip("google.genai.types")

from otel_llm_cost.fakes.anthropic_server import FakeAnthropicServer  # noqa: E402
from otel_llm_cost.fakes.gemini_server import FakeGeminiServer  # noqa: E402
from otel_llm_cost.fakes.openai_server import FakeOpenAIServer  # noqa: E402

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
GEMINI_MODEL = "gemini-2.5-flash"
PROVIDERS = ("openai", "anthropic", "gcp.gemini")

AGENT, USER, SESSION, FEATURE = "gen_ai.agent.name", "user.id", "session.id", "llm.feature"
OWN_LLM_ATTRIBUTES = {"llm.cost.usd", "llm.usage.source", "llm.price.status"}
IN_FLIGHT = 256
TAG = re.compile(r"\[tag agent=(\S+) user=(\S+) call=(\S+)\]")


def load_size() -> tuple[int, int, int]:
    """(threads, calls per thread, asyncio tasks) for ``OTEL_LLM_COST_LOAD_SCALE``."""
    raw = (os.environ.get("OTEL_LLM_COST_LOAD_SCALE") or "ci").strip().lower()
    if raw == "full":
        return 32, 1000, 3000
    scale = 1.0 if raw == "ci" else float(raw)
    return 16, max(3, round(150 * scale)), max(3, round(300 * scale))


# -- attribution variants ----------------------------------------------------------------------


def attribution_keys(attributes: Any) -> dict[str, Any]:
    """The attribution attributes of a span (agent, user, session and llm.* extras)."""
    return {
        k: v
        for k, v in attributes.items()
        if k in (AGENT, USER, SESSION) or (k.startswith("llm.") and k not in OWN_LLM_ATTRIBUTES)
    }


@dataclass
class Caller:
    """One thread or task: its attribution variant, and what it expects on each of its calls."""

    name: str
    variant: int
    agent: str | None
    user: str | None
    feature: str | None
    expected: dict[str, tuple[str, dict[str, str]]] = field(default_factory=dict)
    """response id -> (provider, attribution the span must carry exactly)."""

    def base(self) -> dict[str, str]:
        """Attribution of the caller's outer context."""
        if self.variant == 3:
            return {}
        out = {AGENT: self.agent}
        if self.variant != 2:
            out[FEATURE] = self.feature
        out[USER] = self.user
        return {k: v for k, v in out.items() if v is not None}

    def tag(self, call: str) -> str:
        base = self.base()
        return f"[tag agent={base.get(AGENT, '-')} user={base.get(USER, '-')} call={call}]"


def _enter_outer(caller: Caller) -> Any:
    """Enter the caller's outer attribution; returns what to exit/detach afterwards."""
    if caller.variant in (0, 1):
        ctx = otel_llm_cost.usage_context(
            agent=caller.agent, user=caller.user, feature=caller.feature
        )
        ctx.__enter__()
        return ctx
    if caller.variant == 2:
        # user from OpenTelemetry baggage (as if set by an upstream service), agent explicit
        token = otel_context.attach(baggage.set_baggage(USER, caller.user))
        ctx = otel_llm_cost.usage_context(agent=caller.agent)
        ctx.__enter__()
        return (token, ctx)
    return None


def _exit_outer(caller: Caller, state: Any) -> None:
    if caller.variant in (0, 1):
        state.__exit__(None, None, None)
    elif caller.variant == 2:
        token, ctx = state
        ctx.__exit__(None, None, None)
        otel_context.detach(token)


def _inner(caller: Caller, call: str) -> tuple[Any, dict[str, str]]:
    """A per-call context (variant 1: nested, with a session) and the call's full attribution."""
    expected = caller.base()
    if caller.variant == 1:
        session = f"s-{caller.name}-{call}"
        expected[SESSION] = session
        return otel_llm_cost.usage_context(session=session), expected
    return _Null(), expected


class _Null:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


# -- calls -------------------------------------------------------------------------------------


@dataclass
class Clients:
    openai: Any
    anthropic: Any
    gemini: Any


def _prompt(caller: Caller, call: str, index: int) -> str:
    return f"{caller.tag(call)} question {'word ' * (index % 11)}?"


def call_sync(clients: Clients, provider: str, prompt: str, stream: bool) -> str:
    """One call; returns the response id the caller saw."""
    messages = [{"role": "user", "content": prompt}]
    if provider == "openai":
        if not stream:
            return clients.openai.chat.completions.create(model=OPENAI_MODEL, messages=messages).id
        chunks = list(
            clients.openai.chat.completions.create(
                model=OPENAI_MODEL, messages=messages, stream=True
            )
        )
        assert all(c.choices for c in chunks)  # the usage chunk we asked for stays hidden
        return chunks[0].id
    if provider == "anthropic":
        kw = {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": messages}
        if not stream:
            return clients.anthropic.messages.create(**kw).id
        events = list(clients.anthropic.messages.create(**kw, stream=True))
        return events[0].message.id
    if not stream:
        return clients.gemini.models.generate_content(
            model=GEMINI_MODEL, contents=prompt
        ).response_id
    chunks = list(
        clients.gemini.models.generate_content_stream(model=GEMINI_MODEL, contents=prompt)
    )
    return chunks[0].response_id


async def call_async(clients: Clients, provider: str, prompt: str, stream: bool) -> str:
    messages = [{"role": "user", "content": prompt}]
    if provider == "openai":
        if not stream:
            result = await clients.openai.chat.completions.create(
                model=OPENAI_MODEL, messages=messages
            )
            return result.id
        response = await clients.openai.chat.completions.create(
            model=OPENAI_MODEL, messages=messages, stream=True
        )
        chunks = [c async for c in response]
        assert all(c.choices for c in chunks)
        return chunks[0].id
    if provider == "anthropic":
        kw = {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": messages}
        if not stream:
            return (await clients.anthropic.messages.create(**kw)).id
        events = [e async for e in await clients.anthropic.messages.create(**kw, stream=True)]
        return events[0].message.id
    models = clients.gemini.aio.models
    if not stream:
        return (await models.generate_content(model=GEMINI_MODEL, contents=prompt)).response_id
    chunks = [
        c async for c in await models.generate_content_stream(model=GEMINI_MODEL, contents=prompt)
    ]
    return chunks[0].response_id


# -- expectations from the wire ----------------------------------------------------------------


Key = tuple[str, str | None, str | None]  # (provider, agent, user)


@dataclass
class Totals:
    tokens: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    requests: int = 0

    def add_tokens(self, parts: dict[str, int]) -> None:
        for k, v in parts.items():
            if v:
                self.tokens[k] = self.tokens.get(k, 0) + v


def _openai_wire(wire: dict[str, Any], model: str) -> tuple[dict[str, int], float]:
    cached = (wire.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (wire.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    parts = {"input": wire["prompt_tokens"] - cached, "cache_read": cached,
             "output": wire["completion_tokens"] - reasoning, "reasoning": reasoning}  # fmt: skip
    cost = genai_cost("openai", model, input_tokens=wire["prompt_tokens"],
                      cache_read_tokens=cached, output_tokens=wire["completion_tokens"],
                      output_reasoning_tokens=reasoning)  # fmt: skip
    return parts, cost


def _anthropic_wire(wire: dict[str, Any], model: str) -> tuple[dict[str, int], float]:
    read = wire.get("cache_read_input_tokens") or 0
    write = wire.get("cache_creation_input_tokens") or 0
    parts = {"input": wire.get("input_tokens") or 0, "cache_read": read, "cache_write": write,
             "output": wire.get("output_tokens") or 0}  # fmt: skip
    cost = genai_cost("anthropic", model, input_tokens=parts["input"] + read + write,
                      cache_read_tokens=read, cache_write_tokens=write,
                      output_tokens=parts["output"])  # fmt: skip
    return parts, cost


def _gemini_wire(wire: dict[str, Any], model: str) -> tuple[dict[str, int], float]:
    prompt = wire.get("promptTokenCount", 0)
    cached = wire.get("cachedContentTokenCount", 0)
    candidates = wire.get("candidatesTokenCount", 0)
    thoughts = wire.get("thoughtsTokenCount", 0) or max(
        0, wire.get("totalTokenCount", 0) - prompt - candidates
    )
    parts = {"input": prompt - cached, "cache_read": cached, "output": candidates,
             "reasoning": thoughts}  # fmt: skip
    cost = genai_cost("google", model, input_tokens=prompt, cache_read_tokens=cached,
                      output_tokens=candidates + thoughts)  # fmt: skip
    return parts, cost


def wire_totals(servers: dict[str, Any]) -> dict[Key, Totals]:
    """Usage and cost summed per (provider, agent, user), from what each fake server sent."""
    totals: dict[Key, Totals] = {}
    readers = {"openai": _openai_wire, "anthropic": _anthropic_wire, "gcp.gemini": _gemini_wire}
    for provider, server in servers.items():
        for exchange in server.exchanges:
            match = TAG.search(json.dumps(exchange.request))
            assert match, exchange.request
            agent, user = (None if v == "-" else v for v in match.group(1, 2))
            wire = exchange.usage
            assert wire, f"{provider}: no usage sent for {match.group(0)}"
            model = exchange.request.get("model") or GEMINI_MODEL
            parts, cost = readers[provider](wire, model)
            entry = totals.setdefault((provider, agent, user), Totals())
            entry.add_tokens(parts)
            entry.cost += cost
            entry.requests += 1
    return totals


def recorded_totals(telemetry: Telemetry) -> dict[Key, Totals]:
    totals: dict[Key, Totals] = {}

    def key(attrs: dict[str, Any]) -> Key:
        return (attrs["gen_ai.provider.name"], attrs.get(AGENT), attrs.get(USER))

    for point in telemetry.points("llm.tokens"):
        entry = totals.setdefault(key(point.attributes), Totals())
        entry.add_tokens({point.attributes["llm.token.type"]: int(point.value)})
    for point in telemetry.points("llm.cost"):
        totals.setdefault(key(point.attributes), Totals()).cost += point.value
    for point in telemetry.points("llm.requests"):
        totals.setdefault(key(point.attributes), Totals()).requests += int(point.value)
    return totals


# -- fixtures ----------------------------------------------------------------------------------


@pytest.fixture
def servers(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    # Hundreds of connections open at once: a listen backlog of 5 would make the kernel drop SYNs
    # (a one-second retransmit each), which tests the network stack, not us.
    monkeypatch.setattr(FakeHTTPServer, "request_queue_size", 4096, raising=False)
    with FakeOpenAIServer() as o, FakeAnthropicServer() as a, FakeGeminiServer() as g:
        yield {"openai": o, "anthropic": a, "gcp.gemini": g}


@pytest.fixture
def telemetry(monkeypatch: pytest.MonkeyPatch) -> Iterator[Telemetry]:
    monkeypatch.setenv("OTEL_LLM_COST_METRIC_ATTRIBUTES", USER)
    recorder, exporter, reader = make_recorder(Settings.from_env())
    otel_llm_cost.instrument(recorder=recorder)
    try:
        yield Telemetry(exporter, reader)
    finally:
        otel_llm_cost.uninstrument()


def _sync_clients(servers: dict[str, Any]) -> Clients:
    return Clients(
        openai.OpenAI(base_url=servers["openai"].base_url, api_key="k", max_retries=0),
        anthropic.Anthropic(base_url=servers["anthropic"].base_url, api_key="k", max_retries=0),
        genai.Client(
            api_key="k",
            http_options=genai_types.HttpOptions(base_url=servers["gcp.gemini"].base_url),
        ),
    )


def _async_clients(servers: dict[str, Any]) -> Clients:
    return Clients(
        openai.AsyncOpenAI(base_url=servers["openai"].base_url, api_key="k", max_retries=0),
        anthropic.AsyncAnthropic(
            base_url=servers["anthropic"].base_url, api_key="k", max_retries=0
        ),
        genai.Client(
            api_key="k",
            http_options=genai_types.HttpOptions(base_url=servers["gcp.gemini"].base_url),
        ),
    )


def _caller(kind: str, index: int, variants: int = 4) -> Caller:
    variant = index % variants
    return Caller(
        name=f"{kind}{index}",
        variant=variant,
        agent=f"agent-{index % 5}",
        user=f"{kind}-user-{index % 23}",
        feature=f"feature-{index % 5}",
    )


# -- checks ------------------------------------------------------------------------------------


def check(telemetry: Telemetry, servers: dict[str, Any], callers: list[Caller]) -> int:
    expected: dict[str, tuple[str, dict[str, str]]] = {}
    for caller in callers:
        for response_id, value in caller.expected.items():
            assert response_id not in expected, f"response id {response_id} seen twice"
            expected[response_id] = value
    calls = len(expected)
    assert sum(len(s.exchanges) for s in servers.values()) == calls

    spans = telemetry.spans
    assert len(spans) == calls
    by_id = {s.attributes.get("gen_ai.response.id"): s for s in spans}
    assert len(by_id) == calls, "two spans with the same gen_ai.response.id"
    leaks = []
    for response_id, (provider, attribution) in expected.items():
        span = by_id[response_id]
        assert span.attributes["gen_ai.provider.name"] == provider
        got = attribution_keys(span.attributes)
        if got != attribution:
            leaks.append((response_id, attribution, got))
    assert leaks == [], f"{len(leaks)} calls with someone else's attribution, e.g. {leaks[:3]}"

    wire = wire_totals(servers)
    recorded = recorded_totals(telemetry)
    assert sorted(recorded, key=str) == sorted(wire, key=str)
    for key, want in wire.items():
        got = recorded[key]
        assert got.tokens == want.tokens, key
        assert got.requests == want.requests, key
        assert close_to(got.cost, want.cost, rel=1e-9), (key, got.cost, want.cost)
    sources = {p.attributes["llm.usage.source"] for p in telemetry.requests()}
    assert sources == {"provider"}
    assert all("error.type" not in p.attributes for p in telemetry.requests())
    return calls


# -- tests -------------------------------------------------------------------------------------


def test_many_threads_exact_totals_and_no_attribution_leak(
    telemetry: Telemetry, servers: dict[str, Any]
) -> None:
    threads, per_thread, _ = load_size()
    clients = _sync_clients(servers)
    callers = [_caller("thread", i) for i in range(threads)]
    barrier = threading.Barrier(threads)
    errors: list[BaseException] = []

    def run(caller: Caller, offset: int) -> None:
        try:
            barrier.wait()
            state = _enter_outer(caller)
            try:
                for j in range(per_thread):
                    call = f"{caller.name}-{j}"
                    provider = PROVIDERS[(j + offset) % 3]
                    inner, attribution = _inner(caller, call)
                    with inner:
                        response_id = call_sync(
                            clients, provider, _prompt(caller, call, j), stream=j % 4 == 1
                        )
                    caller.expected[response_id] = (provider, attribution)
            finally:
                _exit_outer(caller, state)
        except BaseException as exc:  # reported below, with the thread's name
            errors.append(exc)

    started = time.perf_counter()
    workers = [
        threading.Thread(target=run, args=(c, i), name=c.name) for i, c in enumerate(callers)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    elapsed = time.perf_counter() - started
    assert errors == [], errors[:3]
    calls = check(telemetry, servers, callers)
    assert calls == threads * per_thread
    print(f"\n{threads} threads x {per_thread} calls = {calls} calls in {elapsed:.1f} s")


async def test_many_asyncio_tasks_exact_totals_and_no_attribution_leak(
    telemetry: Telemetry, servers: dict[str, Any]
) -> None:
    _, _, tasks = load_size()
    clients = _async_clients(servers)
    callers = [_caller("task", i) for i in range(tasks)]
    gate = asyncio.Event()
    # All tasks live at once, each in its own context; at most IN_FLIGHT of them wait on a socket
    # at a time (thousands of simultaneous connects to the one-process fake servers would time out).
    in_flight = asyncio.Semaphore(IN_FLIGHT)
    counter = itertools.count()

    async def run(caller: Caller) -> None:
        await gate.wait()  # all tasks start together
        state = _enter_outer(caller)
        try:
            for j in range(2):
                call = f"{caller.name}-{j}"
                provider = PROVIDERS[next(counter) % 3]
                inner, attribution = _inner(caller, call)
                with inner:
                    await asyncio.sleep(0)  # let other tasks interleave inside the context
                    async with in_flight:
                        response_id = await call_async(
                            clients, provider, _prompt(caller, call, j), stream=j == 1
                        )
                caller.expected[response_id] = (provider, attribution)
        finally:
            _exit_outer(caller, state)

    started = time.perf_counter()
    running = [asyncio.create_task(run(c)) for c in callers]
    await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(*running)
    elapsed = time.perf_counter() - started
    await clients.openai.close()
    await clients.anthropic.close()
    calls = check(telemetry, servers, callers)
    assert calls == 2 * tasks
    print(f"\n{tasks} concurrent tasks x 2 calls = {calls} calls in {elapsed:.1f} s")
