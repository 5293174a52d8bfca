"""Monitoring: metrics, logs, traces and alerts for the whole stack.

Prometheus, Grafana (monitor.{domain}, its own login), Loki, Promtail, Tempo,
Alertmanager, cAdvisor, Node Exporter, Postgres Exporter and, with Redis, Redis
Exporter. On by default in staging and prod (MONITORING_ENABLED), off in dev unless set.
Nothing is published on the host; Grafana is reached through nginx.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from nself_sdk import (
    Config,
    Finding,
    GeneratedFile,
    HealthCheck,
    ImageContract,
    Mount,
    Problem,
    Route,
    Service,
    Setting,
    Stack,
    hookimpl,
)
from nself_sdk.checks import cidrs
from nself_sdk.declare import IMAGE_SETTING_LABEL
from nself_sdk.envfiles import secrets_file

from . import configs, images

# Promtail's image has bash but neither wget nor curl.
_PROMTAIL_CHECK = (
    "CMD",
    "bash",
    "-c",
    "exec 3<>/dev/tcp/127.0.0.1/9080 && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 "
    "&& head -n 1 <&3 | grep -q ' 200'",
)
NO_CHECK = ("NONE",)


@dataclass(frozen=True)
class Component:
    """One monitoring service, declared: what it runs, mounts and needs, and how it is
    checked (an HTTP GET of ``health`` on ``port`` every 15 s unless ``probe`` says
    otherwise)."""

    name: str  # service name and host name
    title: str
    contract: ImageContract  # what the pinned image is and needs
    port: int
    optional: bool = False  # may be switched off with <NAME>_ENABLED=false
    health: str = "/"  # the HTTP path its health check asks
    probe_tool: str = "wget"  # what asks it: wget or curl (whichever the image has)
    probe: tuple[str, ...] | None = None  # another health check command
    start_period: str = "10s"
    command: tuple[str, ...] | None = None
    environment: dict[str, str] = field(default_factory=dict)
    mounts: tuple[Mount, ...] = ()
    depends_on: tuple[str, ...] = ()  # monitoring ones count only when they run
    drop_all_caps: bool = True

    @property
    def env(self) -> str:
        return self.name.upper().replace("-", "_")

    @property
    def image(self) -> str:
        return str(self.contract.image)

    def healthcheck(self) -> HealthCheck:
        if self.probe == NO_CHECK:
            return HealthCheck(NO_CHECK)
        test = self.probe or _http_check(self.port, self.health, self.probe_tool)
        return HealthCheck(test, interval="15s", start_period=self.start_period)


def _http_check(port: int, path: str, tool: str = "wget") -> tuple[str, ...]:
    url = f"http://127.0.0.1:{port}{path}"
    if tool == "curl":
        return ("CMD", "curl", "-fsS", "-o", "/dev/null", url)
    return ("CMD", "wget", "-q", "-O", "/dev/null", url)


COMPONENTS = (
    Component(
        "prometheus",
        "Prometheus",
        images.PROMETHEUS,
        9090,
        health="/-/ready",
        command=(
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=${PROMETHEUS_RETENTION}",
            "--web.enable-lifecycle",
        ),
        mounts=(
            Mount("./monitoring/prometheus", "/etc/prometheus", read_only=True),
            Mount("prometheus_data", "/prometheus"),
        ),
    ),
    Component(
        "grafana",
        "Grafana",
        images.GRAFANA,
        3000,
        health="/api/health",
        probe_tool="curl",
        start_period="30s",
        environment={
            "GF_SECURITY_ADMIN_USER": "${GRAFANA_ADMIN_USER}",
            "GF_SECURITY_ADMIN_PASSWORD": "${GRAFANA_ADMIN_PASSWORD}",
            "GF_SERVER_ROOT_URL": "${GRAFANA_ROOT_URL}",
            "GF_SECURITY_COOKIE_SECURE": "true",
            "GF_USERS_ALLOW_SIGN_UP": "false",
            "GF_AUTH_ANONYMOUS_ENABLED": "false",
            "GF_ANALYTICS_REPORTING_ENABLED": "false",
            "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            "GF_PATHS_PROVISIONING": configs.GRAFANA_PROVISIONING,
            "GF_LOG_MODE": "console",
        },
        depends_on=("prometheus", "loki", "tempo"),
        mounts=(
            Mount("grafana_data", "/var/lib/grafana"),
            Mount(
                "./monitoring/grafana/provisioning", configs.GRAFANA_PROVISIONING, read_only=True
            ),
            Mount("./monitoring/grafana/dashboards", configs.GRAFANA_DASHBOARDS, read_only=True),
        ),
    ),
    Component(
        "loki",
        "Loki",
        images.LOKI,
        3100,
        health="/ready",
        start_period="30s",
        command=("-config.file=/etc/loki/loki.yml",),
        mounts=(
            Mount("./monitoring/loki", "/etc/loki", read_only=True),
            Mount("loki_data", "/loki"),
        ),
    ),
    Component(
        "promtail",
        "Promtail",
        images.PROMTAIL,
        9080,
        optional=True,
        health="/ready",
        probe=_PROMTAIL_CHECK,
        command=("-config.file=/etc/promtail/promtail.yml",),
        depends_on=("loki",),
        mounts=(
            Mount("./monitoring/promtail", "/etc/promtail", read_only=True),
            Mount("promtail_data", "/var/lib/promtail"),
            # Read-only: finds the project's containers and reads their logs.
            Mount("/var/run/docker.sock", "/var/run/docker.sock", read_only=True),
        ),
    ),
    Component(
        "tempo",
        "Tempo",
        images.TEMPO,
        3200,
        health="/ready",
        start_period="30s",
        command=("-config.file=/etc/tempo/tempo.yml",),
        mounts=(
            Mount("./monitoring/tempo", "/etc/tempo", read_only=True),
            Mount("tempo_data", "/var/tempo"),
        ),
    ),
    Component(
        "alertmanager",
        "Alertmanager",
        images.ALERTMANAGER,
        9093,
        health="/-/ready",
        command=(
            "--config.file=/etc/alertmanager/alertmanager.yml",
            "--storage.path=/alertmanager",
        ),
        mounts=(
            Mount("./monitoring/alertmanager", "/etc/alertmanager", read_only=True),
            Mount("alertmanager_data", "/alertmanager"),
        ),
    ),
    Component(
        "cadvisor",
        "cAdvisor",
        images.CADVISOR,
        8080,
        optional=True,
        health="/healthz",
        command=(
            "--docker_only=true",
            "--housekeeping_interval=30s",
            "--store_container_labels=false",
            "--whitelisted_container_labels=org.nself.project,org.nself.service",
        ),
        mounts=(
            Mount("/", "/rootfs", read_only=True),
            Mount("/var/run", "/var/run", read_only=True),
            Mount("/sys", "/sys", read_only=True),
            Mount("/var/lib/docker", "/var/lib/docker", read_only=True),
        ),
        # cAdvisor reads other containers' cgroups and files as root.
        drop_all_caps=False,
    ),
    Component(
        "node-exporter",
        "Node Exporter",
        images.NODE_EXPORTER,
        9100,
        optional=True,
        start_period="20s",
        command=(
            "--path.procfs=/host/proc",
            "--path.sysfs=/host/sys",
            "--path.rootfs=/rootfs",
            "--collector.filesystem.mount-points-exclude=^/(sys|proc|dev|host|etc)($|/)",
        ),
        mounts=(
            Mount("/proc", "/host/proc", read_only=True),
            Mount("/sys", "/host/sys", read_only=True),
            Mount("/", "/rootfs", read_only=True),
        ),
    ),
    Component(
        "postgres-exporter",
        "Postgres Exporter",
        images.POSTGRES_EXPORTER,
        9187,
        start_period="20s",
        environment={
            "DATA_SOURCE_URI": "postgres:5432/${POSTGRES_DB}?sslmode=disable",
            "DATA_SOURCE_USER": "${POSTGRES_USER}",
            "DATA_SOURCE_PASS": "${POSTGRES_PASSWORD}",
        },
        depends_on=("postgres",),
    ),
    # A scratch image, nothing inside to probe with (the multi-arch tag; its alpine tag is
    # amd64 only). Prometheus watches it: TargetDown.
    Component(
        "redis-exporter",
        "Redis Exporter",
        images.REDIS_EXPORTER,
        9121,
        health="/health",
        probe=NO_CHECK,
        environment={"REDIS_ADDR": "redis://redis:6379", "REDIS_PASSWORD": "${REDIS_PASSWORD}"},
        depends_on=("redis",),
    ),
)
BY_NAME = {c.name: c for c in COMPONENTS}
# Loki/Prometheus durations (days allowed) and Go durations (Tempo: hours at most).
RETENTION = re.compile(r"^\d+[smhdwy]$")
GO_DURATION = re.compile(r"^\d+[smh]$")


def enabled(config: Config) -> bool:
    """On by default in staging and prod, off in dev unless set."""
    return config.flag("MONITORING_ENABLED", not config.is_local)


def redis_on(config: Config) -> bool:
    return config.flag("REDIS_ENABLED", False)


def active(config: Config) -> list[Component]:
    """The monitoring services this config runs."""
    if not enabled(config):
        return []
    chosen = []
    for component in COMPONENTS:
        if component.optional and not config.flag(f"{component.env}_ENABLED", True):
            continue
        if component.name == "redis-exporter" and not redis_on(config):
            continue
        chosen.append(component)
    return chosen


@hookimpl
def declare_settings() -> list[Setting]:
    settings = [
        Setting(
            "MONITORING_ENABLED",
            None,
            "Run the monitoring stack (default: true in staging and prod, false in dev).",
            wizard=True,
        ),
        Setting("GRAFANA_SUBDOMAIN", "monitor", "Subdomain of Grafana (asks for its own login)."),
        Setting(
            "GRAFANA_ALLOW_CIDRS",
            "",
            "Addresses or networks (comma separated) that may reach Grafana (empty: any, "
            "after Grafana's login). Docker's gateway range is never implied.",
        ),
        Setting("GRAFANA_ADMIN_USER", "admin", "Grafana administrator login."),
        Setting(
            "GRAFANA_ADMIN_PASSWORD",
            description="Grafana administrator password.",
            secret=True,
            min_length=16,
            generate="password",
        ),
        Setting("PROMETHEUS_RETENTION", "15d", "How long Prometheus keeps metrics."),
        Setting("LOKI_RETENTION", "744h", "How long Loki keeps logs."),
        Setting("TEMPO_RETENTION", "168h", "How long Tempo keeps traces (hours)."),
        Setting("ALERTMANAGER_WEBHOOK_URL", "", "Send alerts to this webhook (Slack, ntfy...)."),
        Setting("ALERTMANAGER_EMAIL_TO", "", "Send alerts by mail to this address."),
    ]
    for component in COMPONENTS:
        settings.append(
            Setting(f"{component.env}_IMAGE", component.image, f"{component.title} image.")
        )
        if component.optional:
            settings.append(
                Setting(
                    f"{component.env}_ENABLED",
                    "true",
                    f"Run {component.title} when monitoring is on.",
                )
            )
    return settings


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    if not enabled(config):
        return []
    problems = []
    for name, pattern, example in (
        ("PROMETHEUS_RETENTION", RETENTION, "15d"),
        ("LOKI_RETENTION", RETENTION, "744h"),
        ("TEMPO_RETENTION", GO_DURATION, "168h"),
    ):
        value = config.text(name)
        if not pattern.match(value):
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name}={value!r} is not a duration",
                    f"write it like {example}",
                )
            )
    if not config.text("GRAFANA_ADMIN_PASSWORD"):
        problems.append(
            Problem(
                "error",
                "monitoring is on but GRAFANA_ADMIN_PASSWORD is empty",
                f"run `nself secrets generate` or set it in {secrets_file(config.env)}",
            )
        )
    if config.text("ALERTMANAGER_EMAIL_TO") and not configs.email_relay(config):
        problems.append(
            Problem(
                "warning",
                "ALERTMANAGER_EMAIL_TO is ignored: alert mail needs MAIL_ENABLED with a "
                "server that takes mail without a login (the catcher or MAIL_PROVIDER=smtp)",
                "use ALERTMANAGER_WEBHOOK_URL for a provider that needs a login",
            )
        )
    return problems


@hookimpl
def contribute_env(config: Config) -> dict[str, str]:
    if not enabled(config):
        return {}
    return {
        "PROMETHEUS_URL": "http://prometheus:9090",
        "LOKI_URL": "http://loki:3100",
        "OTEL_EXPORTER_OTLP_ENDPOINT": "http://tempo:4318",
        "GRAFANA_ROOT_URL": configs.grafana_url(config),
    }


def _service(config: Config, c: Component, running: set[str]) -> Service:
    return Service(
        name=c.name,
        title=c.title,
        image=config.text(f"{c.env}_IMAGE", c.image),
        role="monitoring",
        port=c.port,
        health_url=f"http://{c.name}:{c.port}{c.health}",
        contract=c.contract,
        command=c.command,
        environment=dict(c.environment),
        healthcheck=c.healthcheck(),
        depends_on=tuple(d for d in c.depends_on if d not in BY_NAME or d in running),
        mounts=c.mounts,
        drop_all_caps=c.drop_all_caps,
        labels={IMAGE_SETTING_LABEL: f"{c.env}_IMAGE"},
    )


def _names(config: Config) -> set[str]:
    return {c.name for c in active(config)}


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    running = _names(config)
    return [_service(config, c, running) for c in active(config)]


@hookimpl
def contribute_nginx(config: Config) -> list[Route]:
    if not enabled(config):
        return []
    return [
        Route(
            config.text("GRAFANA_SUBDOMAIN", "monitor"),
            "grafana",
            3000,
            service="grafana",
            websocket=True,
            internal_only=True,
            allow_cidrs=tuple(cidrs(config.text("GRAFANA_ALLOW_CIDRS"))),
            own_login=True,  # anonymous access off, GRAFANA_ADMIN_PASSWORD required
        )
    ]


@hookimpl
def contribute_files(config: Config, stack: Stack) -> list[GeneratedFile]:
    if not enabled(config):
        return []
    return configs.files(config, stack, _names(config))


@hookimpl
def harden(config: Config) -> list[Finding]:
    """``log-retention`` (Loki, Promtail) and ``alerts`` (someone hears them)."""
    from .hardening import findings

    return findings(config)
