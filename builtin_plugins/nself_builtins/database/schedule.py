"""Automatic backups inside the stack: the ``db-backup`` service.

With ``BACKUP_SCHEDULE`` set, ``nself build`` adds a small service that runs the
project's own PostgreSQL image (so ``pg_dump`` always matches the server) with a POSIX
shell script: every minute it checks the cron expression (UTC) and, when it matches,
writes a backup to ``./backups`` in exactly the format ``nself db backup`` writes
(custom-format dump in an exported snapshot, roles, sha256, manifest with the row counts
and schema of that snapshot), so ``nself db backup list/verify`` and ``nself db restore``
treat scheduled and manual backups alike. With ``BACKUP_S3_BUCKET`` set, each backup is
then copied to S3 as ``nself db backup push`` does it (same keys, sha256 metadata checked
after upload, manifest last), signed by curl's SigV4. Retention runs after each backup:
it never deletes the newest backup nor the newest verified one, and only logs what it
would delete unless ``BACKUP_PRUNE=true``.
"""

from __future__ import annotations

from nself_builtins.shared.images import OFFICIAL_DEBIAN
from nself_sdk import Config, GeneratedFile, ImageContract, Mount, Problem, Service, Stack
from nself_sdk.declare import IMAGE_SETTING_LABEL
from nself_sdk.envfiles import secrets_file

FIELDS = 5
SERVICE = "db-backup"
SCRIPT = "db-backup/backup.sh"
# The stack's PostgreSQL image with the backup script as its entrypoint instead of the
# official one: it runs as root, never stepping down to postgres.
SCHEDULER = ImageContract(
    image="postgres:16-bookworm",
    source=(
        "https://github.com/docker-library/postgres/blob/master/16/bookworm/Dockerfile",
        "https://github.com/docker-library/official-images/blob/master/library/postgres",
    ),
    user=0,
    # CHOWN: each backup is given to the owner of the backups folder; DAC_OVERRIDE: root
    # writes into that folder of the host's user; FOWNER: it replaces and prunes the
    # files it gave away.
    capabilities=("CHOWN", "DAC_OVERRIDE", "FOWNER"),
    writable=(),
    writes=("/backups",),
    # The official image's client tools and coreutils; curl from nself's Dockerfile (with
    # POSTGRES_IMAGE set, uploads to S3 are skipped when the image has no curl).
    tools=("sh", "psql", "pg_dump", "pg_dumpall", "sha256sum", "curl"),
    # libpq's PG*, and what the backup script reads (BACKUP_*, NSELF_PROJECT, ...).
    env=("PG*", "BACKUP_*", "NSELF_*", "TZ"),
    required=("PGHOST", "PGUSER", "PGPASSWORD", "PGDATABASE", "BACKUP_SCHEDULE"),
    ports=(),
    platforms=OFFICIAL_DEBIAN,
)


def cron_problem(expr: str) -> str | None:
    """Why ``expr`` is not a five-field cron expression, or None."""
    parts = expr.split()
    if len(parts) != FIELDS:
        return f"needs 5 fields (minute hour day month weekday), got {len(parts)}"
    limits = [(0, 59), (0, 23), (1, 31), (1, 12), (0, 7)]
    for part, (low, high) in zip(parts, limits, strict=True):
        for piece in part.split(","):
            base, _, step = piece.partition("/")
            if step and (not (step.isascii() and step.isdigit()) or int(step) == 0):
                return f"bad step in {piece!r}"
            if base == "*":
                continue
            lo, _, hi = base.partition("-")
            for number in (lo, hi) if hi else (lo,):
                if not (number.isascii() and number.isdigit()) or not low <= int(number) <= high:
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
    if config.int("PITR_RETENTION_DAYS", 7) < 1:
        problems.append(
            Problem(
                "error",
                f"{config.where('PITR_RETENTION_DAYS')}: PITR_RETENTION_DAYS must be at least 1",
                "the point-in-time recovery window to keep, in days",
            )
        )
    if (
        config.text("BACKUP_SCHEDULE")
        and config.text("BACKUP_S3_BUCKET")
        and not (config.text("BACKUP_S3_ACCESS_KEY") and config.text("BACKUP_S3_SECRET_KEY"))
    ):
        problems.append(
            Problem(
                "warning",
                "scheduled backups will not reach S3: BACKUP_S3_ACCESS_KEY and "
                "BACKUP_S3_SECRET_KEY are not both set",
                f"set both (the secret in {secrets_file(config.env)}) for the scheduler's uploads",
            )
        )
    return problems


