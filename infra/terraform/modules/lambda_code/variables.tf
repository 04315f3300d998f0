variable "name" {
  description = "Name prefix: the layer is <name>-deps."
  type        = string
}

variable "deps_layer_zip" {
  description = "Path of dist/lambda/deps-layer.zip, built by infra/scripts/package_lambda.py."
  type        = string
}

variable "app_zip" {
  description = "Path of dist/lambda/app.zip, built by infra/scripts/package_lambda.py."
  type        = string
}

variable "runtime" {
  description = "Lambda runtime the layer's wheels were built for (package_lambda.py builds for CPython 3.11)."
  type        = string
  default     = "python3.11"

  validation {
    condition     = var.runtime == "python3.11"
    error_message = "runtime must be python3.11: the layer's binary wheels are built for CPython 3.11."
  }
}
