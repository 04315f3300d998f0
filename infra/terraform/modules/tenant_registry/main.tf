# The tenant registry (tiers, tenants, hashed API keys, quotas; see docs/tenants.example.toml) lives as one
# object in a private config bucket. The gateway and the consumer read it with s3:GetObject on that object
# only (TM_TENANT_CONFIG = s3://<bucket>/<key>). Terraform uploads it when given a file; a team that edits the
# registry outside Terraform passes registry_file = null and uploads with `aws s3 cp`.

module "bucket" {
  source = "../bucket"

  bucket_name             = "${var.name}-config-${var.account_id}"
  kms_key_arn             = var.kms_key_arn
  noncurrent_version_days = var.noncurrent_version_days
  force_destroy           = var.force_destroy
  tags                    = var.tags
}

resource "aws_s3_object" "registry" {
  count = var.registry_file == null ? 0 : 1

  bucket       = module.bucket.bucket_name
  key          = var.object_key
  source       = var.registry_file
  source_hash  = filemd5(var.registry_file)
  content_type = endswith(var.object_key, ".json") ? "application/json" : "application/toml"
  kms_key_id   = var.kms_key_arn
  tags         = var.tags
}
