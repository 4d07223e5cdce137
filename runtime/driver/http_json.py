"""The JSON view of instances, histories and entities: one view for the HTTP API and the CLI.

Pure functions, no Ray and no web framework: what the Durable Functions compatible HTTP
API (``runtime.driver.http_api``) answers, built from the store's records, and what ``durable ...
--json`` prints (``runtime.driver.cli``), built from the client's decoded states. Both spell an
instance as Durable Functions does (``instanceId``, ``runtimeStatus``, ``historyEvents``
of ``{"EventType": ..., "<Field>": ...}``), with ``failureDetails`` and ``version`` beside.

Values are stored pickled, so they can be anything Python. A view keeps JSON's own types
(``None``, bools, numbers, strings, lists, objects), shows tuples and sets as lists,
dates and times as ISO 8601 strings, enums by value, dataclasses and plain objects as
objects of their public attributes (as Durable Functions shows a class's fields), and
turns everything else into a marker ``{"$type": "module.Class", "$repr": "..."}``. A stored
value that cannot be unpickled in the API's process shows as ``{"$unreadable": "..."}``.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import json
import math
import types
from collections import Counter
from collections.abc import Iterable
from datetime import date, datetime, time, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from ..errors import FailureDetails, SerializationError
from ..orchestration.codec import ADDED_LATER, decode_event
from ..orchestration.status import OrchestrationStatus
from ..serialization import loads
from ..store import InstanceRecord, Quarantined

if TYPE_CHECKING:  # the client module imports Ray; the views only read its dataclass
    from .client import OrchestrationState

#: Where Durable Functions serves its management API; every route is below it.
BASE_PATH = "/runtime/webhooks/durabletask"
#: Keys of the marker that stands for a value JSON cannot show.
TYPE_KEY, REPR_KEY, UNREADABLE_KEY = "$type", "$repr", "$unreadable"
#: Deeper structures (or cycles) end in a marker instead of recursing on.
MAX_DEPTH = 64
MAX_REPR = 1000
#: History event fields that carry an output, shown only with ``showHistoryOutput``.
OUTPUT_FIELDS = frozenset({"result"})


def json_view(value: Any) -> Any:
    """A JSON-compatible view of any Python value (see the module docstring)."""
    return _view(value, set(), 0)


def _view(value: Any, seen: set[int], depth: int) -> Any:
    if isinstance(value, _Unreadable):
        return {UNREADABLE_KEY: value.message}
    if isinstance(value, enum.Enum):
        value = value.value
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else marker(value)
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if depth >= MAX_DEPTH or id(value) in seen:
        return marker(value)
    seen.add(id(value))
    try:
        return _container(value, seen, depth + 1)
    finally:
        seen.discard(id(value))


def _container(value: Any, seen: set[int], depth: int) -> Any:
    if isinstance(value, dict):
        return {_key(k): _view(v, seen, depth) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_view(item, seen, depth) for item in value]
    attributes = _public_attributes(value)
    if attributes is None:
        return marker(value)
    return {name: _view(item, seen, depth) for name, item in attributes.items()}


def _public_attributes(value: Any) -> dict[str, Any] | None:
    """A dataclass's fields or a plain object's public attributes; None for anything else."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
    if isinstance(value, (type, types.ModuleType, BaseException)) or callable(value):
        return None
    attributes = getattr(value, "__dict__", None)
    if not isinstance(attributes, dict):
        return None
    return {k: v for k, v in attributes.items() if isinstance(k, str) and not k.startswith("_")}


def _key(key: Any) -> str:
    # The same strings json.dumps writes for these keys.
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, bool):
        return {None: "null", True: "true", False: "false"}[key]
    if isinstance(key, (int, float)):
        return str(key)
    return _safe_repr(key)


def marker(value: Any) -> dict[str, str]:
    """The marker shown for a value JSON cannot represent."""
    cls = type(value)
    module = "" if cls.__module__ == "builtins" else f"{cls.__module__}."
    name = module + cls.__qualname__
    return {TYPE_KEY: name, REPR_KEY: _safe_repr(value)}


def _safe_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception as exc:  # a user's __repr__ may raise anything
        text = f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= MAX_REPR else text[: MAX_REPR - 3] + "..."


