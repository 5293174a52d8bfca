"""`nself service add/list/remove/templates`: slots in .env.dev, code in services/NAME.

Every bad input must give one `error:` line with a hint and leave nothing behind.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from nself_builtins.services import envslots
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def snapshot(project: Path) -> dict[str, str]:
    """Every file of the project except generated state, to prove nothing changed."""
    return {
        p.relative_to(project).as_posix(): p.read_text(errors="replace")
        for p in sorted(project.rglob("*"))
        if p.is_file() and ".nself" not in p.parts
    }


def test_add_scaffolds_code_and_claims_the_first_slot(project: Path, nself: Run) -> None:
    result = nself("service", "add", "myapi", "--template", "node", cwd=project)
    assert result.code == 0, result.output
    assert "CS_1" in result.out and "https://myapi.local.nself.org" in result.out
    folder = project / "services" / "myapi"
    assert sorted(p.name for p in folder.rglob("*") if p.is_file()) == [
        ".dockerignore",
        "Dockerfile",
        "index.js",
        "package.json",
    ]
    assert folder.stat().st_mode & 0o777 == 0o755
    assert json.loads((folder / "package.json").read_text())["name"] == "myapi"
    slot = envslots.read(project)[1]
    assert slot.files == [".env.dev"]
    assert slot.values == {
        "NAME": "myapi",
        "TEMPLATE": "node",
        "BUILD": "./services/myapi",
        "PORT": "8001",
        "SUBDOMAIN": "myapi",
        "HEALTHCHECK": "image",
        "ENV_DATABASE_URL": "${DATABASE_POOL_URL}",
        "ENV_DATABASE_DIRECT_URL": "${DATABASE_URL}",
        "ENV_HASURA_GRAPHQL_URL": "${HASURA_GRAPHQL_URL:-http://hasura:8080/v1/graphql}",
        "ENV_HASURA_GRAPHQL_ADMIN_SECRET": "${HASURA_GRAPHQL_ADMIN_SECRET:-}",
        "ENV_JWT_SECRET": "${HASURA_GRAPHQL_JWT_SECRET}",
    }


def test_the_seed_examples_and_the_next_free_slot(project: Path, nself: Run) -> None:
    assert nself("service", "add", "myapi", "--template", "node", cwd=project).code == 0
    assert nself("service", "add", "worker", "--template", "python", cwd=project).code == 0
    assert nself("service", "add", "ml-server", "--template", "fastapi", cwd=project).code == 0
    listed = nself("service", "list", "--json", cwd=project)
    rows = json.loads(listed.out)
    assert [(r["slot"], r["name"], r["template"], r["port"]) for r in rows] == [
        ("CS_1", "myapi", "node", 8001),
        ("CS_2", "worker", "python", 8002),
        ("CS_3", "ml-server", "fastapi", 8003),
    ]
    assert all(r["code"] for r in rows)
    text = nself("service", "list", cwd=project).out
    assert "ml-server" in text and "https://ml-server.local.nself.org" in text
    # A freed slot is reused by the next service.
    assert nself("service", "remove", "worker", cwd=project).code == 0
    assert nself("service", "add", "jobs", "--template", "go", cwd=project).code == 0
    assert envslots.read(project)[2].name == "jobs"


def test_workers_are_internal_and_options_apply(project: Path, nself: Run) -> None:
    assert nself("service", "add", "queue", "--template", "celery", cwd=project).code == 0
    hooks = ("hooks", "-t", "express", "--port", "9100", "--subdomain", "webhooks")
    assert nself("service", "add", *hooks, cwd=project).code == 0
    assert nself("service", "add", "inner", "-t", "flask", "--internal", cwd=project).code == 0
    slots = {s.name: s.values for s in envslots.read(project).values()}
    assert slots["queue"]["SUBDOMAIN"] == "" and "ENV_REDIS_URL" in slots["queue"]
    assert (slots["hooks"]["PORT"], slots["hooks"]["SUBDOMAIN"]) == ("9100", "webhooks")
    assert slots["inner"]["SUBDOMAIN"] == ""
    result = nself("build", "--json", cwd=project)
    assert result.code == 0, result.output
    urls = json.loads(result.out)["urls"]
    assert urls["hooks"] == "https://webhooks.local.nself.org"
    assert "queue" not in urls and "inner" not in urls


def test_remove_keeps_code_unless_told(project: Path, nself: Run) -> None:
    original = (project / ".env.dev").read_text()
    assert nself("service", "add", "api1", "-t", "python", cwd=project).code == 0
    assert nself("service", "add", "api2", "-t", "python", cwd=project).code == 0
    set_env(project, ".env.prod", CS_1_IMAGE="registry.example.com/api1:1.0")
    result = nself("service", "remove", "api1", cwd=project)
    assert result.code == 0, result.output
    assert "kept its code" in result.out
    assert (project / "services" / "api1" / "main.py").is_file()
    assert 1 not in envslots.read(project) and 2 in envslots.read(project)
    assert "CS_1_" not in (project / ".env.prod").read_text()
    result = nself("service", "remove", "api2", "--delete-code", cwd=project)
    assert result.code == 0, result.output
    assert not (project / "services" / "api2").exists()
    # Everything the two adds wrote is gone again, the user's lines untouched.
    assert (project / ".env.dev").read_text() == original
    assert nself("service", "list", cwd=project).out.startswith("no custom services")
    # The kept code can get a slot again.
    result = nself("service", "add", "api1", "-t", "python", "--use-existing", cwd=project)
    assert result.code == 0, result.output
    assert envslots.read(project)[1].name == "api1"


def test_templates_lists_every_template(nself: Run, tmp_path: Path) -> None:
    result = nself("service", "templates", "--json", cwd=tmp_path)
    assert result.code == 0, result.output
    items = json.loads(result.out)
    assert len(items) >= 40
    assert {"name", "language", "description", "kind"} <= set(items[0])
    table = nself("service", "templates", cwd=tmp_path).out
    for item in items:
        assert item["name"] in table


@pytest.mark.parametrize(
    ("args", "message", "hint"),
    [
        (["api", "-t", "fastapy"], "unknown template 'fastapy'", "did you mean fastapi"),
        (["api", "-t", "expres"], "unknown template 'expres'", "did you mean express"),
        (["Bad.Name", "-t", "node"], "must be a valid hostname", "lowercase letters"),
        (["1api", "-t", "node"], "must be a valid hostname", "lowercase letters"),
        (["api-", "-t", "node"], "must be a valid hostname", "lowercase letters"),
        (["a" * 41, "-t", "node"], "must be a valid hostname", "lowercase letters"),
        (["postgres", "-t", "node"], "already used by service postgres", "another name"),
        (["nginx", "-t", "node"], "already used by service nginx", "another name"),
        (["custom", "-t", "node"], "already used by plugin custom", "another name"),
        (["taken", "-t", "node"], "already used by custom service taken", "another name"),
        (["api", "-t", "node"], "subdomain 'api' is already routed", "--subdomain"),
        (["web", "-t", "node", "--subdomain", "auth"], "'auth' is already routed", "--internal"),
        (["web", "-t", "node", "--subdomain", "no_good"], "invalid subdomain", "DNS label"),
        (["web", "-t", "node", "--port", "8001"], "port 8001 is already used", "--port 8002"),
        (["web", "-t", "node", "--port", "5432"], "port 5432 is already used", "--port"),
        (["web", "-t", "node", "--port", "70000"], "invalid port 70000", "1 and 65535"),
    ],
)
def test_bad_input_is_refused_and_leaves_nothing(
    project: Path, nself: Run, args: list[str], message: str, hint: str
) -> None:
    assert nself("service", "add", "taken", "-t", "node", "--internal", cwd=project).code == 0
    before = snapshot(project)
    result = nself("service", "add", *args, cwd=project)
    assert result.code in (1, 2), result.output
    lines = result.err.strip().splitlines()
    assert lines[0].startswith("error: ") and message in lines[0], result.err
    assert lines[1].startswith("hint: ") and hint in lines[1], result.err
    assert "Traceback" not in result.output
    assert snapshot(project) == before


def test_slots_in_any_env_file_count(project: Path, nself: Run) -> None:
    # A slot only set in .env.prod still owns its number, name and port everywhere.
    set_env(project, ".env.prod", CS_1_NAME="billing", CS_1_IMAGE="billing:1", CS_1_PORT="8001")
    before = snapshot(project)
    result = nself("service", "add", "billing", "-t", "node", cwd=project)
    assert result.code == 1 and "custom service billing (CS_1)" in result.err
    assert nself("service", "add", "other", "-t", "node", "--port", "8001", cwd=project).code == 1
    assert snapshot(project) == before
    assert nself("service", "add", "other", "-t", "node", cwd=project).code == 0
    assert envslots.read(project)[2].values["PORT"] == "8002"


def test_a_refused_plan_rolls_everything_back(
    project: Path, nself: Run, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The final check plans the whole stack with the new slot; if any plugin refuses,
    the env file and the folder are put back. A plugin refusing is simulated here, on the
    second plan only (the real refusals each have their own tests)."""
    from nself_builtins.services import scaffold
    from nself_sdk import NselfError

    real = scaffold.plan
    calls = []

    def refuse_second(project_dir: Path, env: str | None = None):  # type: ignore[no-untyped-def]
        calls.append(project_dir)
        if len(calls) == 2:
            raise NselfError("some plugin refused", "fix it")
        return real(project_dir, env)

    monkeypatch.setattr(scaffold, "plan", refuse_second)
    before = snapshot(project)
    result = nself("service", "add", "good", "-t", "node", cwd=project)
    assert result.code == 1
    assert "the stack would not build with good: some plugin refused" in result.err
    assert snapshot(project) == before
    assert [p.name for p in (project / "services").iterdir()] == ["README"]  # nothing added


