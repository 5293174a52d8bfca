"""The plugin manifest (plugin.toml): every field parsed, every mistake a precise error."""

from __future__ import annotations

from pathlib import Path

import pytest

from nself_builtins.shared.manifest import (
    ManifestError,
    check_requires_nself,
    lint_bundle,
    load_bundle,
    parse_manifest,
    parse_range,
    version_matches,
)

FULL = """\
[plugin]
name = "pgbouncer"
version = "1.2.3"
description = "Connection pooling"
tier = "pro"
license = "MIT"
requires_nself = ">=0.1.0, <1.0.0"
homepage = "https://www.pgbouncer.org"
access = ["database-superuser"]

[dependencies]
audit = "^1.0"

[service]
image = "edoburu/pgbouncer:v1.23.1-p2"
port = 3830
command = ["pgbouncer", "/etc/pgbouncer/pgbouncer.ini"]
depends_on = ["postgres"]
tmpfs = ["/tmp"]
cap_add = ["SETUID"]

[service.environment]
DB_PASSWORD = "${POSTGRES_PASSWORD}"
POOL = "${PGBOUNCER_POOL_SIZE}"
LISTEN = "${PGBOUNCER_PORT}"

[service.volumes]
data = "/var/lib/data"

[service.health]
command = ["pg_isready", "-h", "127.0.0.1"]
path = "/health"
interval = "5s"
retries = 3

[settings.PGBOUNCER_POOL_SIZE]
default = 25
description = "Server connections per pool"

[settings.PGBOUNCER_TOKEN]
secret = true
generate = "token"
required = true

[route]
subdomain = "pool"
websocket = true
max_body_size = "10m"

[[files]]
source = "config/pgbouncer.ini"
target = "/etc/pgbouncer/pgbouncer.ini"

[database]
extensions = ["pg_trgm"]
"""


def messages(text: str) -> list[str]:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(text)
    return [p.message for p in caught.value.problems]


def test_every_field_is_parsed() -> None:
    m = parse_manifest(FULL)
    assert (m.name, m.version, m.tier, m.license) == ("pgbouncer", "1.2.3", "pro", "MIT")
    assert m.env_prefix == "PGBOUNCER_" and m.port_setting == "PGBOUNCER_PORT"
    assert m.dependencies == {"audit": "^1.0"}
    assert m.service is not None
    assert m.service.port == 3830 and m.service.depends_on == ("postgres",)
    assert m.service.environment["DB_PASSWORD"] == "${POSTGRES_PASSWORD}"
    assert m.service.volumes == {"data": "/var/lib/data"}
    assert m.service.health is not None and m.service.health.retries == 3
    pool, token = m.settings
    assert pool.default == "25" and not pool.secret
    assert token.secret and token.required and token.generate == "token"
    assert m.route is not None and m.route.subdomain == "pool" and m.route.websocket
    assert m.files[0].target == "/etc/pgbouncer/pgbouncer.ini"
    assert m.access == ("database-superuser",)
    assert m.database is not None and m.database.schema == "pgbouncer"
    assert m.database.extensions == ("pg_trgm",)


