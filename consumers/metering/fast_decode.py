"""A fast path for the common case of ``shared.schema.decode_event``: same rules, fewer allocations.

The strict decoder costs ~17 us per event, most of it building and re-validating a UsageEvent the consumer
only reads a few fields of. ``quick_decode`` applies the same checks to the parsed JSON directly, remembering
strings it has already validated (tenant ids, models, regions, tag keys repeat across a batch), and answers
``None`` whenever anything is unusual, so the caller falls back to ``decode_event`` for the exact
``SchemaError``. It may therefore reject more than the strict decoder, never accept more: a differential
property test (tests/unit/consumer/test_fast_decode.py) holds it to that.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from shared.schema import (
    EVENT_ID_RE,
    MAX_EVENT_BYTES,
    MAX_ID_LEN,
    MAX_LATENCY_MS,
    MAX_MODEL_LEN,
    MAX_TAG_VALUE_LEN,
    MAX_TAGS,
    MAX_TOKENS_PER_CALL,
    REGION_RE,
    SCHEMA_VERSION,
    TAG_KEY_RE,
    TENANT_ID_RE,
    Outcome,
    Source,
)

_ALLOWED: Final = frozenset(
    (
        "v",
        "tags",
        "outcome",
        "event_id",
        "occurred_at",
        "tenant_id",
        "source",
        "model",
        "model_id",
        "region",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "latency_ms",
        "request_id",
        "estimated_by",
        "reservation_id",
    )
)
_SOURCES: Final = frozenset(s.value for s in Source)
_OUTCOMES: Final = frozenset(o.value for o in Outcome)
_COUNTED: Final = frozenset((Outcome.SUCCESS.value, Outcome.MODEL_ERROR.value))
_ZERO: Final = timedelta(0)
_MEMO_LIMIT: Final = 50_000


@dataclass(frozen=True, slots=True)
class QuickEvent:
    event_id: str
    occurred_at: datetime
    tenant_id: str
    model: str
    model_id: str
    region: str
    tokens: tuple[int, int, int, int]
    counted: bool
    tags: dict[str, str]
    reservation_id: str


class QuickDecoder:
    def __init__(self) -> None:
        self._tenants: set[str] = set()
        self._models: set[str] = set()
        self._regions: set[str] = set()
        self._tag_keys: set[str] = set()

    def _remember(self, memo: set[str], value: str) -> None:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo.add(value)

    def decode(self, data: bytes) -> QuickEvent | None:
        if len(data) > MAX_EVENT_BYTES:
            return None
        try:
            obj = json.loads(data)
        except (ValueError, UnicodeDecodeError):
            return None
        if type(obj) is not dict:
            return None
        v = obj.get("v")
        if type(v) is not int or v != SCHEMA_VERSION or not obj.keys() <= _ALLOWED:
            return None
        get = obj.get
        event_id = get("event_id")
        tenant_id = get("tenant_id")
        model = get("model")
        model_id = get("model_id")
        region = get("region")
        occurred = get("occurred_at")
        source = get("source")
        outcome = get("outcome", "success")
        if (
            type(event_id) is not str
            or type(tenant_id) is not str
            or type(model) is not str
            or type(model_id) is not str
            or type(region) is not str
            or type(occurred) is not str
            or type(source) is not str
            or type(outcome) is not str
            or source not in _SOURCES
            or outcome not in _OUTCOMES
        ):
            return None
        if not 0 < len(event_id) <= MAX_ID_LEN or not EVENT_ID_RE.fullmatch(event_id):
            return None
        if tenant_id not in self._tenants:
            if not 0 < len(tenant_id) <= 64 or not TENANT_ID_RE.fullmatch(tenant_id):
                return None
            self._remember(self._tenants, tenant_id)
        for text in (model, model_id):
            if text not in self._models:
                if not 0 < len(text) <= MAX_MODEL_LEN:
                    return None
                self._remember(self._models, text)
        if region not in self._regions:
            if not 0 < len(region) <= 32 or not REGION_RE.fullmatch(region):
                return None
            self._remember(self._regions, region)
        if not (occurred.endswith("Z") or occurred.endswith("+00:00")):
            return None
        try:
            at = datetime.fromisoformat(occurred)
        except ValueError:
            return None
        if at.utcoffset() != _ZERO:
            return None
        at = at.astimezone(UTC)
        counts = []
        for name in ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens"):
            value = get(name, 0)
            if type(value) is not int or not 0 <= value <= MAX_TOKENS_PER_CALL:
                return None
            counts.append(value)
        latency = get("latency_ms", 0)
        if type(latency) is not int or not 0 <= latency <= MAX_LATENCY_MS:
            return None
        for name in ("request_id", "estimated_by"):
            value = get(name, "")
            if type(value) is not str or len(value) > MAX_ID_LEN:
                return None
        reservation = get("reservation_id", "")
        if type(reservation) is not str:
            return None
        if reservation and (len(reservation) > MAX_ID_LEN or not EVENT_ID_RE.fullmatch(reservation)):
            return None
        tags = get("tags", {})
        if type(tags) is not dict or len(tags) > MAX_TAGS:
            return None
        for key, value in tags.items():
            if key not in self._tag_keys:
                if not TAG_KEY_RE.fullmatch(key):
                    return None
                self._remember(self._tag_keys, key)
            if type(value) is not str or len(value) > MAX_TAG_VALUE_LEN or not value.isprintable():
                return None
        return QuickEvent(
            event_id,
            at,
            tenant_id,
            model,
            model_id,
            region,
            (counts[0], counts[1], counts[2], counts[3]),
            outcome in _COUNTED,
            tags,
            reservation,
        )
