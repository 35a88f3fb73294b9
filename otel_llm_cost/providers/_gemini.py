"""Gemini usage shapes, shared by the two Google SDKs (google-genai and the legacy
google-generativeai): both report ``usage_metadata`` with the same counts."""

from __future__ import annotations

from typing import Any

from ..record import CallRecord
from ..usage import Usage, count, from_totals


def model_id(model: object) -> str | None:
    """``gemini-2.5-flash`` from ``models/gemini-2.5-flash`` or a full Vertex resource name."""
    if not isinstance(model, str) or not model:
        return None
    index = model.rfind("models/")
    return model[index + 7 :] if index >= 0 else model


def has_counts(meta: Any) -> bool:
    """Whether a ``usage_metadata`` carries counts (Vertex sends empty ones mid-stream)."""
    return meta is not None and bool(
        getattr(meta, "prompt_token_count", None) or getattr(meta, "total_token_count", None)
    )


def gemini_usage(meta: Any) -> Usage:
    """The partition of a ``usage_metadata``.

    ``prompt_token_count`` includes ``cached_content_token_count``; tool-use prompt tokens are
    billed as input beside it; ``thoughts_token_count`` is beside ``candidates_token_count``.
    Where thoughts are not reported (the legacy SDK's proto), they are what the total holds
    beyond prompt, tool-use prompt and candidates.
    """
    prompt = count(getattr(meta, "prompt_token_count", 0))
    tool_prompt = count(getattr(meta, "tool_use_prompt_token_count", 0))
    candidates = count(getattr(meta, "candidates_token_count", 0))
    thoughts = count(getattr(meta, "thoughts_token_count", 0))
    if not thoughts:
        total = count(getattr(meta, "total_token_count", 0))
        thoughts = max(0, total - prompt - tool_prompt - candidates)
    return from_totals(
        prompt + tool_prompt,
        candidates + thoughts,
        cache_read=getattr(meta, "cached_content_token_count", 0),
        reasoning=thoughts,
    )


def _chunk_text(response: Any) -> str:
    texts = []
    for candidate in getattr(response, "candidates", None) or ():
        content = getattr(candidate, "content", None)
        for part in getattr(content, "parts", None) or ():
            text = getattr(part, "text", None)
            if text:
                texts.append(text)
    return "".join(texts)


def _reason_name(reason: Any, candidate: Any = None) -> str:
    """``stop`` from an enum member (proto-plus, google-genai) or from the number a raw
    protobuf candidate holds (its descriptor names it)."""
    name = getattr(reason, "name", None)
    if not isinstance(name, str) and isinstance(reason, int):
        try:
            enum = candidate.DESCRIPTOR.fields_by_name["finish_reason"].enum_type
            name = enum.values_by_number[reason].name
        except (AttributeError, KeyError):
            name = None
    return (name if isinstance(name, str) else str(reason)).lower()


def _finish_reason(response: Any) -> str | None:
    for candidate in getattr(response, "candidates", None) or ():
        reason = getattr(candidate, "finish_reason", None)
        if reason:
            return _reason_name(reason, candidate)
    return None


def read_gemini_response(rec: CallRecord, response: Any) -> int:
    """Fill ``rec`` from one (non-streamed) response; returns the text length seen."""
    rec.response_model = model_id(getattr(response, "model_version", None)) or rec.response_model
    rec.response_id = getattr(response, "response_id", None) or rec.response_id
    reason = _finish_reason(response)
    if reason:
        rec.finish_reasons = [reason]
    meta = getattr(response, "usage_metadata", None)
    if has_counts(meta):
        rec.usage = gemini_usage(meta)
    text = _chunk_text(response)
    if rec.capture:
        rec.completion = text
    return len(text)


class GeminiAccumulator:
    """Follows a Gemini stream: usage is a running total, the last chunk with counts wins."""

    __slots__ = (
        "chars",
        "finish_reason",
        "meta",
        "model",
        "reason_candidate",
        "response_id",
        "seen",
        "texts",
    )

    def __init__(self) -> None:
        self.meta: Any = None
        self.model: str | None = None
        self.response_id: str | None = None
        self.finish_reason: Any = None
        self.reason_candidate: Any = None
        self.chars = 0
        self.seen = False
        self.texts: list[str] | None = None  # only when content capture is on

    def on_chunk(self, chunk: Any) -> bool:
        # One pass over the chunk.
        self.seen = True
        meta = getattr(chunk, "usage_metadata", None)
        if meta is not None and has_counts(meta):
            self.meta = meta
        for candidate in getattr(chunk, "candidates", None) or ():
            content = getattr(candidate, "content", None)
            for part in getattr(content, "parts", None) or ():
                text = getattr(part, "text", None)
                if text:
                    self.chars += len(text)
                    if self.texts is not None:
                        self.texts.append(text)
            reason = getattr(candidate, "finish_reason", None)
            if reason:
                self.finish_reason = reason
                self.reason_candidate = candidate
        if self.model is None:
            self.model = getattr(chunk, "model_version", None)
            self.response_id = getattr(chunk, "response_id", None)
        return False

    def finish(self, rec: CallRecord) -> None:
        if self.texts is not None:
            rec.completion = "".join(self.texts)
        rec.response_model = model_id(self.model)
        rec.response_id = self.response_id or None
        if self.finish_reason:
            rec.finish_reasons = [_reason_name(self.finish_reason, self.reason_candidate)]
        if self.meta is not None:
            rec.usage = gemini_usage(self.meta)
        elif not self.seen:
            # Nothing came back: the request may never have been sent (a generator that was
            # never iterated), so there is nothing to estimate.
            rec.estimator = None
