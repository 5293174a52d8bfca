"""Read-only records for the SDK's declarations.

Plain classes with ``__slots__`` instead of frozen dataclasses: a dataclass generates its
methods with ``exec`` when its module is imported, about a millisecond a class, and every
plugin module imports these on each start of nself.
"""

from __future__ import annotations

from typing import Any


class Record:
    """Fields named in ``__slots__``, set once by ``__init__`` through ``fill``; compared
    and hashed by identity (a plugin object is registered by it)."""

    __slots__ = ()

    def fill(self, values: dict[str, Any]) -> None:
        """Set every slot from ``values`` (an ``__init__``'s ``locals()``)."""
        for name in self.fields():
            object.__setattr__(self, name, values[name])

    def fields(self) -> list[str]:
        return [n for cls in reversed(type(self).__mro__) for n in vars(cls).get("__slots__", ())]

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is read-only: {name} cannot be set")

    def __repr__(self) -> str:
        shown = ", ".join(f"{n}={getattr(self, n)!r}" for n in self.fields())
        return f"{type(self).__qualname__}({shown})"
