"""End-to-end fixtures: the collector distribution of ``collector/``, Debian's Prometheus, the
fake OpenAI server and ``tests/apps/workload.py`` under ``opentelemetry-instrument``.

Every process runs in its own process group on loopback ports chosen free at start-up, logs to a
file under the test's ``tmp_path``, and is stopped (its whole group) when the test ends, however
it ends. When a test fails, the tail of every log it produced is attached to the report.

The collector and Prometheus binaries are needed: without them (no Go to build the collector, no
``prometheus`` on PATH) these tests are skipped, or fail when ``CI`` is set.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_llm_cost.fakes.openai_server import FakeOpenAIServer, Script

REPO = Path(__file__).resolve().parents[2]
COLLECTOR_CONFIG = REPO / "collector" / "otel-collector-config.yaml"
PROMETHEUS_TEMPLATE = REPO / "collector" / "prometheus.yml"
RULE_FILES = (REPO / "alerts" / "llm-cost-rules.yml", REPO / "alerts" / "budgets.yml")
WORKLOAD = REPO / "tests" / "apps" / "workload.py"

#: Other instrumentors of the package: the workload only uses openai, and importing the other
#: SDKs at start-up costs seconds on a small machine.
def _other_instrumentors() -> str:
    """Every installed instrumentor but ours for openai (other projects' openai instrumentations,
    when installed for the coexistence tests, would add spans of their own)."""
    from importlib.metadata import entry_points

    names = {ep.name for ep in entry_points(group="opentelemetry_instrumentor")}
    return ",".join(sorted(names - {"llm_cost_openai"}))


OTHER_INSTRUMENTORS = _other_instrumentors()

_PROCS = pytest.StashKey[list["Proc"]]()


def unavailable(reason: str) -> None:
    """Skip, or fail when running in CI (where the whole pipeline must be tested)."""
    if os.environ.get("CI"):
        pytest.fail(f"{reason} (CI is set: the e2e tests must run)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(
    condition: Callable[[], Any], timeout: float, what: str, interval: float = 0.1
) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def http_status(url: str, timeout: float = 2.0) -> int | None:
    """The HTTP status ``url`` answers a GET with, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except (OSError, ValueError):
        return None


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without OTEL_*, OPENAI_* and the collector config's variables,
    plus ``extra``."""
    drop = ("OTEL_", "OPENAI_", "OTLP_", "PROMETHEUS_", "METRICS_", "TRACES_", "OTELCOL_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


# ------------------------------------------------------------------------------------------
# Processes
# ------------------------------------------------------------------------------------------


class Proc:
    """A child process in its own process group, output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        env: dict[str, str],
        log: Path,
        *,
        stdin: bool = False,
        stdout: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.stdout = stdout or log
        with open(log, "ab") as err, open(self.stdout, "ab") as out:
            self.popen = subprocess.Popen(
                self.argv,
                env=env,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                start_new_session=True,
                cwd=REPO,
            )

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def _signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole group, no goodbye."""
        self._signal_group(signal.SIGKILL)
        self.popen.wait(timeout=10)

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the group, SIGKILL it if it has not gone within ``timeout``."""
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError):
                self.popen.stdin.close()
        if self.alive:
            self._signal_group(signal.SIGTERM)
            try:
                self.popen.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        # Whatever is left of the group (children of a process that exited) goes too.
        self._signal_group(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=10)

    def text(self) -> str:
        parts = [self.log.read_text(errors="replace")] if self.log.exists() else []
        if self.stdout != self.log and self.stdout.exists():
            parts.insert(0, self.stdout.read_text(errors="replace"))
        return "".join(parts)

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


