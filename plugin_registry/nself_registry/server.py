"""The registry server and the ping_api, one Starlette app on uvicorn.

Routes::

    GET  /health                 liveness (used by the CS_1 health check)
    GET  /index.json             the signed index            (when serving a registry)
    GET  /artifacts/{file}       the archives the index offers; a licence-required one only
                                 with a licence covering it in X-Nself-License (else 401/403)
    POST /v1/license/check       ping_api: signed licence status (when a signing key is set)
    POST /v1/telemetry           ping_api: opt-in usage events

Run it with ``nself registry serve`` or, in a container (the CS_1 custom service), with
``python -m nself_registry.server``, configured by environment::

    PORT=8001  HOST=0.0.0.0
    NSELF_REGISTRY_DIR=/srv/registry        # folder with index.json + artifacts/ (optional)
    NSELF_REGISTRY_SERVE_TOKEN=...          # private registry: required bearer token
    PING_SIGNING_KEY_FILE=/run/secrets/ping.pem   # ping-role Ed25519 key (PEM), never a
                                                   # licence key; or
    PING_SIGNING_KEY=<base64 of that PEM>          # the same, inline (from .env.secrets)
    PING_REVOKED_FILE=/srv/ping/revoked.txt        # one revoked licence id per line, and/or
    PING_REVOKED=lic_0001,lic_0002                 # revoked licence ids, inline
    PING_TELEMETRY_FILE=/srv/ping/telemetry.jsonl  # where opt-in events go (optional)
"""

from __future__ import annotations

import hmac
import json
import os
import re
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nself_sdk import NselfError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

SAFE_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,200}$")
LICENSE_HEADER = "x-nself-license"
MAX_KEY = 4096  # a licence key is a few hundred bytes
TELEMETRY_FIELDS = {"event", "plugin", "version", "nself", "os"}
MAX_BODY = 16 * 1024


@dataclass
class Settings:
    root: Path | None = None
    token: str = ""
    ping_key: Ed25519PrivateKey | None = None
    revoked_file: Path | None = None
    revoked_ids: frozenset[str] = frozenset()
    telemetry_file: Path | None = None
    _revoked: tuple[float, frozenset[str]] = field(default=(-1.0, frozenset()))
    _offered: tuple[tuple[float, int], dict[str, Offered]] = field(default=((-1.0, -1), {}))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def offered(self) -> dict[str, Offered]:
        """The archives the published index offers, by file name (re-read when it changes).

        The operator's own index is read as written (the server does not need to trust it
        to know which archives are licence-required); an unreadable index offers nothing.
        """
        if self.root is None:
            return {}
        path = self.root / "index.json"
        try:
            info = path.stat()
        except FileNotFoundError:
            return {}
        stamp = (info.st_mtime, info.st_size)
        if stamp != self._offered[0]:
            self._offered = (stamp, _offered(path))
        return self._offered[1]

    def revoked(self) -> frozenset[str]:
        """Revoked licence ids: inline ones plus the file's, re-read whenever it changes."""
        if self.revoked_file is None:
            return self.revoked_ids
        try:
            mtime = self.revoked_file.stat().st_mtime
        except FileNotFoundError:
            return self.revoked_ids
        if mtime != self._revoked[0]:
            lines = self.revoked_file.read_text().splitlines()
            ids = frozenset(x.strip() for x in lines if x.strip() and not x.startswith("#"))
            self._revoked = (mtime, ids)
        return self.revoked_ids | self._revoked[1]


@dataclass(frozen=True)
class Offered:
    name: str
    version: str
    tier: str
    license_required: bool


def _offered(path: Path) -> dict[str, Offered]:
    try:
        artifacts = json.loads(path.read_text())["signed"]["artifacts"]
    except (OSError, ValueError, KeyError, TypeError):
        return {}
    found: dict[str, Offered] = {}
    for raw in artifacts if isinstance(artifacts, list) else ():
        if not isinstance(raw, dict) or not str(raw.get("url", "")).startswith("artifacts/"):
            continue
        found[str(raw["url"]).removeprefix("artifacts/")] = Offered(
            str(raw.get("name", "")),
            str(raw.get("version", "")),
            str(raw.get("tier", "free")),
            # anything but an explicit false is gated: a malformed entry never opens up
            raw.get("license_required") is not False,
        )
    return found


