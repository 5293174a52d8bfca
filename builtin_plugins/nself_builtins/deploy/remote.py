"""The remote side of a deploy, as small POSIX sh scripts ($1 is always the deploy path).

Layout on the server::

    DEPLOY_PATH/
      releases/<id>/     one folder per release (generated stack + project files), 0700
      current -> releases/<id>   the release serving now, switched atomically
      .lock/info         who deploys right now (a mkdir lock)
      deploys.log        one line per deploy, rollback and failure
"""

from __future__ import annotations

# Checks the engine, creates the layout, takes the lock; prints the current release.
PREPARE = r"""
P=$1; WHO=$2
command -v docker >/dev/null 2>&1 || { echo "docker is not installed" >&2; exit 40; }
docker info >/dev/null 2>&1 || {
  echo "the Docker engine is not running or this user may not use it" >&2; exit 40; }
compose version >/dev/null
umask 077
mkdir -p "$P/releases"
if ! mkdir "$P/.lock" 2>/dev/null; then
  echo "$(cat "$P/.lock/info" 2>/dev/null || echo unknown)"; exit 41
fi
printf '%s\n' "$WHO" > "$P/.lock/info"
readlink "$P/current" 2>/dev/null | sed 's#^releases/##' || true
"""

# Receives the release archive on stdin; the folder appears complete or not at all. Its
# contents keep the archive's modes (folders 0755 for services running as other users).
UPLOAD = r"""
P=$1; ID=$2
rm -rf "$P/releases/.incoming"
mkdir "$P/releases/.incoming"
chmod 700 "$P/releases/.incoming"
(umask 022 && tar -xzf - -C "$P/releases/.incoming" --no-same-owner)
rm -rf "$P/releases/$ID"
mv "$P/releases/.incoming" "$P/releases/$ID"
"""

# Pulls the release's images and builds the buildable ones, before anything is stopped.
IMAGES = r"""
P=$1; ID=$2; NAME=$3
cd "$P/releases/$ID"
set -- --project-name "$NAME" --file docker-compose.yml --env-file .env.computed \
  --project-directory . --ansi never
rc=0
compose "$@" pull --ignore-buildable --ignore-pull-failures --quiet 2>&1 || rc=$?
compose "$@" build --quiet 2>&1 || rc=$?
exit $rc
"""

# Brings the stack of one release up and waits for every service to be healthy; then
# lists the release's services with their config hash after a marker line: the gate must
# find each running in a container made from this release. Arguments after WAIT are the
# later stages of a rollout (replicas, comma separated): everything else goes first, then
# each stage once the one before is healthy, so a replicated service never stops whole.
# A name this release does not have is skipped (a rollback to a release without it).
UP = r"""
P=$1; ID=$2; NAME=$3; WAIT=$4; shift 4
STAGES=$*
cd "$P/releases/$ID"
set -- --project-name "$NAME" --file docker-compose.yml --env-file .env.computed \
  --project-directory . --ansi never
rc=0
if [ -z "$STAGES" ]; then
  compose "$@" up --detach --wait --wait-timeout "$WAIT" --remove-orphans 2>&1 || rc=$?
else
  all=$(compose "$@" config --services) || rc=$?
  held=" $(echo "$STAGES" | tr ',' ' ') "
  first=
  for s in $all; do
    case "$held" in *" $s "*) ;; *) first="$first $s" ;; esac
  done
  [ $rc -ne 0 ] || compose "$@" up --detach --wait --wait-timeout "$WAIT" --remove-orphans \
    $first 2>&1 || rc=$?
  for stage in $STAGES; do
    [ $rc -eq 0 ] || break
    names=
    for s in $(echo "$stage" | tr ',' ' '); do
      case " $(echo $all) " in *" $s "*) names="$names $s" ;; esac
    done
    [ -z "$names" ] || compose "$@" up --detach --wait --wait-timeout "$WAIT" --no-deps \
      $names 2>&1 || rc=$?
  done
fi
echo "@services"
compose "$@" config --hash '*' 2>/dev/null || true
exit $rc
"""

# The project's containers as JSON (one object per line or one array), then how often
# each has been restarted by its restart policy since it was last started by hand, and
# when it last started.
PS = r"""
P=$1; NAME=$2
compose --project-name "$NAME" ps --all --format json
ids=$(compose --project-name "$NAME" ps --all --quiet)
echo "@restarts"
[ -z "$ids" ] || docker inspect -f '{{.Id}} {{.RestartCount}} {{.State.StartedAt}}' $ids
"""

LOGS = r"""
P=$1; NAME=$2; SERVICE=$3
compose --project-name "$NAME" logs --no-color --tail 15 "$SERVICE" 2>&1 || true
"""

# Stops a first release that failed (nothing served before it).
STOP = r"""
P=$1; NAME=$2
compose --project-name "$NAME" stop 2>&1 || true
"""

# Points `current` at a release (atomically) and logs it.
SWITCH = r"""
P=$1; ID=$2; LINE=$3
ln -sfn "releases/$ID" "$P/.current.new"
mv -T "$P/.current.new" "$P/current" 2>/dev/null || mv -f "$P/.current.new" "$P/current"
printf '%s\n' "$LINE" >> "$P/deploys.log"
"""

# Removes the given releases, never the current one.
PRUNE = r"""
P=$1; shift
cur=$(readlink "$P/current" 2>/dev/null || true)
for r in "$@"; do
  [ "$cur" = "releases/$r" ] || rm -rf "$P/releases/$r"
done
"""

# Records an event without switching (a failed deploy, a refused rollback).
RECORD = r"""
P=$1; LINE=$2
mkdir -p "$P" && printf '%s\n' "$LINE" >> "$P/deploys.log"
"""

# Removes a release folder that failed (never the current one).
DISCARD = r"""
P=$1; ID=$2
[ "$(readlink "$P/current" 2>/dev/null)" = "releases/$ID" ] || rm -rf "$P/releases/$ID"
"""

# Releases the lock: ours (the info matches), or any with FORCE=1; prints what it held.
UNLOCK = r"""
P=$1; WHO=$2; FORCE=$3
held=$(cat "$P/.lock/info" 2>/dev/null) || { echo "-"; exit 0; }
if [ "$FORCE" = 1 ] || [ "$held" = "$WHO" ]; then rm -rf "$P/.lock"; fi
printf '%s\n' "$held"
"""

# Everything `nself releases` shows, in sections.
LIST = r"""
P=$1
echo "@current"; readlink "$P/current" 2>/dev/null | sed 's#^releases/##' || true
echo "@releases"; ls -1 "$P/releases" 2>/dev/null | sort || true
echo "@lock"; cat "$P/.lock/info" 2>/dev/null || true
echo "@log"; tail -n 1000 "$P/deploys.log" 2>/dev/null || true
"""
