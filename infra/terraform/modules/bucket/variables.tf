variable "bucket_name" {
  description = "Globally unique bucket name (tenantmeter uses <name>-<purpose>-<account id>)."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lower-case letters, digits, dots or hyphens."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key for default server-side encryption."
  type        = string
}

variable "noncurrent_version_days" {
  description = "Days a replaced or deleted object version is kept before it expires."
  type        = number
  default     = 90

  validation {
    condition     = var.noncurrent_version_days >= 1
    error_message = "noncurrent_version_days must be at least 1."
  }
}

variable "expire_current_after_days" {
  description = "Days after which current objects expire (null: keep them)."
  type        = number
  default     = null

  validation {
    condition     = var.expire_current_after_days == null ? true : var.expire_current_after_days >= 1
    error_message = "expire_current_after_days must be null or at least 1."
  }
}

variable "force_destroy" {
  description = "Let terraform destroy delete a non-empty bucket (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to the bucket."
  type        = map(string)
  default     = {}
}
