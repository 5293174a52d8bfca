"""The ``ssl`` check of ``nself doctor``: the certificates nginx serves."""

from __future__ import annotations

from typing import Any, Literal

from .certs import certificate_report


def acme_findings(config: Any, unchecked: Literal["warning", "error"] = "error") -> list[Any]:
    """Each ACME certificate as the renewer sees it: expired, a placeholder, failing.
    ``unchecked``: the level when the renewer cannot be asked (its stack is not running)."""
    from nself_builtins.shared.certificates import certificate_status
    from nself_sdk import Finding, NselfError

    from .report import problems

    try:
        rows = certificate_status(config)
    except NselfError as exc:
        return [Finding("ssl", unchecked, f"certificates not checked: {exc.message}", exc.hint)]
    findings = []
    hint = "fix what it names, then `nself ssl renew`; `nself logs acme` shows each attempt"
    for row in rows:
        found = problems(row)
        for level, text in found:
            findings.append(Finding("ssl", level, text, hint))  # type: ignore[arg-type]
        if not found:
            until = f"valid until {row['not_after'][:10]} ({row['days_left']} days)"
            findings.append(Finding("ssl", "ok", f"{row['name']}: from the CA, {until}"))
    return findings


def ssl_findings(
    config: Any, stack: Any, unchecked: Literal["warning", "error"] = "error"
) -> list[Any]:
    from nself_builtins.shared.tls import ssl_mode
    from nself_sdk import Finding, NselfError

    if ssl_mode(config) == "acme":
        return acme_findings(config, unchecked)
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
