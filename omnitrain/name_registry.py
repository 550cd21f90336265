"""One registry class for everything the core looks up by name: each slot's plugins,
strategies, checkpoint readers, Hugging Face formats, a run's named losses and eval's scorers.

Every registry refuses a second, different thing under a taken name (saying who registered
both), answers an unknown name with the closest registered one and the whole list, and
keeps the order things were registered in (checkpoint readers are tried in that order).
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from typing import Generic, TypeVar

T = TypeVar("T")


class RegistryError(KeyError):
    """A lookup or registration error whose message says what to change."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable
        return str(self.args[0])


def origin_of(thing: object) -> str:
    """``module.QualName`` of a class, or of an instance's class: who registered it."""
    cls = thing if isinstance(thing, type) else type(thing)
    return f"{cls.__module__}.{cls.__qualname__}"


class Registry(Generic[T]):
    """Things of one ``kind`` (``"strategy"``, ``"thinker plugin"``) by name.

    ``advice`` ends the unknown-name error: how a user adds one of their own.
    """

    def __init__(self, kind: str, advice: str = "") -> None:
        self.kind, self.advice = kind, advice
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}

    def add(self, name: str, item: T, origin: str | None = None) -> T:
        """Register ``item`` as ``name``. The same origin again (a module imported twice)
        replaces it; another origin under a taken name is an error."""
        origin = origin or origin_of(item)
        old = self._origins.get(name)
        if old is not None and old != origin:
            raise RegistryError(f"{self.kind} '{name}' is registered twice: by {old} and by {origin}. "
                                "Rename one of them.")
        self._items[name], self._origins[name] = item, origin
        return item

    def get(self, name: str) -> T:
        if name not in self._items:
            raise RegistryError(self.unknown(name))
        return self._items[name]

    def unknown(self, name: object) -> str:
        """The error for an unknown ``name``: the closest registered name and all of them."""
        hint = difflib.get_close_matches(str(name), list(self._items), n=1)
        maybe = f" (did you mean '{hint[0]}'?)" if hint else ""
        advice = f" {self.advice}" if self.advice else ""
        return f"unknown {self.kind} '{name}'{maybe}; registered: {self.names()}{advice}"

    def names(self) -> list[str]:
        return sorted(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, item) in registration order."""
        return list(self._items.items())

    def values(self) -> list[T]:
        return list(self._items.values())

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._items))

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, name: str) -> T:
        return self.get(name)
