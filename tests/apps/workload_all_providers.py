"""An application that knows nothing of OpenTelemetry, calling OpenAI, Anthropic and Gemini: run
it under ``opentelemetry-instrument``.

It makes a fixed sequence of calls (:data:`PLAN`) with the real SDKs, each inside
``otel_llm_cost.usage_context`` (agent, feature, a user and a session), prints ``calls done`` and
exits. Whoever runs the servers decides what they answer (token counts, errors): the dashboard
e2e test (``tests/e2e/test_dashboard_queries.py``) queues one script per call, per provider, in
this order, so that every provider, token type (input, cache_read, cache_write, output,
reasoning), an error, an unpriced model, streams and estimated usage show up.

Environment:

- ``OPENAI_BASE_URL``, ``ANTHROPIC_BASE_URL`` (read by the SDKs) and ``WORKLOAD_GEMINI_BASE_URL``
  (passed to google-genai): the servers;
- ``WORKLOAD_ROUNDS``: how many times to run :data:`PLAN` (default 1);
- ``WORKLOAD_PAUSE``: seconds to sleep after each call (default 0), so that the calls of one
  series spread over several exports and scrapes.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any, NamedTuple

import anthropic
import openai
from google import genai
from google.genai import types

import otel_llm_cost


class Call(NamedTuple):
    provider: str
    """``openai``, ``anthropic`` or ``gemini`` (google-genai, Gemini API)."""
    model: str
    stream: bool = False
    agent: str = "support-bot"
    feature: str = "faq"


PLAN: tuple[Call, ...] = (
    Call("openai", "gpt-4o-mini"),
    Call("openai", "o4-mini", stream=True, agent="planner", feature="plan"),
    Call("openai", "gpt-4o-mini", feature="summarize"),
    Call("openai", "zz-e2e-unpriced-model", agent="lab", feature="experiment"),
    Call("anthropic", "claude-sonnet-4-5"),
    Call("anthropic", "claude-sonnet-4-5", stream=True, agent="planner", feature="plan"),
    Call("gemini", "gemini-2.5-flash", agent="researcher", feature="search"),
    Call("gemini", "gemini-2.5-flash", stream=True, agent="researcher", feature="search"),
)

PROMPT = "What does this cost?"


class Clients:
    def __init__(self) -> None:
        self.openai = openai.OpenAI(max_retries=0)
        self.anthropic = anthropic.Anthropic(max_retries=0)
        self.gemini = genai.Client(
            api_key="not-a-real-key",
            http_options=types.HttpOptions(base_url=os.environ["WORKLOAD_GEMINI_BASE_URL"]),
        )

    def call(self, call: Call) -> None:
        result: Any
        if call.provider == "openai":
            messages = [{"role": "user", "content": PROMPT}]
            result = self.openai.chat.completions.create(
                model=call.model, messages=messages, stream=call.stream
            )
        elif call.provider == "anthropic":
            result = self.anthropic.messages.create(
                model=call.model,
                max_tokens=512,
                messages=[{"role": "user", "content": PROMPT}],
                stream=call.stream,
            )
        elif call.stream:
            result = self.gemini.models.generate_content_stream(model=call.model, contents=PROMPT)
        else:
            self.gemini.models.generate_content(model=call.model, contents=PROMPT)
            return
        if call.stream:
            for _ in result:
                pass


def main() -> int:
    rounds = int(os.environ.get("WORKLOAD_ROUNDS", "1"))
    pause = float(os.environ.get("WORKLOAD_PAUSE", "0"))
    clients = Clients()
    index = 0
    for _ in range(rounds):
        for position, call in enumerate(PLAN):
            context = otel_llm_cost.usage_context(
                agent=call.agent,
                feature=call.feature,
                # The same user and session for a call of every round: a series that got
                # only one sample would show no increase().
                user=f"user-{position % 3}",
                session=f"session-{position // 4}",
            )
            with context:
                try:
                    clients.call(call)
                except (openai.APIStatusError, anthropic.APIStatusError) as exc:
                    print(f"call {index}: HTTP {exc.status_code}", flush=True)
            index += 1
            if pause:
                time.sleep(pause)
    print("calls done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
