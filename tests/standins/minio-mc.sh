#!/bin/sh
# Stand-in for the `mc` client the image ships in /opt/bin (Dockerfile.release): only
# `mc ready ALIAS`, with mc's built-in alias `local` (http://localhost:9000), exiting 0
# once /minio/health/ready answers 200.
if [ "$1" != ready ] || [ "$2" != local ]; then
  echo "stand-in mc: only 'mc ready local' is imitated" >&2
  exit 1
fi
exec curl -fsS -o /dev/null --max-time 3 http://127.0.0.1:9000/minio/health/ready
