"""The price catalog and ``price_usage``: tokens to exact cost.

Prices are USD per 1,000,000 tokens (one AWS sample mixed up per-1K and per-1M and reported every cost 1000x
too low: see ../shared/FACTS.md). A model missing from the catalog is never priced $0: the catalog's declared
fallback prices it and the result is flagged ``fallback=True`` so the consumer can count and alert on it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal, InvalidOperation
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from shared.errors import PricingError
from shared.money import NANOS_PER_USD, usd_to_nanos
from shared.store_layout import clean_dimension

if TYPE_CHECKING:
    from shared.schema import UsageEvent

PER_TOKENS: Final = 1_000_000
TOKEN_KINDS: Final = ("input", "output", "cache_read", "cache_write")

# Cross-region (system) inference profile ids are the base model id behind a geography prefix.
_GEO_PREFIX_RE: Final = re.compile(r"^(?:us|us-gov|eu|apac|jp|au|ca|global)\.")
_ARN_MODEL_RE: Final = re.compile(r"^arn:aws[a-z-]*:bedrock:[^:]*:[^:]*:(?:foundation-model|inference-profile)/(.+)$")


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_read_tokens + other.cache_read_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


@dataclass(frozen=True, slots=True)
class Rates:
    """USD per 1M tokens for each token kind, valid from ``effective_from`` (UTC day)."""

    effective_from: date
    input: Decimal
    output: Decimal
    cache_read: Decimal
    cache_write: Decimal
    regions: frozenset[str] = frozenset()

    def exact_cost(self, usage: TokenUsage) -> Decimal:
        total = (
            usage.input_tokens * self.input
            + usage.output_tokens * self.output
            + usage.cache_read_tokens * self.cache_read
            + usage.cache_write_tokens * self.cache_write
        )
        return total / PER_TOKENS


@dataclass(frozen=True, slots=True)
class ModelPricing:
    model_id: str
    name: str
    provider: str
    aliases: tuple[str, ...]
    rates: tuple[Rates, ...]  # sorted by effective_from

    def rates_at(self, at: datetime, region: str = "") -> Rates | None:
        """The rates in force at ``at``: the region's own entries when it has any, else the regionless
        ones; of those, the latest that has taken effect. None before the model's first price."""
        day = at.astimezone(UTC).date()
        regional = [r for r in self.rates if region and region in r.regions]
        candidates = regional or [r for r in self.rates if not r.regions]
        in_force = [r for r in candidates if r.effective_from <= day]
        return in_force[-1] if in_force else None


@dataclass(frozen=True, slots=True)
class PricedUsage:
    """The cost of one usage: exact USD, its nano-dollar integer (the one rounding), and how it was priced."""

    model_id: str  # the catalog model whose rates were applied
    exact_usd: Decimal
    cost_nanos: int
    fallback: bool  # True: the model was unknown and the catalog's fallback rule priced it
    rates: Rates


def canonical_model_id(model: str) -> str:
    """Strip ARN wrapping and a cross-region geography prefix: ``us.anthropic.x`` -> ``anthropic.x``."""
    match = _ARN_MODEL_RE.match(model)
    if match:
        model = match.group(1)
    return _GEO_PREFIX_RE.sub("", model, count=1)


