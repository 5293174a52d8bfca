"""Layered env files through the real CLI: precedence, syntax, JSON values, clear errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from docker_helpers import needs_docker
from kernel_helpers import compose_config, read_computed, strong_secrets
from nself_sdk.testing import Result, set_env

Run = Callable[..., Result]


def assert_one_error(result: Result, *parts: str) -> None:
    """A failure is exit 1, an ``error:`` line naming ``parts``, a hint, no traceback."""
    assert result.code == 1, result.output
    first = result.err.splitlines()[0]
    assert first.startswith("error: "), result.err
    for part in parts:
        assert part in first, (part, first)
    assert "hint: " in result.err
    assert "Traceback" not in result.output


def test_layers_override_in_the_seed_order(project: Path, nself: Run) -> None:
    set_env(project, ".env.dev", A="dev", B="dev", C="dev", D="dev")
    set_env(project, ".env.local", B="local", C="local", D="local")
    set_env(project, ".env.staging", C="staging", D="staging")
    set_env(project, ".env.secrets", D="secret")
    assert nself("build", cwd=project).code == 0
    assert {k: read_computed(project)[k] for k in "ABCD"} == {
        "A": "dev",
        "B": "local",
        "C": "local",  # .env.staging is not a layer of the local target
        "D": "secret",
    }


def test_env_local_never_reaches_staging_or_prod(project: Path, nself: Run) -> None:
    """A developer's own overrides stay on the laptop: staging reads .env.staging instead."""
    strong_secrets(project)
    set_env(project, ".env.dev", A="dev", B="dev")
    set_env(project, ".env.local", A="local", B="local")
    set_env(project, ".env.staging", B="staging")
    result = nself("build", "--env", "staging", cwd=project)
    assert result.code == 0, result.output
    computed = read_computed(project / ".nself/targets/staging")  # staging's own build
    assert (computed["A"], computed["B"], computed["ENV"]) == ("dev", "staging", "staging")


def test_syntax_export_quotes_comments_and_interpolation(project: Path, nself: Run) -> None:
    (project / ".env.local").write_text(
        "# a comment line\n"
        "export PLAIN=word\n"
        'DOUBLE="two ${PLAIN}s"   # trailing comment\n'
        "SINGLE='kept ${PLAIN} as is'\n"
        "DEFAULTED=${NOT_SET_ANYWHERE:-fallback}\n"
        "SET_WINS=${PLAIN:-unused}\n"
        "HASH=a#b\n"
        "INLINE=value # comment\n"
        "EMPTY=\n"
        'SPACES="  padded  "\n'
    )
    assert nself("build", cwd=project).code == 0
    computed = read_computed(project)
    assert {k: computed[k] for k in ("PLAIN", "DOUBLE", "SINGLE", "DEFAULTED", "SET_WINS")} == {
        "PLAIN": "word",
        "DOUBLE": "two words",
        "SINGLE": "kept ${PLAIN} as is",
        "DEFAULTED": "fallback",
        "SET_WINS": "word",
    }
    assert (computed["HASH"], computed["INLINE"], computed["EMPTY"]) == ("a#b", "value", "")
    assert computed["SPACES"] == "  padded  "


@needs_docker
def test_json_jwt_secret_survives_into_docker_compose_config(project: Path, nself: Run) -> None:
    key = "k" * 20 + "-Z9_y8x7w6v5u4t3s2r1q"
    raw = '{"type":"HS256","key":"' + key + '","claims_namespace":"https://hasura.io/jwt/claims"}'
    set_env(project, ".env.local", HASURA_GRAPHQL_JWT_SECRET=raw)
    assert nself("build", cwd=project).code == 0
    env = compose_config(project)["services"]["hasura"]["environment"]
    assert env["HASURA_GRAPHQL_JWT_SECRET"] == raw
    assert json.loads(env["HASURA_GRAPHQL_JWT_SECRET"])["key"] == key


@needs_docker
def test_interpolated_json_default_reaches_compose_intact(project: Path, nself: Run) -> None:
    """The default JWT config embeds ${HASURA_JWT_KEY}; Compose sees the finished JSON."""
    assert nself("build", cwd=project).code == 0
    key = read_computed(project)["HASURA_JWT_KEY"]
    env = compose_config(project)["services"]["hasura"]["environment"]
    assert json.loads(env["HASURA_GRAPHQL_JWT_SECRET"]) == {"type": "HS256", "key": key}


