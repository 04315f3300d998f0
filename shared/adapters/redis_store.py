"""RedisStore: every store port over Redis (ElastiCache in AWS), Cluster-safe, one Lua script per tenant per batch.

Keys (all of a tenant's carry the hash tag ``{tenant}``, so one tenant's keys share a Cluster slot and one
script may touch them all; every key a script touches is passed in KEYS):

- ``tm:{T}:min`` hash, the minute ring: 64 slots (unix minute mod 64), each one field
  ``minute,i,o,r,w,n,c`` (the minute it counts, then its counters), so sliding windows up to 64 minutes read
  one HMGET and the hash stays in Redis's compact encoding (~3 KB per active tenant). Expires 3 h after the
  last write.
- ``tm:{T}:h:<YYYYMMDDHH>`` hash, hour totals: field ``t`` -> ``i,o,r,w,n,c`` (the six counters, packed in
  one field: one HMGET and one HSET per bucket and batch instead of an HINCRBY per counter). Expires at bucket
  end + 2 days (set when the bucket is created).
- ``tm:{T}:d:<YYYYMMDD>`` hash, day totals ``t`` and combinations ``x<SEP>model<SEP>cc<SEP>app`` (the daily
  report, and the per-dimension sums of the CLI), each ``i,o,r,w,n,c``. Bucket end + 40 days.
- ``tm:{T}:mo:<YYYYMM>`` hash, month totals ``t``. Bucket end + 400 days.
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
windows asked for (one string of comma-separated counters). So Redis work is one SMISMEMBER and one SADD per
event-id set plus one HMGET and one HSET per bucket, in one round trip for the whole batch.

Throughput (the consumer's hot path, ``send_rows``): the consumer hands over rows (flat tuples) rather than
MeteredEvents, and one group of tenants at a time; the scripts are packed with hiredis and written on one
pooled connection (``_Stream``) and their replies read when the consumer asks, so the consumer meters the next
group of tenants while Redis runs this one. redis-py's pipeline would cost ~40 us of Python
per command; Redis itself spends ~110 us per tenant script here (bench/consumer.py).

Sums of sliding windows are done in Lua numbers (doubles): exact below 2^53, i.e. below $9,007,199 of cost per
tenant per sliding window. Calendar counters are exact at any size: the script adds them in Lua numbers while
the sums stay below 2^53 and digit by digit (decimal strings) from there on; Python sends any increment past
2^53 as a decimal string.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import fields as dataclass_fields
from datetime import UTC, datetime, timedelta
from typing import Any, Final, NamedTuple

import msgspec
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
    HWM_RETENTION,
    SEP,
    Dim,
    EventRow,
    TenantRows,
    dimension_sums,
    event_digests,
    hwm_applies,
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
_ATTEMPTS: Final = 4  # sends of one tenant's script per batch when its predicted duplicates keep being wrong
_GRAN_KEY: Final = {Granularity.HOUR: "h", Granularity.DAY: "d", Granularity.MONTH: "mo"}
_GRAN_OF_KEY: Final = {key: granularity for granularity, key in _GRAN_KEY.items()}

# Shared Lua: read calendar totals and sliding sums. The reads' ARGV from index i:
#   ncal, then ncal KEYS indexes; now_minute, nsliding, then nsliding lengths (minutes).
_LUA_READ: Final = """
-- Calendar counters: one field per prefix, ``i,o,r,w,n,c`` in decimal. Sums are Lua numbers (doubles) while
-- they stay below 2^53, so exact; from there on decimal strings added digit by digit: exact at any size.
local LIM = 9007199254740992
local PACKED = '^(%d+),(%d+),(%d+),(%d+),(%d+),(%d+)$'
local function digits(x)
  if type(x) == 'number' then return string.format('%d', x) end
  return x
