"""Smoke test of the overhead benchmark: ``bench/overhead.py --quick`` runs and reports.

No timing is asserted (CI machines are noisy); this only keeps the script working: the fake
transport, the instrumented and baseline child processes and the checks they make (the
instrumented child fails if no span, cost or metric is recorded), the report and the JSON file.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "bench" / "overhead.py"

ROWS = (
    "sync call",
    "async call",
    "sync stream N=1",
    "async stream N=1",
    "sync chunk",
    "async chunk",
    "otel_llm_cost.instrument()",
    "first call, instrumented",
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
    for row in ROWS:
        assert row in proc.stdout, f"{row!r} missing from the report:\n{proc.stdout}"
    result = json.loads(out.read_text())
    rows = result["wall_clock"]["rows"]
    assert {"sync_call", "async_call"} <= set(rows)
    assert set(result["wall_clock"]["per_chunk"]) == {"sync", "async"}
