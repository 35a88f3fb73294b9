"""Fake provider servers on 127.0.0.1 that speak the real wire formats (demo and e2e tests)."""

from __future__ import annotations

from .openai_server import Exchange, FakeOpenAIServer, Script

__all__ = ["Exchange", "FakeOpenAIServer", "Script"]
