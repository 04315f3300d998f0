"""Lambda entry point of the daily report: one UTC day (default yesterday) from the store to S3 as CSV.

Event: ``{}`` or ``{"day": "YYYY-MM-DD"}``. Builds its store and S3 client once per warm container from
``ReportSettings.from_env()`` (``set_dependencies`` lets tests and the local stack swap them).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger

from consumers.reporting.report import build_rows, collect, render_csv, report_key
from consumers.reporting.settings import ReportSettings
from shared.adapters.stores import build_store
from shared.ports import UsageIndex

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


@dataclass
class ReportDependencies:
    store: UsageIndex
    s3: S3Client
    bucket: str
    prefix: str
    logger: Logger


_deps: ReportDependencies | None = None


def set_dependencies(deps: ReportDependencies | None) -> None:
    global _deps
    _deps = deps


def _dependencies() -> ReportDependencies:
    global _deps
    if _deps is None:
        import boto3

        settings = ReportSettings.from_env()
        store = build_store(
            settings.store_backend,
            redis_url=settings.redis_url,
            dynamodb_table=settings.dynamodb_table,
            redis_auth_secret_arn=settings.redis_auth_secret_arn,
        )
        _deps = ReportDependencies(
            store, boto3.client("s3"), settings.bucket, settings.prefix, Logger(service="tenantmeter-report")
        )
    return _deps


def report_day(event: dict[str, Any] | None, now: datetime) -> date:
    raw = (event or {}).get("day")
    if raw is None:
        return (now.astimezone(UTC) - timedelta(days=1)).date()
    try:
        return date.fromisoformat(str(raw))
    except ValueError:
        raise ValueError(f"event field 'day' must be YYYY-MM-DD, got {str(raw)[:20]!r}") from None


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    deps = _dependencies()
    day = report_day(event, datetime.now(UTC))
    rows = build_rows(day, collect(deps.store, day))
    key = report_key(deps.prefix, day)
    deps.s3.put_object(
        Bucket=deps.bucket, Key=key, Body=render_csv(rows).encode(), ContentType="text/csv; charset=utf-8"
    )
    deps.logger.info("daily report written", extra={"day": day.isoformat(), "rows": len(rows), "key": key})
    return {"day": day.isoformat(), "rows": len(rows), "bucket": deps.bucket, "key": key}
