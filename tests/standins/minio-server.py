#!/usr/bin/env python3
"""Stand-in for the MinIO server (minio/minio RELEASE.2025-04-22T22-12-26Z): the S3 API as
clients meet it through nginx, with its signature checks.

What it imitates, and where each fact comes from:
- `minio server DIR --address :PORT --console-address :PORT` (the image's CMD is `minio`,
  dockerscripts/docker-entrypoint.sh puts `minio` in front of any other command).
- MINIO_ROOT_USER / MINIO_ROOT_PASSWORD, minioadmin:minioadmin when neither is set; a user
  shorter than 3 or a password shorter than 8 characters is refused at start (MinIO's
  root-credentials documentation; internal/auth/credentials.go: accessKeyMinLen 3,
  secretKeyMinLen 8). MINIO_REGION (MINIO_SITE_REGION) names the region, us-east-1 by
  default.
- GET /minio/health/live and /minio/health/ready answer 200 without credentials
  (cmd/healthcheck-router.go).
- Every S3 request is authenticated with AWS Signature Version 4, in the Authorization
  header or in a presigned URL's query (cmd/signature-v4.go): the canonical request holds
  the signed headers as received, `host` with its port when the client's URL had one, so
  a proxy that changes the Host header breaks every signature ("SignatureDoesNotMatch",
  403). An unknown access key is InvalidAccessKeyId, an expired presigned URL
  AccessDenied "Request has expired"; a payload hash that does not match the body is
  XAmzContentSHA256Mismatch (400).
- Buckets and objects as folders and files under the data directory; PUT creates a bucket
  or stores an object, GET and HEAD read one.
Not imitated: multipart uploads, aws-chunked (streaming) bodies, policies, listings, the
console (port 9001 answers a placeholder page), erasure coding, TLS.
"""

import datetime
import hashlib
import hmac
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, quote, urlsplit

USER = os.environ.get("MINIO_ROOT_USER", "")
PASSWORD = os.environ.get("MINIO_ROOT_PASSWORD", "")
REGION = os.environ.get("MINIO_SITE_REGION") or os.environ.get("MINIO_REGION") or "us-east-1"
ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED = "UNSIGNED-PAYLOAD"


def fail(message):
    print(f"FATAL {message}", file=sys.stderr, flush=True)
    sys.exit(1)


def arguments(argv):
    if not argv or argv[0] != "server":
        fail("usage: minio server DIR [--address :9000] [--console-address :9001]")
    folders, address, console = [], ":9000", ""
    rest = iter(argv[1:])
    for arg in rest:
        if arg == "--address":
            address = next(rest, "")
        elif arg == "--console-address":
            console = next(rest, "")
        elif arg.startswith("-"):
            fail(f"unknown flag {arg}")
        else:
            folders.append(arg)
    if len(folders) != 1:
        fail("the stand-in serves exactly one folder")
    return Path(folders[0]), int(address.rsplit(":", 1)[1]), console


def error(code, message, status):
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message></Error>"
    ).encode()
    return status, body


def uri_encode(text):
    return quote(text, safe="-_.~")


def signing_key(secret, day, region):
    key = ("AWS4" + secret).encode()
    for part in (day, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class S3(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    data: Path

    def log_message(self, fmt, *args):
        print("s3: " + fmt % args, file=sys.stderr, flush=True)

    def answer(self, status, body=b"", kind="application/xml"):
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def body(self):
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def authenticate(self, payload):
        """None when the request is signed by the root credentials, else the refusal."""
        split = urlsplit(self.path)
        query = parse_qsl(split.query, keep_blank_values=True)
        params = dict(query)
        if "X-Amz-Signature" in params:
            if params.get("X-Amz-Algorithm") != ALGORITHM:
                return error("AuthorizationQueryParametersError", "bad algorithm", 400)
            credential = params.get("X-Amz-Credential", "")
            signed = params.get("X-Amz-SignedHeaders", "")
            given = params["X-Amz-Signature"]
            stamp = params.get("X-Amz-Date", "")
            content = UNSIGNED
            query = [(k, v) for k, v in query if k != "X-Amz-Signature"]
            try:
                when = datetime.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ")
                expires = int(params.get("X-Amz-Expires", "0"))
            except ValueError:
                return error("AuthorizationQueryParametersError", "bad date", 400)
            now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
            if now > when + datetime.timedelta(seconds=expires):
                return error("AccessDenied", "Request has expired", 403)
        else:
            header = self.headers.get("Authorization", "")
            if not header.startswith(ALGORITHM + " "):
                return error("AccessDenied", "Access Denied.", 403)
            fields = dict(
                part.strip().split("=", 1) for part in header[len(ALGORITHM) :].split(",")
            )
            credential = fields.get("Credential", "")
            signed = fields.get("SignedHeaders", "")
            given = fields.get("Signature", "")
            stamp = self.headers.get("X-Amz-Date", "")
            content = self.headers.get("X-Amz-Content-Sha256", "")
            if content.startswith("STREAMING-"):
                return error("NotImplemented", "aws-chunked bodies are not imitated", 501)
            if content != UNSIGNED and content != hashlib.sha256(payload).hexdigest():
                return error(
                    "XAmzContentSHA256Mismatch",
                    "The provided 'x-amz-content-sha256' header does not match what was computed.",
                    400,
                )
        parts = credential.split("/")
        if len(parts) != 5 or parts[0] != USER:
            return error(
                "InvalidAccessKeyId",
                "The Access Key Id you provided does not exist in our records.",
                403,
            )
        _key, day, region, _service, _end = parts
        names = signed.split(";") if signed else []
        headers = []
        for name in names:
            value = self.headers.get(name, "")
            headers.append(f"{name}:{' '.join(value.split())}\n")
        canonical_query = "&".join(f"{uri_encode(k)}={uri_encode(v)}" for k, v in sorted(query))
        canonical = "\n".join(
            [
                self.command,
                split.path or "/",
                canonical_query,
                "".join(headers),
                signed,
                content,
            ]
        )
        scope = f"{day}/{region}/s3/aws4_request"
        to_sign = "\n".join(
            [ALGORITHM, stamp, scope, hashlib.sha256(canonical.encode()).hexdigest()]
        )
        wanted = hmac.new(
            signing_key(PASSWORD, day, region), to_sign.encode(), hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(wanted, given):
            return error(
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you "
                "provided. Check your key and signing method.",
                403,
            )
        return None

    def target(self):
        path = [p for p in urlsplit(self.path).path.split("/") if p]
        if not path or any(p in (".", "..") for p in path):
            return None, None
        bucket = self.data / path[0]
        return bucket, (bucket / "/".join(path[1:]) if len(path) > 1 else None)

    def health(self):
        if urlsplit(self.path).path in ("/minio/health/live", "/minio/health/ready"):
            self.answer(200, kind="text/plain")
            return True
        return False

    def handle_s3(self, write):
        payload = self.body() if write else b""
        refused = self.authenticate(payload)
        if refused:
            self.answer(*refused)
            return
        bucket, key = self.target()
        if bucket is None:
            self.answer(*error("NotImplemented", "listing buckets is not imitated", 501))
        elif write and key is None:
            bucket.mkdir(exist_ok=True)
            self.answer(200)
        elif not bucket.is_dir():
            self.answer(*error("NoSuchBucket", "The specified bucket does not exist", 404))
        elif write:
            key.parent.mkdir(parents=True, exist_ok=True)
            key.write_bytes(payload)
            self.answer(200)
        elif key is None or not key.is_file():
            self.answer(*error("NoSuchKey", "The specified key does not exist.", 404))
        else:
            self.answer(200, key.read_bytes(), "application/octet-stream")

    def do_GET(self):
        if not self.health():
            self.handle_s3(write=False)

    def do_HEAD(self):
        self.do_GET()

    def do_PUT(self):
        self.handle_s3(write=True)


class Console(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def do_GET(self):
        body = b"MinIO Console (stand-in)\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main():
    global USER, PASSWORD
    data, port, console = arguments(sys.argv[1:])
    if not USER and not PASSWORD:
        USER = PASSWORD = "minioadmin"
    if len(USER) < 3 or len(PASSWORD) < 8:
        fail(
            "Unable to validate credentials inherited from the shell environment: Invalid "
            "credentials (the access key is at least 3 characters, the secret key at least 8)"
        )
    data.mkdir(parents=True, exist_ok=True)
    S3.data = data
    if console:
        server = ThreadingHTTPServer(("0.0.0.0", int(console.rsplit(":", 1)[1])), Console)
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print(f"API: http://0.0.0.0:{port}", flush=True)
    ThreadingHTTPServer(("0.0.0.0", port), S3).serve_forever()


if __name__ == "__main__":
    main()
