from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from shared.decisions import AlertLevel, Metric
from shared.errors import ConfigError, UnknownTenantError
from shared.tenants import TenantRegistry, hash_api_key

KEY = "tm_live_acme_0123456789abcdef"

CONFIG = f"""
[tiers.free.actions.exhausted]
topics = ["critical"]
block = true

[tiers.gold]
quotas = [{{ window = "month", metric = "cost_usd", limit = "2000.00", hard = true }}]
thresholds = {{ notice = "0.6", warning = "0.85", critical = "0.97" }}

[[tenants]]
id = "acme"
name = "Acme Corp"
tier = "premium"
api_key_sha256 = ["{hash_api_key(KEY)}"]
tags = {{ costCenter = "cc-42", applicationId = "chat" }}
quotas = [{{ window = "month", metric = "cost_usd", limit = "500.00" }}]
thresholds = {{ warning = "0.9" }}
inference_profiles = {{ "claude-3-5-haiku" = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/x" }}

[[tenants]]
id = "globex"
tier = "gold"
"""


def write(tmp_path: Path, text: str, name: str = "tenants.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_loads_tenants_with_tier_quotas_and_overrides(tmp_path: Path) -> None:
    registry = TenantRegistry.load(write(tmp_path, CONFIG))
    acme = registry.get("acme")
    assert acme.tier.name == "premium"
    month = acme.quota("month", Metric.COST)
    assert month is not None and month.limit == 500 * 10**9 and month.hard
    # the tier's other rules are kept
    assert acme.quota("1m", Metric.REQUESTS) is not None
    assert acme.thresholds.warning == Decimal("0.9")
    assert acme.default_tags == {"costCenter": "cc-42", "applicationId": "chat"}
    assert registry.get("globex").thresholds.notice == Decimal("0.6")
    assert registry.tiers["free"].action_for(AlertLevel.EXHAUSTED).block


def test_authenticates_by_key_hash_only(tmp_path: Path) -> None:
    registry = TenantRegistry.load(write(tmp_path, CONFIG))
    tenant = registry.authenticate(KEY)
    assert tenant is not None and tenant.tenant_id == "acme"
    assert registry.authenticate(KEY + "x") is None
    assert registry.authenticate("") is None
    assert KEY not in CONFIG  # the secret itself is never stored


def test_unknown_tenant_is_a_typed_error(tmp_path: Path) -> None:
    with pytest.raises(UnknownTenantError):
        TenantRegistry.load(write(tmp_path, CONFIG)).get("nobody")


def test_default_tiers_exist_and_enterprise_never_blocks() -> None:
    registry = TenantRegistry([])
    assert set(registry.tiers) >= {"free", "standard", "premium", "enterprise"}
    enterprise = registry.tiers["enterprise"]
    assert not any(enterprise.action_for(level).block for level in AlertLevel)
    assert all(not rule.hard for rule in enterprise.quotas)
    assert registry.tiers["free"].reserve_from() is AlertLevel.WARNING


def test_json_config_works_too(tmp_path: Path) -> None:
    path = write(tmp_path, '{"tenants": [{"id": "t1", "tier": "free"}]}', "tenants.json")
    assert TenantRegistry.load(path).get("t1").tier.name == "free"


@pytest.mark.parametrize(
    ("snippet", "entry", "field"),
    [
        ('[[tenants]]\nid = "a"\ntier = "platinum"\n', "tenant a", "tier"),
        ('[[tenants]]\nid = "a b"\ntier = "free"\n', "tenant a b", "id"),
        ('[[tenants]]\nid = "a"\n', "tenant a", "tier"),
        (
            '[[tenants]]\nid = "a"\ntier = "free"\nquotas = [{window = "week", metric = "tokens", limit = 1}]\n',
            "tenant a",
            "quotas[0].window",
        ),
        (
            '[[tenants]]\nid = "a"\ntier = "free"\nquotas = [{window = "day", metric = "tokens", limit = -1}]\n',
            "tenant a",
            "quotas[0].limit",
        ),
        (
            '[[tenants]]\nid = "a"\ntier = "free"\nquotas = [{window = "day", metric = "cost_usd", limit = 1.5}]\n',
            "tenant a",
            "quotas[0].limit",
        ),
        (
            '[[tenants]]\nid = "a"\ntier = "free"\nquotas = [{window = "day", metric = "watts", limit = 1}]\n',
            "tenant a",
            "quotas[0].metric",
        ),
        ('[[tenants]]\nid = "a"\ntier = "free"\nthresholds = {warning = "0.3"}\n', "tenant a", "thresholds"),
        ('[[tenants]]\nid = "a"\ntier = "free"\napi_key_sha256 = ["plaintext-key"]\n', "tenant a", "api_key_sha256"),
        ('[[tenants]]\nid = "a"\ntier = "free"\ncolour = "red"\n', "tenant a", "colour"),
        ('[[tenants]]\nid = "a"\ntier = "free"\ntags = {"bad key" = "x"}\n', "tenant a", "tags.bad key"),
        ('[tiers.free.actions.warning]\ntopics = ["pager"]\n', "tier free", "actions.warning.topics"),
        ('[tiers.new]\nthresholds = {notice = "0.1"}\n', "tier new", "quotas"),
        ("[tiers.free]\nspike = {factor = 0.5}\n", "tier free", "spike.factor"),
        ('[tiers.free]\nspike = {factor = "0.5"}\n', "tier free", "spike.factor"),
        ('[tiers.free]\nspike = {factor = "lots"}\n', "tier free", "spike.factor"),
        ("[tiers.free]\nspike = {min_tokens = 0}\n", "tier free", "spike.min_tokens"),
        ('[tiers.free]\nspike = {min_tokens = "1000"}\n', "tier free", "spike.min_tokens"),
        ('[tiers.free]\nspike = {enabled = "no"}\n', "tier free", "spike.enabled"),
        ("[tiers.free]\nspike = {window = 5}\n", "tier free", "spike.window"),
        ("[tiers.free]\nspike = true\n", "tier free", "spike"),
        ('[[tenants]]\nid = "a"\ntier = "free"\n[[tenants]]\nid = "a"\ntier = "free"\n', "tenant a", "id"),
    ],
)
def test_config_errors_name_file_entry_and_field(tmp_path: Path, snippet: str, entry: str, field: str) -> None:
    path = write(tmp_path, snippet)
    with pytest.raises(ConfigError) as info:
        TenantRegistry.load(path)
    err = info.value
    assert (err.source, err.entry, err.field) == (str(path), entry, field)
    assert str(path) in str(err) and field in str(err)


def test_unreadable_and_unparseable_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        TenantRegistry.load(tmp_path / "missing.toml")
    with pytest.raises(ConfigError, match="not valid TOML"):
        TenantRegistry.load(write(tmp_path, "[[tenants]\n"))
