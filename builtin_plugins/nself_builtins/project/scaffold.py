"""What ``nself init`` writes: the env layers with fresh dev secrets, ``.gitignore`` (merged
into the project's own) and the folders plugins read from (``contribute_scaffold``).

``--force`` rewrites the committed env files from the current template but keeps every
value they hold, copying each file it changes to ``.nself/init-backups/<time>/`` first.
"""

from __future__ import annotations

import io
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from nself_builtins.shared.secrets import generate, split_secrets
from nself_sdk import GeneratedFile, NselfError, Setting, write_atomic
from nself_sdk.envfiles import parse_text, read_text
from nself_sdk.host import Manager, collect_files

from .names import DEFAULT_DOMAIN, check_domain, check_name, folder_name

GITIGNORE = """\
# nself: per-developer, secret and generated files
.env.local
.env.secrets
.env.secrets.*
.env.computed
.nself/
"""

LOCAL = """\
# Your own overrides for the local stack (gitignored). Applies to `nself env switch local` only.
"""

TARGET = """\
# Shared {env} settings (committed). {env}'s secrets belong in .env.secrets.{env} (gitignored).
BASE_DOMAIN={domain}
"""

SECRETS = """\
# {env}'s own secrets (gitignored, 0600; no other target reads them): nself secrets generate{flag}
"""

SECRETS_FILES = (".env.secrets", ".env.secrets.staging", ".env.secrets.prod")
FILES = (".env.dev", ".env.local", ".env.staging", ".env.prod", *SECRETS_FILES, ".gitignore")
# Yours once they exist: `--force` never rewrites them.
OWN = (".env.local", *SECRETS_FILES)
# The headings `nself init` writes above settings it carries over or the wizard chose.
KEPT = "# --- kept from the previous {file} ---\n"
WIZARD = "# --- chosen by `nself init --wizard` ---\n"
# Where `nself init --force` keeps a copy of each file it rewrites (gitignored with .nself/).
BACKUPS = ".nself/init-backups"


@dataclass
class InitResult:
    """What ``nself init`` did to each of the project's files (path -> what)."""

    files: dict[str, str] = field(default_factory=dict)  # created | overwritten | kept
    backup: str | None = None  # the folder holding the overwritten files' previous content
    folders: list[str] = field(default_factory=list)  # scaffold files created
    replaced: list[str] = field(default_factory=list)  # settings given, not kept
    split: list[str] = field(default_factory=list)  # secrets files copied from .env.secrets

    def named(self, what: str) -> list[str]:
        return sorted(path for path, done in self.files.items() if done == what)


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8") if path.is_file() else ""


