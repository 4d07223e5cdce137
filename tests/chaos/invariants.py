"""What must hold after a chaos run; each check returns the violations it found, explained.

The store checks read the tables with SQL of their own (tests/helpers.query_store), not
through the runtime, so a bug of the runtime's reads cannot hide one of its writes.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass

from helpers import assert_no_duplicate_completions, query_store

from runtime.orchestration import history as h
from runtime.orchestration.codec import decode_event
from runtime.orchestration.status import OrchestrationStatus
from runtime.store.payloads import referenced
from tests.chaos.workload import Planned, parse_line


def _live(status: str) -> bool:
    return not OrchestrationStatus(status).is_terminal


def histories(store: str, hub: str) -> dict[str, list[h.HistoryEvent]]:
    """Every stored history of the hub, decoded, out-of-line payloads resolved."""
    rows = query_store(
        store, "SELECT instance_id, idx, event FROM history WHERE hub=? ORDER BY idx", (hub,)
    )
    out: dict[str, list[h.HistoryEvent]] = {}
    for iid, _, blob in rows:
        digest = referenced(bytes(blob))
        if digest is not None:
            blob = query_store(
                store,
                "SELECT data FROM payloads WHERE hub=? AND instance_id=? AND digest=?",
                (hub, iid, digest),
            )[0][0]
        out.setdefault(iid, []).append(decode_event(bytes(blob)))
    return out


def recorded_keys(events: list[h.HistoryEvent]) -> set[str]:
    """The keys of the recorded activities (those whose completion is in ``events``)."""
    scheduled = {e.seq: e.input for e in events if isinstance(e, h.TaskScheduled)}
    done = [e.seq for e in events if isinstance(e, h.TaskCompleted)]
    return {
        scheduled[s][1] for s in done if s in scheduled and isinstance(scheduled[s], (list, tuple))
    }


@dataclass
class Snapshot:
    """The activities recorded at ``at`` (taken after the read): none may start again later."""

    at: float
    keys: set[str]
    timer_violations: list[str]


def snapshot(store: str, hub: str) -> Snapshot:
    """What is recorded now; a history dropped by continue-as-new is checked here too."""
    found = histories(store, hub)
    keys: set[str] = set()
    for events in found.values():
        keys |= recorded_keys(events)
    return Snapshot(time.time(), keys, duplicate_timers(found))


def duplicate_timers(found: dict[str, list[h.HistoryEvent]]) -> list[str]:
    """Timers that fired twice in one history."""
    out = []
    for iid, events in found.items():
        fired = Counter(e.seq for e in events if isinstance(e, h.TimerFired))
        out += [
            f"{iid}: timer {s} fired {n} times (a timer fires once)"
            for s, n in fired.items()
            if n > 1
        ]
    return out


def never_rerun(snapshots: list[Snapshot], lines: list[str]) -> list[str]:
    """A recorded activity never starts again (its side-file lines vs the histories)."""
    starts: dict[str, list[float]] = {}
    for line in lines:
        key, at, _ = parse_line(line)
        starts.setdefault(key, []).append(at)
    out = []
    for snap in snapshots:
        for key in snap.keys:
            later = [t for t in starts.get(key, []) if t > snap.at]
            if later:
                out.append(
                    f"activity {key} was recorded by {snap.at:.3f} and ran again "
                    f"{len(later)} time(s) after (first at {later[0]:.3f})"
                )
    return sorted(set(out))


def outcomes(client, planned: list[Planned]) -> tuple[list[str], dict[str, object]]:
    """(violations, outputs): every instance Completed with its expected output."""
    out, outputs = [], {}
    for p in planned:
        state = client.get_status(p.iid)
        if state is None:
            out.append(f"{p.iid}: the instance is unknown to the hub (its start was lost)")
            continue
        outputs[p.iid] = state.output
        if state.runtime_status != OrchestrationStatus.COMPLETED:
            out.append(
                f"{p.iid}: ended {state.runtime_status}, not Completed: {state.failure_details}"
            )
        elif p.expected is None and state.output not in (True, False):
            out.append(f"{p.iid}: a transfer returned {state.output!r}, not True or False")
        elif p.expected is not None and state.output != p.expected:
            out.append(f"{p.iid}: output {state.output!r}, expected {p.expected!r}")
    return out, outputs


def completions_once(client, iids: list[str]) -> list[str]:
    """No history holds an activity completion twice (tests/helpers' check, collected)."""
    out = []
    for iid in iids:
        try:
            assert_no_duplicate_completions(client, iid)
        except AssertionError as exc:
            out.append(str(exc))
    return out


def counters(client, expected: dict[str, int]) -> list[str]:
    """Every counter equals the sum of what was acknowledged to its senders."""
    out = []
    for eid, want in sorted(expected.items()):
        got = client.call_entity(eid, "get")
        if got != want:
            out.append(
                f"{eid} is {got}, but its acknowledged signals and calls add up to {want} "
                f"({'lost' if got < want else 'applied twice'}: {abs(want - got)})"
            )
    return out


def money(client, expected: dict[str, int]) -> list[str]:
    """Each account holds its deposits plus what the successful transfers moved."""
    got = {eid: client.call_entity(eid, "balance") for eid in expected}
    out = [
        f"{eid} holds {got[eid]}, its deposits and transfers say {want}"
        for eid, want in sorted(expected.items())
        if got[eid] != want
    ]
    if sum(got.values()) != sum(expected.values()):
        out.append(
            f"money is not conserved: {sum(got.values())} held, {sum(expected.values())} deposited"
        )
    return out


def store_integrity(store: str, hub: str) -> list[str]:
    """The store agrees with itself once the hub is quiet: instances vs histories vs inbox
    vs timers vs outbox, no quarantined work, no lock left held."""
    q = lambda sql: query_store(store, sql, (hub,))  # noqa: E731
    instances = {
        iid: (status, host, execution, length)
        for iid, status, host, execution, length in q(
            "SELECT instance_id, status, host, execution_id, history_length FROM instances "
            "WHERE hub=?"
        )
    }
    out = [
        f"{iid}: {s} but no host holds it (it can never make progress)"
        for iid, (s, host, _, _) in instances.items()
        if _live(s) and not host
    ]
    for msg_id, iid in q("SELECT id, instance_id FROM inbox WHERE hub=?"):
        if iid not in instances:
            out.append(f"inbox message {msg_id} is for {iid}, which does not exist")
    for iid, execution, seq in q("SELECT instance_id, execution_id, seq FROM timers WHERE hub=?"):
        found = instances.get(iid)
        if found is None or not _live(found[0]) or found[2] != execution:
            state = "missing" if found is None else f"{found[0]}, execution {found[2]}"
            out.append(f"timer {seq} of {iid} (execution {execution}) outlives it ({state})")
    out += [
        f"outbox row {i} ({kind} to {target}) is left though the hub is quiet"
        for i, kind, target in q("SELECT id, kind, target FROM outbox WHERE hub=?")
    ]
    stored = {
        iid: (n, low, high)
        for iid, n, low, high in q(
            "SELECT instance_id, COUNT(*), MIN(idx), MAX(idx) FROM history WHERE hub=? "
            "GROUP BY instance_id"
        )
    }
    for iid, (n, low, high) in stored.items():
        if iid not in instances:
            out.append(f"{iid} has {n} history rows but no instance row")
        elif (low, high) != (0, n - 1) or n != instances[iid][3]:
            out.append(
                f"{iid}: history rows idx {low}..{high} ({n} rows), "
                f"history_length {instances[iid][3]}: not contiguous from 0 or miscounted"
            )
    out += [
        f"{iid}: history_length {row[3]} but no history rows"
        for iid, row in instances.items()
        if row[3] and iid not in stored
    ]
    out += [
        f"quarantined {kind} {target} ({crashes} crashes): {detail}"
        for kind, target, crashes, detail in q(
            "SELECT kind, target, crashes, detail FROM quarantine WHERE hub=?"
        )
    ]
    out += [
        f"entity {name}@{key} is still locked by {owner} after every orchestration ended"
        for name, key, owner in q(
            "SELECT name, key, locked_by FROM entities WHERE hub=? AND locked_by IS NOT NULL"
        )
    ]
    return out
