"""``nself service add`` and ``remove``: render a template, then claim or free a CS_N slot.

Nothing is left half-done: the service is rendered into a hidden folder, the env file is
replaced atomically, the whole stack is planned again, and only then is the folder moved
into place. Any failure restores the env file and removes the folder.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nself_sdk import (
    NselfError,
    Stack,
    UsageError,
    load_config,
    plan,
    public_urls,
    write_atomic,
)
from nself_sdk import (
    stack as stack_of,
)
from nself_sdk.host import plugin_manager

from . import envslots
from .catalog import SUFFIX, Template, catalog, suggest

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
FIRST_PORT = 8001
SERVICES_DIR = "services"
# Slots go to .env.dev, so they are checked against the stack of the env that file is for:
# it builds on any laptop, whatever target `nself env switch` chose.
CHECK_ENV = "dev"
# ... but a slot in .env.dev is part of the servers' stacks too, whose own files may switch
# on services this laptop leaves off: what they route or name is taken as well.
OTHER_ENVS = ("staging", "prod")
# Every service can reach the database and the GraphQL API through these references;
# the values live in .env.computed only, never in the service's code. DATABASE_URL goes
# through the connection pool once the PgBouncer plugin is installed (DATABASE_POOL_URL
# is the database itself until then); DATABASE_DIRECT_URL never does, for what needs a
# session of its own (migrations with advisory locks, LISTEN, prepared statements by name).
BASE_ENV = (
    ("DATABASE_URL", "${DATABASE_POOL_URL}"),
    ("DATABASE_DIRECT_URL", "${DATABASE_URL}"),
    ("HASURA_GRAPHQL_URL", "${HASURA_GRAPHQL_URL:-http://hasura:8080/v1/graphql}"),
    ("HASURA_GRAPHQL_ADMIN_SECRET", "${HASURA_GRAPHQL_ADMIN_SECRET:-}"),
    ("JWT_SECRET", "${HASURA_GRAPHQL_JWT_SECRET}"),
)


def host_of(name: str) -> str:
    return name.lower().replace("_", "-")


def template(name: str) -> Template:
    found = catalog().get(name)
    if found is None:
        close = suggest(name)
        hint = f"did you mean {' or '.join(close)}? " if close else ""
        raise UsageError(
            f"unknown template {name!r}", hint + "run `nself service templates` to list them"
        )
    return found


def check_name(name: str) -> None:
    if not NAME.match(name) or name.endswith(("-", "_")):
        raise UsageError(
            f"invalid service name {name!r}: it must be a valid hostname",
            "use 1-40 lowercase letters, digits, '-' or '_', starting with a letter "
            "(e.g. api, ml-server)",
        )


IMAGE = re.compile(
    r"^[a-z0-9][a-z0-9._-]*(:[0-9]+)?(/[a-z0-9._-]+)*(:[\w][\w.-]{0,127})?(@sha256:[a-f0-9]{64})?$"
)


def check_image(image: str) -> None:
    if not IMAGE.match(image):
        raise UsageError(
            f"invalid image reference {image!r}",
            "write it like nginx:1.27, ghcr.io/acme/api:1.4 or registry:5000/team/app@sha256:...",
        )


def check_subdomain(subdomain: str) -> None:
    if not LABEL.match(subdomain):
        raise UsageError(
            f"invalid subdomain {subdomain!r}",
            "use one DNS label: lowercase letters, digits and '-' (e.g. api)",
        )


def context(
    name: str, port: int, subdomain: str, project_name: str, base_domain: str, slot: int
) -> dict[str, Any]:
    """The placeholders every template may use."""
    words = [w for w in re.split(r"[-_]+", name) if w]
    return {
        "service_name": name,
        "service_host": host_of(name),
        "service_ident": "_".join(words),
        "service_pascal": "".join(w.capitalize() for w in words),
        "port": port,
        "subdomain": subdomain,
        "project_name": project_name,
        "base_domain": base_domain,
        "public_url": f"https://{subdomain}.{base_domain}" if subdomain else "",
        "slot": f"CS_{slot}",
    }


def out_path(rel: str, values: dict[str, Any]) -> str:
    """Where a template file lands: ``.j2`` dropped, ``__service_ident__`` in names filled."""
    return rel.removesuffix(SUFFIX).replace("__service_ident__", values["service_ident"])


def render(tpl: Template, target: Path, values: dict[str, Any]) -> list[str]:
    """Render every file of ``tpl`` into ``target``; returns the written paths."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(tpl.folder)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    written = []
    for rel in tpl.files():
        out = target / out_path(rel, values)
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            text = env.get_template(rel).render(**values)
        except jinja2.TemplateError as exc:  # a broken template is our bug, say where
            raise NselfError(f"template {tpl.name}/{rel} does not render: {exc}") from exc
        out.write_text(text, encoding="utf-8")
        mode = stat.S_IMODE((tpl.folder / rel).stat().st_mode)
        out.chmod(0o755 if mode & 0o111 else 0o644)
        written.append(out.relative_to(target).as_posix())
    return written


