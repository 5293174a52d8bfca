"""The ``Config`` plugins are given: the kernel's resolved settings, and what every plugin
reads about the project (its name, its domain, whether it runs on a laptop)."""

from __future__ import annotations

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
