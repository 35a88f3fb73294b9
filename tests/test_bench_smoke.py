"""Smoke test of the overhead benchmark: ``bench/overhead.py --quick`` runs and reports, for every
provider SDK.

No timing is asserted (CI machines are noisy); this only keeps the script working: the fake
transports of each SDK, the instrumented and baseline child processes and the checks they make
(the instrumented child fails if no span, cost or metric is recorded, the baseline if anything
is; both if the caller sees other chunks than expected or anything tries the network), the
report and the JSON file. The peers comparison (bench/peers.sh) installs packages and is not
run here.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "overhead.py"

PROVIDERS = ("openai", "anthropic", "google-genai", "google-generativeai")
ROWS = (
    "sync call",
    "async call",
    "sync stream N=1",
    "async stream N=1",
    "sync chunk",
    "async chunk",
    "instrument()",
    "first call (the first scenario, sync call), instrumented",
    "memory added",
)


def test_overhead_quick(tmp_path: Path) -> None:
    out = tmp_path / "overhead.json"
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    sections = proc.stdout.split("=" * 100)
    for name in PROVIDERS:
        section = next((s for s in sections if s.lstrip().startswith(f"{name}:")), None)
        assert section is not None, f"no section for {name}:\n{proc.stdout}"
        for row in ROWS:
            assert row in section, f"{name}: {row!r} missing from the report:\n{section}"
    summary = sections[-1]
    for name in PROVIDERS:
        assert f"| {name} |" in summary, f"{name} missing from the summary:\n{summary}"
    result = json.loads(out.read_text())
    assert list(result["providers"]) == list(PROVIDERS)
    for name in PROVIDERS:
        wall = result["providers"][name]["wall_clock"]["modes"]["ours"]
        assert {"sync_call", "async_call"} <= set(wall["rows"])
        assert set(wall["per_chunk"]) == {"sync", "async"}


def test_overhead_rejects_unknown_provider() -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--providers", "openai,nope"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "unknown provider(s) nope" in proc.stderr


def test_call_breakdown_variants_record_what_they_say() -> None:
    """``bench/call_breakdown.py``'s children, run without valgrind: each variant records what
    its name says (the stripped ones are diagnostics; if the recorder's instruments were renamed
    they would fail here rather than measure the wrong thing)."""
    script = ROOT / "bench" / "call_breakdown.py"
    histograms = {
        "gen_ai.client.operation.duration",
        "gen_ai.client.token.usage",
        "llm.request.cost",
    }
    counters = {"llm.cost", "llm.tokens", "llm.requests"}
    seen = {}
    for variant in ("base", "ours", "no_histograms", "no_histograms_no_span"):
        proc = subprocess.run(
            [sys.executable, str(script), "--child", json.dumps(["openai", variant])],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
        seen[variant] = json.loads(line[len("RESULT ") :])
    calls = 40  # the last segment: 2K calls
    assert seen["base"] == {"spans": 0, "metrics": []}
    assert seen["ours"]["spans"] == calls
    assert histograms | counters <= set(seen["ours"]["metrics"])
    assert seen["no_histograms"]["spans"] == calls
    assert set(seen["no_histograms"]["metrics"]) == counters
    assert seen["no_histograms_no_span"] == {"spans": 0, "metrics": sorted(counters)}
