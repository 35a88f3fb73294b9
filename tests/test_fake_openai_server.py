"""The fake OpenAI server, driven by the real openai SDK (sync and async)."""

from __future__ import annotations

import base64
import json
import struct
import time
from collections.abc import Iterator

import openai
import pytest
from pydantic import BaseModel

from otel_llm_cost.fakes import Exchange, FakeOpenAIServer, Script
from otel_llm_cost.fakes.openai_server import DEFAULT_TEXT, EMBEDDING_DIMENSIONS

MESSAGES = [{"role": "user", "content": "Say this is a test"}]


@pytest.fixture
def server() -> Iterator[FakeOpenAIServer]:
    with FakeOpenAIServer() as srv:
        yield srv


@pytest.fixture
def client(server: FakeOpenAIServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        yield c


def _async_client(server: FakeOpenAIServer) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=server.base_url, api_key="test", max_retries=0)


def _last(server: FakeOpenAIServer) -> Exchange:
    assert server.exchanges, "no request reached the server"
    return server.exchanges[-1]


class Joke(BaseModel):
    setup: str
    rating: int


class Review(BaseModel):
    title: str
    jokes: list[Joke]
    best: Joke
    note: str | None


# -- server basics ------------------------------------------------------------------------


def test_base_url_and_lifecycle() -> None:
    srv = FakeOpenAIServer()
    with pytest.raises(RuntimeError):
        _ = srv.base_url
    srv.start()
    try:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}/v1"
        assert srv.start() is srv
    finally:
        srv.stop()
    srv.stop()  # idempotent


def test_stop_with_open_keepalive_connection_is_prompt(server: FakeOpenAIServer) -> None:
    c = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
    c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    c.close()


# -- chat completions ---------------------------------------------------------------------


