"""The three functions in Terraform match the code: every handler Terraform names exists and is callable,
the environment Terraform sets is exactly what each component's settings module reads, and the consumer's
event-source mapping has the failure handling the consumer relies on."""

from __future__ import annotations

import importlib
import inspect

import pytest

from shared.settings import ENV_VARS
from tests.unit.infra.tfmodel import expr, load_module

# Terraform module -> (component name in shared.settings.declare, settings module, expected handler)
FUNCTIONS = {
    "modules/metering": ("consumer", "consumers.metering.settings", "consumers.metering.handler.lambda_handler"),
    "modules/gateway": ("gateway", "producers.gateway.settings", "producers.gateway.handler.lambda_handler"),
    "modules/reporting": ("report", "consumers.reporting.settings", "consumers.reporting.handler.lambda_handler"),
}
# Powertools' own variables, set for every function by modules/lambda_function.
POWERTOOLS_VARS = {"POWERTOOLS_SERVICE_NAME", "POWERTOOLS_METRICS_NAMESPACE", "LOG_LEVEL"}
# Read by the code but deliberately left unset in AWS (the packaged price catalog is the default).
LEFT_UNSET = {"TM_PRICING_CATALOG"}


def terraform_handlers() -> dict[str, str]:
    handlers = {}
    for rel in FUNCTIONS:
        handlers[rel] = load_module(rel).module_calls["function"]["handler"]
    return handlers


def code_env_vars(component: str, settings_module: str) -> set[str]:
    """What a component reads: the variables its settings module declares (as module constants: declare()
    returns the name) plus any registered for the component in ENV_VARS. Both, because ENV_VARS keeps the
    components of the last declare() of a shared name (TM_STORE_BACKEND is declared by all three)."""
    module = importlib.import_module(settings_module)
    declared_here = {value for value in vars(module).values() if isinstance(value, str) and value in ENV_VARS}
    registered = {name for name, (components, _) in ENV_VARS.items() if component in components}
    return declared_here | registered


def test_only_the_three_functions_use_the_function_module() -> None:
    users = []
    for rel in ("modules/metering", "modules/gateway", "modules/reporting", "envs/dev"):
        for name, call in load_module(rel).module_calls.items():
            if call["source"].endswith("lambda_function"):
                users.append((rel, name))
    assert sorted(users) == sorted((rel, "function") for rel in FUNCTIONS)


@pytest.mark.parametrize("rel", list(FUNCTIONS))
def test_handler_named_in_terraform_exists_as_a_function(rel: str) -> None:
    handler = terraform_handlers()[rel]
    assert handler == FUNCTIONS[rel][2]
    module_name, _, func_name = handler.rpartition(".")
    module = importlib.import_module(module_name)
    func = getattr(module, func_name, None)
    assert callable(func), f"{handler} is not a function"
    # Lambda calls handler(event, context).
    params = list(inspect.signature(func).parameters)
    assert len(params) == 2, f"{handler} takes {params}, Lambda passes (event, context)"


@pytest.mark.parametrize("rel", list(FUNCTIONS))
def test_terraform_sets_exactly_the_variables_the_settings_read(rel: str) -> None:
    component, settings_module, _ = FUNCTIONS[rel]
    environment = load_module(rel).module_calls["function"]["environment"]
    terraform_vars = set(environment) - {"__comments__"}
    reads = code_env_vars(component, settings_module)
    assert reads, f"{settings_module} declares no variables"
    missing = reads - LEFT_UNSET - terraform_vars
    unknown = terraform_vars - reads
    assert not missing, f"{rel}: the code reads {sorted(missing)} but Terraform does not set them"
    assert not unknown, f"{rel}: Terraform sets {sorted(unknown)} but {settings_module} does not read them"


def test_the_function_module_adds_only_powertools_variables() -> None:
    module = load_module("modules/lambda_function")
    assert set(module.locals["powertools_environment"]) == POWERTOOLS_VARS
    function = module.resource("aws_lambda_function", "this")
    (environment,) = function["environment"]
    assert expr(environment["variables"]) == "merge(local.powertools_environment, var.environment)"


def test_consumer_event_source_mapping_bounds_failures() -> None:
    metering = load_module("modules/metering")
    esm = metering.resource("aws_lambda_event_source_mapping", "this")
    assert esm["function_response_types"] == ["ReportBatchItemFailures"]
    assert esm["bisect_batch_on_function_error"] is True
    assert expr(esm["maximum_retry_attempts"]) == "var.event_source.maximum_retry_attempts"
    assert expr(esm["maximum_record_age_in_seconds"]) == "var.event_source.maximum_record_age_seconds"
    assert expr(esm["batch_size"]) == "var.event_source.batch_size"
    assert expr(esm["maximum_batching_window_in_seconds"]) == "var.event_source.batching_window_seconds"
    assert expr(esm["parallelization_factor"]) == "var.event_source.parallelization_factor"
    ((on_failure,),) = [d["on_failure"] for d in esm["destination_config"]]
    assert expr(on_failure["destination_arn"]) == "aws_sqs_queue.failures.arn"
    assert expr(esm["function_name"]) == "module.function.function_arn"
    # The source is the stream, or its enhanced fan-out consumer.
    assert expr(esm["event_source_arn"]) == "local.efo ? aws_kinesis_stream_consumer.this[0].arn : var.stream_arn"


def test_dev_feeds_the_mapping_from_one_variable_and_the_stream_module() -> None:
    metering = load_module("envs/dev").module_calls["metering"]
    assert expr(metering["event_source"]) == "var.consumer.event_source"
    assert expr(metering["stream_arn"]) == "module.stream.stream_arn"


def test_gateway_api_speaks_the_event_shape_the_handler_parses() -> None:
    # producers/gateway/handler.py reads the REST proxy shape (APIGatewayProxyEvent): payload format 1.0.
    gateway = load_module("modules/gateway")
    integration = gateway.resource("aws_apigatewayv2_integration", "this")
    assert integration["payload_format_version"] == "1.0"
    assert integration["integration_type"] == "AWS_PROXY"
    stage = gateway.resource("aws_apigatewayv2_stage", "this")
    (access_log,) = stage["access_log_settings"]
    assert expr(access_log["destination_arn"]) == "aws_cloudwatch_log_group.access.arn"


def test_glue_table_reads_the_csv_the_report_writes() -> None:
    from datetime import date

    from consumers.reporting.report import COLUMNS, report_key

    reporting = load_module("modules/reporting")
    columns = [c["name"] for c in reporting.variables["report_columns"]["default"]]
    assert tuple(columns) == COLUMNS
    table = reporting.resource("aws_glue_catalog_table", "daily_usage")
    (partition,) = table["partition_keys"]
    assert partition["name"] not in COLUMNS, "Athena refuses a partition key that repeats a column"
    template = table["parameters"]["storage.location.template"]
    assert template == "${local.report_location}day=$${report_day}/".replace("report_day", partition["name"])
    # The report writes <prefix>/day=YYYY-MM-DD/usage.csv, inside that template's folder.
    key = report_key(reporting.variables["report_prefix"]["default"] + "/", date(2026, 11, 23))
    assert key == "daily/day=2026-11-23/usage.csv"
    assert reporting.locals["report_location"] == "s3://${module.bucket.bucket_name}/${local.prefix}/"
