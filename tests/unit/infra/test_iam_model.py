"""The pure half of the recorded-IAM check: API calls mapped to the IAM actions and resources AWS evaluates,
Terraform policy expressions resolved to ARNs, and IAM's wildcard matching."""

from __future__ import annotations

import pytest

from tests.unit.infra.iam_model import (
    ApiCall,
    Grant,
    Permission,
    function_policy,
    is_allowed,
    required_permissions,
    resolve,
    ungranted,
)

ACCT = "123456789012"


def call(service: str, operation: str, prefix: str | None = None, **params: object) -> ApiCall:
    return ApiCall(service, prefix or service, operation, params)


@pytest.mark.parametrize(
    ("api_call", "expected"),
    [
        (
            call("sqs", "SendMessageBatch", QueueUrl=f"https://sqs.us-east-1.amazonaws.com/{ACCT}/tm-quarantine"),
            [Permission("sqs:SendMessage", f"arn:aws:sqs:us-east-1:{ACCT}:tm-quarantine")],
        ),
        (
            call("bedrock-runtime", "Converse", "bedrock", modelId="us.anthropic.claude-3-5-haiku-20241022-v1:0"),
            [
                Permission(
                    "bedrock:InvokeModel",
                    f"arn:aws:bedrock:us-east-1:{ACCT}:inference-profile/us.anthropic.claude-3-5-haiku-20241022-v1:0",
                )
            ],
        ),
        (
            call("bedrock-runtime", "ConverseStream", "bedrock", modelId="amazon.nova-micro-v1:0"),
            [
                Permission(
                    "bedrock:InvokeModelWithResponseStream",
                    "arn:aws:bedrock:us-east-1::foundation-model/amazon.nova-micro-v1:0",
                )
            ],
        ),
        (
            call("s3", "HeadObject", Bucket="cfg", Key="tenants.toml"),
            [Permission("s3:GetObject", "arn:aws:s3:::cfg/tenants.toml")],
        ),
        (call("s3", "ListObjectsV2", Bucket="cfg", Prefix="x/"), [Permission("s3:ListBucket", "arn:aws:s3:::cfg")]),
        (
            call("kinesis", "PutRecords", StreamName="tm-usage-events", Records=[]),
            [Permission("kinesis:PutRecords", f"arn:aws:kinesis:us-east-1:{ACCT}:stream/tm-usage-events")],
        ),
        (call("kinesis", "ListShards", NextToken="abc"), [Permission("kinesis:ListShards", None)]),
        (
            call("sagemaker-runtime", "InvokeEndpoint", "sagemaker", EndpointName="My-Endpoint", Body=b""),
            [Permission("sagemaker:InvokeEndpoint", f"arn:aws:sagemaker:us-east-1:{ACCT}:endpoint/my-endpoint")],
        ),
        (call("sts", "GetCallerIdentity"), []),
    ],
)
def test_calls_map_to_the_permissions_aws_checks(api_call: ApiCall, expected: list[Permission]) -> None:
    assert required_permissions(api_call) == expected


def test_transactions_are_checked_per_item_action() -> None:
    items = [
        {"Put": {"TableName": "t", "Item": {}}},
        {"Update": {"TableName": "t", "Key": {}}},
        {"ConditionCheck": {"TableName": "t", "Key": {}}},
        {"Delete": {"TableName": "t", "Key": {}}},
    ]
    perms = required_permissions(call("dynamodb", "TransactWriteItems", TransactItems=items))
    table = f"arn:aws:dynamodb:us-east-1:{ACCT}:table/t"
    assert perms == [
        Permission("dynamodb:PutItem", table),
        Permission("dynamodb:UpdateItem", table),
        Permission("dynamodb:ConditionCheckItem", table),
        Permission("dynamodb:DeleteItem", table),
    ]
    batch = required_permissions(call("dynamodb", "BatchGetItem", RequestItems={"t": {}, "u": {}}))
    assert [p.resource for p in batch] == [table, f"arn:aws:dynamodb:us-east-1:{ACCT}:table/u"]


