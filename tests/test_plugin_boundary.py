"""The bundle boundary (docs/plugins/security.md): one test per attack class, each a clean
refusal through the same rules lint, install and build apply, with nothing installed."""

from __future__ import annotations

import gzip
import io
import shutil
import tarfile
import time
from pathlib import Path
from typing import Any

import pytest

from nself_builtins.plugins import install_archive, install_folder
from nself_builtins.plugins.store import LockEntry, read_lock, tree_sha256, write_lock
from nself_builtins.shared import boundary
from nself_builtins.shared.manifest import lint_bundle
from nself_sdk import NselfError
from nself_sdk.testing import Result
from plugin_helpers import make_bundle, manifest

BASE = '[plugin]\nname = "probe"\nversion = "1.0.0"\ndescription = "x"\n'
SERVICE = '[service]\nimage = "nself-standin/http:3"\n'


def refused(tmp_path: Path, project: Path, text: str, files: dict[str, str] | None = None) -> str:
    """Lint and install both refuse the bundle, with the same message; nothing installed."""
    folder = tmp_path / "bundle"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugin.toml").write_text(text)
    for rel, body in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(body)
    bundle, problems = lint_bundle(folder)
    errors = [p.message for p in problems if p.level == "error"]
    assert bundle is None and errors
    with pytest.raises(NselfError) as caught:
        install_folder(project, folder)
    assert caught.value.message in errors
    assert read_lock(project) == {} and not (project / "plugins").exists()
    return "\n".join(errors)


# -- capabilities ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [
        "SYS_ADMIN",
        "sys_admin",
        "CAP_SYS_ADMIN",
        "cap_sys_admin",
        " Cap_Sys_Admin ",
        "ALL",
        "all",
        "CAP_ALL",
        "SYS_PTRACE",
        "SYS_MODULE",
        "SYS_RAWIO",
        "DAC_READ_SEARCH",
        "NET_ADMIN",
        "NET_RAW",
        "BPF",
        "PERFMON",
        "MKNOD",
        "SYS_TIME",
        "SETFCAP",
        "NOT_A_CAP",
        "\u017fys_admin",  # the long s upper-cases to S
        "CAP_CAP_SYS_ADMIN",
    ],
)
def test_capabilities_outside_the_allowlist_in_every_spelling(
    spelling: str, tmp_path: Path, project: Path
) -> None:
    for key in ("cap_add", "contract"):
        text = BASE + SERVICE + f'cap_add = ["{spelling}"]\n'
        if key == "contract":
            text = (
                BASE + SERVICE + '[service.contract]\nsource = ["https://example.org/Dockerfile"]\n'
                f'capabilities = ["{spelling}"]\n'
            )
        errors = refused(tmp_path / key, project, text)
        assert repr(spelling) in errors
        assert "not allowed for plugins" in errors or "not a Linux capability" in errors


@pytest.mark.parametrize(
    ("listed", "named"),
    [
        ('"CHOWN", "cap_sys_admin", "chown"', "'cap_sys_admin' (SYS_ADMIN)"),
        ('"KILL", "KILL", "\\tCAP_NET_ADMIN\\n"', "(NET_ADMIN)"),
        ('"SETUID", "ALL", "setuid"', "'ALL' is not allowed"),
    ],
)
def test_a_capability_hidden_among_allowed_ones_is_refused(
    listed: str, named: str, tmp_path: Path, project: Path
) -> None:
    text = BASE + SERVICE + f"cap_add = [{listed}]\n"
    assert named in refused(tmp_path, project, text)


