#!/bin/sh
# Stand-in for minio/minio's /usr/bin/docker-entrypoint.sh (dockerscripts/
# docker-entrypoint.sh): any command that is not `minio` gets `minio` in front of it
# (`server /data ...` runs `minio server /data ...`); no user switch unless
# MINIO_USERNAME and MINIO_GROUPNAME are set, which the stand-in refuses rather than fake.
if [ "${1}" != "minio" ] && [ -n "${1}" ]; then
  set -- minio "$@"
fi
if [ -n "${MINIO_USERNAME}" ] && [ -n "${MINIO_GROUPNAME}" ]; then
  echo "stand-in: MINIO_USERNAME/MINIO_GROUPNAME are not imitated" >&2
  exit 1
fi
exec "$@"
