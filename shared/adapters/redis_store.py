"""RedisStore: every store port over Redis (ElastiCache in AWS), Cluster-safe, one Lua script per tenant per batch.

Keys (all of a tenant's carry the hash tag ``{tenant}``, so one tenant's keys share a Cluster slot and one
script may touch them all; every key a script touches is passed in KEYS):

- ``tm:{T}:min`` hash, the minute ring: 64 slots (unix minute mod 64), each one field
  ``minute,i,o,r,w,n,c`` (the minute it counts, then its counters), so sliding windows up to 64 minutes read
  one HMGET and the hash stays in Redis's compact encoding (~3 KB per active tenant). Expires 3 h after the
  last write.
- ``tm:{T}:h:<YYYYMMDDHH>`` hash, hour totals ``t|<code>``. Expires at bucket end + 2 days.
- ``tm:{T}:d:<YYYYMMDD>`` hash, day totals, ``m|c|a<SEP>value|<code>`` dimensions and
  ``x<SEP>model<SEP>cc<SEP>app|<code>`` combinations (the daily report). Bucket end + 40 days.
- ``tm:{T}:mo:<YYYYMM>`` hash, month totals and model/costCenter/applicationId dimensions. Bucket end + 400 days.
- ``tm:{T}:ev:<YYYYMMDDHH>`` set of 12-byte digests of event ids that occurred in that hour. Expires the dedupe
  horizon after its last write.
- ``tm:{T}:hwm`` hash, ``shard|partition key`` -> highest applied position (64-digit sequence + 10-digit sub).
  Expires 8 days after the last write.
- ``tm:{T}:res`` hash, reservation id -> ``amount|expires_ms``; expires with the longest reservation.
- ``tm:{T}:blk`` / ``tm:{T}:rsv`` hashes, window -> block record / reserve flag (JSON). 400 days.
- ``tm:{T}:al:<period>`` hash, alert rule -> highest level marked in that period. Period end + 1 day.
- ``tm:active:{<YYYYMMDD>}`` set of tenants with usage that day (the CLI's `top`, the daily report). 40 days.

Apply protocol (per tenant, atomic): Python aggregates the batch assuming only in-batch repeats are
duplicates (or what this container already knows from earlier high-water marks) and sends the aggregated
increments with the per-event dedupe facts. The script checks each event (position vs the stored high-water
mark, SMISMEMBER of its digest) before writing anything; if the duplicates are not the expected ones it answers
with the real ones, and Python re-aggregates and sends again. Otherwise it applies everything and reads back the
windows asked for. So Redis work is one SMISMEMBER and one SADD per event-id set plus a few HINCRBYs per tenant
and bucket, in one round trip for the whole batch (pipelined).

Sums of sliding windows are done in Lua numbers (doubles): exact below 2^53, i.e. below $9,007,199 of cost per
tenant per sliding window. Calendar counters are HINCRBY on 64-bit integers and read back as strings.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import redis
from hiredis import pack_command
from redis.commands.core import Script
from redis.exceptions import NoScriptError, ResponseError

from shared.decisions import AlertLevel, BlockRecord, Metric
from shared.ports import (
    AlertMark,
    ApplyOutcome,
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
    SEP,
    Dim,
    TenantRows,
    dimension_sums,
    event_digest,
    fields_to_totals,
    minute_ids,
    month_days,
    parse_dim_prefix,
    previous_period,
    rank_tenants,
    rows_from_batch,
    window_days,
)
from shared.windows import (
    BUCKET_RETENTION,
    Granularity,
    Window,
    bucket_id,
    next_bucket_start,
    parse_bucket_id,
)

POSITION_WIDTH: Final = 74  # StreamPosition.padded: 64-digit sequence + 10-digit sub-sequence
RING_SLOTS: Final = 64  # sliding windows may be at most this many minutes long
RING_TTL_S: Final = 3 * 3600
INDEX_TTL_S: Final = 40 * 86400
STATE_TTL_S: Final = 400 * 86400
CHUNK: Final = 125  # tenants per pipeline: bounds request size and reply memory, and sets the overlap grain
_GRAN_KEY: Final = {Granularity.HOUR: "h", Granularity.DAY: "d", Granularity.MONTH: "mo"}
_GRAN_OF_KEY: Final = {key: granularity for granularity, key in _GRAN_KEY.items()}
_TOTAL_FIELDS: Final = tuple(f"t|{c}" for c in COUNTERS)

# Shared Lua: read calendar totals and sliding sums. ARGV from index i:
#   ncal, then ncal KEYS indexes; now_minute, nsliding, then nsliding lengths (minutes).
_LUA_READ: Final = """
-- A ring slot is one field "minute,i,o,r,w,n,c": 64 small fields keep the hash in its compact encoding.
local function slot_parts(text)
  local parts = {}
  for x in string.gmatch(text, '[^,]+') do parts[#parts+1] = tonumber(x) end
  return parts
end
local function read_windows(ring, i, out)
  local ncal = tonumber(ARGV[i]); i = i + 1
  for c = 1, ncal do
    local v = redis.call('HMGET', KEYS[tonumber(ARGV[i])], 't|i','t|o','t|r','t|w','t|n','t|c')
    i = i + 1
    for f = 1, 6 do out[#out+1] = v[f] or '0' end
  end
  local nowm = tonumber(ARGV[i]); local nsl = tonumber(ARGV[i+1]); i = i + 2
  if nsl > 0 then
    local lens = {}; local maxn = 0
    for s = 1, nsl do lens[s] = tonumber(ARGV[i]); i = i + 1; if lens[s] > maxn then maxn = lens[s] end end
    local sf = {}
    for k = 0, maxn - 1 do sf[k+1] = (nowm - k) % 64 end
    local slots = redis.call('HMGET', ring, unpack(sf))
    local sums = {}
    for s = 1, nsl do sums[s] = {0,0,0,0,0,0} end
    for k = 0, maxn - 1 do
      local cur = slots[k+1]
      if cur then
        local parts = slot_parts(cur)
        if parts[1] == nowm - k then
          for f = 1, 6 do
            local x = parts[f+1]
            if x ~= 0 then
              for s = 1, nsl do if k < lens[s] then sums[s][f] = sums[s][f] + x end end
            end
          end
        end
      end
    end
    for s = 1, nsl do for f = 1, 6 do out[#out+1] = sums[s][f] end end
  end
  return i
end
"""

# KEYS: 1 hwm, 2 ring, 3 reservations, then bucket and event-id keys (by index).
# ARGV: 1 horizon_s, 2 hwm_ttl_s, 3 ring_ttl_s;
#   nstreams, stream fields*;
#   ngroups, then per group (one event-id set): key index, nevents, and four fixed-width blobs holding per event
#     its stream index, position, digest and expected dup flag (0/1);
#   nbuckets, then per bucket: key index, ttl, nfields, (field, increment)*;
#   nring, then per minute: minute, i, o, r, w, n, c;
#   nsettle, reservation ids*; then reads.
# Bucket counters are HINCRBY on 64-bit integers (measured ~20% faster per script here than HMGET + Lua
# arithmetic + HSET, and exact at any size).
_LUA_APPLY: Final = (
    _LUA_READ
    + """
local hwm, ring = KEYS[1], KEYS[2]
local i = 4
local nst = tonumber(ARGV[i]); i = i + 1
local sfields = {}
for s = 1, nst do sfields[s] = ARGV[i]; i = i + 1 end
local stored = {}
if nst > 0 then stored = redis.call('HMGET', hwm, unpack(sfields)) end
local best = {}
for s = 1, nst do best[s] = stored[s] end
local ngroups = tonumber(ARGV[i]); i = i + 1
local flags, batch, adds = {}, {}, {}
local mismatch = false
for g = 1, ngroups do
  -- per group: key index, n, then four fixed-width blobs: stream indexes (3 digits), positions (74 chars),
  -- digests (12 bytes), expected flags (1 char)
  local ek = KEYS[tonumber(ARGV[i])]; local n = tonumber(ARGV[i+1])
  local sblob, pblob, dblob, fblob = ARGV[i+2], ARGV[i+3], ARGV[i+4], ARGV[i+5]
  i = i + 6
  local digests = {}
  for e = 1, n do digests[e] = string.sub(dblob, e*12 - 11, e*12) end
  local member = redis.call('SMISMEMBER', ek, unpack(digests))
  local new = {}
  for e = 1, n do
    local si = tonumber(string.sub(sblob, e*3 - 2, e*3))
    local pos = string.sub(pblob, e*74 - 73, e*74)
    local dg = digests[e]
    local s = stored[si]
    local dup = '0'
    if (s and pos <= s) or batch[dg] or member[e] == 1 then dup = '1' else new[#new+1] = dg end
    batch[dg] = true
    if (not best[si]) or pos > best[si] then best[si] = pos end
    flags[#flags+1] = dup
    if dup ~= string.sub(fblob, e, e) then mismatch = true end
  end
  if #new > 0 then adds[#adds+1] = {ek, new} end
end
if mismatch then return {0, table.concat(flags)} end
for _, a in ipairs(adds) do
  redis.call('SADD', a[1], unpack(a[2]))
  redis.call('EXPIRE', a[1], ARGV[1])
end
if nst > 0 then
  local upd = {}
  for s = 1, nst do
    if best[s] and best[s] ~= stored[s] then upd[#upd+1] = sfields[s]; upd[#upd+1] = best[s] end
  end
  if #upd > 0 then redis.call('HSET', hwm, unpack(upd)) end
  redis.call('EXPIRE', hwm, ARGV[2])
end
local nb = tonumber(ARGV[i]); i = i + 1
for b = 1, nb do
  local key = KEYS[tonumber(ARGV[i])]; local ttl = ARGV[i+1]; local nf = tonumber(ARGV[i+2]); i = i + 3
  for f = 1, nf do redis.call('HINCRBY', key, ARGV[i], ARGV[i+1]); i = i + 2 end
  redis.call('EXPIRE', key, ttl)
end
local nr = tonumber(ARGV[i]); i = i + 1
for r = 1, nr do
  local m = tonumber(ARGV[i]); local slot = m % 64
  local v = {}
  for f = 1, 6 do v[f] = tonumber(ARGV[i+f]) end
  local st = -1
  local cur = redis.call('HGET', ring, slot)
  if cur then
    local parts = slot_parts(cur)
    st = parts[1]
    if st == m then for f = 1, 6 do v[f] = v[f] + parts[f+1] end end
  end
  if st <= m then
    local text = {string.format('%d', m)}
    for f = 1, 6 do text[f+1] = string.format('%d', v[f]) end
    redis.call('HSET', ring, slot, table.concat(text, ','))
  end
  i = i + 7
end
if nr > 0 then redis.call('EXPIRE', ring, ARGV[3]) end
local nset = tonumber(ARGV[i]); i = i + 1
if nset > 0 then
  local ids = {}
  for s = 1, nset do ids[s] = ARGV[i]; i = i + 1 end
  redis.call('HDEL', KEYS[3], unpack(ids))
end
local out = {1}
read_windows(ring, i, out)
return out
"""
)

# KEYS: 1 ring, then calendar keys. ARGV: reads.
_LUA_READ_ONLY: Final = (
    _LUA_READ
    + """
local out = {}
read_windows(KEYS[1], 1, out)
return out
"""
)

# KEYS: 1 reservations, 2 ring, 3 calendar key (or the ring again). ARGV: 1 id, 2 amount, 3 limit, 4 now_ms,
#   5 expires_ms, then reads (one window: its cost is the metered cost).
_LUA_RESERVE: Final = (
    _LUA_READ
    + """
local res = KEYS[1]
local now = tonumber(ARGV[4])
local all = redis.call('HGETALL', res)
local outstanding = 0
local longest = tonumber(ARGV[5])
for j = 1, #all, 2 do
  local rid, val = all[j], all[j+1]
  local sep = string.find(val, '|', 1, true)
  local amount, exp = tonumber(string.sub(val, 1, sep - 1)), tonumber(string.sub(val, sep + 1))
  if exp <= now then
    redis.call('HDEL', res, rid)
  elseif rid ~= ARGV[1] then
    outstanding = outstanding + amount
    if exp > longest then longest = exp end
  end
end
local out = {}
read_windows(KEYS[2], 6, out)
local metered = tonumber(out[6]) or 0
if metered + outstanding + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return 0 end
redis.call('HSET', res, ARGV[1], ARGV[2] .. '|' .. ARGV[5])
redis.call('PEXPIRE', res, math.max(1, longest - now))
return 1
"""
)

# KEYS: 1 mark hash. ARGV: 1 rule, 2 level, 3 ttl_s.
_LUA_MARK: Final = """
local cur = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0')
if cur < tonumber(ARGV[2]) then
  redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
  redis.call('EXPIRE', KEYS[1], ARGV[3])
end
return cur
"""

# KEYS: 1 mark hash. ARGV: 1 rule, 2 level raised, 3 previous.
_LUA_RESTORE: Final = """
if tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '0') == tonumber(ARGV[2]) then
  if ARGV[3] == '0' then redis.call('HDEL', KEYS[1], ARGV[1]) else redis.call('HSET', KEYS[1], ARGV[1], ARGV[3]) end
end
return 1
"""


def _tk(tenant_id: str) -> str:
    return f"tm:{{{tenant_id}}}"


def _minute(t: datetime) -> int:
    return int(t.timestamp()) // 60


_EXPIRY: dict[tuple[Granularity, str], int] = {}


def _expiry(granularity: Granularity, ident: str) -> int:
    """Unix time a bucket may go (its end plus its retention), memoised: bucket ids repeat across tenants."""
    key = (granularity, ident)
    found = _EXPIRY.get(key)
    if found is None:
        if len(_EXPIRY) > 10_000:
            _EXPIRY.clear()
        start = parse_bucket_id(granularity, ident)
        found = _EXPIRY[key] = int((next_bucket_start(granularity, start) + BUCKET_RETENTION[granularity]).timestamp())
    return found


def _seconds(delta: timedelta) -> int:
    return max(1, int(delta.total_seconds()))


class _KeyList:
    def __init__(self, *fixed: str) -> None:
        self.keys: list[str] = list(fixed)
        self._index: dict[str, int] = {k: i + 1 for i, k in enumerate(fixed)}

    def index(self, key: str) -> int:
        found = self._index.get(key)
        if found is None:
            self.keys.append(key)
            found = self._index[key] = len(self.keys)
        return found


_STREAM_INDEX: Final = tuple(f"{i:03d}" for i in range(1000))
_HWM_TTL_S: Final = int(HWM_RETENTION.total_seconds())
_NO_IDS: Final[frozenset[str]] = frozenset()


class _Reads:
    """What one tenant's script reads back after applying: calendar bucket keys (the suffix after ``tm:{T}:``)
    and sliding window lengths, in the order ``read_windows`` (Lua) answers, and their names."""

    def __init__(self, calendar: Sequence[str], sliding: Sequence[int], now_minute: int, names: Sequence[str]):
        self.calendar = tuple(calendar)
        self.tail = [now_minute, len(sliding), *sliding]
        self.names = tuple(names)

    def args(self, tk: str, keys: _KeyList) -> list[Any]:
        out: list[Any] = [len(self.calendar)]
        out += [keys.index(f"{tk}:{suffix}") for suffix in self.calendar]
        return out + self.tail

    def decode(self, values: Sequence[Any], start: int = 0) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for n, name in enumerate(self.names):
            at = start + n * 6
            out[name] = Totals(*[int(v) if v is not None else 0 for v in values[at : at + 6]])
        return out


def _plan_reads(windows: Sequence[Window], previous: Sequence[Window], now: datetime) -> _Reads:
    """ARGV tail for read_windows: calendar windows (then previous periods), then sliding windows."""
    calendar = [(w, now) for w in windows if not w.sliding] + [(w, previous_period(w, now)) for w in previous]
    sliding = [w for w in windows if w.sliding]
    for w in sliding:
        if w.length > RING_SLOTS:
            raise ValueError(f"sliding window {w.name} is longer than the {RING_SLOTS}-minute ring")
    names = [w.name for w in windows if not w.sliding] + [previous_name(w) for w in previous]
    names += [w.name for w in sliding]
    return _Reads(
        [f"{_GRAN_KEY[w.granularity]}:{bucket_id(w.granularity, at)}" for w, at in calendar],
        [w.length for w in sliding],
        _minute(now),
        names,
    )


class _BatchPlan:
    """What every tenant of one apply call shares: the time, the TTLs, the read plans per set of windows."""

    def __init__(self, now: datetime, horizon: timedelta) -> None:
        self.now = now
        self.now_s = int(now.timestamp())
        self.horizon_s = _seconds(horizon)
        self._reads: dict[tuple[tuple[Window, ...], tuple[Window, ...]], _Reads] = {}

    def reads(self, windows: tuple[Window, ...], previous: tuple[Window, ...]) -> _Reads:
        key = (windows, previous)
        found = self._reads.get(key)
        if found is None:
            found = self._reads[key] = _plan_reads(windows, previous, self.now)
        return found


class _Applied:
    """One tenant's script call in flight: its arguments and what is needed to read its answer."""

    __slots__ = ("args", "batch", "best", "dups", "index", "keys", "order", "reads")

    def __init__(
        self,
        batch: TenantRows,
        keys: list[str],
        args: list[Any],
        order: list[int],
        dups: list[bool],
        best: dict[str, str],
        reads: _Reads,
        index: int,
    ) -> None:
        self.batch = batch
        self.keys = keys
        self.args = args
        self.order = order  # row indexes in the order the script reports duplicate flags
        self.dups = dups  # the flags assumed
        self.best = best  # per stream key, the highest position in the batch
        self.reads = reads
        self.index = index  # position in the apply call's batches


_COMBO_FIELDS: dict[tuple[str, str, str], tuple[str, ...]] = {}


def _combo_fields(model: str, cost_center: str, application_id: str) -> tuple[str, ...]:
    """The six ``x<SEP>model<SEP>cc<SEP>app|<code>`` field names of a day combination, memoised."""
    key = (model, cost_center, application_id)
    found = _COMBO_FIELDS.get(key)
    if found is None:
        if len(_COMBO_FIELDS) > 100_000:
            _COMBO_FIELDS.clear()
        prefix = SEP.join((Dim.COMBO.value, model, cost_center, application_id))
        found = _COMBO_FIELDS[key] = tuple(f"{prefix}|{code}" for code in COUNTERS)
    return found


def _add(acc: dict[Any, list[int]], key: Any, counts: list[int]) -> None:
    cur = acc.get(key)
    if cur is None:
        acc[key] = counts.copy()
    else:
        for f in range(6):
            cur[f] += counts[f]


def _bucket_args(
    tk: str, keys: _KeyList, sums: Mapping[tuple[int, str, str, str], list[int]], plan: _BatchPlan, args: list[Any]
) -> None:
    """Append the bucket and ring sections of the apply script's ARGV: per (minute, combination) sums rolled up
    to hour, day (total and combinations) and month buckets (non-zero counters only) and minute ring slots."""
    ring: dict[int, list[int]] = {}
    totals: dict[tuple[str, str], list[int]] = {}  # (granularity key, bucket id) -> tenant totals
    combos: dict[str, dict[tuple[str, ...], list[int]]] = {}  # day -> combination fields -> counters
    for (minute, model, cc, app), counts in sums.items():
        _, hour, day, month = minute_ids(minute)
        _add(ring, minute, counts)
        _add(totals, ("h", hour), counts)
        _add(totals, ("d", day), counts)
        _add(totals, ("mo", month), counts)
        _add(combos.setdefault(day, {}), _combo_fields(model, cc, app), counts)
    buckets: list[Any] = []
    nbuckets = 0
    for (gran, ident), counts in totals.items():
        ttl = _expiry(_GRAN_OF_KEY[gran], ident) - plan.now_s
        if ttl <= 0:
            continue  # older than the bucket's retention: nothing would read it
        fields: list[Any] = []
        for name, value in zip(_TOTAL_FIELDS, counts, strict=True):
            if value:
                fields += (name, value)
        if gran == "d":
            for names, c in combos.get(ident, {}).items():
                for name, value in zip(names, c, strict=True):
                    if value:
                        fields += (name, value)
        if not fields:
            continue
        nbuckets += 1
        buckets += [keys.index(f"{tk}:{gran}:{ident}"), ttl, len(fields) // 2]
        buckets += fields
    args.append(nbuckets)
    args += buckets
    args.append(len(ring))
    for minute, counts in ring.items():
        args.append(minute)
        args += counts


def _exchange(conn: Any, payload: bytes, n: int) -> list[Any]:
    """Send ``n`` packed commands on one connection and read their ``n`` replies; an error reply stands in the
    list as its exception, and a broken connection fails every command not yet answered (nothing is retried
    here: the consumer reports those records and Lambda redelivers them)."""
    replies: list[Any] = []
    try:
        conn.send_packed_command([payload])
        while len(replies) < n:
            try:
                replies.append(conn.read_response())
            except ResponseError as exc:
                replies.append(exc)
    except redis.RedisError as exc:  # connection or timeout: the connection is closed (redis-py does it)
        conn.disconnect()
        replies += [exc] * (n - len(replies))
    return replies


class RedisStore:
    """UsageReader, QuotaState, WindowStore, AlertMarks and UsageIndex over one redis-py client."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self._apply: Script = client.register_script(_LUA_APPLY)
        self._read: Script = client.register_script(_LUA_READ_ONLY)
        self._reserve: Script = client.register_script(_LUA_RESERVE)
        self._mark: Script = client.register_script(_LUA_MARK)
        self._restore: Script = client.register_script(_LUA_RESTORE)
        # Highest positions this process has stored, per (tenant, stream key): lets a redelivery to a warm
        # container predict its duplicates and apply in one round trip. Only ever too low, never too high
        # (marks only rise), so a miss costs one more round trip, never a wrong count.
        self._known_hwm: dict[tuple[str, str], str] = {}
        self._pool: ThreadPoolExecutor | None = None  # started on first use, never at import

    # --- WindowStore -------------------------------------------------------------------------------------

    def apply_usage(
        self, batches: Sequence[TenantBatch], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        return self.apply_rows([rows_from_batch(b) for b in batches], now=now, dedupe_horizon=dedupe_horizon)

    def apply_rows(
        self, batches: Sequence[TenantRows], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        """``apply_usage`` for events as rows (the consumer's hot path): one script per tenant, pipelined."""
        results: dict[int, ApplyOutcome] = {}
        try:
            self._index_active(batches)
        except redis.RedisError as exc:
            return [ApplyOutcome(b.tenant_id, ok=False, error=f"redis: {exc}") for b in batches]
        plan = _BatchPlan(now, dedupe_horizon)
        expected: dict[int, list[bool] | None] = {}  # the script's duplicate flags after a mismatch
        pending = []
        for i, b in enumerate(batches):
            if b.rows or b.read_windows or b.read_previous:
                pending.append(i)
            else:
                results[i] = ApplyOutcome(b.tenant_id, ok=True)
        try:
            conn = self.client.connection_pool.get_connection()
        except redis.RedisError as exc:
            return [
                results.get(i) or ApplyOutcome(b.tenant_id, ok=False, error=f"redis: {exc}")
                for i, b in enumerate(batches)
            ]
        try:
            reloaded = False
            for _attempt in range(4):
                if not pending:
                    break
                retry: list[int] = []
                missing: list[int] = []
                chunks = [pending[start : start + CHUNK] for start in range(0, len(pending), CHUNK)]
                # Build and pack chunk k+1 while a worker thread exchanges chunk k with Redis: on two cores the
                # server's script time and this process's argument building overlap.
                running: Future[list[Any]] | None = None
                running_chunk: list[_Applied] = []
                for chunk in [*chunks, []]:
                    built = [self._apply_args(batches[i], expected.get(i), plan, i) for i in chunk]
                    payload = self._pack(built) if built else None
                    if running is not None:
                        self._collect(running.result(), running_chunk, expected, results, retry, missing)
                    if payload is not None:
                        running = self._executor().submit(_exchange, conn, payload, len(built))
                        running_chunk = built
                    else:
                        running = None
                if missing:
                    if reloaded:  # loaded once already in this call: report rather than loop
                        for i in missing:
                            results[i] = ApplyOutcome(batches[i].tenant_id, ok=False, error="redis: NOSCRIPT")
                    else:
                        # The server lost its scripts (a restart or failover, or SCRIPT FLUSH): load it, go again.
                        reloaded = True
                        try:
                            self._apply.sha = self.client.script_load(self._apply.script)
                            retry += missing
                        except redis.RedisError as exc:
                            for i in missing:
                                results[i] = ApplyOutcome(batches[i].tenant_id, ok=False, error=f"redis: {exc}")
                pending = sorted(retry)
        finally:
            self.client.connection_pool.release(conn)
        for i in pending:
            results[i] = ApplyOutcome(batches[i].tenant_id, ok=False, error="dedupe state kept changing (contention)")
        return [results[i] for i in range(len(batches))]

    def _index_active(self, batches: Sequence[TenantRows]) -> None:
        days: dict[str, set[str]] = {}
        minutes: set[int] = set()
        for b in batches:
            minutes.clear()
            for row in b.rows:
                minutes.add(row.minute)
            for day in {minute_ids(m)[2] for m in minutes}:
                days.setdefault(day, set()).add(b.tenant_id)
        if not days:
            return
        pipe = self.client.pipeline(transaction=False)
        for day, tenants in days.items():
            pipe.sadd(f"tm:active:{{{day}}}", *sorted(tenants))
            pipe.expire(f"tm:active:{{{day}}}", INDEX_TTL_S)
        pipe.execute()

    def _executor(self) -> ThreadPoolExecutor:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tm-redis")
        return self._pool

    def _pack(self, built: Sequence[_Applied]) -> bytes:
        """One chunk's EVALSHA commands in the Redis protocol (hiredis packs; redis-py's pipeline would add
        ~40 us of Python per command, as much as building the arguments)."""
        sha = self._apply.sha
        return b"".join([pack_command(("EVALSHA", sha, len(b.keys), *b.keys, *b.args)) for b in built])

    def _collect(
        self,
        answers: list[Any],
        chunk: list[_Applied],
        expected: dict[int, list[bool] | None],
        results: dict[int, ApplyOutcome],
        retry: list[int],
        missing: list[int],
    ) -> None:
        for built, answer in zip(chunk, answers, strict=True):
            batch = built.batch
            if isinstance(answer, NoScriptError):
                missing.append(built.index)
            elif isinstance(answer, Exception):
                results[built.index] = ApplyOutcome(batch.tenant_id, ok=False, error=f"redis: {answer}")
            elif answer[0] == 0:
                # The stored dedupe state says other events are duplicates than we assumed: the script applied
                # nothing and answered the real flags (in its order); aggregate again with them.
                reported = answer[1].decode() if isinstance(answer[1], bytes) else str(answer[1])
                flags = [False] * len(built.order)
                for n, flag in zip(built.order, reported, strict=True):
                    flags[n] = flag == "1"
                expected[built.index] = flags
                retry.append(built.index)
            else:
                results[built.index] = self._outcome(built, answer)

    def _outcome(self, built: _Applied, answer: Sequence[Any]) -> ApplyOutcome:
        known = self._known_hwm
        if len(known) > 500_000:
            known.clear()
        tenant = built.batch.tenant_id
        for stream_key, best in built.best.items():
            key = (tenant, stream_key)
            old = known.get(key)
            if old is None or best > old:
                known[key] = best
        dups = built.dups
        n_dup = sum(dups)
        duplicate_ids = (
            frozenset(row.event_id for row, dup in zip(built.batch.rows, dups, strict=True) if dup)
            if n_dup
            else _NO_IDS
        )
        return ApplyOutcome(
            tenant,
            ok=True,
            applied=len(dups) - n_dup,
            duplicates=n_dup,
            duplicate_ids=duplicate_ids,
            totals=built.reads.decode(answer, 1),
        )

    def _apply_args(self, batch: TenantRows, dups: list[bool] | None, plan: _BatchPlan, index: int = -1) -> _Applied:
        """KEYS and ARGV of one tenant's apply script (see _LUA_APPLY). ``dups`` are the duplicate flags to
        assume; None: predict them from this batch's repeated event ids and the high-water marks this process
        stored before (usually right, so usually one round trip)."""
        tenant = batch.tenant_id
        tk = _tk(tenant)
        keys = _KeyList(f"{tk}:hwm", f"{tk}:min", f"{tk}:res")
        known = self._known_hwm
        predict = dups is None
        flags: list[bool] = [] if dups is None else dups
        streams: dict[str, int] = {}
        marks: list[str | None] = []  # per stream index - 1: the mark this process knows
        best: dict[str, str] = {}  # per stream key: the highest position in the batch
        groups: dict[int, tuple[list[str], list[str], list[bytes], list[str], list[int]]] = {}
        sums: dict[tuple[int, str, str, str], list[int]] = {}
        seen: set[str] = set()
        settle: set[str] = set()
        for n, row in enumerate(batch.rows):
            (_, event_id, _, minute, _, _, _, _, stream_key, pos, model, cc, app, i, o, r, w, req, cost, res, _) = row
            stream = streams.get(stream_key)
            if stream is None:
                stream = streams[stream_key] = len(streams) + 1
                if stream > 999:  # the script's stream index is three digits
                    raise ValueError("more than 999 (shard, partition key) streams for one tenant in one batch")
                marks.append(known.get((tenant, stream_key)))
                best[stream_key] = pos
            elif pos > best[stream_key]:
                best[stream_key] = pos
            if len(pos) != POSITION_WIDTH:
                raise ValueError(f"sequence number longer than 64 digits: {pos[:20]}...")
            if predict:
                mark = marks[stream - 1]
                dup = (mark is not None and pos <= mark) or event_id in seen
                seen.add(event_id)
                flags.append(dup)
            else:
                dup = flags[n]
            group = groups.get(minute // 60)
            if group is None:
                group = groups[minute // 60] = ([], [], [], [], [])
            group[0].append(_STREAM_INDEX[stream])
            group[1].append(pos)
            group[2].append(event_digest(event_id))
            group[3].append("1" if dup else "0")
            group[4].append(n)
            if res:
                settle.add(res)
            if not dup:
                key = (minute, model, cc, app)
                c = sums.get(key)
                if c is None:
                    sums[key] = [i, o, r, w, req, cost]
                else:
                    c[0] += i
                    c[1] += o
                    c[2] += r
                    c[3] += w
                    c[4] += req
                    c[5] += cost
        args: list[Any] = [plan.horizon_s, _HWM_TTL_S, RING_TTL_S, len(streams), *streams, len(groups)]
        order: list[int] = []
        for hour, (indexes, positions, digests, expect, members) in groups.items():
            args += [
                keys.index(f"{tk}:ev:{minute_ids(hour * 60)[1]}"),
                len(members),
                "".join(indexes),
                "".join(positions),
                b"".join(digests),
                "".join(expect),
            ]
            order += members
        _bucket_args(tk, keys, sums, plan, args)
        args.append(len(settle))
        args += sorted(settle)
        reads = plan.reads(batch.read_windows, batch.read_previous)
        args += reads.args(tk, keys)
        return _Applied(batch, keys.keys, args, order, flags, best, reads, index)

    # --- UsageReader -------------------------------------------------------------------------------------

    def window_totals(self, tenant_id: str, windows: Sequence[Window], now: datetime) -> dict[str, Totals]:
        keys = _KeyList(f"{_tk(tenant_id)}:min")
        reads = _plan_reads(windows, (), now)
        values = self._read(keys=keys.keys, args=reads.args(_tk(tenant_id), keys))
        return reads.decode(values)

    def _window_totals_many(self, tenants: Sequence[str], window: Window, now: datetime) -> dict[str, Totals]:
        out: dict[str, Totals] = {}
        for start in range(0, len(tenants), 500):
            chunk = tenants[start : start + 500]
            pipe = self.client.pipeline(transaction=False)
            reads = _plan_reads([window], (), now)
            for t in chunk:
                keys = _KeyList(f"{_tk(t)}:min")
                self._read(keys=keys.keys, args=reads.args(_tk(t), keys), client=pipe)
            for t, values in zip(chunk, pipe.execute(), strict=True):
                out[t] = reads.decode(values)[window.name]
        return out

    # --- QuotaState --------------------------------------------------------------------------------------

    def quota_status(self, tenant_id: str, now: datetime) -> QuotaStatus:
        pipe = self.client.pipeline(transaction=False)
        pipe.hgetall(f"{_tk(tenant_id)}:blk")
        pipe.hgetall(f"{_tk(tenant_id)}:rsv")
        raw_blocks, raw_flags = pipe.execute()
        blocks = [_block_from_json(tenant_id, w, v) for w, v in raw_blocks.items()]
        flags = [_flag_from_json(tenant_id, w, v) for w, v in raw_flags.items()]
        return QuotaStatus(
            blocks=tuple(sorted((b for b in blocks if b.active(now)), key=lambda b: b.window)),
            reserve=tuple(sorted((f for f in flags if now < f.until), key=lambda f: f.window)),
        )

    def set_block(self, record: BlockRecord) -> None:
        key = f"{_tk(record.tenant_id)}:blk"
        doc = {"reason": record.reason, "until": record.until.isoformat(), "set_by": record.set_by}
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, record.window, json.dumps(doc, separators=(",", ":")))
        pipe.expire(key, STATE_TTL_S)
        pipe.execute()

    def lift_blocks(self, tenant_id: str, window: str | None = None) -> int:
        key = f"{_tk(tenant_id)}:blk"
        if window is not None:
            return int(self.client.hdel(key, window))
        pipe = self.client.pipeline(transaction=True)
        pipe.hlen(key)
        pipe.delete(key)
        count, _ = pipe.execute()
        return int(count)

    def set_reserve_flag(self, flag: ReserveFlag) -> None:
        key = f"{_tk(flag.tenant_id)}:rsv"
        doc = {"level": flag.level.label, "limit_nanos": flag.limit_nanos, "until": flag.until.isoformat()}
        pipe = self.client.pipeline(transaction=False)
        pipe.hset(key, flag.window, json.dumps(doc, separators=(",", ":")))
        pipe.expire(key, STATE_TTL_S)
        pipe.execute()

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
        tk = _tk(tenant_id)
        keys = _KeyList(f"{tk}:res", f"{tk}:min")
        now_ms = int(now.timestamp() * 1000)
        expires_ms = now_ms + int(ttl.total_seconds() * 1000)
        args: list[Any] = [reservation_id, amount_nanos, limit_nanos, now_ms, expires_ms]
        args += _plan_reads([window], (), now).args(tk, keys)
        return bool(self._reserve(keys=keys.keys, args=args))

    def settle(self, tenant_id: str, reservation_ids: Iterable[str]) -> None:
        ids = list(reservation_ids)
        if ids:
            self.client.hdel(f"{_tk(tenant_id)}:res", *ids)

    # --- AlertMarks --------------------------------------------------------------------------------------

    def raise_marks(self, marks: Sequence[AlertMark]) -> list[int]:
        if not marks:
            return []
        pipe = self.client.pipeline(transaction=False)
        now = datetime.now(UTC)
        for m in marks:
            ttl = max(60, int((m.expires - now).total_seconds()))
            self._mark(keys=[f"{_tk(m.tenant_id)}:al:{m.period}"], args=[m.rule, m.level, ttl], client=pipe)
        return [int(v) for v in pipe.execute()]

    def restore_mark(self, mark: AlertMark, previous: int) -> None:
        self._restore(keys=[f"{_tk(mark.tenant_id)}:al:{mark.period}"], args=[mark.rule, mark.level, previous])

    # --- UsageIndex --------------------------------------------------------------------------------------

    def active_tenants(self, start: datetime, end: datetime) -> list[str]:
        days = []
        day = start
        while bucket_id(Granularity.DAY, day) <= bucket_id(Granularity.DAY, end):
            days.append(bucket_id(Granularity.DAY, day))
            day += timedelta(days=1)
        return self._active(days)

    def _active(self, days: Sequence[str]) -> list[str]:
        pipe = self.client.pipeline(transaction=False)
        for d in days:
            pipe.smembers(f"tm:active:{{{d}}}")
        found: set[str] = set()
        for members in pipe.execute():
            found |= {m.decode() if isinstance(m, bytes) else str(m) for m in members}
        return sorted(found)

    def _day_buckets(self, tenant_id: str, days: Sequence[str]) -> list[dict[str, Totals]]:
        pipe = self.client.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(f"{_tk(tenant_id)}:d:{day}")
        out = []
        for raw in pipe.execute():
            out.append(fields_to_totals({_text(k): int(v) for k, v in raw.items()}))
        return out

    def dimension_totals(self, tenant_id: str, window: Window, now: datetime) -> dict[str, dict[str, Totals]]:
        if window.sliding or window.granularity not in (Granularity.DAY, Granularity.MONTH):
            raise ValueError(f"dimension totals are kept for day and month windows, not {window.name}")
        days = [bucket_id(Granularity.DAY, now)] if window.granularity is Granularity.DAY else month_days(now)
        return dimension_sums(self._day_buckets(tenant_id, days))

    def daily_rollup(self, tenant_id: str, day: datetime) -> list[RollupRow]:
        rows = []
        (counts,) = self._day_buckets(tenant_id, [bucket_id(Granularity.DAY, day)])
        for prefix, totals in counts.items():
            dim, values = parse_dim_prefix(prefix)
            if dim is Dim.COMBO:
                rows.append(RollupRow(tenant_id, values[0], values[1], values[2], totals))
        return sorted(rows, key=lambda r: (r.model, r.cost_center, r.application_id))

    def top_tenants(self, window: Window, metric: Metric, now: datetime, limit: int = 10) -> list[tuple[str, Totals]]:
        candidates = self._active(window_days(window, now))
        totals = self._window_totals_many(candidates, window, now)
        return [(t, totals[t]) for t in rank_tenants(totals, lambda x: x.value(metric), limit)]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _block_from_json(tenant_id: str, window: Any, value: Any) -> BlockRecord:
    doc = json.loads(_text(value))
    return BlockRecord(
        tenant_id, _text(window), doc["reason"], datetime.fromisoformat(doc["until"]), doc.get("set_by", "consumer")
    )


def _flag_from_json(tenant_id: str, window: Any, value: Any) -> ReserveFlag:
    doc = json.loads(_text(value))
    return ReserveFlag(
        tenant_id,
        _text(window),
        AlertLevel.parse(doc["level"]),
        int(doc["limit_nanos"]),
        datetime.fromisoformat(doc["until"]),
    )
