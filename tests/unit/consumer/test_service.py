"""The metering service wired with InMemoryStore and fakes: batches, poison records, partial failures, alerts."""

from __future__ import annotations

import threading
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from consumers.metering.records import Reason
from consumers.metering.service import MeteringService
from shared.adapters.memory_store import InMemoryStore
from shared.decisions import AlertLevel, Metric, Thresholds
from shared.pricing import PriceCatalog, TokenUsage
from shared.schema import UsageEvent
from shared.tenants import LevelAction, QuotaRule, Tenant, TenantRegistry, Tier
from shared.windows import DAY, MINUTE_1, MONTH
from tests.unit.consumer.fakes import FakeAlerts, FakeQuarantine, metering_service
from tests.unit.consumer.kinesis import NOW, Shard, usage

CATALOG = PriceCatalog.load()


def cost_of(events: list[UsageEvent]) -> int:
    """Independent of the consumer: price each event with the catalog and add."""
    return sum(
        CATALOG.price_usage(
            TokenUsage(e.input_tokens, e.output_tokens, e.cache_read_tokens, e.cache_write_tokens),
            e.model_id,
            alias=e.model,
            region=e.region,
            at=e.occurred_at,
        ).cost_nanos
        for e in events
    )


def make(
    registry: TenantRegistry, store: InMemoryStore | None = None
) -> tuple[MeteringService, InMemoryStore, FakeAlerts, FakeQuarantine]:
    store = store or InMemoryStore()
    alerts, quarantine = FakeAlerts(), FakeQuarantine()
    service = metering_service(store, registry, alerts, quarantine)
    return service, store, alerts, quarantine


def quota_alerts(alerts: FakeAlerts) -> list[Any]:
    """Level alerts only (projection and spike alerts are tested in test_alert_rules)."""
    return [a for a in alerts.sent if a.level not in ("projection", "spike")]


def tenants(**tiers: str) -> TenantRegistry:
    base = TenantRegistry([]).tiers
    return TenantRegistry(
        [Tenant(t, base[tier], name=t, contact_topic_arn=f"arn:aws:sns:us-east-1:1:{t}") for t, tier in tiers.items()],
        base,
    )


def test_a_mixed_batch_is_metered_once_with_exact_totals() -> None:
    # GIVEN plain records and one KPL aggregate for two tenants
    service, store, _, quarantine = make(tenants(acme="premium", globex="standard"))
    shard = Shard()
    acme = [usage("acme") for _ in range(5)]
    globex = [usage("globex", tokens=(10, 20, 30, 40)) for _ in range(7)]
    records = [shard.plain(e) for e in acme[:2]] + shard.aggregate(acme[2:] + globex)
    # WHEN processed
    result = service.process(records, NOW)
    # THEN nothing failed and totals are exactly the events'
    assert result.failures == [] and quarantine.records == []
    assert (result.events, result.applied, result.duplicates, result.tenants) == (12, 12, 0, 2)
    month = store.window_totals("acme", [MONTH], NOW)["month"]
    assert (month.requests, month.input_tokens, month.cost_nanos) == (5, 5000, cost_of(acme))
    g = store.window_totals("globex", [DAY], NOW)["day"]
    assert (g.tokens, g.cost_nanos) == (700, cost_of(globex))


def test_poison_records_are_quarantined_and_never_block_the_batch() -> None:
    service, store, _, quarantine = make(tenants(acme="premium"))
    shard = Shard()
    records = [
        shard.plain(usage("acme")),
        shard.record(b"not json at all", "acme"),
        shard.plain(usage("stranger")),
        shard.plain(usage("acme")),
    ]
    result = service.process(records, NOW)
    assert result.failures == []
    assert sorted(quarantine.reasons) == [Reason.NOT_JSON, Reason.UNKNOWN_TENANT]
    assert result.quarantined == {Reason.NOT_JSON: 1, Reason.UNKNOWN_TENANT: 1}
    assert store.window_totals("acme", [DAY], NOW)["day"].requests == 2
    assert quarantine.records[0].sequence_number == records[1]["kinesis"]["sequenceNumber"]


