"""anthropic: ``messages.create``, streamed (``stream=True``) or not, sync and async.

The fake answers a ``message`` with a thinking block and a text block, or the Messages SSE stream
(``event:`` + ``data:``): ``message_start`` (input and cache counts, placeholder output count),
the thinking block (one ``thinking_delta``, one ``signature_delta``), a ``ping``, the text block
with N ``text_delta`` events, ``message_delta`` (the cumulative output count) and
``message_stop``. Usage as the API reports it: ``input_tokens`` excludes the cache read and the
cache write, ``output_tokens`` includes thinking, split out in
``output_tokens_details.thinking_tokens``.

anthropic 2.x emits its own OpenTelemetry span per call; the baseline has it, the instrumented
process has ours instead (the instrumentation switches the SDK's off while it records).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable
from typing import Any

from .. import fakes, wire
from . import Provider, Scenario

_ID = "msg_01BENCHq7ZfXr2LmWcA9tYkPd"
CACHE_WRITE = 144
INPUT_UNCACHED = wire.PROMPT_TOKENS - wire.CACHED_TOKENS - CACHE_WRITE
_SIGNATURE = base64.b64encode(hashlib.sha512(wire.THINKING.encode()).digest() * 3).decode()
_HEADERS = [
    ("request-id", "req_01BENCHa8Kd2Wm4Xq7Rt1Zy"),
    ("anthropic-organization-id", "00000000-0000-4000-8000-00000000fa4e"),
]


def _usage(output_tokens: int) -> dict[str, Any]:
    return {
        "input_tokens": INPUT_UNCACHED,
        "cache_creation_input_tokens": CACHE_WRITE,
        "cache_read_input_tokens": wire.CACHED_TOKENS,
        "cache_creation": {
            "ephemeral_5m_input_tokens": CACHE_WRITE,
            "ephemeral_1h_input_tokens": 0,
        },
        "output_tokens": output_tokens,
        "output_tokens_details": {"thinking_tokens": wire.REASONING_TOKENS},
        "service_tier": "standard",
    }


def _message(model: str, content: list[Any], stop: str | None, usage: Any) -> dict[str, Any]:
    return {
        "model": model,
        "id": _ID,
        "type": "message",
        "role": "assistant",
        "content": content,
        "stop_reason": stop,
        "stop_sequence": None,
        "usage": usage,
    }


def message_body(model: str) -> bytes:
    content = [
        {"type": "thinking", "thinking": wire.THINKING, "signature": _SIGNATURE},
        {"type": "text", "text": wire.answer_text()},
    ]
    return wire.compact(
        _message(model, content, "end_turn", _usage(wire.ANSWER_TOKENS + wire.REASONING_TOKENS))
    )


def stream_events(chunks: int, model: str) -> list[bytes]:
    def event(kind: str, **fields: Any) -> bytes:
        return wire.sse(wire.compact({"type": kind, **fields}), kind)

    def delta(index: int, **fields: Any) -> bytes:
        return event("content_block_delta", index=index, delta=fields)

    events = [
        event("message_start", message=_message(model, [], None, _usage(1))),
        event(
            "content_block_start",
            index=0,
            content_block={"type": "thinking", "thinking": "", "signature": ""},
        ),
        b'event: ping\ndata: {"type": "ping"}\n\n',
        delta(0, type="thinking_delta", thinking=wire.THINKING),
        delta(0, type="signature_delta", signature=_SIGNATURE),
        event("content_block_stop", index=0),
        event("content_block_start", index=1, content_block={"type": "text", "text": ""}),
    ]
    events.extend(delta(1, type="text_delta", text=wire.word(i)) for i in range(chunks))
    final = {
        "output_tokens": chunks + wire.REASONING_TOKENS,
        "output_tokens_details": {"thinking_tokens": wire.REASONING_TOKENS},
    }
    events += [
        event("content_block_stop", index=1),
        event(
            "message_delta", delta={"stop_reason": "end_turn", "stop_sequence": None}, usage=final
        ),
        event("message_stop"),
    ]
    return events


def answer(chunks: int | None, model: str) -> Callable[[Any], fakes.Answer]:
    if chunks is None:
        body = [message_body(model)]
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body[0]))),
            *_HEADERS,
        ]
        return lambda request: (200, headers, body)
    events = stream_events(chunks, model)
    sse_headers = [("content-type", "text/event-stream; charset=utf-8"), *_HEADERS]

    def by_request(request: Any) -> fakes.Answer:
        if b'"stream":true' not in request.content.replace(b" ", b""):
            raise AssertionError(f"expected a streamed request, got {request.content[:200]!r}")
        return 200, sse_headers, events

    return by_request


class AnthropicBench(Provider):
    name = "anthropic"
    call_label = (
        "client.messages.create(model=..., max_tokens=..., system=..., messages=[user], "
        "thinking=...)"
    )
    imports = ("anthropic",)
    distributions = ("anthropic", "httpx2", "httpx", "pydantic")
    instrumentor = "otel_llm_cost.providers.anthropic:AnthropicInstrumentor"
    request_model = "claude-sonnet-4-5"
    response_model = "claude-sonnet-4-5-20250929"
    expected_usage = {
        **Provider.expected_usage,
        "gen_ai.usage.cache_creation.input_tokens": CACHE_WRITE,
    }
    baseline_scopes = frozenset({"com.anthropic.sdk.python"})
    notes = (
        "anthropic 2.x emits its own span per call: the baseline has that span, the instrumented "
        "process has ours instead (the SDK's is switched off while we record), so this overhead "
        "is ours minus the SDK's own tracing.",
    )

    def make_call(self, scenario: Scenario) -> Callable[[], Any]:
        import anthropic

        http = fakes.sdk_http("anthropic")
        transport = fakes.httpx_transport(http, answer(scenario.chunks, self.response_model))
        common = {"api_key": "k", "base_url": "http://127.0.0.1", "max_retries": 0}
        if scenario.is_async:
            client: Any = anthropic.AsyncAnthropic(
                http_client=http.AsyncClient(transport=transport), **common
            )
        else:
            client = anthropic.Anthropic(http_client=http.Client(transport=transport), **common)
        kwargs: dict[str, Any] = {
            "model": self.request_model,
            "max_tokens": 2048,
            "thinking": {"type": "enabled", "budget_tokens": 1024},
            "system": wire.SYSTEM,
            "messages": [{"role": "user", "content": wire.USER}],
        }
        if scenario.chunks is None:
            if scenario.is_async:

                async def acall() -> int:
                    message = await client.messages.create(**kwargs)
                    return len(message.content[-1].text)

                return acall

            def call() -> int:
                message = client.messages.create(**kwargs)
                return len(message.content[-1].text)

            return call

        kwargs["stream"] = True
        if scenario.is_async:

            async def astream() -> int:
                seen = 0
                async for event in await client.messages.create(**kwargs):
                    if event.type == "content_block_delta":
                        event.delta  # noqa: B018 - what a consumer reads
                    seen += 1
                return seen

            return astream

        def stream() -> int:
            seen = 0
            for event in client.messages.create(**kwargs):
                if event.type == "content_block_delta":
                    event.delta  # noqa: B018 - what a consumer reads
                seen += 1
            return seen

        return stream

    def expected_seen(self, chunks: int) -> int:
        # message_start, thinking block (start, 2 deltas, stop), text block (start, N deltas,
        # stop), message_delta, message_stop; the SDK drops the ping
        return chunks + 9
