output "dashboard_name" {
  description = "Name of the CloudWatch dashboard."
  value       = aws_cloudwatch_dashboard.this.dashboard_name
}

output "alarm_names" {
  description = "Names of the operational alarms, keyed by what they watch."
  value       = { for key, alarm in aws_cloudwatch_metric_alarm.this : key => alarm.alarm_name }
}

output "spend_alarm_names" {
  description = "Names of the daily spend alarms, keyed by severity (empty without a budget)."
  value       = { for key, alarm in aws_cloudwatch_metric_alarm.spend : key => alarm.alarm_name }
}

output "query_definition_names" {
  description = "Saved Logs Insights queries."
  value = [
    aws_cloudwatch_query_definition.tenant_spend.name,
    aws_cloudwatch_query_definition.tenant_tokens.name,
    aws_cloudwatch_query_definition.failed_batches.name,
  ]
}
