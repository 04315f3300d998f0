"""Amazon Bedrock backend: the bedrock-runtime Converse and ConverseStream APIs.

Converse is model-neutral and reports usage (input, output, cache read, cache write tokens) on every answer,
including at the end of a stream (the ``metadata`` event), so streamed calls are metered exactly rather than
as $0 (a known failure of sample gateways, see ../shared/FACTS.md). The client is passed in, built by
``bootstrap``; errors become ``ModelBackendError`` whose message is safe to show (Bedrock's own validation
message is passed on, truncated, because it tells a client what to fix; nothing here logs prompt or output).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any, Final

from botocore.exceptions import BotoCoreError, ClientError

from producers.gateway.models import (
    FailureKind,
    ModelBackendError,
    ModelCall,
    ModelReply,
    StreamEnd,
    StreamPart,
    TextDelta,
)
from shared.pricing import TokenUsage

if TYPE_CHECKING:
    from mypy_boto3_bedrock_runtime import BedrockRuntimeClient

_THROTTLED: Final = frozenset(
    {"ThrottlingException", "ServiceQuotaExceededException", "ServiceUnavailableException", "ModelNotReadyException"}
)
_REJECTED: Final = frozenset({"ValidationException"})
_STREAM_ERRORS: Final = (
    "internalServerException",
    "modelStreamErrorException",
    "validationException",
    "throttlingException",
    "serviceUnavailableException",
)


def converse_request(call: ModelCall) -> dict[str, Any]:
    """The Converse / ConverseStream keyword arguments for a call."""
    config: dict[str, Any] = {"maxTokens": call.max_tokens}
    if call.temperature is not None:
        config["temperature"] = call.temperature
    if call.top_p is not None:
        config["topP"] = call.top_p
    if call.stop:
        config["stopSequences"] = list(call.stop)
    request: dict[str, Any] = {
        "modelId": call.model_id,
        "messages": [{"role": m.role, "content": [{"text": m.text}]} for m in call.messages],
        "inferenceConfig": config,
    }
    if call.system:
        request["system"] = [{"text": text} for text in call.system]
    if call.top_k is not None:
        # top_k is not in Converse's common inferenceConfig; Anthropic and others take it as a model field.
        request["additionalModelRequestFields"] = {"top_k": call.top_k}
    return request


def usage_from(raw: Mapping[str, Any]) -> TokenUsage:
    return TokenUsage(
        input_tokens=int(raw.get("inputTokens", 0)),
        output_tokens=int(raw.get("outputTokens", 0)),
        cache_read_tokens=int(raw.get("cacheReadInputTokens", 0)),
        cache_write_tokens=int(raw.get("cacheWriteInputTokens", 0)),
    )


def backend_error(exc: Exception) -> ModelBackendError:
    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        raw_code = str(error.get("Code", "ClientError"))
        code = raw_code[:1].upper() + raw_code[1:]  # in-stream errors arrive as throttlingException, ...
        if code in _THROTTLED:
            return ModelBackendError(FailureKind.THROTTLED, "the model is busy; retry later", code=code)
        if code in _REJECTED:
            detail = str(error.get("Message", ""))[:300]
            return ModelBackendError(FailureKind.REJECTED, f"the model rejected the request: {detail}", code=code)
        return ModelBackendError(FailureKind.FAILED, f"the model call failed ({code})", code=code)
    return ModelBackendError(FailureKind.FAILED, f"the model call failed ({type(exc).__name__})", code="")


class BedrockBackend:
    def __init__(self, client: BedrockRuntimeClient) -> None:
        self._client = client

    def converse(self, call: ModelCall) -> ModelReply:
        try:
            response = self._client.converse(**converse_request(call))
        except (ClientError, BotoCoreError) as exc:
            raise backend_error(exc) from None
        blocks = response.get("output", {}).get("message", {}).get("content", [])
        text = "".join(str(block.get("text", "")) for block in blocks)
        usage = response.get("usage")
        if usage is None:  # Converse always reports usage; if it ever does not, say so rather than meter $0.
            raise ModelBackendError(FailureKind.FAILED, "the model reported no usage", code="NoUsage")
        return ModelReply(text, str(response.get("stopReason", "end_turn")), usage_from(usage))

    def converse_stream(self, call: ModelCall) -> Iterator[StreamPart]:
        try:
            response = self._client.converse_stream(**converse_request(call))
        except (ClientError, BotoCoreError) as exc:
            raise backend_error(exc) from None
        stream = response["stream"]
        stop_reason = "end_turn"
        usage: TokenUsage | None = None
        try:
            for event in stream:
                if "contentBlockDelta" in event:
                    text = event["contentBlockDelta"].get("delta", {}).get("text")
                    if text:
                        yield TextDelta(text)
                elif "messageStop" in event:
                    stop_reason = str(event["messageStop"].get("stopReason", stop_reason))
                elif "metadata" in event:
                    usage = usage_from(event["metadata"].get("usage", {}))
                else:
                    for key in _STREAM_ERRORS:
                        if key in event:
                            error = {"Code": key, "Message": str(event[key].get("message", ""))}
                            raise backend_error(ClientError({"Error": error}, "ConverseStream"))  # type: ignore[typeddict-item]
        except (ClientError, BotoCoreError) as exc:
            raise backend_error(exc) from None
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                close()
        if usage is None:
            raise ModelBackendError(FailureKind.FAILED, "the model stream ended without usage", code="NoUsage")
        yield StreamEnd(stop_reason, usage)
