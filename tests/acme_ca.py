"""ACME servers for the tests: Debian's real ``pebble`` (Let's Encrypt's test CA) with
``pebble-challtestsrv`` as its DNS (every name answers 127.0.0.1, where the stack's
nginx publishes port 80; TXT records for DNS-01 set through its management API), and a
minimal stand-in CA that only answers new orders with a rate limit, because pebble has
no rate limits to hit.

Both speak HTTPS with a certificate of a throw-away CA of the test's own: the renewer
trusts it only through ``ACME_CA_BUNDLE``. They listen on the Docker bridge's gateway
address, which the stack's containers reach.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import shutil
import ssl
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from docker_helpers import free_port


def gateway() -> str:
    """The host's address on Docker's default bridge (reachable from containers)."""
    out = subprocess.run(
        ["docker", "network", "inspect", "bridge", "-f", "{{(index .IPAM.Config 0).Gateway}}"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return out or "172.17.0.1"


def make_ca(folder: Path, host: str) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for ``host`` (an IP): (ca.pem, server.pem, server.key)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)

    def build(subject: str, key: Any, issuer: Any, issuer_key: Any, ca: bool) -> Any:
        builder = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if not ca:
            names = [x509.IPAddress(ipaddress.ip_address(h)) for h in (host, "127.0.0.1")]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(issuer_key, hashes.SHA256())

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "nself test ACME server CA")])
    ca = build("nself test ACME server CA", ca_key, ca_name, ca_key, True)
    key = ec.generate_private_key(ec.SECP256R1())
    server = build("acme server", key, ca_name, ca_key, False)
    pem = serialization.Encoding.PEM
    paths = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    paths[0].write_bytes(ca.public_bytes(pem))
    paths[1].write_bytes(server.public_bytes(pem))
    paths[2].write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


class Pebble:
    """A running pebble and challtestsrv; ``http_port`` is where it validates HTTP-01."""

    def __init__(self, folder: Path, http_port: int) -> None:
        self.folder = folder
        self.host = gateway()
        self.http_port = http_port
        self.ca, cert, key = make_ca(folder, self.host)
        self.port, self.admin = free_port(), free_port()
        self.dns, self.dns_admin = free_port(), free_port()
        config = {
            "pebble": {
                "listenAddress": f"{self.host}:{self.port}",
                "managementListenAddress": f"127.0.0.1:{self.admin}",
                "certificate": str(cert),
                "privateKey": str(key),
                "httpPort": http_port,
                "tlsPort": free_port(),
                "ocspResponderURL": "",
                "externalAccountBindingRequired": False,
                # 45 days: not due with ACME_RENEW_DAYS=30, due with 50.
                "certificateValidityPeriod": 45 * 86400,
            }
        }
        (folder / "pebble.json").write_text(json.dumps(config))
        env = {
            "PATH": "/usr/bin:/bin",
            "PEBBLE_VA_NOSLEEP": "1",  # validate at once
            "PEBBLE_WFE_NONCEREJECT": "0",  # no random badNonce (acme retries only once)
            "PEBBLE_AUTHZREUSE": "0",  # every order validates (a failure must fail)
        }
        self.dns_log = open(folder / "challtestsrv.log", "wb")  # noqa: SIM115
        self.dns_proc = subprocess.Popen(
            ["pebble-challtestsrv", "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
             "-dns01", f"127.0.0.1:{self.dns}", "-http01", "", "-https01", "",
             "-tlsalpn01", "", "-management", f"{self.host}:{self.dns_admin}"],
            stdout=self.dns_log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.log_path = folder / "pebble.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(
            ["pebble", "-config", str(folder / "pebble.json"), "-dnsserver",
             f"127.0.0.1:{self.dns}"],
            stdout=self.log, stderr=subprocess.STDOUT, env=env,
        )  # fmt: skip
        self.context = ssl.create_default_context(cafile=str(self.ca))
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.directory, context=self.context, timeout=2).read()
                break
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(self.log_path.read_text()) from None
                time.sleep(0.2)

    @property
    def directory(self) -> str:
        return f"https://{self.host}:{self.port}/dir"

    @property
    def dns_management(self) -> str:
        return f"http://{self.host}:{self.dns_admin}"

    def _dns(self, path: str, body: dict[str, Any]) -> None:
        request = urllib.request.Request(
            self.dns_management + path, data=json.dumps(body).encode(), method="POST"
        )
        urllib.request.urlopen(request, timeout=10).read()

    def point(self, host: str, address: str) -> None:
        """Make ``host`` resolve to ``address`` for pebble's validation."""
        self._dns("/add-a", {"host": host, "addresses": [address]})

    def unpoint(self, host: str) -> None:
        self._dns("/clear-a", {"host": host})

    def revoked(self, serial: str) -> bool:
        url = f"https://127.0.0.1:{self.admin}/cert-status-by-serial/{serial}"
        with urllib.request.urlopen(url, context=self.context, timeout=10) as answer:
            return bool(json.loads(answer.read())["Status"] == "Revoked")

    def roots(self) -> str:
        """Pebble's issuing root (it makes a new one at each start), PEM."""
        url = f"https://127.0.0.1:{self.admin}/roots/0"
        with urllib.request.urlopen(url, context=self.context, timeout=10) as answer:
            return str(answer.read().decode())

    def orders(self) -> int:
        """New orders pebble has received so far (its log names each request)."""
        return self.log_path.read_text(errors="replace").count("POST /order-plz")

    def close(self) -> None:
        for proc in (self.proc, self.dns_proc):
            proc.terminate()
            proc.wait(timeout=10)
        self.log.close()
        self.dns_log.close()


