"""`meter` commands that read or change live state: usage, top, block/unblock, alerts, pricing, report, demo."""

from __future__ import annotations

import argparse
import getpass
import json
import time
from datetime import timedelta
from decimal import Decimal
from pathlib import Path as FsPath
from typing import Any

from shared.decisions import BlockRecord, Metric, alert_level_for
from shared.money import nanos_to_usd
from shared.windows import WINDOWS, window_reset
from tenantmeter_cli import cli_support as m
from tenantmeter_cli.cli_support import Context, emit

# --- tenants -----------------------------------------------------------------------------------------------


def cmd_tenants_list(ctx: Context) -> int:
    from tenantmeter_cli import registry_file
    from tenantmeter_cli.render import quota_summary, table

    registry = registry_file.load_registry(ctx.tenants_source())
    rows = [
        {
            "tenant": t.tenant_id,
            "name": t.name,
            "tier": t.tier.name,
            "keys": len(t.api_key_hashes),
            "quotas": quota_summary(t),
            "tags": ",".join(f"{k}={v}" for k, v in sorted(t.default_tags.items())),
        }
        for t in registry
    ]
    emit(ctx, rows, lambda: table("tenants", rows))
    return m.EXIT_OK


def cmd_tenants_add(ctx: Context) -> int:
    from tenantmeter_cli import registry_file

    tags = dict(parse_tag(t) for t in ctx.args.tag or [])
    _, key = registry_file.add_tenant(
        ctx.tenants_source(),
        ctx.args.tenant,
        ctx.args.tier,
        name=ctx.args.name or "",
        tags=tags,
        with_key=not ctx.args.no_key,
    )
    result = {"tenant": ctx.args.tenant, "tier": ctx.args.tier, "api_key": key}
    emit(
        ctx,
        result,
        lambda: print(
            f"added tenant {ctx.args.tenant} ({ctx.args.tier})"
            + (f"\nAPI key (shown once; only its SHA-256 is stored): {key}" if key else "")
        ),
    )
    return m.EXIT_OK


def cmd_tenants_set_quota(ctx: Context) -> int:
    from tenantmeter_cli import registry_file

    registry_file.set_quota(
        ctx.tenants_source(),
        ctx.args.tenant,
        window=ctx.args.window,
        metric=ctx.args.metric,
        limit=ctx.args.limit,
        hard=not ctx.args.soft,
    )
    kind = "soft" if ctx.args.soft else "hard"
    emit(
        ctx,
        {
            "tenant": ctx.args.tenant,
            "window": ctx.args.window,
            "metric": ctx.args.metric,
            "limit": ctx.args.limit,
            "hard": not ctx.args.soft,
        },
        lambda: print(f"{ctx.args.tenant}: {kind} quota {ctx.args.metric} per {ctx.args.window} = {ctx.args.limit}"),
    )
    return m.EXIT_OK


