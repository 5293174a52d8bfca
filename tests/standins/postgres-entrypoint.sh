#!/bin/bash
# Stand-in for the official postgres entrypoint (docker-library/postgres,
# 16/*/docker-entrypoint.sh), the steps nself relies on, in its order:
# - `set -Eeo pipefail`: a failing step ends the container;
# - as root: create PGDATA (chmod 700, failure ignored), chown to postgres what in
#   PGDATA and /var/run/postgresql postgres does not own (`find \! -user postgres`),
#   then re-exec itself as postgres (gosu there, setpriv here);
# - as postgres, only when PGDATA holds no PG_VERSION: POSTGRES_PASSWORD required (unless
#   POSTGRES_HOST_AUTH_METHOD=trust); `ls /docker-entrypoint-initdb.d/` (so a folder uid
#   999 cannot read stops the container before initdb); initdb with
#   POSTGRES_INITDB_ARGS; `host all all all <auth>` appended to pg_hba.conf; a temporary
#   server started with the SAME arguments as the real one plus listen_addresses=''
#   (so shared_preload_libraries applies while init scripts run: CREATE EXTENSION
#   pg_cron works there); CREATE DATABASE POSTGRES_DB; init files in glob order: *.sh
#   run when executable, sourced otherwise; *.sql and *.sql.gz through psql with
#   ON_ERROR_STOP into POSTGRES_DB; the temporary server stopped (fast);
# - exec the command.
set -Eeo pipefail
if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi
if [ "$1" = postgres ]; then
  user=${POSTGRES_USER:-postgres}
  db=${POSTGRES_DB:-$user}
  if [ "$(id -u)" = 0 ]; then
    mkdir -p "$PGDATA"
    chmod 00700 "$PGDATA" || :
    find "$PGDATA" \! -user postgres -exec chown postgres '{}' +
    find /var/run/postgresql \! -user postgres -exec chown postgres '{}' +
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$BASH_SOURCE" "$@"
  fi
  if [ ! -s "$PGDATA/PG_VERSION" ]; then
    if [ -z "$POSTGRES_PASSWORD" ] && [ "$POSTGRES_HOST_AUTH_METHOD" != trust ]; then
      echo "Error: Database is uninitialized and superuser password is not specified." >&2
      exit 1
    fi
    ls /docker-entrypoint-initdb.d/ >/dev/null
    eval 'initdb --username="$user" --pwfile=<(printf "%s\n" "$POSTGRES_PASSWORD") '"$POSTGRES_INITDB_ARGS"
    shift
    auth=$(postgres -C password_encryption "$@")
    printf '\nhost all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-$auth}" >>"$PGDATA/pg_hba.conf"
    printf "listen_addresses = '*'\n" >>"$PGDATA/postgresql.conf"
    export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
    PGUSER="$user" pg_ctl -D "$PGDATA" -o "$(printf '%q ' "$@" -c listen_addresses='')" -w start
    sql() { PGHOST= PGHOSTADDR= psql -v ON_ERROR_STOP=1 --username "$user" --no-password --no-psqlrc "$@"; }
    if [ -z "$(sql --dbname postgres --set db="$db" --tuples-only <<<"SELECT 1 FROM pg_database WHERE datname = :'db'")" ]; then
      sql --dbname postgres --set db="$db" <<<'CREATE DATABASE :"db"'
    fi
    for f in /docker-entrypoint-initdb.d/*; do
      case "$f" in
        *.sh) if [ -x "$f" ]; then "$f"; else . "$f"; fi ;;
        *.sql) sql --dbname "$db" -f "$f" ;;
        *.sql.gz) gunzip -c "$f" | sql --dbname "$db" ;;
        *) echo "ignoring $f" ;;
      esac
    done
    PGUSER="$user" pg_ctl -D "$PGDATA" -m fast -w stop
    unset PGPASSWORD
    set -- postgres "$@"
  fi
fi
exec "$@"
