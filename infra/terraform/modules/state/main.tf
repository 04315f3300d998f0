# Where windows, dedupe marks, alert marks, blocks and reservations live: DynamoDB (default; serverless, no
# VPC) or ElastiCache for Valkey / Redis (lower latency at high event rates; needs a VPC). One variable,
# store_backend, chooses; it is the same TM_STORE_BACKEND value the consumer, gateway and report read, and
# each backend matches one of the store adapters in shared/adapters/.

locals {
  dynamodb = var.store_backend == "dynamodb"
  redis    = var.store_backend == "redis"
}

# ---------------------------------------------------------------- DynamoDB

resource "aws_dynamodb_table" "this" {
  count = local.dynamodb ? 1 : 0

  name                        = "${var.name}-usage"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = var.dynamodb.hash_key
  range_key                   = var.dynamodb.range_key
  deletion_protection_enabled = var.dynamodb.deletion_protection

  attribute {
    name = var.dynamodb.hash_key
    type = "S"
  }

  attribute {
    name = var.dynamodb.range_key
    type = "S"
  }

  # Buckets, dedupe marks and reservations carry an expiry; DynamoDB deletes them lazily (up to days later),
  # so the adapter also filters expired items on read.
  ttl {
    attribute_name = var.dynamodb.ttl_attribute
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arn
  }

  tags = var.tags
}

# ---------------------------------------------------------------- ElastiCache (Valkey / Redis)

resource "aws_security_group" "client" {
  #checkov:skip=CKV2_AWS_5:Attached to the three functions' vpc_config through this module's vpc_config output, which checkov cannot follow across modules.
  count = local.redis ? 1 : 0

  name        = "${var.name}-functions"
  description = "tenantmeter Lambda functions: reach the cache and AWS APIs"
  vpc_id      = var.network.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_egress_rule" "client_to_cache" {
  count = local.redis ? 1 : 0

  security_group_id            = aws_security_group.client[0].id
  referenced_security_group_id = aws_security_group.cache[0].id
  ip_protocol                  = "tcp"
  from_port                    = var.redis.port
  to_port                      = var.redis.port
  description                  = "TLS connections to the cache"
}

resource "aws_vpc_security_group_egress_rule" "client_to_aws_apis" {
  count = local.redis ? 1 : 0

  security_group_id = aws_security_group.client[0].id
  cidr_ipv4         = var.network.aws_api_cidr
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  description       = "HTTPS to AWS APIs (Kinesis, SNS, SQS, S3, Secrets Manager, Bedrock) through NAT or VPC endpoints"
}

resource "aws_security_group" "cache" {
  count = local.redis ? 1 : 0

  name        = "${var.name}-cache"
  description = "tenantmeter cache: only the functions may connect"
  vpc_id      = var.network.vpc_id
  tags        = var.tags
}

resource "aws_vpc_security_group_ingress_rule" "cache_from_client" {
  count = local.redis ? 1 : 0

  security_group_id            = aws_security_group.cache[0].id
  referenced_security_group_id = aws_security_group.client[0].id
  ip_protocol                  = "tcp"
  from_port                    = var.redis.port
  to_port                      = var.redis.port
  description                  = "tenantmeter functions"
}

resource "aws_elasticache_subnet_group" "this" {
  count = local.redis ? 1 : 0

  name       = "${var.name}-cache"
  subnet_ids = var.network.subnet_ids
  tags       = var.tags
}

resource "random_password" "auth_token" {
  count = local.redis ? 1 : 0

  # ElastiCache AUTH tokens: 16-128 printable characters without @, " or /; letters and digits are safest.
  length  = 64
  special = false
}

resource "aws_secretsmanager_secret" "auth_token" {
  #checkov:skip=CKV2_AWS_57:Rotating the cache AUTH token needs an ElastiCache ModifyReplicationGroup (ROTATE then SET) in step with the secret; rotate with `terraform apply -replace=module.state.random_password.auth_token[0]`.
  count = local.redis ? 1 : 0

  name                    = "${var.name}/cache-auth-token"
  description             = "AUTH token of the tenantmeter cache (the SecretString is the token itself)"
  kms_key_id              = var.kms_key_arn
  recovery_window_in_days = var.redis.secret_recovery_window_days
  tags                    = var.tags
}

resource "aws_secretsmanager_secret_version" "auth_token" {
  count = local.redis ? 1 : 0

  secret_id     = aws_secretsmanager_secret.auth_token[0].id
  secret_string = random_password.auth_token[0].result
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV2_AWS_50:Multi-AZ automatic failover is on whenever num_cache_clusters > 1 (the default is 2); checkov cannot evaluate that expression, and a single-node cache (num_cache_clusters = 1, cheaper dev) has nothing to fail over to.
  count = local.redis ? 1 : 0

  replication_group_id       = "${var.name}-cache"
  description                = "tenantmeter usage windows, dedupe marks, alert marks, blocks and reservations"
  engine                     = var.redis.engine
  engine_version             = var.redis.engine_version
  node_type                  = var.redis.node_type
  num_cache_clusters         = var.redis.num_cache_clusters
  automatic_failover_enabled = var.redis.num_cache_clusters > 1
  multi_az_enabled           = var.redis.num_cache_clusters > 1
  port                       = var.redis.port
  subnet_group_name          = aws_elasticache_subnet_group.this[0].name
  security_group_ids         = [aws_security_group.cache[0].id]
  at_rest_encryption_enabled = true
  kms_key_id                 = var.kms_key_arn
  transit_encryption_enabled = true
  auth_token                 = random_password.auth_token[0].result
  snapshot_retention_limit   = var.redis.snapshot_retention_days
  auto_minor_version_upgrade = true
  apply_immediately          = var.redis.apply_immediately
  tags                       = var.tags

  lifecycle {
    precondition {
      condition     = var.network != null
      error_message = "store_backend = \"redis\" needs network = { vpc_id, subnet_ids } (private subnets with NAT or VPC endpoints)."
    }
  }
}
