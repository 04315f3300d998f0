"""`meter pricing sync`: compare the price catalog with the AWS Price List and, when confirmed, record changes.

Why: the catalog (shared/data/pricing.json) is hand-kept, and Bedrock prices change. This command reads the
current on-demand prices from the AWS Price List API, shows where they differ from the catalog, and on
confirmation appends a NEW price entry (effective today, UTC) per changed model, so history is kept and events
already priced stay explainable. Old entries are never edited.

What the Price List looks like (found in public parsers and AWS threads, see the report of issue 5):

- Service code ``AmazonBedrock`` (Amazon, Meta, Mistral, older Anthropic models): ``product.attributes`` carry
  ``regionCode``, ``model`` (a display name such as "Claude 3 Haiku"; Titan rows may use ``titanModel``),
  ``inferenceType`` ("Input tokens", "Output tokens", "Input tokens batch", "Prompt cache read input tokens"...),
  sometimes ``featuretype`` ("Prompt cache read"/"Prompt cache write"), ``feature`` ("On-demand Inference",
  "Batch Inference"), ``provider`` and ``usagetype`` ("USE1-Claude2.0-input-tokens", "...-batch",
  "...-cross-region-global"). Prices are quoted with ``unit`` "1K tokens": USD per 1,000 tokens.
- Service code ``AmazonBedrockFoundationModels`` (Marketplace listings: Claude 3.5 and later, Cohere, AI21):
  ``servicename`` "Claude Sonnet 4 (Amazon Bedrock Edition)", ``usagetype`` "USE1-MP:USE1_InputTokenCount-Units"
  (also ``_OutputTokenCount``, ``_CacheReadInputTokenCount``, ``_CacheWriteInputTokenCount``, ``_Global``,
  ``_Batch`` variants) and ``unit`` "Units": the scale is only in the price description ("... Million Input
  Tokens ..."), so USD per 1,000,000 tokens.

Mixing the two scales up is how one AWS sample reported every cost 1000x too low (../shared/FACTS.md), so every
price is converted exactly (Decimal, inexact conversions refused) from the scale its own row states, a unit we
do not recognise is reported and never guessed, and a change by a factor of 100 or more is held back as a likely
unit mix-up.
"""

from __future__ import annotations

import copy
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time
from decimal import Decimal, Inexact, InvalidOperation, localcontext
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

import shared
from shared.errors import PricingError, TenantmeterError
from shared.pricing import PER_TOKENS, TOKEN_KINDS, ModelPricing, PriceCatalog, Rates

if TYPE_CHECKING:
    from mypy_boto3_pricing.client import PricingClient
    from mypy_boto3_pricing.type_defs import FilterTypeDef

logger = logging.getLogger(__name__)

PRICING_API_REGION: Final = "us-east-1"  # the Price List API is served from us-east-1 (and ap-south-1)
CATALOG_REGION: Final = "us-east-1"  # the catalog's regionless entries are us-east-1 list prices
SERVICE_CODES: Final = ("AmazonBedrock", "AmazonBedrockFoundationModels")
MARKETPLACE_SUFFIX: Final = " (Amazon Bedrock Edition)"
# A change by this factor or more is far likelier a per-1K/per-1M mix-up than a real price move: held back.
MAX_CHANGE_FACTOR: Final = Decimal(100)

# Price List display names that differ from the catalog's names and aliases once normalised.
KNOWN_PRICE_LIST_NAMES: Final[Mapping[str, str]] = {
    "Claude 2.0": "anthropic.claude-v2:0",
}

# Rows for anything but the standard, in-region, on-demand rate (batch, flex, priority, latency-optimized,
# provisioned or reserved throughput, custom models, cross-region/global routing, long context).
_NON_STANDARD_RE: Final = re.compile(
    r"batch|flex|priority|latency|provisioned|reserved|custom|global|crossregion|longcontext|cache\w*1h"
)
_MEDIA_RE: Final = re.compile(r"image|video|audio|speech")
_UNIT_RE: Final = re.compile(
    r"^(?:(?P<count>\d{1,7})\s*(?P<mult>k|m)?|(?P<word>thousand|million))\s*tokens?$", re.IGNORECASE
)
_DESCRIPTION_SCALE_RE: Final = re.compile(r"\b(?P<scale>million|thousand|1m|1k)\b[\w ]*?\btokens?\b", re.IGNORECASE)
_SCALES: Final = {"k": 1_000, "m": 1_000_000, "thousand": 1_000, "million": 1_000_000, "1k": 1_000, "1m": 1_000_000}


