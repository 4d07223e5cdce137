"""The seeded fault injector of the chaos suite and the recovery clock that times it.

Every choice (which fault, when, which target among the live ones) comes from one
``random.Random(seed)``; what is alive at a moment depends on the machine, so a seed fixes
the sequence of faults and waits, not the exact targets.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from helpers import entity_host_pid, kill_host, query_store
from workflows import executions

from runtime.orchestration.status import OrchestrationStatus
from tests.chaos.invariants import snapshot
from tests.chaos.workload import Size, parse_line

#: How often each kind of fault is drawn (the whole Ray is stopped by the runner).
WEIGHTS = {
    "host": 3.0,
    "entity host": 2.0,
    "supervisor": 1.0,
    "activity worker": 2.0,
    "driver": 1.5,
    "keeper": 1.0,  # dedicated placement only: its hosts die with it
}
#: Kills of one instance's or entity's host at most: more would be poison (quarantine).
MAX_KILLS_PER_TARGET = 2


@dataclass
class Fault:
    """One injected fault; ``recovery`` is seconds from it to the next commit it affected."""

    kind: str
    at: float
    target: str
    affected: set[str] = field(default_factory=set)
    recovery: float | None = None
    #: the whole Ray was stopped before it recovered: its time would be the restart's
    cut_short: bool = False


class Drivers:
    """The driver subprocesses: started, killed and started again (they re-send all)."""

    def __init__(self, workdir: Path, hub: str, seed: int, size: Size) -> None:
        self.workdir, self.hub, self.seed, self.size = workdir, hub, seed, size
        self.procs: dict[int, subprocess.Popen] = {}
        self.address = ""
        self.failures: list[str] = []

    def acks(self, n: int) -> Path:
        """The side file of driver ``n``'s acknowledged operations."""
        return self.workdir / f"acks-{n}"

    def start(self, n: int) -> None:
        """Start (or start again) driver ``n`` on the current Ray."""
        import json
        from dataclasses import asdict

        out = open(self.workdir / f"driver-{n}.log", "ab")
        args = [
            self.hub,
            self.address,
            str(self.seed),
            str(n),
            str(self.acks(n)),
            json.dumps(asdict(self.size)),
        ]
        self.procs[n] = subprocess.Popen(
            [sys.executable, "-m", "tests.chaos.driver", *args],
            stdout=out,
            stderr=out,
            cwd=Path(__file__).resolve().parents[2],
        )
        out.close()

    def check(self) -> bool:
        """Start again every driver that died without finishing; True once all finished."""
        done = True
        for n, proc in list(self.procs.items()):
            code = proc.poll()
            if code is None:
                done = False
            elif code != 0:
                if code != -signal.SIGKILL:
                    lines = (self.workdir / f"driver-{n}.log").read_text().strip().splitlines()
                    self.failures.append(f"driver-{n} exited {code}: {(lines or [''])[-1]}")
                self.start(n)
                done = False
        return done

    def kill_all(self) -> None:
        """SIGKILL every running driver (they are started again by ``check``)."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class RecoveryClock:
    """Polls the store: a fault recovers at the first commit of what it affected."""

    def __init__(self, store: str, hub: str, drivers: Drivers) -> None:
        self.store, self.hub, self.drivers = store, hub, drivers
        self.pending: list[Fault] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-recovery")
        self._thread.start()

    def watch(self, fault: Fault) -> None:
        """Time ``fault`` until one of its affected instances, entities or drivers commits."""
        with self._lock:
            self.pending.append(fault)

    def cut_short(self) -> None:
        """The whole Ray stops: what has not recovered yet is timed no further."""
        with self._lock:
            for fault in self.pending:
                fault.cut_short = True
            self.pending = []

    def stop(self) -> None:
        """End the polling."""
        self._stop.set()
        self._thread.join()

    def _latest(self) -> dict[str, float]:
        hub = (self.hub,)
        rows = query_store(
            self.store, "SELECT instance_id, last_updated_time FROM instances WHERE hub=?", hub
        )
        rows += query_store(
            self.store, "SELECT name || '@' || key, last_modified FROM entities WHERE hub=?", hub
        )
        for n in self.drivers.procs:
            path = self.drivers.acks(n)
            if path.exists():
                rows.append((f"driver-{n}", path.stat().st_mtime))
        return dict(rows)

    def _run(self) -> None:
        while not self._stop.wait(0.25):
            try:
                latest = self._latest()
            except Exception:
                continue  # the database restarts with Ray's stop? try again
            with self._lock:
                for fault in self.pending:
                    times = [latest[a] for a in fault.affected if latest.get(a, 0) > fault.at]
                    if times:
                        fault.recovery = min(times) - fault.at
                self.pending = [f for f in self.pending if f.recovery is None]


class FaultInjector:
    """Kills, at seeded random moments, hosts, the supervisor, activity workers, drivers."""

    def __init__(self, rng: random.Random, runner, interval: tuple[float, float]) -> None:
        self.rng, self.runner, self.interval = rng, runner, interval
        self.faults: list[Fault] = []
        self.skipped: Counter[str] = Counter()
        self.kills: Counter[str] = Counter()
        self.paused = threading.Lock()  # held by the runner while it restarts Ray
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="chaos-faults")

    def start(self) -> None:
        """Begin injecting."""
        self._thread.start()

    def stop(self) -> None:
        """Stop injecting (waits for the fault under way)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        kinds, weights = list(WEIGHTS), list(WEIGHTS.values())
        while not self._stop.wait(self.rng.uniform(*self.interval)):
            kind = self.rng.choices(kinds, weights)[0]
            with self.paused:
                try:
                    # What is recorded before the kill must not run again after it.
                    self.runner.snapshots.append(snapshot(self.runner.store, self.runner.hub))
                    fault = getattr(self, "_" + kind.replace(" ", "_"))()
                except Exception as exc:  # the target died or moved meanwhile
                    fault = None
                    self.skipped[f"{kind}: {type(exc).__name__}"] += 1
            if fault is None:
                self.skipped[f"{kind}: no target"] += 1
                continue
            self.faults.append(fault)
            print(f"chaos: {fault.at:.3f} killed {kind} {fault.target}", flush=True)
            if fault.recovery is None:  # the supervisor's is timed as it is injected
                self.runner.recovery.watch(fault)

    def record(self, fault: Fault) -> None:
        """Note a fault the runner injected itself (the whole Ray)."""
        self.faults.append(fault)

    def _live(self) -> list[tuple[str, str]]:
        rows = query_store(
            self.runner.store,
            "SELECT instance_id, status, host FROM instances WHERE hub=?",
            (self.runner.hub,),
        )
        return [
            (iid, host)
            for iid, status, host in rows
            if host and status == OrchestrationStatus.RUNNING.value
        ]

    def _once_more(self, target: str) -> bool:
        self.kills[target] += 1
        return self.kills[target] <= MAX_KILLS_PER_TARGET

    def _host(self) -> Fault | None:
        live = self._live()
        if not live:
            return None
        iid, host = self.rng.choice(live)
        if not self._once_more(iid):
            return None
        pid = kill_host(self.runner.client, iid)
        at = time.time()
        affected = {i for i, h in self._live() if h == host}  # what the kill interrupted
        return Fault("host", at, f"{host} (pid {pid}, holding {iid})", affected)

    def _keeper(self) -> Fault | None:
        import ray

        from runtime.actors.ray_seam import NAMESPACE, keeper_name

        live = self._live()
        if self.runner.placement != "dedicated" or not live:
            return None
        if any(self.kills[iid] >= MAX_KILLS_PER_TARGET for iid, _ in live):
            return None  # one more host death for each of them: some would be poison
        for iid, _ in live:
            self.kills[iid] += 1
        node = ray.get_runtime_context().get_node_id()
        keeper = ray.get_actor(keeper_name(self.runner.hub, node), namespace=NAMESPACE)
        pid = ray.get(keeper.pid.remote(), timeout=10)
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        return Fault("keeper", at, f"pid {pid}, owner of {len(live)} hosts", {i for i, _ in live})

    def _entity_host(self) -> Fault | None:
        eid = self.rng.choice(self.runner.entities)
        if not self._once_more(eid):
            return None
        r = self.runner
        try:
            pid = entity_host_pid(r.client, r.hub, r.placement, eid, tries=5)
        except ValueError:
            return None  # a dedicated entity with no host now (passivated, or not yet used)
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        return Fault("entity host", at, f"{eid} (pid {pid})", {eid})

    def _supervisor(self) -> Fault:
        client = self.runner.client
        pid = client.supervisor_pid()
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        fault = Fault("supervisor", at, f"pid {pid}")
        while client.supervisor_pid() == pid:  # retried by the client while it restarts
            time.sleep(0.1)
        fault.recovery = time.time() - at
        return fault

    def _activity_worker(self) -> Fault | None:
        now = time.time()
        running = [parse_line(line) for line in executions(self.runner.log)]
        running = [(k, p) for k, at, p in running if now - at < 0.45 and ray_worker(p)]
        if not running:
            return None
        key, pid = self.rng.choice(running)
        if not self._once_more(key):
            return None
        at = time.time()
        os.kill(pid, signal.SIGKILL)
        return Fault("activity worker", at, f"{key} (pid {pid})", {key.split("/")[0]})

    def _driver(self) -> Fault | None:
        drivers = self.runner.drivers
        running = [n for n, p in drivers.procs.items() if p.poll() is None]
        if not running:
            return None
        n = self.rng.choice(running)
        at = time.time()
        drivers.procs[n].kill()
        drivers.procs[n].wait()
        drivers.check()  # started again at once: it re-sends everything
        return Fault("driver", at, f"driver-{n}", {f"driver-{n}"})


def ray_worker(pid: int) -> bool:
    """True if ``pid`` is a Ray worker process (not a reused pid of something else)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().startswith(b"ray::")
    except OSError:
        return False
