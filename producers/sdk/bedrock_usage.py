"""Token counts from Bedrock responses: pure functions, one per response shape, with no boto3 and no I/O.

Where the four counts come from (the consumer prices them; nothing here does):

- Converse and ConverseStream (``usage``, ``metadata.usage``): inputTokens, outputTokens,
  cacheReadInputTokens, cacheWriteInputTokens.
- InvokeModel, Anthropic body ``usage``: input_tokens, output_tokens, cache_read_input_tokens,
  cache_creation_input_tokens (= cache write).
- InvokeModel, Nova body ``usage``: inputTokens, outputTokens, cacheReadInputTokenCount,
  cacheWriteInputTokenCount.
- InvokeModel, Titan text and embeddings body: inputTextTokenCount and the sum of results[].tokenCount.
- InvokeModel headers, any model: x-amzn-bedrock-input-token-count, -output-token-count,
  -cache-read-input-token-count, -cache-write-input-token-count.
- InvokeModelWithResponseStream, last chunk's ``amazon-bedrock-invocationMetrics``: inputTokenCount,
  outputTokenCount, cacheReadInputTokenCount, cacheWriteInputTokenCount.

For InvokeModel a recognised body wins (it is the only place Anthropic's cache counts appear for certain);
the headers are the fallback for any other model family. When a stream ends without its usage (the caller
stopped reading, or it failed), the SDK estimates from text lengths at ~4 characters per token and says so in
``estimated_by``: an estimate is labelled, a streamed call is never recorded as zero tokens.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from shared.schema import MAX_TOKENS_PER_CALL

CHARS_PER_TOKEN: Final = 4
ESTIMATE_BY_CHARS: Final = "sdk:chars/4"
ESTIMATE_BY_BYTES: Final = "sdk:bytes/4"
INVOCATION_METRICS_KEY: Final = "amazon-bedrock-invocationMetrics"


@dataclass(frozen=True, slots=True)
class TokenUsage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0


def _count(value: object) -> int:
    """A token count as reported, or 0 when absent or not a sane count (a response is not ours to reject)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if type(value) is not int or value < 0:
        return 0
    return min(value, MAX_TOKENS_PER_CALL)


