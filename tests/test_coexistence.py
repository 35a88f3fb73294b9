"""otel-llm-cost next to another instrumentation of the same SDK, active at the same time.

The other instrumentations: the official ``opentelemetry-instrumentation-openai-v2``, and
OpenLLMetry's ``opentelemetry-instrumentation-openai`` and
``opentelemetry-instrumentation-anthropic``. Each is installed in both orders (theirs first,
then ours; ours first, then theirs), and:

- our numbers stay exact: tokens and cost equal the usage the fake server sent, priced by
  genai-prices; nothing is counted twice by us (``llm.requests`` sums to the number of calls, one
  span of ours per call); streams yield the same chunks as without any instrumentation;
- ``otel_llm_cost.uninstrument()`` restores the SDK exactly: each class attribute we wrapped ``is``
  the object that was there before our ``instrument()`` (their wrapper, when they wrapped first);
  when they wrapped after us, none of our code is left on the call path, theirs is;
- the other instrumentation still works after we uninstrument, and its own ``uninstrument()`` then
  gives back the SDK's original methods.

An instrumentation that is not installed, or does not import with the installed SDK, is skipped
with the reason. Every test restores the SDK classes it touched, whatever happened.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm_cost
from otel_llm_cost.fakes.anthropic_server import FakeAnthropicServer
from otel_llm_cost.fakes.openai_server import FakeOpenAIServer

from .conftest import Telemetry, make_recorder
from .expected import (
    close_to,
    genai_cost,
    openai_chat_wire_cost,
    openai_responses_wire_cost,
)
from .test_sdk_versions import patch_targets

openai = pytest.importorskip("openai")
anthropic = pytest.importorskip("anthropic")

MESSAGES = [{"role": "user", "content": "How much does this cost, with two instrumentations?"}]
OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
ANTHROPIC_KW: dict[str, Any] = {"model": ANTHROPIC_MODEL, "max_tokens": 256, "messages": MESSAGES}

THEIRS_FIRST = "theirs-first"
OURS_FIRST = "ours-first"


@dataclass(frozen=True)
class Other:
    """Another instrumentation of one SDK."""

    id: str
    distribution: str
    module: str
    sdk: str  # "openai" or "anthropic"
    cls: str = "OpenAIInstrumentor"


OTHERS = (
    Other("openai-v2", "opentelemetry-instrumentation-openai-v2",
          "opentelemetry.instrumentation.openai_v2", "openai"),
    Other("openllmetry-openai", "opentelemetry-instrumentation-openai",
          "opentelemetry.instrumentation.openai", "openai"),
    Other("openllmetry-anthropic", "opentelemetry-instrumentation-anthropic",
          "opentelemetry.instrumentation.anthropic", "anthropic", "AnthropicInstrumentor"),
)  # fmt: skip

# Known product bugs, by (test, other instrumentation, order). Each test below that hits one is
# a strict xfail: it starts failing loudly the day the bug is fixed, so the entry can go.
#
# Found by this suite and fixed: a sync stream wrapped by openai-v2 or OpenLLMetry (whose stream
# wrappers define __next__ and __anext__) got our async proxy; messages.stream() was not recorded
# when OpenLLMetry had wrapped it first (we hooked the manager stream() returned, theirs, not the
# SDK's); with ours first, our uninstrument() left our switched-off layer inside theirs, so their
# uninstrument() never gave the SDK's original back.
KNOWN_BUGS: dict[tuple[str, str, str], str] = {}


def _cases(test: str) -> list[Any]:
    cases = []
    for other in OTHERS:
        for order in (THEIRS_FIRST, OURS_FIRST):
            reason = KNOWN_BUGS.get((test, other.id, order))
            marks = [pytest.mark.xfail(strict=True, reason=reason)] if reason else []
            cases.append(pytest.param(other, order, id=f"{other.id}-{order}", marks=marks))
    return cases


# -- keeping the SDK classes intact ------------------------------------------------------------


def _sdk_classes(sdk: str) -> list[type]:
    """Every class defined in the SDK's loaded modules (what any instrumentation may patch)."""
    importlib.import_module(sdk)
    importlib.import_module(f"{sdk}.resources")
    classes: list[type] = []
    for name, module in list(sys.modules.items()):
        if module is None or not (name == sdk or name.startswith(sdk + ".")):
            continue
        for value in list(vars(module).values()):
            if isinstance(value, type) and value.__module__ == name:
                classes.append(value)
    return classes


