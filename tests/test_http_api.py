"""The Durable Functions compatible HTTP API: real Ray, real Serve, real SQLite, real HTTP.

One hub and one API for the whole module (starting Serve costs seconds); each test uses
its own instance ids. One test drives the API with the official
``azure-functions-durable`` Python client (a dependency of the ``test`` extra).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import math
import re
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote, urlsplit

import http_defs
import pytest
from helpers import NO_BODY, http_request, start_ray, wait_until

from runtime import DurableError, HubConfigError, Runtime
from runtime.driver.http_api import serve_http, stop_http
from runtime.driver.http_json import json_view, management_urls, status_payload
from runtime.serialization import dumps
from runtime.store import InstanceRecord

TOKEN_ENV = "RAY_DURABLE_TEST_HTTP_TOKEN"
TIME_FORMAT = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    start_ray()
    folder = tmp_path_factory.mktemp("http")
    # Traced, so every request of the module runs with tracing on (and one reads the spans).
    tracing = {"exporter": "jsonl", "path": str(folder / "spans.jsonl")}
    runtime = Runtime.start(
        hub=f"http-{uuid.uuid4().hex[:8]}",
        store=f"sqlite:///{folder / 'hub.db'}",
        placement="pooled",
        pool_size=2,
        register=http_defs.ALL,
        tracing=tracing,
    )
    yield runtime
    runtime.shutdown()


@pytest.fixture(scope="module")
def base(rt):
    url = serve_http(rt.client, port=0)  # a free port for this module
    yield url
    stop_http()


# -- helpers --------------------------------------------------------------------------------


def call(
    method: str,
    url: str,
    body: Any = NO_BODY,
    *,
    data: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], Any]:
    """(status, lower-cased headers, JSON body or None) of one request."""
    status, found, raw = http_request(method, url, body, data=data, headers=headers)
    return status, found, json.loads(raw) if raw else None


def start(base: str, name: str, input: Any = NO_BODY, instance_id: str | None = None) -> dict:
    url = base + f"orchestrators/{name}" + (f"/{instance_id}" if instance_id else "")
    status, _, payload = call("POST", url, input)
    assert status == 202, payload
    return payload


def poll(url: str, until: Any = lambda s, b: s != 202, timeout: float = 60.0) -> tuple:
    """GET ``url`` until ``until(status, body)``; returns (status, headers, body)."""
    deadline = time.monotonic() + timeout
    while True:
        status, headers, body = call("GET", url)
        if until(status, body) or time.monotonic() > deadline:
            return status, headers, body
        time.sleep(0.1)


def running(status: int, body: Any) -> bool:
    return status == 202 and body["runtimeStatus"] == "Running"


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# -- JSON views (no Ray) --------------------------------------------------------------------


def test_json_view_keeps_json_and_marks_the_rest():
    cyclic: list = []
    cyclic.append(cyclic)
    view = json_view(
        {1: (1, 2.5), None: {True}, "nan": math.nan, "c": 1j, "cycle": cyclic, "b": b"\x00"}
    )
    assert view["1"] == [1, 2.5] and view["null"] == [True]
    assert view["nan"] == {"$type": "float", "$repr": "nan"}
    assert view["c"] == {"$type": "complex", "$repr": "1j"}
    assert view["cycle"][0]["$type"] == "list"
    assert view["b"] == {"$type": "bytes", "$repr": "b'\\x00'"}
    json.dumps(view, allow_nan=False)  # whatever went in, valid JSON comes out


def test_status_payload_shows_unreadable_values_instead_of_failing():
    record = InstanceRecord(
        "i", "flow", "", "Completed", "e", 0.0, 1.5, input=b"not a pickle", output=dumps([1])
    )
    body = status_payload(record)
    assert "cannot deserialize input" in body["input"]["$unreadable"]
    assert body["output"] == [1]
    assert body["createdTime"] == "1970-01-01T00:00:00Z"


def test_serve_http_refuses_bad_settings_before_serving(rt, monkeypatch):
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(HubConfigError, match=TOKEN_ENV):
        serve_http(rt.client, token_env=TOKEN_ENV)
    with pytest.raises(HubConfigError, match="http.port"):
        serve_http(rt.client, port=70_000)
    with pytest.raises(HubConfigError, match="max_body_bytes"):
        serve_http(rt.client, max_body_bytes=0)
    with pytest.raises(DurableError, match="no running task hub"):
        serve_http("no-such-hub-" + uuid.uuid4().hex[:6])


# -- orchestrations -------------------------------------------------------------------------


def test_start_returns_check_status_payload_and_polling_ends_with_output(base, rt):
    iid = uid("hello")
    url = base + f"orchestrators/hello_http/{iid}"
    status, headers, payload = call("POST", url, ["Tokyo", "Seattle"])
    assert status == 202
    assert payload == management_urls(
        f"{urlsplit(base).scheme}://{urlsplit(base).netloc}", iid, rt.client.hub
    )
    assert headers["location"] == payload["statusQueryGetUri"]
    assert headers["retry-after"] == "10"
    assert payload["sendEventPostUri"].endswith(
        f"/instances/{iid}/raiseEvent/{{eventName}}?taskHub={rt.client.hub}"
    )

    status, headers, body = poll(payload["statusQueryGetUri"])
    assert status == 200 and "location" not in headers
    assert body["runtimeStatus"] == "Completed"
    assert body["name"] == "hello_http" and body["instanceId"] == iid
    assert body["input"] == ["Tokyo", "Seattle"]
    assert body["output"] == ["Hello Tokyo!", "Hello Seattle!"]
    assert body["customStatus"] == {"greeted": 2}
    assert TIME_FORMAT.match(body["createdTime"]) and TIME_FORMAT.match(body["lastUpdatedTime"])
    assert body["historyEvents"] is None


def test_a_start_with_a_traceparent_joins_the_callers_trace(base, rt):
    parent = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    iid = uid("traced")
    url = base + f"orchestrators/hello_http/{iid}"
    status, _, payload = call("POST", url, ["Oslo"], headers={"traceparent": parent})
    assert status == 202
    assert poll(payload["statusQueryGetUri"])[0] == 200
    path = rt.config.tracing.path

    def spans() -> list[dict]:
        with open(path) as lines:
            found = [json.loads(line) for line in lines]
        return [s for s in found if s["attributes"].get("durable.instance_id") == iid]

    found = wait_until(lambda: any(s["name"] == "orchestration hello_http" for s in spans()))
    assert found
    mine = spans()
    (start,) = [s for s in mine if s["name"] == "start_new hello_http"]
    assert (start["trace_id"], start["parent_span_id"]) == ("ab" * 16, "cd" * 8)
    assert {s["trace_id"] for s in mine} == {"ab" * 16}


def test_running_instance_answers_202_until_its_event_arrives(base):
    payload = start(base, "wait_approval", {"item": "laptop"}, uid("approve"))
    status_url, event_url = payload["statusQueryGetUri"], payload["sendEventPostUri"]
    status, headers, body = poll(status_url, running)
    assert status == 202 and body["runtimeStatus"] == "Running" and body["output"] is None
    assert headers["location"] == status_url and headers["retry-after"] == "5"

    approve = event_url.replace("{eventName}", "Approve")
    assert call("POST", approve, data=b"yes", headers={"Content-Type": "text/plain"})[0] == 400
    assert (
        call("POST", approve, data=b"{oops", headers={"Content-Type": "application/json"})[0] == 400
    )
    assert call("POST", approve, "alice")[0] == 202

    status, _, body = poll(status_url)
    assert status == 200
    assert body["output"] == {"request": {"item": "laptop"}, "approval": "alice"}
    assert call("POST", approve, "again")[0] == 410  # finished: gone
    assert call("POST", base + "instances/nobody/raiseEvent/Approve", 1)[0] == 404


def test_unknown_instance_is_404_with_a_json_error(base):
    status, _, body = call("GET", base + "instances/" + uid("missing"))
    assert status == 404 and "no orchestration instance" in body["Message"]


def test_failed_instance_is_200_or_500_on_request_and_cannot_be_rewound(base):
    payload = start(base, "fails", "boom", uid("fail"))
    status, _, body = poll(payload["statusQueryGetUri"])
    assert status == 200 and body["runtimeStatus"] == "Failed"
    assert "boom" in body["output"]
    assert body["failureDetails"]["errorType"] == "ValueError"
    assert body["failureDetails"]["errorMessage"] == "boom"
    url = payload["statusQueryGetUri"] + "&returnInternalServerErrorOnFailure=true"
    assert call("GET", url)[0] == 500
    rewind = base + f"instances/{payload['id']}/rewind"
    assert call("POST", rewind)[0] == 501


def test_history_and_input_are_shown_on_request(base):
    payload = start(base, "hello_http", ["Oslo"], uid("history"))
    poll(payload["statusQueryGetUri"])
    status_url = base + f"instances/{payload['id']}"
    _, _, body = call("GET", status_url + "?showHistory=true&showInput=false")
    assert body["input"] is None
    events = body["historyEvents"]
    kinds = [e["EventType"] for e in events]
    assert "ExecutionStarted" in kinds and "TaskCompleted" in kinds
    completed = next(e for e in events if e["EventType"] == "TaskCompleted")
    assert "Result" not in completed
    _, _, body = call("GET", status_url + "?showHistory=true&showHistoryOutput=true")
    completed = next(e for e in body["historyEvents"] if e["EventType"] == "TaskCompleted")
    assert completed["Result"] == "Hello Oslo!"


def test_outputs_json_cannot_show_become_lists_objects_or_markers(base):
    payload = start(base, "odd_output", None, uid("odd"))
    _, _, body = poll(payload["statusQueryGetUri"])
    assert body["output"] == {
        "tuple": [1, 2],
        "set": [3],
        "complex": {"$type": "complex", "$repr": "(1+2j)"},
        "bytes": {"$type": "bytes", "$repr": "b'x'"},
        "point": {"x": 1, "y": 2},
    }


def test_query_filters_and_pages_with_a_continuation_token(base):
    prefix = uid("page") + "-"
    for i in range(3):
        start(base, "hello_http", [str(i)], f"{prefix}{i}")
    query = base + f"instances?instanceIdPrefix={prefix}&runtimeStatus=Completed"
    poll(query, lambda s, b: len(b) == 3)

    status, headers, first = call("GET", query + "&top=2")
    assert status == 200 and len(first) == 2
    token = headers["x-ms-continuation-token"]
    status, headers, second = call(
        "GET", query + "&top=2", headers={"x-ms-continuation-token": token}
    )
    assert len(second) == 1 and "x-ms-continuation-token" not in headers
    assert {b["instanceId"] for b in first + second} == {f"{prefix}{i}" for i in range(3)}
    # The token is a keyset (opaque); a bare offset, as earlier versions handed out, still reads.
    assert token.startswith("k.") and not token[2:].isdigit()
    status, _, by_offset = call("GET", query + "&top=2", headers={"x-ms-continuation-token": "2"})
    assert [b["instanceId"] for b in by_offset] == [b["instanceId"] for b in second]

    later = quote((datetime.now(timezone.utc) + timedelta(hours=1)).isoformat())
    assert call("GET", query + f"&createdTimeFrom={later}")[2] == []
    assert call("GET", base + f"instances/?instanceIdPrefix={prefix}")[0] == 200  # DF's slash
    assert call("GET", base + "instances?runtimeStatus=Bogus")[0] == 400
    assert call("GET", base + "instances?top=-1")[0] == 400
    assert call("GET", base + "instances?createdTimeFrom=yesterday")[0] == 400


def test_suspend_resume_terminate_and_restart(base):
    payload = start(base, "wait_approval", "car", uid("steer"))
    iid, status_url = payload["id"], payload["statusQueryGetUri"]
    poll(status_url, running)
    instance = base + f"instances/{iid}"

    assert call("POST", instance + "/suspend?reason=pause")[0] == 202
    assert poll(status_url, lambda s, b: b["runtimeStatus"] == "Suspended")[0] == 202
    assert call("POST", instance + "/resume?reason=go")[0] == 202
    poll(status_url, running)
    assert call("POST", instance + "/terminate?reason=stop")[0] == 202
    status, _, body = poll(status_url)
    assert status == 200 and body["runtimeStatus"] == "Terminated"
    for op in ("terminate", "suspend", "resume"):
        assert call("POST", instance + f"/{op}")[0] == 410
    assert call("POST", instance + "/rewind")[0] == 412
    assert call("POST", instance + "/explode")[0] == 404
    assert call("POST", base + "instances/nobody/terminate")[0] == 404

    status, headers, again = call("POST", instance + "/restart")
    assert (
        status == 202 and again["id"] != iid and headers["location"] == again["statusQueryGetUri"]
    )
    _, _, body = poll(again["statusQueryGetUri"], running)
    assert body["input"] == "car"
    status, _, same = call("POST", instance + "/restart?restartWithNewInstanceId=false")
    assert status == 202 and same["id"] == iid
    poll(status_url, running)
    assert call("POST", instance + "/restart?restartWithNewInstanceId=false")[0] == 409


def test_purge_one_and_by_filter(base):
    waiting = start(base, "wait_approval", None, uid("purge-running"))
    poll(waiting["statusQueryGetUri"], running)
    assert call("DELETE", waiting["purgeHistoryDeleteUri"])[0] == 412

    done = start(base, "hello_http", ["x"], uid("purge-done"))
    poll(done["statusQueryGetUri"])
    status, _, body = call("DELETE", done["purgeHistoryDeleteUri"])
    assert status == 200 and body == {"instancesDeleted": 1}
    assert call("GET", done["statusQueryGetUri"])[0] == 404
    assert call("DELETE", done["purgeHistoryDeleteUri"])[0] == 404

    prefix = uid("purge-many") + "-"
    for i in range(2):
        poll(start(base, "hello_http", ["y"], f"{prefix}{i}")["statusQueryGetUri"])
    assert call("DELETE", base + f"instances?instanceIdPrefix={prefix}")[0] == 400
    since = quote((datetime.now(timezone.utc) - timedelta(hours=1)).isoformat())
    url = (
        base
        + f"instances?createdTimeFrom={since}&instanceIdPrefix={prefix}&runtimeStatus=Completed"
    )
    status, _, body = call("DELETE", url)
    assert status == 200 and body == {"instancesDeleted": 2}
    assert call("DELETE", url)[0] == 404
    assert call("GET", waiting["statusQueryGetUri"])[0] == 202  # not finished: kept


# -- entities -------------------------------------------------------------------------------


def test_entities_signal_read_list_and_delete(base):
    key = uid("k")
    entity = base + f"entities/HttpCounter/{key}"
    assert call("POST", entity + "?op=add", 5)[0] == 202
    assert call("POST", entity + "?op=add", 6)[0] == 202
    status, _, state = call("GET", entity)
    assert status == 200 and state == 11
    assert (
        call(
            "POST", entity + "?op=add", data=b"{bad", headers={"Content-Type": "application/json"}
        )[0]
        == 400
    )
    assert call("GET", entity)[2] == 11  # the bad request changed nothing

    _, headers, rows = call("GET", base + "entities/HttpCounter?fetchState=true")
    row = next(r for r in rows if r["entityId"] == {"name": "HttpCounter", "key": key})
    assert row["state"] == 11 and TIME_FORMAT.match(row["lastOperationTime"])
    status, headers, page = call("GET", base + "entities/HttpCounter?top=1")
    assert len(page) <= 1 and "state" not in (page[0] if page else {})

    other = base + f"entities/HttpCounter/{uid('t')}"
    assert (
        call("POST", other + "?op=set", data=b"plain", headers={"Content-Type": "text/plain"})[0]
        == 202
    )
    assert call("GET", other)[2] == "plain"  # non-JSON content is passed as a string

    assert call("DELETE", entity)[0] == 202  # DF signals "delete"
    assert call("GET", entity)[0] == 404
    assert call("GET", base + f"entities/HttpCounter/{uid('never')}")[0] == 404
    status, _, body = call("POST", base + "entities/NoSuchEntity/k?op=add", 1)
    assert status == 400 and "NoSuchEntity" in body["ExceptionMessage"]
    assert call("POST", entity + "?op=explode", 1)[0] == 202  # one-way: accepted, fails inside


def stored_entity_rows(rt, name: str, key: str) -> tuple[list, list]:
    """The store's rows of one entity: its state row and its senders' rows."""
    import sqlite3
    from contextlib import closing

    where, params = "WHERE hub=? AND name=? AND key=?", (rt.config.hub, name, key)
    with closing(sqlite3.connect(rt.config.store[len("sqlite:///") :])) as db:
        state = db.execute(f"SELECT * FROM entities {where}", params).fetchall()
        senders = db.execute(f"SELECT * FROM entity_senders {where} ORDER BY sender", params)
        return state, senders.fetchall()


def test_refused_entity_operations_are_400_naming_them_and_store_nothing(base, rt):
    key = uid("refused")
    tally, counter = base + f"entities/HttpTally/{key}", base + f"entities/HttpCounter/{key}"
    assert call("POST", tally + "?op=add", 2)[0] == 202
    before = stored_entity_rows(rt, "HttpTally", key)
    for url, op in [
        (tally, "nope"),
        (tally, "__init__"),
        (tally, "_hidden"),
        (counter, "__init__"),
    ]:
        status, headers, body = call("POST", f"{url}?op={op}", 1)
        assert status == 400 and headers["content-type"] == "application/json", (op, body)
        assert f"no operation '{op}'" in body["Message"]
        assert body["ExceptionType"] == "UnknownOperationError"
    for query in ("", "?op=", "?operation=add"):
        status, _, body = call("POST", tally + query, 1)
        assert status == 400 and "query parameter op" in body["Message"], (query, body)
    status, _, body = call("POST", base + "entities/Http@Tally/k?op=add", 1)
    assert status == 400 and body["ExceptionType"] == "InvalidEntityIdError"
    assert stored_entity_rows(rt, "HttpTally", key) == before
    assert stored_entity_rows(rt, "HttpCounter", key) == ([], [])
    assert call("POST", tally + "?op=add", 3)[0] == 202  # the API's client numbers on
    assert rt.client.call_entity(f"HttpTally@{key}", "get") == 5


# -- bad input ------------------------------------------------------------------------------


def test_bad_requests_are_4xx_json_and_store_nothing(base):
    def stored(iid: str) -> bool:
        return call("GET", base + f"instances/{iid}")[0] != 404

    malformed = uid("malformed")
    status, headers, body = call(
        "POST",
        base + f"orchestrators/hello_http/{malformed}",
        data=b"[1, 2",
        headers={"Content-Type": "application/json"},
    )
    assert status == 400 and headers["content-type"] == "application/json"
    assert "Invalid JSON" in body["Message"]
    assert call("POST", base + f"orchestrators/hello_http/{malformed}", data=b"NaN")[0] == 400
    assert not stored(malformed)

    unknown = uid("unknown")
    status, _, body = call("POST", base + f"orchestrators/no_such_orchestrator/{unknown}", 1)
    assert status == 400 and "no_such_orchestrator" in body["ExceptionMessage"]
    assert not stored(unknown)

    big = uid("big")
    payload = json.dumps("x" * 1_048_576).encode()  # a JSON string just over 1 MiB
    status, _, body = call("POST", base + f"orchestrators/hello_http/{big}", data=payload)
    assert status == 413 and "limit" in body["Message"]
    assert _chunked_post(base + f"orchestrators/hello_http/{big}", payload) == 413
    assert not stored(big)

    running_id = uid("dup")
    poll(start(base, "wait_approval", None, running_id)["statusQueryGetUri"], running)
    status, _, body = call("POST", base + f"orchestrators/wait_approval/{running_id}")
    assert status == 409 and running_id in body["ExceptionMessage"]
    assert call("GET", base + "nowhere")[0] == 404
    assert call("GET", base + "instances?taskHub=another-hub")[0] == 404


def _chunked_post(url: str, payload: bytes) -> int:
    """POST without Content-Length (chunked): the guard counts the bytes as they arrive."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        chunks = (payload[i : i + 65536] for i in range(0, len(payload), 65536))
        connection.request("POST", parts.path, body=chunks, encode_chunked=True)
        return connection.getresponse().status
    finally:
        connection.close()


