output "store_backend" {
  description = "The backend this module built (TM_STORE_BACKEND)."
  value       = var.store_backend
}

output "table_name" {
  description = "Name of the DynamoDB usage table (TM_DYNAMODB_TABLE), or \"\" with redis."
  value       = try(aws_dynamodb_table.this[0].name, "")
}

output "table_arn" {
  description = "ARN of the DynamoDB usage table, or null with redis."
  value       = try(aws_dynamodb_table.this[0].arn, null)
}

output "redis_url" {
  description = "rediss:// URL of the cache's primary endpoint (TM_REDIS_URL), or \"\" with dynamodb."
  value       = try("rediss://${aws_elasticache_replication_group.this[0].primary_endpoint_address}:${var.redis.port}/0", "")
}

output "redis_auth_secret_arn" {
  description = "ARN of the secret holding the cache AUTH token (TM_REDIS_AUTH_SECRET_ARN), or null with dynamodb."
  value       = try(aws_secretsmanager_secret.auth_token[0].arn, null)
}

output "vpc_config" {
  description = "Subnets and security group for the functions when the cache needs a VPC, else null."
  value = local.redis ? {
    subnet_ids         = var.network.subnet_ids
    security_group_ids = [aws_security_group.client[0].id]
  } : null
}
