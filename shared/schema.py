"""UsageEvent schema v1: one event per model call, as producers emit it onto Kinesis.

Wire form is compact JSON (UTF-8, no spaces, optional fields omitted when empty). ``decode_event`` is
strict: every violation raises ``SchemaError`` naming the field, so the consumer can quarantine the record
with a precise reason instead of guessing.
"""

from __future__ import annotations

import json
import os
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from shared.errors import SchemaError

SCHEMA_VERSION: Final = 1

# Limits. A single model call above these is not usage, it is a bug or an attack.
MAX_TOKENS_PER_CALL: Final = 10_000_000
MAX_LATENCY_MS: Final = 3_600_000
MAX_TAGS: Final = 16
MAX_TAG_KEY_LEN: Final = 64
MAX_TAG_VALUE_LEN: Final = 256
MAX_EVENT_BYTES: Final = 8 * 1024
MAX_ID_LEN: Final = 128
MAX_MODEL_LEN: Final = 512

# Tenant ids end up inside Redis hash tags and DynamoDB keys: no braces, colons, '#' or spaces.
TENANT_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
EVENT_ID_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
TAG_KEY_RE: Final = re.compile(r"[A-Za-z][A-Za-z0-9_.:-]{0,63}")
REGION_RE: Final = re.compile(r"[a-z]{2}(-[a-z]+)+-\d")


class Source(StrEnum):
    GATEWAY = "gateway"
    SDK = "sdk"


class Outcome(StrEnum):
    SUCCESS = "success"
    MODEL_ERROR = "model_error"
    DENIED = "denied"
    THROTTLED = "throttled"


_SOURCES: Final = {s.value: s for s in Source}
_OUTCOMES: Final = {o.value: o for o in Outcome}


@dataclass(frozen=True, slots=True)
class UsageEvent:
    """One model call's usage. Token counts are what the model reported (or estimated, see ``estimated_by``)."""

    event_id: str
    occurred_at: datetime
    tenant_id: str
    source: Source
    model: str
    model_id: str
    region: str
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    latency_ms: int = 0
    outcome: Outcome = Outcome.SUCCESS
    request_id: str = ""
    tags: Mapping[str, str] = field(default_factory=dict)
    # Set when the backend reported no usage and the producer counted it itself: says how.
    estimated_by: str = ""
    # Set when the gateway admitted the call against a reservation the consumer must settle.
    reservation_id: str = ""
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        validate_event(self)

    @property
    def total_tokens(self) -> int:
        return self.input_tokens + self.output_tokens + self.cache_read_tokens + self.cache_write_tokens


class _EntropyPool:
    """``os.urandom`` bytes read 4 KiB at a time and handed out in slices: one system call per 256 ids instead
    of one per id (the call costs ~7 us in some sandboxes, and a gateway request makes two ids). Same bytes,
    same quality; thread-safe; emptied in a forked child, which must never repeat its parent's ids."""

    _CHUNK: Final = 4096

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buf = b""
        self._pos = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            if self._pos + n > len(self._buf):
                self._buf, self._pos = os.urandom(max(self._CHUNK, n)), 0
            out = self._buf[self._pos : self._pos + n]
            self._pos += n
            return out

    def reset(self) -> None:
        self._lock = threading.Lock()  # a lock held by another thread at fork time would never be released
        self._buf, self._pos = b"", 0


_ENTROPY: Final = _EntropyPool()
os.register_at_fork(after_in_child=_ENTROPY.reset)


def random_hex(nbytes: int = 16) -> str:
    """``2 * nbytes`` hex digits from the operating system's CSPRNG (what ``secrets.token_hex`` gives)."""
    return _ENTROPY.take(nbytes).hex()


def new_event_id() -> str:
    """A producer-side unique id (128 random bits as 32 hex digits): the consumer's dedupe key for producer
    retries."""
    return random_hex(16)


def format_timestamp(t: datetime) -> str:
    """UTC, millisecond precision (truncated), trailing Z: ``2026-11-23T15:39:27.123Z``."""
    utc = t if t.tzinfo is UTC else t.astimezone(UTC)
    # isoformat is twice as fast as strftime (this runs for every event a producer sends); it pads years below
    # 1000 to four digits as it should, where strftime's %Y does not.
    return utc.isoformat(timespec="milliseconds")[:23] + "Z"


