# The run store: DynamoDB for per-run, per-target and per-instance records (key layout in
# crates/core/src/store.rs), S3 for plans, manifests and reports (keys under runs/), and the
# approval links' HMAC key.

resource "aws_dynamodb_table" "runs" {
  name         = local.table_name
  billing_mode = "PAY_PER_REQUEST"
  hash_key     = "pk"
  range_key    = "sk"

  attribute {
    name = "pk"
    type = "S"
  }

  attribute {
    name = "sk"
    type = "S"
  }

  ttl {
    attribute_name = "expiresAt"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = local.kms_key_arn
  }

  deletion_protection_enabled = false
  tags                        = local.tags
}

resource "aws_s3_bucket" "artifacts" {
  # checkov:skip=CKV_AWS_18:Server access logs need a second bucket per deployment; reads and writes come only from the hub's own roles and are visible in CloudTrail data events if the organization enables them.
  # checkov:skip=CKV_AWS_144:Run artifacts are reproducible records kept record_ttl_days; cross-region replication would double cost for no recovery benefit (DynamoDB PITR keeps the authoritative state).
  # checkov:skip=CKV2_AWS_62:Nothing consumes bucket events; the state machine already knows when each object is written.
  bucket        = local.bucket_name
  force_destroy = false
  tags          = local.tags
}

resource "aws_s3_bucket_public_access_block" "artifacts" {
  bucket                  = aws_s3_bucket.artifacts.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_versioning" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = local.kms_key_arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id

  rule {
    id     = "all-objects"
    status = "Enabled"

    filter {}

    noncurrent_version_expiration {
      noncurrent_days = 7
    }

    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expire-runs"
    status = "Enabled"

    filter {
      prefix = "runs/"
    }

    expiration {
      days = var.record_ttl_days
    }
  }

  depends_on = [aws_s3_bucket_versioning.artifacts]
}

resource "aws_s3_bucket_policy" "artifacts" {
  bucket = aws_s3_bucket.artifacts.id
  policy = data.aws_iam_policy_document.artifacts_bucket.json

  depends_on = [aws_s3_bucket_public_access_block.artifacts]
}

data "aws_iam_policy_document" "artifacts_bucket" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [local.bucket_arn, "${local.bucket_arn}/*"]

    principals {
      type        = "*"
      identifiers = ["*"]
    }

    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

# The approval links' HMAC key: 64 hex digits from two of Terraform's uuid() (version 4 UUIDs
# drawn from Go's crypto/rand: 244 random bits), generated at apply time so no plan prints it.
# It is written once and never changed by later plans (ignore_changes). Rotate it without
# breaking links already mailed: write the new key first and keep the old one after a comma,
# e.g. `aws ssm put-parameter --overwrite --type SecureString --name <name> --value
# "$(openssl rand -hex 32),<old key>"` (the first key signs, every listed key verifies), and drop
# the old key once the approval timeout has passed; Terraform keeps your value.
# The first value is in the Terraform state (marked sensitive): keep state encrypted.
resource "aws_ssm_parameter" "hmac_key" {
  name        = local.hmac_parameter_name
  description = "ec2patch ${var.name_prefix}: HMAC key signing approval links"
  type        = "SecureString"
  key_id      = local.kms_key_arn
  value       = "${replace(uuid(), "-", "")}${replace(uuid(), "-", "")}"
  tags        = local.tags

  lifecycle {
    ignore_changes = [value]
  }
}
