"""Lambda entry point of the metering consumer: a Kinesis event-source-mapping batch in, batchItemFailures out.

Thin on purpose: the container (built once per warm container, see bootstrap) does the work; here we stamp
the time, log, and publish the batch's metrics as EMF. The mapping must have ``ReportBatchItemFailures`` in
its FunctionResponseTypes. tenant_id is a log key, never a metric dimension.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from aws_lambda_powertools.metrics import MetricUnit, single_metric
from aws_lambda_powertools.metrics.functions import is_metrics_disabled

from consumers.metering.bootstrap import Container, get_container
from consumers.metering.service import BatchResult


def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, list[dict[str, str]]]:
    container = get_container()
    request_id = getattr(context, "aws_request_id", "")
    if request_id:
        container.logger.append_keys(request_id=request_id)
    records = event.get("Records") or []
    now = datetime.now(UTC)
    result = container.service.process(records, now)
    publish_metrics(container, result, now)
    container.logger.info(
        "batch done",
        extra={
            "records": result.records,
            "events": result.events,
            "applied": result.applied,
            "duplicates": result.duplicates,
            "quarantined": sum(result.quarantined.values()),
            "tenants": result.tenants,
            "failed_items": len(result.failures),
        },
    )
    return result.response()


def publish_metrics(container: Container, result: BatchResult, now: datetime) -> None:
    metrics = container.metrics
    count = MetricUnit.Count
    metrics.add_metric(name="RecordsReceived", unit=count, value=result.records)
    metrics.add_metric(name="EventsProcessed", unit=count, value=result.applied)
    metrics.add_metric(name="DuplicatesSkipped", unit=count, value=result.duplicates)
    metrics.add_metric(name="AlertsPublished", unit=count, value=result.alerts_published)
    metrics.add_metric(name="BlocksWritten", unit=count, value=result.blocks_written)
    metrics.add_metric(name="ReserveFlagsWritten", unit=count, value=result.reserve_flags_written)
    metrics.add_metric(name="FallbackPriced", unit=count, value=result.fallback_priced)
    metrics.add_metric(name="FailedItems", unit=count, value=len(result.failures))
    if result.oldest_arrival is not None:
        age = max(0.0, now.timestamp() - result.oldest_arrival)
        metrics.add_metric(name="BatchAgeSeconds", unit=MetricUnit.Seconds, value=age)
    metrics.flush_metrics()
    if is_metrics_disabled():  # single_metric prints regardless of POWERTOOLS_METRICS_DISABLED (Powertools 3.x)
        return
    for reason, n in sorted(result.quarantined.items()):
        with single_metric(
            name="Quarantined", unit=count, value=n, namespace=metrics.namespace, default_dimensions={}
        ) as metric:
            metric.add_dimension(name="reason", value=reason)
