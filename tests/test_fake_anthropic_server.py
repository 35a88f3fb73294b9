"""The fake Anthropic server, driven by the real anthropic SDK (sync and async)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx2
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from otel_llm_cost.fakes import AnthropicExchange, AnthropicScript, FakeAnthropicServer
from otel_llm_cost.fakes.anthropic_server import DEFAULT_TEXT, DEFAULT_THINKING_TEXT

MODEL = "claude-sonnet-4-6"
MESSAGES = [{"role": "user", "content": "Say this is a test"}]
PROMPT_TOKENS = len("Say this is a test") // 4 + 1
DEFAULT_WORDS = len(DEFAULT_TEXT.split())
#: What a caller's loop raises when the connection is cut mid-body: recent anthropic releases
#: (2.17 here) wrap errors reading a stream body as APIConnectionError; older ones let httpx2's
#: RemoteProtocolError through.
STREAM_CUT_ERRORS = (httpx2.RemoteProtocolError, anthropic.APIConnectionError)


@pytest.fixture
def server() -> Iterator[FakeAnthropicServer]:
    with FakeAnthropicServer() as srv:
        yield srv


@pytest.fixture
def client(server: FakeAnthropicServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


def _async_client(server: FakeAnthropicServer) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=server.base_url, api_key="test", max_retries=0)


def _last(server: FakeAnthropicServer) -> AnthropicExchange:
    assert server.exchanges, "no request reached the server"
    return server.exchanges[-1]


def _create(client: anthropic.Anthropic, **kwargs: Any) -> Any:
    return client.messages.create(
        **{"model": MODEL, "max_tokens": 1024, "messages": MESSAGES, **kwargs}
    )


def _sse(body: str) -> list[tuple[str, dict[str, Any]]]:
    """(event name, decoded data) of every event of a raw SSE body; checks the two agree."""
    events = []
    for block in body.split("\n\n"):
        if not block:
            continue
        event_line, data_line = block.split("\n")
        name = event_line.removeprefix("event: ")
        data = json.loads(data_line.removeprefix("data: "))
        assert data["type"] == name
        events.append((name, data))
    return events


STREAM_TYPES_TEXT_ONLY = [
    "message_start",
    "content_block_start",
    *["content_block_delta"] * 3,
    "content_block_stop",
    "message_delta",
    "message_stop",
]


# -- server basics ------------------------------------------------------------------------


def test_base_url_and_lifecycle() -> None:
    srv = FakeAnthropicServer()
    with pytest.raises(RuntimeError):
        _ = srv.base_url
    srv.start()
    try:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}"
        assert srv.start() is srv
    finally:
        srv.stop()
    srv.stop()  # idempotent


def test_stop_with_open_keepalive_connection_is_prompt(server: FakeAnthropicServer) -> None:
    c = anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0)
    _create(c)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    c.close()


def test_script_rejects_more_1h_cache_writes_than_cache_writes() -> None:
    with pytest.raises(ValueError, match="cache_creation_1h_input_tokens"):
        AnthropicScript(cache_creation_input_tokens=10, cache_creation_1h_input_tokens=11)


# -- messages.create ----------------------------------------------------------------------


def test_create_non_stream(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    message = _create(client)
    ex = _last(server)
    assert (ex.path, ex.query, ex.status, ex.stream) == ("/v1/messages", "", 200, False)
    assert ex.events == 0 and ex.request_id.startswith("req_01")
    assert ex.request["messages"] == MESSAGES and ex.request["max_tokens"] == 1024
    # anthropic 2.x authenticates with a bearer token, older versions with x-api-key.
    assert "test" in (ex.headers.get("x-api-key"), ex.headers.get("authorization", "")[7:])
    assert "anthropic-version" in ex.headers
    assert message.id.startswith("msg_01")
    assert (message.type, message.role, message.model) == ("message", "assistant", MODEL)
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == DEFAULT_TEXT
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert message.usage.to_dict() == ex.usage
    # Defaults: len(input text) // 4 + 1 in, one token per word of the answer out, no cache.
    assert ex.usage == {
        "input_tokens": PROMPT_TOKENS,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": DEFAULT_WORDS,
        "service_tier": "standard",
    }


def test_create_non_stream_wire_format(server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="Hi.", response_model="claude-sonnet-4-6-20260101"))
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as c:
        raw = c.messages.with_raw_response.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, system="Be brief."
        )
        body = json.loads(raw.http_response.read())
        headers = raw.http_response.headers
    assert headers["content-type"] == "application/json"
    assert headers["request-id"] == _last(server).request_id
    assert "anthropic-organization-id" in headers
    assert list(body) == [
        "model",
        "id",
        "type",
        "role",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    ]
    assert body["model"] == "claude-sonnet-4-6-20260101"
    assert body["content"] == [{"type": "text", "text": "Hi."}]
    assert body["stop_sequence"] is None
    assert body["usage"] == _last(server).usage
    # The system prompt counts as input.
    assert body["usage"]["input_tokens"] == len("Be brief.\nSay this is a test") // 4 + 1


def test_usage_overrides_and_determinism(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.enqueue(AnthropicScript(input_tokens=17, output_tokens=220))
    first = _create(client)
    second, third = _create(client), _create(client)
    assert (first.usage.input_tokens, first.usage.output_tokens) == (17, 220)
    assert second.usage == third.usage
    assert server.exchanges[1].usage == server.exchanges[2].usage


def test_cache_read_and_creation_non_stream(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.enqueue(
        AnthropicScript(input_tokens=4, output_tokens=187, cache_creation_input_tokens=1163),
        AnthropicScript(input_tokens=4, output_tokens=202, cache_read_input_tokens=1163),
        AnthropicScript(
            input_tokens=4, cache_creation_input_tokens=1000, cache_creation_1h_input_tokens=600
        ),
    )
    write, read, mixed = _create(client), _create(client), _create(client)
    for message, ex in zip((write, read, mixed), server.exchanges, strict=True):
        assert message.usage.to_dict() == ex.usage
    assert (write.usage.cache_creation_input_tokens, write.usage.cache_read_input_tokens) == (
        1163,
        0,
    )
    assert write.usage.cache_creation is not None
    assert write.usage.cache_creation.ephemeral_5m_input_tokens == 1163
    assert write.usage.cache_creation.ephemeral_1h_input_tokens == 0
    assert (read.usage.cache_creation_input_tokens, read.usage.cache_read_input_tokens) == (0, 1163)
    # input_tokens excludes the cache counts, as the API reports it.
    assert read.usage.input_tokens == 4
    assert mixed.usage.cache_creation is not None
    assert mixed.usage.cache_creation.ephemeral_5m_input_tokens == 400
    assert mixed.usage.cache_creation.ephemeral_1h_input_tokens == 600
    assert mixed.usage.cache_creation_input_tokens == 1000


def test_thinking_non_stream(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="3", thinking_text="Count the r's: s-t-r-a-w-b-e-r-r-y."))
    message = _create(client, thinking={"type": "enabled", "budget_tokens": 1024})
    assert [block.type for block in message.content] == ["thinking", "text"]
    thinking = message.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "Count the r's: s-t-r-a-w-b-e-r-r-y."
    assert thinking.signature
    assert message.content[1].type == "text" and message.content[1].text == "3"
    # output_tokens includes thinking: 1 text piece + 4 thinking words.
    assert message.usage.output_tokens == 1 + 4
    assert message.usage.to_dict() == _last(server).usage


def test_thinking_defaults_follow_the_request(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    enabled = _create(client, thinking={"type": "enabled", "budget_tokens": 1024})
    assert enabled.content[0].type == "thinking"
    assert enabled.content[0].thinking == DEFAULT_THINKING_TEXT
    assert [b.type for b in _create(client).content] == ["text"]
    server.enqueue(AnthropicScript(thinking_text=""))
    silenced = _create(client, thinking={"type": "enabled", "budget_tokens": 1024})
    assert [b.type for b in silenced.content] == ["text"]


def test_create_stream_events(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="This is a test.", chunks=3, output_tokens=108))
    events = list(_create(client, stream=True))
    ex = _last(server)
    assert ex.stream and ex.status == 200
    assert [e.type for e in events] == STREAM_TYPES_TEXT_ONLY  # the SDK drops the ping
    assert ex.events == len(events) + 1
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    # message_start: input and cache counts, a placeholder output count.
    assert start.message.usage.input_tokens == PROMPT_TOKENS
    assert start.message.usage.output_tokens == 1
    assert start.message.content == [] and start.message.stop_reason is None
    # message_delta: the stop reason and the cumulative output count only.
    assert delta.delta.stop_reason == "end_turn"
    assert delta.usage.to_dict() == {"output_tokens": 108}
    assert ex.usage == {**start.message.usage.to_dict(), **delta.usage.to_dict()}
    pieces = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert "".join(pieces) == "This is a test."


def test_stream_wire_format(server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="a b", cache_read_input_tokens=1165, input_tokens=4))
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as c:
        raw = c.messages.with_raw_response.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
        )
        body = raw.http_response.read().decode()
        headers = raw.http_response.headers
    assert headers["content-type"] == "text/event-stream; charset=utf-8"
    assert '\n\nevent: ping\ndata: {"type": "ping"}\n\n' in body
    events = _sse(body)
    assert [name for name, _ in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    message = events[0][1]["message"]
    assert message["content"] == [] and message["stop_sequence"] is None
    assert message["usage"] == {
        "input_tokens": 4,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 1165,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "output_tokens": 1,
        "service_tier": "standard",
    }
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert events[3][1]["delta"] == {"type": "text_delta", "text": "a"}
    assert events[6][1] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 2},
    }
    assert events[7][1] == {"type": "message_stop"}
    assert _last(server).usage == {**message["usage"], "output_tokens": 2}


def test_thinking_stream_wire_format(server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="3 times.", thinking_text="Let me count."))
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as c:
        raw = c.messages.with_raw_response.create(
            model=MODEL,
            max_tokens=2048,
            messages=MESSAGES,
            stream=True,
            thinking={"type": "enabled", "budget_tokens": 1024},
        )
        events = _sse(raw.http_response.read().decode())
    blocks = [
        (name, data.get("index"), data.get("content_block", data.get("delta", {})).get("type"))
        for name, data in events
    ]
    assert blocks == [
        ("message_start", None, None),
        ("content_block_start", 0, "thinking"),
        ("ping", None, None),
        *[("content_block_delta", 0, "thinking_delta")] * 3,
        ("content_block_delta", 0, "signature_delta"),
        ("content_block_stop", 0, None),
        ("content_block_start", 1, "text"),
        *[("content_block_delta", 1, "text_delta")] * 2,
        ("content_block_stop", 1, None),
        ("message_delta", None, None),
        ("message_stop", None, None),
    ]
    assert events[1][1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert events[6][1]["delta"]["signature"]
    assert events[-2][1]["usage"] == {"output_tokens": 3 + 2}


# -- the messages.stream() helper ---------------------------------------------------------


def test_stream_helper_iterate_and_final_message(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.enqueue(AnthropicScript(text="Streaming helper works.", cache_creation_input_tokens=7))
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
        texts = [e.text for e in stream if e.type == "text"]
        final = stream.get_final_message()
    ex = _last(server)
    assert ex.headers["x-stainless-stream-helper"] == "messages"
    assert "".join(texts) == "Streaming helper works."
    assert final.content[0].type == "text"
    assert final.content[0].text == "Streaming helper works."
    assert final.stop_reason == "end_turn"
    assert final.usage.to_dict() == ex.usage
    assert final.usage.cache_creation_input_tokens == 7
    assert final.usage.output_tokens == 3


def test_stream_helper_text_stream(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.enqueue(AnthropicScript(text="one two three", output_tokens=21))
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert pieces == ["one", " two", " three"]
    assert final.usage.output_tokens == 21
    assert final.usage.to_dict() == _last(server).usage


def test_stream_helper_until_done(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="done", cache_read_input_tokens=5))
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
        stream.until_done()
        assert stream.get_final_text() == "done"
        final = stream.get_final_message()
    assert final.usage.cache_read_input_tokens == 5
    assert final.usage.to_dict() == _last(server).usage


def test_stream_helper_thinking(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="Three.", thinking_text="r appears 3 times"))
    with client.messages.stream(
        model=MODEL,
        max_tokens=2048,
        messages=MESSAGES,
        thinking={"type": "enabled", "budget_tokens": 1024},
    ) as stream:
        kinds = [e.type for e in stream if e.type in ("thinking", "signature", "text")]
        final = stream.get_final_message()
    assert kinds == ["thinking"] * 4 + ["signature", "text"]
    thinking = final.content[0]
    assert thinking.type == "thinking"
    assert thinking.thinking == "r appears 3 times" and thinking.signature
    assert final.content[1].type == "text" and final.content[1].text == "Three."
    assert final.usage.output_tokens == 4 + 1
    assert final.usage.to_dict() == _last(server).usage


def test_stream_cache_counts_including_1h(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.enqueue(
        AnthropicScript(
            input_tokens=4,
            output_tokens=201,
            cache_read_input_tokens=100,
            cache_creation_input_tokens=1165,
            cache_creation_1h_input_tokens=1000,
        )
    )
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    usage = final.usage
    assert usage.to_dict() == _last(server).usage
    assert (usage.input_tokens, usage.output_tokens) == (4, 201)
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (100, 1165)
    assert usage.cache_creation is not None
    assert usage.cache_creation.ephemeral_1h_input_tokens == 1000
    assert usage.cache_creation.ephemeral_5m_input_tokens == 165


def test_usage_in_message_delta(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    script = AnthropicScript(
        input_tokens=9, output_tokens=12, cache_read_input_tokens=3, usage_in_message_delta=True
    )
    server.enqueue(script, script)
    events = list(_create(client, stream=True))
    delta = events[-2]
    assert delta.type == "message_delta"
    assert delta.usage.to_dict() == {
        "input_tokens": 9,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 3,
        "output_tokens": 12,
    }
    with client.messages.stream(model=MODEL, max_tokens=1024, messages=MESSAGES) as stream:
        final = stream.get_final_message()
    assert final.usage.to_dict() == _last(server).usage
    assert (final.usage.input_tokens, final.usage.cache_read_input_tokens) == (9, 3)
    assert final.usage.output_tokens == 12


# -- beta namespace and count_tokens ------------------------------------------------------


def test_beta_create_and_stream(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(
        AnthropicScript(text='{"joke": "x", "rating": 7}', input_tokens=222, output_tokens=39),
        AnthropicScript(text="Why?", cache_read_input_tokens=11),
    )
    message = client.beta.messages.create(
        model=MODEL, max_tokens=1024, messages=MESSAGES, betas=["structured-outputs-2025-11-13"]
    )
    created = _last(server)
    assert created.path == "/v1/messages"
    assert created.headers["anthropic-beta"] == "structured-outputs-2025-11-13"
    assert message.content[0].type == "text"
    assert message.content[0].text == '{"joke": "x", "rating": 7}'
    assert message.usage.to_dict() == created.usage
    assert (message.usage.input_tokens, message.usage.output_tokens) == (222, 39)

    with client.beta.messages.stream(
        model=MODEL, max_tokens=1024, messages=MESSAGES, betas=["tools-2024-04-04"]
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    streamed = _last(server)
    assert streamed.stream and streamed.headers["anthropic-beta"] == "tools-2024-04-04"
    assert texts == ["Why?"]
    assert final.usage.to_dict() == streamed.usage
    assert final.usage.cache_read_input_tokens == 11


def test_beta_query_string_is_accepted(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    # anthropic < 1.0 sent the beta namespace to /v1/messages?beta=true (as recorded); 2.x does not.
    message = client.beta.messages.create(
        model=MODEL, max_tokens=64, messages=MESSAGES, extra_query={"beta": "true"}
    )
    ex = _last(server)
    assert (ex.path, ex.query, ex.status) == ("/v1/messages", "beta=true", 200)
    assert message.usage.to_dict() == ex.usage
    count = client.beta.messages.count_tokens(
        model=MODEL, messages=MESSAGES, extra_query={"beta": "true"}
    )
    assert count.input_tokens == PROMPT_TOKENS
    assert (_last(server).path, _last(server).query) == ("/v1/messages/count_tokens", "beta=true")


def test_count_tokens(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(
        AnthropicScript(input_tokens=4, cache_read_input_tokens=1163),
        AnthropicScript(input_tokens=14),
    )
    count = client.messages.count_tokens(model=MODEL, messages=MESSAGES)
    ex = _last(server)
    assert (ex.path, ex.status, ex.usage) == ("/v1/messages/count_tokens", 200, None)
    # The whole prompt, cached part included.
    assert count.input_tokens == 4 + 1163
    beta = client.beta.messages.count_tokens(
        model=MODEL, messages=MESSAGES, betas=["token-counting-2024-11-01"]
    )
    assert beta.input_tokens == 14
    # (anthropic 2.12 repeats the beta on count_tokens: "token-counting-2024-11-01,token-...")
    assert "token-counting-2024-11-01" in _last(server).headers["anthropic-beta"]
    assert client.messages.count_tokens(model=MODEL, messages=MESSAGES).input_tokens == (
        PROMPT_TOKENS
    )


# -- errors and cuts ----------------------------------------------------------------------


def test_rate_limit_429(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(status=429))
    with pytest.raises(anthropic.RateLimitError) as info:
        _create(client)
    error = info.value
    assert error.status_code == 429 and error.type == "rate_limit_error"
    assert error.request_id is not None and error.request_id.startswith("req_01")
    assert isinstance(error.body, dict)
    assert error.body["type"] == "error" and error.body["request_id"] == error.request_id
    assert error.response.headers["retry-after-ms"] == "1"
    assert error.response.headers["anthropic-ratelimit-requests-remaining"] == "0"
    ex = _last(server)
    assert (ex.status, ex.usage) == (429, None)
    assert len(server.exchanges) == 1


def test_overloaded_529(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(status=529), AnthropicScript(status=500))
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        _create(client)
    assert overloaded.value.status_code == 529
    assert overloaded.value.type == "overloaded_error"
    assert overloaded.value.api_message == "Overloaded"
    with pytest.raises(anthropic.InternalServerError) as internal:
        _create(client)
    assert internal.value.type == "api_error"
    assert [e.status for e in server.exchanges] == [529, 500]


def test_retried_quickly_when_client_allows(server: FakeAnthropicServer) -> None:
    server.enqueue(
        AnthropicScript(status=429), AnthropicScript(status=529), AnthropicScript(text="ok")
    )
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=2) as c:
        started = time.monotonic()
        message = _create(c)
        elapsed = time.monotonic() - started
    assert message.content[0].type == "text" and message.content[0].text == "ok"
    assert [e.status for e in server.exchanges] == [429, 529, 200]
    assert [e.headers["x-stainless-retry-count"] for e in server.exchanges] == ["0", "1", "2"]
    assert elapsed < 0.5


def test_error_status_on_stream_request(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.enqueue(AnthropicScript(status=429))
    with (
        pytest.raises(anthropic.RateLimitError),
        client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES),
    ):
        pass
    ex = _last(server)
    assert ex.stream is True and ex.events == 0 and ex.usage is None


def test_unknown_path_404(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="kept"))
    with pytest.raises(anthropic.NotFoundError) as info:
        client.post("/v1/nope", cast_to=object, body={})
    assert info.value.type == "not_found_error"
    assert _last(server).status == 404
    # A 404 does not use up the queued script.
    assert _create(client).content[0].text == "kept"


def test_bad_request_400(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    with pytest.raises(anthropic.BadRequestError) as info:
        client.post("/v1/messages", cast_to=object, body={"model": MODEL, "messages": MESSAGES})
    assert info.value.type == "invalid_request_error"
    assert info.value.api_message == "max_tokens: Field required"
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model=MODEL, max_tokens=64, messages=[])
    assert [e.status for e in server.exchanges] == [400, 400]


def test_cut_after_raises_in_callers_loop(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.enqueue(AnthropicScript(text="one two three four five", cut_after=5))
    received = []
    stream = _create(client, stream=True)
    with pytest.raises(STREAM_CUT_ERRORS):
        for event in stream:
            received.append(event.type)
    ex = _last(server)
    assert ex.events == 5  # message_start, content_block_start, ping, 2 deltas
    assert received == ["message_start", "content_block_start", *["content_block_delta"] * 2]
    # Only message_start's usage went out: its output count is the placeholder.
    assert ex.usage is not None and ex.usage["output_tokens"] == 1


def test_cut_after_stream_helper(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(cut_after=0))
    with (
        pytest.raises(STREAM_CUT_ERRORS),
        client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream,
    ):
        stream.get_final_message()
    assert _last(server).events == 0 and _last(server).usage is None


def test_error_event_after_raises(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="a b c d", error_event_after=4))
    received = []
    with pytest.raises(anthropic.APIStatusError) as info:
        for event in _create(client, stream=True):
            received.append(event.type)
    error = info.value
    assert error.type == "overloaded_error" and error.api_message == "Overloaded"
    assert error.status_code == 200  # the stream's own status: the error came in the body
    assert received == ["message_start", "content_block_start", "content_block_delta"]
    ex = _last(server)
    assert ex.events == 4 + 1 and ex.status == 200
    assert ex.usage is not None and ex.usage["output_tokens"] == 1


def test_error_event_wire_format(server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(error_event_after=1))
    with anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0) as c:
        raw = c.messages.with_raw_response.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, stream=True
        )
        events = _sse(raw.http_response.read().decode())  # the body ends cleanly
    assert [name for name, _ in events] == ["message_start", "error"]
    assert events[1][1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


def test_error_event_in_stream_helper(
    client: anthropic.Anthropic, server: FakeAnthropicServer
) -> None:
    server.enqueue(AnthropicScript(error_event_after=7))
    with (
        pytest.raises(anthropic.APIStatusError, match="overloaded_error"),
        client.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream,
    ):
        list(stream.text_stream)


def test_fifo_queue_and_reset(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(text="first"), AnthropicScript(text="second"))
    assert server.pending == 2
    texts = [_create(client).content[0].text for _ in range(3)]
    assert texts == ["first", "second", DEFAULT_TEXT]
    server.enqueue(AnthropicScript(text="unused"))
    server.reset()
    assert server.exchanges == [] and server.pending == 0


def test_delays(client: anthropic.Anthropic, server: FakeAnthropicServer) -> None:
    server.enqueue(AnthropicScript(delay=0.05, chunk_delay=0.01, chunks=2))
    started = time.monotonic()
    list(_create(client, stream=True))
    # 9 events: message_start, block start, ping, 2 deltas, block stop, delta, stop.
    assert time.monotonic() - started >= 0.05 + 7 * 0.01


# -- the SDK's own OpenTelemetry span -----------------------------------------------------


def test_sdk_span_reads_the_fake_usage(server: FakeAnthropicServer) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    server.enqueue(
        AnthropicScript(
            input_tokens=4,
            output_tokens=30,
            cache_read_input_tokens=100,
            cache_creation_input_tokens=50,
            cache_creation_1h_input_tokens=20,
        )
    )
    options: Any = {"tracer_provider": provider, "propagation": False}
    with (
        anthropic.Anthropic(
            base_url=server.base_url, api_key="test", max_retries=0, open_telemetry=options
        ) as c,
        c.messages.stream(model=MODEL, max_tokens=64, messages=MESSAGES) as stream,
    ):
        stream.until_done()
    (span,) = exporter.get_finished_spans()
    attributes = dict(span.attributes or {})
    assert span.name == "anthropic.messages.create"
    assert attributes["gen_ai.provider.name"] == "anthropic"
    assert attributes["gen_ai.request.stream"] is True
    # The SDK's input count is the whole prompt: input_tokens plus both cache counts.
    assert attributes["gen_ai.usage.input_tokens"] == 4 + 100 + 50
    assert attributes["gen_ai.usage.output_tokens"] == 30
    assert attributes["gen_ai.usage.cache_read.input_tokens"] == 100
    assert attributes["gen_ai.usage.cache_write.input_tokens"] == 50
    assert attributes["anthropic.usage.cache_creation.ephemeral_1h_input_tokens"] == 20
    assert attributes["anthropic.request.id"] == _last(server).request_id
    assert "traceparent" not in _last(server).headers

    with anthropic.Anthropic(
        base_url=server.base_url,
        api_key="test",
        max_retries=0,
        open_telemetry={"tracer_provider": provider, "traces": False},
    ) as quiet:
        _create(quiet)
    assert len(exporter.get_finished_spans()) == 1
    provider.shutdown()


# -- async --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_create_and_stream(server: FakeAnthropicServer) -> None:
    server.enqueue(
        AnthropicScript(text="async works", cache_read_input_tokens=2),
        AnthropicScript(input_tokens=7, cache_creation_input_tokens=3),
    )
    async with _async_client(server) as c:
        stream = await c.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
        events = [event async for event in stream]
        message = await c.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
    first, second = server.exchanges
    start, delta = events[0], events[-2]
    assert start.type == "message_start" and delta.type == "message_delta"
    assert {**start.message.usage.to_dict(), **delta.usage.to_dict()} == first.usage
    texts = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert "".join(texts) == "async works"
    assert message.usage.to_dict() == second.usage
    assert (message.usage.input_tokens, message.usage.cache_creation_input_tokens) == (7, 3)
    assert second.headers["x-stainless-async"].startswith("async")


@pytest.mark.asyncio
async def test_async_helpers_beta_and_count_tokens(server: FakeAnthropicServer) -> None:
    server.enqueue(
        AnthropicScript(text="x y", thinking_text="hmm", usage_in_message_delta=True),
        AnthropicScript(text="beta"),
        AnthropicScript(input_tokens=17),
        AnthropicScript(text="z"),
    )
    async with _async_client(server) as c:
        async with c.messages.stream(
            model=MODEL,
            max_tokens=2048,
            messages=MESSAGES,
            thinking={"type": "enabled", "budget_tokens": 1024},
        ) as stream:
            pieces = [text async for text in stream.text_stream]
            final = await stream.get_final_message()
        async with c.beta.messages.stream(
            model=MODEL, max_tokens=64, messages=MESSAGES, betas=["tools-2024-04-04"]
        ) as beta_stream:
            await beta_stream.until_done()
            beta_final = await beta_stream.get_final_message()
        count = await c.messages.count_tokens(model=MODEL, messages=MESSAGES)
        beta_message = await c.beta.messages.create(
            model=MODEL, max_tokens=64, messages=MESSAGES, betas=["x-2025-01-01"]
        )
    helper_ex, beta_ex, _count_ex, beta_create_ex = server.exchanges
    assert pieces == ["x", " y"]
    assert [block.type for block in final.content] == ["thinking", "text"]
    assert final.usage.to_dict() == helper_ex.usage
    assert beta_final.usage.to_dict() == beta_ex.usage
    assert beta_ex.headers["anthropic-beta"] == "tools-2024-04-04"
    assert count.input_tokens == 17
    assert beta_message.usage.to_dict() == beta_create_ex.usage


@pytest.mark.asyncio
async def test_async_errors_cut_and_error_event(server: FakeAnthropicServer) -> None:
    server.enqueue(
        AnthropicScript(status=429),
        AnthropicScript(status=529),
        AnthropicScript(cut_after=2),
        AnthropicScript(error_event_after=3),
    )
    async with _async_client(server) as c:
        with pytest.raises(anthropic.RateLimitError):
            await c.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES)
        with pytest.raises(anthropic.OverloadedError):
            await c.messages.count_tokens(model=MODEL, messages=MESSAGES)
        stream = await c.messages.create(model=MODEL, max_tokens=64, messages=MESSAGES, stream=True)
        seen = []
        with pytest.raises(STREAM_CUT_ERRORS):
            async for event in stream:
                seen.append(event.type)
        assert seen == ["message_start", "content_block_start"]
        with pytest.raises(anthropic.APIStatusError) as info:
            async with c.messages.stream(
                model=MODEL, max_tokens=64, messages=MESSAGES
            ) as helper_stream:
                await helper_stream.get_final_message()
    assert info.value.type == "overloaded_error"
    assert [e.status for e in server.exchanges] == [429, 529, 200, 200]
    assert server.exchanges[2].usage is not None
    assert server.exchanges[3].events == 3 + 1