def test_minimal_manifest_gets_defaults() -> None:
    m = parse_manifest('[plugin]\nname = "my-thing"\nversion = "0.1.0"\ndescription = "x"\n')
    assert m.tier == "free" and m.requires_nself == "*"
    assert m.env_prefix == "MY_THING_" and m.service is None and m.route is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            ('name = "pgbouncer"', 'name = "PgBouncer"'),
            "plugin.toml:2: [plugin] name: 'PgBouncer' is not a valid plugin name",
        ),
        (
            ('version = "1.2.3"', 'version = "1.2"'),
            "plugin.toml:3: [plugin] version: '1.2' is not a semantic version",
        ),
        (
            ('tier = "pro"', 'tier = "gold"'),
            "plugin.toml:5: [plugin] tier: 'gold' is not a licence tier",
        ),
        (
            ('requires_nself = ">=0.1.0, <1.0.0"', 'requires_nself = "newer"'),
            "[plugin] requires_nself: 'newer' is not a version clause",
        ),
        (
            ('image = "edoburu/pgbouncer:v1.23.1-p2"', 'image = "edoburu/pgbouncer"'),
            "plugin.toml:15: [service] image: 'edoburu/pgbouncer' has no tag",
        ),
        (
            ('image = "edoburu/pgbouncer:v1.23.1-p2"', 'image = "edoburu/pgbouncer:latest"'),
            "':latest' is not a pinned version",
        ),
        (
            ("port = 3830", "port = 5432"),
            "plugin.toml:16: [service] port: 5432 is outside the plugin port block 3820-3849",
        ),
        (("port = 3830", "prot = 3830"), "plugin.toml:16: [service] prot: unknown key"),
        (
            ('cap_add = ["SETUID"]', 'cap_add = ["SYS_ADMIN"]'),
            "'SYS_ADMIN' (SYS_ADMIN) is not allowed for plugins",
        ),
        (
            ("[settings.PGBOUNCER_POOL_SIZE]", "[settings.POOL_SIZE]"),
            "POOL_SIZE does not start with the plugin's prefix PGBOUNCER_",
        ),
        (('generate = "token"', 'default = "abc"'), "a secret cannot have a default"),
        (
            ('subdomain = "pool"', 'subdomain = "Pool_1"'),
            "[route] subdomain: 'Pool_1' is not a DNS label",
        ),
        (
            ('source = "config/pgbouncer.ini"', 'source = "../../etc/passwd"'),
            "'../../etc/passwd' must be a path inside the bundle",
        ),
        (
            ('target = "/etc/pgbouncer/pgbouncer.ini"', 'target = "etc/x"'),
            "'etc/x' must be an absolute container path",
        ),
        (
            ('extensions = ["pg_trgm"]', 'extensions = ["plpython3u"]'),
            "'plpython3u' is not an extension nself creates for plugins",
        ),
        (('audit = "^1.0"', "audit = 1"), "[dependencies] audit: must be a version range string"),
        (
            ('LISTEN = "${PGBOUNCER_PORT}"', 'LISTEN = "${PGBOUNCER_PROT}"'),
            "refers to ${PGBOUNCER_PROT}, which [settings] does not declare",
        ),
        (('interval = "5s"', 'interval = "often"'), "'often' is not a duration"),
    ],
)
def test_each_mistake_is_a_precise_error(change: tuple[str, str], expected: str) -> None:
    old, new = change
    assert old in FULL
    found = messages(FULL.replace(old, new))
    assert any(expected in m for m in found), found


def test_unknown_key_suggests_the_right_one() -> None:
    with pytest.raises(ManifestError) as caught:
        parse_manifest(FULL.replace("port = 3830", "prot = 3830"))
    assert caught.value.problems[0].hint == "did you mean 'port'?"


def test_all_problems_are_reported_at_once() -> None:
    found = messages(FULL.replace('tier = "pro"', 'tier = "x"').replace("port = 3830", "port = 1"))
    assert len(found) == 2


def test_invalid_toml_and_missing_table() -> None:
    assert "not valid TOML" in messages("[plugin\nname=")[0]
    assert any("the [plugin] table is missing" in m for m in messages('name = "x"\n'))
    assert (
        "[plugin] name: is required"
        in messages('[plugin]\nversion = "1.0.0"\ndescription="x"\n')[0]
    )


def test_route_needs_a_service() -> None:
    text = '[plugin]\nname = "x1"\nversion = "1.0.0"\ndescription = "x"\n[route]\n'
    assert any("a route needs a [service]" in m for m in messages(text))


@pytest.mark.parametrize(
    ("spec", "version", "ok"),
    [
        ("*", "0.1.0", True),
        (">=0.1.0, <1.0.0", "0.1.0", True),
        (">=0.2", "0.1.0", False),
        ("^0.1", "0.1.9", True),
        ("^0.1", "0.2.0", False),
        ("^1.2", "1.9.0", True),
        ("^1.2", "2.0.0", False),
        ("~1.2", "1.2.7", True),
        ("~1.2", "1.3.0", False),
        ("0.1.0", "0.1.0", True),
        ("!=0.1.0", "0.1.0", False),
    ],
)
def test_version_ranges(spec: str, version: str, ok: bool) -> None:
    assert version_matches(spec, version) is ok


