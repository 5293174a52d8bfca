"""Load-balanced upstreams: several servers behind one route, with passive health.

Two kinds share one mechanism. Upstreams of your own live in the env files::

    NGINX_UPSTREAM_APP_SERVERS=app1:8080,app2:8080,10.0.0.7:8080
    NGINX_UPSTREAM_APP_WEIGHTS=2,1,1        # optional, one per server
    NGINX_UPSTREAM_APP_SUBDOMAIN=app        # default: the name
    NGINX_UPSTREAM_APP_MAX_FAILS=1          # passive health (nginx's defaults)
    NGINX_UPSTREAM_APP_FAIL_TIMEOUT=10s

and replicated services of the stack (``CS_N_REPLICAS=3``) get one whose servers are
their replicas. nginx resolves an upstream's host names only when it loads its
configuration, and refuses to start when one does not resolve (a replica not started
yet); per-request resolution (``set $u ...; proxy_pass $u``) keeps no failure state
and sticks to one address for the resolver's cache time. So names are resolved by
nginx's own container: its start script looks each one up every two seconds and writes
the addresses into files the upstream block includes, reloading nginx (tested first)
when they change. A name that does not resolve is left out; an upstream with no server
left answers 502 at once. Addresses written as IPs need no lookup.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from nself_builtins.shared.service_replicas import RESOLVE_INTERVAL
from nself_sdk import Config, Problem

PREFIX = "NGINX_UPSTREAM_"
SERVERS = re.compile(r"^NGINX_UPSTREAM_([A-Z][A-Z0-9_]{0,39})_SERVERS$")
NAME = re.compile(r"^[a-z][a-z0-9-]{0,39}$")
LABEL = r"[a-z0-9]([a-z0-9_-]{0,61}[a-z0-9])?"
HOST = re.compile(rf"^(?=.{{1,253}}$){LABEL}(\.{LABEL})*$")
TIME = re.compile(r"^[1-9][0-9]{0,5}(ms|s|m|h)?$")  # ASCII digits: \d takes any
MAX_SERVERS = 64
MAX_WEIGHT = 100
MAX_FAILS = 100
# Where the start script writes the resolved addresses (nginx's container, writable).
RESOLVED = "/tmp/nself/upstreams"
# What every replicated route uses: a stopped replica is skipped after its first failure.
REPLICA_HEALTH = "max_fails=1 fail_timeout=5s"


@dataclass(frozen=True)
class Server:
    host: str
    port: int
    weight: int = 1

    @property
    def literal(self) -> bool:
        """An IP address: written as it is, never looked up."""
        try:
            ipaddress.ip_address(self.host)
        except ValueError:
            return False
        return True

    @property
    def address(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"


@dataclass(frozen=True)
class Upstream:
    """One upstream block: nginx's name for it, its servers and their health settings."""

    block: str
    servers: tuple[Server, ...]
    health: str
    name: str = ""
    subdomain: str = ""


def key(name: str) -> str:
    """The env key of upstream ``name`` (``web-pool`` -> ``WEB_POOL``)."""
    return name.upper().replace("-", "_")


def name_of(env_key: str) -> str:
    return env_key.lower().replace("_", "-")


def block_name(kind: str, name: str) -> str:
    return f"nself_{kind}_" + re.sub(r"[^a-z0-9]", "_", name)


def parse_server(text: str) -> Server:
    """``HOST:PORT`` (``[IPv6]:PORT`` for IPv6); ValueError saying what is wrong."""
    text = text.strip()
    if text.startswith("["):
        host, sep, port = text[1:].partition("]:")
        if not sep:
            raise ValueError("an IPv6 address is written [ADDRESS]:PORT")
        try:
            if ipaddress.ip_address(host).version != 6:
                raise ValueError
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    else:
        host, sep, port = text.rpartition(":")
        if not sep or not host:
            raise ValueError("a server is HOST:PORT (the port is required)")
        if ":" in host:
            raise ValueError("an IPv6 address is written [ADDRESS]:PORT")
        if not HOST.match(host):
            raise ValueError(f"{host!r} is not a host name or an IPv4 address")
    if not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"the port {port!r} is not a number from 1 to 65535")
    return Server(host, int(port))


def names(config: Config) -> list[str]:
    """The upstreams of the env files, by name."""
    return sorted(name_of(m.group(1)) for n in config.names() if (m := SERVERS.match(n)))


