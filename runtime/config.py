"""HubConfig: every setting of a task hub, from keyword arguments or YAML."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from .errors import HubConfigError

PLACEMENTS = ("dedicated", "pooled")
DURABILITIES = ("fsync", "process")


@dataclass(frozen=True)
class HubConfig:
    """Settings of one task hub; the supervisor and every host get a copy."""

    hub: str = "default"
    store: str | None = None
    placement: str = "dedicated"
    pool_size: int = 4
    durability: str = "fsync"
    warm_hosts: int = 1
    activity_defaults: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not isinstance(self.hub, str) or not self.hub or "/" in self.hub:
            raise HubConfigError(f"hub: expected a non-empty name without '/', got {self.hub!r}")
        if self.placement not in PLACEMENTS:
            raise HubConfigError(f"placement: expected one of {PLACEMENTS}, got {self.placement!r}")
        if self.durability not in DURABILITIES:
            raise HubConfigError(
                f"durability: expected one of {DURABILITIES}, got {self.durability!r}"
            )
        for name in ("pool_size", "warm_hosts"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise HubConfigError(f"{name}: expected a non-negative integer, got {value!r}")
        if self.pool_size < 1:
            raise HubConfigError("pool_size: must be at least 1")
        if self.store is None:
            default = os.path.join(os.getcwd(), ".durable", f"{self.hub}.db")
            object.__setattr__(self, "store", f"sqlite:///{default}")
        elif not isinstance(self.store, str):
            raise HubConfigError(f"store: expected a URL string, got {self.store!r}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> HubConfig:
        """Build from a mapping; an unknown key is an error that names it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise HubConfigError(f"unknown setting(s) {unknown}; known: {sorted(known)}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The settings as a plain mapping."""
        return asdict(self)
