"""``nself nginx test|reload|show`` and ``nself ssl status|generate|install``: the Typer
surface, loaded only to register it.

Every check runs the service's own nginx binary on the files as the container sees them
(generated sites and hand-written ``conf.d``), so "valid" means valid for the version that
serves them. A reload is always tested first: an invalid configuration is refused and the
running nginx keeps serving the one it has.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

PANEL = "Run"
SERVICE = "nginx"
CONF = "/etc/nginx/nself/nginx.conf"
PASSED = "nself-nginx-config-ok"


def _runtime() -> tuple[Any, Any]:
    from nself_sdk import find_project, load_config, runtime

    config = load_config(find_project())
    return config, runtime(config)


def _running(rt: Any) -> bool:
    return any(s.name == SERVICE and s.running for s in rt.status())


def _problems(output: str) -> list[str]:
    """nginx's own complaints (``[emerg] ... in FILE:LINE``), path shown as in the project."""
    lines = [line.strip() for line in output.splitlines()]
    found = [line for line in lines if "[emerg]" in line or "[crit]" in line]
    return [line.replace("/etc/nginx/nself/", "nginx/") for line in found or lines[-1:]]


def tested(rt: Any, running: bool) -> str | None:
    """Why nginx refuses the configuration on disk, or ``None`` when it is valid.

    Valid means nginx said so: the marker is printed only after ``nginx -t`` succeeded,
    so an exit status of 0 from a container that never ran does not count.
    """
    from nself_sdk import NselfError

    argv = ["sh", "-c", f"nginx -t -q -c {CONF} && echo {PASSED}"]
    result = rt.exec(SERVICE, argv) if running else rt.run(SERVICE, argv)
    if result.exit_code == 0:
        if PASSED in result.output:
            return None
        said = (result.stderr.decode("utf-8", "replace") + result.output).strip()
        raise NselfError(
            f"nginx -t did not run: {said.splitlines()[-1] if said else 'no output'}",
            "check the nginx image (NGINX_IMAGE) and `nself logs nginx`",
        )
    text = result.stderr.decode("utf-8", "replace") + result.output
    return "; ".join(_problems(text)) or f"nginx -t exited with {result.exit_code}"


def _workers(rt: Any) -> set[str]:
    """The running nginx's worker processes (the master's children)."""
    script = "cat /proc/$(cat /tmp/nginx.pid)/task/*/children"
    return set(rt.exec(SERVICE, ["sh", "-c", script]).output.split())


def reload_running(rt: Any, wait: float = 10.0) -> None:
    """Signal the running nginx to reload, and wait until the workers of the old
    configuration are gone (they finish their requests first), so what answers next is
    the new configuration."""
    import time

    from nself_sdk import NselfError

    old = _workers(rt)
    result = rt.exec(SERVICE, ["nginx", "-s", "reload", "-c", CONF])
    if result.exit_code != 0:
        why = "; ".join(_problems(result.stderr.decode("utf-8", "replace") + result.output))
        raise NselfError(f"nginx did not reload: {why}", "see `nself logs nginx`")
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        now = _workers(rt)
        if now and not now & old:
            return
        time.sleep(0.1)


