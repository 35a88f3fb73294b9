"""Machinery of ``test_stream_matrix``: the streaming entry points, the ways a caller consumes a
stream, the normalized view of what the caller saw, and the probes for open connections.

Nothing here knows about otel_llm_cost: the same drivers run a scenario uninstrumented and
instrumented, and the test compares the two.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import socket
import threading
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
import openai
from google import genai
from google.genai import types as genai_types

from otel_llm_cost.fakes import (
    AnthropicScript,
    FakeAnthropicServer,
    FakeGeminiServer,
    FakeOpenAIServer,
    GeminiScript,
    Script,
)
from otel_llm_cost.fakes import gemini_server as gemini_fake

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import google.generativeai as legacy_genai
    from google.generativeai import client as legacy_client

OPENAI_MODEL = "gpt-4o-mini"
ANTHROPIC_MODEL = "claude-sonnet-4-5-20250929"
GEMINI_MODEL = "gemini-2.5-flash"
MESSAGES = [{"role": "user", "content": "Stream me something."}]
TEXT = "alpha beta gamma delta epsilon zeta eta theta"
PIECES = 4
"""Text pieces per stream (stream chunks of content): small, so a cell is quick."""
GRPC_PIECES = 6
GRPC_CHUNK_DELAY = 0.02
"""gRPC streams are slowed down so that a stream the caller stops early is still running on the
server when the caller stops: only then does "the RPC was cancelled" say anything."""
EARLY = 2
"""Items the caller reads before stopping early (before any usage has arrived)."""
CUT_EARLY = 3
"""Wire events (SSE events, JSON array elements, gRPC messages) before an early server cut."""
SETTLE_TIMEOUT = 3.0
"""Seconds to wait for a connection to be closed (only a leak ever waits that long)."""

BOOM_MESSAGE = "the caller's own bug"

# -- modes ---------------------------------------------------------------------------------------

#: Consumption modes (columns of the matrix).
MODES = {
    "a": "read to the end",
    "b": "break after k items, then close (drop when the API has no close)",
    "c": "close() after k items (async: aclose() if the object has one, else close())",
    "d": "leave a with/async-with block after k items",
    "e": "raise inside the loop at item k",
    "f-cut": "the server cuts the stream (network cut, incomplete body / RST_STREAM)",
    "f-event": "the server sends an error event mid-stream",
    "g": "read k items, abandon the stream without closing it, gc.collect()",
}
FAILING_MODES = ("f-cut", "f-event")
#: Modes in which the caller ends the stream explicitly (close, with-exit, end, error): the
#: call must be recorded at once, not later by the garbage collector.
EXPLICIT_END = ("a", "c", "d", "f-cut", "f-event")


# -- what the caller saw -------------------------------------------------------------------------

#: Keys whose values differ from call to call (ids, timestamps, per-request headers).
VOLATILE = frozenset(
    {
        "id",
        "created",
        "created_at",
        "completed_at",
        "item_id",
        "obfuscation",
        "response_id",
        "request_id",
        "sdk_http_response",
        "create_time",
    }
)


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: scrub(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, (list, tuple)):
        return [scrub(v) for v in value]
    return value


def view(item: Any) -> Any:
    """A normalized, comparable view of one item the caller received."""
    if hasattr(item, "model_dump"):
        return scrub(item.model_dump(mode="json", warnings=False))
    if hasattr(item, "to_dict"):  # legacy google-generativeai response (proto-plus inside)
        return scrub(item.to_dict())
    return scrub(item)


@dataclass
class Outcome:
    """What one scenario did, as the caller saw it."""

    views: list[Any] = field(default_factory=list)
    usage_flags: list[bool] = field(default_factory=list)
    exc_type: type[BaseException] | None = None
    exc_text: str = ""
    exc_status: int | None = None
    """The HTTP status the exception carries, if any (``status_code``, ``code`` or ``status``)."""
    boom_unchanged: bool | None = None
    """Mode e: whether the exception the caller got is the very one it raised."""

    def add(self, entry: Entry, item: Any) -> None:
        self.views.append(view(item))
        self.usage_flags.append(entry.carries_usage(item))

    def failed(self, exc: BaseException, boom: BaseException | None) -> None:
        self.exc_type = type(exc)
        self.exc_text = str(exc)[:200]
        for name in ("status_code", "code", "status"):
            value = getattr(exc, name, None)
            if isinstance(value, int) and not isinstance(value, bool):
                self.exc_status = value
                break
        if boom is not None:
            self.boom_unchanged = exc is boom and exc.args == (BOOM_MESSAGE,)
        # Forget the traceback: its frames would keep the stream alive past the scenario.
        exc.__traceback__ = None

    @property
    def usage_seen(self) -> bool:
        return any(self.usage_flags)

    @property
    def expected_error_type(self) -> str | None:
        """``error.type`` as the contract defines it for the exception the caller got: the HTTP
        status when the provider answered with an error status, else the exception's class."""
        if self.exc_type is None:
            return None
        if self.exc_status is not None and 400 <= self.exc_status <= 599:
            return str(self.exc_status)
        return self.exc_type.__qualname__


