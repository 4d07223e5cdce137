"""What the test environment reports: the same classes a hub's client returns."""

from __future__ import annotations

from ..states import EntityStateResponse, OrchestrationState, state_of

#: The very classes the Ray client returns (``runtime.states`` is pure).
InstanceState = OrchestrationState
EntityState = EntityStateResponse
instance_state = state_of
