"""Ports: the narrow interfaces between the pure core and the outside world.

The consumer writes usage, alert marks, blocks and reserve flags; the producers (gateway, SDK) read blocks and
reserve flags and take reservations; operators (the `meter` CLI) read usage and set or lift blocks. Every store
adapter (Redis, DynamoDB) implements the same ports and passes one shared contract test suite, so either can
back any component. Standard library only.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

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
        if metric is Metric.TOKENS:
            return self.tokens
        if metric is Metric.COST:
            return self.cost_nanos
        return self.requests

    def __add__(self, other: Totals) -> Totals:
        return Totals(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
            self.requests + other.requests,
            self.cost_nanos + other.cost_nanos,
        )


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
