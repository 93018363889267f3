"""A registry is a dict plus a decorator that refuses duplicates; unknown lookups list the known names."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .config import known

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def deco(obj: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj
        return deco

    def get(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise known(self.kind, name, self._items) from None

    def names(self) -> list[str]:
        return sorted(self._items)
