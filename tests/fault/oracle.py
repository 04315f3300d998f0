"""The fault suite's independent oracle: what every tenant's totals must be, computed from the generated events.

Nothing here calls the code under test. Rates are read straight from the catalog file (``shared/data/
pricing.json``) and applied with this module's own arithmetic: an event's cost is the exact sum of tokens x
USD-per-1M rate, times 1,000 (USD per 1M tokens -> nano-dollars per token), rounded half-up once to a whole
nano-dollar; totals are integer sums. A model missing from the catalog is priced as the catalog's declared
fallback model. Requests count success and model_error calls only. Each event_id counts once, however often it
was written to the stream.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from shared.ports import Totals
from shared.schema import UsageEvent

CATALOG_FILE = Path(__file__).resolve().parents[2] / "shared" / "data" / "pricing.json"
COUNTED = frozenset({"success", "model_error"})


@dataclass(frozen=True)
class _Rates:
    since: date
    per_million: tuple[Decimal, Decimal, Decimal, Decimal]  # input, output, cache read, cache write


class CatalogRates:
    """Per-1M-token USD rates by model id or alias, read from the catalog JSON (regionless prices only)."""

    def __init__(self, path: Path = CATALOG_FILE) -> None:
        raw: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        self._by_name: dict[str, list[_Rates]] = {}
        for model in raw["models"]:
            rates = sorted(
                (
                    _Rates(
                        date.fromisoformat(p["effective_from"]),
                        tuple(Decimal(p[k]) for k in ("input", "output", "cache_read", "cache_write")),  # type: ignore[arg-type]
                    )
                    for p in model["prices"]
                    if not p.get("regions")
                ),
                key=lambda r: r.since,
            )
            for name in (model["id"], *model.get("aliases", [])):
                self._by_name[name] = rates
        self._fallback = raw["fallback"]["model"]

    def rates_for(self, model_id: str, alias: str, day: date) -> tuple[Decimal, Decimal, Decimal, Decimal]:
        history = self._by_name.get(model_id) or self._by_name.get(alias) or self._by_name[self._fallback]
        in_force = [r for r in history if r.since <= day]
        return in_force[-1].per_million

    def cost_nanos(self, event: UsageEvent) -> int:
        r_in, r_out, r_cr, r_cw = self.rates_for(event.model_id, event.model, event.occurred_at.date())
        usd_per_million = (
            event.input_tokens * r_in
            + event.output_tokens * r_out
            + event.cache_read_tokens * r_cr
            + event.cache_write_tokens * r_cw
        )
        # Rates are USD per 1M tokens: the cost is usd_per_million / 1e6 USD = usd_per_million x 1000 nano-USD.
        return int((usd_per_million * 1000).quantize(Decimal(1), rounding=ROUND_HALF_UP))


RATES = CatalogRates()


def expected_totals(events: Iterable[UsageEvent]) -> dict[str, Totals]:
    """Per tenant: tokens of each kind, requests and cost in nano-dollars of the distinct events."""
    sums: dict[str, list[int]] = {}
    seen: set[str] = set()
    for e in events:
        if e.event_id in seen:
            continue
        seen.add(e.event_id)
        acc = sums.setdefault(e.tenant_id, [0, 0, 0, 0, 0, 0])
        acc[0] += e.input_tokens
        acc[1] += e.output_tokens
        acc[2] += e.cache_read_tokens
        acc[3] += e.cache_write_tokens
        acc[4] += 1 if e.outcome.value in COUNTED else 0
        acc[5] += RATES.cost_nanos(e)
    return {tenant: Totals(*acc) for tenant, acc in sums.items()}
