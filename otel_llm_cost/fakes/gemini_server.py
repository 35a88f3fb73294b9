"""A fake Gemini API / Vertex AI server on 127.0.0.1 that speaks the real wire formats.

It answers ``generateContent`` and ``streamGenerateContent`` (plus ``countTokens``,
``embedContent`` and ``batchEmbedContents``) shaped like the recorded answers of the Gemini API
(``generativelanguage.googleapis.com``) and Vertex AI (``aiplatform.googleapis.com``), over REST
and, optionally, over gRPC, so that the *real* SDKs can be pointed at it::

    with FakeGeminiServer() as server:
        server.enqueue(GeminiScript(text="Hello there.", thoughts_tokens=12))
        client = genai.Client(api_key="k", http_options=types.HttpOptions(base_url=server.base_url))
        response = client.models.generate_content(model="gemini-2.5-flash", contents="Hi")
        assert server.exchanges[-1].usage == {...}

Each request takes the next queued :class:`GeminiScript` (FIFO; ``GeminiScript()`` when the queue
is empty), whichever transport it came over, and is recorded as a :class:`GeminiExchange`, which
says exactly which ``usageMetadata`` went over the wire.

Client set-up for the four supported paths (``server`` is a started :class:`FakeGeminiServer`;
``FakeGeminiServer(enable_grpc=True)`` for the 4th):

1. google-genai, Gemini API backend (the SDK asks for ``/v1/models/{model}:generateContent`` and
   ``:streamGenerateContent?alt=sse``; ``api_version="v1beta"`` gives ``/v1beta/...``)::

       from google import genai
       from google.genai import types

       client = genai.Client(
           api_key="k", http_options=types.HttpOptions(base_url=server.base_url)
       )

2. google-genai, Vertex AI backend (``/v1beta1/projects/p/locations/us-central1/publishers/google/
   models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``). With ``project`` and
   ``location`` the SDK sends ``Authorization: Bearer <credentials.token>`` and refreshes the
   credentials first when they have no token, so ``google.auth.credentials.AnonymousCredentials()``
   fails on the first call (``InvalidOperation: Anonymous credentials cannot be refreshed``).
   Credentials that already hold a token and never expire are neither refreshed nor sent to a
   metadata server, and ``project`` + ``location`` given means ADC is never looked up::

       import google.oauth2.credentials

       client = genai.Client(
           vertexai=True,
           project="p",
           location="us-central1",
           credentials=google.oauth2.credentials.Credentials(token="test-token"),
           http_options=types.HttpOptions(base_url=server.base_url),
       )

   (Vertex "express mode", ``genai.Client(vertexai=True, api_key="k", http_options=...)``, needs no
   credentials at all and asks for ``/v1beta1/publishers/google/models/{model}:...``.)

3. legacy google-generativeai over REST (``/v1beta/models/{model}:generateContent`` and
   ``:streamGenerateContent``, both with ``?$alt=json;enum-encoding=int``: the answers then carry
   enums as integers, as Google's servers do; the stream is a JSON array, see below). The
   ``api_endpoint`` must carry the ``http://`` scheme (without one the transport prepends
   ``https://``)::

       import google.generativeai as legacy

       legacy.configure(
           api_key="k", transport="rest", client_options={"api_endpoint": server.base_url}
       )
       model = legacy.GenerativeModel("gemini-1.5-flash")

   The SDK's async methods do not work over REST (``GenerativeServiceAsyncClient`` gets the
   synchronous REST transport, and awaiting its answer raises ``TypeError``): the real SDK's
   ``generate_content_async`` needs gRPC.

4. legacy google-generativeai over gRPC. The SDK's own ``transport="grpc"`` always opens a TLS
   channel (``grpc_helpers.create_channel`` -> ``grpc.secure_channel``), which cannot reach a
   plaintext loopback server; but ``configure(transport=...)`` also takes a *callable* that
   builds the transport, and :func:`legacy_grpc_transport` returns one that builds the SDK's own
   ``GenerativeServiceGrpcTransport`` (or, for the async client, ``GenerativeServiceGrpcAsyncIO
   Transport``) over ``grpc.insecure_channel`` / ``grpc.aio.insecure_channel`` to the loopback
   target, and sends the API key as ``x-goog-api-key`` metadata as the SDK's own channel would::

       legacy.configure(
           api_key="k",
           transport=legacy_grpc_transport(),
           client_options={"api_endpoint": server.grpc_target},
       )

   Both ``generate_content`` and ``generate_content_async`` then work (the callable sees which
   client it builds a transport for), like the SDK's default ``configure()`` (``grpc`` for the sync
   client, ``grpc_asyncio`` for the async one). The callable refuses non-loopback targets.

Wire formats:

* JSON answers are indented like Google's; ``application/json; charset=UTF-8``.
* ``?alt=sse`` streams are ``text/event-stream``: ``data: {json}\\r\\n\\r\\n`` per chunk, no final
  marker, as recorded from Vertex AI.
* Streams without ``alt=sse`` (the legacy REST SDK) are one streamed JSON array, one element
  (an indented object) per chunk: ``[{...}``, then ``\\n,\\r\\n{...}`` for each further chunk,
  and ``\\n]`` after the last one, nothing after that (``google.api_core``'s
  ``ResponseIterator`` reads one character at a time and refuses anything but ``[`` once the
  array is closed).
* Every chunk carries ``usageMetadata``. Gemini API streams carry running totals (the prompt,
  thoughts and tool-use counts from the first chunk, a growing ``candidatesTokenCount``); Vertex AI
  streams carry ``{"trafficType": "ON_DEMAND"}`` until the last chunk (``usage_only_last``).
* ``promptTokenCount`` includes ``cachedContentTokenCount``; ``thoughtsTokenCount`` and
  ``toolUsePromptTokenCount`` are reported beside ``candidatesTokenCount`` and all are summed in
  ``totalTokenCount``. Zero counts are left out (proto3 JSON).
* Errors are ``{"error": {"code", "message", "status"}}`` with the HTTP status; over gRPC, the
  matching status code (429 -> ``RESOURCE_EXHAUSTED`` ...) and the message as details.
* gRPC answers use the legacy SDK's own ``google.ai.generativelanguage.v1beta`` messages, whose
  ``UsageMetadata`` has no thoughts or tool-use fields: those counts only show in
  ``total_token_count`` there (so the total exceeds prompt + candidates when the model thought).

Stdlib only for REST: a :class:`~http.server.ThreadingHTTPServer` in a daemon thread, HTTP/1.1
keep-alive, chunked transfer encoding for streams (so a stream cut by ``GeminiScript.cut_after``
is an incomplete body that the client reports as a broken connection). The gRPC listener needs
``grpcio`` and the ``google-ai-generativelanguage`` messages, imported only when enabled.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import re
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ._base import (
    FakeHandler,
    FakeServer,
    Frame,
    collect_text,
    error_status,
    estimate_tokens,
    parse_json_object,
    schema_instance,
    split_text,
)

__all__ = [
    "DEFAULT_TEXT",
    "EMBEDDING_DIMENSIONS",
    "GRPC_SERVICE",
    "FakeGeminiServer",
    "GeminiExchange",
    "GeminiScript",
    "legacy_grpc_transport",
]

_log = logging.getLogger(__name__)

#: The model text answered when neither the script nor a JSON response schema says otherwise.
DEFAULT_TEXT = "This is a test response from the fake Gemini server."

#: Length of the embedding vectors (unless the request asks for ``outputDimensionality``).
EMBEDDING_DIMENSIONS = 8

#: The gRPC service the legacy SDK talks to.
GRPC_SERVICE = "google.ai.generativelanguage.v1beta.GenerativeService"

_LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")

# HTTP status -> canonical google.rpc status name and a default message.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: (
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential.",
    ),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: (
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota, please check your plan and billing details.",
    ),
    499: ("CANCELLED", "The operation was cancelled."),
    500: (
        "INTERNAL",
        "An internal error has occurred. Please retry or report in "
        "https://developers.generativeai.google/guide/troubleshooting",
    ),
    501: ("UNIMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}

# Integer values of the enums that appear in answers, for ``$alt=json;enum-encoding=int``.
_ENUM_INTS: dict[str, dict[str, int]] = {
    "finishReason": {
        "FINISH_REASON_UNSPECIFIED": 0,
        "STOP": 1,
        "MAX_TOKENS": 2,
        "SAFETY": 3,
        "RECITATION": 4,
        "OTHER": 5,
    },
    "modality": {"MODALITY_UNSPECIFIED": 0, "TEXT": 1, "IMAGE": 2, "VIDEO": 3, "AUDIO": 4},
    "trafficType": {"TRAFFIC_TYPE_UNSPECIFIED": 0, "ON_DEMAND": 1, "PROVISIONED_THROUGHPUT": 2},
}

_PATH = re.compile(
    r"^/(?P<version>v\d+[a-z0-9]*)/"
    r"(?:(?P<vertex>projects/[^/]+/locations/[^/]+/(?:publishers/[^/]+/models|models|endpoints)"
    r"|publishers/[^/]+/models)"
    r"|(?P<gemini>models|tunedModels))"
    r"/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$"
)

_METHODS = (
    "generateContent",
    "streamGenerateContent",
    "countTokens",
    "embedContent",
    "batchEmbedContents",
)


@dataclass
class GeminiScript:
    """How to answer ONE request. Every field is optional; ``GeminiScript()`` is a plain success."""

    status: int | None = None
    """Answer with this HTTP error status (>= 400; lower values are ignored) and a Google error
    body ``{"error": {"code", "message", "status"}}`` (over gRPC: the matching status code)."""
    text: str | None = None
    """Model text. Default: :data:`DEFAULT_TEXT`, or, when the request asks for JSON
    (``responseMimeType: application/json``), the smallest instance of ``responseJsonSchema`` /
    ``responseSchema`` (``{}`` without a schema), so the SDK's ``parsed`` works."""
    chunks: int | None = None
    """Number of pieces the text is split into (stream chunks). Default: one per word."""
    prompt_tokens: int | None = None
    """``promptTokenCount``; includes ``cached_tokens``. Default: ``len(all input text) // 4 + 1``,
    plus ``cached_tokens``."""
    candidates_tokens: int | None = None
    """``candidatesTokenCount`` (thoughts NOT included). Default: number of text pieces, times the
    number of candidates."""
    thoughts_tokens: int = 0
    """``thoughtsTokenCount``, beside the candidates count; part of ``totalTokenCount``. The legacy
    SDK's messages have no such field: over gRPC it only shows in ``total_token_count``."""
    cached_tokens: int = 0
    """``cachedContentTokenCount`` (with ``cacheTokensDetails``); included in
    ``promptTokenCount``."""
    tool_use_prompt_tokens: int = 0
    """``toolUsePromptTokenCount`` (with ``toolUsePromptTokensDetails``); part of
    ``totalTokenCount``."""
    response_model: str | None = None
    """``modelVersion`` answered. Default: the model of the request path."""
    omit_usage: bool = False
    """Send no ``usageMetadata`` at all, in no chunk."""
    usage_only_last: bool | None = None
    """Streams: intermediate chunks carry a ``usageMetadata`` without any count (Vertex:
    ``{"trafficType": "ON_DEMAND"}``, Gemini API: ``{}``), only the last one the counts. False:
    every chunk carries running totals. Default (None): True for Vertex AI paths, False for the
    Gemini API (as recorded)."""
    cut_after: int | None = None
    """Streams: stop after this many chunks, like a network cut: REST closes the connection without
    finishing the chunked body; gRPC ends the call with ``INTERNAL`` ("RST_STREAM")."""
    delay: float = 0.0
    """Seconds to wait before answering (also before an error status)."""
    chunk_delay: float = 0.0
    """Seconds to wait between stream chunks."""


