"""Where a project keeps its plugin bundles, the lock file, and the local installer.

Layout (both committed, so every teammate and every server runs the same plugins)::

    plugins/<name>/        the installed bundle, exactly as packed
    plugins.lock           name -> version, sha256 of the installed files, port, source

Installing never runs anything from the bundle. It checks the manifest, copies the
bundle into ``.nself/tmp/`` (same file system), hashes it, then renames it into
``plugins/<name>`` and rewrites the lock; on any failure nothing is left behind.
Loading a project re-hashes every bundle and refuses one that no longer matches its lock
entry.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
import tomllib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nself_builtins.shared.manifest import (
    MANIFEST_FILE,
    PORT_FIRST,
    PORT_LAST,
    Bundle,
    Manifest,
    check_requires_nself,
    load_bundle,
    parse_manifest,
    version_matches,
)
from nself_sdk import NselfError, locks, nself_version, write_atomic

from . import files

PLUGINS_DIR = "plugins"
LOCK_FILE = "plugins.lock"
TMP_DIR = ".nself/tmp"
LOCK_HEADER = (
    "# Plugin bundles installed in this project, written by `nself plugin install/remove`.\n"
    "# Commit it together with plugins/: nself re-checks every bundle against its sha256.\n"
)
LOCK_FORMAT = 1


@dataclass(frozen=True)
class LockEntry:
    name: str
    version: str
    sha256: str
    port: int | None
    tier: str = "free"
    source: str = ""
    archive_sha256: str | None = None
    # The nself version that checked requires_nself when installing: loading with the same
    # version needs no second check (and no semver import on every build).
    checked_with: str = ""

    def as_toml(self) -> dict[str, Any]:
        data: dict[str, Any] = {"version": self.version, "sha256": self.sha256}
        if self.port is not None:
            data["port"] = self.port
        data["tier"] = self.tier
        if self.source:
            data["source"] = self.source
        if self.archive_sha256:
            data["archive_sha256"] = self.archive_sha256
        if self.checked_with:
            data["nself"] = self.checked_with
        return data


Approve = Callable[[Bundle, "LockEntry | None"], None]


@dataclass(frozen=True)
class Installed:
    """The result of an install: what is now in ``plugins/<name>``."""

    entry: LockEntry
    path: Path
    replaced: str | None = None  # the version it replaced, if any


# -- the lock file ------------------------------------------------------------------------------


def lock_path(project: Path) -> Path:
    return project / LOCK_FILE


def read_lock(project: Path) -> dict[str, LockEntry]:
    path = lock_path(project)
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise NselfError(
            f"{LOCK_FILE} is not valid TOML ({exc})",
            f"restore it from version control, or reinstall the plugins in {PLUGINS_DIR}/",
        ) from None
    plugins = data.get("plugins", {})
    if not isinstance(plugins, dict):
        raise NselfError(f"{LOCK_FILE}: [plugins] must be a table", "restore it")
    entries: dict[str, LockEntry] = {}
    for name, raw in plugins.items():
        if not isinstance(raw, dict) or not isinstance(raw.get("version"), str):
            raise NselfError(f"{LOCK_FILE}: entry {name!r} is malformed", "restore it")
        sha = raw.get("sha256")
        if not isinstance(sha, str) or len(sha) != 64:
            raise NselfError(f"{LOCK_FILE}: {name} has no valid sha256", "restore it")
        port = raw.get("port")
        if port is not None and not isinstance(port, int):
            raise NselfError(f"{LOCK_FILE}: {name} port must be a number", "restore it")
        entries[name] = LockEntry(
            name=name,
            version=raw["version"],
            sha256=sha,
            port=port,
            tier=str(raw.get("tier", "free")),
            source=str(raw.get("source", "")),
            archive_sha256=raw.get("archive_sha256"),
            checked_with=str(raw.get("nself", "")),
        )
    return entries


def write_lock(project: Path, entries: dict[str, LockEntry]) -> None:
    import tomli_w

    body = {
        "format": LOCK_FORMAT,
        "plugins": {name: entries[name].as_toml() for name in sorted(entries)},
    }
    write_atomic(lock_path(project), LOCK_HEADER + tomli_w.dumps(body))


# -- hashing ------------------------------------------------------------------------------------


def tree_sha256(root: Path) -> str:
    """A digest of a bundle folder: every file's path, kind and content, in order.

    Links are hashed as links (their target text), never followed.
    """
    digest = hashlib.sha256(b"nself-bundle-v1\0")
    for path in files.bundle_files(root):
        rel = path.relative_to(root).as_posix()
        if path.is_symlink():
            digest.update(b"L\0" + rel.encode() + b"\0" + os.readlink(path).encode() + b"\0")
        else:
            digest.update(b"F\0" + rel.encode() + b"\0" + files.sha256_file(path).encode() + b"\0")
    return digest.hexdigest()


# -- ports --------------------------------------------------------------------------------------


def allocate_port(
    entries: dict[str, LockEntry], name: str, wanted: int | None, keep: int | None = None
) -> int:
    """The plugin's port: the one it asks for, else the one it had, else the lowest free one."""
    taken = {e.port: e.name for e in entries.values() if e.port is not None and e.name != name}
    if wanted is not None:
        if wanted in taken:
            raise NselfError(
                f"plugin {name} wants port {wanted}, which plugin {taken[wanted]} already uses",
                f"remove {taken[wanted]} or ask the author of {name} to drop the fixed port",
            )
        return wanted
    if keep is not None and keep not in taken and PORT_FIRST <= keep <= PORT_LAST:
        return keep
    for port in range(PORT_FIRST, PORT_LAST + 1):
        if port not in taken:
            return port
    raise NselfError(
        f"no free plugin port: all {PORT_LAST - PORT_FIRST + 1} ports of the block "
        f"{PORT_FIRST}-{PORT_LAST} are taken",
        "remove a plugin you no longer use (`nself plugin remove NAME`)",
    )


