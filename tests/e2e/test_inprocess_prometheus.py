"""App with the SDK's in-process Prometheus exporter -> Prometheus, no collector.

The same workload and the same checks as ``test_pipeline.py``, for the setup without a
collector: ``OTEL_METRICS_EXPORTER=prometheus`` makes the app serve ``/metrics`` itself, and
Prometheus scrapes it as the ``llm-app`` job that ``collector/prometheus.yml`` describes (commented
out there). The app waits on its standard input after its calls, so that it is still there to be
scraped; it is released once Prometheus has everything.
"""

from __future__ import annotations

from tests.e2e import plan
from tests.e2e.conftest import free_port


def test_inprocess_prometheus_exporter(fake_openai, start_prometheus, run_workload):
    """Exact totals, the contract's names and labels, no user_id; service.name only in
    ``target_info`` (no collector copies it onto the points), job/instance from the scrape."""
    used = plan.scripts()
    server = fake_openai(used)
    port = free_port()
    prometheus = start_prometheus(apps=[port])
    app = run_workload("e2e-inprocess", server, prometheus_port=port, WORKLOAD_WAIT_STDIN="1")
    app.wait_calls_done(90)
    exp = plan.expected(server.exchanges, used)

    plan.assert_totals(prometheus, exp)

    names = prometheus.metric_names()
    missing = [name for name in plan.LABELS if name not in names]
    assert not missing, (missing, sorted(names))
    infrastructure = {"__name__", "job", "instance"}
    for name, contract in plan.LABELS.items():
        found = prometheus.label_names(name)
        own = {label for label in found if not label.startswith("otel_scope_")}
        assert own == contract | infrastructure, (name, sorted(own ^ (contract | infrastructure)))
    assert prometheus.by("count by (job) (llm_requests_total)", "job").keys() == {("llm-app",)}
    assert prometheus.by("target_info", "service_name").keys() == {("e2e-inprocess",)}
    assert prometheus.query('{__name__=~"llm_.+|gen_ai_.+", user_id!=""}') == []

    app.release()
    app.wait_exit(30)
