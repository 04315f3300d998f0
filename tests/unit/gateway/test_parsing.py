"""Request parsing: the seed's converse shape, OpenAI's chat shape, and errors that name the field."""

from __future__ import annotations

from typing import Any

import pytest

from producers.gateway.models import Message
from producers.gateway.parsing import (
    DEFAULT_CLIENT_TAG_KEYS,
    DEFAULT_MAX_TOKENS,
    load_json_object,
    parse_client_tags,
    parse_converse,
    parse_openai_chat,
)
from producers.gateway.protocol import ApiError
from tests.unit.gateway.support import Gateway, body_of, converse_body

# The example request from the seed (bedrock-proactive-cost-management-part2), verbatim.
SEED_EXAMPLE: dict[str, Any] = {
    "model": "claude-3-5-haiku",
    "prompt": {
        "messages": [
            {"role": "user", "content": "Explain the benefits of using S3 using only 100 words."},
            {"role": "assistant", "content": "You are a helpful AWS expert."},
        ],
        "parameters": {"max_tokens": 2000, "temperature": 0.7, "top_p": 0.9, "top_k": 50},
    },
    "tags": {"applicationId": "aws-documentation-helper", "costCenter": "support", "environment": "production"},
}


USER_X = [{"role": "user", "content": "x"}]


def field_of(call: Any) -> str:
    with pytest.raises(ApiError) as info:
        call()
    assert info.value.status == 400
    return info.value.field


def test_the_seed_example_parses() -> None:
    chat = parse_converse(SEED_EXAMPLE)
    assert chat.model == "claude-3-5-haiku"
    assert chat.messages == (
        Message("user", "Explain the benefits of using S3 using only 100 words."),
        Message("assistant", "You are a helpful AWS expert."),
    )
    assert (chat.max_tokens, chat.temperature, chat.top_p, chat.top_k) == (2000, 0.7, 0.9, 50)
    assert dict(chat.tags) == SEED_EXAMPLE["tags"]
    assert chat.stream is False


