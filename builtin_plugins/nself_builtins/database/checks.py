"""The ``interrupted``, ``migrations`` and ``backups`` checks of ``nself doctor`` (``nself
health`` runs ``interrupted`` too)."""

from __future__ import annotations

from datetime import UTC, datetime

from nself_sdk import Config, Finding, NselfError, Stack

from .backups import Store, check_integrity
from .settle import bound_finisher, settle_recovery
from .target import Target

# A scheduled backup older than this (hours) means the schedule stopped working.
STALE_HOURS = 26


def findings(config: Config, stack: Stack, deep: bool, only: list[str]) -> list[Finding]:
    target = Target(config.project_dir, config, config.env, stack)
    found = []
    if not only or "interrupted" in only:
        found += interrupted(target)
    if not only or "migrations" in only:
        found += _migrations(target)
    if not only or "backups" in only:
        found += _backups(target, deep)
    return found


def interrupted(target: Target) -> list[Finding]:
    """A restore a crash interrupted is finished or undone here (``journal.settle``) and
    reported; the databases restores kept are listed (they take disk space)."""
    import psycopg

    from . import journal
    from .retention import size_text

    found = [  # a killed point-in-time recovery first: it may have left the server down
        Finding("interrupted", "warning", note, "nothing left to do: it was settled just now")
        if settled
        else Finding("interrupted", "error", note, "fix that, then run `nself doctor` again")
        for note, settled in settle_recovery(target, lambda _: None)
    ]
    try:
        transport = target.transport()
        with journal.Run(transport) as run:
            finish = bound_finisher(target, transport)(run)
            notes = journal.settle(run, transport.dbname, finish_bound=finish)
            kept = journal.kept(run.admin, transport.dbname)
    except NselfError as exc:
        return [*found, Finding("interrupted", "warning", f"not checked: {exc.message}", exc.hint)]
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return [*found, Finding("interrupted", "warning", f"not checked: {first}")]
    found += [
        Finding("interrupted", "warning", note, "nothing left to do: it was settled just now")
        for note in notes
    ]
    for db in kept:
        found.append(
            Finding(
                "interrupted",
                "ok",
                f"database {db.name} ({size_text(db.size)}) holds the data a restore replaced",
                "`nself db backup prune --yes` drops it",
            )
        )
    if not found:
        found.append(Finding("interrupted", "ok", "no interrupted restore"))
    return found


def _migrations(target: Target) -> list[Finding]:
    from .migrations import migration_status

    try:
        rows, problems = migration_status(target)
    except NselfError as exc:
        return [Finding("migrations", "warning", f"not checked: {exc.message}", exc.hint)]
    found = [Finding("migrations", "error", p.message, p.hint) for p in problems]
    pending = [f"{r['version']}_{r['name']}" for r in rows if r["state"] == "pending"]
    if pending:
        found.append(
            Finding(
                "migrations",
                "warning",
                f"{len(pending)} pending: {', '.join(pending[:5])}"
                + (" ..." if len(pending) > 5 else ""),
                "nself db migrate up",
            )
        )
    if not found:
        applied = sum(r["state"] == "applied" for r in rows)
        found.append(Finding("migrations", "ok", f"{applied} applied, none pending or changed"))
    return found


def _backups(target: Target, deep: bool) -> list[Finding]:
    config = target.config
    store = Store.for_project(config.project_dir, config)
    names = store.names()
    if not names:
        return [Finding("backups", "warning", "no backup yet", "nself db backup")]
    newest = names[0]
    try:
        manifest = check_integrity(store, newest)
    except NselfError as exc:
        return [Finding("backups", "error", f"newest backup {newest}: {exc.message}", exc.hint)]
    found = []
    age = datetime.now(UTC) - datetime.fromisoformat(str(manifest["created"]))
    hours = age.total_seconds() / 3600
    if config.text("BACKUP_SCHEDULE") and hours > STALE_HOURS:
        found.append(
            Finding(
                "backups",
                "warning",
                f"the newest backup is {hours:.0f} hours old although BACKUP_SCHEDULE is set",
                "see `nself logs db-backup`",
            )
        )
    verified = bool((store.verification(newest) or {}).get("ok"))
    if deep:
        from .backups import verify

        try:
            record = verify(target.transport(), store, newest)
            verified = bool(record.get("ok"))
            if not verified:
                found.append(
                    Finding(
                        "backups",
                        "error",
                        f"{newest} failed its restore test",
                        f"nself db backup verify {newest}",
                    )
                )
        except NselfError as exc:
            found.append(Finding("backups", "error", f"{newest}: {exc.message}", exc.hint))
    elif not verified:
        found.append(
            Finding(
                "backups",
                "warning",
                f"the newest backup {newest} has never been restored as a test",
                f"nself db backup verify {newest} (or nself doctor --deep)",
            )
        )
    if not found:
        proof = "restored as a test" if verified else "hashes match"
        found.append(Finding("backups", "ok", f"newest {newest}, {hours:.0f} h old, {proof}"))
    return found