def test_works_without_hasura(project: Path, nself: Run) -> None:
    text = (project / ".env.dev").read_text().replace("HASURA_GRAPHQL_ADMIN_SECRET=", "#")
    (project / ".env.dev").write_text(text + "HASURA_ENABLED=false\nAUTH_ENABLED=false\n")
    assert nself("service", "add", "solo", "-t", "python", cwd=project).code == 0
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    computed = (project / ".env.computed").read_text()
    assert "CS_1_ENV_HASURA_GRAPHQL_ADMIN_SECRET=''" in computed


def test_existing_folder_is_not_overwritten(project: Path, nself: Run) -> None:
    (project / "services" / "api1").mkdir()
    (project / "services" / "api1" / "mine.txt").write_text("keep me")
    result = nself("service", "add", "api1", "-t", "node", cwd=project)
    assert result.code == 1 and "services/api1 already exists" in result.err
    assert "--use-existing" in result.err
    assert (project / "services" / "api1" / "mine.txt").read_text() == "keep me"


def test_remove_unknown_names_the_services(project: Path, nself: Run) -> None:
    result = nself("service", "remove", "ghost", cwd=project)
    assert result.code == 1 and "no custom service named 'ghost'" in result.err
    assert "nself service add" in result.err
    nself("service", "add", "real", "-t", "node", cwd=project)
    assert "custom services: real" in nself("service", "remove", "ghost", cwd=project).err