def _is_proxy(value: Any) -> bool:
    return hasattr(value, "__wrapped__") and hasattr(value, "_self_wrapper")


class ClassSnapshot:
    """The class dictionaries of an SDK; ``restore()`` undoes any wrapping done since (and our
    own patches), leaving alone what the SDK itself sets lazily (e.g. pydantic's schemas)."""

    def __init__(self, sdk: str) -> None:
        self.saved = {cls: dict(vars(cls)) for cls in _sdk_classes(sdk)}
        self.ours = set(_our_attributes(sdk))

    def restore(self) -> None:
        for cls, saved in self.saved.items():
            current = vars(cls)
            for name in [n for n in current if n not in saved and _is_proxy(current[n])]:
                delattr(cls, name)
            for name, value in saved.items():
                now = current.get(name)
                if now is not value and (_is_proxy(now) or (cls, name) in self.ours):
                    setattr(cls, name, value)


def _our_attributes(sdk: str) -> list[tuple[type, str]]:
    """(owner, attribute) of every method we wrap and every attribute we patch in ``sdk``."""
    by_sdk = {inst.instrumentation_dependencies()[0].split()[0]: inst for inst in _instrumentors()}
    instrumentor = by_sdk[sdk]
    recorder, _, _ = make_recorder()
    found: list[tuple[type, str]] = []
    for point in instrumentor.wrap_points(recorder):
        try:
            module = importlib.import_module(point.module)
        except ImportError:
            continue
        owner_name, _, attr = point.name.rpartition(".")
        owner = getattr(module, owner_name, None)
        if owner is not None and attr in vars(owner):
            found.append((owner, attr))
    found.extend(patch_targets(instrumentor))
    return found


def _name(key: tuple[type, str]) -> str:
    return f"{key[0].__name__}.{key[1]}"


def _instrumentors() -> list[Any]:
    return otel_llm_cost.instrumentors()


def _is_ours(obj: Any) -> bool:
    wrapper = getattr(obj, "_self_wrapper", None)
    return getattr(wrapper, "__module__", "").startswith("otel_llm_cost")


def _layers(obj: Any) -> list[Any]:
    """The wrapt layers of a class attribute, outermost first, down to the plain object."""
    layers = [obj]
    while hasattr(obj, "_self_wrapper") and hasattr(obj, "__wrapped__"):
        obj = obj.__wrapped__
        layers.append(obj)
    return layers


# -- the other instrumentation and ours, in a chosen order -------------------------------------


def _load_other(other: Other) -> type:
    try:
        version = importlib.metadata.version(other.distribution)
    except importlib.metadata.PackageNotFoundError:
        pytest.skip(f"{other.distribution} is not installed")
    try:
        module = importlib.import_module(other.module)
    except Exception as exc:  # an ImportError, or worse, from a package built for older SDKs
        sdk_version = importlib.metadata.version(other.sdk)
        pytest.skip(
            f"{other.distribution} {version} does not import with {other.sdk} {sdk_version}: "
            f"{type(exc).__name__}: {exc}"
        )
    return getattr(module, other.cls)  # type: ignore[no-any-return]