# -- the fakes and clients of one scenario -------------------------------------------------------


class RpcTracker:
    """Counts the gRPC streaming calls the fake Gemini server has not finished (server side)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[threading.Event] = []

    def started(self, context: Any) -> None:
        done = threading.Event()
        with self._lock:
            self._calls.append(done)
        if not context.add_callback(done.set):  # already terminated
            done.set()

    def mark(self) -> int:
        with self._lock:
            return len(self._calls)

    def active(self, since: int) -> int:
        with self._lock:
            return sum(not done.is_set() for done in self._calls[since:])

    def install(self, monkeypatch: Any) -> None:
        """Make the fake's StreamGenerateContent report its calls here (before it starts)."""
        original = gemini_fake._GrpcService.stream_generate_content
        tracker = self

        def tracked(service: Any, request: Any, context: Any) -> Iterator[Any]:
            tracker.started(context)
            yield from original(service, request, context)

        monkeypatch.setattr(gemini_fake._GrpcService, "stream_generate_content", tracked)


@dataclass
class Fakes:
    """The fake servers (one of each, shared by the module's cells)."""

    openai: FakeOpenAIServer
    anthropic: FakeAnthropicServer
    gemini: FakeGeminiServer
    grpc: FakeGeminiServer
    rpcs: RpcTracker

    def reset(self) -> None:
        for server in (self.openai, self.anthropic, self.gemini, self.grpc):
            server.reset()


def _no_keepalive() -> httpx2.Limits:
    # A connection the client has finished with is closed at once instead of idling in the pool,
    # so every connection the server still sees open is one the client has not let go of.
    return httpx2.Limits(max_keepalive_connections=0)


class Clients:
    """The SDK clients of one test, made on first use, pointed at the fakes."""

    def __init__(self, fakes: Fakes) -> None:
        self.fakes = fakes
        self._made: dict[str, Any] = {}

    def _get(self, name: str, make: Callable[[], Any]) -> Any:
        if name not in self._made:
            self._made[name] = make()
        return self._made[name]

    @property
    def openai(self) -> openai.OpenAI:
        return self._get(
            "openai",
            lambda: openai.OpenAI(
                base_url=self.fakes.openai.base_url,
                api_key="k",
                max_retries=0,
                http_client=openai.DefaultHttpxClient(limits=_no_keepalive()),
            ),
        )

    @property
    def aopenai(self) -> openai.AsyncOpenAI:
        return self._get(
            "aopenai",
            lambda: openai.AsyncOpenAI(
                base_url=self.fakes.openai.base_url,
                api_key="k",
                max_retries=0,
                http_client=openai.DefaultAsyncHttpxClient(limits=_no_keepalive()),
            ),
        )

    @property
    def anthropic(self) -> anthropic.Anthropic:
        return self._get(
            "anthropic",
            lambda: anthropic.Anthropic(
                base_url=self.fakes.anthropic.base_url,
                api_key="k",
                max_retries=0,
                http_client=anthropic.DefaultHttpxClient(limits=_no_keepalive()),
            ),
        )

    @property
    def aanthropic(self) -> anthropic.AsyncAnthropic:
        return self._get(
            "aanthropic",
            lambda: anthropic.AsyncAnthropic(
                base_url=self.fakes.anthropic.base_url,
                api_key="k",
                max_retries=0,
                http_client=anthropic.DefaultAsyncHttpxClient(limits=_no_keepalive()),
            ),
        )

    @property
    def genai(self) -> genai.Client:
        return self._get(
            "genai",
            lambda: genai.Client(
                api_key="k",
                http_options=genai_types.HttpOptions(
                    base_url=self.fakes.gemini.base_url,
                    client_args={"limits": _no_keepalive()},
                    async_client_args={"limits": _no_keepalive()},
                ),
            ),
        )

    def legacy_model(self, is_async: bool) -> Any:
        """A legacy GenerativeModel: REST for sync, gRPC for async (configured on first use)."""
        name = "legacy_async" if is_async else "legacy"
        if name not in self._made:
            if is_async:
                legacy_genai.configure(
                    api_key="k",
                    transport=gemini_fake.legacy_grpc_transport(),
                    client_options={"api_endpoint": self.fakes.grpc.grpc_target},
                )
            else:
                legacy_genai.configure(
                    api_key="k",
                    transport="rest",
                    client_options={"api_endpoint": self.fakes.gemini.base_url},
                )
            self._made[name] = legacy_genai.GenerativeModel(GEMINI_MODEL)
        return self._made[name]

    def close_idle_legacy_rest(self) -> None:
        """Close the idle pooled connections of the legacy REST session (``requests`` keeps them
        whatever we ask; connections still held by an unfinished response are not idle)."""
        model = self._made.get("legacy")
        transport = getattr(getattr(model, "_client", None), "_transport", None)
        session = getattr(transport, "_session", None)
        if session is not None:
            session.close()

    def close(self) -> None:
        for name in ("openai", "anthropic", "genai"):
            client = self._made.get(name)
            if client is not None:
                client.close()

    async def aclose(self) -> None:
        for name in ("aopenai", "aanthropic"):
            client = self._made.get(name)
            if client is not None:
                await client.close()
        if "genai" in self._made:
            await self._made["genai"].aio.aclose()
        if "legacy_async" in self._made:
            for name, client in legacy_client._client_manager.clients.items():
                if name.endswith("_async"):
                    await client.transport.close()
        self.close()


