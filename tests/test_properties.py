"""Property tests: every provider's usage translation, the stream accumulators, and pricing.

For any usage shape an SDK may hand us (fields missing, None, negative, absurd, parts larger
than their totals) the token partition is made of non-negative ints. When the provider's numbers
are consistent (defined per provider below) the partition also adds up to the provider's own
totals, part by part. Pricing a catalog model never gives NaN, infinity or a negative cost, and
its total equals genai-prices' own ``calc_price`` total.
"""

from __future__ import annotations

import math
from datetime import datetime, timezone
from types import SimpleNamespace
from typing import Any

import genai_prices
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from otel_llm_cost.pricing import PriceBook
from otel_llm_cost.pricing._catalog import PROVIDER_MAP
from otel_llm_cost.providers._gemini import GeminiAccumulator, gemini_usage
from otel_llm_cost.providers.anthropic import MessageAccumulator, anthropic_usage, message_usage
from otel_llm_cost.providers.openai import chat_usage, embeddings_usage, responses_usage
from otel_llm_cost.record import CallRecord
from otel_llm_cost.usage import MAX_TOKENS, Usage

#: Moderate example counts (the whole module runs in a few seconds); no example database is
#: written into the working tree.
FAST = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
PRICING = settings(max_examples=30, deadline=None, database=None)


def ns(**fields: Any) -> SimpleNamespace:
    return SimpleNamespace(**fields)


def check_partition(usage: Usage) -> None:
    """Every field a non-negative int; the 1-hour writes are part of the cache writes."""
    for name in ("input", "cache_read", "cache_write", "output", "reasoning", "cache_write_1h"):
        value = getattr(usage, name)
        assert type(value) is int, (name, value)
        assert value >= 0, (name, value)
    assert usage.cache_write_1h <= usage.cache_write
    assert sum(usage.as_tuple()) == usage.input_total + usage.output_total


# Anything an SDK field could hold: missing counts, negatives, absurd sizes, other types.
junk = st.one_of(
    st.none(),
    st.integers(min_value=-(10**12), max_value=10**15),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["12", "x", "", True, False]),
)
tokens = st.integers(min_value=0, max_value=10**11)


def maybe(value: Any, present: bool) -> Any:
    return value if present else None


# -- OpenAI ------------------------------------------------------------------------------------


@st.composite
def openai_chat_shapes(draw: st.DrawFn) -> SimpleNamespace:
    fields: dict[str, Any] = {}
    for name in ("prompt_tokens", "completion_tokens", "prompt_cache_hit_tokens"):
        if draw(st.booleans()):
            fields[name] = draw(junk)
    if draw(st.booleans()):
        fields["prompt_tokens_details"] = draw(
            st.one_of(
                st.none(), st.builds(ns, cached_tokens=junk, cache_write_tokens=junk), st.just(ns())
            )
        )
    if draw(st.booleans()):
        fields["completion_tokens_details"] = draw(
            st.one_of(st.none(), st.builds(ns, reasoning_tokens=junk))
        )
    return ns(**fields)


@FAST
@given(openai_chat_shapes())
def test_openai_chat_usage_never_negative(usage: SimpleNamespace) -> None:
    check_partition(chat_usage(usage))


@FAST
@given(
    prompt=tokens,
    completion=tokens,
    data=st.data(),
    deepseek=st.booleans(),
)
def test_openai_chat_usage_consistent(
    prompt: int, completion: int, data: st.DataObject, deepseek: bool
) -> None:
    """Consistent: counts >= 0, cached + cache writes <= prompt, reasoning <= completion
    (the parts are included in their totals). DeepSeek reports cache hits beside the details."""
    cached = data.draw(st.integers(0, prompt))
    written = data.draw(st.integers(0, prompt - cached))
    reasoning = data.draw(st.integers(0, completion))
    if deepseek:
        raw = ns(
            prompt_tokens=prompt,
            completion_tokens=completion,
            prompt_cache_hit_tokens=cached,
            prompt_cache_miss_tokens=prompt - cached,
            prompt_tokens_details=None,
            completion_tokens_details=ns(reasoning_tokens=reasoning),
        )
        written = 0
    else:
        raw = ns(
            prompt_tokens=prompt,
            completion_tokens=completion,
            prompt_tokens_details=ns(cached_tokens=cached, cache_write_tokens=written),
            completion_tokens_details=ns(reasoning_tokens=reasoning),
        )
    usage = chat_usage(raw)
    check_partition(usage)
    assert usage.input_total == prompt
    assert usage.output_total == completion
    assert (usage.cache_read, usage.cache_write, usage.reasoning) == (cached, written, reasoning)
    assert usage.input == prompt - cached - written
    assert sum(usage.as_tuple()) == prompt + completion


