"""The gateway application: one pure request -> response core shared by the Lambda handler and the local server.

Per model request: authenticate the API key to a tenant (the only source of identity), parse and validate
the body, resolve the model, pass the quota gate (blocks, and near the limit an atomic reservation of the
request's maximum cost), call the backend, and emit exactly one UsageEvent for every outcome (success, model
error, denied) plus one metrics record. Prompts and completions are never logged.

Routes: ``POST /v1/converse`` (the seed's request shape), ``POST /v1/chat/completions`` (OpenAI-compatible,
``stream: true`` as server-sent events), ``GET /v1/usage`` (the caller's own windows and quota state),
``GET /v1/models`` and ``GET /healthz``.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
import traceback
from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from producers.gateway import render
from producers.gateway.metrics import MetricsSink, NullMetrics, RequestMetrics
from producers.gateway.models import (
    FailureKind,
    ModelBackend,
    ModelBackendError,
    ModelCall,
    ModelRouter,
    Route,
    StreamEnd,
    StreamPart,
    TextDelta,
    UnknownModelError,
)
from producers.gateway.parsing import (
    DEFAULT_CLIENT_TAG_KEYS,
    DEFAULT_MAX_TOKENS,
    ChatRequest,
    load_json_object,
    parse_converse,
    parse_openai_chat,
    unsupported_media,
)
from producers.gateway.protocol import (
    JSON_TYPE,
    SSE_TYPE,
    ApiError,
    HttpRequest,
    HttpResponse,
    bad_request,
    json_response,
)
from producers.gateway.quota import (
    GateResult,
    QuotaGate,
    QuotaUnavailableError,
    Remaining,
    max_input_tokens,
)
from producers.gateway.render import usd
from shared.decisions import AdmissionKind, Metric, alert_level_for
from shared.ports import EventSink, QuotaState, Totals, UsageReader
from shared.pricing import CachedPricer, PriceCatalog, PriceRate, TokenUsage, rate_cost, rate_max_cost
from shared.schema import (
    MAX_LATENCY_MS,
    MAX_TAGS,
    Outcome,
    Source,
    UsageEvent,
    format_timestamp,
    new_event_id,
    random_hex,
)
from shared.tenants import Tenant, TenantRegistry
from shared.windows import WINDOWS, window_reset

logger = logging.getLogger(__name__)

MAX_API_KEY_LEN: Final = 256
# How a stream that broke off after sending text, without the backend's usage, is counted (event estimated_by).
STREAM_ESTIMATE: Final = "gateway:stream_cut_utf8_bytes_div_4"


def _is_utf8(text: str) -> bool:
    """False for strings with lone surrogates (JSON can smuggle them in as escapes): they cannot be encoded."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_request_id() -> str:
    """32 random hex digits, like an event id (the request id only correlates logs and headers)."""
    return random_hex(16)


def log_failure(message: str, exc: BaseException, **context: str) -> None:
    """Log an unexpected exception by type and stack frames only. Its message is left out: an exception raised
    deep in a backend or library may quote the prompt or the model's output, which are never logged."""
    frames = "".join(traceback.format_tb(exc.__traceback__))
    logger.error("%s: %s\n%s", message, type(exc).__name__, frames, extra=context)


def as_backend_error(exc: Exception) -> ModelBackendError:
    """A backend's own error as is; anything else (a bug in a backend, an SDK surprise) as a generic failure
    whose message names only the exception type."""
    if isinstance(exc, ModelBackendError):
        return exc
    log_failure("model backend raised an unexpected error", exc)
    return ModelBackendError(FailureKind.FAILED, "the model call failed", code=type(exc).__name__)


@dataclass(frozen=True, slots=True)
class GatewayConfig:
    region: str = "us-east-1"  # the event's region: where the gateway (and its Bedrock client) runs
    max_body_bytes: int = 1024 * 1024
    quota_cache_ms: int = 1000
    reservation_ttl: timedelta = timedelta(seconds=300)
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    client_tag_keys: frozenset[str] = DEFAULT_CLIENT_TAG_KEYS
    # Refresh cached quota state in a background thread before it ages out (long-running servers; the Lambda
    # handler turns it off: a frozen container cannot refresh in the background).
    quota_refresh_ahead: bool = True
    # False only for the benchmark's baseline: no quota gate, no usage events, no metrics, no pricing.
    metering: bool = True


