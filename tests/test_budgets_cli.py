"""``otel-llm-cost budgets`` and ``otel_llm_cost.budgets``: the rule file of LLM budgets."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from otel_llm_cost.budgets import (
    EXAMPLE_BUDGETS,
    SCOPE_LABELS,
    Budget,
    BudgetError,
    load_budgets_file,
    parse_budgets,
    render_budgets,
)
from otel_llm_cost.cli import main

ROOT = Path(__file__).resolve().parent.parent
BUDGETS_FILE = ROOT / "alerts" / "budgets.yml"
RULES_FILE = ROOT / "alerts" / "llm-cost-rules.yml"

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None and not os.environ.get("CI"),
    reason="promtool not on PATH (apt-get install prometheus)",
)


def semantics(text: str) -> tuple[str, list[tuple[str, float, dict[str, str]]]]:
    """``(group name, [(record, amount, labels)])`` of a budget rule file, comments aside."""
    data = yaml.safe_load(text)
    (group,) = data["groups"]
    assert set(group) <= {"name", "rules"}, "no interval or other group setting"
    rules = []
    for rule in group["rules"]:
        assert set(rule) == {"record", "expr", "labels"}, rule
        expr = rule["expr"]
        assert expr.startswith("vector(") and expr.endswith(")"), expr
        rules.append((rule["record"], float(expr[len("vector(") : -1]), dict(rule["labels"])))
    return group["name"], sorted(rules, key=repr)


def promtool_check(path: Path) -> None:
    assert PROMTOOL is not None, "promtool is needed in CI"
    run = subprocess.run(
        [PROMTOOL, "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "SUCCESS" in run.stdout, run.stdout + run.stderr


# ------------------------------------------------------------------------------------------
# render_budgets
# ------------------------------------------------------------------------------------------


def test_example_renders_the_semantics_of_alerts_budgets_yml() -> None:
    assert semantics(render_budgets(EXAMPLE_BUDGETS)) == semantics(BUDGETS_FILE.read_text())


def test_rendered_format_is_that_of_alerts_budgets_yml() -> None:
    """Same layout as the hand-written file: the rules block is line for line the same."""
    rendered = render_budgets(EXAMPLE_BUDGETS)

    def rules_block(text: str) -> list[str]:
        lines = text.splitlines()
        start = lines.index("groups:")
        return [line for line in lines[start:] if not line.strip().startswith("#")]

    assert rules_block(rendered) == rules_block(BUDGETS_FILE.read_text())
    assert rendered.endswith("\n") and not rendered.endswith("\n\n")
    assert rendered.startswith("# otel-llm-cost: LLM budgets (USD)")


def test_order_comments_and_amounts() -> None:
    text = render_budgets(
        [
            {"window": "month", "usd": 50, "scope": {"gen_ai_agent_name": "support-bot"}},
            {"window": "week", "usd": 12.5},
            {"window": "day", "usd": 0.01, "scope": {"llm_feature": "search"}},
            Budget("day", 3),
            Budget("month", 2e-05, ("gen_ai_request_model", "gpt-4o-mini")),
        ]
    )
    body = text[text.index("groups:") :]
    assert body.splitlines()[3:5] == [
        "      # Total spend of all LLM calls",
        "      - record: llm_budget_USD",
    ]
    order = [line.strip() for line in body.splitlines() if line.strip().startswith("expr")]
    assert order == [
        "expr: vector(3)",
        "expr: vector(12.5)",
        "expr: vector(50)",
        "expr: vector(0.01)",
        "expr: vector(2e-05)",
    ]
    assert '# Spend of agent "support-bot" only' in body
    assert '# Spend of feature "search" only' in body
    assert '# Spend of request model "gpt-4o-mini" only' in body
    _, rules = semantics(text)
    assert (
        "llm_budget_USD",
        2e-05,
        {"window": "month", "gen_ai_request_model": "gpt-4o-mini"},
    ) in rules


@pytest.mark.parametrize(
    "value",
    ["support-bot", "gpt-4o:2024-08-06", "true", "123", "a b", 'quote"d', "#hash", "é", "null"],
)
def test_label_values_survive_yaml(value: str) -> None:
    (rule,) = yaml.safe_load(render_budgets([Budget("day", 1, ("llm_feature", value))]))["groups"][
        0
    ]["rules"]
    assert rule["labels"] == {"window": "day", "llm_feature": value}


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ({"window": "year", "usd": 1}, "window: must be one of day, week, month"),
        ({"window": "day", "usd": 0}, "usd: must be a positive number"),
        ({"window": "day", "usd": -3}, "usd: must be a positive number"),
        ({"window": "day", "usd": math.inf}, "usd: must be a positive number"),
        ({"window": "day", "usd": math.nan}, "usd: must be a positive number"),
        ({"window": "day", "usd": "3"}, "usd: must be a positive number"),
        ({"window": "day", "usd": True}, "usd: must be a positive number"),
        (
            {"window": "day", "usd": 1, "scope": {"team": "search"}},
            "unknown label(s) team",
        ),
        (
            {
                "window": "day",
                "usd": 1,
                "scope": {"gen_ai_agent_name": "a", "llm_feature": "b"},
            },
            "at most one scope label per budget, got gen_ai_agent_name and llm_feature",
        ),
        ({"window": "day", "usd": 1, "scope": {}}, "scope: empty"),
        ({"window": "day", "usd": 1, "scope": {"llm_feature": ""}}, "empty value"),
        ({"window": "day", "usd": 1, "scope": "llm_feature=x"}, "must be a mapping"),
        ({"window": "day", "usd": 1, "team": "x"}, "unknown key(s) team"),
        ({"usd": 1}, "missing window"),
    ],
)
def test_invalid_budgets_are_rejected(budget: dict[str, Any], message: str) -> None:
    with pytest.raises(BudgetError) as caught:
        render_budgets([budget])
    assert any(message in problem for problem in caught.value.problems), caught.value.problems


def test_duplicates_and_nothing_are_rejected() -> None:
    with pytest.raises(BudgetError, match="two day budgets for all calls"):
        render_budgets([Budget("day", 1), Budget("day", 2)])
    with pytest.raises(BudgetError, match="two day budgets for llm_feature=x"):
        render_budgets([Budget("day", 1, ("llm_feature", "x"))] * 2)
    with pytest.raises(BudgetError, match="no budget"):
        render_budgets([])


def test_every_scope_label_is_one_the_rules_match() -> None:
    """The rules of alerts/llm-cost-rules.yml join budgets on exactly these scope labels."""
    rules = RULES_FILE.read_text()
    for label in SCOPE_LABELS:
        assert f'{label}!=""' in rules, label


@needs_promtool
def test_rendered_file_passes_promtool(tmp_path: Path) -> None:
    path = tmp_path / "budgets.yml"
    path.write_text(
        render_budgets(
            [
                *EXAMPLE_BUDGETS,
                Budget("month", 0.5, ("llm_feature", "a b")),
                Budget("week", 7, ("gen_ai_provider_name", "gcp.gemini")),
                Budget("week", 1e-5, ("gen_ai_request_model", "models:x/y")),
            ]
        )
    )
    promtool_check(path)


@needs_promtool
def test_rendered_budgets_feed_the_budget_rules(tmp_path: Path) -> None:
    """promtool test rules: a generated budget is read by budget:llm_cost_USD:ratio."""
    budgets = tmp_path / "budgets.yml"
    budgets.write_text(render_budgets([Budget("day", 4, ("gen_ai_agent_name", "bot"))]))
    test = {
        "rule_files": [str(RULES_FILE), str(budgets)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {
                        "series": 'llm_cost_USD_total{gen_ai_provider_name="openai",'
                        'gen_ai_request_model="m",gen_ai_agent_name="bot",llm_token_type="input"}',
                        "values": "0+1x120",
                    }
                ],
                "promql_expr_test": [
                    {
                        "expr": 'budget:llm_cost_USD:ratio{window="day"}',
                        "eval_time": "61m",
                        "exp_samples": [
                            {
                                "labels": 'budget:llm_cost_USD:ratio{window="day",'
                                'gen_ai_agent_name="bot"}',
                                "value": 15.25,  # 61 min x 1 USD / 4 USD
                            }
                        ],
                    }
                ],
            }
        ],
    }
    test_file = tmp_path / "test.yml"
    test_file.write_text(yaml.safe_dump(test))
    assert PROMTOOL is not None
    run = subprocess.run(
        [PROMTOOL, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stdout + run.stderr


# ------------------------------------------------------------------------------------------
# The small YAML format
# ------------------------------------------------------------------------------------------


def test_parse_the_documented_example() -> None:
    data = yaml.safe_load(
        "budgets: [{window: day, usd: 3}, "
        "{window: month, usd: 50, scope: {gen_ai_agent_name: support-bot}}]"
    )
    assert parse_budgets(data) == [
        Budget("day", 3.0),
        Budget("month", 50.0, ("gen_ai_agent_name", "support-bot")),
    ]


def test_parse_reports_every_problem_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(
        "budgets:\n"
        "  - {window: day, usd: 3}\n"
        "  - {window: fortnight, usd: -1}\n"
        "  - {window: week, usd: 5, scope: {gen_ai_agent_name: a, llm_feature: b}}\n"
    )
    with pytest.raises(BudgetError) as caught:
        load_budgets_file(path)
    problems = caught.value.problems
    assert len(problems) == 3, problems
    assert problems[0].startswith(f"{path}: budgets[1].window")
    assert problems[1].startswith(f"{path}: budgets[1].usd")
    assert problems[2].startswith(f"{path}: budgets[2].scope")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[]", "expected a mapping with a `budgets:` list"),
        ("budgets: {window: day}", "budgets: must be a list"),
        ("budgets: []\nextra: 1", "unknown key(s) extra"),
        ("budgets: [3]", "must be a mapping"),
        ("budgets: [{window: day", "not valid YAML"),
    ],
)
def test_bad_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "b.yaml"
    path.write_text(text)
    with pytest.raises(BudgetError) as caught:
        load_budgets_file(path)
    assert any(message in p for p in caught.value.problems), caught.value.problems


# ------------------------------------------------------------------------------------------
# The command
# ------------------------------------------------------------------------------------------


def test_cli_flags_to_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budgets", "--day", "3", "--week", "12", "--month", "20"]) == 0
    out = capsys.readouterr().out
    _, rules = semantics(out)
    assert rules == sorted(
        [
            ("llm_budget_USD", 3.0, {"window": "day"}),
            ("llm_budget_USD", 12.0, {"window": "week"}),
            ("llm_budget_USD", 20.0, {"window": "month"}),
        ],
        key=repr,
    )


def test_cli_reproduces_alerts_budgets_yml(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Flags for the total budgets plus a file for the agent's: alerts/budgets.yml again."""
    extra = tmp_path / "agent.yaml"
    extra.write_text(
        "budgets:\n  - {window: day, usd: 1, scope: {gen_ai_agent_name: support-bot}}\n"
    )
    out = tmp_path / "budgets.yml"
    argv = ["budgets", "--day", "3", "--week", "12", "--month", "20", "--from", str(extra)]
    assert main([*argv, "-o", str(out)]) == 0
    assert "4 budget(s)" in capsys.readouterr().err
    assert semantics(out.read_text()) == semantics(BUDGETS_FILE.read_text())
    assert main(["budgets", "--example"]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_cli_scope(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budgets", "--month", "50", "--scope", "gen_ai_agent_name=support-bot"]) == 0
    _, rules = semantics(capsys.readouterr().out)
    assert rules == [
        ("llm_budget_USD", 50.0, {"window": "month", "gen_ai_agent_name": "support-bot"})
    ]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--day", "-1"], "--day: usd: must be a positive number"),
        (["--day", "0"], "--day: usd: must be a positive number"),
        (["--day", "nan"], "--day: usd: must be a positive number"),
        (
            ["--day", "1", "--scope", "llm_feature=a", "--scope", "gen_ai_agent_name=b"],
            "at most one scope label per budget, got llm_feature and gen_ai_agent_name",
        ),
        (["--day", "1", "--scope", "team=search"], "unknown label(s) team"),
        (["--scope", "llm_feature=a"], "--scope applies to --day/--week/--month"),
        ([], "no budget given"),
    ],
)
def test_cli_errors(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budgets", *argv]) == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert captured.out == ""


def test_cli_argument_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["budgets", "--day", "lots"])
    assert exited.value.code == 2
    assert "not a number of USD" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["budgets", "--day", "1", "--scope", "no-equals-sign"])
    assert "expected LABEL=VALUE" in capsys.readouterr().err


