"""Validate, attribute and price one user record: an EventRow (or MeteredEvent), or a QuarantinedRecord with a reason.

The strict decoder (shared.schema.decode_event) names the offending field; here that becomes one of a small
set of reason codes (metric dimension) plus the field and message in the quarantine detail. Most records take
the fast decoder (fast_decode.py) and only the ones it turns down pay for the strict one. Pricing is
shared.pricing's CachedPricer: the catalog's rates looked up once per (model, alias, region, UTC day) and kept
as integers, since a batch prices thousands of events of a handful of models and Decimal arithmetic per event
costs more than the rest of pricing together.
"""

from __future__ import annotations

import binascii
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final, NamedTuple, cast

from aws_kinesis_agg import MAGIC
from pybase64 import b64decode

from consumers.metering.fast_decode import COUNTED, EventFields, QuickDecoder
from consumers.metering.records import (
    MAX_SEQUENCE_DIGITS,
    PAD,
    SUB_ZERO,
    Reason,
    UserRecord,
    plain_user,
    split_records,
)
from shared.errors import SchemaError
from shared.ports import MeteredEvent, QuarantinedRecord
from shared.pricing import CachedPricer, rate_cost
from shared.schema import MAX_EVENT_BYTES, Outcome, decode_event
from shared.store_layout import APPLICATION_TAG, COST_CENTER_TAG, EventRow, clean_dimension, event_from_row
from shared.tenants import Tenant, TenantRegistry

_TOKEN_FIELDS: Final = frozenset({"input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"})
_COUNTED: Final = frozenset({Outcome.SUCCESS, Outcome.MODEL_ERROR})
_MINUTES_PER_DAY: Final = 1440
_row: Final = EventRow._make  # (the NamedTuple's __new__ takes twice as long for 21 fields)


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


class MeteredRecords(NamedTuple):
    by_tenant: dict[str, list[EventRow]]  # each tenant's rows in stream order, tenants in order of first row
    quarantined: list[QuarantinedRecord]  # the split's, then the meter's
    oldest_arrival: float | None
    fallback_priced: list[EventRow]  # the rows priced by the fallback


