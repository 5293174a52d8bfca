"""The registry client: a trusted, fresh index and verified archives, nothing less.

``fetch(project, name, version)`` returns the path of a downloaded archive only after:
the index signature verifies with a trusted registry key; the index is not expired, not
valid for more than 90 days ahead, and not older than (nor a different document with the
same version as) the last index this machine accepted from that registry, nor offering
other bytes for a version it accepted before (``seen``); the plugin exists and supports
this nself; its publisher signature verifies; its licence allows the install; and the
archive's size and SHA-256 match the index. Nothing is unpacked here.

Registry URL: ``$NSELF_REGISTRY_URL``, else the project's ``NSELF_REGISTRY_URL`` setting,
else the public registry. A private registry may require ``$NSELF_REGISTRY_TOKEN``, its
signing key in ``NSELF_REGISTRY_KEYS`` and its publishers' keys in
``NSELF_PUBLISHER_KEYS``. A licence-required archive is requested with the licence key in
the ``X-Nself-License`` header: the registry server hands it out only when it covers it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit

from nself_sdk import NselfError, UsageError, nself_version, write_atomic

from . import index as idx
from . import keys, licensing, paths, seen

URL_VAR = "NSELF_REGISTRY_URL"
TOKEN_VAR = "NSELF_REGISTRY_TOKEN"
TIMEOUT_VAR = "NSELF_HTTP_TIMEOUT"
TELEMETRY_VAR = "NSELF_TELEMETRY"
DEFAULT_URL = "https://plugins.nself.org/"
CHUNK = 1 << 16
LICENSE_HEADER = "X-Nself-License"
CLOCK_SLACK = timedelta(minutes=10)
MAX_INDEX = 32 << 20  # bytes: far above any real index, far below what hurts a machine


class Unreachable(Exception):
    """The registry gave no usable answer (network, timeout, HTTP error)."""


@dataclass(frozen=True)
class Source:
    """Where plugins come from, as configured for one project."""

    url: str
    extra_keys: str  # registry keys (NSELF_REGISTRY_KEYS setting)
    ping_url: str
    publisher_keys: str = ""  # NSELF_PUBLISHER_KEYS setting

    @property
    def index_url(self) -> str:
        return urljoin(self.url, "index.json")

    @property
    def cache(self) -> Path:
        """The last index fetched from this URL (for offline use; trust lives in ``seen``)."""
        digest = hashlib.sha256(self.url.encode()).hexdigest()[:16]
        return paths.cache() / "registry" / digest


def timeout() -> float:
    try:
        return float(os.environ.get(TIMEOUT_VAR, "10"))
    except ValueError:
        raise UsageError(f"{TIMEOUT_VAR} must be a number of seconds") from None


def source(project: Path | None) -> Source:
    """The registry, extra keys and licence server for ``project`` (env wins over settings)."""
    settings: dict[str, str] = {}
    if project is not None:
        from nself_sdk import load_config

        config = load_config(project)
        for name in (URL_VAR, keys.REGISTRY_KEYS_VAR, keys.PUBLISHER_KEYS_VAR, licensing.PING_VAR):
            settings[name] = config.text(name)
    url = os.environ.get(URL_VAR) or settings.get(URL_VAR) or DEFAULT_URL
    if urlsplit(url).scheme not in {"http", "https"}:
        raise UsageError(f"registry URL {url!r} must start with https:// or http://")
    if not url.endswith("/"):
        url += "/"
    return Source(
        url=url,
        extra_keys=settings.get(keys.REGISTRY_KEYS_VAR, ""),
        ping_url=licensing.ping_url(settings.get(licensing.PING_VAR) or None),
        publisher_keys=settings.get(keys.PUBLISHER_KEYS_VAR, ""),
    )


def notice(message: str) -> None:
    print(f"notice: {message}", file=sys.stderr)


def _headers() -> dict[str, str]:
    token = os.environ.get(TOKEN_VAR, "")
    return {"Authorization": f"Bearer {token}"} if token else {}


def _get(url: str, limit: int = MAX_INDEX) -> bytes:
    """The body at ``url``, cut off (and refused) as soon as it exceeds ``limit`` bytes."""
    import httpx

    body = bytearray()
    try:
        with httpx.stream(
            "GET", url, headers=_headers(), timeout=timeout(), follow_redirects=True
        ) as response:
            if response.status_code in (401, 403):
                raise NselfError(
                    f"registry {url} refused access (HTTP {response.status_code})",
                    f"set {TOKEN_VAR} for a private registry",
                )
            if response.status_code != 200:
                raise Unreachable(f"HTTP {response.status_code}")
            for chunk in response.iter_bytes(CHUNK):
                body += chunk
                if len(body) > limit:
                    raise idx.IndexError_(
                        f"registry {url} is larger than {limit >> 20} MiB: refused", idx.HINT
                    )
    except httpx.TimeoutException:
        raise Unreachable(f"no answer within {timeout():g}s") from None
    except httpx.HTTPError as exc:
        raise Unreachable(f"{type(exc).__name__}") from None
    return bytes(body)


# -- the index -------------------------------------------------------------------------------


def _verify(src: Source, doc: Any) -> idx.Index:
    """A trusted, fresh index that agrees with everything this machine accepted before."""
    found = idx.verify_document(doc, src.extra_keys, src.publisher_keys)
    now = idx.now()
    if now >= found.expires:
        raise idx.IndexError_(
            f"registry index (version {found.version}) expired on {idx.stamp(found.expires)}",
            "the registry must publish a fresh index; tell its operator",
        )
    if found.expires > now + idx.MAX_VALIDITY + CLOCK_SLACK:
        raise idx.IndexError_(
            f"registry index (version {found.version}) claims to be valid until "
            f"{idx.stamp(found.expires)}, more than {idx.MAX_VALIDITY.days} days ahead",
            "check the system clock; if it is right, tell the registry operator (an index valid "
            "for that long could be replayed for months)",
        )
    seen.check(found, seen.digest(doc), seen.recall(found.signed_by))
    return found


def load_index(src: Source, offline_ok: bool = True) -> idx.Index:
    """The registry's verified, fresh index, from the network or, failing that, the cache."""
    try:
        raw = _get(src.index_url)
    except Unreachable as exc:
        cached = src.cache / "index.json"
        if not offline_ok or not cached.is_file():
            raise NselfError(
                f"registry {src.url} is unreachable ({exc}) and nothing is cached",
                f"check the network or {URL_VAR}",
            ) from None
        try:
            doc = keys.loads(cached.read_text())
        except (OSError, ValueError):
            raise NselfError(
                f"registry {src.url} is unreachable ({exc}) and its cached index is unreadable",
                f"check the network or {URL_VAR}",
            ) from None
        found = _verify(src, doc)
        fetched = seen.recall(found.signed_by).fetched or "?"
        notice(
            f"registry {src.url} is unreachable ({exc}); working offline from the cached "
            f"index (version {found.version}, fetched {fetched})"
        )
        return found
    try:
        doc = keys.loads(raw)
    except ValueError:
        raise idx.IndexError_(
            f"registry {src.url} served an index that is not JSON", idx.HINT
        ) from None
    found = _verify(src, doc)
    seen.remember(found, seen.digest(doc))
    paths.private_dir(src.cache)
    write_atomic(src.cache / "index.json", raw)
    return found


