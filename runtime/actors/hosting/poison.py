"""Poison work: what a host was running when it died, counted until it is set aside.

A host names the work it is about to run (an instance's replay or step, an entity
operation) in a small file of its own before user code runs, and clears it after. The
file outlives the process: a killed process leaves its page cache behind, so nothing is
synced, and the file is mapped into memory, so a mark is a memory copy (no system call).
The host's next incarnation (Ray restarts it on the same node) reads what its predecessor
was running when it died, and that work's crash count goes up in the store. A count that
reaches the hub's ``quarantine_after`` has the work quarantined instead of run again; work
that runs to its end starts from zero.

A host that dies between two pieces of work, or on another node (its file stays behind),
blames nothing: only deaths during user code count, so random kills rarely add up to the
limit for one piece of work.
"""

from __future__ import annotations

import hashlib
import logging
import mmap
import os
import struct
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ... import logs, metrics
from ...errors import QuarantinedError
from ...messages import SenderId
from ...orchestration import history as h
from ...orchestration.codec import encode_event
from ...orchestration.engine import Step
from ...orchestration.status import OrchestrationStatus
from ...serialization import dumps, failure_of
from ...store import Checkpoint, InstanceRecord, Quarantined, Store
from .steps import unlock_rows

log = logging.getLogger("ray_durable.host")

_ANSWERS = (h.TaskCompleted, h.TaskFailed)

#: The pause before a suspect instance is activated again, doubled with each crash (s).
SUSPECT_BACKOFF_SECONDS = 0.5
#: The longest such pause (s).
SUSPECT_BACKOFF_MAX_SECONDS = 8.0

#: ``PoisonGuard.verdict``: quarantine the instance instead of activating it.
QUARANTINE = -1.0
#: ``PoisonGuard.verdict``: not yet; another suspect of the same death runs first.
HOLD = -2.0

_LENGTH = struct.Struct("<I")
#: The marker file's size: a mark longer than this is not kept (its death blames nothing).
_MARKER_BYTES = 64 * 1024
#: Where the marks of running inline activities start (the host's loop marks before).
_SIDE = 32 * 1024
_SEPARATOR = b"\x1e"


@dataclass(frozen=True)
class Work:
    """One piece of user code a host runs: an instance's replay or step, an entity operation."""

    kind: str  # "orchestration" or "entity"
    target: str  # the instance id or the entity id
    detail: str  # what ran: "replay", "step", "operation <name>"
    sender: str = ""
    seq: int = 0

    @property
    def id(self) -> str:
        """The key of its crash count and of its quarantine record."""
        if self.kind == "orchestration":
            return f"orchestration:{self.target}"
        return f"entity:{self.target}:{self.sender}:{self.seq}"

    def encode(self) -> bytes:
        """The marker file's content."""
        return "\0".join((self.kind, self.target, self.detail, self.sender, str(self.seq))).encode()

    @classmethod
    def decode(cls, data: bytes) -> Work | None:
        """The work a marker names (None: unreadable, e.g. a write cut by the death)."""
        try:
            kind, target, detail, sender, seq = data.decode().split("\0")
            return cls(kind, target, detail, sender, int(seq))
        except ValueError:
            return None


@dataclass
class _InlineSuspect:
    """An instance whose inline activities ran when its host died."""

    work: Work
    crashes: int
    #: those activities (their seq): it is cleared once each has its result committed
    seqs: set[int]


def backoff(crashes: int) -> float:
    """How long a suspect waits before it runs again after ``crashes`` deaths."""
    return min(SUSPECT_BACKOFF_SECONDS * 2 ** max(crashes - 1, 0), SUSPECT_BACKOFF_MAX_SECONDS)


