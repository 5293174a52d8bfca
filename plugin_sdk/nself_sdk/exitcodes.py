"""The one table of exit codes: every command exits with one of these, whoever wrote it.

The kernel maps an error's class to its code (``NselfError`` 1, ``UsageError`` 2, the
SDK's ``NotConfirmed`` 4); a command that reports an outcome (a check, a start) exits with
the constant for it. ``scripts/gen-reference`` writes the table into
docs/reference/commands.md.
"""

from __future__ import annotations

from nself.errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE

# The stack runs but is degraded: a service that is not core failed and was isolated, or
# is unhealthy; the core services are up.
EXIT_DEGRADED = 3
EXIT_NOT_CONFIRMED = 4

# (code, meaning): the reference's table, in this order.
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (EXIT_OK, "done; what was checked is healthy"),
    (
        EXIT_FAILED,
        "failed (`error:` and `hint:` on stderr), or a check found a problem: a core service "
        "failed to start, is unhealthy or is stopped (`start`, `restart`, `health`), an "
        "error finding "
        "(`doctor`, `harden`, `install`, `secrets audit`, `ssl status`, `plugin lint`, "
        "`db migrate status`), "
        "generated files out of date (`build --check`)",
    ),
    (
        EXIT_USAGE,
        "usage error: an unknown command, option, service, check or name; a value the "
        "option does not take",
    ),
    (
        EXIT_DEGRADED,
        "degraded: the core services run, but one that is not core (optional, plugin, "
        "custom, monitoring) failed and was isolated (`start`, `restart`), or is unhealthy, "
        "degraded or stopped (`health`); an optional service stopped on purpose (`nself "
        "admin stop`) is not expected to run and counts for nothing",
    ),
    (
        EXIT_NOT_CONFIRMED,
        "not confirmed, nothing changed: the command needs a confirmation it did not get "
        "(`--confirm` or `--yes`, or a yes on a terminal), or the answer was no",
    ),
    (EXIT_INTERRUPTED, "interrupted (Ctrl-C, or the input ended at a question)"),
)
# Commands whose exit status is another program's: `exec` (the command's), `db shell`
# (psql's). Listed under the table.
PASSED_THROUGH = ("exec", "db shell")
