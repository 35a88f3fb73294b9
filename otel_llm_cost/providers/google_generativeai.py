"""The legacy google-generativeai SDK (0.8.x): ``GenerativeModel.generate_content`` and
``generate_content_async``, streamed or not, and ``ChatSession`` (which calls them).

The wrap points are the generated ``GenerativeServiceClient`` / ``GenerativeServiceAsyncClient``
methods the SDK calls for each request, under both transports (gRPC and REST), so a chat turn
is one record and every way of consuming a stream (iterating, ``resolve()``, ``.text``) passes
the chunks through the same proxy. Model names come as ``models/...`` and are stripped.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import estimate
from ..instrumentor import CallSpec, LLMCostInstrumentor, WrapPoint
from ..record import CallRecord
from ..recorder import Recorder
from ..streams import AsyncStreamProxy, StreamProxy
from ..usage import Usage
from ._gemini import GeminiAccumulator, model_id, read_gemini_response

_SUPPORTED = "google-generativeai >= 0.8, < 0.9"
_SERVICE = "google.ai.generativelanguage_v1beta.services.generative_service"


def _request(args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    return args[0] if args else kwargs.get("request")


def _target(instance: Any) -> tuple[str | None, int | None]:
    transport = getattr(instance, "_transport", None) or getattr(
        getattr(instance, "_client", None), "_transport", None
    )
    host = getattr(transport, "_host", None)
    if not isinstance(host, str):
        return None, None
    if "://" in host:
        host = host.split("://", 1)[1]
    name, _, port = host.rstrip("/").rpartition(":")
    if name and port.isdigit():
        return name, int(port)
    return host, 443


def _contents_chars(request: Any) -> int:
    total = 0
    for content in getattr(request, "contents", None) or ():
        for part in getattr(content, "parts", None) or ():
            text = getattr(part, "text", None)
            if text:
                total += len(text)
    return total


class LegacyGenerateSpec(CallSpec):
    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming

    def begin(
        self, recorder: Recorder, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[CallRecord, dict[str, Any], Any]:
        request = _request(args, kwargs)
        model = getattr(request, "model", None) or kwargs.get("model")
        address, port = _target(instance)
        rec = recorder.start(
            "gcp.gemini",
            "generate_content",
            model_id(model),
            server_address=address,
            server_port=port,
            streaming=self.streaming,
        )
        return rec, kwargs, request

    def on_result(self, recorder: Recorder, rec: CallRecord, result: Any, state: Any) -> Any:
        def input_estimate() -> int:
            return estimate.tokens_for_chars(_contents_chars(state))

        if self.streaming:
            acc = GeminiAccumulator()
            rec.estimator = lambda: Usage(
                input=input_estimate(), output=estimate.tokens_for_chars(acc.chars)
            )
            is_async = hasattr(result, "__aiter__") and not hasattr(result, "__iter__")
            proxy = AsyncStreamProxy if is_async else StreamProxy
            return proxy(result, recorder, rec, acc)
        chars = read_gemini_response(rec, result)
        if rec.usage is None:
            rec.estimator = lambda: Usage(
                input=input_estimate(), output=estimate.tokens_for_chars(chars)
            )
        recorder.finish(rec)
        return result


def _points() -> Iterable[WrapPoint]:
    once, stream = LegacyGenerateSpec(False), LegacyGenerateSpec(True)
    yield WrapPoint(_SERVICE, "GenerativeServiceClient.generate_content", once)
    yield WrapPoint(_SERVICE, "GenerativeServiceClient.stream_generate_content", stream)
    yield WrapPoint(_SERVICE, "GenerativeServiceAsyncClient.generate_content", once, True)
    yield WrapPoint(_SERVICE, "GenerativeServiceAsyncClient.stream_generate_content", stream, True)


class GoogleGenerativeAIInstrumentor(LLMCostInstrumentor):
    """Records cost and usage of every request made with the legacy ``google-generativeai``."""

    _instruments = (_SUPPORTED,)

    def wrap_points(self, recorder: Recorder) -> Iterable[WrapPoint]:
        return _points()
