"""Durable entities for ray-durable (programming model; see the entities issue)."""

__all__: list[str] = []
