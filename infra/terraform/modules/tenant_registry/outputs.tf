output "bucket_name" {
  description = "Name of the config bucket."
  value       = module.bucket.bucket_name
}

output "bucket_arn" {
  description = "ARN of the config bucket."
  value       = module.bucket.bucket_arn
}

output "object_arn" {
  description = "ARN of the registry object (the only object the functions may read)."
  value       = "${module.bucket.bucket_arn}/${var.object_key}"
}

output "s3_uri" {
  description = "s3:// URI of the registry object (TM_TENANT_CONFIG)."
  value       = "s3://${module.bucket.bucket_name}/${var.object_key}"
}