def test_allowed_capabilities_are_normalised(tmp_path: Path) -> None:
    text = BASE + SERVICE + 'cap_add = ["cap_chown", "SETUID", "Cap_Setgid", "SETUID"]\n'
    folder = tmp_path / "ok"
    folder.mkdir()
    (folder / "plugin.toml").write_text(text)
    bundle, problems = lint_bundle(folder)
    assert bundle is not None, problems
    assert bundle.manifest.service is not None
    assert bundle.manifest.service.cap_add == ("CHOWN", "SETUID", "SETGID")


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ('user = "${POSTGRES_PASSWORD}"', "is not a user"),
        ('user = "0:0 --privileged"', "is not a user"),
        ('tmpfs = ["/run:exec,size=10g"]', "must be an absolute container path"),
        ('tmpfs = ["/${POSTGRES_PASSWORD}"]', "must be an absolute container path"),
        ('depends_on = ["postgres:latest"]', "is not a service name"),
        ('image = "evil/${POSTGRES_PASSWORD}:1"', "is not an image reference"),
        ("privileged = true", "unknown key"),
        ('network_mode = "host"', "unknown key"),
        ('devices = ["/dev/sda"]', "unknown key"),
        ('security_opt = ["seccomp=unconfined"]', "unknown key"),
        ('pid = "host"', "unknown key"),
    ],
)
def test_nothing_else_of_the_engine_can_be_asked_for(
    line: str, expected: str, tmp_path: Path, project: Path
) -> None:
    text = BASE + SERVICE + line + "\n"
    if line.startswith("image"):
        text = BASE + "[service]\n" + line + "\n"
    assert expected in refused(tmp_path, project, text)


def test_volumes_are_named_and_cannot_bind_the_host(tmp_path: Path, project: Path) -> None:
    text = BASE + SERVICE + '[service.volumes]\ndata = "/data:/host:rw"\n'
    assert "must be an absolute container path" in refused(tmp_path, project, text)
    files = '[[files]]\nsource = "a:b"\ntarget = "/etc/x"\n'
    assert "must be a path inside the bundle" in refused(
        tmp_path / "f", project, BASE + SERVICE + files, {"a:b": "x"}
    )


# -- settings ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field",
    [
        'description = "fine\\u001b[1A\\u001b[2K  - nothing at all"',
        'homepage = "https://x\\u001b]52;c;ZWNobw==\\u0007"',
        'description = "two\\nlines"',
    ],
)
def test_text_the_terminal_shows_holds_no_escape_sequence(
    field: str, tmp_path: Path, project: Path
) -> None:
    """An escape sequence in a description would rewrite what the terminal shows, such as
    the list of what the user approves."""
    text = BASE.replace('description = "x"\n', field + "\n")
    assert "must be one line of printable text" in refused(tmp_path, project, text)
    setting = BASE + '[settings.PROBE_X]\ndescription = "a\\u001b[8mhidden"\n'
    assert "must be one line of printable text" in refused(tmp_path / "s", project, setting)


def test_a_plugins_volume_never_is_another_plugins(
    project: Path, tmp_path: Path, nself: Result
) -> None:
    """``ab`` with the volume ``c_data`` and ``ab-c`` with ``data`` both map to the volume
    plugin_ab_c_data: the second install is refused, and a lock holding both (installed
    before this rule, or by hand) stops the build."""
    run: Any = nself
    victim = make_bundle(tmp_path, "ab-c", extra=SERVICE + '[service.volumes]\ndata = "/d"\n')
    thief = make_bundle(tmp_path, "ab", extra=SERVICE + '[service.volumes]\nc_data = "/x"\n')
    assert run("plugin", "install", str(victim), "--yes", cwd=project).code == 0
    lock = (project / "plugins.lock").read_bytes()
    refusal = run("plugin", "install", str(thief), "--yes", cwd=project)
    assert refusal.code == 1, refusal.output
    assert "plugins ab-c and ab would both use the volume plugin_ab_c_data" in refusal.err
    assert (project / "plugins.lock").read_bytes() == lock
    assert not (project / "plugins" / "ab").exists()
    shutil.copytree(thief, project / "plugins" / "ab")
    entries = read_lock(project)
    digest = tree_sha256(project / "plugins" / "ab")
    entries["ab"] = LockEntry("ab", "1.0.0", digest, 3821, "free", "folder")
    write_lock(project, entries)
    built = run("build", cwd=project)
    assert built.code == 1, built.output
    assert "would both use the volume plugin_ab_c_data" in built.err
    assert not (project / "docker-compose.yml").exists()