@st.composite
def openai_responses_shapes(draw: st.DrawFn) -> SimpleNamespace:
    fields: dict[str, Any] = {}
    for name in ("input_tokens", "output_tokens", "total_tokens"):
        if draw(st.booleans()):
            fields[name] = draw(junk)
    if draw(st.booleans()):
        fields["input_tokens_details"] = draw(
            st.one_of(st.none(), st.builds(ns, cached_tokens=junk, cache_write_tokens=junk))
        )
    if draw(st.booleans()):
        fields["output_tokens_details"] = draw(
            st.one_of(st.none(), st.builds(ns, reasoning_tokens=junk))
        )
    return ns(**fields)


@FAST
@given(openai_responses_shapes())
def test_openai_responses_usage_never_negative(usage: SimpleNamespace) -> None:
    check_partition(responses_usage(usage))


@FAST
@given(prompt=tokens, completion=tokens, data=st.data())
def test_openai_responses_usage_consistent(
    prompt: int, completion: int, data: st.DataObject
) -> None:
    cached = data.draw(st.integers(0, prompt))
    reasoning = data.draw(st.integers(0, completion))
    usage = responses_usage(
        ns(
            input_tokens=prompt,
            output_tokens=completion,
            total_tokens=prompt + completion,
            input_tokens_details=ns(cached_tokens=cached),
            output_tokens_details=ns(reasoning_tokens=reasoning),
        )
    )
    check_partition(usage)
    assert (usage.input_total, usage.output_total) == (prompt, completion)
    assert (usage.cache_read, usage.reasoning) == (cached, reasoning)
    assert sum(usage.as_tuple()) == prompt + completion


@FAST
@given(st.one_of(st.builds(ns, prompt_tokens=junk, total_tokens=junk), st.just(ns())))
def test_openai_embeddings_usage(usage: SimpleNamespace) -> None:
    result = embeddings_usage(usage)
    check_partition(result)
    prompt = getattr(usage, "prompt_tokens", None)
    if type(prompt) is int and prompt >= 0:
        # absurd counts are cut to MAX_TOKENS (a corrupt field, not usage)
        assert result.as_tuple() == (min(prompt, MAX_TOKENS), 0, 0, 0, 0)


# -- Anthropic ---------------------------------------------------------------------------------


