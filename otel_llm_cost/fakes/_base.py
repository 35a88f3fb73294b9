"""Machinery shared by the fake provider servers (OpenAI, Anthropic, Gemini).

Each fake is a :class:`FakeServer` subclass (lifecycle, addresses, the script queue and the recorded
exchanges) whose :class:`FakeHandler` subclass answers the provider's endpoints over HTTP/1.1
keep-alive, writing JSON bodies with :meth:`FakeHandler._send_body` and streams as chunked bodies
with :meth:`FakeHandler._send_chunked` (so a stream cut by a script's ``cut_after`` is an
incomplete body, as a real network cut would be). The provider modules keep their wire payloads,
error bodies and headers; the helpers here are the pure functions more than one of them needs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, TypeVar

if TYPE_CHECKING:
    from typing import Self

# --------------------------------------------------------------------------------------------
# Payload helpers (pure functions)
# --------------------------------------------------------------------------------------------


def estimate_tokens(text: str) -> int:
    """The deterministic stand-in for a tokenizer: ``len(text) // 4 + 1``."""
    return len(text) // 4 + 1


def collect_text(value: Any, keys: Sequence[str], out: list[str]) -> None:
    """Append every string found in ``value`` (strings, lists, and dicts under ``keys``)."""
    if isinstance(value, str):
        out.append(value)
    elif isinstance(value, list):
        for item in value:
            collect_text(item, keys, out)
    elif isinstance(value, dict):
        for key in keys:
            if key in value:
                collect_text(value[key], keys, out)


def split_text(text: str, chunks: int | None) -> list[str]:
    """Split ``text`` into stream pieces: ``chunks`` near-equal pieces, or one per word.

    Words keep their leading space (``"This", " is", " a"``), like real tokens. Joining the pieces
    always gives ``text`` back.
    """
    if chunks is not None:
        count = max(1, int(chunks))
        size, extra = divmod(len(text), count)
        pieces: list[str] = []
        start = 0
        for i in range(count):
            end = start + size + (1 if i < extra else 0)
            pieces.append(text[start:end])
            start = end
        return pieces
    pieces = []
    current = ""
    for char in text:
        if char.isspace() and current and not current.isspace():
            pieces.append(current)
            current = ""
        current += char
    if current or not pieces:
        pieces.append(current)
    return pieces


