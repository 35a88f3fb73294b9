"""App -> OTLP -> the collector -> Prometheus, with the repository's configs and real processes.

The workload (``tests/apps/workload.py``, no OpenTelemetry code) runs under
``opentelemetry-instrument`` and exports OTLP/HTTP (protobuf) to the collector distribution built
from ``collector/`` with ``collector/otel-collector-config.yaml``; Prometheus scrapes it every
second with a config derived from ``collector/prometheus.yml`` and loads the alert rules. What
Prometheus ends up with must be exactly what the fake server sent (its usage objects), priced by
genai-prices.
"""

from __future__ import annotations

from pathlib import Path

from tests.e2e import plan
from tests.e2e.conftest import wait_until, with_collector_opt_in
from tests.e2e.plan import LABELS, PIPELINE


def test_collector_pipeline_totals_names_and_labels(
    fake_openai, start_collector, start_prometheus, run_workload
):
    """Totals, series names and label names through the collector; one span per call.

    The workload gives every call its own ``user.id`` (``usage_context(user=f"user-{i}")``):
    without opt-in no series carries a ``user_id`` label, so the series count does not grow with
    users.
    """
    used = plan.scripts()
    server = fake_openai(used)
    collector = start_collector()
    prometheus = start_prometheus([collector])
    app = run_workload("e2e-pipeline", server, collector)
    app.wait_exit(90)
    assert "call 7: HTTP 429" in app.stdout()
    exp = plan.expected(server.exchanges, used)
    # The scenario covers what it should (computed from the wire, not from our code).
    assert set(exp.tokens) == {"input", "cache_read", "output", "reasoning"}
    assert exp.requests[("429", "catalog", "none")] == 1
    assert exp.requests[("", "unpriced", "provider")] == 1

    plan.assert_totals(prometheus, exp)

    names = prometheus.metric_names()
    missing = [name for name in LABELS if name not in names]
    assert not missing, (missing, sorted(names))
    for name, contract in LABELS.items():
        found = prometheus.label_names(name)
        own = {label for label in found if not label.startswith("otel_scope_")}
        assert own == contract | PIPELINE, (name, sorted(own ^ (contract | PIPELINE)))

    # service.name is a plain label on every series of the instruments (not on the rules' own
    # series, such as llm_budget_USD).
    llm = '{__name__=~"(llm_cost|llm_tokens|llm_requests|llm_request_cost|gen_ai_client)_.+"}'
    assert prometheus.by(f"count by (service_name) ({llm})", "service_name").keys() == {
        ("e2e-pipeline",)
    }
    # Bounded cardinality: a user per call, and not one user_id label.
    assert prometheus.query(llm.replace("}", ', user_id!=""}')) == []
    assert prometheus.value("count(count by (user_id) (llm_requests_total))") == 1

    # The rules see the data: the unpriced model fires LLMUnpricedModel (no `for`).
    prometheus.wait_for(
        'ALERTS{alertname="LLMUnpricedModel", alertstate="firing",'
        ' gen_ai_request_model="zz-e2e-unpriced-model"}',
        lambda v: v == 1,
        want=1,
    )
    # One span per call reached the collector (its debug exporter logs each batch).
    wait_until(lambda: collector.spans_exported() >= exp.calls, 10, "the spans")
    assert collector.spans_exported() == exp.calls


def test_user_id_needs_opt_in_at_the_collector_too(
    tmp_path: Path, fake_openai, start_collector, start_prometheus, run_workload
):
    """``user.id`` labels need opting in twice when going through the collector.

    Both apps promote ``user.id`` to a metric attribute
    (``OTEL_LLM_COST_METRIC_ATTRIBUTES=user.id``) and give each call its own user. Through the
    repository's collector config, whose allowlist (``transform/llm_cost``, ``keep_keys``) drops
    the attributes it does not list, no series carries ``user_id``: opting in at the app alone
    is not enough. Through the same config with ``"user.id"`` added to ``keep_keys`` (as its
    comment says), there is a ``user_id`` per call.

    The totals are exact either way: the points that differed only by the dropped attribute
    are summed by the collector (``aggregate_on_attributes``), not overwritten by one another.
    """
    used = plan.scripts()
    plain = start_collector("collector")
    opted = start_collector(
        "collector-opt-in", config=with_collector_opt_in("user.id", tmp_path / "opt-in.yaml")
    )
    prometheus = start_prometheus([plain, opted])
    runs = []
    for name, collector in (("app-opt-in-only", plain), ("app-and-collector-opt-in", opted)):
        server = fake_openai(used)
        app = run_workload(name, server, collector, OTEL_LLM_COST_METRIC_ATTRIBUTES="user.id")
        runs.append((name, server, app))
    for name, server, app in runs:
        app.wait_exit(90)
        plan.assert_totals(
            prometheus, plan.expected(server.exchanges, used), f'service_name="{name}"'
        )

    assert prometheus.query('llm_requests_total{service_name="app-opt-in-only", user_id!=""}') == []
    users = prometheus.by(
        'count by (user_id) (llm_requests_total{service_name="app-and-collector-opt-in"})',
        "user_id",
    )
    assert set(users) == {(f"user-{i}",) for i in range(len(used))}