@pytest.mark.parametrize(
    ("line", "expect"),
    [
        ("NOT A LINE", "cannot parse"),
        ("'unterminated='x", "cannot parse"),
        ("BARE_WORD", "has no '='"),
        ("1ABC=x", "invalid variable name"),
        ("A='unterminated", "cannot parse"),
    ],
)
def test_malformed_line_names_file_and_line(
    project: Path, nself: Run, line: str, expect: str
) -> None:
    (project / ".env.local").write_text("# first\nGOOD=1\n" + line + "\n")
    assert_one_error(nself("build", cwd=project), ".env.local:3", expect)


def test_unknown_env_names_file_and_line(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", ENV="production-ish")
    lines = (project / ".env.local").read_text().splitlines()
    assert_one_error(nself("build", cwd=project), f".env.local:{len(lines)}", "unknown environment")


def test_env_contradicting_the_target_is_refused(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", ENV="prod")
    assert_one_error(nself("build", cwd=project), ".env.local:", "ENV=prod")


def test_unknown_env_option_is_a_usage_error(project: Path, nself: Run) -> None:
    result = nself("build", "--env", "moon", cwd=project)
    assert result.code == 2
    assert result.err.startswith("error: unknown environment 'moon'")


def test_undefined_variable_names_file_and_line(project: Path, nself: Run) -> None:
    (project / ".env.local").write_text("A=1\nURL=http://${NO_SUCH_HOST}/x\n")
    assert_one_error(nself("build", cwd=project), ".env.local:2", "${NO_SUCH_HOST}")


def test_interpolation_forms_follow_compose(project: Path, nself: Run) -> None:
    """``:-`` replaces an unset or empty value, ``-`` an unset one only; a default may hold
    references; ``$NAME`` without braces stays literal (documented in environments.md)."""
    (project / ".env.local").write_text(
        "EMPTY=\n"
        "WORD=word\n"
        "DASH_EMPTY=${EMPTY-dflt}\n"
        "COLON_EMPTY=${EMPTY:-dflt}\n"
        "DASH_UNSET=${NOT_SET_ANYWHERE-dflt}\n"
        "DASH_SET=${WORD-dflt}\n"
        "NESTED=${NOT_SET_ANYWHERE:-${WORD:-x}}\n"
        "NESTED_DEEP=<${NOT_SET_ANYWHERE:-${ALSO_NOT_SET-${WORD}s}!}>\n"
        "UNUSED_DEFAULT=${WORD:-${NOT_SET_ANYWHERE}}\n"
        "BRACELESS=$WORD and $ alone\n"
        'JSONISH={"k":"${WORD}"}\n'
    )
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    computed = read_computed(project)
    assert {k: computed[k] for k in computed if k.startswith(("DASH", "COLON", "NEST"))} == {
        "DASH_EMPTY": "",
        "COLON_EMPTY": "dflt",
        "DASH_UNSET": "dflt",
        "DASH_SET": "word",
        "NESTED": "word",
        "NESTED_DEEP": "<words!>",
    }
    assert computed["UNUSED_DEFAULT"] == "word"
    assert computed["BRACELESS"] == "$WORD and $ alone"
    assert computed["JSONISH"] == '{"k":"word"}'


@pytest.mark.parametrize(
    ("value", "expect"),
    [
        ("${NOPE", "a '${' is not closed"),
        ("x${NOT_SET_ANYWHERE:-${WORD}", "a '${' is not closed"),
        ("${}", "not followed by a variable name"),
        ("${1ABC}", "not followed by a variable name"),
        ("${BAD NAME}", "not followed by a variable name"),
        ("${WORD:?required}", "${WORD:?...} is a form nself does not interpolate"),
        ("${WORD:+alt}", "${WORD:+...} is a form nself does not interpolate"),
    ],
)
def test_a_malformed_reference_names_file_and_line(
    project: Path, nself: Run, value: str, expect: str
) -> None:
    (project / ".env.local").write_text("WORD=word\n# note\nX=" + value + "\n")
    result = nself("build", cwd=project)
    assert_one_error(result, ".env.local:3: malformed value of X", expect)
    assert not (project / "docker-compose.yml").exists()


def test_an_undefined_default_reference_names_the_variable(project: Path, nself: Run) -> None:
    (project / ".env.local").write_text("X=${BAR-dflt}${NOT_SET_ANYWHERE:-${NO_SUCH}}\n")
    result = nself("build", cwd=project)
    assert_one_error(result, ".env.local:1", "${NO_SUCH}")
    assert "BAR-dflt" not in result.err and "hint: define NO_SUCH or write" in result.err


def test_circular_reference_is_an_error(project: Path, nself: Run) -> None:
    (project / ".env.local").write_text("A=${B}\nB=${A}\n")
    assert_one_error(nself("build", cwd=project), "circular reference")


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644])
def test_secrets_file_readable_by_others_is_refused(project: Path, nself: Run, mode: int) -> None:
    (project / ".env.secrets").chmod(mode)
    assert_one_error(nself("build", cwd=project), ".env.secrets", f"{mode:04o}")
    assert not (project / "docker-compose.yml").exists()


