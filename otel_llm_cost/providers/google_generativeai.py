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
from urllib.parse import urlsplit

from .. import estimate
from ..instrumentor import CallSpec, LLMCostInstrumentor, WrapPoint
from ..record import CallRecord
from ..recorder import Recorder
from ..streams import wrap_stream
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
    found = _targets.get(host)
    if found is None:
        try:
            parts = urlsplit(host if "://" in host else "//" + host)
            # hostname: never user:password@
            found = (parts.hostname, parts.port or (80 if parts.scheme == "http" else 443))
        except ValueError:
            found = (None, None)
        if len(_targets) < 1024:  # endpoints are few; never grow without bound
            _targets[host] = found
    return found


_targets: dict[str, tuple[str | None, int | None]] = {}


def _raw(message: Any) -> Any:
    """The protobuf behind a proto-plus message: reading it is plain attribute access, while
    each attribute read of the proto-plus wrapper goes through its marshal (some 200k
    instructions a streamed chunk). Anything else is returned as it is."""
    pb = getattr(type(message), "pb", None)
    if pb is None:
        return message
    try:
        return pb(message)
    except Exception:
        return message


class LegacyGeminiAccumulator(GeminiAccumulator):
    """Reads each chunk's protobuf."""

    __slots__ = ()

    def on_chunk(self, chunk: Any) -> bool:
        return GeminiAccumulator.on_chunk(self, _raw(chunk))


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
        request = _raw(_request(args, kwargs))
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
        if rec.capture:
            rec.prompt = [str(c) for c in getattr(request, "contents", None) or ()]
        return rec, kwargs, request

    def on_result(self, recorder: Recorder, rec: CallRecord, result: Any, state: Any) -> Any:
        def input_estimate() -> int:
            return estimate.tokens_for_chars(_contents_chars(state))

        if self.streaming:
            acc = LegacyGeminiAccumulator()
            if rec.capture:
                acc.texts = []
            rec.estimator = lambda: Usage(
                input=input_estimate(), output=estimate.tokens_for_chars(acc.chars)
            )
            return wrap_stream(result, recorder, rec, acc, rec.asynchronous)
        chars = read_gemini_response(rec, _raw(result))
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
