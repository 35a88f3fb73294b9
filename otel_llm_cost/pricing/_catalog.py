"""The bundled price catalog (genai-prices), turned into plain float rate tables.

genai-prices is only read here, and only when a model is looked up for the first time:
:class:`Catalog` turns the catalog's prices for one model into *raw schedules* (per-token
floats, ``None`` where the catalog has no price), which :mod:`._pricer` then turns into the
rates used on the per-call path. Nothing here runs per call, except the small condition
closures that choose between dated or time-of-day prices.

No network, ever: we build our own :class:`genai_prices.data_snapshot.DataSnapshot` from the
data bundled in the installed package, so even a ``genai_prices.UpdatePrices`` that the
application may have started elsewhere (the only way genai-prices fetches anything; it is
never on by default) does not change what we charge.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timezone
from decimal import Decimal
from typing import Any

logger = logging.getLogger("otel_llm_cost")

#: ``gen_ai.provider.name`` (OpenTelemetry semantic conventions) -> genai-prices provider id.
#: A name missing here is passed to genai-prices' own provider matching, and failing that the
#: model alone is matched (genai-prices can infer the provider from the model id).
PROVIDER_MAP: Mapping[str, str] = {
    "openai": "openai",
    "anthropic": "anthropic",
    "gcp.gemini": "google",
    "gcp.vertex_ai": "google",
    "gcp.gen_ai": "google",
    "aws.bedrock": "aws",
    "azure.ai.openai": "azure",
    "azure.ai.inference": "azure",
    "mistral_ai": "mistral",
    "deepseek": "deepseek",
    "groq": "groq",
    "x_ai": "x-ai",
    "perplexity": "perplexity",
    "cohere": "cohere",
}

#: The ``gen_ai.provider.name`` values of the semantic conventions (for price-file warnings).
KNOWN_PROVIDER_NAMES: frozenset[str] = frozenset({*PROVIDER_MAP, "ibm.watsonx.ai"})

#: Positions in a raw rate tuple. The first six are USD per token, the last USD per request.
INPUT, CACHE_READ, CACHE_WRITE, OUTPUT, REASONING, CACHE_WRITE_1H, REQUEST = range(7)
RAW_LEN = 7

#: genai-prices price key -> (position in the raw tuple, units the price is quoted per).
_CATALOG_KEYS: tuple[tuple[str, int, int], ...] = (
    ("input_mtok", INPUT, 1_000_000),
    ("cache_read_mtok", CACHE_READ, 1_000_000),
    ("cache_write_mtok", CACHE_WRITE, 1_000_000),
    ("output_mtok", OUTPUT, 1_000_000),
    ("output_reasoning_mtok", REASONING, 1_000_000),
    ("cache_write_1h_mtok", CACHE_WRITE_1H, 1_000_000),
    ("requests_kcount", REQUEST, 1_000),
)

Raw = tuple["float | None", ...]
"""Per-token (and per-request) prices in :data:`INPUT`... order; ``None`` = not priced."""

RawSchedule = tuple[tuple[int, Raw], ...]
"""``(above_input_tokens, raw)`` ascending; the first start is ``-1`` (the base rates).

The entry used for a call is the last one whose start is below the call's total input
tokens (cached included), and it prices the whole call."""

Condition = Callable[[float], bool]
"""Is a conditional price active at this unix time?"""


def step_at(steps: Sequence[tuple[int, Any]], above: int) -> Any:
    """The value of the last step whose start is ``<= above`` (``None`` when there is none)."""
    value = None
    for start, step_value in steps:
        if start <= above:
            value = step_value
        else:
            break
    return value


def merge_field_steps(fields: Sequence[Sequence[tuple[int, float]]]) -> RawSchedule:
    """Combine per-field step lists (each ascending by start) into one raw schedule."""
    starts = sorted({-1, *(start for steps in fields for start, _ in steps)})
    return tuple((start, tuple(step_at(steps, start) for steps in fields)) for start in starts)


def _per_unit(value: Decimal, per: int) -> float:
    return float(Decimal(value) / per)


def _raw_schedule(model_price: Any) -> RawSchedule:
    """One genai-prices ``ModelPrice`` as a raw schedule (tiers merged across price keys)."""
    from genai_prices.types import TieredPrices

    prices = model_price.__dict__
    fields: list[list[tuple[int, float]]] = [[] for _ in range(RAW_LEN)]
    for key, index, per in _CATALOG_KEYS:
        value = prices.get(key)
        if value is None:
            continue
        if isinstance(value, TieredPrices):
            steps = [(-1, _per_unit(value.base, per))]
            # genai-prices sorts tiers by start; on equal starts the later tier wins, as here.
            steps.extend((int(tier.start), _per_unit(tier.price, per)) for tier in value.tiers)
        else:
            steps = [(-1, _per_unit(value, per))]
        fields[index] = steps
    return merge_field_steps(fields)


def _utc_seconds(value: time) -> float:
    """Seconds after UTC midnight of a (possibly zoned) time of day; naive times are UTC."""
    if value.tzinfo is not None:
        value = datetime.combine(date(1970, 1, 1), value).astimezone(timezone.utc).timetz()
    return value.hour * 3600 + value.minute * 60 + value.second + value.microsecond / 1e6


def _compile_condition(constraint: Any) -> Condition | None:
    """A genai-prices price constraint as a cheap test on a unix time."""
    from genai_prices.types import StartDateConstraint, TimeOfDateConstraint

    if constraint is None:
        return None
    if isinstance(constraint, StartDateConstraint):
        # Active from UTC midnight of the start date on (genai-prices compares UTC dates).
        d = constraint.start_date
        since = datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp()

        def started(when: float) -> bool:
            return when >= since

        return started
    if isinstance(constraint, TimeOfDateConstraint):
        start = _utc_seconds(constraint.start_time)
        end = _utc_seconds(constraint.end_time)
        if end < start:  # the interval spans UTC midnight

            def in_interval(when: float) -> bool:
                t = when % 86400.0
                return t >= start or t < end

        else:

            def in_interval(when: float) -> bool:
                return start <= when % 86400.0 < end

        return in_interval

    # A constraint type this module does not know yet: ask genai-prices itself.
    def generic(when: float) -> bool:
        return bool(constraint.active(datetime.fromtimestamp(when, tz=timezone.utc)))

    return generic


@dataclass(frozen=True)
class CatalogModel:
    """The catalog's prices for one model, ready to be turned into rates."""

    provider_id: str
    model_id: str
    segments: tuple[tuple[Condition | None, RawSchedule], ...]
    """Conditional prices in catalog order. The last segment whose condition holds applies
    (``None`` always holds); when none holds, the first one does (genai-prices' rule)."""
    source: str


