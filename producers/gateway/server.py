"""The local HTTP server: the gateway application over the standard library's ThreadingHTTPServer.

Used by the demo, the integration tests and the benchmark. HTTP/1.1 with keep-alive, one thread per
connection, Nagle off and each plain response written in one send (so a small answer never waits for a
delayed ACK). Streamed answers go out with chunked transfer encoding. The server starts only when
``start_local_server`` is called and serves from a background thread until ``shutdown()``.

The standard library suffices for the gateway's targets (see bench/gateway.py); it is a thin translation
layer, all behaviour lives in ``GatewayApp.handle``.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import sys
import threading
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from producers.gateway.app import GatewayApp
from producers.gateway.protocol import ApiError, HttpRequest, HttpResponse

logger = logging.getLogger(__name__)

IDLE_TIMEOUT_SECONDS = 30.0
# How long a thread may keep the interpreter lock while another waits for it. CPython's default (5 ms) lets the
# usage producer's sender thread, which encodes and aggregates events in bursts, hold up a request thread for
# up to 5 ms; at 0.5 ms a request waits at most that long for it (measured: bench/gateway.py, added p99).
REQUEST_SWITCH_INTERVAL_S = 0.0005
SHUTDOWN_POLL_SECONDS = 0.05  # how soon serve_forever notices shutdown()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], app: GatewayApp) -> None:
        self.app = app
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        with self._open_lock:
            sockets = list(self._open)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = IDLE_TIMEOUT_SECONDS
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """No access log: it would be one line per request on the hot path."""

    def _serve(self) -> None:
        app = self.server.app
        if self.headers.get("Transfer-Encoding"):
            self.close_connection = True
            self._write(ApiError(411, "length_required", "send the body with Content-Length").to_response())
            return
        try:
            length = int(self.headers.get("Content-Length") or 0)
            if length < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._write(ApiError(400, "invalid_request", "bad Content-Length", field="Content-Length").to_response())
            return
        if length > app.config.max_body_bytes:
            # Do not read an oversized body: answer and drop the connection.
            self.close_connection = True
            self._write(app.too_large().to_response())
            return
        body = self.rfile.read(length) if length else b""
        headers = {key.lower(): value for key, value in self.headers.items()}
        request = HttpRequest(self.command, urlsplit(self.path).path, headers, body)
        self._write(app.handle(request))

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def _head(self, response: HttpResponse, extra: list[tuple[str, str]]) -> bytes:
        lines = [f"{key}: {value}" for key, value in (*response.headers, *extra)]
        if self.close_connection:
            lines.append("Connection: close")
        return _status_line(response.status) + ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _write(self, response: HttpResponse) -> None:
        if response.stream is None:
            head = self._head(response, [("Content-Length", str(len(response.body)))])
            self.wfile.write(head + response.body)
            return
        stream = response.stream
        try:
            self.wfile.write(self._head(response, [("Transfer-Encoding", "chunked")]))
            for chunk in stream:
                if chunk:
                    self.wfile.write(b"%X\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
        except OSError:
            self.close_connection = True  # the client left; the stream's close() still meters the call
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                close()


@dataclass(frozen=True, slots=True)
class LocalServer:
    """A running local gateway; ``shutdown()`` stops it and closes open connections."""

    host: str
    port: int
    app: GatewayApp
    _server: _Server
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def shutdown(self) -> None:
        self._server.shutdown()
        self._server.close_connections()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.app.flush_metrics()


def start_local_server(
    app: GatewayApp,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    switch_interval_s: float | None = REQUEST_SWITCH_INTERVAL_S,
) -> LocalServer:
    """Serve ``app`` on ``host:port`` (0 picks a free port) from a background thread. Lowers the interpreter's
    thread switch interval to ``switch_interval_s`` (process-wide, never raised; None leaves it) so background
    threads of the process cannot keep the lock from a request for long."""
    if switch_interval_s is not None and sys.getswitchinterval() > switch_interval_s:
        sys.setswitchinterval(switch_interval_s)
    server = _Server((host, port), app)
    thread = threading.Thread(
        target=server.serve_forever,
        kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS},
        name=f"gateway-{server.server_address[1]}",
        daemon=True,
    )
    thread.start()
    return LocalServer(host, int(server.server_address[1]), app, server, thread)
