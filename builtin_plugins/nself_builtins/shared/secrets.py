"""Fresh secrets for the settings plugins declare with ``generate`` (``nself init`` writes
dev ones, ``nself secrets generate|rotate`` real ones), and each target's own secrets file
for a project from before they had one."""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path

from nself_sdk.console import warn
from nself_sdk.envfiles import (
    SECRETS,
    SECRETS_FILES,
    check_private,
    parse_text,
    read_text,
    write_atomic,
)

KINDS = ("token", "password", "hex")


def generate(kind: str | None) -> str:
    """A fresh secret: url-safe token (43 chars), password (32 chars) or 64 hex digits."""
    if kind == "hex":
        return secrets.token_hex(32)
    if kind == "password":
        return secrets.token_urlsafe(24)
    return secrets.token_urlsafe(32)


SCRAM_ITERATIONS = 4096


def scram_verifier(
    password: str, salt: bytes | None = None, iterations: int = SCRAM_ITERATIONS
) -> str:
    """The ``SCRAM-SHA-256$iter:salt$StoredKey:ServerKey`` form PostgreSQL stores: setting a
    role's password with it, the server (and its logs) never see the password itself."""
    import base64
    import hashlib
    import hmac

    salt = salt or secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode("utf-8"), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode("ascii")

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


SPLIT_NOTE = (
    "# Copied from .env.secrets by nself when each target got its own secrets file: these\n"
    "# are the values {env} used until then. Rotate them to give {env} secrets of its own.\n"
)


def split_secrets(project: Path) -> list[str]:
    """Give a project from before per-target secrets its staging and prod files.

    Such a project has one ``.env.secrets`` (holding at least one value) that served every
    target, and neither ``.env.secrets.staging`` nor ``.env.secrets.prod``. Both are created
    as copies of it (0600, each appearing whole or not at all), so every target resolves
    exactly the values it did before and no value is lost; ``.env.secrets`` stays the local
    target's. A split that was interrupted (one copy made, still exactly as made) is
    finished. Returns the files created (none for a project already split, or with nothing
    to copy).
    """
    targets = [project / name for name in SECRETS_FILES[1:]]
    present = [p for p in targets if p.exists() or p.is_symlink()]
    if len(present) == len(targets):
        return []
    legacy = project / SECRETS
    if legacy.is_symlink() or not legacy.is_file():
        return []
    check_private(legacy)
    text = read_text(legacy, SECRETS) or ""
    if not parse_text(text, SECRETS):
        return []
    if any(p.is_symlink() or not p.is_file() or p.read_bytes() != _copy(p, text) for p in present):
        return []  # made or edited by someone else: that target has its own secrets
    created = []
    for path in targets:
        if path not in present and _create_whole(path, _copy(path, text)):
            created.append(path.name)
    return created


def _copy(path: Path, text: str) -> bytes:
    """What the split writes to the target file ``path``."""
    return (SPLIT_NOTE.format(env=path.name.rsplit(".", 1)[1]) + text).encode("utf-8")


def _create_whole(path: Path, data: bytes) -> bool:
    """Create ``path`` (0600) holding ``data``, whole or not at all: written to a private
    temporary file, then linked into place, which fails if ``path`` exists (another nself
    command split it at the same moment: False)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)  # whatever the umask
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(temp, path)
        except FileExistsError:
            return False
    finally:
        temp.unlink(missing_ok=True)
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)
    finally:
        os.close(folder)
    return True


# What keeps staging's and prod's secrets files out of git (``nself init`` writes it; a
# project from before per-target secrets has only ``.env.secrets`` in its .gitignore).
TARGET_SECRETS_PATTERN = f"{SECRETS}.*"


def _ignored(lines: list[str], name: str) -> bool:
    """Whether the .gitignore ``lines`` ignore the file ``name`` at the project's top (git's
    rule for a pattern without an inner slash: the last matching line wins, ``!`` un-ignores)."""
    from fnmatch import fnmatchcase

    ignored = False
    for raw in lines:
        line = raw.rstrip("\r").rstrip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        pattern = line[1:] if negated else line
        pattern = pattern.removeprefix("/")
        if "/" in pattern.rstrip("/") or pattern.endswith("/"):
            continue  # a path or a folder: never our top-level files
        if fnmatchcase(name, pattern):
            ignored = not negated
    return ignored


def ignore_target_secrets(project: Path) -> bool:
    """Make the project's .gitignore ignore ``.env.secrets.staging`` and ``.env.secrets.prod``
    (appending ``.env.secrets.*``, or creating the file), so a copy made for an older project
    or a first ``secrets generate --env prod`` is never committed. Returns whether it wrote."""
    path = project / ".gitignore"
    if path.is_symlink() or path.is_dir():
        return False  # someone else's arrangement: doctor's checks are the place to say it
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    lines = text.splitlines()
    if all(_ignored(lines, name) for name in SECRETS_FILES[1:]):
        return False
    head = text if not text or text.endswith("\n") else text + "\n"
    addition = "# nself: each target's secrets (never committed)\n" + TARGET_SECRETS_PATTERN + "\n"
    mode = stat.S_IMODE(path.stat().st_mode) if path.exists() else 0o644
    write_atomic(path, head + ("\n" if head else "") + addition, mode)
    return True


def ignore_said(project: Path) -> None:
    """``ignore_target_secrets``, said when it wrote."""
    if ignore_target_secrets(project):
        warn(
            f".gitignore did not keep staging's and prod's secrets files out of git: "
            f"{TARGET_SECRETS_PATTERN} added to it",
            "check `git status` shows no .env.secrets.* file; one committed before needs "
            "`git rm --cached FILE` and its secrets rotated",
        )


def split_said(project: Path) -> None:
    """``split_secrets``, said once (when it happens) on stderr; either way, staging's and
    prod's secrets files are kept out of git."""
    if any((project / name).exists() for name in (SECRETS, *SECRETS_FILES[1:])):
        ignore_said(project)
    if created := split_secrets(project):
        warn(
            f"each target has its own secrets file now: {SECRETS} stays local's, and its "
            f"values were copied to {' and '.join(created)} (what staging and prod used)",
            "rotate them per target (`nself secrets rotate NAME --env prod`); "
            "docs/environments.md explains the layout",
        )
