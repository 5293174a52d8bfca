#!/bin/sh
# Stand-in for the official entrypoint of redis:7.4-alpine (docker-library/redis,
# 7.4/alpine/docker-entrypoint.sh). What it does, step by step, and so what this does:
# - runs under `set -e`: any failing step ends the container;
# - arguments starting with `-` or ending in `.conf` are given to redis-server;
# - started as root with redis-server: chown to redis everything under the working
#   directory (/data) that redis does not own yet, found with `find . \! -user redis`,
#   then re-exec itself as redis (gosu there, setpriv here);
# - as redis: when the umask is the default 0022, set it to 0077, so what redis writes
#   (appendonlydir, dump.rdb) is private to redis; then exec the command.
# A container started as another user (`user:` in Compose) skips the chown and the step
# down. With every capability dropped but CHOWN/SETGID/SETUID, root cannot search a 0700
# folder owned by redis: `find` fails on the second start, and the container exits.
set -e
case "$1" in
  -*|*.conf) set -- redis-server "$@" ;;
esac
if [ "$1" = redis-server ] && [ "$(id -u)" = 0 ]; then
  find . \! -user redis -exec chown redis '{}' +
  exec setpriv --reuid=redis --regid=redis --init-groups "$0" "$@"
fi
if [ "$(umask)" = 0022 ]; then
  umask 0077
fi
exec "$@"
