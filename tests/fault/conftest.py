"""Fixtures of the fault suite: moto's server once per session, and per test a fresh set of AWS resources, a
restartable Redis and the consumer's environment.

- ``moto_endpoint`` (session): ThreadedMotoServer on loopback.
- ``redis_proc``    (function): a RedisProcess (AOF, fsync always) the test may kill and start again.
- ``stack``         (function): moto state reset and tenantmeter's resources created, AWS_* and TM_* variables set
  (so ``lambda_handler`` builds itself exactly as in Lambda), no warm consumer container before or after.

Every test module in this folder sets ``pytestmark = pytest.mark.fault``.
"""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from consumers.metering import bootstrap as boot
from tests.fault.support import REGION, RedisProcess, Stack, create_resources


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def redis_proc() -> Iterator[RedisProcess]:
    proc = RedisProcess()
    proc.start()
    yield proc
    proc.close()


@pytest.fixture
def stack(moto_endpoint: str, redis_proc: RedisProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    reset = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(reset, timeout=10):
        pass
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ENDPOINT_URL": moto_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_PROFILE", raising=False)

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=REGION)  # type: ignore[call-overload]

    built = Stack(moto_endpoint, create_resources(client), redis_proc)
    for name, value in built.env().items():
        monkeypatch.setenv(name, value)
    boot.reset_container()
    yield built
    built.close()
    boot.reset_container()
