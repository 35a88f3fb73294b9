"""Proxies for streamed responses, shared by every provider.

A proxy behaves like the SDK's stream object (iteration, ``with``/``async with``, ``close()``,
every other attribute such as ``.response`` or helper methods, ``isinstance``) and finalizes
the call exactly once: when the stream ends, fails, is closed, or is garbage-collected.

Iterating a proxy iterates a generator (:func:`_follow`, :func:`_afollow`) over the SDK's own
iterator: per chunk that is one generator step and one call of the provider's accumulator,
nothing else (no method call of the proxy, no allocation).

The call of a synchronous stream that nobody can read any more is ended by its
:class:`_Finalizer`'s ``__del__``: the proxy, its generator and the hooked ``.response`` all hold
the finalizer, so it goes only when the last of them goes (``for chunk in stream`` keeps only
the generator); see :class:`AsyncStreamProxy` for asynchronous ones.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol

import wrapt

from . import _log
from .record import CallRecord
from .recorder import Recorder


class Accumulator(Protocol):
    """What a provider module supplies to follow one stream."""

    def on_chunk(self, chunk: Any) -> bool:
        """Look at one chunk (usage, model, ...). Return True to hide it from the caller."""
        ...

    def finish(self, rec: CallRecord) -> None:
        """Copy what the stream said (usage, response model, id, finish reasons) into ``rec``."""
        ...


class _Finalizer:
    """Finalizes one streamed call exactly once: at the end of the stream, when it fails or is
    closed, and at the latest when the finalizer itself is freed (the stream was abandoned)."""

    __slots__ = ("acc", "rec", "recorder")

    def __init__(self, recorder: Recorder, rec: CallRecord, acc: Accumulator) -> None:
        self.recorder = recorder
        self.rec = rec
        self.acc = acc

    def end(self, exc: BaseException | None = None) -> None:
        rec = self.rec
        if rec.done:
            return
        try:
            self.acc.finish(rec)
        except Exception as err:
            _log.internal_error("stream accumulator", err)
        if exc is not None:
            self.recorder.fail(rec, exc)
        else:
            self.recorder.finish(rec)

    def __del__(self) -> None:
        try:
            self.end()
        except Exception:
            pass


def _chunk_fault(exc: Exception) -> bool:
    _log.internal_error("stream chunk", exc)
    return False


def _follow(
    source: Iterator[Any],
    on_chunk: Callable[[Any], bool],
    finalizer: _Finalizer,
) -> Iterator[Any]:
    """The chunks of ``source``, each shown to ``on_chunk`` first (which may hide it).

    Ends the call when ``source`` ends or fails, and when the generator is closed (the caller
    stopped reading: not a failure).
    """
    rec = finalizer.rec
    first = True
    try:
        for chunk in source:
            if first:
                rec.first_chunk = time.perf_counter()
                first = False
            try:
                hide = on_chunk(chunk)
            except Exception as exc:
                hide = _chunk_fault(exc)
            if not hide:
                yield chunk
    except GeneratorExit:
        finalizer.end()
        raise
    except BaseException as exc:
        finalizer.end(exc)
        raise
    finalizer.end()


async def _afollow(
    source: AsyncIterator[Any],
    on_chunk: Callable[[Any], bool],
    finalizer: _Finalizer,
) -> AsyncIterator[Any]:
    """:func:`_follow` for asynchronous streams. A cancelled reader stopped reading; the
    stream did not fail."""
    rec = finalizer.rec
    first = True
    try:
        async for chunk in source:
            if first:
                rec.first_chunk = time.perf_counter()
                first = False
            try:
                hide = on_chunk(chunk)
            except Exception as exc:
                hide = _chunk_fault(exc)
            if not hide:
                yield chunk
    except (GeneratorExit, asyncio.CancelledError):
        finalizer.end()
        raise
    except BaseException as exc:
        finalizer.end(exc)
        raise
    finalizer.end()


class _CloseHook(wrapt.ObjectProxy):  # type: ignore[misc]
    """Wraps an object whose ``close()``/``aclose()`` ends the stream (the HTTP response of
    Stainless SDK streams, which their helper classes close directly)."""

    def __init__(self, wrapped: Any, finalizer: _Finalizer) -> None:
        super().__init__(wrapped)
        self._self_finalizer = finalizer

    def close(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__wrapped__.close(*args, **kwargs)
        finally:
            self._self_finalizer.end()

    def aclose(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__wrapped__.aclose(*args, **kwargs)
        finally:
            self._self_finalizer.end()


class _StreamProxyBase(wrapt.ObjectProxy):  # type: ignore[misc]
    def __init__(self, wrapped: Any, recorder: Recorder, rec: CallRecord, acc: Accumulator) -> None:
        super().__init__(wrapped)
        self._self_finalizer = _Finalizer(recorder, rec, acc)
        self._self_on_chunk = acc.on_chunk
        self._self_chunks: Any = None
        self._self_response: Any = None

    @property
    def response(self) -> Any:
        hooked = self._self_response
        if hooked is None:
            hooked = self._self_response = _CloseHook(
                self.__wrapped__.response, self._self_finalizer
            )
        return hooked

    def __copy__(self) -> Any:
        raise TypeError("a stream cannot be copied")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("a stream cannot be pickled")


class StreamProxy(_StreamProxyBase):
    """A synchronous stream (iterator of chunks)."""

    def _self_iterator(self) -> Iterator[Any]:
        chunks = self._self_chunks
        if chunks is None:
            chunks = self._self_chunks = _follow(
                iter(self.__wrapped__), self._self_on_chunk, self._self_finalizer
            )
        return chunks  # type: ignore[no-any-return]

    def __iter__(self) -> Iterator[Any]:
        return self._self_iterator()

    def __next__(self) -> Any:
        return next(self._self_iterator())

    def __enter__(self) -> StreamProxy:
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__exit__", None)
            return exit_(exc_type, exc, tb) if exit_ is not None else None
        finally:
            self._self_finalizer.end()


class AsyncStreamProxy(_StreamProxyBase):
    """An asynchronous stream (async iterator of chunks).

    Unlike the synchronous proxy it is its own async iterator (``__anext__`` hands out the
    generator's next step): an async generator dropped mid-way is closed only later, by a task
    the event loop schedules, so the end of an abandoned stream is told by the proxy's own
    ``__del__``, which runs at once.
    """

    def _self_iterator(self) -> AsyncIterator[Any]:
        chunks = self._self_chunks
        if chunks is None:
            chunks = self._self_chunks = _afollow(
                self.__wrapped__.__aiter__(),
                self._self_on_chunk,
                self._self_finalizer,
            )
        return chunks  # type: ignore[no-any-return]

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    def __anext__(self) -> Any:
        return self._self_iterator().__anext__()

    def __del__(self) -> None:
        try:
            self._self_finalizer.end()
        except Exception:
            pass

    async def __aenter__(self) -> AsyncStreamProxy:
        enter = getattr(self.__wrapped__, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__aexit__", None)
            return (await exit_(exc_type, exc, tb)) if exit_ is not None else None
        finally:
            self._self_finalizer.end()


class _AsyncClose:
    async def close(self, *args: Any, **kwargs: Any) -> Any:
        try:
            result = self.__wrapped__.close(*args, **kwargs)  # type: ignore[attr-defined]
            if hasattr(result, "__await__"):
                result = await result
            return result
        finally:
            self._self_finalizer.end()  # type: ignore[attr-defined]


class _AsyncAclose:
    async def aclose(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await self.__wrapped__.aclose(*args, **kwargs)  # type: ignore[attr-defined]
        finally:
            self._self_finalizer.end()  # type: ignore[attr-defined]


class _SyncClose:
    def close(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return self.__wrapped__.close(*args, **kwargs)  # type: ignore[attr-defined]
        finally:
            self._self_finalizer.end()  # type: ignore[attr-defined]


_proxy_types: dict[tuple[type, bool], type] = {}


def wrap_stream(
    stream: Any, recorder: Recorder, rec: CallRecord, acc: Accumulator, asynchronous: bool = False
) -> Any:
    """Proxy a stream returned by a synchronous or an ``asynchronous`` SDK call.

    The proxy class has exactly the closing methods the stream's own type has, so
    ``hasattr(stream, "aclose")`` answers as uninstrumented. Whether the stream is iterated
    with ``for`` or ``async for`` follows from the call that returned it, not from the
    stream's type: another instrumentation's stream wrapper may define both protocols.
    """
    kind = type(stream)
    proxy_type = _proxy_types.get((kind, asynchronous))
    if proxy_type is None:
        if asynchronous:
            bases: tuple[type, ...] = (AsyncStreamProxy,)
            if hasattr(kind, "close"):
                bases = (_AsyncClose, *bases)
            if hasattr(kind, "aclose"):
                bases = (_AsyncAclose, *bases)
        else:
            bases = (StreamProxy,)
            if hasattr(kind, "close"):
                bases = (_SyncClose, *bases)
        proxy_type = (
            bases[0]
            if len(bases) == 1
            else type(f"{bases[-1].__name__}For{kind.__name__}", bases, {})
        )
        _proxy_types[(kind, asynchronous)] = proxy_type
    return proxy_type(stream, recorder, rec, acc)
