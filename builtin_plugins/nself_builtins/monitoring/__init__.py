"""Monitoring: metrics, logs, traces and alerts for the whole stack.

Prometheus, Grafana (monitor.{domain}, private networks only), Loki, Promtail, Tempo,
Alertmanager, cAdvisor, Node Exporter, Postgres Exporter and, with Redis, Redis
Exporter. On by default in staging and prod (MONITORING_ENABLED), off in dev unless set.
Nothing is published on the host; Grafana is reached through nginx.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace

from nself_sdk import (
    Config,
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

from . import configs, images


@dataclass(frozen=True)
class Component:
    name: str  # service name and host name
    title: str
    image: str
    port: int
    optional: bool = False  # may be switched off with <NAME>_ENABLED=false
    health: str = "/"  # the HTTP path its health check asks
    contract: ImageContract | None = None  # what the pinned image is and needs

    @property
    def env(self) -> str:
        return self.name.upper().replace("-", "_")


COMPONENTS = (
    Component(
        "prometheus",
        "Prometheus",
        images.PROMETHEUS.image,
        9090,
        health="/-/ready",
        contract=images.PROMETHEUS,
    ),
    Component(
        "grafana",
        "Grafana",
        images.GRAFANA.image,
        3000,
        health="/api/health",
        contract=images.GRAFANA,
    ),
    Component("loki", "Loki", images.LOKI.image, 3100, health="/ready", contract=images.LOKI),
    Component(
        "promtail",
        "Promtail",
        images.PROMTAIL.image,
        9080,
        True,
        "/ready",
        contract=images.PROMTAIL,
    ),
    Component("tempo", "Tempo", images.TEMPO.image, 3200, health="/ready", contract=images.TEMPO),
    Component(
        "alertmanager",
        "Alertmanager",
        images.ALERTMANAGER.image,
        9093,
        health="/-/ready",
        contract=images.ALERTMANAGER,
    ),
    Component(
        "cadvisor",
        "cAdvisor",
        images.CADVISOR.image,
        8080,
        True,
        "/healthz",
        contract=images.CADVISOR,
    ),
    Component(
        "node-exporter",
        "Node Exporter",
        images.NODE_EXPORTER.image,
        9100,
        optional=True,
        contract=images.NODE_EXPORTER,
    ),
    Component(
        "postgres-exporter",
        "Postgres Exporter",
        images.POSTGRES_EXPORTER.image,
        9187,
        contract=images.POSTGRES_EXPORTER,
    ),
    Component(
        "redis-exporter",
        "Redis Exporter",
        images.REDIS_EXPORTER.image,
        9121,
        health="/health",
        contract=images.REDIS_EXPORTER,
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
        Setting("GRAFANA_SUBDOMAIN", "monitor", "Subdomain of Grafana (private networks only)."),
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
                "run `nself secrets generate` or set it in .env.secrets",
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


def _http_check(port: int, path: str, tool: str = "wget") -> tuple[str, ...]:
    url = f"http://127.0.0.1:{port}{path}"
    if tool == "curl":
        return ("CMD", "curl", "-fsS", "-o", "/dev/null", url)
    return ("CMD", "wget", "-q", "-O", "/dev/null", url)


# Promtail's image has bash but neither wget nor curl.
_PROMTAIL_CHECK = (
    "CMD",
    "bash",
    "-c",
    "exec 3<>/dev/tcp/127.0.0.1/9080 && printf 'GET /ready HTTP/1.0\\r\\n\\r\\n' >&3 "
    "&& head -n 1 <&3 | grep -q ' 200'",
)


def _service(config: Config, component: Component) -> Service:
    c = component
    image = config.text(f"{c.env}_IMAGE", c.image)
    base = Service(
        name=c.name,
        title=c.title,
        image=image,
        role="monitoring",
        port=c.port,
        health_url=f"http://{c.name}:{c.port}{c.health}",
        contract=c.contract,
    )
    check = HealthCheck(
        _http_check(c.port, c.health), interval="15s", retries=5, start_period="20s"
    )
    if c.name == "prometheus":
        return replace(
            base,
            command=(
                "--config.file=/etc/prometheus/prometheus.yml",
                "--storage.tsdb.path=/prometheus",
                "--storage.tsdb.retention.time=${PROMETHEUS_RETENTION}",
                "--web.enable-lifecycle",
            ),
            healthcheck=HealthCheck(_http_check(c.port, c.health), interval="15s"),
            mounts=(
                Mount("./monitoring/prometheus", "/etc/prometheus", read_only=True),
                Mount("prometheus_data", "/prometheus"),
            ),
        )
    if c.name == "alertmanager":
        return replace(
            base,
            command=(
                "--config.file=/etc/alertmanager/alertmanager.yml",
                "--storage.path=/alertmanager",
            ),
            healthcheck=HealthCheck(_http_check(c.port, c.health), interval="15s"),
            mounts=(
                Mount("./monitoring/alertmanager", "/etc/alertmanager", read_only=True),
                Mount("alertmanager_data", "/alertmanager"),
            ),
        )
    if c.name == "grafana":
        depends = tuple(n for n in ("prometheus", "loki", "tempo") if n in _names(config))
        return replace(
            base,
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
            healthcheck=HealthCheck(
                _http_check(c.port, c.health, tool="curl"), interval="15s", start_period="30s"
            ),
            depends_on=depends,
            mounts=(
                Mount("grafana_data", "/var/lib/grafana"),
                Mount(
                    "./monitoring/grafana/provisioning",
                    configs.GRAFANA_PROVISIONING,
                    read_only=True,
                ),
                Mount(
                    "./monitoring/grafana/dashboards", configs.GRAFANA_DASHBOARDS, read_only=True
                ),
            ),
        )
    if c.name == "loki":
        return replace(
            base,
            command=("-config.file=/etc/loki/loki.yml",),
            healthcheck=HealthCheck(
                _http_check(c.port, c.health), interval="15s", start_period="30s"
            ),
            mounts=(
                Mount("./monitoring/loki", "/etc/loki", read_only=True),
                Mount("loki_data", "/loki"),
            ),
        )
    if c.name == "promtail":
        return replace(
            base,
            command=("-config.file=/etc/promtail/promtail.yml",),
            healthcheck=HealthCheck(_PROMTAIL_CHECK, interval="15s"),
            depends_on=("loki",),
            mounts=(
                Mount("./monitoring/promtail", "/etc/promtail", read_only=True),
                Mount("promtail_data", "/var/lib/promtail"),
                # Read-only: finds the project's containers and reads their logs.
                Mount("/var/run/docker.sock", "/var/run/docker.sock", read_only=True),
            ),
        )
    if c.name == "tempo":
        return replace(
            base,
            command=("-config.file=/etc/tempo/tempo.yml",),
            healthcheck=HealthCheck(
                _http_check(c.port, c.health), interval="15s", start_period="30s"
            ),
            mounts=(
                Mount("./monitoring/tempo", "/etc/tempo", read_only=True),
                Mount("tempo_data", "/var/tempo"),
            ),
        )
    if c.name == "cadvisor":
        return replace(
            base,
            command=(
                "--docker_only=true",
                "--housekeeping_interval=30s",
                "--store_container_labels=false",
                "--whitelisted_container_labels=org.nself.project,org.nself.service",
            ),
            healthcheck=HealthCheck(_http_check(c.port, c.health), interval="15s"),
            mounts=(
                Mount("/", "/rootfs", read_only=True),
                Mount("/var/run", "/var/run", read_only=True),
                Mount("/sys", "/sys", read_only=True),
                Mount("/var/lib/docker", "/var/lib/docker", read_only=True),
            ),
            # cAdvisor reads other containers' cgroups and files as root.
            drop_all_caps=False,
        )
    if c.name == "node-exporter":
        return replace(
            base,
            command=(
                "--path.procfs=/host/proc",
                "--path.sysfs=/host/sys",
                "--path.rootfs=/rootfs",
                "--collector.filesystem.mount-points-exclude=^/(sys|proc|dev|host|etc)($|/)",
            ),
            healthcheck=check,
            mounts=(
                Mount("/proc", "/host/proc", read_only=True),
                Mount("/sys", "/host/sys", read_only=True),
                Mount("/", "/rootfs", read_only=True),
            ),
        )
    if c.name == "postgres-exporter":
        return replace(
            base,
            environment={
                "DATA_SOURCE_URI": "postgres:5432/${POSTGRES_DB}?sslmode=disable",
                "DATA_SOURCE_USER": "${POSTGRES_USER}",
                "DATA_SOURCE_PASS": "${POSTGRES_PASSWORD}",
            },
            healthcheck=check,
            depends_on=("postgres",),
        )
    # redis-exporter: a scratch image, nothing inside to probe with (the multi-arch tag;
    # its alpine tag is amd64 only). Prometheus watches it: TargetDown.
    return replace(
        base,
        environment={"REDIS_ADDR": "redis://redis:6379", "REDIS_PASSWORD": "${REDIS_PASSWORD}"},
        healthcheck=HealthCheck(("NONE",)),
        depends_on=("redis",),
    )


def _names(config: Config) -> set[str]:
    return {c.name for c in active(config)}


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    return [_service(config, c) for c in active(config)]


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
        )
    ]


@hookimpl
def contribute_files(config: Config, stack: Stack) -> list[GeneratedFile]:
    if not enabled(config):
        return []
    return configs.files(config, stack, _names(config))
