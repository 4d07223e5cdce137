"""Which Ray cluster a driver joins, and the record of where ``durable serve`` serves a hub.

``ray.init`` waits for minutes on an address where no cluster runs, also on one it read
from the ``ray_current_cluster`` file that an earlier ``ray start`` left behind.
``init_ray`` first checks that something listens there and raises ClusterNotFoundError,
naming the address and where it came from, when nothing does.

With several Ray clusters on one machine (a notebook's ``ray.init()`` is enough), "the
local cluster" is any of them. ``durable serve`` therefore records the cluster it serves a
hub on in a small JSON file beside the hub's SQLite file (``.<db file>.<hub>.serve.json``),
and the CLI connects to that cluster when it is given no address.
"""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

import ray

from ..errors import ClusterNotFoundError

#: How long a check waits for the cluster's GCS port to accept a connection (seconds).
PROBE_SECONDS = 2.0
RECORD_SUFFIX = ".serve.json"


@dataclass(frozen=True)
class Target:
    """The cluster ``ray.init(address=...)`` would join: its address and where it came from."""

    address: str | None  # host:port (or ray://...); None: ray.init starts a Ray of its own
    origin: str


def ray_address_file() -> str:
    """The file in which ``ray start`` records the latest cluster it started."""
    try:
        from ray._common.utils import get_ray_address_file  # private: no public getter

        return get_ray_address_file(None)
    except (ImportError, AttributeError):
        base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        return os.path.join(base, "ray", "ray_current_cluster")


def resolve(address: str | None) -> Target:
    """What ``ray.init(address=address)`` will connect to, as Ray decides it."""
    if address == "local":
        return Target(None, "a new local Ray")
    if address not in (None, "auto"):
        return Target(address, "")
    env = os.environ.get("RAY_ADDRESS", "")
    if env:
        return Target(env, "from the RAY_ADDRESS environment variable")
    path = ray_address_file()
    try:
        with open(path) as f:
            recorded = f.read().strip()
    except OSError:
        recorded = ""
    if recorded:
        return Target(recorded, f"recorded in {path} by an earlier 'ray start'")
    if address == "auto":
        # Ray picks any GCS process it finds running on this machine, or fails at once.
        return Target("auto", "any Ray cluster running on this machine")
    return Target(None, "a new local Ray")


def _host_port(address: str) -> tuple[str, int] | None:
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit():
        return None  # not host:port: ray.init says what is wrong with it
    return host.strip("[]") or "127.0.0.1", int(port)


def check_running(target: Target) -> None:
    """Raise ClusterNotFoundError unless something listens at the target's address."""
    if target.address in (None, "auto"):
        return
    where = _host_port(target.address)
    if where is None:
        return
    try:
        socket.create_connection(where, timeout=PROBE_SECONDS).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, TimeoutError):
            reason = f"nothing answered within {PROBE_SECONDS:g} s"
        raise ClusterNotFoundError(target.address, target.origin, reason) from None


def init_ray(address: str | None, **options: Any) -> None:
    """``ray.init(address=address, **options)``, failing at once where no cluster runs."""
    if ray.is_initialized():
        return
    target = resolve(address)
    check_running(target)
    try:
        ray.init(address=address, **options)
    except ConnectionError as exc:  # e.g. "auto" and no cluster at all on this machine
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ClusterNotFoundError(target.address or "local", target.origin, first) from None


def current_address() -> str:
    """The GCS address of the cluster this driver is connected to."""
    return ray.get_runtime_context().gcs_address


# -- the record of a served hub ---------------------------------------------------------


@dataclass(frozen=True)
class ServeRecord:
    """Where ``durable serve`` serves a hub: its Ray cluster, its process, its HTTP API."""

    hub: str
    store: str
    ray_address: str
    pid: int
    host: str
    started_at: float
    http_url: str | None = None
    log_dir: str | None = None

    def stale_reason(self) -> str | None:
        """Why the record no longer describes a running server, or None if it may."""
        if self.host != socket.gethostname():
            return None  # another machine's process: only its cluster's answer tells
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return f"its 'durable serve' (pid {self.pid}) is no longer running"
        except PermissionError:
            pass  # alive, another user's
        return None


def record_path(store: str, hub: str) -> str | None:
    """The record file of ``hub`` on ``store``; None for stores that are not a file."""
    if not store.startswith("sqlite:///"):
        return None
    directory, name = os.path.split(store[len("sqlite:///") :])
    return os.path.join(directory, f".{name}.{hub}{RECORD_SUFFIX}")


def write_record(
    hub: str, store: str, *, http_url: str | None = None, log_dir: str | None = None
) -> ServeRecord | None:
    """Record that this process serves ``hub`` on the cluster it is connected to."""
    path = record_path(store, hub)
    if path is None:
        return None
    record = ServeRecord(
        hub=hub,
        store=store,
        ray_address=current_address(),
        pid=os.getpid(),
        host=socket.gethostname(),
        started_at=time.time(),
        http_url=http_url,
        log_dir=log_dir,
    )
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(asdict(record), f, indent=2)
    os.replace(tmp, path)  # a reader sees the old record or the new one, never half
    return record


def read_record(store: str, hub: str) -> ServeRecord | None:
    """The record ``durable serve`` left for ``hub`` on ``store``, if any (None if unreadable)."""
    path = record_path(store, hub)
    if path is None:
        return None
    try:
        with open(path) as f:
            values = json.load(f)
        return ServeRecord(**values)
    except (OSError, ValueError, TypeError):
        return None


def remove_record(record: ServeRecord | None) -> None:
    """Remove the record if it is still this one (a later server may have replaced it)."""
    if record is None:
        return
    path = record_path(record.store, record.hub)
    if path is not None and read_record(record.store, record.hub) == record:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass
