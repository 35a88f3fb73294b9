"""The one shared path from a normalized :class:`CallRecord` to the contract's span and metrics.

Nothing here knows an SDK. Metrics are recorded whether or not the span is sampled.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation, get_meter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider

from . import _log
from .attribution import DEFAULT_METRIC_ATTRIBUTES, current_attribution
from .config import Settings
from .pricing import ModelPricer, PriceBook
from .record import USAGE_ESTIMATED, USAGE_NONE, USAGE_PROVIDER, CallRecord
from .usage import TOKEN_TYPES, Usage
from .version import __version__

SCOPE = "otel_llm_cost"
SCHEMA_URL = "https://opentelemetry.io/schemas/1.37.0"

COST_BUCKETS = (0.00001, 0.00003, 0.0001, 0.0003, 0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10)
TOKEN_BUCKETS = (
    1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
)  # fmt: skip
DURATION_BUCKETS = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
)  # fmt: skip

# Attribute names (semantic conventions and the contract).
PROVIDER = "gen_ai.provider.name"
OPERATION = "gen_ai.operation.name"
REQUEST_MODEL = "gen_ai.request.model"
RESPONSE_MODEL = "gen_ai.response.model"
TOKEN_TYPE = "llm.token.type"
GEN_AI_TOKEN_TYPE = "gen_ai.token.type"
ERROR_TYPE = "error.type"
USAGE_SOURCE = "llm.usage.source"
PRICE_STATUS = "llm.price.status"
COST_USD = "llm.cost.usd"

STATUS_UNPRICED = "unpriced"


class Recorder:
    """Owns the instruments, the tracer and the price book; turns call records into telemetry."""

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        price_book: PriceBook | None = None,
    ) -> None:
        self.settings = settings or Settings.from_env()
        self.price_book = price_book or PriceBook(self.settings.prices_file)
        self.metric_attribute_keys = DEFAULT_METRIC_ATTRIBUTES | self.settings.metric_attributes
        self.tracer: Tracer = trace.get_tracer(
            SCOPE, __version__, tracer_provider, schema_url=SCHEMA_URL
        )
        meter: Meter = get_meter(SCOPE, __version__, meter_provider, schema_url=SCHEMA_URL)
        # The three counters are summed here, per series, under one lock, and reported
        # cumulatively through observable counters at collection time: the per-call cost is a
        # few additions instead of one OpenTelemetry SDK measurement (attribute cleaning and
        # hashing, locks) per point. Same instruments, names, units, attributes and cumulative
        # values. Histograms stay synchronous: a histogram has no asynchronous form, and
        # recording it later would only move the same work elsewhere.
        self._lock = threading.Lock()
        self._series: dict[tuple[Any, ...], _Series] = {}
        self._request_cost_attributes: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.cost = meter.create_observable_counter(
            "llm.cost", callbacks=[self._observe_cost], unit="USD", description="Cost of LLM calls"
        )
        self.tokens = meter.create_observable_counter(
            "llm.tokens",
            callbacks=[self._observe_tokens],
            unit="{token}",
            description="Tokens of LLM calls by llm.token.type",
        )
        self.requests = meter.create_observable_counter(
            "llm.requests",
            callbacks=[self._observe_requests],
            unit="{request}",
            description="LLM calls, by outcome",
        )
        self.request_cost = meter.create_histogram(
            "llm.request.cost",
            unit="USD",
            description="Cost of one LLM call",
            explicit_bucket_boundaries_advisory=COST_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used",
            explicit_bucket_boundaries_advisory=TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response",
            explicit_bucket_boundaries_advisory=DURATION_BUCKETS,
        )

    # -- start -------------------------------------------------------------------------------

    def start(
        self,
        provider: str,
        operation: str,
        request_model: str | None,
        *,
        server_address: str | None = None,
        server_port: int | None = None,
        streaming: bool = False,
    ) -> CallRecord:
        """Begin a call: capture attribution and start time, open the CLIENT span."""
        if not request_model:
            model = "unknown"
        elif request_model.startswith("models/"):
            model = request_model[7:]
        else:
            model = request_model
        context = otel_context.get_current()
        rec = CallRecord(
            provider,
            operation,
            model,
            server_address=server_address,
            server_port=server_port,
            streaming=streaming,
            attribution=current_attribution(context),
        )
        rec.context = context
        rec.capture = self.settings.capture_content
        attributes: dict[str, Any] = {
            OPERATION: operation,
            PROVIDER: provider,
            REQUEST_MODEL: model,
        }
        if server_address:
            attributes["server.address"] = server_address
        if server_port:
            attributes["server.port"] = server_port
        attributes.update(rec.attribution)
        rec.span = self.tracer.start_span(
            f"{operation} {model}", context, SpanKind.CLIENT, attributes
        )
        return rec

    # -- finish ------------------------------------------------------------------------------

    def fail(self, rec: CallRecord, exc: BaseException) -> None:
        """Finalize a call that raised."""
        if rec.error_type is None:
            rec.error_type = error_type_of(exc)
        self.finish(rec)

    def finish(self, rec: CallRecord) -> None:
        """Finalize a call exactly once: price it, end its span, record its metrics."""
        if rec.done:
            return
        rec.done = True
        try:
            self._finish(rec)
        except Exception as exc:  # never raise into the caller
            _log.internal_error("recorder.finish", exc)
            try:
                if rec.span is not None and rec.span.is_recording():
                    rec.span.end()
            except Exception:
                pass

    def _finish(self, rec: CallRecord) -> None:
        end = time.perf_counter()
        usage = rec.usage
        if usage is not None:
            source = USAGE_PROVIDER
        else:
            source = USAGE_NONE
            if rec.estimator is not None and self.settings.estimate_tokens:
                try:
                    usage = rec.estimator()
                except Exception as exc:
                    _log.internal_error("token estimation", exc)
                    usage = None
                if usage is not None:
                    source = USAGE_ESTIMATED
                    rec.usage = usage
        response_model = rec.response_model
        if response_model is not None and response_model.startswith("models/"):
            rec.response_model = response_model = response_model[7:]

        attribution = rec.attribution
        promoted = (
            tuple([item for item in attribution.items() if item[0] in self.metric_attribute_keys])
            if attribution
            else ()
        )
        key = (rec.provider, rec.operation, rec.request_model, response_model, promoted)
        series = self._series.get(key)
        if series is None:
            series = self._new_series(key)

        costs: tuple[float, ...] | None = None
        price_status = series.price_status
        if usage is not None and series.pricer is not None:
            try:
                costs = series.pricer.cost(usage, rec.start_time_ns / 1e9)
            except Exception as exc:
                _log.internal_error("pricing", exc)
            if costs is None:
                price_status = STATUS_UNPRICED
        total_cost = sum(costs) if costs is not None else None

        # Span and metrics fail independently: a broken tracer never costs the metrics.
        try:
            self._end_span(rec, usage, source, price_status, total_cost, end)
        except Exception as exc:
            _log.internal_error("recorder span", exc)
            try:
                rec.span.end()  # an unended span would be kept by span processors
            except Exception:
                pass

        error = rec.error_type
        outcome = (source, price_status, error)
        with self._lock:
            entry = series.requests.get(outcome)
            if entry is None:
                series.requests[outcome] = [1, series.outcome_attributes(outcome)]
            else:
                entry[0] += 1
            if usage is not None:
                tokens = series.tokens
                tokens[0] += usage.input
                tokens[1] += usage.cache_read
                tokens[2] += usage.cache_write
                tokens[3] += usage.output
                tokens[4] += usage.reasoning
                if costs is not None:
                    sums = series.costs
                    sums[0] += costs[0]
                    sums[1] += costs[1]
                    sums[2] += costs[2]
                    sums[3] += costs[3]
                    sums[4] += costs[4]
            timing = series.base if error is None else series.timing_attributes(error)

        # With the call's context (exemplars refer to the caller's span, as if recorded inline).
        context = rec.context
        self.duration.record(end - rec.start, timing, context)
        if rec.first_chunk is not None:
            self.time_to_first_chunk.record(rec.first_chunk - rec.start, series.base, context)
        if usage is None:
            return
        self.token_usage.record(
            usage.input + usage.cache_read + usage.cache_write, series.usage_in, context
        )
        self.token_usage.record(usage.output + usage.reasoning, series.usage_out, context)
        if total_cost is not None:
            self.request_cost.record(total_cost, series.per_request, context)

    def _new_series(self, key: tuple[Any, ...]) -> _Series:
        """The series of a call's metric attributes, built once (pricer included)."""
        provider, operation, request_model, response_model, _ = key
        try:
            pricer: ModelPricer | None = self.price_book.pricer(
                provider, request_model, response_model
            )
        except Exception as exc:
            _log.internal_error("pricing", exc)
            pricer = None
        with self._lock:
            series = self._series.get(key)
            if series is None:
                per_request_key = (provider, operation, request_model)
                per_request = self._request_cost_attributes.get(per_request_key)
                if per_request is None:
                    per_request = self._request_cost_attributes[per_request_key] = {
                        PROVIDER: provider,
                        OPERATION: operation,
                        REQUEST_MODEL: request_model,
                    }
                series = self._series[key] = _Series(key, pricer, per_request)
            return series

    def _observe_cost(self, options: CallbackOptions) -> list[Observation]:
        return self._observe_by_token_type("costs")

    def _observe_tokens(self, options: CallbackOptions) -> list[Observation]:
        return self._observe_by_token_type("tokens")

    def _observe_by_token_type(self, sums: str) -> list[Observation]:
        with self._lock:
            return [
                Observation(value, attributes)
                for series in self._series.values()
                for value, attributes in zip(getattr(series, sums), series.token_types, strict=True)
                if value > 0
            ]

    def _observe_requests(self, options: CallbackOptions) -> list[Observation]:
        with self._lock:
            return [
                Observation(entry[0], entry[1])
                for series in self._series.values()
                for entry in series.requests.values()
            ]

    def _end_span(
        self,
        rec: CallRecord,
        usage: Usage | None,
        source: str,
        price_status: str,
        total_cost: float | None,
        end: float,
    ) -> None:
        span = rec.span
        if span is None:
            return
        if span.is_recording():
            attributes: dict[str, Any] = {USAGE_SOURCE: source, PRICE_STATUS: price_status}
            if rec.response_model:
                attributes[RESPONSE_MODEL] = rec.response_model
            if rec.response_id:
                attributes["gen_ai.response.id"] = rec.response_id
            if rec.finish_reasons:
                attributes["gen_ai.response.finish_reasons"] = rec.finish_reasons
            if usage is not None:
                attributes["gen_ai.usage.input_tokens"] = (
                    usage.input + usage.cache_read + usage.cache_write
                )
                attributes["gen_ai.usage.output_tokens"] = usage.output + usage.reasoning
                attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read
                attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write
                attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning
            if total_cost is not None:
                attributes[COST_USD] = total_cost
            if rec.error_type:
                attributes[ERROR_TYPE] = rec.error_type
                span.set_status(Status(StatusCode.ERROR))
            if rec.capture:
                _add_content(attributes, rec)
            span.set_attributes(attributes)
        # End time consistent with the duration metric (perf_counter based).
        span.end(end_time=rec.start_time_ns + int((end - rec.start) * 1e9))


