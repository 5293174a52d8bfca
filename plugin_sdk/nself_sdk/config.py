"""The ``Config`` plugins are given: the kernel's resolved settings, and what every plugin
reads about the project (its name, its domain, whether it runs on a laptop) and how a
value may be shown."""

from __future__ import annotations

from nself import redact
from nself.config import Config as _Config


class Config(_Config):
    """Resolved settings of one project for one target environment."""

    @property
    def project_name(self) -> str:
        """``PROJECT_NAME`` (default: the folder's name) as Compose accepts it."""
        raw = self.text("PROJECT_NAME", self.project_dir.name)
        return "".join(c if c.isalnum() or c in "-_" else "-" for c in raw.lower()).strip("-_")

    @property
    def domain(self) -> str:
        return self.text("BASE_DOMAIN")  # its default is the project plugin's

    @property
    def is_local(self) -> bool:
        return self.env == "dev"

    def redacted(self, name: str) -> str:
        """The value as it may be shown: secrets masked, passwords in URLs masked."""
        value = self.get(name) or ""
        return redact.MASK if value and self.is_secret(name) else redact.mask_url_credentials(value)
