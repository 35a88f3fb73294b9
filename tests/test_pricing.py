"""Pricing: the catalog (checked against genai-prices' own ``calc_price``) and the price file."""

from __future__ import annotations

import json
import logging
import textwrap
from datetime import datetime, timezone
from pathlib import Path

import genai_prices
import pytest
from genai_prices import calc_price
from genai_prices.data import providers as catalog_providers

from otel_llm_cost.pricing import (
    PROVIDER_MAP,
    ModelPricer,
    PriceBook,
    PriceFileError,
    Rates,
    load_price_file,
)
from otel_llm_cost.usage import TOKEN_TYPES, Usage

LOGGER = "otel_llm_cost"


def ts(text: str) -> float:
    """Unix time of an ISO timestamp taken as UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()


def genai_total(
    usage: Usage, model: str, provider_id: str | None, when: float | None = None
) -> tuple[float, str, str]:
    """genai-prices' own total for the same usage, and the provider/model it matched."""
    genai_usage = genai_prices.Usage(
        input_tokens=usage.input_total,
        cache_read_tokens=usage.cache_read,
        cache_write_tokens=usage.cache_write,
        cache_write_1h_tokens=usage.cache_write_1h,
        output_tokens=usage.output_total,
        output_reasoning_tokens=usage.reasoning,
    )
    moment = datetime.fromtimestamp(when, tz=timezone.utc) if when is not None else None
    result = calc_price(genai_usage, model, provider_id=provider_id, genai_request_timestamp=moment)
    return float(result.total_price), result.provider.id, result.model.id


@pytest.fixture(scope="module")
def book() -> PriceBook:
    return PriceBook()


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


# --------------------------------------------------------------------------------------------
# The catalog, against genai-prices' calc_price.

NOW = ts("2026-11-21T12:00:00")

