variable "name" {
  description = "Name prefix: table <name>-usage, cache <name>-cache (shared.settings.resource_names)."
  type        = string
}

variable "store_backend" {
  description = "dynamodb or redis: which store holds the windows (the TM_STORE_BACKEND every function reads)."
  type        = string
  default     = "dynamodb"

  validation {
    condition     = contains(["dynamodb", "redis"], var.store_backend)
    error_message = "store_backend must be dynamodb or redis."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key for the table, the cache at rest and the auth secret."
  type        = string
}

variable "dynamodb" {
  description = "Key schema of the usage table (must match shared/adapters' DynamoDB store) and deletion protection."
  type = object({
    hash_key            = optional(string, "pk")
    range_key           = optional(string, "sk")
    ttl_attribute       = optional(string, "expires_at")
    deletion_protection = optional(bool, true)
  })
  default = {}
}

variable "redis" {
  description = <<-EOT
    The cache when store_backend = redis. engine: valkey (default, cheaper) or redis; num_cache_clusters: 1 (no
    replica) to 6, more than 1 turns on Multi-AZ automatic failover.
  EOT
  type = object({
    engine                      = optional(string, "valkey")
    engine_version              = optional(string, "8.0")
    node_type                   = optional(string, "cache.t4g.small")
    num_cache_clusters          = optional(number, 2)
    port                        = optional(number, 6379)
    snapshot_retention_days     = optional(number, 1)
    secret_recovery_window_days = optional(number, 7)
    apply_immediately           = optional(bool, false)
  })
  default = {}

  validation {
    condition     = contains(["valkey", "redis"], var.redis.engine)
    error_message = "redis.engine must be valkey or redis."
  }

  validation {
    condition     = var.redis.num_cache_clusters >= 1 && var.redis.num_cache_clusters <= 6
    error_message = "redis.num_cache_clusters must be between 1 and 6."
  }

  validation {
    condition     = var.redis.secret_recovery_window_days == 0 || (var.redis.secret_recovery_window_days >= 7 && var.redis.secret_recovery_window_days <= 30)
    error_message = "redis.secret_recovery_window_days must be 0 (delete at once) or 7 to 30."
  }
}

variable "network" {
  description = <<-EOT
    VPC for the cache and the functions when store_backend = redis (null with dynamodb). subnet_ids: private
    subnets in at least two AZs whose route to AWS APIs is a NAT gateway or VPC endpoints; aws_api_cidr: where
    the functions may open HTTPS connections (0.0.0.0/0 through NAT, or the VPC CIDR with interface endpoints).
  EOT
  type = object({
    vpc_id       = string
    subnet_ids   = list(string)
    aws_api_cidr = optional(string, "0.0.0.0/0")
  })
  default = null

  validation {
    condition     = var.network == null ? true : length(var.network.subnet_ids) >= 1
    error_message = "network.subnet_ids must list at least one subnet."
  }
}

variable "tags" {
  description = "Tags added to every resource."
  type        = map(string)
  default     = {}
}
