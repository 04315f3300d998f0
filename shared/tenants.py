"""Tenants and tiers: who may call, what they may spend, when they are warned, what happens at each level.

Loaded from a TOML or JSON file (see docs/tenants.example.toml). Every error names the file, the tenant or
tier, and the field. A tenant's quotas are its tier's, with per-tenant overrides of the same window and metric.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import tomllib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Final

from shared.decisions import AlertLevel, Metric, Thresholds
from shared.errors import ConfigError, SchemaError, UnknownTenantError
from shared.money import parse_usd
from shared.schema import TENANT_ID_RE, validate_tags
from shared.windows import WINDOWS, Window

SEVERITIES: Final = ("info", "warning", "critical")


@dataclass(frozen=True, slots=True)
class QuotaRule:
    """A limit on one metric over one window. ``limit`` is an integer: tokens, requests, or nano-dollars.
    A hard rule cuts the tenant off when exhausted (if its tier's actions say block); a soft one only alerts."""

    window: Window
    metric: Metric
    limit: int
    hard: bool = True

    @property
    def key(self) -> tuple[str, str]:
        return (self.window.name, self.metric.value)


@dataclass(frozen=True, slots=True)
class LevelAction:
    """What reaching a level does: which severity topics get the alert, whether the tenant's own contact
    topic is told, whether the gateway switches to reserved admission, whether a hard quota blocks."""

    topics: tuple[str, ...] = ()
    notify_tenant: bool = False
    reserve: bool = False
    block: bool = False


@dataclass(frozen=True, slots=True)
class SpikeRule:
    """A tier's spike alert: tokens in the last 5 minutes at least ``factor`` times the tenant's own baseline
    (the average 5 minutes of the previous clock hour) and at least ``min_tokens``; ``enabled`` false: never."""

    factor: Decimal = Decimal(5)
    min_tokens: int = 50_000
    enabled: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.factor, Decimal) or not self.factor.is_finite() or self.factor < 1:
            raise ConfigError('must be a number of at least 1, such as 5 or "2.5"', field="spike.factor")
        if type(self.min_tokens) is not int or self.min_tokens < 1:
            raise ConfigError("must be a whole number of tokens, at least 1", field="spike.min_tokens")

    def fires(self, recent: int, baseline: int) -> bool:
        """Exact: recent >= factor x max(baseline, 1), in integers."""
        num, den = self.factor.as_integer_ratio()
        return self.enabled and recent >= self.min_tokens and recent * den >= num * max(baseline, 1)


@dataclass(frozen=True, slots=True)
class Tier:
    name: str
    quotas: tuple[QuotaRule, ...]
    thresholds: Thresholds = field(default_factory=Thresholds)
    actions: Mapping[AlertLevel, LevelAction] = field(default_factory=dict)
    spike: SpikeRule = field(default_factory=SpikeRule)

    def action_for(self, level: AlertLevel) -> LevelAction:
        return self.actions.get(level, LevelAction())

    def reserve_from(self) -> AlertLevel | None:
        """The lowest level whose action asks for reserved admission."""
        levels = [lvl for lvl, act in self.actions.items() if act.reserve]
        return min(levels) if levels else None


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    tier: Tier
    name: str = ""
    api_key_hashes: frozenset[str] = frozenset()
    default_tags: Mapping[str, str] = field(default_factory=dict)
    quotas: tuple[QuotaRule, ...] = ()  # effective: tier's rules with this tenant's overrides
    thresholds: Thresholds = field(default_factory=Thresholds)
    contact_topic_arn: str = ""
    inference_profiles: Mapping[str, str] = field(default_factory=dict)  # model alias -> profile ARN

    def quota(self, window: str, metric: Metric) -> QuotaRule | None:
        for rule in self.quotas:
            if rule.window.name == window and rule.metric is metric:
                return rule
        return None


def hash_api_key(api_key: str) -> str:
    """Keys are stored only as SHA-256 hex digests (they are long random secrets, so no salt/KDF needed)."""
    return hashlib.sha256(api_key.encode()).hexdigest()


