"""One chaos run: a hub on a Ray of its own, waves of the workload, faults, then the checks."""

from __future__ import annotations

import random
import statistics
import tempfile
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

import ray
from helpers import RAY_ARGS, query_store, wait_until
from workflows import executions

from runtime import Runtime
from runtime.errors import DurableError
from runtime.orchestration.status import OrchestrationStatus
from tests.chaos import invariants as inv
from tests.chaos.faults import Drivers, Fault, FaultInjector, RecoveryClock
from tests.chaos.workload import (
    REGISTER,
    Planned,
    Size,
    accounts,
    counters,
    driver_plan,
    feeder,
    plan_wave,
)

#: How long one wave may take before its unfinished instances are reported stuck.
WAVE_TIMEOUT_SECONDS = 900.0


@dataclass
class Report:
    """What a run did and found."""

    seed: int
    placement: str
    store: str
    seconds: float = 0.0
    faults: list[Fault] = field(default_factory=list)
    skipped: Counter[str] = field(default_factory=Counter)
    violations: list[str] = field(default_factory=list)
    instances: int = 0
    signals: int = 0
    driver_errors: list[str] = field(default_factory=list)

    def text(self) -> str:
        """The report printed at the end of a run."""
        lines = [
            f"chaos: seed {self.seed}, {self.placement}, {self.store}: {self.instances} "
            f"orchestrations, {self.signals} driver operations, {self.seconds:.0f} s"
        ]
        for kind, count in sorted(Counter(f.kind for f in self.faults).items()):
            times = [f.recovery for f in self.faults if f.kind == kind and f.recovery is not None]
            timed = (
                f"recovery median {statistics.median(times):.2f} s, max {max(times):.2f} s"
                if times
                else "recovery not observed"
            )
            cut = sum(1 for f in self.faults if f.kind == kind and f.cut_short)
            unseen = count - len(times) - cut
            timed += f"; {cut} cut short by the whole Ray's stop" if cut else ""
            lines.append(
                f"  {kind}: {count} ({timed}" + (f"; {unseen} unobserved)" if unseen else ")")
            )
        slowest = sorted(
            (f for f in self.faults if f.recovery is not None), key=lambda f: -(f.recovery or 0)
        )[:3]
        lines += [
            f"  slowest: {f.kind} {f.target} at {f.at:.3f}: {f.recovery:.2f} s" for f in slowest
        ]
        lines += [f"  driver error (it was started again): {e}" for e in self.driver_errors]
        if self.skipped:
            lines.append(f"  skipped: {dict(self.skipped)}")
        verdict = "PASSED" if not self.violations else f"FAILED ({len(self.violations)})"
        lines.append(f"chaos: seed {self.seed} {verdict}")
        lines += [f"  VIOLATION {v}" for v in self.violations]
        return "\n".join(lines)


