variable "name" {
  description = "Name prefix: function <name>-gateway, HTTP API <name>-gateway."
  type        = string
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
  description = "ARN of the tenantmeter KMS key (stream, registry object, environment, logs)."
  type        = string
}

variable "stream_name" {
  description = "Name of the usage-event stream (TM_STREAM_NAME)."
  type        = string
}

variable "stream_arn" {
  description = "ARN of the usage-event stream."
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

variable "tenant_registry" {
  description = "The tenant registry object: its ARN (for s3:GetObject) and s3:// URI (TM_TENANT_CONFIG)."
  type = object({
    object_arn = string
    s3_uri     = string
  })
}

variable "model_backend" {
  description = "bedrock (call Amazon Bedrock) or simulated (a built-in fake model, for load tests without model cost)."
  type        = string
  default     = "bedrock"

  validation {
    condition     = contains(["bedrock", "simulated"], var.model_backend)
    error_message = "model_backend must be bedrock or simulated."
  }
}

variable "bedrock_resource_arns" {
  description = "Foundation-model and inference-profile ARNs the gateway may invoke (empty: every foundation model and this account's profiles)."
  type        = list(string)
  default     = []
}

variable "sagemaker_endpoints" {
  description = "Names of the SageMaker endpoints the gateway may call; a request for that model id goes to the endpoint (TM_SAGEMAKER_ENDPOINTS)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.sagemaker_endpoints : can(regex("^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}$", e))])
    error_message = "sagemaker_endpoints values must be SageMaker endpoint names (no wildcards)."
  }
}

variable "quota_cache_ms" {
  description = "How long the gateway caches a tenant's blocks and reserve flags, in ms (TM_QUOTA_CACHE_MS)."
  type        = number
  default     = 1000

  validation {
    condition     = var.quota_cache_ms >= 0 && var.quota_cache_ms <= 1000
    error_message = "quota_cache_ms must be between 0 and 1000 (a cut-off must reach the gateway within a second)."
  }
}

variable "max_body_bytes" {
  description = "Largest request body the gateway accepts, in bytes (TM_MAX_BODY_BYTES; Lambda's synchronous payload cap is 6 MiB)."
  type        = number
  default     = 1048576

  validation {
    condition     = var.max_body_bytes >= 1024 && var.max_body_bytes <= 6291456
    error_message = "max_body_bytes must be between 1024 and 6291456 (6 MiB)."
  }
}

variable "reservation_ttl_seconds" {
  description = "How long a reservation taken under reserved admission lives if never settled (TM_RESERVATION_TTL_SECONDS)."
  type        = number
  default     = 300

  validation {
    condition     = var.reservation_ttl_seconds >= 10 && var.reservation_ttl_seconds <= 86400
    error_message = "reservation_ttl_seconds must be between 10 and 86400."
  }
}

variable "throttling" {
  description = "Stage-wide throttling of the HTTP API: steady requests per second and burst."
  type = object({
    rate_limit  = optional(number, 100)
    burst_limit = optional(number, 200)
  })
  default = {}

  validation {
    condition     = var.throttling.rate_limit > 0 && var.throttling.burst_limit >= 1
    error_message = "throttling.rate_limit must be positive and throttling.burst_limit at least 1."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the gateway's EMF metrics."
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
  description = "Timeout in seconds (the HTTP API waits at most 30)."
  type        = number
  default     = 30
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions (null: unreserved)."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "Days the function's and the API's access logs are kept."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
