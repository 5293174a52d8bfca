"""Where an environment's stack runs: dev on this machine; staging and prod on the server
named by DEPLOY_HOST, or on this machine when ``nself install`` prepared this folder for
that environment (the server itself).

A laptop's project has no such record, so its prod without a DEPLOY_HOST is never mistaken
for the dev containers, which run under the same project name.
"""

from __future__ import annotations

import json
from pathlib import Path

from nself_sdk import Config

# Written by `nself install` into the project it prepares: {"domain", "env", "name", ...}.
INSTALL_MARKER = ".nself/install.json"


# A laptop's build for a server goes here, never over the files of the local stack.
TARGETS_DIR = ".nself/targets"


def installed_env(config: Config) -> str | None:
    """The environment ``nself install`` prepared this folder for, if it did."""
    return installed_env_of(config.project_dir)


def build_folder(project: Path, env: str) -> str | None:
    """Where ``env``'s build is written: the project folder for local and for the
    environment this folder was installed for (the server runs the stack from it), else
    ``.nself/targets/ENV`` (what `nself deploy ENV` ships)."""
    if env == "dev" or installed_env_of(project) == env:
        return None
    return f"{TARGETS_DIR}/{env}"


def installed_env_of(project: Path) -> str | None:
    """The environment ``nself install`` prepared ``project`` for, if it did."""
    try:
        data = json.loads((project / INSTALL_MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    env = data.get("env") if isinstance(data, dict) else None
    return env if isinstance(env, str) else None


def runs_here(config: Config) -> bool:
    """Whether ``config``'s stack runs on this machine's container engine."""
    if config.is_local:
        return True
    if config.text("DEPLOY_HOST").strip():
        return False
    return installed_env(config) == config.env
