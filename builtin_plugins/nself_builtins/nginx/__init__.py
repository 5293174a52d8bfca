"""Nginx: the only public entry point. TLS, one server per subdomain, rate limits."""

from __future__ import annotations

import re
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from nself_builtins.shared.images import OFFICIAL_ALPINE
from nself_builtins.shared.tls import (
    ACME_CERTS_VOLUME,
    ACME_MOUNT,
    ACME_SERVICE,
    certificate,
    host_of,
    in_ssl,
    ssl_mode,
)
from nself_builtins.shared.urls import public_url
from nself_sdk import (
    Config,
    Finding,
    GeneratedFile,
    HealthCheck,
    ImageContract,
    Mount,
    NselfError,
    PortBinding,
    Problem,
    Route,
    Service,
    ServicePlugin,
    Setting,
    Stack,
    hookimpl,
)

if TYPE_CHECKING:
    from typer import Typer

    from nself_sdk import Runtime
from nself_sdk.checks import cidrs, cidrs_problem, label_problem, size_problem

from . import render, upstreams

IMAGE = "nginx:1.25-alpine"
NGINX = ImageContract(
    image=IMAGE,
    source=(
        "https://github.com/nginxinc/docker-nginx/blob/1.25.5/mainline/alpine-slim/Dockerfile",
        "https://github.com/nginxinc/docker-nginx/blob/1.25.5/mainline/alpine/Dockerfile",
        "https://github.com/nginxinc/docker-nginx/blob/1.25.5/entrypoint/docker-entrypoint.sh",
        "https://github.com/docker-library/official-images/blob/master/library/nginx",
    ),
    # The master runs as root and starts its workers as nginx (101); the entrypoint's
    # scripts only touch /etc/nginx/conf.d, which nself does not use.
    user=0,
    # NET_BIND_SERVICE: ports 80 and 443. SETUID, SETGID: workers as nginx. CHOWN: the
    # temp folders under /var/cache/nginx are given to the worker user. DAC_OVERRIDE: the
    # master reads the private key, owned by the host's user with mode 0600.
    capabilities=("CHOWN", "DAC_OVERRIDE", "NET_BIND_SERVICE", "SETGID", "SETUID"),
    writable=("/var/cache/nginx",),
    # getent: alpine's musl-utils (in the image's alpine base); nself-run.sh resolves
    # upstream servers with it.
    tools=("nginx", "sh", "wget", "getent"),
    env=("NGINX_*",),
    ports=(80, 443),
    # Alpine variants: amd64, arm32v6, arm32v7, arm64v8, i386, ppc64le, s390x.
    platforms=OFFICIAL_ALPINE,
)
# At least one request; nine digits at most, so nginx's rate * 1000 cannot overflow.
RATE = re.compile(r"^[1-9]\d{0,8}r/[sm]$")
SERVER_NAME = re.compile(r"^\s*server_name\s+([^;]+);", re.MULTILINE)


