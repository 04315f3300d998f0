"""Reading settings from the environment, with errors that name the variable.

Each component (metering consumer, gateway, report) has one frozen ``Settings`` dataclass with a
``from_env(environ)`` classmethod built from these helpers. Every variable tenantmeter reads is listed in
``ENV_VARS`` below with its meaning: the README's configuration table and the Terraform cross-check test
both read this one list. Standard library only.

AWS endpoints: boto3 honours ``AWS_ENDPOINT_URL`` itself, which is how the local stack points every client at
moto's server; tenantmeter adds no variable of its own for that.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from shared.errors import ConfigError

# name -> (components that read it, meaning). Components: consumer, gateway, report, cli.
ENV_VARS: Final[dict[str, tuple[frozenset[str], str]]] = {}


def declare(name: str, components: str, meaning: str) -> str:
    """Register an environment variable (at import of the settings module that reads it). A variable read by
    several components (e.g. TM_REDIS_URL) is declared by each: the components add up, the first meaning stays."""
    readers = frozenset(components.split(","))
    if name in ENV_VARS:
        known, first_meaning = ENV_VARS[name]
        ENV_VARS[name] = (known | readers, first_meaning)
    else:
        ENV_VARS[name] = (readers, meaning)
    return name


def env_str(environ: Mapping[str, str], name: str, default: str | None = None) -> str:
    value = environ.get(name, "").strip()
    if value:
        return value
    if default is None:
        raise ConfigError("is required but not set", source="environment", field=name)
    return default


def env_int(environ: Mapping[str, str], name: str, default: int, *, minimum: int, maximum: int) -> int:
    raw = environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"must be an integer, got {raw!r}", source="environment", field=name) from None
    if not minimum <= value <= maximum:
        raise ConfigError(f"must be between {minimum} and {maximum}, got {value}", source="environment", field=name)
    return value


def env_bool(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if not raw:
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"must be true or false, got {raw!r}", source="environment", field=name)


def env_choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    value = environ.get(name, "").strip() or default
    if value not in choices:
        raise ConfigError(f"must be one of {', '.join(choices)}, got {value!r}", source="environment", field=name)
    return value


def resource_names(prefix: str = "tenantmeter", account_id: str = "123456789012") -> dict[str, str]:
    """The AWS resource names Terraform creates (infra/terraform, variable ``name``), which the local stack
    reuses so that `make demo` and a real deployment look the same. A test keeps Terraform in step."""
    return {
        "stream": f"{prefix}-usage-events",
        "topic_info": f"{prefix}-alerts-info",
        "topic_warning": f"{prefix}-alerts-warning",
        "topic_critical": f"{prefix}-alerts-critical",
        "quarantine_queue": f"{prefix}-quarantine",
        "failure_queue": f"{prefix}-metering-failures",
        "table": f"{prefix}-usage",
        "reports_bucket": f"{prefix}-reports-{account_id}",
        "config_bucket": f"{prefix}-config-{account_id}",
    }
