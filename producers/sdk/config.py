"""ProducerConfig: the tuning knobs of UsageProducer, validated in one place.

A frozen dataclass rather than a dozen constructor keywords, so the gateway and the local stack can build one
from their own settings and pass it around; every bad value raises ConfigError naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Final

from shared.errors import ConfigError
from shared.schema import MAX_EVENT_BYTES, TENANT_ID_RE

MIB: Final = 1024 * 1024

# Kinesis PutRecords limits (FACTS.md): one record's key + data, and one call's records and bytes.
KINESIS_MAX_RECORD_BYTES: Final = 1 * MIB
KINESIS_MAX_CALL_RECORDS: Final = 500
KINESIS_MAX_CALL_BYTES: Final = 5 * MIB
# Partition keys are 1-256 characters.
KINESIS_MAX_KEY_LEN: Final = 256
# Far more than one shard could ever need (1 MB/s per shard); a typo like 10000 is an error, not a plan.
MAX_KEY_SPREAD: Final = 64


class AggregationScope(StrEnum):
    """Which user records may share a Kinesis record (see producers.sdk.batching)."""

    # Those bound for the same shard (read with ListShards); falls back to KEY while the map is unknown.
    SHARD = "shard"
    # Those with the same partition key only.
    KEY = "key"


class OverflowPolicy(StrEnum):
    """What ``emit()`` does when ``max_buffered_events`` events are already waiting."""

    # Wait up to ``block_timeout_s`` for the sender to make room, then drop the event and count it.
    BLOCK = "block"
    # Drop the event at once and count it.
    DROP = "drop"


@dataclass(frozen=True, slots=True)
class ProducerConfig:
    """Defaults suit an application making up to a few thousand model calls per second.

    Memory is bounded twice: ``max_buffered_events`` caps the not-yet-encoded events waiting for the sender
    (each encodes to at most 8 KiB), and ``max_buffered_bytes`` caps the encoded bytes the sender holds in open
    aggregates and records awaiting (re)send. When the second is full the sender stops taking events, the
    first fills up, and ``overflow`` decides.
    """

    # How long an event may wait to share a Kinesis record with others before it is sent anyway.
    linger_s: float = 0.5
    max_buffered_events: int = 50_000
    max_buffered_bytes: int = 32 * MIB
    overflow: OverflowPolicy = OverflowPolicy.BLOCK
    # BLOCK only: how long emit() may wait for room. Short: it runs on the caller's request thread.
    block_timeout_s: float = 0.1
    # One aggregate's partition key + data; Kinesis allows 1 MiB.
    max_record_bytes: int = KINESIS_MAX_RECORD_BYTES
    max_call_records: int = KINESIS_MAX_CALL_RECORDS
    max_call_bytes: int = KINESIS_MAX_CALL_BYTES
    # Resend backoff: full jitter, uniform in [0, min(cap, base * 2**(attempt-1))].
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 5.0
    # close() at interpreter exit waits at most this long for the buffer to drain.
    close_timeout_s: float = 10.0
    aggregate_by: AggregationScope = AggregationScope.SHARD
    # How often the shard map is re-read (and soon after Kinesis puts a record on another shard than predicted).
    shard_map_refresh_s: float = 60.0
    # ...but a re-read forced by a misrouted record waits at least this long after the previous one.
    shard_map_min_interval_s: float = 5.0
    # Hot tenants spread over N partition keys ``tenant#0..N-1`` (see the module docs of producers.sdk.producer
    # for what that costs). Tenants not listed use one key: their tenant id.
    key_spread: Mapping[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _positive(self.linger_s, "linger_s", maximum=60.0)
        _positive(self.block_timeout_s, "block_timeout_s", maximum=60.0, allow_zero=True)
        _positive(self.backoff_base_s, "backoff_base_s", maximum=60.0)
        _positive(self.backoff_cap_s, "backoff_cap_s", maximum=600.0)
        _positive(self.close_timeout_s, "close_timeout_s", maximum=3600.0, allow_zero=True)
        _positive(self.shard_map_refresh_s, "shard_map_refresh_s", maximum=86_400.0)
        _positive(self.shard_map_min_interval_s, "shard_map_min_interval_s", maximum=3600.0, allow_zero=True)
        if not isinstance(self.aggregate_by, AggregationScope):
            raise ConfigError(
                f"must be one of {', '.join(a.value for a in AggregationScope)}",
                source="ProducerConfig",
                field="aggregate_by",
            )
        if self.backoff_cap_s < self.backoff_base_s:
            raise ConfigError("must be at least backoff_base_s", source="ProducerConfig", field="backoff_cap_s")
        if not isinstance(self.overflow, OverflowPolicy):
            raise ConfigError(
                f"must be one of {', '.join(p.value for p in OverflowPolicy)}",
                source="ProducerConfig",
                field="overflow",
            )
        _int_in(self.max_buffered_events, "max_buffered_events", 1, 10_000_000)
        _int_in(self.max_buffered_bytes, "max_buffered_bytes", 2 * MAX_EVENT_BYTES, 4096 * MIB)
        # An aggregate must hold at least a couple of the largest events plus a partition key.
        _int_in(self.max_record_bytes, "max_record_bytes", 2 * MAX_EVENT_BYTES + 1024, KINESIS_MAX_RECORD_BYTES)
        _int_in(self.max_call_records, "max_call_records", 1, KINESIS_MAX_CALL_RECORDS)
        _int_in(self.max_call_bytes, "max_call_bytes", self.max_record_bytes, KINESIS_MAX_CALL_BYTES)
        for tenant, spread in self.key_spread.items():
            if not isinstance(tenant, str) or not TENANT_ID_RE.fullmatch(tenant):
                raise ConfigError(
                    "not a valid tenant id", source="ProducerConfig", entry=str(tenant), field="key_spread"
                )
            _int_in(spread, f"key_spread[{tenant}]", 1, MAX_KEY_SPREAD)


def _positive(value: object, name: str, *, maximum: float, allow_zero: bool = False) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(
            f"must be a number of seconds, got {type(value).__name__}", source="ProducerConfig", field=name
        )
    low_ok = value >= 0 if allow_zero else value > 0
    if not low_ok or value > maximum:
        bound = "[0" if allow_zero else "(0"
        raise ConfigError(f"must be in {bound}, {maximum}], got {value}", source="ProducerConfig", field=name)


def _int_in(value: object, name: str, minimum: int, maximum: int) -> None:
    if type(value) is not int:
        raise ConfigError(f"must be an integer, got {type(value).__name__}", source="ProducerConfig", field=name)
    if not minimum <= value <= maximum:
        raise ConfigError(f"must be between {minimum} and {maximum}, got {value}", source="ProducerConfig", field=name)