@hookimpl
def declare_settings() -> list[Setting]:
    return [
        *SERVICE.all_settings(),
        Setting("NGINX_HTTP_PORT", "80", "Host port for HTTP (redirects to HTTPS)."),
        Setting("NGINX_HTTPS_PORT", "443", "Host port for HTTPS."),
        Setting("NGINX_BIND", None, "Host address to publish on (dev: 127.0.0.1, else 0.0.0.0)."),
        Setting("NGINX_CLIENT_MAX_BODY_SIZE", "100m", "Largest request body."),
        Setting("RATE_LIMIT_GENERAL", "20r/s", "Requests per client IP for most routes."),
        Setting("RATE_LIMIT_GRAPHQL", "30r/s", "Requests per client IP to the GraphQL API."),
        Setting("RATE_LIMIT_AUTH", "30r/m", "Requests per client IP to Auth."),
        Setting(
            "NGINX_TRUSTED_PROXIES",
            "",
            "Proxies or load balancers in front of nginx (addresses or networks, comma "
            "separated): the client address is then read from their X-Forwarded-For.",
        ),
        Setting(
            "NGINX_AUTH_USER",
            "admin",
            "User name nginx asks for on private routes (the mail UI, the storage console).",
        ),
        Setting(
            "NGINX_AUTH_PASSWORD",
            description="Password nginx asks for on private routes (the mail UI, the storage "
            "console); Grafana asks for its own login.",
            secret=True,
            min_length=16,
            generate="token",
        ),
        Setting(
            "NGINX_UPSTREAM_<NAME>_SERVERS",
            None,
            "A load-balanced upstream: HOST:PORT servers, comma separated (stack services or "
            "external hosts); `nself nginx upstream add` writes it.",
        ),
        Setting(
            "NGINX_UPSTREAM_<NAME>_WEIGHTS",
            None,
            "Weights of the upstream's servers, one per server, comma separated (default 1).",
        ),
        Setting(
            "NGINX_UPSTREAM_<NAME>_SUBDOMAIN",
            None,
            "The upstream's public route SUBDOMAIN.BASE_DOMAIN (default: its name).",
        ),
        Setting(
            "NGINX_UPSTREAM_<NAME>_MAX_FAILS",
            None,
            "Failed attempts within FAIL_TIMEOUT after which nginx skips a server (default 1).",
        ),
        Setting(
            "NGINX_UPSTREAM_<NAME>_FAIL_TIMEOUT",
            None,
            "How long a failed server is skipped, and the window failures count in (10s).",
        ),
        Setting(
            "SSL_CERTIFICATE_FILE",
            "",
            "Your certificate (PEM, full chain) in nginx/ssl/; empty: nself's development one.",
        ),
        Setting(
            "SSL_CERTIFICATE_KEY_FILE",
            "",
            "The private key of SSL_CERTIFICATE_FILE, in nginx/ssl/.",
        ),
    ]


def _certificate_problems(config: Config) -> list[Problem]:
    """The project's own certificate: both files named, inside nginx/ssl/ (the only place
    the nginx container sees), present, the key private."""
    cert, key = config.text("SSL_CERTIFICATE_FILE"), config.text("SSL_CERTIFICATE_KEY_FILE")
    if not cert and not key:
        if config.is_local or ssl_mode(config) == "acme":
            return []
        return [
            Problem(
                "warning",
                f"{config.env} serves nself's self-signed certificate: browsers will warn",
                "put your certificate and key in nginx/ssl/ and set SSL_CERTIFICATE_FILE and "
                "SSL_CERTIFICATE_KEY_FILE",
            )
        ]
    if not cert or not key:
        have, lack = ("SSL_CERTIFICATE_FILE", "SSL_CERTIFICATE_KEY_FILE")[:: 1 if cert else -1]
        return [
            Problem(
                "error",
                f"{config.where(have)}: {have} is set but {lack} is not",
                f"set {lack} to the file of the other half, in nginx/ssl/",
            )
        ]
    problems = []
    for name in ("SSL_CERTIFICATE_FILE", "SSL_CERTIFICATE_KEY_FILE"):
        relative = Path(in_ssl(config.text(name)))
        path = config.project_dir / "nginx" / "ssl" / relative
        inside = config.project_dir.joinpath("nginx").resolve()
        if not relative.parts or re.search(r"[\s;{}'\"$]", str(relative)):
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name}={config.text(name)!r} is not a plain file name",
                    "rename the file without spaces, quotes, ';', '{', '}' or '$'",
                )
            )
        elif relative.is_absolute() or ".." in relative.parts:
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name} must name a file in nginx/ssl/",
                    "copy the file into nginx/ssl/ (the nginx container sees only nginx/)",
                )
            )
        elif not path.is_file():
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name}: nginx/ssl/{relative} does not exist",
                    "copy the file into nginx/ssl/ or fix the name",
                )
            )
        elif not path.resolve().is_relative_to(inside):
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name}: nginx/ssl/{relative} links outside nginx/, "
                    "which the nginx container cannot see",
                    "copy the file itself into nginx/ssl/ (e.g. after each renewal)",
                )
            )
        elif name.endswith("KEY_FILE") and path.stat().st_mode & 0o077:
            problems.append(
                Problem(
                    "warning",
                    f"the private key nginx/ssl/{relative} is readable by other users",
                    f"chmod 600 nginx/ssl/{relative}",
                )
            )
    return problems


