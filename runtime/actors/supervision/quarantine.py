"""Quarantined work, by hand: list it, retry it, discard it; and the hub's health gauges."""

from __future__ import annotations

from collections.abc import Callable

from ... import metrics
from ...entity_id import EntityId
from ...errors import QuarantineItemNotFoundError
from ...messages import EntitySignal, encode_message
from ...store import Quarantined, Store
from .outbox import OutboxDelivery
from .pool import HostPool


def _resend(item: Quarantined) -> list[tuple[str, str, bytes]]:
    """A dead-lettered operation, sent again as a signal (its caller had its answer)."""
    assert item.operation is not None and item.input is not None
    return [encode_message(EntitySignal(EntityId.parse(item.target), item.operation, item.input))]


class QuarantineDesk:
    """What hosts set aside as poison (see hosting/poison.py), as a person handles it."""

    def __init__(
        self,
        store: Store,
        pool: HostPool,
        outbox: OutboxDelivery,
        hub: str,
        clock: Callable[[], float],
    ) -> None:
        self.clock = clock
        self.store = store
        self.pool = pool
        self.outbox = outbox
        self._tags = {"hub": hub}

    async def list(self) -> list[Quarantined]:
        """Quarantined work, oldest first."""
        return self.store.list_quarantined()

    async def release(self, item_id: str, retry: bool) -> Quarantined:
        """Drop an item from the list; with ``retry``, run its work again.

        An instance resumes from its checkpoint (Running again); an entity operation is
        signalled to its entity again. QuarantineItemNotFoundError if no such item.
        """
        item = self.store.release_quarantined(item_id, _resend if retry else None)
        if item is None:
            raise QuarantineItemNotFoundError(item_id)
        if retry and item.kind == "orchestration":
            record = self.store.load_instance(item.target)
            if record is not None and record.status == "Running":
                host = record.host
                # A dedicated host stopped, or a spare now: the instance needs a host again.
                if host is None or host in self.pool.retired or host in self.pool.spares:
                    host = self.pool.place(item.target)
                    self.store.set_host(item.target, host)
                self.pool.activate_soon(host, [item.target])
        elif retry:
            await self.outbox.flush()
        return item

    def gauges(self) -> None:
        """Publish what needs a person: quarantined work, outbox depth, oldest Pending."""
        health = self.store.health()
        metrics.set_gauge("quarantined_items", self._tags, health.quarantined)
        metrics.set_gauge("outbox_depth", self._tags, health.outbox_depth)
        oldest = health.oldest_pending
        age = 0.0 if oldest is None else max(0.0, self.clock() - oldest)
        metrics.set_gauge("oldest_pending_seconds", self._tags, age)
