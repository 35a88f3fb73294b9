"""A fake OpenAI-compatible HTTP server on 127.0.0.1 that speaks the real wire formats.

It answers the three endpoints whose usage this project meters, shaped like the real API's
recorded answers (chat completions, Responses, embeddings; JSON and server-sent-event streams),
so the *real* ``openai`` SDK can be pointed at it with ``base_url``::

    with FakeOpenAIServer() as server:
        server.enqueue(Script(text="Hello there.", cached_tokens=16))
        client = openai.OpenAI(base_url=server.base_url, api_key="test", max_retries=0)
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])
        assert server.exchanges[-1].usage == {...}

Each request takes the next queued :class:`Script` (FIFO; ``Script()`` defaults when the queue is
empty) and is recorded as an :class:`Exchange`, which says exactly which usage object went over
the wire. Stdlib only: a :class:`~http.server.ThreadingHTTPServer` in a daemon thread, HTTP/1.1
keep-alive, chunked transfer encoding for streams (so a stream cut by ``Script.cut_after`` is an
incomplete body that the client reports as a connection error, as a real network cut would be).
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import logging
import struct
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._base import (
    BadRequestError,
    FakeHandler,
    FakeServer,
    SSEEvent,
    collect_text,
    compact_json,
    estimate_tokens,
    parse_json_object,
    retry_headers,
    schema_instance,
    split_text,
)

__all__ = [
    "DEFAULT_TEXT",
    "EMBEDDING_DIMENSIONS",
    "Exchange",
    "FakeOpenAIServer",
    "Script",
]

_log = logging.getLogger(__name__)

#: The assistant text answered when neither the script nor a JSON response format says otherwise.
DEFAULT_TEXT = "This is a test response from the fake OpenAI server."

#: Length of the embedding vectors (unless the request asks for ``dimensions``).
EMBEDDING_DIMENSIONS = 8

_SYSTEM_FINGERPRINT = "fp_fake0openai"

_ERROR_BODIES: dict[int, tuple[str, str, str | None]] = {
    400: ("Invalid request.", "invalid_request_error", None),
    401: (
        (
            "Incorrect API key provided: test. You can find your API key at "
            "https://platform.openai.com/account/api-keys."
        ),
        "invalid_request_error",
        "invalid_api_key",
    ),
    403: (
        "You are not allowed to sample from this model.",
        "invalid_request_error",
        None,
    ),
    404: (
        "The model does not exist or you do not have access to it.",
        "invalid_request_error",
        "model_not_found",
    ),
    408: ("Request timed out.", "timeout", None),
    409: ("Conflict.", "invalid_request_error", None),
    429: (
        (
            "Rate limit reached for requests per min (RPM): Limit 3, Used 3, "
            "Requested 1. Please try again in 20s."
        ),
        "requests",
        "rate_limit_exceeded",
    ),
    500: (
        "The server had an error while processing your request. Sorry about that!",
        "server_error",
        None,
    ),
    502: ("Bad gateway.", "server_error", None),
    503: (
        "The engine is currently overloaded, please try again later.",
        "server_error",
        None,
    ),
}


@dataclass
class Script:
    """How to answer ONE request. Every field is optional; ``Script()`` is a plain success."""

    status: int | None = None
    """Answer with this HTTP error status (>= 400; lower values are ignored) and an OpenAI-style
    ``{"error": {"message", "type", "param", "code"}}`` JSON body.

    Retryable statuses (408, 409, 429, >= 500) carry ``retry-after-ms: 1``, so the SDK retries at
    once if (and only if) the client's ``max_retries`` allows it; each retry takes the next script.
    """
    text: str | None = None
    """Assistant text. Default: :data:`DEFAULT_TEXT`, or, when the request asks for a JSON schema
    (``response_format`` / ``text.format``), the smallest JSON instance of that schema (``{}`` for
    ``json_object``), so ``parse()`` helpers succeed."""
    chunks: int | None = None
    """Number of content pieces the text is split into (stream events). Default: one per word."""
    prompt_tokens: int | None = None
    """Input token count (chat ``prompt_tokens``, Responses ``input_tokens``, embeddings).
    Default: ``len(all input text) // 4 + 1``, plus ``cached_tokens``."""
    completion_tokens: int | None = None
    """Output token count.

    Default: number of content pieces (times ``n``), plus ``reasoning_tokens``."""
    cached_tokens: int = 0
    """Reported as ``prompt_tokens_details.cached_tokens`` / ``input_tokens_details.cached_tokens``;
    part of the input count, as OpenAI reports it."""
    reasoning_tokens: int = 0
    """Reported as ``completion_tokens_details.reasoning_tokens`` /
    ``output_tokens_details.reasoning_tokens``; part of the output count. Responses also get a
    ``reasoning`` output item, as reasoning models answer."""
    response_model: str | None = None
    """Model echoed in the response. Default: the request's model."""
    usage_always: bool = False
    """Chat streams: send usage even when the request did not ask for it, in the chunk that carries
    ``finish_reason`` and with no ``"usage": null`` on the other chunks (DeepSeek's layout)."""
    omit_usage: bool = False
    """Never send usage: no ``usage`` key at all (chat, embeddings), ``"usage": null``
    in Responses."""
    cut_after: int | None = None
    """Streams: close the connection after this many SSE events (``data: [DONE]`` counts as one),
    without finishing the chunked body, like a network cut mid-stream. The SDK raises
    ``openai.APIConnectionError`` in the caller's loop (unless ``[DONE]`` was already sent)."""
    delay: float = 0.0
    """Seconds to wait before answering (also before an error status)."""
    chunk_delay: float = 0.0
    """Seconds to wait between stream events."""