def _bind(config: Config) -> str:
    return config.text("NGINX_BIND", "127.0.0.1" if config.is_local else "0.0.0.0")


@hookimpl
def contribute_env(config: Config) -> dict[str, str]:
    return {"PUBLIC_HTTPS_PORT": str(config.int("NGINX_HTTPS_PORT", 443))}


@hookimpl
def contribute_urls(config: Config, stack: Stack) -> dict[str, str]:
    """``https://SUBDOMAIN.BASE_DOMAIN`` of every route (the domain itself for ``*``), with
    the public HTTPS port when it is not 443."""
    urls: dict[str, str] = {}
    for route in stack.routes:
        subdomain = "" if route.subdomain == "*" else route.subdomain
        urls[route.service or route.subdomain] = public_url(config, subdomain)
    return urls


def _value_problems(config: Config) -> list[Problem]:
    """Every declared ``*_SUBDOMAIN`` must be a DNS label and every ``*_MAX_BODY_SIZE`` an
    nginx size, whichever plugin declares them: nginx writes them into its configuration."""
    problems = []
    for name in sorted(config.declared):
        check = (
            label_problem
            if name.endswith("_SUBDOMAIN")
            else size_problem
            if name.endswith("_MAX_BODY_SIZE")
            else cidrs_problem
            if name.endswith("_ALLOW_CIDRS")
            else None
        )
        if check is not None and (problem := check(config, name)) is not None:
            problems.append(problem)
        elif check is cidrs_problem and (gateway := _docker_range(config, name)):
            problems.append(
                Problem(
                    "warning",
                    f"{config.where(name)}: {name} lets in {gateway}, Docker's own range: "
                    "through Docker's port proxy every client comes from there",
                    "list the addresses of your own machines or VPN instead",
                )
            )
        default = config.declared[name].default
        if check is label_problem and default and _set_empty(config, name):
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name} is empty",
                    f"set a subdomain, or delete the line for the default {default!r} "
                    "(an empty value does not turn the route off)",
                )
            )
    return problems


def _docker_range(config: Config, name: str) -> str | None:
    """The item of the allowlist ``name`` that covers Docker's default gateway range."""
    return _docker_item(cidrs(config.text(name)))


def _docker_item(items: list[str]) -> str | None:
    """The first of ``items`` (addresses or networks) that overlaps Docker's default
    gateway range; items that are not addresses are other checks' business."""
    import ipaddress

    docker = ipaddress.ip_network("172.16.0.0/12")
    for item in items:
        try:
            net = ipaddress.ip_network(item, strict=False)
        except ValueError:
            continue
        if net.version == 4 and net.overlaps(docker):
            return item
    return None


def _set_empty(config: Config, name: str) -> bool:
    """``NAME=`` written in an env file (or made empty there by interpolation)."""
    return not config.text(name) and config.where(name) != "(default)"


def _bind_problems(config: Config) -> list[Problem]:
    """NGINX_BIND is one IP address of the host (IPv4 or IPv6), without a port."""
    import ipaddress

    bind = config.text("NGINX_BIND")
    if not bind:
        return []
    try:
        ipaddress.ip_address(bind)
        if "%" in bind:  # fe80::1%eth0: Compose refuses a zone id ("invalid IP address")
            raise ValueError(bind)
    except ValueError:
        return [
            Problem(
                "error",
                f"{config.where('NGINX_BIND')}: NGINX_BIND={bind!r} is not an IP address",
                "use one address of this host without a port or zone id (127.0.0.1, 0.0.0.0, ::1); "
                "the ports are NGINX_HTTP_PORT and NGINX_HTTPS_PORT",
            )
        ]
    if config.is_local and not ipaddress.ip_address(bind).is_loopback:
        return [
            Problem(
                "warning",
                f"{config.where('NGINX_BIND')}: NGINX_BIND={bind} publishes the {config.env} "
                "stack to the network: other machines reach what dev serves (consoles, dev "
                "mode, dev secrets)",
                "delete the line for 127.0.0.1 (this machine only), unless the network is "
                "meant to reach it",
            )
        ]
    return []