class CrashMarker:
    """The file a host names its running work in, for its next incarnation to read."""

    def __init__(self, path: str) -> None:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(self._fd).st_size < _MARKER_BYTES:
            os.ftruncate(self._fd, _MARKER_BYTES)
        self._map = mmap.mmap(self._fd, _MARKER_BYTES)
        self._marked = False

    @classmethod
    def for_host(cls, store_url: str, hub: str, host: str) -> CrashMarker:
        """The marker of the host ``host`` of ``hub`` on ``store_url`` (one per name)."""
        digest = hashlib.sha256(f"{store_url}\0{hub}\0{host}".encode()).hexdigest()[:32]
        return cls(os.path.join(tempfile.gettempdir(), "ray-durable", "running", digest))

    def previous(self) -> Work | None:
        """What the last incarnation was running when it died; the mark is cleared."""
        data = self._read(0, _SIDE)
        self._marked = True
        self.clear()
        return None if data is None else Work.decode(data)

    def previous_inline(self) -> list[Work]:
        """The inline activities the last incarnation ran when it died; cleared."""
        data = self._read(_SIDE, _MARKER_BYTES)
        self.mark_inline([])
        works = [] if data is None else [Work.decode(d) for d in data.split(_SEPARATOR)]
        return [w for w in works if w is not None]

    def _read(self, start: int, end: int) -> bytes | None:
        (length,) = _LENGTH.unpack_from(self._map, start)
        if 0 < length <= end - start - _LENGTH.size:
            return self._map[start + _LENGTH.size : start + _LENGTH.size + length]
        return None

    def mark(self, work: Work) -> None:
        """Name the work about to run (before its user code)."""
        self._write(0, _SIDE, work.encode())
        self._marked = True

    def mark_inline(self, works: list[Work]) -> None:
        """Name the inline activities running now (each blamed if the host dies)."""
        self._write(_SIDE, _MARKER_BYTES, _SEPARATOR.join(w.encode() for w in works))

    def _write(self, start: int, end: int, data: bytes) -> None:
        if len(data) > end - start - _LENGTH.size:
            data = b""  # too long to keep: its death blames nothing
        _LENGTH.pack_into(self._map, start, 0)
        self._map[start + _LENGTH.size : start + _LENGTH.size + len(data)] = data
        _LENGTH.pack_into(self._map, start, len(data))  # last: a cut write reads as no mark

    def clear(self) -> None:
        """Nothing runs now."""
        if self._marked:
            _LENGTH.pack_into(self._map, 0, 0)
            self._marked = False

    def close(self) -> None:
        """Release the file (it stays for the next incarnation)."""
        self._map.close()
        os.close(self._fd)


def open_locks(history: list[h.HistoryEvent]) -> list[h.LockReleased]:
    """Releases of the locks a history requested and never released (read, never replayed:
    the instance's code may be what kills its host)."""
    released = {e.lock_seq for e in history if isinstance(e, h.LockReleased)}
    return [
        h.LockReleased(0, e.entities, e.seq, e.counters)
        for e in history
        if isinstance(e, h.LockRequested) and e.seq not in released
    ]


