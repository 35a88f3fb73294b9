"""A fake Anthropic Messages API server on 127.0.0.1 that speaks the real wire format.

It answers the endpoints whose usage this project meters, shaped like the real API's recorded
answers (``POST /v1/messages`` as JSON or as a server-sent-event stream, and
``POST /v1/messages/count_tokens``), so the *real* ``anthropic`` SDK can be pointed at it::

    with FakeAnthropicServer() as server:
        server.enqueue(AnthropicScript(text="Hello there.", cache_read_input_tokens=1163))
        client = anthropic.Anthropic(base_url=server.base_url, api_key="test", max_retries=0)
        client.messages.create(model="claude-sonnet-4-5", max_tokens=1024, messages=[...])
        assert server.exchanges[-1].usage == {...}

The beta namespace (``client.beta.messages.create`` / ``.stream`` / ``.count_tokens``) sends the
same requests to ``/v1/messages?beta=true`` with an ``anthropic-beta`` header; they are answered
alike (the query string is recorded in :attr:`AnthropicExchange.query`).

Usage follows the API's conventions: ``input_tokens`` *excludes* ``cache_read_input_tokens`` and
``cache_creation_input_tokens``; ``output_tokens`` *includes* extended-thinking tokens. A stream
sends the input and cache counts in ``message_start`` (with a placeholder ``output_tokens``) and
the cumulative ``output_tokens`` in ``message_delta``.

Each request takes the next queued :class:`AnthropicScript` (FIFO; ``AnthropicScript()`` defaults
when the queue is empty) and is recorded as an :class:`AnthropicExchange`, which says exactly which
usage went over the wire. Stdlib only: a :class:`~http.server.ThreadingHTTPServer` in a daemon
thread, HTTP/1.1 keep-alive, chunked transfer encoding for streams (so a stream cut by
``AnthropicScript.cut_after`` is an incomplete body, as a real network cut would be).
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import logging
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._base import (
    BadRequestError,
    FakeHandler,
    FakeServer,
    SSEEvent,
    compact_json,
    estimate_tokens,
    parse_json_object,
    retry_headers,
)

__all__ = [
    "DEFAULT_TEXT",
    "DEFAULT_THINKING_TEXT",
    "AnthropicExchange",
    "AnthropicScript",
    "FakeAnthropicServer",
]

_log = logging.getLogger(__name__)

#: The assistant text answered when the script does not say otherwise.
DEFAULT_TEXT = "This is a test response from the fake Anthropic server."

#: The thinking text answered when the request enables extended thinking and the script is silent.
DEFAULT_THINKING_TEXT = "The user wants a test response, so I will give one."

#: Stands in for the organisation id the real API sends in ``anthropic-organization-id``.
_ORGANIZATION_ID = "00000000-0000-4000-8000-00000000fa4e"

_ID_ALPHABET = string.digits + string.ascii_letters

#: Status -> (error type, default message), as the API's error envelope says them.
_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request."),
    401: ("authentication_error", "invalid x-api-key"),
    402: (
        "billing_error",
        "Your credit balance is too low to access the Anthropic API.",
    ),
    403: (
        "permission_error",
        "Your API key does not have permission to use the specified resource.",
    ),
    404: ("not_found_error", "Not Found"),
    408: ("timeout_error", "Request timed out."),
    409: ("conflict_error", "Conflict."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    429: (
        "rate_limit_error",
        (
            "This request would exceed the rate limit for your organization of 50 requests "
            "per minute. For details, refer to: https://docs.claude.com/en/api/rate-limits. "
            "You can see the response headers for current usage."
        ),
    ),
    500: ("api_error", "Internal server error"),
    504: ("timeout_error", "Request timed out"),
    529: ("overloaded_error", "Overloaded"),
}


@dataclass
class AnthropicScript:
    """How to answer ONE request. Every field is optional; ``AnthropicScript()`` is a plain success.

    Raises ``ValueError`` when ``cache_creation_1h_input_tokens`` exceeds
    ``cache_creation_input_tokens`` (the 1-hour part cannot exceed the whole).
    """

    status: int | None = None
    """Answer with this HTTP error status (>= 400; lower values are ignored) and the API's
    ``{"type": "error", "error": {"type", "message"}, "request_id"}`` JSON body (e.g. 429
    ``rate_limit_error``, 500 ``api_error``, 529 ``overloaded_error``), also for stream requests.

    Retryable statuses (408, 409, 429, >= 500) carry ``retry-after-ms: 1``, so the SDK retries at
    once if (and only if) the client's ``max_retries`` allows it; each retry takes the next script.
    """
    text: str | None = None
    """Assistant text (one ``text`` content block). Default: :data:`DEFAULT_TEXT`."""
    chunks: int | None = None
    """Number of pieces each content block (text, thinking) is split into, at most one per
    character: one ``content_block_delta`` each when streaming. Default: one per word."""
    input_tokens: int | None = None
    """``usage.input_tokens``: the input tokens *not* read from or written to the cache.
    Default: ``len(system and message text) // 4 + 1``. ``count_tokens`` answers this plus both
    cache counts (the whole prompt)."""
    output_tokens: int | None = None
    """``usage.output_tokens``, thinking included. Default: the number of text and thinking pieces
    (at least 1)."""
    cache_read_input_tokens: int = 0
    """``usage.cache_read_input_tokens``: input served from the prompt cache (not part of
    ``input_tokens``)."""
    cache_creation_input_tokens: int = 0
    """``usage.cache_creation_input_tokens``: input written to the prompt cache (not part of
    ``input_tokens``), whatever its TTL."""
    cache_creation_1h_input_tokens: int = 0
    """The part of ``cache_creation_input_tokens`` written with a 1-hour TTL:
    ``usage.cache_creation`` reports ``ephemeral_1h_input_tokens`` = this and
    ``ephemeral_5m_input_tokens`` = the rest."""
    thinking_text: str | None = None
    """Extended thinking: a ``thinking`` content block (with a ``signature``) before the text block;
    streamed as ``thinking_delta`` events then one ``signature_delta``. Default (None): a block with
    :data:`DEFAULT_THINKING_TEXT` when the request enables thinking (``thinking.type ==
    "enabled"``), none otherwise. ``""``: no thinking block, whatever the request says."""
    response_model: str | None = None
    """Model echoed in the response. Default: the request's model."""
    cut_after: int | None = None
    """Streams: close the connection after this many SSE events (``ping`` and an ``error`` event
    count), without finishing the chunked body, like a network cut mid-stream. The SDK raises from
    the caller's loop: ``anthropic.APIConnectionError`` in recent releases (2.17 here), a bare
    ``httpx2.RemoteProtocolError`` in older ones. A value at or beyond the number of events ends
    the body cleanly."""
    delay: float = 0.0
    """Seconds to wait before answering (also before an error status)."""
    chunk_delay: float = 0.0
    """Seconds to wait between stream events."""
    usage_in_message_delta: bool = False
    """Streams: ``message_delta.usage`` also carries ``input_tokens``,
    ``cache_creation_input_tokens`` and ``cache_read_input_tokens`` (cumulative, so equal to
    ``message_start``'s), as the newer API does. Default: ``output_tokens`` only, as recorded."""
    error_event_after: int | None = None
    """Streams: after this many SSE events, send ``event: error`` with an ``overloaded_error``
    (as the API does when it is overloaded mid-stream) and end the body cleanly. The SDK raises
    ``anthropic.APIStatusError`` (``status_code`` 200, the stream's, ``type`` ``overloaded_error``)
    from the caller's loop."""

    def __post_init__(self) -> None:
        if self.cache_creation_1h_input_tokens > self.cache_creation_input_tokens:
            raise ValueError(
                "cache_creation_1h_input_tokens is part of cache_creation_input_tokens and cannot "
                f"exceed it ({self.cache_creation_1h_input_tokens} > "
                f"{self.cache_creation_input_tokens})"
            )