CATALOG_CASES = [
    # (gen_ai.provider.name, request model, response model, usage, when)
    ("openai", "gpt-4o-mini", None, Usage(input=1200, cache_read=800, output=300), NOW),
    ("openai", "gpt-4o", None, Usage(input=5000, cache_read=1024, output=700), NOW),
    ("openai", "o3-mini", None, Usage(input=900, cache_read=100, output=200, reasoning=1500), NOW),
    ("openai", "gpt-5", None, Usage(input=3000, cache_read=2000, output=400, reasoning=2600), NOW),
    ("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", Usage(input=10, output=20), NOW),
    (
        "anthropic",
        "claude-sonnet-4-20250514",
        None,
        Usage(input=40, cache_read=12000, cache_write=3000, output=800, cache_write_1h=1000),
        NOW,
    ),
    (
        "anthropic",
        "claude-3-5-haiku-20241022",
        "claude-3-5-haiku-20241022",
        Usage(input=300, cache_read=5000, cache_write=2500, output=450),
        NOW,
    ),
    ("gcp.gemini", "gemini-2.5-flash", None, Usage(input=2000, cache_read=500, output=90), NOW),
    ("gcp.gemini", "models/gemini-2.5-flash", None, Usage(input=7, output=3, reasoning=120), NOW),
    (
        "gcp.vertex_ai",
        "gemini-2.5-pro",
        None,
        Usage(input=150_000, cache_read=49_000, output=10),
        NOW,
    ),
    # 150k + 60k cached > 200k: the tier prices the whole call, cached tokens count.
    (
        "gcp.gemini",
        "gemini-2.5-pro",
        None,
        Usage(input=150_000, cache_read=60_000, output=1000),
        NOW,
    ),
    ("gcp.gen_ai", "gemini-2.5-pro", None, Usage(input=200_000, output=5), NOW),  # == 200k: base
    ("gcp.gen_ai", "gemini-2.5-pro", None, Usage(input=200_001, output=5), NOW),  # > 200k: tier
    ("gcp.vertex_ai", "claude-sonnet-4@20250514", None, Usage(input=100, output=10), NOW),
    (
        "aws.bedrock",
        "us.anthropic.claude-sonnet-4-20250514-v1:0",
        None,
        Usage(input=1, output=2),
        NOW,
    ),
    ("azure.ai.openai", "gpt-4o", None, Usage(input=1000, cache_read=100, output=100), NOW),
    ("mistral_ai", "mistral-large-latest", None, Usage(input=1000, output=100), NOW),
    ("x_ai", "grok-4", None, Usage(input=1000, cache_read=10, output=100, reasoning=50), NOW),
    ("groq", "llama-3.3-70b-versatile", None, Usage(input=1000, output=100), NOW),
    ("cohere", "command-r-plus", None, Usage(input=1000, output=100), NOW),
    ("deepseek", "deepseek-chat", None, Usage(input=1000, cache_read=300, output=100), NOW),
    # Off-peak / peak (time-of-day prices): peak 00:30-16:30 UTC.
    ("deepseek", "deepseek-chat", None, Usage(input=1000, output=100), ts("2026-11-21T20:00:00")),
    ("deepseek", "deepseek-chat", None, Usage(input=1000, output=100), ts("2026-11-21T00:30:00")),
    ("deepseek", "deepseek-chat", None, Usage(input=1000, output=100), ts("2026-11-21T16:30:00")),
    (
        "deepseek",
        "deepseek-chat",
        None,
        Usage(input=1000, output=100),
        ts("2026-11-21T16:29:59.500000"),
    ),
    # Dated + time-of-day prices mixed.
    (
        "deepseek",
        "deepseek-v4-flash",
        None,
        Usage(input=9, cache_read=5, output=7),
        ts("2026-01-01T12:00:00"),
    ),
    (
        "deepseek",
        "deepseek-v4-flash",
        None,
        Usage(input=9, cache_read=5, output=7),
        ts("2026-08-01T02:00:00"),
    ),
    (
        "deepseek",
        "deepseek-v4-flash",
        None,
        Usage(input=9, cache_read=5, output=7),
        ts("2026-08-20T12:00:00"),
    ),
    (
        "deepseek",
        "deepseek-v4-flash",
        None,
        Usage(input=9, cache_read=5, output=7),
        ts("2026-09-15T12:00:00"),
    ),
    (
        "deepseek",
        "deepseek-v4-flash",
        None,
        Usage(input=9, cache_read=5, output=7),
        ts("2026-09-15T07:00:00"),
    ),
    # A price that changed on a date (o3 dropped on 2025-06-10).
    ("openai", "o3", None, Usage(input=1000, output=100, reasoning=900), ts("2025-06-09T23:59:59")),
    ("openai", "o3", None, Usage(input=1000, output=100, reasoning=900), ts("2025-06-10T00:00:00")),
    # Tiered until 2026-03-13, flat after.
    (
        "anthropic",
        "claude-sonnet-4-6",
        None,
        Usage(input=100_000, cache_read=120_000, cache_write=5000, output=100, cache_write_1h=2000),
        ts("2026-03-12T23:59:59"),
    ),
    (
        "anthropic",
        "claude-sonnet-4-6",
        None,
        Usage(input=100_000, cache_read=120_000, cache_write=5000, output=100, cache_write_1h=2000),
        ts("2026-03-13T00:00:00"),
    ),
    # A per-request fee, and a distinct reasoning price.
    ("perplexity", "sonar", None, Usage(input=100, output=300), NOW),
    ("perplexity", "sonar-deep-research", None, Usage(input=100, output=300, reasoning=5000), NOW),
]


@pytest.mark.parametrize(
    ("provider", "request_model", "response_model", "usage", "when"), CATALOG_CASES
)
def test_catalog_matches_genai_prices(
    book: PriceBook,
    provider: str,
    request_model: str,
    response_model: str | None,
    usage: Usage,
    when: float,
) -> None:
    pricer = book.pricer(provider, request_model, response_model)
    assert pricer.status == "catalog"
    costs = pricer.cost(usage, when)
    assert costs is not None and len(costs) == len(TOKEN_TYPES)
    model = (response_model or request_model).removeprefix("models/")
    expected, provider_id, model_id = genai_total(usage, model, PROVIDER_MAP[provider], when)
    assert sum(costs) == pytest.approx(expected, rel=1e-9, abs=1e-15)
    assert pricer.source == f"genai-prices {genai_prices.__version__} ({provider_id}/{model_id})"
    assert pricer.model == model


def test_tier_switches_the_whole_call() -> None:
    pricer = PriceBook().pricer("gcp.gemini", "gemini-2.5-pro")
    base = pricer.rates(200_000)
    tier = pricer.rates(200_001)
    assert base is not None and tier is not None
    assert tier.input > base.input and tier.output > base.output
    below = pricer.cost(Usage(input=200_000, output=1000))
    above = pricer.cost(Usage(input=200_001, output=1000))
    assert below is not None and above is not None
    assert below[3] == pytest.approx(1000 * base.output)
    assert above[3] == pytest.approx(1000 * tier.output)  # output too, at the tier rate


