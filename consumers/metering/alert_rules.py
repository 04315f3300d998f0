"""Alert rules: from a tenant's window totals to findings (pure: no I/O, time passed in).

Three kinds of finding, each made once per level per period by an AlertMark the caller raises atomically:

- **quota**: for each of the tenant's quota rules, ``alert_level_for(used, limit, thresholds)``. The level's
  action (per tier) says which severity topics hear it, whether the tenant's contact topic does, whether the
  gateway switches to reserved admission (hard cost quotas), and whether a hard quota blocks. Soft quotas
  never block. Period: ``window_period_id`` (the calendar bucket; the hour for 1m/5m, the day for 60m).
- **spike**: the last 5 minutes' tokens (the sliding 5m window) are at least the tier's spike factor times
  the tenant's own baseline, the average 5 minutes of the previous UTC clock hour (its tokens / 12), and at
  least the tier's spike minimum (``shared.tenants.SpikeRule``; built-in tiers: 5x and 50,000 tokens). Steady
  growth moves the baseline with it and never fires; a sudden jump does. Once per tenant per clock hour.
- **projection**: for day and month quotas on tokens or cost, not yet exhausted: at the recent hourly rate
  (the previous clock hour plus the current one so far, over the time they span: 60 to 120 minutes) the
  quota runs out before the window resets. Once per tenant per quota per period.

Both read calendar hour buckets, not 60+ minute buckets, so evaluating every touched tenant after every batch
costs the store two small reads.

Spike and projection alerts use the topics (and tenant notification) of the tier's ``warning`` action.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Final

from shared.decisions import AlertLevel, BlockRecord, Metric, level_start
from shared.money import format_usd
from shared.ports import METRIC_READERS, AlertMark, AlertMessage, ReserveFlag, Totals, previous_name
from shared.tenants import QuotaRule, Tenant
from shared.windows import (
    HOUR,
    MINUTE_5,
    Granularity,
    Window,
    bucket_id,
    bucket_start,
    next_bucket_start,
    parse_bucket_id,
    window_period_id,
    window_reset,
)

PROJECTED_WINDOWS: Final = frozenset({"day", "month"})
_PREV_HOUR: Final = previous_name(HOUR)

_WINDOW_WORDS: Final = {
    "1m": "1-minute",
    "5m": "5-minute",
    "60m": "60-minute",
    "hour": "hourly",
    "day": "daily",
    "month": "monthly",
}
_METRIC_WORDS: Final = {Metric.COST: "cost", Metric.TOKENS: "token", Metric.REQUESTS: "request"}


@dataclass(frozen=True, slots=True)
class Finding:
    """Something to act on if its mark is newly raised: publish ``alert``; maybe write ``block`` / ``reserve``."""

    mark: AlertMark
    alert: AlertMessage | None
    block: BlockRecord | None = None
    reserve: ReserveFlag | None = None


def read_windows(tenant: Tenant) -> tuple[Window, ...]:
    """The windows the store must read back for this tenant after a batch."""
    windows: dict[str, Window] = {w.name: w for w in (MINUTE_5, HOUR)}
    for rule in tenant.quotas:
        windows[rule.window.name] = rule.window
    return tuple(windows.values())


# ... and the calendar windows it must read one period back.
READ_PREVIOUS: Final = (HOUR,)


def fmt_amount(metric: Metric, value: int) -> str:
    if metric is Metric.COST:
        return format_usd(value)
    unit = "tokens" if metric is Metric.TOKENS else "requests"
    return f"{value:,} {unit}"


def _percent(used: int, limit: int) -> str:
    if limit == 0:
        return "over 100%"
    return f"{(Decimal(used) * 100 / limit).quantize(Decimal(1), rounding=ROUND_HALF_UP)}%"


def _period_end(window: Window, now: datetime) -> datetime:
    period = window_period_id(window, now)
    if not window.sliding:
        return next_bucket_start(window.granularity, now)
    granularity = Granularity.DAY if len(period) == 8 else Granularity.HOUR
    return next_bucket_start(granularity, parse_bucket_id(granularity, period))


def _mark(tenant: Tenant, rule: str, period: str, level: int, ends: datetime) -> AlertMark:
    return AlertMark(tenant.tenant_id, rule, period, level, ends + timedelta(days=1))


def _message(
    tenant: Tenant,
    level: str,
    window: Window,
    metric: Metric,
    summary: str,
    action_level: AlertLevel,
    **detail: str | int,
) -> AlertMessage:
    action = tenant.tier.action_for(action_level)
    return AlertMessage(
        tenant_id=tenant.tenant_id,
        tier=tenant.tier.name,
        level=level,
        window=window.name,
        metric=metric.value,
        summary=summary,
        severities=action.topics,
        tenant_topic_arn=tenant.contact_topic_arn if action.notify_tenant else "",
        detail=dict(detail),
    )


class Clock:
    """Window periods, ends and resets at one instant. Every tenant of a batch is evaluated at the same ``now``,
    and this datetime arithmetic costs more than the rules themselves, so a batch works it out once (per window
    name: a str hashes once, a Window dataclass on every lookup)."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self.hour_elapsed = int((now - bucket_start(Granularity.HOUR, now)).total_seconds())
        self.hour_period = bucket_id(Granularity.HOUR, now)
        self.hour_end = next_bucket_start(Granularity.HOUR, now)
        self._periods: dict[str, str] = {}
        self._resets: dict[str, datetime] = {}
        self._ends: dict[str, datetime] = {}
        self._left: dict[str, float] = {}
        self._block_periods: dict[str, str] = {}

    def period(self, window: Window) -> str:
        found = self._periods.get(window.name)
        if found is None:
            found = self._periods[window.name] = window_period_id(window, self.now)
        return found

    def reset(self, window: Window) -> datetime:
        found = self._resets.get(window.name)
        if found is None:
            found = self._resets[window.name] = window_reset(window, self.now)
        return found

    def seconds_left(self, window: Window) -> float:
        """Seconds from now to the window's reset."""
        found = self._left.get(window.name)
        if found is None:
            found = self._left[window.name] = (self.reset(window) - self.now).total_seconds()
        return found

    def end(self, window: Window) -> datetime:
        """When the window's alert period ends (its marks may go a day after)."""
        found = self._ends.get(window.name)
        if found is None:
            found = self._ends[window.name] = _period_end(window, self.now)
        return found

    def block_period(self, window: Window) -> str:
        """The period of a block mark: the minute the window resets (see _quota_findings)."""
        found = self._block_periods.get(window.name)
        if found is None:
            found = self._block_periods[window.name] = bucket_id(Granularity.MINUTE, self.reset(window))
        return found