# -- choosing an artifact ----------------------------------------------------------------------


def split_spec(spec: str) -> tuple[str, str | None]:
    """``name`` or ``name@version``."""
    name, _, version = spec.partition("@")
    return name, (version or None)


def choose(found: idx.Index, name: str, version: str | None) -> idx.Artifact:
    versions = found.versions(name)
    if not versions:
        raise NselfError(
            f"no plugin named {name!r} in the registry", "see `nself plugin search` for what exists"
        )
    if version is None:
        return versions[-1]
    for artifact in versions:
        if artifact.version == version:
            return artifact
    listed = ", ".join(a.version for a in versions)
    raise NselfError(f"plugin {name} has no version {version}", f"available: {listed}")


def incompatibility(artifact: idx.Artifact, current: str = nself_version) -> str | None:
    """Why ``artifact`` cannot run on nself ``current``, or None."""
    import semver

    have = semver.Version.parse(current)
    if have < semver.Version.parse(artifact.min_nself):
        return f"needs nself >= {artifact.min_nself}"
    from nself_builtins.shared.manifest import version_matches

    try:
        fits = version_matches(artifact.requires_nself, current)
    except ValueError:
        return f"has a bad nself requirement {artifact.requires_nself!r}"
    return None if fits else f"needs nself {artifact.requires_nself}"