def test_bad_range_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="not a version clause"):
        parse_range(">= one")


def test_incompatible_requires_nself_is_a_clear_error() -> None:
    m = parse_manifest(FULL.replace(">=0.1.0, <1.0.0", ">=2.0.0"))
    with pytest.raises(Exception, match=r"requires nself >=2.0.0, but this is nself 0.1.0"):
        check_requires_nself(m, "0.1.0")


def write_bundle(root: Path, manifest: str, files: dict[str, str]) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "plugin.toml").write_text(manifest)
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    return root


DB = """\
[plugin]
name = "notes"
version = "1.0.0"
description = "Notes"

[service]
image = "traefik/whoami:v1.10.3"

[route]
fragment = "nginx/location.conf"

[database]
migrations = "migrations"
hasura_metadata = "hasura/tables.yaml"
"""


def good_files() -> dict[str, str]:
    return {
        "migrations/0001_init.up.sql": "CREATE TABLE notes_items (id int);\n",
        "migrations/0001_init.down.sql": "DROP TABLE notes_items;\n",
        "migrations/0002_more.up.sql": "create table if not exists notes.tags (id int);\n",
        "hasura/tables.yaml": (
            "- table: {schema: notes, name: notes_items}\n  object_relationships:\n"
            "  - name: tag\n    using:\n      manual_configuration:\n"
            "        remote_table: {schema: notes, name: tags}\n"
            "        column_mapping: {id: id}\n  select_permissions:\n"
            "  - role: user\n    permission:\n      columns: [id]\n      filter:\n"
            "        _exists: {_table: {schema: notes, name: tags}, _where: {}}\n"
        ),
        "nginx/location.conf": "# comment\nproxy_read_timeout 30s;\n",
    }


def test_bundle_files_are_read_and_checked(tmp_path: Path) -> None:
    bundle = load_bundle(write_bundle(tmp_path / "notes", DB, good_files()))
    assert [(m.version, m.name, m.down is not None) for m in bundle.migrations] == [
        ("0001", "init", True),
        ("0002", "more", False),
    ]
    assert bundle.hasura_tables[0]["table"]["name"] == "notes_items"
    assert bundle.fragment == ("proxy_read_timeout 30s;",)


