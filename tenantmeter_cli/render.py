"""Readable terminal output for `meter`: rich tables, plus the small formatting helpers the commands share."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from shared.decisions import Metric
from shared.money import format_usd
from shared.tenants import QuotaRule, Tenant

console = Console()


def table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str] | None = None) -> None:
    if not rows:
        console.print(f"[dim]{title}: none[/dim]")
        return
    cols = list(columns or rows[0].keys())
    out = Table(title=title, title_justify="left")
    for col in cols:
        out.add_column(col, justify="right" if isinstance(rows[0].get(col), int | float) else "left")
    for row in rows:
        out.add_row(*(str(row.get(col, "")) for col in cols))
    console.print(out)


def limit_text(rule: QuotaRule) -> str:
    return format_usd(rule.limit) if rule.metric is Metric.COST else f"{rule.limit:,}"


def quota_summary(tenant: Tenant) -> str:
    return "; ".join(
        f"{r.metric.value}/{r.window.name} {limit_text(r)}{'' if r.hard else ' (soft)'}" for r in tenant.quotas
    )
