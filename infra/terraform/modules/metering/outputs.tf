output "function_name" {
  description = "Name of the consumer function."
  value       = module.function.function_name
}

output "function_arn" {
  description = "ARN of the consumer function."
  value       = module.function.function_arn
}

output "role_arn" {
  description = "ARN of the consumer's execution role."
  value       = module.function.role_arn
}

output "log_group_name" {
  description = "Log group of the consumer (EMF metrics and Logs Insights)."
  value       = module.function.log_group_name
}

output "failure_queue_arn" {
  description = "ARN of the event-source mapping's on-failure destination."
  value       = aws_sqs_queue.failures.arn
}

output "failure_queue_url" {
  description = "URL of the on-failure queue (meter replay-failures --queue-url, or TM_FAILURE_QUEUE_URL)."
  value       = aws_sqs_queue.failures.url
}

output "failure_queue_name" {
  description = "Name of the on-failure queue (for alarms)."
  value       = aws_sqs_queue.failures.name
}

output "event_source_mapping_uuid" {
  description = "UUID of the event-source mapping."
  value       = aws_lambda_event_source_mapping.this.uuid
}