def parse_timestamp(text: object, field_name: str = "occurred_at") -> datetime:
    """Parse an ISO-8601 UTC timestamp; anything not explicitly UTC is rejected."""
    if not isinstance(text, str):
        raise SchemaError(field_name, "must be an ISO-8601 UTC timestamp string")
    if not (text.endswith("Z") or text.endswith("+00:00")):
        raise SchemaError(field_name, f"must be UTC (end in 'Z' or '+00:00'), got {text[:40]!r}")
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise SchemaError(field_name, f"unparseable timestamp {text[:40]!r}") from None
    if parsed.utcoffset() != timedelta(0):
        raise SchemaError(field_name, "must be UTC")
    return parsed.astimezone(UTC)


def _check_str(
    value: object, name: str, *, max_len: int, pattern: re.Pattern[str] | None = None, required: bool = True
) -> str:
    if not isinstance(value, str):
        raise SchemaError(name, f"must be a string, got {type(value).__name__}")
    if not value:
        if required:
            raise SchemaError(name, "is required")
        return value
    if len(value) > max_len:
        raise SchemaError(name, f"longer than {max_len} characters")
    if pattern is not None and not pattern.fullmatch(value):
        raise SchemaError(name, f"invalid value {value[:40]!r}")
    return value


def _check_count(value: object, name: str, maximum: int) -> int:
    # bool is an int subclass; True tokens is a bug, not a count.
    if type(value) is not int:
        raise SchemaError(name, f"must be an integer, got {type(value).__name__}")
    if value < 0:
        raise SchemaError(name, f"must not be negative, got {value}")
    if value > maximum:
        raise SchemaError(name, f"absurd value {value} (limit {maximum})")
    return value


def validate_tags(tags: object, name: str = "tags") -> dict[str, str]:
    if not isinstance(tags, Mapping):
        raise SchemaError(name, "must be an object of string to string")
    if len(tags) > MAX_TAGS:
        raise SchemaError(name, f"at most {MAX_TAGS} tags, got {len(tags)}")
    for key, value in tags.items():
        if not isinstance(key, str) or not TAG_KEY_RE.fullmatch(key):
            raise SchemaError(f"{name}.{str(key)[:40]}", "tag key must match [A-Za-z][A-Za-z0-9_.:-]{0,63}")
        if not isinstance(value, str):
            raise SchemaError(f"{name}.{key}", "tag value must be a string")
        if len(value) > MAX_TAG_VALUE_LEN:
            raise SchemaError(f"{name}.{key}", f"tag value longer than {MAX_TAG_VALUE_LEN} characters")
        if not value.isprintable():
            raise SchemaError(f"{name}.{key}", "tag value has control characters")
    return dict(tags)


def validate_event(event: UsageEvent) -> None:
    if event.schema_version != SCHEMA_VERSION:
        raise SchemaError("schema_version", f"unsupported schema version {event.schema_version!r}")
    _check_str(event.event_id, "event_id", max_len=MAX_ID_LEN, pattern=EVENT_ID_RE)
    _check_str(event.tenant_id, "tenant_id", max_len=64, pattern=TENANT_ID_RE)
    if not isinstance(event.occurred_at, datetime) or event.occurred_at.utcoffset() != timedelta(0):
        raise SchemaError("occurred_at", "must be a timezone-aware UTC datetime")
    if not isinstance(event.source, Source):
        raise SchemaError("source", f"must be one of {sorted(_SOURCES)}")
    if not isinstance(event.outcome, Outcome):
        raise SchemaError("outcome", f"must be one of {sorted(_OUTCOMES)}")
    _check_str(event.model, "model", max_len=MAX_MODEL_LEN)
    _check_str(event.model_id, "model_id", max_len=MAX_MODEL_LEN)
    _check_str(event.region, "region", max_len=32, pattern=REGION_RE)
    _check_count(event.input_tokens, "input_tokens", MAX_TOKENS_PER_CALL)
    _check_count(event.output_tokens, "output_tokens", MAX_TOKENS_PER_CALL)
    _check_count(event.cache_read_tokens, "cache_read_tokens", MAX_TOKENS_PER_CALL)
    _check_count(event.cache_write_tokens, "cache_write_tokens", MAX_TOKENS_PER_CALL)
    _check_count(event.latency_ms, "latency_ms", MAX_LATENCY_MS)
    _check_str(event.request_id, "request_id", max_len=MAX_ID_LEN, required=False)
    _check_str(event.estimated_by, "estimated_by", max_len=MAX_ID_LEN, required=False)
    _check_str(event.reservation_id, "reservation_id", max_len=MAX_ID_LEN, pattern=EVENT_ID_RE, required=False)
    validate_tags(event.tags)