class PriceCatalog:
    def __init__(self, models: Iterable[ModelPricing], fallback_model: str, source: str = "<catalog>") -> None:
        self.source = source
        self.models: dict[str, ModelPricing] = {}
        self._index: dict[str, ModelPricing] = {}
        for model in models:
            if model.model_id in self.models:
                raise PricingError(f"{source}: model {model.model_id!r} listed twice")
            self.models[model.model_id] = model
            for key in (model.model_id, *model.aliases):
                if key in self._index:
                    raise PricingError(f"{source}: alias {key!r} names two models")
                self._index[key] = model
        if fallback_model not in self.models:
            raise PricingError(f"{source}: fallback model {fallback_model!r} is not in the catalog")
        self.fallback_model = self.models[fallback_model]

    @classmethod
    def load(cls, path: str | Path | None = None) -> PriceCatalog:
        """Load a catalog file; with no path, the catalog packaged in shared/data/pricing.json."""
        if path is None:
            text = resources.files("shared").joinpath("data/pricing.json").read_text(encoding="utf-8")
            source = "shared/data/pricing.json"
        else:
            source = str(path)
            try:
                text = Path(path).read_text(encoding="utf-8")
            except OSError as exc:
                raise PricingError(f"{source}: cannot read price catalog: {exc.strerror}") from None
        try:
            raw = json.loads(text)
        except ValueError as exc:
            raise PricingError(f"{source}: not valid JSON: {exc}") from None
        return cls.from_dict(raw, source)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], source: str = "<catalog>") -> PriceCatalog:
        if not isinstance(raw, Mapping):
            raise PricingError(f"{source}: must be a JSON object")
        if raw.get("per_tokens") != PER_TOKENS:
            raise PricingError(f"{source}: field 'per_tokens' must be {PER_TOKENS} (prices are per 1M tokens)")
        fallback = raw.get("fallback")
        if not isinstance(fallback, Mapping) or fallback.get("rule") != "price_as":
            raise PricingError(f"{source}: field 'fallback' must be {{'rule': 'price_as', 'model': ...}}")
        models_raw = raw.get("models")
        if not isinstance(models_raw, list) or not models_raw:
            raise PricingError(f"{source}: field 'models' must be a non-empty list")
        models = [_parse_model(entry, source, i) for i, entry in enumerate(models_raw)]
        return cls(models, str(fallback.get("model")), source)

    def resolve(self, model: str) -> ModelPricing | None:
        """The catalog entry for a model id, alias, ARN or cross-region profile id; None if unknown."""
        return self._index.get(model) or self._index.get(canonical_model_id(model))

    def price_usage(
        self, usage: TokenUsage, model_id: str, *, alias: str = "", region: str = "", at: datetime
    ) -> PricedUsage:
        """Price ``usage`` of ``model_id`` (falling back to the requested ``alias``, e.g. when the id is an
        application inference profile ARN) at event time ``at``."""
        entry = self.resolve(model_id) or (self.resolve(alias) if alias else None)
        fallback = entry is None
        if entry is None:
            entry = self.fallback_model
        # An event stamped before a model's first listed price (clock skew, a late catalog entry) takes the
        # earliest price rather than nothing.
        rates = entry.rates_at(at, region) or entry.rates[0]
        exact = rates.exact_cost(usage)
        return PricedUsage(entry.model_id, exact, usd_to_nanos(exact), fallback, rates)


# --- hot paths: integer rates ------------------------------------------------------------------------

