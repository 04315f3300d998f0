"""envs/dev hands each function module the resources Terraform creates for it. The recorded-IAM integration
test binds each policy expression (``var.stream_arn``, ``var.store.table_arn``, ...) to the resource it names;
this keeps those bindings honest by checking the wiring they stand for."""

from __future__ import annotations

import pytest

from tests.unit.infra.tfmodel import expr, load_module

# (module folder, where, expected expression)
WIRING = [
    ("envs/dev", ("module", "metering", "stream_arn"), "module.stream.stream_arn"),
    ("envs/dev", ("module", "metering", "alert_topic_arns"), "module.alerts.topic_arns"),
    ("envs/dev", ("module", "metering", "quarantine_queue_arn"), "module.alerts.quarantine_queue_arn"),
    ("envs/dev", ("module", "metering", "quarantine_queue_url"), "module.alerts.quarantine_queue_url"),
    ("envs/dev", ("module", "metering", "tenant_contact_topic_arns"), "var.tenant_contact_topic_arns"),
    ("envs/dev", ("module", "metering", "store"), "local.store"),
    ("envs/dev", ("module", "metering", "tenant_registry"), "local.tenant_registry"),
    ("envs/dev", ("module", "metering", "kms_key_arn"), "module.kms.key_arn"),
    ("envs/dev", ("module", "gateway", "stream_arn"), "module.stream.stream_arn"),
    ("envs/dev", ("module", "gateway", "stream_name"), "module.stream.stream_name"),
    ("envs/dev", ("module", "gateway", "store"), "local.store"),
    ("envs/dev", ("module", "gateway", "tenant_registry"), "local.tenant_registry"),
    ("envs/dev", ("module", "gateway", "kms_key_arn"), "module.kms.key_arn"),
    ("envs/dev", ("module", "reporting", "store"), "local.store"),
    ("envs/dev", ("module", "reporting", "kms_key_arn"), "module.kms.key_arn"),
    ("envs/dev", ("local", "store", "table_arn"), "module.state.table_arn"),
    ("envs/dev", ("local", "store", "table_name"), "module.state.table_name"),
    ("envs/dev", ("local", "store", "redis_auth_secret_arn"), "module.state.redis_auth_secret_arn"),
    ("envs/dev", ("local", "store", "vpc_config"), "module.state.vpc_config"),
    ("envs/dev", ("local", "tenant_registry", "object_arn"), "module.tenant_registry.object_arn"),
    ("envs/dev", ("local", "tenant_registry", "s3_uri"), "module.tenant_registry.s3_uri"),
    ("modules/state", ("output", "table_arn", "value"), "try(aws_dynamodb_table.this[0].arn, null)"),
    (
        "modules/state",
        ("output", "redis_auth_secret_arn", "value"),
        "try(aws_secretsmanager_secret.auth_token[0].arn, null)",
    ),
    (
        "modules/alerts",
        ("output", "topic_arns", "value"),
        "{for severity, topic in aws_sns_topic.this : severity => topic.arn}",
    ),
    ("modules/alerts", ("output", "quarantine_queue_arn", "value"), "aws_sqs_queue.quarantine.arn"),
    ("modules/stream", ("output", "stream_arn", "value"), "aws_kinesis_stream.this.arn"),
    ("modules/metering", ("module", "function", "function_name"), "local.function_name"),
    ("modules/gateway", ("module", "function", "function_name"), "local.function_name"),
    ("modules/reporting", ("module", "function", "function_name"), "local.function_name"),
    ("modules/reporting", ("module", "function", "dead_letter_queue_arn"), "aws_sqs_queue.dead_letter.arn"),
]


def lookup(rel: str, where: tuple[str, str, str]) -> object:
    module = load_module(rel)
    kind, name, attr = where
    if kind == "module":
        return module.module_calls[name][attr]
    if kind == "local":
        value = module.locals[name]
        assert isinstance(value, dict), f"{rel}: local.{name} is not an object"
        return value[attr]
    return module.outputs[name][attr]


@pytest.mark.parametrize(("rel", "where", "expected"), WIRING, ids=[f"{r}:{'.'.join(w)}" for r, w, _ in WIRING])
def test_wiring(rel: str, where: tuple[str, str, str], expected: str) -> None:
    value = lookup(rel, where)
    assert isinstance(value, str), value
    assert " ".join((expr(value) or value).split()) == expected


def test_registry_object_arn_is_the_object_in_the_config_bucket() -> None:
    registry = load_module("modules/tenant_registry")
    assert registry.outputs["object_arn"]["value"] == "${module.bucket.bucket_arn}/${var.object_key}"


@pytest.mark.parametrize(
    ("rel", "function_name"),
    [("modules/metering", "metering"), ("modules/gateway", "gateway"), ("modules/reporting", "report")],
)
def test_function_names_and_their_log_groups(rel: str, function_name: str) -> None:
    assert load_module(rel).locals["function_name"] == "${var.name}-" + function_name
    runtime = load_module("modules/lambda_function")
    assert runtime.resource("aws_cloudwatch_log_group", "this")["name"] == "/aws/lambda/${var.function_name}"
    assert load_module("modules/reporting").resource("aws_sqs_queue", "dead_letter")["name"] == "${var.name}-report-dlq"