def test_partition_buckets(book: PriceBook) -> None:
    pricer = book.pricer("anthropic", "claude-sonnet-4-20250514")
    usage = Usage(
        input=1000,
        cache_read=2000,
        cache_write=3000,
        output=400,
        reasoning=600,
        cache_write_1h=1000,
    )
    costs = pricer.cost(usage)
    # Independent figures: Anthropic's published Sonnet 4 prices per 1M tokens.
    assert costs == pytest.approx(
        (
            1000 * 3 / 1e6,
            2000 * 0.3 / 1e6,
            2000 * 3.75 / 1e6 + 1000 * 6 / 1e6,
            400 * 15 / 1e6,
            600 * 15 / 1e6,
        ),
        rel=1e-12,
    )


def test_1h_cache_writes_default_to_twice_input_without_a_catalog_price(book: PriceBook) -> None:
    # The catalog has no 1-hour write price for gpt-4o-mini (nor does OpenAI have such writes):
    # the rule is 2x input, and the other 5-minute writes use the cache-write rate.
    rates = book.pricer("openai", "gpt-4o-mini").rates()
    assert rates is not None
    assert rates.cache_write_1h == pytest.approx(2 * rates.input)
    costs = book.pricer("openai", "gpt-4o-mini").cost(Usage(cache_write=300, cache_write_1h=100))
    assert costs is not None
    assert costs[2] == pytest.approx(200 * rates.cache_write + 100 * 2 * rates.input)


def test_per_request_fee_goes_to_input_bucket(book: PriceBook) -> None:
    costs = book.pricer("perplexity", "sonar").cost(Usage())
    assert costs == pytest.approx((12 / 1000, 0, 0, 0, 0))


def test_when_defaults_to_now(monkeypatch: pytest.MonkeyPatch, book: PriceBook) -> None:
    pricer = book.pricer("deepseek", "deepseek-chat")
    usage = Usage(input=1_000_000)
    monkeypatch.setattr("time.time", lambda: ts("2026-11-21T10:00:00"))
    peak = pricer.cost(usage)
    monkeypatch.setattr("time.time", lambda: ts("2026-11-21T22:00:00"))
    off_peak = pricer.cost(usage)
    assert peak == pytest.approx((0.27, 0, 0, 0, 0))
    assert off_peak == pytest.approx((0.135, 0, 0, 0, 0))


def _sweep_models() -> list[tuple[str, str]]:
    wanted = {
        "openai",
        "anthropic",
        "google",
        "deepseek",
        "mistral",
        "x-ai",
        "groq",
        "aws",
        "azure",
    }
    return [(p.id, m.id) for p in catalog_providers if p.id in wanted for m in p.models]


def test_catalog_sweep_matches_genai_prices() -> None:
    """Every model of the main providers, at several dates and sizes, against calc_price."""
    book = PriceBook()
    usages = [
        Usage(input=1234, cache_read=567, cache_write=89, output=321, reasoning=45),
        Usage(input=180_000, cache_read=30_000, output=2000, reasoning=1000),
    ]
    moments = [ts("2025-01-15T03:00:00"), ts("2026-03-20T08:00:00"), NOW]
    compared = 0
    for provider_id, model_id in _sweep_models():
        pricer = book.pricer(provider_id, model_id)
        for usage in usages:
            for when in moments:
                try:
                    expected, _, _ = genai_total(usage, model_id, provider_id, when)
                except (LookupError, ValueError):
                    continue
                costs = pricer.cost(usage, when)
                if costs is None:  # models priced only in other units (characters, seconds)
                    assert expected == 0
                    continue
                assert sum(costs) == pytest.approx(expected, rel=1e-9, abs=1e-15), (
                    provider_id,
                    model_id,
                    usage,
                    when,
                )
                compared += 1
    assert compared > 1000


def test_catalog_never_fetches_and_ignores_a_global_snapshot() -> None:
    from genai_prices import data_snapshot, update_prices

    PriceBook().pricer("openai", "gpt-4o-mini")
    assert update_prices._shared_updater.thread is None  # no background updater started
    empty = data_snapshot.DataSnapshot(providers=[], from_auto_update=True)
    data_snapshot.set_custom_snapshot(empty)
    try:
        pricer = PriceBook().pricer("openai", "gpt-4o")
        assert pricer.status == "catalog"
    finally:
        data_snapshot.set_custom_snapshot(None)