@pytest.mark.parametrize(
    ("first", "second", "setting"),
    [
        # one env_prefix chosen by both
        (
            f'env_prefix = "SHARED_"\n{SERVICE}',
            f'env_prefix = "SHARED_"\n{SERVICE}',
            "SHARED_PORT",
        ),
        # a setting of one under the other's prefix: ab's AB_C_TOKEN is ab-c's
        (
            '[settings.AB_C_TOKEN]\ndescription = "x"\n',
            '[settings.AB_C_TOKEN]\ndescription = "x"\n',
            "AB_C_TOKEN",
        ),
    ],
    ids=["prefix", "name"],
)
def test_a_setting_two_plugins_declare_is_refused_at_install(
    first: str, second: str, setting: str, project: Path, tmp_path: Path, nself: Result
) -> None:
    """Two bundles claiming one setting stop the build; install refuses the second, naming
    both, with nothing installed."""
    run: Any = nself
    names = ("one", "two") if "SHARED" in setting else ("ab", "ab-c")
    one = make_bundle(tmp_path, names[0], extra=first)
    two = make_bundle(tmp_path, names[1], extra=second)
    assert run("plugin", "install", str(one), "--yes", cwd=project).code == 0
    lock = (project / "plugins.lock").read_bytes()
    refusal = run("plugin", "install", str(two), "--yes", cwd=project)
    assert refusal.code == 1, refusal.output
    line = f"plugins {names[0]} and {names[1]} both declare the setting {setting}"
    assert line in refusal.err, refusal.err
    assert refusal.err.count("error:") == 1 and "Traceback" not in refusal.output
    assert (project / "plugins.lock").read_bytes() == lock
    assert not (project / "plugins" / names[1]).exists()


@pytest.mark.parametrize(
    ("manifest_extra", "expected"),
    [
        ('env_prefix = "AUTH_"', "overlaps AUTH_"),
        ('env_prefix = "NSELF_REGISTRY_"', "overlaps NSELF_"),
        ('env_prefix = "HASURA_GRAPHQL_"', "overlaps HASURA_"),
        ('env_prefix = "AUTH_SMTP_"', "overlaps AUTH_"),
        ('env_prefix = "NO_"', "would cover NO_COLOR"),
        # Compose reads COMPOSE_PROFILES and the like from .env.computed
        ('env_prefix = "COMPOSE_"', "overlaps COMPOSE_"),
    ],
)
def test_reserved_prefixes_cannot_be_taken(
    manifest_extra: str, expected: str, tmp_path: Path, project: Path
) -> None:
    assert expected in refused(tmp_path, project, BASE + manifest_extra + "\n")


@pytest.mark.parametrize("name", ["mail", "deploy", "postgres-tools", "nself-extra"])
def test_a_name_under_a_reserved_prefix_needs_a_prefix_of_its_own(
    name: str, tmp_path: Path, project: Path
) -> None:
    text = BASE.replace('"probe"', f'"{name}"')
    assert "which belongs to nself's own plugins" in refused(tmp_path, project, text)
    ok = text + 'env_prefix = "WIDGETCO_"\n'
    folder = make_bundle(tmp_path / "ok", name, service=False, extra="")
    (folder / "plugin.toml").write_text(ok)
    if name not in ("mail", "deploy"):  # those are builtin plugins' names
        install_folder(project, folder)


def test_settings_of_core_are_reserved_whatever_the_bundle_writes(
    tmp_path: Path, project: Path
) -> None:
    text = BASE + 'env_prefix = "PROBE_"\n[settings.NSELF_REGISTRY_KEYS]\ndefault = "evil:key"\n'
    errors = refused(tmp_path, project, text)
    assert "NSELF_REGISTRY_KEYS does not start with the plugin's prefix" in errors
    assert "belongs to nself's own plugins" in errors


