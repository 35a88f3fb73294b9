"""Attribution: who and what an LLM call is for (agent, user, session, feature, extras).

``usage_context`` stores attribution in a :class:`contextvars.ContextVar`, so asyncio tasks
inherit it and thread pools inherit it when the context is copied. OpenTelemetry baggage
entries with the same attribute names are honoured as well (an explicit ``usage_context``
value wins), so attribution crosses service boundaries.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable, Mapping
from types import MappingProxyType, TracebackType
from typing import Any, TypeVar

from opentelemetry import baggage
from opentelemetry.context import Context

AGENT = "gen_ai.agent.name"
USER = "user.id"
SESSION = "session.id"
FEATURE = "llm.feature"
EXTRA_PREFIX = "llm."

#: Attribution attributes that become metric labels without opt-in.
DEFAULT_METRIC_ATTRIBUTES: frozenset[str] = frozenset({AGENT, FEATURE})

#: Longest attribute value kept; longer values are cut (bounded size on spans and labels).
MAX_VALUE_LENGTH = 128
#: Longest attribute name accepted from baggage or ``usage_context`` extras.
MAX_KEY_LENGTH = 64
#: Most ``llm.*`` extras taken from baggage (which crosses trust boundaries).
MAX_BAGGAGE_EXTRAS = 16

_EMPTY: Mapping[str, str] = MappingProxyType({})
_current: contextvars.ContextVar[Mapping[str, str]] = contextvars.ContextVar(
    "otel_llm_cost_attribution", default=_EMPTY
)

F = TypeVar("F", bound=Callable[..., Any])


def _bounded(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_VALUE_LENGTH else text[:MAX_VALUE_LENGTH]


def _is_attribution_key(key: str) -> bool:
    return key in (AGENT, USER, SESSION) or key.startswith(EXTRA_PREFIX)


class usage_context:  # noqa: N801 - a context manager used like a function, as contextlib's are
    """Attach attribution to every LLM call made inside it.

    ``agent`` -> ``gen_ai.agent.name``, ``user`` -> ``user.id``, ``session`` -> ``session.id``,
    ``feature`` -> ``llm.feature`` and each extra keyword ``k`` -> ``llm.k``. Nested contexts
    merge, the inner value winning per key. Usable as ``with``/``async with`` and as a
    decorator of sync and async functions.
    """

    __slots__ = ("_attributes", "_tokens")

    def __init__(
        self,
        agent: str | None = None,
        user: str | None = None,
        session: str | None = None,
        feature: str | None = None,
        **extra: object,
    ) -> None:
        attributes: dict[str, str] = {}
        for key, value in ((AGENT, agent), (USER, user), (SESSION, session), (FEATURE, feature)):
            if value is not None:
                attributes[key] = _bounded(value)
        for name, value in extra.items():
            if value is not None:
                attributes[EXTRA_PREFIX + name[:MAX_KEY_LENGTH]] = _bounded(value)
        self._attributes = attributes
        self._tokens: list[contextvars.Token[Mapping[str, str]]] = []

    @property
    def attributes(self) -> Mapping[str, str]:
        """The attributes this context adds (before merging with outer contexts)."""
        return MappingProxyType(self._attributes)

    def __enter__(self) -> usage_context:
        merged = {**_current.get(), **self._attributes}
        self._tokens.append(_current.set(MappingProxyType(merged)))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        _current.reset(self._tokens.pop())

    async def __aenter__(self) -> usage_context:
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.__exit__(exc_type, exc, tb)

    def __call__(self, func: F) -> F:
        attributes = self._attributes
        if inspect.iscoroutinefunction(func):

            @functools.wraps(func)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with usage_context._from(attributes):
                    return await func(*args, **kwargs)

            return async_wrapper  # type: ignore[return-value]

        @functools.wraps(func)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with usage_context._from(attributes):
                return func(*args, **kwargs)

        return wrapper  # type: ignore[return-value]

    @classmethod
    def _from(cls, attributes: dict[str, str]) -> usage_context:
        ctx = cls()
        ctx._attributes = attributes
        return ctx


def current_attribution(context: Context | None = None) -> Mapping[str, str]:
    """The attribution in force here: baggage entries (of ``context``, default the current
    OpenTelemetry context) overlaid by ``usage_context`` values."""
    explicit = _current.get()
    entries = baggage.get_all(context)
    if not entries:
        return explicit
    from_baggage: dict[str, str] = {}
    extras = 0
    for key, value in entries.items():
        if key in explicit or len(key) > MAX_KEY_LENGTH or not _is_attribution_key(key):
            continue
        if key not in (AGENT, USER, SESSION, FEATURE):
            extras += 1
            if extras > MAX_BAGGAGE_EXTRAS:
                continue
        from_baggage[key] = _bounded(value)
    if not from_baggage:
        return explicit
    from_baggage.update(explicit)
    return from_baggage