# -- installing ---------------------------------------------------------------------------------


@contextmanager
def exclusive(project: Path) -> Iterator[None]:
    """One install or removal at a time per project (an advisory lock in .nself/)."""
    with locks.exclusive(
        project / ".nself" / "plugins.lck",
        "another `nself plugin` command is changing this project's plugins",
        "wait for it to finish, then run the command again",
    ):
        yield


@contextmanager
def scratch(project: Path, what: str) -> Iterator[Path]:
    """A temp folder on the project's file system, removed afterwards whatever happens."""
    base = project / TMP_DIR
    base.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{what}-", dir=base))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _copy_bundle(source: Path, target: Path) -> None:
    """Copy the bundle's files; links must stay inside the bundle and are copied as links."""
    root = source.resolve()
    target.mkdir(parents=True)
    for path in files.bundle_files(source):
        rel = path.relative_to(source)
        dest = target / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            real = path.resolve()
            if real != root and root not in real.parents:
                raise NselfError(
                    f"{source / rel} is a link to {os.readlink(path)}, outside the bundle",
                    "replace the link with the file itself; nothing was installed",
                )
            os.symlink(os.readlink(path), dest)
            continue
        if not path.is_file():
            raise NselfError(f"{source / rel} is not a regular file", "remove it from the bundle")
        shutil.copyfile(path, dest)
        dest.chmod(0o644)


def bundle_root(folder: Path) -> Path:
    """The bundle inside an unpacked archive: its top folder, or the top-level files."""
    if (folder / MANIFEST_FILE).is_file():
        return folder
    entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
    top = entries[0] if len(entries) == 1 else None
    if top is not None and not top.is_symlink() and (top / MANIFEST_FILE).is_file():
        return top
    raise NselfError(
        f"the archive holds no {MANIFEST_FILE} at its top or in a single top folder",
        "pack bundles with `nself plugin pack`",
    )


def installed_python_plugins() -> dict[str, str]:
    """Entry-point plugins (builtins included): name -> version of their distribution."""
    from nself_sdk.host import entry_point_plugins

    return {ep.name: ep.version or nself_version for ep in entry_point_plugins()}


