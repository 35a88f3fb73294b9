"""Per-call pricing cost.

Run: ``python -m pytest bench/bench_pricing.py --benchmark-only``. The file name does not
match pytest's ``test_*.py`` pattern and ``testpaths`` is ``tests``, so a plain ``pytest`` or
``pytest tests`` never collects it.
"""

from __future__ import annotations

from datetime import datetime, timezone

import genai_prices
import pytest

from otel_llm_cost.pricing import PriceBook
from otel_llm_cost.usage import Usage

WHEN = datetime(2026, 11, 21, 12, tzinfo=timezone.utc).timestamp()


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def test_cost_flat_gpt_4o_mini(benchmark, book: PriceBook) -> None:
    pricer = book.pricer("openai", "gpt-4o-mini")
    usage = Usage(input=1200, cache_read=800, output=300, reasoning=20)
    result = benchmark(pricer.cost, usage, WHEN)
    assert result is not None


def test_cost_tiered_gemini_2_5_pro(benchmark, book: PriceBook) -> None:
    pricer = book.pricer("gcp.gemini", "gemini-2.5-pro")
    usage = Usage(input=150_000, cache_read=60_000, output=1000, reasoning=500)
    result = benchmark(pricer.cost, usage, WHEN)
    assert result is not None


def test_cost_time_of_day_deepseek_chat(benchmark, book: PriceBook) -> None:
    pricer = book.pricer("deepseek", "deepseek-chat")
    usage = Usage(input=1000, cache_read=300, output=100)
    result = benchmark(pricer.cost, usage)  # when=None: reads the clock
    assert result is not None


def test_pricer_cache_hit(benchmark, book: PriceBook) -> None:
    book.pricer("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    result = benchmark(book.pricer, "openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert result.status == "catalog"


def test_pricer_hit_and_cost(benchmark, book: PriceBook) -> None:
    """What the recorder does per call: look the pricer up, then price."""
    usage = Usage(input=1200, cache_read=800, output=300)

    def per_call() -> tuple[float, ...] | None:
        return book.pricer("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18").cost(usage, WHEN)

    assert benchmark(per_call) is not None


def test_genai_prices_calc_price_gpt_4o_mini(benchmark) -> None:
    usage = genai_prices.Usage(input_tokens=2000, cache_read_tokens=800, output_tokens=320)
    moment = datetime.fromtimestamp(WHEN, tz=timezone.utc)
    result = benchmark(
        genai_prices.calc_price,
        usage,
        "gpt-4o-mini",
        provider_id="openai",
        genai_request_timestamp=moment,
    )
    assert result.total_price > 0


def test_genai_prices_calc_price_gemini_2_5_pro(benchmark) -> None:
    usage = genai_prices.Usage(input_tokens=210_000, cache_read_tokens=60_000, output_tokens=1500)
    moment = datetime.fromtimestamp(WHEN, tz=timezone.utc)
    result = benchmark(
        genai_prices.calc_price,
        usage,
        "gemini-2.5-pro",
        provider_id="google",
        genai_request_timestamp=moment,
    )
    assert result.total_price > 0
