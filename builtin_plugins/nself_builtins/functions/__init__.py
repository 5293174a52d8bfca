"""Functions: a serverless runtime for custom logic at functions.{domain}.

The project's ``functions/`` folder is mounted into the runtime; each file there is an
HTTP endpoint (the nhost/functions convention).

What the image needs (nhost/functions start.sh, nodemon.json, 20.Dockerfile): a
``package.json`` and a lockfile (``package-lock.json`` or ``yarn.lock``) in the folder,
or it exits ("No lock file found"); it copies a ``tsconfig.json`` there when there is
none and installs packages (``ni``: npm, which rewrites the lockfile) into
``functions/node_modules``, as root: the folder is mounted writable.
"""

from __future__ import annotations

from dataclasses import replace

from nself_builtins.shared.service_replicas import count, count_problem, replicated
from nself_builtins.shared.urls import public_url
from nself_sdk import (
    Config,
    GeneratedFile,
    HealthCheck,
    ImageContract,
    Mount,
    Problem,
    Service,
    ServicePlugin,
    Setting,
    Subdomain,
    hookimpl,
)

from .scaffold import FILES, LOCKFILES

# Tags are <node major>-<version>: one build per Node.js major (18.Dockerfile,
# 20.Dockerfile, ...); a bare `1.2.0` is not a tag of this image.
IMAGE = "nhost/functions:20-1.2.0"
FUNCTIONS = ImageContract(
    image=IMAGE,
    source=(
        "https://github.com/nhost/functions/blob/v1.2.0/20.Dockerfile",
        "https://github.com/nhost/functions/blob/v1.2.0/start.sh",
        "https://github.com/nhost/functions/blob/v1.2.0/server.ts",
        "https://github.com/nhost/functions/blob/v1.2.0/.github/workflows/publish.yml",
    ),
    # node:20-alpine without USER: the start script and the server run as root.
    user=0,
    # nself mounts the project's functions/ writable: root writing a folder of the host's
    # user (npm rewrites package-lock.json) needs DAC_OVERRIDE.
    capabilities=("DAC_OVERRIDE",),
    # start.sh runs in /opt/project (NHOST_PROJECT_PATH): it needs functions/package.json
    # and a lock file (package-lock.json or yarn.lock: "No lock file found" and exit 1
    # otherwise), copies tsconfig.json into the folder and installs node_modules there;
    # pnpm keeps its store in /opt/project/node_modules/.pnpm-store.
    writable=("/opt/project",),
    writes=("/opt/project/functions",),
    tools=("node", "npm", "pnpm", "nodemon", "tsx", "sh", "wget"),
    # The functions are the project's code: they read whatever env they are given.
    env=("*",),
    # server.ts listens on 3000 whatever PORT says, and answers GET /healthz.
    ports=(3000,),
    platforms=("linux/amd64", "linux/arm64"),
    notes="The <node major>-<version> tag form is taken from the published tags; the "
    "stored copies of the publish workflow show the per-major builds (18, 20) but not "
    "the tag prefix itself.",
)


def _adapt(config: Config, service: Service) -> Service:
    env = {
        "PORT": "3000",
        "NODE_ENV": "development" if config.is_local else "production",
        "NHOST_BACKEND_URL": public_url(config),
    }
    if not config.flag("HASURA_ENABLED", True):
        return replace(service, environment=env)
    env.update(
        {
            "NHOST_GRAPHQL_URL": "${HASURA_GRAPHQL_URL}",
            "NHOST_ADMIN_SECRET": "${HASURA_GRAPHQL_ADMIN_SECRET}",
            "NHOST_JWT_SECRET": "${HASURA_GRAPHQL_JWT_SECRET}",
        }
    )
    return replace(service, environment=env, depends_on=("hasura",))


def _checks(config: Config) -> list[Problem]:
    """The runtime exits in a loop without a package.json and a lockfile: say so now."""
    replicas = count_problem(config, "FUNCTIONS_REPLICAS")
    return ([replicas] if replicas else []) + _folder_checks(config)


def _folder_checks(config: Config) -> list[Problem]:
    folder = config.project_dir / "functions"
    if not (folder / "package.json").is_file():
        return [
            Problem(
                "error",
                "FUNCTIONS_ENABLED=true but functions/package.json does not exist: the "
                "functions runtime cannot start without it",
                "`nself init --force` adds a hello function with its package.json and "
                "lockfile (existing files are kept), or run `npm init -y` in functions/",
            )
        ]
    if not any((folder / name).is_file() for name in LOCKFILES):
        return [
            Problem(
                "error",
                "functions/ has no lockfile (package-lock.json or yarn.lock): the functions "
                "runtime refuses to start without one",
                "run `npm install` in functions/ and commit package-lock.json",
            )
        ]
    return []


class FunctionsPlugin(ServicePlugin):
    @hookimpl
    def contribute_services(self, config: Config) -> list[Service]:
        """The runtime, FUNCTIONS_REPLICAS times. The replicas share the node_modules
        volume: the others start once the first is healthy (its install done), and
        restarts replace them one at a time."""
        if not self.running(config):
            return []
        members = replicated(self.container(config), count(config, "FUNCTIONS_REPLICAS"))
        first = members[0].name
        return [members[0]] + [
            replace(m, depends_on=tuple(sorted({*m.depends_on, first}))) for m in members[1:]
        ]

    @hookimpl
    def contribute_scaffold(self) -> list[GeneratedFile]:
        return [GeneratedFile(f"functions/{name}", text) for name, text in FILES.items()]


plugin = FunctionsPlugin(
    Service(
        "functions",
        IMAGE,
        title="Functions",
        role="optional",
        port=3000,
        healthcheck=HealthCheck(
            ("CMD", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:3000/healthz"),
            retries=10,
            start_period="30s",
        ),
        # Writable: the start script writes there as root. node_modules in a volume:
        # packages built for the image's platform never land in your folder.
        mounts=(
            Mount("./functions", "/opt/project/functions"),
            Mount("functions_node_modules", "/opt/project/functions/node_modules"),
        ),
        # Root writing into a folder your user owns (npm rewrites package-lock.json).
        cap_add=("DAC_OVERRIDE",),
        health_url="http://functions:3000/healthz",
        contract=FUNCTIONS,
    ),
    switch=Setting("FUNCTIONS_ENABLED", "false", "Run the functions runtime (host `functions`)."),
    image=Setting("FUNCTIONS_IMAGE", description="Functions runtime image."),
    routes=(Subdomain("FUNCTIONS_SUBDOMAIN", "functions", "Public subdomain of the functions."),),
    settings=(
        Setting(
            "FUNCTIONS_REPLICAS",
            "1",
            "Containers of the functions runtime (1-20), balanced by nginx and replaced one "
            "at a time by restarts and deploys.",
        ),
    ),
    env={"FUNCTIONS_URL": "http://functions:3000"},
    adapt=_adapt,
    checks=_checks,
)
