"""Response bodies: the converse API's answer, OpenAI chat completions (whole and as server-sent events), and
the usage report. Pure functions of already-decided facts; money leaves as exact decimal strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from producers.gateway.protocol import dumps
from shared.money import NANOS_PER_USD
from shared.pricing import TokenUsage

# Bedrock stop reasons -> OpenAI finish_reason.
_FINISH: Final = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "content_filtered": "content_filter",
    "guardrail_intervened": "content_filter",
    "tool_use": "tool_calls",
}


def usd(nanos: int) -> str:
    """Exact USD as a plain decimal string without trailing zeros: ``0.000123456``, ``500``. Integer
    arithmetic only (it runs for every response header)."""
    sign = "-" if nanos < 0 else ""
    whole, frac = divmod(abs(nanos), NANOS_PER_USD)
    return f"{sign}{whole}.{frac:09d}".rstrip("0").rstrip(".") if frac else f"{sign}{whole}"


def finish_reason(stop_reason: str) -> str:
    return _FINISH.get(stop_reason, "stop")


def usage_object(usage: TokenUsage, cost_nanos: int | None, estimated_by: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "input_tokens": usage.input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_read_tokens": usage.cache_read_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens + usage.cache_read_tokens + usage.cache_write_tokens,
    }
    if cost_nanos is not None:
        out["cost_usd"] = usd(cost_nanos)
    if estimated_by:
        out["estimated_by"] = estimated_by
    return out


def converse_body(
    *,
    request_id: str,
    alias: str,
    model_id: str,
    text: str,
    stop_reason: str,
    usage: TokenUsage,
    cost_nanos: int | None,
    estimated_by: str,
    latency_ms: int,
    tags: Mapping[str, str],
) -> dict[str, Any]:
    return {
        "id": request_id,
        "model": alias,
        "model_id": model_id,
        "output": {"message": {"role": "assistant", "content": text}},
        "stop_reason": stop_reason,
        "usage": usage_object(usage, cost_nanos, estimated_by),
        "latency_ms": latency_ms,
        "tags": dict(tags),
    }


def openai_usage(usage: TokenUsage) -> dict[str, Any]:
    prompt = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
    return {
        "prompt_tokens": prompt,
        "completion_tokens": usage.output_tokens,
        "total_tokens": prompt + usage.output_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cache_read_tokens},
    }


def openai_completion(
    *, request_id: str, alias: str, created: datetime, text: str, stop_reason: str, usage: TokenUsage
) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion",
        "created": int(created.timestamp()),
        "model": alias,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": finish_reason(stop_reason),
            }
        ],
        "usage": openai_usage(usage),
    }


def sse(obj: Any) -> bytes:
    return b"data: " + dumps(obj) + b"\n\n"


SSE_DONE: Final = b"data: [DONE]\n\n"


def openai_chunk(
    *,
    request_id: str,
    alias: str,
    created: datetime,
    delta: dict[str, Any] | None = None,
    finish: str | None = None,
    usage: TokenUsage | None = None,
) -> bytes:
    chunk: dict[str, Any] = {
        "id": f"chatcmpl-{request_id}",
        "object": "chat.completion.chunk",
        "created": int(created.timestamp()),
        "model": alias,
        "choices": [] if usage is not None else [{"index": 0, "delta": delta or {}, "finish_reason": finish}],
    }
    if usage is not None:
        chunk["usage"] = openai_usage(usage)
    return sse(chunk)
