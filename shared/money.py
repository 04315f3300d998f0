"""Money is exact: Decimal USD in the core, integer nano-dollars in stores.

The one rounding rule: the exact Decimal cost of ONE usage event is rounded half-up to a whole nano-dollar
(1e-9 USD) once, when it is priced (``shared.pricing.price_usage``). Everything downstream (windows,
quotas, reports, reconciliation) adds integers, so totals are exact sums of per-event costs and any two
components that price the same events agree to the nano-dollar. The stores keep those integers exact at any
size (Redis: packed decimal counters the apply script adds in Lua numbers below 2^53 and digit by digit above;
DynamoDB: ADD on its 38-digit numbers).
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Final

NANOS_PER_USD: Final = 1_000_000_000
_NANO: Final = Decimal("1e-9")


def usd_to_nanos(usd: Decimal) -> int:
    """Round an exact USD amount half-up to whole nano-dollars (the one rounding rule)."""
    return int((usd / _NANO).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def nanos_to_usd(nanos: int) -> Decimal:
    """Exact USD value of an integer nano-dollar amount."""
    return Decimal(nanos).scaleb(-9)


def parse_usd(text: str | int | Decimal, field: str = "usd") -> int:
    """Parse a configured USD amount (a string like "500.00", never a float) into nano-dollars."""
    if isinstance(text, float):
        raise ValueError(f"{field}: money must be a string or integer, not a float ({text!r})")
    try:
        value = Decimal(str(text))
    except ArithmeticError:
        raise ValueError(f"{field}: not a decimal amount: {text!r}") from None
    if not value.is_finite() or value < 0:
        raise ValueError(f"{field}: must be a non-negative amount, got {text!r}")
    if value != value.quantize(_NANO):
        raise ValueError(f"{field}: more precise than a nano-dollar: {text!r}")
    return int(value.scaleb(9))


def format_usd(nanos: int, places: int | None = None) -> str:
    """Human form for messages: ``$460.12``; amounts under a dollar keep 4 places (``$0.0312``) so small
    budgets stay readable. Display only; rounding here never feeds back into totals."""
    usd = nanos_to_usd(nanos)
    if places is None:
        places = 4 if 0 < abs(usd) < 1 else 2
    q = Decimal(1).scaleb(-places)
    return f"${usd.quantize(q, rounding=ROUND_HALF_UP):,}"
