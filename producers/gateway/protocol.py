"""The gateway's transport-neutral request and response, and its one error type.

Both ways of running the gateway (the Lambda handler behind API Gateway, and the local HTTP server) translate
their native request into an ``HttpRequest``, call the same ``GatewayApp.handle``, and write the returned
``HttpResponse`` back. Every error a client can see is an ``ApiError``: an HTTP status, a stable code, a
message and, for bad input, the field at fault; it renders as JSON and never carries a stack trace.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

JSON_TYPE: Final = "application/json"
SSE_TYPE: Final = "text/event-stream"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    path: str  # without query string
    headers: Mapping[str, str]  # keys lower-cased
    body: bytes = b""
    request_id: str = ""  # the platform's id (API Gateway's requestContext.requestId), if any

    def header(self, name: str) -> str:
        return self.headers.get(name.lower(), "")


@dataclass(slots=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    # A streamed body (server-sent events). The transport must iterate it to the end or close() it: the
    # generator meters the call in its ``finally`` block.
    stream: Iterator[bytes] | None = None

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        for key, value in self.headers:
            if key.lower() == lowered:
                return value
        return None


def dumps(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(status: int, obj: Any, headers: list[tuple[str, str]] | None = None) -> HttpResponse:
    return HttpResponse(status, [("Content-Type", JSON_TYPE), *(headers or [])], dumps(obj))


class ApiError(Exception):
    """An error answer. ``code`` is stable for programs, ``message`` is for people, ``field`` names bad input.
    The body follows OpenAI's error shape so OpenAI clients surface the message."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str = "",
        headers: list[tuple[str, str]] | None = None,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = headers or []
        self.extra = dict(extra or {})

    def to_response(self) -> HttpResponse:
        error: dict[str, Any] = {"code": self.code, "type": _TYPES.get(self.status, "api_error")}
        error["message"] = f"{self.field}: {self.message}" if self.field else self.message
        error["param"] = self.field or None
        error.update(self.extra)
        return json_response(self.status, {"error": error}, self.headers)


_TYPES: Final = {
    400: "invalid_request_error",
    401: "authentication_error",
    404: "not_found_error",
    405: "invalid_request_error",
    411: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    502: "api_error",
    503: "api_error",
}


def bad_request(field: str, message: str) -> ApiError:
    return ApiError(400, "invalid_request", message, field=field)
