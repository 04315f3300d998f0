output "function_name" {
  description = "Name of the report function."
  value       = module.function.function_name
}

output "function_arn" {
  description = "ARN of the report function."
  value       = module.function.function_arn
}

output "role_arn" {
  description = "ARN of the report's execution role."
  value       = module.function.role_arn
}

output "log_group_name" {
  description = "Log group of the report function."
  value       = module.function.log_group_name
}

output "bucket_name" {
  description = "Name of the reports bucket."
  value       = module.bucket.bucket_name
}

output "report_location" {
  description = "s3:// location of the reports (one day=YYYY-MM-DD folder per day)."
  value       = local.report_location
}

output "dead_letter_queue_name" {
  description = "Queue of report invocations that failed after retries."
  value       = aws_sqs_queue.dead_letter.name
}

output "athena_workgroup" {
  description = "Athena workgroup to query the reports in."
  value       = aws_athena_workgroup.this.name
}

output "glue_table" {
  description = "Glue table of the reports, as database.table."
  value       = "${aws_glue_catalog_database.this.name}.${aws_glue_catalog_table.daily_usage.name}"
}
