"""Shared instrumentation machinery: the BaseInstrumentor subclass every provider module uses,
and the generic call wrappers (sync and async) that turn one SDK call into one record."""

from __future__ import annotations

import contextvars
import sys
import threading
from collections.abc import Callable, Collection, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

import wrapt
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.instrumentation.dependencies import get_dependency_conflicts
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from . import _log
from .record import CallRecord
from .recorder import Recorder

#: True while one of our wrapped calls runs: an SDK method that calls another wrapped method
#: (a helper calling ``create``) is still one logical call, recorded once.
_in_call: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "otel_llm_cost_in_call", default=False
)


class CallSpec:
    """How one SDK method becomes a :class:`CallRecord`. Provider modules subclass this.

    ``begin`` reads the request (model, stream flag, target) and may return changed keyword
    arguments (e.g. to ask a stream for usage); ``on_result`` reads the response, or wraps a
    stream, and returns what the caller gets.
    """

    def begin(
        self, recorder: Recorder, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[CallRecord, dict[str, Any], Any]:
        raise NotImplementedError

    def on_result(self, recorder: Recorder, rec: CallRecord, result: Any, state: Any) -> Any:
        raise NotImplementedError


def call_sync(
    recorder: Recorder,
    spec: CallSpec,
    where: str,
    wrapped: Callable[..., Any],
    instance: Any,
    args: Any,
    kwargs: Any,
) -> Any:
    """Make one synchronous SDK call and record it; faults of ours never reach the caller."""
    if _in_call.get():
        return wrapped(*args, **kwargs)
    try:
        rec, call_kwargs, state = spec.begin(recorder, instance, args, kwargs)
        # Our span is current during the call (HTTP spans are its children), and so is the mark
        # that an SDK method called from inside is part of this call.
        context_token = otel_context.attach(trace.set_span_in_context(rec.span, rec.context))
        call_token = _in_call.set(True)
    except Exception as exc:
        _log.internal_error(where, exc)
        return wrapped(*args, **kwargs)
    try:
        result = wrapped(*args, **call_kwargs)
    except BaseException as exc:
        _in_call.reset(call_token)
        otel_context.detach(context_token)
        recorder.fail(rec, exc)
        raise
    _in_call.reset(call_token)
    otel_context.detach(context_token)
    try:
        return spec.on_result(recorder, rec, result, state)
    except Exception as exc:
        _log.internal_error(where, exc)
        recorder.finish(rec)
        return result


async def call_async(
    recorder: Recorder,
    spec: CallSpec,
    where: str,
    wrapped: Callable[..., Any],
    instance: Any,
    args: Any,
    kwargs: Any,
) -> Any:
    """Make one asynchronous SDK call (``wrapped`` returns an awaitable) and record it."""
    if _in_call.get():
        return await wrapped(*args, **kwargs)
    try:
        rec, call_kwargs, state = spec.begin(recorder, instance, args, kwargs)
        rec.asynchronous = True
        # Our span is current during the call (HTTP spans are its children), and so is the mark
        # that an SDK method called from inside is part of this call.
        context_token = otel_context.attach(trace.set_span_in_context(rec.span, rec.context))
        call_token = _in_call.set(True)
    except Exception as exc:
        _log.internal_error(where, exc)
        return await wrapped(*args, **kwargs)
    try:
        result = await wrapped(*args, **call_kwargs)
    except BaseException as exc:
        _in_call.reset(call_token)
        otel_context.detach(context_token)
        recorder.fail(rec, exc)
        raise
    _in_call.reset(call_token)
    otel_context.detach(context_token)
    try:
        return spec.on_result(recorder, rec, result, state)
    except Exception as exc:
        _log.internal_error(where, exc)
        recorder.finish(rec)
        return result


class _Switch:
    """On while its instrumentor is instrumenting. SDK helpers that captured a wrapped bound
    method (``with_raw_response``, legacy clients with metadata) keep calling our wrapper after
    ``uninstrument()``; with the switch off it passes straight through."""

    __slots__ = ("on",)

    def __init__(self) -> None:
        self.on = True


def _spec_wrapper(
    recorder: Recorder, spec: CallSpec, where: str, switch: _Switch, is_async: bool
) -> Callable[..., Any]:
    """The wrapt wrapper of an SDK method described by ``spec`` (one frame of ours before
    :func:`call_sync`; for ``async def`` methods it returns :func:`call_async`'s coroutine)."""
    call = call_async if is_async else call_sync

    def wrapper(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if switch.on:
            return call(recorder, spec, where, wrapped, instance, args, kwargs)
        return wrapped(*args, **kwargs)  # for async methods: the coroutine, as unwrapped

    return wrapper


def _switched(wrapper: Callable[..., Any], switch: _Switch) -> Callable[..., Any]:
    def switched(wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        if switch.on:
            return wrapper(wrapped, instance, args, kwargs)
        return wrapped(*args, **kwargs)

    return switched


@dataclass(frozen=True)
class WrapPoint:
    """One SDK method to wrap: ``module`` + dotted ``name`` (``Class.method``)."""

    module: str
    name: str
    spec: CallSpec | None = None
    is_async: bool = False
    #: A ready wrapt wrapper, for methods that need more than ``spec`` (e.g. stream helpers).
    wrapper: Callable[..., Any] | None = None


_recorder_lock = threading.Lock()
_recorders: dict[tuple[int, int], Recorder] = {}


def shared_recorder(tracer_provider: Any = None, meter_provider: Any = None) -> Recorder:
    """One recorder (instruments, price book) per pair of providers, shared by all SDKs."""
    key = (id(tracer_provider), id(meter_provider))
    with _recorder_lock:
        recorder = _recorders.get(key)
        if recorder is None:
            recorder = Recorder(tracer_provider=tracer_provider, meter_provider=meter_provider)
            _recorders[key] = recorder
        return recorder


def _reset_recorders() -> None:
    """Forget cached recorders (tests; a changed environment)."""
    with _recorder_lock:
        _recorders.clear()


class LLMCostInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """Base of the per-SDK instrumentors: dependency check, wrapping, clean unwrap.

    Subclasses set ``_instruments`` (pip requirement strings) and implement
    :meth:`wrap_points`.
    """

    _instruments: tuple[str, ...] = ()

    def instrumentation_dependencies(self) -> Collection[str]:
        return self._instruments

    def wrap_points(self, recorder: Recorder) -> Iterable[WrapPoint]:
        raise NotImplementedError

    def patches(self, **kwargs: Any) -> Iterable[tuple[str, str, Any]]:
        """Plain attributes to replace while instrumented: ``(module, "Class.attr", value)``."""
        return ()

    def _instrument(self, **kwargs: Any) -> None:
        self._wrapped: list[tuple[Any, str, Any]] = []
        self._switch = _Switch()
        conflict = get_dependency_conflicts(list(self._instruments))
        if conflict is not None:
            if conflict.found is None:
                _log.logger.debug("otel-llm-cost: %s not installed, skipped", conflict.required)
            else:
                _log.warn_once(
                    f"unsupported:{type(self).__name__}",
                    "otel-llm-cost: %s is installed but %s is required; calls through it are "
                    "not recorded",
                    conflict.found,
                    conflict.required,
                )
            return
        recorder = kwargs.get("recorder") or shared_recorder(
            kwargs.get("tracer_provider"), kwargs.get("meter_provider")
        )
        self._patched: list[tuple[Any, str, Any]] = []
        switch = self._switch
        for point in self.wrap_points(recorder):
            self._when_imported(point.module, switch, partial(self._wrap, point, recorder))
        try:
            patches = list(self.patches(**kwargs))
        except Exception as exc:
            _log.internal_error(f"patching {type(self).__name__}", exc)
            patches = []
        for module, name, value in patches:
            self._when_imported(module, switch, partial(self._patch, name, value))

    @staticmethod
    def _when_imported(module: str, switch: _Switch, action: Callable[[Any], None]) -> None:
        """Run ``action(module)`` now if the module is loaded, else when the app imports it.

        Importing a provider SDK costs up to seconds and tens of MiB (anthropic, the Google
        SDKs); an app that never imports one never pays for it. A hook that fires after
        ``uninstrument()`` finds its switch off and does nothing.
        """

        def run(loaded: Any) -> None:
            if switch.on:
                action(loaded)

        if module in sys.modules:
            run(sys.modules[module])
        else:
            wrapt.register_post_import_hook(run, module)

    @staticmethod
    def _resolve(module: Any, name: str) -> tuple[Any, str]:
        owner_name, _, attr = name.rpartition(".")
        owner = module
        for part in owner_name.split(".") if owner_name else ():
            owner = getattr(owner, part)
        return owner, attr

    def _patch(self, name: str, value: Any, module: Any) -> None:
        try:
            owner, attr = self._resolve(module, name)
            if attr not in owner.__dict__:  # a release without it
                _log.logger.debug("otel-llm-cost: %s.%s not found, not patched", module, name)
                return
            self._patched.append((owner, attr, owner.__dict__[attr]))
            setattr(owner, attr, value)
        except Exception as exc:
            _log.internal_error(f"patching {module.__name__}.{name}", exc)

    def _wrap(self, point: WrapPoint, recorder: Recorder, module: Any) -> None:
        try:
            owner, attr = self._resolve(module, point.name)
            getattr(owner, attr)
        except AttributeError:
            _log.logger.debug("otel-llm-cost: %s.%s not found, skipped", point.module, point.name)
            return
        if any(owner is done and attr == name for done, name, _ in self._wrapped):
            return  # the same class reached through another module (an SDK alias)
        where = f"{point.module}.{point.name}"
        if point.wrapper is not None:
            wrapper = _switched(point.wrapper, self._switch)
        else:
            assert point.spec is not None
            wrapper = _spec_wrapper(recorder, point.spec, where, self._switch, point.is_async)
        try:
            installed = wrapt.wrap_function_wrapper(owner, attr, wrapper)
        except Exception as exc:
            _log.internal_error(f"wrapping {where}", exc)
            return
        self._wrapped.append((owner, attr, installed))

    def _uninstrument(self, **kwargs: Any) -> None:
        switch = getattr(self, "_switch", None)
        if switch is not None:
            switch.on = False
        for owner, attr, installed in reversed(getattr(self, "_wrapped", [])):
            if owner.__dict__.get(attr) is installed:
                setattr(owner, attr, installed.__wrapped__)
            else:
                _unlink(owner.__dict__.get(attr), installed)
        self._wrapped = []
        for owner, name, original in reversed(getattr(self, "_patched", [])):
            setattr(owner, name, original)
        self._patched = []


def _unlink(top: Any, ours: Any) -> None:
    """Take our wrapper out from under another instrumentation's wrapt wrapper(s) on top of it.

    Their wrapper stays where it is, now wrapping what ours wrapped, so that their own
    uninstrument() later finds the SDK's original under it. A layer that is not a wrapt proxy
    cannot be relinked: ours then stays inside it, switched off (a pass-through).
    """
    layer = top
    for _ in range(16):  # a chain of wrappers, never a cycle; bounded all the same
        inner = getattr(layer, "__wrapped__", None)
        if inner is None:
            return
        if inner is ours:
            try:
                layer.__wrapped__ = ours.__wrapped__
            except Exception as exc:
                _log.internal_error("unwrapping under another instrumentation", exc)
            return
        layer = inner