def create_app(settings: Settings) -> Starlette:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse, JSONResponse
    from starlette.routing import Route

    def authorised(request: Request) -> bool:
        if not settings.token:
            return True
        given = request.headers.get("authorization", "")
        return hmac.compare_digest(given.encode(), f"Bearer {settings.token}".encode())

    def refuse() -> Response:
        return JSONResponse(
            {"error": "this registry is private"},
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )

    async def health(request: Request) -> Response:
        return JSONResponse(
            {
                "status": "ok",
                "registry": settings.root is not None,
                "ping_api": settings.ping_key is not None,
            }
        )

    async def index(request: Request) -> Response:
        if settings.root is None:
            return JSONResponse({"error": "no registry is served here"}, status_code=404)
        if not authorised(request):
            return refuse()
        path = settings.root / "index.json"
        if not path.is_file():
            return JSONResponse({"error": "no index published yet"}, status_code=404)
        return FileResponse(
            path, media_type="application/json", headers={"Cache-Control": "no-cache"}
        )

    def licence_refusal(request: Request, offered: Offered) -> Response | None:
        from . import licensing

        what = f"{offered.name} {offered.version}"
        key = request.headers.get(LICENSE_HEADER, "").strip()
        if not key:
            return JSONResponse(
                {"error": f"{what} needs a {offered.tier} licence (send it in X-Nself-License)"},
                status_code=401,
                headers={"WWW-Authenticate": 'NselfLicense realm="nself"'},
            )
        why = (
            "the licence key is too long"
            if len(key) > MAX_KEY
            else licensing.server_refusal(
                key, offered.name, offered.tier, settings.revoked(), time.time()
            )
        )
        if why is None:
            return None
        return JSONResponse({"error": f"{what}: {why}"}, status_code=403)

    async def artifact(request: Request) -> Response:
        if settings.root is None:
            return JSONResponse({"error": "no registry is served here"}, status_code=404)
        if not authorised(request):
            return refuse()
        name = str(request.path_params["file"])
        path = settings.root / "artifacts" / name
        offered = settings.offered().get(name)
        if not SAFE_FILE.match(name) or offered is None or not path.is_file():
            return JSONResponse({"error": "no such artifact"}, status_code=404)
        if offered.license_required:
            refusal = licence_refusal(request, offered)
            if refusal is not None:
                return refusal
        private = {"Cache-Control": "private, no-store"} if offered.license_required else None
        return FileResponse(path, media_type="application/octet-stream", headers=private)

    async def license_check(request: Request) -> Response:
        from . import licensing

        if settings.ping_key is None:
            return JSONResponse({"error": "licence checks are not configured"}, status_code=503)
        body = await _json(request)
        if (
            body is None
            or not isinstance(body.get("key"), str)
            or not isinstance(body.get("nonce"), str)
        ):
            return JSONResponse({"error": "expected {key, nonce}"}, status_code=400)
        if len(body["key"]) > MAX_KEY:
            return JSONResponse({"error": "the licence key is too long"}, status_code=422)
        try:
            lic = licensing.parse(body["key"])
        except licensing.LicenceError as exc:
            return JSONResponse({"error": exc.message}, status_code=422)
        now = time.time()
        signed = {
            "type": "nself-ping-answer",
            "lid": lic.lid,
            "status": licensing.server_status(lic, settings.revoked(), now),
            "time": int(now),
            "nonce": body["nonce"][:64],
        }
        return JSONResponse(licensing.sign_answer(settings.ping_key, signed))

    async def telemetry(request: Request) -> Response:
        body = await _json(request)
        if body is None:
            return JSONResponse({"error": "expected a JSON object"}, status_code=400)
        event = {k: str(v)[:100] for k, v in body.items() if k in TELEMETRY_FIELDS}
        event["at"] = str(int(time.time()))
        if settings.telemetry_file is not None:
            with settings._lock, settings.telemetry_file.open("a") as out:
                out.write(json.dumps(event, sort_keys=True) + "\n")
        return JSONResponse({"accepted": True}, status_code=202)

    return Starlette(
        routes=[
            Route("/health", health),
            Route("/index.json", index),
            Route("/artifacts/{file}", artifact),
            Route("/v1/license/check", license_check, methods=["POST"]),
            Route("/v1/telemetry", telemetry, methods=["POST"]),
        ]
    )


async def _json(request: Request) -> dict[str, Any] | None:
    raw = await request.body()
    if len(raw) > MAX_BODY:
        return None
    from . import keys

    try:
        data = keys.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def settings_from_env(env: dict[str, str] | None = None) -> Settings:
    from . import keys

    env = dict(os.environ if env is None else env)
    root = env.get("NSELF_REGISTRY_DIR")
    key_file = env.get("PING_SIGNING_KEY_FILE")
    revoked = env.get("PING_REVOKED_FILE")
    telemetry = env.get("PING_TELEMETRY_FILE")
    ping_key = keys.load_private(Path(key_file)) if key_file else None
    if env.get("PING_SIGNING_KEY"):
        try:
            pem = keys.unb64(env["PING_SIGNING_KEY"].strip())
        except ValueError:
            raise NselfError("PING_SIGNING_KEY is not base64 (of a PEM key)") from None
        ping_key = keys.private_from_pem(pem, "PING_SIGNING_KEY")
    if ping_key is not None:
        ping_key_role(ping_key)
    inline = {x.strip() for x in env.get("PING_REVOKED", "").split(",") if x.strip()}
    return Settings(
        root=Path(root) if root else None,
        token=env.get("NSELF_REGISTRY_SERVE_TOKEN", ""),
        ping_key=ping_key,
        revoked_file=Path(revoked) if revoked else None,
        revoked_ids=frozenset(inline),
        telemetry_file=Path(telemetry) if telemetry else None,
    )


def ping_key_role(key: Ed25519PrivateKey) -> None:
    """Refuse a licence key as the ping_api's key: a server holding it could mint licences."""
    from . import keys

    kid = keys.key_id(key.public_key())
    if kid in keys.trusted("license"):
        raise NselfError(
            f"the ping_api's signing key {kid} is a licence key: a running server must never "
            "hold the key that mints licences",
            "create a ping key (`nself registry keygen --role ping`) for the ping_api",
        )


def run(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", access_log=True)


class Background:
    """A uvicorn server on a free loopback port in a thread (tests and the SDK helper)."""

    def __init__(self, app: Any, host: str = "127.0.0.1") -> None:
        import uvicorn

        config = uvicorn.Config(app, host=host, port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = ""

    def __enter__(self) -> Background:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("the server did not start")
            time.sleep(0.01)
        host, port = self.server.servers[0].sockets[0].getsockname()[:2]
        self.url = f"http://{host}:{port}"
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def main() -> None:
    """Container entry point: everything from the environment."""
    import sys

    try:
        settings = settings_from_env()
    except NselfError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        sys.exit(1)
    run(settings, host=os.environ.get("HOST", "0.0.0.0"), port=int(os.environ.get("PORT", "8001")))


if __name__ == "__main__":
    main()