def _servers(config: Config, name: str) -> tuple[list[Server], list[str]]:
    """The servers of upstream ``name`` and what is wrong with its settings."""
    prefix = PREFIX + key(name) + "_"
    errors = []
    raw = [item for item in config.text(prefix + "SERVERS").split(",") if item.strip()]
    servers = []
    for item in raw:
        try:
            servers.append(parse_server(item))
        except ValueError as exc:
            errors.append(f"{prefix}SERVERS: {item.strip()!r}: {exc}")
    weights = [w.strip() for w in config.text(prefix + "WEIGHTS").split(",") if w.strip()]
    if weights and len(weights) != len(raw):
        errors.append(f"{prefix}WEIGHTS has {len(weights)} weights for {len(raw)} servers")
    elif weights:
        for index, weight in enumerate(weights):
            if not (weight.isascii() and weight.isdigit()) or not 1 <= int(weight) <= MAX_WEIGHT:
                errors.append(f"{prefix}WEIGHTS: {weight!r} is not a weight from 1 to {MAX_WEIGHT}")
            elif index < len(servers):
                servers[index] = Server(servers[index].host, servers[index].port, int(weight))
    if not raw:
        errors.append(f"{prefix}SERVERS lists no server")
    if len(raw) > MAX_SERVERS:
        errors.append(f"{prefix}SERVERS lists {len(raw)} servers (at most {MAX_SERVERS})")
    return servers, errors


def subdomain(config: Config, name: str) -> str:
    return config.text(PREFIX + key(name) + "_SUBDOMAIN") or name


def upstream(config: Config, name: str) -> Upstream:
    prefix = PREFIX + key(name) + "_"
    servers, _errors = _servers(config, name)
    fails = config.text(prefix + "MAX_FAILS", "1")
    timeout = config.text(prefix + "FAIL_TIMEOUT", "10s")
    return Upstream(
        block_name("upstream", name),
        tuple(servers),
        f"max_fails={fails} fail_timeout={timeout}",
        name=name,
        subdomain=subdomain(config, name),
    )


SERVER_HINT = (
    "list servers as HOST:PORT separated by commas (app1:8080,10.0.0.7:8080, "
    "[2001:db8::1]:8080): a stack service's name or an external host; "
    "nself nginx upstream add NAME --server HOST:PORT writes them"
)


def problems(config: Config) -> list[Problem]:
    """Every upstream of the env files: a valid name, servers that parse, health values."""
    found = []
    for setting in sorted(n for n in config.names() if n.startswith(PREFIX)):
        if setting.endswith("_SERVERS") and not SERVERS.match(setting):
            found.append(
                Problem(
                    "error",
                    f"{config.where(setting)}: {setting}: an upstream's name is 1-40 letters, "
                    "digits and '_', starting with a letter",
                    "name it like NGINX_UPSTREAM_APP_SERVERS (upstream app)",
                )
            )
    for name in names(config):
        prefix = PREFIX + key(name) + "_"
        where = config.where(prefix + "SERVERS")
        _servers_found, errors = _servers(config, name)
        found += [Problem("error", f"{where}: {error}", SERVER_HINT) for error in errors]
        fails = config.text(prefix + "MAX_FAILS")
        if fails and (not (fails.isascii() and fails.isdigit()) or int(fails) > MAX_FAILS):
            found.append(
                Problem(
                    "error",
                    f"{config.where(prefix + 'MAX_FAILS')}: {prefix}MAX_FAILS={fails!r} is not "
                    f"a number from 0 to {MAX_FAILS}",
                    "failures within FAIL_TIMEOUT before nginx skips a server (0: never)",
                )
            )
        timeout = config.text(prefix + "FAIL_TIMEOUT")
        if timeout and not TIME.match(timeout):
            found.append(
                Problem(
                    "error",
                    f"{config.where(prefix + 'FAIL_TIMEOUT')}: {prefix}FAIL_TIMEOUT={timeout!r} "
                    "is not a time",
                    "write nginx's time, like 10s, 500ms or 1m",
                )
            )
    return found


# What a token of an upstream line may hold (defence in depth: the settings are
# validated before any file is made).
TOKEN = re.compile(r"^[A-Za-z0-9._:\[\]=-]+$")


def checked(up: Upstream) -> Upstream:
    """``up`` when every word it writes is one plain token, else an error naming it."""
    from nself_sdk import NselfError

    words = [up.block, *up.health.split()]
    words += [w for s in up.servers for w in (s.address, str(s.port), str(s.weight))]
    for word in words:
        if not TOKEN.match(word):
            raise NselfError(
                f"refusing to write {word!r} into the upstream {up.name or up.block}",
                "fix the NGINX_UPSTREAM_* setting it comes from",
            )
    return up


def block(up: Upstream) -> str:
    """The upstream block: addresses written as IPs, the rest from the resolved file, and a
    placeholder that is never used (nginx refuses an upstream without any server)."""
    up = checked(up)
    lines = [
        f"upstream {up.block} {{",
        f"    zone {up.block} 64k;",
        "    # never used: an upstream needs a server before the names are resolved",
        "    server 127.0.0.1:9 down;",
    ]
    for server in up.servers:
        if server.literal:
            lines.append(f"    server {server} weight={server.weight} {up.health};")
    if any(not s.literal for s in up.servers):
        lines.append(f"    # host names, resolved by nginx/{RUN} every {INTERVAL} s")
        lines.append(f"    include {RESOLVED}/{up.block}.conf*;")
    lines += ["}", ""]
    return "\n".join(lines)