@dataclass
class Taken:
    """Names, subdomains and ports the stack and the env files already use."""

    names: dict[str, str]
    subdomains: dict[str, str]
    ports: dict[int, str]


def taken(project: Path, stack: Stack) -> Taken:
    names: dict[str, str] = {}
    subdomains: dict[str, str] = {}
    ports: dict[int, str] = {}
    for plugin_name, _plugin in plugin_manager(project).list_name_plugin():
        names.setdefault(host_of(plugin_name), f"plugin {plugin_name}")
    for service in stack.services:
        owner = stack.owners.get(service.name, "")
        what = f"service {service.name}" + (f" ({owner})" if owner else "")
        names[service.name] = what
        if service.port is not None:
            ports.setdefault(service.port, what)
        for binding in service.published:
            ports.setdefault(binding.host_port, what)
    for route in stack.routes:
        subdomains[route.subdomain] = f"service {route.service or route.upstream_host}"
    # What only staging's or prod's stack has: "<what> in staging and prod".
    other_names: dict[str, list[str]] = {}
    other_subdomains: dict[tuple[str, str], list[str]] = {}
    for env, other in _other_stacks(project):
        for service in other.services:
            if service.name not in names:
                other_names.setdefault(service.name, []).append(env)
        for route in other.routes:
            if route.subdomain not in subdomains:
                what = f"service {route.service or route.upstream_host}"
                other_subdomains.setdefault((route.subdomain, what), []).append(env)
    for name, envs in other_names.items():
        names.setdefault(name, f"service {name} in {' and '.join(envs)}")
    for (sub, what), envs in other_subdomains.items():
        subdomains.setdefault(sub, f"{what} in {' and '.join(envs)}")
    for slot in envslots.read(project).values():
        what = f"custom service {slot.name or '?'} (CS_{slot.number})"
        if slot.name:
            names[host_of(slot.name)] = what
        if slot.values.get("SUBDOMAIN"):
            subdomains.setdefault(slot.values["SUBDOMAIN"], what)
        if slot.values.get("PORT", "").isdigit():
            ports.setdefault(int(slot.values["PORT"]), what)
    return Taken(names, subdomains, ports)


def _other_stacks(project: Path) -> list[tuple[str, Stack]]:
    """The staging and prod stacks, as far as this machine can tell: a target whose
    configuration does not resolve here is left out (its own build says why)."""
    found = []
    for env in OTHER_ENVS:
        try:
            config = load_config(project, env)
            found.append((env, stack_of(config)))
        except NselfError:
            continue
    return found


@dataclass
class Added:
    name: str
    slot: int
    template: str
    port: int
    subdomain: str
    folder: str
    files: list[str]
    env_file: str
    url: str
    warnings: list[str]


def add(
    project: Path,
    name: str,
    template_name: str | None,
    port: int | None = None,
    subdomain: str | None = None,
    internal: bool = False,
    use_existing: bool = False,
    image: str | None = None,
) -> Added:
    tpl = _check_request(name, template_name, port, subdomain, internal, use_existing, image)
    before = plan(project, CHECK_ENV)
    host = host_of(name)
    subdomain, port, number = _allocate(
        project, taken(project, before.stack), name, tpl, port, subdomain, internal
    )
    folder = project / SERVICES_DIR / name
    if folder.exists() and not use_existing and tpl is not None:
        raise NselfError(
            f"{SERVICES_DIR}/{name} already exists",
            "pass --use-existing to give that code a slot, or remove the folder",
        )
    if use_existing and not folder.is_dir():
        raise NselfError(f"--use-existing: {SERVICES_DIR}/{name} is not a folder")

    values = context(
        name, port, subdomain, before.config.project_name, before.config.domain, number
    )
    running = {s.name for s in before.stack.services}
    needs = tpl.needs if tpl is not None else ()
    depends = [need for need in needs if need in running]
    warnings = [
        f"template {template_name} needs {need}, which is not part of the stack: enable it "
        f"({need.upper()}_ENABLED=true in .env.dev), then set CS_{number}_DEPENDS_ON={need}"
        for need in needs
        if need not in running
    ]
    block = slot_values(name, tpl, port, subdomain, depends, image)
    render_to = tpl if not use_existing else None
    files, after = _write_slot(project, name, number, block, render_to, values)
    url = public_urls(after.config, after.stack).get(host, "") if subdomain else ""
    return Added(
        name,
        number,
        tpl.name if tpl is not None else "",
        port,
        subdomain,
        f"{SERVICES_DIR}/{name}" if tpl is not None else "",
        files,
        envslots.TARGET_FILE,
        url,
        warnings,
    )


