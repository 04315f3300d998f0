"""instrument(): meter every model call an application makes through a boto3 ``bedrock-runtime`` client.

``instrument(client, tenant_id=..., tags=..., producer=...)`` replaces the client's ``converse``,
``converse_stream``, ``invoke_model`` and ``invoke_model_with_response_stream`` (on that instance only) with
wrappers that emit one UsageEvent per call: tenant, model (the ``modelId`` as requested, also used as
``model_id``: Bedrock does not echo a resolved id), region (``client.meta.region_name``), the four token
counts (see producers.sdk.bedrock_usage), latency, outcome and Bedrock's request id. Nothing is priced here:
the consumer prices from the catalog. Prompt and output text are never logged or stored; streamed text is only
measured in characters, for estimates.

- The tenant is bound when instrumenting (a string, or a zero-argument callable such as a contextvar's ``get``
  for a multi-tenant app sharing one client), never read from the request.
- Converse calls carry the tenant and tags as ``requestMetadata`` (so they show in Bedrock's invocation logs).
  Keys and values Bedrock would reject are left out of the metadata (they stay in the event), and the total is
  capped at Bedrock's 16 entries: ``tenant_id`` first, then the caller's own entries, then the tags.
- Streams are metered when they end, when the caller stops reading early (breaking out of the loop closes the
  stream's iterator, which meters and closes the connection), when they fail mid-way, or at the latest when
  the response is garbage collected unread. Without the final usage event, tokens are estimated and
  ``estimated_by`` says how.
- A failed call is metered (``throttled`` for ThrottlingException, else ``model_error``) and its exception
  re-raised untouched. A request botocore rejects before sending (ParamValidationError) reached no model and
  is not metered.
- With ``quota=QuotaChecker(...)`` a call for a blocked tenant is refused before it reaches Bedrock: a
  ``denied`` event is emitted and TenantBlockedError raised (with the reason and seconds to wait).
- Metering never breaks the caller's call: an event that cannot be built or emitted is logged (by event id and
  field, no content) and the response returned as usual.
"""

from __future__ import annotations

import functools
import io
import logging
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import ClientError, ParamValidationError
from botocore.response import StreamingBody

from producers.sdk.bedrock_usage import (
    ESTIMATE_BY_CHARS,
    InvokeStreamUsage,
    TokenUsage,
    converse_delta_chars,
    converse_input_chars,
    estimate_tokens,
    usage_from_converse,
    usage_from_invoke,
)
from producers.sdk.quota import QuotaChecker
from shared.decisions import AdmissionKind
from shared.errors import SchemaError, TenantBlockedError
from shared.ports import EventSink
from shared.schema import (
    MAX_ID_LEN,
    MAX_LATENCY_MS,
    REGION_RE,
    TENANT_ID_RE,
    Outcome,
    Source,
    UsageEvent,
    new_event_id,
    validate_tags,
)

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

logger = logging.getLogger(__name__)

INSTRUMENTED_MARK: Final = "_tenantmeter_instrumented"
METADATA_TENANT_KEY: Final = "tenant_id"
MAX_REQUEST_METADATA: Final = 16  # Bedrock's limit on requestMetadata entries
# Bedrock's requestMetadata patterns (botocore's bedrock-runtime model): key 1-256, value 0-256 characters.
_METADATA_KEY_RE: Final = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{1,256}")
_METADATA_VALUE_RE: Final = re.compile(r"[a-zA-Z0-9\s:_@$#=/+,\-.]{0,256}")
ESTIMATE_UNREPORTED: Final = "sdk:unreported"


def _utc_now() -> datetime:
    return datetime.now(UTC)


