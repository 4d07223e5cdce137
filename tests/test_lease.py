"""One hub on one store has one live supervisor: the lease, its refusal, expiry and fencing.

The other Ray cluster of these tests is a real one, started by a small driver script in a
subprocess (``ray.init(address="local")``); the machine has 2 cores, so there are two.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections import Counter

import pytest
import ray
import workflows as wf
from helpers import start_ray

from runtime import Runtime
from runtime.actors.lease import LEASE_TTL_SECONDS, holder_gone
from runtime.actors.routing import NAMESPACE
from runtime.actors.supervisor import supervisor_name
from runtime.errors import FencedError, HubLeaseHeldError
from runtime.orchestration import history as h
from runtime.store import Checkpoint, EntityCheckpoint, InstanceRecord, open_store
from runtime.store.base import Lease, LeaseHolder

SETTINGS = {"placement": "pooled", "pool_size": 1}

OTHER_CLUSTER = """
import sys, time
import ray
import workflows as wf
from runtime import DurableError, Runtime
from runtime.actors.routing import NAMESPACE
from runtime.actors.supervisor import supervisor_name

hub, store, mode, log = sys.argv[1:5]
ray.init(address="local", num_cpus=1, include_dashboard=False, log_to_driver=False)
try:
    rt = Runtime.start(hub=hub, store=store, placement="pooled", pool_size=1, register=wf.ALL)
except DurableError as exc:
    try:
        ray.get_actor(supervisor_name(hub), namespace=NAMESPACE)
        left = "supervisor left"
    except ValueError:
        left = "supervisor gone"
    print("REFUSED", type(exc).__name__, "|", exc, "|", left, flush=True)
    sys.exit(0)
iid = rt.client.start_new(wf.slow_chain, input=(log, 4, 0.5), instance_id="crossing")
while len(wf.executions(log)) < 1:
    time.sleep(0.05)
print("SERVING", ray.get_runtime_context().gcs_address, rt.client.supervisor_pid(), flush=True)
time.sleep(600)  # until the test kills this driver, and with it this cluster
"""


def other_cluster(tmp_path, hub: str, store: str, mode: str) -> subprocess.Popen:
    script = tmp_path / "other_cluster.py"
    script.write_text(OTHER_CLUSTER)
    return subprocess.Popen(
        [sys.executable, str(script), hub, store, mode, str(tmp_path / "runs")],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        text=True,
    )


def first_line(proc: subprocess.Popen, prefix: str) -> str:
    """The other cluster's first report, which must start with ``prefix``."""
    for line in proc.stdout:
        if line.startswith(("REFUSED", "SERVING")):
            assert line.startswith(prefix), line
            return line.strip()
    raise AssertionError(f"the other cluster ended without a {prefix} line: {proc.wait()}")


def holder(cluster: str, pid: int = 4242) -> LeaseHolder:
    return LeaseHolder("host-" + cluster, "", pid, f"10.0.0.{len(cluster)}:6379", cluster, "a1")


