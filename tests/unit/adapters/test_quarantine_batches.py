"""SQS quarantine batches respect SendMessageBatch's limits: 10 entries AND 256 KiB in all."""

from __future__ import annotations

import json
from typing import Any

from shared.adapters.quarantine import SQS_BATCH_BYTES, SqsQuarantine
from shared.ports import QuarantinedRecord


class RecordingSqs:
    def __init__(self) -> None:
        self.batches: list[list[dict[str, Any]]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.batches.append(Entries)
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_large_bad_records_are_split_by_total_size_and_all_sent() -> None:
    # GIVEN three 150 KB garbage records (each ~200 KB once base64-encoded) and 25 tiny ones
    big = [QuarantinedRecord(b"\xff" * 150_000, "not_json", "shardId-0", str(i)) for i in range(3)]
    small = [QuarantinedRecord(b"{", "not_json", "shardId-0", str(100 + i)) for i in range(25)]
    sqs = RecordingSqs()
    # WHEN they are quarantined
    SqsQuarantine("https://sqs/q", client=sqs).quarantine([*big, *small])  # type: ignore[arg-type]
    # THEN no batch exceeds 10 entries or the batch byte limit, and every record was sent exactly once
    for batch in sqs.batches:
        assert len(batch) <= 10
        assert sum(len(e["MessageBody"].encode()) for e in batch) <= SQS_BATCH_BYTES
    sent = [json.loads(e["MessageBody"])["sequence_number"] for batch in sqs.batches for e in batch]
    assert sorted(sent, key=int) == [str(i) for i in range(3)] + [str(100 + i) for i in range(25)]
