"""The contracts of the monitoring stack's pinned images (upstream facts at each tag)."""

from __future__ import annotations

from nself_sdk import ImageContract

# The Prometheus projects build for DOCKER_ARCHS (Makefile): amd64 armv7 arm64 ppc64le s390x.
PROMETHEUS_ARCHS = (
    "linux/amd64",
    "linux/arm/v7",
    "linux/arm64",
    "linux/ppc64le",
    "linux/s390x",
)
# quay.io/prometheus/busybox base: busybox's sh and wget; USER nobody (65534).
BUSYBOX = ("sh", "wget")
NOBODY = 65534

PROMETHEUS = ImageContract(
    image="prom/prometheus:v2.53.2",
    source=(
        "https://github.com/prometheus/prometheus/blob/v2.53.2/Dockerfile",
        "https://github.com/prometheus/prometheus/blob/v2.53.2/Makefile",
    ),
    # `chown -R nobody:nobody /etc/prometheus /prometheus`, USER nobody, VOLUME /prometheus.
    user=NOBODY,
    capabilities=(),
    writable=("/prometheus",),
    writes=("/prometheus",),
    tools=("prometheus", "promtool", *BUSYBOX),
    env=(),
    ports=(9090,),
    platforms=PROMETHEUS_ARCHS,
)

ALERTMANAGER = ImageContract(
    image="prom/alertmanager:v0.27.0",
    source=(
        "https://github.com/prometheus/alertmanager/blob/v0.27.0/Dockerfile",
        "https://github.com/prometheus/alertmanager/blob/v0.27.0/Makefile",
    ),
    # `chown -R nobody:nobody etc/alertmanager /alertmanager`, USER nobody.
    user=NOBODY,
    capabilities=(),
    writable=("/alertmanager",),
    writes=("/alertmanager",),
    tools=("alertmanager", "amtool", *BUSYBOX),
    env=(),
    ports=(9093,),
    platforms=PROMETHEUS_ARCHS,
)

NODE_EXPORTER = ImageContract(
    image="prom/node-exporter:v1.8.2",
    source=(
        "https://github.com/prometheus/node_exporter/blob/v1.8.2/Dockerfile",
        "https://github.com/prometheus/node_exporter/blob/v1.8.2/Makefile",
    ),
    user=NOBODY,
    capabilities=(),
    writable=(),
    tools=("node_exporter", *BUSYBOX),
    env=(),
    ports=(9100,),
    platforms=PROMETHEUS_ARCHS,
)

POSTGRES_EXPORTER = ImageContract(
    image="prometheuscommunity/postgres-exporter:v0.15.0",
    source=(
        "https://github.com/prometheus-community/postgres_exporter/blob/v0.15.0/Dockerfile",
        "https://github.com/prometheus-community/postgres_exporter/blob/v0.15.0/Makefile",
        "https://github.com/prometheus-community/postgres_exporter/blob/v0.15.0/README.md",
    ),
    user=NOBODY,
    capabilities=(),
    writable=(),
    tools=("postgres_exporter", *BUSYBOX),
    env=("DATA_SOURCE_*", "PG_EXPORTER_*"),
    # DATA_SOURCE_NAME, or DATA_SOURCE_URI with _USER and _PASS.
    required=("DATA_SOURCE_URI", "DATA_SOURCE_USER", "DATA_SOURCE_PASS"),
    ports=(9187,),
    # DOCKER_ARCHS ?= amd64 armv7 arm64 ppc64le
    platforms=("linux/amd64", "linux/arm/v7", "linux/arm64", "linux/ppc64le"),
)

# The plain tag is the scratch image, pushed for linux/amd64, linux/arm and linux/arm64;
# the -alpine tag of this release exists for amd64 only (exec format error on ARM).
REDIS_EXPORTER = ImageContract(
    image="oliver006/redis_exporter:v1.62.0",
    source=(
        "https://github.com/oliver006/redis_exporter/blob/v1.62.0/Dockerfile",
        "https://github.com/oliver006/redis_exporter/blob/v1.62.0/.github/workflows/release.yml",
        "https://github.com/oliver006/redis_exporter/blob/v1.62.0/README.md",
    ),
    # FROM scratch: the binary and CA certificates, USER 59000:59000. No shell, no HTTP
    # client: nothing inside can probe it (Prometheus's TargetDown alert watches it).
    user=59000,
    capabilities=(),
    writable=(),
    tools=("/redis_exporter",),
    env=("REDIS_*",),
    required=("REDIS_ADDR",),
    ports=(9121,),
    platforms=("linux/amd64", "linux/arm/v7", "linux/arm64"),
)