class Pair:
    """Our instrumentation and another one of the same SDK, each with its own providers."""

    def __init__(self, other: Other, order: str) -> None:
        self.other = other
        self.order = order
        self.snapshot = ClassSnapshot(other.sdk)
        self.original = {key: vars(key[0]).get(key[1]) for key in _our_attributes(other.sdk)}
        recorder, exporter, reader = make_recorder()
        self.recorder = recorder
        self.ours = Telemetry(exporter, reader)
        self.their_exporter = InMemorySpanExporter()
        self.their_tracer_provider = TracerProvider()
        self.their_tracer_provider.add_span_processor(SimpleSpanProcessor(self.their_exporter))
        self.their_meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
        self.their = _load_other(other)()
        self.before_ours: dict[tuple[type, str], Any] = {}

    def attributes(self) -> dict[tuple[type, str], Any]:
        return {key: vars(key[0]).get(key[1]) for key in self.original}

    def instrument_theirs(self) -> None:
        self.their.instrument(
            tracer_provider=self.their_tracer_provider, meter_provider=self.their_meter_provider
        )

    def instrument_ours(self) -> None:
        self.before_ours = self.attributes()
        otel_llm_cost.instrument(recorder=self.recorder)

    def instrument_both(self) -> None:
        if self.order == THEIRS_FIRST:
            self.instrument_theirs()
            self.instrument_ours()
        else:
            self.instrument_ours()
            self.instrument_theirs()

    def their_round_trip(self) -> set[str]:
        """Instrument and uninstrument theirs alone; the attributes it does not give back (some
        instrumentations leave wrappers behind). The SDK is restored afterwards."""
        self.instrument_theirs()
        self.their.uninstrument()
        left = {
            _name(key)
            for key, value in self.attributes().items()
            if value is not self.original[key]
        }
        self.snapshot.restore()
        assert all(self.attributes()[key] is value for key, value in self.original.items())
        return left

    def their_spans(self) -> list[Any]:
        return list(self.their_exporter.get_finished_spans())

    def close(self) -> None:
        try:
            otel_llm_cost.uninstrument()
        finally:
            try:
                if self.their.is_instrumented_by_opentelemetry:
                    self.their.uninstrument()
            finally:
                self.snapshot.restore()


@pytest.fixture
def pair() -> Iterator[Callable[[Other, str], Pair]]:
    made: list[Pair] = []

    def make(other: Other, order: str) -> Pair:
        made.append(Pair(other, order))
        return made[-1]

    yield make
    for p in made:
        p.close()


@pytest.fixture
def openai_server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def anthropic_server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as fake:
        yield fake


# -- workloads and the numbers the wire says ---------------------------------------------------


def _dump(chunks: Any) -> list[dict[str, Any]]:
    return [c.model_dump(exclude={"id", "created", "system_fingerprint"}) for c in chunks]


