"""Outbox delivery: committed entity signals, unlocks and orchestration starts leave here."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ..entity_host import ORDERED_SIGNAL, UNLOCK, owner_sender
from ..entity_id import EntityId
from ..errors import InstanceExistsError
from ..routing import EntityRouter
from ..serialization import dumps, loads
from ..store import Store

log = logging.getLogger("ray_durable.supervisor")

#: How often the supervisor looks for outbox rows nobody nudged it about (seconds).
OUTBOX_SWEEP_SECONDS = 2.0

#: Starts an orchestration: (name, version or None, input blob, start blob, instance id).
StartNew = Callable[[str, "str | None", bytes, bytes, str], Awaitable[str]]


class OutboxDelivery:
    """Delivers each outbox row at least once, in commit order per target.

    Each target is a lane of its own, and unlocks have lanes apart from signals: a signal
    that waits on a locked entity then holds back neither the unlock that frees it nor
    any other target's messages. A row is deleted only after its delivery succeeded;
    receivers recognise a repeat by its sender and number.
    """

    def __init__(self, store: Store, router: EntityRouter, start_new: StartNew, hub: str) -> None:
        self.store = store
        self.router = router
        self.start_new = start_new
        self.hub = hub
        self._lanes: dict[tuple[bool, str], asyncio.Future[None]] = {}

    async def flush(self) -> None:
        """Start a lane for every target with rows and no lane running."""
        lanes: dict[tuple[bool, str], list[Any]] = {}
        for message in self.store.load_outbox():
            key = (message.kind != "unlock", message.target)
            if key not in self._lanes:
                lanes.setdefault(key, []).append(message)
        for key, messages in lanes.items():
            self._lanes[key] = asyncio.ensure_future(self._run_lane(key, messages))

    async def _run_lane(self, key: tuple[bool, str], messages: list[Any]) -> None:
        try:
            delivered = await self._deliver_lane(messages)
        finally:
            del self._lanes[key]  # whatever happened: a stuck lane would block its target
        if not delivered:
            await asyncio.sleep(0.5)
        await self.flush()  # what this lane skipped while busy, or a retry

    async def _deliver_lane(self, messages: list[Any]) -> bool:
        """Deliver one target's messages in commit order; False when one failed."""
        for message in messages:
            try:
                await self._deliver(message)
            except Exception:
                log.exception("hub %s: outbox message %d not delivered yet", self.hub, message.id)
                if message.kind in ("signal", ORDERED_SIGNAL, "unlock"):
                    self.router.forget(EntityId.parse(message.target))  # its host may be new
                return False
            self.store.delete_outbox([message.id])
        return True

    async def _deliver(self, message: Any) -> None:
        if message.kind == "start":
            name, version, input_blob, start = loads(message.payload)
            try:
                await self.start_new(
                    name, version or None, input_blob, start, message.target or uuid.uuid4().hex
                )
            except InstanceExistsError:
                pass  # delivered before a crash: starting it again would be a duplicate
            return
        if message.kind == "unlock":
            owner, counter = loads(message.payload)
            op = (UNLOCK, dumps(owner), owner_sender(owner), counter, False)
        elif message.kind == "signal":
            operation, input_blob = loads(message.payload)
            op = (operation, input_blob, message.sender, message.id, False)
        elif message.kind == ORDERED_SIGNAL:
            operation, input_blob, sender, counter = loads(message.payload)
            op = (operation, input_blob, sender, counter, True)
        else:
            raise ValueError(f"unknown outbox kind {message.kind!r}")
        host = await self.router.ahandle(EntityId.parse(message.target))
        await host.entity_op(message.target, *op)