class PricingSyncError(TenantmeterError):
    """The Price List could not be read, or the catalog file could not be read or written."""


class IssueKind(StrEnum):
    UNKNOWN_UNIT = "unknown_unit"  # a token price quoted in a unit we do not recognise: not guessed
    BAD_ROW = "bad_row"  # a Price List entry we cannot read (not JSON, no single USD price)
    CONFLICT = "conflict"  # two Price List rows give one catalog model and token kind different prices
    ZERO_PRICE = "zero_price"  # AWS lists $0 where the catalog charges: never applied (a $0 price hides spend)
    IMPLAUSIBLE = "implausible"  # a change by a factor of 100 or more: likely a unit mix-up, held back
    SAME_DAY = "same_day"  # the model already has an entry dated today: edit by hand, never overwritten
    NO_PRICE_TODAY = "no_price_today"  # the catalog has no price in force today for this model


@dataclass(frozen=True, slots=True)
class PriceIssue:
    kind: IssueKind
    product: str  # the Price List product (model display name) or catalog model id
    detail: str
    sku: str = ""


@dataclass(frozen=True, slots=True)
class QuotedPrice:
    """One standard on-demand token price read from the Price List, converted to USD per 1M tokens."""

    product: str  # display name as AWS lists it (``model``/``titanModel``, or ``servicename`` minus the suffix)
    token_kind: str  # one of shared.pricing.TOKEN_KINDS
    usd_per_1m: Decimal
    quoted_usd: Decimal  # as AWS quotes it ...
    quoted_per_tokens: int  # ... per this many tokens
    unit: str
    sku: str
    usagetype: str
    service_code: str


@dataclass(frozen=True, slots=True)
class PriceListScan:
    """What the Price List said for one region: usable prices, problems, and how many rows were ignored."""

    region: str
    quotes: tuple[QuotedPrice, ...]
    issues: tuple[PriceIssue, ...]
    rows_read: int
    rows_ignored: int  # not a standard on-demand text-token price (images, batch, guardrails, ...)


@dataclass(frozen=True, slots=True)
class PriceDiff:
    model_id: str
    token_kind: str
    catalog_usd_per_1m: Decimal
    aws_usd_per_1m: Decimal
    aws_product: str
    sku: str


@dataclass(frozen=True, slots=True)
class PricingSyncResult:
    region: str
    effective_from: date
    catalog_path: str
    diffs: tuple[PriceDiff, ...]
    new_entries: Mapping[str, Mapping[str, Any]]  # model id -> the price entry written (or to be written)
    unchanged: int  # (model, token kind) pairs where AWS and the catalog agree
    not_in_catalog: tuple[str, ...]  # Price List products matching no catalog model: listed, never added
    catalog_models_without_aws_price: tuple[str, ...]
    issues: tuple[PriceIssue, ...]
    rows_read: int
    rows_ignored: int
    written: bool = False

    @property
    def exit_code(self) -> int:
        """0: in sync, or the changes were written. 1: something needs a human (see ``issues``).
        3: a dry run found changes that were not written."""
        if self.issues:
            return 1
        if self.new_entries and not self.written:
            return 3
        return 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "effective_from": self.effective_from.isoformat(),
            "catalog_path": self.catalog_path,
            "written": self.written,
            "exit_code": self.exit_code,
            "diffs": [
                {
                    "model": d.model_id,
                    "token_kind": d.token_kind,
                    "catalog_usd_per_1m": str(d.catalog_usd_per_1m),
                    "aws_usd_per_1m": str(d.aws_usd_per_1m),
                    "aws_product": d.aws_product,
                    "sku": d.sku,
                }
                for d in self.diffs
            ],
            "new_entries": {model: dict(entry) for model, entry in self.new_entries.items()},
            "unchanged": self.unchanged,
            "not_in_catalog": list(self.not_in_catalog),
            "catalog_models_without_aws_price": list(self.catalog_models_without_aws_price),
            "issues": [
                {"kind": i.kind.value, "product": i.product, "detail": i.detail, "sku": i.sku} for i in self.issues
            ],
            "rows_read": self.rows_read,
            "rows_ignored": self.rows_ignored,
        }