def register(app: Any) -> None:
    register_ssl(app)
    group = typer.Typer(help="Test, reload and show the nginx configuration.", no_args_is_help=True)
    app.add_typer(group, name="nginx", rich_help_panel=PANEL)

    @group.command("test")
    def test() -> None:
        """Check the configuration on disk with the service's nginx (`nginx -t`)."""
        from nself_sdk import NselfError
        from nself_sdk.console import ok

        _config, rt = _runtime()
        running = _running(rt)
        why = tested(rt, running)
        if why is not None:
            raise NselfError(
                f"nginx configuration is invalid: {why}",
                "fix the file named (hand-written files live in nginx/conf.d/), "
                "or run `nself build` if a generated one was edited",
            )
        where = "the running nginx" if running else "a throw-away nginx container"
        ok(f"nginx configuration is valid (checked by {where})")

    @group.command("reload")
    def reload() -> None:
        """Test the configuration, then load it into the running nginx without downtime."""
        from nself_sdk import NselfError
        from nself_sdk.console import ok

        _config, rt = _runtime()
        if not _running(rt):
            raise NselfError("nginx is not running", "start it: nself start nginx")
        why = tested(rt, True)
        if why is not None:
            raise NselfError(
                f"nginx configuration is invalid, not reloaded: {why}",
                "nginx keeps serving its current configuration; fix the file and reload again",
            )
        reload_running(rt)
        ok("nginx reloaded: configuration tested and loaded, connections kept")

    @group.command("show")
    def show(
        site: Annotated[
            str | None, typer.Argument(help="Only this site, e.g. api (nginx/sites/api.conf).")
        ] = None,
    ) -> None:
        """Print the configuration on disk: nginx.conf, the generated sites, conf.d."""
        from nself_sdk import NselfError, find_project
        from nself_sdk.console import info

        folder = find_project() / "nginx"
        if site is not None:
            files = [folder / "sites" / f"{site}.conf"]
            if not files[0].is_file():
                known = sorted(p.stem for p in (folder / "sites").glob("*.conf"))
                raise NselfError(
                    f"no generated site {site!r}", f"sites: {', '.join(known) or 'none'}"
                )
        else:
            files = [folder / "nginx.conf", *sorted((folder / "sites").glob("*.conf"))]
            files += sorted((folder / "conf.d").glob("*.conf"))
        if not files[0].is_file():
            raise NselfError("the nginx configuration has not been generated", "run `nself build`")
        for path in files:
            info(f"# --- {path.relative_to(folder.parent)} ---")
            info(path.read_text(encoding="utf-8", errors="replace").rstrip("\n"))


# -- nself ssl ------------------------------------------------------------------------------


def covers(names: list[str], host: str) -> bool:
    """Whether a certificate for ``names`` is valid for ``host`` (one-label wildcards)."""
    for name in names:
        if name == host or (
            name.startswith("*.") and host.endswith(name[1:]) and "." not in host[: -len(name) + 1]
        ):
            return True
    return False


def certificate_report(folder: Any, config: Any, stack: Any) -> dict[str, Any]:
    """What nginx serves: file, issuer, names, validity and the routed hosts it misses."""
    import datetime

    from cryptography import x509
    from cryptography.x509.oid import NameOID

    from nself_sdk import NselfError

    from .render import certificate, host_of

    cert_file, _key = certificate(config)
    path = folder / "nginx" / cert_file
    if not path.is_file():
        raise NselfError(f"nginx/{cert_file} does not exist", "run `nself build`")
    try:
        cert = x509.load_pem_x509_certificate(path.read_bytes())
    except ValueError as exc:
        raise NselfError(f"nginx/{cert_file} is not a PEM certificate: {exc}") from None
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n) for n in alt.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [str(a.value) for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]
    now = datetime.datetime.now(datetime.UTC)
    days = (cert.not_valid_after_utc - now).days
    hosts = sorted({host_of(route, config.domain) for route in stack.routes})
    uncovered = [h for h in hosts if not covers(names, h)]
    problems = []
    if cert.not_valid_after_utc <= now:
        problems.append(f"expired on {cert.not_valid_after_utc:%Y-%m-%d}")
    elif cert.not_valid_before_utc > now:
        problems.append(f"not valid before {cert.not_valid_before_utc:%Y-%m-%d}")
    if uncovered:
        problems.append(f"does not cover {', '.join(uncovered)}")
    issuer = cert.issuer.rfc4514_string()
    return {
        "file": f"nginx/{cert_file}",
        "issuer": issuer,
        "self_signed": cert.issuer == cert.subject,
        "names": names,
        "not_after": cert.not_valid_after_utc.isoformat(),
        "days_left": days,
        "hosts": hosts,
        "uncovered": uncovered,
        "problems": problems,
        "renew_soon": 0 <= days < 30,
    }