def test_bearer_token_is_required_when_configured(rt, base, monkeypatch):
    port = urlsplit(base).port
    monkeypatch.setenv(TOKEN_ENV, "s3cret")
    try:
        assert serve_http(rt.client, port=port, token_env=TOKEN_ENV) == base
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic s3cret"}):
            status, found, body = call("GET", base + "instances", headers=headers)
            assert status == 401 and found["www-authenticate"] == "Bearer"
            assert "bearer token" in body["Message"]
        assert call("GET", base + "nowhere")[0] == 401  # before routing, too
        iid = uid("token")
        assert call("POST", base + f"orchestrators/hello_http/{iid}", ["t"])[0] == 401
        good = {"Authorization": "Bearer s3cret"}
        assert call("GET", base + "instances?top=1", headers=good)[0] == 200
        assert call("GET", base + f"instances/{iid}", headers=good)[0] == 404  # refused: not stored
    finally:
        serve_http(rt.client, port=port)  # the rest of the module runs without a token


# -- the official Python client -------------------------------------------------------------


def test_official_durable_functions_client_round_trip(base, rt):
    import azure.durable_functions as df
    from azure.durable_functions.models.utils import http_utils

    origin = "{0.scheme}://{0.netloc}".format(urlsplit(base))
    context = {
        "taskHubName": rt.client.hub,
        "creationUrls": {
            "createNewInstancePostUri": base + "orchestrators/{functionName}[/{instanceId}]",
            "createAndWaitOnNewInstancePostUri": base
            + "orchestrators/{functionName}[/{instanceId}]",
        },
        "managementUrls": management_urls(origin, "INSTANCEID", rt.client.hub),
        "rpcBaseUrl": base,
    }
    client = df.DurableOrchestrationClient(json.dumps(context))
    prefix = uid("sdk") + "-"

    async def until(iid: str, statuses: set[str]) -> Any:
        for _ in range(600):
            status = await client.get_status(iid)
            if status.runtime_status is not None and status.runtime_status.value in statuses:
                return status
            await asyncio.sleep(0.1)
        raise AssertionError(f"{iid} never reached {statuses}")

    async def scenario() -> None:
        try:
            iid = await client.start_new("sdk_sum", f"{prefix}1", {"a": 1})
            assert iid == f"{prefix}1"
            assert client.create_http_management_payload(iid)["statusQueryGetUri"].startswith(
                base + f"instances/{iid}?"
            )
            await until(iid, {"Running"})
            await client.raise_event(iid, "Add", 41)
            done = await until(iid, {"Completed"})
            assert done.output == 42 and done.name == "sdk_sum"

            completed = df.OrchestrationRuntimeStatus.Completed
            found = await client.get_status_by(
                runtime_status=[completed], instance_id_prefix=prefix
            )
            assert [s.instance_id for s in found] == [iid]

            other = await client.start_new("sdk_sum", f"{prefix}2", {"a": 0})
            await until(other, {"Running"})
            await client.terminate(other, "no longer needed")
            assert (await until(other, {"Terminated"})).runtime_status.value == "Terminated"

            purged = await client.purge_instance_history(iid)
            assert purged.instances_deleted == 1
            assert not await client.get_status(iid)  # 404: a falsy status

            counter = df.EntityId("HttpCounter", uid("sdk"))
            await client.signal_entity(counter, "add", 5)
            await client.signal_entity(counter, "add", 2)
            state = await client.read_entity_state(counter)
            assert state.entity_exists and state.entity_state == 7
            missing = await client.read_entity_state(df.EntityId("HttpCounter", uid("none")))
            assert not missing.entity_exists
        finally:
            await http_utils._close_session()

    asyncio.run(scenario())


