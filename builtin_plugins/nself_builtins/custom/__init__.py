"""Custom services: the CS_1..CS_N slots of the env files, each a container with a route.

CS_1_NAME=ping_api
CS_1_IMAGE=nself/ping-api:latest      # or CS_1_BUILD=./services/ping_api
CS_1_PORT=8001
CS_1_SUBDOMAIN=ping                   # empty: internal only
CS_1_ENV_DATABASE_URL=${DATABASE_URL}
CS_1_HEALTHCHECK=wget                 # wget (default), image (the Dockerfile's) or none
CS_1_REPLICAS=3                       # three containers behind nginx, replaced one at a time
"""

from __future__ import annotations

import re

from nself_builtins.shared.service_replicas import count, count_problem, replicated, reserved_names
from nself_builtins.shared.slots import Slot, slots
from nself_sdk import Config, HealthCheck, Problem, Route, Service, Setting, hookimpl
from nself_sdk.checks import image_problem, label_problem
from nself_sdk.declare import IMAGE_SETTING_LABEL

ANY = re.compile(r"^CS_(\d+)_")
# CS_02_NAME, CS_0_NAME: not a slot number as written (CS_02 would read CS_2's settings).
CANONICAL = re.compile(r"^[1-9]\d*$")
HOSTNAME = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
MAX_SLOTS = 99
# How Compose checks a slot's health: wget on PORT/HEALTH_PATH, the image's own HEALTHCHECK
# (templates ship one that works without wget), or no check at all.
HEALTHCHECKS = ("wget", "image", "none")
HEALTHCHECK_HINT = (
    "use wget (Compose probes http://127.0.0.1:PORT/HEALTH_PATH with wget, the default), "
    "image (the image's own Dockerfile HEALTHCHECK) or none (no health check); "
    "the path itself goes in CS_<N>_HEALTH_PATH"
)


# The settings of a slot (CS_<N>_KEY), and CS_<N>_ENV_<NAME>.
SLOT_KEYS = (
    "NAME",
    "IMAGE",
    "BUILD",
    "PORT",
    "SUBDOMAIN",
    "HEALTH_PATH",
    "HEALTHCHECK",
    "WEBSOCKET",
    "DEPENDS_ON",
    "TEMPLATE",
    "REPLICAS",
)
# How close a name must be to a slot key for `nself build`'s unknown-setting check to say
# "did you mean" (environments/names.py): those it reports, this plugin does not.
NEAR = 0.86


def unknown_slot_keys(config: Config) -> list[Problem]:
    """CS_N_<KEY> with a KEY no slot has (CS_2_VOLUMES, CS_2_MEMORY), and CS_N_ENV_ without a
    variable name: they would be ignored without a word."""
    import difflib

    named = {slot.number for slot in slots(config)}
    supported = ", ".join(SLOT_KEYS) + ", ENV_<NAME>"
    problems = []
    for key in sorted(config.names()):
        match = ANY.match(key)
        if not match or not CANONICAL.match(match.group(1)) or int(match.group(1)) not in named:
            continue
        prefix, rest = match.group(0), key[match.end() :]
        if rest in SLOT_KEYS or (rest.startswith("ENV_") and len(rest) > len("ENV_")):
            continue
        if rest == "ENV_":
            problems.append(
                Problem(
                    "warning",
                    f"{config.where(key)}: {key} names no variable: it is not passed to the "
                    "container",
                    f"write {prefix}ENV_<NAME>=value (e.g. {prefix}ENV_LOG_LEVEL=info)",
                )
            )
            continue
        known = [prefix + k for k in SLOT_KEYS]
        if difflib.get_close_matches(key, known, n=1, cutoff=NEAR):
            continue  # a near-typo: the unknown-setting check names the setting meant
        problems.append(
            Problem(
                "warning",
                f"{config.where(key)}: {key} is not a custom service setting: it is ignored",
                f"a custom service slot reads only {supported} (as {prefix}<KEY>)",
            )
        )
    return problems


