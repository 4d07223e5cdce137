"""Typed outcomes, outbox messages and ids: round trips, and blobs stored before them (no Ray)."""

from __future__ import annotations

import dataclasses
import pickle
import threading

import pytest

from runtime.entity_id import EntityId, InvalidEntityIdError
from runtime.errors import (
    DurableError,
    FailureDetails,
    InvalidArgumentError,
    InvalidOperationError,
    SerializationError,
)
from runtime.messages import (
    ENTITY_KINDS,
    EntitySignal,
    LockOwner,
    MessageFormatError,
    OrderedSignal,
    OutboxKind,
    Outcome,
    SenderId,
    StartOrchestration,
    Unlock,
    decode_message,
    encode_message,
)
from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event
from runtime.serialization import dumps, failure_of, loads

#: No Ray for this module (tests/conftest.py): the code under test is pure.
PURE = True

COUNTER = EntityId("Counter", "c")
SENDER = SenderId("order-7", "0f3a")
OWNER = LockOwner(SENDER, 4)


def _raised(exc: BaseException) -> BaseException:
    """``exc`` with a traceback, as an operation leaves it."""
    try:
        raise exc
    except BaseException as caught:
        return caught


# -- blobs exactly as the code before runtime.messages wrote them ------------------------


def legacy_ok(value):
    return dumps(("ok", value), "entity operation result")


def legacy_err(exc):
    typed = exc if isinstance(exc, DurableError) else None
    try:
        return dumps(("err", failure_of(exc), typed))
    except SerializationError:
        return dumps(("err", failure_of(exc), None))


def legacy_rows():
    """One outbox row of each kind, packed by hand as entity_host.py and hosts.py did."""
    start = dumps(h.ExecutionStarted("flow", {"n": 1}, "2"), "orchestration input")
    return [
        ("signal", "Counter@c", dumps(("add", dumps(5, "signal input")))),
        (
            "ordered_signal",
            "Counter@c",
            dumps(("add", dumps(6, "entity input"), "order-7:0f3a", 3)),
        ),
        ("unlock", "Counter@c", dumps(("order-7:0f3a|4", 2))),
        ("start", "child-1", dumps(("flow", "2", dumps({"n": 1}, "orchestration input"), start))),
        ("start", "", dumps(("flow", "", dumps(None, "orchestration input"), start))),
    ]


# -- outcomes ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, 0, "", 42, {"a": [1, (2, 3)]}, b"\x00", Outcome(1)])
def test_a_successful_outcome_round_trips(value):
    back = Outcome.decode(Outcome(value).encode())
    assert back == Outcome(value) and back.ok and back.value == value
    assert back.failure is None and back.error is None


def test_a_typed_failure_travels_whole_and_a_plain_one_as_its_details():
    typed = Outcome.decode(Outcome.of_error(_raised(InvalidOperationError("not now"))).encode())
    assert not typed.ok and isinstance(typed.error, InvalidOperationError)
    assert str(typed.error) == "not now"
    assert typed.failure is not None and typed.failure.error_type == "InvalidOperationError"
    plain = Outcome.decode(Outcome.of_error(_raised(ValueError("boom"))).encode())
    assert not plain.ok and plain.error is None
    assert (plain.failure.error_type, plain.failure.message) == ("ValueError", "boom")
    assert "raise exc" in plain.failure.stack_trace


def test_a_typed_error_that_does_not_pickle_still_travels_as_its_failure():
    outcome = Outcome.of_error(_raised(DurableError(threading.Lock())))
    back = Outcome.decode(outcome.encode())
    assert back.error is None and back.failure == outcome.failure


def test_a_value_that_does_not_pickle_fails_to_encode_typed():
    with pytest.raises(SerializationError, match="entity operation result"):
        Outcome(threading.Lock()).encode()


def test_the_stored_form_is_the_tuple_written_before_outcomes_had_a_type():
    assert loads(Outcome(7).encode()) == ("ok", 7)
    failure = FailureDetails("ValueError", "boom", "tb")
    assert loads(Outcome(failure=failure).encode()) == ("err", failure, None)


@pytest.mark.parametrize(
    "blob, expected",
    [
        (legacy_ok(None), Outcome(None)),
        (legacy_ok({"total": 11}), Outcome({"total": 11})),
    ],
)
def test_legacy_success_blobs_decode(blob, expected):
    assert Outcome.decode(blob) == expected


