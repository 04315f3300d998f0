"""`meter tenants ...` and the demo's plan and ledger: pure file and arithmetic work, no services."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from shared.money import parse_usd
from shared.pricing import PriceCatalog, TokenUsage
from shared.tenants import TenantRegistry
from tenantmeter_cli.demo_plan import (
    POISON_KINDS,
    Ledger,
    Profile,
    RateBook,
    plan_tenants,
    poison_record,
    registry_document,
)
from tenantmeter_cli.main import main


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def registry(tmp_path: Path) -> str:
    path = tmp_path / "tenants.toml"
    path.write_text('[[tenants]]\nid = "acme"\ntier = "premium"\n')
    return str(path)


def test_add_generates_a_key_stores_only_its_hash_and_it_authenticates(
    registry: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        capsys,
        "--tenants",
        registry,
        "tenants",
        "add",
        "globex",
        "--tier",
        "free",
        "--tag",
        "costCenter=cc-9",
        "--json",
    )
    assert code == 0
    key = json.loads(out)["api_key"]
    assert key.startswith("tm_globex_")
    assert key not in Path(registry).read_text()
    loaded = TenantRegistry.load(registry)
    tenant = loaded.authenticate(key)
    assert tenant is not None and tenant.tenant_id == "globex"
    assert tenant.default_tags == {"costCenter": "cc-9"}


def test_set_quota_overrides_and_list_shows_it(registry: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        run(
            capsys,
            "--tenants",
            registry,
            "tenants",
            "set-quota",
            "acme",
            "--window",
            "month",
            "--metric",
            "cost_usd",
            "--limit",
            "123.45",
        )[0]
        == 0
    )
    code, out, _ = run(capsys, "--tenants", registry, "tenants", "list", "--json")
    assert code == 0
    (row,) = json.loads(out)
    assert "cost_usd/month $123.45" in row["quotas"]
    rule = TenantRegistry.load(registry).get("acme").quota("month", TenantRegistry([]).tiers["free"].quotas[0].metric)
    assert rule is not None and rule.limit == parse_usd("123.45")


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["tenants", "add", "acme", "--tier", "free"], "already exists"),
        (["tenants", "add", "new", "--tier", "platinum"], "unknown tier"),
        (["tenants", "add", "bad id", "--tier", "free"], "'id'"),
        (["tenants", "set-quota", "nobody", "--window", "day", "--metric", "tokens", "--limit", "5"], "no such tenant"),
        (["tenants", "set-quota", "acme", "--window", "day", "--metric", "tokens", "--limit", "5.5"], "integers"),
        (["tenants", "set-quota", "acme", "--window", "day", "--metric", "cost_usd", "--limit", "1e-20"], "nano"),
    ],
)
def test_bad_input_is_one_clear_line_and_nothing_is_written(
    registry: str, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    before = Path(registry).read_text()
    code, _, err = run(capsys, "--tenants", registry, *args)
    assert code == 2
    assert needle in err and "Traceback" not in err
    assert Path(registry).read_text() == before


def test_missing_registry_names_the_setting(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TM_TENANT_CONFIG", raising=False)
    code, _, err = run(capsys, "tenants", "list")
    assert code == 2 and "TM_TENANT_CONFIG" in err


def test_pricing_show_and_check(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "pricing", "show", "--json")
    rows = {r["model"]: r for r in json.loads(out)}
    assert code == 0 and rows["anthropic.claude-3-5-haiku-20241022-v1:0"]["input"] == "0.80"
    assert run(capsys, "pricing", "check")[0] == 0


def test_demo_plan_has_the_four_roles_and_valid_registry() -> None:
    rates = RateBook()
    plan = plan_tenants(12, 30.0, 20.0, 1, rates)
    assert [t.profile for t in plan[:5]] == [
        Profile.STEADY,
        Profile.GROWING,
        Profile.SPIKE,
        Profile.OVERSPEND,
        Profile.RUNAWAY,
    ]
    registry = TenantRegistry.from_dict(registry_document(plan))
    assert len(registry) == 12
    for tenant in plan:
        assert registry.authenticate(tenant.api_key).tenant_id == tenant.tenant_id  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="at least 5"):
        plan_tenants(3, 1.0, 1.0, 1, rates)


def test_ledger_agrees_with_the_catalog_to_the_nano_dollar() -> None:
    # The ledger does its own arithmetic; it must land where shared.pricing lands for the same usage.
    ledger = Ledger(RateBook())
    catalog = PriceCatalog.load()
    from datetime import UTC, datetime

    expected = 0
    for i, model in enumerate(("claude-3-5-haiku", "nova-micro", "llama3-1-8b", "titan-embed-text-v2")):
        usage = TokenUsage(1000 + i * 7, 333 * i, 11 * i, 5 * i)
        ledger.record(
            "t",
            model,
            "success",
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
        )
        expected += catalog.price_usage(usage, model, at=datetime.now(UTC)).cost_nanos
    assert ledger.total_cost_nanos == expected
    assert ledger.total_events == 4 and ledger.outcomes == {"success": 4}
    assert Decimal(ledger.total_cost_nanos) > 0


def test_every_poison_kind_is_really_bad() -> None:
    from shared.errors import SchemaError
    from shared.schema import decode_event

    for kind in POISON_KINDS:
        data = poison_record(kind, 1)
        if kind == "unknown-tenant":
            assert decode_event(data).tenant_id == "nobody-at-all"  # valid schema; unknown to the registry
            continue
        with pytest.raises(SchemaError):
            decode_event(data)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--redis-url", "foo", "usage", "acme"], "must start with redis://"),
        (["block", "acme", "--reason", "x", "--for", "1e999h"], "a duration up to a year"),
        (["block", "acme", "--reason", "x", "--for", "99999999999d"], "a duration up to"),
    ],
)
def test_hostile_flags_are_one_line_errors(
    registry: str, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    try:
        code = main(["--tenants", registry, *args])
    except SystemExit as exc:  # argparse's own usage errors
        code = int(exc.code or 0)
    err = capsys.readouterr().err
    assert code == 2
    assert needle in err and "Traceback" not in err