def _decode(blob: bytes | None, what: str) -> Any:
    """Unpickle a stored value; one this process cannot read comes back as _Unreadable."""
    try:
        return loads(blob, what)
    except SerializationError as exc:
        return _Unreadable(str(exc))


@dataclasses.dataclass(frozen=True)
class _Unreadable:
    message: str


def _value(blob: bytes | None, what: str) -> Any:
    return json_view(_decode(blob, what))


def timestamp(seconds: float) -> str:
    """Durable Functions' time format: ISO 8601 in UTC, whole seconds, ``Z``."""
    return datetime.fromtimestamp(seconds, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def status_payload(
    record: InstanceRecord,
    *,
    show_input: bool = True,
    history: list[bytes] | None = None,
    show_history_output: bool = False,
) -> dict[str, Any]:
    """The status JSON of one stored instance (``GET instances/{id}``)."""
    events = None
    if history is not None:
        events = [history_event(blob, show_history_output) for blob in history]
    return instance_view(
        instance_id=record.instance_id,
        name=record.name,
        status=record.status,
        version=record.version,
        input=_decode(record.input, "input") if show_input else None,
        output=_decode(record.output, "output"),
        custom_status=_decode(record.custom_status, "custom status"),
        created_time=record.created_time,
        last_updated_time=record.last_updated_time,
        failure=_decode(record.failure, "failure details"),
        history_events=events,
    )


def state_payload(state: OrchestrationState) -> dict[str, Any]:
    """The status JSON of an instance the client read (``durable status/list --json``)."""
    events = None
    if state.history is not None:
        events = [event_view(event, show_output=True) for event in state.history]
    return instance_view(
        instance_id=state.instance_id,
        name=state.name,
        status=str(state.runtime_status),
        version=state.version,
        input=state.input,
        output=state.output,
        custom_status=state.custom_status,
        created_time=state.created_time.timestamp(),
        last_updated_time=state.last_updated_time.timestamp(),
        failure=state.failure_details,
        history_events=events,
    )


def instance_view(
    *,
    instance_id: str,
    name: str,
    status: str,
    version: str,
    input: Any,
    output: Any,
    custom_status: Any,
    created_time: float,
    last_updated_time: float,
    failure: Any,
    history_events: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """The status JSON of one instance from its decoded values (times in epoch seconds)."""
    body: dict[str, Any] = {
        "name": name,
        "instanceId": instance_id,
        "runtimeStatus": status,
        "input": json_view(input),
        "customStatus": json_view(custom_status),
        "output": json_view(output),
        "createdTime": timestamp(created_time),
        "lastUpdatedTime": timestamp(last_updated_time),
        "historyEvents": history_events,
        "failureDetails": None,
        "version": version,
    }
    if isinstance(failure, FailureDetails):
        # Durable Functions shows a failed instance's error message as its output.
        if body["output"] is None:
            body["output"] = str(failure)
        body["failureDetails"] = {
            "errorType": failure.error_type,
            "errorMessage": failure.message,
            "stackTrace": failure.stack_trace,
        }
    return body


def history_event(blob: bytes, show_output: bool = False) -> dict[str, Any]:
    """One history event as ``{"EventType": ..., "<Field>": ...}``."""
    try:
        event: Any = decode_event(blob)
    except SerializationError as exc:
        event = _Unreadable(str(exc))
    return event_view(event, show_output)


def event_view(event: Any, show_output: bool = False) -> dict[str, Any]:
    """One decoded history event as ``{"EventType": ..., "<Field>": ...}``."""
    if isinstance(event, _Unreadable):
        return {"EventType": None, UNREADABLE_KEY: event.message}
    if not dataclasses.is_dataclass(event):
        return {"EventType": type(event).__name__, **marker(event)}
    body: dict[str, Any] = {"EventType": type(event).__name__}
    later = ADDED_LATER.get(type(event), frozenset())  # type: ignore[arg-type]
    for field in dataclasses.fields(event):
        if field.name in OUTPUT_FIELDS and not show_output:
            continue
        if field.name in later and getattr(event, field.name) is None:
            continue  # the view of an event that does not use it stays as it was
        body[_pascal(field.name)] = json_view(getattr(event, field.name))
    return body


def _pascal(name: str) -> str:
    return "".join(part[:1].upper() + part[1:] for part in name.split("_"))


def activity_progress(event_types: Iterable[str]) -> tuple[int, int, int]:
    """(scheduled, completed, failed) activities of a history, from its events' type names
    (``durable watch`` and the dashboard count with this one function)."""
    counts = Counter(event_types)
    return counts["TaskScheduled"], counts["TaskCompleted"], counts["TaskFailed"]


def is_running(status: str) -> bool:
    """True while an instance may still change by itself (HTTP 202 while polling)."""
    return not OrchestrationStatus(status).is_terminal


def management_urls(origin: str, instance_id: str, hub: str) -> dict[str, str]:
    """The check-status payload: the instance's id and the URLs that manage it."""
    prefix = f"{origin}{BASE_PATH}/instances/{quote(instance_id, safe='')}"
    suffix = f"taskHub={quote(hub, safe='')}"
    return {
        "id": instance_id,
        "statusQueryGetUri": f"{prefix}?{suffix}",
        "sendEventPostUri": f"{prefix}/raiseEvent/{{eventName}}?{suffix}",
        "terminatePostUri": f"{prefix}/terminate?reason={{text}}&{suffix}",
        "purgeHistoryDeleteUri": f"{prefix}?{suffix}",
        "restartPostUri": f"{prefix}/restart?{suffix}",
        "suspendPostUri": f"{prefix}/suspend?reason={{text}}&{suffix}",
        "resumePostUri": f"{prefix}/resume?reason={{text}}&{suffix}",
    }


#: A keyset page token starts with this (a bare number is an offset, as tokens once were).
KEYSET_PREFIX = "k."


#: The longest token read: ids have no length limit of their own, headers do (64 KiB).
MAX_TOKEN = 65536


def page_token(record: InstanceRecord) -> str:
    """The opaque token of the page after ``record``: its (created time, instance id)."""
    key = json.dumps([record.created_time, record.instance_id], ensure_ascii=False)
    return KEYSET_PREFIX + base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def parse_page_token(token: str) -> tuple[float, str] | None:
    """The (created time, instance id) a token made by ``page_token`` names; None if it is
    not such a token."""
    if not token.startswith(KEYSET_PREFIX) or len(token) > MAX_TOKEN:
        return None
    text = token[len(KEYSET_PREFIX) :]
    try:
        key = json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        created, iid = key
        if isinstance(created, (int, float)) and not isinstance(created, bool):
            if math.isfinite(created) and isinstance(iid, str):
                return float(created), iid
    except Exception:  # anything a crafted token makes json or math raise: not a token
        pass
    return None


def entity_payload(
    name: str, key: str, last_modified: float, state: Any = None, fetch_state: bool = False
) -> dict[str, Any]:
    """One row of ``GET entities/{name}`` (Durable Functions' DurableEntityStatus)."""
    body: dict[str, Any] = {
        "entityId": {"name": name, "key": key},
        "lastOperationTime": timestamp(last_modified),
    }
    if fetch_state:
        body["state"] = state
    return body


def state_view(blob: bytes | None) -> Any:
    """An entity's stored state as JSON (``GET entities/{name}/{key}``)."""
    return _value(blob, "entity state")


def entity_state_payload(entity_id: str, exists: bool, state: Any) -> dict[str, Any]:
    """An entity's decoded state as ``durable entity --json`` prints it."""
    return {"entityId": entity_id, "exists": exists, "state": json_view(state)}


def quarantined_payload(item: Quarantined) -> dict[str, Any]:
    """The JSON of one quarantined item (CLI and HTTP API); the operation's input as a view."""
    return {
        "id": item.id,
        "kind": item.kind,
        "target": item.target,
        "crashes": item.crashes,
        "detail": item.detail,
        "quarantinedAt": timestamp(item.quarantined_at),
        "operation": item.operation,
        "sender": item.sender,
        "sequence": item.seq,
        "input": None if item.input is None else _value(item.input, "operation input"),
    }
