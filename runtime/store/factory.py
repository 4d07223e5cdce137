"""Which store a URL names: the scheme picks the implementation (and its dialect)."""

from __future__ import annotations

from collections.abc import Callable

from ..errors import HubConfigError
from .base import Store
from .payloads import DEFAULT_INLINE_LIMIT

#: Supported URL schemes, with an example of each.
SCHEMES = {
    "sqlite": "sqlite:///path/to/file.db",
    "postgresql": "postgresql://user@host:5432/database",
    "postgres": "postgres://user@host:5432/database",
}


def node_local(url: str) -> bool:
    """True for a store that is a file on one node's disk: its readers must live there."""
    return url.startswith("sqlite:")


def open_store(
    url: str,
    hub: str,
    durability: str = "fsync",
    epoch: int | None = None,
    on_fenced: Callable[[Exception], None] | None = None,
    payload_inline_limit: int = DEFAULT_INLINE_LIMIT,
) -> Store:
    """Open the store named by ``url`` for ``hub``; its writes are fenced by ``epoch``.

    A blob longer than ``payload_inline_limit`` bytes is stored once, out of line.
    """
    if url.startswith("sqlite:///"):
        from .sqlite import SqliteStore

        store: Store = SqliteStore(url, hub, durability)
    elif url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        store = PostgresStore(url, hub)
    else:
        known = ", ".join(SCHEMES.values())
        raise HubConfigError(f"unsupported store URL {url!r}; supported: {known}")
    store.epoch, store.on_fenced = epoch, on_fenced
    store.payload_inline_limit = payload_inline_limit
    return store