end
local function bigadd(a, b)
  a, b = digits(a), digits(b)
  local rev, carry = {}, 0
  local la, lb = #a, #b
  for k = 0, math.max(la, lb) - 1 do
    local d = carry
    if k < la then d = d + string.byte(a, la - k) - 48 end
    if k < lb then d = d + string.byte(b, lb - k) - 48 end
    if d >= 10 then d = d - 10; carry = 1 else carry = 0 end
    rev[#rev+1] = d
  end
  if carry > 0 then rev[#rev+1] = 1 end
  local n = #rev
  while n > 1 and rev[n] == 0 do n = n - 1 end
  local s = {}
  for k = 1, n do s[k] = rev[n - k + 1] end
  return table.concat(s)
end
local function parts6(text)
  local a, b, c, d, e, f = string.match(text, PACKED)
  if not a then error('tenantmeter: malformed counters ' .. text) end
  return a, b, c, d, e, f
end
-- A packed value (nil: zeros) plus six counters q (numbers below 2^53, or decimal strings), packed.
local function add6(text, q)
  local a, b, c, d, e, f = 0, 0, 0, 0, 0, 0
  if text then a, b, c, d, e, f = parts6(text) end
  local s1, s2, s3, s4, s5, s6 = a + q[1], b + q[2], c + q[3], d + q[4], e + q[5], f + q[6]
  if s1 < LIM and s2 < LIM and s3 < LIM and s4 < LIM and s5 < LIM and s6 < LIM then
    return string.format('%d,%d,%d,%d,%d,%d', s1, s2, s3, s4, s5, s6)
  end
  return table.concat({bigadd(a, q[1]), bigadd(b, q[2]), bigadd(c, q[3]), bigadd(d, q[4]), bigadd(e, q[5]),
                       bigadd(f, q[6])}, ',')
end
-- A ring slot is one field "minute,i,o,r,w,n,c": 64 small fields keep the hash in its compact encoding.
local function slot_parts(text)
  local m, a, b, c, d, e, f = string.match(text, '^([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*),([^,]*)$')
  if not m then return nil end
  return {m + 0, a + 0, b + 0, c + 0, d + 0, e + 0, f + 0}  -- (+ 0: a number, cheaper than tonumber's call)
end
-- The reads from A[i] on (A: ARGV, or the apply script's unpacked argument array).
local function read_plan(A, i)  -- (x + 0: a number from a number or a numeric string, cheaper than tonumber)
  local cal = {}
  local ncal = A[i] + 0; i = i + 1
  for c = 1, ncal do cal[c] = KEYS[A[i] + 0]; i = i + 1 end
  local nowm = A[i] + 0; local nsl = A[i+1] + 0; i = i + 2
  local lens = {}; local maxn = 0
  for s = 1, nsl do lens[s] = A[i] + 0; i = i + 1; if lens[s] > maxn then maxn = lens[s] end end
  return {cal = cal, nowm = nowm, lens = lens, maxn = maxn}, i
end
-- slot -> parsed parts of the ring slots asked for (absent: empty)
local function fetch_slots(ring, slots)
  local parsed = {}
  if #slots > 0 then
    local vals = redis.call('HMGET', ring, unpack(slots))
    for n = 1, #slots do
      if vals[n] then parsed[slots[n]] = slot_parts(vals[n]) end
    end
  end
  return parsed
end
-- Calendar totals (from ``written``, key -> the packed totals this script just wrote, else read), then the
-- sliding sums over the parsed ring slots.
local function read_out(plan, parsed, out, written)
  for c = 1, #plan.cal do
    local key = plan.cal[c]
    local text = written and written[key]
    if not text then text = redis.call('HGET', key, 't') or '0,0,0,0,0,0' end
    local n = #out
    out[n+1], out[n+2], out[n+3], out[n+4], out[n+5], out[n+6] = parts6(text)
  end
  local lens = plan.lens
  local nsl = #lens
  if nsl > 0 then
    local sums = {}
    for s = 1, nsl do sums[s] = {0,0,0,0,0,0} end
    for k = 0, plan.maxn - 1 do
      local parts = parsed[(plan.nowm - k) % 64]
      if parts and parts[1] == plan.nowm - k then
        for f = 1, 6 do
          local x = parts[f+1]
          if x ~= 0 then
            for s = 1, nsl do if k < lens[s] then sums[s][f] = sums[s][f] + x end end
          end
        end
      end
    end
    -- '%d', not tostring: Lua prints numbers past 14 digits in exponent form
    for s = 1, nsl do for f = 1, 6 do out[#out+1] = string.format('%d', sums[s][f]) end end
  end
end
local function read_windows(ring, i, out)
  local plan
  plan, i = read_plan(ARGV, i)
  local slots = {}
  for k = 0, plan.maxn - 1 do slots[k+1] = (plan.nowm - k) % 64 end
  read_out(plan, fetch_slots(ring, slots), out)
  return i
end
"""

# KEYS: 1 hwm, 2 ring, 3 reservations, then bucket and event-id keys (by index).
# ARGV[1]: one MessagePack array A (hiredis packs an argument in ~100 ns, and Redis makes a Lua string of each;
#   MessagePack encodes a number in ~20 ns and the script reads numbers as numbers) of:
#   1 horizon_s, 2 hwm_ttl_s, 3 ring_ttl_s;
#   nstreams, then per stream its field and the highest position of the batch in it;
#   ngroups, then per group (one event-id set): key index, nevents, four fixed-width blobs holding per event
#     its stream index, position, digest (the blob is ARGV[k], k given here: Redis's MessagePack reader takes
#     no bytes) and expected dup flag (0/1), and whether the group's events are checked
#     against the high-water marks (1/0: see shared.store_layout.hwm_applies; the positions blob is empty on 0);
#   buckets: an array of, per bucket, key index, ttl and an array of (field, [i, o, r, w, n, c])*, field 't'
#     first (increments past 2^53 as decimal strings);
#   nring, then per minute: minute, i, o, r, w, n, c;
#   nsettle, reservation ids*; then reads.
# Bucket counters: one packed field per prefix, one HMGET and one HSET per bucket. An HINCRBY per counter cost
# Redis ~1 us each in a day hash of one field per counter (~36 per tenant script here): ~40 of its ~120 us.
_LUA_APPLY: Final = (
    _LUA_READ
    + """
local hwm, ring = KEYS[1], KEYS[2]
local A = cmsgpack.unpack(ARGV[1])  -- every argument, in one MessagePack array
local i = 4
-- streams: field (shard|partition key), then the highest position of the batch in it
local nst = A[i]; i = i + 1
local sfields, best = {}, {}
for s = 1, nst do sfields[s] = A[i]; best[s] = A[i+1]; i = i + 2 end
local stored = {}
if nst > 0 then stored = redis.call('HMGET', hwm, unpack(sfields)) end
for s = 1, nst do if stored[s] and stored[s] > best[s] then best[s] = stored[s] end end
local ngroups = A[i]; i = i + 1
local flags, batch, adds = {}, {}, {}
local mismatch = false
for g = 1, ngroups do
  -- per group: key index, n, then four fixed-width blobs: stream indexes (3 digits, more past 999 streams),
  -- positions (74 chars), digests (12 bytes), expected flags (1 char); and whether positions are checked
  -- against the marks
  local ek = KEYS[A[i]]; local n = A[i+1]
  local sblob, pblob, dblob, fblob = A[i+2], A[i+3], ARGV[A[i+4]], A[i+5]
  local check = A[i+6] == '1'
  i = i + 7
  local w = #sblob / n
  local digests = {}
  for e = 1, n do digests[e] = string.sub(dblob, e*12 - 11, e*12) end
  local member = redis.call('SMISMEMBER', ek, unpack(digests))
  local new = {}
  for e = 1, n do
    local dg = digests[e]
    local dup = batch[dg] or member[e] == 1
    if check and not dup then
      local s = stored[nst == 1 and 1 or tonumber(string.sub(sblob, e*w - w + 1, e*w))]
      if s and string.sub(pblob, e*74 - 73, e*74) <= s then dup = true end
    end
    if dup then flags[#flags+1] = '1' else flags[#flags+1] = '0'; new[#new+1] = dg end
    batch[dg] = true
    if dup ~= (string.byte(fblob, e) == 49) then mismatch = true end
  end
  if #new > 0 then adds[#adds+1] = {ek, new} end
end
if mismatch then return {0, table.concat(flags)} end
for _, a in ipairs(adds) do
  redis.call('SADD', a[1], unpack(a[2]))
  redis.call('EXPIRE', a[1], A[1])
end
if nst > 0 then
  local upd = {}
  for s = 1, nst do
    if best[s] and best[s] ~= stored[s] then upd[#upd+1] = sfields[s]; upd[#upd+1] = best[s] end
  end
  if #upd > 0 then redis.call('HSET', hwm, unpack(upd)) end
  redis.call('EXPIRE', hwm, A[2])
end
-- Buckets: an array of, per bucket, its key index, ttl and {field, counters, ...} with 't' (the tenant's
-- totals) first. One HMGET and one HSET per bucket. A bucket without 't' is new: only then its EXPIRE (the
-- bucket's expiry is fixed).
local buckets = A[i]; i = i + 1
local written = {}
for b = 1, #buckets, 3 do
  local key, fields = KEYS[buckets[b]], buckets[b+2]
  local nf = #fields / 2
  local names = {}
  for f = 1, nf do names[f] = fields[2*f-1] end
  local cur = redis.call('HMGET', key, unpack(names))
  local upd = {}
  for f = 1, nf do
    upd[2*f-1] = names[f]
    upd[2*f] = add6(cur[f], fields[2*f])
  end
  redis.call('HSET', key, unpack(upd))
  if not cur[1] then redis.call('EXPIRE', key, buckets[b+1]) end
  written[key] = upd[2]
end
-- Ring: the slots written and the slots the sliding windows read, fetched with one HMGET and parsed once.
local nr = A[i]; i = i + 1
local writes, slots, listed = {}, {}, {}
for r = 1, nr do
  local m = A[i]
  writes[r] = {m, A[i+1], A[i+2], A[i+3], A[i+4], A[i+5], A[i+6]}
  local slot = m % 64
  if not listed[slot] then listed[slot] = true; slots[#slots+1] = slot end
  i = i + 7
end
local nset = A[i]; i = i + 1
if nset > 0 then
  local ids = {}
  for s = 1, nset do ids[s] = A[i]; i = i + 1 end
  redis.call('HDEL', KEYS[3], unpack(ids))
end
local plan
plan, i = read_plan(A, i)
for k = 0, plan.maxn - 1 do
  local slot = (plan.nowm - k) % 64
  if not listed[slot] then listed[slot] = true; slots[#slots+1] = slot end
end
local parsed = fetch_slots(ring, slots)
if nr > 0 then
  local upd, at = {}, {}
  for r = 1, nr do
    local v = writes[r]
    local m = v[1]
    local slot = m % 64
    local cur = parsed[slot]
    local st = -1
    if cur then
      st = cur[1]
      if st == m then for f = 2, 7 do v[f] = v[f] + cur[f] end end
    end
    if st <= m then  -- a slot already holding a later minute keeps it
      parsed[slot] = v
      local text = string.format('%d,%d,%d,%d,%d,%d,%d', m, v[2], v[3], v[4], v[5], v[6], v[7])
      if at[slot] then upd[at[slot]] = text else upd[#upd+1] = slot; upd[#upd+1] = text; at[slot] = #upd end
    end
  end
  if #upd > 0 then redis.call('HSET', ring, unpack(upd)) end
  redis.call('EXPIRE', ring, A[3])
end
local out = {}
read_out(plan, parsed, out, written)
return {1, table.concat(out, ',')}  -- one string: converting dozens of replies costs Redis more than this
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


_FIRST_STREAM: Final = "001"  # the index of a tenant's only stream in the script's blob
_msgpack: Final = msgspec.msgpack.Encoder().encode
_INTS: Final = msgspec.json.Decoder(list[int]).decode
_HWM_TTL_S: Final = int(HWM_RETENTION.total_seconds())
_NO_IDS: Final[frozenset[str]] = frozenset()


class _Reads:
    """What one tenant's script reads back after applying: calendar bucket keys (the suffix after ``tm:{T}:``)
    and sliding window lengths, in the order ``read_windows`` (Lua) answers, and their names."""

    def __init__(self, calendar: Sequence[str], sliding: Sequence[int], now_minute: int, names: Sequence[str]):
        self.calendar = tuple(calendar)
        self.tail = [now_minute, len(sliding), *sliding]
        self.names = tuple(names)

    def calendar_args(self, tk: str, keys: _KeyList) -> list[Any]:
        out: list[Any] = [len(self.calendar)]
        out += [keys.index(f"{tk}:{suffix}") for suffix in self.calendar]
        return out

    def args(self, tk: str, keys: _KeyList) -> list[Any]:
        return self.calendar_args(tk, keys) + self.tail

    def decode(self, values: Sequence[Any]) -> dict[str, Totals]:
        ints = [int(v) if v is not None else 0 for v in values]
        return {name: Totals(*ints[n * 6 : n * 6 + 6]) for n, name in enumerate(self.names)}

    def decode_text(self, text: bytes | str) -> dict[str, Totals]:
        """From the apply script's answer: every counter, comma-separated."""
        if not self.names:
            return {}
        try:  # read as a JSON array in C: a fifth of int() per counter (~50 counters per tenant per batch)
            ints = _INTS(b"[%b]" % (text if isinstance(text, bytes) else text.encode()))
        except msgspec.DecodeError:  # (anything JSON would not read, e.g. leading zeros: int() has the last word)
            ints = list(map(int, _text(text).split(",")))
        return {name: _totals(ints, 6 * n) for n, name in enumerate(self.names)}


_new = object.__new__
_SET_I, _SET_O, _SET_R, _SET_W, _SET_N, _SET_C = (getattr(Totals, f.name).__set__ for f in dataclass_fields(Totals))


def _totals(counters: Sequence[int], at: int = 0) -> Totals:
    """``Totals(*counters[at:at + 6])``, set through its slots: a frozen dataclass's ``__init__`` goes through
    ``object.__setattr__`` per field, twice the time (and the consumer builds several per tenant per batch).
    tests/unit/adapters/test_redis_arguments.py holds it to the constructor."""
    t = _new(Totals)
    _SET_I(t, counters[at])
    _SET_O(t, counters[at + 1])
    _SET_R(t, counters[at + 2])
    _SET_W(t, counters[at + 3])
    _SET_N(t, counters[at + 4])
    _SET_C(t, counters[at + 5])
    return t


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


class _HourPlan(NamedTuple):
    """The buckets an occurred-at hour's events count in: key suffixes (after ``tm:{T}:``) and TTLs from now
    (zero or less: past the bucket's retention, not written)."""

    hour_key: str
    hour_ttl: int
    day_key: str
    day_ttl: int
    month_key: str
    month_ttl: int
    events_key: str  # the event-id set of the hour
    hwm_check: str  # "1": its events are checked against the high-water marks (store_layout.hwm_applies)


class _TenantKeys(NamedTuple):
    """A tenant's script KEYS for events of one hour: hwm, ring, reservations, the hour's event-id set, its
    hour, day and month buckets, then calendar windows read that are not among them; and their indexes."""

    keys: list[str]
    events: int
    buckets: tuple[int, int, int]
    reads: list[int]  # the number of calendar windows read, then their KEYS indexes


class _BatchPlan:
    """What every tenant of one apply call shares: the time, the TTLs, the read plans per set of windows."""

    def __init__(self, now: datetime, horizon: timedelta) -> None:
        self.now = now
        self.now_s = int(now.timestamp())
        self.horizon_s = _seconds(horizon)
        self._reads: dict[tuple[tuple[Window, ...], tuple[Window, ...]], _Reads] = {}
        self._reads_by_id: dict[tuple[int, int], tuple[tuple[Window, ...], tuple[Window, ...], _Reads]] = {}
        self._hours: dict[int, _HourPlan] = {}

    def hour(self, hour: int) -> _HourPlan:
        """The buckets of unix hour ``hour``."""
        found = self._hours.get(hour)
        if found is None:
            _, hour_id, day, month = minute_ids(hour * 60)
            found = self._hours[hour] = _HourPlan(
                f"h:{hour_id}",
                _expiry(Granularity.HOUR, hour_id) - self.now_s,
                f"d:{day}",
                _expiry(Granularity.DAY, day) - self.now_s,
                f"mo:{month}",
                _expiry(Granularity.MONTH, month) - self.now_s,
                f"ev:{hour_id}",
                "1" if hwm_applies(hour * 3600, self.now_s, self.horizon_s) else "0",
            )
        return found

    def reads(self, windows: tuple[Window, ...], previous: tuple[Window, ...]) -> _Reads:
        """The read plan of these windows, remembered by the tuples' identity first (hashing a tuple of
        Windows hashes every field of every Window; the consumer passes one tuple per set of windows)."""
        by_id = self._reads_by_id.get((id(windows), id(previous)))
        if by_id is not None and by_id[0] is windows and by_id[1] is previous:
            return by_id[2]
        key = (windows, previous)
        found = self._reads.get(key)
        if found is None:
            found = self._reads[key] = _plan_reads(windows, previous, self.now)
        self._reads_by_id[(id(windows), id(previous))] = (windows, previous, found)  # keeps them alive: ids hold
        return found


class _Applied:
    """One tenant's script call in flight: its arguments and what is needed to read its answer."""

    __slots__ = ("args", "batch", "best", "digests", "dups", "index", "keys", "order", "reads")

    def __init__(
        self,
        batch: TenantRows,
        keys: list[str],
        args: bytes,
        digests: list[bytes],
        order: list[int],
        dups: list[bool],
        best: dict[str, str],
        reads: _Reads,
        index: int,
    ) -> None:
        self.batch = batch
        self.keys = keys
        self.args = args  # ARGV[1]: the arguments, MessagePack-encoded
        self.digests = digests  # ARGV[2...]
        self.order = order  # row indexes in the order the script reports duplicate flags
        self.dups = dups  # the flags assumed
        self.best = best  # per stream key, the highest position in the batch
        self.reads = reads
        self.index = index  # position in the apply call's batches


_COMBO: Final = Dim.COMBO.value
_LIM: Final = 2**53  # counters from here up go to the script as decimal strings (Lua numbers are doubles)


def _digits(counts: list[Any]) -> list[Any]:
    """Counters at or past 2^53 as decimal strings: the script adds those digit by digit, exactly."""
    return [str(v) if v >= _LIM else v for v in counts]


def _exact(fields: list[Any]) -> list[Any]:
    """A bucket's ``[field, counters, ...]`` with every counter past 2^53 as a decimal string."""
    return [_digits(x) if type(x) is list else x for x in fields]


def _sum_new(rows: Sequence[EventRow], *, by_hour: bool) -> tuple[dict[Any, list[int]], dict[int, list[int]]]:
    """The new events' counters per (model, costCenter, applicationId), keyed with the unix hour first when
    ``by_hour``, and per unix minute (the ring). Written out flat: it runs for every tenant of every batch."""
    sums: dict[Any, list[int]] = {}
    ring: dict[int, list[int]] = {}
    for row in rows:
        (_, _, _, minute, _, _, _, _, _, _, model, cc, app, i, o, r, w, req, cost, _, _) = row
        key = (minute // 60, model, cc, app) if by_hour else (model, cc, app)
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
        c = ring.get(minute)
        if c is None:
            ring[minute] = [i, o, r, w, req, cost]
        else:
            c[0] += i
            c[1] += o
            c[2] += r
            c[3] += w
            c[4] += req
            c[5] += cost
    return sums, ring


def _ring_args(ring: Mapping[int, list[int]], args: list[Any]) -> None:
    """Append the ring section of the apply script's arguments: the new events' counters per unix minute (the
    script sums them in Lua numbers: see the module docstring; any past 2^53 go as decimal strings, which
    MessagePack would otherwise carry as 64-bit integers the script reads as doubles anyway)."""
    args.append(len(ring))
    for minute, counts in ring.items():
        args.append(minute)
        args += counts if max(counts) < _LIM else _digits(counts)


def _positions(positions: Sequence[str], check: str) -> str:
    """A group's positions blob (74 characters per event) when the script checks them against the high-water
    marks (``check`` "1"); empty otherwise, as the script then never reads it (and it would be most of the
    arguments)."""
    if check != "1":
        return ""
    blob = "".join(positions)
    if len(blob) != POSITION_WIDTH * len(positions):
        raise ValueError("a sequence number longer than 64 digits")
    return blob


def _one_hour_buckets(
    indexes: tuple[int, int, int], sums: Mapping[tuple[str, str, str], list[int]], hour: _HourPlan
) -> list[Any]:
    """``_buckets`` for the usual batch, whose events all occurred in one hour: ``sums`` are the new events'
    counters per (model, costCenter, applicationId), its day combinations as they are; the hour, day and month
    totals are their sum. ``indexes``: the KEYS indexes of the hour, day and month buckets."""
    t = [0, 0, 0, 0, 0, 0]
    combos: list[Any] = ["t", t]
    for (model, cc, app), c in sums.items():
        i, o, r, w, n, cost = c
        if i or o or r or w or n or cost:
            t[0] += i
            t[1] += o
            t[2] += r
            t[3] += w
            t[4] += n
            t[5] += cost
            combos += (SEP.join((_COMBO, model, cc, app)), c)
    if len(combos) == 2:
        return []  # nothing to count (counters are never negative)
    if max(t) >= _LIM:
        combos = _exact(combos)
    totals = combos[:2]
    buckets: list[Any] = []
    if hour.hour_ttl > 0:
        buckets += (indexes[0], hour.hour_ttl, totals)
    if hour.day_ttl > 0:
        buckets += (indexes[1], hour.day_ttl, combos)
    if hour.month_ttl > 0:
        buckets += (indexes[2], hour.month_ttl, totals)
    return buckets


def _buckets(
    tk: str, keys: _KeyList, sums: Mapping[tuple[int, str, str, str], list[int]], plan: _BatchPlan
) -> list[Any]:
    """The bucket section (flat: key index, ttl, ["t", totals, combination field, counters, ...] per bucket) for
    new events of any hours. All-zero counters are left out (counters are never negative)."""
    hours: dict[int, list[int]] = {}
    combos: dict[str, dict[str, list[int]]] = {}  # day -> combination field -> counters
    for (hour, model, cc, app), c in sums.items():
        if not any(c):
            continue
        t = hours.get(hour)
        if t is None:
            hours[hour] = c.copy()
        else:
            for f in range(6):
                t[f] += c[f]
        day_combos = combos.setdefault(minute_ids(hour * 60)[2], {})
        name = SEP.join((_COMBO, model, cc, app))
        cur = day_combos.get(name)
        if cur is None:
            day_combos[name] = c.copy()
        else:
            for f in range(6):
                cur[f] += c[f]
    # (granularity key, bucket id) -> tenant totals, hour buckets first
    totals: dict[tuple[str, str], list[int]] = {}
    for hour, c in hours.items():
        _, hour_id, day, month = minute_ids(hour * 60)
        totals[("h", hour_id)] = c
        for key in (("d", day), ("mo", month)):
            t = totals.get(key)
            if t is None:
                totals[key] = c.copy()
            else:
                for f in range(6):
                    t[f] += c[f]
    buckets: list[Any] = []
    for (gran, ident), counts in totals.items():
        ttl = _expiry(_GRAN_OF_KEY[gran], ident) - plan.now_s
        if ttl <= 0:
            continue  # older than the bucket's retention: nothing would read it
        fields: list[Any] = ["t", counts]
        if gran == "d":
            for name, c in combos.get(ident, {}).items():
                fields += (name, c)
        if max(counts) >= _LIM:
            fields = _exact(fields)
        buckets += (keys.index(f"{tk}:{gran}:{ident}"), ttl, fields)
    return buckets


def _index_commands(batches: Sequence[TenantRows]) -> list[tuple[Any, ...]]:
    """SADD (and EXPIRE) of each day's active-tenant set: the tenants with events that occurred that day."""
    days: dict[str, list[str]] = {}
    for b in batches:
        for day in {minute_ids(m)[2] for m in {row[3] for row in b.rows}}:  # (row[3]: its unix minute)
            days.setdefault(day, []).append(b.tenant_id)
    commands: list[tuple[Any, ...]] = []
    for day, tenants in days.items():
        commands.append(("SADD", f"tm:active:{{{day}}}", *sorted(tenants)))
        commands.append(("EXPIRE", f"tm:active:{{{day}}}", INDEX_TTL_S))
    return commands


class _Replies:
    """The replies owed for one send on a _Stream, filled in order when read."""

    __slots__ = ("done", "n", "values")

    def __init__(self, n: int) -> None:
        self.n = n
        self.values: list[Any] = []
        self.done = False

    def fail(self, exc: Exception) -> None:
        self.values += [exc] * (self.n - len(self.values))
        self.done = True


class _Stream:
    """One pooled connection carrying pipelined commands whose replies are read later, in the order sent: the
    consumer sends one group of tenants' scripts and meters the next group while Redis runs them (the commands
    wait in the socket and Redis's buffers; a group's ~100 KB fits the socket's buffer, so the write returns at
    once unless Redis is a whole group behind). A reply is a Python value, or the exception of an error reply;
    a broken connection fails every reply not yet read (nothing is retried here: the consumer reports those
    records and Lambda redelivers them). A lock keeps it whole when threads share the store (Lambda runs one
    invocation at a time, a local runner or a test may not): replies are still read in the order sent."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self.conn: Any = None
        self.owed: deque[_Replies] = deque()
        self._lock = threading.Lock()

    def send(self, payload: bytes, n: int) -> _Replies:
        with self._lock:
            return self._send(payload, n)

    def wait(self, replies: _Replies) -> list[Any]:
        """Read replies up to and including ``replies``'s."""
        with self._lock:
            while not replies.done:
                self._read(self.owed[0])
            return replies.values

    def _send(self, payload: bytes, n: int) -> _Replies:
        replies = _Replies(n)
        if self.conn is None:
            try:
                self.conn = self.pool.get_connection()  # the pool checks (and reconnects) it on checkout
            except redis.RedisError as exc:
                replies.fail(exc)
                return replies
        self.owed.append(replies)
        try:
            # No health check: its PING would read a reply owed to an earlier send.
            self.conn.send_packed_command([payload], check_health=False)
        except redis.RedisError as exc:
            self._broken(exc)
        except BaseException as exc:  # half a command may be written: nothing later on it can be trusted
            self._broken(redis.ConnectionError(f"send interrupted: {exc!r}"))
            raise
        return replies

    def _read(self, head: _Replies) -> None:
        conn = self.conn
        try:
            while len(head.values) < head.n:
                try:
                    head.values.append(conn.read_response())
                except ResponseError as exc:
                    head.values.append(exc)
        except redis.RedisError as exc:  # connection or timeout
            self._broken(exc)
            return
        except BaseException as exc:  # interrupted mid-reply: the replies left unread would be misread
            self._broken(redis.ConnectionError(f"read interrupted: {exc!r}"))
            raise
        head.done = True
        self.owed.popleft()
        if not self.owed:
            self.pool.release(conn)
            self.conn = None

    def _broken(self, exc: Exception) -> None:
        if self.conn is not None:
            self.conn.disconnect()
            self.pool.release(self.conn)
            self.conn = None
        for replies in self.owed:
            replies.fail(exc)
        self.owed.clear()


class PendingApply:
    """Tenants' scripts sent to Redis and not yet answered (``RedisStore.send_rows``); ``result()`` reads the
    answers, applies again what needs it (predicted duplicates that were not, a script Redis lost), and returns
    one outcome per batch, in order."""

    def __init__(
        self,
        store: RedisStore,
        batches: Sequence[TenantRows],
        plan: _BatchPlan,
        built: list[_Applied],
        index_commands: int,
        replies: _Replies,
        results: dict[int, ApplyOutcome],
    ) -> None:
        self._store = store
        self._batches = batches
        self._plan = plan
        self._built = built
        self._index_commands = index_commands
        self._replies = replies
        self._results = results
        self._outcomes: list[ApplyOutcome] | None = None

    def result(self) -> list[ApplyOutcome]:
        if self._outcomes is None:
            self._outcomes = self._finish()
        return self._outcomes

    def _finish(self) -> list[ApplyOutcome]:
        store, batches, results = self._store, self._batches, self._results
        values = store._stream.wait(self._replies)
        index_error = next((v for v in values[: self._index_commands] if isinstance(v, Exception)), None)
        if index_error is not None:
            # The active-tenant index must never miss a tenant with usage: report every tenant for retry (a
            # script that did apply finds its events' ids on the redelivery and counts nothing twice).
            for built in self._built:
                results[built.index] = ApplyOutcome(built.batch.tenant_id, ok=False, error=f"redis: {index_error}")
            return [results[i] for i in range(len(batches))]
        expected: dict[int, list[bool] | None] = {}
        reloaded = False
        answers: list[Any] = values[self._index_commands :]
        chunk = self._built
        for attempt in range(_ATTEMPTS):
            retry: list[int] = []
            missing: list[int] = []
            store._collect(answers, chunk, expected, results, retry, missing)
            if missing:
                if reloaded:  # loaded once already: report rather than loop
                    for i in missing:
                        results[i] = ApplyOutcome(batches[i].tenant_id, ok=False, error="redis: NOSCRIPT")
                else:
                    # The server lost the script (a restart, a failover, SCRIPT FLUSH): load it, send again.
                    reloaded = True
                    try:
                        store._apply.sha = store.client.script_load(store._apply.script)
                        retry += missing
                    except redis.RedisError as exc:
                        for i in missing:
                            results[i] = ApplyOutcome(batches[i].tenant_id, ok=False, error=f"redis: {exc}")
            if not retry:
                break
            if attempt == _ATTEMPTS - 1:
                for i in retry:
                    results[i] = ApplyOutcome(
                        batches[i].tenant_id, ok=False, error="dedupe state kept changing (contention)"
                    )
                break
            chunk = [store._apply_args(batches[i], expected.get(i), self._plan, i) for i in sorted(retry)]
            answers = store._stream.wait(store._stream.send(store._pack(chunk), len(chunk)))
        return [results[i] for i in range(len(batches))]


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
        self._keys_cache: dict[tuple[str, int, tuple[str, ...]], _TenantKeys] = {}
        self._plan: _BatchPlan | None = None
        self._stream = _Stream(client.connection_pool)  # connects on first use, never at import

    # --- WindowStore -------------------------------------------------------------------------------------

    def apply_usage(
        self, batches: Sequence[TenantBatch], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        return self.apply_rows([rows_from_batch(b) for b in batches], now=now, dedupe_horizon=dedupe_horizon)

    def apply_rows(
        self, batches: Sequence[TenantRows], *, now: datetime, dedupe_horizon: timedelta
    ) -> list[ApplyOutcome]:
        """``apply_usage`` for events as rows (the consumer's hot path): one script per tenant, pipelined."""
        return self.send_rows(batches, now=now, dedupe_horizon=dedupe_horizon).result()

    def send_rows(self, batches: Sequence[TenantRows], *, now: datetime, dedupe_horizon: timedelta) -> PendingApply:
        """Start ``apply_rows``: build, pack and send the active-tenant index and one script per tenant, and return
        without waiting for Redis. Call ``result()`` on what it returns (in the order sent) for the outcomes."""
        plan = self._plan
        if plan is None or plan.now != now or plan.horizon_s != _seconds(dedupe_horizon):
            plan = self._plan = _BatchPlan(now, dedupe_horizon)  # (shared by the groups of one batch)
        results: dict[int, ApplyOutcome] = {}
        built = []
        for i, b in enumerate(batches):
            if b.rows or b.read_windows or b.read_previous:
                built.append(self._apply_args(b, None, plan, i))
            else:
                results[i] = ApplyOutcome(b.tenant_id, ok=True)
        # The index goes first: a tenant with usage is never missing from it (see the module docstring).
        index = _index_commands(batches)
        payload = b"".join([pack_command(c) for c in index]) + self._pack(built)
        replies = self._stream.send(payload, len(index) + len(built))
        return PendingApply(self, batches, plan, built, len(index), replies, results)

    def _pack(self, built: Sequence[_Applied]) -> bytes:
        """EVALSHA commands in the Redis protocol (hiredis packs; redis-py's pipeline would add ~40 us of Python
        per command, as much as building the arguments)."""
        sha = self._apply.sha
        commands: list[tuple[Any, ...]] = [("EVALSHA", sha, len(b.keys), *b.keys, b.args, *b.digests) for b in built]
        return b"".join([pack_command(c) for c in commands])

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
        if True in dups:
            n_dup = sum(dups)
            duplicate_ids = frozenset(row.event_id for row, dup in zip(built.batch.rows, dups, strict=True) if dup)
        else:
            n_dup, duplicate_ids = 0, _NO_IDS
        totals = built.reads.decode_text(answer[1])
        return ApplyOutcome(tenant, True, len(dups) - n_dup, n_dup, duplicate_ids, totals)

    def _apply_args(self, batch: TenantRows, dups: list[bool] | None, plan: _BatchPlan, index: int = -1) -> _Applied:
        """KEYS and ARGV of one tenant's apply script (see _LUA_APPLY). ``dups`` are the duplicate flags to
        assume; None: predict them from this batch's repeated event ids and the high-water marks this process
        stored before (usually right, so usually one round trip). This runs for every tenant of every batch:
        here the usual one, whose events occurred in one hour and came in one (shard, partition key) stream;
        ``_apply_args_any`` takes any other (and builds the same arguments for this one: a test holds them)."""
        rows = batch.rows
        n = len(rows)
        if not n:
            return self._apply_args_any(batch, dups, plan, index)
        minutes = [row[3] for row in rows]
        hour = minutes[0] // 60
        stream_keys = [row[8] for row in rows]
        first = stream_keys[0]
        if min(minutes) // 60 != hour or max(minutes) // 60 != hour or stream_keys.count(first) != n:
            return self._apply_args_any(batch, dups, plan, index)
        tenant = batch.tenant_id
        reads = plan.reads(batch.read_windows, batch.read_previous)
        ids = [row[1] for row in rows]
        positions = [row[9] for row in rows]
        top = max(positions)
        best = {first: top}
        if dups is None:
            mark = self._known_hwm.get((tenant, first))
            if (mark is None or min(positions) > mark) and len(set(ids)) == n:
                dups = [False] * n
            else:
                dups = self._predict(tenant, ids, stream_keys, positions, best)
        new = [row for row, dup in zip(rows, dups, strict=True) if not dup] if True in dups else rows
        hour_plan = plan.hour(hour)
        tkeys = self._keys_cache.get((tenant, hour, reads.calendar))
        if tkeys is None:
            tkeys = self._tenant_keys(tenant, hour, hour_plan, reads.calendar)
        args: list[Any] = [
            plan.horizon_s,
            _HWM_TTL_S,
            RING_TTL_S,
            1,  # one stream: its field and highest position
            first,
            top,
            1,  # one event-id set
            tkeys.events,
            n,
            _FIRST_STREAM * n,
            _positions(positions, hour_plan.hwm_check),
            2,  # ARGV[2]: the event digests (bytes: Redis's MessagePack reader takes strings only)
            "0" * n if new is rows else "".join(["1" if dup else "0" for dup in dups]),
            hour_plan.hwm_check,
        ]
        sums, ring = _sum_new(new, by_hour=False)
        args.append(_one_hour_buckets(tkeys.buckets, sums, hour_plan))
        _ring_args(ring, args)
        reservations = [row[19] for row in rows]
        if any(reservations):
            settle = sorted(set(reservations) - {""})
            args.append(len(settle))
            args += settle
        else:
            args.append(0)
        args += tkeys.reads
        args += reads.tail
        return _Applied(
            batch, tkeys.keys, _msgpack(args), [event_digests(ids)], list(range(n)), dups, best, reads, index
        )

    def _apply_args_any(
        self, batch: TenantRows, dups: list[bool] | None, plan: _BatchPlan, index: int = -1
    ) -> _Applied:
        """``_apply_args`` for any tenant batch: events of several hours, several streams, or none."""
        tenant = batch.tenant_id
        rows = batch.rows
        n = len(rows)
        ids = [row[1] for row in rows]
        stream_keys = [row[8] for row in rows]
        positions = [row[9] for row in rows]
        minutes = [row[3] for row in rows]
        first = stream_keys[0] if n else ""
        if stream_keys.count(first) == n:  # the usual: one (shard, partition key) stream
            streams = {first: _FIRST_STREAM} if n else {}
            best = {first: max(positions)} if n else {}
        else:
            # Each stream's index in the script's fixed-width blob: three digits, more past 999 streams (the
            # script reads the width off the blob).
            distinct = dict.fromkeys(stream_keys)
            width = max(3, len(str(len(distinct))))
            streams = {key: f"{i:0{width}d}" for i, key in enumerate(distinct, 1)}
            best = {}  # per stream key: the highest position in the batch
            for stream_key, pos in zip(stream_keys, positions, strict=True):
                if pos > best.get(stream_key, ""):
                    best[stream_key] = pos
        if dups is None:
            dups = self._predict(tenant, ids, stream_keys, positions, best)
        reads = plan.reads(batch.read_windows, batch.read_previous)
        hour = minutes[0] // 60 if n else 0
        one_hour = n > 0 and min(minutes) // 60 == hour == max(minutes) // 60
        if one_hour:
            tkeys = self._tenant_keys(tenant, hour, plan.hour(hour), reads.calendar)
            keys = tkeys.keys
            kl = None
        else:
            tk = _tk(tenant)
            kl = _KeyList(f"{tk}:hwm", f"{tk}:min", f"{tk}:res")
            keys = kl.keys
        args: list[Any] = [plan.horizon_s, _HWM_TTL_S, RING_TTL_S, len(streams)]
        for stream_key, pos in best.items():
            args += (stream_key, pos)
        # The per-event dedupe facts, one group (event-id set) per occurred-at hour; the digests go as ARGV of
        # their own.
        digests: list[bytes] = []
        if one_hour:
            digests.append(event_digests(ids))
            order: list[int] = list(range(n))
            check = plan.hour(hour).hwm_check
            indexes = _FIRST_STREAM * n if len(streams) == 1 else "".join([streams[k] for k in stream_keys])
            args += (
                1,
                tkeys.events,
                n,
                indexes,
                _positions(positions, check),
                2,  # ARGV[2]: the group's event digests (bytes: Redis's MessagePack reader takes strings only)
                "".join(["1" if dup else "0" for dup in dups]) if any(dups) else "0" * n,
                check,
            )
        else:
            assert kl is not None
            order = []
            by_hour: dict[int, list[int]] = {}
            for k, minute in enumerate(minutes):
                by_hour.setdefault(minute // 60, []).append(k)
            args.append(len(by_hour))
            for group_hour, members in by_hour.items():
                digests.append(event_digests([ids[k] for k in members]))
                hour_plan = plan.hour(group_hour)
                args += (
                    kl.index(f"{_tk(tenant)}:{hour_plan.events_key}"),
                    len(members),
                    "".join([streams[stream_keys[k]] for k in members]),
                    _positions([positions[k] for k in members], hour_plan.hwm_check),
                    len(digests) + 1,  # ARGV index of the digests appended above
                    "".join(["1" if dups[k] else "0" for k in members]),
                    hour_plan.hwm_check,
                )
                order += members
        new = rows if not any(dups) else [row for row, dup in zip(rows, dups, strict=True) if not dup]
        sums, ring = _sum_new(new, by_hour=not one_hour)
        if one_hour:
            args.append(_one_hour_buckets(tkeys.buckets, sums, plan.hour(hour)))
        else:
            assert kl is not None
            args.append(_buckets(_tk(tenant), kl, sums, plan))
        _ring_args(ring, args)
        reservations = [row[19] for row in rows]
        settle = sorted(set(reservations) - {""}) if any(reservations) else []
        args.append(len(settle))
        args += settle
        if one_hour:
            args += tkeys.reads
        else:
            assert kl is not None
            args += reads.calendar_args(_tk(tenant), kl)
        args += reads.tail
        return _Applied(batch, keys, _msgpack(args), digests, order, dups, best, reads, index)

    def _tenant_keys(self, tenant: str, hour: int, hour_plan: _HourPlan, calendar: tuple[str, ...]) -> _TenantKeys:
        """The KEYS of a tenant's script for events of one hour reading ``calendar``, and their indexes,
        remembered: the same for every batch of the hour."""
        cache = self._keys_cache
        found = cache.get((tenant, hour, calendar))
        if found is None:
            if len(cache) > 20_000:  # (~1 KB each: an hour of 20,000 tenants)
                cache.clear()
            tk = _tk(tenant)
            kl = _KeyList(f"{tk}:hwm", f"{tk}:min", f"{tk}:res")
            events = kl.index(f"{tk}:{hour_plan.events_key}")
            buckets = (
                kl.index(f"{tk}:{hour_plan.hour_key}"),
                kl.index(f"{tk}:{hour_plan.day_key}"),
                kl.index(f"{tk}:{hour_plan.month_key}"),
            )
            reads = [len(calendar), *(kl.index(f"{tk}:{suffix}") for suffix in calendar)]
            found = cache[(tenant, hour, calendar)] = _TenantKeys(kl.keys, events, buckets, reads)
        return found

    def _predict(
        self, tenant: str, ids: Sequence[str], stream_keys: Sequence[str], positions: Sequence[str], best: Any
    ) -> list[bool]:
        """Duplicates as far as this process knows: event ids repeated in the batch, positions at or below the
        high-water marks it stored before. A guess the script checks: a record at or below a mark is almost
        always a redelivery, remembered by id too; a replayed range the mapping gave up on costs one more trip."""
        known = self._known_hwm
        marks = {stream_key: known.get((tenant, stream_key)) for stream_key in best}
        if len(set(ids)) == len(ids):
            if not any(marks.values()):
                return [False] * len(ids)
            if len(marks) == 1:
                (mark,) = marks.values()
                if mark is None or min(positions) > mark:  # fixed width: strings sort like positions
                    return [False] * len(ids)
        seen: set[str] = set()
        flags = []
        for event_id, stream_key, pos in zip(ids, stream_keys, positions, strict=True):
            mark = marks[stream_key]
            flags.append((mark is not None and pos <= mark) or event_id in seen)
            seen.add(event_id)
        return flags

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
        self._run(("HSET", key, record.window, json.dumps(doc, separators=(",", ":"))), ("EXPIRE", key, STATE_TTL_S))

    def _run(self, *commands: tuple[Any, ...]) -> list[Any]:
        """Commands in one round trip on the stream (a redis-py pipeline costs ~100 us of Python for two); the
        first error reply raises, after all ran, as a pipeline's would."""
        replies = self._stream.wait(self._stream.send(b"".join([pack_command(c) for c in commands]), len(commands)))
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

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
        self._run(("HSET", key, flag.window, json.dumps(doc, separators=(",", ":"))), ("EXPIRE", key, STATE_TTL_S))

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
        now = datetime.now(UTC)
        calls = [
            (f"{_tk(m.tenant_id)}:al:{m.period}", m.rule, m.level, max(60, int((m.expires - now).total_seconds())))
            for m in marks
        ]
        return [int(v) for v in self._run_scripts(self._mark, 1, calls)]

    def _run_scripts(self, script: Script, nkeys: int, calls: Sequence[tuple[Any, ...]]) -> list[Any]:
        """EVALSHA ``script`` once per call (keys then args) on the stream, loading the script if Redis lost it;
        the first error reply raises, after every call ran (as redis-py's pipeline does)."""
        replies = self._stream.wait(
            self._stream.send(b"".join([pack_command(("EVALSHA", script.sha, nkeys, *c)) for c in calls]), len(calls))
        )
        lost = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
        if lost:
            script.sha = self.client.script_load(script.script)
            again = self._stream.send(
                b"".join([pack_command(("EVALSHA", script.sha, nkeys, *calls[n])) for n in lost]), len(lost)
            )
            for n, reply in zip(lost, self._stream.wait(again), strict=True):
                replies[n] = reply
        for reply in replies:
            if isinstance(reply, Exception):
                raise reply
        return replies

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
            out.append(_bucket_totals(raw))
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


def _bucket_totals(raw: Mapping[Any, Any]) -> dict[str, Totals]:
    """A calendar bucket hash (HGETALL) as prefix -> Totals: its fields are ``prefix`` -> ``i,o,r,w,n,c``."""
    return {_text(name): Totals(*map(int, _text(value).split(","))) for name, value in raw.items()}


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
