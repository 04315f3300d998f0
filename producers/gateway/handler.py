"""AWS Lambda entry point behind an API Gateway REST API (proxy integration).

Thin: translate the proxy event into an ``HttpRequest``, let the shared ``GatewayApp`` answer, translate
back. Dependencies are built once per warm container (on the first invocation, never at import). API Gateway
REST does not stream responses, so a streamed chat completion is sent whole (still as server-sent events,
which OpenAI clients parse the same). Before returning, the usage producer is flushed, because a frozen
Lambda container cannot send in the background: an event left buffered would wait for the next invocation.
"""

from __future__ import annotations

import base64
import binascii
import threading
from typing import Any, Final

from aws_lambda_powertools import Logger
from aws_lambda_powertools.logging.utils import copy_config_to_registered_loggers
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEvent
from aws_lambda_powertools.utilities.typing import LambdaContext

from producers.gateway.app import GatewayApp
from producers.gateway.bootstrap import bootstrap
from producers.gateway.protocol import ApiError, HttpRequest, HttpResponse
from producers.gateway.settings import Settings
from shared.errors import TenantmeterError

logger = Logger(service="tenantmeter-gateway")

FLUSH_TIMEOUT_S: Final = 2.0

_app: GatewayApp | None = None
_app_lock = threading.Lock()


def get_app() -> GatewayApp:
    """The container's one app, built on first use."""
    global _app
    with _app_lock:
        if _app is None:
            copy_config_to_registered_loggers(source_logger=logger, include={"producers", "shared"})
            _app = bootstrap(Settings.from_env())
        return _app


def request_from_event(event: dict[str, Any]) -> HttpRequest:
    proxy = APIGatewayProxyEvent(event)
    raw = proxy.body or ""
    if proxy.is_base64_encoded:
        try:
            body = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise ApiError(400, "invalid_request", "body is not valid base64", field="body") from None
    else:
        body = raw.encode("utf-8", "surrogatepass")  # lone surrogates become invalid UTF-8: a 400, not a crash
    headers = {key.lower(): value for key, value in (proxy.headers or {}).items()}
    request_id = str((event.get("requestContext") or {}).get("requestId") or "")
    return HttpRequest(proxy.http_method, proxy.path, headers, body, request_id[:128])


def proxy_response(response: HttpResponse) -> dict[str, Any]:
    body = response.body
    if response.stream is not None:
        chunks: list[bytes] = []
        try:
            chunks.extend(response.stream)
        finally:
            close = getattr(response.stream, "close", None)
            if callable(close):
                close()
        body = b"".join(chunks)
    return {
        "statusCode": response.status,
        "headers": dict(response.headers),
        "body": body.decode("utf-8"),
        "isBase64Encoded": False,
    }


def _flush(app: GatewayApp) -> None:
    app.flush_metrics()
    flush = getattr(app.sink, "flush", None)
    if callable(flush) and not flush(timeout=FLUSH_TIMEOUT_S):
        logger.warning("usage events still buffered after flush; they go with the next invocation")


@logger.inject_lambda_context(clear_state=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        app = get_app()
    except TenantmeterError as exc:  # a bad setting or tenant registry: say so in the log, answer in JSON
        logger.error("gateway misconfigured", extra={"error": str(exc)})
        return proxy_response(
            ApiError(503, "misconfigured", "the gateway is misconfigured; its log names the setting").to_response()
        )
    try:
        request = request_from_event(event)
    except ApiError as exc:
        return proxy_response(exc.to_response())
    response = proxy_response(app.handle(request))
    _flush(app)
    return response
