# One Lambda per workflow step (see local.function_specs in main.tf), each with its own role and
# a policy written out from the permissions its spec names. The zips are built by cargo-lambda
# outside Terraform (`cargo lambda build --release --arm64 --output-format zip`), never here.

locals {
  artifact_paths = { for name, fn in local.functions : name => "${local.artifacts_dir}/${fn.bin}/bootstrap.zip" }

  # The hub's configuration, read by every function at cold start (crates/core/src/config.rs,
  # docs/api.md).
  common_environment = merge(
    {
      EC2PATCH_TABLE                    = local.table_name
      EC2PATCH_BUCKET                   = local.bucket_name
      EC2PATCH_SPOKE_ROLE_NAME          = var.spoke_role_name
      EC2PATCH_EXTERNAL_ID              = local.external_id
      EC2PATCH_INVENTORY_CONCURRENCY    = tostring(var.inventory_concurrency)
      EC2PATCH_RECORD_TTL_DAYS          = tostring(var.record_ttl_days)
      EC2PATCH_SNAPSHOT_RETENTION_DAYS  = tostring(var.snapshot_retention_days)
      EC2PATCH_DEFAULT_REGIONS          = join(",", local.default_regions)
      EC2PATCH_TAG_KEY                  = var.tag_key
      EC2PATCH_TAG_VALUE                = var.tag_value
      EC2PATCH_SNS_TOPIC_ARN            = local.topic_arn
      EC2PATCH_WAVE_PAUSE_SECONDS       = tostring(var.wave_pause_seconds)
      EC2PATCH_ABORT_ON_ISSUES          = tostring(var.abort_on_issues)
      EC2PATCH_APPROVAL_TIMEOUT_SECONDS = tostring(var.approval_timeout_seconds)
      EC2PATCH_HMAC_KEY_PARAMETER       = local.hmac_parameter_name
      EC2PATCH_METRIC_NAMESPACE         = local.metric_namespace
      EC2PATCH_EXTRA_REGIONS            = join(",", var.extra_regions)
      EC2PATCH_TARGETS_PER_BATCH        = tostring(var.targets_per_batch)
      EC2PATCH_REBOOT_OPTION            = var.reboot_option
      EC2PATCH_MAX_CONCURRENCY          = var.max_concurrency
      EC2PATCH_MAX_ERRORS               = var.max_errors
      EC2PATCH_COMMAND_TIMEOUT_SECONDS  = tostring(var.command_timeout_seconds)
      EC2PATCH_POLL_INITIAL_SECONDS     = tostring(var.poll_initial_seconds)
      EC2PATCH_POLL_MAX_SECONDS         = tostring(var.poll_max_seconds)
      EC2PATCH_RUN_LOCK_MARGIN_SECONDS  = tostring(var.run_lock_margin_seconds)
      EC2PATCH_BEDROCK_TIMEOUT_SECONDS  = tostring(var.bedrock_timeout_seconds)
      EC2PATCH_MAX_FAILURE_RATE         = tostring(var.max_failure_rate)
      EC2PATCH_MAX_UNHEALTHY            = tostring(var.max_unhealthy)
      EC2PATCH_UNREACHABLE_IS_ISSUE     = tostring(var.unreachable_is_issue)
      EC2PATCH_FREEZE_WAIT_SECONDS      = tostring(var.freeze_wait_seconds)
    },
    length(var.change_calendars) > 0 ? { EC2PATCH_CHANGE_CALENDARS = join(",", var.change_calendars) } : {},
    var.organizations_role_arn != null ? { EC2PATCH_ORGANIZATIONS_ROLE_ARN = var.organizations_role_arn } : {},
    # Error budget and batch bound: absent when not set (no budget, the Maps' own limits).
    var.max_failed_instances != null ? { EC2PATCH_MAX_FAILED_INSTANCES = tostring(var.max_failed_instances) } : {},
    var.max_failed_percent != null ? { EC2PATCH_MAX_FAILED_PERCENT = tostring(var.max_failed_percent) } : {},
    var.max_concurrent_batches != null ? { EC2PATCH_MAX_CONCURRENT_BATCHES = tostring(var.max_concurrent_batches) } : {},
    var.command_log_group != null ? { EC2PATCH_COMMAND_LOG_GROUP = var.command_log_group } : {},
    local.bedrock_enabled ? {
      EC2PATCH_BEDROCK_AGENT_ID       = var.bedrock_agent_id
      EC2PATCH_BEDROCK_AGENT_ALIAS_ID = var.bedrock_agent_alias_id
    } : {},
  )
  # The named waves an API-shape run selects with `waveId`; only PlanRun reads them, and
  # Lambda's environment is limited to 4 KB in all.
  waves_environment = {
    EC2PATCH_WAVES = jsonencode([for w in var.wave_rules : local.wave_objects[w.name]])
  }
  # Whether a function writes anything the hub key encrypts (table items, objects, the topic).
  function_writes = {
    for name, fn in local.functions : name => (
      length([for a in fn.table : a if !contains(["dynamodb:GetItem", "dynamodb:Query"], a)]) > 0
      || contains(fn.bucket, "s3:PutObject") || fn.publish
    )
  }
  function_environment = {
    for name, fn in local.functions : name => merge(local.common_environment, fn.waves ? local.waves_environment : {})
  }
}

