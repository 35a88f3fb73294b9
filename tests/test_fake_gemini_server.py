"""The fake Gemini / Vertex AI server, driven by the real SDKs.

google-genai (Gemini API and Vertex AI backends, sync and async) and the legacy
google-generativeai SDK (REST, and gRPC through :func:`legacy_grpc_transport`).
"""

from __future__ import annotations

import http.client
import json
import time
import warnings
from collections.abc import AsyncIterator, Iterator
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import google.oauth2.credentials
import httpx2
import pytest
import requests
from google import genai
from google.api_core import exceptions as core_exceptions
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import BaseModel

from otel_llm_cost.fakes import FakeGeminiServer, GeminiExchange, GeminiScript
from otel_llm_cost.fakes.gemini_server import (
    DEFAULT_TEXT,
    EMBEDDING_DIMENSIONS,
    GRPC_SERVICE,
    legacy_grpc_transport,
)

from .sdk_compat import closing_client

with warnings.catch_warnings():
    # The legacy SDK (and google.api_core) warn at import time that they are deprecated.
    warnings.simplefilter("ignore", FutureWarning)
    import google.generativeai as legacy_genai
    from google.generativeai import client as legacy_client

MODEL = "gemini-2.5-flash"
LEGACY_MODEL = "gemini-1.5-flash"
PROMPT = "Say this is a test"
PROMPT_TOKENS = len(PROMPT) // 4 + 1  # the fake's default estimate: 5
ANSWER_TOKENS = len(DEFAULT_TEXT.split())  # one per word: 10
VERTEX_PREFIX = "/v1beta1/projects/p/locations/us-central1/publishers/google/models/"
LEGACY_USAGE_FIELDS = (
    "promptTokenCount",
    "candidatesTokenCount",
    "totalTokenCount",
    "cachedContentTokenCount",
)


# -- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture
def server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer() as srv:
        yield srv


@pytest.fixture
def grpc_server() -> Iterator[FakeGeminiServer]:
    with FakeGeminiServer(enable_grpc=True) as srv:
        yield srv


def _token_credentials() -> google.auth.credentials.Credentials:
    """Credentials that hold a token and never expire: never refreshed, no metadata server."""
    return google.oauth2.credentials.Credentials(token="test-token")


def _gemini_client(server: FakeGeminiServer, **options: Any) -> genai.Client:
    return genai.Client(
        api_key="k", http_options=types.HttpOptions(base_url=server.base_url, **options)
    )


def _vertex_client(server: FakeGeminiServer) -> genai.Client:
    return genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=_token_credentials(),
        http_options=types.HttpOptions(base_url=server.base_url),
    )


@pytest.fixture
def gemini(server: FakeGeminiServer) -> Iterator[genai.Client]:
    with closing_client(_gemini_client(server)) as client:
        yield client


@pytest.fixture
def vertex(server: FakeGeminiServer) -> Iterator[genai.Client]:
    with closing_client(_vertex_client(server)) as client:
        yield client


@pytest.fixture
def legacy() -> Iterator[Any]:
    """The legacy SDK with its global configuration restored (and its clients closed) afterwards.

    ``genai.configure()`` stores the configuration and the clients it builds in a module global;
    each test configures afresh and leaves no client behind.
    """
    manager = legacy_client._client_manager
    saved = (manager.client_config, manager.default_metadata, manager.clients)
    manager.clients = {}
    try:
        yield legacy_genai
    finally:
        for name, client in manager.clients.items():
            if not name.endswith("_async"):  # async ones are closed in their own event loop
                client.transport.close()
        manager.client_config, manager.default_metadata, manager.clients = saved


def _configure_legacy_rest(legacy: Any, server: FakeGeminiServer) -> None:
    legacy.configure(
        api_key="k", transport="rest", client_options={"api_endpoint": server.base_url}
    )


def _configure_legacy_grpc(legacy: Any, server: FakeGeminiServer) -> None:
    legacy.configure(
        api_key="k",
        transport=legacy_grpc_transport(),
        client_options={"api_endpoint": server.grpc_target},
    )


async def _close_legacy_async_clients() -> None:
    for name, client in legacy_client._client_manager.clients.items():
        if name.endswith("_async"):
            await client.transport.close()


@pytest.fixture
async def legacy_grpc_async(grpc_server: FakeGeminiServer, legacy: Any) -> AsyncIterator[Any]:
    """The legacy SDK configured for the gRPC fake, async clients closed in the test's loop."""
    _configure_legacy_grpc(legacy, grpc_server)
    try:
        yield legacy
    finally:
        await _close_legacy_async_clients()


