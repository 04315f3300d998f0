output "api_endpoint" {
  description = "Base URL of the gateway's HTTP API."
  value       = aws_apigatewayv2_api.this.api_endpoint
}

output "api_id" {
  description = "Id of the HTTP API (for alarms and dashboards)."
  value       = aws_apigatewayv2_api.this.id
}

output "function_name" {
  description = "Name of the gateway function."
  value       = module.function.function_name
}

output "function_arn" {
  description = "ARN of the gateway function."
  value       = module.function.function_arn
}

output "role_arn" {
  description = "ARN of the gateway's execution role."
  value       = module.function.role_arn
}

output "log_group_name" {
  description = "Log group of the gateway function."
  value       = module.function.log_group_name
}

output "access_log_group_name" {
  description = "Log group of the HTTP API's access logs."
  value       = aws_cloudwatch_log_group.access.name
}