@dataclass
class Exchange:
    """One request the server answered, for assertions.

    Recorded when the request arrives and updated *before* each byte is written, so by the time the
    client has read something the exchange already says so.
    """

    path: str
    """Request path, e.g. ``/v1/chat/completions`` (without query string)."""
    request: dict[str, Any]
    """Parsed JSON body (``{}`` when there was none or it was not a JSON object)."""
    headers: dict[str, str]
    """Request headers, names lower-cased."""
    status: int = 0
    """HTTP status answered (0 while still undecided)."""
    stream: bool = False
    """Whether the request asked for a stream (``"stream": true``)."""
    usage: dict[str, Any] | None = None
    """The usage object the server actually sent, exactly as on the wire; None if none was sent
    (not asked for, omitted, or cut off before it)."""
    events: int = 0
    """SSE events written (streams), ``data: [DONE]`` included."""


# --------------------------------------------------------------------------------------------
# Payload helpers (pure functions)
# --------------------------------------------------------------------------------------------


_TEXT_KEYS = ("content", "text", "input", "arguments", "output", "refusal")


def _input_text(*values: Any) -> str:
    """Every string found in message/content-like structures, one a line."""
    parts: list[str] = []
    for value in values:
        collect_text(value, _TEXT_KEYS, parts)
    return "\n".join(parts)


def _json_default_text(fmt: Any) -> str | None:
    """Default assistant text for a JSON response format, or None for plain text.

    ``fmt`` is a chat ``response_format`` (``{"type": "json_schema", "json_schema": {"schema"}}``)
    or a Responses ``text.format`` (``{"type": "json_schema", "schema": ...}``).
    """
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return "{}"
    if fmt.get("type") != "json_schema":
        return None
    holder = fmt.get("json_schema") if isinstance(fmt.get("json_schema"), dict) else fmt
    schema = holder.get("schema") if isinstance(holder, dict) else None
    if not isinstance(schema, dict):
        return "{}"
    return json.dumps(schema_instance(schema, schema), separators=(",", ":"))


def _embedding(item: Any, dimensions: int) -> list[float]:
    """A deterministic vector for one input, with float32-exact values (so base64 round-trips)."""
    digest = b""
    seed = json.dumps(item, sort_keys=True).encode()
    counter = 0
    while len(digest) < dimensions:
        digest += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    raw = [round(b / 127.5 - 1.0, 6) for b in digest[:dimensions]]
    return list(struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *raw)))


def _random_id(prefix: str, length: int) -> str:
    return prefix + uuid.uuid4().hex[:length].ljust(length, "0")


