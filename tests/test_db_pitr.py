"""Point-in-time recovery on a real PostgreSQL 15 cluster of its own."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from nself_builtins.database.pitr import archive_command
from nself_sdk.testing import set_env
from pg_cluster import Cluster, archiving_cluster

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    with archiving_cluster("nself-pitr-") as c:
        yield c


def test_archiver_never_overwrites_a_segment_with_other_content(tmp_path: Path) -> None:
    archive = tmp_path / "archive"
    archive.mkdir()
    segment = tmp_path / "000000010000000000000007"
    segment.write_bytes(b"A" * 1024)
    command = archive_command(str(archive)).replace("%p", str(segment)).replace("%f", segment.name)

    def run() -> int:
        return subprocess.run(["sh", "-c", command], check=False).returncode

    assert run() == 0 and (archive / segment.name).read_bytes() == b"A" * 1024
    assert run() == 0  # the same content again (a retry) is fine
    segment.write_bytes(b"B" * 1024)
    assert run() != 0  # different content under the same name is refused
    assert (archive / segment.name).read_bytes() == b"A" * 1024
    assert not list(archive.glob("*.part"))


def test_recover_to_a_noted_time(
    cluster: Cluster, project: Path, nself, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NSELF_DB_URL", cluster.url("postgres"))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(cluster.bindir))
    monkeypatch.setenv("NSELF_PITR_DATA_DIR", str(cluster.data))
    monkeypatch.setenv("NSELF_PITR_ARCHIVE", str(cluster.archive))
    monkeypatch.setenv("NSELF_PG_OS_USER", "postgres")
    cluster.sql("CREATE DATABASE shop")
    cluster.sql("CREATE TABLE ledger (id int, note text); CREATE TABLE keep (id int)", "shop")

    r = nself("db", "pitr", "--target", "2020-01-01 00:00:00 UTC", "--yes", cwd=project)
    assert r.code == 1 and "no base backup" in r.err
    r = nself("db", "pitr", "backup", cwd=project)
    assert r.code == 0, r.output

    cluster.sql("INSERT INTO ledger SELECT g, 'first' FROM generate_series(1, 100) g", "shop")
    cluster.sql("INSERT INTO keep VALUES (1)", "shop")
    time.sleep(1.2)
    noted = datetime.now(UTC)
    time.sleep(1.2)
    cluster.sql("INSERT INTO ledger SELECT g, 'later' FROM generate_series(101, 150) g", "shop")
    cluster.sql("DROP TABLE keep", "shop")

    stamp = noted.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    r = nself("db", "pitr", "--target", stamp, "--dry-run", cwd=project)
    assert r.code == 0, r.output
    assert "recoverable window" in r.out and "dry run" in r.out
    assert cluster.sql("SELECT count(*) FROM ledger", "shop") == [(150,)]

    future = (datetime.now(UTC) + timedelta(hours=1)).strftime("%Y-%m-%d %H:%M:%S UTC")
    r = nself("db", "pitr", "--target", future, "--yes", cwd=project)
    assert r.code == 1 and "outside the recoverable window" in r.err
    r = nself("db", "pitr", "--target", "2020-01-01 00:00:00 UTC", "--yes", cwd=project)
    assert r.code == 1 and "outside the recoverable window" in r.err
    r = nself("db", "pitr", "--target", "yesterday", "--yes", cwd=project)
    assert r.code == 2 and "cannot read the time" in r.err

    r = nself("db", "pitr", "--target", stamp, "--yes", cwd=project)
    assert r.code == 0, r.output
    assert cluster.sql("SELECT note, count(*) FROM ledger GROUP BY 1", "shop") == [("first", 100)]
    assert cluster.sql("SELECT count(*) FROM keep", "shop") == [(1,)]  # the dropped table is back
    assert cluster.sql("SELECT pg_is_in_recovery()") == [(False,)]
    # the server keeps archiving on its new timeline, and the old data folder was kept
    cluster.sql("INSERT INTO keep VALUES (2)", "shop")
    kept = list(cluster.data.parent.glob("data.pre-pitr-*"))
    assert len(kept) == 1
    settings = cluster.sql(
        "SELECT count(*) FROM pg_file_settings WHERE name LIKE 'recovery_target%'"
    )
    assert settings == [(0,)]


def test_prod_pitr_needs_confirm(project: Path, nself) -> None:
    r = nself("db", "pitr", "--target", "2026-05-01 14:30:00 UTC", "--env", "prod", cwd=project)
    assert r.code == 4 and "needs --confirm" in r.err


# -- retention (nself db pitr prune) ------------------------------------------------------------


@pytest.fixture(scope="module")
def fresh() -> Iterator[Cluster]:
    """A cluster of its own, so the archive holds only what the retention tests wrote."""
    with archiving_cluster("nself-pitr-keep-") as c:
        yield c


def _point_at(c: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NSELF_DB_URL", c.url("postgres"))
    monkeypatch.setenv("NSELF_PG_BINDIR", str(c.bindir))
    monkeypatch.setenv("NSELF_PITR_DATA_DIR", str(c.data))
    monkeypatch.setenv("NSELF_PITR_ARCHIVE", str(c.archive))
    monkeypatch.setenv("NSELF_PG_OS_USER", "postgres")


def _age(manifest: Path, days: float) -> dict[str, str]:
    """Move a base backup's recorded start and end back in time (what retention reads)."""
    data = json.loads(manifest.read_text())
    for key in ("start", "end"):
        data[key] = (datetime.fromisoformat(data[key]) - timedelta(days=days)).isoformat()
    manifest.write_text(json.dumps(data))
    return data  # type: ignore[no-any-return]


