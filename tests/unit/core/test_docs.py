from __future__ import annotations

from pathlib import Path

from shared.tenants import TenantRegistry

ROOT = Path(__file__).resolve().parents[3]


def test_the_documented_example_config_loads() -> None:
    registry = TenantRegistry.load(ROOT / "docs" / "tenants.example.toml")
    acme = registry.get("acme")
    assert acme.tier.name == "premium"
    assert acme.contact_topic_arn.endswith(":acme-usage")
