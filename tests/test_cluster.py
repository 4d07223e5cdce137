"""A hub on a real multi-node Ray cluster: placement across nodes, and the loss of a node.

The module starts its own cluster (a head node and two worker nodes, each a raylet of
its own; tests/multinode.py) after stopping the session's local Ray, and gives the
session its local Ray back at the end. PostgreSQL tests need the session's throw-away
server (skipped where there is none; required by .ci/run).
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import cluster_defs as cd
import pytest
from helpers import assert_no_duplicate_completions, history_lengths, query_store, wait_until
from multinode import LocalCluster, actor_nodes, back_to_session_ray

from runtime import HubConfigError, OrchestrationStatus, Runtime
from runtime.actors.routing import pool_index

OWN_CLUSTER = True
ZONE = {"zone": 1.0}


@pytest.fixture(scope="module")
def cluster():
    nodes = LocalCluster(workers=[{"num_cpus": 1, "resources": ZONE}] * 2)
    yield nodes
    nodes.shutdown()
    back_to_session_ray()


def hub_name() -> str:
    return f"c-{uuid.uuid4().hex[:8]}"


def start(hub: str, store: str, **settings) -> Runtime:
    return Runtime.start(hub=hub, store=store, register=cd.ALL, **settings)


def hub_actor_nodes(cluster: LocalCluster, hub: str) -> dict[str, str]:
    """The hub's hosts and supervisor (by actor name) and the node each lives on."""
    by_name = actor_nodes(cluster.dashboard, "")
    return {
        name: node
        for name, node in by_name.items()
        if name.startswith(f"{hub}/") or name == f"durable-supervisor/{hub}"
    }


# -- placement ----------------------------------------------------------------------------------


def test_sqlite_pins_the_supervisor_and_every_host_to_the_files_node(cluster, tmp_path):
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    pooled, dedicated = hub_name(), hub_name()
    rt = start(pooled, store, placement="pooled", pool_size=4)
    rt2 = start(dedicated, f"sqlite:///{tmp_path / 'hub2.db'}", placement="dedicated")
    try:
        iids = [
            rt.client.start_new(cd.spread_out, input=6, instance_id=i) for i in spread_ids(4, 1)
        ]
        iid2 = rt2.client.start_new(cd.spread_out, input=6)
        waiting = rt2.client.start_new(cd.wait_for_go)  # its dedicated host stays
        rt2.client.signal_entity("Tally@pinned", "add", 1)
        assert rt2.client.call_entity("Tally@pinned", "node") == cluster.head_id
        used = set()
        for client, iid in [(rt.client, i) for i in iids] + [(rt2.client, iid2)]:
            state = client.wait_for_completion(iid, timeout=120)
            assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
            used.update(state.output)
        # Activities run anywhere: six one-CPU activities at once do not fit on the head.
        assert len(used) > 1
        placed = {**hub_actor_nodes(cluster, pooled), **hub_actor_nodes(cluster, dedicated)}
        expected = {
            *(f"durable-supervisor/{hub}" for hub in (pooled, dedicated)),
            *(f"{pooled}/pool-{i}" for i in range(4)),
            f"{dedicated}/entity-Tally@pinned",
        }
        assert expected <= set(placed), sorted(placed)
        assert len(placed) > len(expected)  # and the waiting instance's dedicated host
        assert set(placed.values()) == {cluster.head_id}, placed
        rt2.client.raise_event(waiting, "go", 1)
        assert rt2.client.wait_for_completion(waiting, timeout=60).output == 1
    finally:
        rt.shutdown()
        rt2.shutdown()


def test_sqlite_refuses_an_entity_whose_resources_the_files_node_lacks(cluster, tmp_path):
    store = f"sqlite:///{tmp_path / 'hub.db'}"
    rt = start(hub_name(), store, placement="pooled", pool_size=1)
    try:
        with pytest.raises(HubConfigError, match="zone.*SQLite file.*PostgreSQL"):
            rt.client.signal_entity("ZoneTally@eu", "add", 1)
        assert query_store(store, "SELECT COUNT(*) FROM entities") == [(0,)]
        rt.client.signal_entity("Tally@fine", "add", 2)  # the hub goes on
        assert rt.client.call_entity("Tally@fine", "get") == 2
    finally:
        rt.shutdown()


