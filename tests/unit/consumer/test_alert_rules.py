"""Alert rules, pure: levels and their actions, the spike rule, the projection rule, the human summary."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.metering.alert_rules import (
    READ_PREVIOUS,
    Clock,
    evaluate,
    read_windows,
    spike_baseline,
)
from shared.decisions import AlertLevel, Metric
from shared.money import parse_usd
from shared.ports import Totals
from shared.tenants import QuotaRule, SpikeRule, Tenant, TenantRegistry
from shared.windows import DAY, MONTH
from tests.unit.consumer.kinesis import NOW

TIERS = TenantRegistry([]).tiers


def premium(**kw: object) -> Tenant:
    tier = TIERS["premium"]
    args: dict[str, object] = {"quotas": tier.quotas, **kw}
    return Tenant("acme", tier, name="Acme", **args)  # type: ignore[arg-type]


def cost(usd: str) -> Totals:
    return Totals(cost_nanos=parse_usd(usd))


def test_the_summary_reads_like_the_issue_example() -> None:
    tenant = premium(quotas=(QuotaRule(MONTH, Metric.COST, parse_usd("500")),))
    findings = evaluate(tenant, {"month": cost("460.12")}, NOW)
    alert = next(f.alert for f in findings if f.alert and f.alert.level == "warning")
    assert alert.summary == "tenant acme (premium) at 92% of its monthly cost quota: $460.12 of $500.00"
    assert (alert.tier, alert.window, alert.metric) == ("premium", "month", "cost_usd")
    assert alert.severities == ("warning",)


def test_levels_map_to_the_tier_actions_reserve_and_block() -> None:
    tenant = premium(quotas=(QuotaRule(MONTH, Metric.COST, parse_usd("500")),))
    at_warning = evaluate(tenant, {"month": cost("420")}, NOW)
    assert any(f.reserve and f.reserve.level is AlertLevel.WARNING for f in at_warning)
    assert not any(f.block for f in at_warning)
    exhausted = evaluate(tenant, {"month": cost("500")}, NOW)
    (block,) = [f.block for f in exhausted if f.block]
    assert block.until == datetime(2026, 12, 1, tzinfo=UTC)
    (alert,) = [f.alert for f in exhausted if f.alert and f.alert.level == "exhausted"]
    assert "critical" in alert.severities and "blocked until 2026-12-01 00:00 UTC" in alert.summary


def test_marks_are_per_rule_and_period() -> None:
    tenant = premium(quotas=(QuotaRule(DAY, Metric.TOKENS, 100),))
    (finding, *_) = evaluate(tenant, {"day": Totals(input_tokens=60)}, NOW)
    assert (finding.mark.rule, finding.mark.period, finding.mark.level) == ("quota|day|tokens", "20261123", 1)
    assert finding.mark.expires == NOW.replace(hour=0, minute=0, second=0) + timedelta(days=2)


def test_spike_rule_fires_on_a_sudden_jump_not_on_steady_growth() -> None:
    # Baseline: the previous clock hour's tokens / 12 (its average 5 minutes).
    assert spike_baseline({"5m": Totals(input_tokens=60_000), "prev_hour": Totals(input_tokens=120_000)}) == (
        60_000,
        10_000,
    )
    rule = SpikeRule()  # the built-in tiers': 5x and 50,000 tokens
    assert rule.fires(60_000, 10_000)  # 6x its own baseline
    assert not rule.fires(45_000, 10_000)  # 4.5x: growth, not a spike
    assert not rule.fires(49_999, 0)  # too small to matter
    assert rule.fires(50_000, 0)  # from nothing to a lot
    tenant = premium(quotas=())
    (finding,) = evaluate(tenant, {"5m": Totals(input_tokens=60_000), "prev_hour": Totals(input_tokens=120_000)}, NOW)
    assert finding.alert is not None and finding.alert.level == "spike"
    assert "6.0x its baseline of 10,000" in finding.alert.summary
    assert finding.mark.rule == "spike|tokens" and finding.mark.period == "2026112315"
    steady = {"5m": Totals(input_tokens=60_000), "prev_hour": Totals(input_tokens=60_000 * 12)}
    assert evaluate(tenant, steady, NOW) == []


def test_a_tier_sets_its_own_spike_rule() -> None:
    # GIVEN a tenant 6x above its baseline of 10,000 tokens per 5 minutes
    totals = {"5m": Totals(input_tokens=60_000), "prev_hour": Totals(input_tokens=120_000)}
    registry = TenantRegistry.from_dict(
        {
            "tiers": {
                "premium": {"spike": {"factor": "6.5"}},
                "bulk": {"quotas": [], "spike": {"factor": 3, "min_tokens": 1_000_000}},
                "quiet": {"quotas": [], "spike": False},
            },
            "tenants": [{"id": "a", "tier": "premium"}, {"id": "b", "tier": "bulk"}, {"id": "c", "tier": "quiet"}],
        }
    )
    # THEN it is a spike for none of them: 6x < 6.5x; under the bulk tier's minimum; spikes off for "quiet"
    for tenant_id in ("a", "b", "c"):
        assert not [f for f in evaluate(registry.get(tenant_id), totals, NOW) if f.mark.rule == "spike|tokens"]
    assert registry.tiers["bulk"].spike.fires(1_000_000, 300_000)  # (3.33x, at the minimum)
    assert registry.tiers["premium"].spike.min_tokens == 50_000  # (unset fields keep the tier's)


def rates(prev_hour: str, this_hour: str) -> dict[str, Totals]:
    return {"prev_hour": cost(prev_hour), "hour": cost(this_hour)}


def test_projection_fires_when_the_recent_rate_exhausts_the_quota_before_the_reset() -> None:
    # NOW is 15:30:20: the previous hour and this one so far span 90m20s.
    tenant = premium(quotas=(QuotaRule(MONTH, Metric.COST, parse_usd("500")),))
    # $100 used, ~$1/hour: $400 left lasts ~400 hours, the month has ~176 hours left: no projection
    calm = evaluate(tenant, {"month": cost("100"), **rates("1", "0.5")}, NOW)
    assert [f for f in calm if f.alert and f.alert.level == "projection"] == []
    # $100 used, $15 over 90m20s = $9.96/hour: runs out in ~40 hours, before the month ends
    hot = evaluate(tenant, {"month": cost("100"), **rates("10", "5")}, NOW)
    (proj,) = [f for f in hot if f.alert and f.alert.level == "projection"]
    assert proj.alert is not None
    assert "around 2026-11-25 07:39 UTC" in proj.alert.summary and "$9.96/h" in proj.alert.summary
    assert proj.mark.rule == "projection|month|cost_usd" and proj.mark.period == "202611"
    # Already exhausted: the level alert says it, no projection
    done = evaluate(tenant, {"month": cost("500"), **rates("10", "5")}, NOW)
    assert [f for f in done if f.alert and f.alert.level == "projection"] == []


def test_read_windows_cover_quotas_spike_and_projection() -> None:
    names = {w.name for w in read_windows(premium())}
    assert names == {"5m", "hour", "month", "1m"}
    assert [w.name for w in READ_PREVIOUS] == ["hour"]


def test_the_levels_agree_with_alert_level_for() -> None:
    from decimal import Decimal

    from shared.decisions import AlertLevel, Thresholds, alert_level_for

    for notice, critical in (
        (Decimal("0.5"), Decimal("0.95")),
        (Decimal("0.33"), Decimal("1")),
        (Decimal("0.123456789"), Decimal("0.9")),
    ):
        thresholds = Thresholds(notice=notice, critical=critical)
        for limit in (0, 1, 3, 7, 1000, 999_999_937):
            tenant = premium(quotas=(QuotaRule(DAY, Metric.TOKENS, limit),), thresholds=thresholds)
            edges = {0, 1, limit // 3, limit // 2, (limit + 1) // 2, limit - 1, limit, limit + 1}
            for fraction in (notice, thresholds.warning, critical, thresholds.exhausted):
                edges |= {int(fraction * limit) - 1, int(fraction * limit), int(fraction * limit) + 1}
            for used in {u for u in edges if u >= 0}:
                expected = alert_level_for(used, limit, thresholds).level
                findings = evaluate(tenant, {"day": Totals(input_tokens=used)}, NOW)
                levels = {f.mark.level for f in findings if f.mark.rule.startswith("quota|")}
                assert levels == (set() if expected is AlertLevel.OK else {int(expected)}), (notice, limit, used)


@settings(max_examples=150, deadline=None)
@given(
    st.integers(min_value=0, max_value=parse_usd("6000")),
    st.integers(min_value=0, max_value=3_000_000),
    st.integers(min_value=0, max_value=3_000_000),
    st.integers(min_value=0, max_value=1_500),
    st.integers(min_value=0, max_value=3599),
    st.sets(st.integers(min_value=0, max_value=9)),
)
def test_findings_left_out_as_known_are_exactly_the_known_marks(
    month_cost: int, recent: int, prev_hour: int, requests: int, second: int, known_picks: set[int]
) -> None:
    # GIVEN a premium tenant's totals anywhere around its levels, at any second of an hour
    tenant = premium()
    now = NOW.replace(minute=0, second=0) + timedelta(seconds=second)
    totals = {
        "month": Totals(cost_nanos=month_cost),
        "1m": Totals(input_tokens=recent // 5, requests=requests),
        "5m": Totals(input_tokens=recent),
        "hour": Totals(input_tokens=recent, cost_nanos=month_cost // 50),
        "prev_hour": Totals(input_tokens=prev_hour, cost_nanos=month_cost // 40),
    }
    # WHEN evaluated plainly, with a batch clock, and with some of the marks already known
    full = evaluate(tenant, totals, now)
    assert evaluate(tenant, totals, now, clock=Clock(now)) == full
    marked = {(f.mark.rule, f.mark.period, f.mark.level) for i, f in enumerate(full) if i in known_picks}
    partial = evaluate(tenant, totals, now, clock=Clock(now), known=lambda r, p, lvl: (r, p, lvl) in marked)
    # THEN exactly the findings whose marks are known are left out
    assert partial == [f for f in full if (f.mark.rule, f.mark.period, f.mark.level) not in marked]