# --- reading the Price List ---------------------------------------------------------------------------------


def fetch_price_list(
    client: PricingClient,
    *,
    region: str = CATALOG_REGION,
    service_codes: Sequence[str] = SERVICE_CODES,
) -> PriceListScan:
    """Read every product of ``service_codes`` in ``region`` (all pages) and parse the token prices."""
    filters: list[FilterTypeDef] = [{"Type": "TERM_MATCH", "Field": "regionCode", "Value": region}]
    quotes: list[QuotedPrice] = []
    issues: list[PriceIssue] = []
    read = ignored = 0
    for service_code in service_codes:
        paginator = client.get_paginator("get_products")
        try:
            for page in paginator.paginate(ServiceCode=service_code, Filters=filters, FormatVersion="aws_v1"):
                for raw in page.get("PriceList", []):
                    read += 1
                    parsed = parse_price_list_item(raw, service_code)
                    if isinstance(parsed, QuotedPrice):
                        quotes.append(parsed)
                    elif isinstance(parsed, PriceIssue):
                        issues.append(parsed)
                    else:
                        ignored += 1
        except (ClientError, BotoCoreError) as exc:
            raise PricingSyncError(f"AWS Price List, service code {service_code}: {exc}") from exc
    logger.info("price list read", extra={"rows": read, "quotes": len(quotes), "region": region})
    return PriceListScan(region, tuple(quotes), tuple(issues), read, ignored)


def parse_price_list_item(raw: str, service_code: str) -> QuotedPrice | PriceIssue | None:
    """One PriceList entry (a JSON string) -> a standard on-demand token price, a problem, or None when the
    row prices something else (batch, images, provisioned throughput, ...)."""
    try:
        item = json.loads(raw)
        attrs = item["product"]["attributes"]
        if not isinstance(attrs, dict):
            raise TypeError("attributes")
    except (ValueError, KeyError, TypeError):
        return PriceIssue(IssueKind.BAD_ROW, "?", f"{service_code}: not a Price List product entry")
    sku = str(item["product"].get("sku", ""))
    usagetype = str(attrs.get("usagetype", ""))
    servicename = str(attrs.get("servicename", ""))
    if servicename.endswith(MARKETPLACE_SUFFIX):
        product = servicename[: -len(MARKETPLACE_SUFFIX)]
        kind = _marketplace_token_kind(usagetype)
    else:
        product = str(attrs.get("model") or attrs.get("titanModel") or "")
        kind = _native_token_kind(attrs)
    if kind is None or not product:
        return None
    dimension = _single_price_dimension(item)
    if isinstance(dimension, str):
        return PriceIssue(IssueKind.BAD_ROW, product, f"{kind}: {dimension}", sku)
    if dimension is None:
        return None  # no on-demand term (reserved-only rows)
    unit = str(dimension.get("unit", ""))
    description = str(dimension.get("description", ""))
    try:
        quoted = Decimal(str(dimension["pricePerUnit"]["USD"]))
        if not quoted.is_finite() or quoted < 0:
            raise InvalidOperation
    except (KeyError, TypeError, InvalidOperation):
        return PriceIssue(IssueKind.BAD_ROW, product, f"{kind}: no valid USD price", sku)
    per_tokens = tokens_per_unit(unit, description)
    if per_tokens is None:
        return PriceIssue(
            IssueKind.UNKNOWN_UNIT, product, f"{kind}: unit {unit!r} ({description!r}) is not a token count", sku
        )
    per_1m = per_million(quoted, per_tokens)
    if per_1m is None:
        return PriceIssue(IssueKind.UNKNOWN_UNIT, product, f"{kind}: per {per_tokens} tokens is not exact", sku)
    return QuotedPrice(product, kind, per_1m, quoted, per_tokens, unit, sku, usagetype, service_code)


