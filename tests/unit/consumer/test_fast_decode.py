"""The fast decoder never accepts what the strict decoder rejects, and reads the same values when it accepts."""

from __future__ import annotations

import json
from typing import Any

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


def test_quick_decode_takes_the_common_event() -> None:
    decoder = QuickDecoder()
    assert decoder.decode(json.dumps(BASE).encode()) is not None
    assert decoder.decode(b"{") is None
