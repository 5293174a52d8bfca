"""Automatic backups inside the stack: the ``db-backup`` service.

With ``BACKUP_SCHEDULE`` set, ``nself build`` adds a small service that runs the
project's own PostgreSQL image (so ``pg_dump`` always matches the server) with a POSIX
shell script: every minute it checks the cron expression (UTC) and, when it matches,
writes a backup to ``./backups`` in exactly the format ``nself db backup`` writes
(custom-format dump in an exported snapshot, roles, sha256, manifest with the row counts
and schema of that snapshot), so ``nself db backup list/verify`` and ``nself db restore``
treat scheduled and manual backups alike. Retention runs after each backup: it never
deletes the newest backup nor the newest verified one, and only logs what it would
delete unless ``BACKUP_PRUNE=true``.
"""

from __future__ import annotations

from nself_sdk import Config, GeneratedFile, Mount, Problem, Service, Stack

FIELDS = 5
SERVICE = "db-backup"
SCRIPT = "db-backup/backup.sh"


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a five-field cron expression, or None."""
    parts = expr.split()
    if len(parts) != FIELDS:
        return f"needs 5 fields (minute hour day month weekday), got {len(parts)}"
    limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    for part, (low, high) in zip(parts, limits, strict=True):
        for piece in part.split(","):
            base, _, step = piece.partition("/")
            if step and (not step.isdigit() or int(step) == 0):
                return f"bad step in {piece!r}"
            if base == "*":
                continue
            lo, _, hi = base.partition("-")
            for number in (lo, hi) if hi else (lo,):
                if not number.isdigit() or not low <= int(number) <= high:
                    return f"{piece!r} is outside {low}-{high}"
            if hi and int(lo) > int(hi):
                return f"{piece!r} is an empty range"
    return None


def validate(config: Config) -> list[Problem]:
    problems = []
    schedule = config.text("BACKUP_SCHEDULE")
    if schedule and (why := cron_problem(schedule)):
        problems.append(
            Problem(
                "error",
                f"{config.where('BACKUP_SCHEDULE')}: BACKUP_SCHEDULE={schedule!r} {why}",
                'use cron syntax, e.g. BACKUP_SCHEDULE="0 2 * * *" (daily at 02:00 UTC)',
            )
        )
    if config.int("BACKUP_RETENTION_DAYS", 30) < 1:
        problems.append(
            Problem(
                "error",
                f"{config.where('BACKUP_RETENTION_DAYS')}: "
                "BACKUP_RETENTION_DAYS must be at least 1",
            )
        )
    if config.text("BACKUP_S3_BUCKET") and config.text("BACKUP_SCHEDULE"):
        problems.append(
            Problem(
                "warning",
                "scheduled backups stay on the host: the in-stack scheduler does not upload to "
                "S3 yet",
                "copy them with `nself db backup push --all` (e.g. from the host's cron)",
            )
        )
    return problems


def _postgres_image(config: Config) -> tuple[str, str | None]:
    """The image of the postgres service (the same tools as the server)."""
    image = config.text("POSTGRES_IMAGE")
    if image:
        return image, None
    return f"nself-postgres:16-{config.project_name}", "./postgres"


def services(config: Config) -> list[Service]:
    if not config.text("BACKUP_SCHEDULE"):
        return []
    image, build = _postgres_image(config)
    folder = config.text("BACKUP_DIR", "backups")
    return [
        Service(
            name=SERVICE,
            title="Scheduled backups",
            image=image,
            build=build,
            role="optional",
            entrypoint=("sh", "/nself/backup.sh"),
            command=("schedule",),
            environment={
                "PGHOST": "postgres",
                "PGUSER": "${POSTGRES_USER}",
                "PGPASSWORD": "${POSTGRES_PASSWORD}",
                "PGDATABASE": "${POSTGRES_DB}",
                "BACKUP_SCHEDULE": "${BACKUP_SCHEDULE}",
                "BACKUP_RETENTION_DAYS": "${BACKUP_RETENTION_DAYS}",
                "BACKUP_PRUNE": config.text("BACKUP_PRUNE", "false"),
                "TZ": "UTC",
            },
            depends_on=("postgres",),
            mounts=(
                Mount(f"./{folder.strip('/')}", "/backups"),
                Mount("./db-backup", "/nself", read_only=True),
            ),
            cap_add=("CHOWN", "DAC_OVERRIDE", "FOWNER"),
            stop_grace_period="120s",
        )
    ]


def files(config: Config, stack: Stack) -> list[GeneratedFile]:
    if stack.service(SERVICE) is None:
        return []
    from nself_sdk import nself_version

    from .backups import SCHEMA_SQL, TABLES_SQL

    script = (
        SCRIPT_TEMPLATE.replace("@TABLES_SQL@", TABLES_SQL.strip())
        .replace("@SCHEMA_SQL@", SCHEMA_SQL.strip())
        .replace("@NSELF_VERSION@", nself_version)
    )
    return [GeneratedFile(SCRIPT, script, mode=0o755)]


SCRIPT_TEMPLATE = r"""#!/bin/sh
# Generated by `nself build` (database plugin): scheduled backups inside the stack.
# Writes backups in the format of `nself db backup`; see docs/database.md.
#   backup.sh schedule   run forever, backing up when BACKUP_SCHEDULE (UTC) matches
#   backup.sh now        take one backup now
#   backup.sh match "EXPR" "MIN HOUR DAY MONTH WEEKDAY"   exit 0 when EXPR matches
set -eu
set -f
umask 077
DIR=/backups
NSELF_VERSION="@NSELF_VERSION@"