# --------------------------------------------------------------------------------------------
# Unknown models and caching.


def test_unknown_model_is_unpriced_and_warned_once(caplog: pytest.LogCaptureFixture) -> None:
    book = PriceBook()
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        for _ in range(50):
            pricer = book.pricer("openai", "my-own-model-7b")
            assert pricer.status == "unpriced"
            assert pricer.model is None
            assert pricer.cost(Usage(input=10, output=10)) is None
            assert pricer.rates() is None
        book.pricer("openai", "my-own-model-7b", "my-own-model-7b")
    warnings = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "my-own-model-7b" in warnings[0].getMessage()


def test_known_provider_does_not_borrow_other_providers_prices(book: PriceBook) -> None:
    # Groq does not serve gpt-4o: no silent OpenAI price.
    assert book.pricer("groq", "gpt-4o").status == "unpriced"


def test_unknown_provider_falls_back_to_model_matching(book: PriceBook) -> None:
    pricer = book.pricer("ibm.watsonx.ai", "gpt-4o-mini")
    assert pricer.status == "catalog"
    assert "(openai/gpt-4o-mini)" in pricer.source


def test_response_model_unknown_falls_back_to_request_model(book: PriceBook) -> None:
    pricer = book.pricer("openai", "gpt-4o-mini", "gpt-4o-mini-experimental-zzz")
    assert pricer.status == "catalog"
    assert pricer.model == "gpt-4o-mini"


def test_pricer_is_cached(book: PriceBook) -> None:
    assert book.pricer("openai", "gpt-4o", None) is book.pricer("openai", "gpt-4o", None)


def test_rates_are_per_token(book: PriceBook) -> None:
    rates = book.pricer("openai", "gpt-4o-mini").rates()
    assert isinstance(rates, Rates)
    assert rates.input == pytest.approx(0.15 / 1e6)
    assert rates.per_million()["output"] == pytest.approx(0.6)


# --------------------------------------------------------------------------------------------
# The price file: good files.

GOOD_YAML = """
models:
  - provider: openai
    model: gpt-4o-mini
    input: 0.12
    output: 0.48
    cache_read: 0.06
  - provider: openai
    model: ft:gpt-4o-mini:acme::abc123
    input: 0.3
    output: 1.2
  - model: models/my-gemini-tune    # no provider: any provider
    input: 1
    output: 2
    tiers:
      - above_input_tokens: 1000
        input: 10
        output: 20
"""


def test_good_yaml(tmp_path: Path) -> None:
    path = write(tmp_path, "prices.yaml", GOOD_YAML)
    entries = load_price_file(path)
    assert [e.model for e in entries] == [
        "gpt-4o-mini",
        "ft:gpt-4o-mini:acme::abc123",
        "my-gemini-tune",
    ]
    assert entries[0].line == 2 and entries[1].line == 7 and entries[2].line == 11
    assert entries[2].provider is None
    assert entries[2].tiers[0].above_input_tokens == 1000

    book = PriceBook(path)
    assert book.file_errors == []
    pricer = book.pricer("openai", "gpt-4o-mini")
    assert pricer.status == "override"
    assert pricer.source.startswith(f"{path}:2")
    costs = pricer.cost(Usage(input=1_000_000, cache_read=1_000_000, output=1_000_000))
    # cache_write falls back to the catalog, which has no such price for gpt-4o-mini -> unused here.
    assert costs == pytest.approx((0.12, 0.06, 0.0, 0.48, 0.0))


def test_override_for_unknown_fine_tune(tmp_path: Path) -> None:
    book = PriceBook(write(tmp_path, "prices.yaml", GOOD_YAML))
    pricer = book.pricer("openai", "ft:gpt-4o-mini:acme::abc123")
    assert pricer.status == "override"
    assert pricer.source == f"{tmp_path / 'prices.yaml'}:7"
    costs = pricer.cost(Usage(input=1000, cache_read=500, cache_write=10, output=100, reasoning=50))
    # Cache fields not given and unknown to the catalog: 0. Reasoning: the output rate.
    assert costs == pytest.approx((1000 * 0.3e-6, 0.0, 0.0, 100 * 1.2e-6, 50 * 1.2e-6))
    rates = pricer.rates()
    assert rates is not None and rates.cache_write_1h == pytest.approx(2 * 0.3e-6)


