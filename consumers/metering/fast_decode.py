"""A fast path for the common case of ``shared.schema.decode_event``: same rules, checked mostly in C.

The strict decoder costs ~17 us per event, most of it building and re-validating a UsageEvent the consumer
only reads a few fields of. ``QuickDecoder.decode`` has msgspec parse the JSON straight into a Struct that
states the schema's types, ranges, lengths, enums and "no unknown fields" (~1 us for an event, against ~6 us
for ``json.loads`` alone here), then checks in Python only the patterns (tenant ids, regions and tag keys
repeat across a batch, so each distinct one is matched once) and the timestamp. It answers ``None`` whenever
anything is unusual, so the caller falls back to ``decode_event`` for the exact ``SchemaError`` naming the
field. It may therefore reject more than the strict decoder, never accept more: a differential property test
(tests/unit/consumer/test_fast_decode.py) holds it to that.

Where msgspec and ``json.loads`` differ, msgspec is the stricter one and so only sends records to the
fallback: it reads UTF-8 only (``json.loads`` also detects UTF-16/32), rejects lone surrogates, ``NaN`` and
``Infinity``, and validates every occurrence of a repeated key (both keep the last one).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated, Final, Literal, NamedTuple, Protocol

import msgspec

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
    TAG_KEY_RE,
    TENANT_ID_RE,
    Outcome,
)

_Count = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_PER_CALL)]
_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_ID_LEN)]
_Optional = Annotated[str, msgspec.Meta(max_length=MAX_ID_LEN)]
_Model = Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_MODEL_LEN)]
_TagValue = Annotated[str, msgspec.Meta(max_length=MAX_TAG_VALUE_LEN)]


class _WireEvent(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """UsageEvent v1 as JSON, with every rule of shared.schema that is not a pattern or the timestamp. (gc=False:
    it holds strings, ints and a dict of strings, so it can be in no reference cycle; untracked, it costs the
    garbage collector nothing.)"""

    v: Literal[1]  # an int equal to SCHEMA_VERSION (msgspec refuses true and 1.0)
    event_id: _Id
    occurred_at: str
    tenant_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    source: Literal["gateway", "sdk"]
    model: _Model
    model_id: _Model
    region: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]
    input_tokens: _Count = 0
    output_tokens: _Count = 0
    cache_read_tokens: _Count = 0
    cache_write_tokens: _Count = 0
    latency_ms: Annotated[int, msgspec.Meta(ge=0, le=MAX_LATENCY_MS)] = 0
    outcome: Literal["success", "model_error", "denied", "throttled"] = "success"
    request_id: _Optional = ""
    tags: Annotated[dict[str, _TagValue], msgspec.Meta(max_length=MAX_TAGS)] = {}
    estimated_by: _Optional = ""
    reservation_id: _Optional = ""


_DECODER: Final = msgspec.json.Decoder(_WireEvent)
# The outcomes that count as a request (a model call); a StrEnum Outcome matches its value here too.
COUNTED: Final = frozenset((Outcome.SUCCESS.value, Outcome.MODEL_ERROR.value))
_MEMO_LIMIT: Final = 50_000
_EVENT_ID_MATCH: Final = EVENT_ID_RE.fullmatch
_TAG_KEY_MATCH: Final = TAG_KEY_RE.fullmatch
_FROMISO: Final = datetime.fromisoformat


class EventFields(Protocol):
    """What the consumer reads of an event: a msgspec-decoded ``_WireEvent``, or a strictly decoded UsageEvent."""

    @property
    def event_id(self) -> str: ...
    @property
    def tenant_id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def model_id(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cache_read_tokens(self) -> int: ...
    @property
    def cache_write_tokens(self) -> int: ...
    @property
    def outcome(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def reservation_id(self) -> str: ...


class QuickEvent(NamedTuple):
    """The fields the consumer reads, from an event the strict decoder would accept too."""

    event_id: str
    occurred_at: datetime
    minute: int  # unix minute of occurred_at
    tenant_id: str
    model: str
    model_id: str
    region: str
    input_tokens: int
    output_tokens: int
    cache_read_tokens: int
    cache_write_tokens: int
    counted: bool  # a model call (success or model_error), so one request against quotas
    tags: dict[str, str]
    reservation_id: str

    @property
    def tokens(self) -> tuple[int, int, int, int]:
        return (self.input_tokens, self.output_tokens, self.cache_read_tokens, self.cache_write_tokens)


class QuickDecoder:
    def __init__(self) -> None:
        self._tenants: set[str] = set()
        self._regions: set[str] = set()
        self._tag_keys: set[str] = set()
        self._tag_values: set[str] = set()
        self._minutes: dict[str, int] = {}  # "YYYY-MM-DDTHH:MM" -> unix minute

    @staticmethod
    def _remember(memo: set[str], value: str) -> None:
        if len(memo) >= _MEMO_LIMIT:
            memo.clear()
        memo.add(value)

    def decode(self, data: bytes) -> QuickEvent | None:
        found = self.decode_fields(data)
        if found is None:
            return None
        ev, at, minute = found
        return QuickEvent(
            ev.event_id,
            at,
            minute,
            ev.tenant_id,
            ev.model,
            ev.model_id,
            ev.region,
            ev.input_tokens,
            ev.output_tokens,
            ev.cache_read_tokens,
            ev.cache_write_tokens,
            ev.outcome in COUNTED,
            dict(ev.tags),
            ev.reservation_id,
        )

    def decode_fields(self, data: bytes) -> tuple[EventFields, datetime, int] | None:
        """The validated event (read its fields as attributes), its time and its unix minute; None: not sure."""
        if len(data) > MAX_EVENT_BYTES:
            return None
        try:
            ev = _DECODER.decode(data)
        except (msgspec.DecodeError, UnicodeDecodeError):  # ValidationError is a DecodeError
            return None
        event_id = ev.event_id
        if not (event_id.isascii() and event_id.isalnum()) and not _EVENT_ID_MATCH(event_id):
            return None
        tenant_id = ev.tenant_id
        if tenant_id not in self._tenants:
            if not TENANT_ID_RE.fullmatch(tenant_id):
                return None
            self._remember(self._tenants, tenant_id)
        region = ev.region
        if region not in self._regions:
            if not REGION_RE.fullmatch(region):
                return None
            self._remember(self._regions, region)
        reservation = ev.reservation_id
        if reservation and not _EVENT_ID_MATCH(reservation):
            return None
        tags = ev.tags
        # Tag keys and values seen before pass in one set operation each; new ones are checked one by one.
        if tags and not (self._tag_keys.issuperset(tags) and self._tag_values.issuperset(tags.values())):
            keys, values = self._tag_keys, self._tag_values
            for key, value in tags.items():
                if key not in keys:
                    if not _TAG_KEY_MATCH(key):
                        return None
                    self._remember(keys, key)
                if value not in values:
                    if not value.isprintable():
                        return None
                    self._remember(values, value)
        occurred = ev.occurred_at
        if occurred[-1:] != "Z" and occurred[-6:] != "+00:00":
            return None
        try:
            at = _FROMISO(occurred)
        except ValueError:
            return None
        if at.tzinfo is not UTC:  # 'Z' and '+00:00' parse to the UTC singleton; anything else: the slow path
            return None
        # The unix minute, remembered per "YYYY-MM-DDTHH:MM" prefix (see _minute), inline: once per event. Only
        # prefixes _minute checked are remembered, so a hit needs no check again.
        minute = self._minutes.get(occurred[:16])
        if minute is None:
            minute = self._minute(occurred, at)
        return ev, at, minute

    def _minute(self, text: str, at: datetime) -> int:
        """The unix minute of a parsed UTC timestamp, remembered per "YYYY-MM-DDTHH:MM" prefix: with '-' at 4
        and 7 and ':' at 13, ``fromisoformat`` read an extended date and an extended hh:mm from exactly those
        characters (week and ordinal dates have no '-' at 7), so the prefix fixes the minute."""
        if text[4:5] != "-" or text[7:8] != "-" or text[13:14] != ":":
            return int(at.timestamp()) // 60
        prefix = text[:16]
        minute = self._minutes.get(prefix)
        if minute is None:
            if len(self._minutes) >= _MEMO_LIMIT:
                self._minutes.clear()
            minute = self._minutes[prefix] = int(at.timestamp()) // 60
        return minute