def tokens_per_unit(unit: str, description: str = "") -> int | None:
    """How many tokens one priced unit is: "1K tokens" -> 1000, "1M tokens" -> 1000000; for the Marketplace's
    opaque "Units", the scale its description states ("Million Input Tokens"). None when not stated."""
    match = _UNIT_RE.match(unit.strip())
    if match:
        if match.group("word"):
            return _SCALES[match.group("word").lower()]
        count = int(match.group("count"))
        mult = match.group("mult")
        return count * (_SCALES[mult.lower()] if mult else 1)
    if unit.strip().lower() in ("units", "unit"):
        described = _DESCRIPTION_SCALE_RE.search(description)
        if described:
            return _SCALES[described.group("scale").lower()]
    return None


def per_million(price: Decimal, per_tokens: int) -> Decimal | None:
    """USD per 1M tokens from a price per ``per_tokens`` tokens, exactly; None if not exactly representable."""
    if per_tokens <= 0:
        return None
    with localcontext() as ctx:
        ctx.prec = 60
        ctx.traps[Inexact] = True
        try:
            return price * PER_TOKENS / per_tokens
        except Inexact:
            return None


def _squash(text: str) -> str:
    return re.sub(r"[\s_\-.:]+", "", text.lower())


def _native_token_kind(attrs: Mapping[str, Any]) -> str | None:
    inference_type = str(attrs.get("inferenceType", "")).strip().lower()
    feature_type = str(attrs.get("featuretype", "")).strip().lower()
    usagetype = _squash(str(attrs.get("usagetype", "")))
    everything = " ".join((inference_type, feature_type, str(attrs.get("feature", "")).lower()))
    if _NON_STANDARD_RE.search(usagetype) or _NON_STANDARD_RE.search(_squash(everything)):
        return None
    if _MEDIA_RE.search(everything) or _MEDIA_RE.search(usagetype):
        return None
    if "cache read" in everything or "cacheread" in usagetype:
        return "cache_read"
    if "cache write" in everything or "cachewrite" in usagetype:
        return "cache_write"
    if inference_type in ("input tokens", "text input token", "text input tokens"):
        return "input"
    if inference_type in ("output tokens", "text output token", "text output tokens"):
        return "output"
    if not inference_type:  # a few rows carry no inferenceType: fall back on the usagetype's ending
        if usagetype.endswith(("inputtokens", "inputtokencount")):
            return "input"
        if usagetype.endswith(("outputtokens", "outputtokencount")):
            return "output"
    return None


def _marketplace_token_kind(usagetype: str) -> str | None:
    squashed = _squash(usagetype)
    if _NON_STANDARD_RE.search(squashed) or _MEDIA_RE.search(squashed):
        return None
    if "cacheread" in squashed:
        return "cache_read"
    if "cachewrite" in squashed:
        return "cache_write"
    if "inputtokencount" in squashed or "inputtokens" in squashed:
        return "input"
    if "outputtokencount" in squashed or "outputtokens" in squashed or "responsetokens" in squashed:
        return "output"
    return None


def _single_price_dimension(item: Mapping[str, Any]) -> Mapping[str, Any] | str | None:
    terms = item.get("terms", {})
    on_demand = terms.get("OnDemand", {}) if isinstance(terms, Mapping) else {}
    if not isinstance(on_demand, Mapping) or not on_demand:
        return None
    dimensions = [
        dim
        for term in on_demand.values()
        if isinstance(term, Mapping)
        for dim in (term.get("priceDimensions") or {}).values()
    ]
    if len(dimensions) != 1 or not isinstance(dimensions[0], Mapping):
        return f"expected one on-demand price, found {len(dimensions)} (tiered prices are not supported)"
    return dimensions[0]


# --- comparing with the catalog -----------------------------------------------------------------------------


