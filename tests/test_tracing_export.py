"""Span export through OpenTelemetry's SDK: to a JSON-lines file, to a real OTLP/HTTP
receiver on 127.0.0.1, to the console; and the tracing settings' errors."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from runtime import HubConfig
from runtime.config import TracingConfig
from runtime.errors import HubConfigError
from runtime.orchestration.spans import CLIENT, SpanRecord, traceparent

pytest.importorskip("opentelemetry.sdk")

from runtime import tracing  # noqa: E402

PURE = True

ROOT = SpanRecord("start_new order", "ab" * 16, "01" * 8, None, 100.0, 100.5, CLIENT)
CHILD = SpanRecord(
    "activity pay",
    "ab" * 16,
    "02" * 8,
    "01" * 8,
    100.1,
    100.2,
    attributes={"durable.attempt": 2},
    error="ValueError: boom",
)


def test_jsonl_appends_one_line_a_span_from_every_writer(tmp_path):
    path = tmp_path / "spans.jsonl"
    config = TracingConfig(exporter="jsonl", path=str(path))
    tracing.Tracer(config).export([ROOT])
    tracing.Tracer(config).export([CHILD])  # a second process's tracer, the same file
    root, child = (json.loads(line) for line in path.read_text().splitlines())
    assert (root["name"], root["kind"], root["parent_span_id"]) == (
        "start_new order",
        "CLIENT",
        None,
    )
    assert (child["trace_id"], child["span_id"], child["parent_span_id"]) == (
        "ab" * 16,
        "02" * 8,
        "01" * 8,
    )
    assert (child["start_time"], child["end_time"]) == (100_100_000_000, 100_200_000_000)
    assert (child["status"], child["status_description"]) == ("ERROR", "ValueError: boom")
    assert child["attributes"] == {"durable.attempt": 2} and child["service"] == "ray-durable"


class _Receiver(BaseHTTPRequestHandler):
    bodies: list[tuple[str, bytes]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.bodies.append((self.path, body))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args):
        pass


def test_otlp_sends_the_spans_to_a_receiver_as_protobuf():
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"
        tracer = tracing.Tracer(TracingConfig(exporter="otlp", endpoint=endpoint, service_name="t"))
        tracer.export([ROOT, CHILD])
        tracer.flush()
    finally:
        server.shutdown()
    request = ExportTraceServiceRequest()
    for path, body in _Receiver.bodies:
        assert path == "/v1/traces"
        request.MergeFromString(body)
    (resource,) = request.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
    spans = [s for scope in resource.scope_spans for s in scope.spans]
    assert service == "t"
    assert {s.name: (s.span_id.hex(), s.parent_span_id.hex()) for s in spans} == {
        "start_new order": ("01" * 8, ""),
        "activity pay": ("02" * 8, "01" * 8),
    }
    assert {s.trace_id.hex() for s in spans} == {"ab" * 16}


def test_console_prints_each_span():
    # A process of its own: the SDK's console exporter binds sys.stdout when imported.
    code = (
        "from runtime import tracing; from runtime.config import TracingConfig;"
        "from runtime.orchestration.spans import SpanRecord;"
        "t = tracing.Tracer(TracingConfig(exporter='console'));"
        "t.export([SpanRecord('activity pay', 'ab' * 16, '02' * 8, None, 1.0, 2.0)]); t.flush()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert '"name": "activity pay"' in out.stdout


def test_an_exporter_that_fails_costs_a_log_line_not_the_caller(tmp_path, caplog):
    config = TracingConfig(exporter="jsonl", path=str(tmp_path / "no" / "such" / "dir.jsonl"))
    tracing.Tracer(config).export([ROOT])  # does not raise
    assert "spans not exported" in caplog.text


def test_activated_makes_a_traceparent_the_current_span():
    from opentelemetry import trace

    with tracing.activated(traceparent("ab" * 16, "cd" * 8)):
        assert tracing.current_parent() == ("ab" * 16, "cd" * 8)
        context = trace.get_current_span().get_span_context()
        assert f"{context.span_id:016x}" == "cd" * 8
    assert tracing.current_parent() is None
    with tracing.activated("not a traceparent"):
        assert tracing.current_parent() is None


def test_a_client_span_joins_the_callers_trace():
    with tracing.activated(traceparent("ab" * 16, "cd" * 8)):
        span = tracing.begin(tracing.Tracer(TracingConfig(exporter="console")), "start_new")
    assert span is not None and (span.trace_id, span.parent_id) == ("ab" * 16, "cd" * 8)
    assert tracing.under(span) == traceparent("ab" * 16, span.span_id)
    assert tracing.begin(None, "start_new") is None and tracing.under(None) is None


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"exporter": "zipkin"}, "tracing.exporter: expected one of none, console, jsonl, otlp"),
        ({"exporter": "otlp"}, "tracing.endpoint: required by the otlp exporter"),
        ({"exporter": "jsonl"}, "tracing.path: required by the jsonl exporter"),
        ({"exporter": "console", "sampling": 1}, "tracing.sampling: unknown setting"),
        ({"exporter": "jsonl", "path": ""}, "tracing.path: expected a non-empty string"),
        ({"service_name": 3}, "tracing.service_name: expected a non-empty string"),
    ],
)
def test_bad_tracing_settings_name_the_setting(settings, message):
    with pytest.raises(HubConfigError, match=message.replace(".", r"\.")):
        HubConfig(tracing=settings)


def test_tracing_settings_from_yaml_resolve_the_file_and_round_trip(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = HubConfig.from_dict({"tracing": {"exporter": "jsonl", "path": "spans.jsonl"}})
    assert config.tracing.path == str(tmp_path / "spans.jsonl") and config.tracing.enabled
    assert HubConfig(**config.to_dict()) == config
    assert not HubConfig().tracing.enabled
    merged = HubConfig.load(config, tracing={"service_name": "orders"})
    assert (merged.tracing.exporter, merged.tracing.service_name) == ("jsonl", "orders")
