"""Our own rules are enforced by Terraform ``validation`` blocks, and those blocks accept and refuse what
they should: evaluated here for edge values (python-hcl2 parses them; tfmodel evaluates the conditions)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.infra.tfmodel import load_module, validation_passes

EVENT_SOURCE = {
    "batch_size": 500,
    "batching_window_seconds": 1,
    "parallelization_factor": 1,
    "maximum_retry_attempts": 5,
    "maximum_record_age_seconds": 3600,
    "starting_position": "TRIM_HORIZON",
    "enhanced_fan_out": False,
}


def event_source(**changes: Any) -> dict[str, Any]:
    return {**EVENT_SOURCE, **changes}


@pytest.mark.parametrize(
    ("field", "value", "ok"),
    [
        ("batch_size", 0, False),
        ("batch_size", 1, True),
        ("batch_size", 10000, True),
        ("batch_size", 10001, False),
        ("batching_window_seconds", 0, True),
        ("batching_window_seconds", 300, True),
        ("batching_window_seconds", 301, False),
        ("parallelization_factor", 0, False),
        ("parallelization_factor", 10, True),
        ("parallelization_factor", 11, False),
        ("maximum_retry_attempts", -1, False),  # forever: a poison record would block its shard
        ("maximum_retry_attempts", 0, True),
        ("maximum_retry_attempts", 10000, True),
        ("maximum_record_age_seconds", -1, False),
        ("maximum_record_age_seconds", 59, False),
        ("maximum_record_age_seconds", 60, True),
        ("maximum_record_age_seconds", 604800, True),
        ("maximum_record_age_seconds", 604801, False),
        ("starting_position", "AT_TIMESTAMP", False),
    ],
)
def test_event_source_ranges(field: str, value: Any, ok: bool) -> None:
    metering = load_module("modules/metering")
    assert validation_passes(metering, "event_source", event_source(**{field: value}), must_mention=field) is ok


@pytest.mark.parametrize(
    ("hours", "ok"), [(23, False), (24, True), (168, True), (8760, True), (8761, False), (24.5, False)]
)
def test_stream_retention_range(hours: float, ok: bool) -> None:
    assert validation_passes(load_module("modules/stream"), "retention_hours", hours) is ok


@pytest.mark.parametrize("rel", ["modules/monitoring", "envs/dev"])
@pytest.mark.parametrize(
    ("thresholds", "ok"),
    [
        ({"info": 0.5, "warning": 0.8, "critical": 0.95}, True),
        ({"info": 0.5, "warning": 0.8, "critical": 1.0}, True),
        ({"info": 0.0, "warning": 0.8, "critical": 0.95}, False),  # 0 is not in (0, 1]
        ({"info": 0.8, "warning": 0.5, "critical": 0.95}, False),  # not ascending
        ({"info": 0.5, "warning": 0.8, "critical": 0.8}, False),  # equal is not ascending
        ({"info": 0.5, "warning": 0.8, "critical": 1.01}, False),  # above 1
    ],
)
def test_spend_alert_thresholds_ascend_in_zero_one(rel: str, thresholds: dict[str, float], ok: bool) -> None:
    value = {"daily_budget_usd": 100, "thresholds": thresholds}
    assert validation_passes(load_module(rel), "spend_alarm", value, must_mention="thresholds.info") is ok


@pytest.mark.parametrize(("budget", "ok"), [(None, True), (50, True), (0, False), (-1, False)])
def test_spend_budget_is_positive_or_absent(budget: float | None, ok: bool) -> None:
    value = {"daily_budget_usd": budget, "thresholds": {"info": 0.5, "warning": 0.8, "critical": 0.95}}
    monitoring = load_module("modules/monitoring")
    assert validation_passes(monitoring, "spend_alarm", value, must_mention="daily_budget_usd > 0") is ok


@pytest.mark.parametrize(
    ("subscription", "mention", "ok"),
    [
        ({"severity": "critical", "protocol": "email", "endpoint": "a@example.com"}, "s.severity", True),
        ({"severity": "page", "protocol": "email", "endpoint": "a@example.com"}, "s.severity", False),
        ({"severity": "info", "protocol": "sms", "endpoint": "+15555550100"}, 'contains(["email"', False),
        ({"severity": "info", "protocol": "https", "endpoint": "http://x.example"}, "startswith", False),
        ({"severity": "info", "protocol": "https", "endpoint": "https://x.example"}, "startswith", True),
    ],
)
def test_subscriptions_are_checked(subscription: dict[str, str], mention: str, ok: bool) -> None:
    value = {"oncall": {**subscription, "filter_policy": None, "filter_policy_scope": "MessageAttributes"}}
    assert validation_passes(load_module("modules/alerts"), "subscriptions", value, must_mention=mention) is ok


@pytest.mark.parametrize(("backend", "ok"), [("dynamodb", True), ("redis", True), ("memory", False)])
def test_store_backend_is_one_of_the_two_adapters(backend: str, ok: bool) -> None:
    assert validation_passes(load_module("envs/dev"), "store_backend", backend) is ok
    assert validation_passes(load_module("modules/state"), "store_backend", backend) is ok


@pytest.mark.parametrize(("ms", "ok"), [(0, True), (1000, True), (1001, False)])
def test_gateway_quota_cache_matches_the_settings_range(ms: int, ok: bool) -> None:
    # producers/gateway/settings.py accepts TM_QUOTA_CACHE_MS 0-1000 only.
    assert validation_passes(load_module("modules/gateway"), "quota_cache_ms", ms) is ok


def test_dev_rechecks_batch_size_and_retention_where_people_set_them() -> None:
    dev = load_module("envs/dev")
    consumer = {"event_source": event_source(batch_size=20000)}
    assert validation_passes(dev, "consumer", consumer, must_mention="batch_size") is False
    assert validation_passes(dev, "stream", {"retention_hours": 10}, must_mention="retention_hours") is False
    assert validation_passes(dev, "stream", {"retention_hours": 48}, must_mention="retention_hours") is True
