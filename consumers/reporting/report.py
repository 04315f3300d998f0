"""The daily roll-up: per tenant x model x costCenter x applicationId, tokens by kind, requests, cost in USD.

``collect`` reads one UTC day from a store (UsageIndex); ``build_rows`` (pure) orders and totals the rows;
``render_csv`` (pure) writes them. The `meter report` CLI reuses all three. Cost is exact: the integer
nano-dollar sum rendered as a decimal USD string with nine places (Athena: DECIMAL(20,9)).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time

from shared.money import nanos_to_usd
from shared.ports import RollupRow, UsageIndex

COLUMNS = (
    "day",
    "tenant_id",
    "model",
    "cost_center",
    "application_id",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "total_tokens",
    "requests",
    "cost_usd",
)


@dataclass(frozen=True, slots=True)
class ReportRow:
    day: date
    tenant_id: str
    model: str
    cost_center: str
    application_id: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    requests: int
    cost_nanos: int

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    def values(self) -> list[str]:
        return [
            self.day.isoformat(),
            self.tenant_id,
            self.model,
            self.cost_center,
            self.application_id,
            str(self.input_tokens),
            str(self.output_tokens),
            str(self.cache_read_tokens),
            str(self.cache_write_tokens),
            str(self.total_tokens),
            str(self.requests),
            f"{nanos_to_usd(self.cost_nanos):.9f}",
        ]


def collect(index: UsageIndex, day: date) -> list[RollupRow]:
    """Every tenant's roll-up rows for one UTC day (tenants from the store's active-tenant index)."""
    at = datetime.combine(day, time(12), tzinfo=UTC)
    rows: list[RollupRow] = []
    for tenant_id in index.active_tenants(at, at):
        rows.extend(index.daily_rollup(tenant_id, at))
    return rows


def build_rows(day: date, rollup: Iterable[RollupRow]) -> list[ReportRow]:
    """Report rows in a stable order (tenant, model, costCenter, applicationId); rows with no requests and no
    tokens are dropped."""
    rows = [
        ReportRow(
            day,
            r.tenant_id,
            r.model,
            r.cost_center,
            r.application_id,
            r.totals.input_tokens,
            r.totals.output_tokens,
            r.totals.cache_read_tokens,
            r.totals.cache_write_tokens,
            r.totals.requests,
            r.totals.cost_nanos,
        )
        for r in rollup
        if r.totals.requests or r.totals.tokens or r.totals.cost_nanos
    ]
    return sorted(rows, key=lambda r: (r.tenant_id, r.model, r.cost_center, r.application_id))


def render_csv(rows: Iterable[ReportRow]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for row in rows:
        writer.writerow(row.values())
    return out.getvalue()


def report_key(prefix: str, day: date) -> str:
    """Hive-style partition for Athena: ``daily/day=2026-11-23/usage.csv``."""
    return f"{prefix}day={day.isoformat()}/usage.csv"
