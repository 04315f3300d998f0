"""Builders of Lambda-shaped Kinesis events (plain and KPL-aggregated with aws-kinesis-agg) for consumer tests."""

from __future__ import annotations

import base64
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aws_kinesis_agg.aggregator import RecordAggregator

from shared.schema import Source, UsageEvent, encode_event
from shared.tenants import Tenant, TenantRegistry

NOW = datetime(2026, 11, 23, 15, 30, 20, tzinfo=UTC)
HAIKU = "anthropic.claude-3-5-haiku-20241022-v1:0"
_ids = itertools.count(1)


def usage(
    tenant: str = "acme",
    *,
    event_id: str | None = None,
    at: datetime = NOW,
    tokens: tuple[int, int, int, int] = (1000, 500, 0, 0),
    model: str = HAIKU,
    tags: dict[str, str] | None = None,
    reservation_id: str = "",
) -> UsageEvent:
    return UsageEvent(
        event_id=event_id or f"ev{next(_ids):08d}",
        occurred_at=at,
        tenant_id=tenant,
        source=Source.GATEWAY,
        model="claude-3-5-haiku",
        model_id=model,
        region="us-east-1",
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_write_tokens=tokens[3],
        latency_ms=120,
        tags=tags if tags is not None else {"costCenter": "cc-1", "applicationId": "bot"},
        reservation_id=reservation_id,
    )


@dataclass
class Shard:
    """Hands out increasing sequence numbers like one Kinesis shard."""

    shard_id: str = "shardId-000000000000"
    next_seq: int = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000_000
    arrival: datetime = NOW - timedelta(seconds=2)
    made: list[dict[str, Any]] = field(default_factory=list)

    def record(self, data: bytes, partition_key: str) -> dict[str, Any]:
        self.next_seq += 17
        rec = {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": partition_key,
                "sequenceNumber": str(self.next_seq),
                "data": base64.b64encode(data).decode(),
                "approximateArrivalTimestamp": self.arrival.timestamp(),
            },
            "eventSource": "aws:kinesis",
            "eventVersion": "1.0",
            "eventID": f"{self.shard_id}:{self.next_seq}",
            "eventName": "aws:kinesis:record",
            "invokeIdentityArn": "arn:aws:iam::123456789012:role/tenantmeter-metering",
            "awsRegion": "us-east-1",
            "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/tenantmeter-usage-events",
        }
        self.made.append(rec)
        return rec

    def plain(self, event: UsageEvent, partition_key: str | None = None) -> dict[str, Any]:
        return self.record(encode_event(event), partition_key or event.tenant_id)

    def aggregate(self, events: Sequence[UsageEvent]) -> list[dict[str, Any]]:
        """KPL aggregates of ``events`` (as many as aws-kinesis-agg makes), each a Kinesis record."""
        agg = RecordAggregator()
        out: list[dict[str, Any]] = []
        for event in events:
            full = agg.add_user_record(event.tenant_id, encode_event(event))
            if full is not None:
                pk, _, data = full.get_contents()
                out.append(self.record(data, pk))
        if agg.get_num_user_records():
            pk, _, data = agg.clear_and_get().get_contents()
            out.append(self.record(data, pk))
        return out


def lambda_event(records: Iterable[dict[str, Any]]) -> dict[str, Any]:
    return {"Records": list(records)}


def registry(*tenant_ids: str, tier: str = "premium", **overrides: Any) -> TenantRegistry:
    base = TenantRegistry([])
    tiers = base.tiers
    return TenantRegistry([Tenant(t, tiers[tier], name=t, **overrides) for t in tenant_ids], tiers)
