"""The project a lifecycle command works on: its config, built stack and runtime."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from nself_sdk import NselfError, UsageError

if TYPE_CHECKING:
    from nself_sdk import Config, Runtime, Stack


@dataclass
class Project:
    """What the commands need: config, the built stack, its runtime."""

    folder: Path
    config: Config
    stack: Stack
    runtime: Runtime
    changes: dict[str, str]

    def title(self, name: str) -> str:
        service = self.stack.service(name)
        return service.display if service is not None else name

    def role(self, name: str) -> str:
        service = self.stack.service(name)
        return service.role if service is not None else ""

    def group(self, name: str) -> str:
        """The replicated service ``name`` is a replica of ('' when it is not one)."""
        from nself_builtins.shared.service_replicas import REPLICA_OF

        service = self.stack.service(name)
        return service.labels.get(REPLICA_OF, "") if service is not None else ""

    def resolve(self, names: list[str]) -> list[str]:
        """Service names from what a user typed: service, CS_N_NAME or plugin name. A
        replicated service's name means all its replicas (`web-2` one of them)."""
        from nself_builtins.shared.service_replicas import group

        known = {s.name for s in self.stack.services}
        resolved = []
        for raw in names:
            members = [s.name for s in group(self.stack, raw.lower().replace("_", "-"))]
            if members:
                resolved.extend(members)
                continue
            if raw in known:
                resolved.append(raw)
                continue
            host = raw.lower().replace("_", "-")
            owned = sorted(n for n, plugin in self.stack.owners.items() if plugin == raw)
            titled = sorted(s.name for s in self.stack.services if s.display.lower() == raw.lower())
            if host in known:
                resolved.append(host)
            elif owned:
                resolved.extend(owned)
            elif titled:
                resolved.extend(titled)
            else:
                raise UsageError(
                    f"unknown service {raw!r}",
                    f"the stack has: {', '.join(sorted(known))} "
                    "(optional services must be enabled in the env files and built first)",
                )
        return list(dict.fromkeys(resolved))

    def one(self, name: str) -> str:
        """The one service ``name`` means (`logs`, `exec`): of a replicated service, its
        first replica (`web-2` names another)."""
        names = self.resolve([name])
        if len(names) > 1 and len({self.group(n) for n in names}) == 1 and self.group(names[0]):
            return names[0]
        if len(names) != 1:
            raise UsageError(f"{name!r} names several services: {', '.join(names)}")
        return names[0]


def open_project(rebuild: bool, env: str | None = None) -> Project:
    """The project, rebuilt first when ``rebuild`` (cheap: only changed files are written)."""
    from nself_sdk import build, find_project, plan, runtime
    from nself_sdk.envfiles import target_env

    folder = find_project()
    changes: dict[str, str] = {}
    if rebuild and target_env(folder, env) == "dev":
        result = build(folder, env)
        the_plan = result.plan
        changes = result.changes
    else:
        the_plan = plan(folder, env)
        if rebuild:
            elsewhere(the_plan.config)  # a server's stack: refused before anything is built
            result = build(folder, env)  # this machine is the server (`nself install`)
            the_plan, changes = result.plan, result.changes
    return Project(folder, the_plan.config, the_plan.stack, runtime(the_plan.config), changes)


def elsewhere(config: Config) -> None:
    """Refuse to start or restart a stack that runs on its server, not on this machine
    (staging or prod on a laptop): nothing is built or contacted first."""
    from nself_builtins.shared.placement import runs_here

    if runs_here(config):
        return
    env = config.env
    if config.text("DEPLOY_HOST").strip():
        raise NselfError(
            f"{env} runs on its server ({config.text('DEPLOY_HOST').strip()}): services there "
            "change only through releases",
            f"nself deploy {env} (it builds {env} into .nself/targets/{env} and ships it); "
            "`nself start --env local` runs the local stack",
        )
    raise NselfError(
        f"no {env} server is configured, and {env} does not run on this machine",
        f"set DEPLOY_HOST in .env.{env} and run `nself deploy {env}` (docs/deploy.md), or set "
        f"up the server with `nself install`; `nself start --env local` runs the local stack",
    )


def nginx_tested_first(project: Project, names: list[str]) -> None:
    """Before `start` or `restart` may stop or replace a running nginx, its configuration
    on disk (generated sites and your nginx/conf.d/) is tested by that nginx: an invalid
    one is refused with nothing touched, so the running nginx keeps serving, instead of
    a new one crash-looping with all public traffic down.

    Only a mistake in a configuration file (nginx names it: ``in FILE:LINE``) refuses: a
    certificate not issued yet is not one (with ACME the renewer puts a placeholder in
    place before the new nginx starts)."""
    import re

    from nself_builtins.shared.nginx import SERVICE, is_running, tested

    if SERVICE not in names or not is_running(project.runtime):
        return
    why = tested(project.runtime, True)
    if why is not None and re.search(r" in nginx/\S+:\d+", why):
        raise NselfError(
            f"nginx configuration is invalid, nothing was restarted: {why}",
            "nginx keeps serving its current configuration; fix the file named "
            "(hand-written ones are in nginx/conf.d/) and run the command again",
        )


def selection(project: Project, services: list[str], all_: bool, with_: list[str]) -> list[str]:
    """Which services `start` brings up: required ones, plus `--all` / `--with`."""
    everything = [s.name for s in project.stack.services]
    if all_:
        return everything
    required = [s.name for s in project.stack.services if s.role != "optional"]
    if with_:
        return list(dict.fromkeys(required + project.resolve(with_ + services)))
    if services:
        return project.resolve(services)
    return required
