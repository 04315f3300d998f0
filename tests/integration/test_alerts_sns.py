"""Alerts through moto's SNS to SQS subscriptions: the message, its attributes, filter policies, and the
whole consumer publishing once per level per period (real Redis for marks)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import redis

from consumers.metering import bootstrap as boot
from consumers.metering.handler import lambda_handler
from shared.adapters.redis_store import RedisStore
from shared.adapters.sns_alerts import SnsAlertPublisher
from shared.decisions import AlertLevel, Metric
from shared.money import parse_usd
from shared.ports import AlertMessage
from shared.settings import resource_names
from shared.tenants import LevelAction, QuotaRule, Tenant, TenantRegistry, Tier
from shared.windows import MONTH
from tests.integration.conftest import AwsFactory
from tests.unit.consumer.fakes import FakeQuarantine
from tests.unit.consumer.kinesis import Shard, lambda_event, usage

pytestmark = pytest.mark.integration


def topics_with_queues(
    aws: AwsFactory, filter_policy: dict[str, Any] | None = None
) -> tuple[dict[str, str], dict[str, str]]:
    """The three severity topics (Terraform's names), each with an SQS queue subscribed (raw delivery)."""
    sns, sqs = aws("sns"), aws("sqs")
    names = resource_names()
    arns: dict[str, str] = {}
    queues: dict[str, str] = {}
    for severity in ("info", "warning", "critical"):
        arn = sns.create_topic(Name=names[f"topic_{severity}"])["TopicArn"]
        url = sqs.create_queue(QueueName=f"alerts-{severity}")["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"RawMessageDelivery": "true"}
        if filter_policy:
            attributes["FilterPolicy"] = json.dumps(filter_policy)
        sns.subscribe(TopicArn=arn, Protocol="sqs", Endpoint=queue_arn, Attributes=attributes)
        arns[severity], queues[severity] = arn, url
    return arns, queues


def receive(aws: AwsFactory, url: str) -> list[dict[str, Any]]:
    messages = aws("sqs").receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=0
    )
    return messages.get("Messages", [])


ALERT = AlertMessage(
    tenant_id="acme",
    tier="premium",
    level="critical",
    window="month",
    metric="cost_usd",
    summary="tenant acme (premium) at 96% of its monthly cost quota: $480.00 of $500.00",
    severities=("critical",),
    detail={"used": 480_000_000_000, "limit": 500_000_000_000},
)


def test_an_alert_arrives_with_its_attributes_and_summary(aws: AwsFactory) -> None:
    arns, queues = topics_with_queues(aws)
    SnsAlertPublisher(arns, client=aws("sns")).publish(ALERT)
    (message,) = receive(aws, queues["critical"])
    body = json.loads(message["Body"])
    assert body["summary"] == ALERT.summary and body["used"] == 480_000_000_000
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes == {
        "tenant_id": "acme",
        "tier": "premium",
        "level": "critical",
        "window": "month",
        "metric": "cost_usd",
    }
    assert receive(aws, queues["info"]) == [] and receive(aws, queues["warning"]) == []


def test_subscriptions_filter_on_the_attributes(aws: AwsFactory) -> None:
    arns, queues = topics_with_queues(aws, filter_policy={"tier": ["free"], "level": ["exhausted"]})
    publisher = SnsAlertPublisher(arns, client=aws("sns"))
    publisher.publish(ALERT)
    publisher.publish(replace(ALERT, tier="free", level="exhausted"))
    (message,) = receive(aws, queues["critical"])
    assert message["MessageAttributes"]["tier"]["StringValue"] == "free"


def test_the_tenant_contact_topic_hears_its_own_alerts(aws: AwsFactory) -> None:
    arns, _ = topics_with_queues(aws)
    sns, sqs = aws("sns"), aws("sqs")
    own = sns.create_topic(Name="acme-usage")["TopicArn"]
    url = sqs.create_queue(QueueName="acme")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=own, Protocol="sqs", Endpoint=queue_arn, Attributes={"RawMessageDelivery": "true"})
    SnsAlertPublisher(arns, client=sns).publish(replace(ALERT, tenant_topic_arn=own))
    assert len(receive(aws, url)) == 1


def test_the_consumer_publishes_each_level_once_and_blocks_at_exhaustion(
    aws: AwsFactory, redis_client: redis.Redis
) -> None:
    # GIVEN a tier with a $0.01 monthly hard cost quota that blocks when exhausted, wired to moto and Redis
    arns, queues = topics_with_queues(aws)
    actions = {
        AlertLevel.NOTICE: LevelAction(topics=("info",)),
        AlertLevel.WARNING: LevelAction(topics=("warning",)),
        AlertLevel.CRITICAL: LevelAction(topics=("critical",)),
        AlertLevel.EXHAUSTED: LevelAction(topics=("critical",), block=True),
    }
    tier = Tier("tiny", (QuotaRule(MONTH, Metric.COST, parse_usd("0.01")),), actions=actions)
    reg = TenantRegistry([Tenant("acme", tier, quotas=tier.quotas)], {"tiny": tier})
    store = RedisStore(redis_client)
    boot.set_container(
        boot.bootstrap(
            store=store,
            alerts=SnsAlertPublisher(arns, client=aws("sns")),
            quarantine=FakeQuarantine(),
            tenants=reg,
            dedupe_horizon=timedelta(hours=1),
        )
    )
    try:
        now = datetime.now(UTC)
        shard = Shard(arrival=now)
        # Haiku: 1000 in + 500 out = $0.0028 per event. 2 events: 56% (notice); 4: 112% (exhausted)
        first = lambda_event([shard.plain(usage("acme", at=now)) for _ in range(2)])
        second = lambda_event([shard.plain(usage("acme", at=now)) for _ in range(2)])
        # WHEN the first batch is delivered three times, then the second twice
        for _ in range(3):
            assert lambda_handler(first, None) == {"batchItemFailures": []}
        for _ in range(2):
            assert lambda_handler(second, None) == {"batchItemFailures": []}
    finally:
        boot.reset_container()
    # THEN one notice (info topic), one exhausted (critical topic), and a block until the month's end
    info = [json.loads(m["Body"]) for m in receive(aws, queues["info"])]
    critical = [json.loads(m["Body"]) for m in receive(aws, queues["critical"])]
    assert [b["level"] for b in info] == ["notice"]
    assert [b["level"] for b in critical] == ["exhausted"]
    assert "blocked until" in critical[0]["summary"]
    (block,) = store.quota_status("acme", now).blocks
    assert block.window == "month" and block.until.day == 1