def test_postgresql_spreads_hosts_and_honours_entity_resources(cluster, postgres):
    hub = hub_name()
    rt = start(hub, postgres.database(), placement="pooled", pool_size=3)
    try:
        iids = [rt.client.start_new(cd.slow_chain, input=(1, 0.0)) for _ in range(12)]
        for iid in iids:
            assert rt.client.wait_for_completion(iid, timeout=120).output == 1
        zone_node = rt.client.call_entity("ZoneTally@eu", "node")
        workers = {cluster.node_id(n) for n in cluster.workers}
        assert zone_node in workers  # only the workers have a "zone"
        pool = {n: node for n, node in hub_actor_nodes(cluster, hub).items() if "/pool-" in n}
        assert len(pool) == 3 and len(set(pool.values())) >= 2, pool
    finally:
        rt.shutdown()


# -- losing a node ------------------------------------------------------------------------------


class Signaller(threading.Thread):
    """Signals entities from a driver thread while the test kills a node; counts what it sent."""

    def __init__(self, client, entities: list[str], count: int) -> None:
        super().__init__(daemon=True)
        self.client, self.entities, self.count = client, entities, count
        self.sent: Counter[str] = Counter()
        self.errors: list[BaseException] = []
        self.stop = threading.Event()

    def run(self) -> None:
        for _ in range(self.count):
            if self.stop.is_set():
                return
            for eid in self.entities:
                try:
                    self.client.signal_entity(eid, "add", 1)
                    self.sent[eid] += 1
                except BaseException as exc:  # the test reports it
                    self.errors.append(exc)
                    return
            time.sleep(0.01)


def spread_ids(pool_size: int, per_host: int) -> list[str]:
    """Instance ids, ``per_host`` for each pool host, in turn (host 0, 1, 2, 0, 1, ...)."""
    by_host: dict[int, list[str]] = {i: [] for i in range(pool_size)}
    n = 0
    while any(len(v) < per_host for v in by_host.values()):
        iid = f"i-{uuid.uuid4().hex[:8]}"
        index = pool_index(iid, pool_size)
        if len(by_host[index]) < per_host:
            by_host[index].append(iid)
        n += 1
    return [by_host[i][k] for k in range(per_host) for i in range(pool_size)]


def test_a_lost_worker_nodes_instances_and_entities_resume_on_survivors(cluster, postgres):
    hub, store = hub_name(), postgres.database()
    # Six pool hosts spread over three nodes: two on each (Ray's SPREAD takes turns).
    rt = start(hub, store, placement="pooled", pool_size=6)
    client = rt.client
    signaller = None
    try:
        ids = spread_ids(6, 2)  # two instances on each pool host, wherever it lives
        chains = [client.start_new(cd.slow_chain, input=(6, 0.4), instance_id=i) for i in ids[:8]]
        fans = [client.start_new(cd.slow_fan_out, input=(6, 0.4), instance_id=i) for i in ids[8:]]
        iids = chains + fans
        entities = ["Tally@a", "Tally@b", "ZoneTally@eu"]
        signaller = Signaller(client, entities, count=150)
        signaller.start()
        wait_until(lambda: all(n >= 3 for n in history_lengths(store, iids).values()), timeout=120)

        victim_id = client.call_entity("ZoneTally@eu", "node")
        victim = next(n for n in cluster.workers if cluster.node_id(n) == victim_id)
        on_victim = {
            name for name, node in hub_actor_nodes(cluster, hub).items() if node == victim_id
        }
        hosts = dict(query_store(store, "SELECT instance_id, host FROM instances"))
        lost = [iid for iid in iids if hosts[iid] in on_victim]
        assert lost, f"no instance lived on the victim node: {hub_actor_nodes(cluster, hub)}"
        print(f"\n{len(lost)} of {len(iids)} instances on the lost node, with {on_victim}")
        killed_at = cluster.kill(victim)
        before = history_lengths(store, lost)  # its processes are dead: nothing more from them
        wait_until(lambda: any(n > before[i] for i, n in history_lengths(store, lost).items()), 120)
        first = time.monotonic() - killed_at
        wait_until(lambda: all(n > before[i] for i, n in history_lengths(store, lost).items()), 120)
        every = time.monotonic() - killed_at
        print(f"\nnode loss: first progress after {first:.1f} s, all {len(lost)}: {every:.1f} s")

        for iid in chains:
            state = client.wait_for_completion(iid, timeout=180)
            assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
            assert state.output == 6
            assert_no_duplicate_completions(client, iid)
        for iid in fans:
            assert client.wait_for_completion(iid, timeout=180).output == sum(range(1, 7))
            assert_no_duplicate_completions(client, iid)
        signaller.join(timeout=180)
        assert not signaller.errors, signaller.errors
        for eid in entities:
            assert client.call_entity(eid, "get") == signaller.sent[eid] == 150, eid
        survivor = client.call_entity("ZoneTally@eu", "node")
        assert survivor != victim_id and survivor in {cluster.node_id(n) for n in cluster.workers}
    finally:
        if signaller is not None:
            signaller.stop.set()
            signaller.join(timeout=60)
        rt.shutdown()


