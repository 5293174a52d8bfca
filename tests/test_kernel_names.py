"""`nself build` warns about names in the env files that no plugin reads but one nearly does."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def warnings_of(result: Result) -> list[str]:
    return [line for line in result.err.splitlines() if line.startswith("warning: ")]


def test_typos_and_wrong_names_are_warned_about_with_file_line_and_the_real_name(
    project: Path, nself: Run
) -> None:
    (project / ".env.local").write_text(
        "# mine\n"
        "REDIS_ENABLD=true\n"
        "NGNIX_IMAGE=nginx:1.27\n"
        "STORAGE_IMAGE=minio/minio:latest\n"
        "SEARCH_IMAGE=getmeili/meilisearch:v1.8\n"
        "POSTGRES_ENABLED=false\n"
    )
    result = nself("build", cwd=project)
    assert result.code == 0, result.output  # warnings, not errors
    assert warnings_of(result) == [
        "warning: .env.local:2: unknown setting REDIS_ENABLD — did you mean REDIS_ENABLED?",
        "warning: .env.local:3: unknown setting NGNIX_IMAGE — did you mean NGINX_IMAGE?",
        "warning: .env.local:4: unknown setting STORAGE_IMAGE — did you mean MINIO_IMAGE?",
        "warning: .env.local:5: unknown setting SEARCH_IMAGE — did you mean MEILISEARCH_IMAGE?",
        "warning: .env.local:6: unknown setting POSTGRES_ENABLED — no plugin reads it, so it "
        "switches nothing (POSTGRES_* has no on/off switch)",
    ]
    assert "hint: no plugin reads REDIS_ENABLD, so it changes nothing" in result.err
    data = json.loads(nself("build", "--json", cwd=project).out)
    assert len(data["warnings"]) == 5 and "redis" not in data["services"]


def test_a_users_own_variables_are_not_flagged(project: Path, nself: Run) -> None:
    set_env(
        project,
        ".env.local",
        API_HOST="api.internal",  # far from every declared name
        SMTP_HOST="mail.example.com",
        REDIS_PASSWORD_FILE="/run/secrets/redis",  # built on a declared name
        NGINX_IMAGE_TAG="1.27",
        POSTGRES_PORTT="5433",  # close to nothing, but used below through ${...}
        CS_1_NAME="api",
        CS_1_IMAGE="busybox",
        CS_1_PORT="8001",
        CS_1_HEALTHCHECK="none",
        CS_1_ENV_HASURA_GRAPHQL_ADMIN_SECRETS="x",  # any name after CS_<N>_ENV_
        CS_1_ENV_PG_PORT="${POSTGRES_PORTT}",
        CS_12_NAME="other",
        CS_12_IMAGE="busybox",
        CS_12_HEALTHCHECK="none",
    )
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert warnings_of(result) == []


def test_a_typo_in_a_custom_service_slot_names_the_slots_setting(project: Path, nself: Run) -> None:
    set_env(
        project,
        ".env.local",
        CS_3_NAME="api",
        CS_3_IMAGE="busybox",
        CS_3_PORT="8001",
        CS_3_SUBDOMIAN="x",
    )
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert warnings_of(result) == [
        "warning: .env.local:5: unknown setting CS_3_SUBDOMIAN — did you mean CS_3_SUBDOMAIN?"
    ]


def test_a_slot_without_a_name_is_warned_about(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", CS_2_IMAGE="busybox", CS_2_PORT="8001")
    result = nself("build", "--json", cwd=project)
    assert result.code == 0, result.output
    assert json.loads(result.out)["services"] == ["auth", "hasura", "nginx", "postgres"]
    assert warnings_of(result) == [
        "warning: .env.local:2: CS_2_IMAGE is set but CS_2_NAME is not: "
        "custom service slot CS_2 is ignored"
    ]
    assert "hint: set CS_2_NAME=<service name>, or remove the CS_2_* lines" in result.err
