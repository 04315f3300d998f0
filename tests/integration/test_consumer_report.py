"""The daily report Lambda end to end: usage in Redis, CSV in moto's S3 under the Athena partition."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
from aws_lambda_powertools import Logger

from consumers.reporting import handler as report
from shared.adapters.redis_store import RedisStore
from shared.ports import TenantBatch
from tests.integration.conftest import AwsFactory
from tests.unit.adapters.store_contract import NOW, ev

pytestmark = pytest.mark.integration


@pytest.fixture
def wired(aws: AwsFactory, redis_client: redis.Redis) -> Iterator[RedisStore]:
    s3 = aws("s3")
    s3.create_bucket(Bucket="reports")
    store = RedisStore(redis_client)
    report.set_dependencies(report.ReportDependencies(store, s3, "reports", "daily/", Logger(service="t")))
    yield store
    report.set_dependencies(None)


def test_the_report_lands_in_s3(wired: RedisStore, aws: AwsFactory) -> None:
    wired.apply_usage(
        [TenantBatch("acme", (ev("acme", cost=7), ev("acme", cost=8))), TenantBatch("globex", (ev("globex"),))],
        now=NOW,
        dedupe_horizon=timedelta(hours=1),
    )
    answer = report.lambda_handler({"day": NOW.date().isoformat()}, None)
    assert answer == {"day": "2026-11-23", "rows": 2, "bucket": "reports", "key": "daily/day=2026-11-23/usage.csv"}
    body = aws("s3").get_object(Bucket="reports", Key=answer["key"])["Body"].read().decode()
    rows = list(csv.DictReader(io.StringIO(body)))
    assert [(r["tenant_id"], r["requests"], r["cost_usd"]) for r in rows] == [
        ("acme", "2", "0.000000015"),
        ("globex", "1", "0.000001000"),
    ]