def test_computed_env_is_private_and_says_it_is_generated(project: Path, nself: Run) -> None:
    assert nself("build", cwd=project).code == 0
    computed = project / ".env.computed"
    assert computed.stat().st_mode & 0o777 == 0o600
    assert computed.read_text().startswith("# Generated by `nself build`")


# -- staging and prod refuse dev stubs and weak secrets ------------------------------------


def test_staging_refuses_dev_stub_secrets(project: Path, nself: Run) -> None:
    result = nself("build", "--env", "staging", cwd=project)
    assert result.code == 1
    assert "POSTGRES_PASSWORD (.env.dev:" in result.err
    assert "dev-stub" in result.err
    assert "Traceback" not in result.output
    assert not (project / "docker-compose.yml").exists()


def test_a_copied_dev_stub_is_still_a_dev_stub(project: Path, nself: Run) -> None:
    strong_secrets(project)
    stub = read_dev_value(project, "HASURA_JWT_KEY")
    set_env(project, ".env.secrets.prod", HASURA_JWT_KEY=stub)
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 1
    assert "HASURA_JWT_KEY (.env.secrets.prod:" in result.err and "dev-stub" in result.err


def test_prod_refuses_a_short_jwt_key(project: Path, nself: Run) -> None:
    strong_secrets(project)
    set_env(project, ".env.secrets.prod", HASURA_JWT_KEY="Sh0rt-but-varied-key-29chars")
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 1
    assert "HASURA_JWT_KEY" in result.err and "32" in result.err


def test_prod_refuses_a_weak_jwt_json(project: Path, nself: Run) -> None:
    strong_secrets(project)
    set_env(project, ".env.prod", HASURA_GRAPHQL_JWT_SECRET='\'{"type":"HS256","key":"tiny"}\'')
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 1
    assert "HASURA_GRAPHQL_JWT_SECRET" in result.err and "32 characters" in result.err


def test_prod_builds_with_real_secrets(project: Path, nself: Run) -> None:
    values = strong_secrets(project)
    result = nself("build", "--env", "prod", cwd=project)
    assert result.code == 0, result.output
    computed = read_computed(project / ".nself/targets/prod")
    assert computed["ENV"] == "prod"
    assert computed["POSTGRES_PASSWORD"] == values["POSTGRES_PASSWORD"]
    jwt = json.loads(computed["HASURA_GRAPHQL_JWT_SECRET"])
    assert jwt["key"] == values["HASURA_JWT_KEY"]
    # No secret value is ever printed.
    for value in values.values():
        assert value not in result.output


def read_dev_value(project: Path, name: str) -> str:
    for line in (project / ".env.dev").read_text().splitlines():
        if line.startswith(name + "="):
            return line.split("=", 1)[1]
    raise AssertionError(f"{name} not in .env.dev")


