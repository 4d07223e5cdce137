"""A large fan-out on a local multi-node cluster: ray-durable against plain Ray tasks there.

The cluster is a head node and worker nodes, each its own raylet with one CPU
(tests/multinode.py). The hub is pooled on a SQLite store, so the supervisor and its
hosts live on the head (the file's node) while the activities run on every node; plain
Ray runs the same trivial tasks on the same cluster in the same run. It reports
activities/s of both, the history's rows and bytes, and the pool host's peak RSS.

    python benchmarks/bench_cluster_fan_out.py --n 100000
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

TESTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests")
sys.path.insert(0, TESTS)

import ray  # noqa: E402
from bench_orchestrations import PeakSampler, fan_out, history_bytes, inc, plain_inc  # noqa: E402
from multinode import LocalCluster  # noqa: E402

from runtime import OrchestrationStatus, Runtime  # noqa: E402


def main() -> None:
    """Run plain Ray, then the durable fan-out, on one cluster; print both."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--workers", type=int, default=2, help="worker nodes beside the head")
    parser.add_argument("--pool-size", type=int, default=2)
    args = parser.parse_args()
    cluster = LocalCluster(workers=[{"num_cpus": 1}] * args.workers)
    try:
        with tempfile.TemporaryDirectory(prefix="bench-cluster-") as tmp:
            run(args, f"sqlite:///{tmp}/hub.db")
    finally:
        cluster.shutdown()


def run(args: argparse.Namespace, store: str) -> None:
    """One plain and one durable fan-out of ``args.n``."""
    n = args.n
    ray.get([plain_inc.remote(i) for i in range(100)])  # workers started on every node
    started = time.perf_counter()
    assert sum(ray.get([plain_inc.remote(i) for i in range(n)])) == sum(range(1, n + 1))
    plain = n / (time.perf_counter() - started)
    print(f"plain Ray: {n:,} tasks at {plain:,.0f}/s", flush=True)

    rt = Runtime.start(
        hub="bench-cluster",
        store=store,
        placement="pooled",
        pool_size=args.pool_size,
        register=[fan_out, inc],
    )
    try:
        warm = rt.client.start_new(fan_out, 100)
        rt.client.wait_for_completion(warm, timeout=120)
        started = time.perf_counter()
        iid = rt.client.start_new(fan_out, n)
        host = rt.client.host_of(iid)
        sampler = PeakSampler(ray.get(host.pid.remote()))
        state = rt.client.wait_for_completion(iid, timeout=3_600)
        durable = n / (time.perf_counter() - started)
        peak = sampler.stop() or 0
        assert state.runtime_status == OrchestrationStatus.COMPLETED, state.failure_details
        assert state.output == sum(range(1, n + 1)), state.output
        rows, size = history_bytes(rt, iid)
    finally:
        rt.shutdown()
    nodes = len([node for node in ray.nodes() if node["Alive"]])
    print(
        f"durable:   {n:,} activities at {durable:,.0f}/s ({durable / plain:.2f}x plain Ray) "
        f"on {nodes} nodes"
    )
    print(f"history:   {rows:,} rows, {size / 1e6:,.1f} MB ({size / n:,.0f} bytes per activity)")
    print(f"host:      peak RSS {peak / 1024:,.0f} MiB (VmHWM of the pool host)")


if __name__ == "__main__":
    main()