def test_store_failure_reports_the_tenants_records_and_a_redelivery_completes_exactly_once() -> None:
    # GIVEN the store fails for globex only
    service, store, _, quarantine = make(tenants(acme="premium", globex="premium"))
    shard = Shard()
    events = [usage(t) for t in ("acme", "globex", "acme", "globex", "acme")]
    records = [shard.plain(e) for e in events] + [shard.record(b"{bad", "acme")]
    store.unavailable_tenants.add("globex")
    # WHEN the batch is processed
    result = service.process(records, NOW)
    # THEN globex's records are reported, acme's are stored, the poison record after the failure waits
    seqs = [r["kinesis"]["sequenceNumber"] for r in records]
    assert result.failures == [seqs[1], seqs[3]]
    assert quarantine.records == []
    assert store.window_totals("globex", [DAY], NOW)["day"].requests == 0
    # WHEN Lambda redelivers from the lowest failure, the store back
    store.unavailable_tenants.clear()
    again = service.process(records[1:], NOW)
    # THEN every event counts once and the poison record is quarantined once
    assert again.failures == [] and again.duplicates == 2
    assert store.window_totals("acme", [DAY], NOW)["day"].requests == 3
    assert store.window_totals("globex", [DAY], NOW)["day"].requests == 2
    assert quarantine.reasons == [Reason.NOT_JSON]


def test_a_store_that_is_down_fails_every_record() -> None:
    service, store, _, _ = make(tenants(acme="premium"))
    shard = Shard()
    records = [shard.plain(usage("acme")) for _ in range(3)]
    store.unavailable = True
    result = service.process(records, NOW)
    assert result.failures == [r["kinesis"]["sequenceNumber"] for r in records]
    assert result.response()["batchItemFailures"][0] == {"itemIdentifier": records[0]["kinesis"]["sequenceNumber"]}


def test_quarantine_failure_reports_the_bad_records_for_retry() -> None:
    service, _, _, quarantine = make(tenants(acme="premium"))
    shard = Shard()
    records = [shard.plain(usage("acme")), shard.record(b"\x00garbage", "acme")]
    quarantine.fail_times = 1
    result = service.process(records, NOW)
    assert result.failures == [records[1]["kinesis"]["sequenceNumber"]]
    assert service.process(records[1:], NOW).failures == []
    assert quarantine.reasons == [Reason.NOT_JSON]


def _tier(name: str, rule: QuotaRule, actions: dict[AlertLevel, LevelAction], **kw: Any) -> Tier:
    return Tier(name, (rule,), kw.get("thresholds", Thresholds()), actions)


FREE_ACTIONS = {
    AlertLevel.NOTICE: LevelAction(topics=("info",)),
    AlertLevel.WARNING: LevelAction(topics=("warning",), notify_tenant=True),
    AlertLevel.CRITICAL: LevelAction(topics=("critical",), notify_tenant=True),
    AlertLevel.EXHAUSTED: LevelAction(topics=("critical",), notify_tenant=True, block=True),
}


def one_tier_registry(tier: Tier, tenant_id: str = "acme") -> TenantRegistry:
    return TenantRegistry(
        [Tenant(tenant_id, tier, name=tenant_id, quotas=tier.quotas, contact_topic_arn="arn:aws:sns:x:1:acme")],
        {tier.name: tier},
    )


