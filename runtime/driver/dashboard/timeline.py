"""An instance's history as a timeline: spans of work, points of events, drawn as SVG.

Pure functions over the JSON view of history events (``http_json.event_view``), so the
dashboard, its tests and a printout all see one drawing. Events carry no clock of their
own: each happens at the time of the episode that recorded it (the ``OrchestratorStarted``
before it), as in Durable Functions' histories. A span runs from the episode that scheduled
its work to the episode that saw its answer; unanswered work runs to ``now``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from typing import Any
from urllib.parse import quote

from ..http_json import activity_progress

#: Event types that open a span (keyed by seq) and the kind of work they name.
_OPENS = {
    "TaskScheduled": "activity",
    "TimerCreated": "timer",
    "SubOrchestrationCreated": "suborchestration",
    "EntityCalled": "entity",
    "LockRequested": "lock",
}
#: Event types that close the span of their seq, and how it ended.
_CLOSES = {
    "TaskCompleted": "completed",
    "TaskFailed": "failed",
    "TimerFired": "completed",
    "SubOrchestrationCompleted": "completed",
    "SubOrchestrationFailed": "failed",
    "EntityResponded": "completed",
    "EntityFailed": "failed",
    "LockGranted": "completed",
    "LockFailed": "failed",
}
#: Event types shown as a point on the time axis.
_POINTS = {
    "EventRaised": "event",
    "EntitySignaled": "signal",
    "ExecutionSuspended": "suspended",
    "ExecutionResumed": "resumed",
    "ExecutionTerminated": "terminated",
    "ExecutionCompleted": "end",
    "ContinuedAsNew": "continued",
}

#: Drawing sizes (px): the whole width, the label column, a row in small and large charts.
WIDTH, LABEL, ROW, THIN_ROW = 960, 240, 18, 4
#: Past this many spans rows are thin and unlabelled (each keeps its tooltip).
LABELLED_ROWS = 200


@dataclass
class Span:
    """One piece of work: an activity, timer, sub-orchestration, entity call or lock."""

    seq: int
    kind: str
    name: str
    start: float
    end: float | None = None
    #: "running", "completed", "failed" or "cancelled" (open when its execution ended)
    state: str = "running"
    #: a timer's due time
    due: float | None = None
    #: a sub-orchestration's instance id
    child: str | None = None


@dataclass
class Point:
    """Something that happened at one moment: an event raised, a suspension, the end."""

    kind: str
    name: str
    at: float


@dataclass
class Timeline:
    """The spans and points of one execution, and the time it covers."""

    spans: list[Span] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    start: float = 0.0
    end: float = 0.0
    #: where running work is drawn to: now, or the end of an execution that ended
    now: float = 0.0
    #: (scheduled, completed, failed) activities, counted as ``durable watch`` counts them
    activities: tuple[int, int, int] = (0, 0, 0)

    @property
    def progress(self) -> tuple[int, int]:
        """(answered, scheduled) activities: a fan-out's progress."""
        scheduled, completed, failed = self.activities
        return completed + failed, scheduled