def _name_key(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.lower())


def _catalog_name_index(catalog: PriceCatalog, extra_names: Mapping[str, str]) -> dict[str, str]:
    """Normalised name -> catalog model id, from each model's name, id and aliases; a key naming two models is
    dropped (ambiguous). Explicit names win."""
    index: dict[str, str] = {}
    ambiguous: set[str] = set()
    for model in catalog.models.values():
        for name in {model.name, model.model_id, *model.aliases}:
            key = _name_key(name)
            if key in index and index[key] != model.model_id:
                ambiguous.add(key)
            index[key] = model.model_id
    for key in ambiguous:
        del index[key]
    for aws_name, model_id in {**KNOWN_PRICE_LIST_NAMES, **extra_names}.items():
        entry = catalog.resolve(model_id)
        if entry is None:
            raise PricingSyncError(f"price list name {aws_name!r} maps to {model_id!r}, which is not in the catalog")
        index[_name_key(aws_name)] = entry.model_id
    return index


def plan_price_sync(
    catalog_raw: Mapping[str, Any],
    scan: PriceListScan,
    *,
    today: date,
    catalog_path: str = "<catalog>",
    extra_names: Mapping[str, str] | None = None,
) -> PricingSyncResult:
    """Compare ``scan`` with the catalog (its parsed JSON) and build the new entries to append. Pure."""
    try:
        catalog = PriceCatalog.from_dict(catalog_raw, catalog_path)
    except PricingError as exc:
        raise PricingSyncError(str(exc)) from None
    index = _catalog_name_index(catalog, extra_names or {})
    issues = list(scan.issues)
    not_in_catalog: set[str] = set()
    # (model id, kind) -> the quotes for it; several products (native and Marketplace) can name one model.
    quoted: dict[tuple[str, str], list[QuotedPrice]] = {}
    for quote in scan.quotes:
        model_id = index.get(_name_key(quote.product))
        if model_id is None:
            not_in_catalog.add(quote.product)
            continue
        quoted.setdefault((model_id, quote.token_kind), []).append(quote)

    at = datetime.combine(today, time(), UTC)
    diffs: list[PriceDiff] = []
    changes: dict[str, dict[str, Decimal]] = {}
    unchanged = 0
    for (model_id, kind), quotes in sorted(quoted.items()):
        prices = {q.usd_per_1m for q in quotes}
        if len(prices) > 1:
            listed = ", ".join(f"{q.product} {q.sku}: {q.usd_per_1m}" for q in quotes)
            issues.append(PriceIssue(IssueKind.CONFLICT, model_id, f"{kind}: AWS rows disagree ({listed})"))
            continue
        aws_price, quote = quotes[0].usd_per_1m, quotes[0]
        rates = catalog.models[model_id].rates_at(at, scan.region)
        if rates is None:
            issues.append(PriceIssue(IssueKind.NO_PRICE_TODAY, model_id, f"no catalog price in force on {today}"))
            continue
        current: Decimal = getattr(rates, kind)
        if current == aws_price:
            unchanged += 1
            continue
        problem = _implausible_change(current, aws_price)
        if problem:
            issues.append(PriceIssue(problem[0], model_id, f"{kind}: {problem[1]}", quote.sku))
            continue
        diffs.append(PriceDiff(model_id, kind, current, aws_price, quote.product, quote.sku))
        changes.setdefault(model_id, {})[kind] = aws_price

    new_entries: dict[str, Mapping[str, Any]] = {}
    for model_id, kinds in changes.items():
        model = catalog.models[model_id]
        rates = model.rates_at(at, scan.region)
        assert rates is not None  # checked above for every changed kind
        if rates.effective_from == today:
            issues.append(
                PriceIssue(IssueKind.SAME_DAY, model_id, f"already has a price from {today}: edit it by hand")
            )
            diffs = [d for d in diffs if d.model_id != model_id]
            continue
        new_entries[model_id] = _new_entry(catalog_raw, model, rates, kinds, today, scan.region)

    priced = {model_id for model_id, _ in quoted}
    return PricingSyncResult(
        region=scan.region,
        effective_from=today,
        catalog_path=catalog_path,
        diffs=tuple(diffs),
        new_entries=new_entries,
        unchanged=unchanged,
        not_in_catalog=tuple(sorted(not_in_catalog)),
        catalog_models_without_aws_price=tuple(m for m in catalog.models if m not in priced),
        issues=tuple(issues),
        rows_read=scan.rows_read,
        rows_ignored=scan.rows_ignored,
    )