_DEFAULT_ACTIONS: Final = {
    AlertLevel.NOTICE: LevelAction(topics=("info",)),
    AlertLevel.WARNING: LevelAction(topics=("warning",), notify_tenant=True, reserve=True),
    AlertLevel.CRITICAL: LevelAction(topics=("critical",), notify_tenant=True, reserve=True),
    AlertLevel.EXHAUSTED: LevelAction(topics=("critical",), notify_tenant=True, reserve=True, block=True),
}


def _rule(window: str, metric: Metric, limit: int, hard: bool = True) -> QuotaRule:
    return QuotaRule(WINDOWS[window], metric, limit, hard)


def default_tiers() -> dict[str, Tier]:
    """Built-in tiers; a config file may redefine any of them or add more."""
    usd = parse_usd
    return {
        "free": Tier(
            "free",
            (
                _rule("month", Metric.COST, usd("10")),
                _rule("day", Metric.TOKENS, 500_000),
                _rule("1m", Metric.REQUESTS, 30),
                _rule("1m", Metric.TOKENS, 20_000),
            ),
            Thresholds(),
            dict(_DEFAULT_ACTIONS),
        ),
        "standard": Tier(
            "standard",
            (
                _rule("month", Metric.COST, usd("500")),
                _rule("1m", Metric.REQUESTS, 300),
                _rule("1m", Metric.TOKENS, 200_000),
            ),
            Thresholds(),
            dict(_DEFAULT_ACTIONS),
        ),
        "premium": Tier(
            "premium",
            (
                _rule("month", Metric.COST, usd("5000")),
                _rule("1m", Metric.REQUESTS, 1_000),
                _rule("1m", Metric.TOKENS, 1_000_000),
            ),
            Thresholds(),
            dict(_DEFAULT_ACTIONS),
        ),
        # Enterprise is never cut off automatically: it pages at 110% of a soft monthly budget.
        "enterprise": Tier(
            "enterprise",
            (
                _rule("month", Metric.COST, usd("50000"), hard=False),
                _rule("1m", Metric.REQUESTS, 5_000, hard=False),
            ),
            Thresholds(exhausted=Decimal("1.10")),
            {
                AlertLevel.NOTICE: LevelAction(topics=("info",)),
                AlertLevel.WARNING: LevelAction(topics=("info",), notify_tenant=True),
                AlertLevel.CRITICAL: LevelAction(topics=("warning",), notify_tenant=True),
                AlertLevel.EXHAUSTED: LevelAction(topics=("critical",), notify_tenant=True),
            },
        ),
    }


