"""nginx/sites/ is generated: files nself did not write there are warned about at build."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from nself_sdk.testing import Result

Run = Callable[..., Result]


def test_a_file_dropped_into_nginx_sites_is_warned_about(project: Path, nself: Run) -> None:
    first = nself("build", cwd=project)
    assert first.code == 0 and "warning" not in first.err, first.output
    (project / "nginx" / "sites" / "extra.conf").write_text("server { listen 8080; }\n")
    (project / "nginx" / "sites" / "notes.txt").write_text("mine\n")
    (project / "nginx" / "conf.d" / "mine.conf").write_text("# mine\n")
    result = nself("build", cwd=project)
    assert result.code == 0, result.output
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert warnings == [
        "warning: nginx/sites/extra.conf was not written by nself (nginx includes it)",
        "warning: nginx/sites/notes.txt was not written by nself",
    ]
    assert "put hand-written config in nginx/conf.d/" in result.err
    (project / "nginx" / "sites" / "extra.conf").rename(project / "nginx" / "conf.d" / "x.conf")
    (project / "nginx" / "sites" / "notes.txt").unlink()
    assert "warning" not in nself("build", cwd=project).err
