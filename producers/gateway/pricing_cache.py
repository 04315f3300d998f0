"""Exact request pricing on the hot path: ``PriceCatalog.price_usage``'s result with its rate lookup cached.

``price_usage`` resolves the model (alias, cross-region id, ARN, fallback), then picks the rates in force for
the region and UTC day, then multiplies. The lookup is the expensive part and changes at most once a day per
model, so the gateway caches the chosen ``Rates`` per (model id, alias, region, UTC day) and does only the
exact Decimal arithmetic and the one rounding per request. The result is identical to ``price_usage``'s
``cost_nanos`` (a test checks it).
"""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime
from typing import Final

from shared.money import usd_to_nanos
from shared.pricing import PER_TOKENS, PriceCatalog, Rates, TokenUsage

MAX_ENTRIES: Final = 4096  # model x alias x region x day; cleared when full (a day rolls over, say)


class RateCache:
    def __init__(self, catalog: PriceCatalog) -> None:
        self.catalog = catalog
        self._rates: dict[tuple[str, str, str, date], Rates] = {}
        self._lock = threading.Lock()

    def rates(self, model_id: str, alias: str, region: str, at: datetime) -> Rates:
        key = (model_id, alias, region, at.astimezone(UTC).date())
        rates = self._rates.get(key)
        if rates is None:
            rates = self.catalog.price_usage(TokenUsage(), model_id, alias=alias, region=region, at=at).rates
            with self._lock:
                if len(self._rates) >= MAX_ENTRIES:
                    self._rates.clear()
                self._rates[key] = rates
        return rates

    def cost_nanos(self, usage: TokenUsage, model_id: str, *, alias: str, region: str, at: datetime) -> int:
        """Exactly ``catalog.price_usage(...).cost_nanos``."""
        return usd_to_nanos(self.rates(model_id, alias, region, at).exact_cost(usage))

    def max_cost_nanos(
        self, *, model_id: str, alias: str, input_tokens: int, max_output_tokens: int, region: str, at: datetime
    ) -> int:
        """The most a request can cost: its input bound priced at the dearer of the input and cache-write rates
        (a backend may bill prompt tokens as cache writes), plus ``max_output_tokens`` of output."""
        rates = self.rates(model_id, alias, region, at)
        exact = (input_tokens * max(rates.input, rates.cache_write) + max_output_tokens * rates.output) / PER_TOKENS
        return usd_to_nanos(exact)