def _has_token_prices(segments: Sequence[tuple[Condition | None, RawSchedule]]) -> bool:
    return any(
        raw[INPUT] is not None or raw[OUTPUT] is not None
        for _, schedule in segments
        for _, raw in schedule
    )


class Catalog:
    """Model lookups in genai-prices' bundled data, cached per ``(provider, model)``.

    Matching is genai-prices' own (slow: tens of µs), which is why results are cached here and
    pricers are cached by :class:`~otel_llm_cost.pricing.PriceBook`.
    """

    def __init__(self) -> None:
        import genai_prices
        from genai_prices.data import providers
        from genai_prices.data_snapshot import DataSnapshot, find_provider_by_id

        self.version: str = genai_prices.__version__
        self._providers = providers
        self._snapshot = DataSnapshot(providers=providers, from_auto_update=False)
        self._find_provider_by_id = find_provider_by_id
        self._cache: dict[tuple[str | None, str], CatalogModel | None] = {}
        self._lock = threading.Lock()

    def provider_id(self, provider: str | None) -> str | None:
        """The genai-prices provider id for a ``gen_ai.provider.name`` (``None``: unknown)."""
        if not provider:
            return None
        mapped = PROVIDER_MAP.get(provider.lower())
        if mapped is not None:
            return mapped
        found = self._find_provider_by_id(self._providers, provider)
        return found.id if found is not None else None

    def lookup(self, provider: str | None, model: str) -> CatalogModel | None:
        """The catalog's prices for ``model`` as served by ``provider``, or ``None``.

        A provider known to the catalog is held to: only its models (and those of its
        genai-prices fallback providers, e.g. Azure -> OpenAI) match. An unknown or missing
        provider falls back to matching the model alone. Models the catalog knows but prices
        only by non-token units (characters, seconds, ...) count as unknown.
        """
        key = (provider, model)
        try:
            return self._cache[key]
        except KeyError:
            pass
        with self._lock:
            if key not in self._cache:
                try:
                    found = self._lookup(provider, model)
                except Exception:  # a catalog we cannot read must not break telemetry
                    logger.exception(
                        "otel_llm_cost: looking up %r (provider %r) in genai-prices failed; "
                        "treating the model as unknown to the catalog",
                        model,
                        provider,
                    )
                    found = None
                self._cache[key] = found
            return self._cache[key]

    def _lookup(self, provider: str | None, model: str) -> CatalogModel | None:
        if not model:
            return None
        provider_id = self.provider_id(provider)
        try:
            found_provider, found_model = self._snapshot.find_provider_model(
                model, None, provider_id, None
            )
        except LookupError:
            return None
        prices = found_model.prices
        if isinstance(prices, list):
            segments = tuple(
                (_compile_condition(conditional.constraint), _raw_schedule(conditional.prices))
                for conditional in prices
            )
        else:
            segments = ((None, _raw_schedule(prices)),)
        if not segments or not _has_token_prices(segments):
            return None
        return CatalogModel(
            provider_id=found_provider.id,
            model_id=found_model.id,
            segments=segments,
            source=f"genai-prices {self.version} ({found_provider.id}/{found_model.id})",
        )


_catalog: Catalog | None = None
_catalog_failed = False
_catalog_lock = threading.Lock()


def get_catalog() -> Catalog | None:
    """The process-wide :class:`Catalog`, ``None`` if genai-prices cannot be loaded (logged
    once). genai-prices is imported on first use (~0.3 s)."""
    global _catalog, _catalog_failed
    if _catalog is None and not _catalog_failed:
        with _catalog_lock:
            if _catalog is None and not _catalog_failed:
                try:
                    _catalog = Catalog()
                except Exception:
                    _catalog_failed = True
                    logger.exception(
                        "otel_llm_cost: cannot load the genai-prices catalog; only models of "
                        "the price file (OTEL_LLM_COST_PRICES_FILE) will be priced"
                    )
    return _catalog
