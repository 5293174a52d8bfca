"""The project's layered env files, for plugins that read or edit them (``nself env``,
``nself secrets``): which files a target reads, their parser and quoting, the build's state
files."""

from nself.atomic import write_atomic
from nself.build import MANIFEST, STATE_DIR
from nself.envfiles import (
    COMPUTED,
    ENVIRONMENTS,
    RESERVED,
    SECRETS,
    SECRETS_FILES,
    Entry,
    canonical_env,
    check_private,
    current_env_file,
    layer_files,
    parse_text,
    quote,
    read_layers,
    read_text,
    secrets_file,
    target_env,
)

__all__ = [
    "COMPUTED",
    "ENVIRONMENTS",
    "MANIFEST",
    "RESERVED",
    "SECRETS",
    "SECRETS_FILES",
    "STATE_DIR",
    "Entry",
    "canonical_env",
    "check_private",
    "current_env_file",
    "layer_files",
    "parse_text",
    "quote",
    "read_layers",
    "read_text",
    "secrets_file",
    "target_env",
    "write_atomic",
]