def test_add_checks_the_dev_stack_whatever_the_target(project: Path, nself: Run) -> None:
    """The slot lands in .env.dev: a prod target with dev-stub secrets does not block it."""
    assert nself("env", "switch", "prod", cwd=project).code == 0
    result = nself("service", "add", "api1", "-t", "node", cwd=project)
    assert result.code == 0, result.output
    assert "https://api1.local.nself.org" in result.out


def test_urls_carry_a_non_standard_https_port(project: Path, nself: Run) -> None:
    set_env(project, ".env.dev", NGINX_HTTPS_PORT="8443")
    result = nself("service", "add", "api1", "-t", "node", "--json", cwd=project)
    assert json.loads(result.out)["url"] == "https://api1.local.nself.org:8443"
    rows = json.loads(nself("service", "list", "--json", cwd=project).out)
    assert rows[0]["url"] == "https://api1.local.nself.org:8443"


def test_queue_workers_depend_on_redis_when_it_runs(project: Path, nself: Run) -> None:
    result = nself("service", "add", "jobs", "-t", "bullmq", cwd=project)
    assert result.code == 0, result.output
    assert "needs redis, which is not part of the stack" in result.err
    assert "CS_1_DEPENDS_ON=redis" in result.err
    assert "DEPENDS_ON" not in envslots.read(project)[1].values
    set_env(project, ".env.dev", REDIS_ENABLED="true")
    result = nself("service", "add", "tasks", "-t", "celery", cwd=project)
    assert result.code == 0 and "warning" not in result.err, result.output
    assert envslots.read(project)[2].values["DEPENDS_ON"] == "redis"
    built = nself("build", cwd=project)
    assert built.code == 0, built.output
    computed = (project / ".env.computed").read_text()
    assert "CS_2_ENV_REDIS_URL=redis://:" in computed  # the stack's password-protected Redis


def test_an_image_gets_a_slot_without_code(project: Path, nself: Run) -> None:
    """The seed's CS_1 pattern: a ready image, routed at its subdomain."""
    args = ("ping_api", "--image", "nself/ping-api:latest", "--port", "8001", "--subdomain", "ping")
    result = nself("service", "add", *args, cwd=project)
    assert result.code == 0, result.output
    assert "image nself/ping-api:latest" in result.out
    values = envslots.read(project)[1].values
    assert values["IMAGE"] == "nself/ping-api:latest" and "BUILD" not in values
    assert values["ENV_DATABASE_URL"] == "${DATABASE_POOL_URL}"  # the pool, once installed
    assert [p.name for p in (project / "services").iterdir()] == ["README"]  # nothing added
    result = nself("build", "--json", cwd=project)
    assert json.loads(result.out)["urls"]["ping-api"] == "https://ping.local.nself.org"
    compose = (project / "docker-compose.yml").read_text()
    assert "image: nself/ping-api:latest" in compose
    assert "http://127.0.0.1:8001/health" in compose  # Compose's wget check for images


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x"], "pass either --template T"),
        (["x", "-t", "node", "--image", "nginx:1"], "pass either --template T"),
        (["x", "--image", "Not An Image"], "invalid image reference"),
        (["x", "--image", "nginx:1", "--use-existing"], "an --image has no code"),
    ],
)
def test_template_or_image(project: Path, nself: Run, args: list[str], message: str) -> None:
    result = nself("service", "add", *args, cwd=project)
    assert result.code == 2 and message in result.err, result.output
    assert result.err.splitlines()[1].startswith("hint: ")