def _archive(c: Cluster) -> set[str]:
    return {p.name for p in c.archive.iterdir()}


def _settled_archive(c: Cluster, within: float = 60.0) -> set[str]:
    """The archive once the archiver has no copy in flight (a ``.part``): segments of
    earlier work may still be on their way when a command returns."""
    deadline = time.monotonic() + within
    names = _archive(c)
    while any(name.endswith(".part") for name in names):
        assert time.monotonic() < deadline, f"the archiver never finished: {sorted(names)}"
        time.sleep(0.2)
        names = _archive(c)
    return names


def test_prune_drops_old_base_backups_and_their_wal_and_recovery_still_works(
    fresh: Cluster, project: Path, nself, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(fresh, monkeypatch)
    fresh.sql("CREATE DATABASE retail")
    fresh.sql("CREATE TABLE sales (id int, note text)", "retail")
    folder = project / "backups" / "pitr"

    assert nself("db", "pitr", "backup", cwd=project).code == 0  # A
    fresh.sql("INSERT INTO sales SELECT g, 'a' FROM generate_series(1, 100) g", "retail")
    time.sleep(1.1)  # base backups are named by the second
    assert nself("db", "pitr", "backup", cwd=project).code == 0  # B
    fresh.sql("INSERT INTO sales SELECT g, 'b' FROM generate_series(1, 50) g", "retail")
    time.sleep(1.2)
    noted = datetime.now(UTC)
    time.sleep(1.2)
    fresh.sql("INSERT INTO sales SELECT g, 'c' FROM generate_series(1, 25) g", "retail")

    path_a, path_b = sorted(folder.glob("base-*.tar.json"))
    a, b = json.loads(path_a.read_text()), json.loads(path_b.read_text())
    assert a["start_wal"][8:] < b["start_wal"][8:] and a["timeline"] == 1

    # A is 10 days old, B is fresh: A is the newest backup before a 7-day window, so it
    # stays (points early in the window start from it)
    _age(path_a, 10)
    r = nself("db", "pitr", "prune", "--days", "7", "--json", cwd=project)
    assert r.code == 0, r.output
    plan = json.loads(r.out)
    assert plan["delete"]["base_backups"] == [] and plan["keep"]["wal_from"] == a["start_wal"]

    # B ended 8 days ago too: now only B is needed for the whole window
    b = _age(path_b, 8)
    before = _archive(fresh)
    r = nself("db", "pitr", "prune", "--days", "7", "--json", cwd=project)
    assert r.code == 0, r.output
    plan = json.loads(r.out)
    assert plan["dry_run"] is True
    assert plan["delete"]["base_backups"] == [a["name"]]
    assert plan["keep"]["base_backups"][0]["name"] == b["name"]
    assert plan["keep"]["wal_from"] == b["start_wal"]
    wal = plan["delete"]["wal"]
    assert wal["count"] >= 1 and wal["last"][8:24] < b["start_wal"][8:]
    assert plan["delete"]["bytes"] > a["size"]
    r = nself("db", "pitr", "prune", "--days", "7", cwd=project)  # the text dry run
    assert r.code == 0 and f"would delete base backup {a['name']}" in r.out
    assert "nothing deleted" in r.out
    assert _archive(fresh) == before and path_a.exists()  # a dry run deletes nothing
    set_env(project, ".env.local", PITR_RETENTION_DAYS="7")
    r = nself("db", "pitr", "status", "--json", cwd=project)
    assert r.code == 0, r.output
    status = json.loads(r.out)["retention"]
    assert status["days"] == 7 and status["prune"]["delete"]["base_backups"] == [a["name"]]
    r = nself("db", "pitr", "status", cwd=project)
    assert "would delete 1 base backup(s)" in r.out

    r = nself("db", "pitr", "prune", "--days", "7", "--yes", cwd=project)
    assert r.code == 0, r.output
    assert not path_a.exists() and not (folder / a["name"]).exists()
    assert path_b.exists() and (folder / b["name"]).exists()
    after = _archive(fresh)
    gone = before - after
    assert len(gone) == wal["count"]
    assert all(n[8:24] < b["start_wal"][8:] for n in gone)
    assert b["start_wal"] in after
    assert all(n in after for n in before if n[8:24] >= b["start_wal"][8:])

    # a point before the new earliest one is refused, naming the window
    early = datetime.fromisoformat(b["end"]) - timedelta(hours=1)
    r = nself("db", "pitr", "--target", early.isoformat(), "--yes", cwd=project)
    assert r.code == 1 and "outside the recoverable window" in r.err
    assert datetime.fromisoformat(b["end"]).strftime("%Y-%m-%d %H:%M:%S") in r.err
    # a point inside the window still recovers, from B and the WAL that was kept
    stamp = noted.strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    r = nself("db", "pitr", "--target", stamp, "--yes", cwd=project)
    assert r.code == 0, r.output
    assert f"base backup {b['name']}" in r.out
    rows = fresh.sql("SELECT note, count(*) FROM sales GROUP BY 1 ORDER BY 1", "retail")
    assert rows == [("a", 100), ("b", 50)]


def test_prune_keeps_the_newest_and_refuses_bad_input(
    fresh: Cluster, project: Path, nself, monkeypatch: pytest.MonkeyPatch
) -> None:
    _point_at(fresh, monkeypatch)
    r = nself("db", "pitr", "prune", cwd=project)
    assert r.code == 1 and "error: there is no base backup" in r.err and "hint:" in r.err
    r = nself("db", "pitr", "status", cwd=project)
    assert r.code == 0 and "prune: nothing to do" in r.out
    assert nself("db", "pitr", "backup", cwd=project).code == 0
    (manifest,) = (project / "backups" / "pitr").glob("base-*.tar.json")
    only = _age(manifest, 30)
    before = _settled_archive(fresh)

    for bad in ("0", "-3"):
        r = nself("db", "pitr", "prune", "--days", bad, "--yes", cwd=project)
        assert r.code == 2 and "at least 1 day" in r.err and "Traceback" not in r.output
    set_env(project, ".env.local", PITR_RETENTION_DAYS="0")
    r = nself("db", "pitr", "prune", "--yes", cwd=project)
    assert r.code == 1 and "PITR_RETENTION_DAYS=0 must be at least 1" in r.err
    assert ".env.local" in r.err and "Traceback" not in r.output
    set_env(project, ".env.local", PITR_RETENTION_DAYS="2")
    # production: deleting needs --confirm (the safety rules of `delete-data`)
    r = nself("db", "pitr", "prune", "--days", "1", "--yes", "--env", "prod", cwd=project)
    assert r.code == 4 and "needs explicit confirmation" in r.err and "--confirm" in r.err
    assert _archive(fresh) == before

    # a tiny window: the only (newest) base backup stays, and so does its WAL
    r = nself("db", "pitr", "prune", "--days", "1", "--yes", "--json", cwd=project)
    assert r.code == 0, r.output
    assert json.loads(r.out)["delete"]["base_backups"] == []
    assert manifest.exists() and (manifest.parent / only["name"]).exists()
    assert all(n in _archive(fresh) for n in before if n[8:24] >= only["start_wal"][8:])

    monkeypatch.setenv("NSELF_PITR_ARCHIVE", str(fresh.root / "no-such-archive"))
    r = nself("db", "pitr", "prune", "--yes", cwd=project)
    assert r.code == 1 and "no-such-archive does not exist" in r.err and "hint:" in r.err
    assert manifest.exists()


def test_server_archive_lists_and_deletes_through_the_shell(tmp_path: Path) -> None:
    """The stack's archive is read and changed by shell commands in the postgres service;
    the same commands run here through the direct transport (a local `sh`)."""
    from nself_builtins.database.pitr import ServerArchive
    from nself_builtins.database.transport import DirectTransport
    from nself_sdk import NselfError

    archive = tmp_path / "wal-archive"
    archive.mkdir()
    names = [
        "000000010000000000000003",
        "000000010000000000000004.00000028.backup",
        "00000002.history",
        "000000020000000000000005.partial",
    ]
    for i, name in enumerate(names):
        (archive / name).write_bytes(b"x" * (i + 1))
    (archive / "sub").mkdir()
    server = ServerArchive(DirectTransport("127.0.0.1", 1, "u", "", "d"), str(archive))
    assert server.files() == {n: i + 1 for i, n in enumerate(names)}
    server.remove(names[:2])
    assert sorted(p.name for p in archive.iterdir()) == sorted([*names[2:], "sub"])
    with pytest.raises(NselfError):
        server.remove(["../x"])
    with pytest.raises(NselfError, match="does not exist"):
        ServerArchive(server.transport, str(tmp_path / "none")).files()


def test_status_with_the_stack_down_answers_scripts_as_every_json_command_does(
    project: Path, nself
) -> None:
    """With the stack down there is no window to read (the archive is the server's): under
    --json a failure is the one object every command answers (the kernel's policy, as
    ``db migrate status`` and ``db replica list`` do), the error and hint lines go to
    stderr for the person reading, and nothing else is printed."""
    assert nself("build", cwd=project).code == 0
    answers = {}
    for args in (("pitr", "status"), ("migrate", "status"), ("replica", "list")):
        r = nself("db", *args, "--json", cwd=project)
        assert r.code == 1, (args, r.output)
        answers[args] = json.loads(r.out)  # one object, nothing else on stdout
        assert r.err.splitlines() == [
            "error: the postgres service is not running",
            "hint: start the stack with `nself start`",
        ], args
    assert answers[("pitr", "status")] == {
        "ok": False,
        "error": "the postgres service is not running",
        "hint": "start the stack with `nself start`",
        "problems": [
            {
                "level": "error",
                "message": "the postgres service is not running",
                "hint": "start the stack with `nself start`",
            }
        ],
    }
    assert len({json.dumps(a, sort_keys=True) for a in answers.values()}) == 1
