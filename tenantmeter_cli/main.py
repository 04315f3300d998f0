"""`meter`: tenantmeter's operator CLI, and `meter demo`, the whole pipeline on one machine.

Pointed at a deployment (or the local stack) by environment or flags: TM_STORE_BACKEND / --store,
TM_REDIS_URL / --redis-url, TM_DYNAMODB_TABLE / --table, TM_TENANT_CONFIG / --tenants. AWS clients honour the
usual AWS_* variables (AWS_ENDPOINT_URL points them at a local moto server).

Exit codes: 0 ok; 1 a check failed or needs a person (reconciliation mismatch, pricing check, a partial
failure); 2 bad usage, bad input or bad config; 3 a sync dry run found changes it did not make; 4 a store or
AWS service could not be reached.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from botocore.exceptions import BotoCoreError, ClientError
from redis.exceptions import RedisError

from shared.errors import StoreUnavailableError, TenantmeterError
from tenantmeter_cli import commands
from tenantmeter_cli.cli_support import EXIT_UNREACHABLE, EXIT_USAGE, CliError, Context


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="meter", description="tenantmeter operator CLI")
    parser.add_argument("--store", choices=("redis", "dynamodb"), help="store backend (TM_STORE_BACKEND)")
    parser.add_argument("--redis-url", help="Redis URL (TM_REDIS_URL)")
    parser.add_argument("--table", help="DynamoDB table (TM_DYNAMODB_TABLE)")
    parser.add_argument("--tenants", help="tenant registry: path or s3://bucket/key (TM_TENANT_CONFIG)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    ctx = Context(args)
    try:
        code: int = args.func(ctx)
        return code
    except CliError as exc:
        print(f"meter: error: {exc}", file=sys.stderr)
        return exc.code
    except StoreUnavailableError as exc:
        print(f"meter: error: store unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except TenantmeterError as exc:
        print(f"meter: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (BotoCoreError, ClientError) as exc:
        print(f"meter: error: AWS call failed: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (RedisError, OSError) as exc:
        print(f"meter: error: store unreachable: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