def test_a_whole_cluster_restarted_on_the_same_database_resumes_every_instance(cluster, postgres):
    hub, store = hub_name(), postgres.database()
    rt = start(hub, store, placement="pooled", pool_size=3)
    waiting = [rt.client.start_new(cd.wait_for_go) for _ in range(3)]
    chains = [rt.client.start_new(cd.slow_chain, input=(5, 0.5)) for _ in range(3)]
    for i in range(10):
        rt.client.signal_entity("Tally@kept", "add", i)
    wait_until(lambda: all(n >= 3 for n in history_lengths(store, chains).values()), timeout=120)

    cluster.restart()  # every node and process at once, the hub not shut down
    rt = start(hub, store, placement="pooled", pool_size=3)
    try:
        for iid in chains:
            state = rt.client.wait_for_completion(iid, timeout=180)
            assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
            assert state.output == 5
            assert_no_duplicate_completions(rt.client, iid)
        for n, iid in enumerate(waiting):
            rt.client.raise_event(iid, "go", n)
            assert rt.client.wait_for_completion(iid, timeout=60).output == n
        assert rt.client.call_entity("Tally@kept", "get") == sum(range(10))
    finally:
        rt.shutdown()


# -- the deployment examples ---------------------------------------------------------------------

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "cluster"


def test_a_batch_submitted_as_a_ray_job_and_a_second_driver_signalling_its_hub(cluster, tmp_path):
    from ray.job_submission import JobStatus, JobSubmissionClient

    hub, store = hub_name(), f"sqlite:///{tmp_path / 'hub.db'}"
    jobs = JobSubmissionClient(cluster.dashboard)

    def submit() -> str | None:
        try:
            return jobs.submit_job(
                entrypoint=f"python batch_job.py --n 2000 --hub {hub} --store {store}",
                runtime_env={"working_dir": str(EXAMPLES)},
            )
        except RuntimeError as exc:  # the head's job agent registers a little after start
            if "No available agent" not in str(exc):
                raise
            return None

    job = wait_until(submit, timeout=120, every=1.0)
    done = {JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.STOPPED}
    wait_until(lambda: jobs.get_job_status(job) in done, timeout=300, every=0.5)
    logs = jobs.get_job_logs(job)
    assert jobs.get_job_status(job) == JobStatus.SUCCEEDED, logs
    assert "check:      total matches" in logs and f"hub:        {hub}" in logs

    # Another process on the cluster signals the hub the job left running.
    second = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "signal_entities.py"),
            "--address",
            cluster.address,
            "--hub",
            hub,
            "--store",
            store,
            "--keys",
            "3",
            "--signals",
            "300",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert second.returncode == 0, second.stderr
    assert [line for line in second.stdout.splitlines() if line.startswith("Tally@")] == [
        "Tally@k0: +100",
        "Tally@k1: +100",
        "Tally@k2: +100",
    ]
    rt = Runtime.start(hub=hub, store=store)  # attaches to the running hub
    try:
        assert rt.client.call_entity("Tally@k1", "get") == 100
    finally:
        rt.shutdown()