# Whether a mark (rule, period) is already stored at a level at least this high: its finding can be left out.
Known = Callable[[str, str, int], bool]


def _unknown(rule: str, period: str, level: int) -> bool:
    return False


@dataclass(frozen=True, slots=True)
class _Rule:
    """A quota rule with what ``evaluate`` needs of it worked out once per tenant: the level boundaries as
    integers (exactly ``alert_level_for``'s, see ``level_start``), the mark keys, and the tier's actions that
    matter before anything is built. Every tenant of every batch is evaluated, and most sit below the notice
    level or at a level already marked."""

    rule: QuotaRule
    value: Callable[[Totals], int]
    starts: tuple[tuple[int, AlertLevel], ...]  # (least usage at the level, level), highest level first
    quota_key: str
    reserve_key: str
    block_key: str
    projection_key: str
    blocks: bool  # exhausting it blocks: a hard rule of a tier whose exhausted action blocks
    reserve_from: AlertLevel | None  # a hard cost rule of a tier that reserves: from this level on
    projected: bool
    limit_at: int  # usage at the exhausted level


_LEVELS_DOWN: Final = (AlertLevel.EXHAUSTED, AlertLevel.CRITICAL, AlertLevel.WARNING, AlertLevel.NOTICE)


def _compile(tenant: Tenant, rule: QuotaRule) -> _Rule:
    tier, thresholds = tenant.tier, tenant.thresholds
    suffix = f"{rule.window.name}|{rule.metric.value}"
    return _Rule(
        rule=rule,
        value=METRIC_READERS[rule.metric],
        starts=tuple((level_start(rule.limit, thresholds, level), level) for level in _LEVELS_DOWN),
        quota_key=f"quota|{suffix}",
        reserve_key=f"reserve|{suffix}",
        block_key=f"block|{suffix}",
        projection_key=f"projection|{suffix}",
        blocks=rule.hard and tier.action_for(AlertLevel.EXHAUSTED).block,
        reserve_from=tier.reserve_from() if rule.hard and rule.metric is Metric.COST else None,
        projected=rule.window.name in PROJECTED_WINDOWS and rule.metric is not Metric.REQUESTS,
        limit_at=int(thresholds.exhausted * rule.limit),
    )


