"""The one registry mechanism: named classes (trackers, DVAE models, likelihoods) looked up by their names.

A :class:`Registry` is a ``dict`` (name -> class) with a decorator to add to it and a lookup whose error lists
what is registered::

    TRACKERS = Registry("tracker")

    @TRACKERS.register
    class MyTracker(Tracker):
        name = "mine"

    TRACKERS.get("mine")  # the class; an unknown name is a ConfigError naming the known ones
"""

from __future__ import annotations

from typing import TypeVar

from mixdvae.errors import ConfigError

T = TypeVar("T")


class Registry(dict):
    """Name -> class. ``kind`` words the error message; ``key`` is the class attribute holding its name."""

    def __init__(self, kind: str, key: str = "name"):
        super().__init__()
        self.kind = kind
        self.key = key

    def register(self, cls: T) -> T:
        """Class decorator: add ``cls`` under ``getattr(cls, key)``."""
        self[getattr(cls, self.key)] = cls
        return cls

    def get(self, name: str):  # noqa: D102 - a lookup that explains itself when it fails
        if name not in self:
            raise ConfigError(f"unknown {self.kind} {name!r}; known: {', '.join(sorted(self))}")
        return self[name]
