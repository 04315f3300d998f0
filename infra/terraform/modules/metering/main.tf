# The metering consumer: a Lambda fed by the usage stream through an event-source mapping that reports
# partial batch failures, bisects a failing batch, retries a bounded number of times, drops nothing older than
# a bound without sending its metadata to the on-failure queue, and takes batch size, batching window and
# parallelization factor as variables. Its role grants exactly what consumers/metering calls.

data "aws_caller_identity" "current" {}
data "aws_region" "current" {}

locals {
  function_name = "${var.name}-metering"
  dynamodb      = var.store.backend == "dynamodb"
  redis         = var.store.backend == "redis"
  efo           = var.event_source.enhanced_fan_out

  # The item operations the consumer's DynamoDB store performs (TransactWriteItems is authorised per item
  # action: Put, Update, ConditionCheck, and Delete for settled reservations; BatchWriteItem keeps the day's
  # active-tenant index).
  dynamodb_actions = [
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DeleteItem",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
  ]
}

resource "aws_sqs_queue" "failures" {
  name                              = "${var.name}-metering-failures"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  tags                              = var.tags
}

resource "aws_kinesis_stream_consumer" "this" {
  count = local.efo ? 1 : 0

  name       = local.function_name
  stream_arn = var.stream_arn
}

data "aws_iam_policy_document" "function" {
  statement {
    sid = "ReadUsageStream"
    actions = [
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:ListShards",
    ]
    resources = [var.stream_arn]
  }

  # ListStreams has no resource-level permissions; Lambda's poller calls it.
  statement {
    sid       = "ListStreams"
    actions   = ["kinesis:ListStreams"]
    resources = ["*"]
  }

  dynamic "statement" {
    for_each = local.efo ? [1] : []

    content {
      sid       = "ReadThroughEnhancedFanOut"
      actions   = ["kinesis:SubscribeToShard", "kinesis:DescribeStreamConsumer"]
      resources = [aws_kinesis_stream_consumer.this[0].arn]
    }
  }

  statement {
    sid       = "PublishAlerts"
    actions   = ["sns:Publish"]
    resources = values(var.alert_topic_arns)
  }

  dynamic "statement" {
    for_each = length(var.tenant_contact_topic_arns) > 0 ? [1] : []

    content {
      sid       = "NotifyTenants"
      actions   = ["sns:Publish"]
      resources = var.tenant_contact_topic_arns
    }
  }

  # SendMessageBatch (the quarantine adapter) is authorised as sqs:SendMessage; Lambda sends the mapping's
  # failure records to the destination with this role too.
  statement {
    sid       = "QuarantineAndFailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [var.quarantine_queue_arn, aws_sqs_queue.failures.arn]
  }

  statement {
    sid       = "ReadTenantRegistry"
    actions   = ["s3:GetObject"]
    resources = [var.tenant_registry.object_arn]
  }

  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
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
  description          = "tenantmeter metering consumer: usage stream -> windows, alerts, cut-offs"
  handler              = "consumers.metering.handler.lambda_handler"
  code                 = var.code
  policy_json          = data.aws_iam_policy_document.function.json
  kms_key_arn          = var.kms_key_arn
  service_name         = "metering"
  metrics_namespace    = var.metrics_namespace
  log_level            = var.log_level
  memory_size          = var.memory_size
  timeout              = var.timeout
  reserved_concurrency = var.reserved_concurrency
  vpc_config           = var.store.vpc_config
  log_retention_days   = var.log_retention_days
  tags                 = var.tags

  environment = {
    TM_STORE_BACKEND            = var.store.backend
    TM_REDIS_URL                = var.store.redis_url
    TM_REDIS_AUTH_SECRET_ARN    = var.store.redis_auth_secret_arn == null ? "" : var.store.redis_auth_secret_arn
    TM_DYNAMODB_TABLE           = var.store.table_name
    TM_TENANT_CONFIG            = var.tenant_registry.s3_uri
    TM_QUARANTINE_URL           = var.quarantine_queue_url
    TM_ALERT_TOPIC_INFO_ARN     = var.alert_topic_arns.info
    TM_ALERT_TOPIC_WARNING_ARN  = var.alert_topic_arns.warning
    TM_ALERT_TOPIC_CRITICAL_ARN = var.alert_topic_arns.critical
    TM_DEDUPE_HORIZON_SECONDS   = tostring(var.dedupe_horizon_seconds)
  }
}

resource "aws_lambda_event_source_mapping" "this" {
  event_source_arn  = local.efo ? aws_kinesis_stream_consumer.this[0].arn : var.stream_arn
  function_name     = module.function.function_arn
  starting_position = var.event_source.starting_position

  batch_size                         = var.event_source.batch_size
  maximum_batching_window_in_seconds = var.event_source.batching_window_seconds
  parallelization_factor             = var.event_source.parallelization_factor

  # A poison record must not hold its shard for the stream's whole retention: report the failed records only,
  # split a failing batch to isolate them, stop after a bounded number of retries or a bounded age, and keep
  # the dropped batch's shard and sequence range in the failure queue for replay.
  function_response_types        = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error = true
  maximum_retry_attempts         = var.event_source.maximum_retry_attempts
  maximum_record_age_in_seconds  = var.event_source.maximum_record_age_seconds

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.failures.arn
    }
  }
}