class Collector:
    """The collector distribution, with the repository's configuration (or another one)."""

    def __init__(
        self, binary: str, workdir: Path, register: Callable[[Proc], None], config: Path
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.config = config
        self.register = register
        self.grpc_port = free_port()
        self.http_port = free_port()
        self.metrics_port = free_port()
        self.telemetry_port = free_port()
        self.incarnations: list[Proc] = []

    @property
    def otlp_http(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def proc(self) -> Proc:
        return self.incarnations[-1]

    def start(self, timeout: float = 30.0) -> Collector:
        """Start (or restart, on the same ports) and wait until both ports answer."""
        env = clean_env(
            OTLP_GRPC_ENDPOINT=f"127.0.0.1:{self.grpc_port}",
            OTLP_HTTP_ENDPOINT=f"127.0.0.1:{self.http_port}",
            PROMETHEUS_EXPORTER_ENDPOINT=f"127.0.0.1:{self.metrics_port}",
            OTELCOL_TELEMETRY_HOST="127.0.0.1",
            OTELCOL_TELEMETRY_PORT=str(self.telemetry_port),
        )
        index = len(self.incarnations)
        name = f"{self.workdir.name}-{index}" if index else self.workdir.name
        proc = Proc(
            name, [self.binary, f"--config={self.config}"], env, self.workdir / f"{index}.log"
        )
        self.incarnations.append(proc)
        self.register(proc)

        def ready() -> bool:
            if not proc.alive:
                pytest.fail(f"collector exited with {proc.popen.returncode}:\n{proc.tail()}")
            # Any HTTP answer (404 on /) means the OTLP/HTTP receiver listens.
            return (
                http_status(f"{self.otlp_http}/") is not None
                and http_status(f"http://127.0.0.1:{self.metrics_port}/metrics") == 200
            )

        wait_until(ready, timeout, f"the collector's ports ({proc.log})")
        return self

    def kill(self) -> None:
        self.proc.kill()

    def stop(self) -> None:
        for proc in self.incarnations:
            proc.stop()

    def spans_exported(self, incarnation: int | None = None) -> int:
        """Spans the debug exporter logged, by one incarnation (0: the first) or by all."""
        total = 0
        procs = self.incarnations if incarnation is None else [self.incarnations[incarnation]]
        for proc in procs:
            for line in proc.text().splitlines():
                if "\tTraces\t" in line and (found := re.search(r'"spans": (\d+)', line)):
                    total += int(found.group(1))
        return total


def with_collector_opt_in(attribute: str, target: Path) -> Path:
    """The repository's collector config with ``attribute`` added to the allowlist, the way its
    comment says (a line before ``"service.name"`` in ``keep_keys``)."""
    text = COLLECTOR_CONFIG.read_text()
    new, count = re.subn(
        r'^(\s*)"service\.name",$', rf'\1"{attribute}",\n\1"service.name",', text, flags=re.M
    )
    assert count == 1, "the keep_keys allowlist in otel-collector-config.yaml changed shape"
    target.write_text(new)
    return target


class Prometheus:
    """Debian's Prometheus with a config derived from ``collector/prometheus.yml``."""

    def __init__(
        self,
        binary: str,
        workdir: Path,
        register: Callable[[Proc], None],
        collectors: Sequence[Collector] = (),
        apps: Sequence[int] = (),
    ) -> None:
        self.binary = binary
        self.workdir = workdir
        self.register = register
        self.port = free_port()
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(self.config(collectors, apps), sort_keys=False))
        self.proc: Proc | None = None

    @staticmethod
    def config(collectors: Sequence[Collector], apps: Sequence[int]) -> dict[str, Any]:
        """``collector/prometheus.yml`` with 1 s intervals, these targets, absolute rule files,
        and no Alertmanager (there is none here). ``apps`` are in-process Prometheus endpoints
        (the file's commented ``llm-app`` job)."""
        config = yaml.safe_load(PROMETHEUS_TEMPLATE.read_text())
        config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
        config["rule_files"] = [str(path) for path in RULE_FILES if path.exists()]
        config.pop("alerting", None)
        targets = {
            "otel-collector": [f"127.0.0.1:{c.metrics_port}" for c in collectors],
            "otel-collector-internal": [f"127.0.0.1:{c.telemetry_port}" for c in collectors],
        }
        jobs = []
        for job in config.get("scrape_configs") or []:
            wanted = targets.get(job["job_name"])
            if wanted:  # a job these tests do not know would scrape default ports: left out
                job["static_configs"] = [{"targets": wanted}]
                jobs.append(job)
        if apps:
            jobs.append(
                {
                    "job_name": "llm-app",
                    "static_configs": [{"targets": [f"127.0.0.1:{port}" for port in apps]}],
                }
            )
        config["scrape_configs"] = jobs
        return config

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Prometheus:
        argv = [
            self.binary,
            f"--config.file={self.config_path}",
            f"--storage.tsdb.path={self.workdir / 'data'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-lifecycle",
        ]
        self.proc = proc = Proc("prometheus", argv, clean_env(), self.workdir / "prometheus.log")
        self.register(proc)

        def ready() -> bool:
            if not proc.alive:
                pytest.fail(f"prometheus exited with {proc.popen.returncode}:\n{proc.tail()}")
            return http_status(f"{self.url}/-/ready") == 200

        wait_until(ready, timeout, "Prometheus /-/ready")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.stop()

    def api(self, path: str, **params: str) -> Any:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as response:
            body = json.load(response)
        assert body["status"] == "success", body
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]] | float:
        """An instant query: a vector as ``[{"metric": {...}, "value": float}]``, a scalar as a
        float, a range vector (``metric[1m]``) as ``[{"metric", "values": [(t, v), ...]}]``."""
        data = self.api("query", query=promql)
        kind, result = data["resultType"], data["result"]
        if kind == "scalar":
            return float(result[1])
        if kind == "matrix":
            return [
                {"metric": r["metric"], "values": [(float(t), float(v)) for t, v in r["values"]]}
                for r in result
            ]
        return [{"metric": r["metric"], "value": float(r["value"][1])} for r in result]

    def value(self, promql: str) -> float | None:
        """The single value of a query (None when the result is empty)."""
        result = self.query(promql)
        if isinstance(result, float):
            return result
        assert len(result) <= 1, result
        return result[0]["value"] if result else None

    def by(self, promql: str, *labels: str) -> dict[tuple[str, ...], float]:
        """A vector keyed by the given labels' values ("" when absent)."""
        result = self.query(promql)
        assert isinstance(result, list)
        return {tuple(r["metric"].get(k, "") for k in labels): r["value"] for r in result}

    def wait_for(
        self,
        promql: str,
        predicate: Callable[[Any], bool],
        timeout: float = 30.0,
        fetch: Callable[[str], Any] | None = None,
        want: Any = None,
    ) -> Any:
        """Poll ``fetch(promql)`` (default :meth:`value`) until ``predicate`` holds; return it.

        ``want`` (what was expected) only goes into the failure message."""
        fetch = fetch or self.value
        deadline = time.monotonic() + timeout
        while True:
            result = fetch(promql)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                expected = "" if want is None else f", expected {want!r}"
                pytest.fail(f"timed out after {timeout:.0f} s: {promql} is {result!r}{expected}")
            time.sleep(0.25)

    def load_budgets(self, budgets: Sequence[Any], path: Path) -> None:
        """The repository's alert rules with ``budgets`` (``otel_llm_cost.budgets.Budget``s)
        instead of alerts/budgets.yml: written to ``path``, Prometheus reloaded, and waited for
        until it records them."""
        from otel_llm_cost.budgets import render_budgets

        path.write_text(render_budgets(list(budgets)))
        config = yaml.safe_load(self.config_path.read_text())
        config["rule_files"] = [str(RULE_FILES[0]), str(path)]
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        request = urllib.request.Request(f"{self.url}/-/reload", method="POST")
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.status == 200
        self.wait_for("count(llm_budget_USD)", lambda v: v == len(budgets), want=len(budgets))

    def alerts(self) -> list[dict[str, Any]]:
        """``/api/v1/alerts``: every pending or firing alert (``labels``, ``state``, ...)."""
        return list(self.api("alerts")["alerts"])

    def metric_names(self) -> set[str]:
        return set(self.api("label/__name__/values"))

    def label_names(self, match: str) -> set[str]:
        return set(self.api("labels", **{"match[]": match}))


