"""One module per provider SDK: its wire format, its calls and what our span must say.

Each module defines a :class:`Provider` subclass; :data:`PROVIDERS` lists them by name, in
report order. A provider is imported only in the processes that measure it.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import wire

#: name -> "module:class", in report order.
PROVIDERS = {
    "openai": "openai_sdk:OpenAIBench",
    "anthropic": "anthropic_sdk:AnthropicBench",
    "google-genai": "google_genai_sdk:GoogleGenAIBench",
    "google-generativeai": "google_generativeai_sdk:LegacyGeminiBench",
}


@dataclass(frozen=True)
class Scenario:
    key: str
    is_async: bool
    chunks: int | None  # None: not streamed

    @property
    def label(self) -> str:
        kind = "async" if self.is_async else "sync"
        if self.chunks is None:
            return f"{kind} call"
        return f"{kind} stream N={self.chunks}"


class Provider:
    """One provider SDK under benchmark. Subclasses fill in the class attributes and
    :meth:`make_call`."""

    #: The name on the command line and in the report.
    name: str = ""
    #: What the caller's code looks like, for the report.
    call_label: str = ""
    #: Modules the application imports (before the baseline RSS is read, in both modes).
    imports: tuple[str, ...] = ()
    #: Distributions whose versions the report states.
    distributions: tuple[str, ...] = ()
    #: Our instrumentor of this SDK, "module:class".
    instrumentor: str = ""
    request_model: str = ""
    response_model: str = ""
    #: Span attributes our span must carry (besides cost, usage source and price status).
    expected_usage: dict[str, int] = {
        "gen_ai.usage.input_tokens": wire.PROMPT_TOKENS,
        "gen_ai.usage.cache_read.input_tokens": wire.CACHED_TOKENS,
        "gen_ai.usage.reasoning.output_tokens": wire.REASONING_TOKENS,
    }
    #: Instrumentation scopes whose spans the *baseline* may have (an SDK's own spans).
    baseline_scopes: frozenset[str] = frozenset()
    #: Notes for the report (one line each).
    notes: tuple[str, ...] = ()

    def stream_sizes(self, kind: str, sizes: tuple[int, ...]) -> tuple[int, ...]:
        """The stream sizes measured for ``kind`` (sync, async): all of them by default."""
        return sizes

    def scenarios(self, sizes: tuple[int, ...], kinds: tuple[str, ...]) -> list[Scenario]:
        """The non-streamed calls, then the streams of each size, for each kind."""
        out = [Scenario(f"{kind}_call", kind == "async", None) for kind in kinds]
        for kind in kinds:
            out.extend(
                Scenario(f"{kind}_stream_{n}", kind == "async", n)
                for n in self.stream_sizes(kind, sizes)
            )
        return out

    def import_sdk(self) -> None:
        for module in self.imports:
            importlib.import_module(module)

    def make_call(self, scenario: Scenario) -> Callable[[], Any]:
        """A function (a coroutine function for async scenarios) making one call of
        ``scenario`` on a client of its own, reading what a consumer reads, returning the
        number of chunks the caller saw (non-streamed: the answer's length)."""
        raise NotImplementedError

    def expected_seen(self, chunks: int) -> int:
        """Chunks a caller iterating a stream of ``chunks`` content chunks sees."""
        raise NotImplementedError

    def expected_span(self) -> dict[str, Any]:
        return {
            "gen_ai.request.model": self.request_model,
            "gen_ai.response.model": self.response_model,
            **self.expected_usage,
            "llm.usage.source": "provider",
            "llm.price.status": "catalog",
        }


def get(name: str) -> Provider:
    try:
        where = PROVIDERS[name]
    except KeyError:
        raise SystemExit(f"unknown provider {name!r}; known: {', '.join(PROVIDERS)}") from None
    module, _, cls = where.partition(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), cls)()
