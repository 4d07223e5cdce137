"""Replay recorded histories against today's code, before a deploy (Temporal's replayer).

``Replayer([orchestrators]).replay(history)`` runs the real engine over a recorded history
and reports whether today's code takes the same actions: ``ReplayResult.ok``, or the
engine's non-determinism error with its sequence number and what history recorded against
what the code does now. A history comes as:

- the JSON that ``durable status ID --history --json`` prints (or the HTTP API's status
  with ``showHistory=true&showHistoryOutput=true``), as a dict or a file;
- the store's raw history (``Replayer.replay_store(url, hub, instance_id)``, or a list of
  the blobs ``Store.load_history`` returns), or a golden file of ``tests/golden``;
- the events themselves (``InstanceState.history``).

The JSON view keeps JSON values only (see ``runtime.driver.http_json``): tuples come back as lists,
dataclasses and objects as dicts of their fields, and values JSON cannot show (bytes, sets of
objects, classes...) only as a ``{"$type", "$repr"}`` marker, which the replay then sees in
their place (timedeltas, as in retry policies, are rebuilt from theirs). Each such value is
named in ``ReplayResult.warnings``. Where an orchestrator needs the exact values, replay the
raw history: it is lossless.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import DurableError, FailureDetails, NonDeterminismError, NotRegisteredError
from ..orchestration import history as h
from ..orchestration.codec import KINDS, decode_event
from ..orchestration.engine import OrchestrationExecutor, RetryPolicy
from ..orchestration.status import OrchestrationStatus
from ..registry import Orchestrator, as_registrable


class HistoryInputError(DurableError, ValueError):
    """A history given to the Replayer cannot be read, or lacks what replay needs."""

    def __init__(self, message: str) -> None:
        super().__init__(message)


@dataclass(frozen=True)
class ReplayResult:
    """The outcome of replaying one history; ``ok`` unless today's code diverges."""

    instance_id: str
    orchestrator: str
    #: the status the replay reached (Running for a history of a live instance)
    status: str
    #: the engine's message (or the changed outcome); None when the replay matched
    error: str | None = None
    #: the sequence number of the first action that differs, when the engine names one
    seq: int | None = None
    #: what history recorded at ``seq``, and what the code does there now (the engine's words)
    recorded: str | None = None
    now: str | None = None
    #: values the history's JSON form could not carry exactly (see the module docstring)
    warnings: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """True when today's code replays the history as recorded."""
        return self.error is None

    def raise_on_failure(self) -> None:
        """Raise NonDeterminismError with the replay's report unless it is ok."""
        if self.error is not None:
            raise NonDeterminismError(str(self))

    def __str__(self) -> str:
        head = f"instance {self.instance_id!r} ({self.orchestrator})"
        if self.error is None:
            return f"{head}: replays as recorded (status {self.status})"
        lossy = (
            f" Values the JSON history lost: {'; '.join(self.warnings)}." if self.warnings else ""
        )
        return f"{head}: {self.error}{lossy}"


@dataclass(frozen=True)
class LoadedHistory:
    """A history read by ``load_history``: its events and where they came from."""

    instance_id: str
    name: str
    version: str
    events: list[h.HistoryEvent]
    warnings: tuple[str, ...] = ()