_PLANS: dict[int, tuple[Tenant, tuple[_Rule, ...]]] = {}


def _rules(tenant: Tenant) -> tuple[_Rule, ...]:
    """The tenant's compiled rules, remembered by identity (a Tenant is immutable; a reloaded registry makes
    new ones, which are compiled afresh)."""
    found = _PLANS.get(id(tenant))
    if found is None or found[0] is not tenant:
        if len(_PLANS) > 100_000:
            _PLANS.clear()
        found = _PLANS[id(tenant)] = (tenant, tuple(_compile(tenant, rule) for rule in tenant.quotas))
    return found[1]


def evaluate(
    tenant: Tenant,
    totals: Mapping[str, Totals],
    now: datetime,
    *,
    clock: Clock | None = None,
    known: Known = _unknown,
) -> list[Finding]:
    """Every finding for the tenant's totals at ``now``, except those ``known`` says are marked already."""
    if clock is None or clock.now != now:
        clock = Clock(now)
    findings: list[Finding] = []
    for r in _rules(tenant):
        total = totals.get(r.rule.window.name)
        if total is None:
            continue
        used = r.value(total)
        level = AlertLevel.OK
        for start, candidate in r.starts:
            if used >= start:
                level = candidate
                break
        if level is not AlertLevel.OK:
            findings += _quota_findings(tenant, r, used, level, clock, known)
        if r.projected:
            projection = _projection(tenant, r, used, totals, clock, known)
            if projection is not None:
                findings.append(projection)
    spike = _spike(tenant, totals, clock, known)
    if spike is not None:
        findings.append(spike)
    return findings


def _quota_findings(
    tenant: Tenant, r: _Rule, used: int, level: AlertLevel, clock: Clock, known: Known
) -> list[Finding]:
    rule = r.rule
    window, metric = rule.window, rule.metric
    period = clock.period(window)
    block_period = clock.block_period(window)
    blocking = level is AlertLevel.EXHAUSTED and r.blocks
    reserving = r.reserve_from is not None and level >= r.reserve_from
    if (
        known(r.quota_key, period, int(level))
        and (not reserving or known(r.reserve_key, period, int(level)))
        and (not blocking or known(r.block_key, block_period, 1))
    ):
        return []  # everything this would raise is marked already: skip building the messages
    reset = clock.reset(window)
    action = tenant.tier.action_for(level)
    name = f"{_WINDOW_WORDS.get(window.name, window.name)} {_METRIC_WORDS[metric]} quota"
    kind = "" if rule.hard else " (soft)"
    summary = (
        f"tenant {tenant.tenant_id} ({tenant.tier.name}) at {_percent(used, rule.limit)} of its {name}{kind}: "
        f"{fmt_amount(metric, used)} of {fmt_amount(metric, rule.limit)}"
    )
    block = None
    if blocking:
        block = BlockRecord(
            tenant.tenant_id,
            window.name,
            f"{name} exhausted: {fmt_amount(metric, used)} of {fmt_amount(metric, rule.limit)}",
            reset,
        )
        summary += f"; blocked until {reset:%Y-%m-%d %H:%M} UTC"
    severities = action.topics
    if blocking and "critical" not in severities:
        severities = (*severities, "critical")  # a cut-off always pages
    message = _message(
        tenant,
        level.label,
        window,
        metric,
        summary,
        level,
        used=used,
        limit=rule.limit,
        period=period,
        hard=int(rule.hard),
    )
    message = replace(message, severities=severities)
    findings = []
    if not known(r.quota_key, period, int(level)):
        findings.append(Finding(_mark(tenant, r.quota_key, period, int(level), clock.end(window)), message))
    if reserving and not known(r.reserve_key, period, int(level)):
        flag = ReserveFlag(tenant.tenant_id, window.name, level, rule.limit, reset)
        findings.append(Finding(_mark(tenant, r.reserve_key, period, int(level), reset), None, reserve=flag))
    if block is not None and not known(r.block_key, block_period, 1):
        # A block is written once per reset time: for a sliding window each new exhaustion after the previous
        # block lifted blocks again, while an operator's lift of a calendar block holds for the period.
        findings.append(Finding(_mark(tenant, r.block_key, block_period, 1, reset), None, block=block))
    return findings