class ChaosRun:
    """A run of ``waves`` of the workload (more while ``duration`` seconds have not passed)."""

    def __init__(
        self,
        seed: int,
        placement: str,
        store: str,
        size: Size,
        workdir: Path,
        duration: float = 0.0,
        interval: tuple[float, float] = (1.0, 3.0),
    ) -> None:
        self.seed, self.placement, self.size, self.duration = seed, placement, size, duration
        self.workdir, self.interval = workdir, interval
        self.store = store
        self.hub = f"chaos-{seed}"
        self.log = str(workdir / "executions")
        root = random.Random(seed)
        self.rng = random.Random(root.random())  # the runner's; the injector has its own
        self.injector = FaultInjector(random.Random(root.random()), self, interval)
        self.drivers = Drivers(workdir, self.hub, seed, size)
        self.entities = counters(size) + accounts(size)
        self.planned: list[Planned] = []
        self.snapshots: list[inv.Snapshot] = []
        self.rt: Runtime | None = None

    @property
    def client(self):
        """The client of the hub on the current Ray."""
        assert self.rt is not None
        return self.rt.client

    def _start(self) -> None:
        for attempt in range(3):
            try:
                ray.init(**RAY_ARGS)
                break
            except Exception:  # "node timed out during startup": a machine overloaded
                ray.shutdown()
                if attempt == 2:
                    raise
        self.drivers.address = ray.get_runtime_context().gcs_address
        self.rt = Runtime.start(
            hub=self.hub, store=self.store, placement=self.placement, pool_size=2, register=REGISTER
        )

    def run(self) -> Report:
        """Run the waves under faults, then check every invariant."""
        report = Report(self.seed, self.placement, self.store.split(":")[0])
        began = time.time()
        self._start()
        self.recovery = RecoveryClock(self.store, self.hub, self.drivers)
        try:
            self.injector.start()
            try:
                wave = 0
                while wave == 0 or time.time() - began < self.duration:
                    report.violations += self._wave(wave)
                    wave += 1
            finally:
                self.injector.stop()
            report.violations += self._check()
        finally:
            # Whatever failed: no driver process and no Ray of ours outlives the run.
            self.drivers.kill_all()
            self.recovery.stop()
            ray.shutdown()
        report.seconds = time.time() - began
        report.faults, report.skipped = self.injector.faults, self.injector.skipped
        report.instances = len(self.planned)
        report.driver_errors = self.drivers.failures
        report.signals = len(self.drivers.procs) * self.size.driver_ops
        return report

    def _statuses(self) -> dict[str, str]:
        rows = query_store(
            self.store, "SELECT instance_id, status FROM instances WHERE hub=?", (self.hub,)
        )
        return dict(rows)

    def _wave(self, wave: int) -> list[str]:
        """Start one wave, raise its events, stop Ray once in it; the stuck, if any."""
        planned = plan_wave(self.rng, wave, self.log, self.seed, self.size)
        self.planned += planned
        for i in range(self.size.drivers):
            self.drivers.start(wave * self.size.drivers + i)
        began = time.time()
        events = {p.iid: began + self.rng.uniform(2, 20) for p in planned if p.event is not None}
        stop_ray_at = self.rng.uniform(0.3, 0.6)  # of the wave's instances ended
        for p in planned:
            self.client.start_new(p.orchestrator, input=p.input, instance_id=p.iid)
            time.sleep(self.rng.uniform(0, 0.2))
        ids = {p.iid for p in planned}
        refusals: list[str] = []
        while time.time() - began < WAVE_TIMEOUT_SECONDS:
            statuses = self._statuses()
            ended = [i for i in ids if OrchestrationStatus(statuses[i]).is_terminal]
            drivers_done = self.drivers.check()
            if len(ended) == len(ids) and drivers_done:
                return refusals
            if stop_ray_at is not None and len(ended) >= stop_ray_at * len(ids):
                self._stop_ray(ids - set(ended))
                stop_ray_at = None
            for iid, at in list(events.items()):
                if time.time() >= at:
                    del events[iid]
                    refused = self._raise(iid, next(p.event for p in planned if p.iid == iid))
                    refusals += [refused] if refused else []
            time.sleep(0.5)
        statuses = self._statuses()
        return refusals + [
            f"{i} still {statuses[i]} after {WAVE_TIMEOUT_SECONDS:.0f} s (stuck)"
            for i in sorted(ids)
            if not OrchestrationStatus(statuses[i]).is_terminal
        ]

    def _raise(self, iid: str, data: object) -> str | None:
        """Raise the "approve" event once; a refusal is a violation (the instance waits)."""
        try:
            self.client.raise_event(iid, "approve", data)
        except DurableError as exc:
            return (
                f"{iid}: raise_event, called once while the instance waited for it, "
                f"failed with {type(exc).__name__}: {exc}"
            )
        return None

    def _stop_ray(self, live: set[str]) -> None:
        """Stop the whole Ray (only ours) and start the hub again on the same store."""
        with self.injector.paused:
            print(
                f"chaos: {time.time():.3f} stopping the whole Ray ({len(live)} instances live)",
                flush=True,
            )
            self.drivers.kill_all()
            self.recovery.cut_short()
            ray.shutdown()  # the Ray this process started, and nothing else
            at = time.time()  # every process of it is gone: recovery counts from here
            self._start()
            fault = Fault("whole ray", at, "ray.shutdown", set(live))
            self.injector.record(fault)
            self.recovery.watch(fault)

    def _check(self) -> list[str]:
        """Every invariant, once the hub is quiet."""
        client = self.client
        try:
            wait_until(
                lambda: (
                    not query_store(self.store, "SELECT id FROM outbox WHERE hub=?", (self.hub,))
                ),
                timeout=60,
            )
        except AssertionError:
            pass  # reported by the integrity check
        out = inv.store_integrity(self.store, self.hub)
        bad, outputs = inv.outcomes(client, self.planned)
        out += bad
        iids = [p.iid for p in self.planned] + [c for p in self.planned for c in p.children]
        out += inv.completions_once(client, iids)
        self.snapshots.append(inv.snapshot(self.store, self.hub))
        for snap in self.snapshots:
            out += snap.timer_violations
        out += inv.never_rerun(self.snapshots, executions(self.log))
        out += self._entities(client, outputs)
        return list(dict.fromkeys(out))

    def _entities(self, client, outputs: dict[str, object]) -> list[str]:
        """Counters and accounts against what drivers and orchestrations had acknowledged."""
        expected = {eid: 0 for eid in self.entities}
        out = []
        for n in self.drivers.procs:
            acked = set(executions(str(self.drivers.acks(n))))
            for eid, op, amount, seq in driver_plan(self.seed, n, self.size):
                if f"{eid}|{seq}" not in acked:
                    out.append(f"driver-{n}: {op} {seq} on {eid} was never acknowledged")
                elif op in ("add", "deposit"):
                    expected[eid] += amount
        for p in self.planned:
            if p.orchestrator is feeder and outputs.get(p.iid) == p.expected:
                expected[f"Counter@{p.input[0]}"] += p.expected
            if p.expected is None and outputs.get(p.iid) is True:
                source, target, amount = p.input
                expected[source] -= amount
                expected[target] += amount
        out += inv.counters(client, {e: v for e, v in expected.items() if "Counter" in e})
        out += inv.money(client, {e: v for e, v in expected.items() if "Account" in e})
        return out


def run_seed(
    seed: int,
    placement: str,
    store: str,
    size: Size,
    duration: float = 0.0,
    interval: tuple[float, float] = (1.0, 3.0),
) -> Report:
    """One seed in a temporary directory; ``store`` is "sqlite", "postgresql" (a throw-away
    server) or the URL of an empty PostgreSQL database."""
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        if store == "postgresql":
            from postgres_server import PostgresServer

            server = PostgresServer()
            stack.callback(server.close)
            url = server.database()
        elif store == "sqlite":
            url = f"sqlite:///{workdir / 'hub.db'}"
        else:
            url = store
        print(
            f"chaos: seed {seed}, placement {placement}, store {store}, workdir {workdir}",
            flush=True,
        )
        report = ChaosRun(seed, placement, url, size, workdir, duration, interval).run()
        print(report.text(), flush=True)
        return report