def test_every_builtin_setting_is_reserved() -> None:
    """The reserved prefixes cover every setting nself's own plugins declare or derive."""
    from nself.plugins import installed_plugins

    names: set[str] = set()
    for _name, plugin in installed_plugins():
        declare = getattr(plugin, "declare_settings", None)
        if declare is not None:
            names |= {s.name for s in declare()}
    assert len(names) > 100
    free = sorted(n for n in names if boundary.reserved_setting_problem(n) is None)
    assert not free, f"add their prefixes to boundary.RESERVED_PREFIXES: {free}"


# -- secrets and other settings of the project ------------------------------------------


@pytest.mark.parametrize(
    ("reference", "grant"),
    [
        ("${POSTGRES_PASSWORD}", "database-superuser"),
        ("${DATABASE_URL}", "database-superuser"),
        ("${HASURA_GRAPHQL_ADMIN_SECRET}", "hasura-admin"),
        ("${HASURA_JWT_KEY}", "hasura-jwt-key"),
        ("${MINIO_ROOT_PASSWORD}", "storage-admin"),
        ("${REDIS_URL}", "redis"),
        ("${MEILI_MASTER_KEY}", "search-admin"),
        ("${MAIL_SMTP_PASSWORD}", "mail"),
    ],
)
def test_undeclared_secret_references_are_refused(
    reference: str, grant: str, tmp_path: Path, project: Path
) -> None:
    for place in ("environment", "command", "health", "default"):
        body = {
            "environment": f'[service.environment]\nX = "{reference}"\n',
            "command": f'command = ["--password", "{reference}"]\n',
            "health": f'[service.health]\ncommand = ["check", "{reference}"]\n',
            # the build resolves a default: the container would get the secret through
            # a setting of the plugin's own
            "default": f'[settings.PROBE_X]\ndefault = "x-{reference}"\n'
            '[service.environment]\nX = "${PROBE_X}"\n',
        }[place]
        errors = refused(tmp_path / place, project, BASE + SERVICE + body)
        assert f"add '{grant}' to [plugin] access" in errors
    granted = BASE.replace('description = "x"\n', f'description = "x"\naccess = ["{grant}"]\n')
    folder = tmp_path / "granted"
    folder.mkdir()
    (folder / "plugin.toml").write_text(
        granted + SERVICE + f'[service.environment]\nX = "{reference}"\n'
    )
    bundle, problems = lint_bundle(folder)
    assert bundle is not None, [p.message for p in problems]


@pytest.mark.parametrize(
    "reference",
    ["${BACKUP_S3_SECRET_KEY}", "${DEPLOY_SSH_KEY}", "${GRAFANA_ADMIN_PASSWORD}", "${OTHER_TOKEN}"],
)
def test_what_no_access_grants_is_closed(reference: str, tmp_path: Path, project: Path) -> None:
    text = BASE + SERVICE + f'[service.environment]\nX = "{reference}"\n'
    assert "which is not one of the plugin's settings" in refused(tmp_path, project, text)


def test_templates_follow_the_same_rule(tmp_path: Path, project: Path) -> None:
    text = BASE + SERVICE + '[[files]]\nsource = "app.ini"\ntarget = "/etc/app.ini"\n'
    errors = refused(tmp_path, project, text, {"app.ini": "key = ${DEPLOY_SSH_KEY}\n"})
    assert "app.ini refers to ${DEPLOY_SSH_KEY}" in errors


