"""The daily report's settings: the store it reads and the S3 location it writes (declared for the README and
the Terraform cross-check at import; read by ``ReportSettings.from_env`` at bootstrap, never at import)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from shared.settings import declare, env_choice, env_str

STORE_BACKEND = declare("TM_STORE_BACKEND", "report", "usage store: redis (default) or dynamodb")
REDIS_URL = declare("TM_REDIS_URL", "report", "redis:// or rediss:// URL of the Redis/ElastiCache store")
REDIS_AUTH_SECRET_ARN = declare(
    "TM_REDIS_AUTH_SECRET_ARN", "report", "optional Secrets Manager secret holding the ElastiCache auth token"
)
DYNAMODB_TABLE = declare("TM_DYNAMODB_TABLE", "report", "DynamoDB table name (backend dynamodb)")
REPORT_BUCKET = declare("TM_REPORT_BUCKET", "report", "S3 bucket the daily CSV roll-up is written to")
REPORT_PREFIX = declare("TM_REPORT_PREFIX", "report", "key prefix of the daily CSVs (default daily/)")


@dataclass(frozen=True, slots=True)
class ReportSettings:
    store_backend: str
    redis_url: str | None
    redis_auth_secret_arn: str | None
    dynamodb_table: str | None
    bucket: str
    prefix: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> ReportSettings:
        env = os.environ if environ is None else environ
        backend = env_choice(env, STORE_BACKEND, "redis", ("redis", "dynamodb"))
        prefix = env.get(REPORT_PREFIX, "").strip() or "daily/"
        return cls(
            store_backend=backend,
            redis_url=env_str(env, REDIS_URL) if backend == "redis" else None,
            redis_auth_secret_arn=env.get(REDIS_AUTH_SECRET_ARN, "").strip() or None,
            dynamodb_table=env_str(env, DYNAMODB_TABLE) if backend == "dynamodb" else None,
            bucket=env_str(env, REPORT_BUCKET),
            prefix=prefix if prefix.endswith("/") else prefix + "/",
        )
