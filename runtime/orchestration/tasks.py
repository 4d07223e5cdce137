"""Awaitables an orchestrator yields: single tasks and their compositions."""

from __future__ import annotations

from typing import Any

from ..errors import (
    ArgumentTypeError,
    DurableError,
    FailureDetails,
    InvalidOperationError,
    TaskFailedError,
)


class _NoResult:
    """Marks "no result yet", which differs from a recorded ``None``."""

    def __repr__(self) -> str:
        return "<no result>"


NO_RESULT: Any = _NoResult()


class EventTimeoutError(DurableError):
    """``wait_for_external_event(name, timeout=...)`` saw no event in time."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"no external event {self.name!r} arrived before the timeout"


class Task:
    """Something an orchestrator can ``yield``; resolves to a result or an exception."""

    def __init__(self) -> None:
        self._result: Any = NO_RESULT
        self._exception: BaseException | None = None
        self._parents: list[CompositeTask] = []

    @property
    def is_complete(self) -> bool:
        """True once the task has a result or an exception."""
        return self._result is not NO_RESULT or self._exception is not None

    @property
    def is_failed(self) -> bool:
        """True if the task completed with an exception."""
        return self._exception is not None

    @property
    def result(self) -> Any:
        """The task's result; raises its exception if it failed."""
        if self._exception is not None:
            raise self._exception
        if self._result is NO_RESULT:
            raise InvalidOperationError(
                "the task has not completed yet: yield it first (or check is_complete)"
            )
        return self._result

    def get_exception(self) -> BaseException | None:
        """The exception the task failed with, if any."""
        return self._exception

    def _complete(self, result: Any) -> None:
        if self.is_complete:
            return
        self._result = result
        self._notify()

    def _fail(self, exc: BaseException) -> None:
        if self.is_complete:
            return
        self._exception = exc
        self._notify()

    def _notify(self) -> None:
        for parent in self._parents:
            parent._on_child_done(self)


class ActivityTask(Task):
    """The result of ``ctx.call_activity``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name

    def _fail_with(self, details: FailureDetails) -> None:
        self._fail(TaskFailedError(f"activity {self.name!r} failed", details))


class SubOrchestrationTask(ActivityTask):
    """The result of ``ctx.call_sub_orchestrator``."""

    def _fail_with(self, details: FailureDetails) -> None:
        self._fail(TaskFailedError(f"sub-orchestration {self.name!r} failed", details))


class EntityTask(ActivityTask):
    """The result of ``ctx.call_entity``."""

    def _fail_with(self, details: FailureDetails) -> None:
        self._fail(TaskFailedError(f"entity {self.name} failed", details))


class TimerTask(Task):
    """A durable timer; ``cancel()`` it once it no longer matters (after ``task_any``)."""

    def __init__(self, fire_at: Any) -> None:
        super().__init__()
        self.fire_at = fire_at
        self.is_cancelled = False

    def cancel(self) -> None:
        """Stop waiting for the timer; a later firing is ignored."""
        self.is_cancelled = True


class ExternalEventTask(Task):
    """Completes with the data of the next external event of ``name``."""

    def __init__(self, name: str) -> None:
        super().__init__()
        self.name = name


class CompositeTask(Task):
    """A task over child tasks."""

    def __init__(self, children: list[Task]) -> None:
        super().__init__()
        self.children = list(children)
        for child in self.children:
            if not isinstance(child, Task):
                raise ArgumentTypeError.of(
                    "task_all/task_any(tasks)", "tasks from the context", child
                )
            child._parents.append(self)
        self._check()

    def _on_child_done(self, child: Task) -> None:
        if not self.is_complete:
            self._check()

    def _check(self) -> None:
        raise NotImplementedError


class WhenAllTask(CompositeTask):
    """Completes with the list of results; fails with the first child failure."""

    def __init__(self, children: list[Task]) -> None:
        # Counted incrementally: a 10,000-wide fan-out must not rescan its children.
        self.completed_count = 0
        super().__init__(children)

    def _check(self) -> None:
        if not self.children:
            self._complete([])
        for child in self.children:
            if child.is_complete:
                self._on_child_done(child)

    def _on_child_done(self, child: Task) -> None:
        if self.is_complete:
            return
        if child.is_failed:
            self._fail(child.get_exception())  # type: ignore[arg-type]
            return
        self.completed_count += 1
        if self.completed_count == len(self.children):
            self._complete([c._result for c in self.children])


class WhenAnyTask(CompositeTask):
    """Completes with the first child that completes (the task itself, not its result)."""

    def _check(self) -> None:
        if not self.children:
            self._complete(None)
            return
        for child in self.children:
            if child.is_complete:
                self._complete(child)
                return
