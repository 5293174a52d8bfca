"""Automatic backups inside the stack: a small scheduler service."""

from __future__ import annotations

from nself_sdk import Config, Problem, Service

FIELDS = 5


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a five-field cron expression, or None."""
    parts = expr.split()
    if len(parts) != FIELDS:
        return f"needs 5 fields (minute hour day month weekday), got {len(parts)}"
    limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    for part, (low, high) in zip(parts, limits, strict=True):
        for piece in part.split(","):
            base, _, step = piece.partition("/")
            if step and not step.isdigit():
                return f"bad step in {piece!r}"
            if base == "*":
                continue
            lo, _, hi = base.partition("-")
            for number in (lo, hi) if hi else (lo,):
                if not number.isdigit() or not low <= int(number) <= high:
                    return f"{piece!r} is outside {low}-{high}"
    return None


def validate(config: Config) -> list[Problem]:
    problems = []
    schedule = config.text("BACKUP_SCHEDULE")
    if schedule and (why := cron_problem(schedule)):
        problems.append(
            Problem(
                "error",
                f"{config.where('BACKUP_SCHEDULE')}: BACKUP_SCHEDULE={schedule!r} {why}",
                'use cron syntax, e.g. BACKUP_SCHEDULE="0 2 * * *" (daily at 02:00 UTC)',
            )
        )
    if config.int("BACKUP_RETENTION_DAYS", 30) < 1:
        problems.append(
            Problem(
                "error",
                f"{config.where('BACKUP_RETENTION_DAYS')}: "
                "BACKUP_RETENTION_DAYS must be at least 1",
            )
        )
    if config.text("BACKUP_S3_BUCKET") and not config.text("BACKUP_S3_SECRET_KEY"):
        problems.append(
            Problem(
                "error",
                "BACKUP_S3_BUCKET is set but BACKUP_S3_SECRET_KEY is not",
                "set BACKUP_S3_ACCESS_KEY and BACKUP_S3_SECRET_KEY in .env.secrets",
            )
        )
    return problems


def services(config: Config) -> list[Service]:
    return []
