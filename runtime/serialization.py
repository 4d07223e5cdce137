"""Payload encoding: cloudpickle for everything stored, with typed errors.

Code shipped by value (orchestrators, activities and entities defined in ``__main__`` or
behind a decorator) keeps its file name and travels with its source lines, so a traceback
raised on any node names the user's file and shows the failing line. cloudpickle 3.1 and
later replace every shipped code object's file name with ``"<dynamic-code>"``.
"""

from __future__ import annotations

import io
import linecache
import marshal
import pickle
import traceback
import types
from collections import ChainMap
from typing import Any

import cloudpickle

from .errors import FailureDetails, SerializationError


class _Source:
    """A file's source lines, pickled once per payload however many code objects share it."""

    __slots__ = ("filename", "lines")

    def __init__(self, filename: str, lines: list[str]) -> None:
        self.filename = filename
        self.lines = lines

    def __reduce__(self) -> tuple[Any, ...]:
        return _register_source, (self.filename, self.lines)


# One object per file, so that pickle's memo writes the lines once in each payload.
_sources: dict[str, _Source | None] = {}


def _source_of(filename: str) -> _Source | None:
    if filename not in _sources:
        lines = linecache.getlines(filename)
        _sources[filename] = _Source(filename, list(lines)) if lines else None
    return _sources[filename]


def _register_source(filename: str, lines: list[str]) -> str:
    """Make ``lines`` what tracebacks show for ``filename`` in this process."""
    # mtime None: linecache.checkcache never drops the entry, even where no such file exists.
    linecache.cache[filename] = (sum(map(len, lines)), None, lines, filename)
    return filename


def _load_code(blob: bytes, source: str | None) -> types.CodeType:
    """A code object from its marshal form (``source`` is registered before this runs)."""
    return marshal.loads(blob)


def _reduce_code(code: types.CodeType) -> tuple[Any, ...]:
    # marshal is what .pyc files use: it keeps co_filename, line tables and nested code.
    return _load_code, (marshal.dumps(code), _source_of(code.co_filename))


class _Pickler(cloudpickle.Pickler):
    """cloudpickle, except that code objects keep their file and carry their source."""

    dispatch_table = ChainMap({types.CodeType: _reduce_code}, cloudpickle.Pickler.dispatch_table)


def _pickle(value: Any) -> bytes:
    with io.BytesIO() as file:
        _Pickler(file, protocol=pickle.HIGHEST_PROTOCOL).dump(value)
        return file.getvalue()


def dumps(value: Any, what: str = "value") -> bytes:
    """Pickle ``value``; raise SerializationError naming ``what`` if it cannot be."""
    try:
        return _pickle(value)
    except Exception as exc:  # pickling runs arbitrary __reduce__ code
        raise SerializationError(what, f"{type(exc).__name__}: {exc}") from None


def loads(blob: bytes | None, what: str = "value") -> Any:
    """Unpickle ``blob`` (None stays None); raise SerializationError if it cannot be."""
    if blob is None:
        return None
    try:
        return cloudpickle.loads(blob)
    except Exception as exc:
        raise SerializationError(what, f"{type(exc).__name__}: {exc}", "deserialize") from None


def failure_of(exc: BaseException) -> FailureDetails:
    """Capture an exception's type, message and traceback as plain strings."""
    trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    inner = getattr(exc, "details", None)
    if isinstance(inner, FailureDetails) and inner.stack_trace:
        # Keep the activity's own traceback: it is where the error really happened.
        trace = f"{inner.stack_trace}\nThe above failure caused:\n\n{trace}"
    return FailureDetails(type(exc).__name__, str(exc), trace)
