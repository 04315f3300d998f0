"""SnsAlertPublisher: AlertPublisher over Amazon SNS, one topic per severity plus the tenant's own topic.

Message attributes (tenant_id, tier, level, window, metric) are String attributes so subscriptions can filter
on them (an SNS filter policy takes at most 5 keys: exactly these). The body is JSON with a one-line human
``summary`` first. The client is passed in or built on first use (never at import).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from shared.ports import AlertMessage

if TYPE_CHECKING:
    from mypy_boto3_sns import SNSClient


def alert_body(alert: AlertMessage) -> str:
    body: dict[str, Any] = {
        "summary": alert.summary,
        "tenant_id": alert.tenant_id,
        "tier": alert.tier,
        "level": alert.level,
        "window": alert.window,
        "metric": alert.metric,
        **alert.detail,
    }
    return json.dumps(body, separators=(",", ":"), sort_keys=False)


def alert_attributes(alert: AlertMessage) -> dict[str, Any]:
    values = {
        "tenant_id": alert.tenant_id,
        "tier": alert.tier,
        "level": alert.level,
        "window": alert.window,
        "metric": alert.metric,
    }
    return {k: {"DataType": "String", "StringValue": v} for k, v in values.items()}


class SnsAlertPublisher:
    def __init__(self, topic_arns: Mapping[str, str], client: SNSClient | None = None) -> None:
        self.topic_arns = dict(topic_arns)
        self._client = client

    @property
    def client(self) -> SNSClient:
        if self._client is None:
            import boto3

            self._client = boto3.client("sns")
        return self._client

    def targets(self, alert: AlertMessage) -> list[str]:
        """The topic ARNs ``alert`` goes to: its severities' topics and the tenant's own, each once."""
        targets = [self.topic_arns[s] for s in alert.severities if s in self.topic_arns]
        if alert.tenant_topic_arn:
            targets.append(alert.tenant_topic_arn)
        return list(dict.fromkeys(targets))

    def publish_to(self, alert: AlertMessage, target: str) -> None:
        """Publish ``alert`` to one of its targets (the consumer records each delivery, so a retry after a
        partial failure sends only to the targets that missed it)."""
        subject = f"tenantmeter {alert.level}: {alert.tenant_id} {alert.window} {alert.metric}"[:100]
        self.client.publish(
            TopicArn=target, Message=alert_body(alert), Subject=subject, MessageAttributes=alert_attributes(alert)
        )

    def publish(self, alert: AlertMessage) -> None:
        for target in self.targets(alert):
            self.publish_to(alert, target)