def test_install_shows_the_access_and_needs_a_yes(
    project: Path, tmp_path: Path, nself: Result
) -> None:
    extra = (
        'access = ["hasura-admin"]\n' + SERVICE + "[service.environment]\n"
        'S = "${HASURA_GRAPHQL_ADMIN_SECRET}"\n'
    )
    folder = make_bundle(tmp_path, "asker", extra=extra)
    refusal = nself("plugin", "install", str(folder), cwd=project)  # type: ignore[operator]
    assert refusal.code == 4  # not confirmed (the exit-code table)
    assert "use the Hasura admin secret" in refusal.out and "[hasura-admin]" in refusal.out
    assert "needs your approval" in refusal.err and "--yes" in refusal.err
    assert read_lock(project) == {} and not (project / "plugins" / "asker").exists()
    done = nself("plugin", "install", str(folder), "--yes", cwd=project)  # type: ignore[operator]
    assert done.code == 0, done.output
    assert "asker" in read_lock(project)


def test_install_names_who_hasura_lets_read_a_plugins_tables(
    project: Path, tmp_path: Path, nself: Result
) -> None:
    """A plugin granted database-read can track a view over the core's users; what the
    user approves must say to which Hasura roles (here every visitor) it is served."""
    extra = (
        'access = ["database-read"]\n[database]\nmigrations = "migrations"\n'
        'hasura_metadata = "hasura/tables.yaml"\n'
    )
    files = {
        "migrations/0001_init.up.sql": "CREATE VIEW everyone AS SELECT * FROM auth.users;\n"
        "CREATE TABLE own (id int PRIMARY KEY);\n",
        "hasura/tables.yaml": "- table: {schema: reader, name: everyone}\n"
        "  select_permissions:\n"
        "    - role: anonymous\n      permission: {columns: [id], filter: {}}\n"
        "    - role: user\n      permission: {columns: [id], filter: {}}\n"
        "- table: {schema: reader, name: own}\n"
        "  insert_permissions:\n"
        "    - role: user\n      permission: {columns: [id], check: {}}\n"
        "- table: {schema: reader, name: quiet}\n",
    }
    folder = make_bundle(tmp_path, "reader", extra=extra, service=False, files=files)
    refusal = nself("plugin", "install", str(folder), cwd=project)  # type: ignore[operator]
    assert refusal.code == 4, refusal.output
    assert (
        "have Hasura serve reader.everyone (select: anonymous, user), reader.own "
        "(insert: user), reader.quiet (admin only) through its own source plugin_reader"
    ) in refusal.out


def test_install_names_declared_settings_the_project_already_sets(
    project: Path, tmp_path: Path, nself: Result
) -> None:
    """A bundle names its settings as it likes under its own prefix: one that declares
    OPENAI_API_KEY is handed the key the project keeps for its own functions, so install
    says so before the yes."""
    with (project / ".env.secrets").open("a") as env:
        env.write("OPENAI_API_KEY=sk-the-projects-own\n")
    line = next(
        n
        for n, text in enumerate((project / ".env.secrets").read_text().splitlines(), 1)
        if text.startswith("OPENAI_API_KEY=")
    )
    extra = (
        'env_prefix = "OPENAI_"\n[settings.OPENAI_API_KEY]\nsecret = true\n'
        + SERVICE
        + '[service.environment]\nKEY = "${OPENAI_API_KEY}"\n'
    )
    folder = make_bundle(tmp_path, "helper", extra=extra)
    run: Any = nself
    refusal = run("plugin", "install", str(folder), cwd=project)
    assert refusal.code == 4  # not confirmed
    said = f"read settings your env files already set: OPENAI_API_KEY (.env.secrets:{line})"
    assert said in refusal.out
    assert read_lock(project) == {}
    done = run("plugin", "install", str(folder), "--yes", cwd=project)
    assert done.code == 0, done.output
    assert said in done.out
    # its own settings, set since: an update of the same declaration asks nothing new
    again = run("plugin", "install", str(folder), "--yes", "--force", cwd=project)
    assert again.code == 0 and "already set" not in again.out


# -- nginx fragments ---------------------------------------------------------------------

ROUTE = '[route]\nfragment = "nginx/location.conf"\n'