def test_env_block_round_trips() -> None:
    text = "A=1\n# mine\nCS_1_NAME=x\n"
    added = envslots.appended(text, "api", 2, [("NAME", "api"), ("PORT", "8002")])
    assert added == text + "\n# --- custom service api (nself service add) ---\n" + (
        "CS_2_NAME=api\nCS_2_PORT=8002\n"
    )
    assert envslots.without(added, 2, "api") == text


def test_start_up_stays_light() -> None:
    """Loading the plugin (on every nself start) must not pull in Jinja2 or the catalogue."""
    import subprocess
    import sys

    code = (
        "import sys, nself_builtins.services as s\n"
        "heavy = [m for m in ('jinja2', 'dotenv', 'tomllib',"
        " 'nself_builtins.services.scaffold') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_remove_delete_code_after_an_earlier_remove(project: Path, nself: Run) -> None:
    """The code an earlier remove kept can still be deleted; an image-only slot has none."""
    assert nself("service", "add", "api1", "-t", "python", cwd=project).code == 0
    assert nself("service", "remove", "api1", cwd=project).code == 0
    assert (project / "services" / "api1").is_dir()
    told = nself("service", "remove", "api1", cwd=project)
    assert told.code == 1 and "code an earlier remove kept" in told.err
    assert "--delete-code" in told.err and (project / "services" / "api1").is_dir()
    result = nself("service", "remove", "api1", "--delete-code", cwd=project)
    assert result.code == 0, result.output
    assert "deleted services/api1/" in result.out
    assert not (project / "services" / "api1").exists()
    # a folder that is no service's code (a link out of services/) is never deleted
    (project / "elsewhere").mkdir()
    (project / "services" / "linked").symlink_to(project / "elsewhere")
    refused = nself("service", "remove", "linked", "--delete-code", cwd=project)
    assert refused.code == 1 and (project / "elsewhere").is_dir()

    added = nself("service", "add", "cache", "--image", "redis:7.4-alpine", cwd=project)
    assert added.code == 0, added.output
    removed = nself("service", "remove", "cache", cwd=project)
    assert removed.code == 0, removed.output
    assert "kept its code" not in removed.out and not (project / "services" / "cache").exists()


def test_a_subdomain_taken_in_another_environment_is_refused(project: Path, nself: Run) -> None:
    # Hasura is off on this laptop only: staging and prod still route `api` to it, and the
    # new slot (in .env.dev) is part of every target, so their builds would fail.
    set_env(project, ".env.local", HASURA_ENABLED="false", AUTH_ENABLED="false")
    set_env(project, ".env.prod", SEARCH_ENABLED="true")
    before = snapshot(project)
    result = nself("service", "add", "web", "-t", "node", "--subdomain", "api", cwd=project)
    assert result.code == 1, result.output
    assert "subdomain 'api' is already routed to service hasura in staging and prod" in result.err
    assert "--subdomain" in result.err
    search = nself("service", "add", "finder", "-t", "node", "--subdomain", "search", cwd=project)
    assert search.code == 1 and "service meilisearch in prod" in search.err, search.output
    assert snapshot(project) == before
    assert nself("service", "add", "web", "-t", "node", "--subdomain", "www", cwd=project).code == 0


def test_list_shows_the_url_the_stack_publishes(
    project: Path, nself: Run, nself_plugins: Callable[..., None]
) -> None:
    """`nself service list` asks the stack for its URLs (nginx's `contribute_urls`, or a
    plugin that publishes it elsewhere), as `nself service add` and `nself urls` do."""
    from nself_sdk import hookimpl

    assert nself("service", "add", "api1", "-t", "node", cwd=project).code == 0

    class Tunnel:
        @hookimpl(tryfirst=True)
        def contribute_urls(self, config: object, stack: object) -> dict[str, str]:
            return {"api1": "https://api1.tunnel.example"}

    nself_plugins(tunnel=Tunnel())
    rows = json.loads(nself("service", "list", "--json", cwd=project).out)
    assert [(r["name"], r["url"]) for r in rows] == [("api1", "https://api1.tunnel.example")]
    assert "https://api1.tunnel.example" in nself("service", "list", cwd=project).out
