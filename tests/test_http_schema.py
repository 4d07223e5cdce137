"""The HTTP API's OpenAPI schema, and the API fuzzed from it (schemathesis).

The schema is served at ``openapi.json`` below the API's prefix; schemathesis reads it from
there and sends every operation generated requests, valid and invalid (positive and
negative modes), through the real Ray Serve proxy to a real hub on real Ray and SQLite.
Every answer must be a non-5xx status the schema documents, with the content type and
body the schema gives for it. What the fuzzer found is kept as explicit cases in
tests/test_bad_inputs.py.
"""

from __future__ import annotations

import json
import os
import uuid
from urllib.parse import urlsplit

import http_defs
import pytest
import schemathesis
from helpers import http_request, start_ray
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from runtime import Runtime
from runtime.driver.http_api import serve_http, stop_http

TOKEN_ENV = "RAY_DURABLE_TEST_SCHEMA_TOKEN"
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
#: Examples per operation and generation mode: enough to reach every parameter's edges, few
#: enough that the whole fuzz costs seconds. ``FUZZ_EXAMPLES=200 pytest tests/test_http_schema.py``
#: fuzzes longer.
EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "12"))


@pytest.fixture(scope="module")
def fuzzed(tmp_path_factory):
    """A hub of its own (the fuzzer signals, starts and purges at random) and its API."""
    start_ray()
    store = tmp_path_factory.mktemp("fuzz") / "hub.db"
    rt = Runtime.start(
        hub=f"fuzz-{uuid.uuid4().hex[:8]}",
        store=f"sqlite:///{store}",
        placement="pooled",
        pool_size=1,
        warm_hosts=0,
        register=http_defs.ALL,
    )
    base = serve_http(rt.client, port=0)
    yield rt, base
    stop_http()
    rt.shutdown()


def test_the_schema_declares_durable_functions_parameters_and_no_422(fuzzed):
    _, base = fuzzed
    status, headers, raw = http_request("GET", base + "openapi.json")
    assert status == 200 and headers["content-type"] == "application/json"
    schema = json.loads(raw)
    paths = schema["paths"]

    def names(path: str, method: str) -> set[str]:
        return {p["name"] for p in paths[path][method].get("parameters", [])}

    assert {"taskHub", "showHistory", "showHistoryOutput", "showInput"} <= names(
        "/instances/{instance_id}", "get"
    )
    assert "returnInternalServerErrorOnFailure" in names("/instances/{instance_id}", "get")
    assert {"runtimeStatus", "createdTimeFrom", "createdTimeTo", "instanceIdPrefix", "top"} <= (
        names("/instances", "get")
    )
    assert "x-ms-continuation-token" in names("/instances", "get")
    assert "restartWithNewInstanceId" in names("/instances/{instance_id}/restart", "post")
    assert {"op", "taskHub"} <= names("/entities/{name}/{key}", "post")
    assert {"top", "fetchState"} <= names("/entities/{name}", "get")
    for path in paths.values():
        for operation in path.values():
            assert "422" not in operation["responses"], operation["operationId"]
            assert operation["responses"]["default"]["content"]["application/json"]
    # Found by the fuzzer: a 202 without a body was documented as JSON (FastAPI's default).
    for path, method in [
        ("/instances/{instance_id}/raiseEvent/{event_name}", "post"),
        ("/instances/{instance_id}/{operation}", "post"),
        ("/entities/{name}/{key}", "post"),
        ("/entities/{name}/{key}", "delete"),
    ]:
        assert "content" not in paths[path][method]["responses"]["202"], path


def test_a_declared_parameter_with_a_bad_value_is_400_with_the_api_error_body(fuzzed):
    _, base = fuzzed
    for query, name in [
        ("instances?top=0", "top"),
        ("instances?top=ten", "top"),
        ("instances?showInput=yes", "showInput"),
        ("instances/x?showHistory=1", "showHistory"),
        ("entities?fetchState=maybe", "fetchState"),
        ("entities/HttpCounter?top=-3", "top"),
    ]:
        status, headers, raw = http_request("GET", base + query)
        body = json.loads(raw)
        assert status == 400 and headers["content-type"] == "application/json", (query, body)
        assert body["ExceptionType"] == "ValidationError", body
        assert body["Message"].startswith(f"query parameter {name}: "), body
        assert body["Message"] == body["ExceptionMessage"]


ORCHESTRATORS = ("hello_http", "wait_approval")
ENTITIES = ("HttpCounter", "HttpTally")


def known_instances(rt: Runtime) -> list[str]:
    """A finished and a waiting instance (started again if an earlier fuzz ended them)."""
    c = rt.client
    done, waiting = f"fz-done-{uuid.uuid4().hex[:6]}", f"fz-wait-{uuid.uuid4().hex[:6]}"
    c.start_new("hello_http", ["fuzz"], instance_id=done)
    c.start_new("wait_approval", None, instance_id=waiting)
    c.wait_for_completion(done, timeout=60)
    return [done, waiting]


def known_path_parameters(path: str, ids: list[str]) -> list[dict[str, str]]:
    """Path values that reach registered code and stored instances, beside random ones."""
    if path.startswith("/orchestrators/"):
        names = [{"name": n} for n in ORCHESTRATORS]
        return (
            [{**n, "instance_id": i} for n in names for i in ids]
            if "{instance_id}" in path
            else names
        )
    if path.startswith("/entities/"):
        pairs = [{"name": n, "key": "k"} for n in ENTITIES]
        return pairs if "{key}" in path else [{"name": p["name"]} for p in pairs]
    if "{instance_id}" in path:
        known = [{"instance_id": i} for i in ids]
        return [{**k, "event_name": "Approve"} for k in known] if "{event_name}" in path else known
    return []


# schemathesis' own pytest integration (``from_fixture``) does not run on pytest 9: each
# operation's cases are drawn from its hypothesis strategy instead.
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda m: m.value)
def test_fuzzed_requests_get_documented_non_5xx_answers(fuzzed, mode):
    rt, base = fuzzed
    ids = known_instances(rt)
    schema = schemathesis.openapi.from_url(base + "openapi.json")
    failures = []
    for result in schema.get_all_operations():
        operation = result.ok()

        strategies = [operation.as_strategy(generation_mode=mode)] + [
            operation.as_strategy(generation_mode=mode, path_parameters=known)
            for known in known_path_parameters(operation.path, ids)
        ]

        @given(case=st.one_of(strategies))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,  # the same requests every run: a failure here is reproducible
        )
        def answer(case):
            case.call_and_validate(base_url=base.rstrip("/"), checks=CHECKS, timeout=60)

        try:
            answer()
        except Exception as exc:  # every operation is fuzzed; all failures are reported
            failures.append(f"{operation.label}: {exc}")
    assert not failures, "\n\n".join(failures)


def test_the_schema_is_behind_the_bearer_token_when_one_is_configured(fuzzed, monkeypatch):
    rt, base = fuzzed
    port = urlsplit(base).port
    monkeypatch.setenv(TOKEN_ENV, "schema-s3cret")
    try:
        serve_http(rt.client, port=port, token_env=TOKEN_ENV)
        status, found, raw = http_request("GET", base + "openapi.json")
        assert status == 401 and found["www-authenticate"] == "Bearer", raw
        assert "bearer token" in json.loads(raw)["Message"]
        good = {"Authorization": "Bearer schema-s3cret"}
        status, _, raw = http_request("GET", base + "openapi.json", headers=good)
        assert status == 200 and "/instances/{instance_id}" in json.loads(raw)["paths"]
    finally:
        serve_http(rt.client, port=port)
