"""What telemetry must never hold: message content (unless capture is switched on), API keys,
authorization headers and other secrets; and how big user-supplied attribution may get.

Every SDK (openai, anthropic, google-genai on the Gemini API and Vertex AI, legacy
google-generativeai), streamed and not, plus failing calls, send unique sentinel strings: in the
prompt, in the fake servers' scripted answers and thinking, as the API key / bearer token, and in
an extra header. Then everything recorded is dumped (spans with ``to_json``, metric data with
``to_json``, every log record of every logger at DEBUG, tracebacks included) and searched.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import google.oauth2.credentials
import pytest
from google import genai
from google.genai import types as genai_types
from opentelemetry import baggage
from opentelemetry import context as otel_context

import otel_llm_cost
from otel_llm_cost.attribution import MAX_VALUE_LENGTH
from otel_llm_cost.config import Settings
from otel_llm_cost.fakes.anthropic_server import AnthropicScript
from otel_llm_cost.fakes.gemini_server import GeminiScript
from otel_llm_cost.fakes.openai_server import Script

from .conftest import Telemetry, make_recorder
from .test_faults import (
    _ANTHROPIC_KW,
    GEMINI_MODEL,
    OPENAI_MODEL,
    SCENARIOS,
    Sdks,
    _messages,
    anthropic_create_stream,
    genai_stream,
    instrumented,
    legacy_stream,
    open_sdks,
    openai_chat,
    openai_chat_stream,
)

PROMPT_S = "PROMPT-SENTINEL-q8Zr"
ANSWER_S = "ANSWER-SENTINEL-x4Lm"
THINK_S = "THINKING-SENTINEL-p2Kd"
KEY_S = "sk-SENTINEL-KEY-f00dfeed"
HEADER_S = "HDR-SENTINEL-c0ffee"
TOKEN_S = "ya29.SENTINEL-TOKEN-beef"

CONTENT = (PROMPT_S, ANSWER_S, THINK_S)
SECRETS = (KEY_S, HEADER_S, TOKEN_S)
HEADERS = {"X-Secret": HEADER_S}
ANSWER = f"{ANSWER_S} is the answer you asked for"
CAPTURE_ENV = "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT"


@pytest.fixture(scope="module")
def sdks() -> Iterator[Sdks]:
    with open_sdks(api_key=KEY_S, headers=HEADERS) as opened:
        yield opened


def drain(sdks: Sdks, into: list[Any]) -> None:
    """Keep the exchanges so far; forget them and any queued script."""
    for server in (sdks.openai_server, sdks.anthropic_server, sdks.gemini_server):
        into.extend(server.exchanges)
    sdks.reset()


def arm(sdks: Sdks, count: int = 40) -> None:
    """Queue answers carrying the answer (and thinking) sentinels on every fake."""
    for _ in range(count):
        sdks.openai_server.enqueue(Script(text=ANSWER))
        sdks.anthropic_server.enqueue(AnthropicScript(text=ANSWER, thinking_text=THINK_S))
        sdks.gemini_server.enqueue(GeminiScript(text=ANSWER))


def vertex_calls(sdks: Sdks, text: str) -> list[Any]:
    """google-genai over the Vertex AI backend: a bearer token instead of an API key."""
    with genai.Client(
        vertexai=True,
        project="p",
        location="us-central1",
        credentials=google.oauth2.credentials.Credentials(token=TOKEN_S),
        http_options=genai_types.HttpOptions(base_url=sdks.gemini_server.base_url, headers=HEADERS),
    ) as client:
        once = client.models.generate_content(model=GEMINI_MODEL, contents=text)
        streamed = list(client.models.generate_content_stream(model=GEMINI_MODEL, contents=text))
    return [once, *streamed]


def failing_calls(sdks: Sdks, text: str) -> int:
    """Calls that fail: an error status, streams cut mid-way or ended by an error event.
    Returns how many raised (all should)."""
    cases: list[tuple[Any, Any, Any]] = [
        (sdks.openai_server, Script(status=500), openai_chat),
        (sdks.openai_server, Script(text=ANSWER, chunks=6, cut_after=3), openai_chat_stream),
        (
            sdks.anthropic_server,
            AnthropicScript(text=ANSWER, thinking_text=THINK_S, cut_after=6),
            anthropic_create_stream,
        ),
        (
            sdks.anthropic_server,
            AnthropicScript(text=ANSWER, thinking_text=THINK_S, error_event_after=5),
            anthropic_create_stream,
        ),
        (sdks.gemini_server, GeminiScript(text=ANSWER, chunks=4, cut_after=2), genai_stream),
        (sdks.gemini_server, GeminiScript(text=ANSWER, chunks=4, cut_after=2), legacy_stream),
    ]
    failed = 0
    for server, script, call in cases:
        server.enqueue(script)
        try:
            call(sdks, text)
        except Exception:
            failed += 1
    return failed


def thinking_call(sdks: Sdks, text: str) -> Any:
    return sdks.anthropic.messages.create(
        **{**_ANTHROPIC_KW, "max_tokens": 2048},
        messages=_messages(text),
        thinking={"type": "enabled", "budget_tokens": 1024},
        extra_headers=HEADERS,
    )


@dataclass
class Recorded:
    """Everything the instrumentation produced, as text."""

    spans: str
    metrics: str
    logs: str
    telemetry: Telemetry

    def where(self, needle: str) -> list[str]:
        return [name for name in ("spans", "metrics", "logs") if needle in getattr(self, name)]


def is_ours(record: logging.LogRecord) -> bool:
    """Records our code (or the OpenTelemetry SDK handling our telemetry) emitted. The SDKs'
    own DEBUG logs are not ours: anthropic's logs each request's options, prompt and extra
    headers included, whether or not it is instrumented. The fakes' logs are test scaffolding."""
    name = record.name
    if name.startswith("otel_llm_cost.fakes"):
        return False
    return name == "otel_llm_cost" or name.startswith(("otel_llm_cost.", "opentelemetry"))