class PoisonGuard:
    """A host's side of poison work: it marks what runs, blames its predecessor's death on
    what that one ran, holds the suspect back and says when to quarantine it.

    Several inline activities may run when a host dies: each instance among them is
    blamed once, and they run again one instance at a time (``on_turn`` is told whose
    turn comes next), so that the next death names the poison alone and its neighbours
    are not blamed again with it.
    """

    def __init__(
        self, store: Store, hub: str, store_url: str, host: str | None, limit: int
    ) -> None:
        self.store = store
        self.hub = hub
        self.host = host
        self.limit = limit
        self.marker = None if host is None else CrashMarker.for_host(store_url, hub, host)
        #: what this host's predecessor died running, and how often that work killed a host
        self.suspect = self._blame(None if self.marker is None else self.marker.previous())
        #: the instances whose inline activities ran when it died, by instance id
        self.inline_suspects: dict[str, _InlineSuspect] = {}
        for work in [] if self.marker is None else self.marker.previous_inline():
            if self.suspect is not None and work.id == self.suspect[0].id:
                continue  # one death counts once against one instance
            known = self.inline_suspects.get(work.target)
            if known is not None:
                known.seqs.add(work.seq)
                continue
            blamed = self._blame(work)
            if blamed is not None:
                self.inline_suspects[work.target] = _InlineSuspect(work, blamed[1], {work.seq})
        #: suspects waiting out their backoff, or their turn
        self.held: set[str] = set()
        self._waited: set[str] = set()
        #: the inline suspect that may run now; ``on_turn`` activates the next
        self._turn: str | None = None
        self.on_turn: Callable[[str], None] | None = None

    def _blame(self, work: Work | None) -> tuple[Work, int] | None:
        """Count a crash against work the last incarnation died running, if any."""
        if work is None:
            return None
        try:
            crashes = self.store.record_crash(work.id)
        except Exception:
            log.exception("host: cannot count the crash of %s", work.id)
            return None
        logs.event(
            log,
            logging.WARNING,
            "host died while running work",
            hub=self.hub,
            host=self.host,
            work=work.id,
            detail=work.detail,
            crashes=crashes,
        )
        return work, crashes

    def mark(self, iid: str, detail: str) -> None:
        """An instance's code is about to run."""
        if self.marker is not None:
            self.marker.mark(Work("orchestration", iid, detail))

    def clear(self) -> None:
        """No instance's code runs now."""
        if self.marker is not None:
            self.marker.clear()

    def running_inline(self, works: list[Work]) -> None:
        """The inline activities that run now."""
        if self.marker is not None:
            self.marker.mark_inline(works)

    def _suspect(self, iid: str) -> tuple[Work, int] | None:
        if self.suspect is not None and self.suspect[0].id == f"orchestration:{iid}":
            return self.suspect
        inline = self.inline_suspects.get(iid)
        return None if inline is None else (inline.work, inline.crashes)

    def verdict(self, iid: str) -> float:
        """0: activate the instance now; QUARANTINE; HOLD (until ``on_turn`` names it);
        else wait that many seconds first (the host's other instances go on meanwhile;
        ``held`` has it until ``release``)."""
        suspect = self._suspect(iid)
        if suspect is None:
            return 0.0
        crashes = suspect[1]
        if crashes >= self.limit:
            return QUARANTINE
        if iid in self.inline_suspects:
            if self._turn not in (None, iid):
                self.held.add(iid)
                return HOLD
            self._turn = iid
        if iid in self._waited:
            self.held.discard(iid)
            return 0.0
        self._waited.add(iid)
        self.held.add(iid)
        return backoff(crashes)

    def release(self, iid: str) -> None:
        """The backoff of ``iid`` is over."""
        self.held.discard(iid)

    def quarantine(self, record: InstanceRecord, history: list[h.HistoryEvent]) -> Checkpoint:
        """Fail the suspect (releasing its locks, answering its parent) and list it; returns
        the checkpoint. No history event: a retry resumes from the checkpoint."""
        iid = record.instance_id
        suspect = self._suspect(iid)
        assert suspect is not None
        work, crashes = suspect
        self._forgive(iid)
        failure = failure_of(QuarantinedError(work.id, crashes, work.detail))
        cp = Checkpoint(
            iid,
            record.execution_id,
            [],
            record.history_length,
            status=str(OrchestrationStatus.FAILED),
            failure=dumps(failure),
            outbox=unlock_rows(SenderId(iid, record.execution_id), open_locks(history)),
        )
        if record.parent_instance_id is not None:
            answer = h.SubOrchestrationFailed(record.parent_seq or 0, failure)
            cp.outgoing.append((record.parent_instance_id, encode_event(answer)))
        item = Quarantined(work.id, "orchestration", iid, crashes, work.detail, time.time())
        self.store.quarantine_instance(cp, item)
        logs.event(
            log,
            logging.ERROR,
            "instance quarantined",
            hub=self.hub,
            instance_id=iid,
            crashes=crashes,
            detail=work.detail,
        )
        metrics.inc("quarantined", {"hub": self.hub, "kind": "orchestration"})
        return cp

    def acquit(self, committed: Iterable[tuple[str, Step]]) -> None:
        """Instances that committed a step: a suspect among them is cleared of its crashes
        (an inline suspect once the activities it ran at the death have their results, or
        its execution ended)."""
        if not self.inline_suspects and (
            self.suspect is None or self.suspect[0].kind != "orchestration"
        ):
            return
        for iid, step in committed:
            inline = self.inline_suspects.get(iid)
            if inline is not None:
                inline.seqs -= {e.seq for e in step.new_events if isinstance(e, _ANSWERS)}
                if inline.seqs and not (step.is_terminal or step.continued_as_new):
                    continue
            suspect = self._suspect(iid)
            if suspect is not None:
                self.store.forget_crashes(suspect[0].id)
                self._forgive(iid)

    def _forgive(self, iid: str) -> None:
        if self.suspect is not None and self.suspect[0].id == f"orchestration:{iid}":
            self.suspect = None
        if self.inline_suspects.pop(iid, None) is not None and self._turn == iid:
            self._turn = None
            waiting = [i for i in self.inline_suspects if i in self.held]
            if waiting and self.on_turn is not None:
                # The most blamed first: the likeliest poison is settled soonest.
                self._turn = max(waiting, key=lambda i: self.inline_suspects[i].crashes)
                self.held.discard(self._turn)
                self.on_turn(self._turn)
