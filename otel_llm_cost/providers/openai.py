"""The openai SDK: chat completions, Responses, embeddings and legacy completions, sync and
async, streamed or not, helpers (``.stream()``, ``.parse()``) and raw-response paths.

Only translation lives here: where to wrap, how to read the model, usage and stream chunks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import estimate
from ..instrumentor import LLMCostInstrumentor, WrapPoint
from ..record import CallRecord
from ..recorder import Recorder
from ..usage import Usage, count, from_totals
from . import _stainless
from ._stainless import fields

_SUPPORTED = "openai >= 1.66, < 4"

#: Hosts of OpenAI-compatible APIs -> ``gen_ai.provider.name`` (semantic conventions).
#: A suffix match on the host; anything else speaks for OpenAI itself.
_HOST_PROVIDERS: tuple[tuple[str, str], ...] = (
    ("api.openai.com", "openai"),
    (".openai.azure.com", "azure.ai.openai"),
    (".cognitiveservices.azure.com", "azure.ai.openai"),
    (".services.ai.azure.com", "azure.ai.inference"),
    ("api.deepseek.com", "deepseek"),
    ("api.mistral.ai", "mistral_ai"),
    ("api.groq.com", "groq"),
    ("api.x.ai", "x_ai"),
    ("api.perplexity.ai", "perplexity"),
    ("api.cohere.ai", "cohere"),
    ("api.cohere.com", "cohere"),
    ("generativelanguage.googleapis.com", "gcp.gemini"),
    ("aiplatform.googleapis.com", "gcp.vertex_ai"),
    (".amazonaws.com", "aws.bedrock"),
)


def provider_for_host(host: str) -> str:
    """``gen_ai.provider.name`` for the host an openai client talks to."""
    host = host.lower()
    for suffix, provider in _HOST_PROVIDERS:
        if host == suffix.lstrip(".") or host.endswith(suffix):
            return provider
    return "openai"


def _provider_of(client: Any, host: str) -> str:
    provider = provider_for_host(host)
    if provider == "openai" and type(client).__name__.startswith(
        ("AzureOpenAI", "AsyncAzureOpenAI")
    ):
        return "azure.ai.openai"
    return provider


def _target(instance: Any) -> tuple[str, str | None, int | None]:
    return _stainless.client_target(instance, _provider_of)


def chat_usage(usage: Any) -> Usage:
    """Partition of a chat-completions (or legacy completions) ``usage`` object."""
    u = fields(usage)
    prompt = fields(u.get("prompt_tokens_details"))
    cached = prompt.get("cached_tokens")
    if not cached:  # DeepSeek reports cache hits beside the details
        cached = u.get("prompt_cache_hit_tokens")
    return from_totals(
        u.get("prompt_tokens"),
        u.get("completion_tokens"),
        cache_read=cached,
        cache_write=prompt.get("cache_write_tokens"),
        reasoning=fields(u.get("completion_tokens_details")).get("reasoning_tokens"),
    )


def responses_usage(usage: Any) -> Usage:
    """Partition of a Responses API ``usage`` object."""
    u = fields(usage)
    details = fields(u.get("input_tokens_details"))
    return from_totals(
        u.get("input_tokens"),
        u.get("output_tokens"),
        cache_read=details.get("cached_tokens"),
        cache_write=details.get("cache_write_tokens"),
        reasoning=fields(u.get("output_tokens_details")).get("reasoning_tokens"),
    )


def embeddings_usage(usage: Any) -> Usage:
    return from_totals(fields(usage).get("prompt_tokens"), 0)


class _Spec(_stainless.StainlessSpec):
    """What the openai endpoints share: where the client points."""

    def target(self, instance: Any) -> tuple[str, str | None, int | None]:
        return _target(instance)


# -- chat completions


class ChatAccumulator:
    """Follows a chat-completions stream: usage, model, id, finish reasons, text length."""

    #: The text of a choice is in ``choice.delta.content`` (chat), else ``choice.text``.
    deltas = True

    __slots__ = ("chars", "finish_reasons", "hide_usage_chunk", "id", "model", "texts", "usage")

    def __init__(self, hide_usage_chunk: bool) -> None:
        self.hide_usage_chunk = hide_usage_chunk
        self.usage: Any = None
        self.model: str | None = None
        self.id: str | None = None
        self.finish_reasons: list[str] = []
        self.chars = 0
        self.texts: list[str] | None = None  # only when content capture is on

    def on_chunk(self, chunk: Any) -> bool:
        if self.model is None:
            self.model = chunk.model
            self.id = chunk.id
        choices = chunk.choices
        if choices:
            for choice in choices:
                if self.deltas:
                    delta = choice.delta
                    text = delta.content if delta is not None else None
                else:
                    text = choice.text
                if text:
                    self.chars += len(text)
                    if self.texts is not None:
                        self.texts.append(text)
                if choice.finish_reason:
                    self.finish_reasons.append(choice.finish_reason)
        usage = chunk.usage
        if usage is not None:
            self.usage = usage
            return self.hide_usage_chunk and not choices
        return False

    def finish(self, rec: CallRecord) -> None:
        rec.response_model = self.model
        rec.response_id = self.id
        rec.finish_reasons = self.finish_reasons or None
        if self.texts is not None:
            rec.completion = "".join(self.texts)
        if self.usage is not None:
            rec.usage = chat_usage(self.usage)


def _wants_usage(stream_options: Any) -> bool:
    return isinstance(stream_options, dict) and bool(stream_options.get("include_usage"))


class ChatSpec(_Spec):
    operation = "chat"

    def prepare(self, kwargs: dict[str, Any], streaming: bool) -> tuple[dict[str, Any], bool]:
        if not (streaming and self.stream_usage):
            return kwargs, False
        options = kwargs.get("stream_options")
        if _wants_usage(options):
            return kwargs, False
        kwargs = dict(kwargs)
        if isinstance(options, dict):  # the caller's own options: add to them
            kwargs["stream_options"] = {**options, "include_usage": True}
            return kwargs, True
        # Sent through extra_body, which the SDK passes as is: a stream_options argument would
        # go through the SDK's type-driven transform, ~130k instructions a call.
        extra = kwargs.get("extra_body")
        body = dict(extra) if isinstance(extra, dict) else {}
        own = body.get("stream_options")
        if _wants_usage(own):
            return kwargs, False
        body["stream_options"] = (
            {**own, "include_usage": True} if isinstance(own, dict) else {"include_usage": True}
        )
        kwargs["extra_body"] = body
        return kwargs, True

    def accumulator(self, state: Any) -> ChatAccumulator:
        return ChatAccumulator(hide_usage_chunk=state[1])

    def read_response(self, rec: CallRecord, response: Any, state: Any) -> None:
        rec.response_model = getattr(response, "model", None)
        rec.response_id = getattr(response, "id", None)
        choices = getattr(response, "choices", None) or ()
        reasons = [c.finish_reason for c in choices if getattr(c, "finish_reason", None)]
        rec.finish_reasons = reasons or None
        if rec.capture:
            rec.completion = "".join(_message_text(c) for c in choices)
        usage = getattr(response, "usage", None)
        if usage is not None:
            rec.usage = chat_usage(usage)
        else:
            chars = sum(len(_message_text(c)) for c in choices)
            rec.estimator = lambda: Usage(
                input=self.estimate_input(state), output=estimate.tokens_for_chars(chars)
            )


def _message_text(choice: Any) -> str:
    message = getattr(choice, "message", None)
    text = (
        getattr(message, "content", None) if message is not None else getattr(choice, "text", None)
    )
    return text if isinstance(text, str) else ""


class CompletionAccumulator(ChatAccumulator):
    """Follows a legacy completions stream: the text is ``choice.text``, not a delta."""

    __slots__ = ()
    deltas = False


class CompletionsSpec(ChatSpec):
    """Legacy ``completions.create`` (``text_completion``)."""

    operation = "text_completion"
    prompt_keys = ("prompt",)

    def accumulator(self, state: Any) -> CompletionAccumulator:
        return CompletionAccumulator(hide_usage_chunk=state[1])


# -- Responses API


#: Responses stream events that carry the whole response (the last one has the usage).
_RESPONSE_EVENTS = frozenset(
    {
        "response.created",
        "response.queued",
        "response.in_progress",
        "response.completed",
        "response.incomplete",
        "response.failed",
    }
)


class ResponsesAccumulator:
    """Follows a Responses stream: the final response carries usage, model, id and status."""

    __slots__ = ("chars", "response", "texts")

    def __init__(self) -> None:
        self.response: Any = None
        self.chars = 0
        self.texts: list[str] | None = None

    def on_chunk(self, event: Any) -> bool:
        kind = event.type
        if kind == "response.output_text.delta":
            self.chars += len(event.delta)
        elif kind in _RESPONSE_EVENTS:
            self.response = event.response
        return False

    def finish(self, rec: CallRecord) -> None:
        if self.response is not None:
            read_response(rec, self.response)


def read_response(rec: CallRecord, response: Any) -> None:
    rec.response_model = getattr(response, "model", None)
    rec.response_id = getattr(response, "id", None)
    status = getattr(response, "status", None)
    if status:
        rec.finish_reasons = [status]
    if status == "failed" and rec.error_type is None:
        error = getattr(response, "error", None)
        rec.error_type = str(getattr(error, "code", None) or "response.failed")
    if rec.capture:
        rec.completion = getattr(response, "output_text", None) or None
    usage = getattr(response, "usage", None)
    if usage is not None:
        rec.usage = responses_usage(usage)


class ResponsesSpec(_Spec):
    operation = "chat"
    prompt_keys = ("input", "instructions")

    def accumulator(self, state: Any) -> ResponsesAccumulator:
        return ResponsesAccumulator()

    def read_response(self, rec: CallRecord, response: Any, state: Any) -> None:
        read_response(rec, response)
        if rec.usage is None:
            text = getattr(response, "output_text", "") or ""
            rec.estimator = lambda: Usage(
                input=self.estimate_input(state), output=estimate.tokens_for_chars(len(text))
            )


# -- embeddings


class EmbeddingsSpec(_Spec):
    operation = "embeddings"
    prompt_keys = ("input",)

    def read_response(self, rec: CallRecord, response: Any, state: Any) -> None:
        rec.response_model = getattr(response, "model", None)
        usage = getattr(response, "usage", None)
        if usage is not None and count(getattr(usage, "prompt_tokens", 0)):
            rec.usage = embeddings_usage(usage)
        else:
            rec.estimator = lambda: Usage(input=self.estimate_input(state))


# -- the instrumentor


def _points(recorder: Recorder) -> Iterable[WrapPoint]:
    stream_usage = recorder.settings.stream_usage
    chat = ChatSpec(stream_usage)
    responses = ResponsesSpec(stream_usage)
    embeddings = EmbeddingsSpec(stream_usage)
    completions = CompletionsSpec(stream_usage)
    chat_mod = "openai.resources.chat.completions"
    for is_async, prefix in ((False, ""), (True, "Async")):
        yield WrapPoint(chat_mod, f"{prefix}Completions.create", chat, is_async)
        yield WrapPoint(chat_mod, f"{prefix}Completions.parse", chat, is_async)
        yield WrapPoint(
            "openai.resources.responses", f"{prefix}Responses.create", responses, is_async
        )
        yield WrapPoint(
            "openai.resources.responses", f"{prefix}Responses.parse", responses, is_async
        )
        yield WrapPoint(
            "openai.resources.embeddings", f"{prefix}Embeddings.create", embeddings, is_async
        )
        yield WrapPoint(
            "openai.resources.completions", f"{prefix}Completions.create", completions, is_async
        )
        # Releases before 1.92 have the parse helper in beta only, posting by itself.
        yield WrapPoint(
            "openai.resources.beta.chat.completions", f"{prefix}Completions.parse", chat, is_async
        )


class OpenAIInstrumentor(LLMCostInstrumentor):
    """Records cost and usage of every call made with the ``openai`` SDK."""

    _instruments = (_SUPPORTED,)

    def wrap_points(self, recorder: Recorder) -> Iterable[WrapPoint]:
        return _points(recorder)