# -- entry points --------------------------------------------------------------------------------


def _chat_extra(late: bool) -> dict[str, Any]:
    # To stop after the usage chunk, the caller must see it: it asks for usage itself.
    return {"stream_options": {"include_usage": True}} if late else {}


ANTHROPIC_KW: dict[str, Any] = {"model": ANTHROPIC_MODEL, "max_tokens": 64, "messages": MESSAGES}


def _usage_attr(item: Any) -> bool:
    return getattr(item, "usage", None) is not None


def _chat_event_usage(event: Any) -> bool:
    return event.type == "chunk" and event.chunk.usage is not None


def _responses_usage(event: Any) -> bool:
    return getattr(getattr(event, "response", None), "usage", None) is not None


def _anthropic_usage(event: Any) -> bool:
    return event.type == "message_delta"


def _gemini_usage(chunk: Any) -> bool:
    meta = getattr(chunk, "usage_metadata", None)
    return bool(meta is not None and getattr(meta, "total_token_count", None))


@dataclass(frozen=True)
class Entry:
    """One streaming entry point: how to start it (sync and async) and what it offers."""

    id: str
    kind: str
    """Which fake serves it: openai, anthropic, gemini (REST) or, for legacy async, grpc."""
    open_sync: Callable[[Clients, bool], Any]
    open_async: Callable[[Clients, bool], Awaitable[Any]]
    carries_usage: Callable[[Any], bool]
    helper: bool = False
    """The call gives a manager; the stream is what entering it gives."""
    has_close: bool = True
    has_with: bool = True
    aclose_name: str = "close"
    usage_events_from_end: int = 1
    """Wire events after the one carrying the final usage (OpenAI's ``[DONE]``, Anthropic's
    ``message_stop``); used to cut a stream just after its usage went out."""

    def server_kind(self, is_async: bool) -> str:
        return "grpc" if self.kind == "gemini-legacy" and is_async else self.kind


async def _legacy_open_async(clients: Clients, late: bool) -> Any:
    return await clients.legacy_model(True).generate_content_async("hi", stream=True)


async def _genai_open_async(clients: Clients, late: bool) -> Any:
    return await clients.genai.aio.models.generate_content_stream(model=GEMINI_MODEL, contents="hi")


async def _ready(value: Any) -> Any:
    return value


