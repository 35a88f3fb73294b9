"""In-process fake transports: each answers every request with bytes built once, before any
timing, at the level of the HTTP (or gRPC) library the SDK uses. No socket is opened.

- :func:`httpx_transport`: an ``httpx.MockTransport`` / ``httpx2.MockTransport`` (openai,
  anthropic, google-genai), the body delivered one pre-built part (one SSE event) per read;
- :class:`RequestsAdapter` (built by :func:`requests_adapter`): a ``requests`` transport adapter
  (the legacy google-generativeai REST transport's ``AuthorizedSession``), answering through
  ``requests``' own ``HTTPAdapter.build_response`` and a ``urllib3`` response over a memory
  buffer, so the SDK reads the body exactly as it reads a real one;
- :func:`aio_channel`: a ``grpc.aio.Channel`` (the legacy SDK's async path, which works over
  gRPC asyncio only) that serializes each request with the stub's serializer and answers
  pre-serialized protobuf messages through the stub's deserializer.
"""

from __future__ import annotations

import functools
import importlib
from collections.abc import AsyncIterator, Callable, Iterator
from types import ModuleType
from typing import Any

#: ``(status, headers, body parts)``: one answer of a fake transport.
Answer = tuple[int, list[tuple[str, str]], list[bytes]]


def sdk_http(sdk: str) -> ModuleType:
    """The HTTP library a Stainless SDK (``openai``, ``anthropic``) takes clients of: ``httpx2``
    (openai 3, anthropic 2) or ``httpx`` (openai 1-2, anthropic 0-1)."""
    base = importlib.import_module(f"{sdk}._base_client")
    return getattr(base, "httpx2", None) or base.httpx


@functools.cache
def _body_class(http: ModuleType) -> type:
    class Body(http.SyncByteStream, http.AsyncByteStream):  # type: ignore[misc, name-defined]
        """A response body delivered one pre-built part per read."""

        __slots__ = ("parts",)

        def __init__(self, parts: list[bytes]) -> None:
            self.parts = parts

        def __iter__(self) -> Iterator[bytes]:
            return iter(self.parts)

        async def __aiter__(self) -> AsyncIterator[bytes]:
            for part in self.parts:
                yield part

    return Body


def httpx_transport(http: ModuleType, answer: Callable[[Any], Answer]) -> Any:
    """A ``MockTransport`` of ``http`` (httpx or httpx2) answering ``answer(request)``."""
    body = _body_class(http)

    def handler(request: Any) -> Any:
        status, headers, parts = answer(request)
        return http.Response(status, headers=headers, stream=body(parts), request=request)

    return http.MockTransport(handler)


def requests_adapter(answer: Callable[[Any], Answer]) -> Any:
    """A ``requests`` adapter answering ``answer(prepared_request)`` (mount it on a session)."""
    import io

    import requests.adapters
    import urllib3

    class RequestsAdapter(requests.adapters.HTTPAdapter):
        def send(self, request: Any, stream: bool = False, **kwargs: Any) -> Any:
            status, headers, parts = answer(request)
            raw = urllib3.HTTPResponse(
                body=io.BytesIO(b"".join(parts)),
                headers=headers,
                status=status,
                preload_content=False,
                decode_content=True,
                request_method=request.method,
                request_url=request.url,
            )
            response = self.build_response(request, raw)
            if not stream:
                response.content  # noqa: B018 - what requests does for a non-streamed request
            return response

    return RequestsAdapter()


def aio_channel(answers: dict[str, list[bytes]]) -> Any:
    """A ``grpc.aio.Channel`` answering each method (its full path, e.g.
    ``/google.ai.generativelanguage.v1beta.GenerativeService/GenerateContent``) with the
    pre-serialized messages in ``answers`` (one for a unary method, any number for a stream)."""
    from grpc import aio

    class Call(aio.UnaryUnaryCall, aio.UnaryStreamCall):  # type: ignore[misc]
        __slots__ = ("_deserialize", "_messages")

        def __init__(self, messages: list[bytes], deserialize: Callable[[bytes], Any]) -> None:
            self._messages = messages
            self._deserialize = deserialize

        def __await__(self) -> Any:
            if False:  # pragma: no cover - makes this a generator, as awaitables are
                yield
            return self._deserialize(self._messages[0])

        async def _stream(self) -> AsyncIterator[Any]:
            deserialize = self._deserialize
            for message in self._messages:
                yield deserialize(message)

        def __aiter__(self) -> AsyncIterator[Any]:
            return self._stream()

        async def read(self) -> Any:  # pragma: no cover - the SDK iterates
            raise NotImplementedError

        async def wait_for_connection(self) -> None:
            return None

        async def initial_metadata(self) -> Any:
            return aio.Metadata()

        async def trailing_metadata(self) -> Any:
            return aio.Metadata()

        async def code(self) -> Any:
            import grpc

            return grpc.StatusCode.OK

        async def details(self) -> str:
            return ""

        def cancelled(self) -> bool:
            return False

        def done(self) -> bool:
            return True

        def time_remaining(self) -> float | None:
            return None

        def cancel(self) -> bool:
            return False

        def add_done_callback(self, callback: Any) -> None:
            callback(self)

    class UnaryUnary(aio.UnaryUnaryMultiCallable):  # type: ignore[misc]
        def __init__(self, method: str, serializer: Any, deserializer: Any) -> None:
            self._method = method
            self._messages = answers.get(method)
            self._serialize = serializer or (lambda request: request)
            self._deserialize = deserializer or (lambda data: data)

        def __call__(self, request: Any, **kwargs: Any) -> Any:
            if self._messages is None:
                raise NotImplementedError(f"the fake channel does not answer {self._method}")
            self._serialize(request)  # what a real channel does before sending
            return Call(self._messages, self._deserialize)

    class UnaryStream(UnaryUnary, aio.UnaryStreamMultiCallable):  # type: ignore[misc]
        pass

    class Channel(aio.Channel):  # type: ignore[misc]
        def __init__(self) -> None:
            self._unary_unary_interceptors: list[Any] = []  # the GAPIC transport appends one

        def unary_unary(
            self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
            **kwargs: Any,
        ) -> Any:  # fmt: skip
            return UnaryUnary(method, request_serializer, response_deserializer)

        def unary_stream(
            self, method: str, request_serializer: Any = None, response_deserializer: Any = None,
            **kwargs: Any,
        ) -> Any:  # fmt: skip
            return UnaryStream(method, request_serializer, response_deserializer)

        def stream_unary(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        def stream_stream(self, *args: Any, **kwargs: Any) -> Any:
            raise NotImplementedError

        async def __aenter__(self) -> Any:
            return self

        async def __aexit__(self, *exc: Any) -> None:
            return None

        async def close(self, grace: float | None = None) -> None:
            return None

        def get_state(self, try_to_connect: bool = False) -> Any:
            import grpc

            return grpc.ChannelConnectivity.READY

        async def wait_for_state_change(self, last_observed_state: Any) -> None:
            return None

        async def channel_ready(self) -> None:
            return None

    return Channel()