@hookimpl
def declare_settings() -> list[Setting]:
    # Templates (<N>: the slot number): documented, and known to `nself build`'s check
    # for mistyped names. No defaults: a slot is only what its lines say.
    return [
        Setting(f"CS_<N>_{key}", None, text)
        for key, text in (
            ("NAME", "Name of custom service N; a slot without it is ignored (warned)."),
            ("IMAGE", "Image to run (or CS_<N>_BUILD)."),
            ("BUILD", "Build context, relative to the project (./services/NAME)."),
            ("PORT", "Port the service listens on; also passed as PORT."),
            ("SUBDOMAIN", "Public route SUBDOMAIN.BASE_DOMAIN through nginx; empty: internal."),
            (
                "ENV_<NAME>",
                "Passed to the container as NAME; may refer to settings: ${DATABASE_URL}.",
            ),
            ("HEALTH_PATH", "Path of the health check (default /health)."),
            ("HEALTHCHECK", "wget (default), image (the Dockerfile's HEALTHCHECK) or none."),
            ("WEBSOCKET", "true: nginx upgrades WebSocket connections."),
            ("DEPENDS_ON", "Comma-separated services that must be healthy first."),
            ("TEMPLATE", "The template the code came from (informational)."),
            (
                "REPLICAS",
                "Containers of the service (1-20, default 1), balanced by nginx and "
                "replaced one at a time by restarts and deploys.",
            ),
        )
    ]


def incomplete_slots(config: Config) -> list[Problem]:
    """Settings of a slot that has no CS_N_NAME: the slot is ignored, so say so."""
    named = {slot.number for slot in slots(config)}
    first: dict[int, str] = {}
    for key in config.names():
        match = ANY.match(key)
        if match and CANONICAL.match(match.group(1)) and int(match.group(1)) not in named:
            first.setdefault(int(match.group(1)), key)
    return [
        Problem(
            "warning",
            f"{config.where(key)}: {key} is set but CS_{n}_NAME is not: "
            f"custom service slot CS_{n} is ignored",
            f"set CS_{n}_NAME=<service name>, or remove the CS_{n}_* lines",
        )
        for n, key in sorted(first.items())
    ]


def misnumbered_slots(config: Config) -> list[Problem]:
    """CS_02_*, CS_0_*: refused, once per spelling, at its NAME line (else its first setting)."""
    names = set(config.names())
    first: dict[str, str] = {}
    for key in sorted(names):
        match = ANY.match(key)
        if match and not CANONICAL.match(match.group(1)):
            name = f"CS_{match.group(1)}_NAME"
            first.setdefault(match.group(1), name if name in names else key)
    problems = []
    for number, key in sorted(first.items()):
        n = int(number)
        if n == 0:
            message, hint = "slot numbers start at 1", "number custom services CS_1, CS_2, ..."
        else:
            message = f"the slot number {number} has a leading zero"
            hint = f"write CS_{n}_ (CS_{number}_ is not read as slot {n})"
        problems.append(Problem("error", f"{config.where(key)}: {key}: {message}", hint))
    return problems


@hookimpl
def validate_config(config: Config) -> list[Problem]:
    problems = misnumbered_slots(config) + incomplete_slots(config) + unknown_slot_keys(config)
    seen: dict[str, int] = {}
    for slot in slots(config):
        where = config.where(slot.prefix + "NAME")
        if slot.number > MAX_SLOTS:
            problems.append(Problem("error", f"{where}: CS_{slot.number} is past CS_{MAX_SLOTS}"))
        if not HOSTNAME.match(slot.host):
            problems.append(
                Problem(
                    "error",
                    f"{where}: {slot.prefix}NAME={slot.name!r} is not a valid hostname",
                    "use lowercase letters, digits, '-' or '_', starting with a letter",
                )
            )
        if slot.host in seen:
            problems.append(
                Problem(
                    "error",
                    f"{where}: custom service {slot.name!r} is also CS_{seen[slot.host]}",
                    "give each custom service its own name",
                )
            )
        seen[slot.host] = slot.number
        if (replicas := count_problem(config, slot.prefix + "REPLICAS")) is not None:
            problems.append(replicas)
        if not slot.image and not slot.build:
            problems.append(
                Problem("error", f"{where}: {slot.prefix}IMAGE or {slot.prefix}BUILD must be set")
            )
        if (image := image_problem(config, slot.prefix + "IMAGE")) is not None:
            problems.append(image)
        if slot.build and not (config.project_dir / slot.build).is_dir():
            problems.append(
                Problem(
                    "error",
                    f"{config.where(slot.prefix + 'BUILD')}: {slot.prefix}BUILD={slot.build!r}: "
                    "no such folder in the project",
                    "give the folder with the service's Dockerfile, relative to the project "
                    f"(e.g. ./services/{slot.name}); `nself service add` scaffolds one from a "
                    "template",
                )
            )
        if slot.subdomain and slot.port is None:
            problems.append(
                Problem(
                    "error",
                    f"{config.where(slot.prefix + 'SUBDOMAIN')}: {slot.prefix}SUBDOMAIN needs "
                    f"{slot.prefix}PORT",
                    "set the port the service listens on",
                )
            )
        if (subdomain := label_problem(config, slot.prefix + "SUBDOMAIN")) is not None:
            problems.append(subdomain)
        if slot.port is not None and not 0 < slot.port < 65536:
            at = config.where(slot.prefix + "PORT")
            problems.append(Problem("error", f"{at}: {slot.prefix}PORT must be 1-65535"))
        if slot.port is None and slot.healthcheck == "wget":
            problems.append(
                Problem(
                    "warning",
                    f"{where}: CS_{slot.number} ({slot.name}) has no health check: without "
                    f"{slot.prefix}PORT there is nothing for Compose to probe",
                    f"set {slot.prefix}PORT to a port that answers {slot.prefix}HEALTH_PATH "
                    f"(default /health), or give the image a HEALTHCHECK and set "
                    f"{slot.prefix}HEALTHCHECK=image ({slot.prefix}HEALTHCHECK=none: "
                    "knowingly without one)",
                )
            )
        if slot.healthcheck not in HEALTHCHECKS:
            problems.append(
                Problem(
                    "error",
                    f"{config.where(slot.prefix + 'HEALTHCHECK')}: "
                    f"{slot.prefix}HEALTHCHECK={slot.healthcheck!r} is unknown",
                    HEALTHCHECK_HINT,
                )
            )
    return problems + replica_collisions(config)