class _Series:
    """One set of common metric attributes (provider, operation, models, promoted
    attribution): its pricer, its running sums and the attribute dicts of its points, each
    built once and reused (the OpenTelemetry SDK copies what it keeps)."""

    __slots__ = (
        "base",
        "costs",
        "per_request",
        "price_status",
        "pricer",
        "requests",
        "timing",
        "token_types",
        "tokens",
        "usage_in",
        "usage_out",
    )

    def __init__(
        self, key: tuple[Any, ...], pricer: ModelPricer | None, per_request: dict[str, Any]
    ) -> None:
        provider, operation, request_model, response_model, promoted = key
        base: dict[str, Any] = {
            PROVIDER: provider,
            OPERATION: operation,
            REQUEST_MODEL: request_model,
        }
        if response_model:
            base[RESPONSE_MODEL] = response_model
        base.update(promoted)
        self.base = base
        if pricer is None:
            self.pricer, self.price_status = None, STATUS_UNPRICED
        elif pricer.status == STATUS_UNPRICED:
            self.pricer, self.price_status = None, pricer.status
        else:
            self.pricer, self.price_status = pricer, pricer.status
        self.per_request = per_request
        self.token_types = tuple({**base, TOKEN_TYPE: kind} for kind in TOKEN_TYPES)
        self.usage_in = {**base, GEN_AI_TOKEN_TYPE: "input"}
        self.usage_out = {**base, GEN_AI_TOKEN_TYPE: "output"}
        self.tokens = [0] * len(TOKEN_TYPES)
        self.costs = [0.0] * len(TOKEN_TYPES)
        #: ``(llm.usage.source, llm.price.status, error.type)`` -> ``[count, attributes]``
        self.requests: dict[tuple[str, str, str | None], list[Any]] = {}
        self.timing: dict[str, dict[str, Any]] = {}

    def outcome_attributes(self, outcome: tuple[str, str, str | None]) -> dict[str, Any]:
        source, status, error = outcome
        attributes = {**self.base, USAGE_SOURCE: source, PRICE_STATUS: status}
        if error:
            attributes[ERROR_TYPE] = error
        return attributes

    def timing_attributes(self, error: str) -> dict[str, Any]:
        attributes = self.timing.get(error)
        if attributes is None:
            attributes = self.timing[error] = {**self.base, ERROR_TYPE: error}
        return attributes


#: Longest message content kept on a span attribute (opt-in capture), in characters.
MAX_CONTENT_CHARS = 32_768


def _add_content(attributes: dict[str, Any], rec: CallRecord) -> None:
    """Opt-in message content (OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT=true)."""
    if rec.prompt is not None:
        text = json.dumps(rec.prompt, default=str, ensure_ascii=False)
        attributes["gen_ai.input.messages"] = text[:MAX_CONTENT_CHARS]
    if rec.completion:
        output = [{"role": "assistant", "parts": [{"type": "text", "content": rec.completion}]}]
        text = json.dumps(output, ensure_ascii=False)
        attributes["gen_ai.output.messages"] = text[:MAX_CONTENT_CHARS]


def error_type_of(exc: BaseException) -> str:
    """``error.type`` of an exception: the HTTP error status if the provider answered with one,
    else the class name (an error event inside a 200 stream is not "200")."""
    for attr in ("status_code", "code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 400 <= value <= 599:
            return str(value)
    return type(exc).__qualname__
