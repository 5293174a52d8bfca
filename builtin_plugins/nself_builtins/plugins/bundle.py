"""A declarative bundle as a plugin object: the loader turns each installed bundle into one.

The object implements the same hooks an entry-point plugin would, from the manifest and
the bundle's data files only. Nothing from the bundle is executed.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from nself_builtins.shared import replicas
from nself_builtins.shared.boundary import hasura_replica_source, hasura_source, role_name
from nself_builtins.shared.manifest import PORT_FIRST, PORT_LAST, REF, Bundle
from nself_sdk import (
    Config,
    DatabaseRole,
    GeneratedFile,
    HealthCheck,
    Migration,
    Mount,
    Problem,
    Route,
    Service,
    Setting,
    Stack,
    hookimpl,
)
from nself_sdk.declare import IMAGE_SETTING_LABEL

from .store import volume_name

if TYPE_CHECKING:
    from .store import LockEntry

GENERATED_DIR = "plugin-files"
HASURA_DIR = "hasura/plugins"


class BundlePlugin:
    """One installed bundle, registered under its own name like any other plugin."""

    def __init__(self, bundle: Bundle, entry: LockEntry) -> None:
        self.bundle = bundle
        self.manifest = bundle.manifest
        self.entry = entry
        self.nself_name = self.manifest.name
        self.nself_tier = self.manifest.tier
        self.nself_version = self.manifest.version
        # The other bundles of the project, by name (set by ``bundle_plugins``).
        self.peers: dict[str, BundlePlugin] = {}

    def __repr__(self) -> str:
        return f"<bundle {self.manifest.name} {self.manifest.version}>"

    # -- helpers ----------------------------------------------------------------------------
    @property
    def host(self) -> str:
        return self.manifest.name

    def port(self, config: Config) -> int | None:
        if self.manifest.service is None:
            return None
        return config.int(self.manifest.port_setting, self.entry.port or 0) or None

    def missing_settings(self, config: Config) -> list[str]:
        return [
            s.name
            for s in self.manifest.settings
            if s.required and not (config.get(s.name) or "").strip()
        ]

    # -- hooks ------------------------------------------------------------------------------
    @property
    def role(self) -> DatabaseRole | None:
        """The plugin's own database role, when it has a [database]."""
        db = self.manifest.database
        if db is None:
            return None
        return DatabaseRole(
            name=role_name(self.manifest.name),
            schema=db.schema,
            password_setting=self.manifest.database_password_setting,
            read_all="database-read" in self.manifest.access,
            extensions=db.extensions,
        )

    @hookimpl
    def declare_settings(self) -> list[Setting]:
        settings = [
            Setting(
                s.name,
                s.default,
                s.description or f"Setting of plugin {self.manifest.name}.",
                secret=s.secret,
                min_length=s.min_length,
                generate=s.generate,
            )
            for s in self.manifest.settings
        ]
        if self.manifest.service is not None:
            settings.append(
                Setting(
                    self.manifest.image_setting,
                    self.manifest.service.image,
                    f"Image of plugin {self.manifest.name} (e.g. the same image from a mirror).",
                )
            )
        if self.manifest.database is not None:
            settings.append(
                Setting(
                    self.manifest.database_password_setting,
                    None,
                    f"Password of plugin {self.manifest.name}'s own database role "
                    f"({role_name(self.manifest.name)}).",
                    secret=True,
                    min_length=24,
                    generate="password",
                )
            )
        return settings

    @hookimpl
    def contribute_env(self, config: Config) -> dict[str, str]:
        env: dict[str, str] = {}
        m = self.manifest
        if m.service is not None and self.entry.port is not None:
            env[m.port_setting] = str(self.entry.port)
            env[m.host_setting] = self.host
        if m.database is not None:
            from urllib.parse import quote

            password = quote(config.text(m.database_password_setting), safe="")
            db = quote(config.text("POSTGRES_DB", "nself"), safe="")
            env[m.database_url_setting] = (
                f"postgres://{role_name(m.name)}:{password}@postgres:5432/{db}?sslmode=disable"
            )
            if self.bundle.hasura_text:
                # Hasura's own copy of the role's URL (the plugin's source), kept apart from
                # the plugin's settings so the bundle names no HASURA_ setting.
                url_setting = hasura_source(m.name)[1]
                env[url_setting] = env[m.database_url_setting]
                # The read-only Hasura reads it from the first replica, as its default
                # source (a hot standby: a mutation sent there fails).
                first = replicas.names(config)[:1]
                if first:
                    env[hasura_replica_source(url_setting)] = (
                        f"postgres://{role_name(m.name)}:{password}@{replicas.service(first[0])}"
                        f":5432/{db}?sslmode=disable"
                    )
        return env

    @hookimpl
    def validate_config(self, config: Config) -> list[Problem]:
        problems: list[Problem] = []
        name = self.manifest.name
        for setting in self.missing_settings(config):
            problems.append(
                Problem(
                    "error",
                    f"plugin {name} needs {setting}, which is not set",
                    f"set {setting} in .env.dev (or .env.secrets if it is secret)",
                )
            )
        for spec in self.manifest.settings:
            value = config.get(spec.name)
            if value is None or value == "":
                continue
            why = spec.problem(value)
            if why is not None:
                hint = (
                    f"use one of: {', '.join(spec.choices)}"
                    if spec.choices
                    else f"{spec.name} must be a {spec.type}"
                )
                problems.append(
                    Problem("error", f"{config.where(spec.name)}: {spec.name}={why}", hint)
                )
        port = self.port(config)
        if port is not None and not PORT_FIRST <= port <= PORT_LAST:
            problems.append(
                Problem(
                    "error",
                    f"{config.where(self.manifest.port_setting)}: "
                    f"{self.manifest.port_setting}={port} is outside the plugin port block "
                    f"{PORT_FIRST}-{PORT_LAST}",
                    "remove the setting to use the port recorded in plugins.lock",
                )
            )
        return problems

    @hookimpl
    def contribute_services(self, config: Config) -> list[Service]:
        spec = self.manifest.service
        if spec is None:
            return []
        port = self.port(config)
        name = self.manifest.name
        check = None
        health_url = None
        if spec.health is not None:
            if spec.health.command is not None:
                test = spec.health.command
                if test[:1] not in (("CMD",), ("CMD-SHELL",), ("NONE",)):
                    test = ("CMD", *test)  # exec form: no shell in between
                check = HealthCheck(
                    test,
                    interval=spec.health.interval,
                    timeout=spec.health.timeout,
                    retries=spec.health.retries,
                    start_period=spec.health.start_period,
                )
            if spec.health.path is not None and port is not None:
                health_url = f"http://{self.host}:{port}{spec.health.path}"
        mounts = [
            Mount(f"./{GENERATED_DIR}/{name}/{f.source}", f.target, read_only=True)
            for f in self.manifest.files
        ]
        mounts += [
            Mount(volume_name(name, key), target) for key, target in sorted(spec.volumes.items())
        ]
        return [
            Service(
                name=self.host,
                title=name,
                image=config.text(self.manifest.image_setting, spec.image),
                role="plugin",
                port=port,
                environment=dict(spec.environment),
                command=spec.command,
                entrypoint=spec.entrypoint,
                healthcheck=check,
                depends_on=spec.depends_on,
                mounts=tuple(mounts),
                tmpfs=spec.tmpfs,
                user=spec.user,
                cap_add=spec.cap_add,
                read_only=spec.read_only,
                health_url=health_url,
                labels={
                    "org.nself.plugin-version": self.manifest.version,
                    "org.nself.plugin-tier": self.manifest.tier,
                    IMAGE_SETTING_LABEL: self.manifest.image_setting,
                },
                contract=spec.contract,
            )
        ]

    @hookimpl
    def contribute_nginx(self, config: Config) -> list[Route]:
        route = self.manifest.route
        port = self.port(config)
        if route is None or port is None:
            return []
        return [
            Route(
                subdomain=route.subdomain,
                upstream_host=self.host,
                upstream_port=port,
                service=self.host,
                websocket=route.websocket,
                max_body_size=route.max_body_size,
                internal_only=route.internal_only,
                extra=self.bundle.fragment,
            )
        ]

    @hookimpl
    def contribute_migrations(self, config: Config) -> list[Migration]:
        # Run after the migrations of the bundles this one depends on (those that have any).
        deps = tuple(
            sorted(
                d
                for d in self.manifest.dependencies
                if d in self.peers and self.peers[d].bundle.migrations
            )
        )
        return [
            Migration(
                version=m.version,
                name=m.name,
                up_sql=m.up,
                down_sql=m.down,
                source=self.manifest.name,
                depends_on=deps,
                role=self.role,
            )
            for m in self.bundle.migrations
        ]

    @hookimpl
    def contribute_files(self, config: Config, stack: Stack) -> list[GeneratedFile]:
        name = self.manifest.name
        files = [
            GeneratedFile(
                f"{GENERATED_DIR}/{name}/{source}", render_template(text, config, source, name)
            )
            for source, text in sorted(self.bundle.templates.items())
        ]
        if self.bundle.hasura_text:
            # The file as its author wrote it: checked when the bundle was installed, and
            # its sha256 re-checked on every load.
            files.append(
                GeneratedFile(
                    f"{HASURA_DIR}/{name}/tables.yaml",
                    f"# Generated by `nself build` from plugin {name} {self.manifest.version}.\n"
                    + self.bundle.hasura_text,
                )
            )
            files.append(GeneratedFile(f"{HASURA_DIR}/{name}/source.yaml", self._source()))
        return files

    def _source(self) -> str:
        """The Hasura source serving the plugin's tables, logged in as its own role."""
        m = self.manifest
        source, url = hasura_source(m.name)
        return (
            f"# Generated by `nself build` from plugin {m.name} {m.version}: the Hasura source\n"
            f"# of its tables. Hasura connects to it as the plugin's role {role_name(m.name)},\n"
            "# never as the superuser: list this entry in hasura/metadata/databases/\n"
            "# databases.yaml, not its tables under the source default.\n"
            f"- name: {source}\n"
            "  kind: postgres\n"
            "  configuration:\n"
            "    connection_info:\n"
            "      database_url:\n"
            f"        from_env: {url}\n"
            f'  tables: "!include ../../plugins/{m.name}/tables.yaml"\n'
        )


