"""`meter quarantine` building blocks with fakes: reading quarantine documents, and PutRecords' partial failures."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from typing import Any

import pytest

from shared.adapters.quarantine import record_document
from shared.ports import QuarantinedRecord
from tenantmeter_cli.quarantine import PUT_ATTEMPTS, PUT_RECORDS, Held, Unreadable, read_document, replay


def document(data: bytes = b'{"v": 1}', **changes: Any) -> str:
    record = QuarantinedRecord(data, "unknown_tenant", "shardId-000000000001", "4965", None, "acme")
    return json.dumps({**record_document(record), **changes})


def test_a_document_reads_back_whole() -> None:
    held = read_document(document(), ref="k", handle="h")
    assert (held.data, held.reason, held.partition_key, held.sequence_number) == (
        b'{"v": 1}',
        "unknown_tenant",
        "acme",
        "4965",
    )
    assert held.problem == ""


@pytest.mark.parametrize(
    ("body", "names"),
    [
        ("{", "not JSON"),
        ("[1]", "not a JSON object"),
        (json.dumps({"reason": "x", "sha256": "y", "length": 1}), "data_base64 is missing"),
        (document(length=None), "length is missing"),
        (document(data_base64="@@@"), "not base64"),
    ],
)
def test_anything_else_is_refused_naming_what_is_wrong(body: str, names: str) -> None:
    with pytest.raises(ValueError, match=names):
        read_document(body, ref="k", handle="h")


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"truncated": True}, "truncated copy"),
        ({"sha256": hashlib.sha256(b"other").hexdigest()}, "do not match"),
        ({"partition_key": ""}, "no partition key"),
    ],
)
def test_a_record_that_cannot_be_rebuilt_is_read_but_not_replayable(changes: dict[str, Any], problem: str) -> None:
    held = read_document(document(**changes), ref="k", handle="h")
    assert held.data is None and problem in held.problem


class ListSource:
    def __init__(self, items: list[Held | Unreadable]) -> None:
        self.items = items
        self.removed: list[str] = []
        self.closed = False

    def records(self, reasons: frozenset[str] | None, limit: int, *, hold_s: int) -> Iterator[Held | Unreadable]:
        yield from [i for i in self.items if isinstance(i, Unreadable) or reasons is None or i.reason in reasons][
            :limit
        ]

    def remove(self, held: Held) -> None:
        self.removed.append(held.ref)

    def close(self) -> None:
        self.closed = True


class FlakyKinesis:
    """Refuses the named partition keys ``refusals`` times each (as Kinesis does under throttling)."""

    def __init__(self, refuse: dict[str, int]) -> None:
        self.refuse = dict(refuse)
        self.calls: list[list[dict[str, Any]]] = []

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Records)
        out = []
        for r in Records:
            if self.refuse.get(r["PartitionKey"], 0) > 0:
                self.refuse[r["PartitionKey"]] -= 1
                out.append({"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow down"})
            else:
                out.append({"SequenceNumber": "1", "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum(1 for o in out if "ErrorCode" in o), "Records": out}


def held(n: int, key: str = "acme", size: int = 10) -> Held:
    data = b"x" * size
    body = json.dumps(
        {
            "reason": "unknown_tenant",
            "data_base64": base64.b64encode(data).decode(),
            "length": size,
            "sha256": hashlib.sha256(data).hexdigest(),
            "partition_key": key,
        }
    )
    return read_document(body, ref=f"r{n}", handle=f"h{n}")


def test_refused_entries_are_resent_and_only_accepted_ones_removed() -> None:
    source = ListSource([held(1, "a"), held(2, "b"), held(3, "c")])
    kinesis = FlakyKinesis({"b": 2, "c": PUT_ATTEMPTS})
    report = replay(source, kinesis, "s", frozenset({"unknown_tenant"}), limit=10, sleep=lambda s: None)  # type: ignore[arg-type]
    assert source.removed == ["r1", "r2"] and [h.ref for h in report.replayed] == ["r1", "r2"]
    (left,) = report.left
    assert left[0] == "r3" and "ProvisionedThroughputExceededException" in left[1]
    assert [len(c) for c in kinesis.calls] == [3, 2, 2, 1, 1] and source.closed and not report.ok


def test_calls_stay_within_500_records_and_5_mib() -> None:
    items: list[Held | Unreadable] = [held(n) for n in range(PUT_RECORDS + 20)]
    items += [held(1000 + n, size=1024 * 1024) for n in range(6)]
    kinesis = FlakyKinesis({})
    report = replay(ListSource(items), kinesis, "s", frozenset({"unknown_tenant"}), limit=10_000)  # type: ignore[arg-type]
    assert len(report.replayed) == len(items)
    assert all(len(c) <= PUT_RECORDS for c in kinesis.calls)
    assert all(sum(len(r["Data"]) + len(r["PartitionKey"]) for r in c) <= 5 * 1024 * 1024 for c in kinesis.calls)
    assert sum(len(c) for c in kinesis.calls) == len(items)


def test_a_dry_run_puts_and_removes_nothing() -> None:
    source = ListSource([held(1), Unreadable("junk", "not JSON")])
    report = replay(source, None, "s", frozenset({"unknown_tenant"}), limit=10)
    assert [h.ref for h in report.replayed] == ["r1"] and source.removed == []
    assert report.left == [("junk", "not a quarantine document: not JSON")] and report.dry_run


def test_a_record_put_back_but_not_removed_is_reported_not_counted() -> None:
    class StuckSource(ListSource):
        def remove(self, held: Held) -> None:
            raise RuntimeError("ReceiptHandleIsInvalid")

    report = replay(StuckSource([held(1)]), FlakyKinesis({}), "s", frozenset({"unknown_tenant"}), limit=10)  # type: ignore[arg-type]
    assert report.replayed == [] and report.left == [
        ("r1", "put back on the stream but not removed from the quarantine: ReceiptHandleIsInvalid")
    ]
