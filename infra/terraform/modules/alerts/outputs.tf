output "topic_arns" {
  description = "ARN of each severity topic, keyed info, warning, critical."
  value       = { for severity, topic in aws_sns_topic.this : severity => topic.arn }
}

output "quarantine_queue_url" {
  description = "URL of the quarantine queue (TM_QUARANTINE_URL)."
  value       = aws_sqs_queue.quarantine.url
}

output "quarantine_queue_arn" {
  description = "ARN of the quarantine queue."
  value       = aws_sqs_queue.quarantine.arn
}

output "quarantine_queue_name" {
  description = "Name of the quarantine queue (for alarms)."
  value       = aws_sqs_queue.quarantine.name
}
