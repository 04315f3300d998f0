"""Ports: the narrow interfaces between the pure core and the outside world.

The consumer writes usage, alert marks, blocks and reserve flags; the producers (gateway, SDK) read blocks and
reserve flags and take reservations; operators (the `meter` CLI) read usage and set or lift blocks. Every store
adapter (Redis, DynamoDB) implements the same ports and passes one shared contract test suite, so either can
back any component. Standard library only.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from operator import attrgetter
from typing import Final, Protocol, runtime_checkable

from shared.decisions import AlertLevel, BlockRecord, Metric
from shared.schema import UsageEvent
from shared.windows import Window


@dataclass(frozen=True, slots=True)
class Totals:
    """Counters of one tenant (or tenant x dimension) over one window. Cost in integer nano-dollars."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    requests: int = 0
    cost_nanos: int = 0

    @property
    def tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens

    def value(self, metric: Metric) -> int:
        return METRIC_READERS[metric](self)

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.requests + other.requests,
            self.cost_nanos + other.cost_nanos,
        )


# What a quota on each metric counts, read off Totals (``Totals.value``; the consumer's alert rules keep the reader).
METRIC_READERS: Final[dict[Metric, Callable[[Totals], int]]] = {
    Metric.TOKENS: attrgetter("tokens"),
    Metric.COST: attrgetter("cost_nanos"),
    Metric.REQUESTS: attrgetter("requests"),
}


@dataclass(frozen=True, slots=True)
class ReserveFlag:
    """The consumer switched a tenant to reserved admission for a cost window until ``until``: the gateway
    must reserve each request's maximum cost against ``limit_nanos`` of ``window`` before calling the model."""

    tenant_id: str
    window: str
    level: AlertLevel
    limit_nanos: int
    until: datetime


@dataclass(frozen=True, slots=True)
class QuotaStatus:
    """What a producer needs to admit a request, read in one round trip."""

    blocks: tuple[BlockRecord, ...] = ()
    reserve: tuple[ReserveFlag, ...] = ()


class UsageReader(Protocol):
    def window_totals(self, tenant_id: str, windows: Sequence[Window], now: datetime) -> dict[str, Totals]:
        """Totals per window name for one tenant at ``now``."""
        ...


class QuotaState(Protocol):
    """Blocks, reserve flags and reservations: written by the consumer and operators, read by producers."""

    def quota_status(self, tenant_id: str, now: datetime) -> QuotaStatus: ...

    def set_block(self, record: BlockRecord) -> None: ...

    def lift_blocks(self, tenant_id: str, window: str | None = None) -> int:
        """Remove a tenant's blocks (one window's, or all); returns how many were removed."""
        ...

    def set_reserve_flag(self, flag: ReserveFlag) -> None: ...

    def reserve(
        self,
        tenant_id: str,
        reservation_id: str,
        amount_nanos: int,
        *,
        window: Window,
        limit_nanos: int,
        now: datetime,
        ttl: timedelta,
    ) -> bool:
        """Atomically: if the window's metered cost plus outstanding reservations plus ``amount_nanos`` is at
        most ``limit_nanos``, record the reservation (it lapses after ``ttl``) and return True; else False."""
        ...

    def settle(self, tenant_id: str, reservation_ids: Iterable[str]) -> None:
        """Drop reservations whose usage has been metered (idempotent)."""
        ...


class EventSink(Protocol):
    """Where producers put usage events (the Kinesis producer, or a list in tests)."""

    def emit(self, event: UsageEvent) -> None: ...


@dataclass(frozen=True, slots=True)
class QuarantinedRecord:
    """A record the consumer could not meter, kept with everything needed to replay or inspect it."""

    data: bytes
    reason: str
    shard_id: str
    sequence_number: str
    sub_sequence_number: int | None = None
    partition_key: str = ""
    arrived_at: datetime | None = None
    detail: dict[str, str] = field(default_factory=dict)


class QuarantineSink(Protocol):
    def quarantine(self, records: Sequence[QuarantinedRecord]) -> None: ...


# --- consumer-side ports (issue 3) ------------------------------------------------------------------------
#
# The metering consumer hands the store one TenantBatch per tenant touched by a Kinesis batch. The store
# applies each tenant's batch atomically (all or nothing), skipping duplicates by a per-(shard, partition key)
# sequence high-water mark and an event-id horizon, settles reservations named by applied events, and answers
# with the tenant's totals over the windows the consumer asked for, so alert evaluation needs no extra reads.


@dataclass(frozen=True, slots=True, order=True)
class StreamPosition:
    """Where a user record sat in the stream. Lambda keeps order per (shard, partition key of the Kinesis
    record), so that pair is the unit of the redelivery high-water mark; ``partition_key`` is the Kinesis
    record's key (for a KPL aggregate, the aggregate's), not the sub-record's."""

    shard_id: str
    partition_key: str
    sequence_number: str
    sub_sequence_number: int = 0
    # Derived once (the hot path reads them several times per event): the high-water mark's key, and the
    # position as a fixed-width string (64-digit sequence, 10-digit sub-sequence) that sorts like ``order``.
    stream_key: str = field(init=False, compare=False, repr=False)
    padded: str = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "stream_key", f"{self.shard_id}|{self.partition_key}")
        object.__setattr__(self, "padded", f"{self.sequence_number:0>64}{self.sub_sequence_number:010d}")

    @property
    def order(self) -> tuple[int, int]:
        """Total order within one stream key (sequence numbers are decimal strings of up to 128 bits)."""
        return (int(self.sequence_number), self.sub_sequence_number)


