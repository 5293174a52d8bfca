"""Monitoring's part of the hardening suite: what is logged and kept, and whether anyone
hears an alert."""

from __future__ import annotations

from nself_sdk import Config, Finding

HOURS = {"s": 1 / 3600, "m": 1 / 60, "h": 1, "d": 24, "w": 24 * 7, "y": 24 * 365}
# Logs to look back at when something is noticed a few days late.
MIN_LOG_HOURS = 24 * 7


def hours(value: str) -> float | None:
    value = value.strip()
    if len(value) < 2 or not (value.isascii() and value[:-1].isdigit()) or value[-1] not in HOURS:
        return None
    return int(value[:-1]) * HOURS[value[-1]]


def findings(config: Config) -> list[Finding]:
    from . import enabled

    if not enabled(config):
        if config.is_local:
            return []
        return [
            Finding(
                "log-retention",
                "warning",
                f"{config.where('MONITORING_ENABLED')}: monitoring is off in {config.env}: "
                "logs live only in Docker's rotated files, and no alert is sent",
                "delete MONITORING_ENABLED=false (on by default outside dev)",
                layer="audit",
            )
        ]
    found = []
    if not config.flag("PROMTAIL_ENABLED", True):
        found.append(
            Finding(
                "log-retention",
                "warning",
                "Promtail is off: the containers' logs do not reach Loki",
                "delete PROMTAIL_ENABLED=false",
                layer="audit",
            )
        )
    kept = hours(config.text("LOKI_RETENTION", "744h"))
    if kept is not None and kept < MIN_LOG_HOURS:
        found.append(
            Finding(
                "log-retention",
                "warning",
                f"{config.where('LOKI_RETENTION')}: logs are kept {kept:.0f} hours, under a week",
                "LOKI_RETENTION=744h (31 days)",
                layer="audit",
            )
        )
    if not config.is_local and not (
        config.text("ALERTMANAGER_WEBHOOK_URL") or config.text("ALERTMANAGER_EMAIL_TO")
    ):
        found.append(
            Finding(
                "alerts",
                "warning",
                f"alerts in {config.env} go nowhere: no webhook and no mail address",
                "set ALERTMANAGER_WEBHOOK_URL or ALERTMANAGER_EMAIL_TO",
                layer="audit",
            )
        )
    if not found:
        found.append(
            Finding(
                "log-retention",
                "ok",
                f"logs are collected by Loki and kept {config.text('LOKI_RETENTION', '744h')}",
                layer="audit",
            )
        )
    return found