def event_to_dict(event: UsageEvent) -> dict[str, Any]:
    out: dict[str, Any] = {
        "v": event.schema_version,
        "event_id": event.event_id,
        "occurred_at": format_timestamp(event.occurred_at),
        "tenant_id": event.tenant_id,
        "source": event.source.value,
        "model": event.model,
        "model_id": event.model_id,
        "region": event.region,
        "input_tokens": event.input_tokens,
        "output_tokens": event.output_tokens,
        "cache_read_tokens": event.cache_read_tokens,
        "cache_write_tokens": event.cache_write_tokens,
        "latency_ms": event.latency_ms,
        "outcome": event.outcome.value,
    }
    if event.request_id:
        out["request_id"] = event.request_id
    if event.tags:
        out["tags"] = dict(event.tags)
    if event.estimated_by:
        out["estimated_by"] = event.estimated_by
    if event.reservation_id:
        out["reservation_id"] = event.reservation_id
    return out


def _stdlib_dumps(obj: dict[str, Any]) -> bytes:
    return _JSON_ENCODE(obj).encode()


_JSON_ENCODE: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def encode_event(event: UsageEvent, dumps: Callable[[dict[str, Any]], bytes] = _stdlib_dumps) -> bytes:
    """Compact JSON bytes of a (valid, since construction validated it) event. ``dumps`` turns the wire dict
    into UTF-8 JSON: the standard library's by default; a producer may pass a faster one (the SDK passes
    ``msgspec.json.encode``, ~10x faster; any encoder emitting compact, valid UTF-8 JSON is equivalent)."""
    data = dumps(event_to_dict(event))
    if len(data) > MAX_EVENT_BYTES:
        raise SchemaError("event", f"encoded event is {len(data)} bytes, limit {MAX_EVENT_BYTES}")
    return data


_REQUIRED: Final = ("event_id", "occurred_at", "tenant_id", "source", "model", "model_id", "region")
_COUNTS: Final = ("input_tokens", "output_tokens", "cache_read_tokens", "cache_write_tokens", "latency_ms")
_OPTIONAL_STR: Final = ("request_id", "estimated_by", "reservation_id")
_KNOWN: Final = frozenset(("v", "tags", "outcome", *_REQUIRED, *_COUNTS, *_OPTIONAL_STR))


def event_from_dict(obj: object) -> UsageEvent:
    if not isinstance(obj, dict):
        raise SchemaError("event", "must be a JSON object")
    version = obj.get("v")
    if version != SCHEMA_VERSION or type(version) is not int:
        raise SchemaError("schema_version", f"unsupported schema version {version!r}")
    unknown = obj.keys() - _KNOWN
    if unknown:
        raise SchemaError(sorted(unknown)[0], "unknown field in schema v1")
    for name in _REQUIRED:
        if name not in obj:
            raise SchemaError(name, "is required")
    source = _SOURCES.get(obj["source"]) if isinstance(obj["source"], str) else None
    if source is None:
        raise SchemaError("source", f"must be one of {sorted(_SOURCES)}")
    raw_outcome = obj.get("outcome", "success")
    outcome = _OUTCOMES.get(raw_outcome) if isinstance(raw_outcome, str) else None
    if outcome is None:
        raise SchemaError("outcome", f"must be one of {sorted(_OUTCOMES)}")
    return UsageEvent(
        event_id=obj["event_id"],
        occurred_at=parse_timestamp(obj["occurred_at"]),
        tenant_id=obj["tenant_id"],
        source=source,
        model=obj["model"],
        model_id=obj["model_id"],
        region=obj["region"],
        input_tokens=obj.get("input_tokens", 0),
        output_tokens=obj.get("output_tokens", 0),
        cache_read_tokens=obj.get("cache_read_tokens", 0),
        cache_write_tokens=obj.get("cache_write_tokens", 0),
        latency_ms=obj.get("latency_ms", 0),
        outcome=outcome,
        request_id=obj.get("request_id", ""),
        tags=validate_tags(obj.get("tags", {})),
        estimated_by=obj.get("estimated_by", ""),
        reservation_id=obj.get("reservation_id", ""),
    )


def decode_event(data: bytes | str) -> UsageEvent:
    """Strictly decode one event; raises SchemaError naming the field on any violation."""
    if len(data) > MAX_EVENT_BYTES:
        raise SchemaError("event", f"record is {len(data)} bytes, limit {MAX_EVENT_BYTES}")
    try:
        obj = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SchemaError("event", f"not valid JSON: {exc}") from None
    except RecursionError:  # a few KB of nested brackets: not an event, and must not crash the caller
        raise SchemaError("event", "not valid JSON: nested too deeply") from None
    return event_from_dict(obj)
