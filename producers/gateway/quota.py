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
<= 1 s), with what follows from them (reserve mode, what is left) worked out once per read; a long-running
server refreshes them in the background before they age out. Reservations are never cached.

Metering lags the requests it meters (producer linger, the mapping's batching window, the consumer): a tenant
spending its last 20% faster than that lag could cross its quota before either view shows it at the reserve
level (measured by bench/enforcement.py: from under 80% to over 100% within one consumer batch). So the gate
also counts what this instance admitted without a reservation during the last ``unmetered_window_s`` (3 s by
default, above the shipped settings' ~1.6 s metering lag): that spend is added to the metered totals when
deciding reserve mode, and taken off the limit a reservation is checked against. This over-counts requests
already metered, which only makes the gate stricter, and only for tenants spending a noticeable share of
their quota within a few seconds.

If the store cannot be read the gate fails open (usage is still metered and the consumer still cuts the tenant
off); if a reservation cannot be taken it fails closed (503), because the tenant is by then close to a hard
limit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from shared.decisions import Admission, AdmissionKind, Metric, decide_admission, level_start
from shared.ports import QuotaState, QuotaStatus, Totals, UsageReader
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
class QuotaView:
    """What the gate knows about a tenant at one moment: blocks, reserve flags and its cost-window totals, and
    what follows from them (worked out once per fetch, not per request)."""

    status: QuotaStatus
    totals: dict[str, Totals]
    degraded: bool = False  # the store could not be read: the gate failed open
    targets: tuple[_ReserveTarget, ...] = ()  # cost windows to reserve against; empty: not in reserve mode
    remaining: Remaining | None = None
    # How much cost admitted unreserved (and not yet metered) would bring a hard cost quota to the tier's
    # reserve level; None: nothing would (no hard cost quota, or the tier never reserves).
    reserve_headroom: int | None = None


@dataclass(frozen=True, slots=True)
class GateResult:
    admission: Admission
    reservation_id: str = ""
    reserved_windows: tuple[str, ...] = ()
    remaining: Remaining | None = None
    degraded: bool = False


_ALLOW: Final = Admission(AdmissionKind.ALLOW, "within quota")


class QuotaUnavailableError(Exception):
    """The store could not take a reservation; the request must not go ahead unreserved."""


@dataclass(frozen=True, slots=True)
class _CacheEntry:
    deadline: float  # monotonic seconds: read no later than cache_ms before this, never used after it
    refresh_at: float  # from here on, the next request starts a refresh in the background
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
        clock: Callable[[], datetime] | None = None,
        refresh_ahead: bool = False,
        unmetered_window_s: float = 3.0,
    ) -> None:
        if not 0 <= cache_ms <= 1000:
            raise ValueError("cache_ms must be within 0..1000 (blocks may be cached for at most one second)")
        self._quota_state = quota_state
        self._usage_reader = usage_reader
        self._cache_s = cache_ms / 1000
        self._ttl = reservation_ttl
        self._monotonic = monotonic
        self._clock = clock
        # Refresh-ahead (long-running servers): once an entry is half its age limit old, one background refresh
        # replaces it, so requests rarely wait for the store. The age limit still holds: an entry is stamped
        # with the time its read *started*, and is never used past cache_ms from then.
        self._refresh_ahead = refresh_ahead and clock is not None and cache_ms > 0
        self._cache: dict[str, _CacheEntry] = {}
        self._lock = threading.Lock()
        self._refreshing: set[str] = set()
        self._executor: ThreadPoolExecutor | None = None
        # Per tenant: (monotonic time, max cost) of requests admitted here without a reservation, newest last.
        self._unmetered_window_s = unmetered_window_s
        self._unmetered: dict[str, deque[tuple[float, int]]] = {}
        self._unmetered_sum: dict[str, int] = {}

    def unmetered(self, tenant_id: str) -> int:
        """Maximum cost admitted here without a reservation within the unmetered window (nano-dollars)."""
        horizon = self._monotonic() - self._unmetered_window_s
        with self._lock:
            recent = self._unmetered.get(tenant_id)
            if not recent:
                return 0
            total = self._unmetered_sum[tenant_id]
            while recent and recent[0][0] < horizon:
                total -= recent.popleft()[1]
            self._unmetered_sum[tenant_id] = total
            return total

    def _note_unmetered(self, tenant_id: str, cost: int) -> None:
        with self._lock:
            self._unmetered.setdefault(tenant_id, deque()).append((self._monotonic(), cost))
            self._unmetered_sum[tenant_id] = self._unmetered_sum.get(tenant_id, 0) + cost

    @staticmethod
    def cost_rules(tenant: Tenant) -> list[QuotaRule]:
        return [rule for rule in tenant.quotas if rule.metric is Metric.COST]

    def view(self, tenant: Tenant, now: datetime) -> QuotaView:
        """The tenant's quota view, from the cache if it was read less than ``cache_ms`` ago."""
        tick = self._monotonic()
        entry = self._cache.get(tenant.tenant_id)
        if entry is not None and tick < entry.deadline:
            if self._refresh_ahead and tick >= entry.refresh_at:
                self._refresh_in_background(tenant)
            return entry.view
        view = self._fetch(tenant, now)
        self._store(tenant.tenant_id, tick, view)
        return view

    def _store(self, tenant_id: str, started: float, view: QuotaView) -> None:
        if self._cache_s > 0:
            entry = _CacheEntry(started + self._cache_s, started + self._cache_s / 2, view)
            with self._lock:
                self._cache[tenant_id] = entry

    def _refresh_in_background(self, tenant: Tenant) -> None:
        with self._lock:
            if tenant.tenant_id in self._refreshing:
                return
            self._refreshing.add(tenant.tenant_id)
            if self._executor is None:
                self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="quota-refresh")
            executor = self._executor
        executor.submit(self._refresh, tenant)

    def _refresh(self, tenant: Tenant) -> None:
        try:
            started = self._monotonic()
            assert self._clock is not None  # refresh-ahead is on only with a clock
            view = self._fetch(tenant, self._clock())
            if not view.degraded:  # a failed read leaves the entry to age out; the next request reads again
                self._store(tenant.tenant_id, started, view)
        finally:
            with self._lock:
                self._refreshing.discard(tenant.tenant_id)

    def wait_for_refreshes(self) -> None:
        """Block until background refreshes started so far have finished (tests, shutdown)."""
        with self._lock:
            executor = self._executor
        if executor is not None:
            executor.submit(lambda: None).result()

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
        view = QuotaView(status, dict(totals))
        return QuotaView(
            status,
            view.totals,
            targets=tuple(self._reserve_targets(tenant, view, now)),
            remaining=self.remaining(tenant, view),
            reserve_headroom=self._reserve_headroom(tenant, view),
        )

    def _reserve_headroom(self, tenant: Tenant, view: QuotaView) -> int | None:
        """QuotaView.reserve_headroom: the same test as step 2 of ``_reserve_targets``, solved for the unmetered
        amount once per fetch instead of per request."""
        reserve_from = tenant.tier.reserve_from()
        if reserve_from is None:
            return None
        room = [
            level_start(rule.limit, tenant.thresholds, reserve_from)
            - view.totals.get(rule.window.name, Totals()).cost_nanos
            for rule in self.cost_rules(tenant)
            if rule.hard
        ]
        return min(room) if room else None

    def remaining(self, tenant: Tenant, view: QuotaView) -> Remaining | None:
        best: Remaining | None = None
        for rule in self.cost_rules(tenant):
            used = view.totals.get(rule.window.name, Totals()).cost_nanos
            candidate = Remaining(rule.window.name, rule.limit, rule.limit - used)
            if best is None or candidate.remaining_nanos < best.remaining_nanos:
                best = candidate
        return best

    def _reserve_targets(
        self, tenant: Tenant, view: QuotaView, now: datetime, unmetered: int = 0
    ) -> list[_ReserveTarget]:
        targets: dict[str, _ReserveTarget] = {}
        # 1. Reserve flags the consumer set.
        for flag in view.status.reserve:
            window = WINDOWS.get(flag.window)
            if window is None or flag.until <= now or flag.tenant_id != tenant.tenant_id:
                continue
            used = view.totals.get(window.name, Totals()).cost_nanos
            targets[window.name] = _ReserveTarget(window, flag.limit_nanos, used)
        # 2. The gateway's own view (with what it admitted but metering has not yet counted): a hard cost quota
        # at or above the tier's reserve level.
        reserve_from = tenant.tier.reserve_from()
        if reserve_from is not None:
            for rule in self.cost_rules(tenant):
                if not rule.hard:
                    continue
                used = view.totals.get(rule.window.name, Totals()).cost_nanos
                if used + unmetered >= level_start(rule.limit, tenant.thresholds, reserve_from):
                    known = targets.get(rule.window.name)
                    if known is None or rule.limit < known.limit_nanos:
                        targets[rule.window.name] = _ReserveTarget(rule.window, rule.limit, used)
        return [targets[name] for name in sorted(targets)]

    def admit(self, tenant: Tenant, now: datetime, max_cost: int | Callable[[], int]) -> GateResult:
        """Decide, and in reserve mode take the reservation. ``max_cost`` may be a function: it is then worked
        out only when needed (in reserve mode). Raises QuotaUnavailableError if the store fails while
        reserving."""
        view = self.view(tenant, now)
        # Unreserved admissions are counted when the tier reserves and a hard cost quota exists.
        guarded = not view.degraded and view.reserve_headroom is not None
        unmetered = self.unmetered(tenant.tenant_id) if guarded else 0
        targets = view.targets
        if not targets and unmetered and view.reserve_headroom is not None and unmetered >= view.reserve_headroom:
            targets = tuple(self._reserve_targets(tenant, view, now, unmetered))
        if not view.status.blocks and not targets:
            # The common case: no block, not near a hard cost quota. Nothing to decide, nothing to reserve; only
            # remember what was admitted until metering has had time to count it.
            if guarded:
                self._note_unmetered(tenant.tenant_id, max_cost() if callable(max_cost) else max_cost)
            return GateResult(_ALLOW, remaining=view.remaining, degraded=view.degraded)
        if callable(max_cost):
            max_cost = max_cost()
        remaining = view.remaining
        tightest = min(targets, key=lambda t: t.limit_nanos - t.used_nanos) if targets else None
        admission = decide_admission(
            now=now,
            blocks=list(view.status.blocks),
            reserve=tightest is not None,
            max_cost_nanos=max_cost,
            remaining_nanos=None if tightest is None else tightest.limit_nanos - tightest.used_nanos - unmetered,
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
                    # What this instance admitted unreserved and metering has not counted yet is not in the
                    # store's view: keep room for it.
                    limit_nanos=target.limit_nanos - unmetered,
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