@dataclass
class AnthropicExchange:
    """One request the server answered, for assertions.

    Recorded when the request arrives and updated *before* each byte is written, so by the time the
    client has read something the exchange already says so.
    """

    path: str
    """Request path, e.g. ``/v1/messages`` (without query string)."""
    request: dict[str, Any]
    """Parsed JSON body (``{}`` when there was none or it was not a JSON object)."""
    headers: dict[str, str]
    """Request headers, names lower-cased (``anthropic-beta``, ``anthropic-version``, ...)."""
    status: int = 0
    """HTTP status answered (0 while still undecided; 200 for a stream, even one that then sent
    an ``error`` event)."""
    stream: bool = False
    """Whether the request asked for a stream (``"stream": true``)."""
    usage: dict[str, Any] | None = None
    """The message usage the server actually sent, exactly as on the wire. For a stream, the
    ``message_start`` usage updated with the ``message_delta`` usage (what the SDK's stream helper
    accumulates), or only the former if the stream ended before ``message_delta``. None when no
    usage was sent (errors, ``count_tokens``, a stream cut before ``message_start``)."""
    events: int = 0
    """SSE events written (streams), ``ping`` and ``error`` included."""
    query: str = ""
    """Raw query string, e.g. ``beta=true`` (older SDKs send the beta namespace there)."""
    request_id: str = ""
    """The ``request-id`` response header (and error bodies' ``request_id``) answered."""