def check_dependencies(project: Path, bundle: Bundle, entries: dict[str, LockEntry]) -> None:
    python = installed_python_plugins()
    for dep, spec in sorted(bundle.manifest.dependencies.items()):
        have = entries[dep].version if dep in entries else python.get(dep)
        if have is None:
            raise NselfError(
                f"plugin {bundle.manifest.name} needs plugin {dep} ({spec}), "
                "which is not installed",
                f"install it first: `nself plugin install {dep}`",
            )
        if not version_matches(spec, have):
            raise NselfError(
                f"plugin {bundle.manifest.name} needs {dep} {spec}, but {dep} {have} is installed",
                f"update it: `nself plugin install {dep}@VERSION --force`",
            )


def check_licence(project: Path, bundle: Bundle) -> None:
    """A pro bundle installs only when a licence plugin allows it (see ``validate_license``)."""
    manifest = bundle.manifest
    if manifest.tier == "free":
        return
    from nself_sdk import load_config
    from nself_sdk.host import plugin_manager

    config = load_config(project)
    verdict = plugin_manager(project).hook.validate_license(
        config=config, plugin=manifest.name, tier=manifest.tier, purpose="install"
    )
    if verdict is True:  # allowed
        return
    if verdict is None:
        raise NselfError(
            f"plugin {manifest.name} needs a {manifest.tier} licence",
            "run `nself license set KEY`, then install again",
        )
    if getattr(verdict, "level", "error") == "error":
        raise NselfError(verdict.message, verdict.hint)


def install_folder(
    project: Path,
    folder: Path,
    *,
    source: str = "",
    replace: bool = False,
    archive_sha256: str | None = None,
    expected_name: str | None = None,
    expected_version: str | None = None,
    check_licence_with_hooks: bool = True,
    approve: Approve | None = None,
    exact: bool = False,
) -> Installed:
    """Install the bundle in ``folder`` into ``project``: all or nothing.

    ``replace`` allows replacing an installed version (update/reinstall). ``expected_*``
    guard against a registry artifact that is not what was asked for. ``approve`` sees the
    checked bundle (and the entry it replaces) before anything is installed and raises to
    refuse it. ``exact``: every file of ``folder`` must be installed, byte for byte (an
    unpacked archive: nothing it holds is dropped silently).
    """
    project = project.resolve()
    with exclusive(project):
        return _install_folder(
            project,
            folder.resolve(),
            source=source,
            replace=replace,
            archive_sha256=archive_sha256,
            expected_name=expected_name,
            expected_version=expected_version,
            check_licence_with_hooks=check_licence_with_hooks,
            approve=approve,
            exact=exact,
        )