# A rate in USD per 1M tokens is nano-dollars per token times 10**9 / 10**6 = 10**3: this power of ten.
_NANO_SCALE: Final = len(str(NANOS_PER_USD // PER_TOKENS)) - 1
_MINUTES_PER_DAY: Final = 1440
_SECONDS_PER_DAY: Final = 86400
_CACHE_LIMIT: Final = 10_000  # (model, alias, region, day) entries; all dropped when full (a day rolls over)


class PriceRate(NamedTuple):
    """One (model, alias, region, day)'s rates as integers: ``cost`` applies them exactly as shared.pricing does."""

    model: str  # the model dimension: the catalog model that priced it; an unknown model keeps its own id
    input: int  # USD per 1M tokens, times 10**scale
    output: int
    cache_read: int
    cache_write: int
    multiply: int  # nano-dollars = sum * multiply (scale <= 3) ...
    divide: int  # ... or sum / divide rounded half-up (scale > 3)
    fallback: bool


def _scaled(value: Decimal, scale: int) -> int:
    """``value * 10**scale`` exactly (from the digits: no Decimal context, so no rounding at any size)."""
    sign, digits, exponent = value.as_tuple()
    magnitude: int = int("".join(map(str, digits))) * 10 ** (int(exponent) + scale)
    return -magnitude if sign else magnitude


def integer_rates(model: str, rates: Rates, fallback: bool) -> PriceRate:
    """The catalog's Decimal rates as integers over one power of ten, so an event's cost is integer arithmetic:
    exact USD = sum(tokens_k * rate_k) / 1M, so nano-dollars = sum(tokens_k * R_k) * 10**(3 - scale) where
    R_k = rate_k * 10**scale; for scale > 3 that is a division, rounded half-up (the one rounding rule)."""
    values = (rates.input, rates.output, rates.cache_read, rates.cache_write)
    scale = max(0, *(-int(v.as_tuple().exponent) for v in values))  # rates are finite (the catalog checks)
    a, b, c, d = (_scaled(v, scale) for v in values)
    if scale <= _NANO_SCALE:
        return PriceRate(model, a, b, c, d, 10 ** (_NANO_SCALE - scale), 0, fallback)
    return PriceRate(model, a, b, c, d, 0, 10 ** (scale - _NANO_SCALE), fallback)


def rate_cost(rate: PriceRate, i: int, o: int, r: int, w: int) -> int:
    """Nano-dollars of one event: its exact cost rounded half-up to a whole nano-dollar (tokens are >= 0)."""
    return _nanos(rate, i * rate.input + o * rate.output + r * rate.cache_read + w * rate.cache_write)


def rate_max_cost(rate: PriceRate, input_tokens: int, max_output_tokens: int) -> int:
    """The most a request can cost, in nano-dollars: its input bound priced at the dearer of the input and
    cache-write rates (a backend may bill prompt tokens as cache writes), plus ``max_output_tokens`` of output."""
    return _nanos(rate, input_tokens * max(rate.input, rate.cache_write) + max_output_tokens * rate.output)


def _nanos(rate: PriceRate, total: int) -> int:
    """A sum of tokens x scaled rates in nano-dollars, rounded half-up (the one rounding rule)."""
    if rate.multiply:
        return total * rate.multiply
    return (2 * total + rate.divide) // (2 * rate.divide)


class CachedPricer:
    """``PriceCatalog.price_usage`` for hot paths (the consumer prices every event, the gateway every request):
    the catalog lookup memoised per (model, alias, region, UTC day) and the rates turned into integers
    (``integer_rates``): same rates, same one rounding, no Decimal per event. ``cache`` may be read directly
    (a miss goes through ``rate``); entries are only ever added, or all dropped at once when it is full."""

    def __init__(self, catalog: PriceCatalog) -> None:
        self.catalog = catalog
        self.cache: dict[tuple[str, str, str, int], PriceRate] = {}  # (model id, alias, region, unix day)

    def rate(self, model_id: str, alias: str, region: str, minute: int) -> PriceRate:
        """The rates in force for an event of unix minute ``minute``."""
        key = (model_id, alias, region, minute // _MINUTES_PER_DAY)
        hit = self.cache.get(key)
        if hit is None:
            at = datetime.fromtimestamp(key[3] * _SECONDS_PER_DAY, UTC)
            priced = self.catalog.price_usage(TokenUsage(), model_id, alias=alias, region=region, at=at)
            model = canonical_model_id(model_id) if priced.fallback else priced.model_id
            hit = integer_rates(clean_dimension(model), priced.rates, priced.fallback)
            if len(self.cache) > _CACHE_LIMIT:
                self.cache.clear()
            self.cache[key] = hit
        return hit

    def price(self, event: UsageEvent) -> tuple[str, int, bool]:
        """(model dimension, cost in nano-dollars, priced by fallback)."""
        rate = self.rate(event.model_id, event.model, event.region, int(event.occurred_at.timestamp()) // 60)
        cost = rate_cost(
            rate, event.input_tokens, event.output_tokens, event.cache_read_tokens, event.cache_write_tokens
        )
        return rate.model, cost, rate.fallback


def _decimal(value: object, where: str) -> Decimal:
    if not isinstance(value, str | int) or isinstance(value, bool):
        raise PricingError(f'{where}: must be a decimal string such as "0.80" (never a float)')
    try:
        result = Decimal(str(value))
    except InvalidOperation:
        raise PricingError(f"{where}: not a decimal number: {value!r}") from None
    if not result.is_finite() or result < 0:
        raise PricingError(f"{where}: must be a non-negative number, got {value!r}")
    return result


def _parse_model(entry: object, source: str, index: int) -> ModelPricing:
    if not isinstance(entry, Mapping):
        raise PricingError(f"{source}: models[{index}] must be an object")
    model_id = entry.get("id")
    if not isinstance(model_id, str) or not model_id:
        raise PricingError(f"{source}: models[{index}]: field 'id' is required")
    where = f"{source}: model {model_id!r}"
    aliases = entry.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) and a for a in aliases):
        raise PricingError(f"{where}: field 'aliases' must be a list of strings")
    prices = entry.get("prices")
    if not isinstance(prices, list) or not prices:
        raise PricingError(f"{where}: field 'prices' must be a non-empty list")
    rates: list[Rates] = []
    for j, price in enumerate(prices):
        pwhere = f"{where} prices[{j}]"
        if not isinstance(price, Mapping):
            raise PricingError(f"{pwhere}: must be an object")
        try:
            since = date.fromisoformat(str(price.get("effective_from")))
        except ValueError:
            raise PricingError(f"{pwhere}: field 'effective_from' must be a date YYYY-MM-DD") from None
        regions = price.get("regions", [])
        if not isinstance(regions, list) or not all(isinstance(r, str) for r in regions):
            raise PricingError(f"{pwhere}: field 'regions' must be a list of region names")
        values = {}
        for kind in TOKEN_KINDS:
            if kind not in price:
                raise PricingError(f"{pwhere}: field {kind!r} is required (USD per 1M tokens)")
            values[kind] = _decimal(price[kind], f"{pwhere} field {kind!r}")
        rates.append(Rates(since, regions=frozenset(regions), **values))
    rates.sort(key=lambda r: (r.effective_from, bool(r.regions)))
    seen = set()
    for r in rates:
        key = (r.effective_from, r.regions)
        if key in seen:
            raise PricingError(f"{where}: two prices from {r.effective_from} for the same regions")
        seen.add(key)
    return ModelPricing(
        model_id=model_id,
        name=str(entry.get("name", model_id)),
        provider=str(entry.get("provider", "")),
        aliases=tuple(aliases),
        rates=tuple(rates),
    )