def _proxy_problems(config: Config) -> list[Problem]:
    """NGINX_TRUSTED_PROXIES: IP addresses or networks only (nginx's set_real_ip_from)."""
    import ipaddress

    problems = []
    for item in render.trusted_proxies(config):
        try:
            ipaddress.ip_network(item, strict=False)
        except ValueError:
            problems.append(
                Problem(
                    "error",
                    f"{config.where('NGINX_TRUSTED_PROXIES')}: {item!r} is not an IP address "
                    "or network",
                    "list the proxies' addresses or networks, like 10.0.0.5, 10.1.0.0/16",
                )
            )
    if gateway := _docker_item(render.trusted_proxies(config)):
        problems.append(
            Problem(
                "warning",
                f"{config.where('NGINX_TRUSTED_PROXIES')}: NGINX_TRUSTED_PROXIES trusts "
                f"{gateway}, Docker's own range: every client that reaches nginx through "
                "Docker's port proxy comes from there, so its own X-Forwarded-For is "
                "believed (the *_ALLOW_CIDRS allowlists and the rate limits with it)",
                "list only your proxy's or load balancer's addresses",
            )
        )
    return problems


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    problems = []
    for name in ("RATE_LIMIT_GENERAL", "RATE_LIMIT_GRAPHQL", "RATE_LIMIT_AUTH"):
        value = config.text(name)
        if not RATE.match(value):
            problems.append(
                Problem(
                    "error",
                    f"{config.where(name)}: {name}={value!r} is not a rate",
                    "write requests per second or per minute, 1 or more, like 10r/s or 30r/m",
                )
            )
    for name in ("NGINX_HTTP_PORT", "NGINX_HTTPS_PORT"):
        port = config.int(name, 0)
        if not 0 < port < 65536:
            problems.append(Problem("error", f"{config.where(name)}: {name} must be 1-65535"))
    problems += _value_problems(config)
    problems += _bind_problems(config)
    problems += _proxy_problems(config)
    problems += _certificate_problems(config)
    problems += upstreams.problems(config)
    problems += [
        p
        for name in upstreams.names(config)
        if (p := label_problem(config, upstreams.PREFIX + upstreams.key(name) + "_SUBDOMAIN"))
    ]
    problems += foreign_sites(config.project_dir)
    if config.int("NGINX_HTTP_PORT", 80) == config.int("NGINX_HTTPS_PORT", 443):
        problems.append(
            Problem(
                "error",
                "NGINX_HTTP_PORT and NGINX_HTTPS_PORT are the same",
                "give HTTP and HTTPS different host ports",
            )
        )
    return problems


# nginx's start script (upstreams.run_script): becomes nginx, or watches what changes.
RUN = upstreams.RUN


def _published(config: Config, service: Service) -> Service:
    bind = _bind(config)
    service = replace(
        service,
        published=(
            PortBinding(80, config.int("NGINX_HTTP_PORT", 80), bind),
            PortBinding(443, config.int("NGINX_HTTPS_PORT", 443), bind),
        ),
    )
    if ssl_mode(config) != "acme":
        return service
    # ACME: certificates from the renewer's volume (placeholders first, so nginx waits
    # for it); the start script reloads nginx when new ones land.
    return replace(
        service,
        mounts=(*service.mounts, Mount(ACME_CERTS_VOLUME, ACME_MOUNT, read_only=True)),
        depends_on=(*service.depends_on, ACME_SERVICE),
    )


