"""What a service, a route and a migration are: the plain data service plugins hand over
(``contribute_services``, ``contribute_nginx``, ``contribute_migrations``) and the compose,
nginx and migration plugins render. The kernel keeps their names apart and reads nothing
else of them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from nself.model import Setting as _Setting
from nself.model import Shown
from nself.model import Stack as _Stack


@dataclass(frozen=True, repr=False, kw_only=True)
class Setting(_Setting):
    """An env variable a plugin reads (see ``nself.model.Setting``), with what only plugins
    read: the minimum length, how ``nself init`` and ``nself secrets`` treat it."""

    min_length: int = 0
    # Values that are only written into `.env.dev` when the project is created.
    scaffold: bool = False
    # What rotating this secret does to users (e.g. "signed-in users must sign in again");
    # `nself secrets rotate` shows it and asks for confirmation.
    rotation: str = ""
    # Names people write by mistake for this setting (another product's name for it):
    # never read, but `nself build` warns about them and names this setting.
    wrong_names: tuple[str, ...] = ()
    # An on/off switch `nself init --wizard` offers although its default is not "false"
    # (e.g. off in dev, on elsewhere). Every ``*_ENABLED`` defaulting to "false" is offered.
    wizard: bool = False


def plugin_setting(setting: _Setting) -> Setting:
    """``setting`` (from ``config.declared``) as the SDK's, with what only plugins read."""
    if isinstance(setting, Setting):
        return setting
    s = setting
    return Setting(s.name, s.default, s.description, s.secret, s.generate)


Role = Literal["core", "optional", "plugin", "custom", "monitoring"]


@dataclass(frozen=True, repr=False)
class HealthCheck(Shown):
    """A container health check, in the exec form Compose expects."""

    test: tuple[str, ...]
    interval: str = "10s"
    timeout: str = "5s"
    retries: int = 5
    start_period: str = "10s"


@dataclass(frozen=True, repr=False)
class PortBinding(Shown):
    """A port published on the host. Only the proxy and dev tools should have any."""

    container_port: int
    host_port: int
    host_ip: str = "127.0.0.1"
    protocol: str = "tcp"


@dataclass(frozen=True, repr=False)
class Mount(Shown):
    """A named volume (``source`` without a slash) or a bind mount of a project folder."""

    source: str
    target: str
    read_only: bool = False


@dataclass(frozen=True, repr=False)
class Service(Shown):
    """One container of the stack."""

    name: str
    image: str
    title: str = ""
    role: Role = "core"
    port: int | None = None
    environment: dict[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    entrypoint: tuple[str, ...] | None = None
    healthcheck: HealthCheck | None = None
    depends_on: tuple[str, ...] = ()
    mounts: tuple[Mount, ...] = ()
    published: tuple[PortBinding, ...] = ()
    user: str | None = None
    cap_add: tuple[str, ...] = ()
    drop_all_caps: bool = True
    read_only: bool = False
    tmpfs: tuple[str, ...] = ()
    build: str | None = None
    health_url: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    shm_size: str | None = None
    stop_grace_period: str | None = None
    # More names the service answers to on the stack's network (a client that allows
    # only certain host names, like hasura-auth's mailer, reaches it by one of them).
    aliases: tuple[str, ...] = ()
    # Where a person opens it without nginx (a dev tool published on 127.0.0.1): listed
    # with the public URLs by `nself build`, `nself urls`, `nself status` and `nself start`.
    direct_url: str | None = None
    # What the image is and needs (an ``nself_sdk.ImageContract``): checked by the tests
    # and `nself doctor`, never rendered.
    contract: Any = None

    @property
    def display(self) -> str:
        return self.title or self.name


@dataclass(frozen=True, repr=False)
class Route(Shown):
    """A public virtual host: ``subdomain.BASE_DOMAIN`` proxied to ``upstream``.

    ``subdomain="*"`` is the catch-all for the frontend.
    """

    subdomain: str
    upstream_host: str
    upstream_port: int
    service: str = ""
    websocket: bool = False
    rate_zone: str = "general"
    max_body_size: str | None = None
    # Private (an admin or debugging UI): nginx asks for a login before it passes a
    # request on (``own_login``: the service asks for its own), and only ``allow_cidrs``
    # (addresses or networks, from the route's ``*_ALLOW_CIDRS``) may try when any are
    # given. No network is trusted implicitly: behind Docker's port proxy every client
    # arrives from the gateway's private address.
    internal_only: bool = False
    allow_cidrs: tuple[str, ...] = ()
    own_login: bool = False
    extra: tuple[str, ...] = ()
    # Path prefixes the public route never passes on (nginx answers 404 itself): what the
    # service serves only to the stack's own network, e.g. MinIO's Prometheus metrics.
    refused_paths: tuple[str, ...] = ()
    # Which of its plugin's routes this is, for messages (e.g. the env-file slot ``CS_2``)
    # when the service's name does not say it.
    source: str = ""


@dataclass(frozen=True, repr=False)
class DatabaseRole(Shown):
    """The confined role a plugin bundle's migrations run as: it logs in with its own
    password (the setting ``password_setting``), owns the one schema ``schema`` and is
    granted nothing else but ``pg_read_all_data`` when ``read_all``. Core creates the
    ``extensions`` for it. See docs/plugins/security.md."""

    name: str
    schema: str
    password_setting: str
    read_all: bool = False
    extensions: tuple[str, ...] = ()


@dataclass(frozen=True, repr=False)
class Migration(Shown):
    """One schema change; plugin migrations run in dependency order with the project's.

    ``role``: run as this confined database role instead of the runner's own (a bundle's
    migrations); ``None``: the project's and Python plugins' migrations keep their rights.
    """

    version: str
    name: str
    up_sql: str
    down_sql: str | None = None
    source: str = "project"
    transactional: bool = True
    depends_on: tuple[str, ...] = ()
    role: DatabaseRole | None = None


# The stack the build hands to the hooks, of these services, routes and migrations.
Stack = _Stack[Service, Route, Migration]