def check_compatible(artifact: idx.Artifact, current: str = nself_version) -> None:
    why = incompatibility(artifact, current)
    if why:
        raise NselfError(
            f"{artifact.name} {artifact.version} {why} (this is nself {current})",
            "upgrade nself, or install an older version with NAME@VERSION",
        )


def newest_compatible(found: idx.Index, name: str) -> idx.Artifact | None:
    """The highest version of ``name`` this nself can run."""
    usable = [a for a in found.versions(name) if incompatibility(a) is None]
    return usable[-1] if usable else None


def is_newer(candidate: str, installed: str) -> bool:
    import semver

    try:
        return bool(semver.Version.parse(candidate) > semver.Version.parse(installed))
    except ValueError:
        return candidate != installed


# -- downloading -------------------------------------------------------------------------------


def _verify_file(path: Path, artifact: idx.Artifact) -> str | None:
    """None when ``path`` is the artifact, else what is wrong."""
    size = path.stat().st_size
    if size != artifact.size:
        return f"size {size} instead of {artifact.size}"
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            digest.update(chunk)
    if digest.hexdigest() != artifact.sha256:
        return "sha256 mismatch"
    return None


def _filename(artifact: idx.Artifact) -> str:
    base = Path(urlsplit(artifact.url).path).name
    ok = base and all(c.isalnum() or c in "._-" for c in base) and not base.startswith(".")
    return base if ok else f"{artifact.name}-{artifact.version}.tar.gz"


def _same_origin(url: str, base: str) -> bool:
    a, b = urlsplit(url), urlsplit(base)
    return (a.scheme, a.netloc.lower()) == (b.scheme, b.netloc.lower())


def _download_headers(src: Source, artifact: idx.Artifact, url: str) -> dict[str, str]:
    """The registry token, and for a licence-required archive the licence key, sent only
    to the registry's own origin (an index may name absolute URLs elsewhere)."""
    if not _same_origin(url, src.url):
        return {}
    headers = _headers()
    if artifact.license_required:
        key = licensing.load_key()
        if key and not _private_channel(url):
            raise NselfError(
                f"registry {src.url} is plain http: nself does not send a licence key over it",
                "serve a registry with pro plugins over https://",
            )
        if key:
            headers[LICENSE_HEADER] = key
    return headers


def _private_channel(url: str) -> bool:
    """https, or plain http to this machine itself."""
    import ipaddress

    parts = urlsplit(url)
    if parts.scheme == "https":
        return True
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _refusal(response: Any) -> str:
    """The server's one-line reason from a JSON error body, printable and short."""
    try:
        reason = str(keys.loads(response.read()).get("error", ""))
    except (ValueError, AttributeError):
        reason = ""
    reason = "".join(c for c in reason if c.isprintable())[:200]
    return f"HTTP {response.status_code}" + (f": {reason}" if reason else "")


