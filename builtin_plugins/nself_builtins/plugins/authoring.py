"""Authoring tools: `nself plugin new` (a bundle to start from) and `nself plugin pack`."""

from __future__ import annotations

from pathlib import Path

from nself_builtins.shared.boundary import schema_name
from nself_builtins.shared.manifest import NAME, RESERVED_NAMES, default_env_prefix
from nself_sdk import NselfError, UsageError, nself_version, write_atomic

MANIFEST = """\
# The manifest of the {name} plugin. Reference: docs/plugins/manifest.md
[plugin]
name = "{name}"
version = "0.1.0"
description = "Describe what {name} adds to an nself stack."
tier = "free"
license = "MIT"
requires_nself = ">={major}.{minor}.0, <{next_major}.0.0"

[service]
# A real, pinned image. traefik/whoami answers every request with what it received.
image = "traefik/whoami:v1.10.3"
# {prefix}PORT is the plugin's port from the reserved block 3820-3849 (see plugins.lock).
command = ["--port", "${{{prefix}PORT}}"]

[service.environment]
WHOAMI_NAME = "${{{prefix}GREETING}}"

[service.health]
path = "/health"

[settings.{prefix}GREETING]
default = "hello from {name}"
description = "What the service calls itself."

[route]
# Public at https://{name}.<BASE_DOMAIN>
subdomain = "{name}"
fragment = "nginx/location.conf"

# Its tables live in its own schema, {schema}, owned by its own database role.
[database]
migrations = "migrations"
hasura_metadata = "hasura/tables.yaml"
"""

UP_SQL = """\
-- Runs as the plugin's own database role: its objects go to its own schema ({schema}).
CREATE TABLE IF NOT EXISTS greetings (
    id bigserial PRIMARY KEY,
    message text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
"""

DOWN_SQL = """\
DROP TABLE IF EXISTS greetings;
"""

HASURA = """\
# Hasura table metadata for the plugin's own tables (merged by `nself build`).
- table:
    schema: {schema}
    name: greetings
  select_permissions:
    - role: user
      permission:
        columns: [id, message, created_at]
        filter: {{}}
"""

FRAGMENT = """\
# Directives added inside the plugin's `location /` block (no blocks, no include).
proxy_read_timeout 30s;
"""

README = """\
# {name}

An nself plugin bundle. Try it in a project:

    nself plugin lint .
    nself plugin install ./{name}      # from the project folder
    nself build && nself start

Pack it for a registry: `nself plugin pack .` (writes dist/{name}-0.1.0.tar.gz and its
sha256; `--output FOLDER` writes them there instead).

Remove it from a project with `nself plugin remove {name}`: its data stays. Named volumes,
its database schema ({schema}) and its role nself_plugin_{schema} go only with
`--delete-data` (it asks, or needs `--yes`).
"""

TEST = """\
\"\"\"Tests of the {name} bundle with nself's pytest plugin (its fixtures need no import).\"\"\"

from pathlib import Path

BUNDLE = Path(__file__).resolve().parents[1]


def test_the_plugin_joins_the_stack(nself_stack) -> None:
    stack = nself_stack(BUNDLE)
    service = stack.service("{name}")
    assert service["image"] == "traefik/whoami:v1.10.3"
    assert stack.port("{name}") in range(3820, 3850)
    assert "{name}.local.nself.org" in stack.file("nginx/sites/{name}.conf")
    assert [m.source for m in stack.migrations] == ["{name}"]
"""


def scaffold(name: str, target: Path) -> list[str]:
    """Write a working bundle for plugin ``name`` into ``target`` (which must not exist)."""
    if not NAME.match(name) or name in RESERVED_NAMES:
        raise UsageError(
            f"{name!r} is not a valid plugin name",
            "use 2-40 lowercase letters, digits and '-', starting with a letter",
        )
    if target.exists() and any(target.iterdir()):
        raise NselfError(f"{target} already exists and is not empty", "choose another folder")
    major, minor = (int(x) for x in nself_version.split(".")[:2])
    values = {
        "name": name,
        "prefix": default_env_prefix(name),
        "schema": schema_name(name),
        "major": major,
        "minor": minor,
        "next_major": major + 1,
    }
    files = {
        "plugin.toml": MANIFEST,
        "migrations/0001_create_greetings.up.sql": UP_SQL,
        "migrations/0001_create_greetings.down.sql": DOWN_SQL,
        "hasura/tables.yaml": HASURA,
        "nginx/location.conf": FRAGMENT,
        "README.md": README,
        "tests/test_plugin.py": TEST,
    }
    for rel, template in files.items():
        write_atomic(target / rel, template.format(**values))
    return sorted(files)


def pack_bundle(folder: Path, output: Path | None) -> tuple[Path, str]:
    """Lint, then pack ``folder`` into ``NAME-VERSION.tar.gz`` plus ``.sha256``.

    The archive goes to ``output`` (default: the bundle's ``dist/``, which is never packed).
    """
    from nself_builtins.shared.manifest import load_bundle

    from .archive import pack

    manifest = load_bundle(folder).manifest
    stem = f"{manifest.name}-{manifest.version}"
    target_dir = output or folder / "dist"  # dist/ is never packed
    archive = target_dir / f"{stem}.tar.gz"
    inside = archive.resolve().is_relative_to(folder.resolve())
    if inside and not archive.resolve().is_relative_to((folder / "dist").resolve()):
        raise NselfError(
            f"{archive} would be inside the bundle it packs",
            "use --output with another folder (or the bundle's dist/)",
        )
    digest = pack(folder, archive, stem)
    write_atomic(target_dir / f"{stem}.tar.gz.sha256", f"{digest}  {archive.name}\n")
    return archive, digest
