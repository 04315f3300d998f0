from __future__ import annotations

import json
import os
import threading
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.errors import SchemaError
from shared.schema import (
    MAX_EVENT_BYTES,
    Outcome,
    Source,
    UsageEvent,
    decode_event,
    encode_event,
    event_to_dict,
    format_timestamp,
    new_event_id,
)

T0 = datetime(2026, 11, 23, 15, 39, 27, 123000, tzinfo=UTC)


def make_event(**overrides: object) -> UsageEvent:
    fields: dict[str, object] = dict(
        event_id="e-1",
        occurred_at=T0,
        tenant_id="acme",
        source=Source.GATEWAY,
        model="claude-3-5-haiku",
        model_id="anthropic.claude-3-5-haiku-20241022-v1:0",
        region="us-east-1",
        input_tokens=1200,
        output_tokens=300,
        cache_read_tokens=10,
        cache_write_tokens=5,
        latency_ms=850,
        outcome=Outcome.SUCCESS,
        request_id="req-1",
        tags={"applicationId": "chat", "costCenter": "cc-42", "environment": "prod"},
    )
    fields.update(overrides)
    return UsageEvent(**fields)  # type: ignore[arg-type]


def wire(**overrides: object) -> bytes:
    obj = event_to_dict(make_event())
    for key, value in overrides.items():
        if value is ...:
            obj.pop(key, None)
        else:
            obj[key] = value
    return json.dumps(obj).encode()


def test_round_trip_is_exact_and_compact() -> None:
    event = make_event()
    data = encode_event(event)
    assert b" " not in data.replace(b"claude", b"")  # compact separators
    assert decode_event(data) == event
    assert json.loads(data)["occurred_at"] == "2026-11-23T15:39:27.123Z"


def test_optional_fields_are_omitted_when_empty() -> None:
    data = json.loads(encode_event(make_event(request_id="", tags={})))
    assert "request_id" not in data and "tags" not in data and "reservation_id" not in data


def test_event_ids_are_unique() -> None:
    ids = [new_event_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_event_ids_are_unique_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(8)]

    def work(n: int) -> None:
        found[n] += [new_event_id() for _ in range(2000)]  # several pool refills per thread

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({i for ids in found for i in ids}) == 16_000


def test_a_forked_child_never_repeats_its_parents_ids() -> None:
    new_event_id()  # the pool now holds bytes a child would inherit
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.write(write_end, "".join(new_event_id() for _ in range(3)).encode())
        os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)
    child = os.read(read_end, 200).decode()
    os.close(read_end)
    parent = "".join(new_event_id() for _ in range(3))
    assert len(child) == 96
    assert {child[i : i + 32] for i in range(0, 96, 32)}.isdisjoint({parent[i : i + 32] for i in range(0, 96, 32)})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"v": 2}, "schema_version"),
        ({"v": ...}, "schema_version"),
        ({"tenant_id": ...}, "tenant_id"),
        ({"tenant_id": ""}, "tenant_id"),
        ({"tenant_id": "acme{evil}"}, "tenant_id"),
        ({"input_tokens": -1}, "input_tokens"),
        ({"output_tokens": 10**9}, "output_tokens"),
        ({"cache_read_tokens": 1.5}, "cache_read_tokens"),
        ({"cache_write_tokens": True}, "cache_write_tokens"),
        ({"latency_ms": -5}, "latency_ms"),
        ({"occurred_at": "2026-11-23T15:39:27"}, "occurred_at"),
        ({"occurred_at": "2026-11-23T15:39:27+02:00"}, "occurred_at"),
        ({"occurred_at": "yesterday Z"}, "occurred_at"),
        ({"occurred_at": 1732376367}, "occurred_at"),
        ({"source": "cli"}, "source"),
        ({"outcome": "maybe"}, "outcome"),
        ({"region": "mars-1"}, "region"),
        ({"event_id": ""}, "event_id"),
        ({"surprise": 1}, "surprise"),
        ({"tags": {f"k{i}": "v" for i in range(17)}}, "tags"),
        ({"tags": {"costCenter": "x" * 257}}, "tags.costCenter"),
        ({"tags": {"costCenter": 5}}, "tags.costCenter"),
        ({"tags": {"bad key": "v"}}, "tags.bad key"),
        ({"tags": ["a"]}, "tags"),
    ],
)
def test_each_violation_names_its_field(overrides: dict[str, object], field: str) -> None:
    with pytest.raises(SchemaError) as info:
        decode_event(wire(**overrides))
    assert info.value.field == field


@pytest.mark.parametrize("data", [b"", b"not json", b"[1,2]", b"\xff\xfe", b"null"])
def test_garbage_is_a_schema_error(data: bytes) -> None:
    with pytest.raises(SchemaError) as info:
        decode_event(data)
    assert info.value.field == "event"


def test_oversized_record_is_rejected_before_parsing() -> None:
    with pytest.raises(SchemaError, match="limit"):
        decode_event(b" " * (MAX_EVENT_BYTES + 1))


def test_construction_validates_too() -> None:
    with pytest.raises(SchemaError) as info:
        make_event(occurred_at=datetime(2026, 1, 1))  # naive
    assert info.value.field == "occurred_at"
    with pytest.raises(SchemaError):
        replace(make_event(), input_tokens=-3)


@given(
    tokens=st.tuples(*[st.integers(0, 10_000_000)] * 4),
    latency=st.integers(0, 3_600_000),
    tags=st.dictionaries(
        st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,20}", fullmatch=True),
        st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), max_size=40).filter(str.isprintable),
        max_size=16,
    ),
)
def test_any_valid_event_round_trips(tokens: tuple[int, int, int, int], latency: int, tags: dict[str, str]) -> None:
    event = make_event(
        input_tokens=tokens[0],
        output_tokens=tokens[1],
        cache_read_tokens=tokens[2],
        cache_write_tokens=tokens[3],
        latency_ms=latency,
        tags=tags,
    )
    assert decode_event(encode_event(event)) == event
    # The SDK's faster encoder writes the same JSON value (escapes may differ; nothing else does).
    fast = encode_event(event, msgspec.json.encode)
    assert json.loads(fast) == json.loads(encode_event(event))
    assert decode_event(fast) == event


@given(
    st.datetimes(min_value=datetime(1000, 1, 2), max_value=datetime(9999, 12, 30)),
    st.integers(-14 * 60, 14 * 60),
)
def test_timestamps_are_utc_milliseconds_with_z(naive: datetime, offset_minutes: int) -> None:
    t = naive.replace(tzinfo=timezone(timedelta(minutes=offset_minutes)))
    utc = t.astimezone(UTC)
    expected = utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"  # the definition, slowly
    assert format_timestamp(t) == expected