class Meter:
    def __init__(self, tenants: TenantRegistry, pricer: CachedPricer) -> None:
        self.tenants = tenants
        self.pricer = pricer
        self.quick = QuickDecoder()
        self._find = tenants.find
        self._decode_fields = self.quick.decode_fields
        self._rates = pricer.cache  # read directly on the hot path; misses go through pricer.rate
        self._defaults: dict[str, tuple[Tenant, str, str]] = {}  # tenant id -> (tenant, costCenter, applicationId)

    def decode(self, data: bytes) -> tuple[EventFields, datetime, int] | SchemaError:
        """The event's fields, time and unix minute (fast path, else the strict decoder), or the strict
        decoder's error naming the field."""
        found = self.quick.decode_fields(data)
        return found if found is not None else self._strict(data)

    @staticmethod
    def _strict(data: bytes) -> tuple[EventFields, datetime, int] | SchemaError:
        try:
            event = decode_event(data)
        except SchemaError as exc:
            return exc
        return event, event.occurred_at, int(event.occurred_at.timestamp()) // 60

    def dimensions(self, tenant: Tenant, tags: Mapping[str, str]) -> tuple[str, str]:
        """(costCenter, applicationId): the event's tags, else the tenant's default tags."""
        cost_center = tags.get(COST_CENTER_TAG)
        application = tags.get(APPLICATION_TAG)
        if not cost_center or not application:
            defaults = self._defaults.get(tenant.tenant_id)
            if defaults is None or defaults[0] is not tenant:
                defaults = self._defaults[tenant.tenant_id] = (
                    tenant,
                    clean_dimension(tenant.default_tags.get(COST_CENTER_TAG, "")),
                    clean_dimension(tenant.default_tags.get(APPLICATION_TAG, "")),
                )
            cost_center = cost_center or defaults[1]
            application = application or defaults[2]
        # Event tag values are validated printable (both decoders), so they need no cleaning.
        return cost_center, application

    def row(self, record: UserRecord) -> EventRow | QuarantinedRecord:
        """The event as a row (what the consumer's hot path keeps), or the record quarantined with a reason.
        Written flat (no helper calls on the common path): it runs for every event of every batch."""
        found: tuple[EventFields, datetime, int] | SchemaError | None = self._decode_fields(record.data)
        if found is None:  # the fast path is not sure: the strict decoder decides (and names the field)
            found = self._strict(record.data)
        if type(found) is not tuple:
            error = cast(SchemaError, found)
            return self._quarantine(record, reason_for(error, len(record.data)), error.field, error.message)
        ev, at, minute = found
        tenant_id = ev.tenant_id
        tenant = self._find(tenant_id)
        if tenant is None:
            return self._quarantine(record, Reason.UNKNOWN_TENANT, "tenant_id", f"unknown tenant {tenant_id!r}")
        model_id, alias, region = ev.model_id, ev.model, ev.region
        rate = self._rates.get((model_id, alias, region, minute // _MINUTES_PER_DAY))
        if rate is None:
            rate = self.pricer.rate(model_id, alias, region, minute)
        i, o, r, w = ev.input_tokens, ev.output_tokens, ev.cache_read_tokens, ev.cache_write_tokens
        tags = ev.tags
        cost_center = tags.get(COST_CENTER_TAG)
        application = tags.get(APPLICATION_TAG)
        if not cost_center or not application:
            cost_center, application = self.dimensions(tenant, tags)
        return _row(
            (
                tenant_id,
                ev.event_id,
                at,
                minute,
                record.shard_id,
                record.record_key,
                record.sequence_number,
                record.sub_sequence_number,
                record.stream_key,
                record.padded,
                rate.model,
                cost_center,
                application,
                i,
                o,
                r,
                w,
                1 if ev.outcome in COUNTED else 0,
                rate_cost(rate, i, o, r, w),
                ev.reservation_id,
                rate.fallback,
            )
        )

    def meter_records(self, records: Iterable[Mapping[str, Any]], users: Iterable[UserRecord] = ()) -> MeteredRecords:
        """``split_records`` then ``row`` for each user record, in one pass: the rows (by tenant), the records the
        split quarantined, then those the meter quarantined, and the oldest arrival, exactly as the two steps make
        them (tests/unit/consumer/test_validate.py holds it to that); then ``row`` for ``users``, user records
        split already (the consumer splits KPL aggregates first, to group their user records by tenant). A
        well-formed plain record with an event the fast decoder accepts, of a known tenant, with its dimension
        tags and a cached price (nearly every record) is read and metered here, ``row``'s usual path inline (a
        function call and a UserRecord per event were a tenth of this loop); anything else goes through the two
        steps."""
        by_tenant: dict[str, list[EventRow]] = {}
        fallback: list[EventRow] = []
        split_bad: list[QuarantinedRecord] = []
        meter_bad: list[QuarantinedRecord] = []
        oldest: float | None = None
        decode, find, rates = self._decode_fields, self._find, self._rates
        tuple_new = tuple.__new__  # EventRow._make less its Python frame (the tuple below has its 21 fields)
        for record in records:
            # The usual record, read with no checks beyond the types: a well-formed plain record (a dict, as
            # Lambda's JSON makes it) with valid base64 data that is not a KPL aggregate. Anything else takes
            # split_records, which reads every record carefully and names what is wrong with it.
            kinesis: Any
            try:
                kinesis = record["kinesis"]
                seq = kinesis["sequenceNumber"]
                pk = kinesis["partitionKey"]
                arrived = kinesis["approximateArrivalTimestamp"]
                event_id = record["eventID"]
                data = b64decode(kinesis["data"], None, True)  # (validate=True: positional, a third faster)
            except (KeyError, TypeError, binascii.Error, ValueError):
                data = None
            if not (
                data is not None
                and type(record) is dict
                and type(kinesis) is dict
                and type(seq) is str
                and type(pk) is str
                and type(arrived) is float
                and type(event_id) is str
                and seq.isascii()
                and seq.encode().isdigit()  # (bytes: a third of str.isdigit's time)
                and len(seq) <= MAX_SEQUENCE_DIGITS
                and not data.startswith(MAGIC)
                and (colon := event_id.find(":")) >= 0
            ):
                split = split_records([record])
                split_bad += split.quarantined
                if split.oldest_arrival is not None and (oldest is None or split.oldest_arrival < oldest):
                    oldest = split.oldest_arrival
                for user in split.records:
                    self._add(self.row(user), by_tenant, fallback, meter_bad)
                continue
            if arrived and (oldest is None or arrived < oldest):
                oldest = arrived
            shard = event_id[:colon]  # shard_of
            # Meter.row's usual path, word for word.
            found = decode(data)
            if found is not None:
                ev, at, minute = found
                tenant_id = ev.tenant_id
                rate = rates.get((ev.model_id, ev.model, ev.region, minute // _MINUTES_PER_DAY))
                tags = ev.tags
                cost_center = tags.get(COST_CENTER_TAG)
                application = tags.get(APPLICATION_TAG)
                if rate is not None and cost_center and application and find(tenant_id) is not None:
                    i, o, r, w = ev.input_tokens, ev.output_tokens, ev.cache_read_tokens, ev.cache_write_tokens
                    total = i * rate.input + o * rate.output + r * rate.cache_read + w * rate.cache_write
                    # rate_cost, inline
                    cost = total * rate.multiply if rate.multiply else (2 * total + rate.divide) // (2 * rate.divide)
                    row = tuple_new(
                        EventRow,
                        (
                            tenant_id,
                            ev.event_id,
                            at,
                            minute,
                            shard,
                            pk,
                            seq,
                            0,
                            f"{shard}|{pk}",
                            f"{PAD[len(seq)]}{seq}{SUB_ZERO}",
                            rate.model,
                            cost_center,
                            application,
                            i,
                            o,
                            r,
                            w,
                            1 if ev.outcome in COUNTED else 0,
                            cost,
                            ev.reservation_id,
                            rate.fallback,
                        ),
                    )
                    rows = by_tenant.get(tenant_id)
                    if rows is None:
                        by_tenant[tenant_id] = [row]
                    else:
                        rows.append(row)
                    if rate.fallback:
                        fallback.append(row)
                    continue
            self._add(self.row(plain_user(data, shard, pk, seq, arrived)), by_tenant, fallback, meter_bad)
        for user in users:
            self._add(self.row(user), by_tenant, fallback, meter_bad)
        return MeteredRecords(by_tenant, split_bad + meter_bad, oldest, fallback)

    @staticmethod
    def _add(
        row: EventRow | QuarantinedRecord,
        by_tenant: dict[str, list[EventRow]],
        fallback: list[EventRow],
        bad: list[QuarantinedRecord],
    ) -> None:
        if type(row) is not EventRow:
            bad.append(cast(QuarantinedRecord, row))
            return
        by_tenant.setdefault(row.tenant_id, []).append(row)
        if row.fallback_priced:
            fallback.append(row)

    def meter(self, record: UserRecord) -> tuple[MeteredEvent, bool] | QuarantinedRecord:
        """(event, priced by fallback) or the record quarantined with a reason."""
        row = self.row(record)
        if isinstance(row, QuarantinedRecord):
            return row
        return event_from_row(row), row.fallback_priced

    @staticmethod
    def _quarantine(record: UserRecord, reason: str, field: str, message: str) -> QuarantinedRecord:
        return QuarantinedRecord(
            data=record.data,
            reason=reason,
            shard_id=record.shard_id,
            sequence_number=record.sequence_number,
            sub_sequence_number=record.sub_sequence_number,
            partition_key=record.partition_key,
            arrived_at=datetime.fromtimestamp(record.arrived_at, UTC) if record.arrived_at else None,
            detail={"field": field, "error": message[:300]},
        )
