"""Image contracts: what a pinned image is and needs, written down next to its service.

A contract holds facts read from the image's upstream sources at the pinned tag (its
Dockerfile, entrypoint, documentation): the uid its process runs as, the capabilities its
entrypoint needs once every other one is dropped, the paths it can write, the programs it
ships (a health check may only use those), the env names it reads and refuses to start
without, its ports and the platforms the tag is published for. A fact that could not be
confirmed is left ``None`` and shows up as unconfirmed; it is never guessed.

``problems`` holds a generated service against its contract; ``mount_problems`` looks at
the files on disk a service bind-mounts. They run in tests and ``nself doctor``, never in a
build::

    from nself_sdk import ImageContract, Service

    WHOAMI = ImageContract(
        image="traefik/whoami:v1.10",
        source=("https://github.com/traefik/whoami/blob/v1.10.1/Dockerfile",),
        user=0,
        capabilities=(),
        tools=("whoami",),
        ports=(80,),
        platforms=("linux/amd64", "linux/arm64"),
    )
    Service("whoami", WHOAMI.image, port=80, contract=WHOAMI)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._record import Record

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from pathlib import Path

    from nself.model import GeneratedFile

    from .config import Config
    from .model import Mount, Route, Service

# The platforms every pinned image must serve: Intel/AMD servers and ARM ones (Graviton,
# Ampere, Raspberry Pi 4/5 on a 64-bit OS).
REQUIRED_PLATFORMS = ("linux/amd64", "linux/arm64")
# Capabilities that let a process read any file whatever its mode.
READ_ANY = frozenset({"DAC_OVERRIDE", "DAC_READ_SEARCH"})
# Shell words that are no program of the image.
BUILTINS = frozenset(
    {"exec", "printf", "echo", "test", "[", "true", "false", "cd", "read", "set", "export"}
)


class ImageContract(Record):
    """The facts about one pinned image that the stack relies on.

    ``None`` means "not confirmed from upstream": the matching check is skipped and the
    fact is listed as unconfirmed (by ``unconfirmed`` and ``nself doctor``).
    """

    image: str
    source: tuple[str, ...]
    user: int | None
    username: str
    starts_as: int | None
    capabilities: tuple[str, ...] | None
    default_capabilities: bool
    writable: tuple[str, ...] | None
    chowns: tuple[str, ...]
    writes: tuple[str, ...]
    tools: tuple[str, ...] | None
    env: tuple[str, ...] | None
    required: tuple[str, ...]
    ports: tuple[int, ...] | None
    platforms: tuple[str, ...] | None
    notes: str

    __slots__ = tuple(__annotations__)  # the fields above, in their order

    def __init__(
        self,
        *,
        # The reference the facts were read for, and where each of them comes from.
        image: str,
        source: tuple[str, ...],
        # The uid of the service's process (after the entrypoint stepped down, if it does).
        user: int | None,
        # That user's name in the image (a service may run as it: ``user: redis``).
        username: str = "",
        # The uid the entrypoint starts as when it differs (root that chowns, then steps
        # down).
        starts_as: int | None = None,
        # What the entrypoint and process need once every other capability is dropped,
        # when the image starts as it is built (started as a non-root user: none).
        capabilities: tuple[str, ...] | None = None,
        # The engine's default capabilities are needed as they are (none can be dropped).
        default_capabilities: bool = False,
        # Paths the process can write when a new named volume is mounted there (the image
        # gives them to ``user``, or its entrypoint chowns them on every start).
        writable: tuple[str, ...] | None = None,
        # Paths the entrypoint chowns to ``user`` on every start.
        chowns: tuple[str, ...] = (),
        # Paths it must write to start at all: never mounted read-only.
        writes: tuple[str, ...] = (),
        # Programs the image ships (a health check may use only these).
        tools: tuple[str, ...] | None = None,
        # Env names the image reads (``GF_*``: a family; ``*``: any); others are typos.
        env: tuple[str, ...] | None = None,
        # Env names it cannot do without (they must be set and not empty).
        required: tuple[str, ...] = (),
        ports: tuple[int, ...] | None = None,
        # ``os/arch`` the pinned tag is published for.
        platforms: tuple[str, ...] | None = None,
        # Anything a reader must know: a fact only partly confirmed, an upstream quirk.
        notes: str = "",
    ) -> None:
        self.fill(locals())

    @property
    def unconfirmed(self) -> list[str]:
        """The facts left ``None``: not confirmed from upstream."""
        names = ("user", "capabilities", "writable", "tools", "env", "ports", "platforms")
        found = [name for name in names if getattr(self, name) is None]
        return [n for n in found if not (n == "capabilities" and self.default_capabilities)]

    def reads(self, name: str) -> bool:
        """Whether the image reads env ``name`` (unknown: True)."""
        if self.env is None:
            return True
        return any(
            name.startswith(known[:-1]) if known.endswith("*") else name == known
            for known in self.env
        )


def problems(
    service: Service,
    config: Config | None = None,
    files: Iterable[GeneratedFile] = (),
    routes: Iterable[Route] = (),
) -> list[str]:
    """Where ``service`` breaks its image's contract; empty when it keeps it.

    With ``config``, required env names are checked for values, not only presence; with
    the build's ``files``, every generated file the service bind-mounts must be readable
    by the image's user; with ``routes``, every route to the service must reach a port the
    image listens on.
    """
    contract = service.contract
    if not isinstance(contract, ImageContract):
        return [f"{service.name}: no image contract"]
    found = list(_tool_problems(service, contract))
    found += _env_problems(service, contract, config)
    found += _capability_problems(service, contract)
    found += _port_problems(service, contract, routes)
    owner = _project_owner(config)
    found += _volume_problems(service, contract, owner)
    found += _file_problems(service, contract, files, owner)
    return [f"{service.name}: {problem}" for problem in found]


def uid_of(service: Service) -> int | None:
    """The uid the service's process runs as: ``user:`` if set, else the contract's."""
    contract = service.contract if isinstance(service.contract, ImageContract) else None
    if service.user:
        head = service.user.split(":", 1)[0]
        if head.isdigit():
            return int(head)
        if head == "root":
            return 0
        return contract.user if contract is not None and head == contract.username else None
    return contract.user if contract is not None else None


def reads_anything(service: Service) -> bool:
    """The process reads any file whatever its mode: root with a capability to do so."""
    if uid_of(service) != 0:
        return False
    return not service.drop_all_caps or bool(READ_ANY & set(service.cap_add))


def health_tools(test: tuple[str, ...]) -> list[str]:
    """The programs a health check runs (first words of each command)."""
    if not test or test[0] == "NONE":
        return []
    if test[0] == "CMD-SHELL":
        return ["sh", *_script_tools(" ".join(test[1:]))]
    argv = list(test[1:] if test[0] == "CMD" else test)
    if len(argv) >= 3 and _base(argv[0]) in ("sh", "bash", "ash") and argv[1] == "-c":
        return [argv[0], *_script_tools(argv[2])]
    return argv[:1]


def _script_tools(script: str) -> Iterator[str]:
    import re
    import shlex

    for command in re.split(r"\|\||&&|[|;]", script):
        try:
            words = shlex.split(command)
        except ValueError:
            words = command.split()
        words = [w for w in words if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", w)]
        if words and words[0] not in BUILTINS and not words[0][0].isdigit():
            yield words[0]


def _base(path: str) -> str:
    return path.rsplit("/", 1)[-1]


def _tool_problems(service: Service, contract: ImageContract) -> Iterator[str]:
    if contract.tools is None or service.healthcheck is None:
        return
    have = {_base(tool) for tool in contract.tools}
    for tool in health_tools(service.healthcheck.test):
        if _base(tool) not in have:
            yield f"the health check runs {tool}, which {contract.image} does not ship"


def _env_problems(
    service: Service, contract: ImageContract, config: Config | None
) -> Iterator[str]:
    for name in contract.required:
        value = service.environment.get(name)
        if value is None:
            yield f"{contract.image} needs {name}, which the service does not set"
        elif config is not None and not _resolved(value, config):
            yield f"{contract.image} needs {name}, which is empty"
    for name in service.environment:
        if not contract.reads(name):
            yield f"sets {name}, which {contract.image} does not read"


def _resolved(value: str, config: Config) -> str:
    import re

    return re.sub(
        r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: config.text(m.group(1)), value
    ).strip()


def _capability_problems(service: Service, contract: ImageContract) -> Iterator[str]:
    if contract.default_capabilities:
        if service.drop_all_caps:
            yield f"{contract.image} needs the engine's default capabilities, but all are dropped"
        return
    if contract.capabilities is None:
        return
    # Started as another user than the image's, the entrypoint has no root steps to take.
    needed = set(contract.capabilities) if not service.user or uid_of(service) == 0 else set()
    if not service.drop_all_caps:
        yield "keeps the engine's default capabilities; the image needs only " + (
            ", ".join(sorted(needed)) or "none"
        )
        return
    granted = set(service.cap_add)
    for cap in sorted(needed - granted):
        yield f"{contract.image} needs capability {cap}, which is not granted"
    for cap in sorted(granted - needed):
        yield f"grants capability {cap}, which {contract.image} does not need"


def _port_problems(
    service: Service, contract: ImageContract, routes: Iterable[Route]
) -> Iterator[str]:
    if contract.ports is None:
        return
    wanted = {service.port} if service.port else set()
    wanted |= {binding.container_port for binding in service.published}
    wanted |= {r.upstream_port for r in routes if r.upstream_host == service.name}
    for port in sorted(wanted - set(contract.ports)):
        yield f"uses port {port}, which {contract.image} does not listen on"


def _inside(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


def _covering(service: Service, path: str) -> Mount | None:
    """The mount whose target holds ``path`` (the deepest one)."""
    found = [m for m in service.mounts if _inside(path, (m.target,))]
    return max(found, key=lambda m: len(m.target)) if found else None


def _project_owner(config: Config | None) -> int | None:
    """The uid that owns the project folder: a service run as it (the admin UI) reads and
    writes the project's files by their owner's bits, like the developer."""
    if config is None:
        return None
    try:
        return config.project_dir.stat().st_uid
    except OSError:
        return None


def _volume_problems(
    service: Service, contract: ImageContract, owner: int | None = None
) -> Iterator[str]:
    uid = uid_of(service)
    for path in contract.writes:
        mount = _covering(service, path)
        if mount is not None and mount.read_only:
            yield f"{contract.image} writes to {path}, but {mount.source} is mounted read-only"
        elif mount is None and service.read_only:
            yield f"{contract.image} writes to {path}, but the container is read-only"
    for mount in service.mounts:
        if mount.read_only:
            continue
        named = not mount.source.startswith((".", "/"))
        if not named and mount.source.startswith(".") and uid is not None and uid == owner:
            continue  # the project's owner writes its own folders
        if named:
            if contract.writable is not None and not _inside(mount.target, contract.writable):
                yield (
                    f"volume {mount.source} at {mount.target} may not be writable by uid "
                    f"{uid}: {contract.image} can write only "
                    + (", ".join(contract.writable) or "nothing")
                )
        elif uid != 0 and not _inside(mount.target, contract.chowns):
            yield (
                f"{mount.source} is mounted writable at {mount.target}, but uid {uid} cannot "
                "write a folder of the host's user"
            )
        elif uid == 0 and not (
            "DAC_OVERRIDE" in service.cap_add
            or not service.drop_all_caps
            or (_inside(mount.target, contract.chowns) and "CHOWN" in service.cap_add)
        ):
            yield (
                f"{mount.source} is mounted writable at {mount.target}, but root without "
                "DAC_OVERRIDE cannot write a folder of another user"
            )


def _bind_sources(service: Service) -> Iterator[tuple[str, str]]:
    """``(project-relative folder, target)`` of each bind mount of a project path."""
    for mount in service.mounts:
        if mount.source.startswith("./"):
            yield mount.source[2:].strip("/"), mount.target


def _file_problems(
    service: Service,
    contract: ImageContract,
    files: Iterable[GeneratedFile],
    owner: int | None = None,
) -> Iterator[str]:
    if uid_of(service) is None or reads_anything(service):
        return
    readable = 0o400 if uid_of(service) == owner else 0o004
    sources = [source for source, _target in _bind_sources(service)]
    for item in files:
        mounted = any(
            not src or item.path == src or item.path.startswith(src + "/") for src in sources
        )
        if mounted and not item.mode & readable:
            yield (
                f"{item.path} (mode {item.mode:04o}) is bind-mounted but uid "
                f"{uid_of(service)} cannot read it"
            )


def mount_problems(service: Service, project: Path, paths: Iterable[str]) -> list[str]:
    """Which of ``paths`` (project-relative files, e.g. what the build wrote) the service
    bind-mounts but cannot read on disk: the file needs o+r and every folder from the
    mount's root down to it o+rx (a host umask of 077 makes new folders 0700), unless the
    process has the owner's uid (then the owner's bits count) or is root with a
    capability to read anything."""
    import os
    import stat

    uid = uid_of(service)
    if uid is None or reads_anything(service):
        return []
    sources = [source for source, _target in _bind_sources(service)]
    found: dict[str, str] = {}
    for path in sorted(paths):
        for source in sources:
            if source and path != source and not path.startswith(source + "/"):
                continue
            parts = path.split("/")
            top = len(source.split("/")) if source else 0
            # The mount's root folder, every folder below it, then the file itself.
            for depth in range(max(top, 1), len(parts) + 1):
                relative = "/".join(parts[:depth])
                if relative in found:
                    continue
                try:
                    info = os.stat(project / relative)
                except OSError:
                    break
                mode = info.st_mode
                need = 0o005 if stat.S_ISDIR(mode) else 0o004
                if info.st_uid == uid:  # the same uid on the host: the owner's bits
                    need <<= 6
                if mode & need != need:
                    kind = "folder" if stat.S_ISDIR(mode) else "file"
                    found[relative] = (
                        f"{service.name}: the {kind} {relative} (mode {stat.S_IMODE(mode):04o}) "
                        f"is bind-mounted but uid {uid} cannot read it"
                    )
    return list(found.values())
