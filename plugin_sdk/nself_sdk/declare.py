"""A service as a declaration: one object that is a whole service plugin.

``ServicePlugin`` turns a ``Service`` (with its image's contract), the switch that runs it,
the setting that overrides its image, its public subdomains and the secrets it needs into
the hooks a service plugin implements (``declare_settings``, ``validate_config``,
``contribute_env``, ``contribute_services``, ``contribute_nginx``). Point an entry point at
the object::

    # pyproject.toml: [project.entry-points."nself.plugins"] whoami = "nself_whoami:plugin"
    from nself_sdk import HealthCheck, ServicePlugin, Service, Setting, Subdomain

    plugin = ServicePlugin(
        Service(
            "whoami",
            "traefik/whoami:v1.10",
            role="optional",
            port=80,
            healthcheck=HealthCheck(("CMD", "/whoami", "--help")),
            contract=WHOAMI,  # an ImageContract (nself_sdk.contract)
        ),
        switch=Setting("WHOAMI_ENABLED", "false", "Run whoami."),
        image=Setting("WHOAMI_IMAGE", description="whoami image."),
        routes=(Subdomain("WHOAMI_SUBDOMAIN", "whoami", "Public subdomain of whoami."),),
    )

What depends on the configuration is a small function: ``env`` (derived values),
``adapt`` (the service for one configuration), ``checks`` (more validation). A plugin
that implements more hooks subclasses ``ServicePlugin`` and adds ``@hookimpl`` methods.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace

import pluggy

from nself.envfiles import secrets_file
from nself.model import Problem

from ._record import Record
from .checks import cidrs
from .config import Config
from .model import Route, Service, Setting

hookimpl = pluggy.HookimplMarker("nself")

# The label naming the setting that runs another image in a service's place (a mirror's,
# a private registry's). Every service carries it, so a failure to pull or build the
# image names the setting to change; ``ServicePlugin`` adds it from its ``image``.
IMAGE_SETTING_LABEL = "org.nself.image-setting"


class Subdomain(Record):
    """A public route ``<subdomain>.BASE_DOMAIN`` to the service, the subdomain a setting.

    ``port`` defaults to the service's, ``service`` (the name nginx and ``nself urls``
    show) to the service's name. ``max_body_size`` may be ``${SETTING}``: that setting's
    value. ``when`` leaves the route out for configurations it answers false for.
    An ``internal_only`` route also declares ``<PREFIX>_ALLOW_CIDRS`` (the setting's name
    without ``_SUBDOMAIN``): the networks that may reach it; nginx asks for a login first
    unless ``own_login`` (the service has one). ``refused_paths`` are path prefixes the
    route never passes on (nginx answers 404 itself).
    """

    setting: str
    default: str
    description: str
    port: int | None
    service: str | None
    websocket: bool
    rate_zone: str
    max_body_size: str | None
    internal_only: bool
    own_login: bool
    extra: tuple[str, ...]
    refused_paths: tuple[str, ...]
    when: Callable[[Config], bool] | None

    __slots__ = tuple(__annotations__)  # the fields above, in their order

    def __init__(
        self,
        setting: str,
        default: str,
        description: str,
        *,
        port: int | None = None,
        service: str | None = None,
        websocket: bool = False,
        rate_zone: str = "general",
        max_body_size: str | None = None,
        internal_only: bool = False,
        own_login: bool = False,
        extra: tuple[str, ...] = (),
        refused_paths: tuple[str, ...] = (),
        when: Callable[[Config], bool] | None = None,
    ) -> None:
        self.fill(locals())

    @property
    def allow_setting(self) -> str | None:
        """``<PREFIX>_ALLOW_CIDRS`` of an internal-only route."""
        if not self.internal_only:
            return None
        return f"{self.setting.removesuffix('_SUBDOMAIN')}_ALLOW_CIDRS"

    def settings(self) -> list[Setting]:
        found = [Setting(self.setting, self.default, self.description)]
        if self.allow_setting is not None:
            found.append(
                Setting(
                    self.allow_setting,
                    "",
                    f"Addresses or networks (comma separated) that may reach "
                    f"{self.setting.removesuffix('_SUBDOMAIN').lower().replace('_', ' ')} "
                    "(empty: any, after a login). Docker's gateway range is never implied.",
                )
            )
        return found

    def route(self, config: Config, service: Service) -> Route:
        size = self.max_body_size
        if size is not None and size.startswith("${") and size.endswith("}"):
            name = size[2:-1]
            size = config.text(name, config.declared[name].default or "")
        return Route(
            config.text(self.setting, self.default),
            service.name,
            self.port or service.port or 0,
            service=self.service or service.name,
            websocket=self.websocket,
            rate_zone=self.rate_zone,
            max_body_size=size,
            internal_only=self.internal_only,
            allow_cidrs=tuple(cidrs(config.text(self.allow_setting))) if self.allow_setting else (),
            own_login=self.own_login,
            extra=self.extra,
            refused_paths=self.refused_paths,
        )


class Needs(Record):
    """A setting the service cannot run without: set, and at least ``min_length`` long.

    Checked whenever the service is switched on, in every environment (the strength
    rules of secrets outside dev come on top).
    """

    setting: str
    min_length: int
    why: str

    __slots__ = tuple(__annotations__)  # the fields above, in their order

    def __init__(self, setting: str, min_length: int = 1, why: str = "") -> None:
        self.fill(locals())

    def problem(self, config: Config, switch: str) -> Problem | None:
        if len(config.text(self.setting)) >= self.min_length:
            return None
        lack = (
            "is empty"
            if self.min_length <= 1
            else f"is missing or shorter than {self.min_length} characters"
        )
        return Problem(
            "error",
            f"{switch} but {self.setting} {lack}" + (f": {self.why}" if self.why else ""),
            f"run `nself secrets generate{'' if config.is_local else ' --env ' + config.env}` "
            f"or set {self.setting} in {secrets_file(config.env)}",
        )


Env = Mapping[str, str] | Callable[[Config], dict[str, str]]


class ServicePlugin(Record):
    """One service, declared: its settings, checks, derived values, container and routes.

    ``service`` is the container as it runs by default (its ``image`` the pinned one, its
    ``contract`` that image's). ``switch`` runs it (a ``*_ENABLED`` setting; none: always
    on); ``image`` is the setting that overrides the image (its default is filled in from
    ``service``); ``settings`` are the plugin's other settings. ``when`` further limits
    the whole plugin, ``runs`` only the container and its routes. ``off`` is a warning for
    a stack with the switch off.
    """

    service: Service
    switch: Setting | None
    image: Setting | None
    routes: tuple[Subdomain, ...]
    settings: tuple[Setting, ...]
    needs: tuple[Needs, ...]
    env: Env | None
    adapt: Callable[[Config, Service], Service] | None
    checks: Callable[[Config], list[Problem]] | None
    when: Callable[[Config], bool] | None
    runs: Callable[[Config], bool] | None
    off: str

    __slots__ = tuple(__annotations__)  # the fields above, in their order

    def __init__(
        self,
        service: Service,
        *,
        switch: Setting | None = None,
        image: Setting | None = None,
        routes: tuple[Subdomain, ...] = (),
        settings: tuple[Setting, ...] = (),
        needs: tuple[Needs, ...] = (),
        env: Env | None = None,
        adapt: Callable[[Config, Service], Service] | None = None,
        checks: Callable[[Config], list[Problem]] | None = None,
        when: Callable[[Config], bool] | None = None,
        runs: Callable[[Config], bool] | None = None,
        off: str = "",
    ) -> None:
        self.fill(locals())

    # -- what it yields ------------------------------------------------------------------
    def enabled(self, config: Config) -> bool:
        switch = self.switch
        on = switch is None or config.flag(switch.name, switch.default == "true")
        return on and (self.when is None or self.when(config))

    def running(self, config: Config) -> bool:
        """The container runs (and its routes exist) for ``config``."""
        return self.enabled(config) and (self.runs is None or self.runs(config))

    def all_settings(self) -> list[Setting]:
        found = [] if self.switch is None else [self.switch]
        if self.image is not None:
            image = self.image
            found.append(
                image if image.default is not None else replace(image, default=self.service.image)
            )
        found += [setting for r in self.routes for setting in r.settings()]
        return found + list(self.settings)

    def problems(self, config: Config) -> list[Problem]:
        if not self.enabled(config):
            return [Problem("warning", self.off)] if self.off else []
        switch = f"{self.switch.name}=true" if self.switch else self.service.display
        found = [p for need in self.needs if (p := need.problem(config, switch)) is not None]
        return found + (self.checks(config) if self.checks is not None else [])

    def derived(self, config: Config) -> dict[str, str]:
        if self.env is None or not self.enabled(config):
            return {}
        return self.env(config) if callable(self.env) else dict(self.env)

    def container(self, config: Config) -> Service:
        """The service for ``config`` (whether it runs or not)."""
        service = self.service
        if self.image is not None:
            service = replace(
                service,
                image=config.text(self.image.name, service.image),
                labels={**service.labels, IMAGE_SETTING_LABEL: self.image.name},
            )
        return self.adapt(config, service) if self.adapt is not None else service

    def public_routes(self, config: Config) -> list[Route]:
        service = self.service
        return [r.route(config, service) for r in self.routes if r.when is None or r.when(config)]

    # -- the hooks -----------------------------------------------------------------------
    @hookimpl
    def declare_settings(self) -> list[Setting]:
        return self.all_settings()

    @hookimpl
    def validate_config(self, config: Config) -> list[Problem]:
        return self.problems(config)

    @hookimpl
    def contribute_env(self, config: Config) -> dict[str, str]:
        return self.derived(config)

    @hookimpl
    def contribute_services(self, config: Config) -> list[Service]:
        return [self.container(config)] if self.running(config) else []

    @hookimpl
    def contribute_nginx(self, config: Config) -> list[Route]:
        return self.public_routes(config) if self.running(config) else []
