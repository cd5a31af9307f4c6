terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 6.0"
    }
  }

  # One state per spoke account: use a workspace or a backend key per account (see
  # docs/deployment-guide.md, "Spokes at scale").
}
