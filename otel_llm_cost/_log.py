"""Logging for faults inside otel-llm-cost: each distinct fault is logged once, never raised."""

from __future__ import annotations

import logging
import threading

logger = logging.getLogger("otel_llm_cost")

_seen: set[str] = set()
_lock = threading.Lock()


def once(key: str) -> bool:
    """True the first time ``key`` is seen in this process."""
    if key in _seen:
        return False
    with _lock:
        if key in _seen:
            return False
        _seen.add(key)
        return True


def internal_error(where: str, exc: BaseException) -> None:
    """Log a fault in our own code once per place and exception type; the host app goes on."""
    if once(f"error:{where}:{type(exc).__name__}"):
        logger.error(
            "otel-llm-cost: internal error in %s (telemetry for this call may be incomplete; "
            "the application is not affected). Logged once.",
            where,
            exc_info=exc,
        )


def warn_once(key: str, message: str, *args: object) -> None:
    """Log a warning the first time ``key`` is seen."""
    if once(f"warn:{key}"):
        logger.warning(message, *args)