def test_legacy_failure_blobs_decode():
    typed = Outcome.decode(legacy_err(_raised(InvalidOperationError("held"))))
    assert isinstance(typed.error, InvalidOperationError) and typed.failure.message == "held"
    plain = Outcome.decode(legacy_err(_raised(KeyError("k"))))
    assert plain.error is None and plain.failure.error_type == "KeyError"
    unpicklable = Outcome.decode(legacy_err(_raised(DurableError(threading.Lock()))))
    assert unpicklable.error is None and unpicklable.failure.error_type == "DurableError"


@pytest.mark.parametrize(
    "stored",
    [("ok",), ("ok", 1, 2), ("err", "not details", None), ("err", FailureDetails("E", "m")), 7],
    ids=["ok-short", "ok-long", "err-not-details", "err-short", "not-a-tuple"],
)
def test_a_blob_that_is_not_an_outcome_is_refused_typed(stored):
    with pytest.raises(MessageFormatError, match="not an outcome") as raised:
        Outcome.decode(dumps(stored))
    assert isinstance(raised.value, SerializationError)


def test_a_corrupt_outcome_blob_is_refused_typed():
    with pytest.raises(SerializationError, match="entity operation result"):
        Outcome.decode(b"\x80\x05corrupt")


def test_message_format_errors_pickle_with_their_fields():
    error = MessageFormatError("outbox message", "unknown kind 'x'")
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is MessageFormatError and str(back) == str(error)
    assert (back.what, back.cause_text) == ("outbox message", "unknown kind 'x'")


# -- outbox messages ---------------------------------------------------------------------

MESSAGES = [
    EntitySignal(COUNTER, "add", dumps(5)),
    OrderedSignal(COUNTER, "add", dumps(6), SENDER, 3),
    Unlock(COUNTER, OWNER, 2),
    StartOrchestration("child-1", "flow", "2", dumps({"n": 1}), b"start-event"),
    StartOrchestration("", "flow", "", dumps(None), b"start-event"),
]


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: f"{type(m).__name__}")
def test_every_message_round_trips_through_its_row(message):
    kind, target, payload = encode_message(message)
    assert kind == message.kind.value and type(kind) is str
    assert decode_message(kind, target, payload) == message


def test_the_kinds_are_the_strings_stored_before_the_enum():
    assert [k.value for k in OutboxKind] == ["signal", "ordered_signal", "unlock", "start"]
    assert OutboxKind("unlock") is OutboxKind.UNLOCK and OutboxKind.UNLOCK == "unlock"
    assert str(OutboxKind.ORDERED_SIGNAL) == "ordered_signal"
    assert "signal" in ENTITY_KINDS and "unlock" in ENTITY_KINDS and "start" not in ENTITY_KINDS


def test_rows_written_before_the_types_decode():
    signal, ordered, unlock, start, start_any = (decode_message(*row) for row in legacy_rows())
    assert signal == EntitySignal(COUNTER, "add", dumps(5, "signal input"))
    assert loads(signal.input) == 5
    assert ordered == OrderedSignal(COUNTER, "add", dumps(6, "entity input"), SENDER, 3)
    assert unlock == Unlock(COUNTER, OWNER, 2)
    assert isinstance(start, StartOrchestration)
    assert (start.instance_id, start.name, start.version) == ("child-1", "flow", "2")
    assert loads(start.input) == {"n": 1}
    assert decode_event(start.start) == h.ExecutionStarted("flow", {"n": 1}, "2")
    assert isinstance(start_any, StartOrchestration) and start_any.instance_id == ""


def test_new_rows_are_what_the_code_before_the_types_read():
    """A supervisor not yet upgraded reads the rows a new host writes."""
    for message, (kind, target, payload) in zip(MESSAGES, legacy_rows()):
        new_kind, new_target, new_payload = encode_message(message)
        assert (new_kind, new_target) == (kind, target)
        new, old = loads(new_payload), loads(payload)
        assert type(new) is tuple and [type(v) for v in new] == [type(v) for v in old]
    assert encode_message(MESSAGES[2]) == ("unlock", "Counter@c", dumps(("order-7:0f3a|4", 2)))