def test_override_tiers_apply_to_whole_call_and_count_cached_tokens(tmp_path: Path) -> None:
    book = PriceBook(write(tmp_path, "prices.yaml", GOOD_YAML))
    # Any provider, and the models/ prefix is removed on both sides.
    pricer = book.pricer("gcp.vertex_ai", "models/my-gemini-tune")
    assert pricer.status == "override"
    assert pricer.cost(Usage(input=1000, output=10)) == pytest.approx((1000e-6, 0, 0, 20e-6, 0))
    assert pricer.cost(Usage(input=600, cache_read=401, output=10)) == pytest.approx(
        (600 * 10e-6, 0, 0, 10 * 20e-6, 0)
    )


def test_good_json_with_tabs(tmp_path: Path) -> None:
    doc = {
        "models": [
            {
                "provider": "anthropic",
                "model": "claude-3-5-haiku-20241022",
                "input": 0.5,
                "output": 2.5,
            },
            {
                "provider": "openai",
                "model": "my-ft",
                "input": 1e-1,
                "output": 2e-1,
                "cache_read": 0,
            },
        ]
    }
    path = tmp_path / "prices.json"
    path.write_text(json.dumps(doc, indent="\t"))
    entries = load_price_file(path)
    assert entries[1].input == pytest.approx(0.1) and entries[1].output == pytest.approx(0.2)
    assert entries[0].line == 3 and entries[1].line == 9
    book = PriceBook(path)
    pricer = book.pricer("openai", "my-ft")
    assert pricer.cost(Usage(input=10**6, output=10**6)) == pytest.approx((0.1, 0, 0, 0.2, 0))
    haiku = book.pricer("anthropic", "claude-3-5-haiku-20241022")
    assert haiku.status == "override"


def test_partial_override_falls_back_to_catalog(tmp_path: Path, book: PriceBook) -> None:
    path = write(
        tmp_path,
        "prices.yaml",
        """
        models:
          - provider: anthropic
            model: claude-sonnet-4-20250514
            output: 10
        """,
    )
    usage = Usage(
        input=1000,
        cache_read=20_000,
        cache_write=3000,
        output=500,
        reasoning=100,
        cache_write_1h=1000,
    )
    pricer = PriceBook(path).pricer("anthropic", "claude-sonnet-4-20250514")
    assert pricer.status == "override"
    assert "genai-prices" in pricer.source
    costs = pricer.cost(usage, NOW)
    assert costs is not None
    # Everything but output (and reasoning, which is output) as genai-prices would charge it.
    no_output = Usage(input=1000, cache_read=20_000, cache_write=3000, cache_write_1h=1000)
    expected_input_side, _, _ = genai_total(no_output, "claude-sonnet-4-20250514", "anthropic", NOW)
    assert sum(costs[:3]) == pytest.approx(expected_input_side, rel=1e-9)
    assert costs[3:] == pytest.approx((500 * 10e-6, 100 * 10e-6))


def test_partial_override_keeps_catalog_tiers_and_dates(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prices.yaml",
        """
        models:
          - provider: anthropic
            model: claude-sonnet-4-6
            output: 1
        """,
    )
    pricer = PriceBook(path).pricer("anthropic", "claude-sonnet-4-6")
    usage = Usage(input=250_000)
    before = pricer.cost(usage, ts("2026-03-01T00:00:00"))
    after = pricer.cost(usage, ts("2026-04-01T00:00:00"))
    assert before == pytest.approx((250_000 * 6e-6, 0, 0, 0, 0))  # catalog tier, old price
    assert after == pytest.approx((250_000 * 3e-6, 0, 0, 0, 0))


