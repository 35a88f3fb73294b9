"""Per-chunk cost of our stream path for each provider: the proxy plus that provider's
accumulator, on real SDK chunk objects, against iterating the same chunks bare.

    .venv/bin/python bench/chunk_overhead.py [--chunks 2000] [--repeat 7]

It times only our added work (no HTTP, no SSE parsing), so the figure is absolute: nanoseconds
added per chunk. ``overhead.py`` gives the openai figure relative to a whole SDK stream.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

from otel_llm_cost.config import Settings
from otel_llm_cost.recorder import Recorder
from otel_llm_cost.streams import wrap_stream


def openai_chunks(n: int) -> list[Any]:
    from openai.types.chat import ChatCompletionChunk

    return [
        ChatCompletionChunk.model_validate(
            {
                "id": "c1",
                "object": "chat.completion.chunk",
                "created": 1,
                "model": "gpt-4o-mini",
                "choices": [{"index": 0, "delta": {"content": "word "}, "finish_reason": None}],
                "usage": None,
            }
        )
        for _ in range(n)
    ]


def responses_chunks(n: int) -> list[Any]:
    from openai.types.responses import ResponseTextDeltaEvent

    return [
        ResponseTextDeltaEvent.model_validate(
            {
                "type": "response.output_text.delta",
                "item_id": "i",
                "output_index": 0,
                "content_index": 0,
                "delta": "word ",
                "sequence_number": i,
                "logprobs": [],
            }
        )
        for i in range(n)
    ]


def anthropic_chunks(n: int) -> list[Any]:
    from anthropic.types import RawContentBlockDeltaEvent

    return [
        RawContentBlockDeltaEvent.model_validate(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "w "},
            }
        )
        for _ in range(n)
    ]


def gemini_chunks(n: int) -> list[Any]:
    from google.genai import types

    return [
        types.GenerateContentResponse.model_validate(
            {
                "candidates": [{"content": {"role": "model", "parts": [{"text": "word "}]}}],
                "usage_metadata": {"prompt_token_count": 10, "candidates_token_count": i + 1},
                "model_version": "gemini-2.5-flash",
            }
        )
        for i in range(n)
    ]


def accumulators() -> dict[str, tuple[Callable[[int], list[Any]], Callable[[], Any]]]:
    from otel_llm_cost.providers._gemini import GeminiAccumulator
    from otel_llm_cost.providers.anthropic import MessageAccumulator
    from otel_llm_cost.providers.openai import ChatAccumulator, ResponsesAccumulator

    return {
        "openai chat": (openai_chunks, lambda: ChatAccumulator(hide_usage_chunk=True)),
        "openai responses": (responses_chunks, ResponsesAccumulator),
        "anthropic messages": (anthropic_chunks, MessageAccumulator),
        "gemini (both SDKs)": (gemini_chunks, GeminiAccumulator),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    recorder = Recorder(
        Settings(), tracer_provider=TracerProvider(), meter_provider=MeterProvider()
    )
    print(f"{'stream':<22}{'bare ns/chunk':>15}{'proxied ns/chunk':>18}{'added ns/chunk':>16}")
    for name, (make, new_acc) in accumulators().items():
        chunks = make(args.chunks)
        bare, proxied = [], []
        for _ in range(args.repeat):
            start = time.perf_counter_ns()
            for _chunk in iter(chunks):
                pass
            bare.append((time.perf_counter_ns() - start) / len(chunks))
            rec = recorder.start("openai", "chat", "gpt-4o-mini", streaming=True)
            stream = wrap_stream(iter(chunks), recorder, rec, new_acc())
            start = time.perf_counter_ns()
            for _chunk in stream:
                pass
            proxied.append((time.perf_counter_ns() - start) / len(chunks))
        b, p = statistics.median(bare), statistics.median(proxied)
        print(f"{name:<22}{b:>15.0f}{p:>18.0f}{p - b:>16.0f}")


if __name__ == "__main__":
    main()
