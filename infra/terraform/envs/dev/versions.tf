terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6"
    }
  }

  # State stays local by default. For a shared environment, keep it in an encrypted, versioned S3 bucket:
  # backend "s3" {
  #   bucket       = "my-terraform-state"
  #   key          = "tenantmeter/dev.tfstate"
  #   region       = "us-east-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge({ application = "tenantmeter", environment = "dev" }, var.tags)
  }
}
