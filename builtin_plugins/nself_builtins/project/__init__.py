"""Project-wide settings every other plugin relies on."""

from __future__ import annotations

from nself_sdk import Config, Problem, Setting, hookimpl


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        Setting("PROJECT_NAME", description="Names the Compose project, network and volumes."),
        Setting("BASE_DOMAIN", "local.nself.org", "Every public URL is a subdomain of this."),
    ]


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    if not config.project_name:
        return [Problem("error", "PROJECT_NAME is empty", "set PROJECT_NAME in .env.dev")]
    return []
