"""QuotaChecker: "may this tenant call a model now?" for applications that call Bedrock directly.

The metering consumer writes block records (and reserve flags) to the store; the gateway enforces them on every
request. An application using the SDK instead asks ``is_allowed(tenant_id)`` (or ``check`` for the reason and
retry time) before a call, or lets ``instrument(..., quota=checker)`` do it. Each answer costs at most one
store round trip per tenant per ``ttl_s`` (at most 1 s, so a new block takes effect within a second); the
decision itself is recomputed against the clock on every call, so a block that ends is lifted at once.

The SDK cannot take reservations (only the gateway knows a request's maximum cost before calling), so a tenant
in reserved admission is allowed here and metered after the fact; only hard blocks are enforced.

If the store is unreachable (``StoreUnavailableError``) the checker fails open by default (the outage is
logged and the answer cached for ``ttl_s``, so a dead store is not hammered); ``fail_open=False`` denies
instead.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol

from shared.decisions import Admission, AdmissionKind, decide_admission
from shared.ports import QuotaStatus

logger = logging.getLogger(__name__)

MAX_TTL_S: Final = 1.0


class QuotaStatusReader(Protocol):
    """The one QuotaState read a producer needs (every store adapter implements it)."""

    def quota_status(self, tenant_id: str, now: datetime) -> QuotaStatus: ...


def _utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class _Cached:
    expires: float  # monotonic seconds
    status: QuotaStatus | None  # None: the store was unavailable


class QuotaChecker:
    """Per-tenant admission from the store's block records, cached for at most ``ttl_s``. Thread-safe."""

    def __init__(
        self,
        store: QuotaStatusReader,
        *,
        ttl_s: float = MAX_TTL_S,
        fail_open: bool = True,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 0 <= ttl_s <= MAX_TTL_S:
            raise ValueError(f"ttl_s must be between 0 and {MAX_TTL_S} seconds, got {ttl_s!r}")
        self._store = store
        self._ttl_s = float(ttl_s)
        self._fail_open = fail_open
        self._clock = clock
        self._monotonic = monotonic
        self._cache: dict[str, _Cached] = {}
        self._lock = threading.Lock()

    def is_allowed(self, tenant_id: str) -> bool:
        return self.check(tenant_id).kind is not AdmissionKind.BLOCK

    def check(self, tenant_id: str) -> Admission:
        """ALLOW or BLOCK (with ``until`` and a reason; ``retry_after_seconds(now)`` gives the wait)."""
        now = self._clock()
        status = self._status(tenant_id, now)
        if status is None:
            if self._fail_open:
                return Admission(AdmissionKind.ALLOW, "quota store unavailable: allowed (fail open)")
            return Admission(AdmissionKind.BLOCK, "quota store unavailable: denied (fail closed)")
        admission = decide_admission(
            now=now, blocks=list(status.blocks), reserve=False, max_cost_nanos=0, remaining_nanos=None
        )
        if admission.kind is AdmissionKind.ALLOW and any(flag.until > now for flag in status.reserve):
            return Admission(
                AdmissionKind.ALLOW,
                "near quota: the gateway would reserve; the SDK meters after the fact",
            )
        return admission

    def invalidate(self, tenant_id: str | None = None) -> None:
        """Forget the cached status of one tenant (or all), e.g. after an operator lifted a block."""
        with self._lock:
            if tenant_id is None:
                self._cache.clear()
            else:
                self._cache.pop(tenant_id, None)

    def _status(self, tenant_id: str, now: datetime) -> QuotaStatus | None:
        mono = self._monotonic()
        with self._lock:
            cached = self._cache.get(tenant_id)
        if cached is not None and mono < cached.expires:
            return cached.status
        status: QuotaStatus | None
        try:
            status = self._store.quota_status(tenant_id, now)
        except Exception as exc:  # StoreUnavailableError, or a client's own (redis, botocore): fail as configured
            logger.warning("quota store unavailable for tenant %s: %s", tenant_id, type(exc).__name__)
            status = None
        if self._ttl_s > 0:
            with self._lock:
                self._cache[tenant_id] = _Cached(mono + self._ttl_s, status)
        return status
