"""The chaos workload: orchestrators, activities and the plan of one wave (Ray workers
import this module by name).

Every recorded activity takes ``(log, key, ...)`` and writes ``key|start time|pid`` to the
side file ``log`` before it works: the invariants compare those lines with the histories,
and the fault injector kills the pid of an activity that is running.
"""

from __future__ import annotations

import os
import random
import time
import zlib
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import entity_defs as ed
import workflows as wf

from entities import EntityId
from runtime import RetryPolicy, activity, orchestrator


def execution_line(key: str) -> str:
    """What an activity records when it starts: its key, the time and its process."""
    return f"{key}|{time.time():.6f}|{os.getpid()}"


def parse_line(line: str) -> tuple[str, float, int]:
    """(key, start time, pid) of a line written by ``execution_line``."""
    key, at, pid = line.rsplit("|", 2)
    return key, float(at), int(pid)


@activity
def step(args: tuple[str, str, int, float]) -> int:
    log, key, value, seconds = args
    wf.record(log, execution_line(key))
    time.sleep(seconds)
    return value


@activity
def flaky(args: tuple[str, str, int]) -> str:
    """Fails at random: the n-th execution of ``key`` fails when hash(seed, key, n) is even,
    never past the third, so a policy of four attempts always ends in success."""
    log, key, seed = args
    attempt = sum(1 for line in wf.executions(log) if parse_line(line)[0] == key)
    wf.record(log, execution_line(key))
    if attempt < 3 and zlib.crc32(f"{seed}:{key}:{attempt}".encode()) % 2 == 0:
        raise ConnectionError(f"attempt {attempt} of {key} fails (seeded)")
    return f"ok:{key}"


@orchestrator
def chain(ctx, args):
    log, steps, seconds = args
    total = 0
    for i in range(steps):
        key = f"{ctx.instance_id}/{i}"
        total += yield ctx.call_activity(step, (log, key, i + 1, seconds))
    return total


@orchestrator
def fan_out(ctx, args):
    log, n = args
    tasks = [ctx.call_activity(step, (log, f"{ctx.instance_id}/{i}", i, 0.01)) for i in range(n)]
    return sum((yield ctx.task_all(tasks)))


@orchestrator
def approval(ctx, timeout_seconds):
    """Approved by the event "approve" unless the timer fires first."""
    timeout = ctx.create_timer(ctx.current_utc_datetime + timedelta(seconds=timeout_seconds))
    approved = ctx.wait_for_external_event("approve")
    winner = yield ctx.task_any([approved, timeout])
    if winner is approved:
        timeout.cancel()
        return ["approved", approved.result]
    return ["timed out", None]


@orchestrator
def eternal(ctx, args):
    """One recorded step per execution, then continue-as-new until ``limit``."""
    log, n, limit = args
    yield ctx.call_activity(step, (log, f"{ctx.instance_id}/g{n}", n, 0.05))
    if n + 1 >= limit:
        return n + 1
    ctx.continue_as_new([log, n + 1, limit])


@orchestrator
def parent(ctx, args):
    log, children, steps = args
    calls = [
        ctx.call_sub_orchestrator(chain, (log, steps, 0.1), instance_id=f"{ctx.instance_id}-c{i}")
        for i in range(children)
    ]
    return sum((yield ctx.task_all(calls)))


@orchestrator
def retrying(ctx, args):
    log, seed = args
    policy = RetryPolicy(timedelta(seconds=0.5), max_number_of_attempts=4)
    return (yield ctx.call_activity_with_retry(flaky, policy, (log, ctx.instance_id, seed)))


@orchestrator
def feeder(ctx, args):
    """Signals and calls a counter from an orchestration: it adds ``sum(amounts)``."""
    key, amounts = args
    counter = EntityId("Counter", key)
    for amount in amounts[:-1]:
        ctx.signal_entity(counter, "add", amount)
    yield ctx.call_entity(counter, "add", amounts[-1])
    yield ctx.call_entity(counter, "get")
    return sum(amounts)


ALL = [step, flaky, chain, fan_out, approval, eternal, parent, retrying, feeder]
REGISTER = ALL + [ed.Counter, ed.account, ed.transfer]


@dataclass
class Planned:
    """One orchestration of the wave and what it must end with."""

    iid: str
    orchestrator: Any
    input: Any
    expected: Any  # the output; None for a transfer (True or False, checked by the money)
    event: Any = None  # the data of the "approve" event the runner raises, if any
    children: list[str] = field(default_factory=list)


@dataclass
class Size:
    """How much of each kind one wave holds."""

    chains: int = 4
    fans: int = 2
    fan_width: int = 30
    approvals: int = 3
    timers: int = 3
    eternals: int = 2
    parents: int = 2
    retries: int = 3
    feeders: int = 3
    transfers: int = 8
    counters: int = 3
    accounts: int = 4
    drivers: int = 3
    driver_ops: int = 150


def counters(size: Size) -> list[str]:
    """The counter entities of a run."""
    return [f"Counter@c{i}" for i in range(size.counters)]


def accounts(size: Size) -> list[str]:
    """The account entities of a run."""
    return [f"Account@a{i}" for i in range(size.accounts)]


def plan_wave(rng: random.Random, wave: int, log: str, seed: int, size: Size) -> list[Planned]:
    """The orchestrations of one wave, in the random order they are started."""
    w = f"w{wave}"
    out = [Planned(f"{w}-chain{i}", chain, [log, 5, 0.5], 15) for i in range(size.chains)]
    n = size.fan_width
    out += [Planned(f"{w}-fan{i}", fan_out, [log, n], n * (n - 1) // 2) for i in range(size.fans)]
    for i in range(size.approvals):
        out.append(Planned(f"{w}-approve{i}", approval, 3600, ["approved", i], event=i))
    for i in range(size.timers):
        out.append(Planned(f"{w}-timer{i}", approval, rng.uniform(1, 3), ["timed out", None]))
    out += [Planned(f"{w}-eternal{i}", eternal, [log, 0, 6], 6) for i in range(size.eternals)]
    for i in range(size.parents):
        iid = f"{w}-parent{i}"
        out.append(Planned(iid, parent, [log, 2, 3], 12, children=[f"{iid}-c0", f"{iid}-c1"]))
    for i in range(size.retries):
        out.append(Planned(f"{w}-retry{i}", retrying, [log, seed], f"ok:{w}-retry{i}"))
    for i in range(size.feeders):
        key = rng.choice(counters(size)).split("@")[1]
        amounts = [rng.randint(1, 9) for _ in range(4)]
        out.append(Planned(f"{w}-feed{i}", feeder, [key, amounts], sum(amounts)))
    for i in range(size.transfers):
        source, target = rng.sample(accounts(size), 2)
        out.append(Planned(f"{w}-move{i}", ed.transfer, [source, target, rng.randint(1, 30)], None))
    rng.shuffle(out)
    return out


def driver_plan(seed: int, driver: int, size: Size) -> list[tuple[str, str, int, int]]:
    """(entity, operation, amount, sequence) of every operation driver ``driver`` sends."""
    rng = random.Random(f"{seed}-driver-{driver}")
    numbers: dict[str, int] = {}
    ops = []
    for _ in range(size.driver_ops):
        if rng.random() < 0.6:
            eid, op = rng.choice(counters(size)), "add"
        else:
            eid, op = rng.choice(accounts(size)), "deposit"
        if rng.random() < 0.1:
            op = "get" if eid.startswith("Counter") else "balance"
        numbers[eid] = numbers.get(eid, 0) + 1
        ops.append((eid, op, rng.randint(1, 20), numbers[eid]))
    return ops
