"""Spans out of the process: ``SpanRecord`` (runtime.orchestration.spans) to OpenTelemetry.

The spans of orchestrations are built after the fact, from committed history, with ids
derived from the instance (see ``spans``), so they are handed to the SDK's exporters as
finished ``ReadableSpan`` objects rather than started and ended through a tracer, whose
ids would be random. OpenTelemetry is imported only when tracing is on (the ``otel``
extra); with ``tracing.exporter: none`` nothing here runs.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any

from .config import TracingConfig
from .orchestration.spans import CLIENT, PRODUCER, SpanRecord, parse_traceparent, traceparent

log = logging.getLogger("ray_durable.tracing")

#: Spans a process holds for its exporter thread; a 10,000-wide fan-out fits (past it the
#: SDK drops spans rather than grow without bound).
QUEUE_SPANS = 65536
#: How long a retiring host waits for its spans to leave.
FLUSH_SECONDS = 5.0

_tracers: dict[TracingConfig, Tracer] = {}
_lock = threading.Lock()


def tracer_for(config: TracingConfig | None) -> Tracer | None:
    """This process's tracer for ``config`` (one per config), or None when tracing is off."""
    if config is None or not config.enabled:
        return None
    with _lock:
        tracer = _tracers.get(config)
        if tracer is None:
            try:
                tracer = _tracers[config] = Tracer(config)
            except ImportError as exc:  # this node lacks the otel extra: it runs untraced
                log.warning("tracing off in this process: %s", exc)
                return None
        return tracer


def new_ids(parent: tuple[str, str] | None = None) -> tuple[str, str]:
    """``(trace_id, span_id)`` of a new span: in ``parent``'s trace, or in a new one."""
    trace_id = parent[0] if parent is not None else secrets.token_hex(16)
    return trace_id, secrets.token_hex(8)


def begin(tracer: Tracer | None, name: str) -> SpanRecord | None:
    """A client span starting now (None when tracing is off), under the caller's current
    OpenTelemetry span if it has one: what it starts is recorded under it (``under``)."""
    if tracer is None:
        return None
    parent = current_parent()
    trace_id, span_id = new_ids(parent)
    parent_id = None if parent is None else parent[1]
    return SpanRecord(name, trace_id, span_id, parent_id, time.time(), 0.0, CLIENT)


def under(span: SpanRecord | None) -> str | None:
    """The traceparent of ``span``, to record with the work it starts."""
    return None if span is None else traceparent(span.trace_id, span.span_id)


def end(
    tracer: Tracer | None, span: SpanRecord | None, name: str, attributes: dict[str, Any]
) -> None:
    """Finish a span of ``begin`` now, named and described, and export it."""
    if tracer is not None and span is not None:
        tracer.export([replace(span, name=name, end=time.time(), attributes=attributes)])


def current_parent() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the caller's current OpenTelemetry span, if it has one."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    context = trace.get_current_span().get_span_context()
    if not context.is_valid:
        return None
    return f"{context.trace_id:032x}", f"{context.span_id:016x}"


@contextlib.contextmanager
def activated(value: str | None) -> Iterator[None]:
    """Run the block with the span of traceparent ``value`` as the current context, so
    spans the user's code starts there (an activity's) are its children."""
    ids = parse_traceparent(value)
    try:
        from opentelemetry import context, trace
        from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags
    except ImportError:
        ids = None  # (outside the handler: the block's own errors chain nothing of this)
    if ids is None:
        yield
        return
    span = SpanContext(int(ids[0], 16), int(ids[1], 16), True, TraceFlags(TraceFlags.SAMPLED))
    token = context.attach(trace.set_span_in_context(NonRecordingSpan(span)))
    try:
        yield
    finally:
        context.detach(token)


