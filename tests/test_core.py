"""Shared code that knows no SDK: attribution, usage partition, recorder faults, CLI."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import baggage, context
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

from otel_llm_cost import current_attribution, usage_context
from otel_llm_cost.config import Settings
from otel_llm_cost.recorder import Recorder, error_type_of
from otel_llm_cost.usage import Usage, from_totals

from .conftest import Telemetry, make_recorder

# -- attribution ---------------------------------------------------------------------------


def test_nested_contexts_merge_inner_wins() -> None:
    with usage_context(agent="outer", user="u1"):
        with usage_context(agent="inner", feature="f", tenant="acme"):
            assert dict(current_attribution()) == {
                "gen_ai.agent.name": "inner",
                "user.id": "u1",
                "llm.feature": "f",
                "llm.tenant": "acme",
            }
        assert current_attribution()["gen_ai.agent.name"] == "outer"
    assert dict(current_attribution()) == {}


def test_decorator_sync_and_async() -> None:
    @usage_context(agent="sync-agent")
    def sync() -> str:
        return current_attribution()["gen_ai.agent.name"]

    @usage_context(agent="async-agent")
    async def async_() -> str:
        await asyncio.sleep(0)
        return current_attribution()["gen_ai.agent.name"]

    assert sync() == "sync-agent"
    assert asyncio.run(async_()) == "async-agent"
    assert dict(current_attribution()) == {}


def test_threads_inherit_only_a_copied_context() -> None:
    with usage_context(user="u-7"):
        ctx = contextvars.copy_context()
        with ThreadPoolExecutor(2) as pool:
            copied = pool.submit(ctx.run, lambda: dict(current_attribution())).result()
            plain = pool.submit(lambda: dict(current_attribution())).result()

        async def to_thread() -> dict[str, str]:
            return await asyncio.to_thread(lambda: dict(current_attribution()))

        via_to_thread = asyncio.run(to_thread())
    assert copied == {"user.id": "u-7"}
    assert via_to_thread == {"user.id": "u-7"}
    assert plain == {}


def test_tasks_do_not_leak_into_each_other() -> None:
    async def worker(i: int) -> list[str]:
        seen = []
        with usage_context(session=f"s{i}"):
            for _ in range(5):
                await asyncio.sleep(0)
                seen.append(current_attribution()["session.id"])
        return seen

    async def main() -> list[list[str]]:
        return await asyncio.gather(*(worker(i) for i in range(50)))

    for i, seen in enumerate(asyncio.run(main())):
        assert seen == [f"s{i}"] * 5


def test_baggage_is_honoured_and_explicit_wins() -> None:
    ctx = baggage.set_baggage("gen_ai.agent.name", "from-baggage")
    ctx = baggage.set_baggage("user.id", "bag-user", ctx)
    ctx = baggage.set_baggage("unrelated", "x", ctx)
    token = context.attach(ctx)
    try:
        assert dict(current_attribution()) == {
            "gen_ai.agent.name": "from-baggage",
            "user.id": "bag-user",
        }
        with usage_context(agent="explicit"):
            assert current_attribution()["gen_ai.agent.name"] == "explicit"
            assert current_attribution()["user.id"] == "bag-user"
    finally:
        context.detach(token)


def test_attribute_values_are_length_bounded() -> None:
    with usage_context(user="x" * 10_000):
        assert len(current_attribution()["user.id"]) == 128


# -- usage partition -------------------------------------------------------------------------


def test_from_totals_partitions_and_clamps() -> None:
    usage = from_totals(100, 50, cache_read=30, cache_write=10, reasoning=20)
    assert usage == Usage(input=60, cache_read=30, cache_write=10, output=30, reasoning=20)
    assert usage.input_total == 100 and usage.output_total == 50
    # parts larger than the total, negatives, None and junk never make a negative partition
    bad = from_totals(10, None, cache_read=50, cache_write=-3, reasoning="x")
    assert bad == Usage(input=0, cache_read=10)
    assert all(v >= 0 for v in from_totals(-5, -1, cache_read=-2).as_tuple())


def test_error_type() -> None:
    class StatusError(Exception):
        status_code = 429

    class CodeError(Exception):
        code = 503

    assert error_type_of(StatusError()) == "429"
    assert error_type_of(CodeError()) == "503"
    assert error_type_of(TimeoutError()) == "TimeoutError"


# -- the recorder ----------------------------------------------------------------------------


def test_metrics_do_not_depend_on_sampling() -> None:
    reader = InMemoryMetricReader()
    recorder = Recorder(
        Settings(),
        tracer_provider=TracerProvider(sampler=ALWAYS_OFF),
        meter_provider=MeterProvider(metric_readers=[reader]),
    )
    rec = recorder.start("openai", "chat", "gpt-4o-mini")
    rec.usage = Usage(input=10, output=5)
    recorder.finish(rec)
    recorder.finish(rec)  # exactly once
    telemetry = Telemetry.__new__(Telemetry)
    telemetry.reader = reader
    assert telemetry.tokens() == {"input": 10, "output": 5}
    assert sum(p.value for p in telemetry.requests()) == 1


def test_metric_attributes_opt_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_COST_METRIC_ATTRIBUTES", "user.id, llm.tenant")
    recorder, _, reader = make_recorder(Settings.from_env())
    with usage_context(user="u1", session="s1", tenant="t1", agent="a"):
        rec = recorder.start("openai", "chat", "gpt-4o-mini")
    rec.usage = Usage(input=1)
    recorder.finish(rec)
    (point,) = Telemetry(None, reader).requests()  # type: ignore[arg-type]
    assert point.attributes["user.id"] == "u1"
    assert point.attributes["llm.tenant"] == "t1"
    assert "session.id" not in point.attributes


def test_a_failing_meter_is_logged_once_and_never_raised(caplog: pytest.LogCaptureFixture) -> None:
    recorder, _, _ = make_recorder(Settings())

    class Broken:
        def record(self, *a: Any, **k: Any) -> None:
            raise RuntimeError("meter down")

    recorder.duration = Broken()  # type: ignore[assignment]
    with caplog.at_level(logging.ERROR, logger="otel_llm_cost"):
        for _ in range(3):
            rec = recorder.start("openai", "chat", "gpt-4o-mini")
            rec.usage = Usage(input=1)
            recorder.finish(rec)
    errors = [r for r in caplog.records if "internal error" in r.getMessage()]
    assert len(errors) <= 1  # once per process (an earlier test may have logged it already)


def test_instruments_have_contract_names_units_and_buckets() -> None:
    recorder, _, reader = make_recorder(Settings())
    rec = recorder.start("openai", "chat", "gpt-4o-mini")
    rec.usage = Usage(input=1000, output=100)
    rec.first_chunk = rec.start
    recorder.finish(rec)
    units = Telemetry(None, reader).metric_units()  # type: ignore[arg-type]
    assert units == {
        "llm.cost": "USD",
        "llm.tokens": "{token}",
        "llm.requests": "{request}",
        "llm.request.cost": "USD",
        "gen_ai.client.token.usage": "{token}",
        "gen_ai.client.operation.duration": "s",
        "gen_ai.client.operation.time_to_first_chunk": "s",
    }
    data = reader.get_metrics_data()
    bounds = {
        m.name: tuple(m.data.data_points[0].explicit_bounds)
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if hasattr(m.data.data_points[0], "explicit_bounds")
    }
    assert bounds["llm.request.cost"][0] == 0.00001 and bounds["llm.request.cost"][-1] == 10
    assert bounds["gen_ai.client.token.usage"][-1] == 67108864
    assert bounds["gen_ai.client.operation.duration"][:2] == (0.01, 0.02)


# -- CLI ---------------------------------------------------------------------------------------


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "otel_llm_cost.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_prices_shows_catalog_rates() -> None:
    out = run_cli("prices", "gpt-4o-mini")
    assert out.returncode == 0, out.stderr
    assert "catalog" in out.stdout
    # gpt-4o-mini: $0.15 input, $0.60 output per 1M tokens (OpenAI's list price)
    assert "0.150000" in out.stdout and "0.600000" in out.stdout


def test_cli_prices_check_reports_file_line_field(tmp_path: Path) -> None:
    bad = tmp_path / "prices.yaml"
    bad.write_text(
        "models:\n  - provider: openai\n    model: ft:mine\n    input: cheap\n    output: -1\n"
    )
    out = run_cli("prices", "--check", str(bad))
    assert out.returncode == 1
    assert f"{bad}:4" in out.stderr and "input" in out.stderr
    assert f"{bad}:5" in out.stderr and "output" in out.stderr
    good = tmp_path / "good.json"
    good.write_text(
        '{"models": [{"provider": "openai", "model": "ft:x", "input": 1, "output": 2}]}'
    )
    ok = run_cli("prices", "--check", str(good))
    assert ok.returncode == 0, ok.stderr


def test_cli_prices_override_file(tmp_path: Path) -> None:
    file = tmp_path / "p.yaml"
    file.write_text(
        "models:\n  - provider: openai\n    model: ft:acme\n    input: 1\n    output: 3\n"
    )
    out = run_cli("prices", "ft:acme", "--prices-file", str(file))
    assert out.returncode == 0, out.stderr
    assert "override" in out.stdout and "3.000000" in out.stdout


def test_sdks_are_wrapped_when_imported_not_imported_by_us() -> None:
    """instrument() imports no provider SDK; one the app imports later is wrapped then."""
    code = (
        "import sys, otel_llm_cost\n"
        "otel_llm_cost.instrument()\n"
        "assert not any(m in sys.modules for m in ('anthropic', 'openai', 'google.genai',"
        " 'google.generativeai')), sorted(m for m in sys.modules if 'anthropic' in m)[:3]\n"
        "import wrapt, anthropic\n"
        "from anthropic.resources.messages import Messages\n"
        "wrapped = lambda c: isinstance(c.__dict__['create'], wrapt.FunctionWrapper)\n"
        "assert wrapped(Messages)\n"
        "otel_llm_cost.uninstrument()\n"
        "assert not wrapped(Messages)\n"
        "import openai\n"
        "from openai.resources.chat.completions import Completions\n"
        "assert not wrapped(Completions)  # imported after uninstrument\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr
