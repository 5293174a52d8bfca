"""Benchmark request throughput through nginx to 1 and to 3 replicas of a custom service
(not a test: figures go to docs/performance.md).

One stack, two slots of the same image side by side and three routes, measured in turns:
`one` (CS_1_REPLICAS=1: the route proxies to the service's name, looked up per request),
`solo` (an upstream of your own, `NGINX_UPSTREAM_SOLO_SERVERS=one:8001`: the same single
container through an upstream block, which separates what the block costs from what the
replicas give) and `three` (CS_2_REPLICAS=3: an upstream block over the replicas, passive
health). Requests go to nginx on 127.0.0.1 only, from persistent HTTPS connections,
bounded in time.

Two services:
- `slow`: answers after 20 ms and handles one request at a time (a single-threaded app
  waiting on its database): what replicas are for;
- `static`: busybox httpd serving a small file: what the upstream block costs nginx.

Needs the stand-in images (tests/standins/build.sh). Usage:

    .venv/bin/python bench/service_replicas.py [--seconds 8] [--rounds 3] [--clients 12]
        [--kinds slow static]
"""

from __future__ import annotations

import argparse
import http.client
import os
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

TAG = os.environ.get("NSELF_STANDIN_TAG", "4")
BIN = Path(sys.executable).parent
DOMAIN = "local.nself.org"
# One request at a time, 20 ms each (python3 is in the stand-in base).
SLOW_APP = """\
import http.server
import os
import time


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        time.sleep(0 if self.path == "/health" else 0.02)
        self.send_response(200)
        self.send_header("Content-Length", "3")
        self.end_headers()
        self.wfile.write(b"ok\\n")

    def log_message(self, *args):
        pass


http.server.HTTPServer(("", int(os.environ["PORT"])), Handler).serve_forever()
"""
SLOW = """\
FROM nself-standin/http:{tag}
COPY app.py /app.py
CMD ["python3", "/app.py"]
"""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def run(argv: list[str], cwd: Path, stdin: str | None = None) -> None:
    done = subprocess.run(argv, cwd=cwd, capture_output=True, text=True, input=stdin)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{done.stdout}{done.stderr}")


def make_project(root: Path, image: str) -> tuple[Path, str, int]:
    name = f"nselfbenchrep{uuid.uuid4().hex[:6]}"
    folder = root / name
    run([str(BIN / "nself"), "init", str(folder), "--name", name], root)
    https = free_port()
    lines = {
        "HASURA_ENABLED": "false",
        "AUTH_ENABLED": "false",
        "POSTGRES_IMAGE": f"nself-standin/postgres:{TAG}",
        "NGINX_IMAGE": f"nself-standin/nginx:{TAG}",
        "NGINX_HTTP_PORT": str(free_port()),
        "NGINX_HTTPS_PORT": str(https),
        "SSL_MODE": "local",
        # the load comes from this machine: dev does not rate-limit it
        "NGINX_UPSTREAM_SOLO_SERVERS": "one:8001",
    }
    for n, (slot, replicas) in enumerate((("one", "1"), ("three", "3")), start=1):
        lines.update(
            {
                f"CS_{n}_NAME": slot,
                f"CS_{n}_IMAGE": image,
                f"CS_{n}_PORT": "8001",
                f"CS_{n}_SUBDOMAIN": slot,
                f"CS_{n}_REPLICAS": replicas,
            }
        )
    with (folder / ".env.local").open("a") as env:
        env.writelines(f"{k}={v}\n" for k, v in lines.items())
    run([str(BIN / "nself"), "start", "--timeout", "240"], folder)
    return folder, name, https


def load(port: int, host: str, seconds: float, clients: int, path: str) -> tuple[float, int]:
    """Requests per second over ``clients`` persistent connections for ``seconds``."""
    context = ssl._create_unverified_context()
    counts = [0] * clients
    failures = [0] * clients
    stop = time.monotonic() + seconds

    def client(index: int) -> None:
        conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
        while time.monotonic() < stop:
            try:
                conn.request("GET", path, headers={"Host": host})
                response = conn.getresponse()
                response.read()
                if response.status == 200:
                    counts[index] += 1
                else:
                    failures[index] += 1
            except (OSError, http.client.HTTPException):
                failures[index] += 1
                conn.close()
                conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=10, context=context)
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    began = time.monotonic()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - began), sum(failures)


def bench(kind: str, image: str, root: Path, args: argparse.Namespace) -> None:
    folder, _name, port = make_project(root, image)
    try:
        path = "/" if kind == "slow" else "/index.html"
        routes = ("one", "solo", "three")
        rates: dict[str, list[float]] = {route: [] for route in routes}
        failed = dict.fromkeys(routes, 0)
        for route in routes:  # warm: connections, caches
            load(port, f"{route}.{DOMAIN}", 2, args.clients, path)
        for _ in range(args.rounds):
            for route in routes:
                rate, failures = load(port, f"{route}.{DOMAIN}", args.seconds, args.clients, path)
                rates[route].append(rate)
                failed[route] += failures
        one, solo, three = (statistics.median(rates[route]) for route in routes)
        runs = " ".join(f"{route}={[round(r) for r in rates[route]]}" for route in routes)
        print(
            f"{kind}: 1 replica {one:.0f} req/s, 1 through an upstream block {solo:.0f} req/s, "
            f"3 replicas {three:.0f} req/s ({three / one:.2f}x); median of {args.rounds} x "
            f"{args.seconds:.0f}s, {args.clients} connections; failed {failed}; runs {runs}"
        )
    finally:
        subprocess.run([str(BIN / "nself"), "down", "--volumes"], cwd=folder, capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=12)
    parser.add_argument("--kinds", nargs="+", default=["slow", "static"])
    args = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    slow = f"nselfbench-slow:{uuid.uuid4().hex[:6]}"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        context = root / "slow"
        context.mkdir()
        (context / "app.py").write_text(SLOW_APP)
        (context / "Dockerfile").write_text(SLOW.format(tag=TAG))
        run(["docker", "build", "-q", "-t", slow, str(context)], root)
        try:
            if "slow" in args.kinds:
                bench("slow", slow, root, args)
            if "static" in args.kinds:
                bench("static", f"nself-standin/http:{TAG}", root, args)
        finally:
            subprocess.run(["docker", "rmi", "-f", slow], capture_output=True)
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
