variable "name" {
  description = "Name prefix of alarms, queries and the dashboard."
  type        = string
}

variable "alert_topic_arns" {
  description = "ARN of each severity topic; alarms notify the topic of their severity."
  type = object({
    info     = string
    warning  = string
    critical = string
  })
}

variable "stream_name" {
  description = "Name of the usage-event stream."
  type        = string
}

variable "consumer_function_name" {
  description = "Name of the metering consumer function."
  type        = string
}

variable "consumer_log_group_name" {
  description = "Log group of the metering consumer (its EMF lines carry tenant_id)."
  type        = string
}

variable "quarantine_queue_name" {
  description = "Name of the quarantine queue."
  type        = string
}

variable "failure_queue_name" {
  description = "Name of the event-source mapping's on-failure queue."
  type        = string
}

variable "report_dead_letter_queue_name" {
  description = "Name of the daily report's dead-letter queue."
  type        = string
}

variable "metrics_namespace" {
  description = "CloudWatch namespace of the consumer's EMF metrics (POWERTOOLS_METRICS_NAMESPACE) and of SpendUSD."
  type        = string
}

variable "consumer_service_name" {
  description = "POWERTOOLS_SERVICE_NAME of the consumer: the service dimension of its EMF metrics."
  type        = string
  default     = "metering"
}

variable "spend" {
  description = <<-EOT
    Where per-tenant spend is read from: log groups (keyed by a static name) whose EMF documents carry the
    tenant in tenant_field and the exact USD cost in cost_field (the gateway's request metrics do). Each group
    gets a metric filter feeding the tenant-free SpendUSD metric the spend alarms watch.
  EOT
  type = object({
    log_group_names = map(string)
    cost_field      = optional(string, "CostUSD")
    tenant_field    = optional(string, "tenant_id")
  })

  validation {
    condition     = length(var.spend.log_group_names) > 0
    error_message = "spend.log_group_names must name at least one log group."
  }

  validation {
    condition     = can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.spend.cost_field)) && can(regex("^[A-Za-z_][A-Za-z0-9_]*$", var.spend.tenant_field))
    error_message = "spend.cost_field and spend.tenant_field must be plain JSON field names."
  }
}

variable "alarms" {
  description = "Alarm thresholds: iterator age in ms, consumer errors per 5 min, quarantined messages, throttled puts per 5 min."
  type = object({
    iterator_age_ms  = optional(number, 60000)
    consumer_errors  = optional(number, 0)
    quarantine_depth = optional(number, 0)
    throttled_puts   = optional(number, 0)
  })
  default = {}

  validation {
    condition     = var.alarms.iterator_age_ms >= 1000
    error_message = "alarms.iterator_age_ms must be at least 1000 (a healthy consumer's iterator age is under a second or two)."
  }

  validation {
    condition     = var.alarms.consumer_errors >= 0 && var.alarms.quarantine_depth >= 0 && var.alarms.throttled_puts >= 0
    error_message = "alarm thresholds must not be negative."
  }
}

variable "spend_alarm" {
  description = <<-EOT
    Platform-wide daily spend alarms: when the last 24 hours' spend (SpendUSD, all tenants) reaches each fraction
    of daily_budget_usd, the alarm notifies that severity's topic. null budget: no spend alarms. Fractions
    ascend in (0, 1]: info < warning < critical.
  EOT
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

  validation {
    condition     = var.spend_alarm.daily_budget_usd == null ? true : var.spend_alarm.daily_budget_usd > 0
    error_message = "spend_alarm.daily_budget_usd must be positive (or null for no spend alarms)."
  }
}

variable "tags" {
  description = "Tags added to the alarms."
  type        = map(string)
  default     = {}
}
