"""The ``replication`` check of ``nself doctor``: each replica streams, and no replication
slot keeps WAL on the primary for a client that is gone (an inactive slot holds every
segment since its client left, until the primary's disk is full)."""

from __future__ import annotations

from nself_builtins.shared import replicas as names
from nself_sdk import Config, Finding, NselfError, Stack

CHECK = "replication"


def replication(config: Config, stack: Stack) -> list[Finding]:
    from .replicas import slots
    from .retention import size_text
    from .target import Target

    configured = names.names(config)
    try:
        found = slots(Target(config.project_dir, config, config.env, stack).transport())
    except NselfError as exc:
        if not configured:  # no slot of a stopped primary keeps WAL growing
            return [
                Finding(CHECK, "ok", f"no replicas (the primary's slots not read: {exc.message})")
            ]
        return [Finding(CHECK, "warning", f"not checked: {exc.message}", exc.hint)]
    from nself_builtins.shared.placement import runs_here

    # On an environment's server: its logs are read with --env, and a replica added since
    # the last deploy is not there yet.
    remote = "" if runs_here(config) else f" --env {config.env}"
    by_slot = {s.name: s for s in found}
    findings: list[Finding] = []
    for name in configured:
        slot = by_slot.get(names.slot(name))
        if slot is None:
            findings.append(
                Finding(
                    CHECK,
                    "error",
                    f"replica {name} has no replication slot on the primary",
                    f"never set up there: finish it with `nself db replica add {name}{remote}`; "
                    "set up before (a point-in-time recovery or a restored data folder drops "
                    f"slots): `nself db replica remove {name}{remote}`, then add it again",
                )
            )
        elif slot.state == "streaming":
            lag = f"{slot.lag_bytes or 0} bytes behind"
            findings.append(Finding(CHECK, "ok", f"replica {name} streams ({lag})"))
        elif slot.state:
            findings.append(Finding(CHECK, "ok", f"replica {name} is in state {slot.state}"))
    for slot in found:
        if slot.active:
            continue
        owner = names.name_of_slot(slot.name)
        held = size_text(slot.retained or 0) if slot.retained is not None else "WAL"
        if owner is not None and owner in configured:
            findings.append(
                Finding(
                    CHECK,
                    "warning",
                    f"replica {owner} is not connected; its slot {slot.name} keeps {held} of "
                    "WAL on the primary, and more with every write",
                    (f"added since the last deploy? nself deploy {config.env}; " if remote else "")
                    + f"see `nself logs {names.service(owner)}{remote}`; if it is gone for "
                    f"good: nself db replica remove {owner}{remote}",
                )
            )
            continue
        hint = (
            f"nself db replica remove {owner}{remote}"
            if owner is not None
            else f"if nothing will use it again: SELECT pg_drop_replication_slot('{slot.name}')"
        )
        findings.append(
            Finding(
                CHECK,
                "warning",
                f"the replication slot {slot.name} is inactive and keeps {held} of WAL on the "
                "primary" + (" (its replica was removed)" if owner is not None else ""),
                hint,
            )
        )
    if not findings:
        findings.append(Finding(CHECK, "ok", "no replicas, no replication slot"))
    return findings
