"""Installing bundles from folders and real archives: all or nothing, locked, re-checked."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from nself_builtins.plugins.archive import pack
from nself_builtins.plugins.store import (
    LOCK_FILE,
    allocate_port,
    install_archive,
    install_folder,
    read_lock,
    remove,
)
from nself_sdk import NselfError
from nself_sdk.testing import Result
from plugin_helpers import entry, good_manifest_member, make_bundle, manifest, tar_with

Run = Callable[..., Result]


def nothing_installed(project: Path) -> None:
    assert not (project / "plugins").exists() or not any((project / "plugins").iterdir())
    assert not (project / LOCK_FILE).exists() or not read_lock(project)
    tmp = project / ".nself" / "tmp"
    assert not tmp.exists() or not any(tmp.iterdir()), list(tmp.iterdir())


def test_install_folder_copies_locks_and_allocates_ports(project: Path, tmp_path: Path) -> None:
    first = install_folder(project, make_bundle(tmp_path, "alpha"))
    second = install_folder(project, make_bundle(tmp_path, "beta"))
    assert (first.entry.port, second.entry.port) == (3820, 3821)
    assert (project / "plugins" / "alpha" / "plugin.toml").is_file()
    lock = read_lock(project)
    assert lock["alpha"].version == "1.0.0" and len(lock["alpha"].sha256) == 64
    assert lock["beta"].port == 3821
    text = (project / LOCK_FILE).read_text()
    assert text.startswith("# Plugin bundles installed") and "[plugins.alpha]" in text


def test_removed_port_is_reused_lowest_first(project: Path, tmp_path: Path) -> None:
    for name in ("alpha", "beta", "gamma"):
        install_folder(project, make_bundle(tmp_path, name))
    remove(project, "beta")
    assert install_folder(project, make_bundle(tmp_path, "delta")).entry.port == 3821
    assert not (project / "plugins" / "beta").exists()


def test_reinstall_needs_force_and_keeps_the_port(project: Path, tmp_path: Path) -> None:
    install_folder(project, make_bundle(tmp_path, "alpha"))
    install_folder(project, make_bundle(tmp_path, "beta"))
    newer = make_bundle(tmp_path / "v2", "alpha", "1.1.0")
    with pytest.raises(NselfError, match=re.escape("alpha 1.0.0 is already installed")):
        install_folder(project, newer)
    done = install_folder(project, newer, replace=True)
    assert done.replaced == "1.0.0" and done.entry.port == 3820
    assert read_lock(project)["alpha"].version == "1.1.0"


def test_fixed_port_conflict_is_a_clear_error(project: Path, tmp_path: Path) -> None:
    fixed = '[service]\nimage = "nself-standin/http:3"\nport = 3830\n'
    install_folder(project, make_bundle(tmp_path, "one", extra=fixed))
    with pytest.raises(NselfError, match="wants port 3830, which plugin one already uses"):
        install_folder(project, make_bundle(tmp_path, "two", extra=fixed))
    assert "two" not in read_lock(project) and not (project / "plugins" / "two").exists()


def test_port_block_exhausted(project: Path, tmp_path: Path) -> None:
    for i in range(30):
        install_folder(project, make_bundle(tmp_path, f"p{i:02d}"))
    assert sorted(e.port for e in read_lock(project).values()) == list(range(3820, 3850))
    with pytest.raises(NselfError, match="all 30 ports of the block 3820-3849 are taken"):
        install_folder(project, make_bundle(tmp_path, "one-too-many"))
    assert not (project / "plugins" / "one-too-many").exists()


def test_allocation_is_deterministic() -> None:
    assert allocate_port({}, "x", None) == 3820
    assert allocate_port({}, "x", 3844) == 3844


def test_pack_is_reproducible_and_installs(project: Path, tmp_path: Path) -> None:
    folder = make_bundle(tmp_path, "alpha", files={"notes/readme.txt": "hi\n"})
    (folder / ".git").mkdir()
    (folder / ".git" / "HEAD").write_text("ref")
    a = pack(folder, tmp_path / "a.tar.gz", "alpha-1.0.0")
    (folder / "notes" / "readme.txt").touch()  # new mtime, same bytes
    b = pack(folder, tmp_path / "b.tar.gz", "alpha-1.0.0")
    assert a == b
    assert (tmp_path / "a.tar.gz").read_bytes() == (tmp_path / "b.tar.gz").read_bytes()
    with tarfile.open(tmp_path / "a.tar.gz") as tar:
        names = tar.getnames()
    assert "alpha-1.0.0/plugin.toml" in names and not any(".git" in n for n in names)
    done = install_archive(project, tmp_path / "a.tar.gz", expected_sha256=a)
    assert done.entry.archive_sha256 == a and done.entry.source == "archive:a.tar.gz"
    assert (project / "plugins" / "alpha" / "notes" / "readme.txt").read_text() == "hi\n"


def test_hash_mismatch_before_unpacking(project: Path, tmp_path: Path) -> None:
    folder = make_bundle(tmp_path, "alpha")
    pack(folder, tmp_path / "a.tar.gz", "alpha-1.0.0")
    with pytest.raises(NselfError, match="does not match the expected"):
        install_archive(project, tmp_path / "a.tar.gz", expected_sha256="0" * 64)
    nothing_installed(project)


def test_expected_name_and_version_are_enforced(project: Path, tmp_path: Path) -> None:
    pack(make_bundle(tmp_path, "alpha"), tmp_path / "a.tar.gz", "alpha-1.0.0")
    with pytest.raises(NselfError, match="is plugin 'alpha', not 'beta'"):
        install_archive(project, tmp_path / "a.tar.gz", expected_name="beta")
    with pytest.raises(NselfError, match=re.escape("alpha 1.0.0, not 2.0.0")):
        install_archive(project, tmp_path / "a.tar.gz", expected_version="2.0.0")
    nothing_installed(project)


@pytest.mark.parametrize(
    ("members", "expected"),
    [
        ([good_manifest_member(), ("evil-1.0.0/../../escape.txt", b"x")], "('..')"),
        ([good_manifest_member(), ("/tmp/nself-abs-escape.txt", b"x")], "absolute path"),
        (
            [good_manifest_member(), entry("evil-1.0.0/link", tarfile.SYMTYPE, "../../../etc")],
            "symbolic link escapes",
        ),
        (
            [good_manifest_member(), entry("evil-1.0.0/link", tarfile.SYMTYPE, "/etc/passwd")],
            "symbolic link to the absolute path",
        ),
        (
            [
                good_manifest_member(),
                entry("evil-1.0.0/d", tarfile.SYMTYPE, "."),
                ("evil-1.0.0/d/x.txt", b"x"),
            ],
            "goes through a symbolic link",
        ),
        (  # each link stays inside, but "a" is the folder above the bundle's
            [
                good_manifest_member(),
                entry("evil-1.0.0/a", tarfile.SYMTYPE, ".."),
                entry("evil-1.0.0/b", tarfile.SYMTYPE, "a/.."),
            ],
            "holds a, which would not be installed as it is (a link to a folder",
        ),
        (
            [good_manifest_member(), entry("evil-1.0.0/hard", tarfile.LNKTYPE, "/etc/passwd")],
            "hard links",
        ),
        ([good_manifest_member(), entry("evil-1.0.0/dev", tarfile.CHRTYPE)], "device files"),
        (
            [good_manifest_member(), entry("evil-1.0.0/fifo", tarfile.FIFOTYPE)],
            "device files and FIFOs",
        ),
        ([good_manifest_member(), good_manifest_member()], "holds this path twice"),
    ],
)
def test_unsafe_archives_are_refused(
    project: Path, tmp_path: Path, members: list[object], expected: str
) -> None:
    archive = tar_with(tmp_path / "evil.tar.gz", members)  # type: ignore[arg-type]
    with pytest.raises(NselfError) as caught:
        install_archive(project, archive)
    assert expected in caught.value.message
    assert caught.value.hint is not None and "nothing was installed" in caught.value.hint
    nothing_installed(project)
    assert not (tmp_path / "escape.txt").exists()
    assert not Path("/tmp/nself-abs-escape.txt").exists()


def test_links_inside_the_bundle_are_fine(project: Path, tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "ok.tar.gz",
        [
            good_manifest_member("ok", "okay"),
            ("ok/conf/real.ini", b"a=1\n"),
            entry("ok/conf/alias.ini", tarfile.SYMTYPE, "real.ini"),
        ],
    )
    done = install_archive(project, archive)
    assert (done.path / "conf" / "alias.ini").read_text() == "a=1\n"


def test_folder_with_escaping_link_is_refused(project: Path, tmp_path: Path) -> None:
    folder = make_bundle(tmp_path, "alpha")
    (folder / "secrets").symlink_to("/etc/passwd")
    with pytest.raises(NselfError, match="outside the bundle"):
        install_folder(project, folder)
    nothing_installed(project)


def test_garbage_archive_and_missing_manifest(project: Path, tmp_path: Path) -> None:
    junk = tmp_path / "junk.tar.gz"
    junk.write_bytes(b"not an archive")
    with pytest.raises(NselfError, match=re.escape("not a readable .tar.gz")):
        install_archive(project, junk)
    empty = tar_with(tmp_path / "empty.tar.gz", [("x/readme.txt", b"x")])
    with pytest.raises(NselfError, match=re.escape("holds no plugin.toml")):
        install_archive(project, empty)
    nothing_installed(project)


def test_manifest_errors_install_nothing(project: Path, tmp_path: Path) -> None:
    archive = tar_with(
        tmp_path / "bad.tar.gz",
        [
            (
                "bad/plugin.toml",
                manifest("bad").replace('version = "1.0.0"', 'version = "one"').encode(),
            )
        ],
    )
    with pytest.raises(
        NselfError, match=r"plugin.toml:3: \[plugin\] version: 'one' is not a semantic"
    ):
        install_archive(project, archive)
    nothing_installed(project)


def test_incompatible_requires_nself(project: Path, tmp_path: Path) -> None:
    folder = make_bundle(tmp_path, "future", extra='requires_nself = ">=9.0.0"\n')
    with pytest.raises(NselfError, match=re.escape("requires nself >=9.0.0, but this is nself")):
        install_folder(project, folder)
    nothing_installed(project)


def test_dependencies_must_be_installed_and_compatible(project: Path, tmp_path: Path) -> None:
    needs = '[dependencies]\nlib = "^1.0"\n'
    child = make_bundle(tmp_path, "child", extra=needs)
    with pytest.raises(NselfError, match=r"needs plugin lib \(\^1.0\), which is not installed"):
        install_folder(project, child)
    install_folder(project, make_bundle(tmp_path / "v2", "lib", "2.0.0"))
    with pytest.raises(NselfError, match=r"needs lib \^1.0, but lib 2.0.0 is installed"):
        install_folder(project, child)
    install_folder(project, make_bundle(tmp_path, "lib", "1.4.0"), replace=True)
    install_folder(project, child)
    with pytest.raises(NselfError, match="plugin child depends on lib"):
        remove(project, "lib")


def test_builtin_name_cannot_be_taken(project: Path, tmp_path: Path) -> None:
    with pytest.raises(NselfError, match="a Python plugin named 'compose' is already installed"):
        # COMPOSE_ is a reserved prefix: the bundle needs one of its own to get this far
        folder = make_bundle(tmp_path, "compose", extra='env_prefix = "WIDGETCO_"\n', service=False)
        install_folder(project, folder)


def test_pro_bundle_needs_a_licence(project: Path, tmp_path: Path) -> None:
    folder = make_bundle(tmp_path, "fancy", extra='tier = "pro"\n')
    with pytest.raises(NselfError, match="plugin fancy needs a pro licence"):
        install_folder(project, folder)
    nothing_installed(project)


# -- through the CLI, and the re-check when the project loads ---------------------------------


def test_cli_install_build_remove(project: Path, tmp_path: Path, nself: Run) -> None:
    folder = make_bundle(tmp_path, "alpha")
    result = nself("plugin", "install", "--yes", str(folder), "--yes", cwd=project)
    assert result.code == 0, result.output
    assert "installed alpha 1.0.0, port 3820 in plugins/alpha" in result.out
    listed = nself("plugin", "list", "--json", cwd=project)
    assert '"kind": "bundle"' in listed.out and '"port": 3820' in listed.out
    everything = nself("plugin", "list", "--all", cwd=project)
    assert "postgres" in everything.out and "builtin" in everything.out
    assert "postgres" not in nself("plugin", "list", cwd=project).out
    built = nself("build", "--json", cwd=project)
    assert built.code == 0, built.output
    assert "alpha" in built.out
    assert "ALPHA_PORT=3820" in (project / ".env.computed").read_text()
    removed = nself("plugin", "remove", "alpha", cwd=project)
    assert removed.code == 0, removed.output
    assert nself("build", "--json", cwd=project).out.count("alpha") == 0


def test_cli_errors_are_one_line_with_hint(project: Path, tmp_path: Path, nself: Run) -> None:
    result = nself("plugin", "install", "--yes", str(tmp_path / "nope"), cwd=project)
    assert result.code == 1 and "error:" in result.err and "Traceback" not in result.output
    result = nself("plugin", "remove", "ghost", cwd=project)
    assert result.code == 1 and "plugin ghost is not installed" in result.err
    assert "hint:" in result.err
    result = nself("plugin", "install", "--yes", "Not A Name", cwd=project)
    assert result.code == 2 and "is not a plugin name, folder or archive" in result.err


def test_tampered_file_is_refused_at_load(project: Path, tmp_path: Path, nself: Run) -> None:
    install_folder(project, make_bundle(tmp_path, "alpha"))
    with (project / "plugins" / "alpha" / "plugin.toml").open("a") as handle:
        handle.write("# changed\n")
    result = nself("build", cwd=project)
    assert result.code == 1
    assert "plugins/alpha does not match plugins.lock" in result.err
    assert "hint:" in result.err
    # Re-locking on purpose (adopting the changed folder) makes it loadable again.
    assert nself("plugin", "install", "--yes", "./plugins/alpha", cwd=project).code == 0
    assert nself("build", cwd=project).code == 0


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ('sha256 = "', 'sha256 = "0', "plugins.lock: alpha has no valid sha256"),
        (
            'version = "1.0.0"',
            'version = "1.0.1"',
            "holds alpha 1.0.0, but plugins.lock says alpha 1.0.1",
        ),
        (
            "[plugins.alpha]",
            "[plugins.alpha-gone]",
            "lists plugin alpha-gone but plugins/alpha-gone is missing",
        ),
        ("format = 1", "format = [", "plugins.lock is not valid TOML"),
    ],
)
def test_tampered_lock_entry_is_refused(
    project: Path, tmp_path: Path, nself: Run, old: str, new: str, expected: str
) -> None:
    install_folder(project, make_bundle(tmp_path, "alpha"))
    lock = project / LOCK_FILE
    text = lock.read_text()
    assert old in text
    lock.write_text(text.replace(old, new, 1))
    result = nself("build", cwd=project)
    assert result.code == 1 and expected in result.err, result.err


def test_changed_sha_in_lock_is_refused(project: Path, tmp_path: Path, nself: Run) -> None:
    install_folder(project, make_bundle(tmp_path, "alpha"))
    lock = project / LOCK_FILE
    sha = read_lock(project)["alpha"].sha256
    lock.write_text(lock.read_text().replace(sha, "f" * 64))
    result = nself("build", cwd=project)
    assert result.code == 1 and "does not match plugins.lock" in result.err


def test_unlisted_folder_is_a_warning(project: Path, tmp_path: Path, nself: Run) -> None:
    install_folder(project, make_bundle(tmp_path, "alpha"))
    make_bundle(project / "plugins", "stray")
    result = nself("build", cwd=project)
    assert result.code == 0
    assert "plugins/stray is not in plugins.lock" in result.err


def test_bundle_migrations_run_after_their_dependencies(project: Path, tmp_path: Path) -> None:
    """The database plugin's runner orders bundle migrations by ``depends_on``."""
    from nself_builtins.database.migrations import ordered, plugin_migrations
    from nself_sdk import plan

    def with_table(name: str, extra: str = "") -> Path:
        prefix = name.replace("-", "_") + "_"
        return make_bundle(
            tmp_path,
            name,
            extra=extra + '[database]\nmigrations = "migrations"\n',
            files={"migrations/0001_init.up.sql": f"CREATE TABLE {prefix}t (id int);\n"},
        )

    install_folder(project, make_bundle(tmp_path, "nodb"))
    install_folder(project, with_table("zbase"))
    install_folder(project, with_table("achild", '[dependencies]\nzbase = "*"\nnodb = "*"\n'))
    migrations = plan(project).stack.migrations
    by_source = {m.source: m for m in migrations}
    assert by_source["achild"].depends_on == ("zbase",)  # nodb has no migrations
    order = [item.source for item in ordered(plugin_migrations(migrations))]
    assert order.index("zbase") < order.index("achild")


