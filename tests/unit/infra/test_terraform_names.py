"""Terraform names its resources exactly as ``shared.settings.resource_names`` says, so the local stack
(`make demo`) and a deployment look the same and the code's defaults point at the right things."""

from __future__ import annotations

import re

import pytest

from shared.settings import resource_names
from tests.unit.infra.tfmodel import expr, load_module, substitute

# (resource_names key, module, how to find the name in it)
NAMED_IN_MODULE = {
    "stream": ("modules/stream", ("resource", "aws_kinesis_stream", "this", "name")),
    "quarantine_queue": ("modules/alerts", ("resource", "aws_sqs_queue", "quarantine", "name")),
    "failure_queue": ("modules/metering", ("resource", "aws_sqs_queue", "failures", "name")),
    "table": ("modules/state", ("resource", "aws_dynamodb_table", "this", "name")),
    "reports_bucket": ("modules/reporting", ("module", "bucket", "", "bucket_name")),
    "config_bucket": ("modules/tenant_registry", ("module", "bucket", "", "bucket_name")),
}


def terraform_names(prefix: str, account_id: str) -> dict[str, str]:
    values = {"var.name": prefix, "var.account_id": account_id}
    names: dict[str, str] = {}
    for key, (rel, (kind, rtype, rname, attr)) in NAMED_IN_MODULE.items():
        module = load_module(rel)
        body = module.resource(rtype, rname) if kind == "resource" else module.module_calls[rtype]
        names[key] = substitute(body[attr], values)
    alerts = load_module("modules/alerts")
    topic = alerts.resource("aws_sns_topic", "this")
    assert expr(topic["for_each"]) == "local.severities"
    severities = re.findall(r'"(\w+)"', alerts.locals["severities"])
    for severity in severities:
        names[f"topic_{severity}"] = substitute(topic["name"], {**values, "each.key": severity})
    return names


@pytest.mark.parametrize(("prefix", "account_id"), [("tenantmeter", "123456789012"), ("acme-meter", "210987654321")])
def test_terraform_names_follow_resource_names(prefix: str, account_id: str) -> None:
    assert terraform_names(prefix, account_id) == resource_names(prefix, account_id)


def test_dev_passes_its_name_and_account_to_the_named_modules() -> None:
    dev = load_module("envs/dev")
    assert dev.variables["name"]["default"] == "tenantmeter"
    calls = dev.module_calls
    for call in ("stream", "alerts", "state", "metering", "reporting", "tenant_registry"):
        assert expr(calls[call]["name"]) == "var.name", call
    for call in ("reporting", "tenant_registry"):
        assert expr(calls[call]["account_id"]) == "local.account_id", call
    assert expr(dev.locals["account_id"]) == "data.aws_caller_identity.current.account_id"


def test_registry_object_is_tenants_toml_and_its_uri_is_what_the_code_reads() -> None:
    registry = load_module("modules/tenant_registry")
    assert registry.variables["object_key"]["default"] == "tenants.toml"
    assert registry.outputs["s3_uri"]["value"] == "s3://${module.bucket.bucket_name}/${var.object_key}"
