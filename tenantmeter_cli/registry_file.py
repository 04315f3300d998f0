"""Reading and rewriting the tenant registry file (a local path or ``s3://bucket/key``) for `meter tenants`.

Edits go through the raw TOML/JSON document, are validated by loading the result with
``TenantRegistry.from_dict`` before anything is written, and are written back whole (comments in a TOML file
are not preserved: tomli-w writes data, not layout).
"""

from __future__ import annotations

import json
import secrets
import tomllib
from pathlib import Path
from typing import Any

import boto3
import tomli_w

from shared.errors import ConfigError
from shared.tenants import TenantRegistry, hash_api_key


def _split_s3(source: str) -> tuple[str, str]:
    bucket, _, key = source.removeprefix("s3://").partition("/")
    if not bucket or not key:
        raise ConfigError("an S3 registry must be s3://bucket/key", source=source)
    return bucket, key


def read_text(source: str) -> str:
    if source.startswith("s3://"):
        bucket, key = _split_s3(source)
        try:
            body = boto3.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception as exc:  # botocore raises many kinds; the operator needs the message
            raise ConfigError(f"cannot read tenant registry: {exc}", source=source) from None
        return bytes(body).decode("utf-8")
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read tenant registry: {exc.strerror}", source=source) from None


def write_text(source: str, text: str) -> None:
    if source.startswith("s3://"):
        bucket, key = _split_s3(source)
        boto3.client("s3").put_object(Bucket=bucket, Key=key, Body=text.encode("utf-8"))
        return
    Path(source).write_text(text, encoding="utf-8")


def load_document(source: str) -> dict[str, Any]:
    text = read_text(source)
    try:
        doc = json.loads(text) if source.endswith(".json") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"not valid {'JSON' if source.endswith('.json') else 'TOML'}: {exc}", source=source) from None
    if not isinstance(doc, dict):
        raise ConfigError("must be a table/object", source=source)
    return doc


def save_document(source: str, doc: dict[str, Any]) -> TenantRegistry:
    """Validate ``doc`` as a registry, then write it. Returns the validated registry."""
    registry = TenantRegistry.from_dict(doc, source)
    text = json.dumps(doc, indent=2) + "\n" if source.endswith(".json") else tomli_w.dumps(doc)
    write_text(source, text)
    return registry


def load_registry(source: str) -> TenantRegistry:
    return TenantRegistry.from_dict(load_document(source), source)


def new_api_key(tenant_id: str) -> str:
    """A fresh API key: shown once to the operator; only its SHA-256 is stored."""
    return f"tm_{tenant_id}_{secrets.token_urlsafe(24)}"


def add_tenant(
    source: str,
    tenant_id: str,
    tier: str,
    *,
    name: str = "",
    tags: dict[str, str] | None = None,
    with_key: bool = True,
) -> tuple[TenantRegistry, str]:
    """Add a tenant (with a new API key unless ``with_key`` is False). Returns the registry and the key."""
    doc = load_document(source)
    tenants = doc.setdefault("tenants", [])
    if any(isinstance(t, dict) and t.get("id") == tenant_id for t in tenants):
        raise ConfigError("already exists", source=source, entry=f"tenant {tenant_id}", field="id")
    key = new_api_key(tenant_id) if with_key else ""
    entry: dict[str, Any] = {"id": tenant_id, "tier": tier}
    if name:
        entry["name"] = name
    if key:
        entry["api_key_sha256"] = [hash_api_key(key)]
    if tags:
        entry["tags"] = tags
    tenants.append(entry)
    return save_document(source, doc), key


def set_quota(source: str, tenant_id: str, *, window: str, metric: str, limit: str, hard: bool) -> TenantRegistry:
    """Set (add or replace) one per-tenant quota override."""
    doc = load_document(source)
    for entry in doc.get("tenants", []):
        if isinstance(entry, dict) and entry.get("id") == tenant_id:
            quotas = [q for q in entry.get("quotas", []) if (q.get("window"), q.get("metric")) != (window, metric)]
            value: str | int = limit if metric == "cost_usd" else _int_limit(limit, source, tenant_id)
            quotas.append({"window": window, "metric": metric, "limit": value, "hard": hard})
            entry["quotas"] = quotas
            return save_document(source, doc)
    raise ConfigError("no such tenant", source=source, entry=f"tenant {tenant_id}", field="id")


def _int_limit(limit: str, source: str, tenant_id: str) -> int:
    try:
        return int(limit)
    except ValueError:
        raise ConfigError(
            f"token and request limits are integers, got {limit!r}",
            source=source,
            entry=f"tenant {tenant_id}",
            field="limit",
        ) from None
