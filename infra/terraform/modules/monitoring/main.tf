# Operations: CloudWatch alarms on what goes wrong first (the consumer falling behind, records quarantined or
# dropped to the failure queue, consumer errors, throttled puts, failed report runs), platform-wide daily
# spend alarms at ascending fractions of a budget (one per severity topic), saved Logs Insights queries, and
# a dashboard with per-tenant spend. tenant_id is EMF metadata, never a metric dimension (a series per tenant
# is unbounded), so per-tenant figures come from Logs Insights over the EMF documents (the gateway writes one
# per request with tenant_id and CostUSD); totals come from EMF metrics and a tenant-free SpendUSD metric.

data "aws_region" "current" {}

locals {
  region       = data.aws_region.current.name
  spend_metric = "SpendUSD"

  alarms = {
    consumer-iterator-age = {
      description = "The metering consumer is falling behind the stream (oldest record age, ms)."
      namespace   = "AWS/Lambda"
      metric      = "IteratorAge"
      dimensions  = { FunctionName = var.consumer_function_name }
      statistic   = "Maximum"
      period      = 60
      evaluations = 5
      threshold   = var.alarms.iterator_age_ms
      severity    = "critical"
    }
    consumer-errors = {
      description = "The metering consumer failed invocations (whole batches retried)."
      namespace   = "AWS/Lambda"
      metric      = "Errors"
      dimensions  = { FunctionName = var.consumer_function_name }
      statistic   = "Sum"
      period      = 300
      evaluations = 1
      threshold   = var.alarms.consumer_errors
      severity    = "warning"
    }
    quarantine-depth = {
      description = "Records the consumer could not decode or price are waiting in the quarantine queue."
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.quarantine_queue_name }
      statistic   = "Maximum"
      period      = 300
      evaluations = 1
      threshold   = var.alarms.quarantine_depth
      severity    = "warning"
    }
    metering-failures = {
      description = "Batches left the event-source mapping unmetered (retries or record age exhausted): once the store is back, meter replay-failures."
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.failure_queue_name }
      statistic   = "Maximum"
      period      = 300
      evaluations = 1
      threshold   = 0
      severity    = "critical"
    }
    throttled-puts = {
      description = "Producers' puts to the usage stream were throttled (hot partition key or too few shards)."
      namespace   = "AWS/Kinesis"
      metric      = "WriteProvisionedThroughputExceeded"
      dimensions  = { StreamName = var.stream_name }
      statistic   = "Sum"
      period      = 300
      evaluations = 1
      threshold   = var.alarms.throttled_puts
      severity    = "warning"
    }
    report-failures = {
      description = "Daily report invocations failed after retries."
      namespace   = "AWS/SQS"
      metric      = "ApproximateNumberOfMessagesVisible"
      dimensions  = { QueueName = var.report_dead_letter_queue_name }
      statistic   = "Maximum"
      period      = 3600
      evaluations = 1
      threshold   = 0
      severity    = "warning"
    }
  }

  spend_alarms = var.spend_alarm.daily_budget_usd == null ? {} : {
    for severity, fraction in var.spend_alarm.thresholds : severity => fraction
  }

  spend_sources = join(" | ", [for name in values(var.spend.log_group_names) : "SOURCE '${name}'"])

  # Per-tenant spend from the EMF lines (tenant_id is metadata on each document, cost an exact decimal).
  tenant_spend_query = <<-EOT
    fields ${var.spend.tenant_field}, ${var.spend.cost_field}
    | filter ispresent(${var.spend.tenant_field}) and ispresent(${var.spend.cost_field})
    | stats sum(${var.spend.cost_field}) as spend_usd, count(*) as documents by ${var.spend.tenant_field}
    | sort spend_usd desc
    | limit 50
  EOT

  tenant_tokens_query = <<-EOT
    fields ${var.spend.tenant_field}, InputTokens, OutputTokens
    | filter ispresent(${var.spend.tenant_field}) and ispresent(InputTokens)
    | stats sum(InputTokens) as input_tokens, sum(OutputTokens) as output_tokens by ${var.spend.tenant_field}, bin(1h)
    | sort input_tokens desc
  EOT

  failed_batches_query = <<-EOT
    fields @timestamp, @message
    | filter message = "batch done" and failed_items > 0
    | stats sum(records) as records, sum(failed_items) as failed_items, sum(quarantined) as quarantined by bin(5m)
  EOT
}

