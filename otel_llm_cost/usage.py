"""The normalized usage of one LLM call: the contract's token-type partition."""

from __future__ import annotations

from dataclasses import dataclass

#: The values of ``llm.token.type``, in the order used everywhere (prices, costs, metrics).
TOKEN_TYPES: tuple[str, ...] = ("input", "cache_read", "cache_write", "output", "reasoning")


@dataclass(slots=True)
class Usage:
    """Token counts of one call, already split into the contract's partition.

    Provider modules translate their SDK's usage object into this; nothing after that
    knows which SDK produced it. Every field is a non-negative int and the five partition
    fields add up to everything the provider bills.
    """

    input: int = 0
    """Input tokens read at the normal rate (not from cache, not written to cache)."""
    cache_read: int = 0
    """Input tokens served from the prompt cache."""
    cache_write: int = 0
    """Input tokens written to the prompt cache (all TTLs)."""
    output: int = 0
    """Generated tokens that are not reasoning."""
    reasoning: int = 0
    """Generated tokens spent on reasoning / thinking."""
    cache_write_1h: int = 0
    """The part of ``cache_write`` written with a 1-hour TTL (Anthropic); priced at its own rate."""

    @property
    def input_total(self) -> int:
        """All input tokens, cached included (``gen_ai.usage.input_tokens``)."""
        return self.input + self.cache_read + self.cache_write

    @property
    def output_total(self) -> int:
        """All output tokens, reasoning included (``gen_ai.usage.output_tokens``)."""
        return self.output + self.reasoning

    def as_tuple(self) -> tuple[int, int, int, int, int]:
        """The partition in :data:`TOKEN_TYPES` order."""
        return (self.input, self.cache_read, self.cache_write, self.output, self.reasoning)


#: The largest token count believed: anything above is a corrupt field, not usage (and would
#: not fit the 64-bit integers of the OTLP encoding).
MAX_TOKENS = 10**12


def count(value: object) -> int:
    """A token count from an SDK field: an int in [0, MAX_TOKENS] (None, junk and negatives
    give 0; absurdly large values are cut to MAX_TOKENS)."""
    if type(value) is int:  # the usual case, first
        return value if 0 <= value <= MAX_TOKENS else (0 if value < 0 else MAX_TOKENS)
    if value is None or isinstance(value, bool):
        return 0
    try:
        number = int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError, OverflowError):
        return 0
    if number <= 0:
        return 0
    return number if number <= MAX_TOKENS else MAX_TOKENS


def from_totals(
    input_total: object,
    output_total: object,
    *,
    cache_read: object = 0,
    cache_write: object = 0,
    cache_write_1h: object = 0,
    reasoning: object = 0,
) -> Usage:
    """Build the partition from totals that include their parts (OpenAI's and Gemini's way).

    ``input_total`` includes cache reads and writes; ``output_total`` includes reasoning.
    Parts larger than their total are cut to it, so the partition never goes negative and
    always sums to the provider's totals.
    """
    # Plain ints in range (what the SDKs give) skip count(): this runs on every call.
    total_in = (
        input_total
        if type(input_total) is int and 0 <= input_total <= MAX_TOKENS
        else count(input_total)
    )
    total_out = (
        output_total
        if type(output_total) is int and 0 <= output_total <= MAX_TOKENS
        else count(output_total)
    )
    read = min(count(cache_read), total_in) if cache_read is not None else 0
    write = min(count(cache_write), total_in - read) if cache_write is not None else 0
    think = min(count(reasoning), total_out) if reasoning is not None else 0
    return Usage(
        input=total_in - read - write,
        cache_read=read,
        cache_write=write,
        output=total_out - think,
        reasoning=think,
        cache_write_1h=min(count(cache_write_1h), write) if cache_write_1h is not None else 0,
    )
