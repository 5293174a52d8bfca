"""``nself init``: a new project folder with env layers, fresh dev secrets and folders."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pluggy

from .atomic import write_atomic
from .build import collect_files
from .errors import NselfError, UsageError
from .model import Setting
from .plugins import call_each
from .secretgen import generate

GITIGNORE = """\
# nself: per-developer, secret and generated files
.env.local
.env.secrets
.env.computed
.nself/
"""

LOCAL = """\
# Your own overrides for the local stack (gitignored). Applies to `nself env switch local` only.
"""

TARGET = """\
# Shared {env} settings (committed). Secrets belong in .env.secrets on the {env} host.
BASE_DOMAIN={domain}
"""

SECRETS = """\
# Real secrets (gitignored, mode 0600). `nself secrets generate --env prod` fills this file.
"""

NAME = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
FILES = (".env.dev", ".env.local", ".env.staging", ".env.prod", ".env.secrets", ".gitignore")


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def slug(name: str) -> str:
    return re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")


def check_name(name: str) -> str:
    if not NAME.match(name):
        raise UsageError(
            f"invalid project name {name!r}",
            "use lowercase letters, digits and '-', starting with a letter",
        )
    return name


def check_domain(domain: str) -> str:
    label = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
    if not re.fullmatch(rf"{label}(\.{label})+", domain.lower()):
        raise UsageError(f"invalid domain {domain!r}", "use a DNS name such as example.com")
    return domain.lower()


def optional_switches(pm: pluggy.PluginManager) -> list[Setting]:
    """The ``*_ENABLED`` settings that are off by default (what the wizard offers)."""
    found = [
        setting
        for _plugin, settings in call_each(pm, "declare_settings")
        for setting in settings
        if setting.name.endswith("_ENABLED") and (setting.default or "").lower() == "false"
    ]
    return sorted(found, key=lambda s: s.name)


def merged_gitignore(existing: str) -> str:
    """``existing`` plus the lines nself needs that it lacks (a user's lines are kept)."""
    if not existing.strip():
        return GITIGNORE
    have = {line.strip() for line in existing.splitlines()}
    missing = [line for line in GITIGNORE.splitlines()[1:] if line.strip() not in have]
    if not missing:
        return existing
    head = existing if existing.endswith("\n") else existing + "\n"
    return head + "\n" + GITIGNORE.splitlines()[0] + "\n" + "\n".join(missing) + "\n"


def dev_env(
    pm: pluggy.PluginManager, name: str, domain: str, extra: dict[str, str] | None = None
) -> str:
    lines = [
        "# nself project: team defaults and dev-only secrets (committed).",
        "# Layers, later wins: .env.dev < .env.local (local only) < .env.staging | .env.prod",
        "#   < .env.secrets. `nself build` writes the result to .env.computed.",
        f"PROJECT_NAME={name}",
        f"BASE_DOMAIN={domain}",
    ]
    extra = dict(extra or {})
    for plugin, settings in call_each(pm, "declare_settings"):
        chosen: list[Setting] = [s for s in settings if s.scaffold or s.generate]
        if not chosen:
            continue
        lines += ["", f"# --- {plugin} ---"]
        for setting in chosen:
            if setting.description:
                lines.append(f"# {setting.description}")
            if setting.name in extra:
                value = extra.pop(setting.name)
            elif setting.generate:
                value = generate(setting.generate)
            else:
                value = setting.default or ""
            lines.append(f"{setting.name}={value}")
    if extra:
        lines += ["", "# --- chosen by `nself init --wizard` ---"]
        lines += [f"{key}={value}" for key, value in sorted(extra.items())]
    return "\n".join(lines) + "\n"


def init(
    pm: pluggy.PluginManager,
    folder: Path,
    name: str | None,
    domain: str,
    force: bool,
    extra: dict[str, str] | None = None,
) -> list[str]:
    """Create the project; refuses to overwrite one unless ``force``."""
    name = check_name(name or slug(folder.resolve().name) or "app")
    domain = check_domain(domain)
    existing = [f for f in FILES if (folder / f).exists()]
    if (folder / ".env.dev").exists() and not force:
        raise NselfError(
            f"{folder} already holds an nself project", "use --force to overwrite its env files"
        )
    if folder.exists() and not folder.is_dir():
        raise NselfError(f"{folder} is not a folder")
    scaffold = collect_files(pm, "contribute_scaffold")  # checked before anything is written
    contents = {
        ".env.dev": (dev_env(pm, name, domain, extra), 0o644),
        ".env.local": (LOCAL, 0o644),
        ".env.staging": (TARGET.format(env="staging", domain=f"staging.{domain}"), 0o644),
        ".env.prod": (TARGET.format(env="prod", domain=domain), 0o644),
        ".env.secrets": (SECRETS, 0o600),
        ".gitignore": (merged_gitignore(_read(folder / ".gitignore")), 0o644),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for rel, (text, mode) in contents.items():
        if rel in (".env.secrets", ".env.local") and rel in existing:
            continue  # never throw away a developer's own overrides or real secrets
        write_atomic(folder / rel, text, mode)
    for item in scaffold:
        if not (folder / item.path).exists():  # the project's own files always win
            write_atomic(folder / item.path, item.content, item.mode)
    os.chmod(folder / ".env.secrets", 0o600)
    return sorted(contents)