def test_cli_missing_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budgets", "--from", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml" in capsys.readouterr().err


def test_cli_output_file_is_readable_by_others(tmp_path: Path) -> None:
    """Prometheus often runs as another user: not the 0600 of a temporary file."""
    fresh = tmp_path / "fresh.yml"
    old_umask = os.umask(0o022)
    try:
        assert main(["budgets", "--day", "3", "-o", str(fresh)]) == 0
    finally:
        os.umask(old_umask)
    assert fresh.stat().st_mode & 0o777 == 0o644
    kept = tmp_path / "kept.yml"
    kept.write_text("old\n")
    kept.chmod(0o640)
    assert main(["budgets", "--day", "3", "-o", str(kept)]) == 0
    assert kept.stat().st_mode & 0o777 == 0o640
    assert "vector(3)" in kept.read_text()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.yml", "kept.yml"]


def test_cli_unwritable_output(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["budgets", "--day", "3", "-o", str(tmp_path / "missing-dir" / "b.yml")]) == 1
    assert "missing-dir" in capsys.readouterr().err


def test_cli_does_not_write_on_error(tmp_path: Path) -> None:
    out = tmp_path / "budgets.yml"
    out.write_text("keep me\n")
    assert main(["budgets", "--day", "-1", "-o", str(out)]) == 2
    assert out.read_text() == "keep me\n"


