"""The quota gate: before a model call, decide whether a tenant may make it, and near the limit reserve its
maximum cost atomically.

Async metering alone lets concurrent requests overshoot a budget: each checks a counter that the others have
not yet moved. So once a tenant is at or above the level its tier marks ``reserve`` (warning by default), every
request first reserves its *maximum* possible cost against what is left of each hard cost quota in one atomic
store operation (``QuotaState.reserve``); the metering consumer settles the reservation when the usage event
arrives, or it lapses after the TTL. A tenant is in reserve mode when the consumer set a reserve flag, or when
the gateway's own view of its cost windows already puts it at that level (so the gateway does not depend on the
consumer having caught up).

Blocks, reserve flags and window totals are cached per tenant for at most ``cache_ms`` (TM_QUOTA_CACHE_MS,
<= 1 s); reservations are never cached. If the store cannot be read the gate fails open (usage is still
metered and the consumer still cuts the tenant off); if a reservation cannot be taken it fails closed (503),
because the tenant is by then close to a hard limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from shared.decisions import Admission, AdmissionKind, Metric, alert_level_for, decide_admission
from shared.ports import QuotaState, QuotaStatus, Totals, UsageReader
from shared.pricing import PriceCatalog, TokenUsage
from shared.schema import new_event_id
from shared.tenants import QuotaRule, Tenant
from shared.windows import WINDOWS, Window, window_reset

logger = logging.getLogger(__name__)

# The input-size rule for a request's maximum cost, deliberately conservative: every token of a byte-level
# BPE (or SentencePiece with byte fallback) tokenizer covers at least one UTF-8 byte, so a prompt of N bytes
# is at most N tokens; the chat template adds role markers and special tokens, allowed for per message and
# per request. Real prompts use ~4 bytes per token, so this over-reserves input roughly 4x; the output side
# (max_tokens) is exact.
TEMPLATE_TOKENS_PER_MESSAGE: Final = 8
TEMPLATE_TOKENS_PER_REQUEST: Final = 64


def max_input_tokens(texts: Iterable[str], message_count: int) -> int:
    """An upper bound on the input tokens of a prompt (the rule above)."""
    size = sum(len(text.encode()) for text in texts)
    return size + TEMPLATE_TOKENS_PER_MESSAGE * message_count + TEMPLATE_TOKENS_PER_REQUEST


def max_cost_nanos(
    catalog: PriceCatalog,
    *,
    model_id: str,
    alias: str,
    input_tokens: int,
    max_output_tokens: int,
    region: str,
    at: datetime,
) -> int:
    """The most a request can cost: its input bound priced at the dearer of the input and cache-write rates
    (a backend may bill prompt tokens as cache writes), plus ``max_output_tokens`` of output."""
    as_input = TokenUsage(input_tokens=input_tokens, output_tokens=max_output_tokens)
    as_cache_write = TokenUsage(cache_write_tokens=input_tokens, output_tokens=max_output_tokens)
    return max(
        catalog.price_usage(usage, model_id, alias=alias, region=region, at=at).cost_nanos
        for usage in (as_input, as_cache_write)
    )


@dataclass(frozen=True, slots=True)
class QuotaView:
    """What the gate knows about a tenant at one moment: blocks, reserve flags and its cost-window totals."""

    status: QuotaStatus
    totals: dict[str, Totals]
    degraded: bool = False  # the store could not be read: the gate failed open


@dataclass(frozen=True, slots=True)
class Remaining:
    """What is left of the tenant's tightest cost quota (for response headers)."""

    window: str
    limit_nanos: int
    remaining_nanos: int  # may be negative: over the quota


@dataclass(frozen=True, slots=True)
class _ReserveTarget:
    window: Window
    limit_nanos: int
    used_nanos: int


@dataclass(frozen=True, slots=True)
class GateResult:
    admission: Admission
    reservation_id: str = ""
    reserved_windows: tuple[str, ...] = ()
    remaining: Remaining | None = None
    degraded: bool = False


class QuotaUnavailableError(Exception):
    """The store could not take a reservation; the request must not go ahead unreserved."""


@dataclass(frozen=True, slots=True)
class _CacheEntry:
    deadline: float  # monotonic seconds
    view: QuotaView


