"""The project a command works on: its folder, target environment and resolved settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from . import envfiles, redact
from .envfiles import Entry, Resolver
from .errors import ConfigError
from .model import Setting

if TYPE_CHECKING:
    import pluggy

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}
DEFAULT_LABEL = "(default)"


@dataclass
class Config:
    """Resolved settings of one project for one target environment."""

    project_dir: Path
    env: str
    resolver: Resolver
    # What the plugins declared, and every name they derive (``contribute_env``).
    declared: dict[str, Setting] = field(default_factory=dict)
    derived: set[str] = field(default_factory=set)
    # The plugins this config was loaded with (as pytest's ``config.pluginmanager``).
    pluginmanager: pluggy.PluginManager | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        value = self.resolver.get(name)
        return default if value is None else value

    def text(self, name: str, default: str = "") -> str:
        """The value, or ``default`` when it is unset or empty."""
        return self.resolver.get(name) or default

    def flag(self, name: str, default: bool = False) -> bool:
        value = self.resolver.get(name)
        if value is None:
            return default
        low = value.strip().lower()
        if low in TRUE:
            return True
        if low in FALSE:
            return False
        raise ConfigError(
            f"{self.where(name)}: {name}={value!r} is not a boolean", "use true or false"
        )

    def int(self, name: str, default: int) -> int:
        value = self.resolver.get(name)
        if value is None or value.strip() == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise ConfigError(
                f"{self.where(name)}: {name}={value!r} is not a number", "use a whole number"
            ) from None

    def prefixed(self, prefix: str) -> dict[str, str]:
        """All settings starting with ``prefix``, with the prefix removed."""
        return {
            key[len(prefix) :]: self.resolver.get(key) or ""
            for key in sorted(self.resolver.history)
            if key.startswith(prefix) and len(key) > len(prefix)
        }

    def names(self) -> list[str]:
        return sorted(self.resolver.history)

    def where(self, name: str) -> str:
        entry = self.resolver.entry(name)
        return entry.where if entry else DEFAULT_LABEL

    def origins(self, name: str) -> list[Entry]:
        """Every layer that set ``name``, lowest precedence first."""
        return list(self.resolver.history.get(name, []))

    def is_secret(self, name: str) -> bool:
        """Declared secret by a plugin, or named like one (PASSWORD, SECRET, KEY, TOKEN...)."""
        setting = self.declared.get(name)
        return (setting is not None and setting.secret) or redact.secret_name(name)

    def remember_secrets(self) -> None:
        """Make sure no output of this process ever shows a secret value of this config."""
        values: list[str] = []
        for name in self.names():
            value = self.get(name) or ""
            if self.is_secret(name):
                values.append(value)
            elif (password := redact.url_password(value)) is not None:
                values.append(password)
        redact.remember(values)


C = TypeVar("C", bound=Config)


def load(project_dir: Path, target: str, kind: type[C]) -> C:
    """Read the project's layers for the target environment (dev, staging or prod) into a
    ``kind`` (the SDK's ``Config`` adds what plugins read about the project)."""
    layers = envfiles.read_layers(project_dir, target)
    # Secret-looking literals are masked in any output from here on, even in errors.
    redact.remember(
        e.raw for e in layers if redact.secret_name(e.key) and (e.literal or "${" not in e.raw)
    )
    resolver = Resolver(layers)
    declared = resolver.entry("ENV")
    if declared is not None and declared.raw.strip():
        named = envfiles.canonical_env(declared.raw, declared.where)
        if named != target:
            raise ConfigError(
                f"{declared.where}: ENV={declared.raw} but the target environment is {target}",
                "remove ENV from the env files and use `nself env switch` or --env",
            )
    return kind(project_dir=project_dir, env=target, resolver=resolver)
