"""build_store: the one store factory the consumer, the gateway and the CLI call.

``backend`` is ``redis`` (ElastiCache in AWS; ``redis_url`` required), ``dynamodb`` (``dynamodb_table``
required) or ``memory`` (tests and demos in one process). The Redis auth token, when ElastiCache needs one,
comes from Secrets Manager (``redis_auth_secret_arn``: the secret string, or a JSON object with a ``token``,
``auth_token`` or ``password`` key) and is never logged. Building connects nothing: clients connect lazily.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from shared.errors import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from shared.adapters.dynamo_store import DynamoStore
    from shared.adapters.memory_store import InMemoryStore
    from shared.adapters.redis_store import RedisStore


def read_auth_token(secret_arn: str, client: Any | None = None) -> str:
    if client is None:
        import boto3

        client = boto3.client("secretsmanager")
    text: str = client.get_secret_value(SecretId=secret_arn)["SecretString"]
    try:
        doc = json.loads(text)
    except ValueError:
        return text
    if isinstance(doc, dict):
        for key in ("token", "auth_token", "password"):
            if isinstance(doc.get(key), str):
                return str(doc[key])
        raise ConfigError("secret JSON has no token, auth_token or password key", source=secret_arn)
    return text


def build_store(
    backend: str,
    *,
    redis_url: str | None = None,
    dynamodb_table: str | None = None,
    redis_auth_secret_arn: str | None = None,
    redis_client: Any | None = None,
    dynamodb_client: DynamoDBClient | None = None,
    secrets_client: Any | None = None,
) -> RedisStore | DynamoStore | InMemoryStore:
    """A store implementing UsageReader, QuotaState, WindowStore, AlertMarks and UsageIndex."""
    if backend == "redis":
        from shared.adapters.redis_store import RedisStore

        if redis_client is None:
            if not redis_url:
                raise ConfigError("is required for the redis backend", source="environment", field="TM_REDIS_URL")
            import redis

            password = read_auth_token(redis_auth_secret_arn, secrets_client) if redis_auth_secret_arn else None
            redis_client = redis.Redis.from_url(
                redis_url, password=password, socket_timeout=5, socket_connect_timeout=5, health_check_interval=30
            )
        return RedisStore(redis_client)
    if backend == "dynamodb":
        if not dynamodb_table:
            raise ConfigError("is required for the dynamodb backend", source="environment", field="TM_DYNAMODB_TABLE")
        from shared.adapters.dynamo_store import DynamoStore

        return DynamoStore(dynamodb_table, client=dynamodb_client)
    if backend == "memory":
        from shared.adapters.memory_store import InMemoryStore

        return InMemoryStore()
    raise ConfigError(f"unknown store backend {backend!r}: redis, dynamodb or memory", field="TM_STORE_BACKEND")
