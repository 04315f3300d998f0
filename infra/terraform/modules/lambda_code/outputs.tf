output "layer_arn" {
  description = "Versioned ARN of the dependencies layer."
  value       = aws_lambda_layer_version.deps.arn
}

output "app_zip" {
  description = "Path of the application zip every function uploads."
  value       = var.app_zip
}

output "app_zip_hash" {
  description = "Base64 SHA-256 of the application zip (source_code_hash: a rebuilt zip redeploys the functions)."
  value       = filebase64sha256(var.app_zip)
}

output "runtime" {
  description = "Lambda runtime of the functions."
  value       = var.runtime
}