class Workload:
    """``tests/apps/workload.py`` under ``opentelemetry-instrument``."""

    def __init__(self, workdir: Path, env: dict[str, str], register: Callable[[Proc], None]):
        launcher = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
        assert launcher, "opentelemetry-instrument is installed with the package's otlp extra"
        workdir.mkdir(parents=True, exist_ok=True)
        self.proc = Proc(
            workdir.name,
            [launcher, sys.executable, str(WORKLOAD)],
            env,
            workdir / "stderr.log",
            stdin=env.get("WORKLOAD_WAIT_STDIN") == "1",
            stdout=workdir / "stdout.log",
        )
        register(self.proc)

    def stdout(self) -> str:
        return self.proc.stdout.read_text(errors="replace") if self.proc.stdout.exists() else ""

    def wait_calls_done(self, timeout: float = 60.0) -> None:
        def done() -> bool:
            if "calls done" in self.stdout():
                return True
            if not self.proc.alive:
                pytest.fail(f"workload exited with {self.proc.popen.returncode}:\n{self.tail()}")
            return False

        wait_until(done, timeout, "the workload's calls")

    def wait_exit(self, timeout: float = 60.0) -> None:
        try:
            code = self.proc.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"workload still running after {timeout:.0f} s:\n{self.tail()}")
        assert code == 0, f"workload exited with {code}:\n{self.tail()}"

    def release(self) -> None:
        """Close its standard input (a WORKLOAD_WAIT_STDIN=1 workload then exits)."""
        assert self.proc.popen.stdin is not None
        self.proc.popen.stdin.close()

    def tail(self) -> str:
        return self.proc.tail(60)