@dataclass(frozen=True, slots=True)
class MeteredEvent:
    """One validated, priced usage event, reduced to what the store counts. Cost in nano-dollars."""

    tenant_id: str
    event_id: str
    occurred_at: datetime
    position: StreamPosition
    model: str
    cost_center: str = ""
    application_id: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    cost_nanos: int = 0
    reservation_id: str = ""
    # 1 for a model call (success or model_error); 0 for a call the gateway denied or Bedrock throttled, which
    # is kept for dedupe and reservations but is not a request against quotas.
    requests: int = 1
    minute: int = field(init=False, compare=False, repr=False)  # unix minute of occurred_at

    def __post_init__(self) -> None:
        object.__setattr__(self, "minute", int(self.occurred_at.timestamp()) // 60)

    @property
    def totals(self) -> Totals:
        return Totals(
            self.input_tokens,
            self.output_tokens,
            self.cache_read_tokens,
            self.cache_write_tokens,
            self.requests,
            self.cost_nanos,
        )


@dataclass(frozen=True, slots=True)
class TenantBatch:
    """One tenant's events from one Kinesis batch, in stream order, and the windows to read back after."""

    tenant_id: str
    events: tuple[MeteredEvent, ...]
    read_windows: tuple[Window, ...] = ()
    # Calendar windows to read one period back (the previous hour, day, month), reported as
    # ``previous_name(window)``: the spike baseline and the projection rate read the previous hour.
    read_previous: tuple[Window, ...] = ()


def previous_name(window: Window) -> str:
    """The totals key of a calendar window read one period back: ``prev_hour``, ``prev_day``, ``prev_month``."""
    return f"prev_{window.name}"


@dataclass(frozen=True, slots=True)
class ApplyOutcome:
    """What applying one TenantBatch did. ``ok`` False means nothing of it was stored (``error`` says why) and
    its records must be retried. ``duplicate_ids`` are the event ids skipped as already counted."""

    tenant_id: str
    ok: bool
    applied: int = 0
    duplicates: int = 0
    duplicate_ids: frozenset[str] = frozenset()
    totals: dict[str, Totals] = field(default_factory=dict)
    error: str = ""


class WindowStore(Protocol):
    """The consumer's write port."""

    def apply_usage(
        self, batches: Sequence[TenantBatch], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        """Apply each tenant's batch atomically and exactly once (see the README's guarantee); one outcome per
        batch, in order. A store that cannot be reached answers ``ok=False`` outcomes rather than raising."""
        ...


@dataclass(frozen=True, slots=True)
class AlertMark:
    """'Tenant T was alerted at ``level`` for ``rule`` in ``period``': makes an alert fire once per level per
    period. ``rule`` names what was evaluated (``month|cost_usd``, ``spike|tokens``, ...)."""

    tenant_id: str
    rule: str
    period: str
    level: int
    expires: datetime


class AlertMarks(Protocol):
    def raise_marks(self, marks: Sequence[AlertMark]) -> list[int]:
        """For each mark, atomically: if the stored level is lower, store ``mark.level``. Returns the level
        stored before (0 if none). A mark of level 0 never stores anything: raising it reads the level."""
        ...

    def restore_mark(self, mark: AlertMark, previous: int) -> None:
        """Undo ``raise_marks`` for one mark whose actions failed (only if it still holds ``mark.level``)."""
        ...


@dataclass(frozen=True, slots=True)
class RollupRow:
    """One day's usage of one tenant x model x costCenter x applicationId (the daily report's grain)."""

    tenant_id: str
    model: str
    cost_center: str
    application_id: str
    totals: Totals


class UsageIndex(Protocol):
    """What the `meter` CLI and the daily report read beyond one tenant's window totals."""

    def active_tenants(self, start: datetime, end: datetime) -> list[str]:
        """Tenants with usage on any UTC day from ``start`` to ``end`` (inclusive), sorted."""
        ...

    def dimension_totals(self, tenant_id: str, window: Window, now: datetime) -> dict[str, dict[str, Totals]]:
        """A calendar (day or month) window's totals by dimension: {"model"|"cost_center"|"application_id":
        {value: Totals}}."""
        ...

    def daily_rollup(self, tenant_id: str, day: datetime) -> list[RollupRow]:
        """The tenant's rows for the UTC day containing ``day``."""
        ...

    def top_tenants(self, window: Window, metric: Metric, now: datetime, limit: int = 10) -> list[tuple[str, Totals]]:
        """The ``limit`` tenants with the highest ``metric`` over ``window`` at ``now``, highest first."""
        ...


@dataclass(frozen=True, slots=True)
class AlertMessage:
    """One alert to publish: to each severity topic in ``severities`` (info, warning, critical) and, when set,
    to the tenant's own contact topic. ``level`` is an AlertLevel label, or ``spike`` / ``projection``."""

    tenant_id: str
    tier: str
    level: str
    window: str
    metric: str
    summary: str
    severities: tuple[str, ...]
    tenant_topic_arn: str = ""
    detail: dict[str, str | int] = field(default_factory=dict)


class AlertPublisher(Protocol):
    def publish(self, alert: AlertMessage) -> None:
        """Publish or raise; the consumer retries the batch's records when this raises."""
        ...


@runtime_checkable
class TargetedAlertPublisher(AlertPublisher, Protocol):
    """A publisher that can name an alert's targets and publish to one at a time, so that a retry after a
    partial failure re-sends only to the targets that missed it (SnsAlertPublisher is one)."""

    def targets(self, alert: AlertMessage) -> list[str]: ...

    def publish_to(self, alert: AlertMessage, target: str) -> None: ...
