"""The real openai SDK over loopback HTTP against a fake server speaking OpenAI's wire format.

Every expected number comes from what the server sent (its usage object) and from genai-prices.
"""

from __future__ import annotations

import asyncio
import gc
from collections.abc import Iterator
from typing import Any

import openai
import pytest
from pydantic import BaseModel

import otel_llm_cost
from otel_llm_cost.fakes.openai_server import FakeOpenAIServer, Script

from .conftest import Telemetry
from .expected import close_to, openai_chat_wire_cost, openai_responses_wire_cost
from .sdk_compat import http_library, openai_chat_helpers

MESSAGES = [{"role": "user", "content": "How much does this cost?"}]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as fake:
        yield fake


@pytest.fixture
def client(server: FakeOpenAIServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.base_url, api_key="sk-test-secret", max_retries=0)


@pytest.fixture
def aclient(server: FakeOpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="sk-test-secret", max_retries=0)


def partition_of_chat_wire(wire: dict[str, Any]) -> dict[str, int]:
    """The contract's partition, read by hand from an OpenAI usage object."""
    cached = (wire.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (wire.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    parts = {
        "input": wire["prompt_tokens"] - cached,
        "cache_read": cached,
        "output": wire["completion_tokens"] - reasoning,
        "reasoning": reasoning,
    }
    return {k: v for k, v in parts.items() if v}


def only_request(telemetry: Telemetry) -> dict[str, Any]:
    requests = telemetry.requests()
    assert len(requests) == 1, requests
    assert requests[0].value == 1
    return requests[0].attributes


def check_chat_call(
    telemetry: Telemetry, server: FakeOpenAIServer, model: str, response_model: str
) -> None:
    """One exchange, one span, one request, partition and cost equal to the wire's."""
    assert len(server.exchanges) == 1
    wire = server.exchanges[0].usage
    assert wire is not None
    assert telemetry.tokens() == partition_of_chat_wire(wire)
    expected = openai_chat_wire_cost(response_model, wire)
    assert close_to(telemetry.total("llm.cost"), expected), (telemetry.total("llm.cost"), expected)
    spans = telemetry.spans
    assert len(spans) == 1
    span = spans[0]
    assert span.name == f"chat {model}"
    attrs = span.attributes
    assert attrs["gen_ai.provider.name"] == "openai"
    assert attrs["gen_ai.request.model"] == model
    assert attrs["gen_ai.response.model"] == response_model
    assert attrs["gen_ai.usage.input_tokens"] == wire["prompt_tokens"]
    assert attrs["gen_ai.usage.output_tokens"] == wire["completion_tokens"]
    assert close_to(attrs["llm.cost.usd"], expected)
    assert attrs["server.address"] == "127.0.0.1"
    request = only_request(telemetry)
    assert request["llm.usage.source"] == "provider"
    assert request["llm.price.status"] == "catalog"
    assert "error.type" not in request


# -- chat completions


def test_chat_create_prices_cached_and_reasoning_tokens(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(
        Script(
            prompt_tokens=1200,
            cached_tokens=1024,
            completion_tokens=300,
            reasoning_tokens=256,
            response_model="gpt-4o-mini-2024-07-18",
        )
    )
    result = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert result.usage is not None and result.usage.prompt_tokens == 1200
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert telemetry.tokens() == {"input": 176, "cache_read": 1024, "output": 44, "reasoning": 256}
    span = telemetry.spans[0]
    assert span.attributes["gen_ai.usage.cache_read.input_tokens"] == 1024
    assert span.attributes["gen_ai.usage.reasoning.output_tokens"] == 256
    assert span.attributes["gen_ai.response.finish_reasons"] == ("stop",)


def _chunks_seen(stream: Any) -> list[dict[str, Any]]:
    return [chunk.model_dump(exclude={"id", "created", "system_fingerprint"}) for chunk in stream]


def test_chat_stream_gets_usage_and_caller_sees_unchanged_chunks(
    server: FakeOpenAIServer, client: openai.OpenAI, settings: Any
) -> None:
    server.enqueue(Script(chunks=5, prompt_tokens=40, completion_tokens=5))
    plain = _chunks_seen(
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    )
    assert server.exchanges[0].usage is None  # nobody asked for usage

    from .conftest import make_recorder

    recorder, exporter, reader = make_recorder(settings)
    otel_llm_cost.instrument(recorder=recorder)
    try:
        server.reset()
        server.enqueue(Script(chunks=5, prompt_tokens=40, completion_tokens=5))
        seen = _chunks_seen(
            client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
        )
    finally:
        otel_llm_cost.uninstrument()
    telemetry = Telemetry(exporter, reader)
    assert server.exchanges[0].request["stream_options"] == {"include_usage": True}
    assert seen == plain  # the usage-only chunk we asked for is hidden
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")
    points = telemetry.points("gen_ai.client.operation.time_to_first_chunk")
    assert len(points) == 1 and points[0].count == 1


def test_chat_stream_caller_asked_for_usage_sees_it(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    stream = client.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")


def test_stream_usage_injection_can_be_switched_off(
    server: FakeOpenAIServer, client: openai.OpenAI, monkeypatch: pytest.MonkeyPatch
) -> None:
    from otel_llm_cost.config import Settings

    from .conftest import make_recorder

    monkeypatch.setenv("OTEL_LLM_COST_STREAM_USAGE", "false")
    recorder, exporter, reader = make_recorder(Settings.from_env())
    otel_llm_cost.instrument(recorder=recorder)
    try:
        list(client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True))
    finally:
        otel_llm_cost.uninstrument()
    assert "stream_options" not in server.exchanges[0].request
    request = only_request(Telemetry(exporter, reader))
    assert request["llm.usage.source"] == "estimated"


def test_deepseek_style_usage_without_asking(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(Script(usage_always=True, prompt_tokens=32, completion_tokens=9))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True, stream_options=None
        )
    )
    assert any(c.usage is not None for c in chunks)
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")


def test_chat_stream_helper(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    helpers = openai_chat_helpers(client)
    with helpers.stream(model="gpt-4o-mini", messages=MESSAGES) as stream:
        kinds = [event.type for event in stream]
        final = stream.get_final_completion()
    assert "content.delta" in kinds
    assert final.usage is None  # as uninstrumented: the caller did not ask for usage
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")


class Answer(BaseModel):
    answer: str


def test_chat_parse(telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    server.enqueue(Script(text='{"answer": "42"}', prompt_tokens=50, completion_tokens=7))
    result = openai_chat_helpers(client).parse(
        model="gpt-4o-mini", messages=MESSAGES, response_format=Answer
    )
    assert result.choices[0].message.parsed == Answer(answer="42")
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")


async def test_async_chat_create_and_stream(
    telemetry: Telemetry, server: FakeOpenAIServer, aclient: openai.AsyncOpenAI
) -> None:
    await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stream = await aclient.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    async with stream:
        contents = [c.choices[0].delta.content async for c in stream if c.choices]
    assert contents
    helpers = openai_chat_helpers(aclient)
    async with helpers.stream(model="gpt-4o-mini", messages=MESSAGES) as helper:
        await helper.get_final_completion()
    assert len(server.exchanges) == 3
    expected = sum(openai_chat_wire_cost("gpt-4o-mini", e.usage) for e in server.exchanges)
    assert close_to(telemetry.total("llm.cost"), expected)
    assert sum(p.value for p in telemetry.requests()) == 3
    assert len(telemetry.spans) == 3


# -- stream endings


def test_stream_broken_off_is_recorded_once_as_estimated(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(Script(chunks=20))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    for i, _ in enumerate(stream):
        if i == 2:
            break
    stream.close()
    stream.close()
    request = only_request(telemetry)
    assert request["llm.usage.source"] == "estimated"
    assert "error.type" not in request
    tokens = telemetry.tokens()
    assert tokens["input"] > 0 and tokens["output"] > 0
    assert len(telemetry.spans) == 1


def test_abandoned_stream_is_finalized_by_gc(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    next(iter(stream))
    del stream
    gc.collect()
    assert only_request(telemetry)["llm.usage.source"] == "estimated"


def test_stream_cut_by_network_counts_as_failed_with_estimated_tokens(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(Script(chunks=20, cut_after=4))
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    with pytest.raises(Exception) as caught:
        for _ in stream:
            pass
    request = only_request(telemetry)
    assert request["error.type"] == type(caught.value).__qualname__
    assert request["llm.usage.source"] == "estimated"
    assert telemetry.tokens()["output"] > 0


def test_exception_in_caller_loop_is_not_a_failure(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    with (
        pytest.raises(KeyError),
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True) as s,
    ):
        for _ in s:
            raise KeyError("caller bug")
    request = only_request(telemetry)
    assert "error.type" not in request


# -- errors


def test_rate_limit_is_a_failed_request_without_cost(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(Script(status=429))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    request = only_request(telemetry)
    assert request["error.type"] == "429"
    assert request["llm.usage.source"] == "none"
    assert telemetry.points("llm.cost") == []
    duration = telemetry.points("gen_ai.client.operation.duration")
    assert duration[0].attributes["error.type"] == "429"
    assert telemetry.spans[0].status.status_code.name == "ERROR"


def test_retries_inside_the_sdk_are_one_request(
    telemetry: Telemetry, server: FakeOpenAIServer
) -> None:
    client = openai.OpenAI(base_url=server.base_url, api_key="k", max_retries=2)
    server.enqueue(Script(status=500), Script(status=503), Script())
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert len(server.exchanges) == 3
    assert "error.type" not in only_request(telemetry)
    assert len(telemetry.spans) == 1


def test_connection_refused_is_recorded_by_class_name(telemetry: Telemetry) -> None:
    client = openai.OpenAI(base_url="http://127.0.0.1:9/v1", api_key="k", max_retries=0)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert only_request(telemetry)["error.type"] == "APIConnectionError"


# -- Responses API


def check_responses_call(telemetry: Telemetry, server: FakeOpenAIServer, model: str) -> None:
    wire = server.exchanges[-1].usage
    assert wire is not None
    expected = openai_responses_wire_cost(model, wire)
    assert close_to(telemetry.total("llm.cost"), expected)
    cached = wire["input_tokens_details"]["cached_tokens"]
    reasoning = wire["output_tokens_details"]["reasoning_tokens"]
    parts = {
        "input": wire["input_tokens"] - cached,
        "cache_read": cached,
        "output": wire["output_tokens"] - reasoning,
        "reasoning": reasoning,
    }
    assert telemetry.tokens() == {k: v for k, v in parts.items() if v}
    assert len(telemetry.spans) == 1
    assert telemetry.spans[0].name == f"chat {model}"
    assert only_request(telemetry)["llm.usage.source"] == "provider"


def test_responses_create(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(
        Script(prompt_tokens=500, cached_tokens=128, completion_tokens=90, reasoning_tokens=64)
    )
    client.responses.create(model="gpt-5", input="Think, then answer.")
    check_responses_call(telemetry, server, "gpt-5")


def test_responses_stream(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    events = [e.type for e in client.responses.create(model="gpt-4o-mini", input="hi", stream=True)]
    assert events[-1] == "response.completed"
    check_responses_call(telemetry, server, "gpt-4o-mini")


def test_responses_stream_helper(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    with client.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        for _ in stream:
            pass
        final = stream.get_final_response()
    assert final.usage is not None
    check_responses_call(telemetry, server, "gpt-4o-mini")


def test_responses_parse(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(Script(text='{"answer": "yes"}'))
    result = client.responses.parse(model="gpt-4o-mini", input="hi", text_format=Answer)
    assert result.output_parsed == Answer(answer="yes")
    check_responses_call(telemetry, server, "gpt-4o-mini")


async def test_async_responses(
    telemetry: Telemetry, server: FakeOpenAIServer, aclient: openai.AsyncOpenAI
) -> None:
    await aclient.responses.create(model="gpt-4o-mini", input="hi")
    async with aclient.responses.stream(model="gpt-4o-mini", input="hi") as stream:
        await stream.get_final_response()
    expected = sum(openai_responses_wire_cost("gpt-4o-mini", e.usage) for e in server.exchanges)
    assert close_to(telemetry.total("llm.cost"), expected)
    assert sum(p.value for p in telemetry.requests()) == 2


# -- embeddings


def test_embeddings(telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI) -> None:
    client.embeddings.create(model="text-embedding-3-small", input=["a", "b c"])
    wire = server.exchanges[0].usage
    assert telemetry.tokens() == {"input": wire["prompt_tokens"]}
    from .expected import genai_cost

    expected = genai_cost("openai", "text-embedding-3-small", input_tokens=wire["prompt_tokens"])
    assert close_to(telemetry.total("llm.cost"), expected)
    assert telemetry.spans[0].name == "embeddings text-embedding-3-small"
    assert only_request(telemetry)["gen_ai.operation.name"] == "embeddings"


async def test_async_embeddings(
    telemetry: Telemetry, server: FakeOpenAIServer, aclient: openai.AsyncOpenAI
) -> None:
    await aclient.embeddings.create(model="text-embedding-3-small", input="hello")
    assert telemetry.tokens() == {"input": server.exchanges[0].usage["prompt_tokens"]}


# -- raw responses


def test_with_raw_response(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MESSAGES)
    assert raw.headers.get("content-type", "").startswith("application/json")
    completion = raw.parse()
    assert completion.usage is not None
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")


def test_with_raw_response_stream(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    raw = client.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    )
    chunks = list(raw.parse())
    assert all(c.choices for c in chunks)
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")


def test_with_streaming_response(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES
    ) as response:
        completion = response.parse()
    assert completion.usage is not None
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")


async def test_async_with_streaming_response_stream(
    telemetry: Telemetry, server: FakeOpenAIServer, aclient: openai.AsyncOpenAI
) -> None:
    async with aclient.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MESSAGES, stream=True
    ) as response:
        stream = await response.parse()
        async for _ in stream:
            pass
    check_chat_call(telemetry, server, "gpt-4o-mini", "gpt-4o-mini")


# -- attribution and pricing status


def test_usage_context_attribution(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    with otel_llm_cost.usage_context(agent="support-bot", user="u-1", feature="faq", tenant="acme"):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    request = only_request(telemetry)
    assert request["gen_ai.agent.name"] == "support-bot"
    assert request["llm.feature"] == "faq"
    assert "user.id" not in request and "llm.tenant" not in request
    span = telemetry.spans[0].attributes
    assert span["user.id"] == "u-1" and span["llm.tenant"] == "acme"


async def test_attribution_follows_asyncio_tasks(
    telemetry: Telemetry, server: FakeOpenAIServer, aclient: openai.AsyncOpenAI
) -> None:
    async def call(agent: str) -> None:
        with otel_llm_cost.usage_context(agent=agent):
            await asyncio.sleep(0)
            await aclient.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    await asyncio.gather(*(call(f"agent-{i % 3}") for i in range(9)))
    agents = sorted(p.attributes["gen_ai.agent.name"] for p in telemetry.requests())
    assert agents == ["agent-0", "agent-1", "agent-2"]
    assert all(p.value == 3 for p in telemetry.requests())


def test_unknown_model_is_unpriced_but_counted(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    server.enqueue(Script(prompt_tokens=11, completion_tokens=3))
    client.chat.completions.create(model="ft:my-private-model", messages=MESSAGES)
    request = only_request(telemetry)
    assert request["llm.price.status"] == "unpriced"
    assert telemetry.tokens() == {"input": 11, "output": 3}
    assert telemetry.points("llm.cost") == []
    assert "llm.cost.usd" not in telemetry.spans[0].attributes


def test_api_key_never_in_telemetry(
    telemetry: Telemetry, server: FakeOpenAIServer, client: openai.OpenAI
) -> None:
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    dumped = repr([s.to_json() for s in telemetry.spans]) + repr(
        telemetry.reader.get_metrics_data()
    )
    assert "sk-test-secret" not in dumped
    assert "How much does this cost" not in dumped  # no prompt text by default


def test_uninstrument_restores_methods() -> None:
    from openai.resources.chat.completions import Completions

    before = Completions.create
    otel_llm_cost.instrument()
    assert Completions.create is not before
    otel_llm_cost.uninstrument()
    assert Completions.create is before


# -- OpenAI-compatible providers ------------------------------------------------------------------


class _ToLoopback:
    """A transport (of the SDK's HTTP library: httpx2 or httpx) that sends every request to the
    fake server on 127.0.0.1, whatever host the client was configured with (so no traffic leaves
    the machine)."""

    def __init__(self, port: int) -> None:
        self._inner = http_library("openai").HTTPTransport()
        self._port = port

    def handle_request(self, request: Any) -> Any:
        path = request.url.path
        request.url = request.url.copy_with(
            scheme="http", host="127.0.0.1", port=self._port, path=path[path.find("/v1/") :]
        )
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


@pytest.mark.parametrize(
    ("base_url", "provider", "model"),
    [
        ("https://api.deepseek.com/v1", "deepseek", "deepseek-chat"),
        ("https://api.mistral.ai/v1", "mistral_ai", "mistral-large-latest"),
        ("https://api.groq.com/openai/v1", "groq", "llama-3.3-70b-versatile"),
    ],
)
def test_openai_compatible_provider_is_attributed_and_priced(
    telemetry: Telemetry, server: FakeOpenAIServer, base_url: str, provider: str, model: str
) -> None:
    from .expected import genai_cost

    transport = _ToLoopback(server.port)
    http_client = http_library("openai").Client(transport=transport)
    client = openai.OpenAI(base_url=base_url, api_key="k", http_client=http_client, max_retries=0)
    server.enqueue(Script(prompt_tokens=1000, completion_tokens=200))
    client.chat.completions.create(model=model, messages=MESSAGES)
    request = only_request(telemetry)
    assert request["gen_ai.provider.name"] == provider
    assert request["llm.price.status"] == "catalog"
    ids = {"deepseek": "deepseek", "mistral_ai": "mistral", "groq": "groq"}
    expected = genai_cost(ids[provider], model, input_tokens=1000, output_tokens=200)
    assert close_to(telemetry.total("llm.cost"), expected)
    assert telemetry.spans[0].attributes["server.address"] == base_url.split("/")[2]


async def test_cancelled_task_reading_a_stream_is_not_a_failure(
    telemetry: Telemetry, server: FakeOpenAIServer, aclient: openai.AsyncOpenAI
) -> None:
    server.enqueue(Script(chunks=50, chunk_delay=0.05))

    async def read() -> None:
        stream = await aclient.chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, stream=True
        )
        async for _ in stream:
            pass

    task = asyncio.create_task(read())
    await asyncio.sleep(0.3)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    request = only_request(telemetry)
    assert "error.type" not in request
    assert request["llm.usage.source"] == "estimated"


async def test_async_parse_helpers(
    telemetry: Telemetry, server: FakeOpenAIServer, aclient: openai.AsyncOpenAI
) -> None:
    server.enqueue(Script(text='{"answer": "a"}'), Script(text='{"answer": "b"}'))
    chat = await openai_chat_helpers(aclient).parse(
        model="gpt-4o-mini", messages=MESSAGES, response_format=Answer
    )
    resp = await aclient.responses.parse(model="gpt-4o-mini", input="hi", text_format=Answer)
    assert chat.choices[0].message.parsed == Answer(answer="a")
    assert resp.output_parsed == Answer(answer="b")
    chat_wire, resp_wire = (e.usage for e in server.exchanges)
    expected = openai_chat_wire_cost("gpt-4o-mini", chat_wire) + openai_responses_wire_cost(
        "gpt-4o-mini", resp_wire
    )
    assert close_to(telemetry.total("llm.cost"), expected)
    assert len(telemetry.spans) == 2


def test_responses_stream_events_unchanged_by_instrumentation(
    server: FakeOpenAIServer, client: openai.OpenAI, settings: Any
) -> None:
    def events() -> list[dict[str, Any]]:
        out = []
        for event in client.responses.create(model="gpt-4o-mini", input="hi", stream=True):
            data = event.model_dump()
            data.pop("response", None)  # carries ids and timestamps that differ per call
            data.pop("item_id", None)
            data.pop("item", None)
            data.pop("obfuscation", None)
            out.append(data)
        return out

    plain = events()
    from .conftest import make_recorder

    recorder, _, _ = make_recorder(settings)
    otel_llm_cost.instrument(recorder=recorder)
    try:
        seen = events()
    finally:
        otel_llm_cost.uninstrument()
    assert seen == plain
    assert server.exchanges[1].request == server.exchanges[0].request  # nothing injected
