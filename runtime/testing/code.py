"""What a test environment knows how to run: orchestrators, activities, entities and mocks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import (
    ActivityNotFoundError,
    ArgumentTypeError,
    InvalidArgumentError,
    NotRegisteredError,
    OrchestratorNotFoundError,
)
from ..registry import Activity, Orchestrator, as_registrable


def activity_name(activity: Any) -> str:
    """The name an orchestration calls ``activity`` by (an object or the name itself)."""
    if isinstance(activity, str) and activity:
        return activity
    name = getattr(activity, "name", None) or getattr(activity, "__name__", None)
    if not isinstance(name, str) or not name:
        raise ArgumentTypeError.of("activity", "an @activity function or its name", activity)
    return name


class Code:
    """Registered objects by kind and name, and the activity mocks that win over them."""

    def __init__(self) -> None:
        self._objects: dict[tuple[str, str], list[Any]] = {}
        self.mocks: dict[str, Activity] = {}
        self.calls: dict[str, list[Any]] = {}

    def register(self, obj: Any) -> Any:
        """Know ``obj`` (an @orchestrator, @activity or @entity object, or a generator)."""
        obj = as_registrable(obj, "register(objects)")
        versions = self._objects.setdefault((obj.kind, obj.name), [])
        version = getattr(obj, "version", "")
        versions[:] = [o for o in versions if getattr(o, "version", "") != version] + [obj]
        return obj

    def mock(self, activity: Any, fn: Callable[..., Any]) -> None:
        """Run ``fn`` instead of the activity named by ``activity``."""
        if not callable(fn):
            raise ArgumentTypeError.of("mock_activity(fn)", "a callable", fn)
        name = activity_name(activity)
        self.mocks[name] = Activity(fn, name)

    def orchestrator(self, target: Any, version: str | None = None) -> Orchestrator:
        """The orchestrator an object or a registered name (and version) stands for."""
        if not isinstance(target, str):
            obj = self.register(target)
            if obj.kind != "orchestrator":
                raise ArgumentTypeError.of("orchestrator", "an @orchestrator function", target)
            return obj
        if not target:
            raise InvalidArgumentError.of("orchestrator", "a non-empty name", target)
        found = self._find("orchestrator", target, version)
        if found is None:
            raise OrchestratorNotFoundError(target, self._names("orchestrator"), version)
        return found

    def activity(self, name: str, target: Any) -> Activity:
        """What runs for an activity call: its mock, the object called, or the registered one."""
        found = self.mocks.get(name)
        if found is None and target is not None:
            found = target if isinstance(target, Activity) else Activity(target, name)
        found = found or self._find("activity", name, None)
        if found is None:
            raise ActivityNotFoundError(name, self._names("activity"))
        return found

    def entity(self, name: str) -> Any:
        """The registered entity type ``name``."""
        found = self._find("entity", name, None)
        if found is None:
            raise NotRegisteredError("entity", name, self._names("entity"))
        return found

    def _find(self, kind: str, name: str, version: str | None) -> Any:
        versions = self._objects.get((kind, name), [])
        if version is None:
            return versions[-1] if versions else None
        return next((o for o in versions if getattr(o, "version", "") == version), None)

    def _names(self, kind: str) -> tuple[str, ...]:
        return tuple(sorted(name for k, name in self._objects if k == kind))
