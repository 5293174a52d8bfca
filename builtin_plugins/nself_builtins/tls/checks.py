"""The ``ssl`` check of ``nself doctor``: the certificate nginx serves."""

from __future__ import annotations

from typing import Any

from .certs import certificate_report


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