def _last(server: FakeGeminiServer) -> GeminiExchange:
    assert server.exchanges, "no request reached the server"
    return server.exchanges[-1]


def _usage(metadata: Any) -> dict[str, Any] | None:
    """google-genai's parsed usage_metadata, in the wire's JSON form."""
    if metadata is None:
        return None
    return metadata.model_dump(mode="json", by_alias=True, exclude_none=True)


def _legacy_usage(metadata: Any) -> dict[str, int]:
    """The legacy SDK's parsed UsageMetadata (proto-plus), camelCase, zero fields dropped."""
    as_dict = type(metadata).to_dict(metadata, preserving_proto_field_name=False)
    return {k: v for k, v in as_dict.items() if v}


def _legacy_view(usage: dict[str, Any] | None) -> dict[str, Any]:
    """What the legacy SDK can read of a usageMetadata: its four fields."""
    assert usage is not None
    return {k: v for k, v in usage.items() if k in LEGACY_USAGE_FIELDS}


def _post(server: FakeGeminiServer, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
    """A raw HTTP POST (stdlib), for wire-format checks."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request("POST", path, body=payload, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        conn.close()


CONTENTS = {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]}


class Joke(BaseModel):
    setup: str
    rating: int


# -- server basics ----------------------------------------------------------------------------


def test_addresses_and_lifecycle() -> None:
    srv = FakeGeminiServer()
    with pytest.raises(RuntimeError):
        _ = srv.base_url
    srv.start()
    try:
        assert srv.base_url == f"http://127.0.0.1:{srv.port}"
        assert srv.start() is srv
        with pytest.raises(RuntimeError):
            _ = srv.grpc_target  # no gRPC listener unless asked for
    finally:
        srv.stop()
    srv.stop()  # idempotent
    with FakeGeminiServer(enable_grpc=True) as both:
        assert both.grpc_target == f"127.0.0.1:{both.grpc_port}"
        assert both.grpc_port != both.port


def test_stop_with_open_keepalive_connection_is_prompt(server: FakeGeminiServer) -> None:
    client = _gemini_client(server)
    client.models.generate_content(model=MODEL, contents=PROMPT)
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 1.0
    client.close()


def test_fifo_queue_and_reset(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(text="first"), GeminiScript(text="second"))
    assert server.pending == 2
    texts = [gemini.models.generate_content(model=MODEL, contents=PROMPT).text for _ in range(3)]
    assert texts == ["first", "second", DEFAULT_TEXT]
    server.enqueue(GeminiScript(text="unused"))
    server.reset()
    assert server.exchanges == [] and server.pending == 0


def test_delays(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(delay=0.05, chunk_delay=0.01, chunks=4))
    started = time.monotonic()
    list(gemini.models.generate_content_stream(model=MODEL, contents=PROMPT))
    assert time.monotonic() - started >= 0.05 + 3 * 0.01


# -- google-genai, Gemini API backend ---------------------------------------------------------


def test_genai_generate_content(gemini: genai.Client, server: FakeGeminiServer) -> None:
    response = gemini.models.generate_content(model=MODEL, contents=PROMPT)
    ex = _last(server)
    # google-genai 3.x talks to the v1 Gemini API unless told otherwise.
    assert (ex.path, ex.status, ex.stream, ex.events) == (
        f"/v1/models/{MODEL}:generateContent",
        200,
        False,
        0,
    )
    assert (ex.api, ex.transport, ex.query) == ("gemini", "rest", {})
    assert ex.headers["x-goog-api-key"] == "k"
    assert ex.request["contents"] == CONTENTS["contents"]
    assert response.text == DEFAULT_TEXT
    assert response.model_version == MODEL
    assert response.candidates is not None
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert (
        _usage(response.usage_metadata)
        == ex.usage
        == {
            "promptTokenCount": PROMPT_TOKENS,
            "candidatesTokenCount": ANSWER_TOKENS,
            "totalTokenCount": PROMPT_TOKENS + ANSWER_TOKENS,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": PROMPT_TOKENS}],
        }
    )


def test_genai_all_usage_fields(server: FakeGeminiServer) -> None:
    server.enqueue(
        GeminiScript(
            text="Hi.",
            prompt_tokens=1149,
            cached_tokens=1024,
            candidates_tokens=711,
            thoughts_tokens=1096,
            tool_use_prompt_tokens=40,
            response_model="gemini-2.5-flash-preview-09-2025",
        )
    )
    with _gemini_client(server, api_version="v1beta") as client:
        response = client.models.generate_content(model=MODEL, contents=PROMPT)
    ex = _last(server)
    assert ex.path == f"/v1beta/models/{MODEL}:generateContent"
    assert response.model_version == "gemini-2.5-flash-preview-09-2025"
    usage = response.usage_metadata
    assert usage is not None and _usage(usage) == ex.usage
    assert usage.prompt_token_count == 1149  # includes the cached tokens
    assert usage.cached_content_token_count == 1024
    assert usage.candidates_token_count == 711  # thoughts are beside it, not inside
    assert usage.thoughts_token_count == 1096
    assert usage.tool_use_prompt_token_count == 40
    assert usage.total_token_count == 1149 + 711 + 1096 + 40
    assert usage.cache_tokens_details is not None
    assert usage.cache_tokens_details[0].token_count == 1024


def test_genai_cached_tokens_are_included_in_prompt_by_default(
    gemini: genai.Client, server: FakeGeminiServer
) -> None:
    server.enqueue(GeminiScript(text="one two", cached_tokens=100, thoughts_tokens=50))
    usage = gemini.models.generate_content(model=MODEL, contents=PROMPT).usage_metadata
    assert usage is not None
    assert usage.prompt_token_count == PROMPT_TOKENS + 100
    assert usage.candidates_token_count == 2
    assert usage.total_token_count == PROMPT_TOKENS + 100 + 2 + 50


def test_genai_stream_running_totals(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(text="This is a test.", chunks=3, thoughts_tokens=7))
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents=PROMPT))
    ex = _last(server)
    assert ex.path == f"/v1/models/{MODEL}:streamGenerateContent"
    assert ex.query == {"alt": "sse"}
    assert ex.stream and ex.status == 200 and ex.events == len(chunks) == 3
    assert "".join(c.text or "" for c in chunks) == "This is a test."
    # Every chunk carries usageMetadata; the counts are running totals, the last the final ones.
    usages = [c.usage_metadata for c in chunks]
    assert all(u is not None for u in usages)
    assert [u.candidates_token_count for u in usages if u] == [1, 2, 3]
    assert [u.prompt_token_count for u in usages if u] == [PROMPT_TOKENS] * 3
    assert [u.thoughts_token_count for u in usages if u] == [7] * 3
    assert _usage(chunks[-1].usage_metadata) == ex.usage
    assert ex.usage is not None and ex.usage["totalTokenCount"] == PROMPT_TOKENS + 3 + 7
    finish = [c.candidates[0].finish_reason for c in chunks if c.candidates]
    assert finish == [None, None, types.FinishReason.STOP]
    assert len({c.response_id for c in chunks}) == 1


def test_genai_stream_usage_only_last(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(chunks=3, usage_only_last=True))
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents=PROMPT))
    assert [_usage(c.usage_metadata) for c in chunks[:-1]] == [{}, {}]
    assert _usage(chunks[-1].usage_metadata) == _last(server).usage
    assert chunks[-1].usage_metadata is not None
    assert chunks[-1].usage_metadata.candidates_token_count == 3


def test_genai_omit_usage(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(omit_usage=True), GeminiScript(omit_usage=True, chunks=2))
    response = gemini.models.generate_content(model=MODEL, contents=PROMPT)
    assert response.usage_metadata is None and response.text == DEFAULT_TEXT
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents=PROMPT))
    assert len(chunks) == 2 and all(c.usage_metadata is None for c in chunks)
    assert [e.usage for e in server.exchanges] == [None, None]


def test_sse_wire_format(server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(text="a b", thoughts_tokens=3))
    status, headers, body = _post(
        server, f"/v1beta/models/{MODEL}:streamGenerateContent?alt=sse", CONTENTS
    )
    assert status == 200
    assert headers["Content-Type"] == "text/event-stream"
    assert headers["Transfer-Encoding"] == "chunked"
    text = body.decode()
    assert text.endswith("\r\n\r\n")
    events = text.split("\r\n\r\n")[:-1]
    assert len(events) == 2 and all(e.startswith("data: ") for e in events)
    payloads = [json.loads(e.removeprefix("data: ")) for e in events]
    assert all("\n" not in e for e in events)
    assert [p["usageMetadata"]["candidatesTokenCount"] for p in payloads] == [1, 2]
    assert payloads[-1]["usageMetadata"] == _last(server).usage
    assert payloads[0]["candidates"][0] == {
        "content": {"parts": [{"text": "a"}], "role": "model"},
        "index": 0,
    }
    assert payloads[-1]["candidates"][0]["finishReason"] == "STOP"
    assert payloads[0]["modelVersion"] == MODEL and "responseId" in payloads[0]


def test_genai_chat_send_message_and_stream(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(text="First answer."), GeminiScript(text="Second answer."))
    chat = gemini.chats.create(model=MODEL)
    first = chat.send_message(PROMPT)
    second = list(chat.send_message_stream("And again"))
    one, two = server.exchanges
    assert first.text == "First answer."
    assert _usage(first.usage_metadata) == one.usage
    assert "".join(c.text or "" for c in second) == "Second answer."
    assert _usage(second[-1].usage_metadata) == two.usage
    # The second request carries the history: user, model, user.
    assert [c["role"] for c in two.request["contents"]] == ["user", "model", "user"]
    assert two.usage is not None
    assert two.usage["promptTokenCount"] == len(f"{PROMPT}\nFirst answer.\nAnd again") // 4 + 1


def test_genai_json_response_schema(gemini: genai.Client, server: FakeGeminiServer) -> None:
    response = gemini.models.generate_content(
        model=MODEL,
        contents="Tell a joke",
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_schema=Joke
        ),
    )
    assert response.parsed == Joke(setup="", rating=0)
    server.enqueue(GeminiScript(text='{"setup": "Why?", "rating": 5}'))
    response = gemini.models.generate_content(
        model=MODEL,
        contents="Tell a joke",
        config=types.GenerateContentConfig(
            response_mime_type="application/json", response_json_schema=Joke.model_json_schema()
        ),
    )
    assert response.parsed == {"setup": "Why?", "rating": 5}


def test_genai_candidate_count(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(text="x y"))
    response = gemini.models.generate_content(
        model=MODEL, contents=PROMPT, config=types.GenerateContentConfig(candidate_count=2)
    )
    assert response.candidates is not None
    assert [c.index for c in response.candidates] == [0, 1]
    assert response.usage_metadata is not None
    assert response.usage_metadata.candidates_token_count == 4


def test_genai_count_tokens_and_embeddings(gemini: genai.Client, server: FakeGeminiServer) -> None:
    counted = gemini.models.count_tokens(model=MODEL, contents=PROMPT)
    assert counted.total_tokens == PROMPT_TOKENS
    assert _last(server).path == f"/v1/models/{MODEL}:countTokens"
    assert _last(server).usage is None

    server.enqueue(GeminiScript(prompt_tokens=24))
    result = gemini.models.embed_content(
        model="gemini-embedding-001", contents=["first text", "second text"]
    )
    ex = _last(server)
    assert ex.path == "/v1/models/gemini-embedding-001:batchEmbedContents"
    assert result.embeddings is not None and len(result.embeddings) == 2
    assert all(len(e.values or []) == EMBEDDING_DIMENSIONS for e in result.embeddings)
    assert ex.usage == {"promptTokenCount": 24, "totalTokenCount": 24}


# -- google-genai, Vertex AI backend ----------------------------------------------------------


def test_vertex_generate_content(vertex: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(prompt_tokens=8, candidates_tokens=433, thoughts_tokens=1477))
    response = vertex.models.generate_content(model=MODEL, contents=PROMPT)
    ex = _last(server)
    assert ex.path == f"{VERTEX_PREFIX}{MODEL}:generateContent"
    assert (ex.api, ex.transport) == ("vertex", "rest")
    assert ex.headers["authorization"] == "Bearer test-token"
    assert "x-goog-api-key" not in ex.headers
    assert (
        _usage(response.usage_metadata)
        == ex.usage
        == {
            "promptTokenCount": 8,
            "candidatesTokenCount": 433,
            "totalTokenCount": 1918,
            "trafficType": "ON_DEMAND",
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": 8}],
            "candidatesTokensDetails": [{"modality": "TEXT", "tokenCount": 433}],
            "thoughtsTokenCount": 1477,
        }
    )
    assert response.create_time is not None and response.response_id


def test_vertex_stream_usage_only_on_last_chunk(
    vertex: genai.Client, server: FakeGeminiServer
) -> None:
    server.enqueue(GeminiScript(chunks=4))
    chunks = list(vertex.models.generate_content_stream(model=MODEL, contents=PROMPT))
    ex = _last(server)
    assert ex.path == f"{VERTEX_PREFIX}{MODEL}:streamGenerateContent"
    assert ex.query == {"alt": "sse"} and ex.events == 4
    # Vertex intermediate chunks carry a usageMetadata without any count.
    assert [_usage(c.usage_metadata) for c in chunks[:-1]] == [{"trafficType": "ON_DEMAND"}] * 3
    assert _usage(chunks[-1].usage_metadata) == ex.usage
    assert ex.usage is not None and ex.usage["candidatesTokenCount"] == 4


def test_vertex_stream_running_totals_when_asked(
    vertex: genai.Client, server: FakeGeminiServer
) -> None:
    server.enqueue(GeminiScript(chunks=2, usage_only_last=False))
    chunks = list(vertex.models.generate_content_stream(model=MODEL, contents=PROMPT))
    assert [c.usage_metadata.candidates_token_count for c in chunks if c.usage_metadata] == [1, 2]


def test_vertex_express_mode_api_key(server: FakeGeminiServer) -> None:
    with genai.Client(
        vertexai=True, api_key="k", http_options=types.HttpOptions(base_url=server.base_url)
    ) as client:
        response = client.models.generate_content(model=MODEL, contents=PROMPT)
    ex = _last(server)
    assert ex.path == f"/v1beta1/publishers/google/models/{MODEL}:generateContent"
    assert ex.api == "vertex" and ex.headers["x-goog-api-key"] == "k"
    assert _usage(response.usage_metadata) == ex.usage


def test_vertex_anonymous_credentials_fail_before_any_request(server: FakeGeminiServer) -> None:
    """google-genai wants a bearer token: AnonymousCredentials (no token) cannot be refreshed."""
    with (
        genai.Client(
            vertexai=True,
            project="p",
            location="us-central1",
            credentials=google.auth.credentials.AnonymousCredentials(),
            http_options=types.HttpOptions(base_url=server.base_url),
        ) as client,
        pytest.raises(google.auth.exceptions.InvalidOperation),
    ):
        client.models.generate_content(model=MODEL, contents=PROMPT)
    assert server.exchanges == []


@pytest.mark.asyncio
async def test_vertex_async(server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(text="async vertex"), GeminiScript(chunks=3))
    async with _vertex_client(server).aio as client:
        response = await client.models.generate_content(model=MODEL, contents=PROMPT)
        stream = await client.models.generate_content_stream(model=MODEL, contents=PROMPT)
        chunks = [chunk async for chunk in stream]
    first, second = server.exchanges
    assert response.text == "async vertex"
    assert _usage(response.usage_metadata) == first.usage
    assert _usage(chunks[-1].usage_metadata) == second.usage
    assert [_usage(c.usage_metadata) for c in chunks[:-1]] == [{"trafficType": "ON_DEMAND"}] * 2
    assert second.path == f"{VERTEX_PREFIX}{MODEL}:streamGenerateContent"


# -- google-genai async, Gemini API -----------------------------------------------------------


@pytest.mark.asyncio
async def test_genai_async_generate_stream_and_chat(server: FakeGeminiServer) -> None:
    server.enqueue(
        GeminiScript(text="one", cached_tokens=2),
        GeminiScript(text="a b c"),
        GeminiScript(text="chat"),
        GeminiScript(text="chat stream", chunks=2),
    )
    async with _gemini_client(server).aio as client:
        response = await client.models.generate_content(model=MODEL, contents=PROMPT)
        stream = await client.models.generate_content_stream(model=MODEL, contents=PROMPT)
        chunks = [chunk async for chunk in stream]
        chat = client.chats.create(model=MODEL)
        chat_response = await chat.send_message(PROMPT)
        chat_chunks = [chunk async for chunk in await chat.send_message_stream("more")]
    one, two, three, four = server.exchanges
    assert _usage(response.usage_metadata) == one.usage
    assert one.usage is not None and one.usage["cachedContentTokenCount"] == 2
    assert "".join(c.text or "" for c in chunks) == "a b c"
    assert [c.usage_metadata.candidates_token_count for c in chunks if c.usage_metadata] == [
        1,
        2,
        3,
    ]
    assert _usage(chunks[-1].usage_metadata) == two.usage
    assert chat_response.text == "chat"
    assert _usage(chat_response.usage_metadata) == three.usage
    assert "".join(c.text or "" for c in chat_chunks) == "chat stream"
    assert _usage(chat_chunks[-1].usage_metadata) == four.usage
    assert four.stream and len(four.request["contents"]) == 3


@pytest.mark.asyncio
async def test_genai_async_errors_and_cut(server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(status=429), GeminiScript(cut_after=2, chunks=5))
    async with _gemini_client(server).aio as client:
        with pytest.raises(genai_errors.ClientError) as info:
            await client.models.generate_content(model=MODEL, contents=PROMPT)
        seen = []
        stream = await client.models.generate_content_stream(model=MODEL, contents=PROMPT)
        with pytest.raises(httpx2.RemoteProtocolError):
            async for chunk in stream:
                seen.append(chunk)
    assert info.value.code == 429 and info.value.status == "RESOURCE_EXHAUSTED"
    assert len(seen) == 2 == _last(server).events
    assert _usage(seen[-1].usage_metadata) == _last(server).usage  # the last total sent


# -- errors and cuts (google-genai sync) ------------------------------------------------------


def test_genai_rate_limit_429(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(status=429))
    with pytest.raises(genai_errors.ClientError) as info:
        gemini.models.generate_content(model=MODEL, contents=PROMPT)
    assert info.value.code == 429
    assert info.value.status == "RESOURCE_EXHAUSTED"
    assert info.value.details == {
        "error": {"code": 429, "message": info.value.message, "status": "RESOURCE_EXHAUSTED"}
    }
    ex = _last(server)
    assert (ex.status, ex.usage) == (429, None)
    assert len(server.exchanges) == 1  # google-genai does not retry unless told to


def test_genai_server_error_on_stream(gemini: genai.Client, server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(status=500))
    with pytest.raises(genai_errors.ServerError) as info:
        list(gemini.models.generate_content_stream(model=MODEL, contents=PROMPT))
    assert (info.value.code, info.value.status) == (500, "INTERNAL")
    assert _last(server).stream is True and _last(server).events == 0


def test_genai_cut_after_raises_in_callers_loop(
    gemini: genai.Client, server: FakeGeminiServer
) -> None:
    server.enqueue(GeminiScript(text="one two three four five", cut_after=3))
    received = []
    with pytest.raises(httpx2.RemoteProtocolError):
        for chunk in gemini.models.generate_content_stream(model=MODEL, contents=PROMPT):
            received.append(chunk)
    ex = _last(server)
    assert len(received) == 3 == ex.events
    assert ex.usage is not None and ex.usage["candidatesTokenCount"] == 3  # running total so far


def test_unknown_path_404_and_bad_requests(server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(text="kept"))
    status, _, body = _post(server, f"/v1beta/models/{MODEL}:predict", CONTENTS)
    assert status == 404 and json.loads(body)["error"]["status"] == "NOT_FOUND"
    status, _, body = _post(server, f"/v1beta/models/{MODEL}:generateContent", b"{nope")
    assert status == 400 and json.loads(body)["error"]["status"] == "INVALID_ARGUMENT"
    status, _, body = _post(server, f"/v1beta/models/{MODEL}:generateContent", {"contents": []})
    assert status == 400 and "contents is not specified" in json.loads(body)["error"]["message"]
    assert [e.status for e in server.exchanges] == [404, 400, 400]
    assert server.pending == 0  # the 400s used the script; the 404 did not


# -- legacy google-generativeai over REST -----------------------------------------------------


def test_legacy_rest_generate_content(legacy: Any, server: FakeGeminiServer) -> None:
    _configure_legacy_rest(legacy, server)
    server.enqueue(GeminiScript(cached_tokens=3, thoughts_tokens=10))
    model = legacy.GenerativeModel(LEGACY_MODEL)
    response = model.generate_content(PROMPT)
    ex = _last(server)
    assert ex.path == f"/v1beta/models/{LEGACY_MODEL}:generateContent"
    assert ex.query == {"$alt": "json;enum-encoding=int"}
    assert (ex.api, ex.transport, ex.stream) == ("gemini", "rest", False)
    assert ex.headers["x-goog-api-key"] == "k"
    assert response.text == DEFAULT_TEXT
    assert response.candidates[0].finish_reason == 1  # STOP, sent as an integer
    assert ex.usage is not None
    assert ex.usage["promptTokensDetails"] == [{"modality": 1, "tokenCount": PROMPT_TOKENS + 3}]
    # The legacy messages have no thoughts field: the SDK keeps the four it knows.
    assert ex.usage["thoughtsTokenCount"] == 10
    assert _legacy_usage(response.usage_metadata) == _legacy_view(ex.usage)
    assert response.usage_metadata.total_token_count == PROMPT_TOKENS + 3 + ANSWER_TOKENS + 10


def test_legacy_rest_stream(legacy: Any, server: FakeGeminiServer) -> None:
    _configure_legacy_rest(legacy, server)
    server.enqueue(GeminiScript(text="This is a test.", chunks=3))
    model = legacy.GenerativeModel(LEGACY_MODEL)
    response = model.generate_content(PROMPT, stream=True)
    texts = [chunk.text for chunk in response]
    ex = _last(server)
    assert ex.path == f"/v1beta/models/{LEGACY_MODEL}:streamGenerateContent"
    assert ex.query == {"$alt": "json;enum-encoding=int"}  # no alt=sse: a JSON array
    assert ex.stream and ex.events == 3
    assert "".join(texts) == "This is a test."
    assert _legacy_usage(response.usage_metadata) == _legacy_view(ex.usage)
    assert response.usage_metadata.candidates_token_count == 3


def test_legacy_rest_stream_wire_format(server: FakeGeminiServer) -> None:
    server.enqueue(GeminiScript(text="a b c"))
    status, headers, body = _post(
        server,
        f"/v1beta/models/{LEGACY_MODEL}:streamGenerateContent?%24alt=json%3Benum-encoding%3Dint",
        CONTENTS,
    )
    assert status == 200 and headers["Content-Type"] == "application/json; charset=UTF-8"
    text = body.decode()
    assert text.startswith("[{\n") and text.endswith("}\n]")
    assert text.count("\n,\r\n{") == 2
    elements = json.loads(text)
    assert len(elements) == 3
    assert [e["usageMetadata"]["candidatesTokenCount"] for e in elements] == [1, 2, 3]
    assert elements[-1]["candidates"][0]["finishReason"] == 1
    assert elements[-1]["usageMetadata"] == _last(server).usage


def test_legacy_rest_chat_session(legacy: Any, server: FakeGeminiServer) -> None:
    _configure_legacy_rest(legacy, server)
    server.enqueue(GeminiScript(text="Hello."), GeminiScript(text="Again.", chunks=2))
    chat = legacy.GenerativeModel(LEGACY_MODEL).start_chat()
    first = chat.send_message(PROMPT)
    second = chat.send_message("more", stream=True)
    second.resolve()
    one, two = server.exchanges
    assert first.text == "Hello." and second.text == "Again."
    assert _legacy_usage(first.usage_metadata) == _legacy_view(one.usage)
    assert _legacy_usage(second.usage_metadata) == _legacy_view(two.usage)
    assert [c["role"] for c in two.request["contents"]] == ["user", "model", "user"]


def test_legacy_rest_errors_and_cut(legacy: Any, server: FakeGeminiServer) -> None:
    _configure_legacy_rest(legacy, server)
    server.enqueue(GeminiScript(status=429), GeminiScript(status=500), GeminiScript(cut_after=2))
    model = legacy.GenerativeModel(LEGACY_MODEL)
    with pytest.raises(core_exceptions.TooManyRequests) as info:
        model.generate_content(PROMPT)
    assert info.value.code == 429
    with pytest.raises(core_exceptions.InternalServerError):
        model.generate_content(PROMPT, stream=True)
    received = []
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        for chunk in model.generate_content(PROMPT, stream=True):
            received.append(chunk)
    assert len(received) == 2 == _last(server).events
    assert [e.status for e in server.exchanges] == [429, 500, 200]


@pytest.mark.asyncio
async def test_legacy_rest_async_is_not_supported_by_the_sdk(
    legacy: Any, server: FakeGeminiServer
) -> None:
    """With transport="rest" the SDK's async client gets the sync transport: awaiting fails."""
    _configure_legacy_rest(legacy, server)
    model = legacy.GenerativeModel(LEGACY_MODEL)
    with pytest.raises(TypeError, match="can't be used in 'await' expression"):
        await model.generate_content_async(PROMPT)
    assert _last(server).status == 200  # the request itself went out and was answered


# -- legacy google-generativeai over gRPC -----------------------------------------------------


def test_legacy_grpc_generate_content(grpc_server: FakeGeminiServer, legacy: Any) -> None:
    _configure_legacy_grpc(legacy, grpc_server)
    grpc_server.enqueue(GeminiScript(prompt_tokens=5, candidates_tokens=711, thoughts_tokens=1096))
    model = legacy.GenerativeModel(LEGACY_MODEL)
    response = model.generate_content(PROMPT)
    ex = _last(grpc_server)
    assert ex.path == f"/{GRPC_SERVICE}/GenerateContent"
    assert (ex.api, ex.transport, ex.stream, ex.status) == ("gemini", "grpc", False, 200)
    assert ex.headers["x-goog-api-key"] == "k"
    assert ex.headers["x-goog-request-params"] == f"model=models/{LEGACY_MODEL}"
    assert ex.request["model"] == f"models/{LEGACY_MODEL}"
    assert ex.request["contents"][0]["parts"] == [{"text": PROMPT}]
    assert response.text == DEFAULT_TEXT
    # No thoughts field in the legacy message: the thoughts only show in the total.
    assert ex.usage == {"promptTokenCount": 5, "candidatesTokenCount": 711, "totalTokenCount": 1812}
    assert _legacy_usage(response.usage_metadata) == ex.usage


def test_legacy_grpc_stream_and_chat(grpc_server: FakeGeminiServer, legacy: Any) -> None:
    _configure_legacy_grpc(legacy, grpc_server)
    grpc_server.enqueue(
        GeminiScript(text="a b c", cached_tokens=4),
        GeminiScript(text="Hello."),
        GeminiScript(text="Again.", chunks=2),
    )
    model = legacy.GenerativeModel(LEGACY_MODEL)
    response = model.generate_content(PROMPT, stream=True)
    texts = [chunk.text for chunk in response]
    stream_ex = _last(grpc_server)
    assert texts == ["a", " b", " c"]
    assert stream_ex.path == f"/{GRPC_SERVICE}/StreamGenerateContent"
    assert stream_ex.stream and stream_ex.events == 3
    assert _legacy_usage(response.usage_metadata) == stream_ex.usage
    assert stream_ex.usage is not None and stream_ex.usage["cachedContentTokenCount"] == 4

    chat = model.start_chat()
    first = chat.send_message(PROMPT)
    second = chat.send_message("more", stream=True)
    second.resolve()
    _, one, two = grpc_server.exchanges
    assert (first.text, second.text) == ("Hello.", "Again.")
    assert _legacy_usage(first.usage_metadata) == one.usage
    assert _legacy_usage(second.usage_metadata) == two.usage
    assert [c["role"] for c in two.request["contents"]] == ["user", "model", "user"]


def test_legacy_grpc_errors_and_cut(grpc_server: FakeGeminiServer, legacy: Any) -> None:
    _configure_legacy_grpc(legacy, grpc_server)
    grpc_server.enqueue(GeminiScript(status=429), GeminiScript(cut_after=1, chunks=3))
    model = legacy.GenerativeModel(LEGACY_MODEL)
    with pytest.raises(core_exceptions.ResourceExhausted) as info:
        model.generate_content(PROMPT)
    assert info.value.code == 429
    received = []
    with pytest.raises(core_exceptions.InternalServerError):
        for chunk in model.generate_content(PROMPT, stream=True):
            received.append(chunk)
    assert len(received) == 1 == _last(grpc_server).events
    assert [e.status for e in grpc_server.exchanges] == [429, 200]


def test_legacy_grpc_count_tokens(grpc_server: FakeGeminiServer, legacy: Any) -> None:
    _configure_legacy_grpc(legacy, grpc_server)
    counted = legacy.GenerativeModel(LEGACY_MODEL).count_tokens(PROMPT)
    assert counted.total_tokens == PROMPT_TOKENS
    assert _last(grpc_server).path == f"/{GRPC_SERVICE}/CountTokens"


@pytest.mark.asyncio
async def test_legacy_grpc_async(legacy_grpc_async: Any, grpc_server: FakeGeminiServer) -> None:
    grpc_server.enqueue(
        GeminiScript(text="async one", thoughts_tokens=3),
        GeminiScript(text="x y", chunks=2),
        GeminiScript(text="chat"),
    )
    model = legacy_grpc_async.GenerativeModel(LEGACY_MODEL)
    response = await model.generate_content_async(PROMPT)
    stream = await model.generate_content_async(PROMPT, stream=True)
    texts = [chunk.text async for chunk in stream]
    chat_response = await model.start_chat().send_message_async(PROMPT)
    one, two, three = grpc_server.exchanges
    assert response.text == "async one"
    assert _legacy_usage(response.usage_metadata) == one.usage
    assert one.usage is not None
    assert one.usage["totalTokenCount"] == PROMPT_TOKENS + 2 + 3  # thoughts only in the total
    assert one.headers["x-goog-api-key"] == "k"
    assert texts == ["x ", "y"] and two.stream
    assert _legacy_usage(stream.usage_metadata) == two.usage
    assert chat_response.text == "chat"
    assert _legacy_usage(chat_response.usage_metadata) == three.usage


def test_legacy_grpc_transport_refuses_non_loopback(legacy: Any) -> None:
    legacy.configure(
        api_key="k",
        transport=legacy_grpc_transport(),
        client_options={"api_endpoint": "generativelanguage.googleapis.com:443"},
    )
    with pytest.raises(ValueError, match="loopback"):
        legacy.GenerativeModel(LEGACY_MODEL).generate_content(PROMPT)
