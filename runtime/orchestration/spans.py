"""Trace spans read off an execution's history: pure, no OpenTelemetry, no clock.

An execution is one span; each activity, timer, sub-orchestration, entity call and lock
request is a child span from the episode that recorded it to the episode that recorded its
answer; a signal and an external event are points. Spans are built only from events a step
appends, never from replayed ones (``observe(..., emit=False)`` rebuilds the open ones),
so a host that dies and replays does not send a step's span twice.

Span ids are derived from the instance, the execution and the action's sequence number,
so whichever process emits a span, and whichever incarnation dispatches its activity, they
agree on it: an activity's span is known before it runs (the Ray task runs inside it) and a
child's execution span hangs under its parent's call without a message carrying it back.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

from . import history as h

_TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")

#: Kinds as OpenTelemetry names them; the exporter maps them to its SpanKind.
INTERNAL, CLIENT, PRODUCER = "internal", "client", "producer"


@dataclass(frozen=True)
class SpanRecord:
    """One finished span, in plain values: ids in hex, times in seconds since the epoch."""

    name: str
    trace_id: str
    span_id: str
    parent_id: str | None
    start: float
    end: float
    kind: str = INTERNAL
    attributes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def derived_id(*parts: str, length: int = 16) -> str:
    """A hex id of ``length`` digits from ``parts``; never all zeros (W3C forbids it)."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:length]
    return digest if digest.strip("0") else "1".rjust(length, "0")


def traceparent(trace_id: str, span_id: str) -> str:
    """The W3C ``traceparent`` header value of a sampled span."""
    return f"00-{trace_id}-{span_id}-01"


