"""What people read about ACME certificates: ``ssl status``, ``ssl renew``, doctor."""

from __future__ import annotations

from typing import Any

from nself_sdk import Config, NselfError


def problems(row: dict[str, Any]) -> list[tuple[str, str]]:
    """(level, message) for one certificate of the renewer's status."""
    name = row["name"]
    found: list[tuple[str, str]] = []
    failed = f": {row['last_error']}" if row.get("last_error") else ""
    retry = f"; next try {row['next_attempt'][:16]}" if row.get("next_attempt") else ""
    if row.get("not_after") is None:
        found.append(("error", f"{name}: no certificate at all (the renewer did not start)"))
    elif row.get("expired"):
        found.append(
            (
                "error",
                f"{name}: nginx serves an EXPIRED certificate (since {row['not_after'][:10]})"
                f"{failed}",
            )
        )
    elif row.get("placeholder"):
        found.append(
            (
                "error",
                f"{name}: no certificate from the CA yet, nginx serves a self-signed "
                f"placeholder{failed}{retry}",
            )
        )
    elif row.get("failures"):
        level = "error" if (row.get("days_left") or 0) < 7 else "warning"
        found.append((level, f"{name}: renewal failed {row['failures']} time(s){failed}{retry}"))
    elif row.get("revoked"):
        found.append(("error", f"{name}: nginx serves a revoked certificate"))
    return found


def acme_status(config: Config, as_json: bool) -> None:
    from nself_builtins.shared.certificates import certificate_status
    from nself_sdk.console import emit_json, info, ok, warn

    rows = certificate_status(config)
    found = [(level, text) for row in rows for level, text in problems(row)]
    if as_json:
        emit_json(
            {
                "ok": not found,
                "mode": "acme",
                "env": config.env,
                "certificates": rows,
                "problems": [{"level": level, "message": text} for level, text in found],
            }
        )
    else:
        for row in rows:
            bad = problems(row)
            show = warn if bad else ok
            if row.get("placeholder"):
                what = "self-signed placeholder"
            else:
                what = (row.get("issuer") or "?").removeprefix("CN=")
            until = f"until {row['not_after'][:10]} ({row['days_left']} days)"
            show(f"{', '.join(row['names'])}: {what}, {until}")
            last = row.get("last_attempt")
            if last:
                outcome = f"failed: {row['last_error']}" if row.get("last_error") else "ok"
                info(f"  last renewal attempt {last[:16].replace('T', ' ')}: {outcome}")
            if row.get("due") and not bad:
                info(f"  due: {row['due']}")
    if found:
        raise NselfError(
            "; ".join(text for _level, text in found),
            "fix what the error names (DNS pointing here, port 80 reachable), then "
            "`nself ssl renew`; `nself logs acme` shows each attempt",
        )


def show_renewal(results: list[dict[str, Any]], as_json: bool, dry_run: bool) -> None:
    from nself_sdk.console import emit_json, info, ok, warn

    failed = [r for r in results if r.get("action") in ("failed", "waiting")]
    if as_json:
        emit_json({"ok": not failed, "dry_run": dry_run, "results": results})
    else:
        for r in results:
            names = ", ".join(r["names"])
            action = r.get("action")
            if action == "renewed":
                ok(f"{names}: new certificate installed ({r['reason']})")
            elif action == "dry-run-ok":
                ok(f"{names}: the staging CA issued a test certificate (not installed)")
            elif action == "not-due":
                info(f"{names}: not due")
            elif action == "waiting":
                warn(f"{names}: waits until {r.get('until')} ({r.get('error') or 'backoff'})")
            else:
                warn(f"{names}: {r.get('error')}")
    if failed:
        raise NselfError(
            "; ".join(str(r.get("error") or f"{r['name']} waits") for r in failed),
            "fix what the error names, then `nself ssl renew` (a rate limit of the CA is "
            "waited out: see `nself ssl status`)",
        )
