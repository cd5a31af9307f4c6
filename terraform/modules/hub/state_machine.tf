# The orchestrator: statemachine/orchestrator.asl.json rendered by templatefile. The local stack
# renders the same file with ec2patch_core::asl::render and the same variables, so the tests
# execute exactly this definition (tests/e2e/tests/terraform.rs compares the two).

locals {
  # `${<asl_var>_function_arn}` for every function the state machine calls, plus the table the
  # state machine writes failure records to itself. Extra variables are harmless; a missing
  # one fails the plan.
  asl_values = merge(
    { for name, fn in local.functions : "${fn.asl_var}_function_arn" => aws_lambda_function.this[name].arn if fn.asl_var != null },
    { table_name = aws_dynamodb_table.runs.name },
  )
  state_machine_function_arns = [for name, fn in local.functions : local.function_arns[name] if fn.asl_var != null]
}

resource "aws_cloudwatch_log_group" "state_machine" {
  name              = "/aws/vendedlogs/states/${local.state_machine_name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

data "aws_iam_policy_document" "states_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "state_machine" {
  name               = "${var.name_prefix}-orchestrator"
  description        = "ec2patch ${var.name_prefix}: the orchestrator state machine"
  assume_role_policy = data.aws_iam_policy_document.states_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "state_machine" {
  statement {
    sid       = "InvokeStepFunctions"
    actions   = ["lambda:InvokeFunction"]
    resources = concat(local.state_machine_function_arns, [for arn in local.state_machine_function_arns : "${arn}:*"])
  }

  statement {
    # The failure and outcome records the state machine writes itself (dynamodb:putItem).
    sid       = "RecordFailures"
    actions   = ["dynamodb:PutItem"]
    resources = [local.table_arn]
  }

  statement {
    # The Notify state publishes the wave summary itself (sns:publish integration). Runs may
    # only notify the hub's topic.
    sid       = "NotifyAlertsTopic"
    actions   = ["sns:Publish"]
    resources = [local.topic_arn]
  }

  statement {
    # Waves of more than 10 batches run as a Distributed Map (PatchTargetsDistributed): it starts
    # one child execution of this same state machine per batch, and watches and stops them. The
    # ARN is built from the name (local.state_machine_arn): referring to the resource would be a
    # cycle through this policy.
    sid       = "DistributedMapChildren"
    actions   = ["states:StartExecution"]
    resources = [local.state_machine_arn]
  }

  statement {
    sid       = "DistributedMapChildrenStatus"
    actions   = ["states:DescribeExecution", "states:StopExecution"]
    resources = ["arn:${local.partition}:states:${local.region}:${local.account_id}:execution:${local.state_machine_name}/*"]
  }

  statement {
    # ItemReader lists the wave's batch objects (runs/<runId>/waves/<nnn>/batches/); ListBucket
    # is the permission ListObjectsV2 needs, limited to the runs/ prefix.
    sid       = "DistributedMapListBatches"
    actions   = ["s3:ListBucket"]
    resources = ["arn:${local.partition}:s3:::${local.bucket_name}"]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["runs/*"]
    }
  }

  statement {
    # ItemReader reads the listed objects' metadata; ResultWriter writes the map run's results
    # (runs/<runId>/map-runs/..., in parts for large runs).
    sid = "DistributedMapReadBatchesWriteResults"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:ListMultipartUploadParts",
      "s3:AbortMultipartUpload",
    ]
    resources = ["arn:${local.partition}:s3:::${local.bucket_name}/runs/*"]
  }

  statement {
    sid       = "HubKey"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [local.kms_key_arn]
  }

  statement {
    # Log delivery and X-Ray actions take no resource (AWS's documented policy for Step Functions).
    sid = "LoggingAndTracing"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
      "xray:PutTraceSegments",
      "xray:PutTelemetryRecords",
      "xray:GetSamplingRules",
      "xray:GetSamplingTargets",
    ]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "state_machine" {
  name   = "least-privilege"
  role   = aws_iam_role.state_machine.id
  policy = data.aws_iam_policy_document.state_machine.json
}

resource "aws_sfn_state_machine" "orchestrator" {
  # checkov:skip=CKV_AWS_285:Execution data is kept out of the logs on purpose: the approval step's input carries the Step Functions task token, which must never appear in a log (docs/architecture.md); the execution history itself stays in Step Functions.
  name       = local.state_machine_name
  role_arn   = aws_iam_role.state_machine.arn
  definition = templatefile(local.asl_template_path, local.asl_values)

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.state_machine.arn}:*"
    include_execution_data = false
    level                  = var.state_machine_log_level
  }

  tracing_configuration {
    enabled = true
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = data.aws_caller_identity.current.account_id == var.orchestrator_account_id
      error_message = "The AWS credentials are for account ${data.aws_caller_identity.current.account_id}, but orchestrator_account_id is ${var.orchestrator_account_id}."
    }
  }

  depends_on = [aws_iam_role_policy.state_machine]
}
