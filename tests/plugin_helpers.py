"""Helpers for the plugin tests: small bundles and hand-made (malicious) archives on disk."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path


def manifest(name: str, version: str = "1.0.0", extra: str = "", service: bool = True) -> str:
    text = f'[plugin]\nname = "{name}"\nversion = "{version}"\ndescription = "Test plugin {name}"\n'
    text += extra
    if service and "[service]" not in extra:
        text += '\n[service]\nimage = "nself-standin/http:3"\n'
        text += f'[service.environment]\nPORT = "${{{name.upper().replace("-", "_")}_PORT}}"\n'
    return text


def make_bundle(
    root: Path,
    name: str,
    version: str = "1.0.0",
    extra: str = "",
    files: dict[str, str] | None = None,
    service: bool = True,
) -> Path:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plugin.toml").write_text(manifest(name, version, extra, service))
    for rel, text in (files or {}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    return folder


def tar_with(path: Path, members: list[tarfile.TarInfo | tuple[str, bytes]]) -> Path:
    """A .tar.gz holding exactly ``members`` (TarInfo for special entries, (name, data) files)."""
    with tarfile.open(path, "w:gz") as tar:
        for item in members:
            if isinstance(item, tarfile.TarInfo):
                tar.addfile(item)
            else:
                name, data = item
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path


def entry(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


def good_manifest_member(prefix: str = "evil-1.0.0", name: str = "evil") -> tuple[str, bytes]:
    return (f"{prefix}/plugin.toml", manifest(name).encode())
