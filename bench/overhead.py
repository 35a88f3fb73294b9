"""What the instrumentation adds to a real provider SDK call: wall clock, instructions, start-up,
memory, for each supported SDK (openai, anthropic, google-genai, legacy google-generativeai).

Run from the repository root::

    python bench/overhead.py                          # every provider: wall clock, start-up, memory
    python bench/overhead.py --callgrind              # and instructions per call under valgrind
    python bench/overhead.py --providers openai,anthropic
    python bench/overhead.py --quick                  # tiny sizes, a few seconds a provider (CI)
    python bench/overhead.py --profile                # cProfile of the added work
    python bench/overhead.py --json out.json

Each SDK talks to an in-process fake transport that answers pre-built bytes in the provider's
wire format (see bench/harness/providers/); no socket is opened. Every measurement runs in fresh
child processes (one per provider and mode) with the same OpenTelemetry SDK set-up; the
instrumented child calls ``otel_llm_cost.instrument()`` after it, the baseline child does not.
The parent asks the children for timed blocks in turn (block pairs) and reports medians. See
bench/README.md for what each number means.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import measure, providers, report
from harness.child import child_main

HERE = Path(__file__).resolve()
MODES = ["base", "ours"]


def config(args: argparse.Namespace) -> dict[str, Any]:
    if args.quick:
        cfg: dict[str, Any] = {
            "sizes": [1, 5, 20],
            "rounds": 1,
            "blocks": 3,
            "block_ms": 4.0,
            "warmup_calls": 20,
            "warmup_s": 0.05,
            "memory_calls": 20,
            "k": 3,
            "k_big": 2,
            "warmup": 3,
            "warmup_big": 1,
        }
    else:
        cfg = {
            "sizes": [1, 100, 1000],
            "rounds": 6,
            "blocks": 15,
            "block_ms": 30.0,
            "warmup_calls": 200,
            "warmup_s": 0.5,
            "memory_calls": 1000,
            "k": 10,
            "k_big": 2,
            "warmup": 20,
            "warmup_big": 1,
        }
    if args.rounds:
        cfg["rounds"] = args.rounds
    cfg["kinds"] = ["sync", "async"]
    cfg["profile_calls"] = 200 if args.quick else 2000
    cfg["profile_streams"] = 2 if args.quick else 20
    cfg["profile_top"] = 15
    return cfg


def parse_providers(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in providers.PROVIDERS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown provider(s) {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join(providers.PROVIDERS)}"
        )
    return names


def print_provider(name: str, res: dict[str, Any], cfg: dict[str, Any]) -> None:
    provider = providers.get(name)
    packages = res["versions"]
    print()
    print("=" * 100)
    print(f"{name}: {provider.call_label}")
    print("  " + ", ".join(f"{d} {v}" for d, v in packages.items() if v))
    for note in provider.notes:
        print(f"  note: {note}")
    print()
    report.print_wall(res["wall_clock"], "ours", res["config"])
    if "instructions" in res:
        print()
        report.print_instructions(res["instructions"], "ours", res["config"])
    print()
    report.print_startup(res["wall_clock"], "ours", "the first scenario, sync call")
    if "profile" in res:
        report.print_profile(res["profile"])


def print_report(env: dict[str, Any], results: dict[str, Any]) -> None:
    print(
        f"otel_llm_cost overhead: Python {env['python']}, "
        + ", ".join(f"{d} {v}" for d, v in env["packages"].items())
        + f"; otel_llm_cost at {env['package_tree'] or '?'}; nproc {env['nproc']} "
        f"({env.get('cpu', '?')}); load average {env['loadavg_start']} -> {env['loadavg_end']}"
    )
    for name, res in results.items():
        print_provider(name, res, res["config"])
    print()
    print("=" * 100)
    print(
        "Summary: what otel_llm_cost adds to one uninstrumented SDK call (wall: paired medians;\n"
        "Ir: callgrind instructions; per chunk = ((instr_N-base_N) - (instr_1-base_1)) / (N-1))"
    )
    print()
    print(report.provider_summary(results))
    print()
    print("The uninstrumented SDK's own cost (what the percentages are of):")
    print()
    print(report.baseline_summary(results))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--providers",
        type=parse_providers,
        default=list(providers.PROVIDERS),
        help=f"comma-separated, from {','.join(providers.PROVIDERS)} (default: all)",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes (CI smoke test)")
    parser.add_argument("--callgrind", action="store_true", help="also count instructions")
    parser.add_argument("--profile", action="store_true", help="also cProfile the call path")
    parser.add_argument("--rounds", type=int, help="paired rounds (default 6, quick 1)")
    parser.add_argument("--json", metavar="FILE", help="save all results as JSON")
    parser.add_argument("--report", metavar="FILE", help="print the report of a --json file")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        child_main(json.loads(args.child))
        return 0
    if args.report:
        saved = json.loads(Path(args.report).read_text())
        print_report(saved["environment"], saved["providers"])
        print(f"\n(took {saved['seconds']:.0f} s)")
        return 0

    base_cfg = config(args)
    if args.callgrind and shutil.which("valgrind") is None:
        parser.error("--callgrind needs valgrind on PATH")
    progress = sys.stderr.isatty()
    started = time.monotonic()
    env = measure.versions(["opentelemetry-sdk", "opentelemetry-api", "wrapt", "otel-llm-cost"])
    env["loadavg_start"] = measure.loadavg()
    results: dict[str, Any] = {}
    for name in args.providers:
        provider = providers.get(name)
        cfg = {**base_cfg, "provider": name}
        res: dict[str, Any] = {
            "config": cfg,
            "versions": measure.versions(list(provider.distributions))["packages"],
        }
        label = name if progress else None
        res["wall_clock"] = measure.measure_wall_clock(HERE, cfg, MODES, label)
        if args.callgrind:
            res["instructions"] = measure.measure_instructions(HERE, cfg, MODES, label)
        if args.profile:
            res["profile"] = measure.measure_profile(HERE, cfg, "ours")
        results[name] = res
    seconds = time.monotonic() - started

    env["loadavg_end"] = measure.loadavg()
    print_report(env, results)
    print(f"\n(took {seconds:.0f} s)")
    if args.json:
        out = {"environment": env, "providers": results, "seconds": seconds}
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
        print(f"results saved to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