def _has_password(value: str) -> bool:
    """A URL with a password in it (e.g. DATABASE_URL)."""
    if "://" not in value or "@" not in value:
        return False
    from urllib.parse import urlsplit

    try:
        return urlsplit(value).password is not None
    except ValueError:
        return True


def render_template(text: str, config: Config, source: str, plugin: str) -> str:
    """Substitute ``${NAME}`` / ``${NAME:-default}`` from the resolved settings."""
    from nself_sdk import NselfError

    missing: list[str] = []
    secret: list[str] = []

    def value(match: re.Match[str]) -> str:
        whole = match.group(0)
        name = match.group(1)
        got = config.get(name)
        if config.is_secret(name) or _has_password(got or ""):
            secret.append(name)
        if got is not None and got != "":
            return got
        if ":-" in whole:
            return whole[whole.index(":-") + 2 : -1]
        if got is None:
            missing.append(name)
        return got or ""

    rendered = REF.sub(value, text)
    if secret:
        raise NselfError(
            f"plugin {plugin}: {source} would write secret setting(s) "
            f"{', '.join(sorted(set(secret)))} into a file on disk",
            "pass secrets to the container through [service.environment] instead",
        )
    if missing:
        raise NselfError(
            f"plugin {plugin}: {source} refers to undefined setting(s): "
            f"{', '.join(sorted(set(missing)))}",
            "set them in an env file, or give a default with ${NAME:-value}",
        )
    return rendered


def bundle_plugins(items: list[Any]) -> list[BundlePlugin]:
    plugins = [BundlePlugin(item.bundle, item.entry) for item in items]
    peers = {p.nself_name: p for p in plugins}
    for plugin in plugins:
        plugin.peers = peers
    return plugins
