"""`meter pricing sync` against botocore's Stubber: requests and responses are validated against the real
`pricing` service model, and the PriceList entries are shaped like the real ones (aws/aws-cli#9567 for the
AmazonBedrock offer; Marketplace rows as public parsers of AmazonBedrockFoundationModels show them)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import botocore.session
import pytest
from botocore.stub import Stubber

from shared.pricing import PriceCatalog, TokenUsage
from tenantmeter_cli.pricing_sync import (
    IssueKind,
    PriceIssue,
    PriceListScan,
    PricingSyncError,
    QuotedPrice,
    default_catalog_path,
    format_usd,
    parse_price_list_item,
    per_million,
    plan_price_sync,
    read_catalog,
    render_json,
    render_text,
    sync_pricing,
    tokens_per_unit,
)

TODAY = date(2026, 11, 23)
FILTERS = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": "us-east-1"}]


# --- realistic PriceList entries ----------------------------------------------------------------------------


def native_row(
    model: str,
    inference_type: str,
    usagetype: str,
    usd: str,
    *,
    unit: str = "1K tokens",
    provider: str = "Anthropic",
    feature: str = "On-demand Inference",
    sku: str = "3G679R3Y8YSQSJTA",
) -> str:
    """An AmazonBedrock offer entry, shaped like the one quoted in aws/aws-cli#9567."""
    term = f"{sku}.JRTCKXETXF"
    return json.dumps(
        {
            "product": {
                "productFamily": "Amazon Bedrock",
                "attributes": {
                    "regionCode": "us-east-1",
                    "inferenceType": inference_type,
                    "servicecode": "AmazonBedrock",
                    "feature": feature,
                    "provider": provider,
                    "usagetype": usagetype,
                    "locationType": "AWS Region",
                    "location": "US East (N. Virginia)",
                    "model": model,
                    "servicename": "Amazon Bedrock",
                    "operation": "",
                },
                "sku": sku,
            },
            "serviceCode": "AmazonBedrock",
            "terms": {
                "OnDemand": {
                    term: {
                        "priceDimensions": {
                            f"{term}.6YS6EN2CT7": {
                                "unit": unit,
                                "endRange": "Inf",
                                "description": f"${usd} per {unit} for {usagetype} in US East (N. Virginia)",
                                "appliesTo": [],
                                "rateCode": f"{term}.6YS6EN2CT7",
                                "beginRange": "0",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2025-06-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20250618225550",
            "publicationDate": "2025-06-18T22:55:50Z",
        }
    )


def marketplace_row(listing: str, usagetype: str, usd: str, description: str, *, sku: str = "MPSKU0000001") -> str:
    """An AmazonBedrockFoundationModels entry: opaque unit "Units", the scale only in the description."""
    term = f"{sku}.JRTCKXETXF"
    return json.dumps(
        {
            "product": {
                "productFamily": "",
                "attributes": {
                    "regionCode": "us-east-1",
                    "servicecode": "AmazonBedrockFoundationModels",
                    "usagetype": usagetype,
                    "locationType": "AWS Region",
                    "location": "US East (N. Virginia)",
                    "servicename": f"{listing} (Amazon Bedrock Edition)",
                    "operation": "Usage",
                },
                "sku": sku,
            },
            "serviceCode": "AmazonBedrockFoundationModels",
            "terms": {
                "OnDemand": {
                    term: {
                        "priceDimensions": {
                            f"{term}.6YS6EN2CT7": {
                                "unit": "Units",
                                "endRange": "Inf",
                                "description": f"AWS Marketplace software usage|us-east-1|{description}",
                                "appliesTo": [],
                                "rateCode": f"{term}.6YS6EN2CT7",
                                "beginRange": "0",
                                "pricePerUnit": {"USD": usd},
                            }
                        },
                        "sku": sku,
                        "effectiveDate": "2025-06-01T00:00:00Z",
                        "offerTermCode": "JRTCKXETXF",
                        "termAttributes": {},
                    }
                }
            },
            "version": "20250618225550",
            "publicationDate": "2025-06-18T22:55:50Z",
        }
    )


# AmazonBedrock, page 1 of 2: per-1K prices. Claude 2.0 and Claude 3 Haiku input agree with the catalog;
# Claude 3 Haiku output went from $1.25 to $1.50 per 1M; a batch row and an image row are not token prices.
NATIVE_PAGE_1 = [
    native_row("Claude 2.0", "Input tokens", "USE1-Claude2.0-input-tokens", "0.0080000000", sku="SKU2IN"),
    native_row("Claude 2.0", "Output tokens", "USE1-Claude2.0-output-tokens", "0.0240000000", sku="SKU2OUT"),
    native_row("Claude 3 Haiku", "Input tokens", "USE1-Claude3Haiku-input-tokens", "0.0002500000", sku="SKU3HIN"),
    native_row("Claude 3 Haiku", "Output tokens", "USE1-Claude3Haiku-output-tokens", "0.0015000000", sku="SKU3HOUT"),
    native_row(
        "Claude 3 Haiku",
        "input tokens batch",
        "USE1-Claude3Haiku-input-tokens-batch",
        "0.0001250000",
        feature="Batch Inference",
        sku="SKU3HBATCH",
    ),
    native_row("Nova Canvas", "T2I 1024 Standard", "USE1-NovaCanvas-T2I-1024-Standard", "0.04", unit="Image"),
]
# Page 2: a per-1M quote (Nova Micro, agrees), an unrecognised unit (Llama), and two models not in the catalog.
NATIVE_PAGE_2 = [
    native_row(
        "Nova Micro", "Input tokens", "USE1-NovaMicro-input-tokens", "0.0350000000", unit="1M tokens", provider=""
    ),
    native_row(
        "Llama 3.1 8B Instruct",
        "Output tokens",
        "USE1-Llama3-1-8B-output-tokens",
        "0.0002200000",
        unit="Characters",
        provider="Meta",
        sku="SKULLAMA",
    ),
    native_row("Claude 2.1", "Input tokens", "USE1-Claude2.1-input-tokens", "0.0080000000"),
    native_row("Jamba 1.5 Large", "Input tokens", "USE1-Jamba1.5Large-input-tokens", "0.0020000000", provider="AI21"),
]
# Marketplace: per-1M prices. Claude Sonnet 4 agrees on all four kinds; Claude 3.5 Haiku input went from
# $0.80 to $1.00. The global-routing row is not the in-region price and is ignored.
MARKETPLACE_PAGE = [
    marketplace_row("Claude Sonnet 4", "USE1-MP:USE1_InputTokenCount-Units", "3.0000000000", "Million Input Tokens"),
    marketplace_row(
        "Claude Sonnet 4", "USE1-MP:USE1_OutputTokenCount-Units", "15.0000000000", "Million Response Tokens"
    ),
    marketplace_row(
        "Claude Sonnet 4",
        "USE1-MP:USE1_CacheReadInputTokenCount-Units",
        "0.3000000000",
        "Million Cache Read Input Tokens",
    ),
    marketplace_row(
        "Claude Sonnet 4",
        "USE1-MP:USE1_CacheWriteInputTokenCount-Units",
        "3.7500000000",
        "Million Cache Write Input Tokens",
    ),
    marketplace_row(
        "Claude Sonnet 4", "USE1-MP:USE1_InputTokenCount_Global-Units", "2.7000000000", "Million Input Tokens Global"
    ),
    marketplace_row(
        "Claude 3.5 Haiku",
        "USE1-MP:USE1_InputTokenCount-Units",
        "1.0000000000",
        "Million Input Tokens",
        sku="MPHAIKU35IN",
    ),
]


def request(service_code: str, token: str | None = None) -> dict[str, Any]:
    params: dict[str, Any] = {"ServiceCode": service_code, "Filters": FILTERS, "FormatVersion": "aws_v1"}
    if token:
        params["NextToken"] = token
    return params


@pytest.fixture
def client() -> Any:
    session = botocore.session.Session()
    return session.create_client(
        "pricing", region_name="us-east-1", aws_access_key_id="testing", aws_secret_access_key="testing"
    )


@pytest.fixture
def stubbed(client: Any) -> Iterator[Any]:
    """The pricing client answering the three pages above, in the order the paginator asks for them."""
    with Stubber(client) as stubber:
        stubber.add_response(
            "get_products",
            {"FormatVersion": "aws_v1", "PriceList": NATIVE_PAGE_1, "NextToken": "page-2"},
            request("AmazonBedrock"),
        )
        stubber.add_response(
            "get_products",
            {"FormatVersion": "aws_v1", "PriceList": NATIVE_PAGE_2},
            request("AmazonBedrock", "page-2"),
        )
        stubber.add_response(
            "get_products",
            {"FormatVersion": "aws_v1", "PriceList": MARKETPLACE_PAGE},
            request("AmazonBedrockFoundationModels"),
        )
        yield client
        stubber.assert_no_pending_responses()


@pytest.fixture
def catalog_file(tmp_path: Path) -> Path:
    path = tmp_path / "pricing.json"
    path.write_bytes(default_catalog_path().read_bytes())
    return path


# --- the whole command --------------------------------------------------------------------------------------


def test_dry_run_reports_differences_per_1m_and_writes_nothing(stubbed: Any, catalog_file: Path) -> None:
    # GIVEN the catalog and a Price List with two changed prices, spread over two pages and two offers
    before = catalog_file.read_bytes()
    # WHEN the sync runs without confirmation
    result = sync_pricing(stubbed, catalog_file, today=TODAY)
    # THEN both changes are reported per 1M tokens, nothing is written
    assert [(d.model_id, d.token_kind, d.catalog_usd_per_1m, d.aws_usd_per_1m) for d in result.diffs] == [
        ("anthropic.claude-3-5-haiku-20241022-v1:0", "input", Decimal("0.80"), Decimal("1.0000000000")),
        ("anthropic.claude-3-haiku-20240307-v1:0", "output", Decimal("1.25"), Decimal("1.5000000000")),
    ]
    assert catalog_file.read_bytes() == before
    assert result.written is False
    # AND the per-1K quotes converted exactly: Claude 2.0 $0.008/1K is the catalog's $8.00/1M, so it agrees
    assert result.unchanged == 8  # claude-2 x2, claude-3-haiku input, nova-micro input, sonnet-4 x4
    # AND models AWS lists but the catalog lacks are listed, not added; the unknown unit is reported
    assert result.not_in_catalog == ("Claude 2.1", "Jamba 1.5 Large")
    assert [(i.kind, i.product) for i in result.issues] == [(IssueKind.UNKNOWN_UNIT, "Llama 3.1 8B Instruct")]
    assert "Characters" in result.issues[0].detail
    assert result.rows_read == 16 and result.rows_ignored == 3  # batch, image, global
    assert result.exit_code == 1  # the unknown unit needs a human


def test_confirm_appends_exactly_the_new_entries_and_the_file_still_loads(stubbed: Any, catalog_file: Path) -> None:
    # GIVEN the same Price List
    before = json.loads(catalog_file.read_text(encoding="utf-8"))
    # WHEN the sync runs confirmed
    result = sync_pricing(stubbed, catalog_file, today=TODAY, confirm=True)
    # THEN exactly two entries were appended, dated today, the unchanged kinds copied verbatim
    assert result.written is True
    after = json.loads(catalog_file.read_text(encoding="utf-8"))
    expected = json.loads(json.dumps(before))
    for model in expected["models"]:
        if model["id"] == "anthropic.claude-3-haiku-20240307-v1:0":
            model["prices"].append(
                {
                    "effective_from": "2026-11-23",
                    "input": "0.25",
                    "output": "1.50",
                    "cache_read": "0.25",
                    "cache_write": "0.25",
                }
            )
        if model["id"] == "anthropic.claude-3-5-haiku-20241022-v1:0":
            model["prices"].append(
                {
                    "effective_from": "2026-11-23",
                    "input": "1.00",
                    "output": "4.00",
                    "cache_read": "0.08",
                    "cache_write": "1.00",
                }
            )
    assert after == expected
    # AND the formatting is the file's own: indent 2, one trailing newline
    text = catalog_file.read_text(encoding="utf-8")
    assert text == json.dumps(after, indent=2, ensure_ascii=False) + "\n"
    # AND it loads; the old price still applies before today, the new one from today
    catalog = PriceCatalog.load(catalog_file)
    usage = TokenUsage(output_tokens=1_000_000)
    yesterday = datetime(2026, 11, 22, 23, 59, tzinfo=UTC)
    today = datetime(2026, 11, 23, 0, 0, tzinfo=UTC)
    assert catalog.price_usage(usage, "claude-3-haiku", at=yesterday).exact_usd == Decimal("1.25")
    assert catalog.price_usage(usage, "claude-3-haiku", at=today).exact_usd == Decimal("1.50")


def test_second_run_after_writing_finds_nothing_to_change(client: Any, catalog_file: Path) -> None:
    # GIVEN a clean Price List (no unknown unit) whose one change has already been written
    page = [
        native_row("Claude 3 Haiku", "Output tokens", "USE1-Claude3Haiku-output-tokens", "0.0015000000"),
    ]
    with Stubber(client) as stubber:
        for _ in range(2):
            stubber.add_response(
                "get_products", {"FormatVersion": "aws_v1", "PriceList": page}, request("AmazonBedrock")
            )
        first = sync_pricing(client, catalog_file, today=TODAY, confirm=True, service_codes=("AmazonBedrock",))
        written = catalog_file.read_bytes()
        # WHEN it runs again, confirmed
        second = sync_pricing(client, catalog_file, today=TODAY, confirm=True, service_codes=("AmazonBedrock",))
    # THEN the second run finds the catalog in sync and leaves the file alone
    assert first.exit_code == 0 and len(first.new_entries) == 1
    assert second.diffs == () and second.new_entries == {} and second.exit_code == 0
    assert catalog_file.read_bytes() == written


def test_price_list_errors_name_the_service_code(client: Any, catalog_file: Path) -> None:
    with Stubber(client) as stubber:
        stubber.add_client_error(
            "get_products", service_error_code="AccessDeniedException", expected_params=request("AmazonBedrock")
        )
        with pytest.raises(PricingSyncError, match=r"AmazonBedrock.*AccessDenied"):
            sync_pricing(client, catalog_file, today=TODAY, service_codes=("AmazonBedrock",))


def test_renderers_show_the_differences_and_problems(stubbed: Any, catalog_file: Path) -> None:
    result = sync_pricing(stubbed, catalog_file, today=TODAY)
    text = render_text(result)
    assert "dry run: nothing written" in text
    assert re.search(r"anthropic\.claude-3-haiku-20240307-v1:0 +output +1\.25 +1\.50\n", text)
    assert "Not in catalog (2, not added): Claude 2.1, Jamba 1.5 Large" in text
    assert "unknown_unit" in text
    as_json = json.loads(render_json(result))
    assert as_json["exit_code"] == 1 and as_json["written"] is False
    assert as_json["diffs"][1] == {
        "model": "anthropic.claude-3-haiku-20240307-v1:0",
        "token_kind": "output",
        "catalog_usd_per_1m": "1.25",
        "aws_usd_per_1m": "1.5000000000",
        "aws_product": "Claude 3 Haiku",
        "sku": "SKU3HOUT",
    }


# --- units and parsing --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unit", "description", "tokens"),
    [
        ("1K tokens", "", 1_000),
        ("1M tokens", "", 1_000_000),
        ("1000 tokens", "", 1_000),
        ("1 token", "", 1),
        ("Million tokens", "", 1_000_000),
        ("Units", "AWS Marketplace software usage|us-east-1|Million Input Tokens Regional CRIS", 1_000_000),
        ("Units", "AWS Marketplace software usage|us-east-1|Thousand Output Tokens", 1_000),
        ("Units", "AWS Marketplace software usage|us-east-1|Images", None),
        ("Characters", "", None),
        ("tokens", "", None),  # a bare "tokens" states no scale: never guessed
        ("Image", "", None),
    ],
)
def test_tokens_per_unit(unit: str, description: str, tokens: int | None) -> None:
    assert tokens_per_unit(unit, description) == tokens


def test_per_million_is_exact() -> None:
    assert per_million(Decimal("0.0080000000"), 1_000) == Decimal("8")
    assert per_million(Decimal("0.00000025"), 1) == Decimal("0.25")
    assert per_million(Decimal("3.30"), 1_000_000) == Decimal("3.30")
    assert per_million(Decimal("1"), 3) is None  # 333333.33...: refused, not rounded


@pytest.mark.parametrize(
    ("value", "text"), [("8", "8.00"), ("1.5000000000", "1.50"), ("0.00875", "0.00875"), ("1E+1", "10.00")]
)
def test_format_usd(value: str, text: str) -> None:
    assert format_usd(Decimal(value)) == text


@pytest.mark.parametrize(
    "raw",
    [
        native_row("Claude 3 Haiku", "Prompt cache read input tokens", "USE1-X-cache-read-input-tokens", "0.00003"),
        native_row("Nova Pro", "Input Image Token Count", "USE1-NovaPro-input-image-token-count", "0.0008"),
        native_row("Nova Pro", "Input tokens", "USE1-NovaPro-input-tokens-custom-model", "0.0008"),
        native_row("Nova Pro", "Input tokens flex", "USE1-NovaPro-input-tokens-flex", "0.0004"),
        native_row("Nova Pro", "Input tokens", "USE1-NovaPro-input-tokens-latency-optimized", "0.001"),
        marketplace_row("Claude Sonnet 4", "USE1-MP:USE1_InputTokenCount_Batch-Units", "1.5", "Million Input Tokens"),
        marketplace_row("Claude Sonnet 4", "USE1-MP:USE1_CacheWrite1hInputTokenCount-Units", "6", "Million Tokens"),
        marketplace_row("Claude Sonnet 4", "USE1-MP:USE1_created_image-Units", "0.04", "Images"),
    ],
)
def test_non_standard_rows_are_ignored_or_classified(raw: str) -> None:
    parsed = parse_price_list_item(raw, "AmazonBedrock")
    # A cache read row is a standard price of its own kind; the rest price something else.
    if "cache-read" in raw:
        assert isinstance(parsed, QuotedPrice) and parsed.token_kind == "cache_read"
        assert parsed.usd_per_1m == Decimal("0.03")
    else:
        assert parsed is None


def test_unreadable_and_tiered_rows_are_reported() -> None:
    unreadable = parse_price_list_item("not json", "AmazonBedrock")
    assert isinstance(unreadable, PriceIssue) and unreadable.kind is IssueKind.BAD_ROW
    # GIVEN a row with two price dimensions (a volume tier)
    tiered = json.loads(native_row("Nova Pro", "Input tokens", "USE1-NovaPro-input-tokens", "0.0008"))
    term = next(iter(tiered["terms"]["OnDemand"].values()))
    dimension = next(iter(term["priceDimensions"].values()))
    term["priceDimensions"]["second"] = dict(dimension, beginRange="1000000")
    # THEN it is reported, not half-read
    parsed = parse_price_list_item(json.dumps(tiered), "AmazonBedrock")
    assert isinstance(parsed, PriceIssue) and parsed.kind is IssueKind.BAD_ROW and "found 2" in parsed.detail


# --- the comparison rules -----------------------------------------------------------------------------------


def quote(product: str, kind: str, usd_per_1m: str, sku: str = "SKU") -> QuotedPrice:
    return QuotedPrice(
        product, kind, Decimal(usd_per_1m), Decimal(usd_per_1m), 1_000_000, "1M tokens", sku, "", "AmazonBedrock"
    )


def plan(*quotes: QuotedPrice, region: str = "us-east-1", raw: dict[str, Any] | None = None) -> Any:
    catalog_raw = raw if raw is not None else read_catalog(default_catalog_path())
    return plan_price_sync(catalog_raw, PriceListScan(region, quotes, (), len(quotes), 0), today=TODAY)


def test_a_thousandfold_change_is_held_back_as_a_unit_mix_up() -> None:
    # GIVEN AWS rows that, read with the wrong scale, make Nova Pro 1000x cheaper
    result = plan(quote("Nova Pro", "input", "0.0008"))
    # THEN nothing is proposed and the problem says why
    assert result.diffs == () and result.new_entries == {}
    assert result.issues[0].kind is IssueKind.IMPLAUSIBLE and "per-1K/per-1M" in result.issues[0].detail


def test_a_zero_price_is_never_applied() -> None:
    result = plan(quote("Nova Pro", "output", "0"))
    assert result.new_entries == {} and result.issues[0].kind is IssueKind.ZERO_PRICE


def test_disagreeing_rows_for_one_model_are_a_conflict() -> None:
    # Claude 3 Sonnet listed twice (native offer and Marketplace) with different prices
    result = plan(quote("Claude 3 Sonnet", "input", "3.00", "A"), quote("Claude 3 Sonnet", "input", "3.30", "B"))
    assert result.new_entries == {} and result.issues[0].kind is IssueKind.CONFLICT
    agreeing = plan(quote("Claude 3 Sonnet", "input", "3.00", "A"), quote("Claude 3 Sonnet", "input", "3.0", "B"))
    assert agreeing.issues == () and agreeing.unchanged == 1


def test_a_model_already_repriced_today_is_not_overwritten() -> None:
    raw = read_catalog(default_catalog_path())
    for model in raw["models"]:
        if model["id"] == "amazon.nova-pro-v1:0":
            model["prices"].append(
                {
                    "effective_from": TODAY.isoformat(),
                    "input": "0.90",
                    "output": "3.20",
                    "cache_read": "0.20",
                    "cache_write": "0",
                }
            )
    result = plan(quote("Nova Pro", "input", "1.00"), raw=raw)
    assert result.new_entries == {} and result.diffs == ()
    assert result.issues[0].kind is IssueKind.SAME_DAY


def test_another_region_gets_a_regional_entry() -> None:
    result = plan(quote("Nova Pro", "input", "0.96"), region="eu-west-1")
    assert result.new_entries["amazon.nova-pro-v1:0"] == {
        "effective_from": "2026-11-23",
        "input": "0.96",
        "output": "3.20",
        "cache_read": "0.20",
        "cache_write": "0",
        "regions": ["eu-west-1"],
    }


def test_catalog_aliases_and_extra_names_match_price_list_names() -> None:
    # "Llama 3.1 70B" (no "Instruct") matches the alias llama-3.1-70b; an operator-supplied name maps the rest
    result = plan(quote("Llama 3.1 70B", "input", "0.72"), quote("Titan Text G1 - Express", "input", "0.20"))
    assert result.unchanged == 1 and result.not_in_catalog == ("Titan Text G1 - Express",)
    mapped = plan_price_sync(
        read_catalog(default_catalog_path()),
        PriceListScan("us-east-1", (quote("Claude Sonnet 4 Latest", "input", "3.00"),), (), 1, 0),
        today=TODAY,
        extra_names={"Claude Sonnet 4 Latest": "claude-sonnet-4"},
    )
    assert mapped.unchanged == 1 and mapped.not_in_catalog == ()
    with pytest.raises(PricingSyncError, match="not in the catalog"):
        plan_price_sync(
            read_catalog(default_catalog_path()),
            PriceListScan("us-east-1", (), (), 0, 0),
            today=TODAY,
            extra_names={"X": "no-such-model"},
        )