def test_chat_create_non_stream(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    ex = _last(server)
    assert (ex.path, ex.status, ex.stream, ex.events) == ("/v1/chat/completions", 200, False, 0)
    assert ex.request["messages"] == MESSAGES
    assert ex.headers["authorization"] == "Bearer test"
    assert completion.object == "chat.completion"
    assert completion.id.startswith("chatcmpl-")
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == DEFAULT_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.to_dict() == ex.usage
    # Defaults: len(input text) // 4 + 1 and one token per word of the answer.
    assert completion.usage.prompt_tokens == len("Say this is a test") // 4 + 1
    assert completion.usage.completion_tokens == len(DEFAULT_TEXT.split())
    assert completion.usage.total_tokens == 5 + len(DEFAULT_TEXT.split())


def test_chat_usage_is_deterministic(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    first = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    second = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert first.usage == second.usage
    assert server.exchanges[0].usage == server.exchanges[1].usage


def test_chat_n_choices_and_overrides(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(
        Script(
            text="Hi.",
            prompt_tokens=1149,
            cached_tokens=1024,
            completion_tokens=228,
            reasoning_tokens=192,
            response_model="gpt-4o-mini-2024-07-18",
        )
    )
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert {c.message.content for c in completion.choices} == {"Hi."}
    assert completion.model == "gpt-4o-mini-2024-07-18"
    usage = completion.usage
    assert usage is not None and usage.to_dict() == _last(server).usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1149, 228, 1377)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 1024
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 192


def test_chat_cached_and_reasoning_are_included_by_default(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    server.enqueue(Script(text="one two", cached_tokens=100, reasoning_tokens=50))
    completion = client.chat.completions.create(model="gpt-5-nano", messages=MESSAGES)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 5 + 100
    assert completion.usage.completion_tokens == 2 + 50


def test_chat_stream_without_usage(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text="This is a test.", chunks=3))
    chunks = list(client.chat.completions.create(model="gpt-4", messages=MESSAGES, stream=True))
    ex = _last(server)
    assert ex.stream and ex.status == 200
    assert ex.usage is None
    assert ex.events == len(chunks) + 1  # + data: [DONE]
    assert all(c.usage is None for c in chunks)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[0].choices[0].delta.content == ""
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "This is a test."
    assert len(chunks) == 1 + 3 + 1  # role, 3 pieces, finish
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert len({c.id for c in chunks}) == 1


def test_chat_stream_include_usage(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text="This is a test.", prompt_tokens=12, completion_tokens=5))
    stream = client.chat.completions.create(
        model="gpt-4",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    ex = _last(server)
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.to_dict() == ex.usage
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (
        12,
        5,
        17,
    )
    assert all(c.usage is None for c in chunks[:-1])
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert ex.events == len(chunks) + 1


def test_chat_stream_wire_format(server: FakeOpenAIServer) -> None:
    """The raw SSE body: "usage": null on every chunk, then a choices-less usage chunk, [DONE]."""
    server.enqueue(Script(text="a b"))
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        raw = c.chat.completions.with_raw_response.create(
            model="gpt-4",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        body = raw.http_response.read().decode()
    assert raw.http_response.headers["content-type"].startswith("text/event-stream")
    blocks = [b for b in body.split("\n\n") if b]
    assert all(b.startswith("data: ") for b in blocks)
    assert blocks[-1] == "data: [DONE]"
    payloads = [json.loads(b[len("data: ") :]) for b in blocks[:-1]]
    assert all("usage" in p for p in payloads)
    assert [p["usage"] is None for p in payloads] == [True] * 4 + [False]
    assert payloads[-1]["choices"] == []
    assert payloads[-1]["usage"] == _last(server).usage
    assert payloads[0]["choices"][0]["delta"] == {
        "role": "assistant",
        "content": "",
        "refusal": None,
    }


def test_chat_stream_usage_always_deepseek_style(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    server.enqueue(Script(usage_always=True, prompt_tokens=32, completion_tokens=324))
    chunks = list(
        client.chat.completions.create(model="deepseek-chat", messages=MESSAGES, stream=True)
    )
    ex = _last(server)
    last = chunks[-1]
    assert last.choices[0].finish_reason == "stop"
    assert last.usage is not None and last.usage.to_dict() == ex.usage
    assert last.usage.total_tokens == 356
    assert all(c.usage is None for c in chunks[:-1])
    assert all(c.choices for c in chunks)


def test_chat_stream_n_choices_single_usage_chunk(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    server.enqueue(Script(text="x y"))
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            n=2,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    texts = {0: "", 1: ""}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
    assert texts == {0: "x y", 1: "x y"}
    assert [c for c in chunks if c.usage is not None] == [chunks[-1]]
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4


def test_chat_stream_omit_usage(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(omit_usage=True))
    chunks = list(
        client.chat.completions.create(
            model="some-local-model",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks)
    assert _last(server).usage is None


def test_chat_non_stream_omit_usage(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(omit_usage=True))
    completion = client.chat.completions.create(model="m", messages=MESSAGES)
    assert completion.usage is None
    assert _last(server).usage is None


def test_chat_stream_helper_final_completion(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    server.enqueue(Script(text="Streaming helper works.", cached_tokens=3))
    with client.chat.completions.stream(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream_options={"include_usage": True},
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    ex = _last(server)
    assert "".join(deltas) == "Streaming helper works."
    assert final.choices[0].message.content == "Streaming helper works."
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None and final.usage.to_dict() == ex.usage
    assert final.usage.prompt_tokens_details is not None
    assert final.usage.prompt_tokens_details.cached_tokens == 3


def test_chat_stream_helper_with_response_format(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    server.enqueue(Script(text='{"setup": "Why?", "rating": 5}', chunks=4))
    with client.chat.completions.stream(
        model="gpt-4o", messages=MESSAGES, response_format=Joke
    ) as stream:
        final = stream.get_final_completion()
    assert final.choices[0].message.parsed == Joke(setup="Why?", rating=5)
    assert _last(server).request["response_format"]["type"] == "json_schema"


def test_chat_parse_with_default_schema_instance(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    completion = client.chat.completions.parse(
        model="gpt-4o", messages=MESSAGES, response_format=Review
    )
    parsed = completion.choices[0].message.parsed
    assert parsed == Review(title="", jokes=[], best=Joke(setup="", rating=0), note=None)
    assert completion.usage is not None and completion.usage.to_dict() == _last(server).usage


def test_chat_parse_with_scripted_text(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text='{"setup": "OpenTelemetry walks into a bar", "rating": 7}'))
    completion = client.chat.completions.parse(
        model="gpt-4o", messages=MESSAGES, response_format=Joke
    )
    assert completion.choices[0].message.parsed == Joke(
        setup="OpenTelemetry walks into a bar", rating=7
    )


# -- responses ----------------------------------------------------------------------------


def test_responses_create_non_stream(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text="This is a test.", response_model="gpt-4o-mini-2024-07-18"))
    response = client.responses.create(
        model="gpt-4o-mini", input="Say this is a test", instructions="You are helpful."
    )
    ex = _last(server)
    assert ex.path == "/v1/responses" and not ex.stream
    assert response.id.startswith("resp_")
    assert response.status == "completed"
    assert response.model == "gpt-4o-mini-2024-07-18"
    assert response.instructions == "You are helpful."
    assert response.output_text == "This is a test."
    assert response.usage is not None and response.usage.to_dict() == ex.usage
    expected_input = len("You are helpful.\nSay this is a test") // 4 + 1
    assert response.usage.input_tokens == expected_input
    assert response.usage.output_tokens == 4
    assert response.usage.total_tokens == expected_input + 4


def test_responses_reasoning_and_cache(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(
        Script(
            text="3", prompt_tokens=11, completion_tokens=327, reasoning_tokens=320, cached_tokens=4
        )
    )
    response = client.responses.create(model="gpt-5-nano", input="Count r's in strawberry")
    assert [item.type for item in response.output] == ["reasoning", "message"]
    assert response.output_text == "3"
    usage = response.usage
    assert usage is not None and usage.to_dict() == _last(server).usage
    assert usage.output_tokens_details.reasoning_tokens == 320
    assert usage.input_tokens_details.cached_tokens == 4
    assert usage.total_tokens == 338


def test_responses_create_stream(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text="This is a test.", chunks=5))
    events = list(client.responses.create(model="gpt-4o-mini", input="hi", stream=True))
    ex = _last(server)
    types = [e.type for e in events]
    assert types == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 5,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert ex.events == len(events)
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.to_dict() == ex.usage
    assert events[0].type == "response.created" and events[0].response.usage is None
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "This is a test."


def test_responses_stream_wire_has_event_lines(server: FakeOpenAIServer) -> None:
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0) as c:
        raw = c.responses.with_raw_response.create(model="gpt-4o-mini", input="hi", stream=True)
        body = raw.http_response.read().decode()
    blocks = [b for b in body.split("\n\n") if b]
    for block in blocks:
        event_line, data_line = block.split("\n")
        name = event_line.removeprefix("event: ")
        assert json.loads(data_line.removeprefix("data: "))["type"] == name
    assert "[DONE]" not in body


def test_responses_stream_helper_final_response(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    server.enqueue(Script(text="Final answer.", reasoning_tokens=9))
    with client.responses.stream(model="gpt-5.4", input="hi") as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == "Final answer."
    assert final.output_text == "Final answer."
    assert final.usage is not None and final.usage.to_dict() == _last(server).usage
    assert final.usage.output_tokens_details.reasoning_tokens == 9


def test_responses_parse_with_text_format(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    response = client.responses.parse(model="gpt-4o", input="joke", text_format=Review)
    assert response.output_parsed == Review(
        title="", jokes=[], best=Joke(setup="", rating=0), note=None
    )
    server.enqueue(Script(text='{"setup": "s", "rating": 1}'))
    with client.responses.stream(model="gpt-4o", input="joke", text_format=Joke) as stream:
        final = stream.get_final_response()
    assert final.output_parsed == Joke(setup="s", rating=1)


def test_responses_omit_usage(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(omit_usage=True), Script(omit_usage=True))
    assert client.responses.create(model="m", input="hi").usage is None
    with client.responses.stream(model="m", input="hi") as stream:
        assert stream.get_final_response().usage is None
    assert [e.usage for e in server.exchanges] == [None, None]


# -- embeddings ---------------------------------------------------------------------------


def test_embeddings_default_base64(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    inputs = ["first test string", "second test string", "third"]
    result = client.embeddings.create(model="text-embedding-3-small", input=inputs)
    ex = _last(server)
    # openai 3.x asks for base64 unless the caller chooses, and decodes float32 itself.
    assert ex.request["encoding_format"] == "base64"
    assert [d.index for d in result.data] == [0, 1, 2]
    assert all(len(d.embedding) == EMBEDDING_DIMENSIONS for d in result.data)
    assert all(isinstance(x, float) for x in result.data[0].embedding)
    assert result.usage.to_dict() == ex.usage
    assert result.usage.prompt_tokens == result.usage.total_tokens

    floats = client.embeddings.create(
        model="text-embedding-3-small", input=inputs, encoding_format="float"
    )
    assert "encoding_format" in _last(server).request
    assert [d.embedding for d in floats.data] == [d.embedding for d in result.data]


def test_embeddings_explicit_base64_and_dimensions(
    client: openai.OpenAI, server: FakeOpenAIServer
) -> None:
    server.enqueue(Script(prompt_tokens=24))
    result = client.embeddings.create(
        model="text-embedding-3-small", input="x", encoding_format="base64", dimensions=4
    )
    raw = result.data[0].embedding
    assert isinstance(raw, str)  # the SDK leaves an explicitly requested format alone
    assert len(struct.unpack("<4f", base64.b64decode(raw))) == 4
    assert result.usage.prompt_tokens == 24
    assert _last(server).usage == {"prompt_tokens": 24, "total_tokens": 24}


# -- errors and cuts ----------------------------------------------------------------------


def test_rate_limit_429(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(status=429))
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert info.value.status_code == 429
    assert info.value.code == "rate_limit_exceeded"
    ex = _last(server)
    assert (ex.status, ex.usage) == (429, None)
    assert len(server.exchanges) == 1


def test_rate_limit_retried_quickly_when_client_allows(server: FakeOpenAIServer) -> None:
    server.enqueue(Script(status=429), Script(status=500), Script(text="ok"))
    with openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=2) as c:
        started = time.monotonic()
        completion = c.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        elapsed = time.monotonic() - started
    assert completion.choices[0].message.content == "ok"
    assert [e.status for e in server.exchanges] == [429, 500, 200]
    assert [e.headers["x-stainless-retry-count"] for e in server.exchanges] == ["0", "1", "2"]
    assert elapsed < 0.5


def test_server_error_500(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(status=500))
    with pytest.raises(openai.InternalServerError) as info:
        client.responses.create(model="gpt-4o-mini", input="hi")
    assert info.value.status_code == 500
    assert isinstance(info.value.body, dict) and info.value.body["type"] == "server_error"
    assert _last(server).status == 500


def test_error_status_on_stream_request(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(status=429))
    with pytest.raises(openai.RateLimitError):
        client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
    assert _last(server).stream is True and _last(server).events == 0


def test_unknown_path_404(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text="kept"))
    with pytest.raises(openai.NotFoundError) as info:
        client.post("/nope", cast_to=object, body={})
    assert "Invalid URL" in info.value.message
    assert _last(server).status == 404
    # A 404 does not use up the queued script.
    completion = client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert completion.choices[0].message.content == "kept"


def test_bad_request_400(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[])
    assert _last(server).status == 400


def test_cut_after_raises_in_callers_loop(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text="one two three four five", cut_after=3))
    received = []
    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
    )
    with pytest.raises(openai.APIConnectionError):
        for chunk in stream:
            received.append(chunk)
    ex = _last(server)
    assert len(received) == 3 == ex.events
    assert ex.usage is None  # cut before the usage chunk


def test_cut_after_responses_stream(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(cut_after=6))
    with (
        pytest.raises(openai.APIConnectionError),
        client.responses.stream(model="gpt-4o-mini", input="hi") as stream,
    ):
        stream.get_final_response()
    assert _last(server).events == 6 and _last(server).usage is None


def test_fifo_queue_and_reset(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text="first"), Script(text="second"))
    assert server.pending == 2
    contents = [
        client.chat.completions.create(model="m", messages=MESSAGES).choices[0].message.content
        for _ in range(3)
    ]
    assert contents == ["first", "second", DEFAULT_TEXT]
    server.enqueue(Script(text="unused"))
    server.reset()
    assert server.exchanges == [] and server.pending == 0


def test_delays(client: openai.OpenAI, server: FakeOpenAIServer) -> None:
    server.enqueue(Script(delay=0.05, chunk_delay=0.01, chunks=3))
    started = time.monotonic()
    list(client.chat.completions.create(model="m", messages=MESSAGES, stream=True))
    assert time.monotonic() - started >= 0.05 + 4 * 0.01


# -- async --------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_async_chat_stream_and_create(server: FakeOpenAIServer) -> None:
    server.enqueue(Script(text="async works", cached_tokens=2), Script(prompt_tokens=7))
    async with _async_client(server) as c:
        stream = await c.chat.completions.create(
            model="gpt-4",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        completion = await c.chat.completions.create(model="gpt-4", messages=MESSAGES)
    first, second = server.exchanges
    assert chunks[-1].usage is not None and chunks[-1].usage.to_dict() == first.usage
    assert (
        "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices) == "async works"
    )
    assert completion.usage is not None and completion.usage.to_dict() == second.usage
    assert second.headers["x-stainless-async"].startswith("async")


@pytest.mark.asyncio
async def test_async_helpers_and_embeddings(server: FakeOpenAIServer) -> None:
    async with _async_client(server) as c:
        async with c.chat.completions.stream(
            model="gpt-4o-mini", messages=MESSAGES, stream_options={"include_usage": True}
        ) as chat_stream:
            chat_final = await chat_stream.get_final_completion()
        async with c.responses.stream(model="gpt-4o-mini", input="hi") as resp_stream:
            resp_final = await resp_stream.get_final_response()
        parsed = await c.chat.completions.parse(
            model="gpt-4o", messages=MESSAGES, response_format=Joke
        )
        embeddings = await c.embeddings.create(model="text-embedding-3-small", input="hello")
    chat_ex, resp_ex, parse_ex, emb_ex = server.exchanges
    assert chat_final.usage is not None and chat_final.usage.to_dict() == chat_ex.usage
    assert resp_final.usage is not None and resp_final.usage.to_dict() == resp_ex.usage
    assert resp_final.output_text == DEFAULT_TEXT
    assert parsed.choices[0].message.parsed == Joke(setup="", rating=0)
    assert parsed.usage is not None and parsed.usage.to_dict() == parse_ex.usage
    assert len(embeddings.data[0].embedding) == EMBEDDING_DIMENSIONS
    assert embeddings.usage.to_dict() == emb_ex.usage


@pytest.mark.asyncio
async def test_async_errors_and_cut(server: FakeOpenAIServer) -> None:
    server.enqueue(Script(status=429), Script(cut_after=2))
    async with _async_client(server) as c:
        with pytest.raises(openai.RateLimitError):
            await c.responses.create(model="gpt-4o-mini", input="hi")
        stream = await c.responses.create(model="gpt-4o-mini", input="hi", stream=True)
        seen = []
        with pytest.raises(openai.APIConnectionError):
            async for event in stream:
                seen.append(event.type)
    assert seen == ["response.created", "response.in_progress"]
    assert server.exchanges[-1].usage is None