@dataclass
class GeminiExchange:
    """One request the server answered, for assertions.

    Recorded when the request arrives and updated *before* each chunk is written, so by the time
    the client has read something the exchange already says so.
    """

    path: str
    """REST: the request path without query string, e.g. ``/v1beta/models/gemini-2.5-flash:
    generateContent``. gRPC: the method, ``/google.ai.generativelanguage.v1beta.GenerativeService/
    GenerateContent``."""
    request: dict[str, Any]
    """The request body as JSON (gRPC: the request message in its JSON form, camelCase)."""
    headers: dict[str, str]
    """Request headers (gRPC: invocation metadata), names lower-cased."""
    status: int = 0
    """HTTP status answered (gRPC: its HTTP equivalent); 0 while still undecided."""
    stream: bool = False
    """Whether the call was a ``streamGenerateContent``."""
    usage: dict[str, Any] | None = None
    """The last ``usageMetadata`` sent, exactly as on the wire (the final totals once the answer is
    complete); None if none was sent (omitted, or not a generate call). gRPC: the JSON form of the
    ``UsageMetadata`` message sent."""
    events: int = 0
    """Stream chunks written (SSE events, JSON array elements or gRPC messages)."""
    api: str = "gemini"
    """``"gemini"`` (Gemini API paths) or ``"vertex"`` (Vertex AI paths)."""
    transport: str = "rest"
    """``"rest"`` or ``"grpc"``."""
    query: dict[str, str] = field(default_factory=dict)
    """REST query parameters (e.g. ``{"alt": "sse"}``, ``{"$alt": "json;enum-encoding=int"}``)."""


