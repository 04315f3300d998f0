from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from shared.decisions import (
    AdmissionKind,
    AlertLevel,
    BlockRecord,
    Thresholds,
    alert_level_for,
    decide_admission,
    level_start,
)
from shared.errors import ConfigError

NOW = datetime(2026, 11, 23, 12, tzinfo=UTC)
DEFAULT = Thresholds()


@pytest.mark.parametrize(
    ("used", "level"),
    [
        (0, AlertLevel.OK),
        (49, AlertLevel.OK),
        (50, AlertLevel.NOTICE),
        (79, AlertLevel.NOTICE),
        (80, AlertLevel.WARNING),
        (94, AlertLevel.WARNING),
        (95, AlertLevel.CRITICAL),
        (99, AlertLevel.CRITICAL),
        (100, AlertLevel.EXHAUSTED),
        (250, AlertLevel.EXHAUSTED),
    ],
)
def test_levels_at_the_default_thresholds(used: int, level: AlertLevel) -> None:
    decision = alert_level_for(used, 100, DEFAULT)
    assert decision.level is level
    assert f"{used}%" in decision.reason


def test_enterprise_tolerates_ten_percent_overage() -> None:
    t = Thresholds(exhausted=Decimal("1.10"))
    assert alert_level_for(105, 100, t).level is AlertLevel.CRITICAL
    assert alert_level_for(110, 100, t).level is AlertLevel.EXHAUSTED


def test_zero_quota_means_nothing_allowed() -> None:
    assert alert_level_for(0, 0, DEFAULT).level is AlertLevel.OK
    assert alert_level_for(1, 0, DEFAULT).level is AlertLevel.EXHAUSTED


@pytest.mark.parametrize(
    "kwargs",
    [
        {"notice": Decimal("0.9"), "warning": Decimal("0.8")},
        {"critical": Decimal("1.2")},
        {"notice": Decimal(0)},
        {"exhausted": Decimal("0.99")},
    ],
)
def test_thresholds_must_ascend(kwargs: dict[str, Decimal]) -> None:
    with pytest.raises(ConfigError, match="thresholds"):
        Thresholds(**kwargs)


fractions = st.decimals(min_value=Decimal("0.01"), max_value=Decimal(1), places=2)


@given(
    used=st.integers(0, 10**15),
    more=st.integers(0, 10**15),
    limit=st.integers(0, 10**15),
    picks=st.lists(fractions, min_size=3, max_size=3, unique=True),
    over=st.decimals(min_value=Decimal(1), max_value=Decimal(2), places=2),
)
def test_alert_levels_never_go_down_as_spend_rises(
    used: int, more: int, limit: int, picks: list[Decimal], over: Decimal
) -> None:
    notice, warning, critical = sorted(picks)
    t = Thresholds(notice, warning, critical, over)
    assert alert_level_for(used + more, limit, t).level >= alert_level_for(used, limit, t).level


@given(
    limit=st.integers(0, 10**15),
    picks=st.lists(fractions, min_size=3, max_size=3, unique=True),
    over=st.decimals(min_value=Decimal(1), max_value=Decimal(2), places=2),
    level=st.sampled_from(AlertLevel),
    offset=st.integers(-3, 3),
)
def test_level_start_is_exactly_where_the_level_begins(
    limit: int, picks: list[Decimal], over: Decimal, level: AlertLevel, offset: int
) -> None:
    notice, warning, critical = sorted(picks)
    t = Thresholds(notice, warning, critical, over)
    start = level_start(limit, t, level)
    used = max(0, start + offset)
    assert (alert_level_for(used, limit, t).level >= level) == (used >= start)


def test_active_block_denies_until_its_end() -> None:
    blocks = [
        BlockRecord("acme", "month", "monthly cost quota exhausted", NOW + timedelta(days=3)),
        BlockRecord("acme", "1m", "tokens per minute", NOW + timedelta(seconds=20)),
        BlockRecord("acme", "day", "expired", NOW - timedelta(seconds=1)),
    ]
    admission = decide_admission(now=NOW, blocks=blocks, reserve=False, max_cost_nanos=1, remaining_nanos=None)
    assert admission.kind is AdmissionKind.BLOCK
    assert admission.until == NOW + timedelta(days=3)
    assert "monthly cost quota" in admission.reason
    assert admission.retry_after_seconds(NOW) == 3 * 86400


def test_expired_blocks_lift_by_themselves() -> None:
    blocks = [BlockRecord("acme", "1m", "rpm", NOW)]
    assert (
        decide_admission(now=NOW, blocks=blocks, reserve=False, max_cost_nanos=1, remaining_nanos=None).kind
        is AdmissionKind.ALLOW
    )


def test_near_the_limit_admission_needs_a_reservation() -> None:
    reset = NOW + timedelta(hours=5)
    ok = decide_admission(
        now=NOW, blocks=[], reserve=True, max_cost_nanos=100, remaining_nanos=150, remaining_until=reset
    )
    assert (ok.kind, ok.reserve_nanos) == (AdmissionKind.RESERVE, 100)
    too_big = decide_admission(
        now=NOW, blocks=[], reserve=True, max_cost_nanos=200, remaining_nanos=150, remaining_until=reset
    )
    assert (too_big.kind, too_big.until) == (AdmissionKind.BLOCK, reset)
    assert "exceeds what is left" in too_big.reason
