"""bootstrap: the one place that turns ``Settings`` into a running ``GatewayApp``.

The Lambda handler calls it once per warm container; the local stack and tests call it with overrides for
any dependency (a fake sink, the in-memory store, the simulated model). SDK clients are created here and
only here, and only for what the settings ask for, so importing the gateway never touches AWS.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from producers.gateway.app import GatewayApp, GatewayConfig, build_app, utc_now
from producers.gateway.metrics import EmfStdoutSink, MetricsSink
from producers.gateway.models import ModelBackend
from producers.gateway.settings import Settings
from shared.ports import EventSink, QuotaState, UsageReader
from shared.pricing import PriceCatalog
from shared.tenants import TenantRegistry

if TYPE_CHECKING:
    from botocore.config import Config

# Bedrock calls may stream for a while; retries are few because a reservation is held meanwhile.
BEDROCK_CONNECT_TIMEOUT_S = 3
BEDROCK_READ_TIMEOUT_S = 120
BEDROCK_MAX_ATTEMPTS = 3


def _client_config() -> Config:
    from botocore.config import Config

    return Config(
        connect_timeout=BEDROCK_CONNECT_TIMEOUT_S,
        read_timeout=BEDROCK_READ_TIMEOUT_S,
        retries={"mode": "standard", "total_max_attempts": BEDROCK_MAX_ATTEMPTS},
    )


def gateway_config(settings: Settings) -> GatewayConfig:
    return GatewayConfig(
        region=settings.region,
        max_body_bytes=settings.max_body_bytes,
        quota_cache_ms=settings.quota_cache_ms,
        reservation_ttl=settings.reservation_ttl,
        quota_refresh_ahead=False,  # Lambda: one request per container, frozen in between
    )


def default_backend(settings: Settings) -> ModelBackend:
    if settings.model_backend == "simulated":
        from producers.gateway.backends.simulated import SimulatedModel

        return SimulatedModel()
    import boto3

    from producers.gateway.backends.bedrock import BedrockBackend

    return BedrockBackend(boto3.client("bedrock-runtime", region_name=settings.region, config=_client_config()))


def default_endpoints(settings: Settings) -> dict[str, ModelBackend]:
    if not settings.sagemaker_endpoints:
        return {}
    import boto3

    from producers.gateway.backends.sagemaker import SageMakerBackend

    client = boto3.client("sagemaker-runtime", region_name=settings.region, config=_client_config())
    backend = SageMakerBackend(client)
    return dict.fromkeys(settings.sagemaker_endpoints, backend)


def bootstrap(
    settings: Settings,
    *,
    tenants: TenantRegistry | None = None,
    quota_state: QuotaState | None = None,
    usage_reader: UsageReader | None = None,
    sink: EventSink | None = None,
    backend: ModelBackend | None = None,
    endpoints: Mapping[str, ModelBackend] | None = None,
    catalog: PriceCatalog | None = None,
    clock: Callable[[], datetime] = utc_now,
    metrics: MetricsSink | None = None,
    config: GatewayConfig | None = None,
    model_routes: Mapping[str, str] | None = None,
) -> GatewayApp:
    """Build the gateway from ``settings``; every keyword given replaces what the settings would build."""
    if tenants is None:
        from shared.adapters.tenant_source import load_tenants

        tenants = load_tenants(settings.tenant_config)
    if catalog is None:
        catalog = PriceCatalog.load(settings.pricing_catalog or None)
    if quota_state is None or usage_reader is None:
        from shared.adapters.stores import build_store

        store = build_store(
            settings.store_backend,
            redis_url=settings.redis_url or None,
            dynamodb_table=settings.dynamodb_table,
            redis_auth_secret_arn=settings.redis_auth_secret_arn or None,
        )
        quota_state = quota_state or store
        usage_reader = usage_reader or store
    if sink is None:
        from producers.sdk.producer import UsageProducer

        sink = UsageProducer(settings.stream_name, region_name=settings.region)
    return build_app(
        tenants=tenants,
        quota_state=quota_state,
        usage_reader=usage_reader,
        sink=sink,
        backend=backend or default_backend(settings),
        endpoints=default_endpoints(settings) if endpoints is None else endpoints,
        catalog=catalog,
        clock=clock,
        metrics=metrics or EmfStdoutSink(),
        config=config or gateway_config(settings),
        model_routes=model_routes,
    )
