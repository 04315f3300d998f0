"""The fast decoder never accepts what the strict decoder rejects, and reads the same values when it accepts."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.metering.fast_decode import QuickDecoder
from shared.errors import SchemaError
from shared.schema import decode_event, event_to_dict
from tests.unit.consumer.kinesis import usage

BASE = event_to_dict(usage("acme", reservation_id="r-1"))
FIELDS = [*sorted(BASE), "tags", "request_id", "estimated_by", "extra"]
ODD_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False),
    st.text(max_size=70),
    st.sampled_from(
        [
            "",
            "2026-11-23T15:30:20.123Z",
            "2026-11-23T15:30:20+00:00",
            "2026-11-23T15:30:20+01:00",
            "2026-11-23T15:30:20",
            "us-east-1",
            "gateway",
            "sdk",
            "denied",
            "success",
            "a" * 129,
            "x" * 600,
            "ok{id}",
        ]
    ),
    st.dictionaries(st.text(max_size=8), st.one_of(st.text(max_size=5), st.integers()), max_size=3),
    st.lists(st.integers(), max_size=2),
)


def strict(data: bytes) -> Any:
    try:
        return decode_event(data)
    except SchemaError:
        return None


@settings(max_examples=600, deadline=None)
@given(st.dictionaries(st.sampled_from(FIELDS), ODD_VALUES, max_size=3), st.sets(st.sampled_from(FIELDS), max_size=2))
def test_quick_decode_agrees_with_decode_event(changes: dict[str, Any], removed: set[str]) -> None:
    doc = {k: v for k, v in {**BASE, **changes}.items() if k not in removed}
    data = json.dumps(doc).encode()
    quick = QuickDecoder().decode(data)
    event = strict(data)
    if quick is None:
        return  # the caller falls back to decode_event: whatever it says stands
    assert event is not None, f"quick accepted what decode_event rejects: {doc}"
    assert (quick.event_id, quick.occurred_at, quick.tenant_id, quick.model, quick.model_id, quick.region) == (
        event.event_id,
        event.occurred_at,
        event.tenant_id,
        event.model,
        event.model_id,
        event.region,
    )
    assert quick.tokens == (event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens)
    assert quick.tags == dict(event.tags) and quick.reservation_id == event.reservation_id
    assert quick.counted == (event.outcome.value in ("success", "model_error"))
    assert quick.minute == int(event.occurred_at.timestamp()) // 60


def test_quick_decode_takes_the_common_event() -> None:
    decoder = QuickDecoder()
    assert decoder.decode(json.dumps(BASE).encode()) is not None
    assert decoder.decode(b"{") is None


def test_quick_decode_turns_down_containers_where_strings_belong() -> None:
    # Lists and objects are unhashable: the memo lookups must not be reached with them.
    decoder = QuickDecoder()
    containers: tuple[object, ...] = ([], {}, ["gateway"])
    for name in ("source", "outcome", "tenant_id", "model", "region", "event_id"):
        for value in containers:
            assert decoder.decode(json.dumps({**BASE, name: value}).encode()) is None, (name, value)
    assert decoder.decode(json.dumps({**BASE, "tags": {"costCenter": ["cc"]}}).encode()) is None
    assert decoder.decode(json.dumps({**BASE, "tags": {"costCenter": {"a": 1}}}).encode()) is None


def test_quick_decode_sends_what_msgspec_reads_differently_to_the_strict_decoder() -> None:
    # UTF-16 (json.loads detects it), invalid UTF-8, lone surrogates, a repeated key whose first value is bad.
    decoder = QuickDecoder()
    assert decoder.decode(json.dumps(BASE).encode("utf-16")) is None
    assert decoder.decode(json.dumps(BASE).encode()[:-1] + b',"request_id":"\xff"}') is None
    assert decoder.decode(json.dumps({**BASE, "request_id": "\ud800"}).encode()) is None
    repeated = json.dumps(BASE).encode()[:-1] + b',"input_tokens":-1,"input_tokens":5}'
    assert decoder.decode(repeated) is None and strict(repeated) is not None


def test_a_repeated_key_reads_its_last_value_like_json_loads() -> None:
    data = json.dumps(BASE).encode()[:-1] + b',"input_tokens":5,"input_tokens":7}'
    quick = QuickDecoder().decode(data)
    assert quick is not None and quick.input_tokens == 7 == decode_event(data).input_tokens


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-23T15:30:20.123Z",
        "2026-11-23T15:30Z",
        "2026-11-23T15:30:20+00:00",
        "2026-11-23T15:30.5Z",
        "2026-11-23 15:30:59.999999Z",
        "20261123T153020Z",
        "2026-11-23T1530Z",
        "2026-11-23T15Z",
        "1969-12-31T23:59:30Z",
    ],
)
def test_the_remembered_minute_is_the_timestamps_minute(text: str) -> None:
    decoder = QuickDecoder()
    for _ in range(2):  # the second time from the memo
        quick = decoder.decode(json.dumps({**BASE, "occurred_at": text}).encode())
        assert quick is not None
        assert (
            quick.minute == int(decode_event(json.dumps({**BASE, "occurred_at": text})).occurred_at.timestamp()) // 60
        )


def test_quick_decode_remembers_only_what_it_validated() -> None:
    # GIVEN a decoder that has accepted a tag value, a tenant and a model
    decoder = QuickDecoder()
    assert decoder.decode(json.dumps(BASE).encode()) is not None
    # WHEN the same strings come back in a position with other rules, or near-misses arrive
    # THEN each is checked on its own terms
    bad_tenant = {**BASE, "tenant_id": "acme}"}
    assert decoder.decode(json.dumps(bad_tenant).encode()) is None and strict(json.dumps(bad_tenant).encode()) is None
    as_tag_key = {**BASE, "tags": {BASE["tenant_id"]: "x", "1bad": "y"}}
    assert decoder.decode(json.dumps(as_tag_key).encode()) is None
    control = {**BASE, "tags": {"costCenter": "cc\n"}}
    assert decoder.decode(json.dumps(control).encode()) is None and strict(json.dumps(control).encode()) is None
