"""The metering consumer's settings: every environment variable it reads, read in one place.

Each variable is registered with ``shared.settings.declare`` at import (a registry entry, no I/O), so the
README's configuration table and the Terraform cross-check see them; ``Settings.from_env`` reads them when the
handler bootstraps, never at import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

from shared.errors import ConfigError
from shared.settings import declare, env_choice, env_int, env_str

STORE_BACKEND = declare("TM_STORE_BACKEND", "consumer", "usage store: redis (default) or dynamodb")
REDIS_URL = declare("TM_REDIS_URL", "consumer", "redis:// or rediss:// URL of the Redis/ElastiCache store")
REDIS_AUTH_SECRET_ARN = declare(
    "TM_REDIS_AUTH_SECRET_ARN", "consumer", "optional Secrets Manager secret holding the ElastiCache auth token"
)
DYNAMODB_TABLE = declare("TM_DYNAMODB_TABLE", "consumer", "DynamoDB table name (backend dynamodb)")
TENANT_CONFIG = declare("TM_TENANT_CONFIG", "consumer", "tenant registry: a local path or s3://bucket/key")
PRICING_CATALOG = declare("TM_PRICING_CATALOG", "consumer", "optional price catalog path; default the packaged catalog")
QUARANTINE_URL = declare(
    "TM_QUARANTINE_URL", "consumer", "where bad records go: an SQS queue URL, or s3://bucket/prefix"
)
TOPIC_INFO = declare("TM_ALERT_TOPIC_INFO_ARN", "consumer", "SNS topic ARN for info alerts")
TOPIC_WARNING = declare("TM_ALERT_TOPIC_WARNING_ARN", "consumer", "SNS topic ARN for warning alerts")
TOPIC_CRITICAL = declare("TM_ALERT_TOPIC_CRITICAL_ARN", "consumer", "SNS topic ARN for critical alerts")
DEDUPE_HORIZON = declare(
    "TM_DEDUPE_HORIZON_SECONDS", "consumer", "how long event ids are remembered against producer retries"
)

DEFAULT_DEDUPE_HORIZON_SECONDS = 86_400


@dataclass(frozen=True, slots=True)
class Settings:
    store_backend: str
    redis_url: str | None
    redis_auth_secret_arn: str | None
    dynamodb_table: str | None
    tenant_config: str
    pricing_catalog: str | None
    quarantine_url: str
    topic_arns: dict[str, str]  # severity (info, warning, critical) -> topic ARN
    dedupe_horizon: timedelta

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        backend = env_choice(env, STORE_BACKEND, "redis", ("redis", "dynamodb"))
        redis_url = env.get(REDIS_URL, "").strip() or None
        table = env.get(DYNAMODB_TABLE, "").strip() or None
        if backend == "redis":
            redis_url = env_str(env, REDIS_URL)
            if not redis_url.startswith(("redis://", "rediss://", "unix://")):
                raise ConfigError(
                    f"must start with redis:// or rediss://, got {redis_url[:20]!r}",
                    source="environment",
                    field=REDIS_URL,
                )
        else:
            table = env_str(env, DYNAMODB_TABLE)
        quarantine = env_str(env, QUARANTINE_URL)
        if not quarantine.startswith(("https://", "http://", "s3://")):
            raise ConfigError(
                "must be an SQS queue URL (https://...) or s3://bucket/prefix",
                source="environment",
                field=QUARANTINE_URL,
            )
        return cls(
            store_backend=backend,
            redis_url=redis_url,
            redis_auth_secret_arn=env.get(REDIS_AUTH_SECRET_ARN, "").strip() or None,
            dynamodb_table=table,
            tenant_config=env_str(env, TENANT_CONFIG),
            pricing_catalog=env.get(PRICING_CATALOG, "").strip() or None,
            quarantine_url=quarantine,
            topic_arns={
                "info": env_str(env, TOPIC_INFO),
                "warning": env_str(env, TOPIC_WARNING),
                "critical": env_str(env, TOPIC_CRITICAL),
            },
            dedupe_horizon=timedelta(
                seconds=env_int(env, DEDUPE_HORIZON, DEFAULT_DEDUPE_HORIZON_SECONDS, minimum=60, maximum=30 * 86_400)
            ),
        )
