"""The canned exchange every provider answers: the same prompt, the same answer text and the
same token counts, in each provider's own wire format (see the provider modules)."""

from __future__ import annotations

import json
from typing import Any

SYSTEM = "You are a concise assistant for a billing dashboard."
USER = (
    "Summarize why the March invoice is 14% higher than February's, "
    "in three bullet points, citing the line items that changed."
)
#: A piece of the prompt that must never show up in telemetry (content capture is off).
PROMPT_MARKER = "March invoice is 14% higher"

#: Input tokens of every call, cached ones included (Anthropic: uncached + cache read + write).
PROMPT_TOKENS = 1480
CACHED_TOKENS = 1024
REASONING_TOKENS = 192
#: Words of a non-streamed answer (and its visible output tokens).
ANSWER_TOKENS = 320

WORDS = (
    " The", " March", " invoice", " grew", " because", " output", " tokens", " rose",
    ",", " mostly", " from", " the", " support", " agent", "'s", " longer", " answers", ".",
)  # fmt: skip

CREATED = 1_763_726_400
#: The thinking text of the providers that return one (Anthropic).
THINKING = "The user asks for the invoice difference; compare the line items month over month."


def word(i: int) -> str:
    """The i-th streamed piece of the answer."""
    return WORDS[i % len(WORDS)]


def answer_text() -> str:
    """The non-streamed answer: ANSWER_TOKENS words."""
    return "".join(word(i) for i in range(ANSWER_TOKENS)).strip()


def compact(obj: Any) -> bytes:
    """JSON as OpenAI and Anthropic send it (no spaces)."""
    return json.dumps(obj, separators=(",", ":")).encode()


def sse(data: bytes, event: str | None = None) -> bytes:
    """One server-sent event."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data + b"\n\n"