def _check_request(
    name: str,
    template_name: str | None,
    port: int | None,
    subdomain: str | None,
    internal: bool,
    use_existing: bool,
    image: str | None,
) -> Template | None:
    """The arguments on their own (before the project is read); the template asked for."""
    if (template_name is None) == (image is None):
        raise UsageError(
            "pass either --template T (scaffold code) or --image IMAGE (run an image)",
            "see `nself service templates`",
        )
    tpl = template(template_name) if template_name is not None else None
    if image is not None:
        check_image(image)
        if use_existing:
            raise UsageError(
                "--use-existing gives code a slot; an --image has no code",
                "drop --use-existing, or use --template for services/NAME",
            )
    check_name(name)
    if subdomain is not None and internal:
        raise UsageError("--subdomain and --internal contradict each other", "pass one of them")
    if subdomain is not None:
        check_subdomain(subdomain)
    if port is not None and not 0 < port < 65536:
        raise UsageError(f"invalid port {port}", "use a port between 1 and 65535")
    return tpl


def _allocate(
    project: Path,
    used: Taken,
    name: str,
    tpl: Template | None,
    port: int | None,
    subdomain: str | None,
    internal: bool,
) -> tuple[str, int, int]:
    """The new service's subdomain ("" when internal), port and CS_N slot, each refused
    when another service or plugin holds it."""
    host = host_of(name)
    if host in used.names:
        raise NselfError(
            f"the name {name!r} is already used by {used.names[host]}",
            "pick another name, or `nself service remove` the old one",
        )
    if not internal and subdomain is None and (tpl is None or tpl.public):
        subdomain = host
    subdomain = subdomain or ""
    if subdomain and subdomain in used.subdomains:
        raise NselfError(
            f"subdomain {subdomain!r} is already routed to {used.subdomains[subdomain]}",
            "choose another with --subdomain S, or --internal for no public route",
        )
    if port is None:
        port = next(p for p in range(FIRST_PORT, 65536) if p not in used.ports)
    elif port in used.ports:
        free = next(p for p in range(FIRST_PORT, 65536) if p not in used.ports)
        raise NselfError(
            f"port {port} is already used by {used.ports[port]}",
            f"choose another with --port (e.g. --port {free}) or leave it out",
        )
    number = envslots.next_free(project)
    if number is None:
        raise NselfError(
            f"all {envslots.MAX_SLOTS} custom service slots are taken",
            "remove a service with `nself service remove NAME`",
        )
    return subdomain, port, number


def _write_slot(
    project: Path,
    name: str,
    number: int,
    block: list[tuple[str, str]],
    tpl: Template | None,
    values: dict[str, Any],
) -> tuple[list[str], Any]:
    """Render ``tpl`` (when given) into services/NAME and append the slot's settings, then
    check the stack still builds; on any failure put everything back as it was. Returns
    the files rendered and the new plan."""
    services = project / SERVICES_DIR
    folder = services / name
    staging: Path | None = None
    placed = False  # the rendered code is in services/NAME (the build checks the folder)
    files: list[str] = []
    env_path = project / envslots.TARGET_FILE
    original = env_path.read_text(encoding="utf-8")
    mode = stat.S_IMODE(env_path.stat().st_mode)
    try:
        if tpl is not None:
            services.mkdir(exist_ok=True)
            staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=services))
            staging.chmod(0o755)
            files = render(tpl, staging, values)
        write_atomic(env_path, envslots.appended(original, name, number, block), mode)
        if staging is not None:
            os.replace(staging, folder)
            staging, placed = None, True
        try:
            return files, plan(project, CHECK_ENV)
        except NselfError as exc:
            raise NselfError(
                f"the stack would not build with {name}: {exc.message}",
                exc.hint or "nothing was changed",
            ) from exc
    except BaseException:
        if env_path.read_text(encoding="utf-8") != original:
            write_atomic(env_path, original, mode)
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if placed:
            shutil.rmtree(folder, ignore_errors=True)
        raise


