"""Parse request bodies into one ``ChatRequest``: the seed's converse shape and OpenAI's chat-completions shape.

Every problem raises a 400 ``ApiError`` naming the field (``prompt.messages[2].content``,
``tags.costCenter``), so a client can fix its request without guessing. Nothing here decides who the tenant
is: no body field is ever read as identity (OpenAI's ``user`` is accepted and ignored). Client tags are
accepted only for an allow-list of keys with a size and charset limit, because they become metric dimensions
and cost-allocation keys.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final, NoReturn

from producers.gateway.models import Message
from producers.gateway.protocol import ApiError, bad_request

DEFAULT_MAX_TOKENS: Final = 1024
MAX_OUTPUT_TOKENS: Final = 128_000
MAX_MESSAGES: Final = 1000
MAX_STOP_SEQUENCES: Final = 8

# Keys a client may tag a request with (the seed's applicationId / costCenter / environment, plus a few common
# allocation keys). Anything else is refused rather than silently dropped, so a typo is seen at once.
DEFAULT_CLIENT_TAG_KEYS: Final = frozenset({"applicationId", "costCenter", "environment", "project", "team", "feature"})
TAG_VALUE_RE: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9 _.:/=+@-]{0,127}")


@dataclass(frozen=True, slots=True)
class ChatRequest:
    model: str
    messages: tuple[Message, ...]
    system: tuple[str, ...] = ()
    max_tokens: int = DEFAULT_MAX_TOKENS
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    stop: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    stream: bool = False
    include_usage: bool = False  # OpenAI stream_options.include_usage: a final usage chunk

    def prompt_texts(self) -> list[str]:
        return [*self.system, *(m.text for m in self.messages)]


def _reject_constant(name: str) -> NoReturn:
    raise ValueError(f"{name} is not valid JSON")


def load_json_object(body: bytes) -> dict[str, Any]:
    if not body:
        raise bad_request("body", "is empty; expected a JSON object")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("body", "is not UTF-8") from None
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except json.JSONDecodeError as exc:
        raise bad_request("body", f"malformed JSON at line {exc.lineno} column {exc.colno}: {exc.msg}") from None
    except ValueError as exc:
        raise bad_request("body", str(exc)) from None
    except RecursionError:
        raise bad_request("body", "JSON nested too deeply") from None
    if not isinstance(obj, dict):
        raise bad_request("body", f"must be a JSON object, got {_kind(obj)}")
    return obj


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise bad_request(f"{where}{unknown[0]}", "unknown field")


def _string(value: object, name: str, *, max_len: int = 512, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise bad_request(name, f"must be a string, got {_kind(value)}")
    if not value and not allow_empty:
        raise bad_request(name, "must not be empty")
    if len(value) > max_len:
        raise bad_request(name, f"longer than {max_len} characters")
    _check_unicode(value, name)
    return value


def _check_unicode(value: str, name: str) -> None:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise bad_request(name, "invalid Unicode (a lone surrogate escape)") from None


def _number(value: object, name: str, low: float, high: float) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise bad_request(name, f"must be a number, got {_kind(value)}")
    if not low <= value <= high:
        raise bad_request(name, f"must be between {low:g} and {high:g}, got {value}")
    return float(value)


def _integer(value: object, name: str, low: int, high: int) -> int:
    if type(value) is not int:
        raise bad_request(name, f"must be an integer, got {_kind(value)}")
    if not low <= value <= high:
        raise bad_request(name, f"must be between {low} and {high}, got {value}")
    return value


def _stop(value: object, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or len(items) > MAX_STOP_SEQUENCES:
        raise bad_request(name, f"must be a string or a list of at most {MAX_STOP_SEQUENCES} strings")
    return tuple(_string(s, f"{name}[{i}]", max_len=256) for i, s in enumerate(items))


def parse_client_tags(value: object, allowed: frozenset[str], name: str = "tags") -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_request(name, f"must be an object of string values, got {_kind(value)}")
    tags: dict[str, str] = {}
    for key, tag in value.items():
        where = f"{name}.{str(key)[:64]}"
        if key not in allowed:
            raise bad_request(where, f"tag key not allowed; allowed keys: {', '.join(sorted(allowed))}")
        if not isinstance(tag, str) or not TAG_VALUE_RE.fullmatch(tag):
            raise bad_request(
                where,
                "must be 1-128 characters of letters, digits, space and _.:/=+@- (starting with a letter or digit)",
            )
        tags[key] = tag
    return tags


def _content_text(content: object, name: str) -> str:
    """A message's text: a string, or a list of text blocks in Bedrock (``{"text"}``) or OpenAI
    (``{"type": "text", "text"}``) form. Images, documents and tool blocks are not supported."""
    if isinstance(content, str):
        _check_unicode(content, name)
        return content
    if not isinstance(content, list) or not content:
        raise bad_request(name, "must be a string or a non-empty list of text blocks")
    parts: list[str] = []
    for i, block in enumerate(content):
        where = f"{name}[{i}]"
        if not isinstance(block, dict) or "text" not in block:
            raise bad_request(where, "only text blocks are supported")
        if block.get("type", "text") != "text" or set(block) - {"type", "text"}:
            raise bad_request(where, 'only text blocks ({"text": ...}) are supported')
        parts.append(_string(block["text"], f"{where}.text", max_len=10_000_000, allow_empty=True))
    return "".join(parts)


def _messages(
    value: object, name: str, roles: Mapping[str, str], extra_keys: frozenset[str] = frozenset()
) -> tuple[tuple[Message, ...], tuple[str, ...]]:
    if not isinstance(value, list) or not value:
        raise bad_request(name, "must be a non-empty array of messages")
    if len(value) > MAX_MESSAGES:
        raise bad_request(name, f"at most {MAX_MESSAGES} messages")
    messages: list[Message] = []
    system: list[str] = []
    for i, raw in enumerate(value):
        where = f"{name}[{i}]"
        if not isinstance(raw, dict):
            raise bad_request(where, "must be an object with role and content")
        _check_keys(raw, frozenset({"role", "content"}) | extra_keys, f"{where}.")
        raw_role = raw.get("role")
        role = roles.get(raw_role) if isinstance(raw_role, str) else None
        if role is None:
            raise bad_request(f"{where}.role", f"must be one of {', '.join(sorted(roles))}")
        if "content" not in raw:
            raise bad_request(f"{where}.content", "is required")
        text = _content_text(raw["content"], f"{where}.content")
        if role == "system":
            system.append(text)
        else:
            messages.append(Message(role, text))
    if not messages:
        raise bad_request(name, "needs at least one user or assistant message")
    return tuple(messages), tuple(system)


_CONVERSE_ROLES: Final = {"system": "system", "user": "user", "assistant": "assistant"}
_CONVERSE_KEYS: Final = frozenset({"model", "prompt", "messages", "parameters", "tags"})
_PROMPT_KEYS: Final = frozenset({"messages", "parameters"})
_PARAMETER_KEYS: Final = frozenset({"max_tokens", "temperature", "top_p", "top_k", "stop_sequences"})


def parse_converse(
    obj: Mapping[str, Any],
    *,
    client_tag_keys: frozenset[str] = DEFAULT_CLIENT_TAG_KEYS,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> ChatRequest:
    """The seed's shape ``{"model", "prompt": {"messages", "parameters"}, "tags"}``; ``messages`` and
    ``parameters`` may also sit at the top level (but not both ways at once)."""
    _check_keys(obj, _CONVERSE_KEYS, "")
    model = _string(obj.get("model"), "model") if "model" in obj else _missing("model")
    if "prompt" in obj:
        if "messages" in obj or "parameters" in obj:
            raise bad_request("prompt", "give messages and parameters either inside prompt or at the top level")
        prompt = obj["prompt"]
        if not isinstance(prompt, dict):
            raise bad_request("prompt", f"must be an object, got {_kind(prompt)}")
        _check_keys(prompt, _PROMPT_KEYS, "prompt.")
        where = "prompt."
    else:
        prompt = obj
        where = ""
    if "messages" not in prompt:
        raise bad_request(f"{where}messages", "is required")
    messages, system = _messages(prompt["messages"], f"{where}messages", _CONVERSE_ROLES)
    params = prompt.get("parameters", {})
    if not isinstance(params, dict):
        raise bad_request(f"{where}parameters", f"must be an object, got {_kind(params)}")
    _check_keys(params, _PARAMETER_KEYS, f"{where}parameters.")
    p = f"{where}parameters."
    max_tokens = params.get("max_tokens")
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        max_tokens=default_max_tokens
        if max_tokens is None
        else _integer(max_tokens, f"{p}max_tokens", 1, MAX_OUTPUT_TOKENS),
        temperature=_number(params.get("temperature"), f"{p}temperature", 0.0, 2.0),
        top_p=_number(params.get("top_p"), f"{p}top_p", 0.0, 1.0),
        top_k=None if params.get("top_k") is None else _integer(params["top_k"], f"{p}top_k", 0, 100_000),
        stop=_stop(params.get("stop_sequences"), f"{p}stop_sequences"),
        tags=parse_client_tags(obj.get("tags"), client_tag_keys),
    )


def _missing(name: str) -> NoReturn:
    raise bad_request(name, "is required")


_OPENAI_ROLES: Final = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}
# Accepted and ignored: they do not change what the model is asked or what is metered. ``user`` in particular
# is never identity: the tenant comes from the API key.
_OPENAI_IGNORED: Final = frozenset(
    {"user", "seed", "store", "service_tier", "parallel_tool_calls", "frequency_penalty", "presence_penalty"}
)
_OPENAI_KEYS: Final = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "stop",
        "stream",
        "stream_options",
        "n",
        "metadata",
        "tags",
        "response_format",
        "logprobs",
    }
)
_OPENAI_UNSUPPORTED: Final = frozenset(
    {"tools", "tool_choice", "functions", "function_call", "audio", "modalities", "prediction", "top_logprobs"}
)


def _require_default(obj: Mapping[str, Any], key: str, ok: Callable[[object], bool], why: str) -> None:
    if key in obj and obj[key] is not None and not ok(obj[key]):
        raise bad_request(key, why)


def parse_openai_chat(
    obj: Mapping[str, Any],
    *,
    client_tag_keys: frozenset[str] = DEFAULT_CLIENT_TAG_KEYS,
    default_max_tokens: int = DEFAULT_MAX_TOKENS,
) -> ChatRequest:
    """OpenAI ``POST /v1/chat/completions`` with text messages. Tags come from ``metadata`` (OpenAI's own
    field) or ``tags``, under the same allow-list as the converse API."""
    for key in sorted(obj):
        if key in _OPENAI_UNSUPPORTED:
            raise bad_request(key, "not supported by this gateway (text chat only)")
    _check_keys(obj, _OPENAI_KEYS | _OPENAI_IGNORED, "")
    model = _string(obj.get("model"), "model") if "model" in obj else _missing("model")
    if "messages" not in obj:
        raise bad_request("messages", "is required")
    messages, system = _messages(obj["messages"], "messages", _OPENAI_ROLES, frozenset({"name"}))
    _require_default(obj, "n", lambda v: v == 1 and type(v) is int, "only n=1 is supported")
    _require_default(obj, "logprobs", lambda v: v is False, "logprobs are not supported")
    _require_default(
        obj,
        "response_format",
        lambda v: isinstance(v, dict) and v.get("type") == "text",
        "only the text response format is supported",
    )
    if obj.get("max_tokens") is not None and obj.get("max_completion_tokens") is not None:
        raise bad_request("max_completion_tokens", "give max_tokens or max_completion_tokens, not both")
    limit_key = "max_completion_tokens" if obj.get("max_completion_tokens") is not None else "max_tokens"
    limit = obj.get(limit_key)
    stream = obj.get("stream", False)
    if not isinstance(stream, bool):
        raise bad_request("stream", f"must be true or false, got {_kind(stream)}")
    include_usage = False
    options = obj.get("stream_options")
    if options is not None:
        if not isinstance(options, dict) or set(options) - {"include_usage"}:
            raise bad_request("stream_options", 'must be {"include_usage": true|false}')
        include_usage = options.get("include_usage", False)
        if not isinstance(include_usage, bool):
            raise bad_request("stream_options.include_usage", "must be true or false")
    if "metadata" in obj and "tags" in obj:
        raise bad_request("tags", "give tags in metadata or in tags, not both")
    tag_key = "tags" if "tags" in obj else "metadata"
    return ChatRequest(
        model=model,
        messages=messages,
        system=system,
        max_tokens=default_max_tokens if limit is None else _integer(limit, limit_key, 1, MAX_OUTPUT_TOKENS),
        temperature=_number(obj.get("temperature"), "temperature", 0.0, 2.0),
        top_p=_number(obj.get("top_p"), "top_p", 0.0, 1.0),
        stop=_stop(obj.get("stop"), "stop"),
        tags=parse_client_tags(obj.get(tag_key), client_tag_keys, tag_key),
        stream=stream,
        include_usage=include_usage,
    )


def unsupported_media(content_type: str) -> ApiError:
    return ApiError(415, "unsupported_media_type", f"expected application/json, got {content_type[:80]!r}")