def _implausible_change(current: Decimal, aws_price: Decimal) -> tuple[IssueKind, str] | None:
    if aws_price == 0:
        return IssueKind.ZERO_PRICE, f"AWS lists $0 where the catalog has {current}: not applied"
    if current == 0:
        return None  # a kind the catalog priced at $0 (e.g. no cache writes) now costs something: apply
    ratio = aws_price / current
    if ratio >= MAX_CHANGE_FACTOR or ratio <= 1 / MAX_CHANGE_FACTOR:
        return (
            IssueKind.IMPLAUSIBLE,
            f"catalog {current} -> AWS {aws_price} per 1M tokens is a factor of {ratio:.4g}: a per-1K/per-1M "
            "mix-up? Not applied",
        )
    return None


def format_usd(value: Decimal) -> str:
    """A decimal string with at least two decimals, never an exponent: 8 -> "8.00", 0.00875 -> "0.00875"."""
    normal = value.normalize()
    exponent = normal.as_tuple().exponent
    if isinstance(exponent, int) and exponent > -2:
        normal = normal.quantize(Decimal("0.01"))
    return format(normal, "f")


def _raw_entry(catalog_raw: Mapping[str, Any], model_id: str, rates: Rates) -> Mapping[str, Any]:
    for model in catalog_raw["models"]:
        if model.get("id") != model_id:
            continue
        for price in model["prices"]:
            if price.get("effective_from") == rates.effective_from.isoformat() and frozenset(
                price.get("regions", [])
            ) == set(rates.regions):
                return dict(price)
    raise PricingSyncError(f"catalog entry for {model_id} from {rates.effective_from} not found")  # pragma: no cover


def _new_entry(
    catalog_raw: Mapping[str, Any],
    model: ModelPricing,
    rates: Rates,
    changed: Mapping[str, Decimal],
    today: date,
    region: str,
) -> dict[str, Any]:
    """The entry to append: AWS's prices for the changed kinds; the in-force entry's strings, verbatim, for the
    rest. Regional when the in-force entry is regional or the region is not the catalog's own."""
    current = _raw_entry(catalog_raw, model.model_id, rates)
    entry: dict[str, Any] = {"effective_from": today.isoformat()}
    for kind in TOKEN_KINDS:
        entry[kind] = format_usd(changed[kind]) if kind in changed else current[kind]
    if rates.regions or region != CATALOG_REGION:
        entry["regions"] = [region]
    return entry


# --- the file -----------------------------------------------------------------------------------------------


def default_catalog_path() -> Path:
    """The catalog shipped in the package (shared/data/pricing.json)."""
    return Path(shared.__file__).resolve().parent / "data" / "pricing.json"


def read_catalog(path: Path) -> dict[str, Any]:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise PricingSyncError(f"{path}: cannot read price catalog: {exc.strerror}") from None
    except ValueError as exc:
        raise PricingSyncError(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list):
        raise PricingSyncError(f"{path}: not a price catalog (no 'models' list)")
    return raw


