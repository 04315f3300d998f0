"""DynamoStore: every store port over one DynamoDB table, for teams that run no Redis.

Table: partition key ``pk`` (S), sort key ``sk`` (S), TTL attribute ``expires_at`` (epoch seconds). DynamoDB
deletes expired items lazily (up to days later), so every read drops items whose ``expires_at`` has passed.

- usage bucket: pk ``T#<tenant>``, sk ``U#<m|h|d|mo>#<bucket id>``; one Number per ``prefix|code`` counter
  (shared.store_layout).
- remembered event id: ``T#<tenant>`` / ``E#<event id>``; expires after the dedupe horizon.
- high-water mark: ``T#<tenant>`` / ``H#<shard>|<partition key>``; ``pos`` = 64-digit sequence + 10-digit sub.
- reservation: ``T#<tenant>`` / ``R#<id>`` with ``amount``; the ledger ``L#`` holds a ``version`` that every
  reservation change bumps.
- block / reserve flag: ``T#<tenant>`` / ``Q#B#<window>`` and ``Q#F#<window>``: one Query on ``Q#`` reads both,
  one round trip.
- alert mark: ``T#<tenant>`` / ``A#<period>#<rule>`` with ``level``.
- active tenant: ``ACTIVE#<YYYYMMDD>`` / ``<tenant>``: the CLI's `top` and the daily report.

Exactly once: each tenant's batch is written by TransactWriteItems (at most 100 actions, so a long batch goes
in consecutive chunks, each atomic): a conditional Put per new event id (``attribute_not_exists``), the
high-water marks conditioned on the values read before, ADD updates of the aggregated counters, and the
settled reservations' deletes. A cancelled transaction names the conditions that failed: the event ids
already remembered are duplicates, and the chunk is retried without them. Reservations: ``reserve`` reads
the window's metered cost and the outstanding reservations, then writes the new one in a transaction that
checks neither changed (ConditionCheck on the counter item and on the ledger version).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from shared.decisions import AlertLevel, BlockRecord, Metric
from shared.errors import StoreUnavailableError
from shared.ports import (
    AlertMark,
    ApplyOutcome,
    MeteredEvent,
    QuotaStatus,
    ReserveFlag,
    RollupRow,
    TenantBatch,
    Totals,
    previous_name,
)
from shared.store_layout import (
    COUNTERS,
    HWM_RETENTION,
    Dim,
    aggregate_fields,
    dimension_sums,
    fields_to_totals,
    hwm_applies,
    month_days,
    parse_dim_prefix,
    previous_period,
    rank_tenants,
    window_days,
)
from shared.windows import (
    Granularity,
    Window,
    bucket_expiry,
    bucket_id,
    parse_bucket_id,
    window_buckets,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

MAX_ACTIONS: Final = 100
INDEX_RETENTION: Final = timedelta(days=40)
_GRAN: Final = {Granularity.MINUTE: "m", Granularity.HOUR: "h", Granularity.DAY: "d", Granularity.MONTH: "mo"}
_TOTAL_FIELDS: Final = tuple(f"t|{c}" for c in COUNTERS)


def _tpk(tenant_id: str) -> str:
    return f"T#{tenant_id}"


def _epoch(t: datetime) -> int:
    return int(t.timestamp())


def _hwm_applies(event: MeteredEvent, now: datetime, horizon: timedelta) -> bool:
    hour_start_s = int(event.occurred_at.timestamp()) // 3600 * 3600
    return hwm_applies(hour_start_s, int(now.timestamp()), int(horizon.total_seconds()))


def _position(event: MeteredEvent) -> str:
    return event.position.padded


def _key(pk: str, sk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


def _bucket_sk(granularity: Granularity, ident: str) -> str:
    return f"U#{_GRAN[granularity]}#{ident}"


def _live(item: dict[str, Any], now: datetime) -> bool:
    exp = item.get("expires_at")
    return exp is None or int(exp["N"]) > _epoch(now)


def _counters(item: dict[str, Any] | None) -> dict[str, int]:
    if not item:
        return {}
    return {k: int(v["N"]) for k, v in item.items() if "|" in k and "N" in v}


class DynamoStore:
    """UsageReader, QuotaState, WindowStore, AlertMarks and UsageIndex over one DynamoDB table."""

    def __init__(self, table_name: str, client: DynamoDBClient | None = None) -> None:
        self.table = table_name
        self._client = client

    @property
    def client(self) -> DynamoDBClient:
        if self._client is None:
            import boto3

            self._client = boto3.client("dynamodb")
        return self._client

    # --- reading helpers ---------------------------------------------------------------------------------

    def _batch_get(self, keys: Sequence[tuple[str, str]], now: datetime) -> dict[tuple[str, str], dict[str, Any]]:
        """Consistent reads of many items (100 per call), unprocessed keys retried; expired items dropped."""
        found: dict[tuple[str, str], dict[str, Any]] = {}
        unique = list(dict.fromkeys(keys))
        for start in range(0, len(unique), 100):
            request: Any = {
                self.table: {"Keys": [_key(pk, sk) for pk, sk in unique[start : start + 100]], "ConsistentRead": True}
            }
            for _ in range(10):
                answer = self.client.batch_get_item(RequestItems=request)
                for item in answer.get("Responses", {}).get(self.table, []):
                    if _live(item, now):
                        found[(item["pk"]["S"], item["sk"]["S"])] = item
                request = answer.get("UnprocessedKeys") or {}
                if not request:
                    break
        return found

    def _window_keys(self, tenant_id: str, window: Window, now: datetime) -> list[tuple[str, str]]:
        return [(_tpk(tenant_id), _bucket_sk(window.granularity, b)) for b in window_buckets(window, now)]

    def _totals_from(self, items: dict[tuple[str, str], dict[str, Any]], keys: Iterable[tuple[str, str]]) -> Totals:
        total = Totals()
        for key in keys:
            counts = fields_to_totals(_counters(items.get(key)))
            total = total + counts.get(Dim.TOTAL.value, Totals())
        return total

    def _read_totals(
        self, requests: Sequence[tuple[str, Sequence[Window], Sequence[Window]]], now: datetime
    ) -> list[dict[str, Totals]]:
        plans: list[list[tuple[str, list[tuple[str, str]]]]] = []
        all_keys: list[tuple[str, str]] = []
        for tenant_id, windows, previous in requests:
            plan = [(w.name, self._window_keys(tenant_id, w, now)) for w in windows]
            plan += [(previous_name(w), self._window_keys(tenant_id, w, previous_period(w, now))) for w in previous]
            plans.append(plan)
            for _, keys in plan:
                all_keys.extend(keys)
        items = self._batch_get(all_keys, now) if all_keys else {}
        return [{name: self._totals_from(items, keys) for name, keys in plan} for plan in plans]

    # --- WindowStore -------------------------------------------------------------------------------------

    def apply_usage(
        self, batches: Sequence[TenantBatch], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        outcomes: list[ApplyOutcome] = []
        try:
            self._index_active(batches, now)
            marks = self._read_high_water(batches, now)
        except (ClientError, BotoCoreError) as exc:
            return [ApplyOutcome(b.tenant_id, ok=False, error=f"dynamodb: {exc}") for b in batches]
        applied: list[TenantBatch] = []
        for batch in batches:
            try:
                dups, n_dup = self._apply_tenant(batch, marks, now, dedupe_horizon)
            except (ClientError, BotoCoreError, StoreUnavailableError) as exc:
                outcomes.append(ApplyOutcome(batch.tenant_id, ok=False, error=f"dynamodb: {exc}"))
                continue
            outcomes.append(
                ApplyOutcome(
                    batch.tenant_id,
                    ok=True,
                    applied=len(batch.events) - n_dup,
                    duplicates=n_dup,
                    duplicate_ids=frozenset(dups),
                )
            )
            applied.append(batch)
        try:
            reads = self._read_totals([(b.tenant_id, b.read_windows, b.read_previous) for b in applied], now)
        except (ClientError, BotoCoreError) as exc:
            return [ApplyOutcome(o.tenant_id, ok=False, error=f"dynamodb: {exc}") for o in outcomes]
        by_tenant = {b.tenant_id: r for b, r in zip(applied, reads, strict=True)}
        return [
            ApplyOutcome(
                o.tenant_id, o.ok, o.applied, o.duplicates, o.duplicate_ids, by_tenant.get(o.tenant_id, {}), o.error
            )
            for o in outcomes
        ]

    def _index_active(self, batches: Sequence[TenantBatch], now: datetime) -> None:
        pairs = sorted({(bucket_id(Granularity.DAY, e.occurred_at), b.tenant_id) for b in batches for e in b.events})
        expires = str(_epoch(now + INDEX_RETENTION))
        for start in range(0, len(pairs), 25):
            request: Any = {
                self.table: [
                    {"PutRequest": {"Item": {**_key(f"ACTIVE#{d}", t), "expires_at": {"N": expires}}}}
                    for d, t in pairs[start : start + 25]
                ]
            }
            for _ in range(10):
                answer = self.client.batch_write_item(RequestItems=request)
                request = answer.get("UnprocessedItems") or {}
                if not request:
                    break

    def _read_high_water(self, batches: Sequence[TenantBatch], now: datetime) -> dict[tuple[str, str], str]:
        keys = [(_tpk(b.tenant_id), f"H#{e.position.stream_key}") for b in batches for e in b.events]
        items = self._batch_get(keys, now) if keys else {}
        return {key: item["pos"]["S"] for key, item in items.items()}

    def _apply_tenant(
        self, batch: TenantBatch, marks: dict[tuple[str, str], str], now: datetime, horizon: timedelta
    ) -> tuple[set[str], int]:
        """Apply in chunks that fit one transaction; returns the duplicate event ids and how many events were."""
        tpk = _tpk(batch.tenant_id)
        duplicates: set[str] = set()
        n_dup = 0
        seen: set[str] = set()
        events = list(batch.events)
        settle_left = sorted({e.reservation_id for e in events if e.reservation_id})
        start = 0
        while start < len(events) or settle_left:
            chunk = events[start : start + 40]
            start += len(chunk)
            settle, settle_left = settle_left[:20], settle_left[20:]
            known: set[str] = set()
            for _attempt in range(6):
                flags = []
                in_chunk: set[str] = set()
                for e in chunk:
                    mark = marks.get((tpk, f"H#{e.position.stream_key}"))
                    ids = e.event_id
                    below = mark is not None and _position(e) <= mark and _hwm_applies(e, now, horizon)
                    dup = below or ids in seen or ids in known or ids in in_chunk
                    in_chunk.add(ids)
                    flags.append(dup)
                failed = self._transact(batch.tenant_id, chunk, flags, marks, settle, now, horizon)
                if failed is None:
                    break
                if isinstance(failed, str):  # "conflict": a high-water mark moved under us
                    marks.update(self._read_high_water([TenantBatch(batch.tenant_id, tuple(chunk))], now))
                    continue
                known |= failed  # event ids already remembered: duplicates
            else:
                raise StoreUnavailableError(f"tenant {batch.tenant_id}: transaction kept being cancelled")
            for e, dup in zip(chunk, flags, strict=True):
                if dup:
                    duplicates.add(e.event_id)
                    n_dup += 1
                seen.add(e.event_id)
        return duplicates, n_dup

    def _transact(
        self,
        tenant_id: str,
        chunk: Sequence[MeteredEvent],
        dups: Sequence[bool],
        marks: dict[tuple[str, str], str],
        settle: Sequence[str],
        now: datetime,
        horizon: timedelta,
    ) -> set[str] | str | None:
        """None when committed; the event ids found already remembered; or "conflict" (marks moved)."""
        tpk = _tpk(tenant_id)
        actions: list[Any] = []
        event_actions: dict[int, str] = {}
        new = [e for e, d in zip(chunk, dups, strict=True) if not d]
        expires = str(_epoch(now + horizon))
        for e in new:
            event_actions[len(actions)] = e.event_id
            actions.append(
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {**_key(tpk, f"E#{e.event_id}"), "expires_at": {"N": expires}},
                        "ConditionExpression": "attribute_not_exists(pk) OR expires_at < :now",
                        "ExpressionAttributeValues": {":now": {"N": str(_epoch(now))}},
                    }
                }
            )
        best: dict[str, str] = {}
        for e in chunk:
            sk = f"H#{e.position.stream_key}"
            pos = _position(e)
            if sk not in best or pos > best[sk]:
                best[sk] = pos
        new_marks: dict[tuple[str, str], str] = {}
        for sk, pos in best.items():
            old = marks.get((tpk, sk))
            if old is not None and old >= pos:
                continue
            values: dict[str, Any] = {":p": {"S": pos}, ":e": {"N": str(_epoch(now + HWM_RETENTION))}}
            if old is None:
                condition = "attribute_not_exists(pos) OR expires_at < :now"
                values[":now"] = {"N": str(_epoch(now))}
            else:
                condition = "pos = :old"
                values[":old"] = {"S": old}
            actions.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key(tpk, sk),
                        "UpdateExpression": "SET pos = :p, expires_at = :e",
                        "ConditionExpression": condition,
                        "ExpressionAttributeValues": values,
                    }
                }
            )
            new_marks[(tpk, sk)] = pos
        for bucket in aggregate_fields(new):
            granularity, ident, fields = bucket.granularity, bucket.ident, bucket.fields
            expiry = bucket_expiry(granularity, parse_bucket_id(granularity, ident))
            if expiry <= now or not fields:
                continue
            names = {f"#a{i}": name for i, name in enumerate(fields)}
            vals: dict[str, Any] = {f":v{i}": {"N": str(v)} for i, v in enumerate(fields.values())}
            vals[":exp"] = {"N": str(_epoch(expiry))}
            adds = ", ".join(f"#a{i} :v{i}" for i in range(len(fields)))
            actions.append(
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key(tpk, _bucket_sk(granularity, ident)),
                        "UpdateExpression": f"ADD {adds} SET expires_at = :exp",
                        "ExpressionAttributeNames": names,
                        "ExpressionAttributeValues": vals,
                    }
                }
            )
        if settle:
            for rid in settle:
                actions.append({"Delete": {"TableName": self.table, "Key": _key(tpk, f"R#{rid}")}})
            actions.append(self._bump_ledger(tpk))
        if not actions:
            return None
        if len(actions) > MAX_ACTIONS:  # pragma: no cover - chunk sizes keep this impossible
            raise StoreUnavailableError("transaction too large")
        try:
            self.client.transact_write_items(TransactItems=actions)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                raise
            reasons = exc.response.get("CancellationReasons", [])
            remembered = {
                event_actions[i]
                for i, reason in enumerate(reasons)
                if reason.get("Code") == "ConditionalCheckFailed" and i in event_actions
            }
            if remembered:
                return remembered
            return "conflict"
        marks.update(new_marks)
        return None

    def _bump_ledger(self, tpk: str) -> dict[str, Any]:
        return {
            "Update": {
                "TableName": self.table,
                "Key": _key(tpk, "L#"),
                "UpdateExpression": "ADD version :one",
                "ExpressionAttributeValues": {":one": {"N": "1"}},
            }
        }

    # --- UsageReader -------------------------------------------------------------------------------------

    def window_totals(self, tenant_id: str, windows: Sequence[Window], now: datetime) -> dict[str, Totals]:
        return self._read_totals([(tenant_id, windows, ())], now)[0]

    # --- QuotaState --------------------------------------------------------------------------------------

    def quota_status(self, tenant_id: str, now: datetime) -> QuotaStatus:
        answer = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :q)",
            ExpressionAttributeValues={":pk": {"S": _tpk(tenant_id)}, ":q": {"S": "Q#"}},
            ConsistentRead=True,
        )
        blocks: list[BlockRecord] = []
        flags: list[ReserveFlag] = []
        for item in answer.get("Items", []):
            sk = item["sk"]["S"]
            doc = json.loads(item["doc"]["S"])
            until = datetime.fromisoformat(doc["until"])
            if until <= now:
                continue
            if sk.startswith("Q#B#"):
                blocks.append(BlockRecord(tenant_id, sk[4:], doc["reason"], until, doc.get("set_by", "consumer")))
            elif sk.startswith("Q#F#"):
                flags.append(
                    ReserveFlag(tenant_id, sk[4:], AlertLevel.parse(doc["level"]), int(doc["limit_nanos"]), until)
                )
        return QuotaStatus(tuple(sorted(blocks, key=lambda b: b.window)), tuple(sorted(flags, key=lambda f: f.window)))

    def _put_state(self, tenant_id: str, sk: str, doc: dict[str, Any], until: datetime) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                **_key(_tpk(tenant_id), sk),
                "doc": {"S": json.dumps(doc, separators=(",", ":"))},
                "expires_at": {"N": str(_epoch(until + timedelta(days=1)))},
            },
        )

    def set_block(self, record: BlockRecord) -> None:
        doc = {"reason": record.reason, "until": record.until.isoformat(), "set_by": record.set_by}
        self._put_state(record.tenant_id, f"Q#B#{record.window}", doc, record.until)

    def lift_blocks(self, tenant_id: str, window: str | None = None) -> int:
        if window is not None:
            answer = self.client.delete_item(
                TableName=self.table, Key=_key(_tpk(tenant_id), f"Q#B#{window}"), ReturnValues="ALL_OLD"
            )
            return 1 if answer.get("Attributes") else 0
        found = self.client.query(
            TableName=self.table,
            KeyConditionExpression="pk = :pk AND begins_with(sk, :q)",
            ExpressionAttributeValues={":pk": {"S": _tpk(tenant_id)}, ":q": {"S": "Q#B#"}},
            ConsistentRead=True,
        ).get("Items", [])
        for item in found:
            self.client.delete_item(TableName=self.table, Key=_key(item["pk"]["S"], item["sk"]["S"]))
        return len(found)

    def set_reserve_flag(self, flag: ReserveFlag) -> None:
        doc = {"level": flag.level.label, "limit_nanos": flag.limit_nanos, "until": flag.until.isoformat()}
        self._put_state(flag.tenant_id, f"Q#F#{flag.window}", doc, flag.until)

    def reserve(
        self,
        tenant_id: str,
        reservation_id: str,
        amount_nanos: int,
        *,
        window: Window,
        limit_nanos: int,
        now: datetime,
        ttl: timedelta,
    ) -> bool:
        tpk = _tpk(tenant_id)
        for _attempt in range(8):
            held = self.client.query(
                TableName=self.table,
                KeyConditionExpression="pk = :pk AND begins_with(sk, :r)",
                ExpressionAttributeValues={":pk": {"S": tpk}, ":r": {"S": "R#"}},
                ConsistentRead=True,
            ).get("Items", [])
            outstanding = sum(
                int(i["amount"]["N"]) for i in held if _live(i, now) and i["sk"]["S"] != f"R#{reservation_id}"
            )
            keys = self._window_keys(tenant_id, window, now)
            items = self._batch_get([*keys, (tpk, "L#")], now)
            metered = self._totals_from(items, keys).cost_nanos
            if metered + outstanding + amount_nanos > limit_nanos:
                return False
            ledger = items.get((tpk, "L#"))
            actions: list[Any] = [
                {
                    "Put": {
                        "TableName": self.table,
                        "Item": {
                            **_key(tpk, f"R#{reservation_id}"),
                            "amount": {"N": str(amount_nanos)},
                            "expires_at": {"N": str(_epoch(now + ttl))},
                        },
                    }
                },
                {
                    "Update": {
                        "TableName": self.table,
                        "Key": _key(tpk, "L#"),
                        "UpdateExpression": "SET version = :new",
                        "ConditionExpression": "attribute_not_exists(version) OR version = :old"
                        if ledger
                        else "attribute_not_exists(version)",
                        "ExpressionAttributeValues": {
                            ":new": {"N": str(int(ledger["version"]["N"]) + 1 if ledger else 1)},
                            **({":old": ledger["version"]} if ledger else {}),
                        },
                    }
                },
            ]
            for key in keys:
                item = items.get(key)
                cost = item.get("t|c") if item else None
                check: dict[str, Any] = {"TableName": self.table, "Key": _key(*key)}
                if cost is None:
                    check["ConditionExpression"] = "attribute_not_exists(#c) OR expires_at < :now"
                    check["ExpressionAttributeValues"] = {":now": {"N": str(_epoch(now))}}
                else:
                    check["ConditionExpression"] = "#c = :c"
                    check["ExpressionAttributeValues"] = {":c": cost}
                check["ExpressionAttributeNames"] = {"#c": "t|c"}
                actions.append({"ConditionCheck": check})
            try:
                self.client.transact_write_items(TransactItems=actions)
                return True
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                    raise
        raise StoreUnavailableError(f"tenant {tenant_id}: reservation kept conflicting")

    def settle(self, tenant_id: str, reservation_ids: Iterable[str]) -> None:
        tpk = _tpk(tenant_id)
        ids = list(reservation_ids)
        for start in range(0, len(ids), 90):
            actions: list[Any] = [
                {"Delete": {"TableName": self.table, "Key": _key(tpk, f"R#{rid}")}} for rid in ids[start : start + 90]
            ]
            actions.append(self._bump_ledger(tpk))
            self.client.transact_write_items(TransactItems=actions)

    # --- AlertMarks --------------------------------------------------------------------------------------

    def raise_marks(self, marks: Sequence[AlertMark]) -> list[int]:
        previous: list[int] = []
        for m in marks:
            key = _key(_tpk(m.tenant_id), f"A#{m.period}#{m.rule}")
            try:
                answer = self.client.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="SET #l = :l, expires_at = :e",
                    ConditionExpression="attribute_not_exists(#l) OR #l < :l",
                    ExpressionAttributeNames={"#l": "level"},
                    ExpressionAttributeValues={":l": {"N": str(m.level)}, ":e": {"N": str(_epoch(m.expires))}},
                    ReturnValues="ALL_OLD",
                )
                old = answer.get("Attributes", {}).get("level")
                previous.append(int(old["N"]) if old else 0)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                item = self.client.get_item(TableName=self.table, Key=key, ConsistentRead=True).get("Item", {})
                previous.append(int(item["level"]["N"]) if "level" in item else m.level)
        return previous

    def restore_mark(self, mark: AlertMark, previous: int) -> None:
        key = _key(_tpk(mark.tenant_id), f"A#{mark.period}#{mark.rule}")
        try:
            if previous == 0:
                self.client.delete_item(
                    TableName=self.table,
                    Key=key,
                    ConditionExpression="#l = :l",
                    ExpressionAttributeNames={"#l": "level"},
                    ExpressionAttributeValues={":l": {"N": str(mark.level)}},
                )
            else:
                self.client.update_item(
                    TableName=self.table,
                    Key=key,
                    UpdateExpression="SET #l = :p",
                    ConditionExpression="#l = :l",
                    ExpressionAttributeNames={"#l": "level"},
                    ExpressionAttributeValues={":l": {"N": str(mark.level)}, ":p": {"N": str(previous)}},
                )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    # --- UsageIndex --------------------------------------------------------------------------------------

    def _active(self, days: Sequence[str], now: datetime) -> list[str]:
        found: set[str] = set()
        for day in days:
            kwargs: dict[str, Any] = {
                "TableName": self.table,
                "KeyConditionExpression": "pk = :pk",
                "ExpressionAttributeValues": {":pk": {"S": f"ACTIVE#{day}"}},
            }
            while True:
                answer = self.client.query(**kwargs)
                found |= {i["sk"]["S"] for i in answer.get("Items", []) if _live(i, now)}
                if "LastEvaluatedKey" not in answer:
                    break
                kwargs["ExclusiveStartKey"] = answer["LastEvaluatedKey"]
        return sorted(found)

    def active_tenants(self, start: datetime, end: datetime) -> list[str]:
        days = []
        day = start
        while bucket_id(Granularity.DAY, day) <= bucket_id(Granularity.DAY, end):
            days.append(bucket_id(Granularity.DAY, day))
            day += timedelta(days=1)
        return self._active(days, end)

    def _day_buckets(self, tenant_id: str, days: Sequence[str], now: datetime) -> list[dict[str, Totals]]:
        keys = [(_tpk(tenant_id), _bucket_sk(Granularity.DAY, d)) for d in days]
        items = self._batch_get(keys, now)
        return [fields_to_totals(_counters(items.get(k))) for k in keys]

    def dimension_totals(self, tenant_id: str, window: Window, now: datetime) -> dict[str, dict[str, Totals]]:
        if window.sliding or window.granularity not in (Granularity.DAY, Granularity.MONTH):
            raise ValueError(f"dimension totals are kept for day and month windows, not {window.name}")
        days = [bucket_id(Granularity.DAY, now)] if window.granularity is Granularity.DAY else month_days(now)
        return dimension_sums(self._day_buckets(tenant_id, days, now))

    def daily_rollup(self, tenant_id: str, day: datetime) -> list[RollupRow]:
        (counts,) = self._day_buckets(tenant_id, [bucket_id(Granularity.DAY, day)], day)
        rows = []
        for prefix, totals in counts.items():
            dim, values = parse_dim_prefix(prefix)
            if dim is Dim.COMBO:
                rows.append(RollupRow(tenant_id, values[0], values[1], values[2], totals))
        return sorted(rows, key=lambda r: (r.model, r.cost_center, r.application_id))

    def top_tenants(self, window: Window, metric: Metric, now: datetime, limit: int = 10) -> list[tuple[str, Totals]]:
        candidates = self._active(window_days(window, now), now)
        reads = self._read_totals([(t, (window,), ()) for t in candidates], now)
        totals = {t: r[window.name] for t, r in zip(candidates, reads, strict=True)}
        return [(t, totals[t]) for t in rank_tenants(totals, lambda x: x.value(metric), limit)]


def create_table(client: DynamoDBClient, table_name: str) -> None:
    """The table layout (what Terraform creates): for tests and the local stack."""
    client.create_table(
        TableName=table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}, {"AttributeName": "sk", "KeyType": "RANGE"}],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.update_time_to_live(
        TableName=table_name, TimeToLiveSpecification={"Enabled": True, "AttributeName": "expires_at"}
    )