resource "aws_cloudwatch_log_group" "function" {
  for_each = local.functions

  name              = "/aws/lambda/${local.function_names[each.key]}"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

data "aws_iam_policy_document" "lambda_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "function" {
  for_each = local.functions

  name               = local.function_names[each.key]
  description        = "ec2patch ${var.name_prefix}: execution role of ${each.key}"
  assume_role_policy = data.aws_iam_policy_document.lambda_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "function" {
  for_each = local.functions

  statement {
    sid       = "OwnLogGroup"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${local.function_log_group_arn[each.key]}:*"]
  }

  statement {
    # X-Ray's write actions take no resource.
    sid       = "Tracing"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }

  statement {
    # Decrypt: the environment, SecureString parameter, objects and items it reads. Only a
    # function that writes the table or objects, or publishes to the topic, also encrypts.
    sid       = "HubKey"
    actions   = local.function_writes[each.key] ? ["kms:Decrypt", "kms:GenerateDataKey"] : ["kms:Decrypt"]
    resources = [local.kms_key_arn]
  }

  dynamic "statement" {
    for_each = length(each.value.table) > 0 ? [each.value.table] : []
    content {
      sid       = "RunsTable"
      actions   = statement.value
      resources = [local.table_arn]
    }
  }

  dynamic "statement" {
    for_each = length(each.value.bucket) > 0 ? [each.value.bucket] : []
    content {
      sid       = "RunArtifacts"
      actions   = statement.value
      resources = ["${local.bucket_arn}/runs/*"]
    }
  }

  dynamic "statement" {
    for_each = each.value.spoke && length(local.spoke_role_arns) > 0 ? [local.spoke_role_arns] : []
    content {
      sid       = "SpokeRoles"
      actions   = ["sts:AssumeRole"]
      resources = statement.value

      dynamic "condition" {
        for_each = var.organization_id != null ? [var.organization_id] : []
        content {
          test     = "StringEquals"
          variable = "aws:ResourceOrgID"
          values   = [condition.value]
        }
      }
    }
  }

  dynamic "statement" {
    for_each = each.value.publish ? [local.topic_arn] : []
    content {
      sid       = "AlertsTopic"
      actions   = ["sns:Publish"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = each.value.hmac_key ? [local.hmac_parameter_arn] : []
    content {
      sid       = "ApprovalLinkKey"
      actions   = ["ssm:GetParameter"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    # SendTaskSuccess/SendTaskFailure support no resource-level permissions: a statement naming
    # the state machine's ARN would authorize nothing (AccessDenied at the first decision). The
    # task token itself is the capability; it is stored only in the runs table.
    for_each = each.value.task_callback ? [1] : []
    content {
      sid       = "ApprovalDecision"
      actions   = ["states:SendTaskSuccess", "states:SendTaskFailure"]
      resources = ["*"]
    }
  }

  dynamic "statement" {
    # The hub's calendars (change_calendars) and any a run input adds (changeCalendars): any
    # document of the hub account, read-only; GetCalendarState reads nothing but the state.
    for_each = each.value.calendars ? [1] : []
    content {
      sid       = "ChangeCalendars"
      actions   = ["ssm:GetCalendarState"]
      resources = ["arn:${local.partition}:ssm:${local.region}:${local.account_id}:document/*"]
    }
  }

  dynamic "statement" {
    # Organizations targeting (a wave's organizationalUnits, which needs organization_id):
    # PlanRun lists the OUs' accounts and child OUs of this organization with the hub's own
    # role. The ARNs' account is the management account's, which the hub need not know.
    for_each = each.value.organizations && var.organization_id != null && var.organizations_role_arn == null ? [var.organization_id] : []
    content {
      sid     = "OrganizationsTargeting"
      actions = ["organizations:ListAccountsForParent", "organizations:ListChildren"]
      resources = [
        "arn:${local.partition}:organizations::*:root/${statement.value}/r-*",
        "arn:${local.partition}:organizations::*:ou/${statement.value}/ou-*",
      ]
    }
  }

  dynamic "statement" {
    # ... or as the role organizations_role_arn names (management or delegated administrator).
    for_each = each.value.organizations && var.organizations_role_arn != null ? [var.organizations_role_arn] : []
    content {
      sid       = "OrganizationsReader"
      actions   = ["sts:AssumeRole"]
      resources = [statement.value]
    }
  }

  dynamic "statement" {
    for_each = each.value.bedrock && local.bedrock_enabled ? [1] : []
    content {
      sid       = "BedrockAgent"
      actions   = ["bedrock:InvokeAgent"]
      resources = ["arn:${local.partition}:bedrock:${local.region}:${local.account_id}:agent-alias/${var.bedrock_agent_id}/${var.bedrock_agent_alias_id}"]
    }
  }
}

resource "aws_iam_role_policy" "function" {
  for_each = local.functions

  name   = "least-privilege"
  role   = aws_iam_role.function[each.key].id
  policy = data.aws_iam_policy_document.function[each.key].json

  lifecycle {
    precondition {
      # An inline policy holds at most 10,240 characters (whitespace not counted).
      condition     = length(jsonencode(jsondecode(data.aws_iam_policy_document.function[each.key].json))) <= 10240
      error_message = "The ${each.key} policy lists too many spoke accounts for an IAM policy (${length(local.spoke_accounts)} accounts). Set organization_id to allow the spoke role in the organization's accounts instead."
    }
  }
}

resource "aws_lambda_function" "this" {
  for_each = local.functions

  # checkov:skip=CKV_AWS_116:Invoked synchronously only (Step Functions tasks, API Gateway), never asynchronously, so a dead-letter queue would never receive anything; the state machine retries and records failures.
  # checkov:skip=CKV_AWS_117:The functions call only AWS APIs; a VPC would add NAT or endpoints in every region for no isolation benefit.
  # checkov:skip=CKV_AWS_115:Concurrency is bounded by the state machine (one invocation per step per running wave); reserving concurrency fails on accounts with the default quota.
  # checkov:skip=CKV_AWS_272:Zips are built by cargo-lambda in the hub-deploy workflow from the locked workspace; AWS Signer is not available to every deployment.
  function_name    = local.function_names[each.key]
  description      = "ec2patch ${var.name_prefix}: ${each.key} (crate binary ${each.value.bin})"
  role             = aws_iam_role.function[each.key].arn
  runtime          = "provided.al2023"
  handler          = "bootstrap"
  architectures    = ["arm64"]
  filename         = local.artifact_paths[each.key]
  source_code_hash = fileexists(local.artifact_paths[each.key]) ? filebase64sha256(local.artifact_paths[each.key]) : null
  timeout          = each.value.timeout
  memory_size      = each.value.memory
  kms_key_arn      = local.kms_key_arn

  environment {
    # The API's URL is known only after apply; kept out of the local so that the rest of the
    # environment is known at plan time (tests/e2e/tests/terraform_knobs.rs reads it).
    variables = merge(local.function_environment[each.key], { EC2PATCH_CALLBACK_BASE_URL = aws_apigatewayv2_api.callback.api_endpoint })
  }

  logging_config {
    log_format            = "JSON"
    log_group             = aws_cloudwatch_log_group.function[each.key].name
    application_log_level = var.log_level
    system_log_level      = "WARN"
  }

  tracing_config {
    mode = "Active"
  }

  tags = local.tags

  lifecycle {
    precondition {
      condition     = fileexists(local.artifact_paths[each.key])
      error_message = "No ${local.artifact_paths[each.key]}: build the functions first (cargo lambda build --release --arm64 --output-format zip, see docs/deployment-guide.md) or set lambda_artifacts_dir."
    }
    precondition {
      condition     = (var.bedrock_agent_id == null) == (var.bedrock_agent_alias_id == null)
      error_message = "Set bedrock_agent_id and bedrock_agent_alias_id together, or neither."
    }
    precondition {
      # The accounts an OU holds are known only at run time: the hub may assume the spoke role
      # in them only through the organization-wide statement.
      condition     = var.organization_id != null || alltrue([for w in var.wave_rules : length(w.organizational_units) == 0])
      error_message = "wave_rules with organizational_units need organization_id: the hub may assume PatchExecRole only in listed accounts otherwise."
    }
    precondition {
      condition     = var.poll_max_seconds >= var.poll_initial_seconds
      error_message = "poll_max_seconds (${var.poll_max_seconds}) must be at least poll_initial_seconds (${var.poll_initial_seconds})."
    }
    precondition {
      # 4 KB less room for EC2PATCH_CALLBACK_BASE_URL (https://<id>.execute-api.<region>.amazonaws.com).
      condition     = length(jsonencode(local.function_environment[each.key])) <= 4096 - 128
      error_message = "The environment of ${each.key} exceeds Lambda's 4 KB: wave_rules lists too many accounts for EC2PATCH_WAVES. Split the waves, or start such runs with explicit accountWaves."
    }
  }

  depends_on = [aws_iam_role_policy.function]
}
