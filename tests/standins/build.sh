#!/usr/bin/env bash
# Build local stand-in images for the services the test suites run.
# No container registry is reachable from CI, so these are made from Debian
# packages and honour the official images' contracts (env names, paths, init
# scripts). Cached by tag: a tag that exists is not rebuilt.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
tag=${NSELF_STANDIN_TAG:-4}
base="nself-standin/base:$tag"
work=${NSELF_STANDIN_WORK:-/var/tmp/nself-standin}

have() { docker image inspect "$1" >/dev/null 2>&1; }

if ! have "$base"; then
  rm -rf "$work"; mkdir -p "$work"
  root="$work/rootfs"
  debootstrap --variant=minbase trixie "$root" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"; chmod +x "$root/usr/sbin/policy-rc.d"
  mount --bind /proc "$root/proc"
  trap 'umount "$root/proc" 2>/dev/null || true' EXIT
  chroot "$root" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    postgresql-17 postgresql-17-pgvector postgresql-17-cron postgresql-17-partman \
    nginx redis-server nodejs busybox-static ca-certificates openssl curl python3 >"$work/apt.log" 2>&1 \
    || { tail -20 "$work/apt.log"; exit 1; }
  chroot "$root" apt-get clean
  umount "$root/proc"; trap - EXIT
  rm -rf "$root"/var/lib/apt/lists/* "$root"/usr/share/doc/* "$root"/usr/share/man/*
  tar -C "$root" -c . | docker import - "$base" >/dev/null
  rm -rf "$work"
fi

# The base is cached by tag; each service image also carries a hash of its recipe, so a
# changed Dockerfile (or entrypoint) rebuilds that image in seconds, never the base.
# A stand-in's recipe is its Dockerfile and every file named after it (<svc>-*).
recipe() {
  cat "$here/$1.Dockerfile"
  for f in "$here/$1"-*; do [ ! -f "$f" ] || cat "$f"; done
}
for svc in postgres nginx redis http certbot mailpit auth functions pgbouncer minio; do
  img="nself-standin/$svc:$tag"
  sum=$(recipe "$svc" | sha256sum | cut -c1-16)
  current=$(docker image inspect -f '{{index .Config.Labels "org.nself.standin.recipe"}}' "$img" 2>/dev/null || true)
  [ "$current" = "$sum" ] && continue
  out=$(docker build -q --build-arg BASE="$base" --label "org.nself.standin.recipe=$sum" \
    -t "$img" -f "$here/$svc.Dockerfile" "$here" 2>&1) || { echo "$out" >&2; exit 1; }
done
echo "stand-in images ready (tag $tag)"
