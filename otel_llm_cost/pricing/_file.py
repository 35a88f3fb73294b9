"""The user's price file (``OTEL_LLM_COST_PRICES_FILE``): parsing and validation.

Every problem is collected, each with the file, line and field it concerns, so that one run
tells the user everything to fix.
"""

from __future__ import annotations

import difflib
import json
import math
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import yaml

from ._catalog import get_catalog

#: Price fields of an entry or a tier, USD per 1M tokens.
PRICE_FIELDS: tuple[str, ...] = (
    "input",
    "cache_read",
    "cache_write",
    "output",
    "reasoning",
    "cache_write_1h",
)
_ENTRY_KEYS: tuple[str, ...] = ("provider", "model", *PRICE_FIELDS, "tiers")
_TIER_KEYS: tuple[str, ...] = ("above_input_tokens", *PRICE_FIELDS)
_REQUIRED_PRICES: tuple[str, ...] = ("input", "output")
_FLOAT_LIKE = re.compile(r"[-+]?(?:\d[\d_]*)?\.?\d[\d_]*(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class PriceProblem:
    """One thing wrong with a price file."""

    file: str
    line: int | None
    """1-based line, when known."""
    entry: str | None
    """Which entry, e.g. ``models[2]``."""
    field: str | None
    """Which field of the entry, e.g. ``output`` or ``tiers[0].input``."""
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        what = ".".join(part for part in (self.entry, self.field) if part)
        return f"{where}: {what}: {self.message}" if what else f"{where}: {self.message}"


class PriceFileError(Exception):
    """A price file that cannot be used; :attr:`problems` lists everything wrong with it."""

    problems: list[PriceProblem]

    def __init__(self, problems: list[PriceProblem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))

    def __str__(self) -> str:
        return "\n".join(str(problem) for problem in self.problems)


@dataclass(frozen=True)
class PriceTier:
    """Rates that replace an entry's own when a call's input (cached included) exceeds
    :attr:`above_input_tokens`; they apply to the whole call. USD per 1M tokens; ``None``
    means the field is not set by this tier."""

    above_input_tokens: int
    input: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    output: float | None = None
    reasoning: float | None = None
    cache_write_1h: float | None = None
    line: int | None = None

    def given(self) -> dict[str, float]:
        """The price fields this tier sets."""
        return {name: value for name in PRICE_FIELDS if (value := getattr(self, name)) is not None}


@dataclass(frozen=True)
class PriceEntry:
    """One model of a price file. Prices are USD per 1M tokens; ``None`` = not given."""

    model: str
    """Matched against a call's request and response model (a ``models/`` prefix removed)."""
    provider: str | None = None
    """A ``gen_ai.provider.name``; ``None`` = any provider."""
    input: float | None = None
    cache_read: float | None = None
    cache_write: float | None = None
    output: float | None = None
    reasoning: float | None = None
    cache_write_1h: float | None = None
    tiers: tuple[PriceTier, ...] = ()
    file: str = ""
    line: int | None = None
    index: int = 0

    @property
    def source(self) -> str:
        """``file:line`` of the entry."""
        return self.file if self.line is None else f"{self.file}:{self.line}"

    def given(self) -> dict[str, float]:
        """The price fields this entry sets (outside its tiers)."""
        return {name: value for name in PRICE_FIELDS if (value := getattr(self, name)) is not None}


def normalize_model(model: str) -> str:
    """A model id as priced: surrounding blanks and a ``models/`` prefix (Gemini) removed.

    A full Vertex AI resource name (``projects/.../publishers/google/models/gemini-2.5-pro``)
    is reduced to its last part as well.
    """
    model = model.strip()
    if model.startswith("models/"):
        return model[len("models/") :]
    if "/models/" in model:
        return model.rsplit("/models/", 1)[1]
    return model


# --------------------------------------------------------------------------------------------
# Parsing into a tree of values that remember their line.


@dataclass
class _Node:
    value: Any
    """``dict[str, _Node]``, ``list[_Node]`` or a scalar."""
    line: int | None
    key_lines: dict[str, int | None] = field(default_factory=dict)
    duplicate_keys: list[tuple[str, int | None]] = field(default_factory=list)


def _line(mark: Any) -> int | None:
    return None if mark is None else mark.line + 1


class _TreeBuilder:
    def __init__(self, text: str, is_json: bool, report: Callable[[int | None, str], None]) -> None:
        self.text = text
        self.is_json = is_json
        self.report = report
        self.loader = yaml.SafeLoader("")
        self.active: set[int] = set()

    def build(self, node: yaml.Node) -> _Node:
        line = _line(node.start_mark)
        if id(node) in self.active:
            self.report(line, "recursive alias")
            return _Node(None, line)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, line)
            if isinstance(node, yaml.SequenceNode):
                return _Node([self.build(item) for item in node.value], line)
            return _Node(self._scalar(node), line)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, line: int | None) -> _Node:
        if not self.is_json:
            try:
                self.loader.flatten_mapping(node)  # YAML merge keys (<<: *anchor)
            except yaml.YAMLError as exc:
                self.report(
                    _line(getattr(exc, "problem_mark", None)) or line, f"invalid YAML: {exc}"
                )
        result = _Node({}, line)
        for key_node, value_node in node.value:
            key_line = _line(key_node.start_mark)
            key = (
                self._scalar(key_node) if isinstance(key_node, yaml.ScalarNode) else "<complex key>"
            )
            key = str(key)
            if key in result.value:
                result.duplicate_keys.append((key, key_line))
            result.value[key] = self.build(value_node)
            result.key_lines[key] = key_line
        return result

    def _scalar(self, node: yaml.Node) -> Any:
        if self.is_json:
            raw = self.text[node.start_mark.index : node.end_mark.index]
            try:
                return json.loads(raw)
            except ValueError:
                return node.value
        try:
            value = self.loader.construct_object(node, deep=True)
        except yaml.YAMLError as exc:
            self.report(_line(node.start_mark), f"invalid YAML value: {exc}")
            return None
        # YAML 1.1 reads 1e-7 or 2e5 as strings; take them as the numbers they look like.
        if isinstance(value, str) and node.style is None and _FLOAT_LIKE.fullmatch(value):
            try:
                return float(value.replace("_", ""))
            except ValueError:
                pass
        return value


