# Operations: CloudWatch alarms on what goes wrong first (the consumer falling behind, records quarantined or
# dropped to the failure queue, consumer errors, throttled puts, failed report runs), platform-wide daily
# spend alarms at ascending fractions of a budget (one per severity topic), saved Logs Insights queries, and
# a dashboard with per-tenant spend. tenant_id is EMF metadata, never a metric dimension (one dimension per
# tenant would cost a metric per tenant and hit the 29-dimension cap), so per-tenant figures come from Logs
# Insights over the consumer's EMF log lines; totals come from the EMF metrics.

data "aws_region" "current" {}

locals {
  region = data.aws_region.current.name

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
      description = "Batches left the event-source mapping unmetered (retries or record age exhausted): replay them."
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

  # Per-tenant spend from the consumer's EMF lines (tenant_id is metadata on each metric blob).
  tenant_spend_query = <<-EOT
    fields tenant_id, ${var.emf.cost_metric}
    | filter ispresent(tenant_id) and ispresent(${var.emf.cost_metric})
    | stats sum(${var.emf.cost_metric}) / 1000000000 as spend_usd, count(*) as batches by tenant_id
    | sort spend_usd desc
    | limit 50
  EOT

  tenant_tokens_query = <<-EOT
    fields tenant_id, ${var.emf.tokens_metric}
    | filter ispresent(tenant_id) and ispresent(${var.emf.tokens_metric})
    | stats sum(${var.emf.tokens_metric}) as tokens by tenant_id, bin(1h)
    | sort tokens desc
  EOT

  quarantine_reasons_query = <<-EOT
    fields @timestamp, level, message, reason, tenant_id
    | filter message like /quarantin/
    | stats count(*) as records by reason
    | sort records desc
  EOT
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
  alarm_description   = "Today's metered spend across all tenants passed ${each.value * 100}% of the daily budget (${var.spend_alarm.daily_budget_usd} USD)."
  namespace           = var.metrics_namespace
  metric_name         = var.emf.cost_metric
  dimensions          = { service = "metering" }
  statistic           = "Sum"
  period              = 86400
  evaluation_periods  = 1
  threshold           = var.spend_alarm.daily_budget_usd * each.value * 1000000000
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [var.alert_topic_arns[each.key]]
  tags                = var.tags
}

resource "aws_cloudwatch_query_definition" "tenant_spend" {
  name            = "${var.name}/per-tenant-spend"
  log_group_names = [var.consumer_log_group_name]
  query_string    = local.tenant_spend_query
}

resource "aws_cloudwatch_query_definition" "tenant_tokens" {
  name            = "${var.name}/per-tenant-tokens-hourly"
  log_group_names = [var.consumer_log_group_name]
  query_string    = local.tenant_tokens_query
}

resource "aws_cloudwatch_query_definition" "quarantine_reasons" {
  name            = "${var.name}/quarantine-reasons"
  log_group_names = [var.consumer_log_group_name]
  query_string    = local.quarantine_reasons_query
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
          query  = "SOURCE '${var.consumer_log_group_name}' | ${replace(trimspace(local.tenant_spend_query), "\n", " ")}"
          view   = "table"
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 8
        properties = {
          title   = "Metered spend, all tenants (nano-USD per 5 min)"
          region  = local.region
          stat    = "Sum"
          period  = 300
          view    = "timeSeries"
          metrics = [[var.metrics_namespace, var.emf.cost_metric, "service", "metering"]]
        }
      },
      {
        type = "log", x = 0, y = 8, width = 12, height = 8
        properties = {
          title  = "Tokens per tenant per hour"
          region = local.region
          query  = "SOURCE '${var.consumer_log_group_name}' | ${replace(trimspace(local.tenant_tokens_query), "\n", " ")}"
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
    ]
  })
}