def _openai_workload(client: Any) -> tuple[int, dict[str, Any]]:
    """Calls of every kind; returns (number of calls, what the caller saw of each stream)."""
    seen: dict[str, Any] = {}
    client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
    seen["chat stream"] = _dump(
        client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES, stream=True)
    )
    seen["chat stream with usage"] = _dump(
        client.chat.completions.create(
            model=OPENAI_MODEL,
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    with client.chat.completions.stream(model=OPENAI_MODEL, messages=MESSAGES) as stream:
        seen["chat stream helper"] = [event.type for event in stream]
    client.responses.create(model=OPENAI_MODEL, input="hi")
    seen["responses stream"] = [
        e.type for e in client.responses.create(model=OPENAI_MODEL, input="hi", stream=True)
    ]
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
    return 7, seen


def _anthropic_workload(client: Any) -> tuple[int, dict[str, Any]]:
    seen: dict[str, Any] = {}
    client.messages.create(**ANTHROPIC_KW)
    seen["create stream"] = [
        e.model_dump(exclude={"message"})
        for e in client.messages.create(**ANTHROPIC_KW, stream=True)
    ]
    with client.messages.stream(**ANTHROPIC_KW) as stream:
        seen["stream helper text"] = list(stream.text_stream)
    with client.messages.stream(**ANTHROPIC_KW) as stream:
        seen["stream helper final"] = stream.get_final_message().content[0].text
    client.beta.messages.create(**ANTHROPIC_KW)
    return 5, seen


def _add(into: dict[str, int], parts: dict[str, int]) -> None:
    for key, value in parts.items():
        if value:
            into[key] = into.get(key, 0) + value


def openai_expected(server: FakeOpenAIServer) -> tuple[dict[str, int], float]:
    """Tokens by type and total cost, from the usage objects the fake sent."""
    tokens: dict[str, int] = {}
    cost = 0.0
    for exchange in server.exchanges:
        wire = exchange.usage
        assert wire is not None, f"no usage sent for {exchange.path}"
        model = exchange.request["model"]
        if exchange.path.endswith("/chat/completions"):
            cached = (wire.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
            reasoning = (wire.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
            _add(tokens, {"input": wire["prompt_tokens"] - cached, "cache_read": cached,
                          "output": wire["completion_tokens"] - reasoning,
                          "reasoning": reasoning})  # fmt: skip
            cost += openai_chat_wire_cost(model, wire)
        elif exchange.path.endswith("/responses"):
            cached = wire["input_tokens_details"]["cached_tokens"]
            reasoning = wire["output_tokens_details"]["reasoning_tokens"]
            _add(tokens, {"input": wire["input_tokens"] - cached, "cache_read": cached,
                          "output": wire["output_tokens"] - reasoning,
                          "reasoning": reasoning})  # fmt: skip
            cost += openai_responses_wire_cost(model, wire)
        elif exchange.path.endswith("/embeddings"):
            _add(tokens, {"input": wire["prompt_tokens"]})
            cost += genai_cost("openai", model, input_tokens=wire["prompt_tokens"])
        else:  # pragma: no cover - the workload calls nothing else
            raise AssertionError(exchange.path)
    return tokens, cost


def anthropic_expected(server: FakeAnthropicServer) -> tuple[dict[str, int], float]:
    tokens: dict[str, int] = {}
    cost = 0.0
    for exchange in server.exchanges:
        wire = exchange.usage
        assert wire is not None, f"no usage sent for {exchange.path}"
        read = wire.get("cache_read_input_tokens") or 0
        write = wire.get("cache_creation_input_tokens") or 0
        _add(tokens, {"input": wire.get("input_tokens") or 0, "cache_read": read,
                      "cache_write": write, "output": wire.get("output_tokens") or 0})  # fmt: skip
        cost += genai_cost(
            "anthropic",
            exchange.request["model"],
            input_tokens=(wire.get("input_tokens") or 0) + read + write,
            cache_read_tokens=read,
            cache_write_tokens=write,
            output_tokens=wire.get("output_tokens") or 0,
        )
    return tokens, cost


def _client(other: Other, server: Any) -> Any:
    if other.sdk == "openai":
        return openai.OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    return anthropic.Anthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)


def _async_client(other: Other, server: Any) -> Any:
    if other.sdk == "openai":
        return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)


def _server_for(other: Other, request: pytest.FixtureRequest) -> Any:
    return request.getfixturevalue(f"{other.sdk}_server")


def _one_call(other: Other, client: Any) -> None:
    if other.sdk == "openai":
        client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
    else:
        client.messages.create(**ANTHROPIC_KW)


def _requests(telemetry: Telemetry) -> float:
    return sum(p.value for p in telemetry.requests())


def check_exact(pair: Pair, server: Any, calls: int) -> None:
    """Our telemetry equals the wire: tokens, cost, one request and one span of ours per call."""
    assert len(server.exchanges) == calls
    expected = openai_expected if pair.other.sdk == "openai" else anthropic_expected
    tokens, cost = expected(server)
    assert pair.ours.tokens() == tokens
    assert close_to(pair.ours.total("llm.cost"), cost), (pair.ours.total("llm.cost"), cost)
    assert _requests(pair.ours) == calls
    sources = {p.attributes["llm.usage.source"] for p in pair.ours.requests()}
    assert sources == {"provider"}
    assert all("error.type" not in p.attributes for p in pair.ours.requests())
    spans = pair.ours.spans
    assert len(spans) == calls, [s.name for s in spans]
    assert {s.instrumentation_scope.name for s in spans} == {"otel_llm_cost"}


# -- tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("other", "order"), _cases("numbers"))
def test_numbers_exact_and_streams_unchanged(
    pair: Callable[[Other, str], Pair], other: Other, order: str, request: pytest.FixtureRequest
) -> None:
    server = _server_for(other, request)
    client = _client(other, server)
    workload = _openai_workload if other.sdk == "openai" else _anthropic_workload
    _, plain = workload(client)  # nothing instrumented: what the caller sees

    p = pair(other, order)
    p.instrument_both()
    server.reset()
    calls, seen = workload(client)

    assert seen == plain
    check_exact(p, server, calls)
    assert p.their_spans(), "the other instrumentation saw none of the calls"


@pytest.mark.parametrize(("other", "order"), _cases("async-numbers"))
async def test_async_numbers_exact(
    pair: Callable[[Other, str], Pair], other: Other, order: str, request: pytest.FixtureRequest
) -> None:
    server = _server_for(other, request)
    client = _async_client(other, server)
    p = pair(other, order)
    p.instrument_both()
    if other.sdk == "openai":
        await client.chat.completions.create(model=OPENAI_MODEL, messages=MESSAGES)
        stream = await client.chat.completions.create(
            model=OPENAI_MODEL, messages=MESSAGES, stream=True
        )
        chunks = [c async for c in stream]
        assert all(c.choices for c in chunks)  # the usage-only chunk we asked for is hidden
        await client.embeddings.create(model="text-embedding-3-small", input="hello")
    else:
        await client.messages.create(**ANTHROPIC_KW)
        stream = await client.messages.create(**ANTHROPIC_KW, stream=True)
        kinds = [e.type async for e in stream]
        assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
        async with client.messages.stream(**ANTHROPIC_KW) as helper:
            await helper.get_final_message()
    check_exact(p, server, len(server.exchanges))
    assert len(server.exchanges) == 3


@pytest.mark.parametrize(("other", "order"), _cases("restore"))
def test_uninstrument_restores_the_sdk_exactly(
    pair: Callable[[Other, str], Pair], other: Other, order: str
) -> None:
    p = pair(other, order)
    theirs_alone = p.their_round_trip()  # what their own uninstrument() leaves wrapped, without us
    original = p.attributes()
    p.instrument_both()
    wrapped = p.attributes()
    assert any(_is_ours(layer) for value in wrapped.values() for layer in _layers(value))

    otel_llm_cost.uninstrument()
    after = p.attributes()
    if order == THEIRS_FIRST:
        # Exactly what was there before our instrument(): their wrapper, or the SDK's own.
        changed = [_name(key) for key, value in after.items() if value is not p.before_ours[key]]
        assert changed == []
    else:
        for key, value in after.items():
            if _is_proxy(wrapped[key]) and not _is_ours(wrapped[key]):
                assert value is wrapped[key], _name(key)  # their wrapper, outermost, stays
            else:  # ours was outermost (or our plain patch): the SDK's own is back
                assert value is original[key], _name(key)

    p.their.uninstrument()
    left = {_name(key) for key, value in p.attributes().items() if value is not original[key]}
    assert left <= theirs_alone, "the SDK's original methods are not back after both uninstrumented"


@pytest.mark.parametrize(("other", "order"), _cases("still-works"))
def test_other_instrumentation_still_works_after_we_uninstrument(
    pair: Callable[[Other, str], Pair], other: Other, order: str, request: pytest.FixtureRequest
) -> None:
    server = _server_for(other, request)
    client = _client(other, server)
    p = pair(other, order)
    p.instrument_both()
    _one_call(other, client)
    assert _requests(p.ours) == 1
    assert len(p.their_spans()) == 1

    otel_llm_cost.uninstrument()
    p.their_exporter.clear()
    _one_call(other, client)
    _one_call(other, client)
    assert len(p.their_spans()) == 2, "the other instrumentation stopped recording"
    assert _requests(p.ours) == 1, "we still record after uninstrument()"
    assert len(p.ours.spans) == 1