def _issue(domain: str, ssl_folder: Any) -> tuple[bytes, bytes, str]:
    """A development certificate for ``domain`` and its subdomains: from mkcert's local CA
    when mkcert is installed (browsers trust it after `nself ssl install`), else self-signed."""
    import shutil
    import subprocess
    import tempfile
    from pathlib import Path

    from nself_sdk import NselfError

    from .render import self_signed

    mkcert = shutil.which("mkcert")
    if mkcert is None:
        cert, key = self_signed(domain)
        return cert, key, "self-signed (install mkcert for a locally trusted one)"
    ssl_folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=ssl_folder) as tmp:
        out = Path(tmp)
        names = [domain, f"*.{domain}", "localhost", "127.0.0.1", "::1"]
        done = subprocess.run(
            [mkcert, "-cert-file", str(out / "c.pem"), "-key-file", str(out / "k.pem"), *names],
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            last = (done.stderr or done.stdout).strip().splitlines()[-1:]
            raise NselfError(f"mkcert failed: {' '.join(last)}", "run `nself ssl install` first")
        return (out / "c.pem").read_bytes(), (out / "k.pem").read_bytes(), "mkcert's local CA"


def register_ssl(app: Any) -> None:
    group = typer.Typer(help="Certificates nginx serves: status, development ones.")
    group.callback(invoke_without_command=False, no_args_is_help=True)(lambda: None)
    app.add_typer(group, name="ssl", rich_help_panel=PANEL)

    @group.command("status")
    def status(
        as_json: Annotated[bool, typer.Option("--json", help="Machine-readable.")] = False,
    ) -> None:
        """The certificate in use: issuer, names, expiry (exit 1: expired, or a host missing)."""
        from nself_sdk import NselfError, find_project, plan
        from nself_sdk.console import emit_json, info, ok, warn

        folder = find_project()
        the_plan = plan(folder)
        report = certificate_report(folder, the_plan.config, the_plan.stack)
        if as_json:
            emit_json(report)
        else:
            kind = "self-signed" if report["self_signed"] else report["issuer"]
            show = ok if not report["problems"] else warn
            show(
                f"{report['file']}: {kind}, valid until {report['not_after'][:10]} "
                f"({report['days_left']} days)"
            )
            info(f"  names: {', '.join(report['names'])}")
            if report["renew_soon"]:
                warn("it expires within 30 days", "replace it (or `nself ssl generate` locally)")
        if report["problems"]:
            raise NselfError(
                f"the certificate {'; '.join(report['problems'])}",
                "locally: `nself ssl generate`; elsewhere: install a certificate for these hosts "
                "and set SSL_CERTIFICATE_FILE and SSL_CERTIFICATE_KEY_FILE",
            )

    @group.command("generate")
    def generate() -> None:
        """Issue a new development certificate for BASE_DOMAIN and its subdomains (local)."""
        from nself_sdk import NselfError, find_project, load_config, write_atomic
        from nself_sdk.console import ok

        from .render import dev_certificate

        folder = find_project()
        config = load_config(folder)
        if not config.is_local:
            raise NselfError(
                f"`nself ssl generate` makes development certificates, not ones for {config.env}",
                "put your certificate and key in nginx/ssl/ and set SSL_CERTIFICATE_FILE and "
                "SSL_CERTIFICATE_KEY_FILE",
            )
        if config.text("SSL_CERTIFICATE_FILE"):
            raise NselfError(
                "SSL_CERTIFICATE_FILE is set: nginx serves that certificate, not a generated one",
                "unset SSL_CERTIFICATE_FILE and SSL_CERTIFICATE_KEY_FILE to use a generated one",
            )
        cert_file, key_file = dev_certificate(config.domain)
        cert, key, how = _issue(config.domain, folder / "nginx" / "ssl")
        write_atomic(folder / "nginx" / key_file, key, 0o600)
        write_atomic(folder / "nginx" / cert_file, cert)
        ok(f"nginx/{cert_file}: new certificate for {config.domain} and *.{config.domain} ({how})")
        try:  # a running nginx picks it up at once; without an engine, at its next start
            _config, rt = _runtime()
            running = _running(rt)
        except NselfError:
            running = False
        if running:
            why = tested(rt, True)
            if why is not None:
                raise NselfError(f"nginx configuration is invalid, not reloaded: {why}")
            reload_running(rt)
            ok("nginx reloaded with it")

    @group.command("install")
    def install() -> None:
        """Make this machine trust mkcert's local CA (then `nself ssl generate`)."""
        import shutil
        import subprocess

        from nself_sdk import NselfError
        from nself_sdk.console import ok

        mkcert = shutil.which("mkcert")
        if mkcert is None:
            raise NselfError(
                "mkcert is not installed",
                "install it (Debian/Ubuntu: apt install mkcert; macOS: brew install mkcert)",
            )
        if subprocess.run([mkcert, "-install"]).returncode != 0:
            raise NselfError("mkcert -install failed", "see its message above")
        ok("mkcert's local CA is trusted here: run `nself ssl generate`")


# -- nself doctor ------------------------------------------------------------------------------


def ssl_findings(config: Any, stack: Any) -> list[Any]:
    from nself_sdk import Finding, NselfError

    try:
        report = certificate_report(config.project_dir, config, stack)
    except NselfError as exc:
        return [Finding("ssl", "error", exc.message, exc.hint)]
    if report["problems"]:
        return [
            Finding(
                "ssl",
                "error",
                f"{report['file']}: {'; '.join(report['problems'])}",
                "locally: `nself ssl generate`; elsewhere: a certificate for these hosts in "
                "SSL_CERTIFICATE_FILE and SSL_CERTIFICATE_KEY_FILE",
            )
        ]
    until = f"valid until {report['not_after'][:10]} ({report['days_left']} days)"
    if report["renew_soon"]:
        return [
            Finding(
                "ssl",
                "warning",
                f"{report['file']} expires soon: {until}",
                "replace it before it expires",
            )
        ]
    kind = "self-signed" if report["self_signed"] else "issued"
    return [Finding("ssl", "ok", f"{report['file']} ({kind}) covers every host, {until}")]


def configuration_findings(config: Any) -> list[Any]:
    from nself_sdk import Finding, NselfError, runtime

    try:
        rt = runtime(config)
        running = _running(rt)
        why = tested(rt, running)
    except NselfError as exc:
        return [Finding("nginx", "warning", f"not checked: {exc.message}", exc.hint)]
    if why is not None:
        return [
            Finding("nginx", "error", f"nginx -t fails: {why}", "fix it, then nself nginx reload")
        ]
    return [Finding("nginx", "ok", "nginx -t accepts the configuration on disk")]


# -- after `nself start` ------------------------------------------------------------------------


# Seconds since nginx's first worker started, i.e. since nginx (re)loaded its configuration
# (field 22 of /proc/PID/stat is the start in clock ticks after boot).
LOADED_AGO = (
    "w=$(cut -d' ' -f1 /proc/$(cat /tmp/nginx.pid)/task/*/children); "
    "hz=$(getconf CLK_TCK 2>/dev/null || echo 100); "
    'awk -v up="$(cut -d\' \' -f1 /proc/uptime)" -v hz="$hz" '
    "'{sub(/^.*\\) /, \"\"); print up - $20 / hz}' /proc/$w/stat"
)


def _loaded_ago(rt: Any) -> float | None:
    result = rt.exec(SERVICE, ["sh", "-c", LOADED_AGO])
    try:
        return float(result.output.strip()) if result.exit_code == 0 else None
    except ValueError:
        return None


def apply_changes(config: Any, rt: Any) -> None:
    """Reload the running nginx when its files changed after its container started.

    The configuration folder is mounted, so Compose keeps the container when only files
    change, and nginx goes on serving what it loaded. An invalid new configuration is
    not loaded: nginx keeps the old one, and the warning says why.
    """
    import time

    from nself_sdk import NselfError
    from nself_sdk.console import info, warn

    try:
        state = next((s for s in rt.status() if s.name == SERVICE), None)
        if state is None or not state.running or state.uptime is None:
            return
        folder = config.project_dir / "nginx"
        files = [p for p in folder.rglob("*") if p.is_file()]
        newest = max((p.stat().st_mtime for p in files), default=0.0)
        if newest <= time.time() - min(state.uptime, _loaded_ago(rt) or state.uptime):
            return
        why = tested(rt, True)
        if why is not None:
            warn(
                f"nginx keeps its previous configuration: the new one is invalid: {why}",
                "fix it, then `nself nginx reload`",
            )
            return
        reload_running(rt)
        info("nginx reloaded: its configuration changed since it started")
    except NselfError as exc:
        warn(f"nginx was not reloaded: {exc.message}", "nself nginx reload")
