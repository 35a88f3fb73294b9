"""otel-llm-cost beside the other OpenTelemetry instrumentations of the openai SDK, same method as
``overhead.py``: an openai chat call (non-streamed) and a streamed one (per chunk), each peer in
fresh child processes with the same OpenTelemetry SDK set-up, against the same uninstrumented
baseline, in one run.

Run it through ``bash bench/peers.sh`` (which builds the cached virtualenv with the peers and
openai 2.x / anthropic 0.x); inside that virtualenv, by hand::

    python bench/peers.py                    # wall clock and callgrind instructions
    python bench/peers.py --no-callgrind     # wall clock only
    python bench/peers.py --quick            # tiny sizes: checks that every peer runs
    python bench/peers.py --peers openlit,ours --json out.json

The peers and how each is set up: bench/harness/instrumentations.py (and bench/README.md).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import instrumentations, measure, providers, report
from harness.child import child_main

#: The entry script of the children (they are the same as overhead.py's).
CHILD_SCRIPT = Path(__file__).resolve().parent / "overhead.py"
CANDIDATES = ["ours", "ours_no_stream_usage", *(m.name for m in instrumentations.PEERS)]
#: The module whose presence says a peer is installed.
_PEER_MODULES = {
    "openai_v2": "opentelemetry.instrumentation.openai_v2",
    "genai_openai": "opentelemetry.instrumentation.genai.openai",
    "openllmetry": "opentelemetry.instrumentation.openai",
    "openlit": "openlit",
}


def config(args: argparse.Namespace) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "provider": "openai",
        "kinds": ["sync", "async"] if args.include_async else ["sync"],
        "profile_top": 15,
    }
    if args.quick:
        cfg.update(
            sizes=[1, 20], rounds=1, blocks=3, block_ms=4.0, warmup_calls=20, warmup_s=0.05,
            memory_calls=50, k=3, k_big=2, warmup=3, warmup_big=1,
        )  # fmt: skip
    else:
        cfg.update(
            sizes=[1, 1000], rounds=6, blocks=15, block_ms=30.0, warmup_calls=200,
            warmup_s=0.5, memory_calls=1000, k=10, k_big=2, warmup=20, warmup_big=1,
        )  # fmt: skip
    if args.rounds:
        cfg["rounds"] = args.rounds
    return cfg


def installed(mode: str) -> bool:
    module = _PEER_MODULES.get(mode)
    if module is None or measure.python_for(mode) != sys.executable:
        return True
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def peers_table(wall: dict[str, Any], cg: dict[str, Any] | None, modes: list[str]) -> str:
    header = [
        "per call / per chunk, added to an uninstrumented call",
        "non-streamed call (instructions)",
        "per streamed chunk (instructions)",
        "non-streamed call (wall clock)",
        "per streamed chunk (wall clock)",
        "import + instrument() (start-up)",
        "RSS added",
    ]
    rows = []
    for mode in modes:
        w = wall["modes"][mode]
        row = [instrumentations.get(mode).label]
        if cg:
            c = cg["modes"][mode]
            call, chunk = c["rows"]["sync_call"], c["per_chunk"]["sync"]
            row.append(f"{call['overhead_ir'] / 1e3:+,.0f} k ({call['overhead_pct']:+.1f}%)")
            row.append(f"{chunk['overhead_ir'] / 1e3:+,.1f} k ({chunk['overhead_pct']:+.1f}%)")
        else:
            row += ["-", "-"]
        call, chunk = w["rows"]["sync_call"]["wall"], w["per_chunk"]["sync"]["wall"]
        row.append(f"{call['overhead_us']:+.0f} µs ({call['overhead_pct']:+.0f}%)")
        row.append(f"{chunk['overhead_us']:+.2f} µs ({chunk['overhead_pct']:+.1f}%)")
        st = w["startup"]
        row.append(f"{st['startup']['import_ms'] + st['startup']['instrument_ms']:.0f} ms")
        row.append(report.kib_mib(st["memory"]["total_added_kib"]))
        rows.append(row)
    return report.markdown(rows, header)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--peers", help=f"comma-separated, from {','.join(CANDIDATES)}")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: does every peer run")
    parser.add_argument("--no-callgrind", action="store_true", help="wall clock only")
    parser.add_argument("--async", dest="include_async", action="store_true", help="async too")
    parser.add_argument("--rounds", type=int, help="paired rounds (default 6, quick 1)")
    parser.add_argument("--json", metavar="FILE", help="save all results as JSON")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0

    wanted = args.peers.split(",") if args.peers else CANDIDATES
    unknown = [m for m in wanted if m not in CANDIDATES]
    if unknown:
        parser.error(f"unknown peer(s) {', '.join(unknown)}; choose from {', '.join(CANDIDATES)}")
    missing = [m for m in wanted if not installed(m)]
    for mode in missing:
        print(f"peers: {mode} is not installed here, left out", file=sys.stderr)
    modes = ["base", *(m for m in wanted if m not in missing)]
    callgrind = not args.no_callgrind
    if callgrind and shutil.which("valgrind") is None:
        parser.error("callgrind needs valgrind on PATH (or pass --no-callgrind)")
    cfg = config(args)
    progress = "peers" if sys.stderr.isatty() else None
    started = time.monotonic()
    dists = [
        *providers.get("openai").distributions,
        "opentelemetry-sdk",
        "anthropic",
        *(d for m in modes for d in instrumentations.get(m).distributions),
    ]
    env = measure.versions(dists)
    env["loadavg_start"] = measure.loadavg()
    wall = measure.measure_wall_clock(CHILD_SCRIPT, cfg, modes, progress)
    cg = measure.measure_instructions(CHILD_SCRIPT, cfg, modes, progress) if callgrind else None
    seconds = time.monotonic() - started

    print(
        f"Peers, openai chat.completions.create (o4-mini): Python {env['python']}, "
        + ", ".join(f"{d} {v}" for d, v in env["packages"].items() if v)
        + f"; otel_llm_cost at {env['package_tree'] or '?'}; nproc {env['nproc']} "
        f"({env.get('cpu', '?')}); load average {env['loadavg_start']} -> {measure.loadavg()}"
    )
    print()
    for mode in modes[1:]:
        found = wall["modes"][mode]["startup"]["startup"]["versions"]
        print(f"- {instrumentations.get(mode).label}: {instrumentations.get(mode).setup}")
        print("    versions: " + ", ".join(f"{d} {v}" for d, v in found.items() if v))
        if measure.python_for(mode) != sys.executable:
            print(f"    interpreter: {measure.python_for(mode)}")
        print(f"    metrics it recorded: {', '.join(wall['metrics'][mode]) or 'none'}")
    print()
    small, large = cfg["sizes"][0], cfg["sizes"][-1]
    base_call = wall["modes"][modes[1]]["rows"]["sync_call"]["wall"]["baseline_us"]
    base_chunk = wall["modes"][modes[1]]["per_chunk"]["sync"]["wall"]["baseline_us"]
    text = f"Baseline (the uninstrumented sync call): {base_call:.0f} µs per call, "
    text += f"{base_chunk:.2f} µs per chunk"
    if cg:
        text += (
            f"; {cg['baseline']['sync_call'] / 1e3:,.0f} k instructions per call, "
            f"{cg['modes'][modes[1]]['per_chunk']['sync']['baseline_ir'] / 1e3:,.1f} k per chunk"
        )
    print(text + f" (per chunk from streams of N={small} and N={large} chunks).")
    print()
    print(peers_table(wall, cg, modes[1:]))
    for mode in modes[1:]:
        print()
        print(f"--- {instrumentations.get(mode).label}")
        report.print_wall(wall, mode, cfg)
        if cg:
            report.print_instructions(cg, mode, cfg)
        report.print_startup(wall, mode, "sync call")
    print(f"\n(took {seconds:.0f} s)")
    if args.json:
        out = {"environment": env, "config": cfg, "wall_clock": wall, "instructions": cg}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"results saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
