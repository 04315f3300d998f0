"""One Kinesis batch, end to end: split, validate, meter, store once, alert, quarantine, report failures.

Data flows one way: records are parsed here, the core decides (shared.store_layout's dedupe rule,
alert_rules), and adapters behind the ports do the I/O. What may fail and what happens then:

- the store cannot apply a tenant's batch: that tenant's records are reported in ``batchItemFailures``
  (Lambda redelivers from the lowest; the dedupe rule makes the redelivery count only what was not stored);
- blocking, flagging or publishing an alert fails: the finding's mark is not raised (the targets it reached
  keep their delivery marks) and the tenant's records are reported failed, so the redelivery (all duplicates by
  then) evaluates again and does only what is left;
- the quarantine destination fails: those records are reported failed. Bad records positioned after the
  lowest failure are left for the redelivery rather than quarantined twice.

Throughput: each event becomes one EventRow (a tuple); a store that takes rows gets them (RedisStore), one group
of tenants at a time when it can answer later (``send_rows``), so metering the next group overlaps the store's
work on this one; any other store gets MeteredEvents through ``WindowStore.apply_usage``, all at once.
"""

from __future__ import annotations

import gc
import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Final, NamedTuple, Protocol, cast

from consumers.metering.alert_rules import READ_PREVIOUS, Clock, Finding, evaluate, read_windows
from consumers.metering.records import UserRecord, split_records
from consumers.metering.validate import Meter
from shared.ports import (
    AlertMark,
    AlertMarks,
    AlertPublisher,
    ApplyOutcome,
    QuarantinedRecord,
    QuarantineSink,
    QuotaState,
    TargetedAlertPublisher,
    WindowStore,
)
from shared.store_layout import EventRow, RowWindowStore, TenantRows, batch_from_rows
from shared.tenants import Tenant, TenantRegistry
from shared.windows import Window

logger = logging.getLogger(__name__)


class ConsumerStore(WindowStore, AlertMarks, QuotaState, Protocol):
    """Everything the consumer needs from one store."""


class LogSink(Protocol):
    def info(self, msg: object, *args: object, **kwargs: Any) -> None: ...

    def warning(self, msg: object, *args: object, **kwargs: Any) -> None: ...

    def error(self, msg: object, *args: object, **kwargs: Any) -> None: ...


@dataclass
class BatchResult:
    failures: list[str] = field(default_factory=list)  # Kinesis sequence numbers, ascending
    records: int = 0
    events: int = 0
    applied: int = 0
    duplicates: int = 0
    quarantined: Counter[str] = field(default_factory=Counter)
    fallback_priced: int = 0
    alerts_published: int = 0
    blocks_written: int = 0
    reserve_flags_written: int = 0
    tenants: int = 0
    oldest_arrival: float | None = None

    def response(self) -> dict[str, list[dict[str, str]]]:
        return {"batchItemFailures": [{"itemIdentifier": seq} for seq in self.failures]}

    def saw_arrival(self, arrived: float | None) -> None:
        """Keep the oldest approximateArrivalTimestamp seen (the BatchAgeSeconds metric)."""
        if arrived is not None and (self.oldest_arrival is None or arrived < self.oldest_arrival):
            self.oldest_arrival = arrived


class MarkCache:
    """Marks this container already knows are stored at a level: saves a store call per tenant per batch for
    tenants sitting at a level. Marks only rise within a period, so a stale entry can only be too low."""

    def __init__(self, limit: int = 200_000) -> None:
        self._known: dict[tuple[str, str, str], int] = {}
        self._limit = limit

    def known(self, tenant_id: str, rule: str, period: str) -> int:
        return self._known.get((tenant_id, rule, period), 0)

    def remember(self, tenant_id: str, rule: str, period: str, level: int) -> None:
        if len(self._known) >= self._limit:
            self._known.clear()
        key = (tenant_id, rule, period)
        self._known[key] = max(level, self._known.get(key, 0))