def test_multiline_values_escapes_and_line_numbers(project: Path, nself: Run) -> None:
    (project / ".env.local").write_text(
        'CERT="-----BEGIN-----\nabc\n-----END-----"\n'
        "QUOTE='it\\'s'\n"
        'ESCAPED="tab\\there \\"q\\""\r\n'
        "AFTER=${MISSING}\n"
    )
    result = nself("build", cwd=project)
    assert result.code == 1
    assert result.err.startswith("error: .env.local:6: AFTER refers to undefined variable")
    (project / ".env.local").write_text(
        (project / ".env.local").read_text().replace("${MISSING}", "${CERT}")
    )
    assert nself("build", cwd=project).code == 0
    computed = read_computed(project)
    assert computed["CERT"] == "-----BEGIN-----\nabc\n-----END-----" == computed["AFTER"]
    assert computed["QUOTE"] == "it's"
    assert computed["ESCAPED"] == 'tab\there "q"'


@needs_docker
def test_a_secret_with_quotes_and_dollars_reaches_compose_unchanged(
    project: Path, nself: Run
) -> None:
    (project / ".env.local").write_text('POSTGRES_PASSWORD="pa\\$s\'w0rd-${NOT_A_VAR}x"\n')
    result = nself("build", cwd=project)
    # ${NOT_A_VAR} is still a reference in double quotes: undefined, so refused.
    assert result.code == 1 and "NOT_A_VAR" in result.err
    # python-dotenv syntax: a lone "$" is literal; a doubled backslash is one backslash.
    (project / ".env.local").write_text('POSTGRES_PASSWORD="pa$s\'w0rd\\\\x"\n')
    assert nself("build", cwd=project).code == 0
    env = compose_config(project)["services"]["postgres"]["environment"]
    # Compose prints a literal "$" as "$$" in its output.
    assert env["POSTGRES_PASSWORD"].replace("$$", "$") == "pa$s'w0rd\\x"


@pytest.mark.parametrize("file", [".env.local", ".env.secrets"])
def test_an_env_file_that_is_not_utf8_names_file_and_line(
    project: Path, nself: Run, file: str
) -> None:
    path = project / file
    path.write_bytes(path.read_bytes() + b"A=1\nX=caf\xe9\n")
    path.chmod(0o600)
    line = path.read_bytes().count(b"\n")
    result = nself("build", cwd=project)
    assert result.code == 1, result.output
    lines = result.err.splitlines()
    assert lines[0] == f"error: {file}:{line}: not valid UTF-8", result.err
    assert lines[1].startswith("hint: ") and "UnicodeDecodeError" not in result.output


def test_an_env_file_that_is_a_folder_or_a_dangling_link_is_an_error(
    project: Path, nself: Run
) -> None:
    local = project / ".env.local"
    local.unlink()
    local.mkdir()
    result = nself("build", cwd=project)
    assert result.code == 1 and ".env.local is a folder" in result.err, result.output
    local.rmdir()
    local.symlink_to(project / "nowhere")
    result = nself("build", cwd=project)
    assert result.code == 1, result.output
    assert ".env.local is a link to" in result.err and "does not exist" in result.err


def test_a_nul_byte_in_an_env_file_is_refused_at_its_line(project: Path, nself: Run) -> None:
    local = project / ".env.local"
    local.write_text(local.read_text() + "A=1\nX=1\x00Y=2\n")
    line = local.read_text().count("\n")
    result = nself("build", cwd=project)
    assert result.code == 1, result.output
    assert f"error: .env.local:{line}: " in result.err and "NUL" in result.err
    assert "\x00" not in result.output


def test_nself_process_variables_in_an_env_file_are_warned_about(project: Path, nself: Run) -> None:
    set_env(project, ".env.local", NSELF_ENV="prod", NSELF_DISABLE_PLUGINS="redis")
    lines = (project / ".env.local").read_text().count("\n")
    result = nself("build", "--json", cwd=project)
    assert result.code == 0, result.output
    data = json.loads(result.out)
    assert data["env"] == "dev"  # read from the shell environment only
    for line, name in ((lines - 1, "NSELF_ENV"), (lines, "NSELF_DISABLE_PLUGINS")):
        assert f".env.local:{line}: {name} " in result.err, result.err
    assert result.err.count("shell environment, not from env files") == 2
