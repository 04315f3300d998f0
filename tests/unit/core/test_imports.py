"""The core must stay pure: importing it loads no AWS SDK, no Redis client, no network library."""

from __future__ import annotations

import subprocess
import sys

CORE = [
    "shared",
    "shared.schema",
    "shared.pricing",
    "shared.money",
    "shared.tenants",
    "shared.windows",
    "shared.decisions",
    "shared.errors",
]


def test_core_imports_no_io_libraries() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'boto3', 'botocore', 'redis', 'aws_lambda_powertools', 'aws_kinesis_agg', 'socket', 'http', 'urllib3'})\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""
