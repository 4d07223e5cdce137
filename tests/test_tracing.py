"""OpenTelemetry traces of real orchestrations: spans written by the driver and the hosts'
processes to one JSON-lines file, read back as a tree."""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import tracing_defs
from helpers import kill_host, start_hub, stop_runtime, wait_until

pytest.importorskip("opentelemetry.sdk")


def _spans(path):
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def _tree(spans):
    """Each span as (its name, its parent's name), the root's parent named None."""
    names = {s["span_id"]: s["name"] for s in spans}
    return Counter((s["name"], names.get(s["parent_span_id"])) for s in spans)


@pytest.fixture
def traced_hub(hub_name, store_url, placement, tmp_path):
    path = tmp_path / "spans.jsonl"
    tracing = {"exporter": "jsonl", "path": str(path)}
    rt = start_hub(hub_name, store_url, placement, tracing_defs.ALL, tracing=tracing)
    yield rt, path
    stop_runtime(rt)


def test_the_trace_of_a_chain_with_retry_fan_out_child_and_entity(traced_hub, tmp_path):
    rt, path = traced_hub
    iid = rt.client.start_new(tracing_defs.traced, str(tmp_path / "marker"))
    state = rt.client.wait_for_completion(iid, timeout=120, raise_on_failure=True)
    first, recovered, fanned, sub, seen = state.output
    assert (first, recovered, fanned, sub) == (2, "recovered", 20, 20)
    # The child's execution span ends the last step of the child's host: wait for all.
    spans = wait_until(lambda: (s := _spans(path)) and len(s) >= 17 and s, timeout=30)
    assert _tree(spans) == Counter(
        {
            ("start_new traced", None): 1,
            ("orchestration traced", "start_new traced"): 1,
            ("activity double", "orchestration traced"): 6,
            ("activity fails_once", "orchestration traced"): 2,
            ("timer", "orchestration traced"): 1,
            ("orchestration child", "orchestration traced"): 1,
            ("orchestration child", "orchestration child"): 1,
            ("activity double", "orchestration child"): 1,
            ("activity current_span", "orchestration traced"): 1,
            ("call add", "orchestration traced"): 1,
            ("signal add", "orchestration traced"): 1,
        }
    )
    assert len({s["trace_id"] for s in spans}) == 1
    assert len({s["span_id"] for s in spans}) == len(spans)
    by_name = {}
    for s in spans:
        by_name.setdefault(s["name"], []).append(s)
    tries = sorted(by_name["activity fails_once"], key=lambda s: s["attributes"]["durable.attempt"])
    assert [t["attributes"]["durable.attempt"] for t in tries] == [1, 2]
    assert [t["status"] for t in tries] == ["ERROR", "OK"]
    assert "first attempt fails" in tries[0]["status_description"]
    # The activity ran inside its own span, in a Ray worker: user spans there nest under it.
    (current,) = by_name["activity current_span"]
    assert seen == current["span_id"]
    assert all(len(s["attributes"]["ray.task_id"]) > 0 for s in by_name["activity double"])
    for s in spans:
        assert s["start_time"] <= s["end_time"]
    # Three kinds of process wrote: the driver, the hosts, and the child's host.
    assert {s["pid"] for s in by_name["start_new traced"]} != {
        s["pid"] for s in by_name["orchestration traced"]
    }


def test_a_trace_goes_on_across_a_host_crash_without_repeating_spans(traced_hub):
    rt, path = traced_hub
    iid = rt.client.start_new(tracing_defs.waits, None)
    wait_until(lambda: any(s["name"] == "activity double" for s in _spans(path)))
    kill_host(rt.client, iid)
    rt.client.raise_event(iid, "go", 21)
    state = rt.client.wait_for_completion(iid, timeout=120, raise_on_failure=True)
    assert state.output == 42
    spans = wait_until(
        lambda: (s := _spans(path)) and any(x["name"] == "orchestration waits" for x in s) and s
    )
    assert _tree(spans) == Counter(
        {
            ("start_new waits", None): 1,
            ("orchestration waits", "start_new waits"): 1,
            ("activity double", "orchestration waits"): 2,
            ("event go", "orchestration waits"): 1,
        }
    )
    assert len({s["span_id"] for s in spans}) == len(spans)
    assert len({s["trace_id"] for s in spans}) == 1
    # The replayed host emitted the execution span: it began when the first run did.
    (execution,) = [s for s in spans if s["name"] == "orchestration waits"]
    first = min(s["start_time"] for s in spans if s["name"] == "activity double")
    assert execution["start_time"] <= first


