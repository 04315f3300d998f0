from __future__ import annotations

import pytest

from shared.errors import ConfigError
from shared.settings import env_bool, env_choice, env_int, env_str


def test_env_helpers_read_and_default() -> None:
    env = {"A": " x ", "N": "42", "B": "yes", "C": "redis"}
    assert env_str(env, "A") == "x"
    assert env_str(env, "MISSING", "d") == "d"
    assert env_int(env, "N", 1, minimum=1, maximum=100) == 42
    assert env_int(env, "MISSING", 7, minimum=1, maximum=100) == 7
    assert env_bool(env, "B", False) is True
    assert env_choice(env, "C", "dynamodb", ("redis", "dynamodb")) == "redis"


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda e: env_str(e, "TM_X"), "TM_X"),
        (lambda e: env_int(e, "TM_N", 1, minimum=1, maximum=10), "TM_N"),
        (lambda e: env_bool(e, "TM_B", True), "TM_B"),
        (lambda e: env_choice(e, "TM_C", "a", ("a", "b")), "TM_C"),
    ],
)
def test_bad_settings_name_the_variable(call, field: str) -> None:  # type: ignore[no-untyped-def]
    env = {"TM_N": "99", "TM_B": "maybe", "TM_C": "z"}
    with pytest.raises(ConfigError) as info:
        call(env)
    assert info.value.field == field
    assert field in str(info.value)
