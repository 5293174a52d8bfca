"""The plain data the kernel itself reads: settings, generated files, problems, and the
stack it assembles. What a service, route or migration is, the SDK says
(``nself_sdk.model``): the kernel only keeps one owner per service name and subdomain."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar


class Shown:
    """The usual dataclass ``repr``, shared instead of generated per class.

    Generating ``__repr__`` (and the other methods) for each dataclass is most of what
    importing this module costs, and it is imported on every start of nself.
    """

    __slots__ = ()

    def __repr__(self) -> str:
        from dataclasses import fields

        shown = ", ".join(f"{f.name}={getattr(self, f.name)!r}" for f in fields(self))  # type: ignore[arg-type]
        return f"{type(self).__qualname__}({shown})"


Level = Literal["error", "warning"]


@dataclass(frozen=True, repr=False)
class Setting(Shown):
    """An env variable a plugin reads: documented, defaulted, generated if secret (the
    SDK's ``Setting`` adds what only plugins read).

    A name may stand for a family: ``<N>`` is any number and a trailing ``<NAME>`` any
    name (``CS_<N>_ENV_<NAME>``). Such a template documents the family and tells
    ``nself build`` the names are known; it has no default.
    """

    name: str
    default: str | None = None
    description: str = ""
    secret: bool = False
    # How `nself init` / `nself secrets generate` make a value: "token", "password" or "hex".
    generate: str | None = None


@dataclass(frozen=True, repr=False)
class GeneratedFile(Shown):
    """A file ``nself build`` writes, relative to the project folder."""

    path: str
    content: str | bytes
    mode: int = 0o644
    # Written once and then left alone (e.g. a dev certificate).
    keep_existing: bool = False
    # ``${NAME}`` in the content refers to settings, resolved from .env.computed at run time.
    env_refs: bool = False


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
    """Everything the plugins contributed for one build, after the kernel checked it: the
    SDK's ``Stack`` is this one of its ``Service``, ``Route`` and ``Migration``."""

    services: list[S]
    routes: list[R]
    migrations: list[M]
    owners: dict[str, str] = field(default_factory=dict)

    def service(self, name: str) -> S | None:
        return next((s for s in self.services if getattr(s, "name", None) == name), None)
