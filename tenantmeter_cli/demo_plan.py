"""The demo's cast and script: which tenants exist, how each one behaves, and the independent ledger.

Pure: no I/O. The demo runner (``tenantmeter_cli.demo``) turns this plan into HTTP calls through the gateway
and instrumented SDK calls to a simulated Bedrock, and the ledger is what the reconciliation compares the
store against. The ledger prices usage with its own arithmetic straight from the catalog file's rates, not
with ``shared.pricing``, so a pricing bug shows up as a mismatch instead of cancelling out.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from importlib import resources
from typing import Any

from shared.tenants import hash_api_key


class Profile(StrEnum):
    STEADY = "steady"  # constant rate, stays well inside its quota
    GROWING = "growing"  # rate ramps up 10x: climbs notice -> warning -> critical
    SPIKE = "spike"  # quiet, then a burst far above its own baseline: a spike alert
    OVERSPEND = "overspend"  # gateway tenant racing at its hard quota: reserved admission stops it (429s)
    RUNAWAY = "runaway"  # SDK tenant calling Bedrock directly past its hard quota: blocked by the consumer
    BACKGROUND = "background"  # the rest of the crowd, random steady rates


class Path(StrEnum):
    GATEWAY = "gateway"
    SDK = "sdk"


MODELS = ("claude-3-5-haiku", "nova-lite", "nova-micro", "claude-3-haiku", "llama3-1-8b")
COST_CENTERS = ("cc-100", "cc-200", "cc-300")
APPS = ("support-bot", "search", "summarizer", "agent")
MAX_TOKENS = 300
MONTH_S = 31 * 24 * 3600
PROMPT_CHARS = 240


# (tenant id, tier, profile, path, quota headroom over its expected spend)
ROLES: tuple[tuple[str, str, Profile, Path, Decimal], ...] = (
    ("steady-co", "standard", Profile.STEADY, Path.GATEWAY, Decimal(2)),
    ("growth-inc", "premium", Profile.GROWING, Path.GATEWAY, Decimal("1.05")),
    ("spiky-labs", "standard", Profile.SPIKE, Path.SDK, Decimal(4)),
    ("overspend-ltd", "free", Profile.OVERSPEND, Path.GATEWAY, Decimal("0.35")),
    ("runaway-app", "free", Profile.RUNAWAY, Path.SDK, Decimal("0.35")),
)


@dataclass(frozen=True, slots=True)
class DemoTenant:
    tenant_id: str
    tier: str
    profile: Profile
    path: Path
    model: str
    api_key: str
    base_rate: float  # requests per second at the profile's 1x
    tags: Mapping[str, str]
    monthly_quota_usd: str

    def rate_at(self, progress: float) -> float:
        """Requests/s at ``progress`` in [0, 1] of the demo."""
        if self.profile is Profile.GROWING:
            return self.base_rate * (0.3 + 2.7 * progress)
        if self.profile is Profile.SPIKE:
            return self.base_rate * (8.0 if 0.55 <= progress < 0.7 else 0.5)
        if self.profile in (Profile.OVERSPEND, Profile.RUNAWAY):
            return self.base_rate * 2.0
        return self.base_rate


def request_max_cost_usd(model_rates: Mapping[str, Decimal]) -> Decimal:
    """The most one demo request can cost: prompt tokens (chars / 4) plus max_tokens of output."""
    input_tokens = math.ceil(PROMPT_CHARS / 4) + 10
    return (input_tokens * model_rates["input"] + MAX_TOKENS * model_rates["output"]) / 1_000_000


def plan_tenants(count: int, rate: float, duration_s: float, seed: int, rates: RateBook) -> list[DemoTenant]:
    """``count`` tenants sharing ``rate`` requests/s. The first five play the named roles; quotas are sized
    from the expected spend over ``duration_s`` so levels change within the run, whatever its length."""
    if count < len(ROLES):
        raise ValueError(f"--tenants must be at least {len(ROLES)} (one per role: {', '.join(r[0] for r in ROLES)})")
    rng = random.Random(seed)  # noqa: S311 - simulation, not security
    tiers = ("free", "standard", "premium", "enterprise")
    base_rate = rate / count
    tenants: list[DemoTenant] = []
    for i in range(count):
        if i < len(ROLES):
            tenant_id, tier, profile, path, headroom = ROLES[i]
            model = "claude-3-5-haiku"
        else:
            tenant_id = f"tenant-{i:03d}"
            tier = tiers[i % len(tiers)]
            profile, path = Profile.BACKGROUND, (Path.SDK if i % 3 == 0 else Path.GATEWAY)
            headroom = Decimal(rng.choice(("2", "3", "5")))
            model = rng.choice(MODELS)
        tenant_rate = base_rate * (0.6 + rng.random() * 0.8)
        max_cost = request_max_cost_usd(rates.rates_for(model))
        # Expected requests over the run, by the profile's average multiplier.
        mean_multiplier = {
            Profile.GROWING: 1.65,
            Profile.SPIKE: 0.5 + 7.5 * 0.15,
            Profile.OVERSPEND: 2.0,
            Profile.RUNAWAY: 2.0,
        }.get(profile, 1.0)
        # Quiet tenants get a budget for a whole month at their rate (so no projection fires: they really are
        # fine); the role players get one sized to the run, so their levels move while you watch.
        horizon_s = MONTH_S if profile in (Profile.STEADY, Profile.BACKGROUND) else duration_s
        expected = Decimal(str(round(tenant_rate * horizon_s * mean_multiplier, 3))) * max_cost * Decimal("0.6")
        quota = max(Decimal("0.000001"), (expected * headroom)).quantize(Decimal("0.000001"))
        key_seed = hashlib.sha256(f"{seed}:{tenant_id}".encode()).hexdigest()[:24]
        tenants.append(
            DemoTenant(
                tenant_id=tenant_id,
                tier=tier,
                profile=profile,
                path=path,
                model=model,
                api_key=f"tm_demo_{tenant_id}_{key_seed}",
                base_rate=tenant_rate,
                tags={
                    "costCenter": COST_CENTERS[i % len(COST_CENTERS)],
                    "applicationId": APPS[i % len(APPS)],
                    "environment": "demo",
                },
                monthly_quota_usd=str(quota),
            )
        )
    return tenants


def registry_document(tenants: list[DemoTenant]) -> dict[str, Any]:
    """The tenant registry for the demo: each tenant's monthly cost quota is hard (soft for enterprise)."""
    return {
        "tenants": [
            {
                "id": t.tenant_id,
                "name": t.tenant_id.replace("-", " ").title(),
                "tier": t.tier,
                "api_key_sha256": [hash_api_key(t.api_key)],
                "tags": dict(t.tags),
                "quotas": [
                    {
                        "window": "month",
                        "metric": "cost_usd",
                        "limit": t.monthly_quota_usd,
                        "hard": t.tier != "enterprise",
                    },
                    # roomy rate limits so that only the cost quota bites in the demo
                    {"window": "1m", "metric": "requests", "limit": 100_000, "hard": True},
                    {"window": "1m", "metric": "tokens", "limit": 100_000_000, "hard": True},
                ],
            }
            for t in tenants
        ]
    }


