"""Redis Sentinel after a failover (issue 15): sentinels made anew (``nself down`` then
``nself start``, or a changed setting) watch the node that is the master now, so a client
that asks them still finds one that takes writes.

Their file lives in the container; a new one used to watch ``redis``, a replica since the
failover: every sentinel named a read-only node as the master and aborted each failover
(no good slave), so every write failed until someone repaired it by hand.
"""

from __future__ import annotations

import pytest

from test_redis_sentinel import MASTER, Run, fail_over, redis_cli, sentinel_logs, wait_for
from test_redis_sentinel import sentinel_stack as sentinel_stack  # the fixture, by name


@pytest.mark.docker
@pytest.mark.usefixtures("docker_engine")
def test_sentinels_made_anew_after_a_failover_find_the_promoted_master(
    request: pytest.FixtureRequest, nself: Run
) -> None:
    folder, name = request.getfixturevalue("sentinel_stack")
    fail_over(nself, folder, name, known_within=20)
    assert redis_cli(name, MASTER + 'redis-cli -h "$1" -p "$2" set order 42') == "OK"
    r = nself("start", "redis", "--timeout", "120", cwd=folder)
    assert r.code == 0, r.output
    assert wait_for(lambda: redis_cli(name, "redis-cli -h redis role | head -1") == "slave", 60)

    # The containers go (the volumes stay) and come back: new sentinels.
    assert nself("down", cwd=folder).code == 0
    r = nself("start", "--all", "--timeout", "180", cwd=folder)
    assert r.code == 0, r.output
    ask = "sentinel get-master-addr-by-name mymaster"
    for k in (1, 2, 3):
        asked = f"redis-cli -h redis-sentinel-{k} -p 26379 {ask}"
        assert redis_cli(name, asked).split()[:1] == ["redis-replica"], sentinel_logs(name)
    assert redis_cli(name, MASTER + 'redis-cli -h "$1" -p "$2" get order') == "42"
    assert redis_cli(name, MASTER + 'redis-cli -h "$1" -p "$2" set order 43') == "OK"
    assert wait_for(lambda: redis_cli(name, "redis-cli -h redis get order") == "43", 30)