@pytest.mark.parametrize(
    ("fragment", "expected"),
    [
        ('"include" /etc/nginx/nginx.conf;\n', "the include directive is not allowed"),
        ("'include' /etc/passwd;\n", "the include directive is not allowed"),
        ("inc\\lude /etc/passwd;\n", "directive is not allowed"),
        ("proxy_read_timeout 30s; include /etc/passwd;\n", "location.conf:1: the include"),
        ("gzip on;root /;\n", "the root directive is not allowed"),
        ("alias /etc/;\n", "the alias directive is not allowed"),
        ("proxy_pass http://postgres:5432;\n", "the proxy_pass directive is not allowed"),
        ("grpc_pass grpc://hasura:8080;\n", "the grpc_pass directive is not allowed"),
        ("set $upstream_probe http://hasura:8080;\n", "the set directive is not allowed"),
        ("access_log /etc/nginx/nself/x.crt;\n", "the access_log directive is not allowed"),
        ("error_page 404 /.well-known/acme-challenge/x;\n", "error_page directive"),
        ("if ($host) { return 200; }\n", "blocks are not allowed"),
        ("location /x { }\n", "blocks are not allowed"),
        ("add_header X-Frame-Options ALLOWALL;\n", "security headers are nself's to set"),
        ('add_header "Strict-Transport-Security" "max-age=0";\n', "security headers"),
        ("proxy_set_header Host evil.example;\n", "nself sets this header"),
        ('add_header X-A "a\\"; include /etc/passwd; #";\n', "is not a valid argument"),
        ("proxy_read_timeout 30s\n", "does not end with ';'"),
        ("proxy_buffering on;\nproxy_buffering off;\n", "proxy_buffering is set twice"),
        ("map $http_host $x { default 1; }\n", "blocks are not allowed"),
        ("content_by_lua_block { os.execute('id') }\n", "content_by_lua_block directive"),
        ("access_by_lua 'os.execute(\"id\")';\n", "the access_by_lua directive"),
        ("location ~ ^/(.*)$ { proxy_pass http://hasura:8080/$1; }\n", "blocks are not allowed"),
        ("} location /admin { proxy_pass http://hasura:8080; \n", "location.conf:1"),
        ("gzip on; # ; include /etc/passwd;\ninclude\n/etc/passwd;\n", "the include directive"),
        ("add_header X-A $secret\\;include;\n", "is not a valid argument"),
        # the private routes' login stays at nginx, whatever the header or the case
        ("proxy_set_header X-Login $http_authorization;\n", "the login of the project's"),
        ("proxy_set_header X-Login Basic-$HTTP_Authorization;\n", "the login of the project's"),
        ("add_header X-Login $http_authorization always;\n", "the login of the project's"),
        ("proxy_set_header Authorization $remote_user;\n", "nself sets this header"),
    ],
)
def test_nginx_fragments_hold_only_allowlisted_directives(
    fragment: str, expected: str, tmp_path: Path, project: Path
) -> None:
    files = {"nginx/location.conf": fragment}
    assert expected in refused(tmp_path, project, BASE + SERVICE + ROUTE, files)


def test_accepted_fragment_is_rewritten_one_statement_per_line(tmp_path: Path) -> None:
    folder = tmp_path / "ok"
    (folder / "nginx").mkdir(parents=True)
    (folder / "plugin.toml").write_text(BASE + SERVICE + ROUTE)
    (folder / "nginx/location.conf").write_text(
        '# tune it\n"proxy_read_timeout" 30s; add_header X-Plugin "a b;c" always;\n'
    )
    bundle, problems = lint_bundle(folder)
    assert bundle is not None, [p.message for p in problems]
    assert bundle.fragment == ("proxy_read_timeout 30s;", 'add_header X-Plugin "a b;c" always;')


