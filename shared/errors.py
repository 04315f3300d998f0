"""Every error tenantmeter raises on purpose derives from TenantmeterError.

Going over a quota is not an error: it is a decision value (see shared.decisions).
"""

from __future__ import annotations


class TenantmeterError(Exception):
    """Base class of tenantmeter's own errors."""


class SchemaError(TenantmeterError, ValueError):
    """A usage event failed validation; ``field`` names the offending field."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class ConfigError(TenantmeterError, ValueError):
    """A configuration file or setting is invalid; the message names file, entry and field."""

    def __init__(self, message: str, *, source: str = "", entry: str = "", field: str = "") -> None:
        where = ", ".join(
            part for part in (source, f"entry {entry!r}" if entry else "", f"field {field!r}" if field else "") if part
        )
        super().__init__(f"{where}: {message}" if where else message)
        self.message = message
        self.source = source
        self.entry = entry
        self.field = field


class PricingError(TenantmeterError, ValueError):
    """The price catalog is malformed or cannot price a usage at all."""


class UnknownTenantError(TenantmeterError, LookupError):
    """A tenant id or API key does not belong to any configured tenant."""


class StoreUnavailableError(TenantmeterError, ConnectionError):
    """A backing store (Redis, DynamoDB) could not be reached; the work must be retried."""


class TenantBlockedError(TenantmeterError):
    """An instrumented Bedrock client refused a call because the tenant is cut off (the quota decision, raised
    where a boto3 call can only answer with a response or an exception). ``retry_after_s`` is whole seconds."""

    def __init__(self, tenant_id: str, reason: str, *, retry_after_s: int = 0) -> None:
        super().__init__(
            f"tenant {tenant_id!r} is blocked: {reason}" + (f"; retry in {retry_after_s}s" if retry_after_s else "")
        )
        self.tenant_id = tenant_id
        self.reason = reason
        self.retry_after_s = retry_after_s


class ProducerClosedError(TenantmeterError, RuntimeError):
    """A usage event was emitted to a UsageProducer after close()."""
