"""``nself ssl status|renew|revoke|generate|install``: the Typer surface, loaded only to
register it. The work is done by plain functions (``shared.certificates``, ``certs``)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from .certs import certificate_report, issue

app = typer.Typer(
    help="Certificates nginx serves: status, ACME renewal, development ones.",
    no_args_is_help=True,
)
EnvOption = Annotated[
    str | None, typer.Option("--env", help="local, staging or prod (its server when deployed).")
]
JsonOption = Annotated[bool, typer.Option("--json", help="Machine-readable.")]


def _config(env: str | None) -> Any:
    from nself_sdk import find_project, load_config

    return load_config(find_project(), env)


@app.command("status")
def status(env: EnvOption = None, as_json: JsonOption = False) -> None:
    """Per host: issuer, expiry, days left, last renewal and its error (exit 1: expired,
    a host without a certificate, or a failed renewal)."""
    from nself_builtins.shared.tls import ssl_mode
    from nself_sdk import NselfError, find_project, plan

    folder = find_project()
    the_plan = plan(folder, env)
    if ssl_mode(the_plan.config) == "acme":
        from .report import acme_status

        acme_status(the_plan.config, as_json)
        return
    from nself_sdk.console import emit_json, info, ok, warn

    report = certificate_report(folder, the_plan.config, the_plan.stack)
    report["mode"] = ssl_mode(the_plan.config)
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


@app.command("renew")
def renew(
    names: Annotated[
        list[str] | None, typer.Argument(help="Only these hosts (default: every one).")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Renew even certificates that are not due.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Obtain test certificates from the staging CA; install nothing."
        ),
    ] = False,
    env: EnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Obtain or renew ACME certificates now: those due (30 days before expiry), all with
    --force. New ones are loaded into nginx after `nginx -t` (exit 1: one failed)."""
    from nself_builtins.shared.certificates import renew_certificates

    from .report import show_renewal

    config = _config(env)
    results = renew_certificates(config, force=force, dry_run=dry_run, only=tuple(names or ()))
    show_renewal(results, as_json, dry_run)


@app.command("revoke")
def revoke(
    name: Annotated[str, typer.Argument(help="The host whose certificate is revoked.")],
    env: EnvOption = None,
    as_json: JsonOption = False,
) -> None:
    """Revoke a host's certificate at the CA (e.g. its key leaked), then obtain a new one
    with a new key at once."""
    from nself_builtins.shared.certificates import renew_certificates, revoke_certificate
    from nself_sdk.console import ok

    from .report import show_renewal

    config = _config(env)
    revoked = revoke_certificate(config, name)
    if not as_json:
        ok(f"{name}: certificate {revoked['serial']} revoked")
    show_renewal(renew_certificates(config, only=(name,)), as_json, False)


@app.command("generate")
def generate() -> None:
    """Issue a new development certificate for BASE_DOMAIN and its subdomains (local)."""
    from nself_builtins.shared.nginx import is_running, test_then_reload
    from nself_builtins.shared.tls import dev_certificate
    from nself_sdk import NselfError, find_project, load_config, runtime, write_atomic
    from nself_sdk.console import ok

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
        rt = runtime(config)
        running = is_running(rt)
    except NselfError:
        running = False
    if running:
        test_then_reload(rt, "nginx configuration is invalid, not reloaded")
        ok("nginx reloaded with it")


@app.command("install")
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
