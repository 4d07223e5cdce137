"""Payload encoding: cloudpickle for everything stored, with typed errors."""

from __future__ import annotations

import traceback
from typing import Any

import cloudpickle

from .errors import FailureDetails, SerializationError


def dumps(value: Any, what: str = "value") -> bytes:
    """Pickle ``value``; raise SerializationError naming ``what`` if it cannot be."""
    try:
        return cloudpickle.dumps(value)
    except Exception as exc:  # pickling runs arbitrary __reduce__ code
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from None


def loads(blob: bytes | None, what: str = "value") -> Any:
    """Unpickle ``blob`` (None stays None); raise SerializationError if it cannot be."""
    if blob is None:
        return None
    try:
        return cloudpickle.loads(blob)
    except Exception as exc:
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from None


def failure_of(exc: BaseException) -> FailureDetails:
    """Capture an exception's type, message and traceback as plain strings."""
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    inner = getattr(exc, "details", None)
    if isinstance(inner, FailureDetails) and inner.stack_trace:
        # Keep the activity's own traceback: it is where the error really happened.
        trace = f"{inner.stack_trace}\nThe above failure caused:\n\n{trace}"
    return FailureDetails(type(exc).__name__, str(exc), trace)