class TenantRegistry:
    """Tenants by id and by API-key hash."""

    def __init__(self, tenants: Iterable[Tenant], tiers: Mapping[str, Tier] | None = None) -> None:
        self.tiers: dict[str, Tier] = dict(tiers or default_tiers())
        self._tenants: dict[str, Tenant] = {}
        self._by_key: dict[str, Tenant] = {}
        # The tenant with this id, or None: the dict's own get (the consumer looks up every event's tenant).
        self.find: Callable[[str], Tenant | None] = self._tenants.get
        for tenant in tenants:
            if tenant.tenant_id in self._tenants:
                raise ConfigError("listed twice", entry=f"tenant {tenant.tenant_id}", field="id")
            self._tenants[tenant.tenant_id] = tenant
            for key_hash in tenant.api_key_hashes:
                if key_hash in self._by_key:
                    raise ConfigError(
                        "API key hash used by two tenants",
                        entry=f"tenant {tenant.tenant_id}",
                        field="api_key_sha256",
                    )
                self._by_key[key_hash] = tenant

    def __iter__(self) -> Iterator[Tenant]:
        return iter(self._tenants.values())

    def __len__(self) -> int:
        return len(self._tenants)

    def __contains__(self, tenant_id: object) -> bool:
        return tenant_id in self._tenants

    def get(self, tenant_id: str) -> Tenant:
        try:
            return self._tenants[tenant_id]
        except KeyError:
            raise UnknownTenantError(f"unknown tenant {tenant_id!r}") from None

    def authenticate(self, api_key: str) -> Tenant | None:
        """The tenant owning ``api_key``, or None. The key is hashed, then the stored digest compared in
        constant time, so neither lookup nor comparison leaks the key."""
        digest = hash_api_key(api_key)
        tenant = self._by_key.get(digest)
        if tenant is None:
            return None
        for stored in tenant.api_key_hashes:
            if hmac.compare_digest(stored, digest):
                return tenant
        return None  # pragma: no cover - unreachable: the index and the tenant agree

    def with_tenant(self, tenant: Tenant) -> TenantRegistry:
        """A copy with ``tenant`` added or replaced."""
        others = [t for t in self._tenants.values() if t.tenant_id != tenant.tenant_id]
        return TenantRegistry([*others, tenant], self.tiers)

    @classmethod
    def load(cls, path: str | Path) -> TenantRegistry:
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"cannot read tenant config: {exc.strerror}", source=source) from None
        try:
            raw = json.loads(text) if source.endswith(".json") else tomllib.loads(text)
        except (ValueError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(
                f"not valid {'JSON' if source.endswith('.json') else 'TOML'}: {exc}", source=source
            ) from None
        return cls.from_dict(raw, source)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<tenants>") -> TenantRegistry:
        if not isinstance(raw, Mapping):
            raise ConfigError("must be a table/object", source=source)
        tiers = default_tiers()
        tiers_raw = raw.get("tiers", {})
        if not isinstance(tiers_raw, Mapping):
            raise ConfigError("must be a table of tiers", source=source, field="tiers")
        for name, tier_raw in tiers_raw.items():
            tiers[name] = _parse_tier(name, tier_raw, tiers.get(name), source)
        tenants_raw = raw.get("tenants", [])
        if not isinstance(tenants_raw, list):
            raise ConfigError("must be a list of tenants", source=source, field="tenants")
        tenants = [_parse_tenant(i, t, tiers, source) for i, t in enumerate(tenants_raw)]
        try:
            return cls(tenants, tiers)
        except ConfigError as exc:
            raise ConfigError(exc.message, source=source, entry=exc.entry, field=exc.field) from None


# --- parsing ---------------------------------------------------------------------------------------------


def _expect(
    raw: Mapping[str, Any],
    key: str,
    kind: type | tuple[type, ...],
    *,
    source: str,
    entry: str,
    default: Any = None,
    required: bool = False,
) -> Any:
    if key not in raw:
        if required:
            raise ConfigError("is required", source=source, entry=entry, field=key)
        return default
    value = raw[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise ConfigError(f"must be {names}, got {type(value).__name__}", source=source, entry=entry, field=key)
    return value


def _parse_thresholds(raw: object, base: Thresholds, source: str, entry: str) -> Thresholds:
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a table", source=source, entry=entry, field="thresholds")
    values: dict[str, Decimal] = {}
    for name, value in raw.items():
        if name not in ("notice", "warning", "critical", "exhausted"):
            raise ConfigError("unknown level", source=source, entry=entry, field=f"thresholds.{name}")
        if isinstance(value, float | bool) or not isinstance(value, str | int):
            raise ConfigError(
                'must be a decimal string such as "0.8"',
                source=source,
                entry=entry,
                field=f"thresholds.{name}",
            )
        try:
            values[name] = Decimal(str(value))
        except InvalidOperation:
            raise ConfigError(
                f"not a number: {value!r}", source=source, entry=entry, field=f"thresholds.{name}"
            ) from None
    try:
        return replace(base, **values)
    except ConfigError as exc:
        raise ConfigError(exc.message, source=source, entry=entry, field=exc.field) from None


def _parse_quotas(raw: object, source: str, entry: str) -> list[QuotaRule]:
    if not isinstance(raw, list):
        raise ConfigError("must be a list of {window, metric, limit, hard}", source=source, entry=entry, field="quotas")
    rules: list[QuotaRule] = []
    seen: set[tuple[str, str]] = set()
    for i, item in enumerate(raw):
        where = f"quotas[{i}]"
        if not isinstance(item, Mapping):
            raise ConfigError("must be a table", source=source, entry=entry, field=where)
        window = item.get("window")
        if window not in WINDOWS:
            raise ConfigError(
                f"unknown window {window!r}; known: {', '.join(WINDOWS)}",
                source=source,
                entry=entry,
                field=f"{where}.window",
            )
        try:
            metric = Metric(str(item.get("metric")))
        except ValueError:
            raise ConfigError(
                f"unknown metric {item.get('metric')!r}; known: {', '.join(m.value for m in Metric)}",
                source=source,
                entry=entry,
                field=f"{where}.metric",
            ) from None
        limit_raw = item.get("limit")
        try:
            if metric is Metric.COST:
                if not isinstance(limit_raw, str | int) or isinstance(limit_raw, bool):
                    raise ValueError('must be a USD amount string such as "500.00"')
                limit = parse_usd(limit_raw, "limit")
            else:
                if type(limit_raw) is not int or limit_raw < 0:
                    raise ValueError(f"must be a non-negative integer, got {limit_raw!r}")
                limit = limit_raw
        except ValueError as exc:
            raise ConfigError(str(exc), source=source, entry=entry, field=f"{where}.limit") from None
        hard = item.get("hard", True)
        if not isinstance(hard, bool):
            raise ConfigError("must be true or false", source=source, entry=entry, field=f"{where}.hard")
        rule = QuotaRule(WINDOWS[str(window)], metric, limit, hard)
        if rule.key in seen:
            raise ConfigError(
                f"two quotas for window {window} and metric {metric.value}",
                source=source,
                entry=entry,
                field=where,
            )
        seen.add(rule.key)
        rules.append(rule)
    return rules


def _parse_actions(
    raw: object, base: Mapping[AlertLevel, LevelAction], source: str, entry: str
) -> dict[AlertLevel, LevelAction]:
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a table of level -> action", source=source, entry=entry, field="actions")
    actions = dict(base)
    for level_name, action_raw in raw.items():
        where = f"actions.{level_name}"
        try:
            level = AlertLevel.parse(str(level_name))
        except ValueError as exc:
            raise ConfigError(str(exc), source=source, entry=entry, field=where) from None
        if level is AlertLevel.OK or not isinstance(action_raw, Mapping):
            raise ConfigError(
                "must be a table for notice, warning, critical or exhausted",
                source=source,
                entry=entry,
                field=where,
            )
        topics = action_raw.get("topics", [])
        if not isinstance(topics, list) or any(t not in SEVERITIES for t in topics):
            raise ConfigError(
                f"topics must be a list drawn from {list(SEVERITIES)}",
                source=source,
                entry=entry,
                field=f"{where}.topics",
            )
        flags = {}
        for flag in ("notify_tenant", "reserve", "block"):
            value = action_raw.get(flag, False)
            if not isinstance(value, bool):
                raise ConfigError("must be true or false", source=source, entry=entry, field=f"{where}.{flag}")
            flags[flag] = value
        unknown = set(action_raw) - {"topics", "notify_tenant", "reserve", "block"}
        if unknown:
            raise ConfigError("unknown key", source=source, entry=entry, field=f"{where}.{sorted(unknown)[0]}")
        actions[level] = LevelAction(topics=tuple(topics), **flags)
    return actions


def _parse_tier(name: str, raw: object, base: Tier | None, source: str) -> Tier:
    entry = f"tier {name}"
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a table", source=source, entry=entry)
    unknown = set(raw) - {"quotas", "thresholds", "actions", "spike"}
    if unknown:
        raise ConfigError("unknown key", source=source, entry=entry, field=sorted(unknown)[0])
    if base is None and "quotas" not in raw:
        raise ConfigError("a new tier needs quotas", source=source, entry=entry, field="quotas")
    quotas = tuple(_parse_quotas(raw["quotas"], source, entry)) if "quotas" in raw else base.quotas  # type: ignore[union-attr]
    thresholds = base.thresholds if base else Thresholds()
    if "thresholds" in raw:
        thresholds = _parse_thresholds(raw["thresholds"], thresholds, source, entry)
    actions = base.actions if base else _DEFAULT_ACTIONS
    if "actions" in raw:
        actions = _parse_actions(raw["actions"], actions, source, entry)
    spike = base.spike if base else SpikeRule()
    if "spike" in raw:
        spike = _parse_spike(raw["spike"], spike, source, entry)
    return Tier(name, quotas, thresholds, dict(actions), spike)


def _parse_spike(raw: object, base: SpikeRule, source: str, entry: str) -> SpikeRule:
    if raw is False:
        return replace(base, enabled=False)
    if not isinstance(raw, Mapping):
        raise ConfigError(
            "must be a table {factor, min_tokens, enabled} or false", source=source, entry=entry, field="spike"
        )
    unknown = set(raw) - {"factor", "min_tokens", "enabled"}
    if unknown:
        raise ConfigError("unknown key", source=source, entry=entry, field=f"spike.{sorted(unknown)[0]}")
    values: dict[str, Any] = {}
    if "factor" in raw:
        factor = raw["factor"]
        if isinstance(factor, float | bool) or not isinstance(factor, str | int):
            raise ConfigError('must be a number such as 5 or "2.5"', source=source, entry=entry, field="spike.factor")
        try:
            values["factor"] = Decimal(str(factor))
        except InvalidOperation:
            raise ConfigError(f"not a number: {factor!r}", source=source, entry=entry, field="spike.factor") from None
    if "min_tokens" in raw:
        values["min_tokens"] = raw["min_tokens"]
    if "enabled" in raw:
        if not isinstance(raw["enabled"], bool):
            raise ConfigError("must be true or false", source=source, entry=entry, field="spike.enabled")
        values["enabled"] = raw["enabled"]
    try:
        return replace(base, **values)
    except ConfigError as exc:
        raise ConfigError(exc.message, source=source, entry=entry, field=exc.field) from None


_TENANT_KEYS: Final = frozenset(
    {
        "id",
        "name",
        "tier",
        "api_key_sha256",
        "tags",
        "quotas",
        "thresholds",
        "contact_topic_arn",
        "inference_profiles",
    }
)


def _parse_tenant(index: int, raw: object, tiers: Mapping[str, Tier], source: str) -> Tenant:
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a table", source=source, entry=f"tenants[{index}]")
    tenant_id = raw.get("id")
    entry = f"tenant {tenant_id}" if isinstance(tenant_id, str) else f"tenants[{index}]"
    if not isinstance(tenant_id, str) or not TENANT_ID_RE.fullmatch(tenant_id):
        raise ConfigError(
            "must be 1-64 characters of letters, digits, '.', '_' or '-'",
            source=source,
            entry=entry,
            field="id",
        )
    unknown = set(raw) - _TENANT_KEYS
    if unknown:
        raise ConfigError("unknown key", source=source, entry=entry, field=sorted(unknown)[0])
    tier_name = _expect(raw, "tier", str, source=source, entry=entry, required=True)
    if tier_name not in tiers:
        raise ConfigError(
            f"unknown tier {tier_name!r}; known: {', '.join(tiers)}", source=source, entry=entry, field="tier"
        )
    tier = tiers[tier_name]
    hashes = _expect(raw, "api_key_sha256", list, source=source, entry=entry, default=[])
    for h in hashes:
        if not isinstance(h, str) or len(h) != 64 or any(c not in "0123456789abcdef" for c in h):
            raise ConfigError(
                "must be lowercase SHA-256 hex digests of the API keys",
                source=source,
                entry=entry,
                field="api_key_sha256",
            )
    try:
        tags = validate_tags(_expect(raw, "tags", Mapping, source=source, entry=entry, default={}))
    except SchemaError as exc:
        raise ConfigError(exc.message, source=source, entry=entry, field=exc.field) from None
    overrides = _parse_quotas(raw["quotas"], source, entry) if "quotas" in raw else []
    merged = {rule.key: rule for rule in tier.quotas}
    merged.update({rule.key: rule for rule in overrides})
    thresholds = tier.thresholds
    if "thresholds" in raw:
        thresholds = _parse_thresholds(raw["thresholds"], thresholds, source, entry)
    profiles = _expect(raw, "inference_profiles", Mapping, source=source, entry=entry, default={})
    for alias, arn in profiles.items():
        if not isinstance(arn, str) or not arn.startswith("arn:"):
            raise ConfigError(
                "must map model alias to an inference profile ARN",
                source=source,
                entry=entry,
                field=f"inference_profiles.{alias}",
            )
    return Tenant(
        tenant_id=tenant_id,
        tier=tier,
        name=_expect(raw, "name", str, source=source, entry=entry, default=tenant_id),
        api_key_hashes=frozenset(hashes),
        default_tags=tags,
        quotas=tuple(merged.values()),
        thresholds=thresholds,
        contact_topic_arn=_expect(raw, "contact_topic_arn", str, source=source, entry=entry, default=""),
        inference_profiles=dict(profiles),
    )
