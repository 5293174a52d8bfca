#!/bin/sh
# Stand-in for edoburu/docker-pgbouncer's entrypoint.sh, the steps nself relies on, in its
# order, under `set -e` as the image's postgres user (uid 70):
# - the auth file is ${AUTH_FILE:-/etc/pgbouncer/userlist.txt}, created empty when missing;
# - with DB_USER and DB_PASSWORD, and DB_USER not listed yet, `"DB_USER" "pass"` is appended
#   to /etc/pgbouncer/userlist.txt: the password as it is for AUTH_TYPE plain or
#   scram-sha-256, else md5(password + user) as "md5<hex>";
# - only when /etc/pgbouncer/pgbouncer.ini does not exist is one written from the env
#   (DB_HOST required: the container stops without it); a mounted file is used as it is;
# - exec the command.
# Not imitated: DATABASE_URL parsing, ADMIN_*/STATS_* users, the many ini knobs.
set -e
dir=/etc/pgbouncer
auth="${AUTH_FILE:-$dir/userlist.txt}"
[ -e "$auth" ] || touch "$auth"
if [ -n "$DB_USER" ] && [ -n "$DB_PASSWORD" ] && ! grep -q "^\"$DB_USER\"" "$auth"; then
  case "$AUTH_TYPE" in
    plain|scram-sha-256) pass="$DB_PASSWORD" ;;
    *) pass="md5$(printf '%s' "$DB_PASSWORD$DB_USER" | md5sum | cut -d' ' -f1)" ;;
  esac
  printf '"%s" "%s"\n' "$DB_USER" "$pass" >>"$dir/userlist.txt"
  echo "Wrote authentication credentials to $dir/userlist.txt"
fi
if [ ! -f "$dir/pgbouncer.ini" ]; then
  : "${DB_HOST:?Setup pgbouncer config error! You must set DB_HOST env}"
  cat >"$dir/pgbouncer.ini" <<INI
[databases]
${DB_NAME:-*} = host=$DB_HOST port=${DB_PORT:-5432} auth_user=${DB_USER:-postgres}
[pgbouncer]
listen_addr = ${LISTEN_ADDR:-0.0.0.0}
listen_port = ${LISTEN_PORT:-5432}
unix_socket_dir =
auth_file = $auth
auth_type = ${AUTH_TYPE:-md5}
admin_users = ${ADMIN_USERS:-postgres}
INI
fi
exec "$@"