def instrument(
    client: BedrockRuntimeClient,
    *,
    tenant_id: str | Callable[[], str],
    producer: EventSink,
    tags: Mapping[str, str] | None = None,
    quota: QuotaChecker | None = None,
    clock: Callable[[], datetime] = _utc_now,
) -> BedrockRuntimeClient:
    """Meter ``client``'s model calls for ``tenant_id`` into ``producer``; returns the same client."""
    if getattr(client, INSTRUMENTED_MARK, False):
        raise ValueError("this bedrock-runtime client is already instrumented")
    region = client.meta.region_name
    if not isinstance(region, str) or not REGION_RE.fullmatch(region):
        raise ValueError(f"the client's region {region!r} is not an AWS region; create it with region_name=...")
    if isinstance(tenant_id, str):
        _check_tenant(tenant_id)
    elif not callable(tenant_id):
        raise TypeError("tenant_id must be a tenant id or a callable returning one")
    meter = _Meter(
        tenant=tenant_id,
        tags=validate_tags(dict(tags or {})),
        producer=producer,
        quota=quota,
        clock=clock,
        region=region,
    )
    for name, wrap in (
        ("converse", _wrap_converse),
        ("converse_stream", _wrap_converse_stream),
        ("invoke_model", _wrap_invoke_model),
        ("invoke_model_with_response_stream", _wrap_invoke_model_stream),
    ):
        setattr(client, name, wrap(meter, getattr(client, name)))
    setattr(client, INSTRUMENTED_MARK, True)
    return client


