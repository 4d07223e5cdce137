"""Typed values that entities, hosts and the supervisor exchange, and their one stored form.

- ``Outcome``: what an entity operation answered (a value, or a failure with the typed error).
  It is stored in the sender's row (a re-delivered message is answered from it) and is what
  an entity host returns over Ray.
- Outbox messages (``EntitySignal``, ``OrderedSignal``, ``Unlock``, ``StartOrchestration``):
  committed with the operation that sent them, delivered by the supervisor afterwards.
- ``SenderId`` and ``LockOwner``: an orchestration execution as an entity sender, and its
  hold on an entity; both travel and are stored as strings with one format and one parser.

The byte formats are the ones written before these types existed (pickled tuples of plain
values around the user's own pickled blobs), so rows already stored and results of
instances in flight read back unchanged. Pure: no Ray, no store, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, ClassVar, TypeAlias

from .entity_id import EntityId
from .errors import DurableError, FailureDetails, InvalidArgumentError, SerializationError
from .serialization import dumps, failure_of, loads

__all__ = [
    "ENTITY_KINDS",
    "EntitySignal",
    "LockOwner",
    "Message",
    "MessageFormatError",
    "OrderedSignal",
    "Outcome",
    "OutboxKind",
    "SenderId",
    "StartOrchestration",
    "Unlock",
    "decode_message",
    "encode_message",
]


class MessageFormatError(SerializationError):
    """A stored outcome or outbox message is not in a form this ray-durable reads."""

    def __init__(self, what: str, cause: str) -> None:
        super().__init__(what, cause, "deserialize")
        self.args = (what, cause)  # what pickle calls __init__ with


# -- identities --------------------------------------------------------------------------


@dataclass(frozen=True)
class SenderId:
    """An orchestration execution as an entity sender: ``instance_id:execution_id``.

    Its operations on an entity are numbered per execution, so a restarted execution (a
    new execution id) never collides with the numbers of the one before.
    """

    instance_id: str
    execution_id: str

    def __post_init__(self) -> None:
        if not isinstance(self.instance_id, str) or not self.instance_id:
            raise InvalidArgumentError.of("instance_id", "a non-empty string", self.instance_id)
        if not isinstance(self.execution_id, str) or not self.execution_id:
            raise InvalidArgumentError.of("execution_id", "a non-empty string", self.execution_id)
        if ":" in self.execution_id:
            # The parser splits at the last ':'; the instance id may contain any.
            raise InvalidArgumentError.of("execution_id", "a string without ':'", self.execution_id)

    def __str__(self) -> str:
        return f"{self.instance_id}:{self.execution_id}"

    @classmethod
    def parse(cls, text: str) -> SenderId:
        """The sender written ``instance_id:execution_id``."""
        if not isinstance(text, str):
            raise InvalidArgumentError.of("sender id", "'instance_id:execution_id'", text)
        instance_id, sep, execution_id = text.rpartition(":")
        if not sep or not instance_id or not execution_id:
            raise InvalidArgumentError.of("sender id", "'instance_id:execution_id'", text)
        return cls(instance_id, execution_id)


@dataclass(frozen=True)
class LockOwner:
    """Who holds an entity: an orchestration execution and its lock request's number."""

    sender: SenderId
    lock_seq: int

    def __post_init__(self) -> None:
        if not isinstance(self.sender, SenderId):
            raise InvalidArgumentError.of("sender", "a SenderId", self.sender)
        if not isinstance(self.lock_seq, int) or isinstance(self.lock_seq, bool):
            raise InvalidArgumentError.of("lock_seq", "an int", self.lock_seq)
        if self.lock_seq < 0:
            raise InvalidArgumentError.of("lock_seq", "a number >= 0", self.lock_seq)

    def __str__(self) -> str:
        return f"{self.sender}|{self.lock_seq}"

    @classmethod
    def parse(cls, text: str) -> LockOwner:
        """The owner written ``instance_id:execution_id|lock_seq``."""
        expected = "'instance_id:execution_id|lock_seq'"
        if not isinstance(text, str):
            raise InvalidArgumentError.of("lock owner", expected, text)
        sender, sep, seq = text.rpartition("|")
        if not sep or not seq.isdigit() or not seq.isascii():
            raise InvalidArgumentError.of("lock owner", expected, text)
        return cls(SenderId.parse(sender), int(seq))

    def encode(self) -> bytes:
        """The input of a lock or unlock operation: this owner, pickled as its string."""
        return dumps(str(self), "lock owner")

    @classmethod
    def decode(cls, blob: bytes) -> LockOwner:
        """The owner a lock or unlock operation carries (InvalidArgumentError if none)."""
        return cls.parse(loads(blob, "lock owner"))


# -- outcomes ----------------------------------------------------------------------------

_OK, _ERR = "ok", "err"


@dataclass(frozen=True)
class Outcome:
    """What an entity operation answered: its value, or its failure (and typed error)."""

    value: Any = None
    failure: FailureDetails | None = None
    #: The DurableError the operation raised, kept whole so a caller can raise it again.
    error: DurableError | None = None

    @property
    def ok(self) -> bool:
        """True for a successful operation."""
        return self.failure is None

    @classmethod
    def of_error(cls, exc: BaseException) -> Outcome:
        """The outcome of an operation that raised ``exc``."""
        typed = exc if isinstance(exc, DurableError) else None
        return cls(failure=failure_of(exc), error=typed)

    def encode(self) -> bytes:
        """The stored form; SerializationError if a successful value does not pickle."""
        if self.failure is None:
            return dumps((_OK, self.value), "entity operation result")
        try:
            return dumps((_ERR, self.failure, self.error))
        except SerializationError:
            # A typed error that does not pickle still travels as its failure details.
            return dumps((_ERR, self.failure, None))

    @classmethod
    def decode(cls, blob: bytes) -> Outcome:
        """The outcome stored in ``blob``."""
        what = "entity operation result"
        stored = loads(blob, what)
        if isinstance(stored, tuple) and len(stored) == 2 and stored[0] == _OK:
            return cls(stored[1])
        if isinstance(stored, tuple) and len(stored) == 3 and stored[0] == _ERR:
            failure, error = stored[1], stored[2]
            if isinstance(failure, FailureDetails) and (
                error is None or isinstance(error, DurableError)
            ):
                return cls(failure=failure, error=error)
        raise MessageFormatError(what, f"not an outcome: {_kind_of(stored)}")


