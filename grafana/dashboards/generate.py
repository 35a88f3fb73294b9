"""Generate the Grafana dashboards of otel-llm-cost from their sources in ``src/``.

    python grafana/dashboards/generate.py           # (re)write the JSON files next to this one
    python grafana/dashboards/generate.py --check   # exit 1 if a JSON file is not up to date

Needs the Grafana Foundation SDK (``pip install -e '.[test]'``, Python >= 3.11). The JSON is
written with sorted keys, an indent of 2 and a trailing newline, so that regenerating an
unchanged source gives the same bytes. Grafana loads it through the file provider of
``grafana/provisioning/dashboards/llm-cost.yml``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"

#: JSON file -> source module (in ``src/``) whose ``build()`` returns the dashboard.
DASHBOARDS: dict[str, str] = {
    "llm-cost-cockpit.json": "cockpit",
    "llm-cost-drilldown.json": "drilldown",
}


def _module(name: str) -> Any:
    if str(SRC) not in sys.path:
        sys.path.insert(0, str(SRC))
    return importlib.import_module(name)


def render() -> dict[str, str]:
    """File name -> the JSON text it must contain."""
    dumps = _module("dashkit").dumps
    return {name: dumps(_module(module).build()) for name, module in DASHBOARDS.items()}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is out of date"
    )
    parser.add_argument(
        "--out", type=Path, default=HERE, help="directory to write to (default: next to this)"
    )
    args = parser.parse_args(argv)
    stale = []
    for name, text in render().items():
        path = args.out / name
        current = path.read_text(encoding="utf-8") if path.exists() else None
        if current == text:
            continue
        if args.check:
            stale.append(name)
            continue
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    if stale:
        print(
            f"out of date: {', '.join(stale)}; run python grafana/dashboards/generate.py",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
