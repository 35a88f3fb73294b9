"""``collector/``: the configuration validates (``otelcol validate``) with the distribution built
from ``collector/builder-config.yaml``, in every exporter selection its comments offer, and that
distribution holds exactly the components the configuration declares (a minimal build: nothing
missing, nothing extra).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.e2e.conftest import COLLECTOR_CONFIG

KINDS = ("receivers", "processors", "exporters", "connectors", "extensions")

#: The selections the configuration's comments offer (METRICS_EXPORTERS, TRACES_EXPORTERS).
SELECTIONS = {
    "defaults": {},
    "remote write only, traces to OTLP": {
        "METRICS_EXPORTERS": "[prometheus_remote_write]",
        "TRACES_EXPORTERS": "[otlp_grpc]",
    },
    "both metrics exporters, both trace exporters": {
        "METRICS_EXPORTERS": "[prometheus, prometheus_remote_write]",
        "TRACES_EXPORTERS": "[otlp_grpc, debug]",
    },
}


def validate(collector_bin: str, config: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTLP_", "METRICS_", "TRACES_", "PROMETHEUS_", "OTELCOL_"))
    }
    return subprocess.run(
        [collector_bin, "validate", f"--config={config}"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**clean, **env},
    )


@pytest.mark.parametrize("selection", list(SELECTIONS))
def test_config_validates(collector_bin: str, selection: str) -> None:
    run = validate(collector_bin, COLLECTOR_CONFIG, SELECTIONS[selection])
    assert run.returncode == 0, run.stdout + run.stderr


def test_validate_rejects_a_component_the_distribution_lacks(
    collector_bin: str, tmp_path: Path
) -> None:
    """The check above can fail: a processor that is not built in (filter) is refused, where
    the same configuration round-tripped through YAML without it validates."""
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    same = tmp_path / "same.yaml"
    same.write_text(yaml.safe_dump(config))
    run = validate(collector_bin, same, {})
    assert run.returncode == 0, run.stdout + run.stderr
    config["processors"]["filter/extra"] = {"error_mode": "ignore"}
    config["service"]["pipelines"]["metrics"]["processors"].append("filter/extra")
    extra = tmp_path / "extra.yaml"
    extra.write_text(yaml.safe_dump(config))
    run = validate(collector_bin, extra, {})
    assert run.returncode != 0
    assert 'unknown type: "filter"' in run.stdout + run.stderr


def test_distribution_has_exactly_the_components_the_config_declares(collector_bin: str) -> None:
    run = subprocess.run([collector_bin, "components"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    listed = yaml.safe_load(run.stdout)
    built = {kind: sorted(c["name"] for c in listed.get(kind) or ()) for kind in KINDS}
    config = yaml.safe_load(COLLECTOR_CONFIG.read_text())
    declared = {
        kind: sorted({name.partition("/")[0] for name in config.get(kind) or {}}) for kind in KINDS
    }
    assert built == declared
