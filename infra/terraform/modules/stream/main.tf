# The usage-event stream: every producer (gateway, SDK) puts KPL-aggregated UsageEvents here and the metering
# consumer reads them. On-demand by default (no capacity planning, 4 MB/s write to start); provisioned with a
# fixed shard count is cheaper for a steady, known load.

resource "aws_kinesis_stream" "this" {
  name             = "${var.name}-usage-events"
  shard_count      = var.capacity_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = var.retention_hours
  encryption_type  = "KMS"
  kms_key_id       = var.kms_key_arn

  shard_level_metrics = var.shard_level_metrics

  stream_mode_details {
    stream_mode = var.capacity_mode
  }

  tags = var.tags
}
