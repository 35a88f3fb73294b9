"""Proxies for streamed responses, shared by every provider.

A proxy behaves like the SDK's stream object (iteration, ``with``/``async with``, ``close()``,
every other attribute such as ``.response`` or helper methods, ``isinstance``) and finalizes
the call exactly once: when the stream ends, fails, is closed, or is garbage-collected.
Per chunk it does one call of the provider's accumulator and nothing else.
"""

from __future__ import annotations

import asyncio
import time
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
    """Finalizes one streamed call exactly once."""

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
        self._self_rec = rec
        self._self_on_chunk = acc.on_chunk
        self._self_response: Any = None

    @property
    def response(self) -> Any:
        hooked = self._self_response
        if hooked is None:
            hooked = self._self_response = _CloseHook(
                self.__wrapped__.response, self._self_finalizer
            )
        return hooked

    def _self_chunk(self, chunk: Any) -> bool:
        rec = self._self_rec
        if rec.first_chunk is None:
            rec.first_chunk = time.perf_counter()
        try:
            return self._self_on_chunk(chunk)
        except Exception as exc:
            _log.internal_error("stream chunk", exc)
            return False

    def __del__(self) -> None:
        try:
            self._self_finalizer.end()
        except Exception:
            pass

    def __copy__(self) -> Any:
        raise TypeError("a stream cannot be copied")

    def __reduce_ex__(self, protocol: Any) -> Any:
        raise TypeError("a stream cannot be pickled")


class StreamProxy(_StreamProxyBase):
    """A synchronous stream (iterator of chunks)."""

    def __init__(self, wrapped: Any, recorder: Recorder, rec: CallRecord, acc: Accumulator) -> None:
        super().__init__(wrapped, recorder, rec, acc)
        nxt = getattr(type(wrapped), "__next__", None)
        self._self_next = wrapped.__next__ if nxt is not None else iter(wrapped).__next__

    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        while True:
            try:
                chunk = self._self_next()
            except StopIteration:
                self._self_finalizer.end()
                raise
            except BaseException as exc:
                self._self_finalizer.end(exc)
                raise
            if not self._self_chunk(chunk):
                return chunk

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
    """An asynchronous stream (async iterator of chunks)."""

    def __init__(self, wrapped: Any, recorder: Recorder, rec: CallRecord, acc: Accumulator) -> None:
        super().__init__(wrapped, recorder, rec, acc)
        nxt = getattr(type(wrapped), "__anext__", None)
        self._self_anext = wrapped.__anext__ if nxt is not None else wrapped.__aiter__().__anext__

    def __aiter__(self) -> AsyncStreamProxy:
        return self

    async def __anext__(self) -> Any:
        while True:
            try:
                chunk = await self._self_anext()
            except StopAsyncIteration:
                self._self_finalizer.end()
                raise
            except asyncio.CancelledError:
                # The caller's task was cancelled: it stopped reading, the stream did not fail.
                self._self_finalizer.end()
                raise
            except BaseException as exc:
                self._self_finalizer.end(exc)
                raise
            if not self._self_chunk(chunk):
                return chunk

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


_proxy_types: dict[type, type] = {}


def wrap_stream(stream: Any, recorder: Recorder, rec: CallRecord, acc: Accumulator) -> Any:
    """Proxy a stream (sync or async) with a class that has exactly the closing methods the
    stream's own type has, so ``hasattr(stream, "aclose")`` answers as uninstrumented."""
    kind = type(stream)
    proxy_type = _proxy_types.get(kind)
    if proxy_type is None:
        is_async = hasattr(kind, "__anext__") or (
            hasattr(kind, "__aiter__") and not hasattr(kind, "__iter__")
        )
        if is_async:
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
        _proxy_types[kind] = proxy_type
    return proxy_type(stream, recorder, rec, acc)
