"""The quota gate through the app: reserve mode (from the consumer's flag or the gateway's own view), atomic
reservations, the maximum-cost rule, the at-most-one-second cache, and failing open / closed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from producers.gateway.app import GatewayConfig
from producers.gateway.protocol import HttpResponse
from producers.gateway.quota import max_input_tokens
from shared.adapters.memory_store import InMemoryStore
from shared.decisions import AlertLevel, BlockRecord
from shared.errors import StoreUnavailableError
from shared.ports import ReserveFlag
from shared.pricing import CachedPricer, PriceCatalog, rate_max_cost
from shared.schema import Outcome
from tests.unit.gateway.support import TIGHT_KEY, FakeConsumer, Gateway, MakeGateway, body_of, converse_body

ONE_USD = 1_000_000_000
# converse_body() on Claude 3.5 Haiku: input bound 24 bytes + 8 per message + 64 = 96 tokens, priced at the
# dearer cache-write rate ($1.00 per 1M) -> 96 * 1.00 + 200 max output * 4.00 = 896 micro-dollars.
MAX_COST_NANOS = 896_000
MONTH_END = datetime(2026, 12, 1, tzinfo=UTC)


def flag(now: datetime) -> ReserveFlag:
    return ReserveFlag("tight", "month", AlertLevel.WARNING, ONE_USD, now + timedelta(hours=1))


def tight(gw: Gateway) -> HttpResponse:
    return gw.post("/v1/converse", converse_body(), key=TIGHT_KEY)


def test_max_input_tokens_rule_bounds_the_simulated_tokenizer() -> None:
    assert max_input_tokens(["abcd"], 1) == 4 + 8 + 64
    assert max_input_tokens(["é"], 2) == 2 + 16 + 64  # bytes, not characters


def test_max_cost_prices_input_at_the_dearer_of_input_and_cache_write() -> None:
    minute = int(datetime(2026, 11, 23, tzinfo=UTC).timestamp()) // 60
    rate = CachedPricer(PriceCatalog.load()).rate("claude-3-5-haiku", "", "", minute)
    assert rate_max_cost(rate, 96, 200) == MAX_COST_NANOS


def test_reserve_flag_from_the_consumer_makes_the_gateway_reserve_the_maximum_cost(gw: Gateway) -> None:
    # GIVEN the consumer put tenant "tight" ($1 month quota) into reserved admission
    gw.store.set_reserve_flag(flag(gw.clock[0]))
    # WHEN it calls
    response = tight(gw)
    # THEN the call went ahead against a reservation of its maximum cost, named in the event
    assert response.status == 200
    [event] = gw.sink.events
    assert event.reservation_id
    assert gw.store.outstanding_reservations("tight", gw.clock[0]) == {event.reservation_id: MAX_COST_NANOS}
    # AND the consumer settles it when it meters the event
    FakeConsumer(gw.store).meter(gw.sink.events, gw.clock[0])
    assert gw.store.outstanding_reservations("tight", gw.clock[0]) == {}


def test_the_gateway_enters_reserve_mode_on_its_own_view_at_the_warning_level(gw: Gateway) -> None:
    consumer = FakeConsumer(gw.store)
    consumer.add_cost("tight", ONE_USD // 2, gw.clock[0])  # 50%: notice, below the tier's reserve level
    tight(gw)
    consumer.add_cost("tight", ONE_USD * 35 // 100, gw.clock[0])  # 85%: warning, no flag from the consumer yet
    tight(gw)
    assert [bool(e.reservation_id) for e in gw.sink.events] == [False, True]


def test_a_fast_spender_enters_reserve_mode_before_metering_catches_up(gw: Gateway) -> None:
    # GIVEN tight ($1 hard month quota) metered at 79.9%, just under the reserve level, and a burst of calls that
    # metering has not counted yet (nothing is metered during the test)
    FakeConsumer(gw.store).add_cost("tight", ONE_USD * 799 // 1000, gw.clock[0])
    # WHEN calls keep coming within the unmetered window
    statuses = [tight(gw).status for _ in range(400)]
    # THEN the first go unreserved until the gate's own count reaches the reserve level, all later ones are
    # reserved, and what was admitted never exceeds the quota although nothing was metered (worst case: each
    # call spent its maximum)
    reserved = [bool(e.reservation_id) for e in gw.sink.events if e.outcome is Outcome.SUCCESS]
    admitted = statuses.count(200)
    assert reserved[:2] == [False, False] and all(reserved[2:]) and len(reserved) > 2
    assert ONE_USD * 799 // 1000 + admitted * MAX_COST_NANOS <= ONE_USD
    assert statuses[-1] == 429


def test_unreserved_admissions_stop_counting_once_metering_has_had_time(gw: Gateway) -> None:
    FakeConsumer(gw.store).add_cost("tight", ONE_USD * 799 // 1000, gw.clock[0])
    assert tight(gw).status == 200
    assert gw.app.gate.unmetered("tight") == MAX_COST_NANOS
    gw.ticker.value += 3.5  # past the unmetered window: metering is assumed to have counted it
    assert gw.app.gate.unmetered("tight") == 0
    tight(gw)
    assert [bool(e.reservation_id) for e in gw.sink.events] == [False, False]


def test_reservations_are_atomic_against_what_is_left(gw: Gateway) -> None:
    # GIVEN $0.002 left of tight's $1 quota: room for two maximum-cost reservations of $0.000896, not three
    FakeConsumer(gw.store).add_cost("tight", ONE_USD - 2_000_000, gw.clock[0])
    # WHEN three calls arrive before anything is metered
    statuses = [tight(gw).status for _ in range(3)]
    # THEN the third is refused by the store's atomic check, with a denied event and Retry-After to month end
    assert statuses == [200, 200, 429]
    assert [e.outcome for e in gw.sink.events] == [Outcome.SUCCESS, Outcome.SUCCESS, Outcome.DENIED]
    assert sum(gw.store.outstanding_reservations("tight", gw.clock[0]).values()) == 2 * MAX_COST_NANOS
    assert gw.model.calls == 2


def test_a_request_whose_maximum_cost_exceeds_what_is_left_is_denied_until_the_window_resets(gw: Gateway) -> None:
    FakeConsumer(gw.store).add_cost("tight", ONE_USD - 500_000, gw.clock[0])  # $0.0005 left < $0.000896
    response = tight(gw)
    assert response.status == 429
    error = body_of(response)["error"]
    assert "maximum cost exceeds what is left" in error["reason"]
    retry = int((MONTH_END - gw.clock[0]).total_seconds())
    assert error["retry_after_seconds"] == retry
    assert response.header("Retry-After") == str(retry)
    assert response.header("X-Quota-Remaining-USD") == "0.0005"
    # a smaller request still fits
    prompt = {"messages": [{"role": "user", "content": "hi"}], "parameters": {"max_tokens": 10}}
    small = gw.post("/v1/converse", converse_body(prompt=prompt), key=TIGHT_KEY)
    assert small.status == 200


def test_blocks_are_cached_for_at_most_the_configured_time(make_gateway: MakeGateway) -> None:
    gw = make_gateway(config=GatewayConfig(quota_cache_ms=1000, quota_refresh_ahead=False))
    assert gw.post("/v1/converse", converse_body()).status == 200  # caches acme's (empty) quota state
    gw.store.set_block(BlockRecord("acme", "month", "cut off", until=gw.clock[0] + timedelta(hours=1)))
    gw.ticker.value += 0.999
    assert gw.post("/v1/converse", converse_body()).status == 200  # still within the cache period
    gw.ticker.value += 0.001
    assert gw.post("/v1/converse", converse_body()).status == 429  # one second later the block is seen


def test_refresh_ahead_replaces_cached_state_in_the_background(make_gateway: MakeGateway) -> None:
    # GIVEN a long-running server's gateway with acme's (empty) quota state cached
    gw = make_gateway(config=GatewayConfig(quota_cache_ms=1000))
    assert gw.post("/v1/converse", converse_body()).status == 200
    gw.store.set_block(BlockRecord("acme", "month", "cut off", until=gw.clock[0] + timedelta(hours=1)))
    # WHEN a request arrives after half the age limit: it is served from the cache and starts a refresh
    gw.ticker.value += 0.6
    assert gw.post("/v1/converse", converse_body()).status == 200
    gw.app.gate.wait_for_refreshes()
    # THEN the next request sees the block before the old entry would have aged out
    assert gw.post("/v1/converse", converse_body()).status == 429


def test_a_failed_background_refresh_keeps_the_entry_until_it_ages_out(make_gateway: MakeGateway) -> None:
    gw = make_gateway(config=GatewayConfig(quota_cache_ms=1000))
    gw.store.set_block(BlockRecord("acme", "month", "cut off", until=gw.clock[0] + timedelta(hours=1)))
    assert gw.post("/v1/converse", converse_body()).status == 429
    gw.store.unavailable = True
    gw.ticker.value += 0.6
    assert gw.post("/v1/converse", converse_body()).status == 429  # starts a refresh, which fails
    gw.app.gate.wait_for_refreshes()
    assert gw.post("/v1/converse", converse_body()).status == 429  # the block is still honoured
    gw.ticker.value += 0.4
    assert gw.post("/v1/converse", converse_body()).status == 200  # aged out, unreadable: fails open


class ReserveFails(InMemoryStore):
    def reserve(self, tenant_id: str, reservation_id: str, amount_nanos: int, **kwargs: object) -> bool:
        raise StoreUnavailableError("redis went away")


def test_an_unreadable_store_fails_open_but_an_unreservable_one_fails_closed(make_gateway: MakeGateway) -> None:
    # GIVEN a store that cannot be read: the call is admitted (and still metered)
    down = InMemoryStore()
    down.unavailable = True
    gw = make_gateway(store=down)
    response = gw.post("/v1/converse", converse_body())
    assert response.status == 200
    assert [e.outcome for e in gw.sink.events] == [Outcome.SUCCESS]
    # GIVEN a tenant in reserve mode whose reservation cannot be taken: 503, denied event, no model call
    store = ReserveFails()
    gw = make_gateway(store=store)
    store.set_reserve_flag(flag(gw.clock[0]))
    response = tight(gw)
    assert response.status == 503
    assert body_of(response)["error"]["code"] == "quota_unavailable"
    assert [e.outcome for e in gw.sink.events] == [Outcome.DENIED]
    assert gw.model.calls == 0


def test_metering_off_skips_gate_events_and_pricing(make_gateway: MakeGateway) -> None:
    gw = make_gateway(config=GatewayConfig(metering=False))
    gw.store.set_block(BlockRecord("acme", "month", "cut off", until=gw.clock[0] + timedelta(hours=1)))
    response = gw.post("/v1/converse", converse_body())
    assert response.status == 200
    assert response.header("X-Usage-Input-Tokens") == "10"
    assert response.header("X-Usage-Cost-USD") is None
    assert gw.sink.events == []