def _projection(
    tenant: Tenant, r: _Rule, used: int, totals: Mapping[str, Totals], clock: Clock, known: Known
) -> Finding | None:
    """``used``: the rule's window's usage now."""
    prev, hour = totals.get(_PREV_HOUR), totals.get("hour")
    if prev is None or hour is None or used >= r.limit_at:
        return None
    hourly = (r.value(prev) + r.value(hour)) * 3600 // (3600 + clock.hour_elapsed)  # hourly_rate
    if hourly <= 0:
        return None
    # Integer arithmetic on the quantities; the time is the only float, and only for when, not how much.
    seconds_to_exhaust = (r.limit_at - used) * 3600 / hourly
    rule = r.rule
    window, metric = rule.window, rule.metric
    if seconds_to_exhaust >= clock.seconds_left(window):
        return None
    now = clock.now
    reset = clock.reset(window)
    period = clock.period(window)
    if known(r.projection_key, period, 1):
        return None
    when = now + timedelta(seconds=seconds_to_exhaust)
    name = f"{_WINDOW_WORDS.get(window.name, window.name)} {_METRIC_WORDS[metric]} quota"
    summary = (
        f"tenant {tenant.tenant_id} ({tenant.tier.name}) will exhaust its {name} around {when:%Y-%m-%d %H:%M} UTC, "
        f"before it resets at {reset:%Y-%m-%d %H:%M} UTC, at the recent rate of {fmt_amount(metric, hourly)}/h: "
        f"{fmt_amount(metric, used)} of {fmt_amount(metric, rule.limit)} used"
    )
    message = _message(
        tenant, "projection", window, metric, summary, AlertLevel.WARNING, used=used, limit=rule.limit, hourly=hourly
    )
    return Finding(_mark(tenant, r.projection_key, period, 1, reset), message)


def spike_baseline(totals: Mapping[str, Totals]) -> tuple[int, int] | None:
    """(tokens in the last 5 minutes, average tokens per 5 minutes over the previous clock hour)."""
    prev = _PREV_HOUR
    if "5m" not in totals or prev not in totals:
        return None
    return totals["5m"].tokens, totals[prev].tokens // 12


def _spike(tenant: Tenant, totals: Mapping[str, Totals], clock: Clock, known: Known) -> Finding | None:
    sample = spike_baseline(totals)
    if sample is None or not tenant.tier.spike.fires(*sample):
        return None
    if known("spike|tokens", clock.hour_period, 1):
        return None
    recent, baseline = sample
    ratio = f"{recent / baseline:.1f}x" if baseline else "from nothing"
    summary = (
        f"tenant {tenant.tenant_id} ({tenant.tier.name}) token spike: {recent:,} tokens in the last 5 minutes, "
        f"{ratio} its baseline of {baseline:,} per 5 minutes over the previous hour"
    )
    message = _message(
        tenant, "spike", MINUTE_5, Metric.TOKENS, summary, AlertLevel.WARNING, recent=recent, baseline=baseline
    )
    return Finding(_mark(tenant, "spike|tokens", clock.hour_period, 1, clock.hour_end), message)