SERVICE = ServicePlugin(
    Service(
        "nginx",
        IMAGE,
        title="Nginx",
        port=443,
        command=("sh", f"/etc/nginx/nself/{RUN}"),
        environment={"NGINX_ENTRYPOINT_QUIET_LOGS": "1"},
        healthcheck=HealthCheck(
            ("CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/health"), start_period="5s"
        ),
        mounts=(Mount("./nginx", "/etc/nginx/nself", read_only=True),),
        cap_add=("CHOWN", "DAC_OVERRIDE", "NET_BIND_SERVICE", "SETGID", "SETUID"),
        health_url="http://nginx:80/health",
        contract=NGINX,
    ),
    image=Setting("NGINX_IMAGE", description="Nginx image."),
    adapt=_published,
)


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    return [SERVICE.container(config)]


# The first line of every file nself writes into nginx/sites/ (render.py).
GENERATED = "# Generated by `nself build`"


def foreign_sites(project: Path) -> list[Problem]:
    """Files in nginx/sites/ that nself did not write: the folder is generated (and its
    *.conf included), so hand-written config belongs in nginx/conf.d/."""
    sites = project / "nginx" / "sites"
    if not sites.is_dir():
        return []
    problems = []
    for path in sorted(sites.iterdir()):
        try:
            with path.open("rb") as handle:
                first = handle.readline(64)
        except OSError:  # a folder, unreadable: not a file nself wrote either
            first = b""
        if first.startswith(GENERATED.encode()):
            continue
        included = path.suffix == ".conf" and path.is_file()
        problems.append(
            Problem(
                "warning",
                f"nginx/sites/{path.name} was not written by nself"
                + (" (nginx includes it)" if included else ""),
                "nginx/sites/ is generated: put hand-written config in nginx/conf.d/ "
                "(included last, never touched)",
            )
        )
    return problems


def hand_written_names(project: Path) -> set[str]:
    """Server names declared in nginx/conf.d/*.conf: those win over generated sites."""
    names: set[str] = set()
    for path in sorted((project / "nginx" / "conf.d").glob("*.conf")):
        for match in SERVER_NAME.finditer(path.read_text(encoding="utf-8", errors="replace")):
            names.update(match.group(1).split())
    return names


CONF_D_README = """\
Hand-written nginx overrides. `nself build` never touches this folder and includes
its *.conf files last, so a server block here wins over the generated one.
"""
# Certificates and their keys (the dev one is generated here): never committed.
SSL_GITIGNORE = "# nself: certificates and keys stay out of version control\n*\n!.gitignore\n"


@hookimpl
def register_commands(app: Typer) -> None:
    from .cli import PANEL
    from .cli import app as commands

    app.add_typer(commands, rich_help_panel=PANEL)


@hookimpl
def contribute_scaffold() -> list[GeneratedFile]:
    return [
        GeneratedFile("nginx/conf.d/README", CONF_D_README),
        GeneratedFile("nginx/ssl/.gitignore", SSL_GITIGNORE),
    ]


@hookimpl
def contribute_files(config: Config, stack: Stack) -> list[GeneratedFile]:
    files = [GeneratedFile("nginx/nginx.conf", render.main_conf(config))]
    https_port = config.int("NGINX_HTTPS_PORT", 443)
    cert, key = certificate(config)
    acme = ssl_mode(config) == "acme"
    files.append(
        GeneratedFile(
            "nginx/sites/00-default.conf", render.default_servers(https_port, cert, key, acme)
        )
    )
    balanced = _balanced(config, stack)
    listed = list(balanced.values())
    resolve = any(not s.literal for up in listed for s in up.servers)
    stamp = f"{ACME_MOUNT}/generation" if acme else None
    files.append(GeneratedFile(f"nginx/{RUN}", upstreams.run_script(stamp, resolve), 0o755))
    files.append(GeneratedFile("nginx/upstreams.list", upstreams.listing(listed)))
    overridden = hand_written_names(config.project_dir)
    locked: list[GeneratedFile] = []  # the login of private routes, once
    for route in stack.routes:
        why = render.route_problem(route, config.domain)
        if why is not None:
            owner = stack.owners.get(route.service or route.upstream_host, "a plugin")
            raise NselfError(
                f"the route of {route.service or route.upstream_host} ({owner}) cannot be "
                f"written into the nginx configuration: {why}",
                "fix the setting it comes from, or the plugin",
            )
        host = host_of(route, config.domain)
        if host in overridden:
            continue
        if route.internal_only and not route.own_login and not locked:
            locked.append(_password_file(config, route))
        name = "zz-catch-all" if route.subdomain == "*" else route.subdomain
        text = render.site(route, config, host, balanced.get(route.subdomain))
        files.append(GeneratedFile(f"nginx/sites/{name}.conf", text))
    files.extend(render.certificate_files(config))
    return files + locked


