variable "name" {
  description = "Name prefix of every tenantmeter resource (the alias is alias/<name>)."
  type        = string
}

variable "deletion_window_in_days" {
  description = "Days a scheduled key deletion waits before the key (and everything it encrypts) is gone."
  type        = number
  default     = 30

  validation {
    condition     = var.deletion_window_in_days >= 7 && var.deletion_window_in_days <= 30
    error_message = "deletion_window_in_days must be between 7 and 30 (AWS KMS limits)."
  }
}

variable "tags" {
  description = "Tags added to the key."
  type        = map(string)
  default     = {}
}