# ------------------------------------------------------------------------------------------
# Fixtures
# ------------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def collector_bin() -> str:
    """The collector distribution, built (or found in the cache) by collector/build.sh."""
    try:
        run = subprocess.run(
            ["bash", str(REPO / "collector" / "build.sh")],
            capture_output=True,
            text=True,
            timeout=1200,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        unavailable(f"collector/build.sh did not finish: {exc}")
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines or not os.access(lines[-1], os.X_OK):
        unavailable(f"no collector binary (collector/build.sh: {run.stderr.strip()[-2000:]})")
    return lines[-1]


@pytest.fixture(scope="session")
def prometheus_bin() -> str:
    binary = shutil.which("prometheus") or "/usr/bin/prometheus"
    try:
        subprocess.run([binary, "--version"], capture_output=True, timeout=30, check=True)
    except (OSError, subprocess.SubprocessError) as exc:
        unavailable(f"no usable prometheus binary ({binary}: {exc})")
    return binary


@pytest.fixture
def procs(request: pytest.FixtureRequest) -> Iterator[Callable[[Proc], None]]:
    """Registers processes to stop (group-wide) at the end of the test, whatever happens."""
    started: list[Proc] = []
    request.node.stash[_PROCS] = started
    yield started.append
    for proc in reversed(started):
        proc.stop()


@pytest.fixture
def start_collector(
    collector_bin: str, tmp_path: Path, procs: Callable[[Proc], None]
) -> Callable[..., Collector]:
    """``start_collector(name="collector", config=COLLECTOR_CONFIG)``: a started collector."""

    def start(name: str = "collector", config: Path = COLLECTOR_CONFIG) -> Collector:
        workdir = tmp_path / name
        workdir.mkdir()
        return Collector(collector_bin, workdir, procs, config).start()

    return start


@pytest.fixture
def start_prometheus(
    prometheus_bin: str, tmp_path: Path, procs: Callable[[Proc], None]
) -> Callable[..., Prometheus]:
    """``start_prometheus(collectors=[...], apps=[port, ...])``: a ready Prometheus."""

    def start(collectors: Sequence[Collector] = (), apps: Sequence[int] = ()) -> Prometheus:
        workdir = tmp_path / "prometheus"
        workdir.mkdir()
        return Prometheus(prometheus_bin, workdir, procs, collectors, apps).start()

    return start


@pytest.fixture
def fake_openai() -> Iterator[Callable[[Sequence[Script]], FakeOpenAIServer]]:
    """``fake_openai(scripts)``: a started fake OpenAI server with ``scripts`` queued."""
    servers: list[FakeOpenAIServer] = []

    def start(scripts: Sequence[Script]) -> FakeOpenAIServer:
        server = FakeOpenAIServer().start()
        servers.append(server)
        server.enqueue(*scripts)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def run_workload(tmp_path: Path, procs: Callable[[Proc], None]) -> Callable[..., Workload]:
    """``run_workload(name, server, collector=None, prometheus_port=None, **env)``.

    With a collector: OTLP/HTTP (protobuf) metrics and traces to it. With ``prometheus_port``:
    the SDK's in-process Prometheus exporter on that port, no traces. Metrics are exported every
    500 ms and spans every 200 ms; ``env`` adds or overrides variables.
    """

    def run(
        name: str,
        server: FakeOpenAIServer,
        collector: Collector | None = None,
        prometheus_port: int | None = None,
        **extra: str,
    ) -> Workload:
        env = clean_env(
            OPENAI_BASE_URL=server.base_url,
            OPENAI_API_KEY="sk-not-a-real-key",
            OTEL_SERVICE_NAME=name,
            OTEL_LOGS_EXPORTER="none",
            OTEL_METRIC_EXPORT_INTERVAL="500",
            OTEL_BSP_SCHEDULE_DELAY="200",
            OTEL_PYTHON_DISABLED_INSTRUMENTATIONS=OTHER_INSTRUMENTORS,
            PYTHONUNBUFFERED="1",
            PYTHONWARNINGS="ignore",
        )
        if collector is not None:
            env.update(
                OTEL_EXPORTER_OTLP_ENDPOINT=collector.otlp_http,
                OTEL_EXPORTER_OTLP_PROTOCOL="http/protobuf",
                OTEL_TRACES_EXPORTER="otlp",
                OTEL_METRICS_EXPORTER="otlp",
            )
        else:
            assert prometheus_port is not None, "a collector or an in-process Prometheus port"
            env.update(
                OTEL_TRACES_EXPORTER="none",
                OTEL_METRICS_EXPORTER="prometheus",
                OTEL_EXPORTER_PROMETHEUS_HOST="127.0.0.1",
                OTEL_EXPORTER_PROMETHEUS_PORT=str(prometheus_port),
            )
        env.update(extra)
        return Workload(tmp_path / f"app-{name}", env, procs)

    return run


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    report = yield
    if report.failed and report.when in ("setup", "call"):
        for proc in item.stash.get(_PROCS, []):
            report.sections.append((f"log tail: {proc.name}", proc.tail()))
    return report