@needs_promtool
def test_cli_output_passes_promtool(tmp_path: Path) -> None:
    out = tmp_path / "budgets.yml"
    spec = tmp_path / "spec.yaml"
    spec.write_text(
        "budgets:\n"
        "  - {window: week, usd: 40, scope: {llm_feature: search}}\n"
        "  - {window: month, usd: 100, scope: {gen_ai_provider_name: anthropic}}\n"
        "  - {window: day, usd: 0.5, scope: {gen_ai_request_model: claude-sonnet-4-5}}\n"
    )
    argv = ["budgets", "--day", "3", "--month", "20", "--from", str(spec), "-o", str(out)]
    assert main(argv) == 0
    promtool_check(out)


def test_cli_as_a_console_script(tmp_path: Path) -> None:
    """The installed entry point, as a user runs it."""
    script = shutil.which("otel-llm-cost", path=os.path.dirname(sys.executable))
    if script is None:
        pytest.skip("otel-llm-cost is not installed in this environment")
    run = subprocess.run(
        [script, "budgets", "--day", "3"], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert "expr: vector(3)" in run.stdout


def test_other_subcommands_still_parse() -> None:
    from otel_llm_cost.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["prices", "gpt-4o-mini"]).command == "prices"
    assert parser.parse_args(["demo", "--port", "0"]).command == "demo"
