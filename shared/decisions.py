"""Pure decisions: the alert level of a usage against its quota, and whether to admit a request.

Both return values with a human reason; neither raises for "over quota" (that is an answer, not an error).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum, StrEnum

from shared.errors import ConfigError


class AlertLevel(IntEnum):
    """Ordered: a higher level is worse. EXHAUSTED means the quota is used up."""

    OK = 0
    NOTICE = 1
    WARNING = 2
    CRITICAL = 3
    EXHAUSTED = 4

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, text: str) -> AlertLevel:
        try:
            return cls[text.upper()]
        except KeyError:
            raise ValueError(f"unknown alert level {text!r}; known: {', '.join(m.label for m in cls)}") from None


class Metric(StrEnum):
    TOKENS = "tokens"  # input + output + cache read + cache write
    COST = "cost_usd"  # stored and compared in nano-dollars
    REQUESTS = "requests"


@dataclass(frozen=True, slots=True)
class Thresholds:
    """Fractions of a quota at which each level starts. notice < warning < critical in (0, 1];
    exhausted >= 1 (1.0 = at the quota; an enterprise tier may set 1.10 to tolerate 10% overage)."""

    notice: Decimal = Decimal("0.50")
    warning: Decimal = Decimal("0.80")
    critical: Decimal = Decimal("0.95")
    exhausted: Decimal = Decimal("1.00")

    def __post_init__(self) -> None:
        for name in ("notice", "warning", "critical", "exhausted"):
            if not isinstance(getattr(self, name), Decimal):
                raise ConfigError('must be a decimal string such as "0.8"', field=f"thresholds.{name}")
        if not (0 < self.notice < self.warning < self.critical <= 1):
            raise ConfigError(
                f"must ascend within (0, 1]: notice {self.notice} < warning {self.warning} < "
                f"critical {self.critical} <= 1",
                field="thresholds",
            )
        if self.exhausted < 1:
            raise ConfigError(f"exhausted must be >= 1, got {self.exhausted}", field="thresholds.exhausted")

    def start_of(self, level: AlertLevel) -> Decimal:
        return {
            AlertLevel.OK: Decimal(0),
            AlertLevel.NOTICE: self.notice,
            AlertLevel.WARNING: self.warning,
            AlertLevel.CRITICAL: self.critical,
            AlertLevel.EXHAUSTED: self.exhausted,
        }[level]


@dataclass(frozen=True, slots=True)
class LevelDecision:
    level: AlertLevel
    used: int
    limit: int
    reason: str

    @property
    def fraction(self) -> Decimal:
        return Decimal(self.used) / Decimal(self.limit) if self.limit else Decimal(0)


def alert_level_for(used: int, limit: int, thresholds: Thresholds) -> LevelDecision:
    """The level of ``used`` against ``limit`` (both integers of the same unit). Monotonic: never lower for a
    larger ``used``. A limit of 0 means 'nothing allowed': any use is EXHAUSTED."""
    if used < 0 or limit < 0:
        raise ValueError("usage and limit must be non-negative")
    if limit == 0:
        level = AlertLevel.EXHAUSTED if used > 0 else AlertLevel.OK
        return LevelDecision(level, used, limit, "quota is zero")
    level = AlertLevel.OK
    # Compare exactly with integer cross-multiplication: used / limit >= fraction.
    for candidate in (AlertLevel.EXHAUSTED, AlertLevel.CRITICAL, AlertLevel.WARNING, AlertLevel.NOTICE):
        if Decimal(used) >= thresholds.start_of(candidate) * limit:
            level = candidate
            break
    pct = (Decimal(used) * 100 / limit).quantize(Decimal(1))
    reason = (
        f"at {pct}% of quota"
        if level is AlertLevel.OK
        else f"at {pct}% of quota, {level.label} from {(thresholds.start_of(level) * 100).normalize():f}%"
    )
    return LevelDecision(level, used, limit, reason)


def level_start(limit: int, thresholds: Thresholds, level: AlertLevel) -> int:
    """The least ``used`` whose ``alert_level_for(used, limit, thresholds)`` is at least ``level``: exact
    integer arithmetic, so a hot path can compare one integer instead of working out the level."""
    if level is AlertLevel.OK:
        return 0
    if limit == 0:
        return 1
    num, den = thresholds.start_of(level).as_integer_ratio()
    return -(-num * limit // den)  # ceil(fraction * limit)


class AdmissionKind(StrEnum):
    ALLOW = "allow"
    RESERVE = "reserve"  # admit only against an atomic reservation of the request's maximum cost
    BLOCK = "block"


@dataclass(frozen=True, slots=True)
class Admission:
    kind: AdmissionKind
    reason: str
    until: datetime | None = None  # BLOCK: when to try again
    reserve_nanos: int = 0  # RESERVE: how much to reserve

    def retry_after_seconds(self, now: datetime) -> int:
        if self.until is None:
            return 0
        return max(1, int((self.until - now).total_seconds() + 0.999))


@dataclass(frozen=True, slots=True)
class BlockRecord:
    """A tenant cut off until ``until`` (the window reset), written by the consumer or an operator."""

    tenant_id: str
    window: str
    reason: str
    until: datetime
    set_by: str = "consumer"

    def active(self, now: datetime) -> bool:
        return now < self.until


def decide_admission(
    *,
    now: datetime,
    blocks: list[BlockRecord],
    reserve: bool,
    max_cost_nanos: int,
    remaining_nanos: int | None,
    remaining_until: datetime | None = None,
) -> Admission:
    """Whether to admit a request, given the tenant's block records, whether its current alert level asks for
    reserved admission, the request's maximum cost, and what is left of its tightest hard cost quota.

    - An active block denies until the latest block's end.
    - In reserved admission, a request whose maximum cost exceeds what is left is denied until the quota
      window resets; otherwise it is admitted against a reservation of its maximum cost.
    - Else the request is allowed (metering after the fact).
    """
    active = [b for b in blocks if b.active(now)]
    if active:
        last = max(active, key=lambda b: b.until)
        return Admission(AdmissionKind.BLOCK, f"blocked: {last.reason}", until=last.until)
    if reserve and remaining_nanos is not None:
        if max_cost_nanos > remaining_nanos:
            return Admission(
                AdmissionKind.BLOCK,
                "quota nearly exhausted: this request's maximum cost exceeds what is left",
                until=remaining_until,
            )
        return Admission(
            AdmissionKind.RESERVE, "near quota: admitted against a reservation", reserve_nanos=max_cost_nanos
        )
    return Admission(AdmissionKind.ALLOW, "within quota")
