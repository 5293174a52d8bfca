"""Joining Compose's list of a server's containers with the engine's lines (no Docker: the
Compose versions that print whole ids or one array are not installed here; the deploy
tests run the one that is, which cuts ids to 12 characters)."""

from __future__ import annotations

import json

from nself_builtins.deploy import containers

WHOLE = "4547cbb1874d92086152638adf68cd54f2b8fbbd0832aa3482f399e4dd57aa80"
OTHER = "61c1530291a4bb46a90c72141ef01762ed3f50d3eb3c82a7e46675f9f1ba4ea5"
ENGINE = f"{WHOLE} 3\n{OTHER} 0\nError: No such object: gone\n"


def test_a_row_is_matched_whether_compose_cuts_the_id_or_not() -> None:
    cut = [{"ID": WHOLE[:12], "Service": "api"}, {"ID": OTHER[:12], "Service": "db"}]
    whole = [{"ID": WHOLE, "Service": "api"}, {"ID": OTHER, "Service": "db"}]
    engine = containers.inspected(ENGINE, 2)
    assert engine == {WHOLE: ["3"], OTHER: ["0"]}
    for text in (
        "\n".join(json.dumps(row) for row in cut),  # one object per line (v2.21 and later)
        json.dumps(whole),  # one array (earlier versions)
    ):
        rows = containers.rows(text)
        assert [engine[containers.full_id(row, engine)] for row in rows] == [["3"], ["0"]]


def test_a_row_the_engine_does_not_know_matches_nothing() -> None:
    engine = containers.inspected(ENGINE, 2)
    assert containers.full_id({"ID": "0123456789ab"}, engine) == ""
    assert containers.full_id({"ID": ""}, engine) == ""  # never every container
    assert containers.full_id({}, engine) == ""
    assert containers.rows("  \n") == []


def test_a_short_or_shared_id_names_no_container() -> None:
    engine = containers.inspected(ENGINE, 2)
    for short in (WHOLE[:1], WHOLE[:11], " "):
        assert containers.full_id({"ID": short}, engine) == "", short
    twin = WHOLE[:12] + "0" * 52
    both = {**engine, twin: ["0"]}
    assert containers.full_id({"ID": WHOLE[:12]}, both) == ""
    assert containers.full_id({"ID": WHOLE}, both) == WHOLE
    assert containers.full_id({"ID": twin[:13]}, both) == twin
