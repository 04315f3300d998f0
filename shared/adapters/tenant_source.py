"""load_tenants: the tenant registry from a local path or ``s3://bucket/key`` (TOML, or JSON by extension)."""

from __future__ import annotations

import json
import tomllib
from typing import TYPE_CHECKING

from shared.errors import ConfigError
from shared.tenants import TenantRegistry

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client


def load_tenants(source: str, s3_client: S3Client | None = None) -> TenantRegistry:
    if not source.startswith("s3://"):
        return TenantRegistry.load(source)
    bucket, _, key = source[5:].partition("/")
    if not bucket or not key:
        raise ConfigError("must be s3://bucket/key", source=source)
    if s3_client is None:
        import boto3

        s3_client = boto3.client("s3")
    try:
        text = s3_client.get_object(Bucket=bucket, Key=key)["Body"].read().decode("utf-8")
    except Exception as exc:  # botocore's errors are many; all mean "cannot read it"
        raise ConfigError(f"cannot read tenant config: {exc}", source=source) from None
    try:
        raw = json.loads(text) if key.endswith(".json") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"not valid {'JSON' if key.endswith('.json') else 'TOML'}: {exc}", source=source) from None
    return TenantRegistry.from_dict(raw, source)
