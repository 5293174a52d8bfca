"""Nginx's part of the hardening suite: TLS protocols and ciphers, HSTS, internal-only hosts.

The generated configuration is nself's own (TLS 1.2 and 1.3, HSTS outside dev, a login
and no implicitly trusted network for private hosts); what can weaken it is a hand-written file in
``nginx/conf.d/``, included last. Those files are read with nginx's own grammar
(``crossplane``), never followed into their includes (each is named as not checked). The
certificate is the tls plugin's to check.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nself_sdk import Config, Finding, Stack

OLD_PROTOCOLS = ("SSLv2", "SSLv3", "TLSv1", "TLSv1.1")
WEAK_CIPHERS = ("NULL", "EXPORT", "RC4", "DES", "3DES", "MD5", "ANON", "ADH", "AECDH")


def findings(config: Config, stack: Stack) -> list[Finding]:
    files, found = _parsed(config.project_dir)
    found += _tls(config, files)
    found += _hsts(config, files)
    found += _internal(config, stack, files)
    return found


def _parsed(project: Path) -> tuple[list[tuple[str, list[dict[str, Any]]]], list[Finding]]:
    import crossplane

    files, found = [], []
    for path in sorted((project / "nginx" / "conf.d").glob("*.conf")):
        rel = path.relative_to(project).as_posix()
        result = crossplane.parse(
            str(path), single=True, check_ctx=False, check_args=False, catch_errors=True
        )
        for item in result["config"]:
            for error in item["errors"]:
                found.append(
                    Finding(
                        "tls",
                        "warning",
                        f"{rel}:{error.get('line') or '?'}: not checked, nginx's grammar refuses "
                        f"it ({error.get('error')})",
                        "nself nginx test shows what nginx says",
                        layer="network",
                    )
                )
            files.append((rel, item["parsed"]))
    return files, found


def _walk(block: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for directive in block:
        yield directive
        yield from _walk(directive.get("block") or [])


def _tls(config: Config, files: list[tuple[str, list[dict[str, Any]]]]) -> list[Finding]:
    found = []
    level = "warning" if config.is_local else "error"
    for rel, parsed in files:
        for d in _walk(parsed):
            where = f"{rel}:{d['line']}"
            args = [str(a) for a in d["args"]]
            if d["directive"] == "ssl_protocols":
                old = [a for a in args if a in OLD_PROTOCOLS]
                if old:
                    found.append(
                        Finding(
                            "tls",
                            level,  # type: ignore[arg-type]
                            f"{where}: ssl_protocols allows {', '.join(old)}, broken or "
                            "deprecated (RFC 8996)",
                            "ssl_protocols TLSv1.2 TLSv1.3;",
                            layer="network",
                        )
                    )
            elif d["directive"] == "ssl_ciphers":
                weak = [
                    part
                    for arg in args
                    for part in arg.split(":")
                    if not part.startswith(("!", "-"))
                    and any(w in part.upper() for w in WEAK_CIPHERS)
                ]
                if weak:
                    found.append(
                        Finding(
                            "tls",
                            "warning",
                            f"{where}: ssl_ciphers enables {', '.join(weak)}",
                            "ssl_ciphers HIGH:!aNULL:!MD5; (nself's default), or delete the line",
                            layer="network",
                        )
                    )
            elif d["directive"] == "include":
                found.append(
                    Finding(
                        "tls",
                        "warning",
                        f"{where}: includes {' '.join(args)}: not checked (the suite reads "
                        "nginx/conf.d/*.conf only, not what they include)",
                        "put those lines into the .conf file itself, or check them by hand",
                        layer="network",
                    )
                )
            elif d["directive"] == "server_tokens" and args[:1] != ["off"]:
                found.append(
                    Finding(
                        "tls",
                        "warning",
                        f"{where}: server_tokens {' '.join(args)} tells everyone nginx's version",
                        "delete the line (nself sets server_tokens off)",
                        layer="network",
                    )
                )
    if not found:
        found.append(
            Finding(
                "tls",
                "ok",
                "TLS 1.2 and 1.3 only, strong ciphers"
                + (f" ({len(files)} file(s) in nginx/conf.d/ checked)" if files else ""),
                layer="network",
            )
        )
    return found


def _servers(
    files: list[tuple[str, list[dict[str, Any]]]],
) -> Iterator[tuple[str, dict[str, Any]]]:
    for rel, parsed in files:
        for d in _walk(parsed):
            if d["directive"] == "server":
                yield rel, d


def _names(server: dict[str, Any]) -> list[str]:
    return [
        str(a)
        for d in server.get("block") or []
        if d["directive"] == "server_name"
        for a in d["args"]
    ]


def _has(server: dict[str, Any], directive: str, first: str) -> bool:
    return any(
        d["directive"] == directive and [str(a).lower() for a in d["args"]][:1] == [first.lower()]
        for d in server.get("block") or []
    )


def _hsts(config: Config, files: list[tuple[str, list[dict[str, Any]]]]) -> list[Finding]:
    if config.is_local:
        return [Finding("hsts", "ok", "HSTS is sent outside dev only", layer="network")]
    found = []
    for rel, server in _servers(files):
        listens_tls = any(
            d["directive"] == "listen" and ("ssl" in d["args"] or "443" in d["args"])
            for d in server.get("block") or []
        )
        if listens_tls and not _has(server, "add_header", "Strict-Transport-Security"):
            found.append(
                Finding(
                    "hsts",
                    "warning",
                    f"{rel}:{server['line']}: the HTTPS server for "
                    f"{' '.join(_names(server)) or 'its hosts'} sends no Strict-Transport-Security "
                    "header (the generated ones do)",
                    'add_header Strict-Transport-Security "max-age=31536000; includeSubDomains" '
                    "always;",
                    layer="network",
                )
            )
    return found or [
        Finding(
            "hsts",
            "ok",
            f"every HTTPS host sends Strict-Transport-Security in {config.env}",
            layer="network",
        )
    ]


def _internal(
    config: Config, stack: Stack, files: list[tuple[str, list[dict[str, Any]]]]
) -> list[Finding]:
    """A hand-written server for a private host must keep its gate: a login (nginx's
    ``auth_basic``, unless the service asks for its own) and no address rule the
    project did not list (``allow 172.16.0.0/12`` lets in everyone behind Docker's proxy)."""
    from nself_builtins.shared.tls import host_of

    internal = {host_of(r, config.domain): r for r in stack.routes if r.internal_only}
    if not internal:
        return []
    found = []
    for rel, server in _servers(files):
        for name in _names(server):
            route = internal.get(name)
            if route is None:
                continue
            why = []
            if not route.own_login and not _login(server):
                why.append("asks for no login")
            listed = set(route.allow_cidrs) | {"127.0.0.1", "::1"}
            extra = [
                str(d["args"][0])
                for d in server.get("block") or []
                if d["directive"] == "allow" and d["args"] and str(d["args"][0]) not in listed
            ]
            if extra:
                why.append(f"allows {', '.join(extra)}, which no *_ALLOW_CIDRS lists")
            if why:
                found.append(
                    Finding(
                        "internal-only",
                        "error",
                        f"{rel}:{server['line']}: serves private {name} but {' and '.join(why)}",
                        "keep the generated gate: auth_basic with nself's user file (or the "
                        "service's own login) and only the networks of its *_ALLOW_CIDRS",
                        layer="network",
                    )
                )
    return found or [
        Finding(
            "internal-only",
            "ok",
            f"{', '.join(sorted(internal))}: a login, and no network trusted implicitly",
            layer="network",
        )
    ]


def _login(server: dict[str, Any]) -> bool:
    """The server (or one of its locations) asks for nginx's basic auth."""
    return any(
        d["directive"] == "auth_basic" and d["args"] and str(d["args"][0]).lower() != "off"
        for d in _walk(server.get("block") or [])
    )