def test_override_matches_request_or_response_model(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prices.yaml",
        """
        models:
          - provider: openai
            model: gpt-4o-mini
            input: 1
            output: 1
          - model: gpt-4o-mini-2024-07-18
            input: 2
            output: 2
          - provider: openai
            model: gpt-4o-mini-2024-07-18
            input: 3
            output: 3
        """,
    )
    book = PriceBook(path)
    by_request = book.pricer("openai", "gpt-4o-mini", "some-unknown-snapshot")
    assert by_request.status == "override" and by_request.model == "gpt-4o-mini"
    assert by_request.rates() == book.pricer("openai", "gpt-4o-mini").rates()
    # The response model's entry wins; for one model, the provider's entry beats "any provider".
    by_response = book.pricer("openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert by_response.rates().input == pytest.approx(3e-6)
    other_provider = book.pricer("azure.ai.openai", "gpt-4o-mini", "gpt-4o-mini-2024-07-18")
    assert other_provider.rates().input == pytest.approx(2e-6)
    # The file wins over the catalog only where it applies.
    assert book.pricer("azure.ai.openai", "gpt-4o-mini").status == "catalog"


# --------------------------------------------------------------------------------------------
# The price file: problems.


def problems_of(path: Path) -> list[tuple[int | None, str | None, str | None, str]]:
    with pytest.raises(PriceFileError) as caught:
        load_price_file(path)
    return [(p.line, p.entry, p.field, p.message) for p in caught.value.problems]


def test_bad_yaml_syntax_names_the_line(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prices.yaml",
        """
        models:
          - provider: openai
            model: gpt-4o-mini
            input: [0.12
            output: 0.48
        """,
    )
    with pytest.raises(PriceFileError) as caught:
        load_price_file(path)
    (problem,) = caught.value.problems
    assert problem.file == str(path)
    assert problem.line in (4, 5)
    assert "invalid YAML" in problem.message
    assert str(caught.value).startswith(f"{path}:{problem.line}: invalid YAML")


def test_bad_json_syntax_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{\n  "models": [\n    {"model": "x", "input": 1,}\n  ]\n}\n')
    ((line, _, _, message),) = problems_of(path)
    assert line == 3 and "invalid JSON" in message


def test_all_problems_reported_with_lines_and_fields(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "prices.yaml",
        """
        models:
          - provider: openai
            model: gpt-4o-mini
            input: cheap
            output: 0.48
          - provider: openai
            model: gpt-4o
            output: -1
            cache_reads: 0.5
          - provider: openai
            model: my-unknown-fine-tune
            output: 2
          - model: 42
            input: true
            output: 1
          - provider: anthropic
            model: claude-3-5-haiku-20241022
            input: 1
            tiers:
              - above_input_tokens: -5
                input: 2
              - input: 3
              - above_input_tokens: 100
                outptu: 3
          - provider: openai
            model: gpt-4o-mini
            input: 1
            output: 1
        """,
    )
    with pytest.raises(PriceFileError) as caught:
        load_price_file(path)
    found = {(p.line, p.entry, p.field) for p in caught.value.problems}
    assert found == {
        (4, "models[0]", "input"),  # not a number
        (8, "models[1]", "output"),  # negative
        (9, "models[1]", "cache_reads"),  # unknown key
        (10, "models[2]", "input"),  # unknown model, no input
        (13, "models[3]", "model"),  # not a string
        (14, "models[3]", "input"),  # a bool is not a price
        (20, "models[4]", "tiers[0].above_input_tokens"),  # negative threshold
        (22, "models[4]", "tiers[1].above_input_tokens"),  # missing threshold
        (24, "models[4]", "tiers[2].outptu"),  # unknown key in a tier
        (23, "models[4]", "tiers[2]"),  # a tier with no price
        (25, "models[5]", "model"),  # duplicate of models[0]
    }
    text = str(caught.value)
    assert f"{path}:8: models[1].output: must be a number >= 0" in text
    assert "did you mean 'cache_read'?" in text
    assert "first at line 2" in text
    assert len(text.splitlines()) == len(caught.value.problems)


def test_json_problems_have_lines(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text(
        '{"models": [\n'
        '  {"provider": "openai", "model": "gpt-4o", "input": "1"},\n'
        '  {"provider": "openai", "model": "unknown-x",\n'
        '   "output": 1e-3}\n'
        "]}\n"
    )
    found = {(line, entry, field) for line, entry, field, _ in problems_of(path)}
    assert found == {(2, "models[0]", "input"), (3, "models[1]", "input")}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", (None, None, None)),
        ("models: 3\n", (1, None, "models")),
        ("[1, 2]\n", (1, None, None)),
        ("models:\n  - 5\n", (2, "models[0]", None)),
        (
            "models:\n  - model: x\n    input: 1\n    output: 1\n    tiers: {}\n",
            (5, "models[0]", "tiers"),
        ),
        ("models:\n  - input: 1\n    output: 1\n", (2, "models[0]", "model")),
        (
            "models:\n  - model: x\n    input: 1\n    input: 2\n    output: 1\n",
            (4, "models[0]", "input"),
        ),
        (
            "models:\n  - model: x\n    input: 1\n    output: 1\n    tiers:\n"
            "      - above_input_tokens: 10\n        input: 2\n"
            "      - above_input_tokens: 10\n        input: 3\n",
            (8, "models[0]", "tiers[1].above_input_tokens"),
        ),
    ],
)
def test_structural_problems(tmp_path: Path, text: str, expected: tuple) -> None:
    path = tmp_path / "prices.yml"
    path.write_text(text)
    problems = problems_of(path)
    assert [(line, entry, field) for line, entry, field, _ in problems] == [expected]


