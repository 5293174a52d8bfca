"""The in-stack backup scheduler: its service, its cron matching, its settings."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from nself_sdk.testing import set_env


@pytest.fixture
def scheduled(project: Path, nself) -> Path:  # type: ignore[no-untyped-def]
    set_env(project, ".env.local", BACKUP_SCHEDULE='"0 2 * * *"')
    r = nself("build", cwd=project)
    assert r.code == 0, r.output
    return project


def test_the_scheduler_service_is_internal_and_uses_the_postgres_image(scheduled: Path) -> None:
    compose = yaml.safe_load((scheduled / "docker-compose.yml").read_text())
    service = compose["services"]["db-backup"]
    assert "ports" not in service
    assert {"./backups:/backups", "./db-backup:/nself:ro"} <= set(service["volumes"])
    assert service["image"].startswith("nself-postgres:16-demo-")
    assert service["image"] == compose["services"]["postgres"]["image"]
    script = scheduled / "db-backup" / "backup.sh"
    assert script.is_file()


@pytest.mark.parametrize(
    ("expr", "now", "expected"),
    [
        ("0 2 * * *", "00 02 15 06 3", True),
        ("0 2 * * *", "01 02 15 06 3", False),
        ("*/15 * * * *", "45 10 01 01 1", True),
        ("*/15 * * * *", "46 10 01 01 1", False),
        ("30 2 * * 1-5", "30 02 15 06 6", False),
        ("30 2 * * 1-5", "30 02 15 06 5", True),
        ("0 0 * * 7", "00 00 07 01 0", True),  # 7 is Sunday too
        ("0 0 1 * 0", "00 00 07 01 0", True),  # day-of-month OR day-of-week
        ("0 0 1 * 0", "00 00 07 01 2", False),
        ("0,30 8-18/2 * * *", "30 10 01 01 1", True),
        ("0,30 8-18/2 * * *", "30 11 01 01 1", False),
        ("0 9 1-7 1,7 *", "00 09 03 07 4", True),
        ("0 9 1-7 1,7 *", "00 09 03 08 4", False),
    ],
)
def test_cron_matching_in_the_scheduler(
    scheduled: Path, expr: str, now: str, expected: bool
) -> None:
    script = scheduled / "db-backup" / "backup.sh"
    result = subprocess.run(["sh", str(script), "match", expr, now], capture_output=True)
    assert (result.returncode == 0) is expected


def test_a_bad_schedule_stops_the_build(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    set_env(project, ".env.local", BACKUP_SCHEDULE='"0 25 * * *"')
    r = nself("build", cwd=project)
    assert r.code == 1
    assert "BACKUP_SCHEDULE='0 25 * * *'" in r.err and "outside 0-23" in r.err
    assert not (project / "docker-compose.yml").exists()


def test_no_schedule_no_service(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    assert nself("build", cwd=project).code == 0
    assert "db-backup" not in (project / "docker-compose.yml").read_text()


def test_the_built_image_follows_its_dockerfile(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    def image() -> str:
        assert nself("build", cwd=project).code == 0
        compose = yaml.safe_load((project / "docker-compose.yml").read_text())
        return str(compose["services"]["postgres"]["image"])

    first = image()
    set_env(project, ".env.local", POSTGRES_BASE_IMAGE="mirror.example/postgres:16-bookworm")
    second = image()
    assert second != first and second.startswith("nself-postgres:16-demo-")  # built anew


def test_a_schedule_with_a_bucket_but_no_keys_warns(project: Path, nself) -> None:  # type: ignore[no-untyped-def]
    set_env(project, ".env.local", BACKUP_SCHEDULE='"0 2 * * *"', BACKUP_S3_BUCKET="b")
    r = nself("build", cwd=project)
    assert r.code == 0 and "scheduled backups will not reach S3" in r.err
