"""Safe extraction and reproducible packing of plugin bundle archives (``.tar.gz``).

Extraction refuses, before writing anything: absolute paths, ``..``, links that leave the
bundle, hard links, device files and FIFOs, and archives too large to be a bundle. The
archive is decompressed at most once and within bounds (size and ratio), so a gzip bomb
is refused after a megabyte of output, not after gigabytes.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from pathlib import Path, PurePosixPath

from nself_sdk import NselfError

from .files import bundle_files

MAX_MEMBERS = 2000
MAX_TOTAL_BYTES = 64 * 1024 * 1024
# The tar stream of a bundle at the limit: its files, a header (and a PAX header) per
# member, padding and the end blocks.
MAX_TAR_BYTES = MAX_TOTAL_BYTES + MAX_MEMBERS * 4 * 512 + 10240
# Text bundles compress 3-20:1; a stream that inflates more than this past its first MiB
# is a decompression bomb.
MAX_RATIO = 100
RATIO_FREE = 1 << 20
CHUNK = 1 << 16


class UnsafeArchive(NselfError):
    """An archive member that would write outside the target or is not a plain file."""


def _refuse(archive: Path, member: str, why: str) -> UnsafeArchive:
    return UnsafeArchive(
        f"{archive.name}: refusing to unpack {member!r}: {why}",
        "the archive is not a safe plugin bundle; nothing was installed",
    )


def _clean(name: str) -> PurePosixPath:
    return PurePosixPath(*[p for p in PurePosixPath(name).parts if p not in ("", ".")])


def check_members(archive: Path, members: list[tarfile.TarInfo]) -> None:
    """Raise ``UnsafeArchive`` for the first member that is not safe to extract."""
    if len(members) > MAX_MEMBERS:
        raise _refuse(archive, members[MAX_MEMBERS].name, f"more than {MAX_MEMBERS} entries")
    total = 0
    seen: set[PurePosixPath] = set()
    links: set[PurePosixPath] = set()
    for member in members:
        name = member.name
        if name.startswith("/") or (len(name) > 1 and name[1] == ":") or "\\" in name:
            raise _refuse(archive, name, "absolute path")
        path = _clean(name)
        if ".." in path.parts:
            raise _refuse(archive, name, "path leads outside the bundle ('..')")
        if path in seen and not member.isdir():
            raise _refuse(archive, name, "the archive holds this path twice")
        seen.add(path)
        if any(parent in links for parent in path.parents):
            raise _refuse(archive, name, "path goes through a symbolic link")
        if member.issym():
            link = member.linkname
            if link.startswith("/"):
                raise _refuse(archive, name, f"symbolic link to the absolute path {link}")
            resolved: list[str] = []
            for part in [*path.parent.parts, *PurePosixPath(link).parts]:
                if part in ("", "."):
                    continue
                if part == "..":
                    if not resolved:
                        raise _refuse(archive, name, f"symbolic link escapes the bundle ({link})")
                    resolved.pop()
                else:
                    resolved.append(part)
            links.add(path)
            continue
        if member.islnk():
            raise _refuse(archive, name, "hard links are not allowed")
        if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
            raise _refuse(archive, name, "device files and FIFOs are not allowed")
        if not (member.isfile() or member.isdir()):
            raise _refuse(archive, name, "not a regular file or folder")
        total += member.size
        if total > MAX_TOTAL_BYTES:
            raise _refuse(archive, name, f"bundle larger than {MAX_TOTAL_BYTES >> 20} MiB")


def tar_stream(archive: Path) -> bytes:
    """The tar stream of a ``.tar.gz`` (or plain ``.tar``), decompressed within bounds."""
    if archive.stat().st_size > MAX_TAR_BYTES:
        raise _refuse(archive, archive.name, f"archive larger than {MAX_TAR_BYTES >> 20} MiB")
    with archive.open("rb") as handle:
        if handle.read(2) != b"\x1f\x8b":
            handle.seek(0)
            return handle.read()
        handle.seek(0)
        return _gunzip(archive, handle)


def _gunzip(archive: Path, handle: io.BufferedReader) -> bytes:
    import zlib

    out = bytearray()
    read = 0
    inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while chunk := handle.read(CHUNK):
        read += len(chunk)
        data = chunk
        while data:
            out += inflate.decompress(data, CHUNK)
            if len(out) > MAX_TAR_BYTES:
                raise _refuse(
                    archive, archive.name, f"it unpacks to more than {MAX_TAR_BYTES >> 20} MiB"
                )
            if len(out) > RATIO_FREE and len(out) > MAX_RATIO * read:
                raise _refuse(
                    archive,
                    archive.name,
                    f"it inflates more than {MAX_RATIO}:1 (a decompression bomb)",
                )
            data = inflate.unconsumed_tail
            if inflate.eof:
                rest = inflate.unused_data
                if not rest.strip(b"\0"):
                    break
                inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)  # another gzip member
                data = rest
    if not inflate.eof:
        raise NselfError(
            f"{archive.name} is not a complete .tar.gz archive (it ends too early)",
            "download or pack it again",
        )
    return bytes(out)


def extract(archive: Path, target: Path) -> None:
    """Unpack ``archive`` into the empty folder ``target``, after checking every member."""
    try:
        stream = tar_stream(archive)
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
            members = tar.getmembers()
            check_members(archive, members)
            for member in members:
                path = _clean(member.name)
                if not path.parts:
                    continue
                dest = target.joinpath(*path.parts)
                if member.isdir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                if member.issym():
                    os.symlink(member.linkname, dest)
                    continue
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - regular files always have data
                    raise _refuse(archive, member.name, "unreadable entry")
                with dest.open("xb") as handle:
                    while chunk := source.read(1 << 16):
                        handle.write(chunk)
                dest.chmod(0o644)
    except (tarfile.TarError, EOFError, gzip.BadGzipFile, zlib_error()) as exc:
        raise NselfError(
            f"{archive.name} is not a readable .tar.gz archive ({exc})",
            "pack bundles with `nself plugin pack`",
        ) from None
    except FileExistsError as exc:
        raise _refuse(archive, str(exc.filename), "the archive holds this path twice") from None


def zlib_error() -> type[Exception]:
    import zlib

    return zlib.error


def pack(root: Path, output: Path, prefix: str) -> str:
    """Write a reproducible ``.tar.gz`` of ``root`` under ``prefix/``; returns its sha256.

    Reproducible: sorted entries, fixed timestamps, owners and modes, and a gzip header
    without a name or time, so packing the same files twice gives the same bytes.
    """
    buffer = io.BytesIO()
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0") or 0)
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs: set[str] = set()
        for path in bundle_files(root):
            rel = path.relative_to(root).as_posix()
            parts = rel.split("/")
            for depth in range(len(parts)):
                folder = "/".join([prefix, *parts[:depth]])
                if folder in dirs:
                    continue
                dirs.add(folder)
                info = tarfile.TarInfo(folder)
                info.type = tarfile.DIRTYPE
                info.mode = 0o755
                info.mtime = epoch
                tar.addfile(info)
            info = tarfile.TarInfo(f"{prefix}/{rel}")
            info.mtime = epoch
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if path.is_symlink():
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
                info.mode = 0o777
                tar.addfile(info)
                continue
            mode = path.stat().st_mode
            if not stat.S_ISREG(mode):
                raise NselfError(f"{path} is not a regular file", "remove it from the bundle")
            data = path.read_bytes()
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    raw = buffer.getvalue()
    compressed = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=compressed, mtime=0, compresslevel=9) as gz:
        gz.write(raw)
    data = compressed.getvalue()
    from nself_sdk import write_atomic

    write_atomic(output, data)
    return hashlib.sha256(data).hexdigest()