ENTRIES: dict[str, Entry] = {
    e.id: e
    for e in (
        Entry(
            "openai.chat.create",
            "openai",
            lambda c, late: c.openai.chat.completions.create(
                model=OPENAI_MODEL, messages=MESSAGES, stream=True, **_chat_extra(late)
            ),
            lambda c, late: c.aopenai.chat.completions.create(
                model=OPENAI_MODEL, messages=MESSAGES, stream=True, **_chat_extra(late)
            ),
            _usage_attr,
        ),
        Entry(
            "openai.chat.stream",
            "openai",
            lambda c, late: c.openai.chat.completions.stream(
                model=OPENAI_MODEL, messages=MESSAGES, **_chat_extra(late)
            ),
            lambda c, late: _ready(
                c.aopenai.chat.completions.stream(
                    model=OPENAI_MODEL, messages=MESSAGES, **_chat_extra(late)
                )
            ),
            _chat_event_usage,
            helper=True,
        ),
        Entry(
            "openai.responses.create",
            "openai",
            lambda c, late: c.openai.responses.create(model=OPENAI_MODEL, input="hi", stream=True),
            lambda c, late: c.aopenai.responses.create(model=OPENAI_MODEL, input="hi", stream=True),
            _responses_usage,
            usage_events_from_end=0,
        ),
        Entry(
            "openai.responses.stream",
            "openai",
            lambda c, late: c.openai.responses.stream(model=OPENAI_MODEL, input="hi"),
            lambda c, late: _ready(c.aopenai.responses.stream(model=OPENAI_MODEL, input="hi")),
            _responses_usage,
            helper=True,
            usage_events_from_end=0,
        ),
        Entry(
            "anthropic.messages.create",
            "anthropic",
            lambda c, late: c.anthropic.messages.create(**ANTHROPIC_KW, stream=True),
            lambda c, late: c.aanthropic.messages.create(**ANTHROPIC_KW, stream=True),
            _anthropic_usage,
        ),
        Entry(
            "anthropic.messages.stream",
            "anthropic",
            lambda c, late: c.anthropic.messages.stream(**ANTHROPIC_KW),
            lambda c, late: _ready(c.aanthropic.messages.stream(**ANTHROPIC_KW)),
            _anthropic_usage,
            helper=True,
        ),
        Entry(
            "genai.generate_content_stream",
            "gemini",
            lambda c, late: c.genai.models.generate_content_stream(
                model=GEMINI_MODEL, contents="hi"
            ),
            _genai_open_async,
            _gemini_usage,
            has_with=False,
            aclose_name="aclose",
        ),
        Entry(
            "legacy.generate_content",
            "gemini-legacy",
            lambda c, late: c.legacy_model(False).generate_content("hi", stream=True),
            _legacy_open_async,
            _gemini_usage,
            has_close=False,
            has_with=False,
        ),
    )
}


def script_for(entry: Entry, is_async: bool, mode: str, late: bool, wire_events: int) -> Any:
    """The script of a scenario. ``wire_events``: events a complete stream of the same script
    puts on the wire (for a late cut, just after the final usage went out)."""
    kind = entry.server_kind(is_async)
    failing = mode in FAILING_MODES
    if kind in ("openai", "anthropic"):
        fields: dict[str, Any] = {"text": TEXT, "chunks": PIECES}
        if failing:
            at = wire_events - entry.usage_events_from_end if late else CUT_EARLY
            fields["cut_after" if mode == "f-cut" else "error_event_after"] = at
        return Script(**fields) if kind == "openai" else AnthropicScript(**fields)
    pieces = GRPC_PIECES if kind == "grpc" else PIECES
    # Early: usage only in the last chunk (as Vertex sends it), so nothing has arrived when the
    # caller stops early. Late: running totals in every chunk, as the Gemini API sends them.
    gemini: dict[str, Any] = {"text": TEXT, "chunks": pieces, "usage_only_last": not late}
    if kind == "grpc":
        gemini["chunk_delay"] = GRPC_CHUNK_DELAY
    if failing:
        gemini["cut_after"] = pieces - 1 if late else CUT_EARLY - 1
    return GeminiScript(**gemini)


def applicable(entry: Entry, mode: str) -> str | None:
    """None if the cell applies, else why not."""
    if mode == "c" and not entry.has_close:
        return "no close(): the legacy response object has no way to close its stream"
    if mode == "d" and not entry.has_with:
        what = "a generator" if entry.kind == "gemini" else "the legacy response object"
        return f"no with-block: {what} is not a context manager"
    if mode == "f-event" and entry.kind != "anthropic":
        return "only Anthropic's API sends an error event mid-stream"
    return None


# -- drivers -------------------------------------------------------------------------------------


def _iterator(stream: Any) -> Any:
    return stream if hasattr(type(stream), "__next__") else iter(stream)


def _aiterator(stream: Any) -> Any:
    return stream if hasattr(type(stream), "__anext__") else stream.__aiter__()


def run_sync(entry: Entry, clients: Clients, mode: str, k: int, late: bool) -> Outcome:
    """Run one scenario synchronously; every reference to the stream is gone on return."""
    out = Outcome()
    boom = KeyError(BOOM_MESSAGE) if mode == "e" else None
    try:
        _consume_sync(entry, clients, mode, k, late, out, boom)
    except Exception as exc:
        out.failed(exc, boom)
    return out


