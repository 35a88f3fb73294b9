"""Per-model pricers and the price book that hands them out."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from ..usage import Usage
from ._catalog import (
    CACHE_READ,
    CACHE_WRITE,
    CACHE_WRITE_1H,
    INPUT,
    KNOWN_PROVIDER_NAMES,
    OUTPUT,
    RAW_LEN,
    REASONING,
    REQUEST,
    Catalog,
    CatalogModel,
    Condition,
    Raw,
    RawSchedule,
    get_catalog,
    merge_field_steps,
    step_at,
)
from ._file import (
    PRICE_FIELDS,
    PriceEntry,
    PriceFileError,
    PriceProblem,
    load_price_file,
    normalize_model,
)

logger = logging.getLogger("otel_llm_cost")

PriceStatus = Literal["catalog", "override", "unpriced"]

_PER_MTOK = 1_000_000.0
_FIELD_INDEX = {
    "input": INPUT,
    "cache_read": CACHE_READ,
    "cache_write": CACHE_WRITE,
    "output": OUTPUT,
    "reasoning": REASONING,
    "cache_write_1h": CACHE_WRITE_1H,
}
_MAX_CACHED_PRICERS = 10_000


@dataclass(frozen=True, slots=True)
class Rates:
    """Effective prices of one model for one call, in USD **per token** (not per 1M)."""

    input: float
    cache_read: float
    cache_write: float
    """5-minute (default TTL) cache writes."""
    output: float
    reasoning: float
    cache_write_1h: float
    """1-hour cache writes (Anthropic)."""
    request: float = 0.0
    """USD per request (a per-call fee, e.g. Perplexity's); charged in the ``input`` bucket."""

    def per_million(self) -> dict[str, float]:
        """The token rates in USD per 1M tokens (for display), plus ``request`` per request."""
        return {
            "input": self.input * _PER_MTOK,
            "cache_read": self.cache_read * _PER_MTOK,
            "cache_write": self.cache_write * _PER_MTOK,
            "output": self.output * _PER_MTOK,
            "reasoning": self.reasoning * _PER_MTOK,
            "cache_write_1h": self.cache_write_1h * _PER_MTOK,
            "request": self.request,
        }


Schedule = tuple[tuple[int, Rates], ...]
"""``(above_input_tokens, rates)``, ascending, first start ``-1``."""


def _catalog_rates(raw: Raw) -> Rates:
    """Rates for the catalog's raw prices, following genai-prices' own rules.

    genai-prices charges tokens of a kind that has no price of its own at the price of the
    kind that contains them: cache reads/writes at the input rate, reasoning at the output
    rate. The exception, as the project decided: 1-hour cache writes without a catalog price
    cost 2x input (Anthropic's published rule) instead of the cache-write rate.
    """
    inp = raw[INPUT] or 0.0
    out = raw[OUTPUT] or 0.0
    return Rates(
        input=inp,
        cache_read=inp if raw[CACHE_READ] is None else raw[CACHE_READ],
        cache_write=inp if raw[CACHE_WRITE] is None else raw[CACHE_WRITE],
        output=out,
        reasoning=out if raw[REASONING] is None else raw[REASONING],
        cache_write_1h=2.0 * inp if raw[CACHE_WRITE_1H] is None else raw[CACHE_WRITE_1H],
        request=raw[REQUEST] or 0.0,
    )


def _override_rates(raw: Raw) -> Rates:
    """Rates for an override entry merged with the catalog (the contract's defaults)."""
    inp = raw[INPUT] or 0.0
    out = raw[OUTPUT] or 0.0
    return Rates(
        input=inp,
        cache_read=raw[CACHE_READ] or 0.0,
        cache_write=raw[CACHE_WRITE] or 0.0,
        output=out,
        reasoning=out if raw[REASONING] is None else raw[REASONING],
        cache_write_1h=2.0 * inp if raw[CACHE_WRITE_1H] is None else raw[CACHE_WRITE_1H],
        request=raw[REQUEST] or 0.0,
    )


def _entry_schedule(entry: PriceEntry) -> RawSchedule:
    """An override entry as a raw schedule (per token). A field a tier leaves out keeps the
    value of the highest lower tier that sets it, else the entry's own."""
    fields: list[list[tuple[int, float]]] = [[] for _ in range(RAW_LEN)]
    for name, value in entry.given().items():
        fields[_FIELD_INDEX[name]].append((-1, value / _PER_MTOK))
    for tier in entry.tiers:
        for name, value in tier.given().items():
            fields[_FIELD_INDEX[name]].append((tier.above_input_tokens, value / _PER_MTOK))
    return merge_field_steps(fields)


def _merge(override: RawSchedule, catalog: RawSchedule) -> tuple[Schedule, bool]:
    """Override rates field by field over the catalog's; also says whether the catalog was used."""
    starts = sorted({start for start, _ in override} | {start for start, _ in catalog})
    empty: Raw = (None,) * RAW_LEN
    used_catalog = False
    schedule: list[tuple[int, Rates]] = []
    for start in starts:
        own = step_at(override, start) or empty
        fallback = step_at(catalog, start) or empty
        raw = tuple(o if o is not None else c for o, c in zip(own, fallback, strict=True))
        used_catalog = used_catalog or any(
            o is None and c is not None for o, c in zip(own, fallback, strict=True)
        )
        schedule.append((start, _override_rates(raw)))
    return tuple(schedule), used_catalog


def _simplify(schedule: Schedule) -> Schedule:
    """Drop tiers whose rates equal those below them."""
    kept = [schedule[0]]
    for start, rates in schedule[1:]:
        if rates != kept[-1][1]:
            kept.append((start, rates))
    return tuple(kept)


class ModelPricer:
    """Prices calls to one model: precomputed float rates, so :meth:`cost` is a few
    multiplications (plus a tier or date check for the models that have them)."""

    __slots__ = (
        "_conditions",
        "_default",
        "_flat",
        "_schedule",
        "model",
        "provider",
        "source",
        "status",
    )

    status: PriceStatus
    provider: str
    """The ``gen_ai.provider.name`` the pricer was asked for."""
    model: str | None
    """The model id (request or response model, ``models/`` removed) that found the price."""
    source: str
    """Where the prices come from, e.g. ``genai-prices 0.2.3 (openai/gpt-4o-mini)`` or
    ``prices.yaml:12``."""

    def __init__(
        self,
        status: PriceStatus,
        provider: str,
        model: str | None,
        source: str,
        segments: Sequence[tuple[Condition | None, Schedule]] = (),
    ) -> None:
        self.status = status
        self.provider = provider
        self.model = model
        self.source = source
        self._flat: Rates | None = None
        self._schedule: Schedule | None = None
        self._conditions: tuple[tuple[Condition | None, Schedule], ...] | None = None
        self._default: Schedule = ()
        if not segments:
            return
        simplified = [(condition, _simplify(schedule)) for condition, schedule in segments]
        schedules = {schedule for _, schedule in simplified}
        if len(schedules) == 1:
            (schedule,) = schedules
            if len(schedule) == 1:
                self._flat = schedule[0][1]
            else:
                self._schedule = schedule[::-1]
        else:
            # Scanned last to first: the last active segment wins; none active -> the first.
            self._conditions = tuple(
                (condition, schedule[::-1]) for condition, schedule in reversed(simplified)
            )
            self._default = simplified[0][1][::-1]

    def __repr__(self) -> str:
        return (
            f"ModelPricer(status={self.status!r}, provider={self.provider!r}, "
            f"model={self.model!r}, source={self.source!r})"
        )

    def _resolve(self, input_total: int, when: float | None) -> Rates | None:
        conditions = self._conditions
        if conditions is None:
            schedule = self._schedule
            if schedule is None:
                return None
        else:
            if when is None:
                when = time.time()
            schedule = self._default
            for condition, candidate in conditions:
                if condition is None or condition(when):
                    schedule = candidate
                    break
        for start, rates in schedule:  # descending
            if input_total > start:
                return rates
        return schedule[-1][1]

    def cost(
        self, usage: Usage, when: float | None = None
    ) -> tuple[float, float, float, float, float] | None:
        """USD per token type, in ``TOKEN_TYPES`` order (input, cache_read, cache_write,
        output, reasoning); ``None`` when unpriced.

        ``when`` is the unix time of the call (``None``: now); it matters only for models
        whose catalog price changes with the date or the time of day. A tier is chosen by
        the call's total input (cached included) and prices the whole call. The
        ``cache_write`` bucket prices its 1-hour part (``usage.cache_write_1h``) at the 1-hour
        rate; a per-request fee, if the model has one, is in the ``input`` bucket.
        """
        rates = self._flat
        if rates is None:
            rates = self._resolve(usage.input + usage.cache_read + usage.cache_write, when)
            if rates is None:
                return None
        write_1h = usage.cache_write_1h
        return (
            usage.input * rates.input + rates.request,
            usage.cache_read * rates.cache_read,
            (usage.cache_write - write_1h) * rates.cache_write + write_1h * rates.cache_write_1h,
            usage.output * rates.output,
            usage.reasoning * rates.reasoning,
        )

    def rates(self, input_tokens_total: int = 0, when: float | None = None) -> Rates | None:
        """The rates that apply to a call with this much input (cached included) at ``when``
        (``None``: now); ``None`` when unpriced."""
        if self._flat is not None:
            return self._flat
        return self._resolve(input_tokens_total, when)


class PriceBook:
    """Hands out a :class:`ModelPricer` per ``(provider, request model, response model)``.

    Which prices apply to a call:

    1. The price file (``price_file``) wins over the catalog. An entry applies when its
       ``model`` equals the response model or the request model (``models/`` prefixes
       removed; exact, case-sensitive comparison) and its ``provider`` equals the call's
       ``gen_ai.provider.name``. An entry without ``provider`` applies to every provider. When
       several entries apply: the response model's before the request model's, and for the
       same model the entry naming the provider before the one without. Fields the entry
       leaves out take the catalog's price for the entry's model (with the catalog's tiers
       and dates), else 0 for the cache fields, the output rate for ``reasoning`` and 2x
       input for ``cache_write_1h``.
    2. Else the catalog (genai-prices, bundled data only, never fetched): the response model
       if it knows it (more specific, e.g. a dated id), else the request model. The provider
       name is mapped to genai-prices' (see ``PROVIDER_MAP``); a known provider only matches
       its own models (and its genai-prices fallbacks, e.g. Azure -> OpenAI, Vertex ->
       Anthropic); an unknown one falls back to matching the model alone.
    3. Else ``unpriced``: one warning per (provider, model), tokens still counted.

    Never raises at pricing time. A price file with problems is ignored as a whole (one error
    is logged naming file, lines and fields; :attr:`file_errors` keeps the problems) and
    pricing goes on from the catalog.
    """

    def __init__(
        self, price_file: str | os.PathLike[str] | None = None, *, use_catalog: bool = True
    ) -> None:
        self.price_file: str | None = os.fspath(price_file) if price_file is not None else None
        self.use_catalog = use_catalog
        self.entries: tuple[PriceEntry, ...] = ()
        self.file_errors: list[PriceProblem] = []
        self._catalog: Catalog | None = get_catalog() if use_catalog else None
        self._overrides: dict[tuple[str | None, str], PriceEntry] = {}
        self._cache: dict[tuple[str, str, str | None], ModelPricer] = {}
        self._lock = threading.Lock()
        self._warned: set[tuple[str, str]] = set()
        if self.price_file is not None:
            self._load(self.price_file)

    def _load(self, price_file: str) -> None:
        try:
            entries = load_price_file(price_file, use_catalog=self.use_catalog)
        except PriceFileError as exc:
            self.file_errors = exc.problems
            count = len(exc.problems)
            logger.error(
                "otel_llm_cost: ignoring the price file %s (%d problem%s); "
                "costs come from the catalog only:\n%s",
                price_file,
                count,
                "" if count == 1 else "s",
                "\n".join(f"  {problem}" for problem in exc.problems),
            )
            return
        self.entries = tuple(entries)
        self._overrides = {(entry.provider, entry.model): entry for entry in entries}
        odd = [
            entry
            for entry in entries
            if entry.provider is not None and entry.provider not in KNOWN_PROVIDER_NAMES
        ]
        if odd:
            logger.warning(
                "otel_llm_cost: price file entries with a provider that is not a "
                "gen_ai.provider.name value apply only to calls reporting exactly that "
                "provider: %s",
                ", ".join(f"{entry.source} ({entry.provider!r})" for entry in odd),
            )

    def pricer(
        self, provider: str, request_model: str, response_model: str | None = None
    ) -> ModelPricer:
        """The pricer for a call (cached: the lookup runs once per distinct arguments)."""
        key = (provider, request_model, response_model)
        found = self._cache.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._cache.get(key)
            if found is None:
                try:
                    found = self._build(provider, request_model, response_model)
                except Exception:  # never let pricing break the caller's LLM call
                    logger.exception(
                        "otel_llm_cost: pricing %s/%s failed; leaving it unpriced",
                        provider,
                        request_model,
                    )
                    found = ModelPricer("unpriced", provider, None, "error")
                if len(self._cache) >= _MAX_CACHED_PRICERS:
                    self._cache.clear()
                self._cache[key] = found
            return found

    def _build(self, provider: str, request_model: str, response_model: str | None) -> ModelPricer:
        candidates: list[str] = []
        for model in (response_model, request_model):
            if model:
                normalized = normalize_model(model)
                if normalized and normalized not in candidates:
                    candidates.append(normalized)

        for model in candidates:
            for entry_provider in (provider, None):
                entry = self._overrides.get((entry_provider, model))
                if entry is not None:
                    return self._override_pricer(provider, model, entry)

        if self._catalog is not None:
            for model in candidates:
                found = self._catalog.lookup(provider, model)
                if found is not None:
                    segments = [
                        (condition, tuple((start, _catalog_rates(raw)) for start, raw in schedule))
                        for condition, schedule in found.segments
                    ]
                    return ModelPricer("catalog", provider, model, found.source, segments)

        shown = candidates[0] if candidates else (response_model or request_model or "")
        if (provider, shown) not in self._warned:
            self._warned.add((provider, shown))
            also = (
                f" (request model {request_model!r})"
                if response_model and request_model and candidates[1:]
                else ""
            )
            logger.warning(
                "otel_llm_cost: no price for model %r of provider %r%s; "
                "its tokens are counted but not its cost. "
                "Add it to the price file (OTEL_LLM_COST_PRICES_FILE).",
                shown,
                provider,
                also,
            )
        return ModelPricer("unpriced", provider, None, "no price")

    def _override_pricer(self, provider: str, model: str, entry: PriceEntry) -> ModelPricer:
        own = _entry_schedule(entry)
        catalog_model: CatalogModel | None = None
        if self._catalog is not None:
            catalog_model = self._catalog.lookup(provider, entry.model)
            if catalog_model is None and entry.provider is None:
                catalog_model = self._catalog.lookup(None, entry.model)
        used_catalog = False
        segments: list[tuple[Condition | None, Schedule]] = []
        if catalog_model is None:
            schedule, _ = _merge(own, ())
            segments.append((None, schedule))
        else:
            for condition, catalog_schedule in catalog_model.segments:
                schedule, used = _merge(own, catalog_schedule)
                used_catalog = used_catalog or used
                segments.append((condition, schedule))
        source = entry.source
        if used_catalog and catalog_model is not None:
            source = f"{source} + {catalog_model.source}"
        return ModelPricer("override", provider, model, source, segments)


__all__ = ["PRICE_FIELDS", "ModelPricer", "PriceBook", "PriceStatus", "Rates"]
