"""The supervisor's logic, composed of its parts; the Ray actor only exposes it.

Guarantees (each rebuilt from the store alone, so a restarted supervisor gives them too):

- every non-terminal instance is live on exactly the host its row names: on start the
  supervisor re-attaches to the hosts still alive (by name), recreates missing ones and
  asks each to activate its instances, until some incarnation of each has taken them;
- recovery retries until it succeeds, and every call but ``pid`` and ``hub_config`` waits
  for it;
- a host that dies is noticed at once (its ``watch`` call fails) and its instances are
  re-activated from their checkpoints once Ray has restarted it;
- a message for an instance (start, external event, termination, timer, child result) is
  written to the store before it is routed, so a dead host loses none;
- due timers fire from the store, whatever process created them;
- the control loops (timers, outbox sweep) never die: each round is guarded, logged when
  it fails, and timed (``supervisor_round_seconds``);
- one hub on one store has one live supervisor: it holds the hub's lease in the store
  (``runtime.actors.lease``), renewed every 2 s and valid for 10 s. A start from another Ray
  cluster while the lease is live is refused with HubLeaseHeldError naming the holder;
  a supervisor restarted by Ray in its own cluster takes the lease back at once, and
  after the holder's cluster died the next start takes it at once if the holder ran on
  the same machine (its pid is gone), else once it expired. The lease's epoch fences
  writers: this supervisor and every host it creates commit only while the lease still
  has their epoch; one that lost it stops (a supervisor stops its hosts too).

It holds no workflow semantics: those live in the replay engine inside the hosts.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from ... import logs, metrics
from ...config import HubConfig
from ...errors import FencedError, HubLeaseHeldError
from ...registry import CodeCache
from ...store import InstanceRecord, node_local, open_store
from ..lease import LeaseKeeper
from ..ray_seam import ActorSystem, stop_this_actor, this_node
from ..routing import EntityRouter
from .completions import Completions
from .control import InstanceControl
from .entities import EntityDirectory
from .outbox import OUTBOX_SWEEP_SECONDS, OutboxDelivery
from .pool import HostPool
from .quarantine import QuarantineDesk
from .timers import TimerService

log = logging.getLogger("ray_durable.supervisor")

#: The pause before a failed recovery or control-loop round runs again (seconds).
RETRY_ROUND_SECONDS = 1.0


class SupervisorCore:
    """The hub's supervisor: host pool, instance control, entities, outbox and timers."""

    def __init__(
        self,
        config: HubConfig,
        clock: Callable[[], float] | None = None,
        actors: ActorSystem | None = None,
        host_class: Any = None,
    ) -> None:
        self.config = config
        self.clock = clock or time.time
        assert config.store is not None  # HubConfig fills in the default store
        self.store = open_store(
            config.store,
            config.hub,
            config.durability,
            payload_inline_limit=config.payload_inline_limit,
        )
        try:
            self.lease = LeaseKeeper(self.store, self._lost_lease)
        except HubLeaseHeldError:
            self.store.close()
            raise  # refused: nothing below starts
        self._tags = {"hub": config.hub}
        self.code = CodeCache(self.store)
        if host_class is None:
            from ..hosts import Host as host_class  # the actor class: not needed by fakes
        self.pool = HostPool(
            config,
            self.store,
            actors or self._actor_system(),
            host_class,
            self._host_args,
            self._host_failed,
        )
        self.completions = Completions(config, self.store, self.pool)
        self.control = InstanceControl(config, self.store, self.pool, self.completions, self.clock)
        self.entities = EntityDirectory(config, self.store, self.code, self.pool)
        self.outbox = OutboxDelivery(
            self.store, EntityRouter(lambda: self.entities), self.control.start_new, config.hub
        )
        self.timers = TimerService(self.store, self.clock, self.pool.poke, self._tags)
        self.quarantine = QuarantineDesk(self.store, self.pool, self.outbox, config.hub, self.clock)
        loop = asyncio.get_event_loop()
        self.ready = loop.create_task(self._recover())
        self._loops = [
            loop.create_task(self._forever("timers", self._timer_round)),
            loop.create_task(self._forever("outbox", self._sweep_round)),
            loop.create_task(self.lease.keep()),
        ]

    def _actor_system(self) -> ActorSystem:
        """Ray, for the pool: hosts pinned to this node with a SQLite store (its file is
        on this node's disk; Runtime.start pinned us here), spread over nodes otherwise."""
        assert self.config.store is not None
        return ActorSystem(self.config.hub, this_node() if node_local(self.config.store) else None)

    def _host_args(self) -> tuple[Any, ...]:
        """HostCore's arguments: hosts open the store themselves, fenced by our epoch."""
        clock = None if self.clock is time.time else self.clock
        return (
            self.config.hub,
            self.config.store,
            self.config.durability,
            clock,
            self.config.passivate_after,
            self.config.activity_options(),
            self.lease.epoch,
            None,  # the host's own ActorSystem
            self.config.payload_inline_limit,
            self.config.quarantine_after,
            self.config.tracing,
            self.config.placement == "dedicated",  # recycled or retired once its instance ends
        )

    async def _host_failed(self, name: str) -> None:
        # The dead host may have committed outbox rows (unlocks) without nudging us.
        await self.outbox.flush()

    # -- recovery and control loops -------------------------------------------------------

    async def _recover(self) -> None:
        """Rebuild from the store, retrying until it succeeds (``ready`` waits for this)."""
        attempt = 0
        while True:
            try:
                with metrics.timed("supervisor_round_seconds", {**self._tags, "phase": "recover"}):
                    started = time.monotonic()
                    records = self.store.active_instances()
                    await self.pool.retire_unplaced({r.host for r in records})
                    self._recover_once(records, started)
                return
            except Exception:
                attempt += 1
                logs.event(
                    log,
                    logging.ERROR,
                    "recovery failed; retrying",
                    hub=self.config.hub,
                    attempt=attempt,
                    exc_info=True,
                )
                await asyncio.sleep(RETRY_ROUND_SECONDS)

    def _recover_once(self, records: list[InstanceRecord], started: float) -> None:
        by_host: dict[str, list[str]] = {}
        for record in records:
            host = record.host or self.pool.place(record.instance_id)
            if record.host is None:
                self.store.set_host(record.instance_id, host)
            by_host.setdefault(host, []).append(record.instance_id)
        loop = asyncio.get_event_loop()
        for name, ids in by_host.items():
            self.pool.activate_soon(name, ids)  # retried until taken
        self.pool.refill_spares()
        loop.create_task(self.outbox.flush())
        if by_host:
            metrics.inc("recoveries", {**self._tags, "kind": "supervisor"})
        logs.event(
            log,
            logging.INFO,
            "supervisor ready",
            hub=self.config.hub,
            instances=sum(map(len, by_host.values())),
            hosts=len(by_host),
            seconds=round(time.monotonic() - started, 3),
        )

    async def _forever(self, phase: str, round: Callable[[], Awaitable[None]]) -> None:
        """Run a control loop's rounds after recovery; a failing round never ends the loop."""
        await self.ready
        tags = {**self._tags, "phase": phase}
        while True:
            try:
                await round()
            except asyncio.CancelledError:
                raise
            except Exception:
                logs.event(
                    log, logging.ERROR, f"{phase} round failed", hub=self.config.hub, exc_info=True
                )
                metrics.inc("supervisor_round_failures", tags)
                await asyncio.sleep(RETRY_ROUND_SECONDS)

    async def _timer_round(self) -> None:
        with metrics.timed("supervisor_round_seconds", {**self._tags, "phase": "timers"}):
            wait = self.timers.round()
        await self.timers.sleep(wait)

    async def _sweep_round(self) -> None:
        """A safety net: rows whose writer died before nudging the flush still leave."""
        await asyncio.sleep(OUTBOX_SWEEP_SECONDS)
        with metrics.timed("supervisor_round_seconds", {**self._tags, "phase": "outbox"}):
            await self.outbox.flush()
            self.quarantine.gauges()

    # -- the hub as a whole ----------------------------------------------------------------

    async def register(self, items: list[tuple[str, str, str, bytes]]) -> None:
        """Store registered code (kind, name, version, pickled object)."""
        for kind, name, version, blob in items:
            self.store.register_code(kind, name, version, blob)

    async def fire_timers(self) -> None:
        """Fire every timer due now (the manual clock calls this after advancing)."""
        self.timers.fire_due()
        self.timers.wake()

    async def retire_idle_host(self, name: str) -> None:
        """Stop a dedicated entity's host whose entity passivated; a message revives it."""
        if await self.entities.retire_idle_host(name):
            logs.event(log, logging.INFO, "idle host retired", hub=self.config.hub, host=name)

    def _lost_lease(self, exc: FencedError) -> None:
        """Another cluster's supervisor took the hub over: stop every host, then this actor."""
        logs.event(
            log,
            logging.ERROR,
            "lease lost; supervisor and hosts stop",
            hub=self.config.hub,
            error=str(exc),
        )
        for task in self._loops[:2]:
            task.cancel()
        self.pool.kill_all()
        stop_this_actor(asyncio.get_event_loop())

    async def shutdown(self) -> None:
        """Stop every host of the hub (the store keeps everything)."""
        for task in self._loops[:2]:
            task.cancel()
        self.pool.kill_all()
        self._loops[2].cancel()
        self.lease.release()
