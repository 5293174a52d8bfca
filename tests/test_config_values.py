"""Setting values that reach nginx, Compose and public URLs: refused with file:line when they
would break or inject into the generated configuration, through the real CLI."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import needs_docker, standin
from kernel_helpers import compose_config, mail_server
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]

SLOT = {"CS_1_NAME": "a", "CS_1_IMAGE": "x:1", "CS_1_PORT": "8001"}


def lines_of(project: Path, file: str = ".env.local") -> int:
    return len((project / file).read_text().splitlines())


# -- F2: nothing from an env file can inject into the nginx configuration ---------------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CS_1_SUBDOMAIN", "a;b"),
        ("CS_1_SUBDOMAIN", "has space"),
        ("CS_1_SUBDOMAIN", "Bad_Sub"),
        ("CS_1_SUBDOMAIN", "api.v2"),
        ("CS_1_SUBDOMAIN", "-edge"),
        ("CS_1_SUBDOMAIN", "x" * 64),
        ("BASE_DOMAIN", "a;b.com"),
        ("BASE_DOMAIN", "Example.com"),
        ("BASE_DOMAIN", "a..com"),
        ("HASURA_SUBDOMAIN", "x;y"),
        ("AUTH_SUBDOMAIN", "a}b"),
        ("STORAGE_SUBDOMAIN", 'a"b'),
        ("STORAGE_CONSOLE_SUBDOMAIN", "a{"),
        ("FUNCTIONS_SUBDOMAIN", "f n"),
        ("SEARCH_SUBDOMAIN", "s;"),
        ("MAIL_SUBDOMAIN", "m'"),
        ("GRAFANA_SUBDOMAIN", "g#x"),
        ("NGINX_CLIENT_MAX_BODY_SIZE", "1m;evil"),
        ("NGINX_CLIENT_MAX_BODY_SIZE", "10 m"),
        ("STORAGE_MAX_BODY_SIZE", "5g;}"),
    ],
)
def test_values_that_would_break_nginx_are_refused_with_file_and_line(
    project: Path, nself: Run, name: str, value: str
) -> None:
    assert nself("build", cwd=project).code == 0
    set_env(project, ".env.local", **SLOT, STORAGE_ENABLED="true", **{name: value})
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert f"error: .env.local:{lines_of(project)}: {name}={value!r} is not a" in result.err
    assert "hint: " in result.err and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("CS_1_SUBDOMAIN", "ping-2"),
        ("BASE_DOMAIN", "shop.example.com"),
        ("HASURA_SUBDOMAIN", "graphql"),
        ("NGINX_CLIENT_MAX_BODY_SIZE", "512k"),
        ("STORAGE_MAX_BODY_SIZE", "10G"),
    ],
)
def test_valid_values_still_build(project: Path, nself: Run, name: str, value: str) -> None:
    set_env(project, ".env.local", **SLOT, STORAGE_ENABLED="true", **{name: value})
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    sites = "".join(p.read_text() for p in (project / "nginx").rglob("*.conf"))
    assert value in sites


# -- F3: NGINX_BIND is an IP address ------------------------------------------------------


@pytest.mark.parametrize("bind", ["not-an-ip", "0.0.0.0:1", "localhost", "[::1]", "1.2.3.4.5"])
def test_a_bind_address_that_is_not_an_ip_is_refused(project: Path, nself: Run, bind: str) -> None:
    set_env(project, ".env.local", NGINX_BIND=bind)
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    line = lines_of(project)
    assert f"error: .env.local:{line}: NGINX_BIND={bind!r} is not an IP address" in result.err
    assert "hint: use one address of this host without a port" in result.err


@needs_docker
@pytest.mark.parametrize("bind", ["::1", "0.0.0.0", "127.0.0.1"])
def test_ip_addresses_bind_and_compose_accepts_them(project: Path, nself: Run, bind: str) -> None:
    set_env(project, ".env.local", NGINX_BIND=bind)
    assert nself("build", cwd=project).code == 0
    ports = compose_config(project)["services"]["nginx"]["ports"]
    assert {p["host_ip"] for p in ports} == {bind}


# -- F4: public URLs carry the HTTPS port when it is not 443 --------------------------------


def computed(project: Path) -> dict[str, str | None]:
    from dotenv import dotenv_values

    return dict(dotenv_values(project / ".env.computed"))


def test_public_urls_and_cors_origins_carry_a_non_default_https_port(
    project: Path, nself: Run
) -> None:
    set_env(project, ".env.local", NGINX_HTTP_PORT="8080", NGINX_HTTPS_PORT="8443")
    set_env(project, ".env.local", FUNCTIONS_ENABLED="true", STORAGE_ENABLED="true")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert "https://auth.local.nself.org:8443" in result.out  # the summary already did
    env = computed(project)
    assert env["AUTH_SERVER_URL"] == "https://auth.local.nself.org:8443"
    assert env["AUTH_CLIENT_URL"] == "https://local.nself.org:8443"
    cors = str(env["HASURA_GRAPHQL_CORS_DOMAIN_EFFECTIVE"]).split(",")
    assert "https://*.local.nself.org:8443" in cors and "https://local.nself.org:8443" in cors
    assert not [o for o in cors if o.startswith("https://") and not o.endswith(":8443")]
    assert env["S3_PUBLIC_ENDPOINT"] == "https://storage.local.nself.org:8443"
    assert (
        "NHOST_BACKEND_URL: https://local.nself.org:8443"
        in (project / "docker-compose.yml").read_text()
    )


def test_public_urls_on_port_443_have_no_port(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", BASE_DOMAIN="example.com")
    assert nself("build", cwd=project).code == 0
    env = computed(project)
    assert env["AUTH_SERVER_URL"] == "https://auth.example.com"
    assert env["AUTH_CLIENT_URL"] == "https://example.com"
    assert env["HASURA_GRAPHQL_CORS_DOMAIN_EFFECTIVE"] == (
        "https://*.example.com,https://example.com,http://localhost:*"
    )


def test_an_auth_client_url_from_a_file_wins(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", NGINX_HTTPS_PORT="8443", AUTH_CLIENT_URL="https://app.io")
    assert nself("build", cwd=project).code == 0
    assert computed(project)["AUTH_CLIENT_URL"] == "https://app.io"


# -- F5: a short JWT key names the setting and line it comes from, with a hint that works ----


def drop_line(path: Path, number: int) -> None:
    lines = path.read_text().splitlines(keepends=True)
    del lines[number - 1]
    path.write_text("".join(lines))


def test_a_short_jwt_key_names_its_line_and_the_hint_fixes_it(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", HASURA_JWT_KEY="tiny-key")
    line = lines_of(project)
    result = nself("build", cwd=project)
    assert result.code == 1
    first, hint = result.err.splitlines()[:2]
    assert first == (
        f"error: .env.local:{line}: HASURA_JWT_KEY is shorter than 32 characters "
        "(it is the HS256 key in HASURA_GRAPHQL_JWT_SECRET)"
    )
    assert "tiny-key" not in result.output  # a secret value is never shown
    assert hint.endswith("or delete that line and run `nself secrets generate`")
    # Follow the hint.
    drop_line(project / ".env.local", line)
    assert nself("secrets", "generate", cwd=project).code == 0
    assert nself("build", cwd=project).code == 0, "the hint did not fix the build"


def test_a_short_jwt_key_in_prod_secrets_and_the_hint_fixes_it(project: Path, nself: Run) -> None:
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    mail_server(project)
    secrets = project / ".env.secrets.prod"
    text = secrets.read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if t.startswith("HASURA_JWT_KEY="))
    text[line - 1] = "HASURA_JWT_KEY=tooshort"
    secrets.write_text("\n".join(text) + "\n")
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 1
    assert f"error: .env.secrets.prod:{line}: HASURA_JWT_KEY is shorter than 32" in result.err
    assert "delete that line and run `nself secrets generate --env prod`" in result.err
    drop_line(secrets, line)
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 0, result.output


def test_a_short_key_written_into_the_json_names_that_line(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", HASURA_GRAPHQL_JWT_SECRET='\'{"type":"HS256","key":"k"}\'')
    result = nself("build", cwd=project)
    assert result.code == 1
    assert (
        f"error: .env.local:{lines_of(project)}: the HS256 key in HASURA_GRAPHQL_JWT_SECRET is "
        "shorter than 32 characters"
    ) in result.err


# -- F15: CORS open to every origin ---------------------------------------------------------


@pytest.mark.parametrize("cors", ["*", "https://app.example.com, *", "https://*", "http://*:*"])
def test_cors_for_every_origin_is_refused_in_prod(project: Path, nself: Run, cors: str) -> None:
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    set_env(project, ".env.prod", HASURA_GRAPHQL_CORS_DOMAIN=cors)
    result = nself("build", "--env", "prod", "--check", cwd=project)
    assert result.code == 1, result.output
    line = lines_of(project, ".env.prod")
    assert (
        f"error: .env.prod:{line}: HASURA_GRAPHQL_CORS_DOMAIN={cors!r} lets every website call "
        "the GraphQL API from a browser (prod allows only listed origins)"
    ) in result.err
    assert "hint: list the origins of the project's sites" in result.err


def test_cors_for_every_origin_is_a_warning_in_dev(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", HASURA_GRAPHQL_CORS_DOMAIN="*")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    line = lines_of(project)
    assert f"warning: .env.local:{line}: HASURA_GRAPHQL_CORS_DOMAIN='*' lets every" in result.err


def test_listed_cors_origins_build_in_prod(project: Path, nself: Run) -> None:
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    mail_server(project)
    set_env(project, ".env.prod", HASURA_GRAPHQL_CORS_DOMAIN="https://*.shop.io, https://shop.io")
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 0, result.output
    assert "CORS" not in result.err
    cors = computed(project / ".nself/targets/prod")["HASURA_GRAPHQL_CORS_DOMAIN_EFFECTIVE"]
    assert cors == "https://*.shop.io,https://shop.io"


# -- F17: a custom service without a port has no health check: say so ------------------------


def test_a_custom_service_without_a_port_is_warned_about(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", CS_3_NAME="worker", CS_3_IMAGE="x:1")
    line = lines_of(project) - 1
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert (
        f"warning: .env.local:{line}: CS_3 (worker) has no health check: without CS_3_PORT"
    ) in result.err
    assert "CS_3_HEALTHCHECK=image" in result.err and "set CS_3_PORT" in result.err
    import yaml

    service = yaml.safe_load((project / "docker-compose.yml").read_text())["services"]["worker"]
    assert "healthcheck" not in service


@pytest.mark.parametrize(
    "values",
    [{"CS_3_PORT": "8003"}, {"CS_3_HEALTHCHECK": "image"}, {"CS_3_HEALTHCHECK": "none"}],
)
def test_a_custom_service_with_a_health_check_is_not_warned_about(
    project: Path, nself: Run, values: dict[str, str]
) -> None:
    set_env(project, ".env.local", CS_3_NAME="worker", CS_3_IMAGE="x:1", **values)
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert "health check" not in result.err


# -- F18: a subdomain routed twice names the slots, not "custom and custom" ------------------


def test_a_subdomain_clash_between_two_slots_names_both_slots(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", **SLOT, CS_1_SUBDOMAIN="shop")
    set_env(project, ".env.local", CS_2_NAME="b", CS_2_IMAGE="x:1", CS_2_PORT="8002")
    set_env(project, ".env.local", CS_2_SUBDOMAIN="shop")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1
    assert result.err.splitlines()[0] == (
        "error: subdomain 'shop' is routed by both custom (CS_1) and custom (CS_2)"
    )


def test_a_slot_taking_a_core_subdomain_names_the_slot(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", **SLOT, CS_1_SUBDOMAIN="api")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1
    assert "subdomain 'api' is routed by both hasura and custom (CS_1)" in result.err


# -- N2: a slot number is written without leading zeros; an error is reported once ----------


@pytest.mark.parametrize("spelled", ["02", "002", "0"])
def test_a_slot_number_with_a_leading_zero_is_refused_at_its_line(
    project: Path, nself: Run, spelled: str
) -> None:
    set_env(project, ".env.local", CS_2_NAME="b", CS_2_IMAGE="b:1", CS_2_PORT="8002")
    set_env(project, ".env.local", **{f"CS_{spelled}_NAME": "c", f"CS_{spelled}_IMAGE": "c:1"})
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    line = lines_of(project) - 1
    assert f"error: .env.local:{line}: CS_{spelled}_NAME: " in result.err
    assert result.err.count("error: ") == 1, result.err
    assert "Traceback" not in result.output


def test_an_error_in_a_slot_is_reported_once(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", CS_2_NAME="b", CS_2_IMAGE="b:1", CS_2_HEALTHCHECK="/health")
    set_env(project, ".env.local", CS_02_NAME="c", CS_02_IMAGE="c:1")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert result.err.count("CS_2_HEALTHCHECK='/health' is unknown") == 1, result.err


# -- N3: a slot setting's error names that setting's line ------------------------------------


def test_a_wrong_slot_setting_names_its_own_line_and_the_hint_explains_the_values(
    project: Path, nself: Run
) -> None:
    set_env(project, ".env.local", CS_2_NAME="b", CS_2_IMAGE="b:1", CS_2_PORT="8002")
    set_env(project, ".env.local", CS_2_HEALTHCHECK="/health")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    line = lines_of(project)
    assert f"error: .env.local:{line}: CS_2_HEALTHCHECK='/health' is unknown" in result.err
    assert "wget (Compose probes" in result.err and "image (the image's own" in result.err
    assert "none (no health check)" in result.err and "CS_<N>_HEALTH_PATH" in result.err


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [("CS_2_PORT", "70000", "CS_2_PORT must be 1-65535"), ("CS_2_SUBDOMAIN", "b", "needs")],
)
def test_other_slot_settings_name_their_own_line(
    project: Path, nself: Run, name: str, value: str, message: str
) -> None:
    slot = {"CS_2_NAME": "b", "CS_2_IMAGE": "b:1"}
    if name != "CS_2_PORT":
        slot["CS_2_HEALTHCHECK"] = "none"
    set_env(project, ".env.local", **slot)
    set_env(project, ".env.local", **{name: value})
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert f"error: .env.local:{lines_of(project)}: " in result.err and message in result.err


# -- N4: values that pass the build must pass nginx -t and docker compose --------------------


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("NGINX_CLIENT_MAX_BODY_SIZE", "99999999999999999999g", "is not a size"),
        ("NGINX_CLIENT_MAX_BODY_SIZE", "8589934592g", "is not a size"),
        ("STORAGE_MAX_BODY_SIZE", "9223372036854775808", "is not a size"),
        ("RATE_LIMIT_AUTH", "0r/s", "is not a rate"),
        ("RATE_LIMIT_GENERAL", "01r/s", "is not a rate"),
        ("RATE_LIMIT_GRAPHQL", "1000000000r/m", "is not a rate"),
        ("NGINX_BIND", "fe80::1%eth0", "is not an IP address"),
    ],
)
def test_values_nginx_or_compose_would_refuse_are_refused_at_build(
    project: Path, nself: Run, name: str, value: str, message: str
) -> None:
    set_env(project, ".env.local", STORAGE_ENABLED="true", **{name: value})
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert f"error: .env.local:{lines_of(project)}: {name}={value!r} {message}" in result.err
    assert "hint: " in result.err


@needs_docker
def test_the_largest_accepted_size_and_rates_pass_nginx_t(
    project: Path, nself: Run, docker_engine: None
) -> None:
    set_env(
        project,
        ".env.local",
        NGINX_CLIENT_MAX_BODY_SIZE="8589934591g",
        RATE_LIMIT_GENERAL="999999999r/s",
        RATE_LIMIT_AUTH="1r/m",
    )
    assert nself("build", cwd=project).code == 0
    mount = f"{project / 'nginx'}:/etc/nginx/nself:ro"
    check = ("nginx", "-q", "-t", "-c", "/etc/nginx/nself/nginx.conf")
    done = subprocess.run(
        ["docker", "run", "--rm", "-v", mount, standin("nginx"), *check],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


# -- N5: one rule for `init --domain` and BASE_DOMAIN in an env file --------------------------


@pytest.mark.parametrize(
    ("domain", "why"),
    [
        ("127.0.0.1", "is an IP address"),
        ("::1", "is an IP address"),
        ("localhost", "is one label"),
        ("EX.com", "has capital letters"),
        ("a..com", "is not a DNS name"),
    ],
)
def test_a_domain_is_refused_alike_by_init_and_in_an_env_file(
    project: Path, nself: Run, tmp_path: Path, domain: str, why: str
) -> None:
    made = nself("init", str(tmp_path / "other"), "--name", "other", "--domain", domain)
    assert made.code != 0 and f"invalid domain {domain!r}: {why}" in made.err, made.output
    set_env(project, ".env.local", BASE_DOMAIN=domain)
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    line = lines_of(project)
    assert f"error: .env.local:{line}: BASE_DOMAIN={domain!r} is not a domain name: {why}" in (
        result.err
    )


def test_a_valid_domain_is_accepted_alike(project: Path, nself: Run, tmp_path: Path) -> None:
    made = nself("init", str(tmp_path / "other"), "--name", "other", "--domain", "app.ex-1.com")
    assert made.code == 0, made.output
    set_env(project, ".env.local", BASE_DOMAIN="app.ex-1.com")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output


# -- N9: HASURA_GRAPHQL_JWT_SECRET in every form Hasura takes, and no other -------------------

PEM = "-----BEGIN PUBLIC KEY-----\\nMCowBQYDK2VwAyEA\\n-----END PUBLIC KEY-----\\n"


@pytest.mark.parametrize(
    "secret",
    [
        '{"jwk_url":"https://x.example.com/jwks"}',
        '{"jwk_url":"https://x.example.com/jwks","claims_namespace":"https://x/claims"}',
        '{"type":"HS512","key":"' + "k" * 40 + '"}',
        '{"type":"RS256","key":"' + PEM + '"}',
        '{"type":"Ed25519","key":"' + PEM + '"}',
    ],
)
def test_every_jwt_secret_form_hasura_takes_builds(project: Path, nself: Run, secret: str) -> None:
    set_env(project, ".env.local", AUTH_ENABLED="false", HASURA_GRAPHQL_JWT_SECRET=f"'{secret}'")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ('{"type":"HS999","key":"' + "k" * 40 + '"}', "the \"type\" 'HS999' in"),
        ('{"type":"RS256","key":"notpem"}', 'the RS256 "key" in'),
        ('{"type":"ES256"}', 'the ES256 "key" in'),
        ('{"jwk_url":"not a url"}', 'the "jwk_url" in'),
        ('{"key":"' + "k" * 40 + '"}', 'needs a "type" and a "key"'),
        ('["HS256"]', "is not a JSON object"),
    ],
)
def test_a_jwt_secret_hasura_would_refuse_is_refused_at_its_line(
    project: Path, nself: Run, secret: str, message: str
) -> None:
    set_env(project, ".env.local", HASURA_GRAPHQL_JWT_SECRET=f"'{secret}'")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert f"error: .env.local:{lines_of(project)}: " in result.err and message in result.err
    assert "hint: " in result.err


# -- N12: a generated secret missing from every layer points to `nself secrets generate` ------


def test_a_missing_generated_secret_names_itself_and_the_hint_fixes_it(
    project: Path, nself: Run
) -> None:
    dev = project / ".env.dev"
    dev.write_text(
        "".join(li for li in dev.read_text().splitlines(True) if "HASURA_JWT_KEY" not in li)
    )
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert (
        "error: HASURA_JWT_KEY is not set in any env file of dev, and HASURA_GRAPHQL_JWT_SECRET "
        "(its default value) refers to it" in result.err
    )
    assert "hint: run `nself secrets generate`" in result.err and ":-default" not in result.err
    assert nself("secrets", "generate", cwd=project).code == 0
    fixed = nself("build", cwd=project)
    assert fixed.code == 0, fixed.output


def test_an_undefined_reference_to_a_plain_setting_keeps_its_file_and_line(
    project: Path, nself: Run
) -> None:
    set_env(project, ".env.local", CS_1_NAME="a", CS_1_IMAGE="x:1", CS_1_ENV_X="${NOPE_VALUE}")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert f"error: .env.local:{lines_of(project)}: CS_1_ENV_X refers to undefined" in result.err


# -- N14: an empty *_SUBDOMAIN would still route the default: refused ------------------------


@pytest.mark.parametrize("name", ["HASURA_SUBDOMAIN", "AUTH_SUBDOMAIN", "STORAGE_SUBDOMAIN"])
def test_an_empty_subdomain_is_refused_at_its_line(project: Path, nself: Run, name: str) -> None:
    set_env(project, ".env.local", STORAGE_ENABLED="true", **{name: ""})
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert f"error: .env.local:{lines_of(project)}: {name} is empty" in result.err
    assert "delete the line for the default" in result.err


def test_an_empty_slot_subdomain_still_means_internal(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", **SLOT, CS_1_SUBDOMAIN="")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output


# -- N15: slot settings nself does not read are named, not dropped silently -------------------


@pytest.mark.parametrize("key", ["VOLUMES", "MEMORY", "CPUS"])
def test_an_unknown_slot_setting_is_warned_about_at_its_line(
    project: Path, nself: Run, key: str
) -> None:
    set_env(project, ".env.local", **SLOT, **{f"CS_1_{key}": "x"})
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    line = lines_of(project)
    assert f"warning: .env.local:{line}: CS_1_{key} is not a custom service setting" in (result.err)
    assert "NAME, IMAGE, BUILD, PORT, SUBDOMAIN" in result.err and "ENV_<NAME>" in result.err


def test_a_slot_env_without_a_name_is_warned_about(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", **SLOT, CS_1_ENV_="x")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert f"warning: .env.local:{lines_of(project)}: CS_1_ENV_ names no variable" in result.err


def test_a_near_typo_in_a_slot_is_reported_once(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", **SLOT, CS_1_HEALTH_PTH="/h", CS_1_ENV_LOG="1")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert result.err.count("CS_1_HEALTH_PTH") == 2  # the warning and its hint
    assert "CS_1_ENV_LOG" not in result.err


# -- N17: the dev stack published to the network is warned about -----------------------------


@pytest.mark.parametrize("bind", ["0.0.0.0", "::", "192.168.1.10"])
def test_dev_published_to_the_network_is_warned_about(project: Path, nself: Run, bind: str) -> None:
    set_env(project, ".env.local", NGINX_BIND=bind)
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert f"warning: .env.local:{lines_of(project)}: NGINX_BIND={bind} publishes the dev" in (
        result.err
    )


@pytest.mark.parametrize("bind", ["127.0.0.1", "::1"])
def test_dev_on_this_machine_only_is_not_warned_about(project: Path, nself: Run, bind: str) -> None:
    set_env(project, ".env.local", NGINX_BIND=bind)
    result = nself("build", cwd=project)
    assert result.code == 0 and "NGINX_BIND" not in result.err, result.output


def test_prod_on_every_address_is_not_warned_about(project: Path, nself: Run) -> None:
    set_env(project, ".env.prod", NGINX_BIND="0.0.0.0")
    assert nself("secrets", "generate", "--env", "prod", cwd=project).code == 0
    mail_server(project)
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 0, result.output
    assert "NGINX_BIND" not in result.err


# -- N18: image references, build folders and project names are checked at build -------------


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("NGINX_IMAGE", "nginx:1.25 alpine"),
        ("POSTGRES_IMAGE", "Postgres:16"),
        ("HASURA_IMAGE", "hasura/graphql-engine:"),
        ("CS_1_IMAGE", "Bad Image"),
        ("CS_1_IMAGE", "x:1:2"),
    ],
)
def test_a_malformed_image_reference_is_refused_at_its_line(
    project: Path, nself: Run, name: str, value: str
) -> None:
    set_env(project, ".env.local", **SLOT)
    set_env(project, ".env.local", **{name: f"'{value}'"})
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    line = lines_of(project)
    assert f"error: .env.local:{line}: {name}={value!r} is not an image reference" in result.err
    assert result.err.count("error: ") == 1, result.err


@pytest.mark.parametrize(
    "image",
    ["nginx", "nginx:1.25-alpine", "ghcr.io/owner/app:1.0", "localhost:5000/a/b_c:v1"],
)
def test_well_formed_image_references_build(project: Path, nself: Run, image: str) -> None:
    set_env(project, ".env.local", **{**SLOT, "CS_1_IMAGE": image}, NGINX_IMAGE=image)
    result = nself("build", cwd=project)
    assert result.code == 0, result.output


def test_a_build_folder_that_does_not_exist_is_refused(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", CS_1_NAME="a", CS_1_PORT="8001")
    set_env(project, ".env.local", CS_1_BUILD="./services/nope")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    assert (
        f"error: .env.local:{lines_of(project)}: CS_1_BUILD='./services/nope': no such folder"
        in result.err
    )
    (project / "services" / "nope").mkdir(parents=True)
    (project / "services" / "nope" / "Dockerfile").write_text("FROM scratch\n")
    fixed = nself("build", cwd=project)
    assert fixed.code == 0, fixed.output


@pytest.mark.parametrize("name", ["Bad Name", "Demo", "my.app"])
def test_a_project_name_that_would_be_rewritten_is_refused(
    project: Path, nself: Run, name: str
) -> None:
    set_env(project, ".env.local", PROJECT_NAME=f"'{name}'")
    result = nself("build", "--check", cwd=project)
    assert result.code == 1, result.output
    line = lines_of(project)
    assert f"error: .env.local:{line}: PROJECT_NAME={name!r} is not a valid project name" in (
        result.err
    )


@pytest.mark.parametrize("name", ["demo", "my_app", "app-2"])
def test_a_valid_project_name_builds_unchanged(project: Path, nself: Run, name: str) -> None:
    set_env(project, ".env.local", PROJECT_NAME=name)
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    assert f"name: {name}\n" in (project / "docker-compose.yml").read_text()
