from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.errors import PricingError
from shared.money import format_usd, nanos_to_usd, parse_usd, usd_to_nanos
from shared.pricing import (
    PER_TOKENS,
    CachedPricer,
    PriceCatalog,
    TokenUsage,
    canonical_model_id,
    rate_cost,
    rate_max_cost,
)

NOW = datetime(2026, 11, 23, tzinfo=UTC)
CATALOG = PriceCatalog.load()
M = 1_000_000


def price(model: str, **tokens: int) -> Decimal:
    return CATALOG.price_usage(TokenUsage(**tokens), model, at=NOW).exact_usd


@pytest.mark.parametrize(
    ("model", "tokens", "usd"),
    [
        # Prices are per 1M tokens: 1M input tokens of Claude 3.5 Haiku cost exactly $0.80.
        ("claude-3-5-haiku", {"input_tokens": M}, "0.80"),
        ("anthropic.claude-3-5-haiku-20241022-v1:0", {"output_tokens": M}, "4.00"),
        ("claude-3-5-haiku", {"cache_read_tokens": M, "cache_write_tokens": M}, "1.08"),
        ("claude-3-haiku", {"input_tokens": 1000, "output_tokens": 1000}, "0.0015"),
        ("claude-3-5-sonnet-v2", {"input_tokens": M, "output_tokens": M}, "18"),
        ("claude-3-7-sonnet", {"cache_read_tokens": M}, "0.30"),
        ("claude-sonnet-4", {"cache_write_tokens": M}, "3.75"),
        ("nova-micro", {"input_tokens": M, "output_tokens": M}, "0.175"),
        ("nova-micro", {"cache_read_tokens": M}, "0.00875"),
        ("nova-lite", {"input_tokens": 2 * M}, "0.12"),
        ("nova-pro", {"output_tokens": M}, "3.20"),
        ("llama3-1-70b", {"input_tokens": M, "output_tokens": M}, "1.44"),
        ("titan-embed-text-v2", {"input_tokens": M}, "0.02"),
    ],
)
def test_real_bedrock_prices_per_million(model: str, tokens: dict[str, int], usd: str) -> None:
    assert price(model, **tokens) == Decimal(usd)


@pytest.mark.parametrize(
    "model_id",
    [
        "us.anthropic.claude-3-5-haiku-20241022-v1:0",
        "eu.anthropic.claude-3-5-haiku-20241022-v1:0",
        "apac.anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0",
        "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
    ],
)
def test_cross_region_profiles_and_arns_resolve_to_the_base_model(model_id: str) -> None:
    assert canonical_model_id(model_id) == "anthropic.claude-3-5-haiku-20241022-v1:0"
    priced = CATALOG.price_usage(TokenUsage(input_tokens=M), model_id, at=NOW)
    assert (priced.exact_usd, priced.fallback) == (Decimal("0.80"), False)


def test_application_profile_arn_is_priced_by_its_requested_alias() -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"
    priced = CATALOG.price_usage(TokenUsage(input_tokens=M), arn, alias="claude-3-5-haiku", at=NOW)
    assert (priced.exact_usd, priced.fallback) == (Decimal("0.80"), False)


def test_unknown_model_is_never_free_and_is_flagged() -> None:
    priced = CATALOG.price_usage(TokenUsage(input_tokens=M, output_tokens=M), "acme.secret-model-v9", at=NOW)
    assert priced.fallback is True
    assert priced.exact_usd == Decimal("18")  # the declared fallback: Claude Sonnet 4 rates
    assert priced.cost_nanos > 0


def catalog_with(prices: list[dict[str, Any]]) -> PriceCatalog:
    return PriceCatalog.from_dict(
        {
            "per_tokens": M,
            "fallback": {"rule": "price_as", "model": "m"},
            "models": [{"id": "m", "aliases": ["mm"], "prices": prices}],
        }
    )