class RateBook:
    """Per-1M-token rates read straight from the catalog file (by model id or alias), for the ledger."""

    def __init__(self, catalog_json: str | None = None) -> None:
        text = catalog_json or resources.files("shared").joinpath("data/pricing.json").read_text(encoding="utf-8")
        raw = json.loads(text)
        self._rates: dict[str, dict[str, Decimal]] = {}
        for model in raw["models"]:
            latest = max((p for p in model["prices"] if not p.get("regions")), key=lambda p: p["effective_from"])
            rates = {k: Decimal(latest[k]) for k in ("input", "output", "cache_read", "cache_write")}
            for name in (model["id"], *model.get("aliases", [])):
                self._rates[name] = rates

    def rates_for(self, model: str) -> dict[str, Decimal]:
        return self._rates[model]


@dataclass
class Ledger:
    """What the simulator itself saw billed, per tenant: events and exact cost in nano-dollars."""

    rates: RateBook
    events: dict[str, int] = field(default_factory=dict)
    cost_nanos: dict[str, int] = field(default_factory=dict)
    outcomes: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(
        self,
        tenant_id: str,
        model: str,
        outcome: str,
        input_tokens: int = 0,
        output_tokens: int = 0,
        cache_read_tokens: int = 0,
        cache_write_tokens: int = 0,
    ) -> None:
        r = self.rates.rates_for(model)
        exact = (
            input_tokens * r["input"]
            + output_tokens * r["output"]
            + cache_read_tokens * r["cache_read"]
            + cache_write_tokens * r["cache_write"]
        ) / 1_000_000
        nanos = int((exact * 1_000_000_000).quantize(Decimal(1), rounding=ROUND_HALF_UP))
        with self._lock:
            self.events[tenant_id] = self.events.get(tenant_id, 0) + 1
            self.cost_nanos[tenant_id] = self.cost_nanos.get(tenant_id, 0) + nanos
            self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    @property
    def total_events(self) -> int:
        return sum(self.events.values())

    @property
    def total_cost_nanos(self) -> int:
        return sum(self.cost_nanos.values())


POISON_KINDS = ("not-json", "unknown-version", "unknown-tenant", "negative-tokens", "oversized", "bad-timestamp")


def poison_record(kind: str, n: int) -> bytes:
    """One bad record of each kind the consumer must quarantine (never drop, never block on)."""
    good = {
        "v": 1,
        "event_id": f"poison-{kind}-{n}",
        "occurred_at": "2026-01-01T00:00:00.000Z",
        "tenant_id": "steady-co",
        "source": "sdk",
        "model": "nova-micro",
        "model_id": "amazon.nova-micro-v1:0",
        "region": "us-east-1",
        "input_tokens": 1,
        "output_tokens": 1,
        "cache_read_tokens": 0,
        "cache_write_tokens": 0,
        "latency_ms": 1,
        "outcome": "success",
    }
    if kind == "not-json":
        return b"\x00\xffthis is not json"
    if kind == "unknown-version":
        good["v"] = 99
    elif kind == "unknown-tenant":
        good["tenant_id"] = "nobody-at-all"
    elif kind == "negative-tokens":
        good["input_tokens"] = -5
    elif kind == "oversized":
        good["tags"] = {"blob": "x" * 200}
        return json.dumps(good).encode() + b" " * 9000
    elif kind == "bad-timestamp":
        good["occurred_at"] = "last tuesday"
    else:
        raise ValueError(f"unknown poison kind {kind!r}")
    return json.dumps(good).encode()
