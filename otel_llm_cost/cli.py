"""The ``otel-llm-cost`` command: ``prices``, ``demo``, ``budgets``."""

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


def _scope_arg(text: str) -> tuple[str, str]:
    label, sep, value = text.partition("=")
    if not sep or not label.strip():
        raise argparse.ArgumentTypeError(
            f"expected LABEL=VALUE, e.g. gen_ai_agent_name=x: {text!r}"
        )
    return label.strip(), value


def _cmd_budgets(args: argparse.Namespace) -> int:
    from .budgets import (
        EXAMPLE_BUDGETS,
        Budget,
        BudgetError,
        load_budgets_file,
        make_budget,
        render_budgets,
    )

    budgets: list[Budget] = []
    try:
        if args.example:
            budgets.extend(EXAMPLE_BUDGETS)
        if args.from_file:
            budgets.extend(load_budgets_file(args.from_file))
        scope = dict(args.scope) if args.scope else None
        if args.scope and len(args.scope) > 1:
            labels = " and ".join(label for label, _ in args.scope)
            raise BudgetError([f"--scope: at most one scope label per budget, got {labels}"])
        flagged = [(w, getattr(args, w)) for w in ("day", "week", "month")]
        if args.scope and all(usd is None for _, usd in flagged):
            raise BudgetError(["--scope applies to --day/--week/--month: give at least one"])
        for window, usd in flagged:
            if usd is not None:
                budgets.append(make_budget(window, usd, scope, where=f"--{window}: "))
        if not budgets:
            raise BudgetError(
                ["no budget given: use --day/--week/--month USD, --from FILE or --example"]
            )
        text = render_budgets(budgets)
    except BudgetError as err:
        for problem in err.problems:
            print(f"otel-llm-cost budgets: {problem}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"otel-llm-cost budgets: {args.from_file}: {err.strerror or err}", file=sys.stderr)
        return 2
    if args.output in (None, "-"):
        sys.stdout.write(text)
        return 0
    import os
    import tempfile
    from pathlib import Path

    # Written next to the target and renamed over it: Prometheus never reads half a file.
    target = Path(args.output)
    tmp = None
    try:
        if target.exists():
            mode = target.stat().st_mode & 0o777
        else:  # what open() would give (mkstemp's 0600 would hide it from Prometheus)
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except OSError as err:
        if tmp is not None and os.path.exists(tmp):
            os.unlink(tmp)
        print(f"otel-llm-cost budgets: {args.output}: {err.strerror or err}", file=sys.stderr)
        return 1
    print(
        f"{args.output}: {len(budgets)} budget(s); check with "
        f"`promtool check rules {args.output}`, then reload Prometheus",
        file=sys.stderr,
    )
    return 0


def _usd(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of USD: {text!r}") from None


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

    budgets = sub.add_parser(
        "budgets",
        help="write the Prometheus budget rules (llm_budget_USD) for the budget alerts",
        description=(
            "Write a Prometheus rule file of LLM budgets (group llm-budgets, series "
            "llm_budget_USD{window=...}) in the format of alerts/budgets.yml. Windows are "
            "rolling: day = last 24 h, week = last 7 d, month = last 30 d. --day/--week/--month "
            "give budgets of all calls, or of one slice with --scope; --from adds the budgets "
            "of a YAML file: budgets: [{window: day, usd: 3}, {window: month, usd: 50, "
            "scope: {gen_ai_agent_name: support-bot}}]."
        ),
    )
    for window, span in (("day", "24 h"), ("week", "7 d"), ("month", "30 d")):
        budgets.add_argument(
            f"--{window}",
            type=_usd,
            metavar="USD",
            help=f"budget in USD for the last {span} (rolling)",
        )
    budgets.add_argument(
        "--scope",
        type=_scope_arg,
        action="append",
        metavar="LABEL=VALUE",
        help=(
            "scope the --day/--week/--month budgets to one slice: gen_ai_agent_name, "
            "llm_feature, gen_ai_provider_name or gen_ai_request_model (at most one)"
        ),
    )
    budgets.add_argument(
        "--from",
        dest="from_file",
        metavar="FILE",
        help="YAML file of budgets (budgets: [{window, usd, scope}]), added to the options",
    )
    budgets.add_argument(
        "--example",
        action="store_true",
        help="add the example budgets of alerts/budgets.yml (3/12/20 USD, support-bot 1 USD/day)",
    )
    budgets.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write there (e.g. alerts/budgets.yml); default stdout",
    )
    budgets.set_defaults(func=_cmd_budgets)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "prices_file", None) is None and args.command == "prices":
        import os

        args.prices_file = os.environ.get("OTEL_LLM_COST_PRICES_FILE") or None
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
