"""The provider SDK versions we support, and what happens outside them.

Supported ranges (``_SUPPORTED`` of each provider module, what its instrumentor declares):

========================  ==========================  =========================================
SDK                       range                       instrumentor
========================  ==========================  =========================================
openai                    >= 1.66, < 4                ``providers.openai.OpenAIInstrumentor``
anthropic                 >= 0.43, < 3                ``providers.anthropic.AnthropicInstrumentor``
google-genai              >= 1.0, < 4                 ``providers.google_genai``
google-generativeai       >= 0.8, < 0.9               ``providers.google_generativeai``
========================  ==========================  =========================================

``scripts/sdk-matrix.sh`` runs the provider tests against the oldest and the newest release of each
range, each in its own cached virtualenv; this module runs everywhere (in those venvs too).

An installed SDK outside its range is skipped with exactly one warning, never a crash, and nothing
of it is wrapped, while the other SDKs are instrumented as usual. This is tested in-process by
making the installed version fall outside the range, both ways: by faking the version lookup the
dependency check uses (``importlib.metadata.version``, as ``opentelemetry.instrumentation``
imports it), above and below the range, and by narrowing the instrumentor's ``_instruments``.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from packaging.requirements import Requirement
from packaging.version import Version

import otel_llm_cost
from otel_llm_cost import _log
from otel_llm_cost.instrumentor import LLMCostInstrumentor

from .conftest import make_recorder

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sdk:
    distribution: str
    module: str  # the provider module of ours
    instrumentor: str
    supported: str
    below: str  # a version just under the range
    above: str  # a version at the range's upper bound (excluded)
    extra: str  # the pyproject extra that installs it


SDKS = (
    Sdk("openai", "otel_llm_cost.providers.openai", "OpenAIInstrumentor",
        "openai >= 1.66, < 4", "1.65.5", "4.0.0", "openai"),
    Sdk("anthropic", "otel_llm_cost.providers.anthropic", "AnthropicInstrumentor",
        "anthropic >= 0.43, < 3", "0.42.0", "3.0.0", "anthropic"),
    Sdk("google-genai", "otel_llm_cost.providers.google_genai", "GoogleGenAIInstrumentor",
        "google-genai >= 1.0, < 4", "0.8.0", "4.0.0", "google-genai"),
    Sdk("google-generativeai", "otel_llm_cost.providers.google_generativeai",
        "GoogleGenerativeAIInstrumentor", "google-generativeai >= 0.8, < 0.9", "0.7.2", "0.9.0",
        "google-generativeai"),
)  # fmt: skip
IDS = [sdk.distribution for sdk in SDKS]


def installed(sdk: Sdk) -> str | None:
    try:
        return importlib.metadata.version(sdk.distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def instrumentor_class(sdk: Sdk) -> type[LLMCostInstrumentor]:
    return getattr(importlib.import_module(sdk.module), sdk.instrumentor)  # type: ignore[no-any-return]


def wrapped_attributes(sdk: Sdk) -> dict[tuple[type, str], Any]:
    """The SDK class attributes we would wrap or patch, as they are now (raw class-dict objects)."""
    instrumentor = instrumentor_class(sdk)()
    recorder, _, _ = make_recorder()
    found: dict[tuple[type, str], Any] = {}
    for point in instrumentor.wrap_points(recorder):
        try:
            module = importlib.import_module(point.module)
        except ImportError:
            continue
        owner_name, _, attr = point.name.rpartition(".")
        owner = getattr(module, owner_name, None)
        if owner is not None and attr in vars(owner):
            found[(owner, attr)] = vars(owner)[attr]
    for owner, name in patch_targets(instrumentor):
        found[(owner, name)] = vars(owner).get(name)
    assert found, f"none of the wrap points of {sdk.distribution} exists in this version"
    return found


def patch_targets(instrumentor: Any) -> list[tuple[type, str]]:
    """(owner, attribute) of the plain attributes an instrumentor patches. ``patches()`` yields
    ``(owner, name, value)`` or ``(module path, "Class.attr", value)``."""
    found = []
    for owner, name, _ in instrumentor.patches():
        if isinstance(owner, str):
            try:
                module = importlib.import_module(owner)
            except ImportError:
                continue
            owner_name, _, name = name.rpartition(".")
            owner = getattr(module, owner_name, None) if owner_name else module
            if owner is None:
                continue
        found.append((owner, name))
    return found


def changed(before: dict[tuple[type, str], Any]) -> list[str]:
    return [f"{o.__name__}.{a}" for (o, a), v in before.items() if vars(o).get(a) is not v]


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno >= logging.WARNING]


@pytest.fixture(autouse=True)
def fresh_warn_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """``warn_once`` warns once per process; each test here starts as a new process would."""
    monkeypatch.setattr(_log, "_seen", set())


@pytest.fixture
def uninstrument_afterwards() -> Iterator[None]:
    try:
        yield
    finally:
        otel_llm_cost.uninstrument()


# -- the declared ranges -----------------------------------------------------------------------


@pytest.mark.parametrize("sdk", SDKS, ids=IDS)
def test_declared_range(sdk: Sdk) -> None:
    module = importlib.import_module(sdk.module)
    assert sdk.supported == module._SUPPORTED
    assert tuple(instrumentor_class(sdk)().instrumentation_dependencies()) == (sdk.supported,)
    spec = Requirement(sdk.supported).specifier
    assert Version(sdk.below) not in spec and Version(sdk.above) not in spec


def _pyproject_extra(extra: str) -> Requirement:
    tomllib = pytest.importorskip("tomllib") if sys.version_info >= (3, 11) else None
    if tomllib is None:
        pytest.skip("tomllib is Python >= 3.11")
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    (requirement,) = data["project"]["optional-dependencies"][extra]
    return Requirement(requirement)


@pytest.mark.parametrize("sdk", SDKS, ids=IDS)
def test_pyproject_extra_matches_the_supported_range(sdk: Sdk) -> None:
    extra = _pyproject_extra(sdk.extra)
    supported = Requirement(sdk.supported)
    assert extra.name == supported.name
    assert extra.specifier == supported.specifier, (str(extra), sdk.supported)


def _readme_ranges() -> dict[str, str]:
    """``{sdk: "openai >= 1.66, < 4"}`` from README.md's "Supported SDK versions" table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("## Supported SDK versions", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| `([\w-]+)` \| ([^|]+?) \|", section, re.M)
    return {name: f"{name} {spec}" for name, spec in rows}