def compact_json(payload: Any) -> str:
    """``payload`` as JSON without any white space (the SSE ``data:`` of OpenAI and Anthropic)."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def _resolve_ref(ref: str, root: dict[str, Any]) -> dict[str, Any]:
    node: Any = root
    if not ref.startswith("#"):
        return {}
    for part in ref.lstrip("#").strip("/").split("/"):
        if not part:
            continue
        part = part.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return {}
        node = node[part]
    return node if isinstance(node, dict) else {}


_STRING_FORMATS = {
    "date-time": "1970-01-01T00:00:00Z",
    "date": "1970-01-01",
    "time": "00:00:00",
    "duration": "PT0S",
    "uuid": "00000000-0000-0000-0000-000000000000",
    "email": "user@example.com",
    "uri": "https://example.com/",
    "hostname": "example.com",
    "ipv4": "127.0.0.1",
    "ipv6": "::1",
}


def schema_instance(schema: Any, root: dict[str, Any], depth: int = 0) -> Any:
    """The smallest JSON value that satisfies a (structured-outputs style) JSON schema."""
    if not isinstance(schema, dict) or depth > 32:
        return None
    if "$ref" in schema:
        return schema_instance(_resolve_ref(schema["$ref"], root), root, depth + 1)
    if "const" in schema:
        return schema["const"]
    if schema.get("enum"):
        return schema["enum"][0]
    if "default" in schema:
        return schema["default"]
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            non_null = [o for o in options if not (isinstance(o, dict) and o.get("type") == "null")]
            if len(non_null) < len(options):
                return None
            return schema_instance(options[0], root, depth + 1)
    if isinstance(schema.get("allOf"), list) and schema["allOf"]:
        merged: dict[str, Any] = {}
        for part in schema["allOf"]:
            if isinstance(part, dict):
                merged.update(_resolve_ref(part["$ref"], root) if "$ref" in part else part)
        return schema_instance(merged, root, depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        if "null" in kind:
            return None
        kind = kind[0] if kind else None
    if kind == "object" or (kind is None and "properties" in schema):
        properties = schema.get("properties") or {}
        required = schema.get("required") or []
        return {
            name: schema_instance(properties.get(name, {}), root, depth + 1) for name in required
        }
    if kind == "array":
        count = int(schema.get("minItems") or 0)
        if isinstance(schema.get("prefixItems"), list):
            return [schema_instance(s, root, depth + 1) for s in schema["prefixItems"]]
        return [schema_instance(schema.get("items", {}), root, depth + 1) for _ in range(count)]
    if kind == "string":
        if schema.get("format") in _STRING_FORMATS:
            return _STRING_FORMATS[schema["format"]]
        return "x" * int(schema.get("minLength") or 0)
    if kind == "integer":
        return int(schema.get("minimum", schema.get("exclusiveMinimum", -1) + 1))
    if kind == "number":
        if "minimum" in schema:
            return float(schema["minimum"])
        if "exclusiveMinimum" in schema:
            return float(schema["exclusiveMinimum"]) + 1.0
        return 0.0
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    return {}


def parse_json_object(
    raw: bytes, *, invalid: str, not_object: str
) -> tuple[dict[str, Any], str | None]:
    """A request body as a JSON object: ``(object, None)``, or ``({}, error message)``.

    An empty body is ``({}, None)``. ``invalid`` is the message for a body that is not JSON, with
    ``{exc}`` standing for the parser's complaint; ``not_object`` the one for other JSON values.
    """
    if not raw:
        return {}, None
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        return {}, invalid.format(exc=exc)
    if not isinstance(parsed, dict):
        return {}, not_object
    return parsed, None


#: ``retry-after-ms`` sent with retryable errors (OpenAI and Anthropic). Both SDKs read it before
#: ``retry-after`` and honour any positive value instead of their 0.5-8 s exponential backoff, so
#: retries (only when the client's ``max_retries`` > 0) are immediate. ``x-should-retry`` is not
#: sent: whether to retry stays the client's decision (408, 409, 429 and >= 500 by default).
RETRY_AFTER_MS = "1"


def is_retryable(status: int) -> bool:
    """Whether the SDKs retry this status by default (408, 409, 429, >= 500)."""
    return status in (408, 409, 429) or status >= 500


def retry_headers(status: int) -> dict[str, str]:
    """``{"retry-after-ms": "1"}`` for a retryable status, else no headers."""
    return {"retry-after-ms": RETRY_AFTER_MS} if is_retryable(status) else {}


class BadRequestError(Exception):
    """Raised by an endpoint for a request the API would refuse with 400 and this message."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


# --------------------------------------------------------------------------------------------
# Streams
# --------------------------------------------------------------------------------------------


@dataclass
class Frame:
    """One piece of a chunked stream body: its bytes and the usage it carries (if any)."""

    data: bytes
    usage: dict[str, Any] | None = None


@dataclass
class SSEEvent:
    """One SSE event to write: optional ``event:`` name, ``data:`` text, the usage it carries."""

    data: str
    name: str | None = None
    usage: dict[str, Any] | None = None

    def frame(self) -> Frame:
        text = (f"event: {self.name}\n" if self.name else "") + f"data: {self.data}\n\n"
        return Frame(text.encode(), self.usage)


#: The headers of an SSE stream (OpenAI, Anthropic), before the provider's own.
SSE_HEADERS: tuple[tuple[str, str], ...] = (
    ("Content-Type", "text/event-stream; charset=utf-8"),
    ("Transfer-Encoding", "chunked"),
    ("Cache-Control", "no-cache"),
)


# --------------------------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------------------------


class ScriptLike(Protocol):
    """The script fields the shared machinery reads."""

    status: int | None
    delay: float
    chunk_delay: float
    cut_after: int | None


class ExchangeLike(Protocol):
    """The exchange fields the shared machinery writes."""

    status: int
    usage: dict[str, Any] | None
    events: int


ScriptT = TypeVar("ScriptT", bound=ScriptLike)
ExchangeT = TypeVar("ExchangeT", bound=ExchangeLike)


def error_status(script: ScriptLike) -> int | None:
    """The error status a script answers with (``status`` >= 400), or None for a success."""
    if script.status is not None and script.status >= 400:
        return script.status
    return None


