#!/bin/sh
# Stand-in for nhost/functions' start.sh (and the nodemon.json it runs), step by step.
# Like the real script it has no `set -e`: a step that fails only shows later.
# - writes ~/.nirc (the default package manager for `ni`);
# - the working folder is ./functions when functions/package.json exists, else . when
#   ./package.json does, else it creates functions/ with `npm init -y`;
# - no package-lock.json and no yarn.lock there: "No lock file found. Please commit your
#   lock file for npm or yarn", exit 1 (the container restarts and exits again);
# - `cp -n $SERVER_PATH/tsconfig.json` into the working folder;
# - nodemon runs `ni` (npm/yarn install: node_modules in the working folder; npm also
#   writes package-lock.json back in place), and only if that succeeds, the server; when
#   it fails nodemon waits for file changes: the container runs, never healthy.
# The stand-in cannot reach a package registry: a package.json with dependencies is an
# install failure here. Its server is functions-server.js (not Express).
echo "defaultAgent=$PACKAGE_MANAGER" >~/.nirc
if [ -f ./functions/package.json ]; then
  dir=./functions; relative=.
elif [ -f ./package.json ]; then
  dir=.; relative=./functions
else
  mkdir -p functions
  printf '{\n  "name": "functions",\n  "version": "1.0.0"\n}\n' >functions/package.json
  dir=./functions; relative=.
fi
if [ ! -f "$dir/package-lock.json" ] && [ ! -f "$dir/yarn.lock" ]; then
  echo "No lock file found. Please commit your lock file for npm or yarn"
  exit 1
fi
cp -n "$SERVER_PATH/tsconfig.json" "$dir/tsconfig.json"
crashed() {
  echo "[nodemon] app crashed - waiting for file changes before starting..."
  trap 'exit 0' TERM INT
  while :; do sleep 3600 & wait $!; done
}
if node -e 'const p = require(process.argv[1]); process.exit(Object.keys({...p.dependencies, ...p.devDependencies}).length ? 1 : 0)' "$dir/package.json"; then
  lock="$dir/package-lock.json"
  if [ -f "$lock" ]; then
    content=$(cat "$lock") && printf '%s\n' "$content" >"$lock" || crashed
  fi
  mkdir -p "$dir/node_modules" && printf '{"lockfileVersion": 3}\n' >"$dir/node_modules/.package-lock.json" || crashed
else
  echo "stand-in: cannot install dependencies (no package registry)"; crashed
fi
# nodemon runs in the working folder (functions are found at FUNCTIONS_RELATIVE_PATH from
# there: `.` when package.json is in functions/, `./functions` when it is at the top).
cd "$dir" || crashed
FUNCTIONS_WORKING_DIR=$dir FUNCTIONS_RELATIVE_PATH=$relative exec node "$SERVER_PATH/server.js"