def _install_folder(
    project: Path,
    folder: Path,
    *,
    source: str,
    replace: bool,
    archive_sha256: str | None,
    expected_name: str | None,
    expected_version: str | None,
    check_licence_with_hooks: bool,
    approve: Approve | None,
    exact: bool,
) -> Installed:
    plugins = project / PLUGINS_DIR
    bundle = load_bundle(folder)
    manifest = bundle.manifest
    if expected_name is not None and manifest.name != expected_name:
        raise NselfError(
            f"the bundle is plugin {manifest.name!r}, not {expected_name!r}",
            "the artifact does not match its index entry; nothing was installed",
        )
    if expected_version is not None and manifest.version != expected_version:
        raise NselfError(
            f"the bundle is {manifest.name} {manifest.version}, not {expected_version}",
            "the artifact does not match its index entry; nothing was installed",
        )
    check_requires_nself(manifest, nself_version)
    entries = read_lock(project)
    old = entries.get(manifest.name)
    dest = plugins / manifest.name
    adopting = folder == dest.resolve()
    if old is not None and not replace and not adopting:
        raise NselfError(
            f"plugin {manifest.name} {old.version} is already installed",
            f"use --force to replace it with {manifest.version}, or remove it first",
        )
    if old is None and dest.exists() and not adopting:
        raise NselfError(
            f"{PLUGINS_DIR}/{manifest.name} exists but is not in {LOCK_FILE}",
            f"move the folder away, or adopt it with `nself plugin install ./{PLUGINS_DIR}/"
            f"{manifest.name}`",
        )
    python = installed_python_plugins()
    if manifest.name in python:
        raise NselfError(
            f"a Python plugin named {manifest.name!r} is already installed",
            "plugin names must be unique; uninstall the other one or rename the bundle",
        )
    check_dependencies(project, bundle, entries)
    others = [_installed_manifest(project, name) for name in entries if name != manifest.name]
    check_volumes([m for m in others if m is not None] + [manifest])
    check_settings([m for m in others if m is not None] + [manifest])
    if check_licence_with_hooks:
        check_licence(project, bundle)
    wanted = manifest.service.port if manifest.service is not None else None
    port = (
        allocate_port(entries, manifest.name, wanted, keep=old.port if old else None)
        if manifest.service is not None
        else None
    )
    if adopting:
        if approve is not None:
            approve(bundle, old)
        digest = tree_sha256(dest)
        entry = LockEntry(
            manifest.name, manifest.version, digest, port, manifest.tier, source or "folder"
        )
        entries[manifest.name] = entry
        write_lock(project, entries)
        return Installed(entry, dest, old.version if old else None)
    with scratch(project, f"install-{manifest.name}") as tmp:
        staged = tmp / manifest.name
        _copy_bundle(folder, staged)
        if exact:
            _same_files(folder, staged)
        load_bundle(staged)  # the copy is what gets installed: check it, not the source
        if approve is not None:
            approve(load_bundle(staged, deep=False), old)
        digest = tree_sha256(staged)
        entry = LockEntry(
            name=manifest.name,
            version=manifest.version,
            sha256=digest,
            port=port,
            tier=manifest.tier,
            source=source or "folder",
            archive_sha256=archive_sha256,
            checked_with=nself_version,
        )
        entries[manifest.name] = entry
        plugins.mkdir(exist_ok=True)
        backup = tmp / "previous"
        if dest.exists():
            os.rename(dest, backup)
        try:
            os.rename(staged, dest)
            try:
                write_lock(project, entries)
            except BaseException:
                shutil.rmtree(dest, ignore_errors=True)
                raise
        except BaseException:
            if backup.exists():
                os.rename(backup, dest)
            raise
    return Installed(entry, dest, old.version if old else None)


def install_archive(
    project: Path,
    archive_path: Path,
    *,
    source: str = "",
    replace: bool = False,
    expected_name: str | None = None,
    expected_version: str | None = None,
    expected_sha256: str | None = None,
    check_licence_with_hooks: bool = True,
    approve: Approve | None = None,
) -> Installed:
    """Safely unpack a bundle archive and install it (see ``install_folder``).

    The registry client calls this after it verified the artifact; ``expected_sha256``
    re-checks the bytes on disk just before unpacking.
    """
    project = project.resolve()
    if not archive_path.is_file():
        raise NselfError(f"{archive_path} does not exist", "check the path of the archive")
    digest = files.sha256_file(archive_path)
    if expected_sha256 is not None and digest != expected_sha256.lower():
        raise NselfError(
            f"{archive_path.name}: sha256 {digest} does not match the expected {expected_sha256}",
            "the download is corrupt or was tampered with; nothing was installed",
        )
    with scratch(project, "unpack") as tmp:
        unpacked = tmp / "bundle"
        unpacked.mkdir()
        from .archive import extract

        extract(archive_path, unpacked)
        root = bundle_root(unpacked)
        outside = [p for p in files.every_file(unpacked) if root not in p.parents]
        if outside:
            raise NselfError(
                f"{archive_path.name} holds {outside[0].relative_to(unpacked).as_posix()}, "
                "outside the bundle's folder",
                "pack bundles with `nself plugin pack`; nothing was installed",
            )
        return install_folder(
            project,
            root,
            source=source or f"archive:{archive_path.name}",
            replace=replace,
            archive_sha256=digest,
            expected_name=expected_name,
            expected_version=expected_version,
            check_licence_with_hooks=check_licence_with_hooks,
            approve=approve,
            exact=True,
        )