def test_a_plugins_add_header_keeps_the_security_headers(
    project: Path, tmp_path: Path, nself: Result
) -> None:
    folder = make_bundle(
        tmp_path, "headers", extra=ROUTE, files={"nginx/location.conf": "add_header X-Plugin 1;\n"}
    )
    install_folder(project, folder)
    assert nself("build", cwd=project).code == 0  # type: ignore[operator]
    site = (project / "nginx/sites/headers.conf").read_text()
    location = site[site.index("location / {") :]
    assert "add_header X-Plugin 1;" in location
    for header in ("X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy"):
        assert f"add_header {header}" in location, header


# -- archives ----------------------------------------------------------------------------


def bomb(path: Path, size: int) -> Path:
    """A valid bundle archive whose second member is ``size`` zero bytes."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        text = manifest("boom").encode()
        info = tarfile.TarInfo("boom-1.0.0/plugin.toml")
        info.size = len(text)
        tar.addfile(info, io.BytesIO(text))
        info = tarfile.TarInfo("boom-1.0.0/zeros.bin")
        info.size = size

        class Zeros(io.RawIOBase):
            left = size

            def readable(self) -> bool:
                return True

            def readinto(self, buffer: bytearray) -> int:  # type: ignore[override]
                n = min(len(buffer), self.left)
                buffer[:n] = bytes(n)
                self.left -= n
                return n

        tar.addfile(info, io.BufferedReader(Zeros(), 1 << 20))
    with gzip.open(path, "wb", compresslevel=9) as handle:
        handle.write(raw.getvalue())
    return path


def test_a_gzip_bomb_is_refused_in_milliseconds(tmp_path: Path, project: Path) -> None:
    archive = bomb(tmp_path / "boom-1.0.0.tar.gz", 1 << 30)  # 1 GiB of zeros, ~1 MiB packed
    assert archive.stat().st_size < 2 << 20
    started = time.monotonic()
    with pytest.raises(NselfError, match="decompression bomb"):
        install_archive(project, archive)
    assert time.monotonic() - started < 0.5
    assert read_lock(project) == {} and not (project / "plugins").exists()
    assert not any((project / ".nself" / "tmp").iterdir())


def test_an_archive_over_the_size_limit_is_refused(tmp_path: Path, project: Path) -> None:
    import os

    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for index in range(3):
            data = os.urandom(30 << 20)  # incompressible: the ratio is 1:1
            info = tarfile.TarInfo(f"big-1.0.0/blob{index}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    archive = tmp_path / "big-1.0.0.tar.gz"
    with gzip.open(archive, "wb", compresslevel=1) as handle:
        handle.write(raw.getvalue())
    with pytest.raises(NselfError, match="MiB"):
        install_archive(project, archive)
    assert read_lock(project) == {}


@pytest.mark.parametrize(
    "member", [".hidden", "tests/test_x.py", "dist/old.tar.gz", "__pycache__/x.pyc", "x.pyc"]
)
def test_nothing_in_an_archive_is_dropped_silently(
    member: str, tmp_path: Path, project: Path
) -> None:
    archive = tmp_path / "drop-1.0.0.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in (("plugin.toml", manifest("drop").encode()), (member, b"x")):
            info = tarfile.TarInfo(f"drop-1.0.0/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(NselfError, match="would not be installed as it is"):
        install_archive(project, archive)
    assert read_lock(project) == {} and not (project / "plugins").exists()


def test_installed_files_are_the_archived_bytes(tmp_path: Path, project: Path) -> None:
    from nself_builtins.plugins.archive import pack
    from nself_builtins.plugins.files import digest_listing, every_file

    folder = make_bundle(tmp_path, "exact", files={"config/a.ini": "a = 1\n", "README.md": "x"})
    archive = tmp_path / "exact-1.0.0.tar.gz"
    pack(folder, archive, "exact-1.0.0")
    install_archive(project, archive)
    installed = project / "plugins" / "exact"
    assert digest_listing(installed, every_file(installed)) == digest_listing(
        folder, every_file(folder)
    )
