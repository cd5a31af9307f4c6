provider "aws" {
  region = var.region

  # Set when a pipeline in another account deploys here (e.g. OrganizationAccountAccessRole).
  dynamic "assume_role" {
    for_each = var.assume_role_arn == null ? [] : [var.assume_role_arn]
    content {
      role_arn     = assume_role.value
      session_name = "ec2patch-terraform"
    }
  }

  default_tags {
    tags = merge({ Project = "ec2patch", ManagedBy = "terraform" }, var.tags)
  }
}
