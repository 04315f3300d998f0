"""A simulated Amazon Bedrock runtime endpoint speaking the real Converse wire protocol over HTTP.

Pointing a real boto3 ``bedrock-runtime`` client at it (``endpoint_url``) exercises the SDK instrumentation
end to end, through botocore's own serializers and parsers. Token counts are deterministic from the request:
input = ceil(characters / 4) of the message text (+ system), output = a pseudo-random share of maxTokens
seeded by the text. ``throttle_rate`` answers that share of calls with a ThrottlingException (HTTP 429).
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import threading
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote


def simulated_usage(text: str, max_tokens: int) -> tuple[int, int]:
    """(input_tokens, output_tokens) for a prompt: deterministic, so tests and the ledger can predict them."""
    input_tokens = max(1, math.ceil(len(text) / 4))
    seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big")
    output_tokens = max(1, (seed % max(1, max_tokens)) // 2 + max_tokens // 4)
    return input_tokens, min(output_tokens, max_tokens)


class _Handler(BaseHTTPRequestHandler):
    server: FakeBedrockServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return  # quiet: never log request bodies (prompts)

    def _send(self, status: int, body: dict[str, Any], error_type: str = "") -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
        if error_type:
            self.send_header("x-amzn-ErrorType", error_type)
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        raw = self.rfile.read(length)
        parts = self.path.split("/")
        if len(parts) != 4 or parts[1] != "model" or parts[3] != "converse":
            self._send(404, {"message": f"unsupported operation {self.path}"}, "UnknownOperationException")
            return
        model_id = unquote(parts[2])
        try:
            request = json.loads(raw or b"{}")
        except ValueError:
            self._send(400, {"message": "malformed JSON"}, "ValidationException")
            return
        if self.server.should_throttle():
            self._send(429, {"message": "Too many requests, please wait before trying again."}, "ThrottlingException")
            return
        texts = [
            block.get("text", "")
            for message in request.get("messages", [])
            for block in message.get("content", [])
            if isinstance(block, dict)
        ]
        texts += [block.get("text", "") for block in request.get("system", []) if isinstance(block, dict)]
        max_tokens = int(request.get("inferenceConfig", {}).get("maxTokens", 256))
        input_tokens, output_tokens = simulated_usage("".join(texts), max_tokens)
        self.server.calls += 1
        self._send(
            200,
            {
                "output": {"message": {"role": "assistant", "content": [{"text": "simulated " * 3}]}},
                "stopReason": "end_turn",
                "usage": {
                    "inputTokens": input_tokens,
                    "outputTokens": output_tokens,
                    "totalTokens": input_tokens + output_tokens,
                },
                "metrics": {"latencyMs": 1},
                "additionalModelResponseFields": {"model": model_id},
            },
        )


class FakeBedrockServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, throttle_rate: float = 0.0, seed: int = 7) -> None:
        super().__init__((host, port), _Handler)
        self.throttle_rate = throttle_rate
        self._rng = random.Random(seed)  # noqa: S311 - simulation, not security
        self._lock = threading.Lock()
        self.calls = 0
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def should_throttle(self) -> bool:
        with self._lock:
            return self._rng.random() < self.throttle_rate

    def start(self) -> FakeBedrockServer:
        self._thread = threading.Thread(target=self.serve_forever, name="fake-bedrock", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