def download(src: Source, artifact: idx.Artifact) -> Path:
    """The verified archive, from the cache or the registry."""
    import httpx

    idx.verify_publisher(artifact, src.extra_keys, src.publisher_keys)
    seen.check_download(artifact)
    folder = paths.private_dir(paths.cache() / "artifacts" / artifact.sha256)
    target = folder / _filename(artifact)
    if target.is_file() and _verify_file(target, artifact) is None:
        seen.remember_download(artifact)
        return target
    url = urljoin(src.index_url, artifact.url)
    headers = _download_headers(src, artifact, url)
    fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=".download.")
    tmp = Path(tmp_name)
    what = f"{artifact.name} {artifact.version}"
    try:
        with os.fdopen(fd, "wb") as out:
            try:
                with httpx.stream(
                    "GET",
                    url,
                    headers=headers,
                    timeout=timeout(),
                    # a licence key is never carried along a redirect to another server
                    follow_redirects=LICENSE_HEADER not in headers,
                ) as response:
                    if response.status_code in (401, 403) and artifact.license_required:
                        raise NselfError(
                            f"the registry refused to hand out {what} ({_refusal(response)})",
                            "it needs a licence that covers it: `nself license set KEY`",
                        )
                    if response.status_code != 200:
                        raise NselfError(
                            f"download of {what} failed ({_refusal(response)})",
                            "retry later, or tell the registry operator",
                        )
                    received = 0
                    for chunk in response.iter_bytes(CHUNK):
                        received += len(chunk)
                        if received > artifact.size:
                            raise NselfError(
                                f"download of {what} is larger than the {artifact.size} bytes "
                                "the index promises: refused",
                                idx.HINT,
                            )
                        out.write(chunk)
            except httpx.HTTPError as exc:
                raise NselfError(
                    f"download of {what} failed ({type(exc).__name__})",
                    "check the network and retry",
                ) from None
        problem = _verify_file(tmp, artifact)
        if problem:
            raise NselfError(
                f"download of {what} does not match the signed index ({problem}): refused, "
                "nothing installed",
                idx.HINT,
            )
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    seen.remember_download(artifact)
    return target


# -- what the `plugin` commands call -----------------------------------------------------------


def resolve(
    project: Path | None, name: str, version: str | None = None
) -> tuple[Source, idx.Artifact]:
    """The artifact ``name[@version]`` would install, checked for compatibility."""
    src = source(project)
    found = load_index(src)
    artifact = choose(found, name, version)
    check_compatible(artifact)
    idx.verify_publisher(artifact, src.extra_keys, src.publisher_keys)
    seen.check_download(artifact)
    return src, artifact


def authorise(src: Source, artifact: idx.Artifact) -> None:
    """Refuse a licensed artifact unless the licence allows it (asks the ping_api)."""
    if not artifact.license_required:
        return
    verdict = licensing.check(
        artifact.name,
        artifact.tier,
        "install",
        src.ping_url,
        timeout=min(timeout(), 5.0),
        reuse_recent=False,
    )
    for message in verdict.warnings:
        print(f"warning: {message}", file=sys.stderr)
    licensing.confirmed_for_install(verdict, artifact.name)


def fetch(project: Path | None, name: str, version: str | None = None) -> Path:
    """Download ``name`` (latest, or ``version``) from the registry; return the archive.

    Every check in this module's docstring has passed when this returns; any failure is an
    ``NselfError`` with one clear line and nothing written outside the cache.
    """
    src, artifact = resolve(project, name, version)
    authorise(src, artifact)
    path = download(src, artifact)
    telemetry(src, "install", artifact)
    return path


def search(project: Path | None, term: str = "") -> list[idx.Artifact]:
    """The latest version of each plugin whose name or description contains ``term``."""
    found = load_index(source(project))
    term = term.lower()
    hits = []
    for name in found.names():
        latest = found.latest(name)
        if latest and (term in name or term in latest.description.lower()):
            hits.append(latest)
    return hits


def telemetry(src: Source, event: str, artifact: idx.Artifact) -> None:
    """Opt-in (``NSELF_TELEMETRY=1``): tell the ping_api what was installed. Never fails."""
    if os.environ.get(TELEMETRY_VAR, "").lower() not in {"1", "true", "yes", "on"}:
        return
    import httpx

    with contextlib.suppress(httpx.HTTPError):
        httpx.post(
            f"{src.ping_url}/v1/telemetry",
            json={
                "event": event,
                "plugin": artifact.name,
                "version": artifact.version,
                "nself": nself_version,
            },
            timeout=2.0,
        )


def clear_cache() -> None:
    shutil.rmtree(paths.cache() / "registry", ignore_errors=True)
    shutil.rmtree(paths.cache() / "artifacts", ignore_errors=True)
