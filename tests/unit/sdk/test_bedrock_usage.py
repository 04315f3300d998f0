"""Token counts from Bedrock response shapes: the pure extraction rules, including bad and partial input."""

from __future__ import annotations

import json

from producers.sdk.bedrock_usage import (
    InvokeStreamUsage,
    TokenUsage,
    converse_delta_chars,
    converse_input_chars,
    estimate_tokens,
    usage_from_converse,
    usage_from_headers,
    usage_from_invoke,
    usage_from_invoke_body,
)


def test_converse_usage_ignores_what_is_not_a_count() -> None:
    usage = usage_from_converse({"inputTokens": 5, "outputTokens": -3, "cacheReadInputTokens": "7", "x": 1})
    assert usage == TokenUsage(5, 0, 7, 0)
    assert usage_from_converse(None) == TokenUsage()
    assert usage_from_converse({"inputTokens": True}) == TokenUsage()  # a bool is not a count


def test_an_absurd_count_is_capped_not_trusted() -> None:
    assert usage_from_converse({"inputTokens": 10**12}).input_tokens == 10_000_000


def test_invoke_body_families_and_unknown_shapes() -> None:
    assert usage_from_invoke_body({"usage": {"input_tokens": 1, "output_tokens": 2}}) == TokenUsage(1, 2)
    assert usage_from_invoke_body({"usage": {"inputTokens": 3, "outputTokens": 4}}) == TokenUsage(3, 4)
    titan = {"inputTextTokenCount": 5, "results": [{"tokenCount": 6}, {"tokenCount": 7}, "junk"]}
    assert usage_from_invoke_body(titan) == TokenUsage(5, 13)
    assert usage_from_invoke_body({"generation": "x"}) is None
    assert usage_from_invoke_body(["not", "an", "object"]) is None


def test_headers_are_case_insensitive_and_optional() -> None:
    headers = {
        "X-Amzn-Bedrock-Input-Token-Count": "12",
        "x-amzn-bedrock-output-token-count": "3",
        "x-amzn-bedrock-cache-read-input-token-count": "100",
    }
    assert usage_from_headers(headers) == TokenUsage(12, 3, 100, 0)
    assert usage_from_headers({"content-type": "application/json"}) is None


def test_a_known_body_wins_over_headers_and_non_json_falls_back_to_them() -> None:
    headers = {"x-amzn-bedrock-input-token-count": "99", "x-amzn-bedrock-output-token-count": "98"}
    body = json.dumps({"usage": {"input_tokens": 1, "output_tokens": 2}}).encode()
    assert usage_from_invoke(body, "application/json", headers) == TokenUsage(1, 2)
    assert usage_from_invoke(b"\x89PNG...", "image/png", headers) == TokenUsage(99, 98)
    assert usage_from_invoke(b"{not json", "application/json", {}) is None


def test_input_characters_count_text_and_tool_payloads_but_not_images() -> None:
    messages = [
        {"role": "user", "content": [{"text": "abcd"}, {"image": {"format": "png", "source": {"bytes": b"x" * 999}}}]},
        {"role": "assistant", "content": [{"toolUse": {"toolUseId": "t", "name": "n", "input": {"q": "x"}}}]},
        {"role": "user", "content": [{"toolResult": {"toolUseId": "t", "content": [{"text": "ef"}, {"json": [1]}]}}]},
    ]
    system = [{"text": "ghi"}]
    # 4 + len('{"q": "x"}') = 10 + 2 + len('[1]') = 3 + 3
    assert converse_input_chars(messages, system) == 4 + 10 + 2 + 3 + 3


def test_delta_characters_cover_text_tool_input_and_reasoning() -> None:
    assert converse_delta_chars({"text": "abc"}) == 3
    assert converse_delta_chars({"toolUse": {"input": '{"a":'}}) == 5
    assert converse_delta_chars({"reasoningContent": {"text": "hmm"}}) == 3
    assert converse_delta_chars("junk") == 0


def test_estimates_round_up() -> None:
    assert [estimate_tokens(n) for n in (0, 1, 4, 5)] == [0, 1, 1, 2]


def test_invoke_stream_without_any_usage_estimates_from_bytes() -> None:
    seen = InvokeStreamUsage()
    seen.observe(b'{"outputText": "12345678"}')
    seen.observe(b"not json")
    usage, how = seen.result(request_bytes=40)
    assert how == "sdk:bytes/4"
    assert usage == TokenUsage(10, estimate_tokens(len(b'{"outputText": "12345678"}') + len(b"not json")))