def test_an_unknown_kind_is_refused_typed():
    with pytest.raises(MessageFormatError, match="unknown kind 'telegram'"):
        decode_message("telegram", "Counter@c", dumps(("add", b"")))


@pytest.mark.parametrize(
    "kind, payload",
    [
        ("signal", ("add",)),
        ("signal", ("add", "not bytes")),
        ("ordered_signal", ("add", b"", "order-7:0f3a", "3")),
        ("unlock", ("order-7:0f3a|4",)),
        ("start", ("flow", "", b"", None)),
    ],
)
def test_a_payload_of_the_wrong_shape_is_refused_typed(kind, payload):
    with pytest.raises(MessageFormatError, match=f"{kind} message"):
        decode_message(kind, "Counter@c", dumps(payload))


def test_a_row_with_a_bad_target_or_owner_is_refused_typed():
    with pytest.raises(InvalidEntityIdError):
        decode_message("signal", "no-key", dumps(("add", b"")))
    with pytest.raises(InvalidArgumentError, match="lock owner"):
        decode_message("unlock", "Counter@c", dumps(("order-7:0f3a", 2)))


def test_messages_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        MESSAGES[0].operation = "sub"  # type: ignore[misc]


# -- ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "sender, text",
    [
        (SenderId("order-7", "0f3a"), "order-7:0f3a"),
        (SenderId("a:b:c", "e1"), "a:b:c:e1"),  # an instance id may contain ':'
        (SenderId("x|y", "e1"), "x|y:e1"),
    ],
)
def test_a_sender_id_has_one_string_form_and_parses_back(sender, text):
    assert str(sender) == text
    assert SenderId.parse(text) == sender


@pytest.mark.parametrize(
    "owner, text",
    [
        (LockOwner(SENDER, 4), "order-7:0f3a|4"),
        (LockOwner(SenderId("x|y", "e1"), 0), "x|y:e1|0"),  # '|' in the instance id
        (LockOwner(SenderId("a:b", "e"), 12345), "a:b:e|12345"),
    ],
)
def test_a_lock_owner_has_one_string_form_and_parses_back(owner, text):
    assert str(owner) == text
    assert LockOwner.parse(text) == owner
    assert LockOwner.decode(owner.encode()) == owner
    assert loads(owner.encode()) == text  # what lock operations carried before the type


def test_ids_are_frozen_and_hashable():
    assert len({SENDER, SenderId("order-7", "0f3a"), SenderId("order-7", "other")}) == 2
    assert {OWNER: 1}[LockOwner(SenderId("order-7", "0f3a"), 4)] == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        SENDER.execution_id = "x"  # type: ignore[misc]


@pytest.mark.parametrize(
    "text", ["no-colon", ":e1", "order-7:", "", 7, None], ids=lambda t: repr(t)
)
def test_a_bad_sender_id_is_refused_typed(text):
    with pytest.raises(InvalidArgumentError, match="sender id") as raised:
        SenderId.parse(text)
    assert isinstance(raised.value, DurableError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    "text",
    ["order-7:0f3a", "order-7:0f3a|", "order-7:0f3a|x", "order-7:0f3a|-1", "order-7:0f3a|٣", 4],
    ids=lambda t: repr(t),
)
def test_a_bad_lock_owner_is_refused_typed(text):
    with pytest.raises(InvalidArgumentError, match="lock owner"):
        LockOwner.parse(text)


def test_a_lock_owner_with_a_bad_sender_is_refused_typed():
    with pytest.raises(InvalidArgumentError, match="sender id"):
        LockOwner.parse("no-colon|3")
    with pytest.raises(InvalidArgumentError, match="lock owner"):
        LockOwner.decode(dumps(("order-7:0f3a", 4)))


@pytest.mark.parametrize(
    "build, argument",
    [
        (lambda: SenderId("", "e1"), "instance_id"),
        (lambda: SenderId("i", ""), "execution_id"),
        (lambda: SenderId("i", "e:1"), "execution_id"),
        (lambda: LockOwner("i:e", 1), "sender"),  # type: ignore[arg-type]
        (lambda: LockOwner(SENDER, -1), "lock_seq"),
        (lambda: LockOwner(SENDER, True), "lock_seq"),
    ],
)
def test_ids_that_would_not_parse_back_cannot_be_built(build, argument):
    with pytest.raises(InvalidArgumentError, match=f"^{argument}:"):
        build()
