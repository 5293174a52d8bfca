"""Helpers shared by the kernel's test modules."""

from __future__ import annotations

import json
import secrets
import subprocess
from pathlib import Path
from typing import Any

from nself.envfiles import Resolver, parse_text

__all__ = ["compose_config", "mail_server", "read_computed", "strong_secrets", "tree"]


def mail_server(folder: Path, *files: str) -> None:
    """A mail server for Auth's sign-up and password-reset mails: outside dev the build
    refuses Auth without one. Written where staging's and prod's secrets are (the files
    both targets read last), unless ``files`` are given."""
    from nself_sdk.testing import set_env

    for file in files or (".env.secrets.staging", ".env.secrets.prod"):
        set_env(
            folder,
            file,
            MAIL_ENABLED="true",
            MAIL_PROVIDER="smtp",
            MAIL_SMTP_HOST="smtp.example.com",
            # Auth logs in on every mail: outside dev a server without a user is refused.
            MAIL_SMTP_USER="nself",
            MAIL_SMTP_PASSWORD="smtp-password-for-tests-5f3a9c",
        )


def strong_secrets(folder: Path) -> dict[str, str]:
    """Fresh production-grade values for every secret the default stack needs.

    Outside dev that includes monitoring, which is on by default there (Grafana's password).
    """
    names = (
        "POSTGRES_PASSWORD",
        "HASURA_GRAPHQL_ADMIN_SECRET",
        "HASURA_JWT_KEY",
        "GRAFANA_ADMIN_PASSWORD",
    )
    values = {name: secrets.token_urlsafe(32) for name in names}
    # Outside dev Auth needs a mail server too (not a secret, but a production setting),
    # with a login: Auth logs in on every mail.
    values["MAIL_SMTP_PASSWORD"] = secrets.token_urlsafe(32)
    mail = (
        "MAIL_ENABLED=true\nMAIL_PROVIDER=smtp\nMAIL_SMTP_HOST=smtp.example.com\n"
        "MAIL_SMTP_USER=nself\n"
    )
    for name in (".env.secrets.staging", ".env.secrets.prod"):  # each target's own file
        path = folder / name
        path.write_text("".join(f"{k}={v}\n" for k, v in values.items()) + mail)
        path.chmod(0o600)
    return values


def read_computed(folder: Path) -> dict[str, str]:
    """``.env.computed`` read back with the kernel's own parser (literal values)."""
    text = (folder / ".env.computed").read_text()
    return Resolver(parse_text(text, ".env.computed")).resolve_all()


def compose_config(folder: Path) -> dict[str, Any]:
    """The project's compose file as the real ``docker compose config`` resolves it."""
    done = subprocess.run(
        ["docker", "compose", "--env-file", ".env.computed", "config", "--format", "json"],
        cwd=folder,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def tree(folder: Path, skip: tuple[str, ...] = (".nself/",)) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes), except state folders."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(skip)
    }