def test_converse_accepts_top_level_messages_system_role_and_text_blocks() -> None:
    chat = parse_converse(
        {
            "model": "nova-micro",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"text": "Hello "}, {"type": "text", "text": "there"}]},
            ],
        }
    )
    assert chat.system == ("Be brief.",)
    assert chat.messages == (Message("user", "Hello there"),)
    assert chat.max_tokens == DEFAULT_MAX_TOKENS


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prompt": {"messages": [{"role": "user", "content": "x"}]}}, "model"),
        ({"model": 7, "prompt": {"messages": []}}, "model"),
        ({"model": "m", "prompt": {"messages": []}}, "prompt.messages"),
        ({"model": "m", "prompt": {"messages": [{"role": "robot", "content": "x"}]}}, "prompt.messages[0].role"),
        ({"model": "m", "prompt": {"messages": [{"role": "user"}]}}, "prompt.messages[0].content"),
        ({"model": "m", "prompt": {"messages": [{"role": "user", "content": 5}]}}, "prompt.messages[0].content"),
        (
            {"model": "m", "prompt": {"messages": [{"role": "user", "content": [{"image": {}}]}]}},
            "prompt.messages[0].content[0]",
        ),
        ({"model": "m", "prompt": {"messages": [{"role": "system", "content": "x"}]}}, "prompt.messages"),
        (
            {"model": "m", "prompt": {"messages": USER_X, "parameters": {"max_tokens": 0}}},
            "prompt.parameters.max_tokens",
        ),
        (
            {"model": "m", "prompt": {"messages": USER_X, "parameters": {"max_tokens": "9"}}},
            "prompt.parameters.max_tokens",
        ),
        (
            {"model": "m", "prompt": {"messages": USER_X, "parameters": {"top_p": 1.5}}},
            "prompt.parameters.top_p",
        ),
        (
            {"model": "m", "prompt": {"messages": USER_X, "parameters": {"seed": 1}}},
            "prompt.parameters.seed",
        ),
        ({"model": "m", "messages": [{"role": "user", "content": "x"}], "tenant_id": "globex"}, "tenant_id"),
        ({"model": "m", "messages": USER_X, "tags": {"tenantId": "globex"}}, "tags.tenantId"),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "tags": {"costCenter": "a\nb"}},
            "tags.costCenter",
        ),
        (
            {"model": "m", "messages": [{"role": "user", "content": "x"}], "prompt": {"messages": []}},
            "prompt",
        ),
    ],
)
def test_converse_errors_name_the_field(body: dict[str, Any], field: str) -> None:
    assert field_of(lambda: parse_converse(body)) == field


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"", "empty"),
        (b"{not json", "malformed JSON at line 1 column 2"),
        (b"[1, 2]", "must be a JSON object, got array"),
        (b'{"a": NaN}', "NaN is not valid JSON"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_bodies_name_the_body(raw: bytes, fragment: str) -> None:
    with pytest.raises(ApiError) as info:
        load_json_object(raw)
    assert info.value.field == "body"
    assert fragment in info.value.message


def test_client_tags_allow_list_size_and_charset() -> None:
    allowed = DEFAULT_CLIENT_TAG_KEYS
    assert parse_client_tags({"costCenter": "cc-42", "project": "apollo 11"}, allowed) == {
        "costCenter": "cc-42",
        "project": "apollo 11",
    }
    assert field_of(lambda: parse_client_tags({"costCenter": "x" * 129}, allowed)) == "tags.costCenter"
    assert field_of(lambda: parse_client_tags({"costCenter": ""}, allowed)) == "tags.costCenter"
    assert field_of(lambda: parse_client_tags({"costCenter": "<script>"}, allowed)) == "tags.costCenter"
    assert field_of(lambda: parse_client_tags({"costCenter": 42}, allowed)) == "tags.costCenter"
    assert field_of(lambda: parse_client_tags(["costCenter"], allowed)) == "tags"


def test_openai_chat_parses_stream_usage_option_and_developer_role() -> None:
    chat = parse_openai_chat(
        {
            "model": "gpt-alias",
            "messages": [
                {"role": "developer", "content": "Be terse."},
                {"role": "user", "content": [{"type": "text", "text": "Hi"}], "name": "bob"},
            ],
            "max_completion_tokens": 64,
            "temperature": 1.5,
            "stop": "END",
            "stream": True,
            "stream_options": {"include_usage": True},
            "metadata": {"applicationId": "chat-ui"},
            "user": "globex",  # accepted and ignored: never identity
            "n": 1,
        }
    )
    assert chat.system == ("Be terse.",)
    assert chat.messages == (Message("user", "Hi"),)
    assert (chat.max_tokens, chat.temperature, chat.stop) == (64, 1.5, ("END",))
    assert chat.stream and chat.include_usage
    assert dict(chat.tags) == {"applicationId": "chat-ui"}


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"tools": []}, "tools"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"stream": "yes"}, "stream"),
        ({"stream_options": {"include_usage": "y"}}, "stream_options.include_usage"),
        ({"max_tokens": 10, "max_completion_tokens": 10}, "max_completion_tokens"),
        ({"max_tokens": 10**9}, "max_tokens"),
        ({"metadata": {"team": "a"}, "tags": {"team": "b"}}, "tags"),
        ({"metadata": {"user": "x"}}, "metadata.user"),
        ({"frobnicate": 1}, "frobnicate"),
    ],
)
def test_openai_chat_errors_name_the_field(extra: dict[str, Any], field: str) -> None:
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}], **extra}
    assert field_of(lambda: parse_openai_chat(body)) == field


def test_openai_tool_messages_are_refused() -> None:
    body = {"model": "m", "messages": [{"role": "tool", "content": "x"}]}
    assert field_of(lambda: parse_openai_chat(body)) == "messages[0].role"


def test_hostile_json_gets_a_400_naming_the_problem_not_a_500(gw: Gateway) -> None:
    # GIVEN bodies a fuzzer would send: deep nesting, and a lone surrogate escape in the prompt
    deep = gw.post("/v1/converse", b"[" * 5000 + b"]" * 5000)
    surrogate = gw.post(
        "/v1/converse",
        b'{"model": "claude-3-5-haiku", "prompt": {"messages": [{"role": "user", "content": "hi \\ud800"}]}}',
    )
    # THEN each is a JSON 400 naming the field, and no usage event or model call happened
    assert deep.status == 400 and "nested too deeply" in body_of(deep)["error"]["message"]
    assert surrogate.status == 400
    assert body_of(surrogate)["error"]["param"] == "prompt.messages[0].content"
    assert gw.sink.events == []


def test_an_api_key_that_is_not_valid_unicode_is_just_a_bad_key(gw: Gateway) -> None:
    response = gw.post("/v1/converse", converse_body(), key="tm_\ud800")
    assert response.status == 401
