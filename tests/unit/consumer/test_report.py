"""The daily report: rows from the store's roll-up, CSV rendering, the day from the event, the S3 key."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

import pytest

from consumers.reporting.handler import report_day
from consumers.reporting.report import build_rows, collect, render_csv, report_key
from consumers.reporting.settings import ReportSettings
from shared.adapters.memory_store import InMemoryStore
from shared.ports import TenantBatch
from tests.unit.adapters.store_contract import NOW, ev


def test_rows_are_the_days_combinations_with_exact_usd() -> None:
    # GIVEN two tenants' usage today and one yesterday
    store = InMemoryStore()
    store.apply_usage(
        [
            TenantBatch("acme", (ev("acme", cost=1_234_567_891), ev("acme", cost=9, model="m-b", cc="cc-2"))),
            TenantBatch("globex", (ev("globex", app="", cc="", cost=5),)),
            TenantBatch("initech", (ev("initech", at=NOW - timedelta(days=1)),)),
        ],
        now=NOW,
        dedupe_horizon=timedelta(hours=1),
    )
    # WHEN today's report is built and rendered
    rows = build_rows(NOW.date(), collect(store, NOW.date()))
    text = render_csv(rows)
    # THEN one row per tenant x model x costCenter x applicationId, cost as an exact decimal
    table = list(csv.DictReader(io.StringIO(text)))
    assert [(r["tenant_id"], r["model"], r["cost_center"], r["application_id"]) for r in table] == [
        ("acme", "anthropic.claude-3-5-haiku-20241022-v1:0", "cc-1", "bot"),
        ("acme", "m-b", "cc-2", "bot"),
        ("globex", "anthropic.claude-3-5-haiku-20241022-v1:0", "", ""),
    ]
    assert table[0]["cost_usd"] == "1.234567891" and table[2]["cost_usd"] == "0.000000005"
    assert table[0]["total_tokens"] == "165" and table[0]["requests"] == "1" and table[0]["day"] == "2026-11-23"


def test_the_day_defaults_to_yesterday_utc() -> None:
    assert report_day({}, datetime(2026, 11, 23, 0, 5, tzinfo=UTC)) == date(2026, 11, 22)
    assert report_day({"day": "2026-10-01"}, NOW) == date(2026, 10, 1)
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        report_day({"day": "yesterday"}, NOW)


def test_the_key_is_partitioned_for_athena() -> None:
    assert report_key("daily/", date(2026, 11, 22)) == "daily/day=2026-11-22/usage.csv"


def test_settings() -> None:
    s = ReportSettings.from_env({"TM_REDIS_URL": "redis://x", "TM_REPORT_BUCKET": "b", "TM_REPORT_PREFIX": "r"})
    assert (s.store_backend, s.bucket, s.prefix) == ("redis", "b", "r/")
    assert ReportSettings.from_env({"TM_REDIS_URL": "redis://x", "TM_REPORT_BUCKET": "b"}).prefix == "daily/"