def dump(path: str) -> dict[str, list[tuple]]:
    import sqlite3

    with sqlite3.connect(path) as db:
        tables = [r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        return {t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in tables}


# -- the store: lease and fencing ----------------------------------------------------------


def test_store_lease_epochs_and_fencing(tmp_path):
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    old, new = open_store(url, "shop"), open_store(url, "shop")
    never = lambda lease: False  # noqa: E731
    first = old.acquire_lease(holder("A"), 0.2, never)
    assert first.epoch == 1 and old.load_lease() == first

    # Live and held by another cluster: refused, naming the holder; nothing changes.
    with pytest.raises(HubLeaseHeldError) as refused:
        new.acquire_lease(holder("B"), 60, never)
    err = refused.value
    assert (err.hub, err.host, err.pid) == ("shop", "host-A", 4242)
    assert err.ray_address == "10.0.0.1:6379"
    assert (err.since, err.expires) == (first.acquired_at, first.expires_at)
    for text in ("host-A", "pid 4242", "10.0.0.1:6379", "since", "expires"):
        assert text in str(err)
    import pickle

    assert str(pickle.loads(pickle.dumps(err))) == str(err)
    assert new.load_lease() == first

    # The same cluster (a supervisor restarted by Ray) takes it back with the same epoch.
    assert old.acquire_lease(holder("A", pid=4343), 0.2, never).epoch == 1

    # Expired: another cluster takes it with the next epoch.
    time.sleep(0.3)
    second = new.acquire_lease(holder("B"), 60, never)
    assert second.epoch == 2

    # A writer of epoch 1 commits nothing, on every write path.
    old.epoch, new.epoch = 1, 2
    new.create_instance(InstanceRecord("i", "n", "1", "Running", "e", 0.0, 0.0), [b"h0"], [b"m"])
    fenced: list[Exception] = []
    old.on_fenced = fenced.append
    before = dump(old.path)
    writes = [
        lambda: old.commit([Checkpoint("i", "e", [b"h1"], 1, status="Completed")]),
        lambda: old.commit_entities(
            [EntityCheckpoint("Counter", "k", b"s", True, "driver", 1, b"r")]
        ),
        lambda: old.append_inbox("i", b"event"),
        lambda: old.set_meta("spares", "x"),
        lambda: old.delete_instance("i"),
        lambda: old.renew_lease(1, 60),
    ]
    for write in writes:
        with pytest.raises(FencedError) as stale:
            write()
        assert (stale.value.epoch, stale.value.current) == (1, 2)
    assert dump(old.path) == before
    assert len(fenced) == len(writes) and all(isinstance(e, FencedError) for e in fenced)
    assert "epoch 1" in str(stale.value) and "epoch 2" in str(stale.value)

    # The holder of epoch 2 writes on; a clean stop frees the lease for anyone at once.
    new.commit([Checkpoint("i", "e", [b"h1"], 1, status="Completed")])
    assert new.load_history("i") == [b"h0", b"h1"]
    assert new.renew_lease(2, 60).expires_at > time.time() + 50
    new.release_lease(2)
    assert old.acquire_lease(holder("A"), 60, never).epoch == 3
    # A provably dead holder's live lease is taken at once, with the next epoch.
    assert new.acquire_lease(holder("B"), 60, lambda lease: True).epoch == 4


def test_holder_gone_only_for_a_dead_pid_on_this_machine(tmp_path):
    from runtime.actors.lease import _machine

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()

    def lease(machine: str, pid: int) -> Lease:
        return Lease("shop", 1, LeaseHolder("h", machine, pid, "a", "c", "x"), 0.0, 1e12)

    assert holder_gone(lease(_machine(), dead.pid))
    assert not holder_gone(lease(_machine(), os.getpid()))
    assert not holder_gone(lease("another-machine", dead.pid))
    assert not holder_gone(lease("", dead.pid))


# -- two clusters --------------------------------------------------------------------------


@pytest.mark.parametrize("placement", ["pooled"])
def test_second_cluster_is_refused_naming_the_holder(runtime, store_url, tmp_path):
    proc = other_cluster(tmp_path, runtime.config.hub, store_url, "try")
    line = first_line(proc, "REFUSED")
    assert proc.wait(timeout=60) == 0
    kind, message, left = line[len("REFUSED ") :].split(" | ")
    assert kind == "HubLeaseHeldError"
    pid = runtime.client.supervisor_pid()
    for text in (
        f"{runtime.config.hub!r}",
        socket.gethostname(),
        f"pid {pid}",
        ray.get_runtime_context().gcs_address,
        "since",
        "expires",
    ):
        assert text in message, message
    assert left == "supervisor gone"
    # The holder was not disturbed: same epoch, and it serves on.
    assert open_store(store_url, runtime.config.hub).load_lease().epoch == 1
    iid = runtime.client.start_new(wf.chain, input=1)
    assert runtime.client.wait_for_completion(iid, timeout=60).output == 4


def test_dead_clusters_lease_passes_to_the_next_start_which_resumes_its_work(
    hub_name, store_url, tmp_path
):
    start_ray()
    proc = other_cluster(tmp_path, hub_name, store_url, "hold")
    try:
        _, address, pid = first_line(proc, "SERVING").split()
        with pytest.raises(HubLeaseHeldError) as refused:
            Runtime.start(hub=hub_name, store=store_url, register=wf.ALL, **SETTINGS)
        assert refused.value.pid == int(pid) and refused.value.ray_address == address
        with pytest.raises(ValueError):  # the refused supervisor did not stay
            ray.get_actor(supervisor_name(hub_name), namespace=NAMESPACE)
    finally:
        proc.kill()  # the driver, and with it its whole cluster
        proc.wait()
    died = time.monotonic()
    while True:
        try:
            rt = Runtime.start(hub=hub_name, store=store_url, register=wf.ALL, **SETTINGS)
            break
        except HubLeaseHeldError:
            assert time.monotonic() - died < LEASE_TTL_SECONDS + 5, "the lease never freed"
            time.sleep(0.2)
    took = time.monotonic() - died
    try:
        assert took < LEASE_TTL_SECONDS + 5
        assert open_store(store_url, hub_name).load_lease().epoch == 2
        state = rt.client.wait_for_completion("crossing", timeout=120)
        assert state.output == [0, 1, 2, 3], state.failure_details
        seqs = [e.seq for e in state.history or [] if isinstance(e, h.TaskCompleted)]
        assert len(seqs) == len(set(seqs))
    finally:
        rt.shutdown()
    print(f"the next start took the hub {took:.1f}s after the other cluster was killed")


@pytest.mark.parametrize("placement", ["pooled"])
def test_writers_that_lost_the_lease_commit_nothing_and_stop(runtime, store_url, tmp_path):
    hub = runtime.config.hub
    log = str(tmp_path / "runs")
    client = runtime.client
    iid = client.start_new(wf.slow_chain, input=(log, 6, 0.3))
    deadline = time.monotonic() + 60
    while len(wf.executions(log)) < 1:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    # Another cluster takes the hub over, as after this cluster's lease expired.
    thief = open_store(store_url, hub)
    thief.release_lease(1)
    assert thief.acquire_lease(holder("thief"), 60, lambda lease: False).epoch == 2
    history = len(thief.load_history(iid))
    names = [supervisor_name(hub), f"{hub}/pool-0"]
    deadline = time.monotonic() + 15
    for name in names:
        while True:
            try:
                ray.get_actor(name, namespace=NAMESPACE)
            except ValueError:
                break
            assert time.monotonic() < deadline, f"{name} still runs without the lease"
            time.sleep(0.1)
    time.sleep(1.0)  # an activity that was running has finished by now: still not recorded
    assert len(thief.load_history(iid)) == history
    assert thief.load_instance(iid).status == "Running"

    thief.release_lease(2)
    rt = Runtime.start(hub=hub, store=store_url, **SETTINGS)
    try:
        assert thief.load_lease().epoch == 3
        state = rt.client.wait_for_completion(iid, timeout=120)
        assert state.output == list(range(6)), state.failure_details
        assert set(Counter(wf.executions(log))) == {str(i) for i in range(6)}
    finally:
        rt.shutdown()
