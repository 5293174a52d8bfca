"""Project-wide settings every other plugin relies on."""

from __future__ import annotations

from nself_sdk import Config, Problem, Setting, hookimpl
from nself_sdk.web import domain_problem


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("PROJECT_NAME", description="Names the Compose project, network and volumes."),
        Setting("BASE_DOMAIN", "local.nself.org", "Every public URL is a subdomain of this."),
    ]


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    problems = []
    if not config.project_name:
        problems.append(Problem("error", "PROJECT_NAME is empty", "set PROJECT_NAME in .env.dev"))
    if (domain := domain_problem(config, "BASE_DOMAIN")) is not None:
        problems.append(domain)
    return problems
