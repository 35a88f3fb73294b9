"""openai: ``chat.completions.create``, streamed or not, sync and async.

The fake answers a ``chat.completion`` with ``usage`` (cached and reasoning tokens), or an SSE
stream of ``chat.completion.chunk``: a role chunk, N content chunks, a ``finish_reason`` chunk
and ``[DONE]``. When the request asks for ``stream_options.include_usage`` (the instrumentation
injects it), the stream is as OpenAI sends it then: ``"usage":null`` on every chunk and one more,
usage-only chunk at the end (hidden from the caller by the instrumentation).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import fakes, wire
from . import Provider, Scenario

_ID = "chatcmpl-BENCHb6y1ZkQx9MzL3vTqRWn4pHaEo"
MESSAGES = [{"role": "system", "content": wire.SYSTEM}, {"role": "user", "content": wire.USER}]


def _usage(completion_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": wire.PROMPT_TOKENS,
        "completion_tokens": completion_tokens,
        "total_tokens": wire.PROMPT_TOKENS + completion_tokens,
        "prompt_tokens_details": {"cached_tokens": wire.CACHED_TOKENS, "audio_tokens": 0},
        "completion_tokens_details": {
            "reasoning_tokens": wire.REASONING_TOKENS,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        },
    }


def completion_body(response_model: str) -> bytes:
    """A non-streamed ``chat.completion`` as OpenAI sends it (compact JSON)."""
    return wire.compact(
        {
            "id": _ID,
            "object": "chat.completion",
            "created": wire.CREATED,
            "model": response_model,
            "choices": [
                {
                    "index": 0,
                    "message": {
                        "role": "assistant",
                        "content": wire.answer_text(),
                        "refusal": None,
                        "annotations": [],
                    },
                    "logprobs": None,
                    "finish_reason": "stop",
                }
            ],
            "usage": _usage(wire.ANSWER_TOKENS + wire.REASONING_TOKENS),
            "service_tier": "default",
            "system_fingerprint": None,
        }
    )


def stream_events(chunks: int, include_usage: bool, response_model: str) -> list[bytes]:
    """SSE events of a chat stream with ``chunks`` content chunks, one bytes object per event."""
    head = {
        "id": _ID,
        "object": "chat.completion.chunk",
        "created": wire.CREATED,
        "model": response_model,
        "service_tier": "default",
        "system_fingerprint": None,
    }

    def event(choices: list[Any], usage: Any = None) -> bytes:
        payload = dict(head, choices=choices)
        if include_usage:
            payload["usage"] = usage
        return wire.sse(wire.compact(payload))

    def choice(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}

    events = [event([choice({"role": "assistant", "content": "", "refusal": None})])]
    events.extend(event([choice({"content": wire.word(i)})]) for i in range(chunks))
    events.append(event([choice({}, "stop")]))
    if include_usage:
        events.append(event([], _usage(chunks + wire.REASONING_TOKENS)))
    events.append(b"data: [DONE]\n\n")
    return events


_COMMON = [("x-request-id", "req_bench0000000000000000000000"), ("openai-processing-ms", "412")]


def answer(chunks: int | None, response_model: str) -> Callable[[Any], fakes.Answer]:
    """The fake's answer: fixed for a non-streamed call, by request for a stream (with usage
    when the request body asks for it; the SDK sends compact JSON)."""
    if chunks is None:
        body = [completion_body(response_model)]
        headers = [
            ("content-type", "application/json"),
            ("content-length", str(len(body[0]))),
            *_COMMON,
        ]
        return lambda request: (200, headers, body)
    plain = stream_events(chunks, False, response_model)
    with_usage = stream_events(chunks, True, response_model)
    sse_headers = [("content-type", "text/event-stream; charset=utf-8"), *_COMMON]

    def by_request(request: Any) -> fakes.Answer:
        content = request.content
        if b'"stream":true' not in content:
            raise AssertionError(f"expected a streamed request, got {content[:200]!r}")
        parts = with_usage if b'"include_usage":true' in content else plain
        return 200, sse_headers, parts

    return by_request


class OpenAIBench(Provider):
    name = "openai"
    call_label = "client.chat.completions.create(model=..., messages=[system, user])"
    imports = ("openai",)
    distributions = ("openai", "httpx2", "httpx", "pydantic")
    instrumentor = "otel_llm_cost.providers.openai:OpenAIInstrumentor"
    request_model = "o4-mini"
    response_model = "o4-mini-2025-04-16"
    notes = (
        "Instrumented streams ask for usage (stream_options.include_usage is injected), so the "
        'fake sends "usage":null on every chunk and one more usage-only chunk, as OpenAI does; '
        "the uninstrumented request does not ask, so its stream is one chunk shorter: the extra "
        "chunk is in the per-call overhead, the nulls in the per-chunk one.",
    )

    def client(self, scenario: Scenario) -> Any:
        import openai

        http = fakes.sdk_http("openai")
        transport = fakes.httpx_transport(http, answer(scenario.chunks, self.response_model))
        common = {"api_key": "k", "base_url": "http://127.0.0.1/v1", "max_retries": 0}
        if scenario.is_async:
            return openai.AsyncOpenAI(http_client=http.AsyncClient(transport=transport), **common)
        return openai.OpenAI(http_client=http.Client(transport=transport), **common)

    def make_call(self, scenario: Scenario) -> Callable[[], Any]:
        # The method is looked up on every call, as applications do: a bound method taken
        # before instrument() would bypass the wrapper.
        client = self.client(scenario)
        kwargs: dict[str, Any] = {"model": self.request_model, "messages": MESSAGES}
        if scenario.chunks is None:
            if scenario.is_async:

                async def acall() -> int:
                    response = await client.chat.completions.create(**kwargs)
                    return len(response.choices[0].message.content)

                return acall

            def call() -> int:
                response = client.chat.completions.create(**kwargs)
                return len(response.choices[0].message.content)

            return call

        kwargs["stream"] = True
        if scenario.is_async:

            async def astream() -> int:
                seen = 0
                async for chunk in await client.chat.completions.create(**kwargs):
                    if chunk.choices:
                        chunk.choices[0].delta.content  # noqa: B018 - what a consumer reads
                    seen += 1
                return seen

            return astream

        def stream() -> int:
            seen = 0
            for chunk in client.chat.completions.create(**kwargs):
                if chunk.choices:
                    chunk.choices[0].delta.content  # noqa: B018 - what a consumer reads
                seen += 1
            return seen

        return stream

    def expected_seen(self, chunks: int) -> int:
        return chunks + 2  # role + content + finish; the usage chunk stays hidden
