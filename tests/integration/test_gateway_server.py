"""The local HTTP server over real loopback sockets: keep-alive, JSON errors, chunked server-sent events,
oversized bodies refused before they are read, and a client that hangs up mid-stream still metered once."""

from __future__ import annotations

import http.client
import json
import socket
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from producers.gateway.app import GatewayConfig, build_app
from producers.gateway.backends.simulated import SimulatedModel
from producers.gateway.models import ModelCall, ModelReply, StreamEnd, StreamPart, TextDelta
from producers.gateway.server import REQUEST_SWITCH_INTERVAL_S, LocalServer, start_local_server
from shared.adapters.memory_store import InMemoryStore
from shared.pricing import TokenUsage
from shared.schema import Outcome
from tests.unit.gateway.support import ACME_KEY, GLOBEX_KEY, NOW, LockedSink, converse_body, registry

pytestmark = pytest.mark.integration

AUTH = {"Authorization": f"Bearer {ACME_KEY}", "Content-Type": "application/json"}


@pytest.fixture
def sink() -> LockedSink:
    return LockedSink()


@pytest.fixture
def server(sink: LockedSink) -> Iterator[LocalServer]:
    store = InMemoryStore()
    app = build_app(
        tenants=registry(),
        quota_state=store,
        usage_reader=store,
        sink=sink,
        backend=SimulatedModel(output_tokens=400),
        clock=lambda: NOW,
        config=GatewayConfig(max_body_bytes=64 * 1024),
    )
    srv = start_local_server(app)
    yield srv
    srv.shutdown()


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.01)


def test_keep_alive_serves_many_requests_on_one_connection(server: LocalServer, sink: LockedSink) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    for _ in range(5):
        conn.request("POST", "/v1/converse", json.dumps(converse_body()), AUTH)
        response = conn.getresponse()
        body = json.loads(response.read())
        assert response.status == 200
        assert response.getheader("X-Usage-Output-Tokens") == "200"
        assert body["usage"]["output_tokens"] == 200
    sock = conn.sock
    conn.request("GET", "/v1/usage", headers=AUTH)
    usage = conn.getresponse()
    assert usage.status == 200
    json.loads(usage.read())
    assert conn.sock is sock  # the same TCP connection throughout
    conn.close()
    assert len(sink.events) == 5
    assert server.url == f"http://127.0.0.1:{server.port}"


def test_serving_lowers_the_thread_switch_interval_and_never_raises_it(server: LocalServer) -> None:
    # The server fixture started one: a background thread can hold up a request for at most this long.
    assert sys.getswitchinterval() <= REQUEST_SWITCH_INTERVAL_S
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.0001)
        extra = start_local_server(server.app)
        extra.shutdown()
        assert sys.getswitchinterval() == pytest.approx(0.0001)
    finally:
        sys.setswitchinterval(before)


def test_errors_are_json_over_the_wire(server: LocalServer) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("POST", "/v1/converse", b"{oops", AUTH)
    bad = conn.getresponse()
    assert bad.status == 400
    assert json.loads(bad.read())["error"]["param"] == "body"
    conn.request("POST", "/v1/converse", json.dumps(converse_body()), {"Content-Type": "application/json"})
    unauthorised = conn.getresponse()
    assert unauthorised.status == 401
    assert unauthorised.getheader("Content-Type") == "application/json"
    unauthorised.read()
    conn.close()


def test_an_oversized_body_is_refused_before_it_is_read(server: LocalServer) -> None:
    # GIVEN a client announcing 10 MiB but sending only the headers
    with socket.create_connection(("127.0.0.1", server.port), timeout=5) as sock:
        sock.sendall(
            b"POST /v1/converse HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + ACME_KEY.encode() + b"\r\nContent-Length: 10485760\r\n\r\n"
        )
        # THEN the answer is 413 at once, and the server closes the connection
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413")
    assert b"Connection: close" in head
    assert json.loads(body)["error"]["code"] == "body_too_large"


