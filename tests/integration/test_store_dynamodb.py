"""DynamoStore against moto's DynamoDB server: the same store contract as memory and Redis."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from shared.adapters.dynamo_store import DynamoStore, create_table
from shared.adapters.stores import build_store
from shared.ports import TenantBatch
from shared.windows import MONTH
from tests.integration.conftest import AwsFactory
from tests.unit.adapters.store_contract import HORIZON, NOW, StoreContract, ev

pytestmark = pytest.mark.integration


@pytest.fixture
def dynamo_store(aws: AwsFactory) -> DynamoStore:
    client = aws("dynamodb")
    create_table(client, "tenantmeter-usage")
    return DynamoStore("tenantmeter-usage", client=client)


class TestDynamoStore(StoreContract):
    @pytest.fixture
    def store(self, dynamo_store: DynamoStore) -> DynamoStore:
        return dynamo_store


def test_a_long_batch_goes_in_several_transactions_and_still_counts_once(dynamo_store: DynamoStore) -> None:
    # GIVEN 130 events of one tenant (more than one transaction holds) with repeats and a reservation
    events = tuple(ev("acme", cost=3) for _ in range(130))
    batch = TenantBatch("acme", (*events, events[7]))
    # WHEN applied twice
    (first,) = dynamo_store.apply_usage([batch], now=NOW, dedupe_horizon=HORIZON)
    (second,) = dynamo_store.apply_usage([batch], now=NOW, dedupe_horizon=HORIZON)
    # THEN exactly 130 counted
    assert (first.applied, first.duplicates) == (130, 1)
    assert (second.applied, second.duplicates) == (0, 131)
    month = dynamo_store.window_totals("acme", [MONTH], NOW)["month"]
    assert (month.requests, month.cost_nanos) == (130, 390)


def test_build_store_makes_a_dynamodb_store(aws: AwsFactory) -> None:
    store: Any = build_store("dynamodb", dynamodb_table="t", dynamodb_client=aws("dynamodb"))
    assert isinstance(store, DynamoStore) and store.table == "t"


def test_an_unreachable_table_gives_failed_outcomes(aws: AwsFactory) -> None:
    store = DynamoStore("no-such-table", client=aws("dynamodb"))
    (out,) = store.apply_usage([TenantBatch("acme", (ev("acme"),))], now=NOW, dedupe_horizon=timedelta(hours=1))
    assert not out.ok and "dynamodb" in out.error