# The spend metric: every EMF document with a cost adds it to one tenant-free metric, which the spend alarms
# and the dashboard's total read. (EMF's own CostUSD carries per-request dimensions, too many to alarm on.)
resource "aws_cloudwatch_log_metric_filter" "spend" {
  for_each = var.spend.log_group_names

  name           = "${var.name}-spend-usd-${each.key}"
  log_group_name = each.value
  pattern        = "{ $.${var.spend.cost_field} >= 0 }"

  metric_transformation {
    name      = local.spend_metric
    namespace = var.metrics_namespace
    value     = "$.${var.spend.cost_field}"
    unit      = "None"
  }
}

resource "aws_cloudwatch_metric_alarm" "this" {
  for_each = local.alarms

  alarm_name          = "${var.name}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.evaluations
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alert_topic_arns[each.value.severity]]
  ok_actions          = [var.alert_topic_arns[each.value.severity]]
  tags                = var.tags
}

resource "aws_cloudwatch_metric_alarm" "spend" {
  for_each = local.spend_alarms

  alarm_name          = "${var.name}-daily-spend-${each.key}"
  alarm_description   = "Spend over the last 24 hours, all tenants, reached ${each.value * 100}% of the daily budget (${var.spend_alarm.daily_budget_usd} USD)."
  namespace           = var.metrics_namespace
  metric_name         = local.spend_metric
  statistic           = "Sum"
  period              = 86400
  evaluation_periods  = 1
  threshold           = var.spend_alarm.daily_budget_usd * each.value
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alert_topic_arns[each.key]]
  tags                = var.tags

  depends_on = [aws_cloudwatch_log_metric_filter.spend]
}

resource "aws_cloudwatch_query_definition" "tenant_spend" {
  name            = "${var.name}/per-tenant-spend"
  log_group_names = values(var.spend.log_group_names)
  query_string    = local.tenant_spend_query
}

resource "aws_cloudwatch_query_definition" "tenant_tokens" {
  name            = "${var.name}/per-tenant-tokens-hourly"
  log_group_names = values(var.spend.log_group_names)
  query_string    = local.tenant_tokens_query
}

resource "aws_cloudwatch_query_definition" "failed_batches" {
  name            = "${var.name}/consumer-failed-batches"
  log_group_names = [var.consumer_log_group_name]
  query_string    = local.failed_batches_query
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = var.name
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "log", x = 0, y = 0, width = 12, height = 8
        properties = {
          title  = "Spend per tenant (USD, dashboard time range)"
          region = local.region
          query  = "${local.spend_sources} | ${replace(trimspace(local.tenant_spend_query), "\n", " ")}"
          view   = "table"
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 8
        properties = {
          title   = "Spend, all tenants (USD per 5 min)"
          region  = local.region
          stat    = "Sum"
          period  = 300
          view    = "timeSeries"
          metrics = [[var.metrics_namespace, local.spend_metric]]
        }
      },
      {
        type = "log", x = 0, y = 8, width = 12, height = 8
        properties = {
          title  = "Tokens per tenant per hour"
          region = local.region
          query  = "${local.spend_sources} | ${replace(trimspace(local.tenant_tokens_query), "\n", " ")}"
          view   = "bar"
        }
      },
      {
        type = "metric", x = 12, y = 8, width = 12, height = 8
        properties = {
          title  = "Consumer iterator age (ms) and errors"
          region = local.region
          view   = "timeSeries"
          metrics = [
            ["AWS/Lambda", "IteratorAge", "FunctionName", var.consumer_function_name, { stat = "Maximum" }],
            ["AWS/Lambda", "Errors", "FunctionName", var.consumer_function_name, { stat = "Sum", yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 16, width = 12, height = 6
        properties = {
          title  = "Stream: incoming records and throttled puts"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          metrics = [
            ["AWS/Kinesis", "IncomingRecords", "StreamName", var.stream_name],
            ["AWS/Kinesis", "WriteProvisionedThroughputExceeded", "StreamName", var.stream_name, { yAxis = "right" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 16, width = 12, height = 6
        properties = {
          title  = "Quarantined and dropped records"
          region = local.region
          view   = "timeSeries"
          stat   = "Maximum"
          metrics = [
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.quarantine_queue_name],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", var.failure_queue_name],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 22, width = 24, height = 6
        properties = {
          title  = "Consumer: events metered, duplicates skipped, failed items, alerts (per 5 min)"
          region = local.region
          view   = "timeSeries"
          stat   = "Sum"
          period = 300
          metrics = [
            [var.metrics_namespace, "EventsProcessed", "service", var.consumer_service_name],
            [var.metrics_namespace, "DuplicatesSkipped", "service", var.consumer_service_name],
            [var.metrics_namespace, "FailedItems", "service", var.consumer_service_name],
            [var.metrics_namespace, "AlertsPublished", "service", var.consumer_service_name],
            [var.metrics_namespace, "BlocksWritten", "service", var.consumer_service_name],
          ]
        }
      },
    ]
  })
}