@st.composite
def anthropic_shapes(draw: st.DrawFn) -> SimpleNamespace:
    fields: dict[str, Any] = {}
    for name in (
        "input_tokens",
        "output_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ):
        if draw(st.booleans()):
            fields[name] = draw(junk)
    if draw(st.booleans()):
        fields["cache_creation"] = draw(
            st.one_of(
                st.none(),
                st.builds(ns, ephemeral_1h_input_tokens=junk, ephemeral_5m_input_tokens=junk),
            )
        )
    if draw(st.booleans()):
        fields["output_tokens_details"] = draw(
            st.one_of(st.none(), st.builds(ns, thinking_tokens=junk))
        )
    return ns(**fields)


@FAST
@given(anthropic_shapes())
def test_anthropic_message_usage_never_negative(usage: SimpleNamespace) -> None:
    check_partition(message_usage(usage))


@FAST
@given(st.tuples(junk, junk, junk, junk, junk, junk))
def test_anthropic_usage_never_negative(values: tuple[Any, ...]) -> None:
    check_partition(anthropic_usage(*values))


@st.composite
def anthropic_consistent(draw: st.DrawFn) -> dict[str, int]:
    """Consistent: counts >= 0 (input excludes cache reads and writes, which are beside it),
    1-hour writes <= cache writes, thinking <= output (output includes thinking)."""
    write = draw(tokens)
    output = draw(tokens)
    return {
        "input": draw(tokens),
        "cache_read": draw(tokens),
        "cache_write": write,
        "cache_write_1h": draw(st.integers(0, write)),
        "output": output,
        "thinking": draw(st.integers(0, output)),
    }


def _expect_anthropic(usage: Usage, c: dict[str, int]) -> None:
    check_partition(usage)
    assert usage.input == c["input"]
    assert usage.cache_read == c["cache_read"]
    assert usage.cache_write == c["cache_write"]
    assert usage.cache_write_1h == c["cache_write_1h"]
    assert usage.output_total == c["output"]
    assert usage.reasoning == c["thinking"]
    assert sum(usage.as_tuple()) == c["input"] + c["cache_read"] + c["cache_write"] + c["output"]


@FAST
@given(anthropic_consistent())
def test_anthropic_message_usage_consistent(c: dict[str, int]) -> None:
    raw = ns(
        input_tokens=c["input"],
        output_tokens=c["output"],
        cache_read_input_tokens=c["cache_read"],
        cache_creation_input_tokens=c["cache_write"],
        cache_creation=ns(
            ephemeral_1h_input_tokens=c["cache_write_1h"],
            ephemeral_5m_input_tokens=c["cache_write"] - c["cache_write_1h"],
        ),
        output_tokens_details=ns(thinking_tokens=c["thinking"]),
    )
    _expect_anthropic(message_usage(raw), c)
    _expect_anthropic(
        anthropic_usage(
            c["input"],
            c["output"],
            c["cache_read"],
            c["cache_write"],
            c["cache_write_1h"],
            c["thinking"],
        ),
        c,
    )


#: The usage fields a message_start / message_delta may carry, as the accumulator reads them.
_ANTHROPIC_FIELDS = (
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "1h",
    "thinking",
)


def _anthropic_event_usage(values: dict[str, int | None]) -> SimpleNamespace:
    one_hour, thinking = values.get("1h"), values.get("thinking")
    return ns(
        input_tokens=values.get("input_tokens"),
        output_tokens=values.get("output_tokens"),
        cache_read_input_tokens=values.get("cache_read_input_tokens"),
        cache_creation_input_tokens=values.get("cache_creation_input_tokens"),
        cache_creation=None if one_hour is None else ns(ephemeral_1h_input_tokens=one_hour),
        output_tokens_details=None if thinking is None else ns(thinking_tokens=thinking),
    )


@st.composite
def cumulative_series(draw: st.DrawFn, length: int, final_max: int = 10**9) -> list[int]:
    """A non-decreasing series (cumulative counts never go down)."""
    steps = draw(
        st.lists(st.integers(0, final_max // max(1, length)), min_size=length, max_size=length)
    )
    out, total = [], 0
    for step in steps:
        total += step
        out.append(total)
    return out


@st.composite
def anthropic_streams(draw: st.DrawFn) -> tuple[list[SimpleNamespace], dict[str, int | None]]:
    """message_start then 0..6 message_delta events with cumulative usage: each field of each
    event is either absent (None) or the running total so far. Returns the events and, per
    field, its last reported value (what the stream says in the end)."""
    deltas = draw(st.integers(0, 6))
    events_values: list[dict[str, int | None]] = [{} for _ in range(deltas + 1)]
    for name in _ANTHROPIC_FIELDS:
        series = draw(cumulative_series(deltas + 1))
        for index, value in enumerate(series):
            # message_start always carries input, output (a placeholder) and cache counts.
            always = index == 0 and name not in ("1h", "thinking")
            if always or draw(st.booleans()):
                events_values[index][name] = value
    # Consistency of the final numbers: 1h part of the writes, thinking part of the output.
    last: dict[str, int | None] = {}
    for values in events_values:
        last.update({k: v for k, v in values.items() if v is not None})
    for part, whole in (("1h", "cache_creation_input_tokens"), ("thinking", "output_tokens")):
        if (last.get(part) or 0) > (last.get(whole) or 0):
            for values in events_values:
                values.pop(part, None)
            last.pop(part, None)
    events = [
        ns(
            type="message_start",
            message=ns(
                model="claude-x", id="msg_1", usage=_anthropic_event_usage(events_values[0])
            ),
        )
    ]
    for index in range(1, deltas + 1):
        if draw(st.booleans()):
            events.append(ns(type="content_block_delta", delta=ns(text="abc")))
        events.append(
            ns(
                type="message_delta",
                delta=ns(stop_reason="end_turn" if index == deltas else None),
                usage=_anthropic_event_usage(events_values[index]),
            )
        )
    return events, last if deltas else {}


@FAST
@given(anthropic_streams())
def test_anthropic_accumulator_later_deltas_overwrite(
    stream: tuple[list[SimpleNamespace], dict[str, int | None]],
) -> None:
    events, last = stream
    acc = MessageAccumulator()
    for event in events:
        assert acc.on_chunk(event) is False
    rec = CallRecord("anthropic", "chat", "claude-x", attribution={})
    acc.finish(rec)
    if not last:  # no message_delta: the output count is only a placeholder, not usage
        assert rec.usage is None
        assert rec.estimator is not None
        return
    assert rec.usage is not None
    expected = {
        "input": last.get("input_tokens") or 0,
        "cache_read": last.get("cache_read_input_tokens") or 0,
        "cache_write": last.get("cache_creation_input_tokens") or 0,
        "cache_write_1h": last.get("1h") or 0,
        "output": last.get("output_tokens") or 0,
        "thinking": last.get("thinking") or 0,
    }
    _expect_anthropic(rec.usage, expected)


@FAST
@given(st.lists(anthropic_shapes(), min_size=1, max_size=5), st.booleans())
def test_anthropic_accumulator_never_negative(usages: list[SimpleNamespace], start: bool) -> None:
    acc = MessageAccumulator()
    if start:
        acc.on_chunk(ns(type="message_start", message=ns(model="m", id="i", usage=usages[0])))
    for usage in usages:
        acc.on_chunk(ns(type="message_delta", delta=ns(stop_reason=None), usage=usage))
    rec = CallRecord("anthropic", "chat", "m", attribution={})
    acc.finish(rec)
    assert rec.usage is not None
    check_partition(rec.usage)


# -- Gemini ------------------------------------------------------------------------------------


@st.composite
def gemini_shapes(draw: st.DrawFn) -> SimpleNamespace:
    fields: dict[str, Any] = {}
    for name in (
        "prompt_token_count",
        "cached_content_token_count",
        "candidates_token_count",
        "thoughts_token_count",
        "tool_use_prompt_token_count",
        "total_token_count",
    ):
        if draw(st.booleans()):
            fields[name] = draw(junk)
    return ns(**fields)


@FAST
@given(gemini_shapes())
def test_gemini_usage_never_negative(meta: SimpleNamespace) -> None:
    check_partition(gemini_usage(meta))


@st.composite
def gemini_consistent(draw: st.DrawFn) -> dict[str, int]:
    """Consistent: counts >= 0, cached <= prompt (prompt includes cached content), and the
    total is prompt + tool-use prompt + candidates + thoughts."""
    prompt = draw(tokens)
    return {
        "prompt": prompt,
        "cached": draw(st.integers(0, prompt)),
        "tool": draw(tokens),
        "candidates": draw(tokens),
        "thoughts": draw(tokens),
    }


def gemini_meta(c: dict[str, int], *, legacy: bool, candidates: int | None = None) -> Any:
    """A usage_metadata: google-genai's (with thoughts and tool-use fields, zeros as None) or
    the legacy proto's (no such fields: they only show in the total)."""
    cand = c["candidates"] if candidates is None else candidates
    total = c["prompt"] + c["tool"] + cand + c["thoughts"]
    if legacy:
        return ns(
            prompt_token_count=c["prompt"],
            cached_content_token_count=c["cached"],
            candidates_token_count=cand,
            total_token_count=total,
        )
    return ns(
        prompt_token_count=c["prompt"] or None,
        cached_content_token_count=c["cached"] or None,
        candidates_token_count=cand or None,
        thoughts_token_count=c["thoughts"] or None,
        tool_use_prompt_token_count=c["tool"] or None,
        total_token_count=total or None,
    )


def _expect_gemini(usage: Usage, c: dict[str, int], *, legacy: bool) -> None:
    check_partition(usage)
    tool = 0 if legacy else c["tool"]  # the legacy proto folds tool-use prompt into the total
    thoughts = c["thoughts"] + (c["tool"] if legacy else 0)
    assert usage.input_total == c["prompt"] + tool
    assert usage.cache_read == c["cached"]
    assert usage.output_total == c["candidates"] + thoughts
    assert usage.reasoning == thoughts
    assert sum(usage.as_tuple()) == c["prompt"] + c["tool"] + c["candidates"] + c["thoughts"]


@FAST
@given(gemini_consistent(), st.booleans())
def test_gemini_usage_consistent(c: dict[str, int], legacy: bool) -> None:
    _expect_gemini(gemini_usage(gemini_meta(c, legacy=legacy)), c, legacy=legacy)


@st.composite
def gemini_streams(draw: st.DrawFn) -> tuple[dict[str, int], bool, list[Any], Any]:
    """Chunks whose usage_metadata is a running total (growing candidates count), None, or
    empty (Vertex sends counts only at the end). Returns the final counts, the shape, the
    chunks and the last usage_metadata that carried counts (None if none did)."""
    c = draw(gemini_consistent())
    legacy = draw(st.booleans())
    n = draw(st.integers(1, 8))
    chunks, last_with_counts = [], None
    for index in range(n):
        running = c["candidates"] * (index + 1) // n
        kind = draw(st.sampled_from(["running", "none", "empty"]))
        if kind == "running":
            meta: Any = gemini_meta(c, legacy=legacy, candidates=running)
            if meta.prompt_token_count or meta.total_token_count:
                last_with_counts = meta
        elif kind == "none":
            meta = None
        else:
            meta = ns(prompt_token_count=None, total_token_count=None)
        chunks.append(ns(usage_metadata=meta, candidates=None, model_version="m", response_id="r"))
    return c, legacy, chunks, last_with_counts


@FAST
@given(gemini_streams())
def test_gemini_accumulator_takes_the_last_running_total(
    stream: tuple[dict[str, int], bool, list[Any], Any],
) -> None:
    c, legacy, chunks, last = stream
    acc = GeminiAccumulator()
    for chunk in chunks:
        assert acc.on_chunk(chunk) is False
    rec = CallRecord("gcp.gemini", "generate_content", "m", attribution={})
    acc.finish(rec)
    if last is None:
        assert rec.usage is None
        return
    assert rec.usage == gemini_usage(last)
    check_partition(rec.usage)
    if last is chunks[-1].usage_metadata:  # the final totals arrived last
        _expect_gemini(rec.usage, c, legacy=legacy)


@FAST
@given(st.lists(st.one_of(st.none(), gemini_shapes()), min_size=1, max_size=6))
def test_gemini_accumulator_never_negative(metas: list[Any]) -> None:
    acc = GeminiAccumulator()
    for meta in metas:
        acc.on_chunk(ns(usage_metadata=meta, candidates=None))
    rec = CallRecord("gcp.gemini", "generate_content", "m", attribution={})
    acc.finish(rec)
    if rec.usage is not None:
        check_partition(rec.usage)


# -- pricing -----------------------------------------------------------------------------------

#: Catalog models across providers: flat, tiered (by input size), dated and time-of-day prices,
#: a per-request fee (perplexity sonar), provider fallbacks (azure -> openai, vertex -> claude).
CATALOG_SAMPLE: tuple[tuple[str, str], ...] = (
    ("openai", "gpt-4o-mini"),
    ("openai", "gpt-4o"),
    ("openai", "o3-mini"),
    ("openai", "gpt-5.4"),
    ("openai", "gpt-5.6-luna"),
    ("openai", "text-embedding-3-small"),
    ("azure.ai.openai", "gpt-4o"),
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-6"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("aws.bedrock", "global.anthropic.claude-haiku-5-5"),
    ("gcp.vertex_ai", "claude-sonnet-4-5"),
    ("gcp.gemini", "gemini-2.5-flash"),
    ("gcp.gemini", "gemini-2.5-pro"),
    ("gcp.gemini", "gemini-1.5-flash"),
    ("gcp.vertex_ai", "gemini-3-pro-preview"),
    ("deepseek", "deepseek-chat"),
    ("deepseek", "deepseek-v4-flash"),
    ("mistral_ai", "mistral-large-4"),
    ("perplexity", "sonar"),
    ("x_ai", "grok-3"),
    ("groq", "llama-3.3-70b-versatile"),
)

BOOK = PriceBook()
billions = st.integers(min_value=0, max_value=10**9)
#: 2024-01-01 .. 2028-01-01 UTC, any time of day (dated and time-of-day prices).
when = st.integers(min_value=1_704_067_200, max_value=1_830_297_600).map(float)


@st.composite
def usages(draw: st.DrawFn, one_hour: bool = True) -> Usage:
    write = draw(billions)
    return Usage(
        input=draw(billions),
        cache_read=draw(billions),
        cache_write=write,
        output=draw(billions),
        reasoning=draw(billions),
        cache_write_1h=draw(st.integers(0, write)) if one_hour else 0,
    )


@pytest.mark.parametrize(("provider", "model"), CATALOG_SAMPLE)
def test_sample_models_are_in_the_catalog(provider: str, model: str) -> None:
    assert BOOK.pricer(provider, model).status == "catalog"


@pytest.mark.parametrize(("provider", "model"), CATALOG_SAMPLE)
@PRICING
@given(usage=usages(), at=when)
def test_cost_is_finite_and_non_negative(
    provider: str, model: str, usage: Usage, at: float
) -> None:
    costs = BOOK.pricer(provider, model).cost(usage, at)
    assert costs is not None and len(costs) == 5
    for cost in costs:
        assert isinstance(cost, float)
        assert math.isfinite(cost) and cost >= 0, costs
    assert math.isfinite(sum(costs))


def _genai_prices_total(provider: str, model: str, usage: Usage, at: float) -> float:
    result = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_total,
            cache_read_tokens=usage.cache_read,
            cache_write_tokens=usage.cache_write,
            output_tokens=usage.output_total,
            output_reasoning_tokens=usage.reasoning,
        ),
        model,
        provider_id=PROVIDER_MAP[provider],
        genai_request_timestamp=datetime.fromtimestamp(at, tz=timezone.utc),
    )
    return float(result.total_price)


@pytest.mark.parametrize(("provider", "model"), CATALOG_SAMPLE)
@PRICING
@given(usage=usages(one_hour=False), at=when)
def test_cost_equals_genai_prices(provider: str, model: str, usage: Usage, at: float) -> None:
    ours = sum(BOOK.pricer(provider, model).cost(usage, at) or ())
    theirs = _genai_prices_total(provider, model, usage, at)
    assert abs(ours - theirs) <= 1e-9 * max(abs(ours), abs(theirs)) + 1e-12, (ours, theirs)


#: Anthropic models whose catalog entry prices 1-hour cache writes at their own rate.
ONE_HOUR_PRICED = (
    ("anthropic", "claude-sonnet-4-5"),
    ("anthropic", "claude-opus-4-6"),
    ("anthropic", "claude-3-5-haiku-latest"),
    ("aws.bedrock", "global.anthropic.claude-haiku-5-5"),
    ("gcp.vertex_ai", "claude-sonnet-4-5"),
)


@pytest.mark.parametrize(("provider", "model"), ONE_HOUR_PRICED)
@PRICING
@given(usage=usages(one_hour=True), at=when)
def test_cost_with_one_hour_cache_writes_equals_genai_prices(
    provider: str, model: str, usage: Usage, at: float
) -> None:
    ours = sum(BOOK.pricer(provider, model).cost(usage, at) or ())
    result = genai_prices.calc_price(
        genai_prices.Usage(
            input_tokens=usage.input_total,
            cache_read_tokens=usage.cache_read,
            cache_write_tokens=usage.cache_write,
            cache_write_1h_tokens=usage.cache_write_1h,
            output_tokens=usage.output_total,
            output_reasoning_tokens=usage.reasoning,
        ),
        model,
        provider_id=PROVIDER_MAP[provider],
        genai_request_timestamp=datetime.fromtimestamp(at, tz=timezone.utc),
    )
    theirs = float(result.total_price)
    assert abs(ours - theirs) <= 1e-9 * max(abs(ours), abs(theirs)) + 1e-12, (ours, theirs)