def test_nself_upgrade_outside_requires_nself_is_refused_at_load(
    project: Path, tmp_path: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nself_builtins.plugins import store

    install_folder(project, make_bundle(tmp_path, "old", extra='requires_nself = "~0.1"\n'))
    assert read_lock(project)["old"].checked_with == store.nself_version
    assert nself("build", cwd=project).code == 0
    monkeypatch.setattr(store, "nself_version", "0.2.0")  # as after upgrading nself
    result = nself("build", cwd=project)
    assert result.code == 1
    assert "plugin old 1.0.0 requires nself ~0.1, but this is nself 0.2.0" in result.err


def test_one_plugin_change_at_a_time(project: Path, tmp_path: Path) -> None:
    from nself_builtins.plugins.store import exclusive

    with exclusive(project), pytest.raises(NselfError, match="another `nself plugin` command"):
        install_folder(project, make_bundle(tmp_path, "alpha"))
    nothing_installed(project)
    install_folder(project, make_bundle(tmp_path, "alpha"))  # free again afterwards


def test_bundle_secret_is_generated_by_nself_secrets(
    project: Path, tmp_path: Path, nself: Run
) -> None:
    secret = (
        '[settings.VAULTY_TOKEN]\nsecret = true\nrequired = true\ngenerate = "token"\n'
        "min_length = 32\n"
    )
    folder = make_bundle(tmp_path, "vaulty", extra=secret)
    installed = nself("plugin", "install", "--yes", str(folder), "--yes", cwd=project)
    assert installed.code == 0, installed.output
    assert "next: nself secrets generate (creates VAULTY_TOKEN)" in installed.out
    refused = nself("build", cwd=project)
    assert refused.code == 1 and "plugin vaulty needs VAULTY_TOKEN" in refused.err
    assert nself("secrets", "generate", cwd=project).code == 0
    assert "VAULTY_TOKEN=" in (project / ".env.secrets").read_text()
    built = nself("build", cwd=project)
    assert built.code == 0, built.output


@pytest.mark.parametrize("reference", ["${DATABASE_URL}", "${POSTGRES_URL}"])
def test_rendered_files_never_hold_secrets(
    project: Path, tmp_path: Path, nself: Run, reference: str
) -> None:
    files = '[[files]]\nsource = "app.conf"\ntarget = "/etc/app.conf"\n'
    service = '[service]\nimage = "nself-standin/http:3"\n'
    access = 'access = ["database-superuser"]\n'
    folder = make_bundle(
        tmp_path, "leaky", extra=access + service + files, files={"app.conf": f"db = {reference}\n"}
    )
    # Lint refuses it before it is installed; the build's own check stays behind it.
    with pytest.raises(NselfError, match=r"app.conf refers to secret setting\(s\)"):
        install_folder(project, folder)
    nothing_installed(project)
    from nself_builtins.plugins.bundle import render_template
    from nself_sdk import load_config

    config = load_config(project)
    with pytest.raises(NselfError, match="into a file on disk"):
        render_template(f"db = {reference}\n", config, "app.conf", "leaky")


def test_two_bundles_on_one_port_stop_the_build(project: Path, tmp_path: Path, nself: Run) -> None:
    install_folder(project, make_bundle(tmp_path, "alpha"))
    install_folder(project, make_bundle(tmp_path, "beta"))
    (project / ".env.local").write_text("BETA_PORT=3820\n")
    result = nself("build", cwd=project)
    assert result.code == 1 and "plugins alpha and beta both use port 3820" in result.err


def test_status_names_missing_settings(project: Path, tmp_path: Path, nself: Run) -> None:
    import json

    needs = '[settings.KEYED_API_URL]\nrequired = true\ndescription = "Where to send."\n'
    install_folder(project, make_bundle(tmp_path, "keyed", extra=needs))
    result = nself("plugin", "status", "--json", cwd=project)
    assert result.code == 0, result.output
    (row,) = json.loads(result.out)
    assert row["name"] == "keyed" and row["missing"] == ["KEYED_API_URL"]
    assert row["port"] == 3820


def test_status_shows_the_url_the_stack_publishes(
    project: Path, tmp_path: Path, nself: Run, nself_plugins: Callable[..., None]
) -> None:
    import json

    from nself_sdk import hookimpl

    install_folder(project, make_bundle(tmp_path, "routed", extra='[route]\nsubdomain = "rt"\n'))
    (project / ".env.local").write_text("NGINX_HTTPS_PORT=8443\n")
    (row,) = json.loads(nself("plugin", "status", "--json", cwd=project).out)
    assert row["url"] == "https://rt.local.nself.org:8443"

    class Tunnel:  # publishes the stack somewhere else: its URLs are the ones to show
        @hookimpl(tryfirst=True)
        def contribute_urls(self, config: object, stack: object) -> dict[str, str]:
            return {"routed": "https://routed.tunnel.example"}

    nself_plugins(tunnel=Tunnel())
    (row,) = json.loads(nself("plugin", "status", "--json", cwd=project).out)
    assert row["url"] == "https://routed.tunnel.example"


def test_status_lists_bundles_of_a_stack_that_does_not_build(
    project: Path, tmp_path: Path, nself: Run
) -> None:
    import json

    route = '[route]\nsubdomain = "same"\n'  # both want one subdomain: no stack
    install_folder(project, make_bundle(tmp_path, "alpha", extra=route))
    install_folder(project, make_bundle(tmp_path, "beta", extra=route))
    assert "subdomain 'same' is routed by both" in nself("build", cwd=project).err
    result = nself("plugin", "status", "--json", cwd=project)
    assert result.code == 0, result.output
    rows = json.loads(result.out)
    assert [(r["name"], r["url"]) for r in rows] == [("alpha", None), ("beta", None)]


def test_a_new_hyphenated_plugin_lints_installs_and_builds(
    project: Path, tmp_path: Path, nself: Run
) -> None:
    """`plugin new my-plugin && plugin lint my-plugin` passes on its own scaffold (its schema
    is my_plugin, its settings MY_PLUGIN_*), and the build takes what lint passed."""
    made = nself("plugin", "new", "my-plugin", cwd=tmp_path)
    assert made.code == 0, made.output
    linted = nself("plugin", "lint", "my-plugin", cwd=tmp_path)
    assert linted.code == 0, linted.output
    assert "my-plugin 0.1.0 is a valid plugin bundle" in linted.out
    installed = nself("plugin", "install", str(tmp_path / "my-plugin"), "--yes", cwd=project)
    assert installed.code == 0, installed.output
    assert nself("secrets", "generate", cwd=project).code == 0
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    assert "https://my-plugin.local.nself.org" in built.out


@pytest.mark.parametrize(
    ("extra", "files", "said"),
    [
        ('[service.volumes]\ndata = "/data:ro"\n', {}, "'/data:ro' must be an absolute"),
        (
            '[[files]]\nsource = "app.ini"\ntarget = "/etc/app.ini"\n',
            {"app.ini": "url = ${DATABASE_URL}\n"},
            "app.ini refers to secret setting(s) DATABASE_URL",
        ),
    ],
)
def test_lint_refuses_what_the_build_refuses(
    project: Path, tmp_path: Path, nself: Run, extra: str, files: dict[str, str], said: str
) -> None:
    """One parser for lint, install and every build: a volume target with ':' and a secret
    in a rendered file are refused by `plugin lint` with the line install would give."""
    head = 'access = ["database-superuser"]\n[service]\nimage = "traefik/whoami:v1.10.3"\n'
    folder = make_bundle(tmp_path, "strict", extra=head + extra, files=files, service=False)
    linted = nself("plugin", "lint", str(folder), cwd=tmp_path)
    assert linted.code == 1 and said in linted.err, linted.output
    installed = nself("plugin", "install", str(folder), "--yes", cwd=project)
    assert installed.code == 1 and said in installed.err, installed.output
    nothing_installed(project)
