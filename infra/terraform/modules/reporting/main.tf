# The daily report: an EventBridge Scheduler schedule invokes the report function once a day (UTC); it reads
# the previous day's per-tenant totals from the store and writes one CSV per day to
# s3://<name>-reports-<account>/<prefix>/day=YYYY-MM-DD/usage.csv (consumers/reporting/report.py). A Glue
# table with partition projection makes the reports queryable from Athena at once (no crawler, no MSCK
# REPAIR), through a workgroup that keeps query results encrypted in the same bucket. The CSV has a `day`
# column already, so the partition key is `report_day`, projected onto the day=... folders.

data "aws_partition" "current" {}

locals {
  function_name   = "${var.name}-report"
  dynamodb        = var.store.backend == "dynamodb"
  redis           = var.store.backend == "redis"
  prefix          = trim(var.report_prefix, "/")
  report_location = "s3://${module.bucket.bucket_name}/${local.prefix}/"
  # Glue names are lower case with underscores.
  glue_database = replace(lower(var.name), "-", "_")

  # The report reads the day's active-tenant index (Query) and each tenant's day buckets (BatchGetItem).
  dynamodb_actions = ["dynamodb:BatchGetItem", "dynamodb:Query"]
}

module "bucket" {
  source = "../bucket"

  bucket_name               = "${var.name}-reports-${var.account_id}"
  kms_key_arn               = var.kms_key_arn
  noncurrent_version_days   = 30
  expire_current_after_days = var.report_retention_days
  force_destroy             = var.force_destroy
  tags                      = var.tags
}

resource "aws_sqs_queue" "dead_letter" {
  name                              = "${var.name}-report-dlq"
  message_retention_seconds         = 1209600
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  tags                              = var.tags
}

data "aws_iam_policy_document" "function" {
  statement {
    sid       = "WriteReports"
    actions   = ["s3:PutObject"]
    resources = ["${module.bucket.bucket_arn}/${local.prefix}/*"]
  }

  statement {
    sid       = "UseDataKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }

  dynamic "statement" {
    for_each = local.dynamodb ? [1] : []

    content {
      sid       = "ReadUsageTable"
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

  function_name         = local.function_name
  description           = "tenantmeter daily report: per-tenant usage and cost CSV to S3"
  handler               = "consumers.reporting.handler.lambda_handler"
  code                  = var.code
  policy_json           = data.aws_iam_policy_document.function.json
  kms_key_arn           = var.kms_key_arn
  service_name          = "report"
  metrics_namespace     = var.metrics_namespace
  log_level             = var.log_level
  memory_size           = var.memory_size
  timeout               = var.timeout
  vpc_config            = var.store.vpc_config
  dead_letter_queue_arn = aws_sqs_queue.dead_letter.arn
  log_retention_days    = var.log_retention_days
  tags                  = var.tags

  environment = {
    TM_STORE_BACKEND         = var.store.backend
    TM_REDIS_URL             = var.store.redis_url
    TM_REDIS_AUTH_SECRET_ARN = var.store.redis_auth_secret_arn == null ? "" : var.store.redis_auth_secret_arn
    TM_DYNAMODB_TABLE        = var.store.table_name
    TM_REPORT_BUCKET         = module.bucket.bucket_name
    TM_REPORT_PREFIX         = local.prefix
  }
}

# ---------------------------------------------------------------- schedule

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [var.account_id]
    }
  }
}

resource "aws_iam_role" "scheduler" {
  name               = "${var.name}-report-scheduler"
  description        = "EventBridge Scheduler invokes the tenantmeter daily report"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = var.tags
}

data "aws_iam_policy_document" "scheduler" {
  statement {
    sid       = "InvokeReport"
    actions   = ["lambda:InvokeFunction"]
    resources = [module.function.function_arn]
  }

  statement {
    sid       = "DeadLetter"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.dead_letter.arn]
  }

  statement {
    sid       = "UseKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role_policy" "scheduler" {
  name   = "invoke-report"
  role   = aws_iam_role.scheduler.id
  policy = data.aws_iam_policy_document.scheduler.json
}

resource "aws_scheduler_schedule" "daily" {
  name                         = "${var.name}-daily-report"
  description                  = "Write yesterday's (UTC) per-tenant usage report"
  schedule_expression          = var.schedule_expression
  schedule_expression_timezone = "UTC"
  state                        = var.schedule_enabled ? "ENABLED" : "DISABLED"
  kms_key_arn                  = var.kms_key_arn

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = module.function.function_arn
    role_arn = aws_iam_role.scheduler.arn
    # An empty event: the function reports the UTC day before the invocation ({"day": "YYYY-MM-DD"} re-runs one).
    input = jsonencode({})

    retry_policy {
      maximum_retry_attempts       = 3
      maximum_event_age_in_seconds = 3600
    }

    dead_letter_config {
      arn = aws_sqs_queue.dead_letter.arn
    }
  }
}

# ---------------------------------------------------------------- Athena

resource "aws_glue_catalog_database" "this" {
  name        = local.glue_database
  description = "tenantmeter daily usage reports"
}

resource "aws_glue_catalog_table" "daily_usage" {
  name          = "daily_usage"
  database_name = aws_glue_catalog_database.this.name
  description   = "One row per tenant, model, cost center and application per UTC day"
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "classification"                 = "csv"
    "skip.header.line.count"         = "1"
    "projection.enabled"             = "true"
    "projection.report_day.type"     = "date"
    "projection.report_day.format"   = "yyyy-MM-dd"
    "projection.report_day.range"    = "${var.first_report_date},NOW"
    "projection.report_day.interval" = "1"
    "projection.report_day.unit"     = "DAYS"
    "storage.location.template"      = "${local.report_location}day=$${report_day}/"
  }

  partition_keys {
    name    = "report_day"
    type    = "string"
    comment = "UTC day of the report (yyyy-MM-dd), the day=... folder"
  }

  storage_descriptor {
    location      = local.report_location
    input_format  = "org.apache.hadoop.mapred.TextInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.HiveIgnoreKeyTextOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.serde2.OpenCSVSerde"
      parameters = {
        "separatorChar" = ","
        "quoteChar"     = "\""
      }
    }

    dynamic "columns" {
      for_each = var.report_columns

      content {
        name    = columns.value.name
        type    = columns.value.type
        comment = columns.value.comment
      }
    }
  }
}

resource "aws_athena_workgroup" "this" {
  name          = "${var.name}-reports"
  description   = "Queries over the tenantmeter daily reports"
  force_destroy = var.force_destroy
  tags          = var.tags

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true

    result_configuration {
      output_location = "s3://${module.bucket.bucket_name}/athena-results/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = var.kms_key_arn
      }
    }
  }
}
