"""SNS publish failing, and the consumer failing around its alert marks: every alert must reach its SNS->SQS
subscription exactly once; while publishing fails the batch is retried (or, once the mapping gives up, the
failure destination records it for a replay that fires the alert then).

The intended design (consumers/metering/service.py): a level is published once per period by raising an alert
mark atomically in the store and acting only when the mark rose; if an action fails, the marks just raised are
restored and the tenant's records reported failed, so the redelivery evaluates again.

The tenant ``acme`` has a hard quota of 4 requests a month (requests are never projected, so each level crossed
gives exactly one quota alert): 2 requests -> notice (info topic), 4 -> exhausted (critical topic, block).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
import redis
from botocore.exceptions import ClientError

from consumers.metering.handler import lambda_handler
from shared.ports import AlertMark, Totals
from shared.schema import UsageEvent
from tests.fault.oracle import expected_totals
from tests.fault.support import (
    Stack,
    StorePortWrapper,
    away_from_midnight,
    bulk_registry,
    make_events,
    tiny_tier,
    topic_with_queue,
)

pytestmark = pytest.mark.fault

ACME, BYSTANDER = "acme", "bystander"


class FailingSns:
    """The real (moto) SNS client, except that ``publish`` raises, before anything reaches SNS, whenever
    ``fails(call number, kwargs)`` says so."""

    def __init__(self, real: Any, fails: Callable[[int, dict[str, Any]], bool]) -> None:
        self.real = real
        self.fails = fails
        self.calls = 0
        self.failures = 0

    def publish(self, **kwargs: Any) -> Any:
        self.calls += 1
        if self.fails(self.calls, kwargs):
            self.failures += 1
            raise ClientError({"Error": {"Code": "InternalError", "Message": "Internal error"}}, "Publish")
        return self.real.publish(**kwargs)


def setup(stack: Stack, acme_requests: int, *, day_too: bool = False, contact: bool = False) -> list[UsageEvent]:
    """Register acme (tiny tier) and a bystander; put acme's events, interleaved with the bystander's, on the
    stream as plain records. Returns every event written."""
    at = away_from_midnight()
    extra = ""
    if contact:
        arn, url = topic_with_queue(stack.client, "acme-usage")
        stack.resources.topic_arns["acme-contact"], stack.resources.feed_queues["acme-contact"] = arn, url
        extra = f'contact_topic_arn = "{arn}"\n'
    stack.use_tenants(
        tiny_tier(4, day_too=day_too, notify_tenant_at_notice=contact)
        + bulk_registry([BYSTANDER])
        + f'\n[[tenants]]\nid = "{ACME}"\ntier = "tiny"\n{extra}'
    )
    rng = random.Random(51)
    acme = [e for e in make_events(rng, [ACME], 3 * acme_requests, at) if e.outcome.value == "success"]
    acme = acme[:acme_requests]
    bystander = make_events(rng, [BYSTANDER], acme_requests + 1, at)
    events = [e for pair in zip(bystander, acme, strict=False) for e in pair] + bystander[len(acme) :]
    stack.put_events(events)
    return events


def published(stack: Stack, *feeds: str) -> Counter[tuple[str, str, str, str]]:
    """(feed, tenant, window, level) -> how many messages the SQS subscriptions received."""
    out: Counter[tuple[str, str, str, str]] = Counter()
    for feed in feeds:
        for body in stack.feed(feed):
            out[(feed, body["tenant_id"], body["window"], body["level"])] += 1
    return out


def assert_totals(stack: Stack, events: list[UsageEvent]) -> None:
    want = expected_totals(events)
    at = events[0].occurred_at
    assert stack.totals([ACME, BYSTANDER], at) == {t: want.get(t, Totals()) for t in (ACME, BYSTANDER)}


def test_sns_failing_a_few_times_delays_the_alert_and_sends_it_once(stack: Stack) -> None:
    # GIVEN acme reaching its notice level, and SNS refusing the first three publishes
    events = setup(stack, acme_requests=2)
    sns = FailingSns(stack.client("sns"), lambda n, _: n <= 3)
    stack.cold_start(sns_client=sns)
    runner = stack.runner(max_retry_attempts=5)

    # WHEN the mapping delivers the batch
    runner.drain()

    # THEN while SNS failed, the batch was reported failed and redelivered; then the notice arrived once
    assert sns.failures == 3 and runner.stats.partial_failures == 3
    assert published(stack, "info", "warning", "critical") == {("info", ACME, "month", "notice"): 1}
    assert runner.stats.sent_to_failure_destination == 0
    # AND usage was counted once, whatever the redeliveries
    assert_totals(stack, events)


def test_sns_down_beyond_the_retry_budget_keeps_the_alert_for_a_replay_of_the_failure_destination(
    stack: Stack,
) -> None:
    # GIVEN SNS refusing every publish for longer than the mapping's retry budget
    events = setup(stack, acme_requests=2)
    sns = FailingSns(stack.client("sns"), lambda n, _: n <= 3)
    stack.cold_start(sns_client=sns)
    runner = stack.runner(max_retry_attempts=2)

    # WHEN the mapping gives up on the batch
    runner.drain()

    # THEN no alert went out, the usage is counted once, and the failure destination names the batch
    assert published(stack, "info", "warning", "critical") == {}
    assert_totals(stack, events)
    skipped = stack.failure_batches()
    # (from acme's first record on: the mapping checkpointed before the lowest failed record)
    assert len(skipped) == 1 and skipped[0]["KinesisBatchInfo"]["batchSize"] >= sum(e.tenant_id == ACME for e in events)
    # WHEN an operator replays the recorded range (SNS healthy again)
    responses = stack.replay(skipped)
    # THEN the notice arrives, once, and nothing is counted twice
    assert responses == [{"batchItemFailures": []}]
    assert published(stack, "info", "warning", "critical") == {("info", ACME, "month", "notice"): 1}
    assert_totals(stack, events)


def test_an_alert_to_two_topics_whose_second_publish_fails_is_not_sent_twice_to_the_first(stack: Stack) -> None:
    # GIVEN acme's notice goes to the info topic and to acme's own contact topic, and the publish to the
    # contact topic fails once (after the info topic got it)
    events = setup(stack, acme_requests=2, contact=True)
    acme_topic = stack.resources.topic_arns["acme-contact"]
    sns = FailingSns(stack.client("sns"), lambda n, kw: kw["TopicArn"] == acme_topic and n <= 2)
    stack.cold_start(sns_client=sns)
    runner = stack.runner(max_retry_attempts=5)

    # WHEN the batch is delivered (and redelivered after the failure)
    runner.drain()

    # THEN each subscription heard the notice exactly once
    assert sns.failures == 1
    assert_totals(stack, events)
    assert published(stack, "info", "acme-contact") == {
        ("info", ACME, "month", "notice"): 1,
        ("acme-contact", ACME, "month", "notice"): 1,
    }, "the redelivery re-published to the topic that had already received the alert"


def test_two_alerts_in_one_batch_the_second_failing_does_not_resend_the_first(stack: Stack) -> None:
    # GIVEN acme crosses notice on its monthly and its daily request quota in the same batch, and the publish of
    # the daily one fails once (after the monthly one went out)
    events = setup(stack, acme_requests=2, day_too=True)
    sns = FailingSns(stack.client("sns"), lambda n, kw: '"window":"day"' in kw["Message"] and n <= 2)
    stack.cold_start(sns_client=sns)
    runner = stack.runner(max_retry_attempts=5)

    # WHEN the batch is delivered (and redelivered after the failure)
    runner.drain()

    # THEN each alert arrived exactly once
    assert sns.failures == 1
    assert_totals(stack, events)
    assert published(stack, "info") == {
        ("info", ACME, "month", "notice"): 1,
        ("info", ACME, "day", "notice"): 1,
    }, "restoring every mark of the tenant after one failed publish re-sends the alerts already published"


class LostReplyOnMarks(StorePortWrapper):
    """The store port: ``raise_marks`` runs in Redis, then the connection drops before the reply arrives (a
    failover, a network blip, a socket timeout): the consumer sees an error, the marks stay raised."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.lost = 0

    def raise_marks(self, marks: list[AlertMark]) -> list[int]:
        levels: list[int] = self.inner.raise_marks(marks)
        if self.lost == 0:
            self.lost += 1
            raise redis.ConnectionError("Connection closed by server.")
        return levels


