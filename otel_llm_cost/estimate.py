"""Local token estimation for calls whose provider reported no usage (no network, no
tokenizer files).

The estimate is deliberately simple and documented: about four characters of text per token
(the ratio OpenAI and Anthropic publish for English), plus a small per-message overhead.
Calls counted this way are marked ``llm.usage.source="estimated"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

CHARS_PER_TOKEN = 4
MESSAGE_OVERHEAD_TOKENS = 4


def tokens_for_chars(chars: int) -> int:
    """Tokens for ``chars`` characters of text (at least 1 for any non-empty text)."""
    if chars <= 0:
        return 0
    return (chars + CHARS_PER_TOKEN - 1) // CHARS_PER_TOKEN


def text_chars(value: Any) -> int:
    """Characters of text in a prompt value: a string, a list of content parts or messages."""
    if value is None:
        return 0
    if isinstance(value, str):
        return len(value)
    if isinstance(value, Mapping):
        total = 0
        for key in ("content", "text", "input", "parts"):
            if key in value:
                total += text_chars(value[key])
        return total
    if isinstance(value, Iterable) and not isinstance(value, (bytes, bytearray)):
        return sum(text_chars(item) for item in value)
    text = getattr(value, "text", None) or getattr(value, "content", None)
    return text_chars(text) if text is not None and text is not value else 0


def input_tokens(messages: Any) -> int:
    """Estimated input tokens of a prompt (list of messages, or a string)."""
    if messages is None:
        return 0
    if isinstance(messages, (list, tuple)):
        return sum(tokens_for_chars(text_chars(m)) + MESSAGE_OVERHEAD_TOKENS for m in messages)
    return tokens_for_chars(text_chars(messages))