@pytest.mark.parametrize("sdk", SDKS, ids=IDS)
def test_readme_states_the_supported_range(sdk: Sdk) -> None:
    assert _readme_ranges().get(sdk.distribution) == sdk.supported


def _constraints() -> dict[str, str]:
    """``{sdk: version}`` pinned for the main test suite in scripts/sdk-constraints.txt."""
    pins = {}
    for line in (ROOT / "scripts" / "sdk-constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            requirement = Requirement(line)
            (spec,) = requirement.specifier
            assert spec.operator == "==", line
            pins[requirement.name] = spec.version
    return pins


@pytest.mark.parametrize("sdk", SDKS, ids=IDS)
def test_constraints_pin_a_supported_release(sdk: Sdk) -> None:
    pinned = _constraints().get(sdk.distribution)
    assert pinned is not None, f"scripts/sdk-constraints.txt pins no {sdk.distribution}"
    assert Version(pinned) in Requirement(sdk.supported).specifier, (pinned, sdk.supported)


@pytest.mark.parametrize("sdk", SDKS, ids=IDS)
def test_installed_version_in_range_is_instrumented(
    sdk: Sdk, caplog: pytest.LogCaptureFixture, uninstrument_afterwards: None
) -> None:
    version = installed(sdk)
    if version is None:
        pytest.skip(f"{sdk.distribution} is not installed")
    if Version(version) not in Requirement(sdk.supported).specifier:
        pytest.skip(f"{sdk.distribution} {version} is outside {sdk.supported}")
    before = wrapped_attributes(sdk)
    with caplog.at_level(logging.WARNING):
        otel_llm_cost.instrument(recorder=make_recorder()[0])
    assert changed(before), f"{sdk.distribution} {version} was not instrumented"
    assert not [r for r in warnings_of(caplog) if sdk.distribution in r.getMessage()]
    otel_llm_cost.uninstrument()
    assert changed(before) == []


# -- outside the range: one warning, no wrapping, no crash --------------------------------------


def _fake_version(monkeypatch: pytest.MonkeyPatch, distribution: str, version: str) -> None:
    """Make the dependency check see ``version`` for ``distribution`` (others unchanged)."""
    from opentelemetry.instrumentation import dependencies

    real = dependencies.version

    def fake(name: str) -> str:
        if name.lower().replace("_", "-") == distribution:
            return version
        return real(name)

    monkeypatch.setattr(dependencies, "version", fake)


def check_skipped_with_one_warning(
    sdk: Sdk, version: str, caplog: pytest.LogCaptureFixture, rounds: int = 2
) -> None:
    """instrument()/uninstrument() ``rounds`` times: one warning in all, the SDK never wrapped,
    the other installed SDKs instrumented as usual."""
    before = wrapped_attributes(sdk)
    others = {
        other.distribution: wrapped_attributes(other)
        for other in SDKS
        if other is not sdk
        and installed(other)
        and Version(installed(other) or "0") in Requirement(other.supported).specifier
    }
    with caplog.at_level(logging.DEBUG, logger="otel_llm_cost"):
        for _ in range(rounds):
            otel_llm_cost.instrument(recorder=make_recorder()[0])  # must not raise
            assert changed(before) == [], f"{sdk.distribution} {version} was wrapped"
            for name, attributes in others.items():
                assert changed(attributes), f"{name} was not instrumented"
            otel_llm_cost.uninstrument()
            assert changed(before) == []
    warnings = warnings_of(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    (warning,) = warnings
    assert warning.levelno == logging.WARNING
    assert warning.name.startswith("otel_llm_cost")
    message = warning.getMessage()
    assert sdk.distribution in message and version in message, message
    assert sdk.supported.replace(" ", "") in message.replace(" ", ""), message


@pytest.mark.parametrize("where", ["below", "above"])
@pytest.mark.parametrize("sdk", SDKS, ids=IDS)
def test_version_outside_range_is_skipped_with_one_warning(
    sdk: Sdk,
    where: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    uninstrument_afterwards: None,
) -> None:
    if installed(sdk) is None:
        pytest.skip(f"{sdk.distribution} is not installed")
    version = sdk.below if where == "below" else sdk.above
    _fake_version(monkeypatch, sdk.distribution, version)
    check_skipped_with_one_warning(sdk, version, caplog)


@pytest.mark.parametrize("sdk", SDKS, ids=IDS)
def test_range_excluding_the_installed_version_is_skipped_with_one_warning(
    sdk: Sdk,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    uninstrument_afterwards: None,
) -> None:
    version = installed(sdk)
    if version is None:
        pytest.skip(f"{sdk.distribution} is not installed")
    narrowed = f"{sdk.distribution} > {version}"
    cls = instrumentor_class(sdk)
    monkeypatch.setattr(cls, "_instruments", (narrowed,))
    before = wrapped_attributes(sdk)
    with caplog.at_level(logging.DEBUG, logger="otel_llm_cost"):
        otel_llm_cost.instrument(recorder=make_recorder()[0])
        assert changed(before) == []
        otel_llm_cost.uninstrument()
        # the auto-instrumentation path: the entry point's instrumentor, dependency check skipped
        cls().instrument(skip_dep_check=True)
        assert changed(before) == []
        cls().uninstrument()
    warnings = warnings_of(caplog)
    assert len(warnings) == 1, [r.getMessage() for r in warnings]
    assert version in warnings[0].getMessage() and narrowed in warnings[0].getMessage()