@dataclass(frozen=True, slots=True)
class _Call:
    """Everything known about one admitted-or-not model request."""

    tenant: Tenant
    chat: ChatRequest
    route: Route
    tags: Mapping[str, str]
    request_id: str
    now: datetime
    openai: bool
    gate: GateResult | None = None


@dataclass(frozen=True, slots=True)
class _Outcome:
    outcome: Outcome
    usage: TokenUsage = field(default_factory=TokenUsage)
    latency_ms: int = 0
    estimated_by: str = ""


class GatewayApp:
    def __init__(
        self,
        *,
        tenants: TenantRegistry,
        quota_state: QuotaState,
        usage_reader: UsageReader,
        sink: EventSink,
        router: ModelRouter,
        catalog: PriceCatalog,
        clock: Callable[[], datetime] = utc_now,
        metrics: MetricsSink | None = None,
        config: GatewayConfig | None = None,
        monotonic: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.tenants = tenants
        self.config = config or GatewayConfig()
        self.router = router
        self.catalog = catalog
        self.rates = CachedPricer(catalog)
        self._quota_state = quota_state
        self._usage_reader = usage_reader
        self.sink = sink
        self._clock = clock
        self._metrics = metrics or NullMetrics()
        self._monotonic = monotonic
        self.gate = QuotaGate(
            quota_state,
            usage_reader,
            cache_ms=self.config.quota_cache_ms,
            reservation_ttl=self.config.reservation_ttl,
            monotonic=monotonic,
            clock=clock,
            refresh_ahead=self.config.quota_refresh_ahead,
        )
        self._routes: dict[str, dict[str, Callable[[HttpRequest], HttpResponse]]] = {
            "/v1/converse": {"POST": self._converse},
            "/v1/chat/completions": {"POST": self._chat_completions},
            "/v1/usage": {"GET": self._usage},
            "/v1/models": {"GET": self._models},
            "/healthz": {"GET": self._health},
        }

    # --- transport-facing ---------------------------------------------------------------------------------

    def handle(self, request: HttpRequest) -> HttpResponse:
        """Answer one request. Never raises: every failure becomes a JSON error response."""
        try:
            methods = self._routes.get(request.path.rstrip("/") or "/")
            if methods is None:
                raise ApiError(404, "not_found", f"no route {request.path[:100]!r}")
            handler = methods.get(request.method.upper())
            if handler is None:
                raise ApiError(
                    405, "method_not_allowed", f"use {', '.join(methods)}", headers=[("Allow", ", ".join(methods))]
                )
            if request.method.upper() == "POST":
                if len(request.body) > self.config.max_body_bytes:
                    raise self.too_large()
                content_type = request.header("content-type")
                if content_type and not content_type.lower().startswith(JSON_TYPE):
                    raise unsupported_media(content_type)
            return handler(request)
        except ApiError as exc:
            return exc.to_response()
        except Exception as exc:
            log_failure("unhandled error", exc, request_id=request.request_id, path=request.path[:100])
            return ApiError(500, "internal_error", "internal error").to_response()

    def flush_metrics(self) -> None:
        """Write out metrics a sink buffers (the Lambda handler calls this after every invocation)."""
        flush = getattr(self._metrics, "flush", None)
        if callable(flush):
            flush()

    def too_large(self) -> ApiError:
        return ApiError(413, "body_too_large", f"request body exceeds {self.config.max_body_bytes} bytes")

    # --- authentication -------------------------------------------------------------------------------------

    def authenticate(self, request: HttpRequest) -> Tenant:
        """The tenant is the owner of the API key, and nothing else (no header or body field names it)."""
        key = request.header("x-api-key")
        auth = request.header("authorization")
        if not key and auth:
            scheme, _, value = auth.partition(" ")
            if scheme.lower() == "bearer":
                key = value.strip()
        challenge = [("WWW-Authenticate", 'Bearer realm="tenantmeter"')]
        if not key:
            raise ApiError(
                401,
                "missing_api_key",
                "send the API key as 'Authorization: Bearer <key>' or 'x-api-key'",
                headers=challenge,
            )
        tenant = self.tenants.authenticate(key) if len(key) <= MAX_API_KEY_LEN and _is_utf8(key) else None
        if tenant is None:
            raise ApiError(401, "invalid_api_key", "invalid API key", headers=challenge)
        return tenant

    # --- routes ---------------------------------------------------------------------------------------------

    def _health(self, request: HttpRequest) -> HttpResponse:
        return json_response(200, {"status": "ok"})

    def _models(self, request: HttpRequest) -> HttpResponse:
        self.authenticate(request)
        data = [{"id": name, "object": "model", "owned_by": "tenantmeter"} for name in self.router.known_models()]
        return json_response(200, {"object": "list", "data": data})

    def _converse(self, request: HttpRequest) -> HttpResponse:
        tenant = self.authenticate(request)
        chat = parse_converse(
            load_json_object(request.body),
            client_tag_keys=self.config.client_tag_keys,
            default_max_tokens=self.config.default_max_tokens,
        )
        return self._model_request(request, tenant, chat, openai=False)

    def _chat_completions(self, request: HttpRequest) -> HttpResponse:
        tenant = self.authenticate(request)
        chat = parse_openai_chat(
            load_json_object(request.body),
            client_tag_keys=self.config.client_tag_keys,
            default_max_tokens=self.config.default_max_tokens,
        )
        return self._model_request(request, tenant, chat, openai=True)

    # --- the model request ------------------------------------------------------------------------------------

    def _model_request(self, request: HttpRequest, tenant: Tenant, chat: ChatRequest, *, openai: bool) -> HttpResponse:
        try:
            route = self.router.resolve(chat.model, tenant)
        except UnknownModelError:
            raise bad_request("model", f"unknown model {chat.model[:100]!r}; GET /v1/models lists them") from None
        tags = {**tenant.default_tags, **chat.tags}
        if len(tags) > MAX_TAGS:
            raise bad_request(
                "tags", f"at most {MAX_TAGS} tags including the tenant's {len(tenant.default_tags)} defaults"
            )
        call = _Call(tenant, chat, route, tags, request.request_id or new_request_id(), self._clock(), openai)
        if self.config.metering:
            call = self._admit(call)
        model_call = ModelCall(
            model_id=route.model_id,
            messages=chat.messages,
            system=chat.system,
            max_tokens=chat.max_tokens,
            temperature=chat.temperature,
            top_p=chat.top_p,
            top_k=chat.top_k,
            stop=chat.stop,
        )
        started = self._monotonic()
        if chat.stream:
            return self._stream(call, model_call, started)
        try:
            reply = route.backend.converse(model_call)
        except Exception as exc:
            raise self._model_failed(call, as_backend_error(exc), started) from None
        result = _Outcome(Outcome.SUCCESS, reply.usage, self._elapsed_ms(started), reply.estimated_by)
        cost = self._finish(call, result)
        headers = [("X-Request-Id", call.request_id), *self._usage_headers(call, result, cost)]
        if openai:
            body = render.openai_completion(
                request_id=call.request_id,
                alias=chat.model,
                created=call.now,
                text=reply.text,
                stop_reason=reply.stop_reason,
                usage=reply.usage,
            )
        else:
            body = render.converse_body(
                request_id=call.request_id,
                alias=chat.model,
                model_id=route.model_id,
                text=reply.text,
                stop_reason=reply.stop_reason,
                usage=reply.usage,
                cost_nanos=cost,
                estimated_by=reply.estimated_by,
                latency_ms=result.latency_ms,
                tags=tags,
            )
        return json_response(200, body, headers)

    def _admit(self, call: _Call) -> _Call:
        chat = call.chat

        def max_cost() -> int:
            return rate_max_cost(
                self._rate(call),
                max_input_tokens(chat.prompt_texts(), len(chat.messages) + len(chat.system)),
                chat.max_tokens,
            )

        try:
            gate = self.gate.admit(call.tenant, call.now, max_cost)
        except QuotaUnavailableError:
            self._finish(call, _Outcome(Outcome.DENIED))
            raise ApiError(
                503,
                "quota_unavailable",
                "cannot reserve quota right now; retry shortly",
                headers=[("Retry-After", "1")],
            ) from None
        call = _Call(call.tenant, chat, call.route, call.tags, call.request_id, call.now, call.openai, gate)
        if gate.admission.kind is AdmissionKind.BLOCK:
            self._finish(call, _Outcome(Outcome.DENIED))
            retry = gate.admission.retry_after_seconds(call.now)
            headers = [("X-Request-Id", call.request_id), *self._quota_headers(gate.remaining, 0)]
            if retry:
                headers.append(("Retry-After", str(retry)))
            extra: dict[str, Any] = {"reason": gate.admission.reason}
            if retry:
                extra["retry_after_seconds"] = retry
            raise ApiError(429, "quota_exceeded", gate.admission.reason, headers=headers, extra=extra)
        return call

    def _model_failed(self, call: _Call, exc: ModelBackendError, started: float) -> ApiError:
        outcome = Outcome.THROTTLED if exc.kind is FailureKind.THROTTLED else Outcome.MODEL_ERROR
        self._finish(call, _Outcome(outcome, latency_ms=self._elapsed_ms(started)))
        logger.warning(
            "model call failed",
            extra={
                "tenant_id": call.tenant.tenant_id,
                "request_id": call.request_id,
                "code": exc.code,
                "kind": exc.kind.value,
            },
        )
        headers = [("X-Request-Id", call.request_id)]
        if exc.kind is FailureKind.REJECTED:
            return ApiError(400, "model_rejected_request", exc.message, headers=headers)
        code = "model_throttled" if exc.kind is FailureKind.THROTTLED else "model_error"
        return ApiError(502, code, exc.message, headers=headers)

    def _stream(self, call: _Call, model_call: ModelCall, started: float) -> HttpResponse:
        # Fetch the first part before answering, so a backend that fails at once gets a proper JSON 502.
        try:
            parts = call.route.backend.converse_stream(model_call)
            first = next(parts)
        except StopIteration:
            empty = ModelBackendError(FailureKind.FAILED, "the model stream was empty", code="EmptyStream")
            raise self._model_failed(call, empty, started) from None
        except Exception as exc:
            raise self._model_failed(call, as_backend_error(exc), started) from None
        stream = _MeteredStream(self, call, first, parts, started)
        headers = [
            ("Content-Type", SSE_TYPE),
            ("Cache-Control", "no-cache"),
            ("X-Request-Id", call.request_id),
            *self._quota_headers(call.gate.remaining if call.gate else None, 0),
        ]
        return HttpResponse(200, headers, stream=stream)

    # --- metering ---------------------------------------------------------------------------------------------

    def _rate(self, call: _Call) -> PriceRate:
        """The integer rates of the call's model in force at its start (the catalog's, looked up once a day)."""
        minute = int(call.now.timestamp()) // 60
        return self.rates.rate(call.route.model_id, call.route.pricing_alias, self.config.region, minute)

    def _elapsed_ms(self, started: float) -> int:
        return min(MAX_LATENCY_MS, max(0, round((self._monotonic() - started) * 1000)))

    def _finish(self, call: _Call, result: _Outcome) -> int | None:
        """Emit the call's one usage event and metrics record; return its cost in nano-dollars (None when
        metering is off)."""
        if not self.config.metering:
            return None
        usage = result.usage
        cost = rate_cost(
            self._rate(call),
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
        )
        event = UsageEvent(
            event_id=new_event_id(),
            occurred_at=call.now,
            tenant_id=call.tenant.tenant_id,
            source=Source.GATEWAY,
            model=call.chat.model,
            model_id=call.route.model_id,
            region=self.config.region,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            latency_ms=result.latency_ms,
            outcome=result.outcome,
            request_id=call.request_id,
            tags=call.tags,
            estimated_by=result.estimated_by,
            reservation_id=call.gate.reservation_id if call.gate else "",
        )
        try:
            self.sink.emit(event)
        except Exception as exc:
            logger.error(
                "usage event not accepted by the sink",
                extra={"tenant_id": event.tenant_id, "event_id": event.event_id, "error": type(exc).__name__},
            )
        try:
            self._metrics.record(
                RequestMetrics(
                    at=call.now,
                    tenant_id=event.tenant_id,
                    request_id=call.request_id,
                    model=call.chat.model,
                    tags=call.tags,
                    admitted=result.outcome is not Outcome.DENIED,
                    denied=result.outcome is Outcome.DENIED,
                    model_failed=result.outcome in (Outcome.MODEL_ERROR, Outcome.THROTTLED),
                    input_tokens=usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens,
                    output_tokens=usage.output_tokens,
                    cost_nanos=cost,
                )
            )
        except Exception as exc:
            logger.error("metrics not recorded", extra={"request_id": call.request_id, "error": type(exc).__name__})
        return cost

    def _usage_headers(self, call: _Call, result: _Outcome, cost: int | None) -> list[tuple[str, str]]:
        usage = result.usage
        headers = [
            ("X-Usage-Input-Tokens", str(usage.input_tokens)),
            ("X-Usage-Output-Tokens", str(usage.output_tokens)),
        ]
        if usage.cache_read_tokens or usage.cache_write_tokens:
            headers.append(("X-Usage-Cache-Read-Tokens", str(usage.cache_read_tokens)))
            headers.append(("X-Usage-Cache-Write-Tokens", str(usage.cache_write_tokens)))
        if result.estimated_by:
            headers.append(("X-Usage-Estimated-By", result.estimated_by))
        if cost is not None:
            headers.append(("X-Usage-Cost-USD", usd(cost)))
            headers += self._quota_headers(call.gate.remaining if call.gate else None, cost)
        return headers

    @staticmethod
    def _quota_headers(remaining: Remaining | None, spent: int) -> list[tuple[str, str]]:
        if remaining is None:
            return []
        left = max(0, remaining.remaining_nanos - spent)
        return [
            ("X-Quota-Window", remaining.window),
            ("X-Quota-Limit-USD", usd(remaining.limit_nanos)),
            ("X-Quota-Remaining-USD", usd(left)),
        ]

    # --- usage report -----------------------------------------------------------------------------------------

    def _usage(self, request: HttpRequest) -> HttpResponse:
        """The calling tenant's own windows and quota state (read fresh). No parameter selects a tenant."""
        tenant = self.authenticate(request)
        now = self._clock()
        try:
            totals = self._usage_reader.window_totals(tenant.tenant_id, list(WINDOWS.values()), now)
            status = self._quota_state.quota_status(tenant.tenant_id, now)
        except Exception as exc:
            logger.warning("usage store unreadable", extra={"tenant_id": tenant.tenant_id, "error": type(exc).__name__})
            raise ApiError(503, "usage_unavailable", "usage store unavailable; retry shortly") from None
        windows: dict[str, Any] = {}
        for name, window in WINDOWS.items():
            t = totals.get(name, Totals())
            windows[name] = {
                "input_tokens": t.input_tokens,
                "output_tokens": t.output_tokens,
                "cache_read_tokens": t.cache_read_tokens,
                "cache_write_tokens": t.cache_write_tokens,
                "tokens": t.tokens,
                "requests": t.requests,
                "cost_usd": usd(t.cost_nanos),
                "resets_at": format_timestamp(window_reset(window, now)),
            }
        quotas = []
        for rule in tenant.quotas:
            used = totals.get(rule.window.name, Totals()).value(rule.metric)
            level = alert_level_for(used, rule.limit, tenant.thresholds)
            show: Callable[[int], Any] = usd if rule.metric is Metric.COST else int
            quotas.append(
                {
                    "window": rule.window.name,
                    "metric": rule.metric.value,
                    "hard": rule.hard,
                    "limit": show(rule.limit),
                    "used": show(used),
                    "remaining": show(max(0, rule.limit - used)),
                    "level": level.level.label,
                    "reason": level.reason,
                }
            )
        blocks = [
            {"window": b.window, "reason": b.reason, "until": format_timestamp(b.until)}
            for b in status.blocks
            if b.tenant_id == tenant.tenant_id and b.active(now)
        ]
        reserve = [
            {
                "window": f.window,
                "level": f.level.label,
                "limit_usd": usd(f.limit_nanos),
                "until": format_timestamp(f.until),
            }
            for f in status.reserve
            if f.tenant_id == tenant.tenant_id and f.until > now
        ]
        body = {
            "tenant_id": tenant.tenant_id,
            "tier": tenant.tier.name,
            "as_of": format_timestamp(now),
            "admission": "blocked" if blocks else "reserve" if reserve else "allow",
            "windows": windows,
            "quotas": quotas,
            "blocks": blocks,
            "reserved_admission": reserve,
        }
        return json_response(200, body)


class _MeteredStream(Iterator[bytes]):
    """The SSE body of a streamed chat completion. Whatever happens (finished, backend failure mid-stream,
    client gone before or during the stream) the call is metered exactly once: if the client leaves early the
    backend stream is drained (text discarded) so the event carries the backend's own usage."""

    def __init__(
        self, app: GatewayApp, call: _Call, first: StreamPart, parts: Iterator[StreamPart], started: float
    ) -> None:
        self._app = app
        self._call = call
        self._parts = parts
        self._started = started
        self._end: StreamEnd | None = None
        self._failure: ModelBackendError | None = None
        self._streamed_bytes = 0
        self._metered = False
        self._lock = threading.Lock()
        self._first: StreamPart | None = first  # fetched before answering; None once the body has taken it
        self._body = self._generate()

    def __next__(self) -> bytes:
        return next(self._body)

    def close(self) -> None:
        self._body.close()
        self._meter()

    def _chunk(self, **kwargs: Any) -> bytes:
        return render.openai_chunk(
            request_id=self._call.request_id, alias=self._call.chat.model, created=self._call.now, **kwargs
        )

    def _generate(self) -> Generator[bytes, None, None]:
        try:
            yield self._chunk(delta={"role": "assistant", "content": ""})
            part, self._first = self._first, None
            while part is not None:
                if isinstance(part, TextDelta):
                    self._streamed_bytes += len(part.text.encode())
                    yield self._chunk(delta={"content": part.text})
                else:
                    self._end = part
                    break
                part = next(self._parts, None)
            if self._end is None:
                self._failure = ModelBackendError(FailureKind.FAILED, "the model stream ended early", code="NoUsage")
            else:
                yield self._chunk(finish=render.finish_reason(self._end.stop_reason))
                if self._call.chat.include_usage:
                    yield self._chunk(usage=self._end.usage)
                yield render.SSE_DONE
        except Exception as exc:
            self._failure = as_backend_error(exc)
        finally:
            self._meter()
        if self._failure is not None:
            code = "model_throttled" if self._failure.kind is FailureKind.THROTTLED else "model_error"
            yield render.sse({"error": {"code": code, "type": "api_error", "message": self._failure.message}})
            yield render.SSE_DONE

    def _meter(self) -> None:
        with self._lock:
            if self._metered:
                return
            self._metered = True
        if self._end is None and self._failure is None:
            # The client left: read the rest of the backend stream for its usage.
            pending = [self._first] if self._first is not None else []
            self._first = None
            try:
                for part in itertools.chain(pending, self._parts):
                    if isinstance(part, StreamEnd):
                        self._end = part
            except Exception as exc:
                self._failure = as_backend_error(exc)
        latency = self._app._elapsed_ms(self._started)
        if self._end is not None:
            end = self._end
            self._app._finish(self._call, _Outcome(Outcome.SUCCESS, end.usage, latency, end.estimated_by))
            return
        failure = self._failure
        outcome = Outcome.THROTTLED if failure and failure.kind is FailureKind.THROTTLED else Outcome.MODEL_ERROR
        if self._streamed_bytes:
            # Text reached the client but the backend never reported usage: count it, and say how.
            chat = self._call.chat
            prompt_bytes = sum(len(t.encode()) for t in chat.prompt_texts())
            usage = TokenUsage(input_tokens=-(-prompt_bytes // 4), output_tokens=-(-self._streamed_bytes // 4))
            self._app._finish(self._call, _Outcome(outcome, usage, latency, STREAM_ESTIMATE))
        else:
            self._app._finish(self._call, _Outcome(outcome, latency_ms=latency))


def build_app(
    *,
    tenants: TenantRegistry,
    quota_state: QuotaState,
    usage_reader: UsageReader,
    sink: EventSink,
    backend: ModelBackend,
    endpoints: Mapping[str, ModelBackend] | None = None,
    catalog: PriceCatalog | None = None,
    clock: Callable[[], datetime] = utc_now,
    metrics: MetricsSink | None = None,
    config: GatewayConfig | None = None,
    model_routes: Mapping[str, str] | None = None,
    monotonic: Callable[[], float] = time.perf_counter,
) -> GatewayApp:
    """The one application object, every dependency injected.

    ``backend`` serves catalog models (Bedrock, or the simulated model); ``endpoints`` maps SageMaker endpoint
    names (usable as model ids) to the backend that serves them; ``model_routes`` optionally maps an alias to a
    specific Bedrock id (e.g. a cross-region profile ``us.anthropic...``). The store usually implements both
    ``quota_state`` and ``usage_reader``. ``monotonic`` (seconds) times model calls and the quota cache.
    """
    catalog = catalog or PriceCatalog.load()
    router = ModelRouter(catalog, backend, endpoints=endpoints, routes=model_routes)
    return GatewayApp(
        tenants=tenants,
        quota_state=quota_state,
        usage_reader=usage_reader,
        sink=sink,
        router=router,
        catalog=catalog,
        clock=clock,
        metrics=metrics,
        config=config,
        monotonic=monotonic,
    )