def _log_text(records: list[logging.LogRecord]) -> str:
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    lines = []
    for record in records:
        lines.append(formatter.format(record))  # message, args and traceback
        lines.append(repr(record.args))
        lines.append(repr(getattr(record, "__dict__", {})))
    return "\n".join(lines)


def exercise_everything(
    sdks: Sdks, caplog: pytest.LogCaptureFixture, settings: Settings
) -> tuple[Recorded, dict[str, Any]]:
    """Every scenario of every SDK, Vertex, thinking, failures and an unpriced model, with the
    sentinels, instrumented with ``settings``; returns what was recorded and what callers got."""
    exchanges: list[Any] = []
    sdks.reset()
    sdks.renew_clients()
    arm(sdks)
    caplog.set_level(logging.DEBUG)  # every logger, every level
    recorder, exporter, reader = make_recorder(settings)
    got: dict[str, Any] = {"exchanges": exchanges}
    with instrumented(recorder):
        for name, scenario in SCENARIOS.items():
            got[name] = scenario(sdks, f"{PROMPT_S} {name}")
        got["vertex"] = vertex_calls(sdks, PROMPT_S)
        got["thinking"] = thinking_call(sdks, PROMPT_S)
        drain(sdks, exchanges)
        got["failed"] = failing_calls(sdks, PROMPT_S)
        drain(sdks, exchanges)
        arm(sdks, 1)
        got["unpriced"] = sdks.openai.chat.completions.create(
            model="my-own-finetune", messages=_messages(PROMPT_S), extra_headers=HEADERS
        )
        drain(sdks, exchanges)
    data = reader.get_metrics_data()
    recorded = Recorded(
        spans="\n".join(span.to_json() for span in exporter.get_finished_spans()),
        metrics=data.to_json() if data is not None else "",
        logs=_log_text([r for r in caplog.records if is_ours(r)]),
        telemetry=Telemetry(exporter, reader),
    )
    return recorded, got


def check_sentinels_travelled(sdks: Sdks, got: dict[str, Any], recorded: Recorded) -> None:
    """The test is meaningful: the sentinels did go over the wire and back to the callers."""
    assert got["failed"] == 6
    assert ANSWER_S in got["openai.chat"].choices[0].message.content
    assert THINK_S in got["thinking"].content[0].thinking
    exchanges = got["exchanges"]
    assert len(exchanges) >= len(SCENARIOS) + 10
    assert all(PROMPT_S in str(e.request) for e in exchanges)
    for exchange in exchanges:
        headers = exchange.headers
        assert headers.get("x-secret") == HEADER_S, headers
        assert any(KEY_S in v or TOKEN_S in v for v in headers.values()), headers
    assert any(TOKEN_S in str(e.headers) for e in exchanges)
    # Everything was recorded: a span per call, metrics, and our own log lines.
    assert len(recorded.telemetry.spans) == len(SCENARIOS) + 10
    assert "llm.requests" in recorded.metrics
    assert "otel_llm_cost " in recorded.logs  # e.g. the unpriced-model warning