def _same_files(source: Path, staged: Path) -> None:
    """Refuse an install that would not be byte for byte what the archive held."""
    held = files.digest_listing(source, files.every_file(source))
    got = files.digest_listing(staged, files.bundle_files(staged))
    for rel in sorted(set(held) | set(got)):
        if held.get(rel) != got.get(rel):
            if rel not in got and (source / rel).is_dir():
                why = "a link to a folder: a bundle carries files and links to files"
            elif rel not in got:
                why = "a bundle cannot carry it: hidden files, tests/ and dist/ never are"
            else:
                why = "it would change"
            raise NselfError(
                f"the archive holds {rel}, which would not be installed as it is ({why})",
                "pack bundles with `nself plugin pack`; nothing was installed",
            )


def dependents(entries: dict[str, LockEntry], project: Path, name: str) -> list[str]:
    """Installed bundles that depend on ``name``."""
    found = []
    for other in sorted(entries):
        if other == name:
            continue
        try:
            bundle = load_bundle(project / PLUGINS_DIR / other)
        except NselfError:
            continue
        if name in bundle.manifest.dependencies:
            found.append(other)
    return found


def remove(project: Path, name: str) -> LockEntry:
    """Take ``name`` out of the project: its folder and its lock entry (data stays)."""
    project = project.resolve()
    with exclusive(project):
        return _remove(project, name)


def _remove(project: Path, name: str) -> LockEntry:
    entries = read_lock(project)
    entry = entries.get(name)
    if entry is None:
        raise NselfError(
            f"plugin {name} is not installed in this project",
            "`nself plugin list` shows the installed plugins",
        )
    users = dependents(entries, project, name)
    if users:
        raise NselfError(
            f"plugin {', '.join(users)} depends on {name}",
            f"remove {', '.join(users)} first",
        )
    dest = project / PLUGINS_DIR / name
    with scratch(project, f"remove-{name}") as tmp:
        if dest.exists():
            os.rename(dest, tmp / name)
        del entries[name]
        try:
            write_lock(project, entries)
        except BaseException:
            if (tmp / name).exists():
                os.rename(tmp / name, dest)
            raise
    return entry


# -- loading ------------------------------------------------------------------------------------


@dataclass
class Loaded:
    entry: LockEntry
    bundle: Bundle


def volume_name(plugin: str, key: str) -> str:
    """The named volume holding a plugin's data (kept by `nself plugin remove`)."""
    return "plugin_" + re.sub(r"[^a-z0-9_]", "_", plugin) + "_" + key


def _first_clash(
    manifests: list[Manifest], claims: Callable[[Manifest], list[tuple[str, str]]]
) -> tuple[str, Manifest, str, str] | None:
    """The first name two plugins claim: (the earlier owner, the later plugin, the name,
    what of the later plugin makes it); ``claims`` gives (name, what) pairs."""
    owners: dict[str, str] = {}
    for m in manifests:
        for name, what in claims(m):
            other = owners.setdefault(name, m.name)
            if other != m.name:
                return other, m, name, what
    return None


def check_volumes(manifests: list[Manifest]) -> None:
    """Refuse two plugins whose volumes get one name (``ab`` with ``c_data`` and ``ab-c``
    with ``data`` are both ``plugin_ab_c_data``): one would mount the other's data, and
    ``plugin remove --delete-data`` of one would delete it."""

    def volumes(m: Manifest) -> list[tuple[str, str]]:
        keys = sorted(m.service.volumes) if m.service is not None else []
        return [(volume_name(m.name, key), key) for key in keys]

    if clash := _first_clash(manifests, volumes):
        other, m, name, key = clash
        raise NselfError(
            f"plugins {other} and {m.name} would both use the volume {name}: one "
            "would read and write the other's data",
            f"remove one of them; nothing was changed (a plugin's volume key may "
            f"not make another plugin's name: {m.name}'s {key!r} or {other}'s)",
        )


