"""An application that knows nothing of OpenTelemetry: run it under ``opentelemetry-instrument``.

It makes a fixed, deterministic sequence of openai calls (:data:`PLAN`) against
``OPENAI_BASE_URL`` with the real SDK, each inside ``otel_llm_cost.usage_context`` with its own
user (``user-0``, ``user-1``, ...), prints ``calls done`` and exits. What the server answers
(token counts, errors) is decided by whoever runs the server: the e2e tests queue one fake-server
script per call, in this order.

Environment (besides the SDK's own ``OPENAI_BASE_URL`` / ``OPENAI_API_KEY``):

- ``WORKLOAD_ROUNDS``: how many times to run :data:`PLAN` (default 1);
- ``WORKLOAD_PAUSE``: seconds to sleep after each call (default 0): a workload that runs for a
  while;
- ``WORKLOAD_WAIT_STDIN=1``: after the calls, wait until standard input closes (so that an
  in-process Prometheus endpoint can be scraped before the process goes away).
"""

from __future__ import annotations

import os
import sys
import time
from typing import NamedTuple

import openai

import otel_llm_cost


class Call(NamedTuple):
    api: str
    """``chat``, ``responses`` or ``embeddings``."""
    model: str
    stream: bool = False
    agent: str = "support-bot"
    feature: str = "faq"


#: The calls, in order. Which token types and outcomes each one produces is up to the server's
#: answer; the e2e tests script: cached input, reasoning, a 429 and an unknown (unpriced) model.
PLAN: tuple[Call, ...] = (
    Call("chat", "gpt-4o-mini"),
    Call("chat", "gpt-4o-mini", stream=True),
    Call("chat", "o4-mini", agent="planner", feature="plan"),
    Call("chat", "o4-mini", stream=True, agent="planner", feature="plan"),
    Call("responses", "o4-mini", agent="planner", feature="plan"),
    Call("responses", "gpt-4.1-mini", stream=True, feature="summarize"),
    Call("embeddings", "text-embedding-3-small", agent="indexer", feature="search"),
    Call("chat", "gpt-4o-mini", feature="summarize"),
    Call("chat", "zz-e2e-unpriced-model", agent="lab", feature="experiment"),
)

MESSAGES = [{"role": "user", "content": "What does this cost?"}]


def make_call(client: openai.OpenAI, call: Call) -> None:
    if call.api == "chat":
        result = client.chat.completions.create(
            model=call.model, messages=MESSAGES, stream=call.stream
        )
    elif call.api == "responses":
        result = client.responses.create(
            model=call.model, input="What does this cost?", stream=call.stream
        )
    else:
        client.embeddings.create(model=call.model, input="What does this cost?")
        return
    if call.stream:
        for _ in result:
            pass


def main() -> int:
    rounds = int(os.environ.get("WORKLOAD_ROUNDS", "1"))
    pause = float(os.environ.get("WORKLOAD_PAUSE", "0"))
    client = openai.OpenAI(max_retries=0)
    index = 0
    for _ in range(rounds):
        for call in PLAN:
            with otel_llm_cost.usage_context(
                agent=call.agent, feature=call.feature, user=f"user-{index}"
            ):
                try:
                    make_call(client, call)
                except openai.APIStatusError as exc:
                    print(f"call {index}: HTTP {exc.status_code}", flush=True)
            index += 1
            if pause:
                time.sleep(pause)
    print("calls done", flush=True)
    if os.environ.get("WORKLOAD_WAIT_STDIN") == "1":
        sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main())
