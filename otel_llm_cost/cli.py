"""The ``otel-llm-cost`` command: ``prices``, ``demo``, ``budgets``, ``report``."""

from __future__ import annotations

import argparse
import sys
import time
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


#: ``otel-llm-cost report`` exit codes.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_EXCEEDED = 0, 1, 2, 3


def _cmd_report(args: argparse.Namespace) -> int:
    from datetime import timezone, tzinfo

    from .report import (
        PrometheusAPI,
        ReportError,
        build_report,
        parse_range,
        render_json,
        render_text,
    )

    def usage(message: str) -> int:
        print(f"otel-llm-cost report: {message}", file=sys.stderr)
        return EXIT_USAGE

    tz: tzinfo
    if args.tz.upper() == "UTC":  # needs no time zone database
        tz, tz_name = timezone.utc, "UTC"
    else:
        import zoneinfo

        try:
            tz, tz_name = zoneinfo.ZoneInfo(args.tz), args.tz
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return usage(
                f"--tz: unknown time zone {args.tz!r} (an IANA name such as Europe/Paris, "
                "America/New_York, UTC)"
            )
    if args.top < 1:
        return usage(f"--top: must be at least 1, got {args.top}")
    if not args.timeout > 0:
        return usage(f"--timeout: must be a positive number of seconds, got {args.timeout:g}")
    now = time.time()
    try:
        parse_range(args.range, now, tz)
        api = PrometheusAPI(args.prometheus, timeout=args.timeout)
    except ValueError as err:
        return usage(str(err))
    try:
        report = build_report(api, now, tz, args.range, args.top, tz_name)
    except ReportError as err:
        print(f"otel-llm-cost report: {err}", file=sys.stderr)
        return EXIT_ERROR
    sys.stdout.write(render_json(report) if args.json else render_text(report))
    return EXIT_EXCEEDED if report["status"] == "exceeded" else EXIT_OK


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None


REPORT_HELP = """\
The cockpit's headline numbers from Prometheus: spend today, this week and this month
(calendar, in --tz) and the month-end projection; the rolling windows of the budget alerts
(last 24 h / 7 d / 30 d) against every llm_budget_USD budget (a scoped one against its slice),
with the alerts' thresholds (warning from 80 %, exceeded above 100 %) and the
LLMMonthlyBudgetProjectedOverrun projection; top models and agents by cost, requests, tokens by
type and the shares of unpriced and estimated requests over --range.

Spend is what each counter gained inside a window (a series first seen inside it counts in
full), so figures can differ slightly from the alerts' increase().

exit status: 0 ok; 1 error (Prometheus unreachable, a query refused, no llm_* series yet);
2 usage; 3 a budget is exceeded (calendar or rolling), e.g. for cron.
"""


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

    from .report import DEFAULT_URL

    report = sub.add_parser(
        "report",
        help="spend, budgets, projection and top models/agents, read from Prometheus",
        description=REPORT_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    report.add_argument(
        "--prometheus",
        default=DEFAULT_URL,
        metavar="URL",
        help=f"Prometheus base URL (default {DEFAULT_URL})",
    )
    report.add_argument(
        "--range",
        default="month",
        metavar="RANGE",
        help=(
            "range of the top models/agents, requests and tokens: today, week, month "
            "(calendar, in --tz) or a duration such as 24h, 7d, 90m (default month)"
        ),
    )
    report.add_argument(
        "--top", type=int, default=10, metavar="N", help="models and agents to list (default 10)"
    )
    report.add_argument(
        "--tz",
        default="UTC",
        metavar="ZONE",
        help="time zone of today / this week / this month, e.g. Europe/Paris (default UTC)",
    )
    report.add_argument("--json", action="store_true", help="machine-readable JSON output")
    report.add_argument(
        "--timeout",
        type=_seconds,
        default=10.0,
        metavar="SECONDS",
        help="timeout of each request to Prometheus (default 10)",
    )
    report.set_defaults(func=_cmd_report)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "prices_file", None) is None and args.command == "prices":
        import os

        args.prices_file = os.environ.get("OTEL_LLM_COST_PRICES_FILE") or None
    return int(args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