def test_each_execution_of_continue_as_new_is_a_span_of_the_one_trace(traced_hub):
    rt, path = traced_hub
    iid = rt.client.start_new(tracing_defs.generations, 0)
    assert rt.client.wait_for_completion(iid, timeout=120, raise_on_failure=True).output == 2
    spans = wait_until(
        lambda: (
            (s := _spans(path))
            and sum(x["name"] == "orchestration generations" for x in s) == 3
            and s
        )
    )
    assert _tree(spans) == Counter(
        {
            ("start_new generations", None): 1,
            ("orchestration generations", "start_new generations"): 3,
            ("activity double", "orchestration generations"): 3,
        }
    )
    executions = [s for s in spans if s["name"] == "orchestration generations"]
    assert sorted(s["attributes"]["durable.status"] for s in executions) == [
        "Completed",
        "ContinuedAsNew",
        "ContinuedAsNew",
    ]
    assert len({s["attributes"]["durable.execution_id"] for s in executions}) == 3
    assert sorted(s["attributes"]["durable.generation"] for s in executions) == [1, 2, 3]
    assert len({s["parent_span_id"] for s in spans if s["name"] == "activity double"}) == 3
    # A restart is a new run: its first execution, in a trace of its own.
    again = rt.client.restart(iid)
    assert rt.client.wait_for_completion(again, timeout=120, raise_on_failure=True).output == 2
    history = rt.client.get_status(again, show_history=True).history
    (start,) = [e for e in history if type(e).__name__ == "ExecutionStarted"]
    # (restarted with the latest input, 2: one execution, the first of its own)
    assert (start.generation, start.trace) == (None, None)
    restarted = wait_until(
        lambda: [
            x
            for x in _spans(path)
            if x["name"] == "orchestration generations"
            and x["attributes"]["durable.instance_id"] == again
        ]
    )
    assert {x["trace_id"] for x in restarted}.isdisjoint({x["trace_id"] for x in spans})


class _Receiver(BaseHTTPRequestHandler):
    """An OTLP/HTTP receiver: keeps the name and parent of every span it is sent."""

    spans: list[tuple[str, str]] = []

    def do_POST(self):  # noqa: N802 (http.server's name)
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        request = ExportTraceServiceRequest()
        request.MergeFromString(self.rfile.read(int(self.headers["Content-Length"])))
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.spans += [(s.name, s.parent_span_id.hex()) for s in scope.spans]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_otlp_gets_every_span_even_from_a_host_retired_when_its_instance_ends(
    hub_name, store_url, placement
):
    pytest.importorskip("opentelemetry.exporter.otlp.proto.http")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_port}/v1/traces"
    tracing = {"exporter": "otlp", "endpoint": endpoint}
    rt = start_hub(hub_name, store_url, placement, tracing_defs.ALL, tracing=tracing)
    try:
        iid = rt.client.start_new(tracing_defs.child, 4)
        assert rt.client.wait_for_completion(iid, timeout=120).output == 8
        rt.client.tracer.flush()
        # A dedicated host may be stopped as soon as its instance ends: it flushes first.
        wait_until(lambda: len(_Receiver.spans) >= 3, timeout=30)
        assert sorted(name for name, _ in _Receiver.spans) == [
            "activity double",
            "orchestration child",
            "start_new child",
        ]
    finally:
        stop_runtime(rt)
        server.shutdown()
        _Receiver.spans = []
