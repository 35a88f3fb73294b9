"""``collector/docker-compose.yaml`` cannot run here (no Docker engine), so it is held to the
files and ports the tests do run: every mounted file exists, each service reads the
repository's config at the path it is mounted to, the rule files ``collector/prometheus.yml``
names resolve inside the Prometheus container, and every address one service gives another is
the one that service listens on. The collector image is the release the builder manifest builds.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
COLLECTOR = REPO / "collector"
COMPOSE = yaml.safe_load((COLLECTOR / "docker-compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]


def mounts(service: str) -> dict[PurePosixPath, PurePosixPath]:
    """Container path -> repository path (relative to the repo root) of a service's bind mounts."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target, *_ = volume.split(":")
        if source.startswith("."):
            host = (COLLECTOR / source).resolve()
            out[PurePosixPath(target)] = PurePosixPath(host.relative_to(REPO))
    return out


def in_repo(service: str, container_path: str) -> PurePosixPath | None:
    """The repository path a container path of ``service`` shows, if it is bind-mounted."""
    path = PurePosixPath(container_path)
    for target, source in mounts(service).items():
        if path == target or target in path.parents:
            return source / path.relative_to(target)
    return None


def flag(service: str, name: str) -> str:
    for arg in SERVICES[service].get("command", []):
        if arg.startswith(f"--{name}="):
            return arg.split("=", 1)[1]
    raise AssertionError(f"{service}: no --{name}= in its command")


def port(address: str) -> int:
    match = re.search(r":(\d+)(/|$)", address)
    assert match, address
    return int(match.group(1))


def env_default(text: str, variable: str) -> str:
    """The default of ``${env:VARIABLE:-default}`` in a collector config."""
    match = re.search(r"\$\{env:" + variable + r":-([^}]*)\}", text)
    assert match, variable
    return match.group(1)


def test_every_mounted_path_exists() -> None:
    for service in SERVICES:
        for source in mounts(service).values():
            assert (REPO / source).exists(), f"{service} mounts {source}, which does not exist"


def test_each_service_reads_the_repository_config() -> None:
    collector_config = flag("otel-collector", "config")
    assert in_repo("otel-collector", collector_config) == PurePosixPath(
        "collector/otel-collector-config.yaml"
    )
    prometheus_config = flag("prometheus", "config.file")
    assert in_repo("prometheus", prometheus_config) == PurePosixPath("collector/prometheus.yml")
    alertmanager_config = flag("alertmanager", "config.file")
    assert in_repo("alertmanager", alertmanager_config) == PurePosixPath("alerts/alertmanager.yml")


def test_rule_files_resolve_inside_the_prometheus_container() -> None:
    config_dir = PurePosixPath(flag("prometheus", "config.file")).parent
    rule_files = yaml.safe_load((COLLECTOR / "prometheus.yml").read_text())["rule_files"]
    assert rule_files
    for rule_file in rule_files:
        parts: list[str] = []
        for part in (config_dir / rule_file).parts:  # normalize "..": no container to ask
            if part == "..":
                parts.pop()
            else:
                parts.append(part)
        source = in_repo("prometheus", str(PurePosixPath(*parts)))
        assert source is not None, f"{rule_file} is not mounted into the Prometheus container"
        assert (REPO / source).is_file(), source
        # The same relative path works outside the container, from collector/ (the tests).
        assert (COLLECTOR / rule_file).resolve() == (REPO / source).resolve()


def test_addresses_match_between_services() -> None:
    collector_text = (COLLECTOR / "otel-collector-config.yaml").read_text()
    environment = SERVICES["otel-collector"]["environment"]
    for variable in ("OTLP_GRPC_ENDPOINT", "OTLP_HTTP_ENDPOINT", "PROMETHEUS_EXPORTER_ENDPOINT"):
        assert environment[variable] == env_default(collector_text, variable), variable
    assert str(environment["OTELCOL_TELEMETRY_PORT"]) == env_default(
        collector_text, "OTELCOL_TELEMETRY_PORT"
    )

    prometheus = yaml.safe_load((COLLECTOR / "prometheus.yml").read_text())
    targets = {
        job["job_name"]: [t for c in job["static_configs"] for t in c["targets"]]
        for job in prometheus["scrape_configs"]
    }
    assert targets["otel-collector"] == [environment["PROMETHEUS_EXPORTER_ENDPOINT"]]
    assert [port(t) for t in targets["otel-collector-internal"]] == [
        int(environment["OTELCOL_TELEMETRY_PORT"])
    ]
    alertmanagers = [
        t
        for am in prometheus["alerting"]["alertmanagers"]
        for c in am["static_configs"]
        for t in c["targets"]
    ]
    assert alertmanagers == [flag("alertmanager", "web.listen-address")]

    datasources = yaml.safe_load(
        (REPO / "grafana" / "provisioning" / "datasources" / "prometheus.yml").read_text()
    )["datasources"]
    urls = [d["url"] for d in datasources if d["type"] == "prometheus"]
    assert urls == [f"http://{flag('prometheus', 'web.listen-address')}"]


def test_collector_image_is_the_release_the_manifest_builds() -> None:
    manifest = yaml.safe_load((COLLECTOR / "builder-config.yaml").read_text())
    image = SERVICES["otel-collector"]["image"]
    assert image == f"otel/opentelemetry-collector-contrib:{manifest['dist']['version']}"
