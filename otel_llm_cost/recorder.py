"""The one shared path from a normalized :class:`CallRecord` to the contract's span and metrics.

Nothing here knows an SDK. Metrics are recorded whether or not the span is sampled.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from opentelemetry import trace
from opentelemetry.metrics import CallbackOptions, Meter, MeterProvider, Observation, get_meter
from opentelemetry.trace import SpanKind, Status, StatusCode, Tracer, TracerProvider

from . import _log
from .attribution import DEFAULT_METRIC_ATTRIBUTES, current_attribution
from .config import Settings
from .pricing import PriceBook
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


def _strip_models_prefix(model: str) -> str:
    return model[7:] if model.startswith("models/") else model


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
        # The three counters are summed here, under one lock, and reported cumulatively through
        # observable counters at collection time: the per-call cost is a few dict updates
        # instead of one OpenTelemetry SDK measurement (attribute cleaning and hashing, locks)
        # per point. Same instruments, names, units, attributes and cumulative values.
        self._lock = threading.Lock()
        self._cost_sums: dict[Any, list[Any]] = {}
        self._token_sums: dict[Any, list[Any]] = {}
        self._request_sums: dict[Any, list[Any]] = {}
        self._attributes: dict[Any, dict[str, Any]] = {}
        self.cost = meter.create_observable_counter(
            "llm.cost",
            callbacks=[self._observer(self._cost_sums)],
            unit="USD",
            description="Cost of LLM calls",
        )
        self.tokens = meter.create_observable_counter(
            "llm.tokens",
            callbacks=[self._observer(self._token_sums)],
            unit="{token}",
            description="Tokens of LLM calls by llm.token.type",
        )
        self.requests = meter.create_observable_counter(
            "llm.requests",
            callbacks=[self._observer(self._request_sums)],
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
        model = _strip_models_prefix(request_model) if request_model else "unknown"
        rec = CallRecord(
            provider,
            operation,
            model,
            server_address=server_address,
            server_port=server_port,
            streaming=streaming,
            attribution=current_attribution(),
        )
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
            f"{operation} {model}", kind=SpanKind.CLIENT, attributes=attributes
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
        if rec.response_model:
            rec.response_model = _strip_models_prefix(rec.response_model)

        price_status, costs = self._price(rec, usage)
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
        self._record_metrics(rec, usage, costs, total_cost, source, price_status, end)

    def _price(self, rec: CallRecord, usage: Usage | None) -> tuple[str, tuple[float, ...] | None]:
        """(``llm.price.status``, cost per token type); a pricing fault counts as unpriced."""
        try:
            pricer = self.price_book.pricer(rec.provider, rec.request_model, rec.response_model)
            if usage is None or pricer.status == STATUS_UNPRICED:
                return pricer.status, None
            costs = pricer.cost(usage, rec.start_time_ns / 1e9)
        except Exception as exc:
            _log.internal_error("pricing", exc)
            return STATUS_UNPRICED, None
        if costs is None:
            return STATUS_UNPRICED, None
        return pricer.status, costs

    def _observer(
        self, sums: dict[Any, list[Any]]
    ) -> Callable[[CallbackOptions], list[Observation]]:
        lock = self._lock

        def observe(options: CallbackOptions) -> list[Observation]:
            with lock:
                points = [(entry[0], entry[1]) for entry in sums.values()]
            return [Observation(value, attributes) for value, attributes in points]

        return observe

    def _metric_key(self, rec: CallRecord) -> tuple[Any, ...]:
        """The identity of a call's common metric attributes, cheap to build and hash."""
        attribution = rec.attribution
        if attribution:
            keys = self.metric_attribute_keys
            promoted = tuple(item for item in attribution.items() if item[0] in keys)
        else:
            promoted = ()
        return (rec.provider, rec.operation, rec.request_model, rec.response_model, promoted)

    def _attrs(
        self, key: tuple[Any, ...], kind: Any, extra: tuple[tuple[str, Any], ...]
    ) -> dict[str, Any]:
        """The attribute dict of ``key`` + ``extra``, built once per series and then reused."""
        cache_key = (key, kind)
        attributes = self._attributes.get(cache_key)
        if attributes is None:
            provider, operation, request_model, response_model, promoted = key
            attributes = {PROVIDER: provider, OPERATION: operation, REQUEST_MODEL: request_model}
            if response_model:
                attributes[RESPONSE_MODEL] = response_model
            attributes.update(promoted)
            attributes.update(extra)
            self._attributes[cache_key] = attributes
        return attributes

    def _record_metrics(
        self,
        rec: CallRecord,
        usage: Usage | None,
        costs: tuple[float, ...] | None,
        total_cost: float | None,
        source: str,
        price_status: str,
        end: float,
    ) -> None:
        key = self._metric_key(rec)
        error = rec.error_type
        outcome_extra: tuple[tuple[str, Any], ...] = (
            (USAGE_SOURCE, source),
            (PRICE_STATUS, price_status),
        )
        if error:
            outcome_extra += ((ERROR_TYPE, error),)
        with self._lock:
            attrs = self._attrs(key, outcome_extra, outcome_extra)
            entry = self._request_sums.get(outcome_extra + key)
            if entry is None:
                self._request_sums[outcome_extra + key] = [1, attrs]
            else:
                entry[0] += 1
            if usage is not None:
                for index, count in enumerate(usage.as_tuple()):
                    if count <= 0:
                        continue
                    attrs = self._attrs(key, index, ((TOKEN_TYPE, TOKEN_TYPES[index]),))
                    series = (index, key)
                    entry = self._token_sums.get(series)
                    if entry is None:
                        self._token_sums[series] = [count, attrs]
                    else:
                        entry[0] += count
                    if costs is not None and costs[index] > 0:
                        entry = self._cost_sums.get(series)
                        if entry is None:
                            self._cost_sums[series] = [costs[index], attrs]
                        else:
                            entry[0] += costs[index]
            timing = self._attrs(key, ("timing", error), ((ERROR_TYPE, error),) if error else ())
            if rec.first_chunk is not None:
                first = self._attrs(key, ("timing", None), ())
            if usage is not None:
                usage_in = self._attrs(key, "in", ((GEN_AI_TOKEN_TYPE, "input"),))
                usage_out = self._attrs(key, "out", ((GEN_AI_TOKEN_TYPE, "output"),))
            if total_cost is not None:
                per_request = self._attrs(
                    (rec.provider, rec.operation, rec.request_model, None, ()), "request", ()
                )

        self.duration.record(end - rec.start, timing)
        if rec.first_chunk is not None:
            self.time_to_first_chunk.record(rec.first_chunk - rec.start, first)
        if usage is None:
            return
        self.token_usage.record(usage.input_total, usage_in)
        self.token_usage.record(usage.output_total, usage_out)
        if total_cost is not None:
            self.request_cost.record(total_cost, per_request)

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
                attributes["gen_ai.usage.input_tokens"] = usage.input_total
                attributes["gen_ai.usage.output_tokens"] = usage.output_total
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
