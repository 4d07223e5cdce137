"""Runtime: start (or attach to) a task hub from a driver."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, cast

import ray

from .client import DurableClient
from .cluster import init_ray
from .config import HubConfig
from .errors import HubConfigError, HubLeaseHeldError
from .routing import NAMESPACE
from .supervisor import Supervisor, supervisor_name

#: ``ray.remote`` classes carry ``.options`` that type checkers don't see.
_SUPERVISOR_ACTOR: Any = Supervisor


class Runtime:
    """A started task hub: its configuration, its supervisor and a client."""

    def __init__(self, config: HubConfig, supervisor: Any) -> None:
        self.config = config
        self.supervisor = supervisor
        self.client = DurableClient(config.hub, supervisor)

    @classmethod
    def start(
        cls,
        hub: str | None = None,
        *,
        config: HubConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None,
        register: Iterable[Any] = (),
        clock: Callable[[], float] | None = None,
        address: str | None = None,
        **settings: Any,
    ) -> Runtime:
        """Start local Ray if needed, then create the hub's supervisor or attach to it.

        ``config`` is a ``durable.yaml`` path, a mapping or a HubConfig; ``hub``,
        ``address`` (``ray.address``) and ``settings`` (any HubConfig field: ``store``,
        ``placement``, ``pool_size``, ``passivate_after``, ``durability``, ``warm_hosts``,
        ``http``, ``activity_defaults``, ``ray``) override its values.
        """
        if hub is not None:
            settings["hub"] = hub
        config = HubConfig.load(config, **settings)
        if address is not None:
            config = replace(config, ray=replace(config.ray, address=address))
        hub = config.hub
        if not ray.is_initialized():
            # A clear ClusterNotFoundError, not minutes of ray.init retrying a dead address.
            init_ray(config.ray.address, namespace=config.ray.namespace)
        name = supervisor_name(hub)
        try:
            supervisor = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            supervisor = _SUPERVISOR_ACTOR.options(
                name=name,
                namespace=NAMESPACE,
                lifetime="detached",
                get_if_exists=True,
                max_restarts=-1,
                max_task_retries=0,
                max_concurrency=100_000,
            ).remote(config.to_dict(), clock)
        try:
            running = cast(dict[str, Any], ray.get(supervisor.hub_config.remote()))
        except ray.exceptions.RayTaskError as exc:
            if isinstance(exc.cause, HubLeaseHeldError):
                _discard(supervisor, name)
                raise exc.cause from None
            raise
        except ray.exceptions.ActorDiedError as exc:
            # Its constructor raised (the store cannot be opened, ...): say why, in our terms.
            lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
            raise HubConfigError(
                f"the supervisor of task hub {hub!r} could not start on store "
                f"{config.store!r}: {lines[-1] if lines else 'it died'}"
            ) from None
        if running["store"] != config.store:
            raise HubConfigError(
                f"hub {hub!r} is already running on store {running['store']!r}, "
                f"not {config.store!r}; stop it first or pick another hub name"
            )
        ray.get(supervisor.ready.remote())
        attach = getattr(clock, "attach", None)  # a ManualClock follows its hub
        if attach is not None:
            attach(hub)
        # http and ray say how this driver reaches the hub, not what the hub is: keep ours.
        running_config = replace(HubConfig.from_dict(running), http=config.http, ray=config.ray)
        runtime = cls(running_config, supervisor)
        runtime.register(*register)
        return runtime

    def register(self, *objects: Any) -> None:
        """Register orchestrators, activities and entities with the hub."""
        if objects:
            self.client.register(*objects)

    def shutdown(self) -> None:
        """Stop the hub's actors; the store keeps every instance for the next start."""
        try:
            ray.get(self.supervisor.shutdown.remote())
        finally:
            ray.kill(self.supervisor, no_restart=True)


def _discard(supervisor: Any, name: str, timeout: float = 10.0) -> None:
    """Kill a refused supervisor and wait until its name is free for the next start."""
    ray.kill(supervisor, no_restart=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            return
        time.sleep(0.05)
