"""The entity programming model: ``@entity`` classes and functions, and their context."""

from __future__ import annotations

import contextvars
import inspect
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runtime.entity_id import EntityId
from runtime.errors import (
    ArgumentTypeError,
    DurableError,
    InvalidArgumentError,
    UnknownOperationError,
)

__all__ = [
    "Entity",
    "EntityContext",
    "NoEntityContextError",
    "UnknownOperationError",
    "current_context",
    "entity",
]

_current: contextvars.ContextVar[EntityContext | None] = contextvars.ContextVar(
    "durable_entity_context", default=None
)

PLACEMENTS = (None, "dedicated", "pooled")


class NoEntityContextError(DurableError, RuntimeError):
    """``current_context()`` was called outside an entity operation."""

    def __str__(self) -> str:
        return "current_context() is only available inside an entity operation"


_NOTHING = object()


class EntityContext:
    """What an operation sees: its entity, the operation, the input and the state."""

    def __init__(
        self, entity_id: EntityId, operation_name: str, input: Any, state: Any, exists: bool
    ) -> None:
        self.entity_id = entity_id
        self.operation_name = operation_name
        self._input = input
        self._state = state
        self._exists = exists
        self._result: Any = None
        self.signals: list[tuple[EntityId, str, Any]] = []
        self.orchestrations: list[tuple[Any, Any, str | None]] = []

    def get_input(self) -> Any:
        """The operation's input."""
        return self._input

    def get_state(self, initializer: Callable[[], Any] | None = None) -> Any:
        """The entity's state; ``initializer()`` when it has none yet."""
        if not self._exists:
            return initializer() if initializer is not None else None
        return self._state

    def set_state(self, value: Any) -> None:
        """Replace the entity's state."""
        self._state, self._exists = value, True

    def delete_state(self) -> None:
        """Delete the entity: it stops existing until an operation sets state again."""
        self._state, self._exists = None, False

    def set_result(self, value: Any) -> None:
        """The value a caller of ``call_entity`` receives."""
        self._result = value

    def signal_entity(self, entity_id: EntityId | str, operation: str, input: Any = None) -> None:
        """Send a one-way operation to another entity, once this operation commits."""
        self.signals.append((EntityId.of(entity_id), operation, input))

    def start_new_orchestration(
        self, orchestrator: Any, input: Any = None, instance_id: str | None = None
    ) -> str:
        """Start an orchestration once this operation commits; returns its instance id.

        The id is fixed here, so it is the one the operation's commit stores with the start.
        """
        instance_id = instance_id or uuid.uuid4().hex
        self.orchestrations.append((orchestrator, input, instance_id))
        return instance_id


def current_context() -> EntityContext:
    """The context of the operation running now (for class-based entities)."""
    ctx = _current.get()
    if ctx is None:
        raise NoEntityContextError()
    return ctx


@dataclass
class Entity:
    """A registered entity type: a class (public methods are operations) or a function."""

    target: Any
    name: str
    placement: str | None = None
    options: dict[str, Any] = field(default_factory=dict)
    passivate_after: float | None = None
    kind: str = field(default="entity", init=False)

    @property
    def is_class(self) -> bool:
        """True for class-based entities."""
        return inspect.isclass(self.target)

    def operations(self) -> tuple[str, ...]:
        """Operation names of a class-based entity."""
        if not self.is_class:
            return ()
        return tuple(
            n for n, v in inspect.getmembers(self.target, callable) if not n.startswith("_")
        )

    def has_operation(self, operation: str) -> bool:
        """True if ``operation`` may run: any public name for a function, a method for a class."""
        if not isinstance(operation, str) or not operation or operation.startswith("_"):
            return False
        return not self.is_class or callable(getattr(self.target, operation, None))

    def execute(
        self, entity_id: EntityId, operation: str, input: Any, state: Any, exists: bool
    ) -> EntityContext:
        """Run one operation on a state; the host keeps the context's outcome or rolls back."""
        return self.run(EntityContext(entity_id, operation, input, state, exists))

    def run(self, ctx: EntityContext) -> EntityContext:
        """Run one operation against ``ctx``; exceptions propagate (the host rolls back)."""
        token = _current.set(ctx)
        try:
            if self.is_class:
                self._run_method(ctx)
            else:
                self.target(ctx)
        finally:
            _current.reset(token)
        return ctx

    def _run_method(self, ctx: EntityContext) -> None:
        op = ctx.operation_name
        if not self.has_operation(op):
            raise UnknownOperationError(str(ctx.entity_id), op, self.operations())
        obj = ctx.get_state(self.target)
        ctx.set_state(obj)  # the instance is the state; an operation may still delete it
        method = getattr(obj, op)
        ctx.set_result(method(ctx.get_input()) if _takes_input(method) else method())


def _takes_input(method: Callable[..., Any]) -> bool:
    try:
        params = inspect.signature(method).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )


def entity(
    target: Any = None,
    *,
    name: str | None = None,
    placement: str | None = None,
    passivate_after: float | None = None,
    **ray_options: Any,
) -> Any:
    """Declare an entity: ``@entity`` or ``@entity(name=, placement=, num_cpus=, ...)``."""
    if placement not in PLACEMENTS:
        raise InvalidArgumentError.of("placement", "'dedicated', 'pooled' or None", placement)
    if passivate_after is not None and (
        not isinstance(passivate_after, (int, float))
        or isinstance(passivate_after, bool)
        or passivate_after <= 0
    ):
        raise InvalidArgumentError.of(
            "passivate_after", "a positive number of seconds or None", passivate_after
        )
    if name is not None:
        _check_name(name)
    allowed = {"num_cpus", "num_gpus", "resources", "memory", "runtime_env"}
    unknown = set(ray_options) - allowed
    if unknown:
        raise ArgumentTypeError(
            "entity options", "one of " + ", ".join(sorted(allowed)), ", ".join(sorted(unknown))
        )

    def wrap(t: Any) -> Entity:
        if not callable(t):
            raise ArgumentTypeError.of("@entity", "a class or a function", t)
        return Entity(
            t, _check_name(name or t.__name__), placement, dict(ray_options), passivate_after
        )

    return wrap(target) if target is not None else wrap


def _check_name(name: Any) -> str:
    """An entity name is the part of ``name@key`` before the '@'."""
    if not isinstance(name, str) or not name or "@" in name:
        raise InvalidArgumentError.of("name", "a non-empty entity name without '@'", name)
    return name
