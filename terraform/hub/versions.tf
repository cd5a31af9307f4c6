terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 6.0"
    }
  }

  # State is local unless a backend is added. For shared use keep it in S3, e.g. a
  # backend_override.tf with `terraform { backend "s3" {} }` and `terraform init
  # -backend-config=...` (as .github/workflows/hub-deploy.yml does). The state holds the
  # approval-link HMAC key: the bucket must be encrypted and private.
}
