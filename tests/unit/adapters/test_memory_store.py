"""InMemoryStore passes the store contract, and its test-only failure switches behave as the handler expects."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.adapters.memory_store import InMemoryStore
from shared.errors import StoreUnavailableError
from shared.ports import TenantBatch
from tests.unit.adapters.store_contract import NOW, StoreContract, ev


class TestInMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> InMemoryStore:
        return InMemoryStore()


def test_an_unavailable_tenant_gets_a_failed_outcome_and_nothing_is_stored() -> None:
    store = InMemoryStore()
    store.unavailable_tenants.add("acme")
    out = store.apply_usage(
        [TenantBatch("acme", (ev("acme"),)), TenantBatch("globex", (ev("globex"),))],
        now=NOW,
        dedupe_horizon=timedelta(hours=1),
    )
    assert [(o.tenant_id, o.ok) for o in out] == [("acme", False), ("globex", True)]
    store.unavailable_tenants.clear()
    assert store.window_totals("acme", [], NOW) == {}
    store.unavailable = True
    with pytest.raises(StoreUnavailableError):
        store.quota_status("acme", NOW)
