"""Fakes at the consumer's ports: they record what they were given and can be told to fail."""

from __future__ import annotations

from collections.abc import Sequence

from shared.ports import AlertMessage, QuarantinedRecord


class FakeAlerts:
    def __init__(self) -> None:
        self.sent: list[AlertMessage] = []
        self.fail_times = 0

    def publish(self, alert: AlertMessage) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("SNS unreachable")
        self.sent.append(alert)


class FakeQuarantine:
    def __init__(self) -> None:
        self.records: list[QuarantinedRecord] = []
        self.fail_times = 0

    def quarantine(self, records: Sequence[QuarantinedRecord]) -> None:
        if self.fail_times:
            self.fail_times -= 1
            raise ConnectionError("SQS unreachable")
        self.records.extend(records)

    @property
    def reasons(self) -> list[str]:
        return [r.reason for r in self.records]