class Replayer:
    """Replays histories against the given orchestrators (matched by name and version).

    Activities and entities among them are skipped, so a hub's whole ``register`` list
    can be given.
    """

    def __init__(self, orchestrators: Iterable[Any]) -> None:
        self._by_name: dict[str, list[Orchestrator]] = {}
        for obj in orchestrators:
            orch = as_registrable(obj, "Replayer(orchestrators)")
            if orch.kind == "orchestrator":
                self._by_name.setdefault(orch.name, []).append(orch)

    def replay(
        self, history: Any, *, instance_id: str | None = None, raise_on_failure: bool = False
    ) -> ReplayResult:
        """Replay one history (a JSON export, a file, raw blobs or events; see the module).

        The instance id matters to replay (children's default ids derive from it): a JSON
        export names it; for bare events give ``instance_id``, or it is inferred from a
        child's default id when there is one.
        """
        loaded = load_history(history)
        iid = instance_id or loaded.instance_id or _inferred_id(loaded.events)
        orch = self._orchestrator(loaded.name, loaded.version)
        result = replay_events(orch.fn, loaded.events, iid, orch.name)
        result = dataclasses.replace(result, warnings=loaded.warnings)
        if raise_on_failure:
            result.raise_on_failure()
        return result

    def replay_store(
        self, store_url: str, hub: str, instance_id: str, *, raise_on_failure: bool = False
    ) -> ReplayResult:
        """Replay an instance's raw history, read from a hub's store (lossless)."""
        from ..errors import InstanceNotFoundError
        from ..store import open_store

        store = open_store(store_url, hub)
        try:
            if store.load_instance(instance_id) is None:
                raise InstanceNotFoundError(instance_id)
            blobs = store.load_history(instance_id)
        finally:
            store.close()
        return self.replay(blobs, instance_id=instance_id, raise_on_failure=raise_on_failure)

    def _orchestrator(self, name: str, version: str) -> Orchestrator:
        candidates = self._by_name.get(name)
        if not candidates:
            raise NotRegisteredError("orchestrator", name, tuple(sorted(self._by_name)))
        exact = [o for o in candidates if o.version == version]
        return (exact or candidates)[-1]


def replay_events(
    fn: Any, events: list[h.HistoryEvent], instance_id: str = "replay", name: str = ""
) -> ReplayResult:
    """Run ``fn`` over recorded ``events`` with a fresh executor and compare the outcome."""
    step = OrchestrationExecutor(fn, instance_id).execute(events, [])
    status = str(step.status)
    failure = step.failure
    if failure is not None and failure.error_type == NonDeterminismError.__name__:
        seq, recorded, now = _parse_mismatch(failure.message)
        return ReplayResult(instance_id, name, status, failure.message, seq, recorded, now)
    # The engine checks where the execution ends (code that goes on past a recorded end is
    # non-determinism); how it ends is compared here, with the code's failure in the report.
    expected = _recorded_end(events)
    if expected is not None and expected != status:
        shown = f"ends {status}" + (f" ({failure})" if failure is not None else "")
        error = f"the history ended {expected}, but the code now {shown}"
        return ReplayResult(instance_id, name, status, error)
    return ReplayResult(instance_id, name, status)


def _inferred_id(events: list[h.HistoryEvent]) -> str:
    """The instance id a child's default id (``{instance_id}:{seq}``) shows, else "replay"."""
    for event in events:
        if isinstance(event, h.SubOrchestrationCreated):
            prefix, _, seq = event.instance_id.rpartition(":")
            if prefix and seq == str(event.seq):
                return prefix
    return "replay"


def _recorded_end(events: list[h.HistoryEvent]) -> str | None:
    for event in reversed(events):
        if isinstance(event, h.ExecutionCompleted):
            return str.__str__(event.status)
        if isinstance(event, h.ContinuedAsNew):
            return str(OrchestrationStatus.CONTINUED_AS_NEW)
    return None


#: The engine's two non-determinism messages (runtime.orchestration.engine); a test pins them.
_MISMATCH = re.compile(
    r"at action #(\d+) the history recorded (.+?) but the code now schedules (.+?)\. Most likely"
)
_UNTAKEN = re.compile(r"history answers action #(\d+), which the code did not take")


def _parse_mismatch(message: str) -> tuple[int | None, str | None, str | None]:
    found = _MISMATCH.search(message)
    if found:
        return int(found.group(1)), found.group(2), found.group(3)
    found = _UNTAKEN.search(message)
    if found:
        return int(found.group(1)), f"an answer to action #{found.group(1)}", "nothing"
    return None, None, None


# -- reading histories ----------------------------------------------------------------


def load_history(source: Any) -> LoadedHistory:
    """Read a history from any form the Replayer takes (see the module docstring)."""
    if isinstance(source, LoadedHistory):
        return source
    if isinstance(source, (str, Path)):
        try:
            source = json.loads(Path(source).read_text())
        except (OSError, ValueError) as exc:
            raise HistoryInputError(f"cannot read a history from {str(source)!r}: {exc}") from None
    if isinstance(source, dict):
        return _from_document(source)
    if isinstance(source, (list, tuple)):
        return _from_events(list(source), "", [])
    raise HistoryInputError(
        f"a history is a JSON export, a file, raw blobs or events, not a {type(source).__name__}"
    )