def parse_tag(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise m.CliError(f"--tag takes key=value, got {text!r}")
    return key, value


# --- usage and top -----------------------------------------------------------------------------------------


def usage_rows(tenant: Any, totals: Any, window: str) -> dict[str, Any]:
    """One tenant's window as a row: counters, and each quota of that window with its level."""
    row: dict[str, Any] = {
        "tenant": tenant.tenant_id,
        "tier": tenant.tier.name,
        "window": window,
        "requests": totals.requests,
        "input_tokens": totals.input_tokens,
        "output_tokens": totals.output_tokens,
        "cache_read_tokens": totals.cache_read_tokens,
        "cache_write_tokens": totals.cache_write_tokens,
        "cost_usd": str(nanos_to_usd(totals.cost_nanos)),
    }
    quotas = []
    for rule in tenant.quotas:
        if rule.window.name != window:
            continue
        decision = alert_level_for(totals.value(rule.metric), rule.limit, tenant.thresholds)
        limit = str(nanos_to_usd(rule.limit)) if rule.metric is Metric.COST else rule.limit
        quotas.append(
            {
                "metric": rule.metric.value,
                "limit": limit,
                "hard": rule.hard,
                "level": decision.level.label,
                "used_pct": str((decision.fraction * 100).quantize(Decimal(1))),
            }
        )
    row["quotas"] = quotas
    return row


def cmd_usage(ctx: Context) -> int:
    from tenantmeter_cli import registry_file
    from tenantmeter_cli.render import console, table

    registry = registry_file.load_registry(ctx.tenants_source())
    tenant = registry.find(ctx.args.tenant)
    if tenant is None:
        raise m.CliError(f"unknown tenant {ctx.args.tenant!r}")
    store = ctx.store()
    now = m.now_utc()
    totals = store.window_totals(tenant.tenant_id, [WINDOWS[ctx.args.window]], now)[ctx.args.window]
    status = store.quota_status(tenant.tenant_id, now)
    row = usage_rows(tenant, totals, ctx.args.window)
    row["blocked"] = [
        {"window": b.window, "reason": b.reason, "until": b.until.isoformat()} for b in status.blocks if b.active(now)
    ]

    def render() -> None:
        counters = {k: v for k, v in row.items() if k not in ("quotas", "blocked")}
        table(f"usage of {tenant.tenant_id} over {ctx.args.window}", [counters])
        table("quotas", row["quotas"])
        for block in row["blocked"]:
            console.print(f"[red]BLOCKED[/red] ({block['window']}) until {block['until']}: {block['reason']}")

    emit(ctx, row, render)
    return m.EXIT_OK


def cmd_top(ctx: Context) -> int:
    from tenantmeter_cli import registry_file
    from tenantmeter_cli.render import table

    registry = registry_file.load_registry(ctx.tenants_source())
    window = WINDOWS[ctx.args.window]
    metric = Metric.COST if ctx.args.by == "cost" else Metric.TOKENS
    ranked = ctx.store().top_tenants(window, metric, m.now_utc(), limit=ctx.args.limit)
    rows = [
        {
            "rank": i + 1,
            "tenant": tenant_id,
            "tier": t.tier.name if (t := registry.find(tenant_id)) else "?",
            "requests": tot.requests,
            "tokens": tot.tokens,
            "cost_usd": str(nanos_to_usd(tot.cost_nanos)),
        }
        for i, (tenant_id, tot) in enumerate(ranked)
    ]
    emit(ctx, rows, lambda: table(f"top tenants by {ctx.args.by} over {window.name}", rows))
    return m.EXIT_OK


# --- block / unblock ---------------------------------------------------------------------------------------


def cmd_block(ctx: Context) -> int:
    from tenantmeter_cli import registry_file

    registry = registry_file.load_registry(ctx.tenants_source())
    if ctx.args.tenant not in registry:
        raise m.CliError(f"unknown tenant {ctx.args.tenant!r}")
    now = m.now_utc()
    window = WINDOWS[ctx.args.window]
    until = now + ctx.args.duration if ctx.args.duration else window_reset(window, now)
    record = BlockRecord(ctx.args.tenant, window.name, ctx.args.reason, until, set_by=f"operator:{getpass.getuser()}")
    ctx.store().set_block(record)
    emit(
        ctx,
        {"tenant": record.tenant_id, "window": record.window, "until": until.isoformat(), "reason": record.reason},
        lambda: print(f"blocked {record.tenant_id} until {until.isoformat()} ({record.reason})"),
    )
    return m.EXIT_OK


def cmd_unblock(ctx: Context) -> int:
    removed = ctx.store().lift_blocks(ctx.args.tenant, ctx.args.window)
    emit(
        ctx,
        {"tenant": ctx.args.tenant, "lifted": removed},
        lambda: print(f"lifted {removed} block(s) of {ctx.args.tenant}"),
    )
    return m.EXIT_OK


# --- alerts tail -------------------------------------------------------------------------------------------


def alert_line(envelope: dict[str, Any]) -> dict[str, Any]:
    """An SNS envelope (as delivered to an SQS subscription) as a flat alert."""
    attrs = {k: v.get("Value") for k, v in envelope.get("MessageAttributes", {}).items()}
    try:
        body = json.loads(envelope.get("Message", "{}"))
    except ValueError:
        body = {"summary": envelope.get("Message", "")}
    return {
        "time": envelope.get("Timestamp", ""),
        "level": attrs.get("level", ""),
        "tenant": attrs.get("tenant_id", ""),
        "window": attrs.get("window", ""),
        "metric": attrs.get("metric", ""),
        "summary": body.get("summary", "") if isinstance(body, dict) else str(body),
    }


def cmd_alerts_tail(ctx: Context) -> int:
    import boto3

    from tenantmeter_cli.local.stack import drain_feed

    if not ctx.args.queue_url:
        raise m.CliError("alerts tail needs --queue-url (an SQS queue subscribed to the alert topics); repeatable")
    sqs = boto3.client("sqs")
    deadline = time.monotonic() + ctx.args.seconds if ctx.args.seconds else None
    while True:
        for url in ctx.args.queue_url:
            for envelope in drain_feed(sqs, url):
                line = alert_line(envelope)
                print(
                    json.dumps(line)
                    if ctx.as_json
                    else f"{line['time']}  {line['level']:<9} {line['tenant']:<16} {line['summary']}",
                    flush=True,
                )
        if ctx.args.once or (deadline is not None and time.monotonic() >= deadline):
            return m.EXIT_OK
        time.sleep(1.0)


# --- replay ------------------------------------------------------------------------------------------------


def cmd_replay_failures(ctx: Context) -> int:
    import os

    import boto3

    from tenantmeter_cli import replay
    from tenantmeter_cli.render import table

    args = ctx.args
    queue_url = args.queue_url or os.environ.get("TM_FAILURE_QUEUE_URL", "")
    if not queue_url:
        raise m.CliError(
            "replay-failures needs --queue-url or TM_FAILURE_QUEUE_URL (Terraform output failure_queue_url)"
        )
    if not (args.function or args.local or args.dry_run):
        raise m.CliError("say how to run the consumer: --function NAME (the deployed one), --local, or --dry-run")
    session = boto3.session.Session()
    region = session.region_name or "us-east-1"
    invoke: replay.Invoke | None = None
    if not args.dry_run:
        invoke = (
            replay.local_invoker() if args.local else replay.lambda_invoker(session.client("lambda"), args.function)
        )
    results = replay.replay_failures(
        session.client("sqs"),
        session.client("kinesis"),
        queue_url,
        invoke,
        region=region,
        limit=args.limit,
        dedupe_horizon=args.dedupe_horizon,
    )
    rows = [
        {
            "shard": r.shard_id,
            "sequence range": f"{r.start_sequence[-12:]}..{r.end_sequence[-12:]}" if r.shard_id else "",
            "records": f"{r.found}/{r.expected}",
            "invocations": r.invocations,
            "status": r.status,
            "detail": "; ".join([r.detail, *r.warnings]).strip("; "),
        }
        for r in results
    ]
    emit(ctx, [vars(r) for r in results], lambda: table("on-failure records", rows))
    return m.EXIT_OK if all(r.ok for r in results) else m.EXIT_CHECK_FAILED


# --- quarantine --------------------------------------------------------------------------------------------


def _quarantine_source(ctx: Context) -> Any:
    import os

    import boto3

    from tenantmeter_cli import quarantine

    url = ctx.args.url or os.environ.get("TM_QUARANTINE_URL", "")
    if not url:
        raise m.CliError(
            "say where the quarantine is: --url (an SQS queue URL or s3://bucket/prefix) or TM_QUARANTINE_URL"
        )
    try:
        return quarantine.source_for(url, s3=lambda: boto3.client("s3"), sqs=lambda: boto3.client("sqs"))
    except ValueError as exc:
        raise m.CliError(f"--url / TM_QUARANTINE_URL: {exc}") from None


def _reasons(names: list[str] | None) -> frozenset[str] | None:
    """The --reason values, each one the consumer uses (a typo would match nothing, silently)."""
    from consumers.metering.records import REASONS

    for name in names or ():
        if name not in REASONS:
            raise m.CliError(f"--reason {name!r} is not a quarantine reason; known: {', '.join(sorted(REASONS))}")
    return frozenset(names) if names else None


def cmd_quarantine_list(ctx: Context) -> int:
    from dataclasses import asdict

    from tenantmeter_cli import quarantine
    from tenantmeter_cli.render import table

    args = ctx.args
    reasons = _reasons(args.reason)
    listing = quarantine.list_records(_quarantine_source(ctx), reasons, args.limit)
    rows = [
        {
            "reason": h.reason,
            "shard": h.shard_id,
            "sequence": h.sequence_number[-12:],
            "partition key": h.partition_key,
            "bytes": h.length,
            "detail": h.detail[:80],
            "replayable": "yes" if h.data is not None else f"no: {h.problem}",
        }
        for h in listing.records
    ]
    data = {
        "by_reason": dict(listing.by_reason),
        "records": [{k: v for k, v in asdict(h).items() if k not in ("data", "handle")} for h in listing.records],
        "unreadable": [asdict(u) for u in listing.unreadable],
    }

    def render() -> None:
        table(
            "quarantined records by reason", [{"reason": r, "records": n} for r, n in listing.by_reason.most_common()]
        )
        table(f"quarantined records (first {args.limit})", rows)
        if listing.unreadable:
            table("not quarantine documents", [asdict(u) for u in listing.unreadable])

    emit(ctx, data, render)
    return m.EXIT_OK


def cmd_quarantine_replay(ctx: Context) -> int:
    import os

    import boto3

    from shared.settings import resource_names
    from tenantmeter_cli import quarantine
    from tenantmeter_cli.render import table

    args = ctx.args
    stream = args.stream or os.environ.get("TM_STREAM_NAME") or resource_names()["stream"]
    source = _quarantine_source(ctx)
    kinesis = None if args.dry_run else boto3.client("kinesis")
    report = quarantine.replay(source, kinesis, stream, _reasons(args.reason) or frozenset(), limit=args.limit)
    verb = "would put" if report.dry_run else "put back"
    data = {
        "stream": stream,
        "dry_run": report.dry_run,
        "replayed": [{"ref": h.ref, "reason": h.reason, "partition_key": h.partition_key} for h in report.replayed],
        "left": [{"ref": ref, "why": why} for ref, why in report.left],
    }

    def render() -> None:
        print(f"{verb} {len(report.replayed)} record(s) on stream {stream}; left {len(report.left)}")
        table("left in the quarantine", [{"record": ref, "why": why} for ref, why in report.left])

    emit(ctx, data, render)
    return m.EXIT_OK if report.ok else m.EXIT_CHECK_FAILED


# --- pricing -----------------------------------------------------------------------------------------------


def cmd_pricing_show(ctx: Context) -> int:
    from shared.pricing import PriceCatalog
    from tenantmeter_cli.render import table

    catalog = PriceCatalog.load(ctx.args.catalog)
    now = m.now_utc()
    rows = []
    for model in catalog.models.values():
        rates = model.rates_at(now) or model.rates[0]
        rows.append(
            {
                "model": model.model_id,
                "aliases": ", ".join(model.aliases),
                "since": str(rates.effective_from),
                "input": str(rates.input),
                "output": str(rates.output),
                "cache_read": str(rates.cache_read),
                "cache_write": str(rates.cache_write),
            }
        )
    emit(ctx, rows, lambda: table("prices, USD per 1M tokens", rows))
    return m.EXIT_OK


def pricing_problems(catalog: Any, registry: Any | None) -> list[str]:
    """Sanity checks beyond what loading validates: suspicious prices and models tenants use but we can't price."""
    problems = []
    for model in catalog.models.values():
        for rates in model.rates:
            if rates.input == 0 and rates.output == 0:
                problems.append(f"{model.model_id}: input and output both priced 0 from {rates.effective_from}")
            if rates.input > 100 or rates.output > 500:
                problems.append(f"{model.model_id}: price above $100/$500 per 1M tokens: per-1K confusion?")
    if registry is not None:
        for tenant in registry:
            for alias in tenant.inference_profiles:
                if catalog.resolve(alias) is None:
                    problems.append(f"tenant {tenant.tenant_id}: model {alias!r} is not in the catalog")
    return problems


def cmd_pricing_check(ctx: Context) -> int:
    from shared.pricing import PriceCatalog
    from tenantmeter_cli import registry_file

    catalog = PriceCatalog.load(ctx.args.catalog)
    source = ctx.args.tenants
    registry = registry_file.load_registry(source) if source else None
    problems = pricing_problems(catalog, registry)
    emit(
        ctx,
        {"models": len(catalog.models), "problems": problems},
        lambda: print("\n".join(problems) if problems else f"catalog ok: {len(catalog.models)} models"),
    )
    return m.EXIT_CHECK_FAILED if problems else m.EXIT_OK


def cmd_pricing_sync(ctx: Context) -> int:
    import boto3

    from tenantmeter_cli import pricing_sync as ps

    client = boto3.client("pricing", region_name=ps.PRICING_API_REGION)
    extra = dict(parse_mapping(n, "--name") for n in ctx.args.name or [])
    result = ps.sync_pricing(
        client,
        FsPath(ctx.args.catalog) if ctx.args.catalog else ps.default_catalog_path(),
        today=m.now_utc().date(),
        confirm=ctx.args.yes,
        region=ctx.args.region,
        extra_names=extra,
    )
    print(ps.render_json(result) if ctx.as_json else ps.render_text(result), end="")
    return int(result.exit_code)


def cmd_profiles_sync(ctx: Context) -> int:
    import boto3

    from shared.pricing import PriceCatalog
    from tenantmeter_cli import profiles as pf
    from tenantmeter_cli import registry_file

    registry = registry_file.load_registry(ctx.tenants_source())
    models = (
        {t.tenant_id: tuple(ctx.args.model) for t in registry} if ctx.args.model else pf.models_from_registry(registry)
    )
    result = pf.sync_profiles(
        boto3.client("bedrock", region_name=ctx.args.region),
        registry,
        models,
        catalog=PriceCatalog.load(),
        sources=dict(parse_mapping(s, "--source") for s in ctx.args.source or []),
        apply=ctx.args.apply,
    )
    print(pf.render_json(result) if ctx.as_json else pf.render_text(result), end="")
    if not ctx.as_json and ctx.args.print_toml:
        print(pf.render_tenants_toml(result), end="")
    return int(result.exit_code)


def parse_mapping(text: str, flag: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key or not value:
        raise m.CliError(f"{flag} takes NAME=VALUE, got {text!r}")
    return key, value


def cmd_report(ctx: Context) -> int:
    from consumers.reporting.report import build_rows, collect, render_csv

    day = ctx.args.day or (m.now_utc() - timedelta(days=1)).date()
    rows = build_rows(day, collect(ctx.store(), day))
    text = render_csv(rows)
    if ctx.args.out == "-":
        print(text, end="")
    else:
        try:
            FsPath(ctx.args.out).write_text(text, encoding="utf-8")
        except OSError as exc:
            raise m.CliError(f"cannot write {ctx.args.out}: {exc.strerror}") from None
        print(f"wrote {len(rows)} rows for {day.isoformat()} to {ctx.args.out}")
    return m.EXIT_OK


# --- demo --------------------------------------------------------------------------------------------------


def cmd_demo(ctx: Context) -> int:
    from tenantmeter_cli.demo import DemoOptions, run_demo

    options = DemoOptions(
        duration_s=ctx.args.duration,
        tenants=ctx.args.tenants_count,
        rate=ctx.args.rate,
        seed=ctx.args.seed,
        headless=ctx.args.headless,
        shards=ctx.args.shards,
    )
    return run_demo(options)


def json_flag(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
    p.add_argument("--json", action="store_true", help="machine-readable output")
    return p


def register(sub: Any) -> None:
    tenants = sub.add_parser("tenants", help="list, add tenants and set quotas").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    json_flag(tenants.add_parser("list", help="list tenants")).set_defaults(func=cmd_tenants_list)
    add = json_flag(tenants.add_parser("add", help="add a tenant with a new API key"))
    add.add_argument("tenant")
    add.add_argument("--tier", required=True)
    add.add_argument("--name")
    add.add_argument("--tag", action="append", help="default tag key=value (repeatable)")
    add.add_argument("--no-key", action="store_true", help="do not generate an API key")
    add.set_defaults(func=cmd_tenants_add)
    sq = json_flag(tenants.add_parser("set-quota", help="set a per-tenant quota override"))
    sq.add_argument("tenant")
    sq.add_argument("--window", type=m.window_arg, required=True)
    sq.add_argument("--metric", choices=("tokens", "cost_usd", "requests"), required=True)
    sq.add_argument("--limit", required=True, help='integer, or USD as "500.00" for cost_usd')
    sq.add_argument("--soft", action="store_true", help="alert only, never block")
    sq.set_defaults(func=cmd_tenants_set_quota)

    usage = json_flag(sub.add_parser("usage", help="a tenant's usage and quota state over a window"))
    usage.add_argument("tenant")
    usage.add_argument("--window", type=m.window_arg, default="month")
    usage.set_defaults(func=cmd_usage)

    top = json_flag(sub.add_parser("top", help="tenants ranked by cost or tokens"))
    top.add_argument("--by", choices=("cost", "tokens"), default="cost")
    top.add_argument("--window", type=m.window_arg, default="day")
    top.add_argument("--limit", type=m.positive_int, default=20)
    top.set_defaults(func=cmd_top)

    block = json_flag(sub.add_parser("block", help="cut a tenant off until a window resets"))
    block.add_argument("tenant")
    block.add_argument("--reason", required=True)
    block.add_argument("--window", type=m.window_arg, default="month", help="lift at this window's reset")
    block.add_argument("--for", dest="duration", type=m.parse_duration, help="or lift after e.g. 2h")
    block.set_defaults(func=cmd_block)

    unblock = json_flag(sub.add_parser("unblock", help="lift a tenant's blocks"))
    unblock.add_argument("tenant")
    unblock.add_argument("--window", type=m.window_arg, help="only this window's block")
    unblock.set_defaults(func=cmd_unblock)

    alerts = sub.add_parser("alerts", help="the alert feed").add_subparsers(dest="action", required=True)
    tail = json_flag(alerts.add_parser("tail", help="print alerts as they arrive"))
    tail.add_argument("--queue-url", action="append", help="SQS queue subscribed to an alert topic (repeatable)")
    tail.add_argument("--once", action="store_true", help="print what is queued now and exit")
    tail.add_argument("--seconds", type=m.positive_float, help="stop after this long")
    tail.set_defaults(func=cmd_alerts_tail)

    rf = json_flag(
        sub.add_parser(
            "replay-failures", help="meter the batches the event-source mapping gave up on (its on-failure queue)"
        )
    )
    rf.add_argument("--queue-url", help="the on-failure SQS queue (TM_FAILURE_QUEUE_URL)")
    how = rf.add_mutually_exclusive_group()
    how.add_argument("--function", help="invoke this deployed consumer function (the usual way)")
    how.add_argument("--local", action="store_true", help="run the consumer in this process (the local stack)")
    how.add_argument("--dry-run", action="store_true", help="read the ranges back, change nothing")
    rf.add_argument("--limit", type=m.positive_int, default=100, help="failure records per run (default 100)")
    rf.add_argument(
        "--dedupe-horizon", type=m.parse_duration, default=timedelta(hours=24), help="the consumer's (default 24h)"
    )
    rf.set_defaults(func=cmd_replay_failures)

    quarantined = sub.add_parser("quarantine", help="records the consumer could not meter").add_subparsers(
        dest="action", required=True
    )
    ql = json_flag(quarantined.add_parser("list", help="quarantined records by reason (changes nothing)"))
    qr = json_flag(
        quarantined.add_parser("replay", help="put records of the given reasons back on the stream once fixed")
    )
    for p in (ql, qr):
        p.add_argument("--url", help="the quarantine: SQS queue URL or s3://bucket/prefix (TM_QUARANTINE_URL)")
        p.add_argument("--limit", type=m.positive_int, default=1000, help="records per run (default 1000)")
    ql.add_argument("--reason", action="append", help="only this reason (repeatable)")
    ql.set_defaults(func=cmd_quarantine_list)
    qr.add_argument(
        "--reason", action="append", required=True, help="replay this reason, e.g. unknown_tenant (repeatable)"
    )
    qr.add_argument("--stream", help="Kinesis stream (TM_STREAM_NAME; default the Terraform name)")
    qr.add_argument("--dry-run", action="store_true", help="say what would be put back, change nothing")
    qr.set_defaults(func=cmd_quarantine_replay)

    pricing = sub.add_parser("pricing", help="the price catalog").add_subparsers(dest="action", required=True)
    show = json_flag(pricing.add_parser("show", help="current prices per 1M tokens"))
    show.add_argument("--catalog", help="catalog file (default: the packaged one)")
    show.set_defaults(func=cmd_pricing_show)
    check = json_flag(pricing.add_parser("check", help="sanity-check the catalog (and tenants' models)"))
    check.add_argument("--catalog", help="catalog file (default: the packaged one)")
    check.set_defaults(func=cmd_pricing_check)

    sync = json_flag(pricing.add_parser("sync", help="compare with the AWS Price List; write only with --yes"))
    sync.add_argument("--catalog", help="catalog file to update (default: the packaged one)")
    sync.add_argument("--yes", action="store_true", help="write the changes as new entries dated today")
    sync.add_argument("--region", default="us-east-1", help="the region whose prices to compare")
    sync.add_argument("--name", action="append", help='map an AWS model name: "AWS name=catalog id" (repeatable)')
    sync.set_defaults(func=cmd_pricing_sync)

    profiles = sub.add_parser("profiles", help="Bedrock application inference profiles per tenant")
    psync = json_flag(
        profiles.add_subparsers(dest="action", required=True).add_parser(
            "sync", help="create/tag/delete per-tenant profiles; a dry run unless --apply"
        )
    )
    psync.add_argument("--model", action="append", help="model alias every tenant gets a profile for (repeatable)")
    psync.add_argument("--source", action="append", help="alias=ARN of a cross-region profile to copy (repeatable)")
    psync.add_argument("--region", default=None, help="AWS region (default: the environment's)")
    psync.add_argument("--apply", action="store_true", help="make the changes (default: plan only)")
    psync.add_argument("--print-toml", action="store_true", help="print inference_profiles lines for tenants.toml")
    psync.set_defaults(func=cmd_profiles_sync)

    report = sub.add_parser("report", help="the daily roll-up per tenant x model x costCenter x applicationId")
    report.add_argument("--day", type=m.day_arg, help="UTC day YYYY-MM-DD (default: yesterday)")
    report.add_argument("--out", required=True, help="CSV file to write, or - for stdout")
    report.set_defaults(func=cmd_report)

    demo = sub.add_parser("demo", help="run the whole pipeline locally (the main job)")
    demo.add_argument("--duration", type=m.positive_float, default=60.0, help="seconds of traffic (default 60)")
    demo.add_argument("--tenants", dest="tenants_count", type=m.positive_int, default=20)
    demo.add_argument("--rate", type=m.positive_float, default=40.0, help="total requests/s (default 40)")
    demo.add_argument("--seed", type=int, default=7)
    demo.add_argument("--shards", type=m.positive_int, default=2)
    demo.add_argument("--headless", action="store_true", help="plain lines and a final JSON line (for CI)")
    demo.set_defaults(func=cmd_demo)
