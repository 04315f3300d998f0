# The multi-tenant gateway: an API Gateway HTTP API in front of one Lambda, with payload format 1.0 (the REST
# proxy event shape producers/gateway/handler.py parses). The gateway
# authenticates each request itself, hashing the API key and looking it up in the tenant registry, so the
# tenant identity always comes from the credential; API Gateway adds TLS, stage-wide throttling and access
# logs. Why an HTTP API and not a REST API with usage plans: see envs/dev/README.md.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  function_name = "${var.name}-gateway"
  account_id    = data.aws_caller_identity.current.account_id
  region        = data.aws_region.current.name
  partition     = data.aws_partition.current.partition
  dynamodb      = var.store.backend == "dynamodb"
  redis         = var.store.backend == "redis"
  bedrock       = var.model_backend == "bedrock"

  # Foundation models in any region (cross-region inference profiles route to several), and this account's
  # system-defined and application inference profiles, unless the caller lists exact ARNs.
  bedrock_resources = length(var.bedrock_resource_arns) > 0 ? var.bedrock_resource_arns : [
    "arn:${local.partition}:bedrock:*::foundation-model/*",
    "arn:${local.partition}:bedrock:*:${local.account_id}:inference-profile/*",
    "arn:${local.partition}:bedrock:*:${local.account_id}:application-inference-profile/*",
  ]

  sagemaker_endpoint_arns = [
    for endpoint in var.sagemaker_endpoints :
    "arn:${local.partition}:sagemaker:${local.region}:${local.account_id}:endpoint/${lower(endpoint)}"
  ]

  # The gateway reads blocks, reserve flags and window totals, and takes and settles reservations.
  dynamodb_actions = [
    "dynamodb:BatchGetItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
  ]
}

data "aws_iam_policy_document" "function" {
  # ListShards: the usage producer maps partition keys to shards to aggregate records bound for one shard.
  statement {
    sid       = "PutUsageEvents"
    actions   = ["kinesis:ListShards", "kinesis:PutRecord", "kinesis:PutRecords"]
    resources = [var.stream_arn]
  }

  # GenerateDataKey: writing to the KMS-encrypted stream; Decrypt: reading the SSE-KMS registry object.
  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }

  statement {
    sid       = "ReadTenantRegistry"
    actions   = ["s3:GetObject"]
    resources = [var.tenant_registry.object_arn]
  }

  # Converse and ConverseStream are authorised as InvokeModel and InvokeModelWithResponseStream.
  dynamic "statement" {
    for_each = local.bedrock ? [1] : []

    content {
      sid       = "InvokeBedrockModels"
      actions   = ["bedrock:InvokeModel", "bedrock:InvokeModelWithResponseStream"]
      resources = local.bedrock_resources
    }
  }

  dynamic "statement" {
    for_each = length(local.sagemaker_endpoint_arns) > 0 ? [1] : []

    content {
      sid       = "InvokeSageMakerEndpoints"
      actions   = ["sagemaker:InvokeEndpoint"]
      resources = local.sagemaker_endpoint_arns
    }
  }

  dynamic "statement" {
    for_each = local.dynamodb ? [1] : []

    content {
      sid       = "UsageTable"
      actions   = local.dynamodb_actions
      resources = [var.store.table_arn]
    }
  }

  dynamic "statement" {
    for_each = local.redis ? [1] : []

    content {
      sid       = "CacheAuthToken"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [var.store.redis_auth_secret_arn]
    }
  }
}

module "function" {
  source = "../lambda_function"

  function_name        = local.function_name
  description          = "tenantmeter gateway: API key -> tenant, quota gate, model call, usage event"
  handler              = "producers.gateway.handler.lambda_handler"
  code                 = var.code
  policy_json          = data.aws_iam_policy_document.function.json
  kms_key_arn          = var.kms_key_arn
  service_name         = "gateway"
  metrics_namespace    = var.metrics_namespace
  log_level            = var.log_level
  memory_size          = var.memory_size
  timeout              = var.timeout
  reserved_concurrency = var.reserved_concurrency
  vpc_config           = var.store.vpc_config
  log_retention_days   = var.log_retention_days
  tags                 = var.tags

  environment = {
    TM_STREAM_NAME             = var.stream_name
    TM_STORE_BACKEND           = var.store.backend
    TM_REDIS_URL               = var.store.redis_url
    TM_REDIS_AUTH_SECRET_ARN   = var.store.redis_auth_secret_arn == null ? "" : var.store.redis_auth_secret_arn
    TM_DYNAMODB_TABLE          = var.store.table_name
    TM_TENANT_CONFIG           = var.tenant_registry.s3_uri
    TM_MODEL_BACKEND           = var.model_backend
    TM_SAGEMAKER_ENDPOINTS     = join(",", var.sagemaker_endpoints)
    TM_QUOTA_CACHE_MS          = tostring(var.quota_cache_ms)
    TM_MAX_BODY_BYTES          = tostring(var.max_body_bytes)
    TM_RESERVATION_TTL_SECONDS = tostring(var.reservation_ttl_seconds)
  }
}

# ---------------------------------------------------------------- HTTP API

resource "aws_cloudwatch_log_group" "access" {
  name              = "/aws/apigateway/${var.name}-gateway"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

resource "aws_apigatewayv2_api" "this" {
  name          = "${var.name}-gateway"
  description   = "tenantmeter gateway (the function authenticates API keys against the tenant registry)"
  protocol_type = "HTTP"
  tags          = var.tags
}

resource "aws_apigatewayv2_integration" "this" {
  api_id                 = aws_apigatewayv2_api.this.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = module.function.invoke_arn
  payload_format_version = "1.0"
  timeout_milliseconds   = min(var.timeout * 1000, 30000)
}

resource "aws_apigatewayv2_route" "this" {
  #checkov:skip=CKV_AWS_309:The gateway function authenticates every request itself (SHA-256 of the API key looked up in the tenant registry) and binds the tenant to that credential; an API Gateway authorizer would be a second, slower copy of the same check.
  api_id             = aws_apigatewayv2_api.this.id
  route_key          = "$default"
  target             = "integrations/${aws_apigatewayv2_integration.this.id}"
  authorization_type = "NONE"
}

resource "aws_apigatewayv2_stage" "this" {
  api_id      = aws_apigatewayv2_api.this.id
  name        = "$default"
  auto_deploy = true
  tags        = var.tags

  default_route_settings {
    throttling_burst_limit   = var.throttling.burst_limit
    throttling_rate_limit    = var.throttling.rate_limit
    detailed_metrics_enabled = true
  }

  # One JSON line per request; no request or response body, so no prompt or model output is ever logged.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.access.arn
    format = jsonencode({
      requestId        = "$context.requestId"
      requestTime      = "$context.requestTime"
      ip               = "$context.identity.sourceIp"
      httpMethod       = "$context.httpMethod"
      path             = "$context.path"
      status           = "$context.status"
      responseLength   = "$context.responseLength"
      latencyMs        = "$context.responseLatency"
      integrationError = "$context.integrationErrorMessage"
      integrationMs    = "$context.integrationLatency"
      userAgent        = "$context.identity.userAgent"
    })
  }
}

resource "aws_lambda_permission" "api" {
  statement_id  = "AllowHttpApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = module.function.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.this.execution_arn}/*/$default"
}