def test_price_change_applies_from_its_effective_date() -> None:
    cat = catalog_with(
        [
            {"effective_from": "2025-01-01", "input": "1", "output": "2", "cache_read": "0", "cache_write": "0"},
            {"effective_from": "2025-06-01", "input": "0.5", "output": "2", "cache_read": "0", "cache_write": "0"},
            {
                "effective_from": "2025-01-01",
                "regions": ["eu-west-1"],
                "input": "1.1",
                "output": "2.2",
                "cache_read": "0",
                "cache_write": "0",
            },
        ]
    )
    usage = TokenUsage(input_tokens=M)
    before = datetime(2025, 5, 31, 23, 59, 59, tzinfo=UTC)
    after = datetime(2025, 6, 1, tzinfo=UTC)
    assert cat.price_usage(usage, "mm", at=before).exact_usd == Decimal(1)
    assert cat.price_usage(usage, "mm", at=after).exact_usd == Decimal("0.5")
    assert cat.price_usage(usage, "mm", region="eu-west-1", at=after).exact_usd == Decimal("1.1")
    # before the first price: the earliest price, not zero
    assert cat.price_usage(usage, "mm", at=datetime(2020, 1, 1, tzinfo=UTC)).exact_usd == Decimal(1)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c: c.update(per_tokens=1000), "per_tokens"),
        (lambda c: c.update(fallback={"rule": "price_as", "model": "nope"}), "fallback model"),
        (lambda c: c["models"][0]["prices"][0].update(input=0.25), "never a float"),
        (lambda c: c["models"][0]["prices"][0].update(input="-1"), "non-negative"),
        (lambda c: c["models"][0]["prices"][0].pop("cache_read"), "cache_read"),
        (lambda c: c["models"][0]["prices"][0].update(effective_from="soon"), "effective_from"),
        (lambda c: c["models"].append(dict(c["models"][0])), "listed twice"),
    ],
)
def test_bad_catalog_names_the_problem(mutate: Any, message: str) -> None:
    raw: dict[str, Any] = {
        "per_tokens": M,
        "fallback": {"rule": "price_as", "model": "m"},
        "models": [
            {
                "id": "m",
                "prices": [
                    {"effective_from": "2025-01-01", "input": "1", "output": "1", "cache_read": "1", "cache_write": "1"}
                ],
            }
        ],
    }
    mutate(raw)
    with pytest.raises(PricingError, match=message):
        PriceCatalog.from_dict(raw)


def test_packaged_catalog_has_no_float_prices_and_every_alias_resolves() -> None:
    for model in CATALOG.models.values():
        for alias in model.aliases:
            assert CATALOG.resolve(alias) is model
        for rates in model.rates:
            assert all(isinstance(v, Decimal) for v in (rates.input, rates.output, rates.cache_read, rates.cache_write))


token_counts = st.integers(min_value=0, max_value=10_000_000)
usages = st.builds(TokenUsage, token_counts, token_counts, token_counts, token_counts)
models = st.sampled_from(sorted(CATALOG.models))


@given(a=usages, b=usages, model=models)
def test_cost_is_additive_and_never_negative(a: TokenUsage, b: TokenUsage, model: str) -> None:
    pa = CATALOG.price_usage(a, model, at=NOW)
    pb = CATALOG.price_usage(b, model, at=NOW)
    pab = CATALOG.price_usage(a + b, model, at=NOW)
    assert pa.exact_usd >= 0 and pa.cost_nanos >= 0
    assert pab.exact_usd == pa.exact_usd + pb.exact_usd  # exact in Decimal
    # the one rounding rule (half-up to a nano-dollar per event) moves a sum by at most 1 nano-dollar
    assert abs(pab.cost_nanos - (pa.cost_nanos + pb.cost_nanos)) <= 1


def test_money_helpers() -> None:
    assert usd_to_nanos(Decimal("0.0000000005")) == 1  # half-up
    assert usd_to_nanos(Decimal("0.00000000049")) == 0
    assert nanos_to_usd(800_000_000) == Decimal("0.8")
    assert parse_usd("500.00") == 500 * 10**9
    assert format_usd(460_123_456_789) == "$460.12"
    assert format_usd(31_234_567) == "$0.0312"  # small budgets stay readable
    assert format_usd(0) == "$0.00"
    with pytest.raises(ValueError, match="float"):
        parse_usd(0.1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="nano"):
        parse_usd("0.0000000001")


@settings(max_examples=200, deadline=None)
@given(
    model=st.sampled_from(
        ["claude-3-5-haiku", "nova-micro", "us.anthropic.claude-3-5-sonnet-20241022-v2:0", "my-endpoint"]
    ),
    counts=st.tuples(*[st.integers(0, 2_000_000)] * 4),
    day=st.dates(min_value=date(2023, 1, 1), max_value=date(2027, 12, 31)),
    region=st.sampled_from(["", "us-east-1", "eu-west-1"]),
)
def test_the_cached_integer_rates_price_exactly_like_the_catalog(
    model: str, counts: tuple[int, int, int, int], day: date, region: str
) -> None:
    # (aliases, cross-region ids, an unknown model on the fallback, regional prices, effective dates)
    catalog = PriceCatalog.load()
    pricer = CachedPricer(catalog)
    at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
    minute = int(at.timestamp()) // 60
    priced = catalog.price_usage(TokenUsage(*counts), model, alias="claude-3-haiku", region=region, at=at)
    for _ in range(2):  # looked up, then cached
        rate = pricer.rate(model, "claude-3-haiku", region, minute)
        assert rate_cost(rate, *counts) == priced.cost_nanos
        assert rate.fallback == priced.fallback
    # The most a request may cost: input at the dearer of input and cache-write, plus its output bound.
    rates = priced.rates
    bound = (counts[0] * max(rates.input, rates.cache_write) + counts[1] * rates.output) / PER_TOKENS
    assert rate_max_cost(rate, counts[0], counts[1]) == usd_to_nanos(bound)