class Tracer:
    """Exports SpanRecords through the exporter ``config`` names."""

    def __init__(self, config: TracingConfig) -> None:
        self.config = config
        self._file = config.path if config.exporter == "jsonl" else None
        self._processor: Any = None
        if self._file is None:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace.export import BatchSpanProcessor

            self._resource = Resource.create({"service.name": config.service_name})
            # The network and the console get a thread of their own; flush sends the rest.
            # The SDK's 5 s between exports: at 0.5 s the exports' CPU cost the pooled
            # 4-step chain 22% (bench_tracing), at 5 s 7%.
            self._processor = BatchSpanProcessor(
                _exporter(config), max_queue_size=QUEUE_SPANS, schedule_delay_millis=5000
            )
            atexit.register(self.shutdown)

    def export(self, records: Sequence[SpanRecord]) -> None:
        """Hand finished spans to the exporter; a failing exporter costs a log line only."""
        if not records:
            return
        try:
            if self._file is not None:
                # A batch of spans in one append, in the committing thread: a span is on disk
                # once its step is, and on a local disk the lines of processes sharing the
                # file never interleave.
                data = "".join(self._line(r) for r in records).encode("utf-8")
                fd = os.open(self._file, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                try:
                    while data:  # a local file takes it in one write; loop for the rest
                        data = data[os.write(fd, data) :]
                finally:
                    os.close(fd)
                return
            for record in records:
                self._processor.on_end(self._readable(record))
        except Exception:
            log.warning("tracing: %d spans not exported", len(records), exc_info=True)

    def export_of(self, holders: Iterable[Any]) -> None:
        """Export and clear the ``spans`` each holder (a host's Live) has collected."""
        spans = []
        for holder in holders:
            spans += holder.spans
            holder.spans = []
        self.export(spans)

    def flush(self) -> None:
        """Send what the exporter holds (a host about to be retired calls this)."""
        if self._processor is not None:
            self._processor.force_flush(int(FLUSH_SECONDS * 1000))

    def shutdown(self) -> None:
        """Flush and close the exporter (at exit)."""
        try:
            if self._processor is not None:
                self._processor.shutdown()
        except Exception:
            log.debug("tracing: shutdown", exc_info=True)

    def _line(self, record: SpanRecord) -> str:
        """One span as a JSON line, named as OpenTelemetry's SDK names its fields."""
        span = {
            "name": record.name,
            "trace_id": record.trace_id,
            "span_id": record.span_id,
            "parent_span_id": record.parent_id,
            "kind": record.kind.upper(),
            "start_time": int(record.start * 1e9),
            "end_time": int(max(record.end, record.start) * 1e9),
            "status": "OK" if record.error is None else "ERROR",
            "status_description": record.error,
            "attributes": record.attributes,
            "service": self.config.service_name,
            "pid": os.getpid(),
        }
        return json.dumps(span, default=str) + "\n"

    def _readable(self, record: SpanRecord) -> Any:
        from opentelemetry.sdk.trace import ReadableSpan
        from opentelemetry.sdk.util.instrumentation import InstrumentationScope
        from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags

        flags = TraceFlags(TraceFlags.SAMPLED)
        trace_id = int(record.trace_id, 16)
        parent = None
        if record.parent_id is not None:
            parent = SpanContext(trace_id, int(record.parent_id, 16), True, flags)
        kind = {CLIENT: SpanKind.CLIENT, PRODUCER: SpanKind.PRODUCER}.get(
            record.kind, SpanKind.INTERNAL
        )
        status = (
            Status(StatusCode.OK)
            if record.error is None
            else Status(StatusCode.ERROR, record.error)
        )
        return ReadableSpan(
            record.name,
            context=SpanContext(trace_id, int(record.span_id, 16), False, flags),
            parent=parent,
            resource=self._resource,
            attributes=record.attributes,
            kind=kind,
            status=status,
            start_time=int(record.start * 1e9),
            end_time=int(max(record.end, record.start) * 1e9),
            instrumentation_scope=InstrumentationScope("ray_durable"),
        )


def _exporter(config: TracingConfig) -> Any:
    if config.exporter == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=config.endpoint)
