# Alert fan-out and the quarantine: one SNS topic per severity (info, warning, critical), each KMS encrypted,
# with optional email / HTTPS subscriptions whose filter policies select on the message attributes the
# consumer sets; and the SQS queue where the consumer parks records it cannot decode or price, with the reason.

locals {
  severities = toset(["info", "warning", "critical"])
}

resource "aws_sns_topic" "this" {
  for_each = local.severities

  name              = "${var.name}-alerts-${each.key}"
  kms_master_key_id = var.kms_key_arn
  tags              = merge(var.tags, { severity = each.key })
}

resource "aws_sns_topic_subscription" "this" {
  for_each = var.subscriptions

  topic_arn              = aws_sns_topic.this[each.value.severity].arn
  protocol               = each.value.protocol
  endpoint               = each.value.endpoint
  filter_policy          = each.value.filter_policy
  filter_policy_scope    = each.value.filter_policy == null ? null : each.value.filter_policy_scope
  endpoint_auto_confirms = each.value.protocol == "https" ? each.value.endpoint_auto_confirms : null
}

resource "aws_sqs_queue" "quarantine" {
  name                              = "${var.name}-quarantine"
  message_retention_seconds         = var.quarantine_retention_seconds
  kms_master_key_id                 = var.kms_key_arn
  kms_data_key_reuse_period_seconds = 3600
  tags                              = var.tags
}
