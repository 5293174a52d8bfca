"""The template catalogue: ``templates/catalog.toml`` plus one folder per template."""

from __future__ import annotations

import difflib
import tomllib
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

TEMPLATES = Path(__file__).parent / "templates"
CATALOG = TEMPLATES / "catalog.toml"
SUFFIX = ".j2"
KINDS = ("web", "worker", "static")


@dataclass(frozen=True)
class Template:
    """One service template. ``name`` is a stable identifier users type."""

    name: str
    language: str
    description: str
    kind: str = "web"
    manifest: str = ""
    entry: str = ""
    compiled: bool = False
    websocket: bool = False
    env: dict[str, str] = field(default_factory=dict)
    # Stack services the template cannot work without (e.g. redis for queue workers).
    needs: tuple[str, ...] = ()

    @property
    def folder(self) -> Path:
        return TEMPLATES / self.name

    @property
    def public(self) -> bool:
        """Web services get a subdomain by default; workers stay internal."""
        return self.kind != "worker"

    def entry_path(self, ident: str) -> str:
        return self.entry.replace("__service_ident__", ident)

    def files(self) -> list[str]:
        """Template files relative to the template folder, ``.j2`` included, sorted."""
        return sorted(
            p.relative_to(self.folder).as_posix() for p in self.folder.rglob("*") if p.is_file()
        )

    def outputs(self, ident: str) -> list[str]:
        """The files a rendered service has (``ident``: its name as an identifier)."""
        return sorted(
            f.removesuffix(SUFFIX).replace("__service_ident__", ident) for f in self.files()
        )


@cache
def catalog() -> dict[str, Template]:
    with CATALOG.open("rb") as handle:
        raw = tomllib.load(handle)
    return {
        name: Template(name=name, **{**fields, "needs": tuple(fields.get("needs", ()))})
        for name, fields in sorted(raw.items())
    }


def suggest(name: str, limit: int = 3) -> list[str]:
    """The closest template names to a mistyped one."""
    names = list(catalog())
    close = difflib.get_close_matches(name.lower(), names, n=limit, cutoff=0.5)
    if not close:
        close = [n for n in names if name.lower() in n or n in name.lower()][:limit]
    return close
