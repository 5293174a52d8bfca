"""``nself nginx test|reload|show`` and ``nself ssl status|generate|install``: the Typer
surface, loaded only to register it."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .certs import certificate_report, issue
from .live import is_running, reload_running, tested

PANEL = "Run"


def _runtime() -> tuple[Any, Any]:
    from nself_sdk import find_project, load_config, runtime

    config = load_config(find_project())
    return config, runtime(config)


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
        running = is_running(rt)
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
        if not is_running(rt):
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
        cert, key, how = issue(config.domain, folder / "nginx" / "ssl")
        write_atomic(folder / "nginx" / key_file, key, 0o600)
        write_atomic(folder / "nginx" / cert_file, cert)
        ok(f"nginx/{cert_file}: new certificate for {config.domain} and *.{config.domain} ({how})")
        try:  # a running nginx picks it up at once; without an engine, at its next start
            _config, rt = _runtime()
            running = is_running(rt)
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
