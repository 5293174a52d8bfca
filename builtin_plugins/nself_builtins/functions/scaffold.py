"""What `nself init` puts in functions/: a working hello function and what the runtime
needs to start it (a package.json and its lockfile), never overwriting a file."""

from __future__ import annotations

# The lockfiles nhost/functions' start.sh accepts.
LOCKFILES = ("package-lock.json", "yarn.lock")

PACKAGE = """\
{
  "name": "functions",
  "version": "1.0.0",
  "private": true
}
"""

# What `npm install --package-lock-only` writes for the package above (no dependencies).
LOCK = """\
{
  "name": "functions",
  "version": "1.0.0",
  "lockfileVersion": 3,
  "requires": true,
  "packages": {
    "": {
      "name": "functions",
      "version": "1.0.0"
    }
  }
}
"""

HELLO = """\
// GET /hello?name=Ada answers "Hello, Ada!". Every file in functions/ is an endpoint at
// its path (hello.js -> /hello, users/index.js -> /users); files and folders starting
// with _ are not. The default export handles the request (Express's req and res).
module.exports = (req, res) => {
  res.status(200).send(`Hello, ${req.query.name || 'world'}!`)
}
"""

# The runtime copies its own tsconfig.json here when there is none; this one is yours.
TSCONFIG = """\
{
  "compilerOptions": {
    "target": "es2022",
    "module": "commonjs",
    "strict": true,
    "esModuleInterop": true,
    "skipLibCheck": true
  }
}
"""

README = """\
Functions: each .js or .ts file here is an HTTP endpoint at functions.<your domain>,
served by the nhost/functions runtime when FUNCTIONS_ENABLED=true. Add packages with
`npm install <name>` here and commit package.json and package-lock.json: the runtime
refuses to start without a lockfile. node_modules stays out of this folder (a volume).
"""

GITIGNORE = "node_modules/\n"

FILES = {
    "package.json": PACKAGE,
    "package-lock.json": LOCK,
    "hello.js": HELLO,
    "tsconfig.json": TSCONFIG,
    "README": README,
    ".gitignore": GITIGNORE,
}