def test_misspelt_top_level_key(tmp_path: Path) -> None:
    path = tmp_path / "prices.yaml"
    path.write_text("modles: []\n")
    problems = problems_of(path)
    assert [(line, field) for line, _, field, _ in problems] == [(1, "modles"), (1, "models")]
    assert "did you mean 'models'?" in problems[0][3]


def test_missing_file(tmp_path: Path) -> None:
    ((line, _, _, message),) = problems_of(tmp_path / "nope.yaml")
    assert line is None and "cannot read" in message


def test_yaml_numbers_in_exponent_form_are_numbers(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "models:\n  - model: x\n    input: 1e-1\n    output: 2_000\n")
    (entry,) = load_price_file(path)
    assert entry.input == pytest.approx(0.1) and entry.output == 2000


def test_missing_input_ok_when_catalog_knows_model_but_not_without_catalog(tmp_path: Path) -> None:
    path = write(
        tmp_path, "p.yaml", "models:\n  - provider: openai\n    model: gpt-4o\n    output: 1\n"
    )
    assert load_price_file(path)[0].input is None
    with pytest.raises(PriceFileError) as caught:
        load_price_file(path, use_catalog=False)
    assert [(p.line, p.field) for p in caught.value.problems] == [(2, "input")]


def test_price_book_with_bad_file_logs_one_error_and_uses_catalog(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        "prices.yaml",
        """
        models:
          - provider: openai
            model: gpt-4o-mini
            input: 0.1
            output: -0.4
          - provider: openai
            model: other
            colour: blue
        """,
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        book = PriceBook(path)
    errors = [r for r in caplog.records if r.name == LOGGER and r.levelno >= logging.ERROR]
    assert len(errors) == 1
    message = errors[0].getMessage()
    assert f"{path}:5: models[0].output" in message
    assert f"{path}:8: models[1].colour" in message
    assert len(book.file_errors) == 4  # output, colour, and input/output of the unknown model
    pricer = book.pricer("openai", "gpt-4o-mini")
    assert pricer.status == "catalog"
    assert sum(pricer.cost(Usage(input=10, output=10)) or ()) > 0


def test_model_pricer_unpriced_direct() -> None:
    pricer = ModelPricer("unpriced", "openai", None, "no price")
    assert pricer.cost(Usage(input=1)) is None
    assert pricer.rates() is None


def test_json_duplicate_key_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "prices.json"
    path.write_text('{"models": [\n  {"model": "x", "input": 1,\n   "input": 2, "output": 1}\n]}\n')
    assert [(line, field) for line, _, field, _ in problems_of(path)] == [(3, "input")]


def test_without_catalog_only_the_file_prices(tmp_path: Path) -> None:
    path = write(tmp_path, "p.yaml", "models:\n  - model: x\n    input: 1\n    output: 2\n")
    book = PriceBook(path, use_catalog=False)
    assert book.pricer("openai", "x").status == "override"
    assert book.pricer("openai", "gpt-4o-mini").status == "unpriced"


def test_entry_provider_that_is_not_a_semconv_name_is_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = write(
        tmp_path,
        "p.yaml",
        "models:\n  - provider: google\n    model: gemini-2.5-pro\n    output: 1\n",
    )
    with caplog.at_level(logging.WARNING, logger=LOGGER):
        book = PriceBook(path)
    assert any("'google'" in r.getMessage() for r in caplog.records if r.name == LOGGER)
    # It only applies to calls that report exactly that provider name.
    assert book.pricer("gcp.gemini", "gemini-2.5-pro").status == "catalog"
    assert book.pricer("google", "gemini-2.5-pro").status == "override"
