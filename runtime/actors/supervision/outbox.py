"""Outbox delivery: committed entity signals, unlocks and orchestration starts leave here."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from ...entity import UNLOCK
from ...entity_id import EntityId
from ...errors import InstanceExistsError
from ...faults import crash_point
from ...messages import (
    ENTITY_KINDS,
    EntitySignal,
    OutboxKind,
    StartOrchestration,
    Unlock,
    decode_message,
)
from ...store import Store
from ..routing import EntityRouter

log = logging.getLogger("ray_durable.supervisor")

#: How often the supervisor looks for outbox rows nobody nudged it about (seconds).
OUTBOX_SWEEP_SECONDS = 2.0

#: Starts an orchestration: (name, version or None, input blob, start blob, instance id,
#: parent, start id).
StartNew = Callable[..., Awaitable[str]]


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
            key = (message.kind != OutboxKind.UNLOCK, message.target)
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
                if message.kind in ENTITY_KINDS:
                    self.router.forget(EntityId.parse(message.target))  # its host may be new
                return False
            crash_point("outbox.after_delivery", self.hub)
            self.store.delete_outbox([message.id])
        return True

    async def _deliver(self, message: Any) -> None:
        sent = decode_message(message.kind, message.target, message.payload)
        if isinstance(sent, StartOrchestration):
            # The row's id is fixed by the commit that wrote it: every delivery of it is the
            # same start (the store recognises it), to the same instance.
            start_id = f"outbox:{message.id}"
            iid = sent.instance_id or uuid.uuid5(uuid.NAMESPACE_URL, f"{self.hub}/{start_id}").hex
            try:
                await self.start_new(
                    sent.name, sent.version or None, sent.input, sent.start, iid, None, start_id
                )
            except InstanceExistsError:
                pass  # a live instance of that id: the entity asked for a duplicate
            return
        if isinstance(sent, Unlock):
            owner = sent.owner
            op = (UNLOCK, owner.encode(), str(owner.sender), sent.counter, False)
        elif isinstance(sent, EntitySignal):
            op = (sent.operation, sent.input, message.sender, message.id, False)
        else:
            op = (sent.operation, sent.input, str(sent.sender), sent.counter, True)
        host = await self.router.ahandle(sent.target)
        await host.entity_op(message.target, *op)
