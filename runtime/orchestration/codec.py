"""The stored form of history and inbox events: explicit, versioned, no class paths.

A blob is ``MAGIC`` + one format-version byte + a pickle (protocol 5) of plain values only:
``{"kind": "TaskScheduled", "fields": {"seq": 3, "name": "inc", "input": b"..."}}``. The
kind is a stable name from ``KINDS`` (never a Python class path), so an event class can be
renamed or moved by changing that table alone; fields go by name, and a field missing from
a blob takes its dataclass default (old blobs stay readable when a field is added).

Plain-types pickle rather than JSON: it is in the standard library, written in C, keeps
``bytes`` and tuples as they are (no base64, no list/tuple confusion), and it is read with
an unpickler that refuses every class, so the envelope can never name a class path.

Values a user chose (inputs, outputs, event data, failures) are arbitrary objects: each one
stays a ``runtime.serialization.dumps`` blob (cloudpickle) inside the envelope. Datetimes
are ISO 8601 strings. Blobs written before this codec (a cloudpickle of the dataclass)
never start with ``MAGIC`` (a pickle starts with ``0x80``) and are read with ``loads``.
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from collections.abc import Callable
from datetime import datetime
from typing import Any

from ..errors import HistoryFormatError
from ..serialization import dumps, loads
from . import history as h

#: Prefix of every blob in the codec's format; a legacy cloudpickle blob starts with 0x80.
MAGIC = b"RDH"
#: The format this code writes; it reads every version up to this one.
FORMAT_VERSION = 1

#: The stable name of each event kind. Names are forever: rename a class, keep its name here.
KINDS: dict[str, type[h.HistoryEvent]] = {
    "ExecutionStarted": h.ExecutionStarted,
    "OrchestratorStarted": h.OrchestratorStarted,
    "TaskScheduled": h.TaskScheduled,
    "TaskCompleted": h.TaskCompleted,
    "TaskFailed": h.TaskFailed,
    "TimerCreated": h.TimerCreated,
    "TimerFired": h.TimerFired,
    "EventRaised": h.EventRaised,
    "SubOrchestrationCreated": h.SubOrchestrationCreated,
    "SubOrchestrationCompleted": h.SubOrchestrationCompleted,
    "SubOrchestrationFailed": h.SubOrchestrationFailed,
    "EntityCalled": h.EntityCalled,
    "EntityResponded": h.EntityResponded,
    "EntityFailed": h.EntityFailed,
    "EntitySignaled": h.EntitySignaled,
    "LockRequested": h.LockRequested,
    "LockGranted": h.LockGranted,
    "LockFailed": h.LockFailed,
    "LockReleased": h.LockReleased,
    "ExecutionTerminated": h.ExecutionTerminated,
    "ExecutionSuspended": h.ExecutionSuspended,
    "ExecutionResumed": h.ExecutionResumed,
    "ExecutionCompleted": h.ExecutionCompleted,
    "ContinuedAsNew": h.ContinuedAsNew,
}
_NAMES: dict[type[h.HistoryEvent], str] = {cls: name for name, cls in KINDS.items()}

_Conv = tuple[Callable[[Any, str], Any], Callable[[Any, str], Any]]


def _plain_str(value: Any, what: str) -> Any:
    # str.__str__ turns a str-based enum (OrchestrationStatus) into its plain value.
    return None if value is None else str.__str__(value)


def _plain_int(value: Any, what: str) -> Any:
    return int(value)


def _strs(value: Any, what: str) -> Any:
    return tuple(str.__str__(v) for v in value)


def _opt_bool(value: Any, what: str) -> Any:
    return None if value is None else bool(value)


def _opt_int(value: Any, what: str) -> Any:
    return None if value is None else int(value)


def _opt_float(value: Any, what: str) -> Any:
    return None if value is None else float(value)


def _ints(value: Any, what: str) -> Any:
    return tuple(int(v) for v in value)


def _as_is(value: Any, what: str) -> Any:
    return value


def _time_out(value: datetime, what: str) -> str:
    return value.isoformat()


def _time_in(value: str, what: str) -> datetime:
    return datetime.fromisoformat(value)


def _value_out(value: Any, what: str) -> bytes | None:
    return None if value is None else dumps(value, what)


def _value_in(value: bytes | None, what: str) -> Any:
    return None if value is None else loads(value, what)


def _events_out(value: Any, what: str) -> tuple[bytes, ...]:
    return tuple(encode_event(e, what) for e in value)


def _events_in(value: Any, what: str) -> tuple[h.HistoryEvent, ...]:
    return tuple(decode_event(b, what) for b in value)


#: How each annotation of history.py is stored: (encode, decode). A field of a type not
#: listed here fails at import, so a new field's stored form is always a decision.
_BY_ANNOTATION: dict[str, _Conv] = {
    "int": (_plain_int, _as_is),
    "int | None": (_opt_int, _as_is),
    "bool | None": (_opt_bool, _as_is),
    "float | None": (_opt_float, _as_is),
    "str": (_plain_str, _as_is),
    "str | None": (_plain_str, _as_is),
    "tuple[str, ...]": (_strs, _as_is),
    "tuple[int, ...]": (_ints, _as_is),
    "datetime": (_time_out, _time_in),
    "Any": (_value_out, _value_in),
    "FailureDetails": (_value_out, _value_in),
    "FailureDetails | None": (_value_out, _value_in),
    "tuple[HistoryEvent, ...]": (_events_out, _events_in),
}


def _fields_of(cls: type[h.HistoryEvent]) -> tuple[tuple[str, _Conv], ...]:
    out = []
    for f in dataclasses.fields(cls):
        annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
        if annotation not in _BY_ANNOTATION:
            raise TypeError(f"codec: no stored form for {cls.__name__}.{f.name}: {annotation}")
        out.append((f.name, _BY_ANNOTATION[annotation]))
    return tuple(out)


_FIELDS = {cls: _fields_of(cls) for cls in KINDS.values()}
#: Fields added after their kind was first stored: not written while None, so the events
#: that do not use them stay readable by the versions before (a rollback), byte for byte.
ADDED_LATER: dict[type[h.HistoryEvent], frozenset[str]] = {
    h.TaskScheduled: frozenset({"inline", "timeout", "attempt"}),
    h.ExecutionStarted: frozenset({"trace", "generation"}),
}


class _PlainUnpickler(pickle.Unpickler):
    """Reads only plain values: the envelope may never name a class."""

    def find_class(self, module: str, name: str) -> Any:
        raise pickle.UnpicklingError(f"the envelope names a class ({module}.{name})")


def encode_event(event: h.HistoryEvent, what: str = "history event") -> bytes:
    """The stored form of ``event``; SerializationError naming ``what`` if a value cannot be."""
    name = _NAMES.get(type(event))
    if name is None:
        raise HistoryFormatError(f"{type(event).__name__} is not a known history event kind")
    cls, optional = type(event), ADDED_LATER.get(type(event), frozenset())
    fields = {}
    for key, (out, _) in _FIELDS[cls]:
        value = getattr(event, key)
        if value is not None or key not in optional:
            fields[key] = out(value, what)
    body = pickle.dumps({"kind": name, "fields": fields}, protocol=5)
    return MAGIC + bytes((FORMAT_VERSION,)) + body


def decode_event(blob: bytes, what: str = "history event") -> h.HistoryEvent:
    """The event stored in ``blob``, in the codec's format or a legacy cloudpickle."""
    if not blob.startswith(MAGIC):
        # Written before the codec: a cloudpickle of the dataclass itself.
        event = loads(blob, what)
        if not isinstance(event, h.HistoryEvent):
            raise HistoryFormatError(f"the stored value is a {type(event).__name__}, not an event")
        return event
    if len(blob) <= len(MAGIC):
        raise HistoryFormatError("the blob ends after its format marker")
    version = blob[len(MAGIC)]
    if version > FORMAT_VERSION or version < 1:
        raise HistoryFormatError(
            f"format version {version} is not one this ray-durable reads (it reads 1 to "
            f"{FORMAT_VERSION}): the event was written by a newer version; upgrade to read it"
        )
    try:
        envelope = _PlainUnpickler(io.BytesIO(blob[len(MAGIC) + 1 :])).load()
        name, fields = envelope["kind"], envelope["fields"]
    except Exception as exc:
        raise HistoryFormatError(f"a corrupt envelope ({type(exc).__name__}: {exc})") from None
    cls = KINDS.get(name)
    if cls is None:
        raise HistoryFormatError(
            f"unknown event kind {name!r}: written by a newer version of ray-durable, or its "
            "kind was removed from runtime.orchestration.codec.KINDS"
        )
    known = dict(_FIELDS[cls])
    unknown = sorted(set(fields) - set(known))
    if unknown:
        raise HistoryFormatError(f"{name} has fields this version does not know: {unknown}")
    return cls(**{key: known[key][1](value, what) for key, value in fields.items()})