def _consume_sync(
    entry: Entry,
    clients: Clients,
    mode: str,
    k: int,
    late: bool,
    out: Outcome,
    boom: BaseException | None,
) -> None:
    opened = entry.open_sync(clients, late)

    def enter() -> Any:  # the stream, without a with-block
        return opened.__enter__() if entry.helper else opened

    if mode in ("a", *FAILING_MODES, "d", "e") and (entry.has_with or mode != "d"):
        stop = None if mode in ("a", *FAILING_MODES) else k
        context = opened if entry.has_with else contextlib.nullcontext(opened)
        with context as stream:
            for item in stream:
                out.add(entry, item)
                if len(out.views) == stop:
                    if boom is not None:
                        raise boom
                    break
        return
    stream = enter()
    if mode == "b":
        for item in stream:
            out.add(entry, item)
            if len(out.views) == k:
                break
        if entry.has_close:
            stream.close()
        return
    it = _iterator(stream)
    for _ in range(k):
        out.add(entry, next(it))
    if mode == "c":
        stream.close()
    # mode g: abandoned here, with every reference


async def run_async(entry: Entry, clients: Clients, mode: str, k: int, late: bool) -> Outcome:
    out = Outcome()
    boom = KeyError(BOOM_MESSAGE) if mode == "e" else None
    try:
        await _consume_async(entry, clients, mode, k, late, out, boom)
    except Exception as exc:
        out.failed(exc, boom)
    return out


async def _consume_async(
    entry: Entry,
    clients: Clients,
    mode: str,
    k: int,
    late: bool,
    out: Outcome,
    boom: BaseException | None,
) -> None:
    opened = await entry.open_async(clients, late)

    async def close(stream: Any) -> None:
        await getattr(stream, entry.aclose_name)()

    if mode in ("a", *FAILING_MODES, "d", "e") and (entry.has_with or mode != "d"):
        stop = None if mode in ("a", *FAILING_MODES) else k
        context = opened if entry.has_with else contextlib.nullcontext(opened)
        async with context as stream:
            async for item in stream:
                out.add(entry, item)
                if len(out.views) == stop:
                    if boom is not None:
                        raise boom
                    break
        return
    stream = await opened.__aenter__() if entry.helper else opened
    if mode == "b":
        async for item in stream:
            out.add(entry, item)
            if len(out.views) == k:
                break
        if entry.has_close:
            await close(stream)
        return
    it = _aiterator(stream)
    for _ in range(k):
        out.add(entry, await it.__anext__())
    if mode == "c":
        # As generic code closes an async iterator: aclose() (PEP 525, contextlib.aclosing)
        # when the object has one, else close().
        await (stream.aclose() if hasattr(stream, "aclose") else stream.close())


# -- connection probes ---------------------------------------------------------------------------


def open_connections(server: FakeGeminiServer | FakeOpenAIServer | FakeAnthropicServer) -> int:
    """Connections the fake HTTP server holds open (its handler threads register them)."""
    with server._lock:
        return len(server._connections)


def drop_connections(server: Any) -> None:
    """Shut down whatever a leaking scenario left open, so the next cell starts clean."""
    with server._lock:
        connections = list(server._connections)
    for conn in connections:
        with contextlib.suppress(OSError):
            conn.shutdown(socket.SHUT_RDWR)


@dataclass
class Probe:
    """What "no connection left open" means for one scenario, measured on the server side."""

    fakes: Fakes
    clients: Clients
    kind: str
    rpc_mark: int = 0

    def __post_init__(self) -> None:
        self.rpc_mark = self.fakes.rpcs.mark()

    def server(self) -> Any:
        return {
            "openai": self.fakes.openai,
            "anthropic": self.fakes.anthropic,
            "gemini": self.fakes.gemini,
            "gemini-legacy": self.fakes.gemini,
            "grpc": self.fakes.grpc,
        }[self.kind]

    def left_open(self) -> int:
        if self.kind == "grpc":
            return self.fakes.rpcs.active(self.rpc_mark)
        if self.kind == "gemini-legacy":
            self.clients.close_idle_legacy_rest()
        return open_connections(self.server())

    def settle(self) -> int:
        """Wait (a little) for the connection to be closed; the number still open."""
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while (left := self.left_open()) and time.monotonic() < deadline:
            time.sleep(0.005)
            gc.collect()
        return left

    async def asettle(self) -> int:
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while (left := self.left_open()) and time.monotonic() < deadline:
            await asyncio.sleep(0.005)  # lets async-generator finalizers and tasks run
            gc.collect()
        return left

    def cleanup(self) -> None:
        if self.kind != "grpc":
            drop_connections(self.server())