# --------------------------------------------------------------------------------------------
# Payload helpers (pure functions)
# --------------------------------------------------------------------------------------------


def _gather_text(value: Any, out: list[str]) -> None:
    """Append every string of a system prompt / messages structure (strings, lists, blocks)."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            _gather_text(item, out)
    elif isinstance(value, dict):
        for key in ("content", "text", "thinking"):
            if key in value:
                _gather_text(value[key], out)
        if isinstance(value.get("input"), dict):  # tool_use blocks
            out.append(json.dumps(value["input"], sort_keys=True))


def _prompt_tokens(request: dict[str, Any]) -> int:
    parts: list[str] = []
    _gather_text(request.get("system"), parts)
    _gather_text(request.get("messages"), parts)
    return estimate_tokens("\n".join(parts))


def _pieces(text: str, chunks: int | None) -> list[str]:
    """Split ``text`` into stream deltas: ``chunks`` near-equal pieces, or one per word.

    Words keep their leading whitespace (``"This", " is", " a"``), like real tokens. Joining the
    pieces gives ``text`` back; an empty text has no pieces.
    """
    if not text:
        return []
    if chunks is not None:
        count = min(max(1, int(chunks)), len(text))
        size, extra = divmod(len(text), count)
        bounds = [i * size + min(i, extra) for i in range(count + 1)]
        return [text[bounds[i] : bounds[i + 1]] for i in range(count)]
    pieces: list[str] = []
    start = 0
    for i in range(1, len(text)):
        if text[i].isspace() and not text[i - 1].isspace():
            pieces.append(text[start:i])
            start = i
    pieces.append(text[start:])
    return pieces


def _signature(thinking: str) -> str:
    """An opaque, deterministic stand-in for a thinking block's signature."""
    digest = hashlib.sha512(thinking.encode()).digest()
    return base64.b64encode(b"\x12\x60" + digest + digest[:30]).decode()


def _random_id(prefix: str, length: int = 22) -> str:
    """``msg_01`` / ``req_01`` style ids: a prefix, ``01`` and base62 characters."""
    return prefix + "01" + "".join(secrets.choice(_ID_ALPHABET) for _ in range(length))


def _error_body(status: int, message: str | None, request_id: str) -> dict[str, Any]:
    kind, default_message = _ERRORS.get(
        status,
        ("api_error", "Internal server error")
        if status >= 500
        else ("invalid_request_error", "Invalid request."),
    )
    return {
        "type": "error",
        "error": {"type": kind, "message": message or default_message},
        "request_id": request_id,
    }


#: Exactly as the API writes these two (with spaces, unlike the other events).
_PING = SSEEvent('{"type": "ping"}', name="ping")
_OVERLOADED = SSEEvent(
    '{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}',
    name="error",
)


