"""How soon the instances of a lost node make progress again (median of --repeats).

A local multi-node cluster (a head node and three worker nodes, each its own raylet:
tests/multinode.py, with its tuned health checks) and a pooled hub on a throw-away
PostgreSQL server (tests/postgres_server.py). Each repeat starts chains of short
activities on every pool host, kills the worker node that holds the most of them (its
raylet and every process on it) and times, from the kill, the first and the last of that
node's instances to commit a new step; a fresh worker node then takes the lost one's place.

    python benchmarks/bench_node_loss.py --repeats 5
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import uuid
from collections import Counter

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
sys.path.insert(0, TESTS)
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (TESTS, os.path.dirname(TESTS), os.environ.get("PYTHONPATH", "")) if p
)

import cluster_defs as cd  # noqa: E402
from helpers import history_lengths, wait_until  # noqa: E402
from multinode import HEALTH_CHECKS, LocalCluster, actor_nodes  # noqa: E402
from postgres_server import PostgresServer  # noqa: E402

from runtime import Runtime  # noqa: E402
from runtime.actors.routing import pool_index  # noqa: E402

WORKER = {"num_cpus": 1}


def one_loss(cluster: LocalCluster, store: str, pool_size: int) -> tuple[float, float, int]:
    """(first progress s, last progress s, instances lost) for one killed worker node."""
    hub = f"b-{uuid.uuid4().hex[:8]}"
    rt = Runtime.start(
        hub=hub, store=store, placement="pooled", pool_size=pool_size, register=cd.ALL
    )
    try:
        iids = [f"i-{uuid.uuid4().hex[:8]}" for _ in range(4 * pool_size)]
        for iid in iids:
            rt.client.start_new(cd.slow_chain, input=(20, 0.2), instance_id=iid)
        wait_until(lambda: all(n >= 3 for n in history_lengths(store, iids).values()), timeout=120)
        nodes = actor_nodes(cluster.dashboard, f"{hub}/pool-")
        workers = {cluster.node_id(n): n for n in cluster.workers}
        count = Counter(node for node in nodes.values() if node in workers)
        victim_id = count.most_common(1)[0][0]
        lost_hosts = {name for name, node in nodes.items() if node == victim_id}
        lost = [i for i in iids if f"{hub}/pool-{pool_index(i, pool_size)}" in lost_hosts]
        killed_at = cluster.kill(workers[victim_id])
        before = history_lengths(store, lost)
        cluster.wait_dead(workers[victim_id])
        dead = time.monotonic() - killed_at

        def back() -> bool:
            now = actor_nodes(cluster.dashboard, f"{hub}/pool-")
            return all(now.get(name) not in (None, victim_id) for name in lost_hosts)

        wait_until(back, timeout=120, every=0.1)
        hosts_back = time.monotonic() - killed_at
        moved = lambda: {i for i, n in history_lengths(store, lost).items() if n > before[i]}  # noqa: E731
        wait_until(lambda: moved(), timeout=120, every=0.02)
        first = time.monotonic() - killed_at
        wait_until(lambda: moved() == set(lost), timeout=120, every=0.02)
        last = time.monotonic() - killed_at
        print(f"  node dead after {dead:.2f} s, its hosts alive elsewhere after {hosts_back:.2f} s")
        return first, last, len(lost)
    finally:
        rt.shutdown()
        cluster.workers.append(cluster.cluster.add_node(**WORKER))
        cluster.cluster.wait_for_nodes()


def main() -> None:
    """Run the repeats and print the medians."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pool-size", type=int, default=4)
    args = parser.parse_args()
    server = PostgresServer()
    cluster = LocalCluster(workers=[WORKER] * 3)
    firsts, lasts = [], []
    try:
        for repeat in range(args.repeats):
            first, last, lost = one_loss(cluster, server.database(), args.pool_size)
            firsts.append(first)
            lasts.append(last)
            print(
                f"repeat {repeat + 1}: {lost} instances lost; first progress {first:.2f} s, "
                f"all {last:.2f} s",
                flush=True,
            )
    finally:
        cluster.shutdown()
        server.close()
    print(f"health checks: {HEALTH_CHECKS}")
    print(
        f"median over {args.repeats}: first progress {statistics.median(firsts):.2f} s, "
        f"every lost instance {statistics.median(lasts):.2f} s"
    )


if __name__ == "__main__":
    main()
