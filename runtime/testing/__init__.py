"""Testing users' workflows: in one process without Ray, or on a live hub with a manual clock.

- ``DurableTestEnvironment`` runs ``@orchestrator`` functions with the real replay engine,
  activities in-process (or mocked), entities, and a clock that skips to the next timer
  when nothing else can run; histories go through the real codec into an in-memory store.
  No Ray, no cluster, no files (``runtime.testing.environment``).
- ``Replayer`` replays a recorded history (``durable status ID --history --json``, the
  store's raw history, or the events) against today's code and reports non-determinism
  before a deploy (``runtime.testing.replayer``).
- The ``durable_env`` pytest fixture (``runtime.testing.pytest_plugin``, loaded by pytest
  on its own once ray-durable is installed) hands each test a fresh environment.
- ``ManualClock`` drives a live hub's timers by hand (``runtime.testing.manual_clock``);
  it needs Ray and one machine.

Names are imported on first use (PEP 562): the in-process tools never import Ray.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .environment import DurableTestEnvironment
    from .manual_clock import ManualClock
    from .replayer import HistoryInputError, Replayer, ReplayResult, load_history
    from .scheduler import NoProgressError, StepLimitError
    from .states import EntityState, InstanceState

_MODULES: dict[str, tuple[str, ...]] = {
    ".environment": ("DurableTestEnvironment",),
    ".manual_clock": ("ManualClock",),
    ".replayer": ("HistoryInputError", "ReplayResult", "Replayer", "load_history"),
    ".scheduler": ("NoProgressError", "StepLimitError"),
    ".states": ("EntityState", "InstanceState"),
}
_EXPORTS = {name: module for module, names in _MODULES.items() for name in names}

__all__ = [
    "DurableTestEnvironment",
    "EntityState",
    "HistoryInputError",
    "InstanceState",
    "ManualClock",
    "NoProgressError",
    "ReplayResult",
    "Replayer",
    "StepLimitError",
    "load_history",
]


def __getattr__(name: str) -> Any:
    """An exported name, imported from its module on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module, __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names, the lazy exports included."""
    return sorted(set(globals()) | set(__all__))