def _from_json_value(value: Any) -> _Node:
    """A tree without line numbers (only used if PyYAML cannot read a valid JSON file)."""
    if isinstance(value, dict):
        return _Node({str(k): _from_json_value(v) for k, v in value.items()}, None)
    if isinstance(value, list):
        return _Node([_from_json_value(v) for v in value], None)
    return _Node(value, None)


def _parse(text: str, is_json: bool, report: Callable[[int | None, str], None]) -> _Node | None:
    yaml_text = text
    json_value: Any = None
    if is_json:
        try:
            json_value = json.loads(text)
        except json.JSONDecodeError as exc:
            report(exc.lineno, f"invalid JSON: {exc.msg} (column {exc.colno})")
            return None
        # Valid JSON has no raw tab inside strings; elsewhere a tab is a blank that PyYAML
        # refuses. Same length, so lines and offsets are unchanged.
        yaml_text = text.replace("\t", " ")
    try:
        node = yaml.compose(yaml_text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        if is_json:
            return _from_json_value(json_value)
        mark = exc.problem_mark or exc.context_mark
        problem = exc.problem or exc.context or "syntax error"
        context = ""
        if exc.context and exc.problem:
            started = exc.context_mark
            if started is not None and mark is not None and started.line != mark.line:
                context = f" ({exc.context} started at line {started.line + 1})"
            else:
                context = f" ({exc.context})"
        column = f", column {mark.column + 1}" if mark is not None else ""
        report(_line(mark), f"invalid YAML: {problem}{context}{column}")
        return None
    except yaml.YAMLError as exc:
        if is_json:
            return _from_json_value(json_value)
        report(None, f"invalid YAML: {exc}")
        return None
    if node is None:
        return None
    return _TreeBuilder(text, is_json, report).build(node)


# --------------------------------------------------------------------------------------------
# Validation.


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    if value is None:
        return "nothing (null)"
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _unknown_key_message(key: str, allowed: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, allowed, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return f"unknown key {key!r}{hint}; allowed: {', '.join(allowed)}"


@dataclass(frozen=True)
class _Draft:
    """What an entry says, even when some of its fields are wrong (for cross-entry checks)."""

    index: int
    line: int | None
    provider: str | None
    model: str
    given: frozenset[str]
    entry: PriceEntry | None


class _Validator:
    def __init__(self, file: str, use_catalog: bool) -> None:
        self.file = file
        self.use_catalog = use_catalog
        self.problems: list[PriceProblem] = []

    def problem(
        self, line: int | None, entry: str | None, field_name: str | None, message: str
    ) -> None:
        self.problems.append(PriceProblem(self.file, line, entry, field_name, message))

    def _check_keys(
        self, node: _Node, allowed: tuple[str, ...], entry: str | None, prefix: str = ""
    ) -> None:
        for key, key_line in node.duplicate_keys:
            self.problem(key_line, entry, prefix + key, "duplicate key (the last one would win)")
        for key in node.value:
            if key not in allowed:
                self.problem(
                    node.key_lines.get(key), entry, prefix + key, _unknown_key_message(key, allowed)
                )

    def _price(self, node: _Node, entry: str, field_name: str) -> float | None:
        value = node.value
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            self.problem(
                node.line,
                entry,
                field_name,
                f"must be a number >= 0 (USD per 1M tokens), got {_show(value)}",
            )
            return None
        if not math.isfinite(value) or value < 0:
            self.problem(
                node.line,
                entry,
                field_name,
                f"must be a number >= 0 (USD per 1M tokens), got {value}",
            )
            return None
        return float(value)

    def _prices(self, node: _Node, entry: str, prefix: str = "") -> dict[str, float]:
        prices: dict[str, float] = {}
        for name in PRICE_FIELDS:
            if name in node.value:
                price = self._price(node.value[name], entry, prefix + name)
                if price is not None:
                    prices[name] = price
        return prices

    def _string(self, node: _Node, entry: str, field_name: str) -> str | None:
        value = node.value
        if not isinstance(value, str) or not value.strip():
            hint = (
                " (quote it)"
                if isinstance(value, (int, float)) and not isinstance(value, bool)
                else ""
            )
            self.problem(
                node.line,
                entry,
                field_name,
                f"must be a non-empty string{hint}, got {_show(value)}",
            )
            return None
        return value.strip()

    def _tiers(self, node: _Node, entry: str) -> tuple[PriceTier, ...]:
        if not isinstance(node.value, list):
            self.problem(
                node.line, entry, "tiers", f"must be a list of tiers, got {_show(node.value)}"
            )
            return ()
        tiers: list[PriceTier] = []
        seen: dict[int, int | None] = {}
        for i, tier_node in enumerate(node.value):
            prefix = f"tiers[{i}]."
            if not isinstance(tier_node.value, dict):
                self.problem(
                    tier_node.line,
                    entry,
                    f"tiers[{i}]",
                    "must be a mapping with above_input_tokens and prices, "
                    f"got {_show(tier_node.value)}",
                )
                continue
            before = len(self.problems)
            self._check_keys(tier_node, _TIER_KEYS, entry, prefix)
            threshold: int | None = None
            if "above_input_tokens" not in tier_node.value:
                self.problem(tier_node.line, entry, prefix + "above_input_tokens", "required")
            else:
                threshold_node = tier_node.value["above_input_tokens"]
                value = threshold_node.value
                if (
                    isinstance(value, bool)
                    or not isinstance(value, (int, float))
                    or not math.isfinite(value)
                    or value < 0
                    or value != int(value)
                ):
                    self.problem(
                        threshold_node.line,
                        entry,
                        prefix + "above_input_tokens",
                        f"must be a whole number of tokens >= 0, got {_show(value)}",
                    )
                else:
                    threshold = int(value)
                    if threshold in seen:
                        self.problem(
                            threshold_node.line,
                            entry,
                            prefix + "above_input_tokens",
                            f"another tier already starts above {threshold} tokens "
                            f"(line {seen[threshold]})",
                        )
                    else:
                        seen[threshold] = threshold_node.line
            prices = self._prices(tier_node, entry, prefix)
            if not any(name in tier_node.value for name in PRICE_FIELDS):
                self.problem(
                    tier_node.line,
                    entry,
                    f"tiers[{i}]",
                    f"sets no price; give some of {', '.join(PRICE_FIELDS)}",
                )
            if len(self.problems) != before or threshold is None:
                continue
            tiers.append(PriceTier(above_input_tokens=threshold, line=tier_node.line, **prices))
        tiers.sort(key=lambda tier: tier.above_input_tokens)
        return tuple(tiers)

    def _entry(self, index: int, node: _Node) -> _Draft | None:
        entry = f"models[{index}]"
        if not isinstance(node.value, dict):
            self.problem(
                node.line,
                entry,
                None,
                f"must be a mapping with model, input, output, ..., got {_show(node.value)}",
            )
            return None
        before = len(self.problems)
        self._check_keys(node, _ENTRY_KEYS, entry)
        values = node.value
        model: str | None = None
        if "model" not in values:
            self.problem(node.line, entry, "model", "required")
        else:
            model = self._string(values["model"], entry, "model")
        provider: str | None = None
        provider_ok = True
        if "provider" in values:
            provider = self._string(values["provider"], entry, "provider")
            provider_ok = provider is not None
        prices = self._prices(node, entry)
        tiers: tuple[PriceTier, ...] = ()
        if "tiers" in values:
            tiers = self._tiers(values["tiers"], entry)
        if model is None or not provider_ok:
            return None
        parsed = None
        if len(self.problems) == before:
            parsed = PriceEntry(
                model=normalize_model(model),
                provider=provider,
                tiers=tiers,
                file=self.file,
                line=node.line,
                index=index,
                **prices,
            )
        return _Draft(
            index=index,
            line=node.line,
            provider=provider,
            model=normalize_model(model),
            given=frozenset(name for name in PRICE_FIELDS if name in values),
            entry=parsed,
        )

    def validate(self, root: _Node | None) -> list[PriceEntry]:
        if root is None:
            self.problem(
                None, None, None, "the file is empty; expected a mapping with a 'models' list"
            )
            return []
        if not isinstance(root.value, dict):
            self.problem(
                root.line,
                None,
                None,
                f"expected a mapping with a 'models' list at the top, got {_show(root.value)}",
            )
            return []
        self._check_keys(root, ("models",), None)
        if "models" not in root.value:
            self.problem(root.line, None, "models", "required: a list of model prices")
            return []
        models = root.value["models"]
        if not isinstance(models.value, list):
            self.problem(
                models.line,
                None,
                "models",
                f"must be a list of model prices, got {_show(models.value)}",
            )
            return []

        drafts: list[_Draft] = []
        first_at: dict[tuple[str | None, str], _Draft] = {}
        for index, node in enumerate(models.value):
            draft = self._entry(index, node)
            if draft is None:
                continue
            key = (draft.provider, draft.model)
            if key in first_at:
                first = first_at[key]
                who = f"provider {draft.provider!r}" if draft.provider else "any provider"
                self.problem(
                    draft.line,
                    f"models[{index}]",
                    "model",
                    f"duplicate entry for model {draft.model!r} and {who} "
                    f"(first at line {first.line}, models[{first.index}])",
                )
                continue
            first_at[key] = draft
            drafts.append(draft)

        for draft in drafts:
            missing = [name for name in _REQUIRED_PRICES if name not in draft.given]
            if missing and not self._catalog_knows(draft.provider, draft.model):
                catalog = get_catalog() if self.use_catalog else None
                if catalog is not None:
                    who = f" for provider {draft.provider!r}" if draft.provider else ""
                    why = (
                        f"the catalog (genai-prices {catalog.version}) "
                        f"has no price for model {draft.model!r}{who}"
                    )
                elif self.use_catalog:
                    why = "the catalog (genai-prices) could not be loaded"
                else:
                    why = "the catalog is switched off"
                for name in missing:
                    self.problem(
                        draft.line,
                        f"models[{draft.index}]",
                        name,
                        f"required: {why}; give both input and output",
                    )
        self.problems.sort(key=lambda problem: problem.line or 0)
        return [draft.entry for draft in drafts if draft.entry is not None]

    def _catalog_knows(self, provider: str | None, model: str) -> bool:
        catalog = get_catalog() if self.use_catalog else None
        return catalog is not None and catalog.lookup(provider, model) is not None


def load_price_file(path: str | os.PathLike[str], *, use_catalog: bool = True) -> list[PriceEntry]:
    """Read and validate a price file (JSON if its name ends in ``.json``, else YAML).

    Shape (prices in USD per 1M tokens)::

        models:
          - provider: openai        # optional: a gen_ai.provider.name; left out = any provider
            model: gpt-4o-mini      # matched against the request and the response model
            input: 0.12
            output: 0.48
            cache_read: 0.06        # optional
            cache_write: 0.15       # optional
            reasoning: 0.48         # optional (default: the output rate)
            cache_write_1h: 0.24    # optional (Anthropic 1-hour cache writes; default 2 x input)
            tiers:                  # optional: above this many input tokens (cached included),
              - above_input_tokens: 200000   # these rates apply to the whole call
                input: 0.24
                output: 0.96

    Fields left out fall back to the catalog's price for the model; ``input`` and ``output``
    are required when the catalog (``use_catalog``) does not know the model.

    Raises:
        PriceFileError: listing every problem found (unreadable file, syntax, unknown keys,
            wrong types, negative prices, bad tiers, duplicate entries, missing prices), each
            with its line and field.
    """
    file = os.fspath(path)
    validator = _Validator(file, use_catalog)
    try:
        with open(file, encoding="utf-8-sig") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise PriceFileError(
            [PriceProblem(file, None, None, None, f"cannot read the price file: {reason}")]
        ) from exc

    def report(line: int | None, message: str) -> None:
        validator.problem(line, None, None, message)

    root = _parse(text, file.lower().endswith(".json"), report)
    if validator.problems:  # syntax errors: nothing more can be said
        raise PriceFileError(validator.problems)
    entries = validator.validate(root)
    if validator.problems:
        raise PriceFileError(validator.problems)
    return entries
