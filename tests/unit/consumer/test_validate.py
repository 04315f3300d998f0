"""One test per poison-record kind: each is quarantined with its reason and position, and priced events
follow shared.pricing exactly."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, timedelta
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.metering.records import Reason, split_records
from consumers.metering.validate import Meter
from shared.money import usd_to_nanos
from shared.ports import MeteredEvent, QuarantinedRecord
from shared.pricing import CachedPricer, PriceCatalog, Rates, TokenUsage, integer_rates, rate_cost
from shared.schema import MAX_EVENT_BYTES, MAX_TOKENS_PER_CALL, encode_event, event_to_dict
from shared.store_layout import EventRow
from tests.unit.consumer.kinesis import NOW, Shard, registry, usage

CATALOG = PriceCatalog.load()


def meter_bytes(data: bytes) -> MeteredEvent | QuarantinedRecord:
    shard = Shard()
    (record,) = split_records([shard.record(data, "acme")]).records
    result = Meter(registry("acme"), CachedPricer(CATALOG)).meter(record)
    return result if isinstance(result, QuarantinedRecord) else result[0]


def mutated(**changes: object) -> bytes:
    doc = event_to_dict(usage("acme"))
    for key, value in changes.items():
        if value is None:
            doc.pop(key, None)
        else:
            doc[key] = value
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("data", "reason", "field"),
    [
        (b"{not json", Reason.NOT_JSON, "event"),
        (b"\xff\xfe\x00", Reason.NOT_JSON, "event"),
        (b"[1, 2]", Reason.NOT_JSON, "event"),
        (mutated(v=2), Reason.UNKNOWN_SCHEMA_VERSION, "schema_version"),
        (mutated(v=None), Reason.UNKNOWN_SCHEMA_VERSION, "schema_version"),
        (mutated(tenant_id=None), Reason.MISSING_TENANT, "tenant_id"),
        (mutated(tenant_id=""), Reason.MISSING_TENANT, "tenant_id"),
        (mutated(tenant_id="no{braces}"), Reason.INVALID_TENANT, "tenant_id"),
        (mutated(tenant_id="nobody"), Reason.UNKNOWN_TENANT, "tenant_id"),
        (mutated(input_tokens=-5), Reason.NEGATIVE_TOKENS, "input_tokens"),
        (mutated(cache_write_tokens=-1), Reason.NEGATIVE_TOKENS, "cache_write_tokens"),
        (b" " * (MAX_EVENT_BYTES + 1), Reason.OVERSIZED, "event"),
        (mutated(tags={"costCenter": "x" * (MAX_EVENT_BYTES + 10)}), Reason.OVERSIZED, "event"),
        (mutated(occurred_at="2026-11-23T15:00:00+02:00"), Reason.INVALID_FIELD, "occurred_at"),
        (mutated(extra_field=1), Reason.INVALID_FIELD, "extra_field"),
        (mutated(output_tokens=True), Reason.INVALID_FIELD, "output_tokens"),
    ],
)
def test_each_poison_kind_is_quarantined_with_its_reason(data: bytes, reason: str, field: str) -> None:
    result = meter_bytes(data)
    assert isinstance(result, QuarantinedRecord)
    assert result.reason == reason
    assert result.detail["field"] == field
    assert result.data == data  # the raw bytes, for replay
    assert result.shard_id == "shardId-000000000000" and result.sequence_number.isdigit()


def test_a_priced_event_costs_exactly_what_price_usage_says() -> None:
    event = usage("acme", tokens=(123_457, 9_876, 5_555, 777))
    result = meter_bytes(encode_event(event))
    assert isinstance(result, MeteredEvent)
    priced = CATALOG.price_usage(
        TokenUsage(123_457, 9_876, 5_555, 777), event.model_id, alias=event.model, region=event.region, at=NOW
    )
    assert result.cost_nanos == priced.cost_nanos > 0
    assert result.model == priced.model_id
    assert (result.cost_center, result.application_id) == ("cc-1", "bot")


def test_the_pricer_cache_agrees_with_the_catalog_across_days_and_models() -> None:
    pricer = CachedPricer(CATALOG)
    models = [m.model_id for m in CATALOG.models.values()][:10]
    for i, model in enumerate([*models, "vendor.unknown-model-v9"]):
        for day in (0, 1, 400):
            event = usage("acme", model=model, tokens=(1000 + i, 333 * i, 7, 11), at=NOW - timedelta(days=day))
            _, cost, fallback = pricer.price(event)
            want = CATALOG.price_usage(
                TokenUsage(1000 + i, 333 * i, 7, 11), model, alias=event.model, region="us-east-1", at=event.occurred_at
            )
            assert (cost, fallback) == (want.cost_nanos, want.fallback)


def test_an_unknown_model_is_priced_by_the_fallback_and_keeps_its_own_name() -> None:
    shard = Shard()
    event = replace(usage("acme", model="us.vendor.brand-new-model-v1:0"), model="brand-new")
    (record,) = split_records([shard.plain(event)]).records
    result = Meter(registry("acme"), CachedPricer(CATALOG)).meter(record)
    assert not isinstance(result, QuarantinedRecord)
    metered, fallback = result
    assert fallback and metered.cost_nanos > 0 and metered.model == "vendor.brand-new-model-v1:0"


def test_tenant_default_tags_fill_missing_dimensions() -> None:
    shard = Shard()
    reg = registry("acme", default_tags={"costCenter": "cc-default", "applicationId": "app-default"})
    (record,) = split_records([shard.plain(usage("acme", tags={"applicationId": "mine"}))]).records
    result = Meter(reg, CachedPricer(CATALOG)).meter(record)
    assert not isinstance(result, QuarantinedRecord)
    assert (result[0].cost_center, result[0].application_id) == ("cc-default", "mine")


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(sorted(CATALOG.models)),
    st.tuples(*[st.integers(min_value=0, max_value=MAX_TOKENS_PER_CALL)] * 4),
    st.integers(min_value=-800, max_value=400),
)
def test_integer_pricing_agrees_with_price_usage(model: str, tokens: tuple[int, int, int, int], day: int) -> None:
    # The cached integer rates give exactly what the Decimal catalog gives, for any counts and day.
    at = NOW + timedelta(days=day)
    event = usage("acme", model=model, tokens=tokens, at=at)
    _, cost, fallback = CachedPricer(CATALOG).price(event)
    want = CATALOG.price_usage(TokenUsage(*tokens), model, alias=event.model, region="us-east-1", at=at)
    assert (cost, fallback) == (want.cost_nanos, want.fallback)


@pytest.mark.parametrize(
    ("rate", "tokens", "nanos"),
    [
        ("0.00875", 1, 9),  # 8.75 nano-dollars: rounds up
        ("0.00875", 2, 18),  # 17.5: half rounds up
        ("0.00125", 2, 3),  # 2.5: half rounds up
        ("0.00124", 2, 2),  # 2.48: rounds down
        ("0.0000001", 4_999, 0),  # 0.4999: rounds down
        ("0.0000001", 5_000, 1),  # 0.5: half rounds up
        ("3", 7, 21_000),  # scale 0: a multiplication
        ("0.8", 1_000_000, 800_000_000),
    ],
)
def test_integer_rates_round_half_up_once_per_event(rate: str, tokens: int, nanos: int) -> None:
    rates = Rates(date(2024, 1, 1), Decimal(rate), Decimal(0), Decimal(0), Decimal(0))
    assert rate_cost(integer_rates("m", rates, False), tokens, 0, 0, 0) == nanos
    assert rates.exact_cost(TokenUsage(tokens)) == Decimal(rate) * tokens / 1_000_000
    assert usd_to_nanos(rates.exact_cost(TokenUsage(tokens))) == nanos


def _mixed_record(shard: Shard, kind: int, n: int) -> list[dict[str, object]]:
    """One of the record shapes a batch may hold, good or bad."""
    good = usage("acme" if n % 2 else "globex")
    if kind == 0:
        return [shard.plain(good)]
    if kind == 1:
        return [shard.record(mutated(input_tokens=-5), "acme")]
    if kind == 2:
        return [shard.record(mutated(tenant_id="nobody"), "nobody")]
    if kind == 3:
        return [shard.plain(usage("acme", tags={}))]  # dimensions from the tenant's default tags
    if kind == 4:
        return [shard.plain(usage("acme", model="some.unknown-model-v1:0"))]  # priced by the fallback
    if kind == 5:
        return shard.aggregate([usage("acme"), usage("globex"), usage("acme")])
    if kind == 6:
        rec = shard.plain(good)
        rec["kinesis"]["data"] = "not base64!"  # type: ignore[index]
        return [rec]
    if kind == 7:
        rec = shard.plain(good)
        rec["kinesis"]["approximateArrivalTimestamp"] = 1_700_000_000  # type: ignore[index]  # an int
        return [rec]
    if kind == 8:
        rec = shard.plain(good)
        del rec["kinesis"]["sequenceNumber"]  # type: ignore[attr-defined]
        return [rec]
    if kind == 9:
        return [{"kinesis": "nonsense"}]
    return [shard.record(b"{not json", "acme")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=10), max_size=25))
def test_metering_records_in_one_pass_is_split_then_row(kinds: list[int]) -> None:
    # GIVEN a batch of records of every shape (the one-pass path takes the usual ones, the others go round)
    shard = Shard()
    records = [rec for n, kind in enumerate(kinds) for rec in _mixed_record(shard, kind, n)]
    tenants = registry("acme", "globex", default_tags={"costCenter": "cc-9", "applicationId": "app-9"})
    # WHEN metered in one pass, and in the two steps
    fused = Meter(tenants, CachedPricer(CATALOG)).meter_records(records)
    split = split_records(records)
    meter = Meter(tenants, CachedPricer(CATALOG))
    rows: list[EventRow] = []
    bad: list[QuarantinedRecord] = []
    for user in split.records:
        row = meter.row(user)
        if isinstance(row, QuarantinedRecord):
            bad.append(row)
        else:
            rows.append(row)
    # THEN the same rows (by tenant, in order), quarantines (the split's first) and oldest arrival
    by_tenant: dict[str, list[object]] = {}
    for row in rows:
        by_tenant.setdefault(row.tenant_id, []).append(row)
    assert fused.by_tenant == by_tenant
    assert list(fused.by_tenant) == list(by_tenant)
    assert fused.fallback_priced == [row for row in rows if row.fallback_priced]
    assert fused.quarantined == split.quarantined + bad
    assert fused.oldest_arrival == split.oldest_arrival
