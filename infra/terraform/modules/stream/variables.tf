variable "name" {
  description = "Name prefix; the stream is named <name>-usage-events (shared.settings.resource_names)."
  type        = string
}

variable "capacity_mode" {
  description = "ON_DEMAND (default: scales by itself) or PROVISIONED (a fixed shard_count)."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.capacity_mode)
    error_message = "capacity_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_count" {
  description = "Shards when capacity_mode is PROVISIONED (each writes 1 MB/s or 1,000 records/s); ignored on demand."
  type        = number
  default     = 1

  validation {
    condition     = var.shard_count >= 1 && var.shard_count <= 500 && floor(var.shard_count) == var.shard_count
    error_message = "shard_count must be a whole number between 1 and 500."
  }
}

variable "retention_hours" {
  description = "How long records stay readable, in hours: 24 (included) to 8760 (one year, billed per shard-hour)."
  type        = number
  default     = 24

  validation {
    condition     = var.retention_hours >= 24 && var.retention_hours <= 8760 && floor(var.retention_hours) == var.retention_hours
    error_message = "retention_hours must be a whole number of hours between 24 and 8760."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the stream (server-side encryption)."
  type        = string
}

variable "shard_level_metrics" {
  description = "Enhanced shard-level CloudWatch metrics to enable (billed); empty keeps only stream-level metrics."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to the stream."
  type        = map(string)
  default     = {}
}