@pytest.mark.parametrize(
    ("rel", "text", "expected"),
    [
        ("migrations/3_bad.sql", "", "is not named like 0001_create_things.up.sql"),
        ("migrations/0009_orphan.down.sql", "", "0009_orphan.down.sql has no .up.sql"),
        (
            "hasura/tables.yaml",
            "- table: {schema: public, name: users}\n",
            "tracks public.users, which is not in the plugin's schema notes",
        ),
        ("hasura/tables.yaml", "- table: [\n", "hasura/tables.yaml:2: not valid YAML"),
        ("hasura/tables.yaml", "table: x\n", "must be a list of Hasura table entries"),
        # Hasura would send its own environment (the admin secret, the database's URL)
        # to a webhook of the plugin's choosing
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  event_triggers:\n"
            "  - name: leak\n    definition: {enable_manual: true}\n"
            "    webhook: http://notes:3820/hook\n"
            "    headers: [{name: X-Leak, value_from_env: HASURA_GRAPHQL_DATABASE_URL}]\n",
            "entry 1 (notes.notes_items): event triggers are not allowed",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  select_permissions:\n"
            "  - role: user\n    permission: {columns: '*', filter: {}}\n"
            "    comment: {value_from_env: HASURA_GRAPHQL_ADMIN_SECRET}\n",
            "value_from_env would read Hasura's own environment",
        ),
        # A root field or type named like the core's (users) fails Hasura's whole schema
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  configuration:\n"
            "    custom_name: users\n",
            "custom_name users is not under notes_",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  configuration:\n"
            "    custom_root_fields: {select: notes_all, insert: {name: insert_users}}\n",
            "custom_root_fields insert insert_users is not under notes_",
        ),
        # Hasura evaluates a permission's filter with its own rights: an oracle on
        # another schema's rows
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  select_permissions:\n"
            "  - role: public\n    permission:\n      columns: [id]\n      filter:\n"
            "        _exists:\n          _table: {schema: auth, name: users}\n"
            "          _where: {password_hash: {_like: 'a%'}}\n",
            "an _exists filter reaches a table in the schema auth",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  object_relationships:\n"
            "  - name: owner\n    using:\n      manual_configuration:\n"
            "        remote_table: users\n        column_mapping: {id: id}\n",
            "a relationship reaches a table in the schema public",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  array_relationships:\n"
            "  - name: orders\n    using:\n      foreign_key_constraint_on:\n"
            "        table: {schema: public, name: orders}\n        column: note_id\n",
            "a relationship reaches a table in the schema public",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  computed_fields:\n"
            "  - name: x\n    definition: {function: {schema: notes, name: f}}\n",
            "Hasura runs their function as the database superuser",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  remote_relationships: []\n",
            "remote relationships are not allowed",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  apollo_federation_config: {}\n",
            "'apollo_federation_config' is not something a plugin's table entry may hold",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  configuration:\n"
            "    a: &a [x, x, x, x, x, x, x, x, x, x]\n    b: [*a, *a, *a]\n",
            "aliases (*name) are not read",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n  configuration: "
            + "[" * 50000
            + "]" * 50000
            + "\n",
            "hasura/tables.yaml: nested too deeply",
        ),
        (
            "hasura/tables.yaml",
            "- table: {schema: notes, name: notes_items}\n" + "#" * (1 << 20) + "\n",
            "hasura/tables.yaml is larger than 1 MiB",
        ),
        (
            "nginx/location.conf",
            "include /etc/passwd;\n",
            "nginx/location.conf:1: the include directive is not allowed",
        ),
        (
            "nginx/location.conf",
            "location /x { return 200; }\n",
            "blocks are not allowed in a plugin fragment",
        ),
        ("nginx/location.conf", "proxy_read_timeout 30s\n", "location.conf:1: unexpected end"),
        (
            "nginx/location.conf",
            "proxy_http_version 1.0;\n",
            "the proxy_http_version directive is not allowed",
        ),
    ],
)
def test_bundle_file_mistakes(tmp_path: Path, rel: str, text: str, expected: str) -> None:
    files = good_files()
    files[rel] = text
    bundle, problems = lint_bundle(write_bundle(tmp_path / "notes", DB, files))
    assert bundle is None
    assert any(expected in p.message for p in problems), [p.message for p in problems]


def test_missing_files_are_named(tmp_path: Path) -> None:
    files = good_files()
    del files["nginx/location.conf"]
    _bundle, problems = lint_bundle(write_bundle(tmp_path / "notes", DB, files))
    assert any("nginx/location.conf does not exist in the bundle" in p.message for p in problems)


def test_templates_may_not_carry_secrets(tmp_path: Path) -> None:
    manifest = (
        '[plugin]\nname = "cfg"\nversion = "1.0.0"\ndescription = "x"\n'
        '[service]\nimage = "a/b:1"\n[[files]]\nsource = "c.ini"\ntarget = "/c.ini"\n'
    )
    root = write_bundle(tmp_path / "cfg", manifest, {"c.ini": "password = ${POSTGRES_PASSWORD}\n"})
    _bundle, problems = lint_bundle(root)
    assert any("refers to secret setting(s) POSTGRES_PASSWORD" in p.message for p in problems)


def test_every_manifest_key_is_documented() -> None:
    from nself_builtins.shared.manifest import _SCHEMA

    docs = (Path(__file__).resolve().parents[1] / "docs" / "plugins" / "manifest.md").read_text()

    def documented(table: str, key: str) -> bool:
        full = f"{table}.{key}" if table else key
        return f"`{key}`" in docs or f"[{full}" in docs or f"[[{full}]]" in docs

    missing = sorted(
        f"{table}.{key}"
        for table, keys in _SCHEMA.items()
        for key in keys
        if not documented(table, key)
    )
    assert not missing, f"docs/plugins/manifest.md does not document: {missing}"