def _moment(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp()


#: Events after which nothing runs: work still open then was cancelled with the execution.
_ENDS = {"ExecutionCompleted", "ExecutionTerminated", "ContinuedAsNew"}


def build(events: list[dict[str, Any]], started: float, now: float) -> Timeline:
    """The timeline of a history's event views; ``started``: the instance's creation time
    (the execution's first episode, when the history has one, starts it instead: after
    continue-as-new the history is the current execution's only)."""
    first = next(
        (
            _moment(e.get("Timestamp"))
            for e in events
            if e.get("EventType") == "OrchestratorStarted"
        ),
        None,
    )
    clock = first or started
    line = Timeline(start=clock, now=now)
    spans: dict[int, Span] = {}
    for event in events:
        kind = event.get("EventType")
        if kind == "OrchestratorStarted":
            clock = _moment(event.get("Timestamp")) or clock
            continue
        if kind in _ENDS:
            for span in line.spans:
                if span.state == "running":
                    span.end, span.state = clock, "cancelled"
            line.now = clock
        seq = event.get("Seq")
        if kind in _OPENS and isinstance(seq, int):
            name = str(event.get("Name") or event.get("Operation") or kind)
            if kind == "EntityCalled":
                name = f"{event.get('Entity')}.{event.get('Operation')}"
            span = Span(seq, _OPENS[kind], name, clock)
            if kind == "TimerCreated":
                span.due = _moment(event.get("FireAt"))
                span.name = "timer"
            if kind == "SubOrchestrationCreated":
                span.child = str(event.get("InstanceId"))
            spans[seq] = span
            line.spans.append(span)
        elif kind in _CLOSES and isinstance(seq, int) and seq in spans:
            spans[seq].end, spans[seq].state = clock, _CLOSES[kind]
        elif kind == "ExecutionStarted" and (event.get("Generation") or 1) > 1:
            # The history holds this execution only; the point says the earlier ones were.
            label = f"generation {event['Generation']}: continued as new"
            line.points.append(Point("continued", label, clock))
        elif kind in _POINTS:
            label = event.get("Name") or event.get("Status") or event.get("Reason") or ""
            if kind == "EntitySignaled":
                label = f"{event.get('Entity')}.{event.get('Operation')}"
            line.points.append(Point(_POINTS[kind], str(label), clock))
    line.activities = activity_progress(str(e.get("EventType")) for e in events)
    ends = [s.end for s in line.spans if s.end is not None] + [p.at for p in line.points]
    ends += [s.due for s in line.spans if s.due is not None]
    running = any(s.state == "running" for s in line.spans)
    line.end = max([clock, *ends, *([line.now] if running else [])])
    return line


def _ms(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 600:
        return f"{seconds:.1f} s"
    if seconds < 3 * 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 3 * 86400 else f"{seconds / 86400:.1f} d"


def svg(line: Timeline, link: str = "/dashboard/instances/") -> str:
    """The timeline as an SVG Gantt chart: one ``rect.bar`` per span, a mark per point."""
    rows = len(line.spans)
    row = ROW if rows <= LABELLED_ROWS else THIN_ROW
    top, axis = 8, 24
    height = top + max(rows, 1) * row + axis + 16
    scale = (WIDTH - LABEL - 16) / max(line.end - line.start, 1e-3)

    def x(at: float) -> float:
        return LABEL + (at - line.start) * scale

    parts = [
        f'<svg class="timeline" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" '
        f'height="{height}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="timeline of {rows} steps">'
    ]
    for i, span in enumerate(line.spans):
        y = top + i * row
        end = span.end if span.end is not None else max(line.now, span.start)
        width = max(x(end) - x(span.start), 2.0)
        took = _ms(end - span.start)
        tip = escape(f"{span.kind} {span.name} (#{span.seq}): {span.state}, {took}")
        rect = (
            f'<rect class="bar {span.kind} {span.state}" x="{x(span.start):.1f}" y="{y}" '
            f'width="{width:.1f}" height="{row - 2 if row > THIN_ROW else row - 1}">'
            f"<title>{tip}</title></rect>"
        )
        if span.child is not None:
            rect = f'<a href="{escape(link + quote(span.child, safe=""))}">{rect}</a>'
        parts.append(rect)
        if span.due is not None:
            parts.append(
                f'<line class="due" x1="{x(span.due):.1f}" x2="{x(span.due):.1f}" '
                f'y1="{y}" y2="{y + row - 2}"><title>due {_iso(span.due)}</title></line>'
            )
        if row > THIN_ROW:
            parts.append(
                f'<text class="label" x="4" y="{y + row - 5}">{escape(span.name[:36])}</text>'
            )
    base = top + max(rows, 1) * row
    for point in line.points:
        px = x(point.at)
        tip = escape(f"{point.kind} {point.name} at {_iso(point.at)}")
        parts.append(
            f'<path class="point {point.kind}" d="M{px:.1f},{base + 2} l5,8 l-10,0 z">'
            f"<title>{tip}</title></path>"
        )
    parts.append(
        f'<line class="axis" x1="{LABEL}" x2="{WIDTH - 16}" y1="{base + 12}" y2="{base + 12}"/>'
        f'<text class="tick" x="{LABEL}" y="{base + 26}">0</text>'
        f'<text class="tick end" x="{WIDTH - 16}" y="{base + 26}" text-anchor="end">'
        f"{_ms(line.end - line.start)}</text></svg>"
    )
    return "".join(parts)


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")[:-3]
