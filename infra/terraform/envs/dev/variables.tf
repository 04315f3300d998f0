variable "name" {
  description = "Name prefix of every resource (shared.settings.resource_names(name) gives the same names)."
  type        = string
  default     = "tenantmeter"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,30}[a-z0-9]$", var.name))
    error_message = "name must be 3-32 lower-case letters, digits or hyphens, starting with a letter (it is part of bucket names)."
  }
}

variable "region" {
  description = "AWS region to deploy to (Bedrock models must be enabled there)."
  type        = string
  default     = "us-east-1"
}

variable "tags" {
  description = "Tags added to every resource (on top of application and environment)."
  type        = map(string)
  default     = {}
}

variable "store_backend" {
  description = "dynamodb (default: serverless, no VPC) or redis (ElastiCache Valkey/Redis in var.network)."
  type        = string
  default     = "dynamodb"

  validation {
    condition     = contains(["dynamodb", "redis"], var.store_backend)
    error_message = "store_backend must be dynamodb or redis."
  }
}

variable "network" {
  description = "VPC and private subnets for the cache and the functions; required when store_backend = redis."
  type = object({
    vpc_id       = string
    subnet_ids   = list(string)
    aws_api_cidr = optional(string, "0.0.0.0/0")
  })
  default = null
}

variable "redis" {
  description = "The cache when store_backend = redis (engine, version, node type, node count)."
  type = object({
    engine                      = optional(string, "valkey")
    engine_version              = optional(string, "8.0")
    node_type                   = optional(string, "cache.t4g.small")
    num_cache_clusters          = optional(number, 2)
    port                        = optional(number, 6379)
    snapshot_retention_days     = optional(number, 1)
    secret_recovery_window_days = optional(number, 0)
    apply_immediately           = optional(bool, true)
  })
  default = {}
}

variable "stream" {
  description = "The usage stream: ON_DEMAND or PROVISIONED (with shard_count), and retention in hours (24-8760)."
  type = object({
    capacity_mode   = optional(string, "ON_DEMAND")
    shard_count     = optional(number, 1)
    retention_hours = optional(number, 24)
  })
  default = {}

  validation {
    condition     = var.stream.retention_hours >= 24 && var.stream.retention_hours <= 8760
    error_message = "stream.retention_hours must be between 24 and 8760."
  }
}

variable "consumer" {
  description = <<-EOT
    The metering consumer: its event-source mapping (batch_size 1-10000, batching_window_seconds 0-300,
    parallelization_factor 1-10, maximum_retry_attempts 0-10000, maximum_record_age_seconds 60-604800,
    starting_position, enhanced_fan_out), the dedupe horizon, memory and timeout.
  EOT
  type = object({
    event_source = optional(object({
      batch_size                 = optional(number, 500)
      batching_window_seconds    = optional(number, 1)
      parallelization_factor     = optional(number, 1)
      maximum_retry_attempts     = optional(number, 10000)
      maximum_record_age_seconds = optional(number, 3600)
      starting_position          = optional(string, "TRIM_HORIZON")
      enhanced_fan_out           = optional(bool, false)
    }), {})
    dedupe_horizon_seconds = optional(number, 86400)
    memory_size            = optional(number, 1024)
    timeout                = optional(number, 60)
  })
  default = {}

  validation {
    condition     = var.consumer.event_source.batch_size >= 1 && var.consumer.event_source.batch_size <= 10000
    error_message = "consumer.event_source.batch_size must be between 1 and 10000."
  }
}

variable "gateway" {
  description = <<-EOT
    The gateway: model_backend (bedrock or simulated), the Bedrock model / inference-profile ARNs it may call
    (empty: all foundation models and this account's profiles), SageMaker endpoint names,
    quota cache, body limit, reservation TTL, HTTP API throttling, memory.
  EOT
  type = object({
    model_backend           = optional(string, "bedrock")
    bedrock_resource_arns   = optional(list(string), [])
    sagemaker_endpoints     = optional(list(string), [])
    quota_cache_ms          = optional(number, 1000)
    max_body_bytes          = optional(number, 1048576)
    reservation_ttl_seconds = optional(number, 300)
    memory_size             = optional(number, 512)
    throttling = optional(object({
      rate_limit  = optional(number, 100)
      burst_limit = optional(number, 200)
    }), {})
  })
  default = {}
}

variable "report" {
  description = "The daily report: S3 key prefix and schedule (UTC)."
  type = object({
    prefix              = optional(string, "daily")
    schedule_expression = optional(string, "cron(15 0 * * ? *)")
  })
  default = {}
}

variable "alert_subscriptions" {
  description = "Email / HTTPS subscriptions to the severity topics, with optional SNS filter policies (JSON)."
  type = map(object({
    severity               = string
    protocol               = string
    endpoint               = string
    filter_policy          = optional(string)
    filter_policy_scope    = optional(string, "MessageAttributes")
    endpoint_auto_confirms = optional(bool, false)
  }))
  default = {}
}

variable "tenant_contact_topic_arns" {
  description = "Tenants' own SNS topics (contact_topic_arn in the registry) the consumer may publish to."
  type        = list(string)
  default     = []
}

variable "tenant_registry_file" {
  description = "Registry file to upload (null: docs/tenants.example.toml; \"\": upload nothing, manage it yourself)."
  type        = string
  default     = null
}

variable "lambda_package" {
  description = "Paths of the built zips (null: <repo>/dist/lambda/app.zip and deps-layer.zip from package_lambda.py)."
  type = object({
    app_zip        = optional(string)
    deps_layer_zip = optional(string)
  })
  default = {}
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of tenantmeter's EMF metrics."
  type        = string
  default     = "tenantmeter"
}

variable "log_level" {
  description = "LOG_LEVEL of every function."
  type        = string
  default     = "INFO"
}

variable "log_retention_days" {
  description = "Days function and access logs are kept."
  type        = number
  default     = 365
}

variable "alarms" {
  description = "Thresholds of the operational alarms (iterator age ms, consumer errors, quarantine depth, throttled puts)."
  type = object({
    iterator_age_ms  = optional(number, 60000)
    consumer_errors  = optional(number, 0)
    quarantine_depth = optional(number, 0)
    throttled_puts   = optional(number, 0)
  })
  default = {}
}

variable "spend_alarm" {
  description = "Daily spend budget in USD across tenants (null: no spend alarms) and alert fractions, ascending in (0, 1]."
  type = object({
    daily_budget_usd = optional(number)
    thresholds = optional(object({
      info     = optional(number, 0.5)
      warning  = optional(number, 0.8)
      critical = optional(number, 0.95)
    }), {})
  })
  default = {}

  validation {
    condition = (
      var.spend_alarm.thresholds.info > 0 &&
      var.spend_alarm.thresholds.info < var.spend_alarm.thresholds.warning &&
      var.spend_alarm.thresholds.warning < var.spend_alarm.thresholds.critical &&
      var.spend_alarm.thresholds.critical <= 1
    )
    error_message = "spend_alarm.thresholds must ascend in (0, 1]: 0 < info < warning < critical <= 1."
  }
}