class FakeHTTPServer(ThreadingHTTPServer):
    """The listening socket of a :class:`FakeServer`, answering with its ``_handler_class``."""

    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], fake: FakeServer[Any, Any]) -> None:
        self.fake = fake
        super().__init__(address, fake._handler_class)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Log (instead of printing a traceback) when a connection breaks unexpectedly."""
        self.fake._logger.debug(
            "fake %s: error on connection from %s", self.fake._name, client_address, exc_info=True
        )


class FakeHandler(BaseHTTPRequestHandler):
    """Connection bookkeeping, dispatch, body reading and writers; subclasses answer.

    A subclass implements :meth:`_answer` and :meth:`_send_error`, and may add
    :meth:`_common_headers` (sent with every answer).
    """

    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes, streams in many small ones: without TCP_NODELAY,
    # Nagle's algorithm and the client's delayed ACK add ~40 ms to every answer.
    disable_nagle_algorithm = True
    server: FakeHTTPServer
    #: Whether a stream whose ``cut_after`` is at or beyond its number of frames is still cut
    #: (left without its terminating chunk); otherwise such a stream ends cleanly.
    _cut_complete_streams: ClassVar[bool] = False

    # -- connection bookkeeping -------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass
        finally:
            self.server.fake._track(self.connection, add=False)

    def log_message(self, format: str, *args: Any) -> None:
        self.server.fake._logger.debug(f"fake {self.server.fake._name}: " + format, *args)

    # -- dispatch ---------------------------------------------------------------------------

    def do_POST(self) -> None:
        self._dispatch()

    def do_GET(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def _dispatch(self) -> None:
        try:
            self._answer()
        except OSError:
            # The client (or stop()) closed the connection mid-answer: nothing more to say.
            self.close_connection = True

    def _answer(self) -> None:
        raise NotImplementedError

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            body = b""
            while True:
                size_line = self.rfile.readline()
                size = int(size_line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return body
                body += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _request_headers(self) -> dict[str, str]:
        """The request headers, names lower-cased (for the exchange)."""
        return {k.lower(): v for k, v in self.headers.items()}

    def _take_script(self, exchange: Any) -> Any:
        """The next script, after its ``delay``; None once its error status has been answered."""
        script = self.server.fake._take_script()
        status = error_status(script)
        if status is not None:
            self._send_error(exchange, status)
            return None
        return script

    def _call_route(
        self,
        route: Any,
        exchange: Any,
        request: dict[str, Any],
        json_error: str | None,
    ) -> None:
        """Answer with ``route(self, exchange, script, request)`` and the next script.

        The script's error status, if any, comes first, then a 400 for a body that was not a JSON
        object (``json_error``) or a :class:`BadRequestError` the route raises.
        """
        script = self._take_script(exchange)
        if script is None:
            return
        try:
            if json_error is not None:
                raise BadRequestError(json_error)
            route(self, exchange, script, request)
        except BadRequestError as exc:
            self._send_error(exchange, 400, exc.message)

    # -- writers ----------------------------------------------------------------------------

    def _common_headers(self, status: int) -> None:
        """Headers sent with every answer of this ``status``, after the content headers."""

    def _send_error(self, exchange: Any, status: int, message: str | None = None) -> None:
        raise NotImplementedError

    def _send_body(
        self,
        exchange: ExchangeLike,
        status: int,
        body: bytes,
        content_type: str,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer ``status`` with ``body``, then the common headers and ``headers``."""
        exchange.status = status
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self._common_headers(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _send_chunked(
        self,
        exchange: ExchangeLike,
        script: ScriptLike,
        frames: Sequence[Frame],
        headers: Sequence[tuple[str, str]],
    ) -> None:
        """Answer 200 with ``frames`` as a chunked body; honours ``chunk_delay`` and ``cut_after``.

        ``headers`` come first (they name the content and the chunked encoding), then the common
        ones. Each frame's usage is recorded, and the exchange's ``events`` counted, before it is
        written.
        """
        exchange.status = 200
        self.send_response(200)
        for name, value in headers:
            self.send_header(name, value)
        self._common_headers(200)
        self.end_headers()
        limit = script.cut_after
        for index, frame in enumerate(frames):
            if limit is not None and index >= max(0, limit):
                break
            if index and script.chunk_delay > 0:
                time.sleep(script.chunk_delay)
            if frame.usage is not None:
                exchange.usage = frame.usage
            exchange.events += 1
            self.wfile.write(b"%X\r\n%s\r\n" % (len(frame.data), frame.data))
        if limit is not None and (self._cut_complete_streams or limit < len(frames)):
            # Abrupt end: no terminating zero-length chunk, then FIN. The client sees an incomplete
            # chunked body (httpx: RemoteProtocolError; requests: ChunkedEncodingError).
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(b"0\r\n\r\n")

    def _send_sse(
        self, exchange: ExchangeLike, script: ScriptLike, events: Sequence[SSEEvent]
    ) -> None:
        """Write ``events`` as a chunked ``text/event-stream`` (see :meth:`_send_chunked`)."""
        self._send_chunked(exchange, script, [event.frame() for event in events], SSE_HEADERS)


# --------------------------------------------------------------------------------------------
# Server base
# --------------------------------------------------------------------------------------------


class FakeServer(Generic[ScriptT, ExchangeT]):
    """A fake provider server on a loopback port, driven by a queue of scripts.

    Use as a context manager or call :meth:`start` / :meth:`stop`. A subclass sets ``_name``
    (thread and log names), ``_logger``, ``_handler_class``, ``_script_class`` (its no-argument
    call is what an empty queue answers) and defines ``base_url``.
    """

    _name: ClassVar[str]
    _logger: ClassVar[logging.Logger]
    _handler_class: ClassVar[type[FakeHandler]]
    _script_class: type[ScriptT]

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._host = host
        self._port = port
        self._httpd: FakeHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._scripts: deque[ScriptT] = deque()
        self._connections: set[socket.socket] = set()
        self.exchanges: list[ExchangeT] = []
        """Every request answered, in arrival order (appended under a lock)."""

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> Self:
        """Bind the port(s) and serve in daemon threads; returns ``self``. Idempotent."""
        if self._httpd is not None:
            return self
        httpd = FakeHTTPServer((self._host, self._port), self)
        thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-{self._name}-{httpd.server_address[1]}",
            daemon=True,
        )
        try:
            self._start_more()
        except BaseException:
            httpd.server_close()
            raise
        self._httpd, self._thread = httpd, thread
        thread.start()
        return self

    def _start_more(self) -> None:
        """Start further listeners (before the HTTP thread); a failure frees the HTTP port."""

    def stop(self) -> None:
        """Stop serving, drop open (keep-alive or streaming) connections and calls, and free the
        port(s)."""
        httpd, thread = self._httpd, self._thread
        if httpd is None:
            return
        self._httpd = self._thread = None
        self._stop_more()
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def _stop_more(self) -> None:
        """Stop what :meth:`_start_more` started (before the HTTP listener stops)."""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses --------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound HTTP port (the server must be started)."""
        if self._httpd is None:
            raise RuntimeError(f"{type(self).__name__} is not started")
        return int(self._httpd.server_address[1])

    # -- scripting and records --------------------------------------------------------------

    def enqueue(self, *scripts: ScriptT) -> None:
        """Queue answers for the next requests, FIFO; an empty queue answers the default script
        (e.g. ``Script()``). A request to an unknown path (404) does not use up a script."""
        with self._lock:
            self._scripts.extend(scripts)

    def reset(self) -> None:
        """Forget queued scripts and recorded exchanges."""
        with self._lock:
            self._scripts.clear()
            self.exchanges.clear()

    @property
    def pending(self) -> int:
        """Number of scripts still queued."""
        with self._lock:
            return len(self._scripts)

    def _next_script(self) -> ScriptT:
        with self._lock:
            return self._scripts.popleft() if self._scripts else self._script_class()

    def _take_script(self) -> ScriptT:
        """The next script, after sleeping its ``delay`` (which comes before any answer)."""
        script = self._next_script()
        if script.delay > 0:
            time.sleep(script.delay)
        return script

    def _record(self, exchange: ExchangeT) -> None:
        with self._lock:
            self.exchanges.append(exchange)

    def _track(self, conn: socket.socket, *, add: bool) -> None:
        with self._lock:
            if add:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)
