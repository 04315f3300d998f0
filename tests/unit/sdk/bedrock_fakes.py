"""Bedrock responses for tests, checked against botocore's own bedrock-runtime service model.

Non-streaming calls use botocore's Stubber, which validates each response against the model. Stubber cannot
produce an event stream (it wants the ``stream`` member as one dict), so streaming calls are served as real
``application/vnd.amazon.eventstream`` bytes from a ``before-send`` hook: botocore's own EventStream parser
turns them into events and raises EventStreamError for exception messages, exactly as with Bedrock. Each event
is first validated against its member shape in the service model, so a typo in a test fails the test.
"""

from __future__ import annotations

import base64
import json
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.awsrequest import AWSResponse
from botocore.validate import ParamValidator

REGION = "us-east-1"


def bedrock_client() -> Any:
    return boto3.session.Session().client(
        "bedrock-runtime", region_name=REGION, aws_access_key_id="test", aws_secret_access_key="test"
    )


def _event_shape(client: Any, operation: str, member: str) -> Any:
    output = client.meta.service_model.operation_model(operation).output_shape
    stream_member = "stream" if operation == "ConverseStream" else "body"
    return output.members[stream_member].members[member]


def validate_event(client: Any, operation: str, event: dict[str, Any]) -> None:
    """Raise if ``{member: payload}`` does not fit the operation's event-stream shape."""
    ((member, payload),) = event.items()
    shape = _event_shape(client, operation, member)
    report = ParamValidator().validate(payload, shape)
    if report.has_errors():
        raise AssertionError(f"{operation} event {member} does not fit the service model: {report.generate_report()}")


def _header(name: str, value: str) -> bytes:
    raw_name = name.encode()
    raw_value = value.encode()
    return struct.pack("!B", len(raw_name)) + raw_name + struct.pack("!BH", 7, len(raw_value)) + raw_value


def encode_message(headers: dict[str, str], payload: bytes) -> bytes:
    """One AWS event-stream message: prelude (lengths + CRC), string headers, payload, message CRC."""
    raw_headers = b"".join(_header(k, v) for k, v in headers.items())
    total = 12 + len(raw_headers) + len(payload) + 4
    prelude = struct.pack("!II", total, len(raw_headers))
    prelude += struct.pack("!I", zlib.crc32(prelude))
    message = prelude + raw_headers + payload
    return message + struct.pack("!I", zlib.crc32(message))


def event_message(member: str, payload: dict[str, Any]) -> bytes:
    return encode_message(
        {":event-type": member, ":content-type": "application/json", ":message-type": "event"},
        json.dumps(payload).encode(),
    )


def exception_message(error_type: str, message: str) -> bytes:
    return encode_message(
        {":exception-type": error_type, ":content-type": "application/json", ":message-type": "exception"},
        json.dumps({"message": message}).encode(),
    )


@dataclass
class FakeRaw:
    """The raw HTTP body botocore's EventStream reads: ``stream()`` yields chunks; it can break mid-way."""

    chunks: list[bytes]
    fail_with: Exception | None = None
    closed: bool = False
    read_chunks: int = field(default=0)

    def stream(self, *_: Any, **__: Any) -> Iterator[bytes]:
        for chunk in self.chunks:
            if self.closed:
                return
            self.read_chunks += 1
            yield chunk
        if self.fail_with is not None:
            raise self.fail_with

    def close(self) -> None:
        self.closed = True


@dataclass
class StreamServer:
    """Serves the next streaming call of ``operation`` with ``events`` (validated) as event-stream bytes."""

    client: Any
    operation: str
    events: list[dict[str, Any]]
    error: tuple[str, str] | None = None  # an exception message after the events: (type, message)
    fail_with: Exception | None = None  # the connection breaks after the events
    request_id: str = "req-stream-1"
    requests: list[Any] = field(default_factory=list)
    raw: FakeRaw | None = None

    def __post_init__(self) -> None:
        for event in self.events:
            validate_event(self.client, self.operation, event)
        name = f"before-send.bedrock-runtime.{self.operation}"
        self.client.meta.events.register(name, self._send)

    def _send(self, request: Any, **_: Any) -> AWSResponse | None:
        if self.requests:  # single use: let the next server registered on this client answer
            return None
        self.requests.append(request)
        chunks = [event_message(member, payload) for e in self.events for member, payload in e.items()]
        if self.error is not None:
            chunks.append(exception_message(*self.error))
        self.raw = FakeRaw(chunks, self.fail_with)
        headers = {"x-amzn-requestid": self.request_id, "content-type": "application/vnd.amazon.eventstream"}
        return AWSResponse(request.url, 200, headers, self.raw)

    def request_body(self) -> dict[str, Any]:
        body: dict[str, Any] = json.loads(self.requests[-1].body)
        return body


def converse_stream_events(text_parts: list[str], usage: dict[str, int] | None) -> list[dict[str, Any]]:
    # A text block has no contentBlockStart (Bedrock sends one only for tool use).
    events: list[dict[str, Any]] = [{"messageStart": {"role": "assistant"}}]
    events += [{"contentBlockDelta": {"contentBlockIndex": 0, "delta": {"text": part}}} for part in text_parts]
    events += [{"contentBlockStop": {"contentBlockIndex": 0}}, {"messageStop": {"stopReason": "end_turn"}}]
    if usage is not None:
        total = sum(usage.values())
        events.append({"metadata": {"usage": {**usage, "totalTokens": total}, "metrics": {"latencyMs": 321}}})
    return events


def invoke_chunk(payload: dict[str, Any]) -> dict[str, Any]:
    """An InvokeModelWithResponseStream ``chunk`` event (bytes are base64 in the JSON payload on the wire)."""
    return {"chunk": {"bytes": base64.b64encode(json.dumps(payload).encode()).decode()}}
