"""The plain data the kernel reads: settings, generated files, problems, and the stack it
assembles (what a service, route or migration is, ``nself_sdk.model`` says)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar


class Shown:
    """The usual dataclass ``repr``, shared: generating one per class is most of what
    importing this module (on every start) would cost."""

    __slots__ = ()

    def __repr__(self) -> str:
        from dataclasses import fields

        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__qualname__}({shown})"


Level = Literal["error", "warning"]


@dataclass(frozen=True, repr=False)
class Setting(Shown):
    """An env variable a plugin reads: documented, defaulted, generated if secret. A name
    may stand for a family, ``<N>`` any number and a trailing ``<NAME>`` any name
    (``CS_<N>_ENV_<NAME>``); such a template has no default."""

    name: str
    default: str | None = None
    description: str = ""
    secret: bool = False
    generate: str | None = None  # how a value is made: "token", "password" or "hex"


@dataclass(frozen=True, repr=False)
class GeneratedFile(Shown):
    """A file ``nself build`` writes, relative to the project folder."""

    path: str
    content: str | bytes
    mode: int = 0o644
    keep_existing: bool = False  # written once, then left alone (a dev certificate)
    env_refs: bool = False  # ``${NAME}`` in it is resolved from .env.computed at run time


@dataclass(frozen=True, repr=False)
class Problem(Shown):
    """A finding of a ``validate_*`` hook; any error stops the build."""

    level: Level
    message: str
    hint: str | None = None


S = TypeVar("S")
R = TypeVar("R")
M = TypeVar("M")


@dataclass(repr=False)
class Stack(Shown, Generic[S, R, M]):
    """What the plugins contributed for one build, one owner per name (the SDK's ``Stack``
    is this one of its ``Service``, ``Route`` and ``Migration``)."""

    services: list[S]
    routes: list[R]
    migrations: list[M]
    owners: dict[str, str] = field(default_factory=dict)

    def service(self, name: str) -> S | None:
        return next((s for s in self.services if getattr(s, "name", None) == name), None)