def test_a_service_without_a_resource_mapping_is_refused_not_guessed() -> None:
    with pytest.raises(NotImplementedError):
        required_permissions(call("ec2", "DescribeInstances"))


def test_iam_wildcards_match_like_iam() -> None:
    grants = [Grant("x", ("bedrock:InvokeModel",), ("arn:aws:bedrock:*::foundation-model/*",))]
    assert is_allowed(Permission("bedrock:invokemodel", "arn:aws:bedrock:eu-west-1::foundation-model/a.b:0"), grants)
    assert not is_allowed(Permission("bedrock:InvokeModel", f"arn:aws:bedrock:eu-west-1:{ACCT}:custom-model/a"), grants)
    assert not is_allowed(Permission("bedrock:InvokeModelWithResponseStream", None), grants)
    assert is_allowed(Permission("bedrock:InvokeModel", None), grants)


def test_resolution_needs_a_binding_for_every_expression() -> None:
    bindings = {"var.stream_arn": "arn:s", "values(var.alert_topic_arns)": ["arn:a", "arn:b"]}
    assert resolve("${var.stream_arn}", bindings) == ["arn:s"]
    assert resolve("${values(var.alert_topic_arns)}", bindings) == ["arn:a", "arn:b"]
    assert resolve("${var.stream_arn}/consumer/*", bindings) == ["arn:s/consumer/*"]
    assert resolve("*", bindings) == ["*"]
    with pytest.raises(KeyError):
        resolve("${var.unknown_arn}", bindings)


def test_the_consumer_policy_resolves_and_denies_what_it_does_not_name() -> None:
    # GIVEN the consumer's Terraform policy for the DynamoDB backend
    bindings: dict[str, str | list[str]] = {
        "var.kms_key_arn": "arn:aws:kms:us-east-1:1:key/k",
        "var.tenant_registry.object_arn": "arn:aws:s3:::cfg/tenants.toml",
        "var.store.table_arn": f"arn:aws:dynamodb:us-east-1:{ACCT}:table/tm-usage",
        "var.stream_arn": f"arn:aws:kinesis:us-east-1:{ACCT}:stream/tm-usage-events",
        "aws_cloudwatch_log_group.this.arn": "arn:aws:logs:us-east-1:1:log-group:/aws/lambda/tm-metering",
        "values(var.alert_topic_arns)": [f"arn:aws:sns:us-east-1:{ACCT}:tm-alerts-critical"],
        "var.quarantine_queue_arn": f"arn:aws:sqs:us-east-1:{ACCT}:tm-quarantine",
        "aws_sqs_queue.failures.arn": f"arn:aws:sqs:us-east-1:{ACCT}:tm-metering-failures",
    }
    conditions = {
        "local.in_vpc": False,
        "var.dead_letter_queue_arn == null": True,
        "local.efo": False,
        "length(var.tenant_contact_topic_arns) > 0": False,
        "local.dynamodb": True,
        "local.redis": False,
    }
    grants = function_policy("modules/metering", conditions, bindings)
    # WHEN calls are checked: its own table and topic, then another table, a tenant topic not listed, Redis's secret
    table = call("dynamodb", "UpdateItem", TableName="tm-usage", Key={})
    topic = call("sns", "Publish", TopicArn=f"arn:aws:sns:us-east-1:{ACCT}:tm-alerts-critical", Message="m")
    other_table = call("dynamodb", "UpdateItem", TableName="someone-elses", Key={})
    tenant_topic = call("sns", "Publish", TopicArn=f"arn:aws:sns:us-east-1:{ACCT}:acme-usage", Message="m")
    secret = call("secretsmanager", "GetSecretValue", SecretId="arn:aws:secretsmanager:us-east-1:1:secret:x")
    # THEN only the first two are granted
    assert ungranted([table, topic], grants) == []
    assert len(ungranted([other_table, tenant_topic, secret], grants)) == 3
