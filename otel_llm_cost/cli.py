"""The ``otel-llm-cost`` command: ``prices``, ``demo``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _cmd_prices(args: argparse.Namespace) -> int:
    from .pricing import PriceBook, PriceFileError, load_price_file

    if args.check:
        try:
            entries = load_price_file(args.check)
        except PriceFileError as err:
            for problem in err.problems:
                print(_problem_line(problem), file=sys.stderr)
            print(f"{args.check}: {len(err.problems)} problem(s)", file=sys.stderr)
            return 1
        except OSError as err:
            print(f"{args.check}: {err.strerror or err}", file=sys.stderr)
            return 1
        print(f"{args.check}: OK, {len(entries)} model(s)")
        return 0
    if not args.model:
        print("otel-llm-cost prices: give a MODEL, or --check FILE", file=sys.stderr)
        return 2
    book = PriceBook(args.prices_file)
    pricer = book.pricer(args.provider, args.model)
    if pricer.status == "unpriced":
        print(f"{args.model} ({args.provider}): unpriced (not in the catalog or the price file)")
        return 1
    rates = pricer.rates()
    print(f"{args.model} ({args.provider}): {pricer.status}, from {pricer.source}")
    print("USD per 1M tokens:")
    for name in ("input", "cache_read", "cache_write", "cache_write_1h", "output", "reasoning"):
        value = getattr(rates, name) * 1_000_000 if rates is not None else 0.0
        print(f"  {name:<15} {value:>12.6f}")
    return 0


def _problem_line(problem: object) -> str:
    file = getattr(problem, "file", "?")
    line = getattr(problem, "line", None)
    where = f"{file}:{line}" if line else str(file)
    parts = [p for p in (getattr(problem, "entry", None), getattr(problem, "field", None)) if p]
    field = ".".join(str(p) for p in parts)
    message = getattr(problem, "message", str(problem))
    return f"{where}: {field}: {message}" if field else f"{where}: {message}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(port=args.port, keep_running=args.keep_running)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="otel-llm-cost", description="What every LLM call costs, as OpenTelemetry telemetry."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    prices = sub.add_parser("prices", help="show a model's prices, or check a price file")
    prices.add_argument("model", nargs="?", help="model id, e.g. gpt-4o-mini")
    prices.add_argument(
        "--provider", default="openai", help="gen_ai.provider.name (default openai)"
    )
    prices.add_argument(
        "--prices-file",
        default=None,
        help="price override file (default: $OTEL_LLM_COST_PRICES_FILE)",
    )
    prices.add_argument("--check", metavar="FILE", help="validate a price file and exit")
    prices.set_defaults(func=_cmd_prices)

    demo = sub.add_parser(
        "demo", help="run an instrumented workload against a built-in fake provider"
    )
    demo.add_argument("--port", type=int, default=0, help="Prometheus metrics port (default: free)")
    demo.add_argument(
        "--keep-running", action="store_true", help="keep serving /metrics after the summary"
    )
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "prices_file", None) is None and args.command == "prices":
        import os

        args.prices_file = os.environ.get("OTEL_LLM_COST_PRICES_FILE") or None
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
