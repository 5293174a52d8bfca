"""The PITR retention rule on real files (no server needed: the rule reads manifests, the
archive folder and backup_label). The end-to-end proof with PostgreSQL 15, including a
recovery after pruning, is in test_db_pitr.py."""

from __future__ import annotations

import io
import json
import os
import tarfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from nself_builtins.database.pitr import LocalArchive, Pitr
from nself_builtins.database.retention import apply_prune, plan_prune
from nself_sdk import NselfError, UsageError

NOW = datetime(2026, 5, 20, 12, 0, tzinfo=UTC)
SEG = 16 * 1024 * 1024


def base(folder: Path, name: str, days_ago: float, start_wal: str | None) -> dict[str, Any]:
    """A base backup: a tar whose first member is backup_label, and its manifest."""
    label = (
        f"START WAL LOCATION: 0/{int(start_wal[16:], 16):X}000028 (file {start_wal})\n"
        f"START TIMELINE: {int(start_wal[:8], 16)}\n"
        if start_wal
        else "no label\n"
    ).encode()
    with tarfile.open(folder / name, "w") as tar:
        info = tarfile.TarInfo("backup_label")
        info.size = len(label)
        tar.addfile(info, io.BytesIO(label))
    end = NOW - timedelta(days=days_ago)
    manifest: dict[str, Any] = {
        "name": name,
        "start": (end - timedelta(minutes=1)).isoformat(),
        "end": end.isoformat(),
        "size": (folder / name).stat().st_size,
        "sha256": "-",
    }
    if start_wal and days_ago < 25:  # older manifests (before retention) lack start_wal
        manifest["start_wal"] = start_wal
    (folder / f"{name}.json").write_text(json.dumps(manifest))
    return manifest


@pytest.fixture
def engine(tmp_path: Path) -> Pitr:
    folder = tmp_path / "pitr"
    archive = tmp_path / "wal-archive"
    folder.mkdir()
    archive.mkdir()
    for seg in range(0x10, 0x30):
        (archive / f"00000001{seg:016X}").write_bytes(b"w")
    for extra in (
        "00000001000000000000001A.00000028.backup",
        "00000001000000000000002A.00000028.backup",
        "000000010000000000000025.partial",
        "00000002.history",
        "000000020000000000000025",
        "000000020000000000000030",
        "000000010000000000000031.part",  # the archiver's temp file: never touched
    ):
        (archive / extra).write_bytes(b"w")
    return Pitr(None, None, LocalArchive(archive), folder)  # type: ignore[arg-type]


def test_the_rule(engine: Pitr) -> None:
    folder = engine.base_dir
    base(folder, "base-1.tar", 30, "000000010000000000000012")  # old format: label only
    base(folder, "base-2.tar", 20, "00000001000000000000001A")
    base(folder, "base-3.tar", 9, "00000001000000000000002A")  # newest before the window
    base(folder, "base-4.tar", 3, "00000002000000000000002E")  # inside, on timeline 2
    plan = plan_prune(engine, 7, now=NOW)
    assert [b["name"] for b in plan.drop] == ["base-1.tar", "base-2.tar"]
    assert [(b["name"], why[:5]) for b, why in plan.keep] == [
        ("base-3.tar", "newes"),
        ("base-4.tar", "ended"),
    ]
    assert plan.cutoff == "00000001000000000000002A"
    # pg_archivecleanup semantics: below 0x2A whatever the timeline, .backup and .partial
    # included; .history and the archiver's temp files stay
    assert plan.wal[0] == "000000010000000000000010" and len(plan.wal) == 0x1A + 2 + 1
    assert "000000020000000000000025" in plan.wal and "00000002.history" not in plan.wal
    assert "00000001000000000000002A.00000028.backup" not in plan.wal
    assert not any(n.endswith(".part") for n in plan.wal)
    before = set(os.listdir(engine.archive.path))
    assert set(os.listdir(engine.archive.path)) == before  # planning changes nothing

    apply_prune(engine, plan)
    assert sorted(p.name for p in folder.iterdir()) == [
        "base-3.tar",
        "base-3.tar.json",
        "base-4.tar",
        "base-4.tar.json",
    ]
    left = set(os.listdir(engine.archive.path))
    assert left == before - set(plan.wal)
    assert all(n[8:24] >= "000000000000002A" for n in left if len(n) >= 24)
    again = plan_prune(engine, 7, now=NOW)  # nothing more to do
    assert again.drop == [] and again.wal == []


