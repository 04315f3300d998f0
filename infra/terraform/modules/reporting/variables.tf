variable "name" {
  description = "Name prefix: function <name>-report, bucket <name>-reports-<account_id> (shared.settings.resource_names)."
  type        = string
}

variable "account_id" {
  description = "AWS account id, part of the bucket name."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.account_id))
    error_message = "account_id must be 12 digits."
  }
}

variable "code" {
  description = "The packaged code (module lambda_code's outputs)."
  type = object({
    app_zip      = string
    app_zip_hash = string
    layer_arns   = list(string)
    runtime      = string
  })
}

variable "kms_key_arn" {
  description = "ARN of the tenantmeter KMS key (bucket, queue, environment, logs, Athena results)."
  type        = string
}

variable "store" {
  description = "The usage store (module state's outputs): backend, table or cache URL and secret, VPC placement."
  type = object({
    backend               = string
    table_name            = string
    table_arn             = optional(string)
    redis_url             = string
    redis_auth_secret_arn = optional(string)
    vpc_config = optional(object({
      subnet_ids         = list(string)
      security_group_ids = list(string)
    }))
  })

  validation {
    condition     = contains(["dynamodb", "redis"], var.store.backend)
    error_message = "store.backend must be dynamodb or redis."
  }
}

variable "report_prefix" {
  description = "Key prefix of the reports in the bucket (TM_REPORT_PREFIX); the function may write under it only."
  type        = string
  default     = "daily"

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9/_-]*$", trim(var.report_prefix, "/")))
    error_message = "report_prefix must be lower-case letters, digits, '/', '_' or '-'."
  }
}

variable "schedule_expression" {
  description = "When the report runs, in UTC (EventBridge Scheduler cron() or rate() expression)."
  type        = string
  default     = "cron(15 0 * * ? *)"

  validation {
    condition     = can(regex("^(cron|rate)\\(.+\\)$", var.schedule_expression))
    error_message = "schedule_expression must be a cron(...) or rate(...) expression."
  }
}

variable "schedule_enabled" {
  description = "Whether the daily schedule is enabled."
  type        = bool
  default     = true
}

variable "first_report_date" {
  description = "Earliest report_day partition Athena's partition projection considers (yyyy-MM-dd)."
  type        = string
  default     = "2025-01-01"

  validation {
    condition     = can(regex("^[0-9]{4}-[0-9]{2}-[0-9]{2}$", var.first_report_date))
    error_message = "first_report_date must be yyyy-MM-dd."
  }
}

variable "report_columns" {
  description = "Columns of the report CSV, in file order (must match consumers/reporting's header)."
  type = list(object({
    name    = string
    type    = string
    comment = optional(string, "")
  }))
  default = [
    { name = "day", type = "string", comment = "UTC day, yyyy-MM-dd" },
    { name = "tenant_id", type = "string" },
    { name = "model", type = "string" },
    { name = "cost_center", type = "string" },
    { name = "application_id", type = "string" },
    { name = "input_tokens", type = "bigint" },
    { name = "output_tokens", type = "bigint" },
    { name = "cache_read_tokens", type = "bigint" },
    { name = "cache_write_tokens", type = "bigint" },
    { name = "total_tokens", type = "bigint" },
    { name = "requests", type = "bigint" },
    { name = "cost_usd", type = "decimal(20,9)", comment = "exact USD (sum of nano-dollars)" },
  ]
}

variable "report_retention_days" {
  description = "Days report files are kept (null: forever)."
  type        = number
  default     = null
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the report's EMF metrics."
  type        = string
}

variable "log_level" {
  description = "LOG_LEVEL of the function."
  type        = string
  default     = "INFO"
}

variable "memory_size" {
  description = "Memory of the function in MB."
  type        = number
  default     = 512
}

variable "timeout" {
  description = "Timeout of one report run in seconds."
  type        = number
  default     = 300
}

variable "log_retention_days" {
  description = "Days the function's logs are kept."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket and workgroup with their contents (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
