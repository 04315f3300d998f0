# tenantmeter, development environment: every component in one root module.
# Build the code first (python infra/scripts/package_lambda.py), then terraform init && terraform apply.

data "aws_caller_identity" "current" {}

locals {
  account_id = data.aws_caller_identity.current.account_id
  repo_root  = abspath("${path.root}/../../../..")

  app_zip        = coalesce(var.lambda_package.app_zip, "${local.repo_root}/dist/lambda/app.zip")
  deps_layer_zip = coalesce(var.lambda_package.deps_layer_zip, "${local.repo_root}/dist/lambda/deps-layer.zip")
  registry_file  = var.tenant_registry_file == "" ? null : coalesce(var.tenant_registry_file, "${local.repo_root}/docs/tenants.example.toml")

  code = {
    app_zip      = module.code.app_zip
    app_zip_hash = module.code.app_zip_hash
    layer_arns   = [module.code.layer_arn]
    runtime      = module.code.runtime
  }

  store = {
    backend               = module.state.store_backend
    table_name            = module.state.table_name
    table_arn             = module.state.table_arn
    redis_url             = module.state.redis_url
    redis_auth_secret_arn = module.state.redis_auth_secret_arn
    vpc_config            = module.state.vpc_config
  }

  tenant_registry = {
    object_arn = module.tenant_registry.object_arn
    s3_uri     = module.tenant_registry.s3_uri
  }
}

module "kms" {
  source = "../../modules/kms"

  name = var.name
}

module "stream" {
  source = "../../modules/stream"

  name            = var.name
  kms_key_arn     = module.kms.key_arn
  capacity_mode   = var.stream.capacity_mode
  shard_count     = var.stream.shard_count
  retention_hours = var.stream.retention_hours
}

module "alerts" {
  source = "../../modules/alerts"

  name          = var.name
  kms_key_arn   = module.kms.key_arn
  subscriptions = var.alert_subscriptions
}

module "state" {
  source = "../../modules/state"

  name          = var.name
  store_backend = var.store_backend
  kms_key_arn   = module.kms.key_arn
  redis         = var.redis
  network       = var.network

  dynamodb = {
    # dev: let terraform destroy remove the table.
    deletion_protection = false
  }
}

module "tenant_registry" {
  source = "../../modules/tenant_registry"

  name          = var.name
  account_id    = local.account_id
  kms_key_arn   = module.kms.key_arn
  registry_file = local.registry_file
  force_destroy = true
}

module "code" {
  source = "../../modules/lambda_code"

  name           = var.name
  app_zip        = local.app_zip
  deps_layer_zip = local.deps_layer_zip
}

module "metering" {
  source = "../../modules/metering"

  name                      = var.name
  code                      = local.code
  kms_key_arn               = module.kms.key_arn
  stream_arn                = module.stream.stream_arn
  event_source              = var.consumer.event_source
  store                     = local.store
  tenant_registry           = local.tenant_registry
  alert_topic_arns          = module.alerts.topic_arns
  tenant_contact_topic_arns = var.tenant_contact_topic_arns
  quarantine_queue_arn      = module.alerts.quarantine_queue_arn
  quarantine_queue_url      = module.alerts.quarantine_queue_url
  dedupe_horizon_seconds    = var.consumer.dedupe_horizon_seconds
  metrics_namespace         = var.metrics_namespace
  log_level                 = var.log_level
  memory_size               = var.consumer.memory_size
  timeout                   = var.consumer.timeout
  log_retention_days        = var.log_retention_days
}

module "gateway" {
  source = "../../modules/gateway"

  name                    = var.name
  code                    = local.code
  kms_key_arn             = module.kms.key_arn
  stream_name             = module.stream.stream_name
  stream_arn              = module.stream.stream_arn
  store                   = local.store
  tenant_registry         = local.tenant_registry
  model_backend           = var.gateway.model_backend
  bedrock_resource_arns   = var.gateway.bedrock_resource_arns
  sagemaker_endpoints     = var.gateway.sagemaker_endpoints
  quota_cache_ms          = var.gateway.quota_cache_ms
  max_body_bytes          = var.gateway.max_body_bytes
  reservation_ttl_seconds = var.gateway.reservation_ttl_seconds
  throttling              = var.gateway.throttling
  metrics_namespace       = var.metrics_namespace
  log_level               = var.log_level
  memory_size             = var.gateway.memory_size
  log_retention_days      = var.log_retention_days
}

module "reporting" {
  source = "../../modules/reporting"

  name                = var.name
  account_id          = local.account_id
  code                = local.code
  kms_key_arn         = module.kms.key_arn
  store               = local.store
  report_prefix       = var.report.prefix
  schedule_expression = var.report.schedule_expression
  metrics_namespace   = var.metrics_namespace
  log_level           = var.log_level
  log_retention_days  = var.log_retention_days
  force_destroy       = true
}

module "monitoring" {
  source = "../../modules/monitoring"

  name                          = var.name
  alert_topic_arns              = module.alerts.topic_arns
  stream_name                   = module.stream.stream_name
  consumer_function_name        = module.metering.function_name
  consumer_log_group_name       = module.metering.log_group_name
  quarantine_queue_name         = module.alerts.quarantine_queue_name
  failure_queue_name            = module.metering.failure_queue_name
  report_dead_letter_queue_name = module.reporting.dead_letter_queue_name
  metrics_namespace             = var.metrics_namespace
  alarms                        = var.alarms
  spend_alarm                   = var.spend_alarm

  spend = {
    log_group_names = { gateway = module.gateway.log_group_name }
  }
}
