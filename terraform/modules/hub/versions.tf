terraform {
  # The seed README promises Terraform >= 1.5; nothing here needs a newer one.
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source = "hashicorp/aws"
      # Tested with 5.100.0. Provider 6 renames attributes this module reads (e.g. aws_region.name).
      version = ">= 5.70, < 6.0"
    }
  }
}