def slot_values(
    name: str,
    tpl: Template | None,
    port: int,
    subdomain: str,
    depends: list[str],
    image: str | None = None,
) -> list[tuple[str, str]]:
    if tpl is None:
        # An image of its own: Compose checks PORT/health with wget (CS_N_HEALTHCHECK).
        values = [("NAME", name), ("IMAGE", image or ""), ("PORT", str(port))]
        values.append(("SUBDOMAIN", subdomain))
    else:
        values = [
            ("NAME", name),
            ("TEMPLATE", tpl.name),
            ("BUILD", f"./{SERVICES_DIR}/{name}"),
            ("PORT", str(port)),
            ("SUBDOMAIN", subdomain),
            # The template's Dockerfile has a HEALTHCHECK that needs no wget in the image.
            ("HEALTHCHECK", "image"),
        ]
    if tpl is not None and tpl.websocket:
        values.append(("WEBSOCKET", "true"))
    if depends:
        values.append(("DEPENDS_ON", ",".join(depends)))
    env = dict(BASE_ENV)
    env.update(tpl.env if tpl is not None else {})
    values += [(f"ENV_{key}", value) for key, value in env.items()]
    return values


@dataclass
class Removed:
    name: str
    slot: int | None  # None: no slot was left, only the code of an earlier remove
    files: list[str]
    deleted_code: bool
    folder: str
    kept_code: bool = False  # services/NAME exists and stays


def find(project: Path, name: str) -> envslots.DeclaredSlot:
    slots = envslots.read(project)
    for slot in slots.values():
        if slot.name == name or (slot.name and host_of(slot.name) == host_of(name)):
            return slot
    names = [s.name for s in slots.values() if s.name]
    hint = (
        f"custom services: {', '.join(names)}"
        if names
        else "there are none; add one with `nself service add NAME --template T`"
    )
    raise NselfError(f"no custom service named {name!r}", hint)


def _code_folder(project: Path, name: str) -> Path | None:
    """``services/NAME`` as a real folder of the project (not a link out of it), or None."""
    if not NAME.match(name):
        return None
    services = project / SERVICES_DIR
    folder = services / name
    if folder.is_symlink() or not folder.is_dir():
        return None
    if folder.resolve().parent != services.resolve():
        return None
    return folder


def remove(project: Path, name: str, delete_code: bool = False) -> Removed:
    try:
        slot = find(project, name)
    except NselfError:
        # The slot went with an earlier remove that kept the code: --delete-code still
        # deletes it, as long as no slot uses that folder.
        leftover = _code_folder(project, name)
        if leftover is None or _folder_in_use(project, name):
            raise
        if not delete_code:
            raise NselfError(
                f"no custom service named {name!r}; {SERVICES_DIR}/{name}/ is code an "
                "earlier remove kept",
                f"delete it with `nself service remove {name} --delete-code`, or give it a "
                f"slot again: `nself service add {name} -t TEMPLATE --use-existing`",
            ) from None
        shutil.rmtree(leftover)
        return Removed(name, None, [], True, f"{SERVICES_DIR}/{name}")
    changed = []
    for file in slot.files:
        path = project / file
        text = path.read_text(encoding="utf-8")
        new = envslots.without(text, slot.number, slot.name)
        if new != text:
            write_atomic(path, new, stat.S_IMODE(path.stat().st_mode))
            changed.append(file)
    folder = _code_folder(project, slot.name)
    deleted = False
    if delete_code and folder is not None and not _folder_in_use(project, slot.name):
        shutil.rmtree(folder)
        deleted = True
    return Removed(
        slot.name,
        slot.number,
        changed,
        deleted,
        f"{SERVICES_DIR}/{slot.name}",
        kept_code=folder is not None and not deleted,
    )


def _folder_in_use(project: Path, name: str) -> bool:
    """Another slot still builds from ``services/NAME`` (its CS_N_BUILD names it)."""
    wanted = {f"{SERVICES_DIR}/{name}", f"./{SERVICES_DIR}/{name}"}
    return any(
        slot.values.get("BUILD", "").rstrip("/") in wanted
        for slot in envslots.read(project).values()
    )