def _error_payload(status: int, message: str | None = None) -> dict[str, Any]:
    default_message, kind, code = _ERROR_BODIES.get(
        status,
        (
            "The server had an error." if status >= 500 else "Invalid request.",
            "server_error" if status >= 500 else "invalid_request_error",
            None,
        ),
    )
    return {
        "error": {
            "message": message or default_message,
            "type": kind,
            "param": None,
            "code": code,
        }
    }


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class _Handler(FakeHandler):
    server_version = "fake-openai/1.0"
    # A stream cut by ``cut_after`` never gets its terminating chunk, even after ``[DONE]``.
    _cut_complete_streams = True

    def _answer(self) -> None:
        raw = self._read_body()
        path = self.path.split("?", 1)[0].rstrip("/") or "/"
        request, json_error = parse_json_object(
            raw,
            invalid="We could not parse the JSON body of your request. ({exc})",
            not_object="The request body must be a JSON object.",
        )
        exchange = Exchange(
            path=path,
            request=request,
            headers=self._request_headers(),
            stream=request.get("stream") is True,
        )
        self.server.fake._record(exchange)

        route = _ROUTES.get(path) if self.command == "POST" else None
        if route is None:
            self._send_error(exchange, 404, f"Invalid URL ({self.command} {path})", code=None)
            return
        self._call_route(route, exchange, request, json_error)

    # -- writers ----------------------------------------------------------------------------

    def _common_headers(self, status: int) -> None:
        self.send_header("x-request-id", _random_id("req_", 32))
        self.send_header("openai-version", "2020-10-01")
        self.send_header("openai-processing-ms", "1")

    def _send_json(
        self,
        exchange: Exchange,
        status: int,
        payload: Any,
        headers: dict[str, str] | None = None,
    ) -> None:
        body = json.dumps(payload, indent=2, ensure_ascii=False).encode()
        self._send_body(exchange, status, body, "application/json", headers)

    def _send_error(
        self,
        exchange: Exchange,
        status: int,
        message: str | None = None,
        **overrides: Any,
    ) -> None:
        payload = _error_payload(status, message)
        payload["error"].update(overrides)
        headers = retry_headers(status)
        if status == 429:
            headers.update(
                {
                    "x-ratelimit-limit-requests": "3",
                    "x-ratelimit-remaining-requests": "0",
                }
            )
        self._send_json(exchange, status, payload, headers)

    # -- endpoints --------------------------------------------------------------------------

    def _chat_completions(
        self, exchange: Exchange, script: Script, request: dict[str, Any]
    ) -> None:
        model = request.get("model")
        messages = request.get("messages")
        if not isinstance(model, str) or not model:
            raise BadRequestError("you must provide a model parameter")
        if not isinstance(messages, list) or not messages:
            raise BadRequestError("Missing required parameter: 'messages'.")
        try:
            n = max(1, int(request.get("n") or 1))
        except (TypeError, ValueError):
            raise BadRequestError("Invalid type for 'n': expected an integer.") from None
        text = script.text
        if text is None:
            text = _json_default_text(request.get("response_format")) or DEFAULT_TEXT
        pieces = split_text(text, script.chunks)
        prompt = script.prompt_tokens
        if prompt is None:
            prompt = estimate_tokens(_input_text(messages)) + script.cached_tokens
        completion = script.completion_tokens
        if completion is None:
            completion = len(pieces) * n + script.reasoning_tokens
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {
                "cached_tokens": script.cached_tokens,
                "audio_tokens": 0,
            },
            "completion_tokens_details": {
                "reasoning_tokens": script.reasoning_tokens,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }
        completion_id = _random_id("chatcmpl-", 29)
        created = int(time.time())
        answered_model = script.response_model or model

        if not exchange.stream:
            payload: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion",
                "created": created,
                "model": answered_model,
                "choices": [
                    {
                        "index": i,
                        "message": {
                            "role": "assistant",
                            "content": text,
                            "refusal": None,
                            "annotations": [],
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                    for i in range(n)
                ],
            }
            if not script.omit_usage:
                payload["usage"] = usage
                exchange.usage = usage
            payload["service_tier"] = "default"
            payload["system_fingerprint"] = _SYSTEM_FINGERPRINT
            self._send_json(exchange, 200, payload)
            return

        options = request.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        deepseek = script.usage_always and not script.omit_usage
        usage_null = include_usage and not script.omit_usage and not deepseek
        base = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": answered_model,
            "system_fingerprint": _SYSTEM_FINGERPRINT,
        }

        def chunk(choices: list[dict[str, Any]], carried: dict[str, Any] | None = None) -> SSEEvent:
            payload = dict(base, choices=choices)
            if carried is not None:
                payload["usage"] = carried
            elif usage_null:
                payload["usage"] = None
            return SSEEvent(compact_json(payload), usage=carried)

        def choice(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "index": index,
                "delta": delta,
                "logprobs": None,
                "finish_reason": finish,
            }

        events: list[SSEEvent] = []
        for p, piece in enumerate(pieces):
            for i in range(n):
                if p == 0:
                    events.append(
                        chunk(
                            [
                                choice(
                                    i,
                                    {
                                        "role": "assistant",
                                        "content": "",
                                        "refusal": None,
                                    },
                                )
                            ]
                        )
                    )
                events.append(chunk([choice(i, {"content": piece})]))
        for i in range(n):
            last = i == n - 1
            events.append(chunk([choice(i, {}, "stop")], usage if deepseek and last else None))
        if usage_null:
            events.append(chunk([], usage))
        events.append(SSEEvent("[DONE]"))
        self._send_sse(exchange, script, events)

    def _responses(self, exchange: Exchange, script: Script, request: dict[str, Any]) -> None:
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequestError("you must provide a model parameter")
        if "input" not in request and "previous_response_id" not in request:
            raise BadRequestError("Missing required parameter: 'input'.")
        text_config = request.get("text") if isinstance(request.get("text"), dict) else {}
        text_format = (
            text_config.get("format")
            if isinstance(text_config.get("format"), dict)
            else {"type": "text"}
        )
        text = script.text
        if text is None:
            text = _json_default_text(text_format) or DEFAULT_TEXT
        pieces = split_text(text, script.chunks)
        prompt = script.prompt_tokens
        if prompt is None:
            prompt = estimate_tokens(_input_text(request.get("instructions"), request.get("input")))
            prompt += script.cached_tokens
        completion = script.completion_tokens
        if completion is None:
            completion = len(pieces) + script.reasoning_tokens
        usage: dict[str, Any] | None = None
        if not script.omit_usage:
            usage = {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": script.cached_tokens},
                "output_tokens": completion,
                "output_tokens_details": {"reasoning_tokens": script.reasoning_tokens},
                "total_tokens": prompt + completion,
            }

        suffix = uuid.uuid4().hex + uuid.uuid4().hex[:18]
        response_id = "resp_" + suffix
        message_id = "msg_" + suffix[::-1]
        reasoning_item = (
            {"id": "rs_" + suffix[1:] + "0", "type": "reasoning", "summary": []}
            if script.reasoning_tokens
            else None
        )
        created = int(time.time())
        reasoning = request.get("reasoning") if isinstance(request.get("reasoning"), dict) else {}

        def response(status: str, output: list[dict[str, Any]], final: bool) -> dict[str, Any]:
            return {
                "id": response_id,
                "object": "response",
                "created_at": created,
                "status": status,
                "background": bool(request.get("background", False)),
                "billing": {"payer": "developer"},
                "completed_at": int(time.time()) if final else None,
                "error": None,
                "frequency_penalty": 0.0,
                "incomplete_details": None,
                "instructions": request.get("instructions"),
                "max_output_tokens": request.get("max_output_tokens"),
                "max_tool_calls": request.get("max_tool_calls"),
                "model": script.response_model or model,
                "output": output,
                "parallel_tool_calls": request.get("parallel_tool_calls", True),
                "presence_penalty": 0.0,
                "previous_response_id": request.get("previous_response_id"),
                "prompt_cache_key": request.get("prompt_cache_key"),
                "prompt_cache_retention": "in_memory",
                "reasoning": {
                    "effort": reasoning.get("effort"),
                    "summary": reasoning.get("summary"),
                },
                "safety_identifier": request.get("safety_identifier"),
                "service_tier": "default",
                "store": request.get("store", True),
                "temperature": request.get("temperature", 1.0),
                "text": {
                    "format": text_format,
                    "verbosity": text_config.get("verbosity", "medium"),
                },
                "tool_choice": request.get("tool_choice", "auto"),
                "tools": request.get("tools", []),
                "top_logprobs": request.get("top_logprobs", 0),
                "top_p": request.get("top_p", 1.0),
                "truncation": request.get("truncation", "disabled"),
                "usage": usage if final else None,
                "user": request.get("user"),
                "metadata": request.get("metadata") or {},
            }

        def part(content: str) -> dict[str, Any]:
            return {
                "type": "output_text",
                "annotations": [],
                "logprobs": [],
                "text": content,
            }

        def message(status: str, content: list[dict[str, Any]]) -> dict[str, Any]:
            return {
                "id": message_id,
                "type": "message",
                "status": status,
                "content": content,
                "role": "assistant",
            }

        final_output = ([reasoning_item] if reasoning_item else []) + [
            message("completed", [part(text)])
        ]

        if not exchange.stream:
            exchange.usage = usage
            self._send_json(exchange, 200, response("completed", final_output, final=True))
            return

        options = (
            request.get("stream_options") if isinstance(request.get("stream_options"), dict) else {}
        )
        obfuscate = options.get("include_obfuscation", True) is not False
        counter = itertools.count()
        events: list[SSEEvent] = []

        def emit(kind: str, carried: dict[str, Any] | None = None, **fields: Any) -> None:
            payload = {"type": kind, **fields, "sequence_number": next(counter)}
            events.append(SSEEvent(compact_json(payload), name=kind, usage=carried))

        emit("response.created", response=response("in_progress", [], final=False))
        emit("response.in_progress", response=response("in_progress", [], final=False))
        output_index = 0
        if reasoning_item:
            emit("response.output_item.added", item=reasoning_item, output_index=0)
            emit("response.output_item.done", item=reasoning_item, output_index=0)
            output_index = 1
        emit(
            "response.output_item.added",
            item=message("in_progress", []),
            output_index=output_index,
        )
        emit(
            "response.content_part.added",
            content_index=0,
            item_id=message_id,
            output_index=output_index,
            part=part(""),
        )
        for piece in pieces:
            delta: dict[str, Any] = {
                "content_index": 0,
                "delta": piece,
                "item_id": message_id,
                "logprobs": [],
            }
            if obfuscate:
                delta["obfuscation"] = hashlib.sha1(piece.encode()).hexdigest()[
                    : max(1, 16 - len(piece))
                ]
            emit("response.output_text.delta", **delta, output_index=output_index)
        emit(
            "response.output_text.done",
            content_index=0,
            item_id=message_id,
            logprobs=[],
            output_index=output_index,
            text=text,
        )
        emit(
            "response.content_part.done",
            content_index=0,
            item_id=message_id,
            output_index=output_index,
            part=part(text),
        )
        emit(
            "response.output_item.done",
            item=message("completed", [part(text)]),
            output_index=output_index,
        )
        emit(
            "response.completed",
            carried=usage,
            response=response("completed", final_output, final=True),
        )
        self._send_sse(exchange, script, events)

    def _embeddings(self, exchange: Exchange, script: Script, request: dict[str, Any]) -> None:
        model = request.get("model")
        if not isinstance(model, str) or not model:
            raise BadRequestError("you must provide a model parameter")
        raw_input = request.get("input")
        if isinstance(raw_input, str) and raw_input:
            items: list[Any] = [raw_input]
        elif isinstance(raw_input, list) and raw_input:
            items = [raw_input] if all(isinstance(x, int) for x in raw_input) else list(raw_input)
        else:
            raise BadRequestError(
                "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
            )
        encoding = request.get("encoding_format", "float")
        if encoding not in ("float", "base64"):
            raise BadRequestError(f"Invalid value for 'encoding_format': {encoding!r}.")
        dimensions = request.get("dimensions", EMBEDDING_DIMENSIONS)
        if not isinstance(dimensions, int) or dimensions < 1:
            raise BadRequestError("Invalid value for 'dimensions'.")

        data: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            vector = _embedding(item, dimensions)
            embedding: Any = vector
            if encoding == "base64":
                embedding = base64.b64encode(struct.pack(f"<{dimensions}f", *vector)).decode()
            data.append({"object": "embedding", "index": index, "embedding": embedding})

        prompt = script.prompt_tokens
        if prompt is None:
            token_items = [x for x in items if isinstance(x, list)]
            text_items = [x for x in items if isinstance(x, str)]
            prompt = sum(len(x) for x in token_items)
            if text_items:
                prompt += estimate_tokens("\n".join(text_items))
        payload: dict[str, Any] = {
            "object": "list",
            "data": data,
            "model": script.response_model or model,
        }
        if not script.omit_usage:
            usage = {"prompt_tokens": prompt, "total_tokens": prompt}
            payload["usage"] = usage
            exchange.usage = usage
        self._send_json(exchange, 200, payload)


_ROUTES: dict[str, Callable[[_Handler, Exchange, Script, dict[str, Any]], None]] = {
    "/v1/chat/completions": _Handler._chat_completions,
    "/v1/responses": _Handler._responses,
    "/v1/embeddings": _Handler._embeddings,
}


# --------------------------------------------------------------------------------------------
# Public server
# --------------------------------------------------------------------------------------------


class FakeOpenAIServer(FakeServer[Script, Exchange]):
    """An OpenAI-compatible server on a loopback port, driven by a queue of :class:`Script`.

    Use as a context manager (``with FakeOpenAIServer() as server:``) or call :meth:`start` /
    :meth:`stop`. Point the SDK at :attr:`base_url`.
    """

    _name = "openai"
    _logger = _log
    _handler_class = _Handler
    _script_class = Script

    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:<port>/v1``: what ``openai.OpenAI(base_url=...)`` takes."""
        return f"http://{self._host}:{self.port}/v1"
