"""The gateway's settings: one frozen ``Settings`` read from the environment, every variable declared once.

``Settings.from_env()`` validates everything up front and raises ``ConfigError`` naming the variable, so a
misconfigured Lambda fails its first invocation with a clear message instead of half-working.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from shared.errors import ConfigError
from shared.schema import REGION_RE
from shared.settings import declare, env_choice, env_int, env_str, resource_names

TM_STREAM_NAME: Final = declare("TM_STREAM_NAME", "gateway", "Kinesis stream the gateway puts usage events on")
TM_STORE_BACKEND: Final = declare("TM_STORE_BACKEND", "gateway", "store for blocks and reservations: redis or dynamodb")
TM_REDIS_URL: Final = declare(
    "TM_REDIS_URL", "gateway", "Redis URL (redis:// or rediss://) when TM_STORE_BACKEND=redis"
)
TM_REDIS_AUTH_SECRET_ARN: Final = declare(
    "TM_REDIS_AUTH_SECRET_ARN", "gateway", "optional Secrets Manager ARN of the Redis AUTH token"
)
TM_DYNAMODB_TABLE: Final = declare("TM_DYNAMODB_TABLE", "gateway", "DynamoDB table when TM_STORE_BACKEND=dynamodb")
TM_TENANT_CONFIG: Final = declare("TM_TENANT_CONFIG", "gateway", "tenant registry: a file path or s3://bucket/key")
TM_PRICING_CATALOG: Final = declare(
    "TM_PRICING_CATALOG", "gateway", "optional price catalog JSON path (default: the packaged catalog)"
)
TM_MODEL_BACKEND: Final = declare("TM_MODEL_BACKEND", "gateway", "model backend: bedrock (default) or simulated")
TM_SAGEMAKER_ENDPOINTS: Final = declare(
    "TM_SAGEMAKER_ENDPOINTS", "gateway", "optional comma list of model ids served by SageMaker endpoints of that name"
)
TM_QUOTA_CACHE_MS: Final = declare(
    "TM_QUOTA_CACHE_MS", "gateway", "how long blocks and reserve flags are cached per tenant, ms (0-1000, default 1000)"
)
TM_MAX_BODY_BYTES: Final = declare("TM_MAX_BODY_BYTES", "gateway", "largest request body accepted (default 1 MiB)")
TM_RESERVATION_TTL_SECONDS: Final = declare(
    "TM_RESERVATION_TTL_SECONDS", "gateway", "how long an unsettled quota reservation holds (default 300 s)"
)
AWS_REGION: Final = "AWS_REGION"  # set by Lambda itself; read for the events' region, not declared as ours

MIB: Final = 1024 * 1024
# API Gateway REST accepts at most 10 MB; Lambda's synchronous payload limit is 6 MB.
MAX_BODY_LIMIT: Final = 6 * MIB
_ENDPOINT_RE_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


@dataclass(frozen=True, slots=True)
class Settings:
    tenant_config: str
    stream_name: str = resource_names()["stream"]
    store_backend: str = "redis"
    redis_url: str = ""
    redis_auth_secret_arn: str = ""
    dynamodb_table: str = resource_names()["table"]
    pricing_catalog: str = ""
    model_backend: str = "bedrock"
    sagemaker_endpoints: tuple[str, ...] = ()
    quota_cache_ms: int = 1000
    max_body_bytes: int = MIB
    reservation_ttl_seconds: int = 300
    region: str = "us-east-1"

    @property
    def reservation_ttl(self) -> timedelta:
        return timedelta(seconds=self.reservation_ttl_seconds)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        backend = env_choice(env, TM_STORE_BACKEND, "redis", ("redis", "dynamodb"))
        redis_url = env_str(env, TM_REDIS_URL, "")
        if backend == "redis" and not redis_url:
            raise ConfigError("is required when TM_STORE_BACKEND=redis", source="environment", field=TM_REDIS_URL)
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "must start with redis://, rediss:// or unix://", source="environment", field=TM_REDIS_URL
            )
        endpoints = tuple(e.strip() for e in env_str(env, TM_SAGEMAKER_ENDPOINTS, "").split(",") if e.strip())
        for name in endpoints:
            if len(name) > 63 or not set(name) <= _ENDPOINT_RE_CHARS:
                raise ConfigError(
                    f"{name[:80]!r} is not a SageMaker endpoint name (1-63 letters, digits, hyphens)",
                    source="environment",
                    field=TM_SAGEMAKER_ENDPOINTS,
                )
        region = env_str(env, AWS_REGION, "us-east-1")
        if not REGION_RE.fullmatch(region):
            raise ConfigError(f"not an AWS region: {region[:40]!r}", source="environment", field=AWS_REGION)
        return cls(
            tenant_config=env_str(env, TM_TENANT_CONFIG),
            stream_name=env_str(env, TM_STREAM_NAME, resource_names()["stream"]),
            store_backend=backend,
            redis_url=redis_url,
            redis_auth_secret_arn=env_str(env, TM_REDIS_AUTH_SECRET_ARN, ""),
            dynamodb_table=env_str(env, TM_DYNAMODB_TABLE, resource_names()["table"]),
            pricing_catalog=env_str(env, TM_PRICING_CATALOG, ""),
            model_backend=env_choice(env, TM_MODEL_BACKEND, "bedrock", ("bedrock", "simulated")),
            sagemaker_endpoints=endpoints,
            quota_cache_ms=env_int(env, TM_QUOTA_CACHE_MS, 1000, minimum=0, maximum=1000),
            max_body_bytes=env_int(env, TM_MAX_BODY_BYTES, MIB, minimum=1024, maximum=MAX_BODY_LIMIT),
            reservation_ttl_seconds=env_int(env, TM_RESERVATION_TTL_SECONDS, 300, minimum=10, maximum=86_400),
            region=region,
        )
