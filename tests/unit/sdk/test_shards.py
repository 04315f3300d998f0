"""ShardMap: the shard a partition key lands on, from ListShards pages, as Kinesis routes it."""

from __future__ import annotations

from typing import Any

import pytest

from producers.sdk.shards import ShardMap, hash_key
from tests.unit.sdk.fakes import ShardedFakeKinesis, even_shards


def test_keys_map_to_the_shard_whose_range_holds_their_md5() -> None:
    fake = ShardedFakeKinesis(shards=even_shards(7))
    shard_map = ShardMap.from_shards(fake.shards)
    for i in range(500):
        key = f"tenant-{i}"
        assert shard_map.shard_for(key) == fake.shard_of(key)
    assert len(shard_map) == 7


def test_the_hash_is_md5_of_the_utf8_key() -> None:
    # MD5("") is d41d8cd98f00b204e9800998ecf8427e.
    assert hash_key("") == 0xD41D8CD98F00B204E9800998ECF8427E


def test_closed_shards_are_ignored_and_pages_are_followed() -> None:
    # GIVEN a resharded stream: a closed parent and two open children, over two ListShards pages
    parent, *children = even_shards(1, prefix="parent-") + even_shards(2, prefix="child-")
    parent["SequenceNumberRange"]["EndingSequenceNumber"] = "99"
    pages = {None: {"Shards": [parent, children[0]], "NextToken": "t1"}, "t1": {"Shards": [children[1]]}}
    calls: list[dict[str, Any]] = []

    def list_shards(**kwargs: Any) -> dict[str, Any]:
        calls.append(kwargs)
        return pages[kwargs.get("NextToken")]

    # WHEN the map is loaded
    shard_map = ShardMap.load(list_shards, "usage")

    # THEN only the children count, and the second page was asked for by token alone
    assert calls == [{"StreamName": "usage"}, {"NextToken": "t1"}]
    assert len(shard_map) == 2
    assert {shard_map.shard_for(f"k{i}") for i in range(50)} == {"child-000000000000", "child-000000000001"}


def test_a_hash_no_open_shard_covers_has_no_shard() -> None:
    (only,) = even_shards(2)[:1]  # covers the lower half only
    shard_map = ShardMap.from_shards([only])
    results = {shard_map.shard_for(f"k{i}") for i in range(50)}
    assert results == {"shardId-000000000000", None}


def test_a_stream_without_open_shards_is_an_error() -> None:
    closed = even_shards(1)[0]
    closed["SequenceNumberRange"]["EndingSequenceNumber"] = "5"
    with pytest.raises(ValueError, match="no open shards"):
        ShardMap.from_shards([closed])