def estimate_tokens(chars: int) -> int:
    return min(-(-max(chars, 0) // CHARS_PER_TOKEN), MAX_TOKENS_PER_CALL)


def usage_from_converse(usage: object) -> TokenUsage:
    """Converse's ``usage`` and ConverseStream's ``metadata.usage``."""
    if not isinstance(usage, Mapping):
        return TokenUsage()
    return TokenUsage(
        _count(usage.get("inputTokens")),
        _count(usage.get("outputTokens")),
        _count(usage.get("cacheReadInputTokens")),
        _count(usage.get("cacheWriteInputTokens")),
    )


def usage_from_invoke_body(body: object) -> TokenUsage | None:
    """An InvokeModel JSON body of Anthropic, Nova or Titan; None when the shape is not recognised."""
    if not isinstance(body, Mapping):
        return None
    usage = body.get("usage")
    if isinstance(usage, Mapping):
        if "input_tokens" in usage or "output_tokens" in usage:  # Anthropic Messages API
            return TokenUsage(
                _count(usage.get("input_tokens")),
                _count(usage.get("output_tokens")),
                _count(usage.get("cache_read_input_tokens")),
                _count(usage.get("cache_creation_input_tokens")),
            )
        if "inputTokens" in usage or "outputTokens" in usage:  # Amazon Nova
            return TokenUsage(
                _count(usage.get("inputTokens")),
                _count(usage.get("outputTokens")),
                _count(usage.get("cacheReadInputTokenCount", usage.get("cacheReadInputTokens"))),
                _count(usage.get("cacheWriteInputTokenCount", usage.get("cacheWriteInputTokens"))),
            )
    if "inputTextTokenCount" in body:  # Amazon Titan text (results[]) and embeddings (no output)
        results = body.get("results")
        output = (
            sum(_count(r.get("tokenCount")) for r in results if isinstance(r, Mapping))
            if isinstance(results, list)
            else 0
        )
        return TokenUsage(_count(body.get("inputTextTokenCount")), min(output, MAX_TOKENS_PER_CALL))
    return None


def usage_from_headers(headers: Mapping[str, str]) -> TokenUsage | None:
    """The ``x-amzn-bedrock-*-token-count`` response headers (botocore lower-cases header names)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    if "x-amzn-bedrock-input-token-count" not in lowered and "x-amzn-bedrock-output-token-count" not in lowered:
        return None
    return TokenUsage(
        _count(lowered.get("x-amzn-bedrock-input-token-count")),
        _count(lowered.get("x-amzn-bedrock-output-token-count")),
        _count(lowered.get("x-amzn-bedrock-cache-read-input-token-count")),
        _count(lowered.get("x-amzn-bedrock-cache-write-input-token-count")),
    )


def usage_from_invoke(raw_body: bytes, content_type: str, headers: Mapping[str, str]) -> TokenUsage | None:
    """InvokeModel: the body if it is JSON of a known family, else the headers, else None."""
    if "json" in content_type.lower() or not content_type:
        try:
            body = json.loads(raw_body)
        except (ValueError, UnicodeDecodeError):
            body = None
        from_body = usage_from_invoke_body(body)
        if from_body is not None:
            return from_body
    return usage_from_headers(headers)


def usage_from_invocation_metrics(metrics: object) -> TokenUsage:
    """The ``amazon-bedrock-invocationMetrics`` object of InvokeModelWithResponseStream's last chunk."""
    if not isinstance(metrics, Mapping):
        return TokenUsage()
    return TokenUsage(
        _count(metrics.get("inputTokenCount")),
        _count(metrics.get("outputTokenCount")),
        _count(metrics.get("cacheReadInputTokenCount")),
        _count(metrics.get("cacheWriteInputTokenCount")),
    )


def converse_input_chars(messages: object, system: object) -> int:
    """Characters of text a Converse request sends (messages and system prompt), for estimates only.
    Images, documents and tool specifications are not counted."""
    return _text_chars(messages) + _text_chars(system)


def _text_chars(value: object) -> int:
    if isinstance(value, Mapping):
        total = 0
        for key, item in value.items():
            if key == "text" and isinstance(item, str):
                total += len(item)
            elif key in ("json", "input") and isinstance(item, Mapping | list):  # tool use input, tool results
                total += len(json.dumps(item, default=str))
            else:
                total += _text_chars(item)
        return total
    if isinstance(value, list):
        return sum(_text_chars(item) for item in value)
    return 0


def converse_delta_chars(delta: object) -> int:
    """Characters of generated output in one ConverseStream ``contentBlockDelta.delta``."""
    if not isinstance(delta, Mapping):
        return 0
    total = 0
    text = delta.get("text")
    if isinstance(text, str):
        total += len(text)
    tool_use = delta.get("toolUse")
    if isinstance(tool_use, Mapping) and isinstance(tool_use.get("input"), str):
        total += len(tool_use["input"])
    reasoning = delta.get("reasoningContent")
    if isinstance(reasoning, Mapping) and isinstance(reasoning.get("text"), str):
        total += len(reasoning["text"])
    return total


@dataclass
class InvokeStreamUsage:
    """What an InvokeModelWithResponseStream has told us so far: the final metrics when they arrive, or the
    Anthropic running counts (message_start / message_delta), or just the bytes seen, for an estimate."""

    metrics: TokenUsage | None = None
    anthropic_input: TokenUsage | None = None
    anthropic_output: int | None = None
    output_bytes: int = 0

    def observe(self, chunk: bytes) -> None:
        self.output_bytes += len(chunk)
        try:
            body: Any = json.loads(chunk)
        except (ValueError, UnicodeDecodeError):
            return
        if not isinstance(body, Mapping):
            return
        if INVOCATION_METRICS_KEY in body:
            self.metrics = usage_from_invocation_metrics(body[INVOCATION_METRICS_KEY])
        kind = body.get("type")
        if kind == "message_start" and isinstance(body.get("message"), Mapping):
            self.anthropic_input = usage_from_invoke_body(body["message"])
        elif kind == "message_delta" and isinstance(body.get("usage"), Mapping):
            self.anthropic_output = _count(body["usage"].get("output_tokens"))

    def result(self, request_bytes: int) -> tuple[TokenUsage, str]:
        """(usage, estimated_by): exact when the metrics arrived, else the best partial knowledge."""
        if self.metrics is not None:
            return self.metrics, ""
        if self.anthropic_input is not None:
            started = self.anthropic_input
            output = self.anthropic_output if self.anthropic_output is not None else started.output_tokens
            return TokenUsage(started.input_tokens, output, started.cache_read_tokens, started.cache_write_tokens), (
                "sdk:anthropic-partial"
            )
        return TokenUsage(estimate_tokens(request_bytes), estimate_tokens(self.output_bytes)), ESTIMATE_BY_BYTES
