"""The operator CLI against a real Redis: usage, top, block/unblock, report, and its errors."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.redis_store import RedisStore
from shared.ports import MeteredEvent, StreamPosition, TenantBatch
from tenantmeter_cli.main import main

pytestmark = pytest.mark.integration

REGISTRY = """
[[tenants]]
id = "acme"
tier = "premium"
quotas = [{ window = "month", metric = "cost_usd", limit = "10.00" }]

[[tenants]]
id = "globex"
tier = "free"
"""


@pytest.fixture
def setup(tmp_path: Path, redis_client: Any, redis_url: str) -> tuple[list[str], datetime]:
    registry = tmp_path / "tenants.toml"
    registry.write_text(REGISTRY)
    now = datetime.now(UTC)
    store = RedisStore(redis_client)
    batches = []
    for tenant, n, cost in (("acme", 3, 2_500_000_000), ("globex", 1, 1_000)):
        events = tuple(
            MeteredEvent(
                tenant_id=tenant,
                event_id=f"{tenant}-{i}",
                occurred_at=now,
                position=StreamPosition("shardId-0", tenant, str(100 + i)),
                model="claude-3-5-haiku",
                cost_center="cc-1",
                application_id="chat",
                input_tokens=100,
                output_tokens=10,
                cost_nanos=cost,
            )
            for i in range(n)
        )
        batches.append(TenantBatch(tenant, events))
    outcomes = store.apply_usage(batches, now=now, dedupe_horizon=timedelta(hours=24))
    assert all(o.ok for o in outcomes)
    return ["--redis-url", redis_url, "--tenants", str(registry)], now


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_usage_shows_totals_quota_level_and_blocks(
    setup: tuple[list[str], datetime], capsys: pytest.CaptureFixture[str]
) -> None:
    flags, _ = setup
    code, out, _ = run(capsys, *flags, "usage", "acme", "--window", "month", "--json")
    row = json.loads(out)
    assert code == 0
    assert (row["requests"], row["input_tokens"], row["cost_usd"]) == (3, 300, "7.500000000")
    (quota,) = row["quotas"]
    assert (quota["level"], quota["used_pct"]) == ("notice", "75")
    assert row["blocked"] == []
    # an operator cut-off shows up, then lifts
    assert run(capsys, *flags, "block", "acme", "--reason", "card declined", "--for", "2h")[0] == 0
    row = json.loads(run(capsys, *flags, "usage", "acme", "--json")[1])
    assert row["blocked"][0]["reason"] == "card declined"
    code, out, _ = run(capsys, *flags, "unblock", "acme", "--json")
    assert (code, json.loads(out)["lifted"]) == (0, 1)
    assert json.loads(run(capsys, *flags, "usage", "acme", "--json")[1])["blocked"] == []


def test_top_ranks_by_cost(setup: tuple[list[str], datetime], capsys: pytest.CaptureFixture[str]) -> None:
    flags, _ = setup
    code, out, _ = run(capsys, *flags, "top", "--by", "cost", "--window", "day", "--json")
    rows = json.loads(out)
    assert code == 0
    assert [r["tenant"] for r in rows] == ["acme", "globex"]
    assert rows[0]["tier"] == "premium"


def test_report_writes_the_daily_csv(
    setup: tuple[list[str], datetime], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags, now = setup
    out_file = tmp_path / "day.csv"
    code, out, _ = run(capsys, *flags, "report", "--day", now.date().isoformat(), "--out", str(out_file))
    assert code == 0 and "wrote 2 rows" in out
    rows = list(csv.DictReader(out_file.open()))
    acme = next(r for r in rows if r["tenant_id"] == "acme")
    assert acme["requests"] == "3"
    assert acme["cost_center"] == "cc-1"


def test_errors_are_one_line_with_distinct_exit_codes(
    setup: tuple[list[str], datetime], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    flags, _ = setup
    code, _, err = run(capsys, *flags, "usage", "nobody")
    assert code == 2 and "unknown tenant 'nobody'" in err
    with pytest.raises(SystemExit) as info:
        main([*flags, "report", "--day", "2026-13-45", "--out", "-"])
    assert info.value.code == 2
    assert "not a date" in capsys.readouterr().err
    dead = ["--redis-url", f"unix://{tmp_path}/nothing-here.sock", "--tenants", flags[3]]
    code, _, err = run(capsys, *dead, "usage", "acme")
    assert code == 4 and "unreachable" in err and "Traceback" not in err