GRAFANA = ImageContract(
    image="grafana/grafana:11.3.0",
    source=(
        "https://github.com/grafana/grafana/blob/v11.3.0/Dockerfile",
        "https://github.com/grafana/grafana/blob/v11.3.0/packaging/docker/run.sh",
        "https://grafana.com/docs/grafana/v11.3/setup-grafana/configure-grafana/#override-configuration-with-environment-variables",
    ),
    # ARG GF_UID="472", GF_GID="0"; GF_PATHS_DATA /var/lib/grafana owned by it; run.sh
    # refuses to start when GF_PATHS_DATA is not writable.
    user=472,
    capabilities=(),
    writable=("/var/lib/grafana",),
    writes=("/var/lib/grafana",),
    # alpine with bash, curl and tzdata added (busybox wget and sh).
    tools=("grafana", "grafana-server", "bash", "curl", "sh", "wget"),
    # Any option is GF_<SECTION>_<KEY>.
    env=("GF_*",),
    ports=(3000,),
    platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"),
    notes="Platforms as Grafana's release pipeline publishes them (not read from its "
    "build files at this tag).",
)

LOKI = ImageContract(
    image="grafana/loki:3.2.1",
    source=(
        "https://github.com/grafana/loki/blob/v3.2.1/cmd/loki/Dockerfile",
        "https://grafana.com/docs/loki/v3.2.x/setup/install/docker/",
    ),
    # addgroup -g 10001 loki; `chown -R loki:loki /etc/loki /loki`; USER 10001.
    user=10001,
    capabilities=(),
    writable=("/loki",),
    writes=("/loki",),
    tools=("loki", *BUSYBOX),
    env=(),
    ports=(3100,),
    platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"),
    notes="Alpine (busybox wget) in every 2.x-3.x Dockerfile read; the copy at 3.2.1 itself "
    "was not available. Later releases are distroless (3.6 ships no wget on PATH), so the "
    "health check breaks on such an upgrade.",
)

PROMTAIL = ImageContract(
    image="grafana/promtail:3.2.1",
    source=(
        "https://github.com/grafana/loki/blob/v3.2.1/clients/cmd/promtail/Dockerfile",
        "https://grafana.com/docs/loki/v3.2.x/send-data/promtail/installation/",
    ),
    # debian slim with tzdata, ca-certificates and libsystemd; no USER. It reads the
    # Docker socket and writes its positions file.
    user=0,
    capabilities=(),
    writable=("/var/lib/promtail",),
    writes=("/var/lib/promtail",),
    # bash (its /dev/tcp is the health check: neither wget nor curl is installed).
    tools=("promtail", "bash", "sh", "head", "grep"),
    env=(),
    ports=(9080,),
    platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"),
)

TEMPO = ImageContract(
    image="grafana/tempo:2.6.1",
    source=("https://github.com/grafana/tempo/blob/v2.6.1/cmd/tempo/Dockerfile",),
    # alpine; adduser -u 10001 tempo; `chown -R tempo:tempo /var/tempo`; USER 10001:10001.
    user=10001,
    capabilities=(),
    writable=("/var/tempo",),
    writes=("/var/tempo",),
    tools=("/tempo", *BUSYBOX),
    env=(),
    # 3200 HTTP, 4317/4318 OTLP gRPC/HTTP.
    ports=(3200, 4317, 4318),
    # COPY bin/linux/tempo-${TARGETARCH}: built for amd64 and arm64.
    platforms=("linux/amd64", "linux/arm64"),
    notes="Later Tempo images are distroless (no wget): the health check breaks on such "
    "an upgrade.",
)

CADVISOR = ImageContract(
    image="gcr.io/cadvisor/cadvisor:v0.49.1",
    source=(
        "https://github.com/google/cadvisor/blob/v0.49.1/deploy/Dockerfile",
        "https://github.com/google/cadvisor/blob/v0.49.1/docs/running.md",
    ),
    # alpine, no USER; its own HEALTHCHECK is `wget --quiet --tries=1 --spider`.
    user=0,
    # It reads every container's cgroup files and /var/lib/docker as root: upstream runs
    # it privileged; nself keeps the engine's default capabilities instead.
    default_capabilities=True,
    writable=(),
    tools=("cadvisor", *BUSYBOX),
    env=(),
    ports=(8080,),
    platforms=("linux/amd64", "linux/arm64", "linux/arm/v7"),
    notes="Platforms as the gcr.io/cadvisor manifest lists them since v0.47 (not read "
    "from its build files at this tag).",
)