def _postgres_image(config: Config) -> tuple[str, str | None]:
    """The image of the postgres service (the same tools as the server)."""
    image = config.text("POSTGRES_IMAGE")
    if image:
        return image, None
    return config.text("POSTGRES_BUILT_IMAGE"), "./postgres"


def services(config: Config) -> list[Service]:
    if not config.text("BACKUP_SCHEDULE"):
        return []
    image, build = _postgres_image(config)
    folder = config.text("BACKUP_DIR", "backups")
    s3 = {}
    if config.text("BACKUP_S3_BUCKET"):
        s3 = {
            name: f"${{{name}}}"
            for name in (
                "BACKUP_S3_BUCKET",
                "BACKUP_S3_ENDPOINT",
                "BACKUP_S3_REGION",
                "BACKUP_S3_ACCESS_KEY",
                "BACKUP_S3_SECRET_KEY",
            )
        }
        s3["BACKUP_S3_PREFIX"] = config.project_name  # the keys `nself db backup push` uses
    return [
        Service(
            name=SERVICE,
            title="Scheduled backups",
            image=image,
            build=build,
            # A configured schedule is part of the stack: a plain `nself start` runs it,
            # and a scheduler that does not start fails the start like the database.
            role="core",
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
                "BACKUP_PROJECT": config.project_name,  # the manifest says whose backup it is
                **s3,
            },
            depends_on=("postgres",),
            mounts=(
                Mount(f"./{folder.strip('/')}", "/backups"),
                Mount("./db-backup", "/nself", read_only=True),
            ),
            cap_add=("CHOWN", "DAC_OVERRIDE", "FOWNER"),
            stop_grace_period="120s",
            # the same image as the database, so its tools match the server's
            labels={IMAGE_SETTING_LABEL: "POSTGRES_IMAGE"},
            contract=SCHEDULER,
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
#   backup.sh now        take one backup now (and copy it to S3 when a bucket is set)
#   backup.sh upload NAME   copy backup NAME to S3
#   backup.sh match "EXPR" "MIN HOUR DAY MONTH WEEKDAY"   exit 0 when EXPR matches
set -eu
set -f
umask 077
DIR=${NSELF_BACKUP_DIR:-/backups}
NSELF_VERSION="@NSELF_VERSION@"
EMPTY_SHA256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855

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
  # dumps hold every row and role: never committed, whoever created the folder
  [ -e "$DIR/.gitignore" ] \
    || printf '# nself: backups stay out of version control\n*\n' > "$DIR/.gitignore"
  stamp=$(date -u +%Y-%m-%d-%H-%M)
  name="backup-$stamp-scheduled.dump"
  [ -e "$DIR/$name.json" ] && return 0
  tmp="$DIR/.$name.part"; gtmp="$DIR/.$name.globals.part"; facts="$DIR/.$name.facts"
  rm -f "$tmp" "$gtmp" "$facts" "$tmp.failed"
  export NSELF_DUMP_TMP="$tmp"
  psql -X -q -At -v ON_ERROR_STOP=1 -v project="${BACKUP_PROJECT:-}" <<SQL
BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY;
SET LOCAL search_path TO "\$user", public;
SET LOCAL statement_timeout = 0;
SET LOCAL idle_in_transaction_session_timeout = 0;
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
  'system_identifier', (SELECT system_identifier::text FROM pg_control_system()),
  'project', nullif(:'project', ''),
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

quoted() { printf '%s' "$1" | sed 's/[\\"]/\\&/g'; }

# s3 FILE [curl args...]: one signed request for the object of FILE
s3() {
  file=$1; shift
  region=${BACKUP_S3_REGION:-us-east-1}
  key="${BACKUP_S3_PREFIX:-nself}/$file"
  if [ -n "${BACKUP_S3_ENDPOINT:-}" ]; then  # MinIO and other stores: path style
    url="${BACKUP_S3_ENDPOINT%/}/$BACKUP_S3_BUCKET/$key"
  else
    url="https://$BACKUP_S3_BUCKET.s3.$region.amazonaws.com/$key"
  fi
  # The credentials go through stdin, never the command line (`ps` shows that); curl's
  # config syntax needs \ and " escaped inside quotes.
  printf 'user = "%s:%s"\n' "$(quoted "${BACKUP_S3_ACCESS_KEY:-}")" \
    "$(quoted "${BACKUP_S3_SECRET_KEY:-}")" \
    | curl -K - -fsS --retry 3 --connect-timeout 10 --aws-sigv4 "aws:amz:$region:s3" "$@" "$url"
}

# upload NAME: copy a backup to S3 like `nself db backup push`, the manifest last
upload() {
  [ -n "${BACKUP_S3_BUCKET:-}" ] || return 0
  command -v curl >/dev/null 2>&1 || { log "S3: no curl in this image, $1 stays local"; return 1; }
  files="$1 $1.globals.sql"
  [ -e "$DIR/$1.verified.json" ] && files="$files $1.verified.json"
  for file in $files "$1.json"; do
    sum=$(sha256sum "$DIR/$file" | cut -d' ' -f1)
    size=$(wc -c < "$DIR/$file" | tr -d ' ')
    s3 "$file" -o /dev/null -T "$DIR/$file" \
      -H "x-amz-content-sha256: $sum" -H "x-amz-meta-sha256: $sum" \
      || { log "S3: upload of $file failed"; return 1; }
    head=$(s3 "$file" -I -H "x-amz-content-sha256: $EMPTY_SHA256") \
      || { log "S3: $file is missing after upload"; return 1; }
    head=$(echo "$head" | tr -d '\r')
    echo "$head" | grep -qix "x-amz-meta-sha256: $sum" \
      && echo "$head" | grep -qix "content-length: $size" \
      || { log "S3: $file does not match after upload"; return 1; }
  done
  log "S3: copied $1 to s3://$BACKUP_S3_BUCKET/${BACKUP_S3_PREFIX:-nself}/"
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
  now)
    backup || exit 1
    status=0; upload "$name" || status=1
    prune; exit $status ;;
  upload) upload "$2" ;;
  schedule)
    [ -n "${BACKUP_SCHEDULE:-}" ] || { log "BACKUP_SCHEDULE is empty"; exit 1; }
    # what a backup of this scheduler left when it was stopped halfway
    find "$DIR" -maxdepth 1 -type f -name '.backup-*-scheduled.dump*' \( -name '*.part' \
      -o -name '*.facts' -o -name '*.facts.json' -o -name '*.failed' \) -delete 2>/dev/null || true
    log "schedule: $BACKUP_SCHEDULE (UTC) into $DIR"
    last=""
    while true; do
      minute=$(date -u +%Y%m%d%H%M)
      if [ "$minute" != "$last" ]; then
        last=$minute
        if cron_matches "$BACKUP_SCHEDULE" "$(date -u '+%M %H %d %m %w')"; then
          if backup; then
            upload "$name" || log "S3 copy failed; push it with \`nself db backup push $name\`"
            prune
          else
            log "backup failed; will try at the next scheduled time"
          fi
        fi
      fi
      sleep 20
    done ;;
  *) echo "usage: backup.sh schedule|now|upload NAME|match EXPR FIELDS" >&2; exit 2 ;;
esac
"""
