variable "function_name" {
  description = "Name of the function, its role and its log group (/aws/lambda/<function_name>)."
  type        = string
}

variable "description" {
  description = "What the function does (shown in the Lambda console)."
  type        = string
}

variable "handler" {
  description = "Python handler as module.path.function, e.g. consumers.metering.handler.lambda_handler."
  type        = string

  validation {
    condition     = can(regex("^[a-z_][a-z0-9_]*(\\.[a-z_][a-z0-9_]*)+$", var.handler))
    error_message = "handler must look like package.module.function."
  }
}

variable "code" {
  description = "The packaged code (module lambda_code's outputs): app zip path and hash, layer ARNs, runtime."
  type = object({
    app_zip      = string
    app_zip_hash = string
    layer_arns   = list(string)
    runtime      = string
  })
}

variable "environment" {
  description = "tenantmeter's environment variables for this function (Powertools' own are added here)."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for k in keys(var.environment) : can(regex("^[A-Z][A-Z0-9_]*$", k))])
    error_message = "Environment variable names must be upper case letters, digits and underscores."
  }
}

variable "policy_json" {
  description = "IAM policy document (JSON) with the function's own permissions: exactly what its code calls."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the environment and the log group."
  type        = string
}

variable "service_name" {
  description = "POWERTOOLS_SERVICE_NAME: the service key in logs and the service dimension of metrics."
  type        = string
}

variable "metrics_namespace" {
  description = "POWERTOOLS_METRICS_NAMESPACE: CloudWatch namespace of the function's EMF metrics."
  type        = string
}

variable "log_level" {
  description = "LOG_LEVEL for Powertools Logger: DEBUG, INFO, WARNING or ERROR."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["DEBUG", "INFO", "WARNING", "ERROR"], var.log_level)
    error_message = "log_level must be DEBUG, INFO, WARNING or ERROR."
  }
}

variable "memory_size" {
  description = "Memory in MB (CPU scales with it): 128 to 10240."
  type        = number
  default     = 512

  validation {
    condition     = var.memory_size >= 128 && var.memory_size <= 10240
    error_message = "memory_size must be between 128 and 10240 MB."
  }
}

variable "timeout" {
  description = "Timeout in seconds: 1 to 900."
  type        = number
  default     = 30

  validation {
    condition     = var.timeout >= 1 && var.timeout <= 900
    error_message = "timeout must be between 1 and 900 seconds."
  }
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions (null: share the account's unreserved pool)."
  type        = number
  default     = null

  validation {
    condition     = var.reserved_concurrency == null ? true : var.reserved_concurrency >= 0
    error_message = "reserved_concurrency must be null or at least 0."
  }
}

variable "vpc_config" {
  description = "Subnets and security groups when the function must reach a VPC resource (the cache), else null."
  type = object({
    subnet_ids         = list(string)
    security_group_ids = list(string)
  })
  default = null
}

variable "dead_letter_queue_arn" {
  description = "SQS queue for failed asynchronous invocations (null: none)."
  type        = string
  default     = null
}

variable "log_retention_days" {
  description = "Days CloudWatch Logs keeps the function's logs (a value CloudWatch accepts, e.g. 30, 90, 365)."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of the values CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, 60, 90, ..., 3653)."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the execution role, if the account requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to the function, role and log group."
  type        = map(string)
  default     = {}
}
