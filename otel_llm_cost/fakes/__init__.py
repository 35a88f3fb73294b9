"""Fake provider servers on 127.0.0.1 that speak the real wire formats (demo and e2e tests)."""

from __future__ import annotations

from .anthropic_server import AnthropicExchange, AnthropicScript, FakeAnthropicServer
from .gemini_server import FakeGeminiServer, GeminiExchange, GeminiScript
from .openai_server import Exchange, FakeOpenAIServer, Script

__all__ = [
    "AnthropicExchange",
    "AnthropicScript",
    "Exchange",
    "FakeAnthropicServer",
    "FakeGeminiServer",
    "FakeOpenAIServer",
    "GeminiExchange",
    "GeminiScript",
    "Script",
]