def parse_traceparent(value: str | None) -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of a W3C traceparent, or None when absent or malformed."""
    if not isinstance(value, str):
        return None
    match = _TRACEPARENT.match(value.strip().lower())
    if match is None:
        return None
    trace_id, span_id = match.group(1), match.group(2)
    if not trace_id.strip("0") or not span_id.strip("0"):
        return None
    return trace_id, span_id


@dataclass
class _Open:
    name: str
    start: float
    kind: str
    attributes: dict[str, Any]


class InstanceTrace:
    """The spans of one execution, fed its history events in order."""

    def __init__(self, instance_id: str, execution_id: str) -> None:
        self.instance_id = instance_id
        self.execution_id = execution_id
        self.span_id = derived_id("execution", instance_id, execution_id)
        self.trace_id = derived_id("trace", instance_id, execution_id, length=32)
        self.parent_id: str | None = None
        #: the recorded traceparent this execution was started under (continue-as-new
        #: starts the next execution under the same one)
        self.started_under: str | None = None
        self.name = ""
        self.generation = 1
        self.started: float | None = None
        self.now = 0.0
        self._events = 0
        self._open: dict[int, _Open] = {}
        #: Ray task ids of dispatched activities, recorded as the dispatcher learns them
        self.ray_tasks: dict[int, str] = {}

    @classmethod
    def resumed(
        cls, instance_id: str, execution_id: str, history: list[h.HistoryEvent]
    ) -> InstanceTrace:
        """The trace of an execution activated from its stored ``history`` (no spans sent)."""
        trace = cls(instance_id, execution_id)
        trace.observe(history, emit=False)
        return trace

    def child_id(self, seq: int) -> str:
        """The span id of this execution's action ``seq``."""
        return derived_id("action", self.instance_id, self.execution_id, str(seq))

    def context_of(self, seq: int) -> str:
        """The traceparent of action ``seq``: what its activity or child runs under."""
        return traceparent(self.trace_id, self.child_id(seq))

    def observe(self, events: list[h.HistoryEvent], emit: bool = True) -> list[SpanRecord]:
        """Apply ``events``; the spans they finish (none when ``emit`` is False: replay)."""
        out: list[SpanRecord] = []
        for event in events:
            kind = type(event)
            if kind is h.OrchestratorStarted:
                self.now = event.timestamp.timestamp()  # type: ignore[attr-defined]
            elif kind in _OPENS:
                self._open_span(event)
            elif kind in _ANSWERS:
                self._close_span(event, out if emit else None)
            elif kind is h.ExecutionStarted:
                self._started(event)  # type: ignore[arg-type]
            elif emit and kind is h.EntitySignaled:
                out.append(self._point(event, f"signal {event.operation}", PRODUCER))  # type: ignore[attr-defined]
            elif kind is h.EventRaised:
                self._events += 1  # counted in replay too: the n-th event's id is stable
                if emit:
                    out.append(self._point(event, f"event {event.name}", INTERNAL))  # type: ignore[attr-defined]
            elif emit and kind in (h.ExecutionCompleted, h.ContinuedAsNew):
                out.append(self._execution_span(event))
        return out

    def _started(self, event: h.ExecutionStarted) -> None:
        self.name, self.started, self.started_under = event.name, self.now, event.trace
        self.generation = event.generation or 1
        parent = parse_traceparent(event.trace)
        if parent is not None:
            self.trace_id, self.parent_id = parent

    def _open_span(self, event: Any) -> None:
        kind = type(event)
        attributes: dict[str, Any] = {"durable.seq": event.seq}
        if kind is h.TaskScheduled:
            name, span_kind = f"activity {event.name}", CLIENT
            attributes["durable.activity"] = event.name
            attributes["durable.attempt"] = event.attempt or 1
            if event.inline:
                attributes["durable.inline"] = True
        elif kind is h.TimerCreated:
            name, span_kind = "timer", INTERNAL
            attributes["durable.fire_at"] = event.fire_at.isoformat()
        elif kind is h.SubOrchestrationCreated:
            name, span_kind = f"orchestration {event.name}", CLIENT
            attributes["durable.child_instance_id"] = event.instance_id
        elif kind is h.EntityCalled:
            name, span_kind = f"call {event.operation}", CLIENT
            attributes["durable.entity"] = event.entity
        else:  # LockRequested
            name, span_kind = "lock", CLIENT
            attributes["durable.entities"] = list(event.entities)
        self._open[event.seq] = _Open(name, self.now, span_kind, attributes)

    def _close_span(self, event: Any, out: list[SpanRecord] | None) -> None:
        opened = self._open.pop(event.seq, None)
        ray_task = self.ray_tasks.pop(event.seq, None)
        if opened is None or out is None:
            return
        attributes = opened.attributes
        if ray_task is not None:
            attributes["ray.task_id"] = ray_task
        failure = getattr(event, "failure", None)
        error = None if failure is None else _message(failure)
        out.append(
            SpanRecord(
                opened.name,
                self.trace_id,
                self.child_id(event.seq),
                self.span_id,
                opened.start,
                self.now,
                opened.kind,
                self._attributes(attributes),
                error,
            )
        )

    def _point(self, event: Any, name: str, kind: str) -> SpanRecord:
        attributes: dict[str, Any] = {}
        seq = getattr(event, "seq", None)
        if seq is not None:
            attributes["durable.seq"], attributes["durable.entity"] = seq, event.entity
            span_id = self.child_id(seq)
        else:  # an external event has no seq: its id is its place among the execution's
            span_id = derived_id("event", self.instance_id, self.execution_id, str(self._events))
        return SpanRecord(
            name,
            self.trace_id,
            span_id,
            self.span_id,
            self.now,
            self.now,
            kind,
            self._attributes(attributes),
        )

    def _execution_span(self, event: Any) -> SpanRecord:
        if isinstance(event, h.ContinuedAsNew):
            status, error = "ContinuedAsNew", None
        else:
            status = str.__str__(event.status)
            error = None if event.failure is None else _message(event.failure)
            if error is None and status != "Completed":
                error = f"{status}: {event.output}" if event.output else status
        return SpanRecord(
            f"orchestration {self.name}",
            self.trace_id,
            self.span_id,
            self.parent_id,
            self.now if self.started is None else self.started,
            self.now,
            INTERNAL,
            self._attributes({"durable.status": status, "durable.generation": self.generation}),
            error,
        )

    def _attributes(self, extra: dict[str, Any]) -> dict[str, Any]:
        return {
            "durable.instance_id": self.instance_id,
            "durable.execution_id": self.execution_id,
            **extra,
        }


def _message(failure: Any) -> str:
    kind = getattr(failure, "error_type", "") or "Error"
    return f"{kind}: {getattr(failure, 'message', failure)}"


_OPENS = (
    h.TaskScheduled,
    h.TimerCreated,
    h.SubOrchestrationCreated,
    h.EntityCalled,
    h.LockRequested,
)
_ANSWERS = h.COMPLETIONS