def optional_switches(pm: Manager) -> list[Setting]:
    """The ``*_ENABLED`` settings that are off by default, and those a plugin marks
    ``wizard`` (off in dev, on elsewhere): what the wizard offers."""
    found = [
        setting
        for settings in pm.hook.declare_settings()
        for setting in settings
        if setting.name.endswith("_ENABLED")
        and (setting.wizard or (setting.default or "").lower() == "false")
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


def dev_env(pm: Manager, name: str, domain: str, extra: dict[str, str] | None = None) -> str:
    lines = [
        "# nself project: team defaults and dev-only secrets (committed).",
        "# Layers, later wins: .env.dev < .env.local (local only) < .env.staging | .env.prod",
        "#   < .env.secrets. `nself build` writes the result to .env.computed.",
        f"PROJECT_NAME={name}",
        f"BASE_DOMAIN={domain}",
    ]
    extra = dict(extra or {})
    for plugin, settings in pm.answers("declare_settings"):
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
        lines += ["", WIZARD.rstrip("\n")]
        lines += [f"{key}={value}" for key, value in sorted(extra.items())]
    return "\n".join(lines) + "\n"


def _lines(text: str) -> list[tuple[str | None, str]]:
    """``(key, original text)`` for each piece of an env file; comments have no key."""
    from dotenv.parser import parse_stream  # python-dotenv

    pieces: list[tuple[str | None, str]] = []
    for binding in parse_stream(io.StringIO(text)):
        ok = binding.key is not None and not binding.error and binding.value is not None
        pieces.append((binding.key if ok else None, binding.original.string))
    return pieces


def values_in(text: str) -> dict[str, str]:
    """The ``KEY=value`` lines of an env file's text, by key (the last one wins)."""
    return {key: line.rstrip("\n") for key, line in _lines(text) if key is not None}


def keep_values(template: str, existing: str, replace: set[str], file: str) -> str:
    """``template`` with the lines of ``existing`` for every setting it already had.

    A setting in ``replace`` (asked for on the command line) takes the template's line;
    settings only ``existing`` has (a team's edits) are carried over at the end.
    """
    old = values_in(existing)
    notes = _notes(existing, template, file)
    out: list[str] = []
    seen: set[str] = set()
    for key, text in _lines(template):
        if key is not None:
            seen.add(key)
            out.extend(notes.pop(key, []))
            if key in old and key not in replace:
                text = old[key] + ("\n" if text.endswith("\n") else "")
        out.append(text)
    carried = [(key, line) for key, line in old.items() if key not in seen]
    if carried or notes:
        head = "".join(out)
        out = [head if head.endswith("\n") else head + "\n"]
        out.append("\n" + KEPT.format(file=file))
        for key, line in carried:
            out.extend(notes.pop(key, []))
            out.append(line + "\n")
        out.extend(note for rest in notes.values() for note in rest)
    return "".join(out)


def _notes(existing: str, template: str, file: str) -> dict[str, list[str]]:
    """The user's comment lines of ``existing`` (those the template does not write), by
    the setting they stand above; ``""`` holds those after the last setting."""
    ours = {text.strip() for key, text in _lines(template) if key is None}
    ours |= {KEPT.format(file=file).strip(), WIZARD.strip()}
    notes: dict[str, list[str]] = {}
    pending: list[str] = []
    for key, text in _lines(existing):
        if key is None:
            if text.strip().startswith("#") and text.strip() not in ours:
                pending.append(text if text.endswith("\n") else text + "\n")
            continue
        if pending:
            notes.setdefault(key, []).extend(pending)
            pending = []
    if pending:
        notes[""] = pending
    return notes


def current(folder: Path) -> dict[str, str]:
    """The settings of an existing project's ``.env.dev`` (raw values, unresolved)."""
    text = _read(folder / ".env.dev")
    try:
        return {e.key: e.raw for e in parse_text(text, ".env.dev")}
    except NselfError:
        return {}


def check_target(folder: Path, force: bool) -> None:
    """Refuse a folder that is a file, or an existing project without ``force``."""
    if folder.exists() and not folder.is_dir():
        raise NselfError(f"{folder} is not a folder")
    if (folder / ".env.dev").exists() and not force:
        raise NselfError(
            f"{folder} already holds an nself project",
            "use --force to rewrite its committed env files: their values are kept, and "
            f"copies of the previous files go to {BACKUPS}/",
        )
    if force:
        _check_parsable(folder)


def _check_parsable(folder: Path) -> None:
    """Refuse to rewrite a committed env file that does not parse: its unreadable lines
    would be lost. Nothing has been written or asked yet."""
    for rel in FILES:
        if not rel.startswith(".env.") or rel in OWN:
            continue
        text = read_text(folder / rel, rel)
        if text is None:
            continue
        try:
            parse_text(text, rel)
        except NselfError as exc:
            raise NselfError(
                exc.message,
                f"fix that line first: `init --force` keeps only the lines it can read "
                f"(nothing was changed); {exc.hint}",
            ) from None


def _backup_dir(folder: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target, n = folder / BACKUPS / stamp, 1
    while target.exists():
        n += 1
        target = folder / BACKUPS / f"{stamp}-{n}"
    return target


def init(
    pm: Manager,
    folder: Path,
    name: str | None,
    domain: str | None,
    force: bool,
    extra: dict[str, str] | None = None,
) -> InitResult:
    """Create the project; refuses to overwrite one unless ``force``.

    With ``force`` the committed env files are rewritten from the current template but keep
    every value they had (project name, domain, dev secrets, a team's edits) unless
    ``name``, ``domain`` or ``extra`` replace it; each file that changes is copied to
    ``.nself/init-backups/<time>/`` first. ``.env.local`` and ``.env.secrets`` are never
    rewritten.
    """
    check_target(folder, force)
    had = current(folder)
    replace = set(extra or {})
    if name is not None:
        replace.add("PROJECT_NAME")
    if domain is not None:
        replace.add("BASE_DOMAIN")
    # Given on the command line: checked. Kept from the project: taken as it is.
    given_name = check_name(name) if name is not None else None
    name = given_name or had.get("PROJECT_NAME") or folder_name(folder)
    if domain is not None:
        domain = check_domain(domain)
    else:
        domain = had.get("BASE_DOMAIN") or DEFAULT_DOMAIN
    scaffold = collect_files(pm, "contribute_scaffold")  # checked before anything is written
    contents = {
        ".env.dev": (dev_env(pm, name, domain, extra), 0o644),
        ".env.local": (LOCAL, 0o644),
        ".env.staging": (TARGET.format(env="staging", domain=f"staging.{domain}"), 0o644),
        ".env.prod": (TARGET.format(env="prod", domain=domain), 0o644),
        ".env.secrets": (SECRETS.format(env="local", flag=""), 0o600),
        ".env.secrets.staging": (SECRETS.format(env="staging", flag=" --env staging"), 0o600),
        ".env.secrets.prod": (SECRETS.format(env="prod", flag=" --env prod"), 0o600),
        ".gitignore": (merged_gitignore(_read(folder / ".gitignore")), 0o644),
    }
    given = {**(extra or {}), "PROJECT_NAME": name, "BASE_DOMAIN": domain}
    result = InitResult(replaced=sorted(k for k in replace & set(had) if had[k] != given[k]))
    new = _first_missing(folder)
    if force:  # a project from before per-target secrets: split its one file first
        result.split = split_secrets(folder)
    try:
        _write(folder, contents, scaffold, replace, result)
    except BaseException:
        if new is not None:  # a full disk...: leave no half-made project folder behind
            shutil.rmtree(new, ignore_errors=True)
        raise
    return result


def _first_missing(folder: Path) -> Path | None:
    """The outermost folder of ``folder``'s path that does not exist yet (init makes it)."""
    folder = folder.absolute()
    missing = None
    for candidate in (folder, *folder.parents):
        if candidate.exists():
            break
        missing = candidate
    return missing


def _write(
    folder: Path,
    contents: dict[str, tuple[str, int]],
    scaffold: list[GeneratedFile],
    replace: set[str],
    result: InitResult,
) -> None:
    backup = _backup_dir(folder)
    folder.mkdir(parents=True, exist_ok=True)
    for rel, (text, mode) in contents.items():
        path = folder / rel
        if not path.exists():
            write_atomic(path, text, mode)
            result.files[rel] = "created"
            continue
        if rel in OWN:
            result.files[rel] = "kept"  # a developer's own overrides or real secrets
            continue
        before = _read(path)
        if rel.startswith(".env."):
            text = keep_values(text, before, replace, rel)
        if text == before:
            result.files[rel] = "kept"
            continue
        backup.mkdir(parents=True, mode=0o700, exist_ok=True)
        shutil.copy2(path, backup / rel)
        write_atomic(path, text, mode)
        result.files[rel] = "overwritten"
        result.backup = backup.relative_to(folder).as_posix()
    for item in scaffold:
        if not (folder / item.path).exists():  # the project's own files always win
            write_atomic(folder / item.path, item.content, item.mode)
            result.folders.append(item.path)
    for name in SECRETS_FILES:
        os.chmod(folder / name, 0o600)
