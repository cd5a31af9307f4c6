# The spoke side of ec2patch: one role the hub's functions assume (with the ExternalId) to
# inventory instances, snapshot their volumes before patching (waves with `snapshot`, unless
# allow_snapshots is false) and run AWS-RunPatchBaseline on tagged ones. IAM is global, so one
# apply per account serves every region the hub patches there. No provider blocks here.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition   = data.aws_partition.current.partition
  account_id  = data.aws_caller_identity.current.account_id
  external_id = coalesce(var.external_id, "${var.hub_name_prefix}-${var.orchestrator_account_id}")
  # The hub functions that work in spokes (the hub's spoke_caller_role_arns output).
  # ApprovalMonitor deletes expired pre-patch snapshots; it has nothing to do here without them.
  hub_functions = concat(
    ["PreEC2Inventory", "SendSsmCommand", "PollSsmCommand", "PostEC2Verify"],
    var.allow_snapshots ? ["ApprovalMonitor"] : [],
  )
  hub_role_names = coalesce(var.hub_role_names, [for fn in local.hub_functions : "${var.hub_name_prefix}-${fn}"])
  hub_role_arns  = [for name in local.hub_role_names : "arn:${local.partition}:iam::${var.orchestrator_account_id}:role/${name}"]

  # The pre-patch snapshot statements below, present only with allow_snapshots.
  snapshots = var.allow_snapshots ? [1] : []
  # Snapshots have no account in their ARN (arn:aws:ec2:<region>::snapshot/snap-...).
  snapshot_arn = "arn:${local.partition}:ec2:*::snapshot/*"
}

data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "HubFunctionsWithExternalId"
    actions = ["sts:AssumeRole"]

    # The hub account is the principal, narrowed to its ec2patch function roles by
    # aws:PrincipalArn: naming the roles as principals would fail for roles the hub has not
    # created yet, and would silently stop matching when a hub role is re-created.
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${var.orchestrator_account_id}:root"]
    }

    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [local.external_id]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:PrincipalArn"
      values   = local.hub_role_arns
    }
  }
}

resource "aws_iam_role" "patch_exec" {
  name                 = var.role_name
  description          = "ec2patch: assumed by the hub ${var.orchestrator_account_id} to inventory and patch tagged instances"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration
  permissions_boundary = var.permissions_boundary_arn
  tags                 = merge({ "ec2patch:spoke" = var.hub_name_prefix }, var.tags)
}

data "aws_iam_policy_document" "patch_exec" {
  statement {
    # Exactly the reads the hub's functions make (inventory, ssm-send, ssm-poll, verify); these
    # actions take no resource-level restriction.
    sid = "ReadInstancesAndPatchState"
    actions = [
      "ec2:DescribeInstances",
      "ec2:DescribeInstanceStatus",
      "ssm:DescribeInstanceInformation",
      "ssm:ListCommands",
      "ssm:ListCommandInvocations",
    ]
    resources = ["*"]
  }

  statement {
    sid     = "PatchStateOfThisAccountsInstances"
    actions = ["ssm:DescribeInstancePatchStates"]
    resources = [
      "arn:${local.partition}:ec2:*:${local.account_id}:instance/*",
      "arn:${local.partition}:ssm:*:${local.account_id}:managed-instance/*",
    ]
  }

  statement {
    sid       = "RunPatchBaselineDocumentOnly"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ssm:*::document/AWS-RunPatchBaseline"]
  }

  statement {
    sid       = "OnTaggedInstancesOnly"
    actions   = ["ssm:SendCommand"]
    resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]

    condition {
      test     = "StringLike"
      variable = "ssm:resourceTag/${var.patch_tag_key}"
      values   = var.patch_tag_values
    }
  }

  # Pre-patch snapshots (waves with `snapshot`): SendSsmCommand snapshots all volumes of an
  # instance at once (ec2:CreateSnapshots, crash-consistent) before patching it; ApprovalMonitor
  # deletes them once their `ec2patch:delete-after` time has passed. CreateSnapshots is
  # authorized on the instance, on each of its volumes and on each new snapshot: three statements,
  # each with the condition that fits its resource.

  dynamic "statement" {
    for_each = local.snapshots
    content {
      sid       = "SnapshotTaggedInstancesOnly"
      actions   = ["ec2:CreateSnapshots"]
      resources = ["arn:${local.partition}:ec2:*:${local.account_id}:instance/*"]

      condition {
        test     = "StringLike"
        variable = "aws:ResourceTag/${var.patch_tag_key}"
        values   = var.patch_tag_values
      }
    }
  }

  dynamic "statement" {
    # The volumes attached to that instance (AWS authorizes each one); this account's only.
    for_each = local.snapshots
    content {
      sid       = "SnapshotTheirVolumes"
      actions   = ["ec2:CreateSnapshots"]
      resources = ["arn:${local.partition}:ec2:*:${local.account_id}:volume/*"]
    }
  }

  dynamic "statement" {
    # Every new snapshot carries the run's id and its expiry from the moment it exists, so the
    # cleanup can find it and nothing created through this role is kept forever by accident.
    for_each = local.snapshots
    content {
      sid       = "CreateSnapshotsTaggedByEc2patch"
      actions   = ["ec2:CreateSnapshots"]
      resources = [local.snapshot_arn]

      condition {
        test     = "Null"
        variable = "aws:RequestTag/ec2patch:run-id"
        values   = ["false"]
      }

      condition {
        test     = "Null"
        variable = "aws:RequestTag/ec2patch:delete-after"
        values   = ["false"]
      }
    }
  }

  dynamic "statement" {
    # Tags only as part of CreateSnapshots: the role can never tag an existing snapshot (which
    # would make someone else's snapshot deletable below).
    for_each = local.snapshots
    content {
      sid       = "TagSnapshotsAtCreationOnly"
      actions   = ["ec2:CreateTags"]
      resources = [local.snapshot_arn]

      condition {
        test     = "StringEquals"
        variable = "ec2:CreateAction"
        values   = ["CreateSnapshots"]
      }
    }
  }

  dynamic "statement" {
    # Idempotent retries, the wait until a snapshot is pending/completed, and the cleanup's
    # lookup by run id. EC2 Describe* take no resource.
    for_each = local.snapshots
    content {
      sid       = "ReadSnapshots"
      actions   = ["ec2:DescribeSnapshots"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    # Only snapshots ec2patch created: those carrying `ec2patch:delete-after`, which this role can
    # set only while creating a snapshot (TagSnapshotsAtCreationOnly).
    for_each = local.snapshots
    content {
      sid       = "DeleteEc2patchSnapshotsOnly"
      actions   = ["ec2:DeleteSnapshot"]
      resources = [local.snapshot_arn]

      condition {
        test     = "Null"
        variable = "aws:ResourceTag/ec2patch:delete-after"
        values   = ["false"]
      }
    }
  }
}

resource "aws_iam_role_policy" "patch_exec" {
  name   = "ec2patch-least-privilege"
  role   = aws_iam_role.patch_exec.id
  policy = data.aws_iam_policy_document.patch_exec.json
}