def test_a_lost_reply_to_raising_the_alert_marks_does_not_lose_the_alert_or_the_block(stack: Stack) -> None:
    # GIVEN acme exhausting its hard quota in one batch (a critical alert and a block are due), and the reply to
    # the consumer's raise_marks lost once after Redis applied it
    events = setup(stack, acme_requests=4)
    wrappers: list[LostReplyOnMarks] = []

    def losing_replies(store: Any) -> LostReplyOnMarks:
        wrappers.append(LostReplyOnMarks(store))
        return wrappers[-1]

    stack.cold_start(store_wrapper=losing_replies)
    runner = stack.runner(max_retry_attempts=5)

    # WHEN the batch is delivered (and redelivered after the error)
    runner.drain()

    # THEN usage counts once, the exhaustion is announced once, and acme is blocked
    assert wrappers[0].lost == 1 and runner.stats.partial_failures >= 1
    assert_totals(stack, events)
    assert published(stack, "critical") == {("critical", ACME, "month", "exhausted"): 1}, (
        "the alert was lost: the redelivery found the mark already raised and took it as already acted on"
    )
    assert [b.window for b in stack.quota_status(ACME).blocks] == ["month"]


class Killed(BaseException):
    """The process dies here: nothing after this point runs and no ``except Exception`` handler sees it."""


def test_the_consumer_killed_between_raising_the_mark_and_publishing_still_sends_the_alert_once(
    stack: Stack,
) -> None:
    # GIVEN acme reaching notice, and the Lambda container dying (timeout, out of memory) just as it is about to
    # publish the alert, after the mark was raised
    events = setup(stack, acme_requests=2)
    sns = FailingSns(stack.client("sns"), lambda n, _: False)
    real_publish = sns.publish
    deaths: list[datetime] = []

    def dying_publish(**kwargs: Any) -> Any:
        if not deaths:
            deaths.append(datetime.now(UTC))
            raise Killed
        return real_publish(**kwargs)

    sns.publish = dying_publish  # type: ignore[method-assign]
    stack.cold_start(sns_client=sns)

    def mortal(event: dict[str, Any], context: Any) -> Any:
        try:
            return lambda_handler(event, context)
        except Killed:
            stack.cold_start(sns_client=stack.client("sns"))  # the next invocation: a fresh container
            raise RuntimeError("Runtime exited with error: signal: killed") from None

    runner = stack.runner(mortal, max_retry_attempts=5)

    # WHEN the mapping retries the failed invocation
    runner.drain()

    # THEN the notice is published exactly once
    assert len(deaths) == 1 and runner.stats.errors == 1
    assert_totals(stack, events)
    assert published(stack, "info", "warning", "critical") == {("info", ACME, "month", "notice"): 1}, (
        "the alert was lost: the mark raised by the killed invocation made the redelivery skip it"
    )
