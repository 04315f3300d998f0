"""Fakes at the consumer's ports: they record what they were given and can be told to fail."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from typing import Any

from consumers.metering.service import MeteringService
from consumers.metering.validate import Meter
from shared.ports import AlertMessage, QuarantinedRecord
from shared.pricing import CachedPricer, PriceCatalog
from shared.tenants import TenantRegistry

_CATALOG = PriceCatalog.load()


class FakeAlerts:
    def __init__(self) -> None:
        self.sent: list[AlertMessage] = []
        self.fail_times = 0

    def publish(self, alert: AlertMessage) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("SNS unreachable")
        self.sent.append(alert)


class FakeQuarantine:
    def __init__(self) -> None:
        self.records: list[QuarantinedRecord] = []
        self.fail_times = 0

    def quarantine(self, records: Sequence[QuarantinedRecord]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("SQS unreachable")
        self.records.extend(records)

    @property
    def reasons(self) -> list[str]:
        return [r.reason for r in self.records]


def metering_service(
    store: Any,
    registry: TenantRegistry,
    alerts: Any = None,
    quarantine: Any = None,
    dedupe_horizon: timedelta = timedelta(hours=24),
) -> MeteringService:
    """The service as the tests wire it: the packaged price catalog, a 24 h dedupe horizon, fakes by default."""
    return MeteringService(
        store=store,
        alerts=alerts if alerts is not None else FakeAlerts(),
        quarantine=quarantine if quarantine is not None else FakeQuarantine(),
        tenants=registry,
        meter=Meter(registry, CachedPricer(_CATALOG)),
        dedupe_horizon=dedupe_horizon,
    )
