"""What every `meter` command shares: the context (flags and environment), errors, exit codes, argument types."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

# 3 is `pricing sync` / `profiles sync` saying a dry run found changes it did not make.
EXIT_OK, EXIT_CHECK_FAILED, EXIT_USAGE, EXIT_PENDING, EXIT_UNREACHABLE = 0, 1, 2, 3, 4

WINDOW_ALIASES = {"minute": "1m", "5min": "5m", "60min": "60m", "1h": "60m"}


class CliError(Exception):
    """A user-facing error: printed as one line, exit code attached."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Context:
    args: argparse.Namespace

    @property
    def as_json(self) -> bool:
        return bool(getattr(self.args, "json", False))

    def tenants_source(self) -> str:
        source = self.args.tenants or os.environ.get("TM_TENANT_CONFIG", "")
        if not source:
            raise CliError("no tenant registry: pass --tenants PATH|s3://bucket/key or set TM_TENANT_CONFIG")
        return str(source)

    def store(self) -> Any:
        from shared.adapters.stores import build_store

        backend = self.args.store or os.environ.get("TM_STORE_BACKEND", "redis")
        redis_url = self.args.redis_url or os.environ.get("TM_REDIS_URL") or None
        table = self.args.table or os.environ.get("TM_DYNAMODB_TABLE") or None
        if backend == "redis" and not redis_url:
            raise CliError("the redis store needs --redis-url or TM_REDIS_URL")
        if redis_url and not redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise CliError(
                f"--redis-url / TM_REDIS_URL must start with redis://, rediss:// or unix://, got {redis_url!r}"
            )
        if backend == "dynamodb" and not table:
            raise CliError("the dynamodb store needs --table or TM_DYNAMODB_TABLE")
        return build_store(backend, redis_url=redis_url, dynamodb_table=table)


def window_arg(text: str) -> str:
    from shared.windows import WINDOWS

    name = WINDOW_ALIASES.get(text, text)
    if name not in WINDOWS:
        raise argparse.ArgumentTypeError(f"unknown window {text!r}; use minute, 5m, 60m, hour, day or month")
    return name


def day_arg(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date YYYY-MM-DD: {text!r}") from None


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def emit(ctx: Context, data: Any, render: Callable[[], None]) -> None:
    if ctx.as_json:
        print(json.dumps(data, indent=2, default=str))
    else:
        render()


def now_utc() -> datetime:
    return datetime.now(UTC)


def parse_duration(text: str) -> timedelta:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        value = float(text[:-1]) * units[text[-1]]
        if not 0 < value <= 366 * 86400:
            raise ValueError(text)
        return timedelta(seconds=value)
    except (KeyError, ValueError, IndexError, OverflowError):
        raise argparse.ArgumentTypeError(f"a duration up to a year, like 90s, 15m, 2h or 1d, got {text!r}") from None