def _require(request: dict[str, Any], *, max_tokens: bool) -> str:
    """Validate the fields every Messages request needs, the API's way; return the model."""
    model = request.get("model")
    if "model" not in request:
        raise BadRequestError("model: Field required")
    if not isinstance(model, str) or not model:
        raise BadRequestError("model: Input should be a valid string")
    if max_tokens:
        if "max_tokens" not in request:
            raise BadRequestError("max_tokens: Field required")
        value = request["max_tokens"]
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise BadRequestError("max_tokens: Input should be a valid integer greater than 0")
    messages = request.get("messages")
    if "messages" not in request:
        raise BadRequestError("messages: Field required")
    if not isinstance(messages, list):
        raise BadRequestError("messages: Input should be a valid list")
    if not messages:
        raise BadRequestError("messages: at least one message is required")
    return model


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Handler(FakeHandler):
    server_version = "fake-anthropic/1.0"
    _request_id: str = ""

    def _dispatch(self) -> None:
        self._request_id = _random_id("req_", 22)
        super()._dispatch()

    def _answer(self) -> None:
        raw = self._read_body()
        path, _, query = self.path.partition("?")
        path = path.rstrip("/") or "/"
        request, json_error = parse_json_object(
            raw,
            invalid="There was an error parsing the body of your request: {exc}",
            not_object="The request body must be a JSON object.",
        )
        if not raw and self.command == "POST":
            json_error = "The request body is empty."
        exchange = AnthropicExchange(
            path=path,
            request=request,
            headers=self._request_headers(),
            query=query,
            stream=request.get("stream") is True,
            request_id=self._request_id,
        )
        self.server.fake._record(exchange)

        route = _ROUTES.get(path) if self.command == "POST" else None
        if route is None:
            self._send_error(exchange, 404)
            return
        self._call_route(route, exchange, request, json_error)

    # -- writers ----------------------------------------------------------------------------

    def _common_headers(self, status: int) -> None:
        remaining = 0 if status == 429 else 3999
        reset = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
        self.send_header("request-id", self._request_id)
        self.send_header("anthropic-organization-id", _ORGANIZATION_ID)
        self.send_header("anthropic-ratelimit-requests-limit", "4000")
        self.send_header("anthropic-ratelimit-requests-remaining", str(remaining))
        self.send_header(
            "anthropic-ratelimit-requests-reset", reset.isoformat().replace("+00:00", "Z")
        )

    def _send_json(
        self,
        exchange: AnthropicExchange,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = compact_json(payload).encode()
        self._send_body(exchange, status, body, "application/json", headers)

    def _send_error(
        self, exchange: AnthropicExchange, status: int, message: str | None = None
    ) -> None:
        body = _error_body(status, message, self._request_id)
        self._send_json(exchange, status, body, retry_headers(status))

    def _send_stream(
        self, exchange: AnthropicExchange, script: AnthropicScript, events: list[SSEEvent]
    ) -> None:
        """Write ``events`` as a chunked ``text/event-stream``.

        Honours ``chunk_delay``, ``error_event_after`` (then a clean end) and ``cut_after`` (then
        an abrupt one).
        """
        if script.error_event_after is not None:
            events = [*events[: max(0, script.error_event_after)], _OVERLOADED]
        self._send_sse(exchange, script, events)

    # -- endpoints --------------------------------------------------------------------------

    def _messages(
        self, exchange: AnthropicExchange, script: AnthropicScript, request: dict[str, Any]
    ) -> None:
        model = _require(request, max_tokens=True)
        text = DEFAULT_TEXT if script.text is None else script.text
        thinking = script.thinking_text
        if thinking is None:
            config = request.get("thinking")
            enabled = isinstance(config, dict) and config.get("type") == "enabled"
            thinking = DEFAULT_THINKING_TEXT if enabled else ""
        text_pieces = _pieces(text, script.chunks)
        thinking_pieces = _pieces(thinking, script.chunks)

        input_tokens = script.input_tokens
        if input_tokens is None:
            input_tokens = _prompt_tokens(request)
        output_tokens = script.output_tokens
        if output_tokens is None:
            output_tokens = max(1, len(text_pieces) + len(thinking_pieces))
        cache_write = script.cache_creation_input_tokens
        cache_1h = script.cache_creation_1h_input_tokens

        def usage(output: int) -> dict[str, Any]:
            return {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": cache_write,
                "cache_read_input_tokens": script.cache_read_input_tokens,
                "cache_creation": {
                    "ephemeral_5m_input_tokens": cache_write - cache_1h,
                    "ephemeral_1h_input_tokens": cache_1h,
                },
                "output_tokens": output,
                "service_tier": "standard",
            }

        message_id = _random_id("msg_", 22)
        answered_model = script.response_model or model
        signature = _signature(thinking) if thinking else None

        def message(
            content: list[dict[str, Any]], stop: str | None, sent: dict[str, Any]
        ) -> dict[str, Any]:
            return {
                "model": answered_model,
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "content": content,
                "stop_reason": stop,
                "stop_sequence": None,
                "usage": sent,
            }

        if not exchange.stream:
            content: list[dict[str, Any]] = []
            if thinking:
                content.append({"type": "thinking", "thinking": thinking, "signature": signature})
            content.append({"type": "text", "text": text})
            final = usage(output_tokens)
            exchange.usage = final
            self._send_json(exchange, 200, message(content, "end_turn", final))
            return

        start_usage = usage(min(1, output_tokens))
        delta_usage: dict[str, Any] = {"output_tokens": output_tokens}
        if script.usage_in_message_delta:
            delta_usage = {
                "input_tokens": input_tokens,
                "cache_creation_input_tokens": cache_write,
                "cache_read_input_tokens": script.cache_read_input_tokens,
                "output_tokens": output_tokens,
            }

        events: list[SSEEvent] = []

        def emit(kind: str, carried: dict[str, Any] | None = None, **fields: Any) -> None:
            events.append(
                SSEEvent(compact_json({"type": kind, **fields}), name=kind, usage=carried)
            )

        emit("message_start", start_usage, message=message([], None, start_usage))
        blocks: list[tuple[str, list[str]]] = []
        if thinking:
            blocks.append(("thinking", thinking_pieces))
        blocks.append(("text", text_pieces))
        for index, (kind, pieces) in enumerate(blocks):
            if kind == "thinking":
                emit(
                    "content_block_start",
                    index=index,
                    content_block={"type": "thinking", "thinking": "", "signature": ""},
                )
            else:
                emit("content_block_start", index=index, content_block={"type": "text", "text": ""})
            if index == 0:
                events.append(_PING)
            for piece in pieces:
                emit(
                    "content_block_delta",
                    index=index,
                    delta={"type": f"{kind}_delta", kind: piece},
                )
            if kind == "thinking":
                emit(
                    "content_block_delta",
                    index=index,
                    delta={"type": "signature_delta", "signature": signature},
                )
            emit("content_block_stop", index=index)
        emit(
            "message_delta",
            {**start_usage, **delta_usage},
            delta={"stop_reason": "end_turn", "stop_sequence": None},
            usage=delta_usage,
        )
        emit("message_stop")
        self._send_stream(exchange, script, events)

    def _count_tokens(
        self, exchange: AnthropicExchange, script: AnthropicScript, request: dict[str, Any]
    ) -> None:
        _require(request, max_tokens=False)
        count = script.input_tokens
        if count is None:
            count = _prompt_tokens(request)
        count += script.cache_read_input_tokens + script.cache_creation_input_tokens
        self._send_json(exchange, 200, {"input_tokens": count})


_ROUTES: dict[
    str, Callable[[_Handler, AnthropicExchange, AnthropicScript, dict[str, Any]], None]
] = {
    "/v1/messages": _Handler._messages,
    "/v1/messages/count_tokens": _Handler._count_tokens,
}


# --------------------------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------------------------


class FakeAnthropicServer(FakeServer[AnthropicScript, AnthropicExchange]):
    """An Anthropic Messages API server on a loopback port, driven by a queue of
    :class:`AnthropicScript`.

    Use as a context manager (``with FakeAnthropicServer() as server:``) or call :meth:`start` /
    :meth:`stop`. Point the SDK at :attr:`base_url`.
    """

    _name = "anthropic"
    _logger = _log
    _handler_class = _Handler
    _script_class = AnthropicScript

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>`` (no ``/v1``): what ``anthropic.Anthropic(base_url=...)``
        takes."""
        return f"http://{self._host}:{self.port}"