# --------------------------------------------------------------------------------------------
# Payload helpers (pure functions)
# --------------------------------------------------------------------------------------------


_TEXT_KEYS = (
    "contents",
    "parts",
    "text",
    "systemInstruction",
    "generateContentRequest",
    "content",
    "requests",
)


def _input_text(request: dict[str, Any]) -> str:
    """Every ``text`` found in contents-like structures, one a line."""
    parts: list[str] = []
    collect_text(request, _TEXT_KEYS, parts)
    return "\n".join(parts)


def _lower_types(schema: Any) -> Any:
    """A Gemini ``Schema`` (``"type": "OBJECT"``, ``nullable``) as a plain JSON schema."""
    if isinstance(schema, list):
        return [_lower_types(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: _lower_types(value) for key, value in schema.items()}
    if isinstance(out.get("type"), str):
        out["type"] = out["type"].lower()
    if out.pop("nullable", False) is True and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def _json_default_text(request: dict[str, Any]) -> str | None:
    config = request.get("generationConfig")
    if not isinstance(config, dict) or config.get("responseMimeType") != "application/json":
        return None
    schema = config.get("responseJsonSchema")
    if not isinstance(schema, dict):
        schema = _lower_types(config.get("responseSchema"))
    if not isinstance(schema, dict):
        return "{}"
    return json.dumps(schema_instance(schema, schema))


def _embedding(item: str, dimensions: int) -> list[float]:
    """A deterministic vector for one input."""
    digest = b""
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.sha256(item.encode() + counter.to_bytes(4, "big")).digest()
        counter += 1
    return [round(b / 127.5 - 1.0, 6) for b in digest[:dimensions]]


def _response_id() -> str:
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).decode()[:23]