def test_no_content_and_no_secret_in_telemetry_by_default(
    sdks: Sdks, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(CAPTURE_ENV, raising=False)
    settings = Settings.from_env()
    assert settings.capture_content is False
    recorded, got = exercise_everything(sdks, caplog, settings)
    check_sentinels_travelled(sdks, got, recorded)
    # Logging was captured at DEBUG, from every logger.
    assert any(r.levelno == logging.DEBUG and not is_ours(r) for r in caplog.records)
    for sentinel in CONTENT + SECRETS:
        assert not recorded.where(sentinel), (sentinel, recorded.where(sentinel))


@pytest.mark.parametrize("flag", ["true", "1", "TRUE"])
def test_no_secret_in_telemetry_with_content_capture_on(
    sdks: Sdks, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch, flag: str
) -> None:
    monkeypatch.setenv(CAPTURE_ENV, flag)
    settings = Settings.from_env()
    assert settings.capture_content is True
    recorded, got = exercise_everything(sdks, caplog, settings)
    check_sentinels_travelled(sdks, got, recorded)
    for sentinel in SECRETS:
        assert not recorded.where(sentinel), (sentinel, recorded.where(sentinel))
    # Not even a piece of a secret (e.g. a key prefix kept "for debugging").
    for sentinel in SECRETS:
        assert sentinel[-10:] not in recorded.spans + recorded.metrics + recorded.logs


def test_content_capture_on_records_content_on_spans(
    sdks: Sdks, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CAPTURE_ENV, "true")
    recorder, exporter, _ = make_recorder(Settings.from_env())
    arm(sdks)
    with instrumented(recorder):
        openai_chat(sdks, PROMPT_S)
    (span,) = exporter.get_finished_spans()
    assert PROMPT_S in span.to_json()
    assert ANSWER_S in span.to_json()


def _with_userinfo(base_url: str) -> str:
    scheme, rest = base_url.split("://", 1)
    return f"{scheme}://proxyuser:{KEY_S}@{rest}"


def _userinfo_openai(sdks: Sdks) -> None:
    import openai

    url = _with_userinfo(sdks.openai_server.base_url)
    with openai.OpenAI(base_url=url, api_key="k", max_retries=0) as client:
        client.chat.completions.create(model=OPENAI_MODEL, messages=_messages("hi"))


def _userinfo_anthropic(sdks: Sdks) -> None:
    import anthropic

    url = _with_userinfo(sdks.anthropic_server.base_url)
    with anthropic.Anthropic(base_url=url, api_key="k", max_retries=0) as client:
        client.messages.create(**_ANTHROPIC_KW, messages=_messages("hi"))


def _userinfo_genai(sdks: Sdks) -> None:
    url = _with_userinfo(sdks.gemini_server.base_url)
    with genai.Client(api_key="k", http_options=genai_types.HttpOptions(base_url=url)) as client:
        client.models.generate_content(model=GEMINI_MODEL, contents="hi")


def _userinfo_legacy(sdks: Sdks) -> None:
    from google.generativeai import client as legacy_client

    manager = legacy_client._client_manager
    saved = (manager.client_config, manager.default_metadata, manager.clients)
    manager.clients = {}
    try:
        sdks.legacy.configure(
            api_key="k",
            transport="rest",
            client_options={"api_endpoint": _with_userinfo(sdks.gemini_server.base_url)},
        )
        sdks.legacy.GenerativeModel(GEMINI_MODEL).generate_content("hi")
    finally:
        for client in manager.clients.values():
            client.transport.close()
        manager.client_config, manager.default_metadata, manager.clients = saved


@pytest.mark.parametrize(
    "call",
    [
        _userinfo_openai,
        _userinfo_anthropic,
        _userinfo_genai,
        _userinfo_legacy,
    ],
    ids=["openai", "anthropic", "google-genai", "google-generativeai"],
)
def test_credentials_in_base_url_are_not_recorded(sdks: Sdks, call: Any) -> None:
    """A base URL with user:password@ (an authenticating proxy) must not put the password in
    server.address, whatever the SDK."""
    recorder, exporter, reader = make_recorder(Settings())
    sdks.reset()
    with instrumented(recorder):
        call(sdks)
    servers = (sdks.openai_server, sdks.anthropic_server, sdks.gemini_server)
    assert sum(len(server.exchanges) for server in servers) == 1  # the call went through
    (span,) = exporter.get_finished_spans()
    assert span.attributes["server.address"] == "127.0.0.1"
    assert KEY_S not in span.to_json()
    data = reader.get_metrics_data()
    assert data is not None and KEY_S not in data.to_json()


# -- attribution values are bounded -------------------------------------------------------------

BIG = 10_000


def _all_attribute_values(telemetry: Telemetry) -> list[tuple[str, str, Any]]:
    values: list[tuple[str, str, Any]] = []
    for span in telemetry.spans:
        values.extend(("span", k, v) for k, v in span.attributes.items())
    data = telemetry.reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                for point in metric.data.data_points:
                    values.extend((metric.name, k, v) for k, v in point.attributes.items())
    return values


ATTRIBUTION = ("gen_ai.agent.name", "user.id", "session.id", "llm.feature", "llm.tenant")


@pytest.mark.parametrize("char", ["a", "é", "\U0001f600"])
def test_usage_context_values_are_bounded_on_spans_and_metrics(
    sdks: Sdks, monkeypatch: pytest.MonkeyPatch, char: str
) -> None:
    monkeypatch.setenv("OTEL_LLM_COST_METRIC_ATTRIBUTES", "user.id,session.id,llm.tenant")
    recorder, exporter, reader = make_recorder(Settings.from_env())
    sdks.reset()
    sdks.renew_clients()
    with (
        instrumented(recorder),
        otel_llm_cost.usage_context(
            agent=char * BIG,
            user=char * BIG,
            session=char * BIG,
            feature=char * BIG,
            tenant=char * BIG,
        ),
    ):
        openai_chat(sdks, "hi")
        list(
            sdks.openai.chat.completions.create(
                model=OPENAI_MODEL, messages=_messages("hi"), stream=True
            )
        )
        anthropic_create_stream(sdks, "hi")
        genai_stream(sdks, "hi")
    telemetry = Telemetry(exporter, reader)
    seen: dict[str, set[str]] = {}
    for where, key, value in _all_attribute_values(telemetry):
        if key in ATTRIBUTION:
            assert isinstance(value, str)
            assert 0 < len(value) <= MAX_VALUE_LENGTH, (where, key, len(value))
            assert len(value.encode()) <= 4 * MAX_VALUE_LENGTH
            seen.setdefault(key, set()).add(value)
    # Every attribution attribute is there, cut the same way on spans and metrics (they join).
    assert set(seen) == set(ATTRIBUTION)
    assert all(len(values) == 1 for values in seen.values()), seen
    assert MAX_VALUE_LENGTH <= 256  # a bound worth the name


def test_baggage_values_are_bounded(sdks: Sdks, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OTEL_LLM_COST_METRIC_ATTRIBUTES", "user.id,llm.tenant")
    recorder, exporter, reader = make_recorder(Settings.from_env())
    sdks.reset()
    ctx = otel_context.get_current()
    for key in ("gen_ai.agent.name", "user.id", "llm.feature", "llm.tenant"):
        ctx = baggage.set_baggage(key, "b" * BIG, ctx)
    token = otel_context.attach(ctx)
    try:
        with instrumented(recorder):
            openai_chat(sdks, "hi")
    finally:
        otel_context.detach(token)
    telemetry = Telemetry(exporter, reader)
    found = 0
    for where, key, value in _all_attribute_values(telemetry):
        if key in ATTRIBUTION:
            found += 1
            assert len(str(value)) <= MAX_VALUE_LENGTH, (where, key, len(str(value)))
    assert found


def test_baggage_flood_does_not_evict_the_contract_attributes(sdks: Sdks) -> None:
    recorder, exporter, _ = make_recorder(Settings())
    sdks.reset()
    ctx = otel_context.get_current()
    for index in range(150):
        ctx = baggage.set_baggage(f"llm.k{index}", "v", ctx)
    token = otel_context.attach(ctx)
    try:
        with instrumented(recorder):
            openai_chat(sdks, "hi")
    finally:
        otel_context.detach(token)
    (span,) = exporter.get_finished_spans()
    for key in ("gen_ai.operation.name", "gen_ai.provider.name", "gen_ai.request.model"):
        assert key in span.attributes, key
    assert "llm.cost.usd" in span.attributes


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_content_capture_on_every_path(
    sdks: Sdks, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """With capture on, each path records its prompt and (but embeddings) its answer text."""
    monkeypatch.setenv(CAPTURE_ENV, "true")
    recorder, exporter, _ = make_recorder(Settings.from_env())
    sdks.reset()
    sdks.renew_clients()
    arm(sdks, 2)
    with instrumented(recorder):
        SCENARIOS[name](sdks, PROMPT_S)
    (span,) = exporter.get_finished_spans()
    attributes = span.attributes or {}
    assert PROMPT_S in str(attributes.get("gen_ai.input.messages")), attributes
    if "embeddings" not in name:
        assert ANSWER_S in str(attributes.get("gen_ai.output.messages")), attributes
        assert THINK_S not in str(attributes.get("gen_ai.output.messages"))
    assert KEY_S not in span.to_json() and HEADER_S not in span.to_json()
