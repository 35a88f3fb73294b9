"""The normalized record of one LLM call: what provider modules fill in and the recorder reads."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from .usage import Usage

USAGE_PROVIDER = "provider"
USAGE_ESTIMATED = "estimated"
USAGE_NONE = "none"


class CallRecord:
    """One logical SDK call (retries inside the SDK included), from start to finalization.

    Provider modules set the request fields at start and the response fields (usage,
    response model, id, finish reasons) when the answer arrives; shared code does the rest.
    """

    __slots__ = (
        "asynchronous",
        "attribution",
        "capture",
        "completion",
        "context",
        "done",
        "error_type",
        "estimator",
        "finish_reasons",
        "first_chunk",
        "operation",
        "prompt",
        "provider",
        "request_model",
        "response_id",
        "response_model",
        "server_address",
        "server_port",
        "span",
        "start",
        "start_time_ns",
        "streaming",
        "usage",
    )

    def __init__(
        self,
        provider: str,
        operation: str,
        request_model: str,
        *,
        server_address: str | None = None,
        server_port: int | None = None,
        streaming: bool = False,
        attribution: Mapping[str, str],
    ) -> None:
        self.provider = provider
        self.operation = operation
        self.request_model = request_model
        self.response_model: str | None = None
        self.server_address = server_address
        self.server_port = server_port
        self.streaming = streaming
        #: Made through an ``async`` SDK method (its stream, if any, is iterated with async for).
        self.asynchronous = False
        self.attribution = attribution
        self.start_time_ns = time.time_ns()
        self.start = time.perf_counter()
        self.first_chunk: float | None = None
        self.usage: Usage | None = None
        self.error_type: str | None = None
        self.finish_reasons: list[str] | None = None
        self.response_id: str | None = None
        #: Called at finalization, only when the provider reported no usage, to count locally.
        self.estimator: Callable[[], Usage | None] | None = None
        self.span: Any = None
        #: The OpenTelemetry context the call was made in (parent of its span).
        self.context: Any = None
        self.done = False
        #: Whether message content may be recorded (opt-in); then providers fill these two.
        self.capture = False
        self.prompt: Any = None
        self.completion: str | None = None