def _details(count: int) -> list[dict[str, Any]]:
    return [{"modality": "TEXT", "tokenCount": count}]


def _usage_metadata(
    api: str,
    *,
    prompt: int,
    candidates: int,
    thoughts: int,
    cached: int,
    tool_use: int,
) -> dict[str, Any]:
    """A complete ``usageMetadata``, keys in the order Google sends them; zero counts left out."""
    usage: dict[str, Any] = {}
    if prompt:
        usage["promptTokenCount"] = prompt
    if candidates:
        usage["candidatesTokenCount"] = candidates
    total = prompt + candidates + thoughts + tool_use
    if total:
        usage["totalTokenCount"] = total
    if cached:
        usage["cachedContentTokenCount"] = cached
    if tool_use:
        usage["toolUsePromptTokenCount"] = tool_use
    if api == "vertex":
        usage["trafficType"] = "ON_DEMAND"
    if prompt:
        usage["promptTokensDetails"] = _details(prompt)
    if cached:
        usage["cacheTokensDetails"] = _details(cached)
    if api == "vertex" and candidates:
        usage["candidatesTokensDetails"] = _details(candidates)
    if tool_use:
        usage["toolUsePromptTokensDetails"] = _details(tool_use)
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _int_enums(value: Any) -> Any:
    """The same payload with enums as integers (``$alt=json;enum-encoding=int``)."""
    if isinstance(value, list):
        return [_int_enums(item) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for key, item in value.items():
        table = _ENUM_INTS.get(key)
        if table is not None and isinstance(item, str):
            out[key] = table.get(item, 0)
        else:
            out[key] = _int_enums(item)
    return out


def _error_payload(status: int, message: str | None = None) -> dict[str, Any]:
    name, default_message = _ERRORS.get(
        status,
        ("INTERNAL" if status >= 500 else "FAILED_PRECONDITION", "Request failed."),
    )
    return {"error": {"code": status, "message": message or default_message, "status": name}}


class _RequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class _Chunk:
    """One answer (non-stream) or stream chunk, and the usageMetadata it carries."""

    payload: dict[str, Any]
    usage: dict[str, Any] | None


def _generate(
    api: str, model: str, request: dict[str, Any], script: GeminiScript, stream: bool
) -> list[_Chunk]:
    """The chunks answering a generateContent (one) or streamGenerateContent call."""
    contents = request.get("contents")
    if not isinstance(contents, list) or not contents:
        raise _RequestError(400, "* GenerateContentRequest.contents: contents is not specified\n")
    config = request.get("generationConfig")
    config = config if isinstance(config, dict) else {}
    try:
        n = max(1, int(config.get("candidateCount") or 1))
    except (TypeError, ValueError):
        raise _RequestError(400, "Invalid value at 'generation_config.candidate_count'") from None
    text = script.text
    if text is None:
        text = _json_default_text(request) or DEFAULT_TEXT
    pieces = split_text(text, script.chunks) if stream else [text]
    piece_count = len(split_text(text, script.chunks))
    prompt = script.prompt_tokens
    if prompt is None:
        prompt = estimate_tokens(_input_text(request)) + script.cached_tokens
    candidates = script.candidates_tokens
    if candidates is None:
        candidates = piece_count * n
    counts = {
        "prompt": prompt,
        "thoughts": script.thoughts_tokens,
        "cached": script.cached_tokens,
        "tool_use": script.tool_use_prompt_tokens,
    }
    only_last = script.usage_only_last if script.usage_only_last is not None else api == "vertex"
    response_id = _response_id()
    create_time = (
        datetime.datetime.now(datetime.timezone.utc)
        .isoformat(timespec="microseconds")
        .replace("+00:00", "Z")
    )
    model_version = script.response_model or model

    def candidate(index: int, piece: str, finished: bool) -> dict[str, Any]:
        parts = [{"text": piece}]
        body: dict[str, Any] = (
            {"content": {"role": "model", "parts": parts}}
            if api == "vertex"
            else {"content": {"parts": parts, "role": "model"}}
        )
        if finished:
            body["finishReason"] = "STOP"
        if api == "gemini" or index:
            body["index"] = index
        return body

    chunks: list[_Chunk] = []
    for i, piece in enumerate(pieces):
        last = i == len(pieces) - 1
        usage: dict[str, Any] | None = None
        if not script.omit_usage:
            if last:
                usage = _usage_metadata(api, candidates=candidates, **counts)
            elif only_last:
                usage = {"trafficType": "ON_DEMAND"} if api == "vertex" else {}
            else:
                running = candidates * (i + 1) // len(pieces)
                usage = _usage_metadata(api, candidates=running, **counts)
        payload: dict[str, Any] = {"candidates": [candidate(c, piece, last) for c in range(n)]}
        if usage is not None:
            payload["usageMetadata"] = usage
        payload["modelVersion"] = model_version
        if api == "vertex":
            payload["createTime"] = create_time
        payload["responseId"] = response_id
        chunks.append(_Chunk(payload, usage))
    return chunks


def _count_tokens(api: str, request: dict[str, Any], script: GeminiScript) -> dict[str, Any]:
    text = _input_text(request)
    total = script.prompt_tokens
    if total is None:
        total = estimate_tokens(text) + script.cached_tokens
    payload: dict[str, Any] = {"totalTokens": total}
    if api == "vertex":
        payload["totalBillableCharacters"] = len("".join(text.split()))
    if script.cached_tokens:
        payload["cachedContentTokenCount"] = script.cached_tokens
    payload["promptTokensDetails"] = _details(total)
    return payload


def _embed(
    request: dict[str, Any], script: GeminiScript, batch: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    items = request.get("requests") if batch else [request]
    if not isinstance(items, list) or not items:
        raise _RequestError(
            400, "* BatchEmbedContentsRequest.requests: requests is not specified\n"
        )
    texts: list[str] = []
    embeddings: list[dict[str, Any]] = []
    for item in items:
        if not isinstance(item, dict) or not isinstance(item.get("content"), dict):
            raise _RequestError(400, "* EmbedContentRequest.content: content is not specified\n")
        text = _input_text({"content": item["content"]})
        texts.append(text)
        try:
            dimensions = int(item.get("outputDimensionality") or EMBEDDING_DIMENSIONS)
        except (TypeError, ValueError):
            raise _RequestError(400, "Invalid value at 'output_dimensionality'") from None
        embeddings.append({"values": _embedding(text, max(1, dimensions))})
    prompt = script.prompt_tokens
    if prompt is None:
        prompt = sum(estimate_tokens(t) for t in texts)
    usage = None if script.omit_usage else {"promptTokenCount": prompt, "totalTokenCount": prompt}
    payload: dict[str, Any] = {"embeddings": embeddings} if batch else {"embedding": embeddings[0]}
    if usage is not None:
        payload["usageMetadata"] = usage
    return payload, usage


def _model_id(name: str) -> str:
    """``models/gemini-1.5-flash`` -> ``gemini-1.5-flash``."""
    return name.rsplit("/", 1)[-1]


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Handler(FakeHandler):
    _enum_ints = False  # the request asked for $alt=json;enum-encoding=int

    def version_string(self) -> str:
        return "scaffolding on HTTPServer2"

    def _answer(self) -> None:
        raw = self._read_body()
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        request, json_error = parse_json_object(
            raw,
            invalid="Invalid JSON payload received. {exc}",
            not_object="Invalid JSON payload received. Expected an object.",
        )
        match = _PATH.match(path)
        api = "vertex" if match is not None and match.group("vertex") else "gemini"
        method = match.group("method") if match is not None else ""
        exchange = GeminiExchange(
            path=path,
            request=request,
            headers=self._request_headers(),
            stream=method == "streamGenerateContent",
            api=api,
            query=query,
        )
        self.server.fake._record(exchange)
        self._enum_ints = "enum-encoding=int" in (query.get("$alt") or query.get("alt") or "")

        if match is None or self.command != "POST" or method not in _METHODS:
            self._send_error(exchange, 404, f"Method not found: {self.command} {path}")
            return

        script = self._take_script(exchange)
        if script is None:
            return
        model = match.group("model")
        try:
            if json_error is not None:
                raise _RequestError(400, json_error)
            if method in ("generateContent", "streamGenerateContent"):
                chunks = _generate(api, model, request, script, exchange.stream)
                if not exchange.stream:
                    exchange.usage = chunks[0].usage
                    self._send_json(exchange, 200, chunks[0].payload)
                elif query.get("alt") == "sse":
                    self._send_stream(exchange, script, chunks, sse=True)
                else:
                    self._send_stream(exchange, script, chunks, sse=False)
            elif method == "countTokens":
                self._send_json(exchange, 200, _count_tokens(api, request, script))
            else:
                payload, usage = _embed(request, script, batch=method == "batchEmbedContents")
                exchange.usage = usage
                self._send_json(exchange, 200, payload)
        except _RequestError as exc:
            exchange.usage = None
            self._send_error(exchange, exc.status, exc.message)

    # -- writers ----------------------------------------------------------------------------

    def _encode(self, payload: Any, *, indent: int | None) -> str:
        if self._enum_ints:
            payload = _int_enums(payload)
        if indent is None:
            return json.dumps(payload, separators=(",", ": "), ensure_ascii=False)
        return json.dumps(payload, indent=indent, ensure_ascii=False)

    def _common_headers(self, status: int) -> None:
        self.send_header("Vary", "Origin")
        self.send_header("Vary", "X-Origin")
        self.send_header("Vary", "Referer")
        self.send_header("X-Content-Type-Options", "nosniff")

    def _send_json(self, exchange: GeminiExchange, status: int, payload: Any) -> None:
        if exchange.usage is not None and self._enum_ints:
            exchange.usage = _int_enums(exchange.usage)
        body = (self._encode(payload, indent=2) + "\n").encode()
        self._send_body(exchange, status, body, "application/json; charset=UTF-8")

    def _send_error(
        self, exchange: GeminiExchange, status: int, message: str | None = None
    ) -> None:
        self._send_json(exchange, status, _error_payload(status, message))

    def _send_stream(
        self, exchange: GeminiExchange, script: GeminiScript, chunks: list[_Chunk], *, sse: bool
    ) -> None:
        """Write ``chunks`` as chunked SSE or one JSON array; honours delays and ``cut_after``."""
        frames: list[Frame] = []
        for index, chunk in enumerate(chunks):
            if sse:
                text = f"data: {self._encode(chunk.payload, indent=None)}\r\n\r\n"
            else:
                text = ("[" if index == 0 else "\n,\r\n") + self._encode(chunk.payload, indent=2)
                if index == len(chunks) - 1:
                    text += "\n]"
            usage = chunk.usage
            if usage is not None and self._enum_ints:
                usage = _int_enums(usage)
            frames.append(Frame(text.encode(), usage))
        if sse:
            headers = [("Content-Type", "text/event-stream"), ("Content-Disposition", "attachment")]
        else:
            headers = [("Content-Type", "application/json; charset=UTF-8")]
        self._send_chunked(exchange, script, frames, [*headers, ("Transfer-Encoding", "chunked")])


# --------------------------------------------------------------------------------------------
# gRPC plumbing (legacy google-generativeai; imported only when enabled)
# --------------------------------------------------------------------------------------------

# HTTP status -> gRPC status code name (the inverse of google.api_core's mapping).
_GRPC_CODES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


class _GrpcService:
    """The GenerativeService methods, answering from the fake's script queue."""

    def __init__(self, fake: FakeGeminiServer) -> None:
        from google.ai.generativelanguage_v1beta.types import generative_service as gs
        from google.protobuf import json_format

        self._fake = fake
        self._gs = gs
        self._json_format = json_format

    def handler(self) -> Any:
        import grpc

        gs = self._gs

        def unary(behaviour: Callable[..., Any], request_cls: Any, response_cls: Any) -> Any:
            return grpc.unary_unary_rpc_method_handler(
                behaviour,
                request_deserializer=request_cls.pb().FromString,
                response_serializer=response_cls.pb().SerializeToString,
            )

        handlers = {
            "GenerateContent": unary(
                self.generate_content, gs.GenerateContentRequest, gs.GenerateContentResponse
            ),
            "StreamGenerateContent": grpc.unary_stream_rpc_method_handler(
                self.stream_generate_content,
                request_deserializer=gs.GenerateContentRequest.pb().FromString,
                response_serializer=gs.GenerateContentResponse.pb().SerializeToString,
            ),
            "CountTokens": unary(self.count_tokens, gs.CountTokensRequest, gs.CountTokensResponse),
            "EmbedContent": unary(
                self.embed_content, gs.EmbedContentRequest, gs.EmbedContentResponse
            ),
            "BatchEmbedContents": unary(
                self.batch_embed_contents,
                gs.BatchEmbedContentsRequest,
                gs.BatchEmbedContentsResponse,
            ),
        }
        return grpc.method_handlers_generic_handler(GRPC_SERVICE, handlers)

    # -- helpers ----------------------------------------------------------------------------

    def _begin(
        self, method: str, request: Any, context: Any, *, stream: bool = False
    ) -> tuple[GeminiExchange, dict[str, Any], GeminiScript]:
        body = self._json_format.MessageToDict(request)
        headers: dict[str, str] = {}
        for key, value in context.invocation_metadata() or ():
            if isinstance(value, bytes):
                value = base64.b64encode(value).decode()
            headers[key.lower()] = value
        exchange = GeminiExchange(
            path=f"/{GRPC_SERVICE}/{method}",
            request=body,
            headers=headers,
            stream=stream,
            transport="grpc",
        )
        self._fake._record(exchange)
        script = self._fake._take_script()
        status = error_status(script)
        if status is not None:
            self._abort(exchange, context, status, None)
        return exchange, body, script

    def _abort(
        self, exchange: GeminiExchange, context: Any, status: int, message: str | None
    ) -> None:
        import grpc

        payload = _error_payload(status, message)["error"]
        exchange.status = status
        code = getattr(grpc.StatusCode, _GRPC_CODES.get(status, "UNKNOWN"))
        context.abort(code, payload["message"])

    def _message(self, cls: Any, payload: dict[str, Any]) -> Any:
        return self._json_format.ParseDict(payload, cls.pb()(), ignore_unknown_fields=True)

    def _sent_usage(self, message: Any) -> dict[str, Any] | None:
        if not message.HasField("usage_metadata"):
            return None
        return dict(self._json_format.MessageToDict(message.usage_metadata))

    def _chunks(
        self, exchange: GeminiExchange, body: dict[str, Any], script: GeminiScript, context: Any
    ) -> list[_Chunk]:
        try:
            return _generate(
                "gemini", _model_id(body.get("model", "")), body, script, exchange.stream
            )
        except _RequestError as exc:
            self._abort(exchange, context, exc.status, exc.message)
            raise  # unreachable: abort raises

    # -- methods ----------------------------------------------------------------------------

    def generate_content(self, request: Any, context: Any) -> Any:
        exchange, body, script = self._begin("GenerateContent", request, context)
        chunk = self._chunks(exchange, body, script, context)[0]
        message = self._message(self._gs.GenerateContentResponse, chunk.payload)
        exchange.usage = self._sent_usage(message)
        exchange.status = 200
        return message

    def stream_generate_content(self, request: Any, context: Any) -> Iterator[Any]:
        import grpc

        exchange, body, script = self._begin("StreamGenerateContent", request, context, stream=True)
        chunks = self._chunks(exchange, body, script, context)
        exchange.status = 200
        limit = script.cut_after
        for index, chunk in enumerate(chunks):
            if limit is not None and index >= max(0, limit):
                context.abort(grpc.StatusCode.INTERNAL, "Received RST_STREAM with error code 2")
            if index and script.chunk_delay > 0:
                time.sleep(script.chunk_delay)
            message = self._message(self._gs.GenerateContentResponse, chunk.payload)
            usage = self._sent_usage(message)
            if usage is not None:
                exchange.usage = usage
            exchange.events += 1
            yield message

    def count_tokens(self, request: Any, context: Any) -> Any:
        exchange, body, script = self._begin("CountTokens", request, context)
        exchange.status = 200
        return self._message(self._gs.CountTokensResponse, _count_tokens("gemini", body, script))

    def _embed(self, method: str, request: Any, context: Any, batch: bool) -> Any:
        exchange, body, script = self._begin(method, request, context)
        try:
            payload, _ = _embed(body, script, batch=batch)
        except _RequestError as exc:
            self._abort(exchange, context, exc.status, exc.message)
            raise
        cls = self._gs.BatchEmbedContentsResponse if batch else self._gs.EmbedContentResponse
        exchange.status = 200
        return self._message(cls, payload)

    def embed_content(self, request: Any, context: Any) -> Any:
        return self._embed("EmbedContent", request, context, batch=False)

    def batch_embed_contents(self, request: Any, context: Any) -> Any:
        return self._embed("BatchEmbedContents", request, context, batch=True)


def _is_loopback(target: str) -> bool:
    """Whether a gRPC target (``host:port``, ``[::1]:port``, ``ipv4:...``) is a loopback one."""
    address = target
    for prefix in ("dns:///", "ipv4:", "ipv6:"):
        address = address.removeprefix(prefix)
    if address.startswith("["):
        host = address[1:].split("]", 1)[0]
    elif address.count(":") == 1:
        host = address.split(":", 1)[0]
    else:
        host = address
    return host in _LOOPBACK_HOSTS


def _called_for_async_client() -> bool:
    """Whether a ``...AsyncClient.__init__`` (google.ai.generativelanguage) is up the stack."""
    frame = sys._getframe(1)
    for _ in range(8):
        frame = frame.f_back  # type: ignore[assignment]
        if frame is None:
            return False
        owner = frame.f_locals.get("self")
        if (
            frame.f_code.co_name == "__init__"
            and owner is not None
            and type(owner).__name__.endswith("AsyncClient")
            and type(owner).__module__.startswith("google.ai.generativelanguage")
        ):
            return True
    return False


def _key_metadata(credentials: Any) -> list[tuple[str, str]]:
    """The metadata the SDK's auth plugin would add for API-key credentials."""
    if credentials is None or type(credentials).__module__ != "google.auth.api_key":
        return []
    headers: dict[str, str] = {}
    credentials.apply(headers)
    return [(k.lower(), v) for k, v in headers.items()]


def legacy_grpc_transport(
    target: str | FakeGeminiServer | None = None, *, aio: bool | None = None
) -> Callable[..., Any]:
    """A transport factory for the legacy SDK that connects over a plaintext loopback channel.

    Pass it as ``google.generativeai.configure(transport=...)`` (or as ``transport=`` of
    ``GenerativeServiceClient`` / ``GenerativeServiceAsyncClient``). ``target`` defaults to the
    client's ``client_options["api_endpoint"]`` (use :attr:`FakeGeminiServer.grpc_target`); only
    loopback targets are accepted. ``aio``: build the asyncio transport (True), the sync one
    (False) or, by default, whichever the client being built needs.
    """
    fixed = target.grpc_target if isinstance(target, FakeGeminiServer) else target

    def factory(*, credentials: Any = None, host: str | None = None, **kwargs: Any) -> Any:
        import grpc
        from google.ai.generativelanguage_v1beta.services.generative_service import transports

        address = fixed or host or ""
        if not _is_loopback(address):
            raise ValueError(
                f"legacy_grpc_transport only connects to loopback targets, not {address!r}"
            )
        use_aio = _called_for_async_client() if aio is None else aio
        metadata = _key_metadata(credentials)
        extra: dict[str, Any] = {}
        if kwargs.get("client_info") is not None:
            extra["client_info"] = kwargs["client_info"]
        if use_aio:
            channel: Any = grpc.aio.insecure_channel(
                address, interceptors=_aio_interceptors(metadata)
            )
            return transports.GenerativeServiceGrpcAsyncIOTransport(
                host=address, channel=channel, **extra
            )
        channel = grpc.insecure_channel(address)
        if metadata:
            channel = grpc.intercept_channel(channel, _metadata_interceptor(metadata))
        return transports.GenerativeServiceGrpcTransport(host=address, channel=channel, **extra)

    return factory


def _metadata_interceptor(metadata: list[tuple[str, str]]) -> Any:
    import grpc

    class _Details(grpc.ClientCallDetails):  # type: ignore[misc]
        def __init__(self, base: Any) -> None:
            self.method = base.method
            self.timeout = base.timeout
            self.metadata = [*(base.metadata or ()), *metadata]
            self.credentials = base.credentials
            self.wait_for_ready = base.wait_for_ready
            self.compression = base.compression

    class _Interceptor(grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor):  # type: ignore[misc]
        def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(_Details(details), request)

        def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
            return continuation(_Details(details), request)

    return _Interceptor()


def _aio_interceptors(metadata: list[tuple[str, str]]) -> list[Any]:
    if not metadata:
        return []
    from grpc import aio

    def details(base: Any) -> Any:
        return aio.ClientCallDetails(
            base.method,
            base.timeout,
            aio.Metadata(*(base.metadata or ()), *metadata),
            base.credentials,
            base.wait_for_ready,
        )

    class _Unary(aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_unary(self, continuation: Any, base: Any, request: Any) -> Any:
            return await continuation(details(base), request)

    class _Stream(aio.UnaryStreamClientInterceptor):  # type: ignore[misc]
        async def intercept_unary_stream(self, continuation: Any, base: Any, request: Any) -> Any:
            return await continuation(details(base), request)

    return [_Unary(), _Stream()]


# --------------------------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------------------------


class FakeGeminiServer(FakeServer[GeminiScript, GeminiExchange]):
    """A Gemini API / Vertex AI server on a loopback port, driven by a queue of
    :class:`GeminiScript`.

    Use as a context manager (``with FakeGeminiServer() as server:``) or call :meth:`start` /
    :meth:`stop`. Point google-genai (``HttpOptions(base_url=...)``) or the legacy SDK's REST
    transport (``client_options={"api_endpoint": ...}``) at :attr:`base_url`. With
    ``enable_grpc=True`` a gRPC listener on another loopback port (:attr:`grpc_target`) answers
    the legacy SDK's gRPC calls from the same script queue, recording into the same
    :attr:`exchanges`.
    """

    _name = "gemini"
    _logger = _log
    _handler_class = _Handler
    _script_class = GeminiScript

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        enable_grpc: bool = False,
        grpc_port: int = 0,
    ) -> None:
        super().__init__(host, port)
        self._enable_grpc = enable_grpc
        self._grpc_port_wanted = grpc_port
        self._grpc_server: Any = None
        self._grpc_port: int | None = None

    # -- lifecycle (gRPC listener) ----------------------------------------------------------

    def _start_more(self) -> None:
        if self._enable_grpc:
            self._start_grpc()

    def _start_grpc(self) -> None:
        from concurrent import futures

        import grpc

        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=16, thread_name_prefix="fake-gemini-grpc"),
            options=[("grpc.so_reuseport", 0)],
        )
        server.add_generic_rpc_handlers((_GrpcService(self).handler(),))
        port = server.add_insecure_port(f"{self._host}:{self._grpc_port_wanted}")
        if not port:
            raise OSError(f"cannot bind gRPC port {self._host}:{self._grpc_port_wanted}")
        server.start()
        self._grpc_server, self._grpc_port = server, port

    def _stop_more(self) -> None:
        grpc_server = self._grpc_server
        self._grpc_server = self._grpc_port = None
        if grpc_server is not None:
            grpc_server.stop(grace=None).wait(timeout=5)

    # -- addresses --------------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>``: google-genai's ``HttpOptions(base_url=...)`` and the legacy
        REST transport's ``client_options={"api_endpoint": ...}``."""
        return f"http://{self._host}:{self.port}"

    @property
    def grpc_port(self) -> int:
        """The bound gRPC port (started with ``enable_grpc=True``)."""
        if self._grpc_port is None:
            raise RuntimeError("FakeGeminiServer has no gRPC listener (start, enable_grpc=True)")
        return self._grpc_port

    @property
    def grpc_target(self) -> str:
        """``127.0.0.1:<grpc port>``: the legacy SDK's ``client_options={"api_endpoint": ...}``
        with ``transport=legacy_grpc_transport()``."""
        return f"{self._host}:{self.grpc_port}"