def _password_file(config: Config, route: Route) -> GeneratedFile:
    password = config.text("NGINX_AUTH_PASSWORD")
    if len(password) < 16:
        flag = "" if config.is_local else f" --env {config.env}"
        raise NselfError(
            f"{route.service or route.upstream_host} is private: nginx asks for a login "
            "there, but NGINX_AUTH_PASSWORD is "
            + ("not set" if not password else "shorter than 16 characters"),
            f"run `nself secrets generate{flag}`",
        )
    user = config.text("NGINX_AUTH_USER", "admin")
    if not re.fullmatch(r"[A-Za-z0-9._@-]{1,64}", user):
        # nginx's user file splits a line at its first ':': 'adm:in' would lock everyone out
        raise NselfError(
            f"{config.where('NGINX_AUTH_USER')}: NGINX_AUTH_USER={user!r} cannot be the login "
            "of private routes",
            "use letters, digits and . _ @ - (no ':' or spaces), e.g. admin",
        )
    text = render.password_file(user, password, config.project_name)
    # The ${...} names what the file is made from: outside dev, the secret rules apply.
    return GeneratedFile(f"nginx/{render.PASSWORD_FILE}", text, 0o644, env_refs=True)


def _balanced(config: Config, stack: Stack) -> dict[str, upstreams.Upstream]:
    """The routes served by an upstream block, by subdomain: your upstreams, and every
    route to a replicated service (its replicas, each by its own name)."""
    from nself_builtins.shared.service_replicas import group, replica_host

    found = {}
    for name in upstreams.names(config):
        up = upstreams.upstream(config, name)
        found[up.subdomain] = up
    for route in stack.routes:
        members = group(stack, route.upstream_host)
        if len(members) < 2 or route.subdomain in found:
            continue
        servers = tuple(
            upstreams.Server(replica_host(route.upstream_host, number), route.upstream_port)
            for number in range(1, len(members) + 1)
        )
        found[route.subdomain] = upstreams.Upstream(
            upstreams.block_name("replicas", route.upstream_host),
            servers,
            upstreams.REPLICA_HEALTH,
        )
    return found


@hookimpl
def contribute_nginx(config: Config) -> list[Route]:
    """Your upstreams' routes: ``SUBDOMAIN.BASE_DOMAIN`` to the upstream block."""
    routes = []
    for name in upstreams.names(config):
        up = upstreams.upstream(config, name)
        routes.append(Route(up.subdomain, up.block, 0, service=name))
    return routes


__all__ = ["Route"]


@hookimpl
def stack_started(config: Config, stack: Stack, runtime: Runtime, services: list[str]) -> None:
    """A running nginx keeps the configuration it loaded: reload it (tested first) when
    files under nginx/ are newer than its last load."""
    if "nginx" not in services:
        return
    from nself_builtins.shared.nginx import apply_changes

    apply_changes(config, runtime)


@hookimpl
def diagnose(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[Finding]:
    """``nginx`` (deep): ``nginx -t`` on the files."""
    from .checks import configuration_findings

    if deep and (not only or "nginx" in only):
        return configuration_findings(config)
    return []


@hookimpl
def harden(config: Config, stack: Stack) -> list[Finding]:
    """``tls``, ``hsts`` and ``internal-only``, hand-written nginx/conf.d/ included."""
    from .hardening import findings

    return findings(config, stack)
