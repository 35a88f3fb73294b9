"""The anthropic SDK: ``messages.create`` (streamed or not), ``messages.parse``, the
``messages.stream()`` helpers (sync and async), the ``beta.messages`` namespace, raw-response
paths, and the Bedrock / Vertex clients that use the same resource classes.

Only translation lives here. ``messages.count_tokens`` is not a generation and is not wrapped.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterable
from typing import Any

from .. import _log, estimate
from ..instrumentor import CallSpec, LLMCostInstrumentor, WrapPoint, call_async, call_sync
from ..record import CallRecord
from ..recorder import Recorder
from ..usage import Usage, count
from . import _stainless
from ._stainless import field

_SUPPORTED = "anthropic >= 0.43, < 3"

_MESSAGES = "anthropic.resources.messages"
_BETA_MESSAGES = "anthropic.resources.beta.messages"


def _provider_of(client: Any, host: str) -> str:
    # The SDK names its own provider per client class: anthropic, aws.bedrock, gcp.vertex_ai.
    name = getattr(client, "_gen_ai_provider_name", None)
    if isinstance(name, str) and name:
        return name
    kind = type(client).__name__
    if "Bedrock" in kind:
        return "aws.bedrock"
    if "Vertex" in kind:
        return "gcp.vertex_ai"
    return "anthropic"


def anthropic_usage(
    input_tokens: object,
    output_tokens: object,
    cache_read: object = 0,
    cache_write: object = 0,
    cache_write_1h: object = 0,
    thinking: object = 0,
) -> Usage:
    """The partition from Anthropic's counts: ``input_tokens`` excludes cache reads and writes;
    ``output_tokens`` includes thinking (split out only when the API reports it)."""
    write = count(cache_write)
    out = count(output_tokens)
    think = min(count(thinking), out)
    return Usage(
        input=count(input_tokens),
        cache_read=count(cache_read),
        cache_write=write,
        output=out - think,
        reasoning=think,
        cache_write_1h=min(count(cache_write_1h), write),
    )


def _thinking(usage: Any) -> object:
    return field(field(usage, "output_tokens_details"), "thinking_tokens")


def _one_hour(usage: Any) -> object:
    return field(field(usage, "cache_creation"), "ephemeral_1h_input_tokens")


def message_usage(usage: Any) -> Usage:
    """Partition of a ``Message.usage``."""
    return anthropic_usage(
        field(usage, "input_tokens"),
        field(usage, "output_tokens"),
        field(usage, "cache_read_input_tokens"),
        field(usage, "cache_creation_input_tokens"),
        _one_hour(usage),
        _thinking(usage),
    )


#: Content deltas besides text that the model generated (output tokens), and their text field.
_GENERATED_DELTAS = {"thinking_delta": "thinking", "input_json_delta": "partial_json"}

#: The SDK's ``content_block_delta`` event classes, learnt as they are met: most events of a
#: stream are of these, and telling them by class costs a tenth of reading ``event.type``.
_DELTA_EVENTS: set[type] = set()

#: Content deltas kept to measure their text, should usage never come (it usually does): beyond
#: these, deltas are only counted and taken to be as long as the kept ones on average.
_SAMPLED_DELTAS = 64


def _delta_chars(event: Any) -> int:
    delta = getattr(event, "delta", None)
    kind = getattr(delta, "type", None)
    if kind == "text_delta":
        text = getattr(delta, "text", None)
    elif kind in _GENERATED_DELTAS:
        text = getattr(delta, _GENERATED_DELTAS[kind], None)
    else:
        return 0
    return len(text) if isinstance(text, str) else 0


class MessageAccumulator:
    """Follows a raw Messages event stream.

    ``message_start`` carries input and cache counts (and a placeholder output count);
    ``message_delta`` usage is cumulative: each field present overwrites, absent ones stay.
    Content deltas are only counted as they pass (their text matters only for an estimate,
    when no usage comes); with content capture on, their text is kept.
    """

    __slots__ = (
        "_texts",
        "counts",
        "deltas",
        "fast",
        "id",
        "model",
        "sample",
        "seen_usage",
        "stop_reason",
    )

    _FIELDS = (
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    )

    def __init__(self) -> None:
        self.counts: dict[str, object] = {}
        self.model: str | None = None
        self.id: str | None = None
        self.stop_reason: str | None = None
        self.deltas = 0
        self.sample: list[Any] = []
        self.seen_usage = False
        self._texts: list[str] | None = None
        self.fast: Any = _DELTA_EVENTS

    @property
    def texts(self) -> list[str] | None:
        """The text deltas, when content capture is on (set to a list to capture)."""
        return self._texts

    @texts.setter
    def texts(self, value: list[str] | None) -> None:
        self._texts = value
        self.fast = _DELTA_EVENTS if value is None else ()  # capturing reads every delta

    @property
    def chars(self) -> int:
        """Characters the model generated so far (sampled beyond the first deltas)."""
        sample = self.sample
        if not sample:
            return 0
        measured = sum(_delta_chars(event) for event in sample)
        return measured + (self.deltas - len(sample)) * measured // len(sample)

    def _merge(self, usage: Any) -> None:
        if usage is None:
            return
        counts = self.counts
        for name in self._FIELDS:
            value = field(usage, name)
            if value is not None:
                counts[name] = value
        one_hour = _one_hour(usage)
        if one_hour:
            counts["1h"] = one_hour
        thinking = _thinking(usage)
        if thinking:
            counts["thinking"] = thinking

    def on_chunk(self, event: Any) -> bool:
        if type(event) in self.fast:
            count = self.deltas = self.deltas + 1
            if count <= _SAMPLED_DELTAS:
                self.sample.append(event)
            return False
        kind = event.type
        if kind == "content_block_delta":
            self.deltas += 1
            if len(self.sample) < _SAMPLED_DELTAS:
                self.sample.append(event)
            if self.texts is not None:
                delta = event.delta
                if getattr(delta, "type", None) == "text_delta":
                    self.texts.append(delta.text)
            elif hasattr(type(event), "model_fields"):  # an SDK model: its class says its type
                _DELTA_EVENTS.add(type(event))
        elif kind == "message_start":
            message = event.message
            self.model = message.model
            self.id = message.id
            self._merge(message.usage)
        elif kind == "message_delta":
            self.seen_usage = True
            self._merge(event.usage)
            self.stop_reason = getattr(event.delta, "stop_reason", None) or self.stop_reason
        return False

    def finish(self, rec: CallRecord) -> None:
        rec.response_model = self.model
        rec.response_id = self.id
        if self.texts is not None:
            rec.completion = "".join(self.texts)
        if self.stop_reason:
            rec.finish_reasons = [self.stop_reason]
        # Without message_delta the output count is message_start's placeholder: not usage.
        if self.seen_usage:
            c = self.counts
            rec.usage = anthropic_usage(
                c.get("input_tokens"),
                c.get("output_tokens"),
                c.get("cache_read_input_tokens"),
                c.get("cache_creation_input_tokens"),
                c.get("1h", 0),
                c.get("thinking", 0),
            )
        elif "input_tokens" in self.counts:
            c = self.counts
            chars = self.chars
            rec.estimator = lambda: anthropic_usage(
                c.get("input_tokens"),
                estimate.tokens_for_chars(chars),
                c.get("cache_read_input_tokens"),
                c.get("cache_creation_input_tokens"),
                c.get("1h", 0),
            )


class MessagesSpec(_stainless.StainlessSpec):
    operation = "chat"
    prompt_keys = ("messages", "system")

    def target(self, instance: Any) -> tuple[str, str | None, int | None]:
        return _stainless.client_target(instance, _provider_of)

    def accumulator(self, state: Any) -> MessageAccumulator:
        return MessageAccumulator()

    def read_response(self, rec: CallRecord, response: Any, state: Any) -> None:
        rec.response_model = getattr(response, "model", None)
        rec.response_id = getattr(response, "id", None)
        stop = getattr(response, "stop_reason", None)
        if stop:
            rec.finish_reasons = [stop]
        if rec.capture:
            blocks = getattr(response, "content", None) or ()
            rec.completion = "".join(getattr(b, "text", None) or "" for b in blocks)
        usage = getattr(response, "usage", None)
        if usage is not None:
            rec.usage = message_usage(usage)


class _StreamRequestSpec(MessagesSpec):
    """The request a ``messages.stream()`` manager makes when entered: always a stream."""

    def begin(
        self, recorder: Recorder, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[CallRecord, dict[str, Any], Any]:
        rec, _, _ = super().begin(recorder, instance, args, {**kwargs, "stream": True})
        return rec, {}, (kwargs, False)


#: Set while our wrapper of ``messages.stream()`` runs: what the stream manager the SDK builds
#: inside it needs to record its deferred request.
_pending_stream: contextvars.ContextVar[tuple[Any, ...] | None] = contextvars.ContextVar(
    "otel_llm_cost_anthropic_stream", default=None
)


def _stream_helper_wrapper(recorder: Recorder) -> Any:
    """Wraps ``messages.stream()``: marks the call, so that the manager it builds is hooked.

    The ``stream()`` helpers do not call ``create()``: they build a manager holding the request
    (a callable, or an un-awaited coroutine for async), made when the manager is entered. The
    manager's ``__init__`` (hooked by :func:`_manager_init`) replaces that request with one that
    records the call and wraps the raw event stream, so every way of consuming it (iteration,
    ``text_stream``, ``get_final_message()``, ``until_done()``) passes through our accumulator.
    Hooking the SDK's own manager class, not the object ``stream()`` returns, keeps working when
    another instrumentation wraps ``stream()`` and returns a manager of its own.
    """
    spec = _StreamRequestSpec()

    def wrapper(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
        token = _pending_stream.set((recorder, spec, instance, kwargs))
        try:
            return wrapped(*args, **kwargs)
        finally:
            _pending_stream.reset(token)

    return wrapper


def _manager_init(wrapped: Any, instance: Any, args: Any, kwargs: Any) -> Any:
    pending = _pending_stream.get()
    if pending is not None and args:
        _pending_stream.set(None)  # one manager per stream() call
        try:
            args = (_recorded_request(args[0], *pending), *args[1:])
        except Exception as exc:
            _log.internal_error("anthropic messages.stream", exc)
    return wrapped(*args, **kwargs)


def _recorded_request(
    original: Any, recorder: Recorder, spec: CallSpec, instance: Any, kwargs: dict[str, Any]
) -> Any:
    """The manager's deferred request, made through the recorder."""
    where = "anthropic messages.stream request"
    if callable(original):

        def make_request() -> Any:
            # call_sync may call its ``wrapped`` with the helper's kwargs (when it cannot record):
            # the deferred request takes none.
            return call_sync(
                recorder, spec, where, lambda *_a, **_k: original(), instance, (), kwargs
            )

        return make_request

    async def _await(*_args: Any, **_kwargs: Any) -> Any:
        return await original

    return call_async(recorder, spec, where, _await, instance, (), kwargs)


