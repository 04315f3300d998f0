variable "name" {
  description = "Name prefix: the bucket is <name>-config-<account_id> (shared.settings.resource_names)."
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

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the bucket."
  type        = string
}

variable "object_key" {
  description = "Key of the registry object in the bucket (.toml or .json, as shared.tenants.TenantRegistry.load reads)."
  type        = string
  default     = "tenants.toml"

  validation {
    condition     = endswith(var.object_key, ".toml") || endswith(var.object_key, ".json")
    error_message = "object_key must end in .toml or .json."
  }
}

variable "registry_file" {
  description = "Local path of the registry file to upload (null: upload it yourself to s3://<bucket>/<object_key>)."
  type        = string
  default     = null
}

variable "noncurrent_version_days" {
  description = "Days earlier registry versions are kept (to roll back a bad edit)."
  type        = number
  default     = 365
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket with its versions (dev only)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to the bucket and the object."
  type        = map(string)
  default     = {}
}
