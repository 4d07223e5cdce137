"""A real multi-node Ray cluster on this machine: one raylet per node, killed for real.

Each node is a raylet of its own with its own workers (``ray.cluster_utils.Cluster``, as
Ray's own tests do). The session's local Ray is stopped first: two clusters on two cores
make timing-sensitive tests flaky, and a driver joins one cluster at a time.
"""

from __future__ import annotations

import time
from typing import Any

import psutil
import ray
from helpers import free_port, start_ray, wait_until
from ray._private import ray_constants
from ray.cluster_utils import Cluster

#: Ray's node health checks, tuned so that a killed node is declared dead in about 1.5 s
#: instead of the default 15 s (period 3 s x 5 failures). The same settings go to
#: ``ray start`` as RAY_health_check_* environment variables (README, "Deploy on a Ray cluster").
HEALTH_CHECKS = {
    "health_check_initial_delay_ms": 1000,
    "health_check_period_ms": 500,
    "health_check_timeout_ms": 500,
    "health_check_failure_threshold": 3,
}


class LocalCluster:
    """A head node (this driver's) and worker nodes, each with its own CPUs and resources."""

    def __init__(self, workers: list[dict[str, Any]], head_cpus: int = 1) -> None:
        self._args = (workers, head_cpus)
        if ray.is_initialized():
            ray.shutdown()
        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={
                "num_cpus": head_cpus,
                "dashboard_port": free_port(),
                # Ray's fixed default port may be another Ray's on this machine: no job agent.
                "dashboard_agent_listen_port": free_port(),
                "_system_config": dict(HEALTH_CHECKS),  # Ray adds its own keys to it
            },
        )
        #: The state API's address: this cluster's, not another one on this machine.
        self.dashboard = f"http://{self.cluster.webui_url}"
        self.workers = [self.cluster.add_node(**options) for options in workers]
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address)
        self.address = self.cluster.address
        self.head_id = ray.get_runtime_context().get_node_id()

    @staticmethod
    def node_id(node: Any) -> str:
        """The Ray node id of one of our nodes."""
        return str(node.node_id)

    def kill(self, node: Any) -> float:
        """Kill a worker node (its raylet and every process on it); when it was killed.

        ``remove_node`` kills the raylet and its services; its workers would notice and
        exit a moment later, and meanwhile still answer calls made to them directly.
        A lost machine takes them at once: they are killed too.
        """
        raylet = node.all_processes[ray_constants.PROCESS_TYPE_RAYLET][0].process.pid
        workers = psutil.Process(raylet).children(recursive=True)
        killed_at = time.monotonic()
        for worker in workers:
            try:
                worker.kill()
            except psutil.NoSuchProcess:
                pass
        self.cluster.remove_node(node, allow_graceful=False)
        return killed_at

    def wait_dead(self, node: Any) -> None:
        """Until Ray's health checks have declared the node dead."""
        nid = self.node_id(node)
        wait_until(
            lambda: any(n["NodeID"] == nid and not n["Alive"] for n in ray.nodes()), timeout=60
        )

    def shutdown(self) -> None:
        """Stop the driver and every node (as a whole-cluster loss does)."""
        ray.shutdown()
        self.cluster.shutdown()

    def restart(self) -> None:
        """Kill every node at once, then start a new cluster of the same shape in its place."""
        self.shutdown()
        self.__init__(*self._args)  # type: ignore[misc]


def actor_nodes(dashboard: str, prefix: str) -> dict[str, str]:
    """Live actors whose name starts with ``prefix``: name -> node id."""
    from ray.util.state import list_actors

    alive = [("state", "=", "ALIVE")]
    actors = list_actors(dashboard, filters=alive, limit=10_000, raise_on_missing_output=False)
    return {a.name: a.node_id for a in actors if a.name and a.name.startswith(prefix)}


def back_to_session_ray() -> None:
    """The session's local Ray again, for the modules after this one."""
    start_ray()
