"""The project: its name and base domain (settings every other plugin relies on), and the
commands that create it and generate its stack, ``nself init`` and ``nself build``.

``init`` lives here because the project's files are this plugin's: the env templates, the
domain rule and ``.gitignore`` merging, with each plugin adding its own folders through
``contribute_scaffold``. The kernel only builds; ``build`` here prints what it did.
"""

from __future__ import annotations

import os
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import Config, Problem, Setting, hookimpl
from nself_sdk.checks import image_problem
from nself_sdk.envfiles import RESERVED

from .names import DEFAULT_DOMAIN, domain_problem

if TYPE_CHECKING:
    from typer import Typer


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("PROJECT_NAME", description="Names the Compose project, network and volumes."),
        Setting("BASE_DOMAIN", DEFAULT_DOMAIN, "Every public URL is a subdomain of this."),
    ]


@hookimpl(wrapper=True)
def load_extra_plugins(
    project_dir: Path,
) -> Generator[None, list[list[object]], list[list[object]]]:
    """Names no plugin has in the plugin switches are warned about (``switches``)."""
    answers = yield
    if os.environ.get("NSELF_DISABLE_PLUGINS") or os.environ.get("NSELF_PLUGINS"):
        from .switches import warn_unknown  # imported only then: a build runs without it

        warn_unknown(project_dir, answers)
    return answers


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    problems = []
    if not config.project_name:
        problems.append(Problem("error", "PROJECT_NAME is empty", "set PROJECT_NAME in .env.dev"))
    else:
        problems += _name_problems(config)
    if (domain := domain_problem(config, "BASE_DOMAIN")) is not None:
        problems.append(domain)
    # Every declared *_IMAGE, whichever plugin declares it, goes into docker-compose.yml.
    for name in sorted(config.declared):
        if name.endswith("_IMAGE") and (image := image_problem(config, name)) is not None:
            problems.append(image)
    return problems + process_variables(config)


def _name_problems(config: Config) -> list[Problem]:
    """A PROJECT_NAME written in an env file is used as written: a value the slugging would
    change ("Bad Name" -> bad-name) is refused, as `nself init --name` refuses it. Valid
    names (the volumes are named after them) are untouched."""
    raw = config.text("PROJECT_NAME")
    if not raw or raw == config.project_name:
        return []
    return [
        Problem(
            "error",
            f"{config.where('PROJECT_NAME')}: PROJECT_NAME={raw!r} is not a valid project name",
            f"write PROJECT_NAME={config.project_name} (the name the stack has been using: "
            "its containers and volumes are named after it): lowercase letters, digits, "
            "'-' and '_'",
        )
    ]


def process_variables(config: Config) -> list[Problem]:
    """A warning for each ``NSELF_*`` name set in an env file: nself reads those (NSELF_ENV,
    NSELF_DISABLE_PLUGINS...) from the process environment only, so there they do nothing."""
    problems = []
    for name, chain in config.resolver.history.items():
        entry = chain[-1]
        if not name.startswith("NSELF_") or entry.file not in RESERVED:
            continue
        if name in config.declared or name in config.derived:
            continue  # a plugin's own setting
        how = "use `nself env switch` or --env" if name == "NSELF_ENV" else "export it"
        problems.append(
            Problem(
                "warning",
                f"{entry.where}: {name} changes nothing here: NSELF_* settings are read "
                "from the shell environment, not from env files",
                f"remove it from {entry.file}; {how} (e.g. `{name}=... nself build`)",
            )
        )
    return problems


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import app as commands

    app.add_typer(commands)


@hookimpl
def run_bare_command(name: str) -> int | None:
    """A bare ``nself build`` (run after every edit) needs no parser: it runs at once."""
    if name != "build":
        return None
    from .build import run_build

    run_build()
    return 0
