variable "name" {
  description = "Name prefix: function <name>-metering, failure queue <name>-metering-failures."
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
  description = "ARN of the tenantmeter KMS key (stream, topics, queues, table, registry object, environment)."
  type        = string
}

variable "stream_arn" {
  description = "ARN of the usage-event stream."
  type        = string
}

variable "event_source" {
  description = <<-EOT
    The event-source mapping. batch_size 1-10000; batching_window_seconds 0-300; parallelization_factor 1-10
    (concurrent batches per shard, order kept per partition key); maximum_retry_attempts 0-10000 (bounded:
    -1, forever, is refused); maximum_record_age_seconds 60-604800 (bounded likewise); starting_position
    LATEST or TRIM_HORIZON; enhanced_fan_out: read through a dedicated consumer (2 MB/s per shard of its own).
  EOT
  type = object({
    batch_size                 = optional(number, 500)
    batching_window_seconds    = optional(number, 1)
    parallelization_factor     = optional(number, 1)
    maximum_retry_attempts     = optional(number, 10000)
    maximum_record_age_seconds = optional(number, 3600)
    starting_position          = optional(string, "TRIM_HORIZON")
    enhanced_fan_out           = optional(bool, false)
  })
  default = {}

  validation {
    condition     = var.event_source.batch_size >= 1 && var.event_source.batch_size <= 10000
    error_message = "event_source.batch_size must be between 1 and 10000."
  }

  validation {
    condition     = var.event_source.batching_window_seconds >= 0 && var.event_source.batching_window_seconds <= 300
    error_message = "event_source.batching_window_seconds must be between 0 and 300."
  }

  validation {
    condition     = var.event_source.parallelization_factor >= 1 && var.event_source.parallelization_factor <= 10
    error_message = "event_source.parallelization_factor must be between 1 and 10."
  }

  validation {
    condition     = var.event_source.maximum_retry_attempts >= 0 && var.event_source.maximum_retry_attempts <= 10000
    error_message = "event_source.maximum_retry_attempts must be between 0 and 10000 (never -1: a poison record would block its shard)."
  }

  validation {
    condition     = var.event_source.maximum_record_age_seconds >= 60 && var.event_source.maximum_record_age_seconds <= 604800
    error_message = "event_source.maximum_record_age_seconds must be between 60 and 604800 (never -1)."
  }

  validation {
    condition     = contains(["LATEST", "TRIM_HORIZON"], var.event_source.starting_position)
    error_message = "event_source.starting_position must be LATEST or TRIM_HORIZON."
  }
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

variable "alert_topic_arns" {
  description = "ARN of each severity topic."
  type = object({
    info     = string
    warning  = string
    critical = string
  })
}

variable "tenant_contact_topic_arns" {
  description = "Tenants' own SNS topics (contact_topic_arn in the registry) the consumer may publish to."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.tenant_contact_topic_arns : can(regex("^arn:aws[a-z-]*:sns:[a-z0-9-]+:[0-9]{12}:[A-Za-z0-9_-]+$", arn))])
    error_message = "tenant_contact_topic_arns must be SNS topic ARNs (no wildcards)."
  }
}

variable "quarantine_queue_arn" {
  description = "ARN of the quarantine queue."
  type        = string
}

variable "quarantine_queue_url" {
  description = "URL of the quarantine queue (TM_QUARANTINE_URL)."
  type        = string
}

variable "dedupe_horizon_seconds" {
  description = "How long an event id is remembered for exact-once counting (TM_DEDUPE_HORIZON_SECONDS)."
  type        = number
  default     = 86400

  validation {
    condition     = var.dedupe_horizon_seconds >= 60 && var.dedupe_horizon_seconds <= 2592000
    error_message = "dedupe_horizon_seconds must be between 60 and 2592000 (30 days)."
  }
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the consumer's EMF metrics."
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
  default     = 1024
}

variable "timeout" {
  description = "Timeout of one batch in seconds."
  type        = number
  default     = 60
}

variable "reserved_concurrency" {
  description = "Reserved concurrent executions (null: unreserved; the mapping already bounds it at shards x parallelization)."
  type        = number
  default     = null
}

variable "log_retention_days" {
  description = "Days the function's logs are kept."
  type        = number
  default     = 365
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
