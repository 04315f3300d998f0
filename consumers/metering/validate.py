"""Validate, attribute and price one user record: a MeteredEvent, or a QuarantinedRecord with a reason.

The strict decoder (shared.schema.decode_event) names the offending field; here that becomes one of a small
set of reason codes (metric dimension) plus the field and message in the quarantine detail. Pricing follows
shared.pricing exactly (the one rounding rule) but caches the rate lookup per (model, alias, region, day),
since a batch prices thousands of events of a handful of models.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Final

from consumers.metering.fast_decode import QuickDecoder, QuickEvent
from consumers.metering.records import Reason, UserRecord
from shared.errors import SchemaError
from shared.money import usd_to_nanos
from shared.ports import MeteredEvent, QuarantinedRecord
from shared.pricing import PER_TOKENS, PriceCatalog, TokenUsage, canonical_model_id
from shared.schema import MAX_EVENT_BYTES, Outcome, UsageEvent, decode_event
from shared.store_layout import APPLICATION_TAG, COST_CENTER_TAG, clean_dimension
from shared.tenants import TenantRegistry

_TOKEN_FIELDS: Final = frozenset({"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"})
_COUNTED: Final = frozenset({Outcome.SUCCESS, Outcome.MODEL_ERROR})


def reason_for(error: SchemaError, size: int) -> str:
    if size > MAX_EVENT_BYTES:
        return Reason.OVERSIZED
    if error.field == "event":
        return Reason.NOT_JSON
    if error.field == "schema_version":
        return Reason.UNKNOWN_SCHEMA_VERSION
    if error.field == "tenant_id":
        return Reason.MISSING_TENANT if "required" in error.message else Reason.INVALID_TENANT
    if error.field in _TOKEN_FIELDS and "negative" in error.message:
        return Reason.NEGATIVE_TOKENS
    return Reason.INVALID_FIELD


class CachedPricer:
    """``PriceCatalog.price_usage`` with the catalog lookup memoised; same rates, same rounding."""

    def __init__(self, catalog: PriceCatalog) -> None:
        self.catalog = catalog
        self._cache: dict[tuple[str, str, str, date], tuple[str, tuple[Decimal, Decimal, Decimal, Decimal], bool]] = {}

    def price(self, event: UsageEvent) -> tuple[str, int, bool]:
        """(model dimension, cost in nano-dollars, priced by fallback)."""
        return self.price_fields(
            event.model_id,
            event.model,
            event.region,
            event.occurred_at,
            (event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens),
        )

    def price_fields(
        self, model_id: str, alias: str, region: str, at: datetime, tokens: tuple[int, int, int, int]
    ) -> tuple[str, int, bool]:
        key = (model_id, alias, region, at.date())
        hit = self._cache.get(key)
        if hit is None:
            priced = self.catalog.price_usage(TokenUsage(), model_id, alias=alias, region=region, at=at)
            # The model dimension: the catalog model that priced it; an unknown model keeps its own id.
            model = canonical_model_id(model_id) if priced.fallback else priced.model_id
            rates = priced.rates
            per_m = (rates.input, rates.output, rates.cache_read, rates.cache_write)
            hit = (clean_dimension(model), per_m, priced.fallback)
            if len(self._cache) > 10_000:
                self._cache.clear()
            self._cache[key] = hit
        model, (r_in, r_out, r_cr, r_cw), fallback = hit
        # Rates.exact_cost, inlined: the same Decimal expression, so the same one rounding (usd_to_nanos).
        exact = (tokens[0] * r_in + tokens[1] * r_out + tokens[2] * r_cr + tokens[3] * r_cw) / PER_TOKENS
        return model, usd_to_nanos(exact), fallback


class Meter:
    def __init__(self, tenants: TenantRegistry, pricer: CachedPricer) -> None:
        self.tenants = tenants
        self.pricer = pricer
        self.quick = QuickDecoder()

    def meter(self, record: UserRecord) -> tuple[MeteredEvent, bool] | QuarantinedRecord:
        """(event, priced by fallback) or the record quarantined with a reason."""
        quick = self.quick.decode(record.data)
        if quick is None:
            try:
                event = decode_event(record.data)
            except SchemaError as exc:
                return self._quarantine(record, reason_for(exc, len(record.data)), exc.field, exc.message)
            quick = QuickEvent(
                event.event_id,
                event.occurred_at,
                event.tenant_id,
                event.model,
                event.model_id,
                event.region,
                (event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens),
                event.outcome in _COUNTED,
                dict(event.tags),
                event.reservation_id,
            )
        tenant = self.tenants.find(quick.tenant_id)
        if tenant is None:
            return self._quarantine(record, Reason.UNKNOWN_TENANT, "tenant_id", f"unknown tenant {quick.tenant_id!r}")
        tokens = quick.tokens
        model, cost, fallback = self.pricer.price_fields(
            quick.model_id, quick.model, quick.region, quick.occurred_at, tokens
        )
        tags = quick.tags
        defaults = tenant.default_tags
        metered = MeteredEvent(
            tenant_id=quick.tenant_id,
            event_id=quick.event_id,
            occurred_at=quick.occurred_at,
            position=record.position,
            model=model,
            cost_center=clean_dimension(tags.get(COST_CENTER_TAG) or defaults.get(COST_CENTER_TAG, "")),
            application_id=clean_dimension(tags.get(APPLICATION_TAG) or defaults.get(APPLICATION_TAG, "")),
            input_tokens=tokens[0],
            output_tokens=tokens[1],
            cache_read_tokens=tokens[2],
            cache_write_tokens=tokens[3],
            cost_nanos=cost,
            reservation_id=quick.reservation_id,
            requests=1 if quick.counted else 0,
        )
        return metered, fallback

    @staticmethod
    def _quarantine(record: UserRecord, reason: str, field: str, message: str) -> QuarantinedRecord:
        return QuarantinedRecord(
            data=record.data,
            reason=reason,
            shard_id=record.position.shard_id,
            sequence_number=record.position.sequence_number,
            sub_sequence_number=record.position.sub_sequence_number,
            partition_key=record.partition_key,
            arrived_at=datetime.fromtimestamp(record.arrived_at, UTC) if record.arrived_at else None,
            detail={"field": field, "error": message[:300]},
        )
