# The spoke side of ec2patch: one role the hub's functions assume (with the ExternalId) to
# inventory instances and run AWS-RunPatchBaseline on tagged ones. IAM is global, so one apply
# per account serves every region the hub patches there. No provider blocks here.

data "aws_partition" "current" {}
data "aws_caller_identity" "current" {}

locals {
  partition   = data.aws_partition.current.partition
  account_id  = data.aws_caller_identity.current.account_id
  external_id = coalesce(var.external_id, "${var.hub_name_prefix}-${var.orchestrator_account_id}")
  hub_role_names = coalesce(var.hub_role_names, [
    for fn in ["PreEC2Inventory", "SendSsmCommand", "PollSsmCommand", "PostEC2Verify"] : "${var.hub_name_prefix}-${fn}"
  ])
  hub_role_arns = [for name in local.hub_role_names : "arn:${local.partition}:iam::${var.orchestrator_account_id}:role/${name}"]
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
}

resource "aws_iam_role_policy" "patch_exec" {
  name   = "ec2patch-least-privilege"
  role   = aws_iam_role.patch_exec.id
  policy = data.aws_iam_policy_document.patch_exec.json
}
