variable "name" {
  description = "Name prefix: topics <name>-alerts-<severity>, queue <name>-quarantine (shared.settings.resource_names)."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the topics and the quarantine queue."
  type        = string
}

variable "subscriptions" {
  description = <<-EOT
    Subscriptions to the severity topics, keyed by a name of your choice. severity: info, warning or critical;
    protocol: email or https; filter_policy: an SNS filter policy as a JSON string (null: every message), applied
    to the message attributes (filter_policy_scope MessageAttributes, the default) or the body (MessageBody).
    endpoint_auto_confirms: the HTTPS endpoint confirms the subscription itself.
  EOT
  type = map(object({
    severity               = string
    protocol               = string
    endpoint               = string
    filter_policy          = optional(string)
    filter_policy_scope    = optional(string, "MessageAttributes")
    endpoint_auto_confirms = optional(bool, false)
  }))
  default = {}

  validation {
    condition     = alltrue([for s in values(var.subscriptions) : contains(["info", "warning", "critical"], s.severity)])
    error_message = "Each subscription's severity must be info, warning or critical."
  }

  validation {
    condition     = alltrue([for s in values(var.subscriptions) : contains(["email", "https"], s.protocol)])
    error_message = "Each subscription's protocol must be email or https."
  }

  validation {
    condition     = alltrue([for s in values(var.subscriptions) : s.protocol != "https" || startswith(s.endpoint, "https://")])
    error_message = "An https subscription's endpoint must start with https://."
  }

  validation {
    condition     = alltrue([for s in values(var.subscriptions) : s.filter_policy == null || can(jsondecode(s.filter_policy))])
    error_message = "Each filter_policy must be a JSON object (jsonencode({...}) in HCL)."
  }

  validation {
    condition     = alltrue([for s in values(var.subscriptions) : contains(["MessageAttributes", "MessageBody"], s.filter_policy_scope)])
    error_message = "filter_policy_scope must be MessageAttributes or MessageBody."
  }
}

variable "quarantine_retention_seconds" {
  description = "How long quarantined records are kept for inspection and replay, in seconds (60 to 1209600, 14 days)."
  type        = number
  default     = 1209600

  validation {
    condition     = var.quarantine_retention_seconds >= 60 && var.quarantine_retention_seconds <= 1209600
    error_message = "quarantine_retention_seconds must be between 60 and 1209600 (SQS limits)."
  }
}

variable "tags" {
  description = "Tags added to the topics and the queue."
  type        = map(string)
  default     = {}
}
