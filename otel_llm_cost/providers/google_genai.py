"""The google-genai SDK: ``client.models.generate_content`` / ``generate_content_stream``, their
``client.aio`` equivalents, and chats (which call them), over the Gemini API or Vertex AI.

The wrap points are the SDK's per-request methods (``_generate_content`` and
``_generate_content_stream``), so automatic function calling and automatic continuation,
which make several billed requests inside one public call, are recorded request by request.
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

_SUPPORTED = "google-genai >= 1.0, < 4"
_MODULE = "google.genai.models"


_targets: dict[tuple[str, object], tuple[str, str | None, int | None]] = {}


def _target(instance: Any) -> tuple[str, str | None, int | None]:
    client = getattr(instance, "_api_client", None)
    provider = "gcp.vertex_ai" if getattr(client, "vertexai", False) else "gcp.gemini"
    options = getattr(client, "_http_options", None)
    base_url = getattr(options, "base_url", None)
    found = _targets.get((provider, base_url))
    if found is None:
        if isinstance(base_url, str):
            parts = urlsplit(base_url)
            port = parts.port or (443 if parts.scheme == "https" else 80)
            found = (provider, parts.hostname, port)
        else:
            found = (provider, None, None)
        if len(_targets) < 1024:  # endpoints are few; never grow without bound
            _targets[(provider, base_url)] = found
    return found


def _estimate_input(kwargs: dict[str, Any]) -> int:
    return estimate.input_tokens(kwargs.get("contents"))


class GenerateSpec(CallSpec):
    def __init__(self, streaming: bool) -> None:
        self.streaming = streaming

    def begin(
        self, recorder: Recorder, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[CallRecord, dict[str, Any], Any]:
        provider, address, port = _target(instance)
        rec = recorder.start(
            provider,
            "generate_content",
            model_id(kwargs.get("model")),
            server_address=address,
            server_port=port,
            streaming=self.streaming,
        )
        if rec.capture:
            rec.prompt = kwargs.get("contents")
        return rec, kwargs, kwargs

    def on_result(self, recorder: Recorder, rec: CallRecord, result: Any, state: Any) -> Any:
        if self.streaming:
            acc = GeminiAccumulator()
            if rec.capture:
                acc.texts = []
            rec.estimator = lambda: Usage(
                input=_estimate_input(state), output=estimate.tokens_for_chars(acc.chars)
            )
            return wrap_stream(result, recorder, rec, acc, rec.asynchronous)
        chars = read_gemini_response(rec, result)
        if rec.usage is None:
            rec.estimator = lambda: Usage(
                input=_estimate_input(state), output=estimate.tokens_for_chars(chars)
            )
        recorder.finish(rec)
        return result


def _points() -> Iterable[WrapPoint]:
    once, stream = GenerateSpec(False), GenerateSpec(True)
    for is_async, prefix in ((False, ""), (True, "Async")):
        yield WrapPoint(_MODULE, f"{prefix}Models._generate_content", once, is_async)
        yield WrapPoint(_MODULE, f"{prefix}Models._generate_content_stream", stream, is_async)


class GoogleGenAIInstrumentor(LLMCostInstrumentor):
    """Records cost and usage of every generate_content request made with ``google-genai``."""

    _instruments = (_SUPPORTED,)

    def wrap_points(self, recorder: Recorder) -> Iterable[WrapPoint]:
        return _points()
