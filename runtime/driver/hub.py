"""Runtime: start (or attach to) a task hub from a driver."""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from typing import Any, cast

from .. import tracing
from ..actors.ray_seam import (
    SupervisorHandle,
    TaskError,
    create_supervisor,
    durable_cause,
    find_actor,
    find_supervisor,
    get,
    gone_for_good,
    kill,
    supervisor_name,
)
from ..actors.supervisor import Supervisor
from ..config import HubConfig
from ..errors import HubConfigError, HubLeaseHeldError
from ..store import node_local
from .client import DurableClient
from .cluster import init_ray


class Runtime:
    """A started task hub: its configuration, its supervisor and a client."""

    def __init__(self, config: HubConfig, supervisor: SupervisorHandle) -> None:
        self.config = config
        #: The supervisor's raw Ray actor handle (tests and tools call it directly).
        self.supervisor = supervisor.actor
        self.client = DurableClient(config.hub, supervisor)
        self.client.tracer = tracing.tracer_for(config.tracing)

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
        ``payload_inline_limit``, ``http``, ``activity_defaults``, ``ray``) override its values.
        """
        if hub is not None:
            settings["hub"] = hub
        config = HubConfig.load(config, **settings)
        if address is not None:
            config = replace(config, ray=replace(config.ray, address=address))
        hub = config.hub
        # A clear ClusterNotFoundError, not minutes of ray.init retrying a dead address.
        init_ray(config.ray.address, namespace=config.ray.namespace)
        assert config.store is not None  # HubConfig fills in the default store
        supervisor = find_supervisor(hub) or create_supervisor(
            Supervisor, hub, config.to_dict(), clock, pin_here=node_local(config.store)
        )
        try:
            running = cast(dict[str, Any], get(supervisor.hub_config()))
        except TaskError as exc:
            refusal = durable_cause(exc)
            if isinstance(refusal, HubLeaseHeldError):
                _discard(supervisor, supervisor_name(hub))
                raise refusal from None
            raise
        except Exception as exc:
            if not gone_for_good(exc):
                raise
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
        get(supervisor.ready())
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
            get(self.client._supervisor.shutdown())
        finally:
            kill(self.supervisor)


def _discard(supervisor: SupervisorHandle, name: str, timeout: float = 10.0) -> None:
    """Kill a refused supervisor and wait until its name is free for the next start."""
    kill(supervisor.actor)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and find_actor(name) is not None:
        time.sleep(0.05)