def test_alerts_fire_once_per_level_and_never_again_on_redelivery() -> None:
    # GIVEN a 10,000-token daily quota and events adding up to 5,100 then 8,100 tokens
    tier = _tier("t", QuotaRule(DAY, Metric.TOKENS, 10_000), FREE_ACTIONS)
    service, _, alerts, _ = make(one_tier_registry(tier))
    shard = Shard()
    first = [shard.plain(usage("acme", tokens=(1000, 700, 0, 0))) for _ in range(3)]
    second = [shard.plain(usage("acme", tokens=(1000, 0, 0, 0))) for _ in range(3)]
    # WHEN the first batch is processed, then redelivered three times
    for _ in range(4):
        service.process(first, NOW)
    # THEN one notice alert (51%)
    assert [(a.level, a.window, a.metric) for a in quota_alerts(alerts)] == [("notice", "day", "tokens")]
    assert alerts.sent[0].summary == "tenant acme (t) at 51% of its daily token quota: 5,100 tokens of 10,000 tokens"
    # WHEN usage reaches 81%: a warning, to the warning topic and the tenant's own topic
    service.process(second, NOW)
    assert [a.level for a in quota_alerts(alerts)] == ["notice", "warning"]
    assert (
        quota_alerts(alerts)[1].severities == ("warning",)
        and quota_alerts(alerts)[1].tenant_topic_arn == "arn:aws:sns:x:1:acme"
    )


class RendezvousAlerts(FakeAlerts):
    """Each publish waits (up to 10 s) until another tenant's publish is under way too: only actions that run
    side by side get through."""

    def __init__(self) -> None:
        super().__init__()
        self.barrier = threading.Barrier(2, timeout=10)

    def publish(self, alert: Any) -> None:
        self.barrier.wait()
        super().publish(alert)


def test_tenants_alert_actions_run_side_by_side() -> None:
    # GIVEN two tenants crossing their notice line in the same batch, and a publisher that completes a publish
    # only while the other tenant's is in flight (a serial loop would wait for ever: BrokenBarrierError)
    tier = _tier("t", QuotaRule(DAY, Metric.TOKENS, 10_000), FREE_ACTIONS)
    registry = TenantRegistry(
        [Tenant(t, tier, name=t, quotas=tier.quotas) for t in ("acme", "globex")], {tier.name: tier}
    )
    service, _, _, _ = make(registry)
    alerts = service.alerts = RendezvousAlerts()
    shard = Shard()
    records = [shard.plain(usage(t, tokens=(6000, 0, 0, 0))) for t in ("acme", "globex")]
    # WHEN the batch is processed
    result = service.process(records, NOW)
    # THEN both notices went out, side by side, and nothing failed
    assert result.failures == []
    assert sorted(a.tenant_id for a in quota_alerts(alerts)) == ["acme", "globex"]


def test_a_concurrent_invocation_does_not_alert_twice() -> None:
    # GIVEN two containers (their own caches) sharing one store, each seeing usage over the notice line
    tier = _tier("t", QuotaRule(DAY, Metric.TOKENS, 10_000), FREE_ACTIONS)
    store = InMemoryStore()
    one, _, alerts_one, _ = make(one_tier_registry(tier), store)
    two, _, alerts_two, _ = make(one_tier_registry(tier), store)
    one.process([Shard("shardId-000000000001").plain(usage("acme", tokens=(6000, 0, 0, 0)))], NOW)
    two.process([Shard("shardId-000000000002").plain(usage("acme", tokens=(100, 0, 0, 0)))], NOW)
    assert len(quota_alerts(alerts_one)) + len(quota_alerts(alerts_two)) == 1


def test_a_hard_quota_exhausted_blocks_until_the_reset_with_one_critical_alert() -> None:
    # GIVEN a free-like tier: 30 requests per minute, hard, blocking when exhausted
    tier = _tier("free", QuotaRule(MINUTE_1, Metric.REQUESTS, 30), FREE_ACTIONS)
    service, store, alerts, _ = make(one_tier_registry(tier))
    shard = Shard()
    # WHEN 30 requests arrive in one minute
    result = service.process([shard.plain(usage("acme", tokens=(1, 1, 0, 0))) for _ in range(30)], NOW)
    # THEN a block lasting until the minute's end, and one critical alert saying so
    (block,) = store.quota_status("acme", NOW).blocks
    assert block.window == "1m" and block.until == NOW.replace(second=0) + timedelta(minutes=1)
    assert result.blocks_written == 1
    (critical,) = [a for a in alerts.sent if a.level == "exhausted"]
    assert critical.severities == ("critical",)
    assert "blocked until" in critical.summary
    # The block lifts by itself at the reset
    assert store.quota_status("acme", block.until).blocks == ()