class QuotaGate:
    def __init__(
        self,
        quota_state: QuotaState,
        usage_reader: UsageReader,
        *,
        cache_ms: int = 1000,
        reservation_ttl: timedelta = timedelta(seconds=300),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 0 <= cache_ms <= 1000:
            raise ValueError("cache_ms must be within 0..1000 (blocks may be cached for at most one second)")
        self._quota_state = quota_state
        self._usage_reader = usage_reader
        self._cache_s = cache_ms / 1000
        self._ttl = reservation_ttl
        self._monotonic = monotonic
        self._cache: dict[str, _CacheEntry] = {}
        self._lock = threading.Lock()

    @staticmethod
    def cost_rules(tenant: Tenant) -> list[QuotaRule]:
        return [rule for rule in tenant.quotas if rule.metric is Metric.COST]

    def view(self, tenant: Tenant, now: datetime) -> QuotaView:
        """The tenant's quota view, from the cache if it is younger than ``cache_ms``."""
        tick = self._monotonic()
        entry = self._cache.get(tenant.tenant_id)
        if entry is not None and tick < entry.deadline:
            return entry.view
        view = self._fetch(tenant, now)
        if self._cache_s > 0:
            with self._lock:
                self._cache[tenant.tenant_id] = _CacheEntry(tick + self._cache_s, view)
        return view

    def invalidate(self, tenant_id: str) -> None:
        with self._lock:
            self._cache.pop(tenant_id, None)

    def _fetch(self, tenant: Tenant, now: datetime) -> QuotaView:
        windows = sorted({rule.window for rule in self.cost_rules(tenant)}, key=lambda w: w.name)
        try:
            status = self._quota_state.quota_status(tenant.tenant_id, now)
            totals = self._usage_reader.window_totals(tenant.tenant_id, windows, now) if windows else {}
        except Exception as exc:  # any adapter failure: fail open, loudly (see module docstring)
            logger.warning(
                "quota store unreadable, admitting without a quota check",
                extra={"tenant_id": tenant.tenant_id, "error": type(exc).__name__},
            )
            return QuotaView(QuotaStatus(), {}, degraded=True)
        return QuotaView(status, dict(totals))

    def remaining(self, tenant: Tenant, view: QuotaView) -> Remaining | None:
        best: Remaining | None = None
        for rule in self.cost_rules(tenant):
            used = view.totals.get(rule.window.name, Totals()).cost_nanos
            candidate = Remaining(rule.window.name, rule.limit, rule.limit - used)
            if best is None or candidate.remaining_nanos < best.remaining_nanos:
                best = candidate
        return best

    def _reserve_targets(self, tenant: Tenant, view: QuotaView, now: datetime) -> list[_ReserveTarget]:
        targets: dict[str, _ReserveTarget] = {}
        # 1. Reserve flags the consumer set.
        for flag in view.status.reserve:
            window = WINDOWS.get(flag.window)
            if window is None or flag.until <= now or flag.tenant_id != tenant.tenant_id:
                continue
            used = view.totals.get(window.name, Totals()).cost_nanos
            targets[window.name] = _ReserveTarget(window, flag.limit_nanos, used)
        # 2. The gateway's own view: a hard cost quota at or above the tier's reserve level.
        reserve_from = tenant.tier.reserve_from()
        if reserve_from is not None:
            for rule in self.cost_rules(tenant):
                if not rule.hard:
                    continue
                used = view.totals.get(rule.window.name, Totals()).cost_nanos
                if alert_level_for(used, rule.limit, tenant.thresholds).level >= reserve_from:
                    known = targets.get(rule.window.name)
                    if known is None or rule.limit < known.limit_nanos:
                        targets[rule.window.name] = _ReserveTarget(rule.window, rule.limit, used)
        return [targets[name] for name in sorted(targets)]

    def admit(self, tenant: Tenant, now: datetime, max_cost: int) -> GateResult:
        """Decide, and in reserve mode take the reservation. Raises QuotaUnavailableError if the store fails
        while reserving."""
        view = self.view(tenant, now)
        remaining = self.remaining(tenant, view)
        targets = self._reserve_targets(tenant, view, now)
        tightest = min(targets, key=lambda t: t.limit_nanos - t.used_nanos) if targets else None
        admission = decide_admission(
            now=now,
            blocks=list(view.status.blocks),
            reserve=tightest is not None,
            max_cost_nanos=max_cost,
            remaining_nanos=None if tightest is None else tightest.limit_nanos - tightest.used_nanos,
            remaining_until=None if tightest is None else window_reset(tightest.window, now),
        )
        if admission.kind is not AdmissionKind.RESERVE:
            return GateResult(admission, remaining=remaining, degraded=view.degraded)
        reservation_id = new_event_id()
        taken: list[str] = []
        for target in targets:
            try:
                ok = self._quota_state.reserve(
                    tenant.tenant_id,
                    reservation_id,
                    admission.reserve_nanos,
                    window=target.window,
                    limit_nanos=target.limit_nanos,
                    now=now,
                    ttl=self._ttl,
                )
            except Exception as exc:
                self._release(tenant.tenant_id, reservation_id, taken)
                raise QuotaUnavailableError(type(exc).__name__) from exc
            if not ok:
                self._release(tenant.tenant_id, reservation_id, taken)
                denied = Admission(
                    AdmissionKind.BLOCK,
                    f"quota nearly exhausted: no room to reserve this request's maximum cost in the "
                    f"{target.window.name} cost quota",
                    until=window_reset(target.window, now),
                )
                return GateResult(denied, remaining=remaining, degraded=view.degraded)
            taken.append(target.window.name)
        return GateResult(admission, reservation_id, tuple(taken), remaining, view.degraded)

    def _release(self, tenant_id: str, reservation_id: str, taken: list[str]) -> None:
        if not taken:
            return
        try:
            self._quota_state.settle(tenant_id, [reservation_id])
        except Exception as exc:  # it lapses after the TTL anyway
            logger.warning(
                "could not release a partial reservation",
                extra={"tenant_id": tenant_id, "reservation_id": reservation_id, "error": type(exc).__name__},
            )