def listing(upstreams: list[Upstream]) -> str:
    """What the start script resolves: one line per server name (upstream, host, port,
    whether the names are the upstream's only servers, the server's parameters)."""
    lines = ["# Generated by `nself build`: upstream servers nginx/nself-run.sh resolves."]
    for up in map(checked, upstreams):
        alone = "-" if any(s.literal for s in up.servers) else ALONE
        for s in up.servers:
            if not s.literal:
                lines.append(f"{up.block} {s.host} {s.port} {alone} weight={s.weight} {up.health}")
    return "\n".join(lines) + "\n"


# A block whose names resolve to one address holds one server: nginx never skips the only
# server of a group, but the placeholder makes two, so the script turns its passive health
# off (max_fails=0) rather than answer 502 for fail_timeout after one failed request.
ALONE = "alone"
RUN = "nself-run.sh"
INTERVAL = RESOLVE_INTERVAL
ROOT = "/etc/nginx/nself"


def run_script(acme_stamp: str | None, resolve: bool) -> str:
    """nginx's start script. Nothing to watch: it becomes nginx. Otherwise the shell stays
    PID 1 (passing stop signals on; the image's STOPSIGNAL is SIGQUIT, a graceful stop)
    and every INTERVAL seconds reloads nginx, tested first, when the renewer installed
    new certificates or an upstream's names resolve to other addresses."""
    head = [
        "#!/bin/sh",
        "# Generated by `nself build`: nginx, reloaded (tested first) when what it serves",
        "# changes under it (new certificates, upstream servers at other addresses).",
        f"conf={ROOT}/nginx.conf",
    ]
    if acme_stamp is None and not resolve:
        return "\n".join([*head, "exec nginx -c \"$conf\" -g 'daemon off;'", ""])
    body = [
        "# reload WHAT-CHANGED WHAT-STAYS: only a configuration nginx -t accepts is loaded.",
        "reload() {",
        '  if nginx -t -q -c "$conf"; then',
        '    nginx -s reload -c "$conf" && echo "nself: nginx reloaded with $1"',
        "  else",
        '    echo "nself: $1 fail nginx -t: nginx keeps serving $2" >&2',
        "  fi",
        "}",
    ]
    if resolve:
        body += [
            f"list={ROOT}/upstreams.list",
            f"dir={RESOLVED}",
            "seen=",
            "# One file per upstream: `server ADDRESS:PORT PARAMETERS;` for every address",
            "# of each name (a name that does not resolve is left out); the only server of",
            "# an upstream is never skipped (max_fails=0), as nginx does with a lone server.",
            "resolve() {",
            '  rm -rf "$dir.next" && mkdir -p "$dir.next" "$dir" || return 1',
            "  while read -r block host port alone params; do",
            '    case "$block" in ""|"#"*) continue ;; esac',
            f'    [ "$alone" = {ALONE} ] && : >"$dir.next/$block.{ALONE}"',
            '    getent hosts "$host" | while read -r addr _names; do',
            '      case "$addr" in *:*) addr="[$addr]" ;; esac',
            '      echo "server $addr:$port $params;"',
            '    done | sort -u >>"$dir.next/$block.conf"',
            '  done <"$list"',
            f'  for mark in "$dir.next"/*.{ALONE}; do',
            f'    [ -e "$mark" ] || continue; f="${{mark%.{ALONE}}}.conf"; rm -f "$mark"',
            '    [ "$(sort -u "$f" | wc -l)" -eq 1 ] || continue',
            '    sed \'s/ max_fails=[0-9]*/ max_fails=0/\' "$f" >"$f.one" && mv "$f.one" "$f"',
            "  done",
            '  now=$(cd "$dir.next" && for f in *.conf; do',
            '    [ -s "$f" ] && echo "$f" && cat "$f"',
            "  done)",
            '  [ "$now" = "$seen" ] && return 1',
            '  seen=$now && rm -rf "$dir" && mv "$dir.next" "$dir"',
            "}",
            "# `nself-run.sh resolve`: only look the names up now (before a reload).",
            '[ "$1" = resolve ] && { resolve; exit 0; }',
            "resolve",
        ]
    else:
        body.append('[ "$1" = resolve ] && exit 0')
    if acme_stamp is not None:
        body += [f"stamp={acme_stamp}", 'stamp_seen=$(cat "$stamp" 2>/dev/null)']
    body += [
        "nginx -c \"$conf\" -g 'daemon off;' &",
        "pid=$!",
        "trap 'kill -QUIT \"$pid\" 2>/dev/null' QUIT",
        "trap 'kill -TERM \"$pid\" 2>/dev/null' TERM INT",
        'while kill -0 "$pid" 2>/dev/null; do',
        f"  sleep {INTERVAL} & wait $!",
    ]
    if resolve:
        body.append('  resolve && reload "new upstream addresses" "the addresses it has"')
    if acme_stamp is not None:
        body += [
            '  now_stamp=$(cat "$stamp" 2>/dev/null)',
            '  if [ "$now_stamp" != "$stamp_seen" ]; then',
            '    stamp_seen=$now_stamp && reload "new certificates" "the loaded ones"',
            "  fi",
        ]
    body += ["done", 'wait "$pid"', ""]
    return "\n".join(head + body)