def _from_document(doc: dict[str, Any]) -> LoadedHistory:
    if "historyEvents" in doc:  # the CLI's or the HTTP API's JSON view
        events = doc["historyEvents"]
        if events is None:
            raise HistoryInputError(
                f"instance {doc.get('instanceId')!r} was exported without its history: "
                "use `durable status ID --history --json`"
            )
        return _from_events(list(events), str(doc.get("instanceId") or ""), [])
    if "history" in doc:  # a golden file of tests/golden: base64 blobs of the store
        blobs = [base64.b64decode(b) for b in doc["history"]]
        return _from_events(blobs, str(doc.get("instance_id") or ""), [])
    raise HistoryInputError("the JSON document holds no history (no 'historyEvents' key)")


def _from_events(items: list[Any], instance_id: str, warnings: list[str]) -> LoadedHistory:
    events = [_event(item, index, warnings) for index, item in enumerate(items)]
    started = next((e for e in events if isinstance(e, h.ExecutionStarted)), None)
    if started is None:
        raise HistoryInputError("the history has no ExecutionStarted event: nothing to replay")
    return LoadedHistory(instance_id, started.name, started.version, events, tuple(warnings))


def _event(item: Any, index: int, warnings: list[str]) -> h.HistoryEvent:
    if isinstance(item, h.HistoryEvent):
        return item
    if isinstance(item, (bytes, bytearray)):
        return decode_event(bytes(item), f"history event #{index}")
    if isinstance(item, dict):
        return _json_event(item, index, warnings)
    raise HistoryInputError(f"history event #{index} is a {type(item).__name__}")


def _json_event(item: dict[str, Any], index: int, warnings: list[str]) -> h.HistoryEvent:
    kind = item.get("EventType", item.get("eventType"))
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise HistoryInputError(f"history event #{index} has an unknown EventType {kind!r}")
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        key = "".join(part[:1].upper() + part[1:] for part in f.name.split("_"))
        if key not in item:
            if f.name == "result":
                raise HistoryInputError(
                    f"history event #{index} ({kind}) has no result: the history was exported "
                    "without outputs (use the CLI's --history --json, or showHistoryOutput=true)"
                )
            continue  # written before the field existed: its default
        where = f"event #{index} ({kind}) {key}"
        values[f.name] = _json_field(cls, f, item[key], where, warnings)
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise HistoryInputError(f"history event #{index} ({kind}) is malformed: {exc}") from None


def _json_field(
    cls: type, f: dataclasses.Field, value: Any, where: str, warnings: list[str]
) -> Any:
    annotation = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", "")
    if cls is h.ExecutionStarted and f.name == "activity_retry" and isinstance(value, dict):
        return RetryPolicy(**_revive(value, where, warnings))
    if value is None or annotation in ("int", "str", "str | None"):
        return value
    if annotation.startswith("tuple[HistoryEvent"):
        return ()  # ContinuedAsNew's carried events: history-only, replay never reads them
    if annotation.startswith("tuple["):
        return tuple(value)
    if annotation == "datetime":
        return datetime.fromisoformat(value)
    if annotation.startswith("FailureDetails"):
        return FailureDetails(
            **{k: value.get(k, "") for k in ("error_type", "message", "stack_trace")}
        )
    return _revive(value, where, warnings)


_TIMEDELTA = re.compile(r"^datetime\.timedelta\(((?:\w+=-?\d+(?:, )?)*|0)\)$")


def _revive(value: Any, where: str, warnings: list[str]) -> Any:
    """A JSON value, with timedelta markers rebuilt and every other marker reported."""
    if isinstance(value, list):
        return [_revive(v, where, warnings) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"$type", "$repr"}:
        found = _TIMEDELTA.match(str(value["$repr"]))
        if value["$type"] == "datetime.timedelta" and found:
            parts = [p.split("=") for p in found.group(1).split(", ") if "=" in p]
            return timedelta(**{k: int(v) for k, v in parts})  # "timedelta(0)": no parts
        warnings.append(f"{where}: a {value['$type']} shown as {value['$repr']}")
        return value
    if "$unreadable" in value:
        warnings.append(f"{where}: unreadable when exported ({value['$unreadable']})")
        return value
    return {k: _revive(v, where, warnings) for k, v in value.items()}