def setting_names(m: Manifest) -> list[str]:
    """Every setting the bundle declares, and those nself declares or derives for it."""
    names = [s.name for s in m.settings]
    if m.service is not None:
        names += [m.port_setting, m.host_setting, m.image_setting]
    if m.database is not None:
        names += [m.database_url_setting, m.database_password_setting]
    return names


def check_settings(manifests: list[Manifest]) -> None:
    """Refuse two plugins claiming one setting (a shared ``env_prefix``, or ``ab``'s
    ``AB_C_TOKEN`` under ``ab-c``'s prefix): one would be handed the other's value, and the
    build refuses them; install says so first, with nothing installed."""
    if clash := _first_clash(manifests, lambda m: [(n, n) for n in setting_names(m)]):
        other, m, name, _ = clash
        raise NselfError(
            f"plugins {other} and {m.name} both declare the setting {name}: one "
            "would be handed the other's value",
            f"nothing was installed; give {m.name} another env_prefix or setting "
            f"name, or remove {other} first",
        )


def _installed_manifest(project: Path, name: str) -> Manifest | None:
    try:
        text = (project / PLUGINS_DIR / name / MANIFEST_FILE).read_text(encoding="utf-8")
        return parse_manifest(text)
    except (OSError, UnicodeDecodeError, NselfError):
        return None  # refused on its own when the project loads


def verified_bundles(project: Path) -> list[Loaded]:
    """Every bundle of the lock file, re-hashed and checked; a mismatch is an error."""
    entries = read_lock(project)
    plugins = project / PLUGINS_DIR
    loaded: list[Loaded] = []
    for name in sorted(entries):
        entry = entries[name]
        folder = plugins / name
        if not folder.is_dir():
            raise NselfError(
                f"{LOCK_FILE} lists plugin {name} but {PLUGINS_DIR}/{name} is missing",
                f"reinstall it (`nself plugin install {name}`) or remove it from the lock "
                f"(`nself plugin remove {name}`)",
            )
        digest = tree_sha256(folder)
        if digest != entry.sha256:
            raise NselfError(
                f"{PLUGINS_DIR}/{name} does not match {LOCK_FILE} (sha256 {digest[:12]}…, "
                f"locked {entry.sha256[:12]}…): its files were changed",
                f"reinstall it with `nself plugin install {name} --force`, or if you changed "
                f"it on purpose, re-lock it with `nself plugin install ./{PLUGINS_DIR}/{name}`",
            )
        bundle = load_bundle(folder, deep=False)  # fully checked on install; sha256 matched
        if bundle.manifest.name != name or bundle.manifest.version != entry.version:
            raise NselfError(
                f"{PLUGINS_DIR}/{name} holds {bundle.manifest.name} {bundle.manifest.version}, "
                f"but {LOCK_FILE} says {name} {entry.version}",
                f"reinstall it with `nself plugin install {name} --force`",
            )
        if entry.checked_with != nself_version and bundle.manifest.requires_nself != "*":
            check_requires_nself(bundle.manifest, nself_version)
        loaded.append(Loaded(entry, bundle))
    check_volumes([item.bundle.manifest for item in loaded])
    names = {item.entry.name for item in loaded}
    python: dict[str, str] | None = None
    for item in loaded:
        for dep, spec in item.bundle.manifest.dependencies.items():
            if dep not in names and python is None:
                python = installed_python_plugins()
            have = entries[dep].version if dep in names else (python or {}).get(dep)
            if have is None:
                raise NselfError(
                    f"plugin {item.entry.name} needs plugin {dep}, which is not installed",
                    f"install it: `nself plugin install {dep}`",
                )
            if not version_matches(spec, have):
                raise NselfError(
                    f"plugin {item.entry.name} needs {dep} {spec}, but {dep} {have} is installed",
                    f"update {dep}",
                )
    return loaded


def unlisted_folders(project: Path) -> list[str]:
    """Folders in plugins/ the lock file does not know (copied by hand, half-merged...)."""
    plugins = project / PLUGINS_DIR
    if not plugins.is_dir():
        return []
    known = set(read_lock(project))
    return sorted(
        p.name
        for p in plugins.iterdir()
        if p.is_dir() and not p.name.startswith(".") and p.name not in known
    )
