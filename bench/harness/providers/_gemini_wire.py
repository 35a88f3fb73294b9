"""The Gemini API's ``GenerateContentResponse`` JSON, shared by google-genai and the legacy SDK.

As the Gemini API sends it: every chunk of a stream is a whole response with a
``usageMetadata`` of running totals (prompt, cache and thoughts counts from the first chunk, a
growing ``candidatesTokenCount``), the last one with ``finishReason``. ``promptTokenCount``
includes ``cachedContentTokenCount``; ``thoughtsTokenCount`` is beside the candidates count.
"""

from __future__ import annotations

from typing import Any

from .. import wire

MODEL = "gemini-2.5-flash"
RESPONSE_ID = "BENCHq2dPa-3oXkM7vYtRz"
#: Integer enum values (the legacy SDK asks for ``$alt=json;enum-encoding=int``).
_INT_ENUMS = {"finishReason": {"STOP": 1}, "modality": {"TEXT": 1}}


def _details(count: int) -> list[dict[str, Any]]:
    return [{"modality": "TEXT", "tokenCount": count}]


def usage(candidates: int) -> dict[str, Any]:
    return {
        "promptTokenCount": wire.PROMPT_TOKENS,
        "candidatesTokenCount": candidates,
        "totalTokenCount": wire.PROMPT_TOKENS + candidates + wire.REASONING_TOKENS,
        "cachedContentTokenCount": wire.CACHED_TOKENS,
        "promptTokensDetails": _details(wire.PROMPT_TOKENS),
        "cacheTokensDetails": _details(wire.CACHED_TOKENS),
        "thoughtsTokenCount": wire.REASONING_TOKENS,
    }


def response(text: str, candidates: int, finished: bool) -> dict[str, Any]:
    candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
    if finished:
        candidate["finishReason"] = "STOP"
    candidate["index"] = 0
    return {
        "candidates": [candidate],
        "usageMetadata": usage(candidates),
        "modelVersion": MODEL,
        "responseId": RESPONSE_ID,
    }


def responses(chunks: int | None) -> list[dict[str, Any]]:
    """The one response of a non-streamed call (``chunks=None``), else the chunks of a stream
    (one output token each)."""
    if chunks is None:
        return [response(wire.answer_text(), wire.ANSWER_TOKENS, True)]
    return [response(wire.word(i), i + 1, i == chunks - 1) for i in range(chunks)]


def int_enums(value: Any) -> Any:
    """The same payload with enums as integers."""
    if isinstance(value, list):
        return [int_enums(item) for item in value]
    if not isinstance(value, dict):
        return value
    out = {}
    for key, item in value.items():
        table = _INT_ENUMS.get(key)
        out[key] = table[item] if table is not None else int_enums(item)
    return out