def test_the_newest_base_backup_always_stays(engine: Pitr) -> None:
    base(engine.base_dir, "base-1.tar", 400, "000000010000000000000012")
    base(engine.base_dir, "base-2.tar", 300, "000000010000000000000014")
    plan = plan_prune(engine, 1, now=NOW)
    assert [b["name"] for b in plan.drop] == ["base-1.tar"]
    assert [b["name"] for b, _ in plan.keep] == ["base-2.tar"]
    assert plan.wal[-1] == "000000010000000000000013"
    huge = plan_prune(engine, 10**8, now=NOW)  # a window past the calendar keeps all
    assert huge.drop == [] and huge.cutoff == "000000010000000000000012"
    with pytest.raises(UsageError):
        plan_prune(engine, 0, now=NOW)


def test_an_unreadable_kept_backup_stops_everything(engine: Pitr) -> None:
    base(engine.base_dir, "base-1.tar", 30, "000000010000000000000012")
    base(engine.base_dir, "base-2.tar", 30, None)  # no start_wal, no backup_label
    with pytest.raises(NselfError, match=r"cannot tell which WAL base backup base-2\.tar"):
        plan_prune(engine, 7, now=NOW)


def test_wal_stays_when_a_backup_needing_it_appears_meanwhile(engine: Pitr) -> None:
    base(engine.base_dir, "base-1.tar", 30, "000000010000000000000012")
    base(engine.base_dir, "base-2.tar", 20, "000000010000000000000018")
    plan = plan_prune(engine, 7, now=NOW)
    assert [b["name"] for b in plan.drop] == ["base-1.tar"]
    before = set(os.listdir(engine.archive.path))
    # a copy of the old backup is put back (under another name) before the prune runs
    base(engine.base_dir, "base-0.tar", 31, "000000010000000000000012")
    with pytest.raises(NselfError, match="needs WAL below"):
        apply_prune(engine, plan)
    assert set(os.listdir(engine.archive.path)) == before  # no WAL was deleted


def test_leftovers_of_interrupted_runs_go_once_a_day_old(engine: Pitr) -> None:
    base(engine.base_dir, "base-2.tar", 1, "000000010000000000000018")
    old = engine.base_dir / "base-1.tar"  # a prune interrupted after the manifest went
    old.write_bytes(b"x" * 10)
    fresh = engine.base_dir / "base-3.tar"  # a backup between its rename and its manifest
    fresh.write_bytes(b"x")
    part = engine.base_dir / ".base-4.tar.abc.part"
    part.write_bytes(b"x")
    day_ago = time.time() - 2 * 86400
    os.utime(old, (day_ago, day_ago))
    os.utime(part, (day_ago, day_ago))
    plan = plan_prune(engine, 7, now=NOW)
    assert plan.leftovers == [".base-4.tar.abc.part", "base-1.tar"]
    apply_prune(engine, plan)
    assert not old.exists() and not part.exists() and fresh.exists()


def test_a_kept_data_folder_already_gone_is_not_an_error(tmp_path: Path) -> None:
    """A recovery deletes the older kept folder its plan named only after the promotion;
    one the user removed meanwhile (or a concurrent prune) must not turn the finished
    recovery into an unexpected error. A name that is not a kept folder still is refused."""
    from nself_builtins.database.pitr import LocalCluster

    (tmp_path / "data").mkdir()
    kept = tmp_path / "data.pre-pitr-20260101000000"
    kept.mkdir()
    cluster = LocalCluster(tmp_path / "data", None, None)
    cluster.remove_kept(["data.pre-pitr-20260101000000", "data.pre-pitr-20260102000000"])
    assert not kept.exists() and (tmp_path / "data").is_dir()
    with pytest.raises(NselfError, match="not a kept data folder"):
        cluster.remove_kept(["data"])
