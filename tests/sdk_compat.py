"""Where the provider SDKs moved things between the oldest and the newest supported release.

The provider tests run against every release the matrix installs (``scripts/sdk-matrix.sh``), not
only the newest. A call the user makes at another place in an older SDK (e.g. openai's
``beta.chat.completions.parse`` before it became ``chat.completions.parse``) is made there, so
the product is tested on what users of that release actually call. A feature an SDK release does
not have at all (e.g. extended thinking in old anthropic releases) skips its test, naming the
release.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from packaging.version import Version


def sdk_version(distribution: str) -> Version:
    return Version(importlib.metadata.version(distribution))


def skip_unless(condition: bool, distribution: str, what: str) -> None:
    """Skip the test when the installed ``distribution`` has no ``what``."""
    if not condition:
        pytest.skip(f"{distribution} {sdk_version(distribution)} has no {what}")


def http_library(sdk_module: str) -> Any:
    """The HTTP library an SDK is built on: ``httpx2`` (openai 3.x, anthropic 1.x and later) or
    ``httpx`` before. A custom ``http_client`` must be of that library's ``Client``."""
    base = importlib.import_module(f"{sdk_module}._base_client")
    return getattr(base, "httpx2", None) or getattr(base, "httpx")  # noqa: B009


def openai_chat_helpers(client: Any) -> Any:
    """Where ``parse()`` and ``stream()`` of chat completions are: ``chat.completions`` (openai
    >= 1.92), ``beta.chat.completions`` before."""
    completions = client.chat.completions
    if hasattr(completions, "parse"):
        return completions
    return client.beta.chat.completions


def accepts(method: Any, parameter: str) -> bool:
    """Whether an SDK method takes ``parameter`` by name."""
    try:
        return parameter in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def anthropic_count_tokens(client: Any) -> Any:
    """``messages.count_tokens`` (GA), or ``beta.messages.count_tokens`` before it was GA."""
    for owner in (client.messages, client.beta.messages):
        method = getattr(owner, "count_tokens", None)
        if method is not None:
            return method
    skip_unless(False, "anthropic", "messages.count_tokens")
    return None


@contextmanager
def closing_client(client: Any) -> Iterator[Any]:
    """A google-genai client as a context manager (it is one from 1.39.1 on; older releases have
    neither ``__enter__`` nor ``close()`` and are used as they are)."""
    if hasattr(type(client), "__enter__"):
        with client:
            yield client
    else:
        try:
            yield client
        finally:
            close = getattr(client, "close", None)
            if callable(close):
                close()
