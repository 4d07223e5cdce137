"""One JSON view: the CLI's ``--json`` and the HTTP API show an instance the same way (no Ray)."""

from __future__ import annotations

from datetime import datetime, timezone

from runtime.driver.client import OrchestrationState
from runtime.driver.http_json import state_payload, status_payload
from runtime.errors import FailureDetails
from runtime.orchestration import history as h
from runtime.orchestration.status import OrchestrationStatus
from runtime.serialization import dumps
from runtime.store import InstanceRecord

#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True

CREATED, UPDATED = 1_700_000_000.0, 1_700_000_042.0
HISTORY = [h.ExecutionStarted("flow", {"n": 1}, "2"), h.TaskScheduled(0, "work", b"x")]


def _both(output, failure):
    """The same instance as the store holds it and as the client decodes it."""
    record = InstanceRecord(
        "i-1",
        "flow",
        "2",
        "Failed" if failure else "Completed",
        "e",
        CREATED,
        UPDATED,
        input=dumps({"n": 1}),
        output=dumps(output),
        custom_status=dumps((1, 2)),
        failure=None if failure is None else dumps(failure),
    )
    state = OrchestrationState(
        "i-1",
        "flow",
        OrchestrationStatus(record.status),
        {"n": 1},
        output,
        (1, 2),
        datetime.fromtimestamp(CREATED, tz=timezone.utc),
        datetime.fromtimestamp(UPDATED, tz=timezone.utc),
        failure_details=failure,
        version="2",
        history=list(HISTORY),
    )
    return record, state


def test_cli_and_http_api_give_one_view_of_an_instance():
    record, state = _both([1, 2], None)
    blobs = [dumps(event) for event in HISTORY]
    http = status_payload(record, history=blobs, show_history_output=True)
    assert state_payload(state) == http
    started = http["historyEvents"][0]
    assert started["EventType"] == "ExecutionStarted"
    assert (started["Name"], started["Input"], started["Version"]) == ("flow", {"n": 1}, "2")
    assert (http["createdTime"], http["customStatus"]) == ("2023-11-14T22:13:20Z", [1, 2])
    assert http["failureDetails"] is None and http["version"] == "2"


def test_a_failed_instance_shows_its_failure_the_same_way():
    failure = FailureDetails("ValueError", "boom", "Traceback ...")
    record, state = _both(None, failure)
    state.history = None
    http = status_payload(record)
    assert state_payload(state) == http
    assert http["failureDetails"] == {
        "errorType": "ValueError",
        "errorMessage": "boom",
        "stackTrace": "Traceback ...",
    }
    assert http["output"] == str(failure) and http["historyEvents"] is None
