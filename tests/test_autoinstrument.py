"""An unchanged app under ``opentelemetry-instrument`` with the Prometheus exporter: the scraped
series carry the contract's names and labels."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from otel_llm_cost.fakes.openai_server import FakeOpenAIServer, Script

APP = Path(__file__).parent / "apps" / "plain_openai_app.py"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def scrape(port: int, deadline: float) -> str:
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
                return r.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_opentelemetry_instrument_exposes_contract_series(tmp_path: Path) -> None:
    launcher = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    assert launcher, "opentelemetry-instrument is installed with the package's otlp extra"
    port = free_port()
    with FakeOpenAIServer() as server:
        server.enqueue(Script(prompt_tokens=100, completion_tokens=20, cached_tokens=40))
        env = {
            **os.environ,
            "OPENAI_BASE_URL": server.base_url,
            "OPENAI_API_KEY": "sk-not-a-real-key",
            "OTEL_SERVICE_NAME": "plain-app",
            "OTEL_METRICS_EXPORTER": "prometheus",
            "OTEL_TRACES_EXPORTER": "none",
            "OTEL_LOGS_EXPORTER": "none",
            "OTEL_EXPORTER_PROMETHEUS_HOST": "127.0.0.1",
            "OTEL_EXPORTER_PROMETHEUS_PORT": str(port),
        }
        proc = subprocess.Popen(
            [launcher, sys.executable, str(APP)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()
            assert line.strip() == "calls done", proc.stderr.read() if proc.stderr else ""
            text = scrape(port, time.monotonic() + 20)
        finally:
            proc.kill()
            proc.wait(timeout=10)
        wire = server.exchanges[0].usage

    samples = [s for family in text_string_to_metric_families(text) for s in family.samples]
    names = {s.name for s in samples}
    for name in (
        "llm_cost_USD_total",
        "llm_tokens_total",
        "llm_requests_total",
        "llm_request_cost_USD_bucket",
        "gen_ai_client_token_usage_bucket",
        "gen_ai_client_operation_duration_seconds_bucket",
        "gen_ai_client_operation_time_to_first_chunk_seconds_bucket",
    ):
        assert name in names, name

    requests = [s for s in samples if s.name == "llm_requests_total"]
    assert sum(s.value for s in requests) == 3
    for sample in requests:
        assert sample.labels["gen_ai_provider_name"] == "openai"
        assert sample.labels["llm_usage_source"] == "provider"
        assert sample.labels["llm_price_status"] == "catalog"
        assert sample.labels["gen_ai_operation_name"] in {"chat", "embeddings"}
    tokens = {
        (s.labels["gen_ai_request_model"], s.labels["llm_token_type"]): s.value
        for s in samples
        if s.name == "llm_tokens_total"
    }
    assert tokens[("gpt-4o-mini", "cache_read")] == 40
    assert tokens[("gpt-4o-mini", "input")] >= 60
    assert wire is not None and wire["prompt_tokens"] == 100
    buckets = [
        s for s in samples if s.name == "llm_request_cost_USD_bucket" and s.labels["le"] == "1e-05"
    ]
    assert buckets, "advisory bucket boundaries are applied without a View"
    assert "sk-not-a-real-key" not in text


@pytest.mark.parametrize("name", ["llm_cost_openai"])
def test_entry_points_are_registered(name: str) -> None:
    from importlib.metadata import entry_points

    found = {ep.name: ep for ep in entry_points(group="opentelemetry_instrumentor")}
    assert name in found
    assert found[name].load().__name__.endswith("Instrumentor")
