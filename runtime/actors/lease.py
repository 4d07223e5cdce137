"""One live supervisor per hub and store: the hub's lease, its holder and its renewal.

The lease is a row in the store. Its epoch is a fencing token: the supervisor and every
host it creates write with it, and the store refuses (FencedError) any write whose epoch
is no longer the lease's, inside the write's own transaction. All supervisor incarnations
of one Ray cluster share an epoch (Ray runs at most one actor of a name at a time), so a
supervisor restarted by Ray takes its lease back at once and its live hosts keep
committing; a supervisor of another cluster takes the lease only once it expired or its
holder is provably dead, and then with the next epoch, which fences the old cluster out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Callable

from .. import logs
from ..errors import FencedError
from ..store import Store
from ..store.base import Lease, LeaseHolder
from .ray_seam import cluster_identity

log = logging.getLogger("ray_durable.lease")

#: How long a lease lasts unless renewed, and how often its holder renews it (seconds).
#: Renewing every 2 s rides out four missed renewals (a store busy with a large group
#: commit, a loaded machine) before a live holder loses its hub. 10 s is how long a
#: restart on another machine waits for a crashed cluster's lease; on the holder's own
#: machine nobody waits: a dead holder's pid shows it (``holder_gone``), and a supervisor
#: restarted by Ray within its cluster takes the lease back at once.
LEASE_TTL_SECONDS = 10.0
LEASE_RENEW_SECONDS = 2.0


def _machine() -> str:
    """Boot id and pid namespace: two processes that share them see the same pids."""
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""  # no /proc: a holder's liveness is known only from its lease's expiry


def current_holder() -> LeaseHolder:
    """The identity of this process (a supervisor actor) as a lease holder."""
    address, cluster, actor = cluster_identity()
    return LeaseHolder(socket.gethostname(), _machine(), os.getpid(), address, cluster, actor)


def holder_gone(lease: Lease) -> bool:
    """True if the lease's holder ran on this machine and its process no longer does."""
    holder = lease.holder
    if not holder.machine or holder.machine != _machine():
        return False
    try:
        with open(f"/proc/{holder.pid}/stat") as f:
            # A zombie (dead, not yet reaped) is gone too; the state follows the name.
            return f.read().rpartition(")")[2].split()[0] == "Z"
    except FileNotFoundError:
        return True
    except (OSError, IndexError):
        return False  # cannot tell: the lease's expiry decides


class LeaseKeeper:
    """Holds a hub's lease for its supervisor: takes it, renews it, reports its loss once."""

    def __init__(self, store: Store, on_lost: Callable[[FencedError], None]) -> None:
        self.store = store
        self.lease = store.acquire_lease(current_holder(), LEASE_TTL_SECONDS, holder_gone)
        self._loop = asyncio.get_event_loop()
        self._on_lost = on_lost
        self.lost = False
        store.epoch, store.on_fenced = self.lease.epoch, self._fenced

    @property
    def epoch(self) -> int:
        """The fencing token every writer of this supervisor's cluster commits with."""
        return self.lease.epoch

    def _fenced(self, exc: Exception) -> None:
        # Called by the store from whichever thread wrote; act on the supervisor's loop.
        self._loop.call_soon_threadsafe(self._lose, exc)

    def _lose(self, exc: Exception) -> None:
        if not self.lost:
            self.lost = True
            self._on_lost(exc)  # type: ignore[arg-type]  # the store fences with FencedError

    async def keep(self) -> None:
        """Renew the lease until it is lost; the SQLite write runs off the event loop."""
        while not self.lost:
            await asyncio.sleep(LEASE_RENEW_SECONDS)
            try:
                self.lease = await self._loop.run_in_executor(
                    None, self.store.renew_lease, self.lease.epoch, LEASE_TTL_SECONDS
                )
            except FencedError:
                return  # the store's on_fenced hook has reported it
            except Exception:
                # A busy or failing store: retry; past the expiry another cluster may take
                # the hub, and the next renewal (or any write) is then fenced.
                logs.event(log, logging.WARNING, "lease renewal failed", exc_info=True)

    def release(self) -> None:
        """Let the lease expire now, so that the next start anywhere needs no wait."""
        if not self.lost:
            self.store.release_lease(self.lease.epoch)
