"""Legacy google-generativeai (0.8): ``GenerativeModel.generate_content`` and
``generate_content_async``, streamed (``stream=True``) or not.

- **Sync: REST.** ``genai.configure(api_key=..., transport="rest", client_options=...)``. Its
  REST transport talks through google-auth's ``AuthorizedSession``, a ``requests.Session``; the
  fake is a ``requests`` adapter mounted on that session, answering the JSON the Gemini API
  sends for ``$alt=json;enum-encoding=int`` (integer enums, indented), and for a stream one
  JSON array streamed element by element (``[{...}``, ``\\n,\\r\\n{...}``..., ``\\n]``), which
  ``google.api_core``'s ``ResponseIterator`` reads one character at a time.
- **Async: gRPC asyncio.** The SDK's async methods do not work over REST (the async client gets
  the synchronous REST transport, and awaiting its answer raises ``TypeError``), so the async
  client is the SDK's default one, ``GenerativeServiceAsyncClient`` over
  ``GenerativeServiceGrpcAsyncIOTransport``, given an in-process ``grpc.aio`` channel that
  answers pre-serialized ``GenerateContentResponse`` messages (no gRPC core, no HTTP/2).

Each scenario has a client of its own (the fake answers depend on the scenario), set on the
``GenerativeModel`` (its ``_client`` / ``_async_client``, which the SDK otherwise fills with the
process-wide default client on first use). The sync client is built by the SDK's own client
manager from the ``configure()`` above, exactly as the default one would be.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from .. import fakes, wire
from . import Provider, Scenario
from . import _gemini_wire as gw

#: The largest sync (REST) stream measured.
SYNC_STREAM_MAX = 100
_SERVICE = "/google.ai.generativelanguage.v1beta.GenerativeService/"
_HEADERS = [("content-type", "application/json; charset=UTF-8"), ("vary", "Origin")]


def answer(chunks: int | None) -> Callable[[Any], fakes.Answer]:
    payloads = [gw.int_enums(p) for p in gw.responses(chunks)]
    if chunks is None:
        body = [(json.dumps(payloads[0], indent=2) + "\n").encode()]
        return lambda request: (200, [*_HEADERS, ("content-length", str(len(body[0])))], body)
    elements = [json.dumps(p, indent=2) for p in payloads]
    body = [("[" + "\n,\r\n".join(elements) + "\n]").encode()]

    def by_request(request: Any) -> fakes.Answer:
        if ":streamGenerateContent" not in request.url:
            raise AssertionError(f"expected a streamed request, got {request.url}")
        return 200, _HEADERS, body

    return by_request


def grpc_answers(chunks: int | None) -> dict[str, list[bytes]]:
    from google.ai.generativelanguage_v1beta.types import generative_service as gs
    from google.protobuf import json_format

    messages = [
        json_format.ParseDict(p, gs.GenerateContentResponse.pb()(), ignore_unknown_fields=True)
        for p in gw.responses(chunks)
    ]
    method = "GenerateContent" if chunks is None else "StreamGenerateContent"
    return {_SERVICE + method: [m.SerializeToString() for m in messages]}


class LegacyGeminiBench(Provider):
    name = "google-generativeai"
    call_label = (
        "GenerativeModel(...).generate_content(user[, stream=True]) (sync, REST) / "
        "generate_content_async (async, gRPC asyncio)"
    )
    imports = ("google.generativeai",)
    distributions = (
        "google-generativeai",
        "google-ai-generativelanguage",
        "google-api-core",
        "requests",
        "grpcio",
        "protobuf",
    )
    instrumentor = "otel_llm_cost.providers.google_generativeai:GoogleGenerativeAIInstrumentor"
    request_model = gw.MODEL
    response_model = gw.MODEL
    notes = (
        "Sync calls go over REST (requests, through a fake adapter), async calls over gRPC "
        "asyncio (a fake in-process channel): the two baselines are different transports.",
        "The legacy proto has no thoughts count: reasoning = total - prompt - candidates.",
        f"Sync (REST) streams are measured up to N={SYNC_STREAM_MAX}: the SDK reads a REST "
        "stream one character at a time (~3 ms per chunk here, 3 s per 1000-chunk call).",
    )

    def stream_sizes(self, kind: str, sizes: tuple[int, ...]) -> tuple[int, ...]:
        # The REST stream is read one character at a time: ~3 ms per chunk here, 3 s for a
        # 1000-chunk call (minutes under callgrind). Sync streams stop at 100 chunks.
        if kind == "sync" and max(sizes) > SYNC_STREAM_MAX:
            capped = tuple(n for n in sizes if n < SYNC_STREAM_MAX)
            return (*capped, SYNC_STREAM_MAX)
        return sizes

    def make_call(self, scenario: Scenario) -> Callable[[], Any]:
        import google.generativeai as genai

        genai.configure(
            api_key="k", transport="rest", client_options={"api_endpoint": "http://127.0.0.1"}
        )
        model = genai.GenerativeModel(self.request_model, system_instruction=wire.SYSTEM)
        if scenario.is_async:
            from google.ai.generativelanguage_v1beta.services.generative_service import (
                GenerativeServiceAsyncClient,
                transports,
            )

            channel = fakes.aio_channel(grpc_answers(scenario.chunks))
            transport = transports.GenerativeServiceGrpcAsyncIOTransport(
                host="127.0.0.1", channel=channel
            )
            model._async_client = GenerativeServiceAsyncClient(transport=transport)
        else:
            from google.generativeai import client as clients

            client = clients._client_manager.make_client("generative")
            client._transport._session.mount(
                "http://", fakes.requests_adapter(answer(scenario.chunks))
            )
            model._client = client

        if scenario.chunks is None:
            if scenario.is_async:

                async def acall() -> int:
                    response = await model.generate_content_async(wire.USER)
                    return len(response.text)

                return acall

            def call() -> int:
                return len(model.generate_content(wire.USER).text)

            return call

        if scenario.is_async:

            async def astream() -> int:
                seen = 0
                async for chunk in await model.generate_content_async(wire.USER, stream=True):
                    chunk.text  # noqa: B018 - what a consumer reads
                    seen += 1
                return seen

            return astream

        def stream() -> int:
            seen = 0
            for chunk in model.generate_content(wire.USER, stream=True):
                chunk.text  # noqa: B018 - what a consumer reads
                seen += 1
            return seen

        return stream

    def expected_seen(self, chunks: int) -> int:
        return chunks