def test_a_soft_quota_alerts_but_never_blocks() -> None:
    actions = {**FREE_ACTIONS, AlertLevel.EXHAUSTED: LevelAction(topics=("critical",), block=True)}
    tier = _tier("ent", QuotaRule(MINUTE_1, Metric.REQUESTS, 5, hard=False), actions)
    service, store, alerts, _ = make(one_tier_registry(tier))
    shard = Shard()
    service.process([shard.plain(usage("acme")) for _ in range(8)], NOW)
    assert store.quota_status("acme", NOW).blocks == ()
    assert [a.level for a in quota_alerts(alerts)] == ["exhausted"]
    assert "(soft)" in quota_alerts(alerts)[0].summary


def test_enterprise_pages_at_110_percent_only() -> None:
    thresholds = Thresholds(exhausted=Decimal("1.10"))
    tier = _tier("enterprise", QuotaRule(DAY, Metric.TOKENS, 1000, hard=False), FREE_ACTIONS, thresholds=thresholds)
    reg = TenantRegistry([Tenant("big", tier, quotas=tier.quotas, thresholds=thresholds)], {"enterprise": tier})
    service, store, alerts, _ = make(reg)
    shard = Shard()
    service.process([shard.plain(usage("big", tokens=(1050, 0, 0, 0)))], NOW)
    assert [a.level for a in quota_alerts(alerts)] == ["critical"]
    service.process([shard.plain(usage("big", tokens=(60, 0, 0, 0)))], NOW)
    assert [a.level for a in quota_alerts(alerts)] == ["critical", "exhausted"]
    assert store.quota_status("big", NOW).blocks == ()


def test_a_failed_publish_restores_the_mark_and_the_retry_alerts() -> None:
    tier = _tier("t", QuotaRule(DAY, Metric.TOKENS, 1_000), FREE_ACTIONS)
    service, _, alerts, _ = make(one_tier_registry(tier))
    records = [Shard().plain(usage("acme", tokens=(600, 0, 0, 0)))]
    alerts.fail_times = 1
    first = service.process(records, NOW)
    assert first.failures == [records[0]["kinesis"]["sequenceNumber"]] and alerts.sent == []
    second = service.process(records, NOW)
    assert second.failures == [] and second.duplicates == 1
    assert [a.level for a in quota_alerts(alerts)] == ["notice"]


def test_reserve_flag_is_set_for_a_hard_cost_quota_and_events_settle_reservations() -> None:
    actions = {**FREE_ACTIONS, AlertLevel.WARNING: LevelAction(topics=("warning",), reserve=True)}
    tier = _tier("t", QuotaRule(MONTH, Metric.COST, 1_000_000), actions)
    service, store, _, _ = make(one_tier_registry(tier))
    assert store.reserve("acme", "r-1", 10, window=MONTH, limit_nanos=1_000_000, now=NOW, ttl=timedelta(minutes=5))
    # ~ $0.00085 per event of this size on Haiku: two of them exceed 80% of $0.001
    shard = Shard()
    service.process([shard.plain(usage("acme", reservation_id="r-1")) for _ in range(1)], NOW)
    assert store.outstanding_reservations("acme", NOW) == {}
    (flag,) = store.quota_status("acme", NOW).reserve
    assert flag.window == "month" and flag.limit_nanos == 1_000_000 and flag.level >= AlertLevel.WARNING


@pytest.mark.parametrize("duplicates", [1, 3])
def test_the_same_event_id_from_a_producer_retry_counts_once(duplicates: int) -> None:
    service, store, _, _ = make(tenants(acme="premium"))
    event = usage("acme")
    shard = Shard()
    records = [shard.plain(event) for _ in range(duplicates + 1)]
    result = service.process(records, NOW)
    assert (result.applied, result.duplicates) == (1, duplicates)
    assert store.window_totals("acme", [DAY], NOW)["day"].requests == 1
