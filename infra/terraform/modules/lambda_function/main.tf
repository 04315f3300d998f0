# One tenantmeter Lambda function with its own execution role, log group and runtime permissions. The caller
# passes the function's business permissions as policy_json (each component module writes exactly the actions
# its code calls); this module adds only what every function needs to run: writing its own log group, X-Ray
# segments, the VPC network interfaces when it runs in a VPC, and its dead-letter queue when it has one.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}
data "aws_partition" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  region     = data.aws_region.current.name
  partition  = data.aws_partition.current.partition
  in_vpc     = var.vpc_config != null

  # Powertools' own settings; everything tenantmeter reads comes in var.environment.
  powertools_environment = {
    POWERTOOLS_SERVICE_NAME      = var.service_name
    POWERTOOLS_METRICS_NAMESPACE = var.metrics_namespace
    LOG_LEVEL                    = var.log_level
  }
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "this" {
  name                 = var.function_name
  description          = "Execution role of the ${var.function_name} function"
  assume_role_policy   = data.aws_iam_policy_document.assume.json
  permissions_boundary = var.permissions_boundary_arn
  tags                 = var.tags
}

resource "aws_cloudwatch_log_group" "this" {
  name              = "/aws/lambda/${var.function_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = var.kms_key_arn
  tags              = var.tags
}

data "aws_iam_policy_document" "runtime" {
  statement {
    sid       = "WriteOwnLogs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.this.arn}:*"]
  }

  # X-Ray's PutTraceSegments and PutTelemetryRecords support no resource-level permissions.
  statement {
    sid       = "WriteTraces"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  # What AWSLambdaVPCAccessExecutionRole grants, scoped as far as EC2 allows: Describe* has no resource-level
  # permissions; creating an interface is limited to this function's subnets and security groups.
  dynamic "statement" {
    for_each = local.in_vpc ? [1] : []

    content {
      sid       = "DescribeNetworkInterfaces"
      actions   = ["ec2:DescribeNetworkInterfaces", "ec2:DescribeSubnets"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    for_each = local.in_vpc ? [1] : []

    content {
      sid     = "ManageOwnNetworkInterfaces"
      actions = ["ec2:CreateNetworkInterface", "ec2:DeleteNetworkInterface", "ec2:AssignPrivateIpAddresses", "ec2:UnassignPrivateIpAddresses"]
      resources = concat(
        ["arn:${local.partition}:ec2:${local.region}:${local.account_id}:network-interface/*"],
        [for id in try(var.vpc_config.subnet_ids, []) : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:subnet/${id}"],
        [for id in try(var.vpc_config.security_group_ids, []) : "arn:${local.partition}:ec2:${local.region}:${local.account_id}:security-group/${id}"],
      )
    }
  }

  dynamic "statement" {
    for_each = var.dead_letter_queue_arn == null ? [] : [var.dead_letter_queue_arn]

    content {
      sid       = "SendToDeadLetterQueue"
      actions   = ["sqs:SendMessage"]
      resources = [statement.value]
    }
  }

  # The environment is encrypted with the tenantmeter key.
  statement {
    sid       = "DecryptEnvironment"
    actions   = ["kms:Decrypt"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "runtime" {
  name   = "runtime"
  role   = aws_iam_role.this.id
  policy = data.aws_iam_policy_document.runtime.json
}

resource "aws_iam_role_policy" "function" {
  name   = "function"
  role   = aws_iam_role.this.id
  policy = var.policy_json
}

resource "aws_lambda_function" "this" {
  #checkov:skip=CKV_AWS_115:Reserved concurrency is a variable (reserved_concurrency); a fixed default fails in new accounts whose concurrency quota is 10, and the consumer's concurrency is already bounded by shards x parallelization factor.
  #checkov:skip=CKV_AWS_116:A dead-letter queue catches failed asynchronous invocations only; the consumer (event-source mapping, with its own on-failure destination) and the gateway (API Gateway) are invoked synchronously, and the report passes dead_letter_queue_arn.
  #checkov:skip=CKV_AWS_117:The functions join a VPC only when the store is ElastiCache (vpc_config is then set); with DynamoDB they call only public AWS endpoints, and a VPC would add NAT cost and cold-start latency for nothing.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile and a signing step in the release pipeline, which the platform team owns; the zip's hash is pinned by source_code_hash.
  function_name                  = var.function_name
  description                    = var.description
  role                           = aws_iam_role.this.arn
  handler                        = var.handler
  runtime                        = var.code.runtime
  architectures                  = ["x86_64"]
  filename                       = var.code.app_zip
  source_code_hash               = var.code.app_zip_hash
  layers                         = var.code.layer_arns
  memory_size                    = var.memory_size
  timeout                        = var.timeout
  reserved_concurrent_executions = var.reserved_concurrency
  kms_key_arn                    = var.kms_key_arn
  tags                           = var.tags

  environment {
    variables = merge(local.powertools_environment, var.environment)
  }

  tracing_config {
    mode = "Active"
  }

  dynamic "vpc_config" {
    for_each = local.in_vpc ? [var.vpc_config] : []

    content {
      subnet_ids         = vpc_config.value.subnet_ids
      security_group_ids = vpc_config.value.security_group_ids
    }
  }

  dynamic "dead_letter_config" {
    for_each = var.dead_letter_queue_arn == null ? [] : [var.dead_letter_queue_arn]

    content {
      target_arn = dead_letter_config.value
    }
  }

  depends_on = [aws_cloudwatch_log_group.this, aws_iam_role_policy.runtime, aws_iam_role_policy.function]
}
