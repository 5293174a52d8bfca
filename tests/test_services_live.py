"""Generated service config run by the real tools: Redis in Docker, promtool and amtool."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from dotenv import dotenv_values

from docker_helpers import needs_docker, standin
from nself_sdk.testing import Result, set_env
from test_services_matrix import compose_cmd

Nself = Callable[..., Result]

needs_prometheus_tools = pytest.mark.skipif(
    not (shutil.which("promtool") and shutil.which("amtool")) and not os.environ.get("CI"),
    reason="needs promtool and amtool (Debian: prometheus, prometheus-alertmanager)",
)


def run(*cmd: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=120)


@needs_docker
@pytest.mark.docker
def test_redis_refuses_clients_without_the_password(
    project: Path, nself: Nself, docker_engine: None
) -> None:
    set_env(project, REDIS_ENABLED="true", REDIS_IMAGE=standin("redis"))
    assert nself("build", cwd=project).code == 0
    password = dotenv_values(project / ".env.computed")["REDIS_PASSWORD"]
    assert password
    compose = [*compose_cmd(), "-p", f"nself-test-redis-{uuid.uuid4().hex[:8]}"]
    compose += ["--env-file", ".env.computed"]
    try:
        # --wait returns once the generated health check, which authenticates, passes.
        up = run(*compose, "up", "-d", "--wait", "redis", cwd=project)
        assert up.returncode == 0, up.stderr
        anonymous = run(
            *compose, "exec", "-T", "redis", "env", "-u", "REDISCLI_AUTH", "redis-cli", "ping",
            cwd=project,
        )  # fmt: skip
        assert "NOAUTH" in anonymous.stdout + anonymous.stderr
        assert "PONG" not in anonymous.stdout
        wrong = run(
            *compose, "exec", "-T", "redis", "env", "-u", "REDISCLI_AUTH",
            "redis-cli", "--no-auth-warning", "-a", "not-the-password", "ping",
            cwd=project,
        )  # fmt: skip
        assert "PONG" not in wrong.stdout
        good = run(
            *compose, "exec", "-T", "redis", "env", "-u", "REDISCLI_AUTH",
            "redis-cli", "--no-auth-warning", "-a", password, "ping",
            cwd=project,
        )  # fmt: skip
        assert good.stdout.strip() == "PONG", good.stdout + good.stderr
    finally:
        run(*compose, "down", "-v", "--remove-orphans", "-t", "1", cwd=project)


@needs_prometheus_tools
def test_prometheus_config_and_rules_pass_promtool(project: Path, nself: Nself) -> None:
    set_env(
        project,
        MONITORING_ENABLED="true",
        REDIS_ENABLED="true",
        STORAGE_ENABLED="true",
        MAIL_ENABLED="true",
        ALERTMANAGER_EMAIL_TO="ops@example.com",
        ALERTMANAGER_WEBHOOK_URL="https://hooks.example.com/nself",
    )
    assert nself("build", cwd=project).code == 0
    config = project / "monitoring/prometheus/prometheus.yml"
    checked = run("promtool", "check", "config", str(config))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS: 1 rule files found" in checked.stdout + checked.stderr
    rules = run(
        "promtool", "check", "rules", str(project / "monitoring/prometheus/rules/nself.yml")
    )
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert "SUCCESS: 9 rules found" in rules.stdout + rules.stderr


@needs_prometheus_tools
def test_target_down_alert_fires(project: Path, nself: Nself, tmp_path: Path) -> None:
    set_env(project, MONITORING_ENABLED="true", REDIS_ENABLED="true")
    assert nself("build", cwd=project).code == 0
    spec = {
        "rule_files": [str(project / "monitoring/prometheus/rules/nself.yml")],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [
                    {"series": 'up{job="redis",instance="redis-exporter:9121"}', "values": "0x5"},
                    {"series": 'up{job="node",instance="node-exporter:9100"}', "values": "1x5"},
                    {"series": 'redis_up{instance="redis-exporter:9121"}', "values": "0x5"},
                ],
                "alert_rule_test": [
                    {
                        "eval_time": "3m",
                        "alertname": "TargetDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "job": "redis",
                                    "instance": "redis-exporter:9121",
                                },
                                "exp_annotations": {
                                    "summary": "redis is down",
                                    "description": "Prometheus cannot scrape "
                                    "redis-exporter:9121 (job redis).",
                                },
                            }
                        ],
                    },
                    {
                        "eval_time": "3m",
                        "alertname": "RedisDown",
                        "exp_alerts": [
                            {
                                "exp_labels": {
                                    "severity": "critical",
                                    "instance": "redis-exporter:9121",
                                },
                                "exp_annotations": {
                                    "summary": "Redis is down",
                                    "description": "The exporter cannot connect to Redis.",
                                },
                            }
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "alerts-test.yml"
    test_file.write_text(yaml.safe_dump(spec))
    tested = run("promtool", "test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr


@needs_prometheus_tools
@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"ALERTMANAGER_WEBHOOK_URL": "https://hooks.example.com/nself"},
        {"MAIL_ENABLED": "true", "ALERTMANAGER_EMAIL_TO": "ops@example.com"},
    ],
    ids=["no-receiver", "webhook", "email-via-catcher"],
)
def test_alertmanager_config_passes_amtool(
    project: Path, nself: Nself, extra: dict[str, str]
) -> None:
    set_env(project, MONITORING_ENABLED="true", **extra)
    assert nself("build", cwd=project).code == 0
    path = project / "monitoring/alertmanager/alertmanager.yml"
    checked = run("amtool", "check-config", str(path))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    receiver = yaml.safe_load(path.read_text())["receivers"][0]
    if "ALERTMANAGER_WEBHOOK_URL" in extra:
        assert receiver["webhook_configs"][0]["url"] == extra["ALERTMANAGER_WEBHOOK_URL"]
    if "ALERTMANAGER_EMAIL_TO" in extra:
        assert receiver["email_configs"][0]["to"] == "ops@example.com"
        assert yaml.safe_load(path.read_text())["global"]["smtp_smarthost"] == "mail:1025"
