"""What a bundle will be able to read and reach, shown before it is installed, and the
user's yes (a question on a terminal, else ``--yes``)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nself_builtins.shared.boundary import (
    ACCESS,
    PUBLIC_SETTINGS,
    hasura_source,
    references,
    role_name,
)
from nself_sdk import console as out
from nself_sdk import require_yes

if TYPE_CHECKING:
    from nself_builtins.shared.manifest import Bundle

    from .store import Approve, LockEntry


def access_lines(bundle: Bundle, already: dict[str, str] | None = None) -> list[str]:
    """One line per thing the bundle will be able to do, in the order a reader checks.

    ``already``: settings the bundle declares that the project's env files set before it
    came (name -> where): their values, made for something else, would reach it."""
    m = bundle.manifest
    lines: list[str] = []
    if already:
        names = ", ".join(f"{name} ({where})" for name, where in sorted(already.items()))
        lines.append(f"read settings your env files already set: {names}")
    if m.service is not None:
        s = m.service
        caps = ", ".join(s.cap_add) if s.cap_add else "none"
        lines.append(f"run the image {s.image} (added capabilities: {caps})")
        for key, target in sorted(s.volumes.items()):
            lines.append(f"keep data in its volume {key} ({target})")
    if m.route is not None:
        where = "behind a login" if m.route.internal_only else "anyone"
        lines.append(f"answer at https://{m.route.subdomain}.<BASE_DOMAIN> ({where})")
    if m.database is not None:
        db = m.database
        line = f"own the database schema {db.schema} as the role {role_name(m.name)}"
        if db.extensions:
            line += f" (extensions created for it: {', '.join(db.extensions)})"
        lines.append(line)
        tables = _hasura_tables(bundle)
        if tables:
            source = hasura_source(m.name)[0]
            lines.append(
                f"have Hasura serve {', '.join(tables)} through its own source {source}, "
                f"as the role {role_name(m.name)} (its triggers, views and defaults run "
                "with that role's rights)"
            )
    for name in m.access:
        lines.append(f"{ACCESS[name].means} [{name}]")
    used: set[str] = set()
    if m.service is not None:
        s = m.service
        texts = [*s.environment.values(), *(s.command or ()), *(s.entrypoint or ())]
        texts += list(s.health.command or ()) if s.health is not None else []
        used = {ref for text in texts for ref in references(text)}
    used |= {ref for text in bundle.templates.values() for ref in references(text)}
    used |= {ref for s in m.settings for ref in references(s.default or "")}
    public = sorted(used & PUBLIC_SETTINGS)
    if public:
        lines.append(f"read the project's {', '.join(public)}")
    return lines


def _hasura_tables(bundle: Bundle) -> list[str]:
    """The tables the bundle's Hasura metadata tracks (read again for a bundle loaded
    without its metadata parsed)."""
    if not bundle.hasura_text:
        return []
    entries = bundle.hasura_tables
    if not entries:
        import yaml

        from nself_builtins.shared.manifest import hasura_yaml_loader

        try:
            loaded = yaml.load(bundle.hasura_text, Loader=hasura_yaml_loader())
        except (yaml.YAMLError, RecursionError):
            loaded = None
        entries = loaded if isinstance(loaded, list) else []
    names = []
    for entry in entries:
        table = entry.get("table") if isinstance(entry, dict) else None
        if isinstance(table, dict):
            names.append(f"{table.get('schema')}.{table.get('name')} ({_served_to(entry)})")
    return sorted(set(names)) or ["(none listed)"]


def _served_to(entry: dict[str, Any]) -> str:
    """The Hasura roles a table entry lets read or change the table, by kind
    (``select: anonymous, user; insert: user``); ``admin only`` when none."""
    kinds = []
    for kind in ("select", "insert", "update", "delete"):
        granted = entry.get(f"{kind}_permissions")
        roles = sorted(
            {str(p["role"]) for p in granted if isinstance(p, dict) and "role" in p}
            if isinstance(granted, list)
            else set()
        )
        if roles:
            kinds.append(f"{kind}: {', '.join(roles)}")
    return "; ".join(kinds) or "admin only"


def already_set(project: Path, bundle: Bundle, old: LockEntry | None) -> dict[str, str]:
    """The settings ``bundle`` declares that an env file of any target already sets, but
    those the installed version declared (name -> file:line). A bundle may name its settings
    as it likes under its own prefix, so it could declare OPENAI_API_KEY or AWS_SECRET_KEY
    and be handed the value the project keeps for its own functions."""
    from nself_sdk import NselfError
    from nself_sdk.envfiles import ENVIRONMENTS, read_layers

    declared = {s.name for s in bundle.manifest.settings}
    if old is not None:
        before = _installed_bundle(project, bundle.manifest.name)
        if before is not None:
            declared -= {s.name for s in before.manifest.settings}
    found: dict[str, str] = {}
    for env in ENVIRONMENTS:
        try:
            entries = read_layers(project, env)
        except NselfError:
            continue  # a broken env file is the build's to report
        for entry in entries:
            if entry.key in declared:
                found.setdefault(entry.key, entry.where)
    return found


def _installed_bundle(project: Path, name: str) -> Bundle | None:
    from nself_builtins.shared.manifest import load_bundle
    from nself_sdk import NselfError

    from .store import PLUGINS_DIR

    folder = project / PLUGINS_DIR / name
    if not folder.is_dir():
        return None
    try:
        return load_bundle(folder, deep=False)
    except NselfError:
        return None


def installed_lines(project: Path, name: str) -> list[str] | None:
    """What the installed version of ``name`` may do (None: none installed, or unreadable)."""
    installed = _installed_bundle(project, name)
    return access_lines(installed) if installed is not None else None


def approver(project: Path, yes: bool, only_when_changed: bool = False) -> Approve:
    """The ``approve`` callback of the installer: show what the bundle may do, then ask
    (a terminal) or need ``yes``. ``only_when_changed``: say nothing when the installed
    version may do exactly the same (``nself plugin update``)."""

    def approve(bundle: Bundle, old: LockEntry | None) -> None:
        m = bundle.manifest
        lines = access_lines(bundle, already_set(project, bundle, old))
        before = installed_lines(project, m.name) if old is not None else None
        if only_when_changed and before is not None and before == lines:
            return
        out.info(f"plugin {m.name} {m.version} will be able to:")
        for line in lines or ["nothing beyond its own files (no service, route or data)"]:
            new = before is not None and line not in before
            out.info(f"  - {line}{'  (new)' if new else ''}")
        require_yes(
            f"install {m.name} {m.version}?",
            yes,
            needs=f"plugin {m.name} needs your approval of the access above",
            hint="run the command again with --yes to approve it; nothing was installed",
            interactive=sys.stdin.isatty(),
        )

    return approve