@pytest.fixture(scope="module")
def pebble_bin() -> None:
    if not (shutil.which("pebble") and shutil.which("pebble-challtestsrv")):
        pytest.fail("pebble is not installed (Debian: apt-get install pebble; scripts/test does)")


class RateLimitedCA:
    """A stand-in ACME server whose new orders are always refused with RFC 8555's
    ``rateLimited`` problem and a Retry-After, as Let's Encrypt refuses them past a
    limit. Pebble has none; this answers only what a client needs to reach newOrder
    (directory, nonces, account) and does not check signatures."""

    def __init__(self, folder: Path, retry_after: int) -> None:
        self.host = gateway()
        self.ca, cert, key = make_ca(folder, self.host)
        self.requests: list[str] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self, code: int, body: dict[str, Any] | None, **headers: str) -> None:
                data = json.dumps(body).encode() if body is not None else b""
                self.send_response(code)
                self.send_header("Replay-Nonce", f"nonce{time.monotonic_ns()}")
                for name, value in headers.items():
                    self.send_header(name.replace("_", "-"), value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_HEAD(self) -> None:
                self._answer(200, None)

            def do_GET(self) -> None:
                outer.requests.append(f"GET {self.path}")
                base = f"https://{outer.host}:{outer.port}"
                self._answer(
                    200,
                    {"newNonce": f"{base}/nonce", "newAccount": f"{base}/account",
                     "newOrder": f"{base}/order", "revokeCert": f"{base}/revoke",
                     "keyChange": f"{base}/key"},
                    Content_Type="application/json",
                )  # fmt: skip

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", "0")))
                outer.requests.append(f"POST {self.path}")
                base = f"https://{outer.host}:{outer.port}"
                if self.path == "/account":
                    self._answer(
                        201,
                        {"status": "valid", "contact": []},
                        Location=f"{base}/acct/1",
                        Content_Type="application/json",
                    )
                    return
                self._answer(
                    429,
                    {
                        "type": "urn:ietf:params:acme:error:rateLimited",
                        "detail": "too many certificates already issued for this domain",
                        "status": 429,
                    },
                    Content_Type="application/problem+json",
                    Retry_After=str(retry_after),
                )

            def log_message(self, *args: Any) -> None:
                pass

        self.port = free_port()
        self.server = http.server.ThreadingHTTPServer((self.host, self.port), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def directory(self) -> str:
        return f"https://{self.host}:{self.port}/dir"

    def orders(self) -> int:
        return sum(1 for r in self.requests if r == "POST /order")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def pebble_at(folder: Path, http_port: int) -> Iterator[Pebble]:
    server = Pebble(folder, http_port)
    try:
        yield server
    finally:
        server.close()
