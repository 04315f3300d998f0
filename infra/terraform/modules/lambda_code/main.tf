# The code every tenantmeter function runs, built by infra/scripts/package_lambda.py before `terraform apply`
# (no pip download at apply time): app.zip holds shared/, producers/ and consumers/ (with shared/data), and
# deps-layer.zip the runtime dependencies as manylinux2014_x86_64 / CPython 3.11 wheels under python/.
# The layer is published here once; each function module uploads app.zip with its source_code_hash.

resource "aws_lambda_layer_version" "deps" {
  layer_name               = "${var.name}-deps"
  description              = "tenantmeter runtime dependencies (boto3 excluded: the runtime's own is used)"
  filename                 = var.deps_layer_zip
  source_code_hash         = filebase64sha256(var.deps_layer_zip)
  compatible_runtimes      = [var.runtime]
  compatible_architectures = ["x86_64"]
}