def read_sse(response: http.client.HTTPResponse) -> list[Any]:
    events: list[Any] = []
    buffer = b""
    while chunk := response.read1(65536):
        buffer += chunk
        while b"\n\n" in buffer:
            line, buffer = buffer.split(b"\n\n", 1)
            payload = line.decode().removeprefix("data: ")
            events.append(payload if payload == "[DONE]" else json.loads(payload))
    return events


def test_streamed_chat_arrives_as_chunked_server_sent_events(server: LocalServer, sink: LockedSink) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    body = {
        "model": "nova-micro",
        "messages": [{"role": "user", "content": "Stream me something."}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    conn.request("POST", "/v1/chat/completions", json.dumps(body), AUTH)
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Transfer-Encoding") == "chunked"
    assert response.getheader("Content-Type") == "text/event-stream"
    events = read_sse(response)
    assert events[-1] == "[DONE]"
    assert events[-2]["usage"]["completion_tokens"] == 400
    # the connection is still usable after a chunked answer
    conn.request("POST", "/v1/converse", json.dumps(converse_body()), AUTH)
    assert conn.getresponse().status == 200
    conn.close()
    assert [e.output_tokens for e in sink.events] == [400, 200]


class SlowStream:
    """Streams 200 one-word deltas, 2 ms apart, then reports 200 output tokens."""

    def __init__(self) -> None:
        self.finished = threading.Event()

    def converse(self, call: ModelCall) -> ModelReply:
        raise NotImplementedError

    def converse_stream(self, call: ModelCall) -> Iterator[StreamPart]:
        for _ in range(200):
            time.sleep(0.002)
            yield TextDelta("word ")
        self.finished.set()
        yield StreamEnd("end_turn", TokenUsage(input_tokens=9, output_tokens=200))


def test_a_client_hanging_up_mid_stream_is_metered_once_with_the_backend_usage(sink: LockedSink) -> None:
    # GIVEN a slow stream and a client that reads the first bytes and hangs up
    store = InMemoryStore()
    backend = SlowStream()
    app = build_app(tenants=registry(), quota_state=store, usage_reader=store, sink=sink, backend=backend)
    srv = start_local_server(app)
    try:
        conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
        body = {"model": "nova-micro", "messages": [{"role": "user", "content": "Stream."}], "stream": True}
        conn.request("POST", "/v1/chat/completions", json.dumps(body), AUTH)
        response = conn.getresponse()
        response.read1(64)
        conn.sock.shutdown(socket.SHUT_RDWR)  # type: ignore[union-attr]
        conn.close()
        # THEN the server notices, drains the backend stream, and meters the call once with its real usage
        wait_for(lambda: len(sink.events) >= 1)
        assert backend.finished.is_set()
        [event] = sink.events
        assert (event.outcome, event.input_tokens, event.output_tokens, event.estimated_by) == (
            Outcome.SUCCESS,
            9,
            200,
            "",
        )
    finally:
        srv.shutdown()


def test_concurrent_clients_each_get_their_own_tenant(server: LocalServer, sink: LockedSink) -> None:
    def call(i: int) -> str:
        key = ACME_KEY if i % 2 else GLOBEX_KEY
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
        conn.request("POST", "/v1/converse", json.dumps(converse_body()), {**AUTH, "Authorization": f"Bearer {key}"})
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.getheader("X-Request-Id") or ""

    with ThreadPoolExecutor(16) as pool:
        ids = list(pool.map(call, range(64)))
    by_request = {e.request_id: e.tenant_id for e in sink.events}
    assert len(by_request) == 64
    assert [by_request[rid] for rid in ids] == ["acme" if i % 2 else "globex" for i in range(64)]


def test_shutdown_closes_idle_keep_alive_connections(sink: LockedSink) -> None:
    store = InMemoryStore()
    app = build_app(tenants=registry(), quota_state=store, usage_reader=store, sink=sink, backend=SimulatedModel())
    srv = start_local_server(app)
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=5)
    conn.request("GET", "/healthz")
    assert conn.getresponse().read() == b'{"status":"ok"}'
    done = threading.Event()
    threading.Thread(target=lambda: (srv.shutdown(), done.set()), daemon=True).start()
    assert done.wait(5)

    def again() -> bytes:
        conn.request("GET", "/healthz")
        return conn.getresponse().read()

    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        again()
