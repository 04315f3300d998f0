"""The Lambda handler wired through bootstrap with injected adapters; settings from the environment."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from consumers.metering import bootstrap as boot
from consumers.metering.handler import lambda_handler
from consumers.metering.settings import Settings
from shared.adapters.memory_store import InMemoryStore
from shared.errors import ConfigError
from shared.settings import ENV_VARS
from shared.windows import DAY
from tests.unit.consumer.fakes import FakeAlerts, FakeQuarantine
from tests.unit.consumer.kinesis import Shard, lambda_event, registry, usage

ENV = {
    "TM_STORE_BACKEND": "redis",
    "TM_REDIS_URL": "redis://localhost:6379/0",
    "TM_TENANT_CONFIG": "docs/tenants.example.toml",
    "TM_QUARANTINE_URL": "s3://tenantmeter-quarantine/bad/",
    "TM_ALERT_TOPIC_INFO_ARN": "arn:aws:sns:us-east-1:123456789012:tenantmeter-alerts-info",
    "TM_ALERT_TOPIC_WARNING_ARN": "arn:aws:sns:us-east-1:123456789012:tenantmeter-alerts-warning",
    "TM_ALERT_TOPIC_CRITICAL_ARN": "arn:aws:sns:us-east-1:123456789012:tenantmeter-alerts-critical",
}


@pytest.fixture
def wired() -> Iterator[tuple[InMemoryStore, FakeQuarantine]]:
    store, quarantine = InMemoryStore(), FakeQuarantine()
    boot.set_container(
        boot.bootstrap(
            store=store,
            alerts=FakeAlerts(),
            quarantine=quarantine,
            tenants=registry("acme", "globex"),
            dedupe_horizon=timedelta(hours=1),
        )
    )
    yield store, quarantine
    boot.reset_container()


class Context:
    aws_request_id = "req-1"


def test_handler_meters_a_batch_and_publishes_emf_metrics(
    wired: tuple[InMemoryStore, FakeQuarantine], capsys: pytest.CaptureFixture[str]
) -> None:
    store, quarantine = wired
    now = datetime.now(UTC)
    shard = Shard(arrival=now - timedelta(seconds=30))
    records = [
        shard.plain(usage("acme", at=now)),
        *shard.aggregate([usage("globex", at=now)] * 1),
        shard.record(b"x", "a"),
    ]
    response = lambda_handler(lambda_event(records), Context())
    assert response == {"batchItemFailures": []}
    assert store.window_totals("acme", [DAY], now)["day"].requests == 1
    assert quarantine.reasons == ["not_json"]
    blobs = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    emf = [b for b in blobs if "_aws" in b]
    names = {m["Name"] for b in emf for d in b["_aws"]["CloudWatchMetrics"] for m in d["Metrics"]}
    assert {"EventsProcessed", "DuplicatesSkipped", "AlertsPublished", "BlocksWritten", "BatchAgeSeconds"} <= names
    quarantined = next(b for b in emf if "Quarantined" in b)
    assert quarantined["reason"] == "not_json"
    for blob in emf:
        for directive in blob["_aws"]["CloudWatchMetrics"]:
            assert all("tenant_id" not in dims for dims in directive["Dimensions"])
    batch = next(b for b in emf if "BatchAgeSeconds" in b)
    age = batch["BatchAgeSeconds"]
    assert (age[0] if isinstance(age, list) else age) >= 30


def test_handler_reports_failures_when_the_store_is_down(wired: tuple[InMemoryStore, FakeQuarantine]) -> None:
    store, _ = wired
    store.unavailable = True
    shard = Shard()
    records = [shard.plain(usage("acme")), shard.plain(usage("globex"))]
    response = lambda_handler(lambda_event(records), Context())
    assert response == {"batchItemFailures": [{"itemIdentifier": r["kinesis"]["sequenceNumber"]} for r in records]}


def test_an_empty_event_succeeds(wired: Any) -> None:
    assert lambda_handler({"Records": []}, None) == {"batchItemFailures": []}


def test_settings_from_env() -> None:
    s = Settings.from_env(ENV)
    assert s.store_backend == "redis" and s.redis_url == "redis://localhost:6379/0"
    assert s.topic_arns["critical"].endswith("tenantmeter-alerts-critical")
    assert s.dedupe_horizon == timedelta(hours=24)
    d = Settings.from_env({**ENV, "TM_STORE_BACKEND": "dynamodb", "TM_DYNAMODB_TABLE": "t", "TM_REDIS_URL": ""})
    assert d.dynamodb_table == "t" and d.redis_url is None
    assert Settings.from_env({**ENV, "TM_DEDUPE_HORIZON_SECONDS": "3600"}).dedupe_horizon == timedelta(hours=1)


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"TM_REDIS_URL": ""}, "TM_REDIS_URL"),
        ({"TM_REDIS_URL": "http://x"}, "TM_REDIS_URL"),
        ({"TM_STORE_BACKEND": "dynamodb"}, "TM_DYNAMODB_TABLE"),
        ({"TM_STORE_BACKEND": "mongo"}, "TM_STORE_BACKEND"),
        ({"TM_QUARANTINE_URL": "ftp://x"}, "TM_QUARANTINE_URL"),
        ({"TM_ALERT_TOPIC_WARNING_ARN": ""}, "TM_ALERT_TOPIC_WARNING_ARN"),
        ({"TM_DEDUPE_HORIZON_SECONDS": "1"}, "TM_DEDUPE_HORIZON_SECONDS"),
    ],
)
def test_bad_settings_name_the_variable(change: dict[str, str], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({**ENV, **change})
    assert info.value.field == field


def test_every_consumer_variable_is_declared() -> None:
    consumer = {name for name, (components, _) in ENV_VARS.items() if "consumer" in components}
    assert (
        set(ENV) | {"TM_REDIS_AUTH_SECRET_ARN", "TM_DYNAMODB_TABLE", "TM_PRICING_CATALOG", "TM_DEDUPE_HORIZON_SECONDS"}
        <= consumer
    )


def test_bootstrap_without_settings_needs_every_dependency() -> None:
    with pytest.raises(ValueError, match="needs settings"):
        boot.bootstrap(store=InMemoryStore())


class FakeSecrets:
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.asked: list[str] = []

    def get_secret_value(self, SecretId: str) -> dict[str, str]:
        self.asked.append(SecretId)
        return {"SecretString": self.secret}


@pytest.mark.parametrize(
    ("secret", "token"),
    [
        ("plain-token", "plain-token"),
        ('{"token": "t1"}', "t1"),
        ('{"auth_token": "t2"}', "t2"),
        ('{"password": "p"}', "p"),
    ],
)
def test_the_elasticache_auth_token_comes_from_secrets_manager(secret: str, token: str) -> None:
    from shared.adapters.stores import read_auth_token

    fake = FakeSecrets(secret)
    assert read_auth_token("arn:aws:secretsmanager:us-east-1:1:secret:redis", fake) == token
    assert fake.asked == ["arn:aws:secretsmanager:us-east-1:1:secret:redis"]


def test_build_store_passes_the_token_to_redis_without_connecting() -> None:
    from shared.adapters.redis_store import RedisStore
    from shared.adapters.stores import build_store

    store = build_store(
        "redis",
        redis_url="rediss://cache.example:6379/0",
        redis_auth_secret_arn="arn:secret",
        secrets_client=FakeSecrets('{"token": "s3cr3t"}'),
    )
    assert isinstance(store, RedisStore)
    kwargs = store.client.connection_pool.connection_kwargs
    assert kwargs["password"] == "s3cr3t" and kwargs["host"] == "cache.example"


def test_build_store_rejects_what_it_cannot_build() -> None:
    from shared.adapters.stores import build_store

    with pytest.raises(ConfigError):
        build_store("redis", redis_url=None)
    with pytest.raises(ConfigError):
        build_store("dynamodb", dynamodb_table=None)
    with pytest.raises(ConfigError):
        build_store("cassandra")
