"""Shared fixtures: in-memory OpenTelemetry providers and an instrumented process."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import otel_llm_cost
from otel_llm_cost.config import Settings
from otel_llm_cost.recorder import Recorder


@dataclass
class Point:
    attributes: dict[str, Any]
    value: float
    count: int | None = None
    sum: float | None = None


class Telemetry:
    """What the instrumentation recorded: finished spans and collected metric points."""

    def __init__(self, exporter: InMemorySpanExporter, reader: InMemoryMetricReader) -> None:
        self.exporter = exporter
        self.reader = reader

    @property
    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def points(self, name: str) -> list[Point]:
        data = self.reader.get_metrics_data()
        found: list[Point] = []
        if data is None:
            return found
        for resource_metrics in data.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    if metric.name != name:
                        continue
                    for dp in metric.data.data_points:
                        if hasattr(dp, "bucket_counts"):
                            found.append(Point(dict(dp.attributes), dp.sum, dp.count, dp.sum))
                        else:
                            found.append(Point(dict(dp.attributes), dp.value))
        return found

    def metric_units(self) -> dict[str, str]:
        data = self.reader.get_metrics_data()
        units: dict[str, str] = {}
        for rm in data.resource_metrics if data else ():
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    units[metric.name] = metric.unit
        return units

    def total(self, name: str, **where: Any) -> float:
        """Sum of a counter (or histogram sums) over the points matching ``where``."""
        total = 0.0
        for point in self.points(name):
            if all(point.attributes.get(k.replace("__", ".")) == v for k, v in where.items()):
                total += point.value
        return total

    def tokens(self, **where: Any) -> dict[str, int]:
        """llm.tokens by llm.token.type."""
        out: dict[str, int] = {}
        for point in self.points("llm.tokens"):
            if all(point.attributes.get(k.replace("__", ".")) == v for k, v in where.items()):
                kind = point.attributes["llm.token.type"]
                out[kind] = out.get(kind, 0) + int(point.value)
        return out

    def requests(self) -> list[Point]:
        return self.points("llm.requests")


def make_recorder(
    settings: Settings | None = None,
) -> tuple[Recorder, InMemorySpanExporter, InMemoryMetricReader]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    recorder = Recorder(
        settings or Settings.from_env(),
        tracer_provider=tracer_provider,
        meter_provider=meter_provider,
    )
    return recorder, exporter, reader


@pytest.fixture
def settings() -> Settings:
    """Override in a test module to instrument with other settings."""
    return Settings.from_env()


@pytest.fixture
def telemetry(settings: Settings) -> Iterator[Telemetry]:
    """Instrument every SDK into fresh in-memory providers; uninstrument afterwards."""
    recorder, exporter, reader = make_recorder(settings)
    otel_llm_cost.instrument(recorder=recorder)
    try:
        yield Telemetry(exporter, reader)
    finally:
        otel_llm_cost.uninstrument()
