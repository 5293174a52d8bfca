"""The migrations a run knows: the project's files and the plugins' contributions.

Files: ``migrations/<version>_<name>/up.sql`` (and ``down.sql``) in the project; plugins
contribute theirs through ``contribute_migrations`` (the stack's ``migrations``). Each
becomes an ``Item``; ``ordered`` puts them in the order they run.
"""

from __future__ import annotations

import hashlib
import itertools
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from nself_sdk import DatabaseRole, Migration, NselfError, UsageError

from .sqltext import marked_no_transaction, statements

PROJECT = "project"
DIR_NAME = re.compile(r"^(\d+)_([A-Za-z0-9][A-Za-z0-9_]*)$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_]*$")


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def version_key(version: str) -> tuple[int, str]:
    return (int(version), version) if version.isdigit() else (1 << 62, version)


@dataclass(frozen=True)
class Item:
    """One migration known to this run: a project file or a plugin's contribution."""

    source: str
    version: str
    name: str
    up_sql: str
    down_sql: str | None
    transactional: bool
    where: str  # what messages call it: a file path or "plugin X migration V"
    depends_on: tuple[str, ...] = ()
    role: DatabaseRole | None = None  # a bundle's: runs as its own confined role

    @property
    def key(self) -> tuple[str, str]:
        return (self.source, self.version)

    @property
    def sha256(self) -> str:
        return sha256(self.up_sql)

    @property
    def label(self) -> str:
        prefix = "" if self.source == PROJECT else f"{self.source}:"
        return f"{prefix}{self.version}_{self.name}"


def all_migrations(project_dir: Path, contributed: Iterable[Migration]) -> list[Item]:
    """The project's files and the plugins' migrations (``Stack.migrations``), in run order."""
    return ordered(project_migrations(project_dir) + plugin_migrations(contributed))


def project_migrations(project_dir: Path) -> list[Item]:
    root = project_dir / "migrations"
    if not root.is_dir():
        return []
    items: list[Item] = []
    seen: dict[str, Path] = {}
    for folder in sorted(root.iterdir()):
        if folder.name.startswith(".") or not folder.is_dir():
            continue
        rel = folder.relative_to(project_dir)
        match = DIR_NAME.match(folder.name)
        if not match:
            raise NselfError(
                f"{rel}: a migration folder must be named <version>_<name>",
                "create migrations with `nself db migrate create NAME`",
            )
        version, name = match.groups()
        if int(version) in {int(v) for v in seen}:
            other = next(p for v, p in seen.items() if int(v) == int(version))
            raise NselfError(
                f"{rel} and {other.relative_to(project_dir)} have the same version {version}",
                "give one of them a new version (rename the folder)",
            )
        seen[version] = folder
        up = folder / "up.sql"
        if not up.is_file():
            raise NselfError(f"{rel}/up.sql is missing", "every migration needs an up.sql")
        up_sql = up.read_text(encoding="utf-8")
        down = folder / "down.sql"
        items.append(
            Item(
                source=PROJECT,
                version=version,
                name=name,
                up_sql=up_sql,
                down_sql=down.read_text(encoding="utf-8") if down.is_file() else None,
                transactional=not marked_no_transaction(up_sql),
                where=f"{rel}/up.sql",
            )
        )
    return items


def plugin_migrations(contributed: Iterable[Migration]) -> list[Item]:
    items = []
    for m in contributed:
        if m.source == PROJECT:
            raise NselfError(
                f"a plugin migration ({m.version} {m.name}) uses the reserved source 'project'",
                "set Migration.source to the plugin's name",
            )
        items.append(
            Item(
                source=m.source,
                version=m.version,
                name=m.name,
                up_sql=m.up_sql,
                down_sql=m.down_sql,
                transactional=m.transactional and not marked_no_transaction(m.up_sql),
                where=f"plugin {m.source} migration {m.version}_{m.name}",
                depends_on=tuple(m.depends_on),
                role=m.role,
            )
        )
    return items


def ordered(items: list[Item]) -> list[Item]:
    """Dependency order: each source in version order, ``depends_on`` across sources.

    ``depends_on`` entries name ``source`` (all of it), ``source:version`` or ``version``
    (same source). Ties are broken by version, then source, so the order is stable.
    """
    by_key = {i.key: i for i in items}
    if len(by_key) != len(items):
        dup = next(i for i in items if sum(j.key == i.key for j in items) > 1)
        raise NselfError(f"{dup.where}: version {dup.version} is used twice in {dup.source}")
    by_source: dict[str, list[Item]] = {}
    for item in sorted(items, key=lambda i: version_key(i.version)):
        by_source.setdefault(item.source, []).append(item)
    needs: dict[tuple[str, str], set[tuple[str, str]]] = {k: set() for k in by_key}
    for chain in by_source.values():
        for before, after in itertools.pairwise(chain):
            needs[after.key].add(before.key)
    for item in items:
        for dep in item.depends_on:
            src, _, ver = dep.partition(":") if ":" in dep else ("", "", dep)
            if src and ver:
                targets = [(src, ver)]
            elif dep in by_source:
                targets = [by_source[dep][-1].key]
            else:
                targets = [(item.source, dep)]
            for target in targets:
                if target not in by_key:
                    raise NselfError(
                        f"{item.where} depends on {dep}, which no installed plugin provides",
                        "install the plugin it needs, or fix depends_on",
                    )
                needs[item.key].add(target)
    result: list[Item] = []
    done: set[tuple[str, str]] = set()
    waiting = sorted(items, key=lambda i: (version_key(i.version), i.source))
    while waiting:
        ready = next((i for i in waiting if needs[i.key] <= done), None)
        if ready is None:
            raise NselfError(
                "plugin migrations depend on each other in a cycle: "
                + ", ".join(i.label for i in waiting[:5]),
                "fix depends_on",
            )
        result.append(ready)
        done.add(ready.key)
        waiting.remove(ready)
    return result


def split_statements(sql: str, where: str = "migration") -> list[str]:
    """Top-level statements of a non-transactional file (each runs on its own)."""
    return [s.text for s in statements(sql, where)]


def create(project_dir: Path, name: str, now: datetime | None = None) -> Path:
    """Make ``migrations/<UTC timestamp>_<name>/`` with an up.sql and a down.sql."""
    clean = re.sub(r"[\s-]+", "_", name.strip().lower())
    if not NAME.match(clean):
        raise UsageError(
            f"invalid migration name {name!r}",
            "use letters, digits and underscores, e.g. add_users",
        )
    root = project_dir / "migrations"
    root.mkdir(parents=True, exist_ok=True)
    stamp = now or datetime.now(UTC)
    existing = [int(m.group(1)) for p in root.iterdir() if (m := DIR_NAME.match(p.name))]
    version = int(stamp.strftime("%Y%m%d%H%M%S"))
    if existing and version <= max(existing):
        version = max(existing) + 1
    folder = root / f"{version}_{clean}"
    folder.mkdir()
    (folder / "up.sql").write_text(
        f"-- {clean}: applied by `nself db migrate up`, inside one transaction.\n"
        "-- Add `-- nself:no-transaction` on its own line to run it without one\n"
        "-- (needed for CREATE INDEX CONCURRENTLY).\n\n"
    )
    (folder / "down.sql").write_text(f"-- Reverts {clean} (`nself db migrate down`).\n\n")
    return folder
