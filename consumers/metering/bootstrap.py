"""The one place the metering consumer is wired: settings -> adapters -> service, once per warm container.

``bootstrap(settings, store=..., alerts=..., ...)`` builds a Container; anything passed in is used as is, so
tests and the local event-source-mapping runner can swap any adapter. ``get_container()`` builds the default
from ``Settings.from_env()`` on first use and caches it; ``set_container`` / ``reset_container`` replace or
drop the cache. Nothing here runs at import time.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from aws_lambda_powertools import Logger, Metrics

from consumers.metering.service import ConsumerStore, MeteringService
from consumers.metering.settings import Settings
from consumers.metering.validate import Meter
from shared.adapters.quarantine import build_quarantine
from shared.adapters.sns_alerts import SnsAlertPublisher
from shared.adapters.stores import build_store
from shared.adapters.tenant_source import load_tenants
from shared.ports import AlertPublisher, QuarantineSink
from shared.pricing import CachedPricer, PriceCatalog
from shared.tenants import TenantRegistry

if TYPE_CHECKING:
    from datetime import timedelta

SERVICE_NAME = "tenantmeter-metering"


@dataclass
class Container:
    service: MeteringService
    logger: Logger
    metrics: Metrics
    settings: Settings | None = None


def bootstrap(
    settings: Settings | None = None,
    *,
    store: ConsumerStore | None = None,
    alerts: AlertPublisher | None = None,
    quarantine: QuarantineSink | None = None,
    tenants: TenantRegistry | None = None,
    catalog: PriceCatalog | None = None,
    dedupe_horizon: timedelta | None = None,
    logger: Logger | None = None,
    metrics: Metrics | None = None,
) -> Container:
    """Build the consumer. Every dependency not passed in is built from ``settings`` (required then)."""

    def need() -> Settings:
        if settings is None:
            raise ValueError("bootstrap needs settings for the dependencies not passed in")
        return settings

    if store is None:
        s = need()
        store = build_store(
            s.store_backend,
            redis_url=s.redis_url,
            dynamodb_table=s.dynamodb_table,
            redis_auth_secret_arn=s.redis_auth_secret_arn,
        )
    if alerts is None:
        alerts = SnsAlertPublisher(need().topic_arns)
    if quarantine is None:
        quarantine = build_quarantine(need().quarantine_url)
    if tenants is None:
        tenants = load_tenants(need().tenant_config)
    if catalog is None:
        catalog = PriceCatalog.load(settings.pricing_catalog if settings else None)
    if dedupe_horizon is None:
        dedupe_horizon = need().dedupe_horizon
    log = logger or Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE_NAME)
    emf = metrics or Metrics(
        namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE") or "tenantmeter",
        service=os.environ.get("POWERTOOLS_SERVICE_NAME") or SERVICE_NAME,
    )
    service = MeteringService(
        store=store,
        alerts=alerts,
        quarantine=quarantine,
        tenants=tenants,
        meter=Meter(tenants, CachedPricer(catalog)),
        dedupe_horizon=dedupe_horizon,
        log=log,
    )
    return Container(service=service, logger=log, metrics=emf, settings=settings)


_container: Container | None = None


def get_container() -> Container:
    global _container
    if _container is None:
        _container = bootstrap(Settings.from_env())
    return _container


def set_container(container: Container) -> None:
    global _container
    _container = container


def reset_container() -> None:
    global _container
    _container = None