# -- outbox messages ---------------------------------------------------------------------


class OutboxKind(str, Enum):
    """The kind column of an outbox row (the strings are stored: never change one)."""

    SIGNAL = "signal"
    ORDERED_SIGNAL = "ordered_signal"
    UNLOCK = "unlock"
    START = "start"

    def __str__(self) -> str:
        return self.value


#: The kinds whose target is an entity (members equal and hash as their plain strings).
ENTITY_KINDS = frozenset({OutboxKind.SIGNAL, OutboxKind.ORDERED_SIGNAL, OutboxKind.UNLOCK})


@dataclass(frozen=True)
class EntitySignal:
    """A one-way operation an entity sends; the outbox row's id orders it."""

    kind: ClassVar[OutboxKind] = OutboxKind.SIGNAL
    target: EntityId
    operation: str
    input: bytes

    def payload(self) -> bytes:
        """The stored payload."""
        return dumps((self.operation, self.input))

    @classmethod
    def from_row(cls, target: str, payload: bytes) -> EntitySignal:
        """The message of a stored row."""
        operation, input_blob = _fields(payload, cls.kind, (str, bytes))
        return cls(EntityId.parse(target), operation, input_blob)


@dataclass(frozen=True)
class OrderedSignal:
    """An orchestration's signal: numbered by ``counter`` among its sender's messages."""

    kind: ClassVar[OutboxKind] = OutboxKind.ORDERED_SIGNAL
    target: EntityId
    operation: str
    input: bytes
    sender: SenderId
    counter: int

    def payload(self) -> bytes:
        """The stored payload."""
        return dumps((self.operation, self.input, str(self.sender), self.counter))

    @classmethod
    def from_row(cls, target: str, payload: bytes) -> OrderedSignal:
        """The message of a stored row."""
        operation, input_blob, sender, counter = _fields(payload, cls.kind, (str, bytes, str, int))
        return cls(EntityId.parse(target), operation, input_blob, SenderId.parse(sender), counter)


@dataclass(frozen=True)
class Unlock:
    """The end of a critical section: ``owner`` releases ``target``."""

    kind: ClassVar[OutboxKind] = OutboxKind.UNLOCK
    target: EntityId
    owner: LockOwner
    #: The sender's number of the lock request on this entity.
    counter: int

    def payload(self) -> bytes:
        """The stored payload."""
        return dumps((str(self.owner), self.counter))

    @classmethod
    def from_row(cls, target: str, payload: bytes) -> Unlock:
        """The message of a stored row."""
        owner, counter = _fields(payload, cls.kind, (str, int))
        return cls(EntityId.parse(target), LockOwner.parse(owner), counter)


@dataclass(frozen=True)
class StartOrchestration:
    """An orchestration an entity starts; an empty ``instance_id`` lets the hub pick one."""

    kind: ClassVar[OutboxKind] = OutboxKind.START
    instance_id: str
    name: str
    version: str
    input: bytes
    #: The encoded ExecutionStarted event of the new instance.
    start: bytes

    @property
    def target(self) -> str:
        """The row's target column."""
        return self.instance_id

    def payload(self) -> bytes:
        """The stored payload."""
        return dumps((self.name, self.version, self.input, self.start))

    @classmethod
    def from_row(cls, target: str, payload: bytes) -> StartOrchestration:
        """The message of a stored row."""
        name, version, input_blob, start = _fields(payload, cls.kind, (str, str, bytes, bytes))
        return cls(target, name, version, input_blob, start)


Message: TypeAlias = EntitySignal | OrderedSignal | Unlock | StartOrchestration

_BY_KIND: dict[OutboxKind, Any] = {
    cls.kind: cls for cls in (EntitySignal, OrderedSignal, Unlock, StartOrchestration)
}


def encode_message(message: Message) -> tuple[str, str, bytes]:
    """The outbox row ``(kind, target, payload)`` the store keeps for ``message``."""
    return message.kind.value, str(message.target), message.payload()


def decode_message(kind: str, target: str, payload: bytes) -> Message:
    """The message of a stored outbox row."""
    try:
        known = OutboxKind(kind)
    except ValueError:
        raise MessageFormatError("outbox message", f"unknown kind {kind!r}") from None
    message: Message = _BY_KIND[known].from_row(target, payload)
    return message


def _fields(payload: bytes, kind: OutboxKind, types: tuple[type, ...]) -> tuple[Any, ...]:
    """The values of a stored payload, checked against the types its kind holds."""
    stored = loads(payload, f"{kind.value} message")
    if (
        not isinstance(stored, tuple)
        or len(stored) != len(types)
        or not all(isinstance(v, t) for v, t in zip(stored, types))
    ):
        expected = ", ".join(t.__name__ for t in types)
        raise MessageFormatError(
            f"{kind.value} message", f"expected a tuple of ({expected}), got {_kind_of(stored)}"
        )
    return tuple(stored)


def _kind_of(value: Any) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(type(v).__name__ for v in value) + ")"
    return type(value).__name__
