"""google-genai: ``client.models.generate_content`` / ``generate_content_stream`` and their
``client.aio`` equivalents, over the Gemini API (API key).

The client gets httpx2 (or httpx) clients with the fake transport through
``HttpOptions(httpx_client=..., httpx_async_client=...)``. The fake answers the response JSON
(indented, as Google sends it) or a ``?alt=sse`` stream: ``data: {json}\\r\\n\\r\\n`` per chunk,
no final marker.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import fakes, wire
from . import Provider, Scenario
from . import _gemini_wire as gw

_JSON = [("content-type", "application/json; charset=UTF-8"), ("vary", "Origin")]
_SSE = [("content-type", "text/event-stream"), ("content-disposition", "attachment")]


def answer(chunks: int | None) -> Callable[[Any], fakes.Answer]:
    payloads = gw.responses(chunks)
    if chunks is None:
        body = [(json.dumps(payloads[0], indent=2) + "\n").encode()]
        headers = [*_JSON, ("content-length", str(len(body[0])))]
        return lambda request: (200, headers, body)
    events = [
        b"data: " + json.dumps(p, separators=(",", ": ")).encode() + b"\r\n\r\n" for p in payloads
    ]

    def by_request(request: Any) -> fakes.Answer:
        if b":streamGenerateContent" not in request.url.raw_path:
            raise AssertionError(f"expected a streamed request, got {request.url}")
        return 200, _SSE, events

    return by_request


def _http() -> Any:
    try:
        import httpx2
    except ImportError:
        import httpx

        return httpx
    return httpx2


class GoogleGenAIBench(Provider):
    name = "google-genai"
    call_label = (
        "client.models.generate_content(model=..., contents=user, config=...) / "
        "generate_content_stream, client.aio.models.*"
    )
    imports = ("google.genai",)
    distributions = ("google-genai", "httpx2", "httpx", "pydantic")
    instrumentor = "otel_llm_cost.providers.google_genai:GoogleGenAIInstrumentor"
    request_model = gw.MODEL
    response_model = gw.MODEL

    def make_call(self, scenario: Scenario) -> Callable[[], Any]:
        from google import genai
        from google.genai import types

        http = _http()
        transport = fakes.httpx_transport(http, answer(scenario.chunks))
        options = types.HttpOptions(
            base_url="http://127.0.0.1",
            httpx_client=http.Client(transport=transport),
            httpx_async_client=http.AsyncClient(transport=transport),
        )
        client = genai.Client(api_key="k", http_options=options)
        config = types.GenerateContentConfig(system_instruction=wire.SYSTEM)
        kwargs: dict[str, Any] = {
            "model": self.request_model,
            "contents": wire.USER,
            "config": config,
        }
        if scenario.chunks is None:
            if scenario.is_async:

                async def acall() -> int:
                    response = await client.aio.models.generate_content(**kwargs)
                    return len(response.text or "")

                return acall

            def call() -> int:
                response = client.models.generate_content(**kwargs)
                return len(response.text or "")

            return call

        if scenario.is_async:

            async def astream() -> int:
                seen = 0
                async for chunk in await client.aio.models.generate_content_stream(**kwargs):
                    chunk.text  # noqa: B018 - what a consumer reads
                    seen += 1
                return seen

            return astream

        def stream() -> int:
            seen = 0
            for chunk in client.models.generate_content_stream(**kwargs):
                chunk.text  # noqa: B018 - what a consumer reads
                seen += 1
            return seen

        return stream

    def expected_seen(self, chunks: int) -> int:
        return chunks