def with_new_entries(catalog_raw: Mapping[str, Any], new_entries: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """A copy of the catalog with each new entry appended to its model's ``prices``; nothing else changes."""
    updated = copy.deepcopy(dict(catalog_raw))
    for model in updated["models"]:
        entry = new_entries.get(model.get("id"))
        if entry is not None:
            model["prices"].append(dict(entry))
    return updated


def write_catalog(path: Path, catalog_raw: Mapping[str, Any]) -> None:
    """Validate, then replace the file atomically (same directory temp file + rename). Formatting stays what
    the file already uses: JSON, indent 2, UTF-8 kept as is, one trailing newline."""
    try:
        PriceCatalog.from_dict(catalog_raw, str(path))
    except PricingError as exc:
        raise PricingSyncError(f"refusing to write a catalog that would not load: {exc}") from None
    text = json.dumps(catalog_raw, indent=2, ensure_ascii=False) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(text)
            if path.exists():
                os.chmod(tmp, path.stat().st_mode & 0o777)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise PricingSyncError(f"{path}: cannot write price catalog: {exc.strerror}") from None


def sync_pricing(
    client: PricingClient,
    catalog_path: Path,
    *,
    today: date,
    confirm: bool = False,
    region: str = CATALOG_REGION,
    service_codes: Sequence[str] = SERVICE_CODES,
    extra_names: Mapping[str, str] | None = None,
) -> PricingSyncResult:
    """Read the Price List, compare with the catalog at ``catalog_path`` and, only when ``confirm``, append the
    new entries (effective ``today``, UTC) to the file. Without ``confirm`` nothing is written."""
    catalog_raw = read_catalog(catalog_path)
    scan = fetch_price_list(client, region=region, service_codes=service_codes)
    result = plan_price_sync(catalog_raw, scan, today=today, catalog_path=str(catalog_path), extra_names=extra_names)
    if confirm and result.new_entries:
        write_catalog(catalog_path, with_new_entries(catalog_raw, result.new_entries))
        logger.info("price catalog updated", extra={"models": sorted(result.new_entries), "path": str(catalog_path)})
        return replace(result, written=True)
    return result


# --- rendering ----------------------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    body = [list(r) for r in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *body, strict=False)]
    return ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [headers, *body]]


def render_text(result: PricingSyncResult) -> str:
    """A plain-text report: differences (per 1M tokens), what is not in the catalog, and problems."""
    if result.written:
        state = f"written to {result.catalog_path}"
    elif result.new_entries:
        state = "dry run: nothing written (confirm to write)"
    else:
        state = "catalog is in sync: nothing to write"
    lines = [
        f"AWS Price List ({result.region}) vs {result.catalog_path}, effective {result.effective_from}: {state}",
        f"{result.rows_read} price rows read, {result.rows_ignored} not standard token prices, "
        f"{result.unchanged} prices agree, {len(result.diffs)} differ",
    ]
    if result.diffs:
        lines.append("")
        lines += _table(
            ("MODEL", "TOKEN KIND", "CATALOG USD/1M", "AWS USD/1M"),
            (
                (d.model_id, d.token_kind, format_usd(d.catalog_usd_per_1m), format_usd(d.aws_usd_per_1m))
                for d in result.diffs
            ),
        )
    if result.not_in_catalog:
        lines += ["", f"Not in catalog ({len(result.not_in_catalog)}, not added): " + ", ".join(result.not_in_catalog)]
    if result.catalog_models_without_aws_price:
        lines += [
            "",
            f"Catalog models with no AWS price found ({len(result.catalog_models_without_aws_price)}): "
            + ", ".join(result.catalog_models_without_aws_price),
        ]
    if result.issues:
        lines += ["", f"Problems ({len(result.issues)}):"]
        lines += _table(("KIND", "PRODUCT", "DETAIL"), ((i.kind.value, i.product, i.detail) for i in result.issues))
    return "\n".join(lines) + "\n"


def render_json(result: PricingSyncResult) -> str:
    return json.dumps(result.to_dict(), indent=2) + "\n"


__all__ = [
    "CATALOG_REGION",
    "PRICING_API_REGION",
    "SERVICE_CODES",
    "IssueKind",
    "PriceDiff",
    "PriceIssue",
    "PriceListScan",
    "PricingSyncError",
    "PricingSyncResult",
    "QuotedPrice",
    "default_catalog_path",
    "fetch_price_list",
    "format_usd",
    "parse_price_list_item",
    "per_million",
    "plan_price_sync",
    "read_catalog",
    "render_json",
    "render_text",
    "sync_pricing",
    "tokens_per_unit",
    "with_new_entries",
    "write_catalog",
]
