"""The main job: ``otel-llm-cost demo`` runs offline and shows what it recorded."""

from __future__ import annotations

import re
import subprocess
import sys


def test_demo_runs_and_reports_cost() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "otel_llm_cost.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert "llm_cost_USD_total{" in out.stdout
    for model in ("gpt-4o-mini", "claude-sonnet-4-5", "gemini-2.5-flash", "my-finetune-v3"):
        assert model in out.stdout
    total = re.search(r"^total\s+(\d+)\s+([0-9.]+)$", out.stdout, re.MULTILINE)
    assert total, out.stdout
    assert int(total.group(1)) == 12 and float(total.group(2)) > 0
    assert "error 429: 1" in out.stdout and "provider/unpriced: 1" in out.stdout
    assert "demo-key-not-a-secret" not in out.stdout
    # The fine-tune has no price: its row says so instead of a $0 cost, and a line names it.
    row = next(line for line in out.stdout.splitlines() if line.startswith("my-finetune-v3 "))
    assert row.split()[-1] == "unpriced", row
    assert "unpriced (tokens counted, cost not" in out.stdout
    assert "my-finetune-v3 (1 request)" in out.stdout