def test_serve_http_takes_a_hub_name(rt, base):
    port = urlsplit(base).port
    assert serve_http(rt.client.hub, port=port) == base
    assert call("GET", base + "instances?top=1")[0] == 200
    with pytest.raises(ValueError, match="hub="):
        serve_http(rt.client, hub="another", port=port)
    with pytest.raises(HubConfigError, match="already listens"):
        serve_http(rt, port=port + 1 if port < 65535 else port - 1)  # a Runtime works too


def test_quarantined_work_is_listed_and_discarded_over_http(rt, base):
    from runtime.store import EntityCheckpoint, Quarantined, open_store

    store = open_store(rt.config.store, rt.config.hub)
    try:
        item = Quarantined(
            "entity:Poison@k:driver:3",
            "entity",
            "Poison@k",
            5,
            "operation boom",
            1.0,
            "boom",
            "driver",
            3,
            dumps({"size": 9}),
        )
        store.dead_letter(EntityCheckpoint("Poison", "k", None, False, "driver", 3, b"e"), item)
    finally:
        store.close()
    status, _, body = call("GET", base + "quarantine")
    assert status == 200
    assert [(i["id"], i["crashes"], i["input"]) for i in body] == [(item.id, 5, {"size": 9})]
    status, _, body = call("DELETE", base + quote(f"quarantine/{item.id}"))
    assert status == 200 and body["id"] == item.id
    for method, path in (("DELETE", f"quarantine/{item.id}"), ("POST", "quarantine/nope/retry")):
        status, _, body = call(method, base + quote(path))
        assert status == 404 and "nothing quarantined has the id" in body["Message"], body
    assert call("GET", base + "quarantine")[2] == []