log() { echo "db-backup: $*"; }

num() { v=${1#0}; echo "${v:-0}"; }

# field_matches VALUE SPEC MIN MAX
field_matches() {
  value=$1; spec=$2; min=$3; max=$4
  old_ifs=$IFS; IFS=,
  for part in $spec; do
    step=1; range=$part
    case $part in */*) step=${part#*/}; range=${part%/*} ;; esac
    if [ "$range" = "*" ]; then lo=$min; hi=$max
    else
      case $range in *-*) lo=${range%-*}; hi=${range#*-} ;; *) lo=$range; hi=$range ;; esac
      case $part in */*) [ "$lo" = "$hi" ] && hi=$max ;; esac
    fi
    if [ "$value" -ge "$lo" ] && [ "$value" -le "$hi" ] && [ $(( (value - lo) % step )) -eq 0 ]
    then IFS=$old_ifs; return 0; fi
  done
  IFS=$old_ifs
  return 1
}

# cron_matches "EXPR" "MIN HOUR DAY MONTH WEEKDAY"
cron_matches() {
  expr=$1
  set -- $2
  m=$(num "$1"); h=$(num "$2"); d=$(num "$3"); mo=$(num "$4"); w=$(num "$5")
  set -- $expr
  [ $# -eq 5 ] || { log "BACKUP_SCHEDULE needs 5 fields"; return 1; }
  field_matches "$m" "$1" 0 59 || return 1
  field_matches "$h" "$2" 0 23 || return 1
  field_matches "$mo" "$4" 1 12 || return 1
  dom=1; dow=1
  field_matches "$d" "$3" 1 31 || dom=0
  { field_matches "$w" "$5" 0 7 || { [ "$w" -eq 0 ] && field_matches 7 "$5" 0 7; }; } || dow=0
  # cron: when both day fields are restricted, either one may match
  if [ "$3" != "*" ] && [ "$5" != "*" ]; then [ $dom -eq 1 ] || [ $dow -eq 1 ]
  else [ $dom -eq 1 ] && [ $dow -eq 1 ]; fi
}

backup() {
  stamp=$(date -u +%Y-%m-%d-%H-%M)
  name="backup-$stamp-scheduled.dump"
  [ -e "$DIR/$name.json" ] && return 0
  tmp="$DIR/.$name.part"; gtmp="$DIR/.$name.globals.part"; facts="$DIR/.$name.facts"
  rm -f "$tmp" "$gtmp" "$facts" "$tmp.failed"
  export NSELF_DUMP_TMP="$tmp"
  psql -X -q -At -v ON_ERROR_STOP=1 <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SELECT pg_export_snapshot() AS snap \gset
\setenv NSELF_SNAPSHOT :snap
\! sh /nself/backup.sh dump
\o $facts
WITH t(nspname, relname) AS (
@TABLES_SQL@
), counts AS (
  SELECT nspname || '.' || relname AS name,
         (xpath('/row/c/text()', query_to_xml(format('SELECT count(*) AS c FROM %I.%I',
                nspname, relname), false, true, '')))[1]::text::bigint AS n
    FROM t
), schema_lines(l) AS (
@SCHEMA_SQL@
)
SELECT json_build_object(
  'tables', (SELECT coalesce(json_object_agg(name, n), '{}'::json) FROM counts),
  'rows', (SELECT coalesce(sum(n), 0) FROM counts),
  'schema', (SELECT coalesce(json_agg(l ORDER BY l COLLATE "C"), '[]'::json) FROM schema_lines),
  'schema_sha256', (SELECT encode(sha256(convert_to(
      coalesce(string_agg(l, E'\n' ORDER BY l COLLATE "C"), ''), 'UTF8')), 'hex')
    FROM schema_lines),
  'postgres_version', current_setting('server_version'),
  'database', current_database());
\o
COMMIT;
SQL
  if [ -e "$tmp.failed" ] || [ ! -s "$tmp" ]; then
    rm -f "$tmp" "$tmp.failed" "$facts"; log "pg_dump failed"; return 1
  fi
  pg_dumpall --globals-only --no-password -f "$gtmp" 2>/dev/null \
    || pg_dumpall --globals-only --no-role-passwords --no-password -f "$gtmp"
  sync "$tmp" "$gtmp"
  size=$(wc -c < "$tmp" | tr -d ' ')
  sum=$(sha256sum "$tmp" | cut -d' ' -f1)
  gsum=$(sha256sum "$gtmp" | cut -d' ' -f1)
  owner=$(stat -c %u:%g "$DIR")
  mv "$gtmp" "$DIR/$name.globals.sql"
  mv "$tmp" "$DIR/$name"
  rest=$(cat "$facts"); rest=${rest#\{}
  created=$(date -u +%Y-%m-%dT%H:%M:%S+00:00)
  {
    printf '{"format": 1, "name": "%s", "label": "scheduled", "created": "%s", ' \
      "$name" "$created"
    printf '"size": %s, "sha256": "%s", "globals_sha256": "%s", ' "$size" "$sum" "$gsum"
    printf '"nself_version": "%s", "scheduled": true, %s\n' "$NSELF_VERSION" "$rest"
  } > "$facts.json"
  sync "$facts.json"
  chown "$owner" "$DIR/$name" "$DIR/$name.globals.sql" "$facts.json" 2>/dev/null || true
  mv "$facts.json" "$DIR/$name.json"
  rm -f "$facts"
  sync "$DIR"
  log "wrote $name ($size bytes, sha256 $sum)"
}

prune() {
  days=${BACKUP_RETENTION_DAYS:-30}
  newest=""; verified=""
  for manifest in $(ls -1 "$DIR" | grep '\.dump\.json$' | sort -r); do
    name=${manifest%.json}
    [ -n "$newest" ] || { newest=$name; continue; }
    if [ -z "$verified" ] && grep -q '"ok": true' "$DIR/$name.verified.json" 2>/dev/null; then
      verified=$name; continue
    fi
    if [ -n "$(find "$DIR/$manifest" -mtime +"$days" 2>/dev/null)" ]; then
      if [ "${BACKUP_PRUNE:-false}" = "true" ]; then
        rm -f "$DIR/$manifest" "$DIR/$name" "$DIR/$name.globals.sql" "$DIR/$name.verified.json"
        log "retention: deleted $name (older than $days days)"
      else
        log "retention: would delete $name (older than $days days; set BACKUP_PRUNE=true)"
      fi
    fi
  done
}

case "${1:-schedule}" in
  match) cron_matches "$2" "$3" ;;
  dump)  # called by psql inside the snapshot transaction of backup()
    pg_dump -Fc --no-password --snapshot="$NSELF_SNAPSHOT" -f "$NSELF_DUMP_TMP" \
      || touch "$NSELF_DUMP_TMP.failed" ;;
  now) backup && prune ;;
  schedule)
    [ -n "${BACKUP_SCHEDULE:-}" ] || { log "BACKUP_SCHEDULE is empty"; exit 1; }
    log "schedule: $BACKUP_SCHEDULE (UTC) into $DIR"
    last=""
    while true; do
      minute=$(date -u +%Y%m%d%H%M)
      if [ "$minute" != "$last" ]; then
        last=$minute
        if cron_matches "$BACKUP_SCHEDULE" "$(date -u '+%M %H %d %m %w')"; then
          backup && prune || log "backup failed; will try at the next scheduled time"
        fi
      fi
      sleep 20
    done ;;
  *) echo "usage: backup.sh schedule|now|match EXPR FIELDS" >&2; exit 2 ;;
esac
"""