def _points(recorder: Recorder) -> Iterable[WrapPoint]:
    messages = MessagesSpec()
    helper = _stream_helper_wrapper(recorder)
    for module in (_MESSAGES, _BETA_MESSAGES):
        for is_async, prefix in ((False, ""), (True, "Async")):
            yield WrapPoint(module, f"{prefix}Messages.create", messages, is_async)
            yield WrapPoint(module, f"{prefix}Messages.parse", messages, is_async)
            yield WrapPoint(module, f"{prefix}Messages.stream", wrapper=helper)
    for module, managers in _STREAM_MANAGERS:
        for manager in managers:
            yield WrapPoint(module, f"{manager}.__init__", wrapper=_manager_init)


#: The SDK's stream manager classes (those a release lacks are skipped).
_STREAM_MANAGERS = (
    ("anthropic.lib.streaming._messages", ("MessageStreamManager", "AsyncMessageStreamManager")),
    (
        "anthropic.lib.streaming._beta_messages",
        ("BetaMessageStreamManager", "BetaAsyncMessageStreamManager"),
    ),
)


def _no_sdk_tracer(self: Any) -> None:
    """Stands in for the SDK's own ``_tracer`` while we record: one span per call, ours."""
    return None


class AnthropicInstrumentor(LLMCostInstrumentor):
    """Records cost and usage of every Messages call made with the ``anthropic`` SDK.

    The SDK (2.x) emits its own OpenTelemetry span per call. While this instrumentation is
    active that span is switched off, so each call has exactly one span: ours, with the GenAI
    attributes plus cost and attribution. Pass ``keep_sdk_spans=True`` to ``instrument()`` to
    keep the SDK's span as well (two spans per call).
    """

    _instruments = (_SUPPORTED,)

    def wrap_points(self, recorder: Recorder) -> Iterable[WrapPoint]:
        return _points(recorder)

    def patches(self, **kwargs: Any) -> Iterable[tuple[str, str, Any]]:
        if not kwargs.get("keep_sdk_spans"):
            yield "anthropic._base_client", "BaseClient._tracer", property(_no_sdk_tracer)
