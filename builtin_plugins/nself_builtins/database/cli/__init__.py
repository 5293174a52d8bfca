"""`nself db ...`: one module-level Typer app per command group, the logic in the engine
modules of the plugin (which `nself doctor`'s checks call as well)."""

from .db import HELP, PANEL, app

__all__ = ["HELP", "PANEL", "app"]