def replica_collisions(config: Config) -> list[Problem]:
    """A slot named like another slot's replica (``web-2`` beside ``web`` with 3 replicas)
    would be two containers with one name."""
    problems = []
    taken: dict[str, Slot] = {}
    for slot in slots(config):
        for name in sorted(reserved_names(slot.host, count(config, slot.prefix + "REPLICAS"))):
            other = taken.get(name)
            if other is not None and other.number != slot.number:
                later = max(slot, other, key=lambda s: s.number)
                problems.append(
                    Problem(
                        "error",
                        f"{config.where(later.prefix + 'NAME')}: the name {name!r} of "
                        f"CS_{slot.number} is also one of CS_{other.number}'s",
                        f"replicas of a service are named NAME-2, NAME-3, ...: rename "
                        f"{later.prefix}NAME",
                    )
                )
            taken.setdefault(name, slot)
    return problems


def _env_name(slot: Slot, key: str) -> str:
    return f"{slot.prefix}ENV_{key}"


@hookimpl
def contribute_services(config: Config) -> list[Service]:
    services = []
    for slot in slots(config):
        env = {key: "${" + _env_name(slot, key) + "}" for key in slot.env}
        if slot.port is not None:
            env.setdefault("PORT", str(slot.port))
        check = None
        health_url = None
        if slot.port is not None and slot.healthcheck == "wget":
            url = f"http://127.0.0.1:{slot.port}{slot.health_path}"
            check = HealthCheck(
                ("CMD", "wget", "-q", "-O", "/dev/null", url),
                interval="10s",
                timeout="5s",
                retries=5,
                start_period="20s",
            )
        if slot.port is not None:
            health_url = f"http://{slot.host}:{slot.port}{slot.health_path}"
        image = slot.image or f"nself-{config.project_name}-{slot.host}:local"
        services += replicated(
            Service(
                name=slot.host,
                title=slot.name,
                image=image,
                build=slot.build or None,
                role="custom",
                port=slot.port,
                environment=env,
                healthcheck=check,
                depends_on=slot.depends_on,
                health_url=health_url,
                labels={
                    "org.nself.slot": f"CS_{slot.number}",
                    IMAGE_SETTING_LABEL: f"CS_{slot.number}_IMAGE",
                },
            ),
            count(config, slot.prefix + "REPLICAS"),
        )
    return services


@hookimpl
def contribute_nginx(config: Config) -> list[Route]:
    return [
        Route(
            slot.subdomain,
            slot.host,
            slot.port,
            service=slot.host,
            websocket=slot.websocket,
            source=f"CS_{slot.number}",
        )
        for slot in slots(config)
        if slot.subdomain and slot.port is not None
    ]
