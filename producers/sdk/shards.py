"""ShardMap: which open shard of a stream a partition key lands on, as Kinesis decides it.

Kinesis hashes a partition key's UTF-8 bytes with MD5 to a 128-bit integer and routes the record to the open
shard whose hash-key range holds it (FACTS.md). Knowing the map lets the producer aggregate, like the KPL does,
all user records bound for one shard into one Kinesis record: every user record then sits on the shard its own
key maps to, exactly as if sent alone, while low-volume tenants share aggregates. The map is read with
ListShards (paginated) and refreshed by the producer periodically and whenever a PutRecords result names a
different shard than predicted (the stream was resharded). No I/O here beyond the one ``load`` call.
"""

from __future__ import annotations

import bisect
import hashlib
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

MAX_HASH_KEY: Final = 2**128 - 1


def hash_key(partition_key: str) -> int:
    return int.from_bytes(hashlib.md5(partition_key.encode(), usedforsecurity=False).digest(), "big")


@dataclass(frozen=True, slots=True)
class ShardRange:
    shard_id: str
    start: int
    end: int


class ShardMap:
    """The open shards of a stream by hash-key range."""

    def __init__(self, shards: Sequence[ShardRange]) -> None:
        ordered = sorted(shards, key=lambda s: s.start)
        self._shards = ordered
        self._starts = [s.start for s in ordered]
        self._cache: dict[str, str | None] = {}

    def __len__(self) -> int:
        return len(self._shards)

    def shard_for(self, partition_key: str) -> str | None:
        """The shard a key lands on, or None if no open shard covers its hash (mid-reshard)."""
        cached = self._cache.get(partition_key, "")
        if cached != "":
            return cached
        h = hash_key(partition_key)
        i = bisect.bisect_right(self._starts, h) - 1
        shard = self._shards[i].shard_id if i >= 0 and h <= self._shards[i].end else None
        if len(self._cache) < 100_000:  # partition keys are tenants: few; never let a flood of keys grow this
            self._cache[partition_key] = shard
        return shard

    @classmethod
    def from_shards(cls, shards: Sequence[Mapping[str, Any]]) -> ShardMap:
        """From ListShards ``Shards`` entries; closed shards (with an ending sequence number) are skipped."""
        ranges = []
        for shard in shards:
            if "EndingSequenceNumber" in shard.get("SequenceNumberRange", {}):
                continue
            hash_range = shard["HashKeyRange"]
            ranges.append(
                ShardRange(shard["ShardId"], int(hash_range["StartingHashKey"]), int(hash_range["EndingHashKey"]))
            )
        if not ranges:
            raise ValueError("the stream has no open shards")
        return cls(ranges)

    @classmethod
    def load(cls, list_shards: Callable[..., Any], stream_name: str) -> ShardMap:
        """Read every page of ListShards (a NextToken request must not name the stream)."""
        shards: list[Mapping[str, Any]] = []
        kwargs: dict[str, Any] = {"StreamName": stream_name}
        while True:
            page = list_shards(**kwargs)
            shards.extend(page.get("Shards", []))
            token = page.get("NextToken")
            if not token:
                return cls.from_shards(shards)
            kwargs = {"NextToken": token}
