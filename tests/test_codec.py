"""The history codec: every event kind round-trips, unknown formats are refused typed (no Ray)."""

from __future__ import annotations

import dataclasses
import pickle
from datetime import datetime, timedelta, timezone

import pytest

from runtime.errors import FailureDetails, HistoryFormatError, SerializationError
from runtime.orchestration import history as h
from runtime.orchestration.codec import FORMAT_VERSION, KINDS, MAGIC, decode_event, encode_event
from runtime.orchestration.engine import RetryPolicy
from runtime.orchestration.status import OrchestrationStatus
from runtime.serialization import dumps

#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True


NOW = datetime(2026, 3, 4, 5, 6, 7, 891011, tzinfo=timezone.utc)
FAILURE = FailureDetails("ValueError", "boom", "Traceback ...")

#: One event of every kind, with every field set to something other than its default.
SAMPLES: list[h.HistoryEvent] = [
    h.ExecutionStarted(
        "chain", {"x": (1, 2)}, "2", "parent-1", RetryPolicy(timedelta(seconds=1), 3)
    ),
    h.OrchestratorStarted(NOW),
    h.TaskScheduled(1, "inc", [1, "two", 3.0]),
    h.TaskCompleted(1, {"a": b"\x00\xff"}),
    h.TaskFailed(2, FAILURE),
    h.TimerCreated(3, NOW + timedelta(hours=72)),
    h.TimerFired(3, NOW + timedelta(hours=72)),
    h.EventRaised("ApprovalEvent", ("yes", None)),
    h.SubOrchestrationCreated(4, "child", "iid:4", 41, "1"),
    h.SubOrchestrationCompleted(4, 42),
    h.SubOrchestrationFailed(5, FAILURE),
    h.EntityCalled(6, "@counter@k", "get", None, 7),
    h.EntityResponded(6, 11),
    h.EntityFailed(7, FAILURE),
    h.EntitySignaled(8, "@counter@k", "add", 5, 9),
    h.LockRequested(9, ("@a@1", "@b@2"), (1, 2)),
    h.LockGranted(9),
    h.LockFailed(11, FAILURE),
    h.LockReleased(10, ("@a@1", "@b@2"), 9, (3, 4)),
    h.ExecutionTerminated("stop"),
    h.ExecutionSuspended("hold"),
    h.ExecutionResumed("go"),
    h.ExecutionCompleted(OrchestrationStatus.FAILED, None, FAILURE),
    h.ContinuedAsNew((1, 10), (h.EventRaised("item", 3), h.EventRaised("item", 4))),
]


def test_the_samples_cover_every_event_class_and_every_kind():
    classes = {c for c in vars(h).values() if isinstance(c, type) and issubclass(c, h.HistoryEvent)}
    assert {type(e) for e in SAMPLES} == classes - {h.HistoryEvent}
    assert set(KINDS.values()) == classes - {h.HistoryEvent}


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_every_event_kind_round_trips(event):
    blob = encode_event(event)
    assert blob.startswith(MAGIC + bytes((FORMAT_VERSION,)))
    back = decode_event(blob)
    assert type(back) is type(event)
    assert back == event
    assert encode_event(back) == blob


def test_the_envelope_names_the_kind_and_no_class_path():
    blob = encode_event(h.TaskScheduled(1, "inc", 2))
    envelope = pickle.loads(blob[len(MAGIC) + 1 :])
    assert envelope["kind"] == "TaskScheduled"
    assert set(envelope["fields"]) == {"seq", "name", "input"}
    assert b"runtime.orchestration" not in blob and b"history" not in blob


def test_datetimes_keep_their_microseconds_and_zone():
    back = decode_event(encode_event(h.OrchestratorStarted(NOW)))
    assert back.timestamp == NOW and back.timestamp.tzinfo is not None


def test_a_status_enum_is_stored_as_its_plain_value():
    back = decode_event(encode_event(h.ExecutionCompleted(OrchestrationStatus.COMPLETED, 3)))
    assert back.status == OrchestrationStatus.COMPLETED and type(back.status) is str


def _blob(kind: str, fields: dict, version: int = FORMAT_VERSION) -> bytes:
    return MAGIC + bytes((version,)) + pickle.dumps({"kind": kind, "fields": fields}, protocol=5)


def test_an_unknown_kind_is_a_typed_error_naming_it():
    with pytest.raises(HistoryFormatError, match="unknown event kind 'TaskTeleported'") as err:
        decode_event(_blob("TaskTeleported", {"seq": 1}))
    assert isinstance(err.value, SerializationError)


def test_a_newer_format_version_is_a_typed_error():
    with pytest.raises(HistoryFormatError, match=f"format version {FORMAT_VERSION + 1}"):
        decode_event(_blob("TaskCompleted", {"seq": 1}, FORMAT_VERSION + 1))


def test_an_unknown_field_and_a_class_in_the_envelope_are_refused():
    with pytest.raises(HistoryFormatError, match="warp"):
        decode_event(_blob("LockGranted", {"seq": 1, "warp": 9}))
    sneaky = MAGIC + bytes((FORMAT_VERSION,)) + pickle.dumps({"kind": FailureDetails}, protocol=5)
    with pytest.raises(HistoryFormatError, match="names a class"):
        decode_event(sneaky)


def test_a_field_missing_from_an_old_blob_takes_its_default():
    back = decode_event(_blob("EntityCalled", {"seq": 1, "entity": "@c@k", "operation": "get"}))
    assert back == h.EntityCalled(1, "@c@k", "get", None, 0)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: type(e).__name__)
def test_a_legacy_blob_decodes(event):
    # What the code before the codec stored: a cloudpickle of the dataclass.
    assert decode_event(dumps(event)) == event


def test_a_legacy_blob_that_is_not_an_event_is_refused():
    with pytest.raises(HistoryFormatError, match="not an event"):
        decode_event(dumps(("ok", 1)))


def test_an_unpicklable_payload_names_what_was_being_stored():
    import threading

    with pytest.raises(SerializationError, match="cannot serialize event data"):
        encode_event(h.EventRaised("e", threading.Lock()), "event data")


def test_an_event_class_the_codec_does_not_know_is_refused():
    @dataclasses.dataclass(frozen=True)
    class Stray(h.HistoryEvent):
        seq: int

    with pytest.raises(HistoryFormatError, match="Stray"):
        encode_event(Stray(1))
