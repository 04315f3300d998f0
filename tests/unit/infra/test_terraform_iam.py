"""IAM least privilege, statically: no identity policy grants ``*`` actions or service wildcards, and ``*``
resources appear only for the actions AWS gives no resource-level permissions. (What each function actually
calls is checked against these policies by tests/integration/test_iam_recorded.py.)"""

from __future__ import annotations

import itertools
import re

import pytest

from tests.unit.infra.tfmodel import (
    Statement,
    all_policy_documents,
    dynamic_conditions,
    load_module,
    policy_statements,
)

# Actions that support no resource-level permissions, so "*" is the only resource AWS accepts for them.
STAR_ONLY_ACTIONS = frozenset(
    {
        "xray:PutTraceSegments",
        "xray:PutTelemetryRecords",
        "ec2:DescribeNetworkInterfaces",
        "ec2:DescribeSubnets",
        "kinesis:ListStreams",
    }
)
ACTION = re.compile(r"^[a-z0-9-]+:[A-Z][A-Za-z]+$")


def identity_statements() -> list[tuple[str, Statement]]:
    """Statements of every policy attached to a role, under every combination of its dynamic conditions.
    Key policies, bucket policies (they name principals) and trust policies (sts:AssumeRole) are not."""
    out: dict[tuple[str, Statement], None] = {}  # ordered and without the duplicates combinations repeat
    for rel, name, doc in all_policy_documents():
        conditions = sorted(set(dynamic_conditions(doc)))
        for flags in itertools.product([False, True], repeat=len(conditions)):
            configuration = dict(zip(conditions, flags, strict=True))
            for st in policy_statements(doc, configuration, load_module(rel).locals):
                if st.has_principals or "sts:AssumeRole" in st.actions:
                    continue
                out[(f"{rel}:{name}:{st.sid}", st)] = None
    return list(out)


STATEMENTS = identity_statements()


def test_there_are_role_policies_to_check() -> None:
    docs = {where.rsplit(":", 1)[0] for where, _ in STATEMENTS}
    assert {"modules/metering:function", "modules/gateway:function", "modules/reporting:function"} <= docs
    assert "modules/lambda_function:runtime" in docs


@pytest.mark.parametrize(("where", "statement"), STATEMENTS, ids=[w for w, _ in STATEMENTS])
def test_actions_are_named_exactly(where: str, statement: Statement) -> None:
    assert statement.effect == "Allow"
    assert statement.actions, f"{where}: no actions"
    for action in statement.actions:
        assert action != "*", f"{where}: grants every action"
        assert ACTION.match(action), f"{where}: {action!r} is a wildcard or not an IAM action name"


@pytest.mark.parametrize(("where", "statement"), STATEMENTS, ids=[w for w, _ in STATEMENTS])
def test_star_resources_only_where_aws_allows_nothing_narrower(where: str, statement: Statement) -> None:
    assert statement.resources, f"{where}: no resources"
    if "*" in statement.resources:
        assert statement.resources == ("*",), f"{where}: mixes * with named resources"
        assert set(statement.actions) <= STAR_ONLY_ACTIONS, (
            f"{where}: {sorted(set(statement.actions) - STAR_ONLY_ACTIONS)} support resource-level permissions"
        )
    for resource in statement.resources:
        # A known resource is referenced by its Terraform ARN, never a hand-written wildcard on a whole service.
        assert not re.fullmatch(r"arn:[^:]+:[a-z0-9-]+:\*?:\*?:\*", resource), f"{where}: {resource} is a wildcard"


def test_data_access_is_limited_to_named_resources() -> None:
    by_action: dict[str, set[str]] = {}
    for _, st in STATEMENTS:
        for action in st.actions:
            by_action.setdefault(action, set()).update(st.resources)
    # Spot checks of the resources behind the most sensitive grants.
    assert by_action["s3:GetObject"] == {"${var.tenant_registry.object_arn}"}
    assert by_action["s3:PutObject"] == {"${module.bucket.bucket_arn}/${local.prefix}/*"}
    assert by_action["kinesis:PutRecords"] == {"${var.stream_arn}"}
    assert by_action["sns:Publish"] == {"${values(var.alert_topic_arns)}", "${var.tenant_contact_topic_arns}"}
    assert by_action["secretsmanager:GetSecretValue"] == {"${var.store.redis_auth_secret_arn}"}
    assert by_action["dynamodb:GetItem"] == {"${var.store.table_arn}"}
