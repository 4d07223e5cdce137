"""EntityId: the identity of a durable entity, written ``name@key``."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import DurableError


class InvalidEntityIdError(DurableError, ValueError):
    """A string is not a valid ``name@key`` entity id."""

    def __init__(self, text: str, why: str) -> None:
        super().__init__(text, why)
        self.text = text
        self.why = why

    def __str__(self) -> str:
        return f"invalid entity id {self.text!r}: {self.why} (expected 'name@key')"


@dataclass(frozen=True, order=True)
class EntityId:
    """An entity's name (its type) and key (which one)."""

    name: str
    key: str

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name or "@" in self.name:
            raise InvalidEntityIdError(
                f"{self.name}@{self.key}", "the name must be non-empty and contain no '@'"
            )
        if not isinstance(self.key, str) or not self.key:
            raise InvalidEntityIdError(f"{self.name}@{self.key}", "the key must be non-empty")
        if "\x00" in self.name or "\x00" in self.key:
            # PostgreSQL's text cannot hold NUL: refused on every store.
            raise InvalidEntityIdError(f"{self.name}@{self.key}", "NUL is not allowed")

    def __str__(self) -> str:
        return f"{self.name}@{self.key}"

    @classmethod
    def parse(cls, text: str) -> EntityId:
        """Parse ``name@key`` (the key may itself contain '@')."""
        if not isinstance(text, str) or "@" not in text:
            raise InvalidEntityIdError(str(text), "no '@' between name and key")
        name, key = text.split("@", 1)
        return cls(name, key)

    @classmethod
    def of(cls, value: EntityId | str) -> EntityId:
        """An EntityId from an EntityId or its string form."""
        return value if isinstance(value, EntityId) else cls.parse(value)
