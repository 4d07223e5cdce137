"""``@orchestrator`` and ``@activity``, and the per-process cache of registered code.

Registered code is stored in the hub's store as a cloudpickle blob, so a host can load
an orchestrator after the driver that registered it has exited. Functions defined in a
driver's ``__main__`` pickle by value; functions of importable modules by reference (the
module must be importable on the cluster, as for any Ray task).
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

from .errors import (
    ActivityNotFoundError,
    ArgumentTypeError,
    InvalidArgumentError,
    NotRegisteredError,
)
from .serialization import dumps, loads

F = TypeVar("F", bound=Callable[..., Any])

#: Ray options an activity may set; anything else is a typo worth an error.
ACTIVITY_OPTIONS = frozenset(
    {
        "num_cpus",
        "num_gpus",
        "resources",
        "memory",
        "max_retries",
        "retry_exceptions",
        "runtime_env",
        "scheduling_strategy",
        "accelerator_type",
    }
)


@dataclass
class Orchestrator:
    """A registered orchestrator function (a generator taking ``ctx`` and ``input``)."""

    fn: Callable[..., Any]
    name: str
    version: str = ""
    kind: str = field(default="orchestrator", init=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain function (handy in unit tests)."""
        return self.fn(*args, **kwargs)


#: How long an inline activity may run when its declaration and its call set no timeout (s).
INLINE_TIMEOUT_SECONDS = 300.0


@dataclass
class Activity:
    """A registered activity: a plain function run as a Ray task, or in the host (inline)."""

    fn: Callable[..., Any]
    name: str
    options: dict[str, Any] = field(default_factory=dict)
    #: run in the host's process (a thread of its inline pool), not as a Ray task
    inline: bool = False
    #: an inline run's limit in seconds (None: ``INLINE_TIMEOUT_SECONDS``)
    timeout: float | None = None
    kind: str = field(default="activity", init=False)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the plain function (handy in unit tests)."""
        return self.fn(*args, **kwargs)

    def run(self, input: Any) -> Any:
        """Run the function on one input, as a Ray task does."""
        return self.fn(input) if self._takes_argument else self.fn()

    @functools.cached_property
    def _takes_argument(self) -> bool:
        # Read once: inspect.signature costs more than a trivial activity's run.
        return _takes_argument(self.fn)

    def __reduce__(self) -> tuple[Any, ...]:
        # Ray ships activities to its workers with its own pickler: travel in our encoding,
        # which carries the source lines, so a worker on another node shows them too.
        fields: tuple[Any, ...] = (self.fn, self.name, self.options)
        if self.inline or self.timeout is not None:  # else as before them: a rollback reads it
            fields += (self.inline, self.timeout)
        return _activity_from, (dumps(fields, f"activity {self.name}"),)


def _activity_from(blob: bytes) -> Activity:
    # Blobs stored before inline activities carry three fields.
    fn, name, options, *rest = loads(blob, "activity")
    return Activity(fn, name, options, *rest)


def check_inline(inline: Any, timeout: Any, where: str) -> None:
    """ArgumentTypeError/InvalidArgumentError unless ``inline`` is a bool (or None) and
    ``timeout`` None or a positive number of seconds."""
    if inline is not None and not isinstance(inline, bool):
        raise ArgumentTypeError.of(f"{where}(inline)", "True, False or None", inline)
    if timeout is None:
        return
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ArgumentTypeError.of(f"{where}(timeout)", "a number of seconds", timeout)
    if not timeout > 0 or timeout == float("inf"):
        raise InvalidArgumentError.of(f"{where}(timeout)", "a positive number of seconds", timeout)


@overload
def orchestrator(fn: F) -> Orchestrator: ...
@overload
def orchestrator(*, name: str | None = None, version: str = "") -> Callable[[F], Orchestrator]: ...


def orchestrator(fn: Any = None, *, name: str | None = None, version: str = "") -> Any:
    """Declare an orchestrator: ``@orchestrator`` or ``@orchestrator(name=, version=)``."""

    def wrap(f: Callable[..., Any]) -> Orchestrator:
        return Orchestrator(f, name or f.__name__, str(version))

    return wrap(fn) if fn is not None else wrap


@overload
def activity(fn: F) -> Activity: ...
@overload
def activity(
    *,
    name: str | None = None,
    inline: bool = False,
    timeout: float | None = None,
    **ray_options: Any,
) -> Callable[[F], Activity]: ...


def activity(
    fn: Any = None,
    *,
    name: str | None = None,
    inline: bool = False,
    timeout: float | None = None,
    **ray_options: Any,
) -> Any:
    """Declare an activity: ``@activity``, ``@activity(num_cpus=1, max_retries=3, ...)`` or
    ``@activity(inline=True, timeout=10)`` (run in the host's process, not as a Ray task)."""
    check_inline(inline, timeout, "activity")
    if inline and ray_options:
        raise InvalidArgumentError(
            "activity(inline=True)",
            "no Ray task options (an inline activity runs in the host, not as a Ray task)",
            ", ".join(sorted(ray_options)),
        )
    unknown = set(ray_options) - ACTIVITY_OPTIONS
    if unknown:
        raise ArgumentTypeError(
            "activity options",
            "one of " + ", ".join(sorted(ACTIVITY_OPTIONS)),
            ", ".join(sorted(unknown)),
        )

    def wrap(f: Callable[..., Any]) -> Activity:
        return Activity(f, name or f.__name__, dict(ray_options), inline, timeout)

    return wrap(fn) if fn is not None else wrap


def as_registrable(obj: Any, argument: str = "object") -> Any:
    """An Orchestrator/Activity/entity object for ``obj`` (a plain generator is an orchestrator)."""
    if getattr(obj, "kind", None) in ("orchestrator", "activity", "entity"):
        return obj
    if inspect.isgeneratorfunction(obj):
        return Orchestrator(obj, obj.__name__)
    raise ArgumentTypeError.of(
        argument, "something decorated with @orchestrator, @activity or @entity", obj
    )


def encode_code(obj: Any) -> tuple[str, str, str, bytes]:
    """(kind, name, version, blob) of a registrable object."""
    obj = as_registrable(obj)
    return obj.kind, obj.name, getattr(obj, "version", ""), dumps(obj, f"{obj.kind} {obj.name}")


class CodeCache:
    """Loads registered code from the store once per process."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self._cache: dict[tuple[str, str, str | None], Any] = {}

    def get(self, kind: str, name: str, version: str | None = None) -> Any:
        """The registered object; NotRegisteredError if the hub does not know it."""
        key = (kind, name, version)
        found = self._cache.get(key)
        if found is None:
            row = self._store.load_code(kind, name, version)
            if row is None:
                known = tuple(self._store.code_names(kind))
                if kind == "activity":
                    raise ActivityNotFoundError(name, known)
                raise NotRegisteredError(kind, name, known, version)
            # Hosts ask for exact orchestrator versions, so caching by name is safe.
            found = self._cache[key] = loads(row[1], f"{kind} {name}")
        return found

    def remember(self, obj: Any) -> None:
        """Cache an object that arrived with the call that uses it."""
        self._cache[(obj.kind, obj.name, getattr(obj, "version", ""))] = obj


def _takes_argument(fn: Callable[..., Any]) -> bool:
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return True
    return any(
        p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL) for p in params
    )
