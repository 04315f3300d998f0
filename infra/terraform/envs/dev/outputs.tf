output "gateway_url" {
  description = "Base URL of the gateway (send requests with the tenant's API key)."
  value       = module.gateway.api_endpoint
}

output "stream_name" {
  description = "Usage stream the SDK producers put to (TM_STREAM_NAME)."
  value       = module.stream.stream_name
}

output "store_backend" {
  description = "Which store holds the windows."
  value       = module.state.store_backend
}

output "table_name" {
  description = "DynamoDB usage table (\"\" with redis)."
  value       = module.state.table_name
}

output "redis_url" {
  description = "Cache URL (\"\" with dynamodb)."
  value       = module.state.redis_url
}

output "tenant_registry_uri" {
  description = "Where the tenant registry lives (edit and upload it here)."
  value       = module.tenant_registry.s3_uri
}

output "alert_topic_arns" {
  description = "Severity topics, keyed info, warning, critical."
  value       = module.alerts.topic_arns
}

output "quarantine_queue_url" {
  description = "Quarantine queue of undecodable or unpriceable records."
  value       = module.alerts.quarantine_queue_url
}

output "failure_queue_url" {
  description = "Batches the consumer's event-source mapping gave up on: meter replay-failures --queue-url <this> --function <functions.metering>."
  value       = module.metering.failure_queue_url
}

output "functions" {
  description = "Function names: metering consumer, gateway, daily report."
  value = {
    metering = module.metering.function_name
    gateway  = module.gateway.function_name
    report   = module.reporting.function_name
  }
}

output "reports" {
  description = "Where the daily reports land and how to query them."
  value = {
    location         = module.reporting.report_location
    athena_workgroup = module.reporting.athena_workgroup
    glue_table       = module.reporting.glue_table
  }
}

output "dashboard_name" {
  description = "CloudWatch dashboard with per-tenant spend."
  value       = module.monitoring.dashboard_name
}