# Tenants (partition keys) and records per group the consumer meters and sends while the store runs the
# previous group: small enough that the store starts early and a group's scripts (~2 KB per tenant plus ~100 B
# per event) fit a socket buffer (~200 KB), large enough that the per-group costs stay small. Measured here:
# groups of 100 tenants of 10 events ran at two thirds the speed of groups of 50.
STREAM_TENANTS: Final = 50
STREAM_RECORDS: Final = 600
# Groups sent before a group's answers are read: enough that Redis is not waited on, few that the reading (and
# building the outcomes) overlaps the store's work on later groups.
READ_LAG: Final = 2
# Tenants whose alert actions (store writes, SNS publishes) run side by side.
ACTION_THREADS: Final = 8


@dataclass(slots=True)
class _Acts:
    """What one tenant's alert actions did (``_act_for``)."""

    blocks: int = 0
    flags: int = 0
    alerts: int = 0
    sent_steps: list[AlertMark] = field(default_factory=list)  # delivery marks of the targets it reached
    ok: bool = True


_AGGREGATE_B64: Final = "84ma"  # base64 of the KPL magic's first three bytes (split_records checks the rest)


def _hint(key: str) -> str:
    """A partition key as a guess at its tenant: less a ``#salt`` suffix (producers.sdk spreads hot tenants)."""
    return key.partition("#")[0] if "#" in key else key


def _read_early(pending: PendingOutcomes) -> None:
    """Read a group's answers now (``_Once`` keeps them); a failure is raised again when they are read later."""
    with suppress(Exception):
        pending.result()


class PendingOutcomes(Protocol):
    def result(self) -> list[ApplyOutcome]: ...


class RowStreamStore(Protocol):
    """A store that can take tenants' rows and answer later (RedisStore): the consumer meters the next group of
    tenants meanwhile."""

    def send_rows(
        self, batches: Sequence[TenantRows], *, now: datetime, dedupe_horizon: timedelta
    ) -> PendingOutcomes: ...


class _RecordsOf(Mapping[str, set[str]]):
    """Tenant -> the sequence numbers of its records (what batchItemFailures names), worked out from its rows
    only when asked: a batch asks for few tenants' (those that failed), and keeping a set per event costs."""

    def __init__(self) -> None:
        self._rows: dict[str, list[Sequence[EventRow]]] = {}

    def add(self, by_tenant: Mapping[str, Sequence[EventRow]]) -> None:
        for tenant_id, rows in by_tenant.items():
            self._rows.setdefault(tenant_id, []).append(rows)

    def __getitem__(self, tenant_id: str) -> set[str]:
        return {row.sequence_number for rows in self._rows[tenant_id] for row in rows}

    def __iter__(self) -> Iterator[str]:
        return iter(self._rows)

    def __len__(self) -> int:
        return len(self._rows)


class _Once:
    """A store's pending outcomes, asked once: the outcomes, or the exception, are kept for every later ask."""

    def __init__(self, pending: PendingOutcomes) -> None:
        self._pending = pending
        self._outcomes: list[ApplyOutcome] | None = None
        self._error: Exception | None = None

    def result(self) -> list[ApplyOutcome]:
        if self._error is not None:
            raise self._error
        if self._outcomes is None:
            try:
                self._outcomes = self._pending.result()
            except Exception as exc:
                self._error = exc
                raise
        return self._outcomes


class _Done:
    """Outcomes (or the exception) of a store call that has returned already."""

    def __init__(self, outcomes: list[ApplyOutcome] | Exception) -> None:
        self._outcomes = outcomes

    def result(self) -> list[ApplyOutcome]:
        if isinstance(self._outcomes, Exception):
            raise self._outcomes
        return self._outcomes


class _Sent(NamedTuple):
    batches: list[TenantRows]
    pending: PendingOutcomes


@contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Hold off Python's cyclic garbage collector while a batch is metered. A batch allocates some 100,000
    containers (the Lambda event's dicts, rows, script arguments), hardly any in reference cycles, so
    reference counting frees them all; yet the allocations trigger a generation-2 collection every few batches
    that walks every live object (~15% of the consumer's CPU here). Collection resumes right after."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class MeteringService:
    def __init__(
        self,
        *,
        store: ConsumerStore,
        alerts: AlertPublisher,
        quarantine: QuarantineSink,
        tenants: TenantRegistry,
        meter: Meter,
        dedupe_horizon: timedelta,
        log: LogSink | None = None,
    ) -> None:
        self.store = store
        self.alerts = alerts
        self.quarantine = quarantine
        self.tenants = tenants
        self.meter = meter
        self.dedupe_horizon = dedupe_horizon
        self.log: LogSink = log or cast(LogSink, logger)
        self.marks = MarkCache()
        self._windows: dict[str, tuple[Tenant, tuple[Window, ...]]] = {}
        self._window_sets: dict[tuple[Window, ...], tuple[Window, ...]] = {}
        # Rows go to a store whose class takes them (RedisStore); any other store, and any wrapper around one
        # (a wrapper forwarding by __getattr__ answers on the instance, not the class), gets MeteredEvents
        # through the WindowStore port.
        self._takes_rows = callable(getattr(type(store), "apply_rows", None))
        self._streams = callable(getattr(type(store), "send_rows", None))
        self.stream_tenants = STREAM_TENANTS
        self._pool: ThreadPoolExecutor | None = None  # alert actions; started when first needed

    def process(self, records: Sequence[Mapping[str, Any]], now: datetime) -> BatchResult:
        with _cyclic_gc_paused():
            return self._process(records, now)

    def _process(self, records: Sequence[Mapping[str, Any]], now: datetime) -> BatchResult:
        result = BatchResult(records=len(records))
        bad: list[QuarantinedRecord] = []
        items = _RecordsOf()  # tenant -> sequence numbers of its records (for batchItemFailures)
        fallbacks: Counter[tuple[str, str]] = Counter()
        failed: set[str] = set()
        sent = self._meter_and_send(records, now, bad, items, fallbacks, result)
        for (model, tenant_id), count in fallbacks.items():  # one line per model and tenant, not per event
            result.fallback_priced += count
            self.log.warning(
                "model not in the price catalog: priced by the fallback",
                extra={"tenant_id": tenant_id, "model": model, "events": count},
            )
        result.tenants = len(items)
        candidates = self._outcomes(sent, items, now, result, failed)
        self._alert(candidates, items, result, failed)
        self._quarantine(bad, failed, result)
        result.failures = sorted(failed, key=int)
        return result

    # --- meter and store ---------------------------------------------------------------------------------

    def _meter_and_send(
        self,
        records: Sequence[Mapping[str, Any]],
        now: datetime,
        bad: list[QuarantinedRecord],
        items: _RecordsOf,
        fallbacks: Counter[tuple[str, str]],
        result: BatchResult,
    ) -> list[_Sent]:
        """Split and meter the records into rows per tenant and hand them to the store, one group of tenants at a
        time when the store can run a group while the next is split and metered (``send_rows``), else all at
        once; the answers for a group are read two groups later, while the store still has work.

        A group is a set of partition keys (less a ``#salt`` suffix), taken as a guess at the tenants: each
        tenant's rows still go to the store together in one script (rows met in an earlier group wait for the
        group of their tenant's own key), unless its key's group was sent already, or its records carry no key
        of its own (random keys): those rows go in one last group (a second script for such a tenant is correct,
        only slower). KPL aggregates are split first and their user records grouped by their own keys: the
        producers aggregate by shard, so an aggregate's key names one of its many tenants, and grouping by it
        would leave nearly every tenant to the last group, metered with nothing for the store to overlap."""
        # hint -> its plain records and the user records of KPL aggregates under it (first seen, first grouped)
        groups: dict[str, tuple[list[Mapping[str, Any]], list[UserRecord]]] = {}
        for record in records:
            try:
                kinesis = record["kinesis"]
                key, data = kinesis["partitionKey"], kinesis["data"]
            except (TypeError, KeyError):  # malformed: split_records quarantines it with the reason
                key = data = ""
            if type(data) is str and data.startswith(_AGGREGATE_B64):  # the base64 of the KPL magic's first bytes
                split = split_records([record])
                bad += split.quarantined
                result.saw_arrival(split.oldest_arrival)
                for user in split.records:
                    groups.setdefault(_hint(user.partition_key), ([], []))[1].append(user)
                continue
            groups.setdefault(_hint(key) if type(key) is str else "", ([], []))[0].append(record)
        # Consecutive keys make a group, up to STREAM_TENANTS keys or STREAM_RECORDS records (one group when the
        # store cannot take groups).
        members_of: list[list[str]] = [[]]
        count = 0
        for hint, (plain, split_users) in groups.items():
            if (
                self._streams
                and members_of[-1]
                and (len(members_of[-1]) >= self.stream_tenants or count >= STREAM_RECORDS)
            ):
                members_of.append([])
                count = 0
            members_of[-1].append(hint)
            count += len(plain) + len(split_users)
        n_groups = len(members_of)
        group_of = {hint: g for g, hints in enumerate(members_of) for hint in hints}
        pending: list[dict[str, list[EventRow]]] = [{} for _ in range(n_groups + 1)]  # per group, the last extra
        meter_records = self.meter.meter_records
        sent: list[_Sent] = []
        for g in range(n_groups):
            metered = meter_records(
                [r for hint in members_of[g] for r in groups[hint][0]],
                [u for hint in members_of[g] for u in groups[hint][1]],
            )
            bad += metered.quarantined
            result.saw_arrival(metered.oldest_arrival)
            by_tenant = pending[g]
            for tenant_id, rows in metered.by_tenant.items():
                target = group_of.get(tenant_id, n_groups)
                dest = by_tenant if target == g else pending[target if target > g else n_groups]
                known = dest.get(tenant_id)
                if known is None:
                    dest[tenant_id] = rows
                else:
                    known += rows
            for row in metered.fallback_priced:
                fallbacks[(row.model, row.tenant_id)] += 1
            if by_tenant:
                items.add(by_tenant)
                sent.append(self._send(by_tenant, now, result))
                if len(sent) > READ_LAG:
                    _read_early(sent[-READ_LAG - 1].pending)
        if pending[n_groups]:
            items.add(pending[n_groups])
            sent.append(self._send(pending[n_groups], now, result))
        return sent

    def _read_windows(self, tenant_id: str) -> tuple[Window, ...]:
        tenant = self.tenants.get(tenant_id)
        known = self._windows.get(tenant_id)
        if known is None or known[0] is not tenant:  # a reloaded registry may change a tenant's quotas
            windows = read_windows(tenant)
            # One tuple per set of windows: a store may remember its work for them by the tuple's identity.
            windows = self._window_sets.setdefault(windows, windows)
            known = self._windows[tenant_id] = (tenant, windows)
        return known[1]

    def _send(self, by_tenant: Mapping[str, list[EventRow]], now: datetime, result: BatchResult) -> _Sent:
        batches = [TenantRows(t, rows, self._read_windows(t), READ_PREVIOUS) for t, rows in by_tenant.items()]
        result.events += sum(len(rows) for rows in by_tenant.values())
        horizon = self.dedupe_horizon
        try:
            if self._streams:
                store = cast(RowStreamStore, self.store)
                return _Sent(batches, _Once(store.send_rows(batches, now=now, dedupe_horizon=horizon)))
            if self._takes_rows:
                outcomes = cast(RowWindowStore, self.store).apply_rows(batches, now=now, dedupe_horizon=horizon)
            else:
                events = [batch_from_rows(b) for b in batches]
                outcomes = self.store.apply_usage(events, now=now, dedupe_horizon=horizon)
            return _Sent(batches, _Done(outcomes))
        except Exception as exc:  # a store should answer ok=False, but never report success for an unstored record
            return _Sent(batches, _Done(exc))

    def _outcomes(
        self,
        sent: Sequence[_Sent],
        items: Mapping[str, set[str]],
        now: datetime,
        result: BatchResult,
        failed: set[str],
    ) -> list[Finding]:
        """Read the store's answers group by group; a tenant's records fail unless all its events are stored. A
        tenant whose events are all stored is evaluated for alerts as soon as the answers of its last group are
        in (with those latest totals), while the store still works on later groups: the candidate findings."""
        last_group = {b.tenant_id: k for k, group in enumerate(sent) for b in group.batches}
        not_stored: set[str] = set()
        candidates: list[Finding] = []
        clock = Clock(now)
        for k, (batches, pending) in enumerate(sent):
            try:
                outcomes = pending.result()
            except Exception:
                self.log.error("store apply failed for the whole batch", exc_info=True)
                not_stored.update(b.tenant_id for b in batches)
                continue
            for outcome in outcomes:
                tenant_id = outcome.tenant_id
                if not outcome.ok:
                    not_stored.add(tenant_id)
                    self.log.warning(
                        "store could not apply a tenant's events: reporting them for retry",
                        extra={"tenant_id": tenant_id, "error": outcome.error},
                    )
                    continue
                result.applied += outcome.applied
                result.duplicates += outcome.duplicates
                if last_group[tenant_id] == k and tenant_id not in not_stored:
                    candidates += self._evaluate(tenant_id, outcome.totals, clock)
        for tenant_id in not_stored:
            failed.update(items[tenant_id])
        return candidates

    # --- alerts ------------------------------------------------------------------------------------------

    def _evaluate(self, tenant_id: str, totals: Mapping[str, Any], clock: Clock) -> list[Finding]:
        """The tenant's findings, less those whose marks this container knows are stored."""
        marks = self.marks

        def known(rule: str, period: str, level: int) -> bool:
            return marks.known(tenant_id, rule, period) >= level

        return evaluate(self.tenants.get(tenant_id), totals, clock.now, clock=clock, known=known)

    def _alert(
        self, candidates: list[Finding], items: Mapping[str, set[str]], result: BatchResult, failed: set[str]
    ) -> None:
        if not candidates:
            return
        # A finding's mark is raised only once every action of it has been carried out, so a mark found below
        # its level means "not (completely) done": a crash, a lost store reply or a failed publish on an
        # earlier delivery of these records is finished now instead of being forgotten.
        try:
            stored = self.store.raise_marks([replace(f.mark, level=0) for f in candidates])
        except Exception:
            self.log.error("could not read alert marks: reporting the tenants' records for retry", exc_info=True)
            for finding in candidates:
                failed.update(items[finding.mark.tenant_id])
            return
        todo: dict[str, list[Finding]] = {}
        for finding, level in zip(candidates, stored, strict=True):
            m = finding.mark
            if level >= m.level:
                self.marks.remember(m.tenant_id, m.rule, m.period, level)
            else:
                todo.setdefault(m.tenant_id, []).append(finding)
        if todo:
            self._act(todo, items, result, failed)

    def _act(
        self,
        todo: Mapping[str, Sequence[Finding]],
        items: Mapping[str, set[str]],
        result: BatchResult,
        failed: set[str],
    ) -> None:
        """Carry out the findings' actions, each alert target at most once (a delivery mark per target records
        it), then raise the findings' marks. On any failure the tenant's records are retried, and the retry
        does only what is left. At least once: a crash between a publish and its delivery mark re-sends it.

        The delivery marks of every finding are read in one store call before publishing, and the delivery
        marks of the targets published and the findings' marks are raised in one call after (one or two store
        round trips per finding and target made most of a batch's alert time); a tenant whose actions fail still
        gets the delivery marks of the targets it reached, so its retry does not re-send them."""
        publisher = self.alerts
        targeted = isinstance(publisher, TargetedAlertPublisher)  # (a Protocol check: once, not per alert)
        steps: dict[int, list[tuple[str, AlertMark]]] = {}  # id(finding) -> (target, delivery mark)
        checks: list[AlertMark] = []
        for findings in todo.values():
            for finding in findings:
                if finding.alert is None:
                    continue
                m = finding.mark
                targets = cast(TargetedAlertPublisher, publisher).targets(finding.alert) if targeted else ["*"]
                steps[id(finding)] = [(t, replace(m, rule=f"{m.rule}>{t}")) for t in targets]
                checks += [replace(step, level=0) for _, step in steps[id(finding)]]
        try:
            levels = iter(self.store.raise_marks(checks) if checks else [])
        except Exception:
            self.log.error(
                "could not read alert delivery marks: reporting the tenants' records for retry", exc_info=True
            )
            for tenant_id in todo:
                failed.update(items[tenant_id])
            return
        delivered = {key: [next(levels) for _ in pairs] for key, pairs in steps.items()}
        to_raise: list[AlertMark] = []
        done_tenants: list[str] = []
        work = list(todo.items())

        def act(part: Sequence[tuple[str, Sequence[Finding]]]) -> list[_Acts]:
            return [self._act_for(tenant_id, findings, steps, delivered, targeted) for tenant_id, findings in part]

        # Tenants' actions are independent (each its own marks): they run side by side, as publishes and store
        # writes are round trips (an SNS publish from Lambda takes ~10-30 ms); each thread takes every n-th
        # tenant (one hand-off per thread, not per tenant).
        n = min(ACTION_THREADS, len(work))
        if n > 1:
            results = list(self._action_pool().map(act, [work[k::n] for k in range(n)]))
            outcomes = [results[i % n][i // n] for i in range(len(work))]  # back in the tenants' order
        else:
            outcomes = act(work)
        for (tenant_id, findings), acts in zip(work, outcomes, strict=True):
            result.blocks_written += acts.blocks
            result.reserve_flags_written += acts.flags
            result.alerts_published += acts.alerts
            to_raise += acts.sent_steps  # the targets it reached are not sent again, whatever else happened
            if not acts.ok:
                failed.update(items[tenant_id])
                continue
            to_raise += [f.mark for f in findings]  # after its delivery marks: raised after all its actions
            done_tenants.append(tenant_id)
        try:
            if to_raise:
                self.store.raise_marks(to_raise)
        except Exception:
            self.log.error("could not raise alert marks: reporting the tenants' records for retry", exc_info=True)
            for tenant_id in done_tenants:
                failed.update(items[tenant_id])
            return
        for tenant_id in done_tenants:
            for finding in todo[tenant_id]:
                m = finding.mark
                self.marks.remember(m.tenant_id, m.rule, m.period, m.level)

    def _act_for(
        self,
        tenant_id: str,
        findings: Sequence[Finding],
        steps: Mapping[int, list[tuple[str, AlertMark]]],
        delivered: Mapping[int, list[int]],
        targeted: bool,
    ) -> _Acts:
        """One tenant's blocks, reserve flags and alert deliveries (each target not yet reached); what was done."""
        acts = _Acts()
        publisher = self.alerts
        try:
            # Blocks and reserve flags are idempotent writes: repeated until their finding completes.
            for finding in findings:
                if finding.block is not None:
                    self.store.set_block(finding.block)
                    acts.blocks += 1
                if finding.reserve is not None:
                    self.store.set_reserve_flag(finding.reserve)
                    acts.flags += 1
            for finding in findings:
                alert = finding.alert
                if alert is None:
                    continue
                sent = False
                for (target, step), level in zip(steps[id(finding)], delivered[id(finding)], strict=True):
                    if level >= step.level:
                        continue  # this target had it on an earlier delivery of these records
                    if targeted:
                        cast(TargetedAlertPublisher, publisher).publish_to(alert, target)
                    else:
                        publisher.publish(alert)
                    acts.sent_steps.append(step)
                    sent = True
                if sent:
                    acts.alerts += 1
                    self.log.info(
                        "alert published",
                        extra={
                            "tenant_id": tenant_id,
                            "level": alert.level,
                            "window": alert.window,
                            "metric": alert.metric,
                        },
                    )
        except Exception:
            self.log.error(
                "alert actions failed: reporting the tenant's records for retry (done targets are not re-sent)",
                extra={"tenant_id": tenant_id},
                exc_info=True,
            )
            acts.ok = False
        return acts

    def _action_pool(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=ACTION_THREADS, thread_name_prefix="alert-actions")
        return self._pool

    # --- quarantine --------------------------------------------------------------------------------------

    def _quarantine(self, bad: Iterable[QuarantinedRecord], failed: set[str], result: BatchResult) -> None:
        lowest = min((int(s) for s in failed), default=None)
        now_records: list[QuarantinedRecord] = []
        for record in bad:
            seq = int(record.sequence_number) if record.sequence_number else None
            if lowest is not None and seq is not None and seq >= lowest:
                continue  # redelivered anyway: quarantine it then, once
            now_records.append(record)
        if not now_records:
            return
        try:
            self.quarantine.quarantine(now_records)
        except Exception:
            if any(not r.sequence_number for r in now_records):
                raise  # a record we cannot name in batchItemFailures: fail the whole batch rather than lose it
            self.log.error("quarantine destination failed: reporting the records for retry", exc_info=True)
            failed.update(r.sequence_number for r in now_records)
            return
        for record in now_records:
            result.quarantined[record.reason] += 1
            self.log.warning(
                "record quarantined",
                extra={
                    "reason": record.reason,
                    "shard_id": record.shard_id,
                    "sequence_number": record.sequence_number,
                    "sub_sequence_number": record.sub_sequence_number,
                    **{f"detail_{k}": v for k, v in record.detail.items()},
                },
            )
