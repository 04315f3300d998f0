"""SageMaker endpoint backend: a model id that names an endpoint is served by that endpoint (seed guidance).

The request body is the OpenAI-style chat ``{"messages", "max_tokens", ...}`` that the common LLM serving
containers accept (Hugging Face TGI's Messages API, the LMI/DJL chat schema, vLLM). Responses in that shape
usually carry ``usage``; a container that answers TGI's ``generated_text`` shape reports none. Then the
gateway counts the tokens itself, one per 4 UTF-8 bytes rounded up (``ESTIMATED_BY``), and the usage event
says so, so an estimated count is never mistaken for a measured one.

Streaming is not asked of the endpoint: a streamed request gets the whole answer as one delta.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from typing import Any, Final, Protocol

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
from shared.schema import MAX_TOKENS_PER_CALL

ESTIMATED_BY: Final = "gateway:utf8_bytes_div_4"
_THROTTLED: Final = frozenset({"ThrottlingException", "ServiceUnavailable", "ModelNotReadyException"})
_REJECTED: Final = frozenset({"ValidationError"})
_FINISH: Final = {"length": "max_tokens", "stop": "end_turn", "eos_token": "end_turn", "stop_sequence": "stop_sequence"}


class SageMakerRuntimeClient(Protocol):
    """The one sagemaker-runtime call used (boto3's client satisfies it)."""

    def invoke_endpoint(self, **kwargs: Any) -> Mapping[str, Any]: ...


def estimate_tokens(text: str) -> int:
    return -(-len(text.encode()) // 4)


def _count(value: object) -> bool:
    """A usable reported token count: a plain non-negative integer within the schema's limit."""
    return type(value) is int and 0 <= value <= MAX_TOKENS_PER_CALL


def chat_payload(call: ModelCall) -> dict[str, Any]:
    messages = [{"role": "system", "content": text} for text in call.system]
    messages += [{"role": m.role, "content": m.text} for m in call.messages]
    payload: dict[str, Any] = {"messages": messages, "max_tokens": call.max_tokens}
    if call.temperature is not None:
        payload["temperature"] = call.temperature
    if call.top_p is not None:
        payload["top_p"] = call.top_p
    if call.top_k is not None:
        payload["top_k"] = call.top_k
    if call.stop:
        payload["stop"] = list(call.stop)
    return payload


def parse_reply(call: ModelCall, raw: object) -> ModelReply:
    """Read the chat-completions shape (with usage when present) or TGI's ``generated_text`` shape."""
    text: str | None = None
    finish = "end_turn"
    usage_raw: object = None
    if isinstance(raw, dict) and isinstance(raw.get("choices"), list) and raw["choices"]:
        choice = raw["choices"][0]
        if isinstance(choice, dict):
            message = choice.get("message")
            if isinstance(message, dict) and isinstance(message.get("content"), str):
                text = message["content"]
            finish = _FINISH.get(str(choice.get("finish_reason")), "end_turn")
        usage_raw = raw.get("usage")
    elif isinstance(raw, list) and raw and isinstance(raw[0], dict) and isinstance(raw[0].get("generated_text"), str):
        text = raw[0]["generated_text"]
    elif isinstance(raw, dict) and isinstance(raw.get("generated_text"), str):
        text = raw["generated_text"]
    if text is None:
        raise ModelBackendError(FailureKind.FAILED, "the endpoint answered in an unknown shape", code="BadResponse")
    if (
        isinstance(usage_raw, dict)
        and _count(usage_raw.get("prompt_tokens"))
        and _count(usage_raw.get("completion_tokens"))
    ):
        usage = TokenUsage(input_tokens=usage_raw["prompt_tokens"], output_tokens=usage_raw["completion_tokens"])
        return ModelReply(text, finish, usage)
    prompt = "".join([*call.system, *(m.text for m in call.messages)])
    usage = TokenUsage(input_tokens=estimate_tokens(prompt), output_tokens=estimate_tokens(text))
    return ModelReply(text, finish, usage, estimated_by=ESTIMATED_BY)


class SageMakerBackend:
    def __init__(self, client: SageMakerRuntimeClient) -> None:
        self._client = client

    def converse(self, call: ModelCall) -> ModelReply:
        try:
            response = self._client.invoke_endpoint(
                EndpointName=call.model_id,
                Body=json.dumps(chat_payload(call)).encode(),
                ContentType="application/json",
                Accept="application/json",
            )
            body = response["Body"].read()
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", "ClientError"))
            if code in _THROTTLED:
                raise ModelBackendError(FailureKind.THROTTLED, "the endpoint is busy; retry later", code=code) from None
            if code in _REJECTED:
                raise ModelBackendError(FailureKind.REJECTED, "the endpoint rejected the request", code=code) from None
            raise ModelBackendError(FailureKind.FAILED, f"the endpoint call failed ({code})", code=code) from None
        except BotoCoreError as exc:
            raise ModelBackendError(FailureKind.FAILED, f"the endpoint call failed ({type(exc).__name__})") from None
        try:
            raw = json.loads(body)
        except ValueError:
            raise ModelBackendError(
                FailureKind.FAILED, "the endpoint answered with invalid JSON", code="BadResponse"
            ) from None
        return parse_reply(call, raw)

    def converse_stream(self, call: ModelCall) -> Iterator[StreamPart]:
        reply = self.converse(call)
        if reply.text:
            yield TextDelta(reply.text)
        yield StreamEnd(reply.stop_reason, reply.usage, reply.estimated_by)