def _check_tenant(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not TENANT_ID_RE.fullmatch(tenant_id):
        raise SchemaError("tenant_id", f"invalid tenant id {str(tenant_id)[:40]!r}")
    return tenant_id


def request_metadata(caller: object, tenant_id: str, tags: Mapping[str, str]) -> dict[str, str]:
    """The Converse ``requestMetadata``: tenant first (ours, never the caller's), then the caller's entries,
    then the tags; entries Bedrock would reject are left out; at most 16."""
    merged: dict[str, str] = {METADATA_TENANT_KEY: tenant_id}
    sources: list[Mapping[Any, Any]] = [caller if isinstance(caller, Mapping) else {}, tags]
    for source in sources:
        for key, value in source.items():
            if len(merged) >= MAX_REQUEST_METADATA:
                break
            if key in merged or not isinstance(key, str) or not isinstance(value, str):
                continue
            if _METADATA_KEY_RE.fullmatch(key) and _METADATA_VALUE_RE.fullmatch(value):
                merged[key] = value
    return merged


def _request_id(response: object) -> str:
    if isinstance(response, Mapping):
        metadata = response.get("ResponseMetadata")
        if isinstance(metadata, Mapping):
            request_id = metadata.get("RequestId")
            if isinstance(request_id, str):
                return request_id[:MAX_ID_LEN]
    return ""


def _error_outcome(exc: BaseException) -> Outcome:
    if isinstance(exc, ClientError):
        code = str(exc.response.get("Error", {}).get("Code", ""))
        # Event-stream errors arrive as camelCase event names ("throttlingException").
        if code.lower() == "throttlingexception":
            return Outcome.THROTTLED
    return Outcome.MODEL_ERROR


class _Call:
    """One metered call, from the moment it starts until its event is emitted (exactly once)."""

    __slots__ = ("done", "meter", "model", "occurred_at", "request_id", "started", "tenant_id")

    def __init__(self, meter: _Meter, tenant_id: str, model: str) -> None:
        self.meter = meter
        self.tenant_id = tenant_id
        self.model = model
        self.occurred_at = meter.clock()
        self.started = time.perf_counter()
        self.request_id = ""
        self.done = False

    def finish(self, outcome: Outcome, usage: TokenUsage, *, request_id: str = "", estimated_by: str = "") -> None:
        if self.done:
            return
        self.done = True
        latency_ms = min(int((time.perf_counter() - self.started) * 1000), MAX_LATENCY_MS)
        self.meter.emit(
            tenant_id=self.tenant_id,
            model=self.model,
            occurred_at=self.occurred_at,
            usage=usage,
            latency_ms=latency_ms,
            outcome=outcome,
            request_id=request_id or self.request_id,
            estimated_by=estimated_by,
        )

    def fail(self, exc: BaseException, usage: TokenUsage | None = None, estimated_by: str = "") -> None:
        request_id = ""
        if isinstance(exc, ClientError):
            request_id = _request_id(exc.response)
        self.finish(_error_outcome(exc), usage or TokenUsage(), request_id=request_id, estimated_by=estimated_by)


class _Meter:
    def __init__(
        self,
        *,
        tenant: str | Callable[[], str],
        tags: dict[str, str],
        producer: EventSink,
        quota: QuotaChecker | None,
        clock: Callable[[], datetime],
        region: str,
    ) -> None:
        self.tenant = tenant
        self.tags = tags
        self.producer = producer
        self.quota = quota
        self.clock = clock
        self.region = region

    def start(self, kwargs: dict[str, Any], *, with_metadata: bool) -> tuple[_Call, dict[str, Any]]:
        """Resolve the tenant, enforce the quota, and add request metadata. Raises before any model call."""
        tenant_id = _check_tenant(self.tenant if isinstance(self.tenant, str) else self.tenant())
        model = kwargs.get("modelId")
        call = _Call(self, tenant_id, model if isinstance(model, str) else "")
        if self.quota is not None:
            admission = self.quota.check(tenant_id)
            if admission.kind is AdmissionKind.BLOCK:
                call.finish(Outcome.DENIED, TokenUsage())
                raise TenantBlockedError(
                    tenant_id, admission.reason, retry_after_s=admission.retry_after_seconds(call.occurred_at)
                )
        if with_metadata:
            kwargs = {
                **kwargs,
                "requestMetadata": request_metadata(kwargs.get("requestMetadata"), tenant_id, self.tags),
            }
        return call, kwargs

    def emit(
        self,
        *,
        tenant_id: str,
        model: str,
        occurred_at: datetime,
        usage: TokenUsage,
        latency_ms: int,
        outcome: Outcome,
        request_id: str,
        estimated_by: str,
    ) -> None:
        event_id = new_event_id()
        try:
            event = UsageEvent(
                event_id=event_id,
                occurred_at=occurred_at,
                tenant_id=tenant_id,
                source=Source.SDK,
                model=model,
                model_id=model,
                region=self.region,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                latency_ms=latency_ms,
                outcome=outcome,
                request_id=request_id,
                tags=self.tags,
                estimated_by=estimated_by,
            )
            self.producer.emit(event)
        except Exception as exc:
            # Metering must not break the caller's model call; say loudly that this one went unrecorded.
            logger.error("usage event %s (tenant %s) not recorded: %s", event_id, tenant_id, exc)


def _wrap_converse(meter: _Meter, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def converse(**kwargs: Any) -> Any:
        call, kwargs = meter.start(kwargs, with_metadata=True)
        try:
            response = original(**kwargs)
        except ParamValidationError:
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        call.finish(Outcome.SUCCESS, usage_from_converse(response.get("usage")), request_id=_request_id(response))
        return response

    return converse


def _wrap_converse_stream(meter: _Meter, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def converse_stream(**kwargs: Any) -> Any:
        call, kwargs = meter.start(kwargs, with_metadata=True)
        input_chars = converse_input_chars(kwargs.get("messages"), kwargs.get("system"))
        try:
            response = original(**kwargs)
        except ParamValidationError:
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        call.request_id = _request_id(response)
        response["stream"] = MeteredConverseStream(response["stream"], call, input_chars)
        return response

    return converse_stream


def _wrap_invoke_model(meter: _Meter, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def invoke_model(**kwargs: Any) -> Any:
        call, kwargs = meter.start(kwargs, with_metadata=False)
        try:
            response = original(**kwargs)
            # The usage is in the body: read it, and hand the caller an identical, unread body.
            raw = response["body"].read()
        except ParamValidationError:
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        response["body"] = StreamingBody(io.BytesIO(raw), len(raw))
        metadata = response.get("ResponseMetadata", {})
        usage = usage_from_invoke(raw, str(response.get("contentType", "")), metadata.get("HTTPHeaders", {}))
        estimated_by = ""
        if usage is None:
            logger.warning("InvokeModel response of %s reported no token usage; metered as unreported", call.model)
            usage, estimated_by = TokenUsage(), ESTIMATE_UNREPORTED
        call.finish(Outcome.SUCCESS, usage, request_id=_request_id(response), estimated_by=estimated_by)
        return response

    return invoke_model


def _wrap_invoke_model_stream(meter: _Meter, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def invoke_model_with_response_stream(**kwargs: Any) -> Any:
        call, kwargs = meter.start(kwargs, with_metadata=False)
        body = kwargs.get("body", b"")
        request_bytes = len(body) if isinstance(body, bytes | bytearray | str) else 0
        try:
            response = original(**kwargs)
        except ParamValidationError:
            raise
        except BaseException as exc:
            call.fail(exc)
            raise
        call.request_id = _request_id(response)
        response["body"] = MeteredInvokeStream(response["body"], call, request_bytes)
        return response

    return invoke_model_with_response_stream


class _MeteredStream(ABC):
    """Wraps a botocore EventStream: yields its events unchanged and meters the call exactly once when the
    stream ends, fails, is closed, is abandoned mid-way, or is garbage collected unread."""

    def __init__(self, stream: Any, call: _Call) -> None:
        self._stream = stream
        self._call = call

    def __iter__(self) -> Iterator[Any]:
        return self._events()

    def _events(self) -> Iterator[Any]:
        try:
            for event in self._stream:
                self._observe(event)
                yield event
        except GeneratorExit:
            # The caller stopped reading (broke out of its loop, or closed the iterator).
            self._end(None)
            self._close_underlying()
            raise
        except BaseException as exc:
            self._end(exc)
            raise
        self._end(None)

    def close(self) -> None:
        """Stop reading: meters the call as it stands and closes the connection."""
        self._end(None)
        self._close_underlying()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self._stream, name)

    def __del__(self) -> None:
        call = self.__dict__.get("_call")
        if call is not None and not call.done:
            self._end(None)

    def _close_underlying(self) -> None:
        try:
            self._stream.close()
        except Exception as exc:  # closing is best effort; the call is already metered
            logger.debug("closing an abandoned Bedrock stream failed: %s", exc)

    @abstractmethod
    def _observe(self, event: Any) -> None:
        """Note what one event says about usage."""

    @abstractmethod
    def _end(self, error: BaseException | None) -> None:
        """Meter the call (once) from what was observed; ``error`` is what ended the stream, if anything."""


class MeteredConverseStream(_MeteredStream):
    """ConverseStream's ``stream``: usage from the ``metadata`` event, else estimated from text lengths."""

    def __init__(self, stream: Any, call: _Call, input_chars: int) -> None:
        super().__init__(stream, call)
        self._input_chars = input_chars
        self._output_chars = 0
        self._usage: TokenUsage | None = None

    def _observe(self, event: Any) -> None:
        if not isinstance(event, Mapping):
            return
        delta = event.get("contentBlockDelta")
        if isinstance(delta, Mapping):
            self._output_chars += converse_delta_chars(delta.get("delta"))
            return
        metadata = event.get("metadata")
        if isinstance(metadata, Mapping) and "usage" in metadata:
            self._usage = usage_from_converse(metadata["usage"])

    def _end(self, error: BaseException | None) -> None:
        if self._call.done:
            return
        if self._usage is not None:
            usage, estimated_by = self._usage, ""
        else:
            usage = TokenUsage(estimate_tokens(self._input_chars), estimate_tokens(self._output_chars))
            estimated_by = ESTIMATE_BY_CHARS
        if error is None:
            self._call.finish(Outcome.SUCCESS, usage, estimated_by=estimated_by)
        else:
            self._call.fail(error, usage, estimated_by)


class MeteredInvokeStream(_MeteredStream):
    """InvokeModelWithResponseStream's ``body``: usage from the last chunk's invocation metrics, else the
    Anthropic running counts, else estimated from bytes."""

    def __init__(self, stream: Any, call: _Call, request_bytes: int) -> None:
        super().__init__(stream, call)
        self._request_bytes = request_bytes
        self._seen = InvokeStreamUsage()

    def _observe(self, event: Any) -> None:
        if isinstance(event, Mapping):
            chunk = event.get("chunk")
            if isinstance(chunk, Mapping) and isinstance(chunk.get("bytes"), bytes):
                self._seen.observe(chunk["bytes"])

    def _end(self, error: BaseException | None) -> None:
        if self._call.done:
            return
        usage, estimated_by = self._seen.result(self._request_bytes)
        if error is None:
            self._call.finish(Outcome.SUCCESS, usage, estimated_by=estimated_by)
        else:
            self._call.fail(error, usage, estimated_by)
