# The ec2patch hub: one Lambda per workflow step, the Step Functions orchestrator, an EventBridge
# rule per wave, the approval API, and the run store (DynamoDB + S3). No provider blocks here:
# the caller's provider decides the account and region (see terraform/hub for the root).

data "aws_partition" "current" {}
data "aws_region" "current" {}
data "aws_caller_identity" "current" {}

locals {
  # The Lambda functions, `<name_prefix>-<key>`. Adding one is one line: its cargo binary (`bin`,
  # built by cargo-lambda into <lambda_artifacts_dir>/<bin>/bootstrap.zip), timeout (the seed's
  # function table), memory, the state machine template variable that receives its ARN
  # (`asl_var` -> `${<asl_var>_function_arn}`, null when the state machine does not call it),
  # and its permissions, which lambda.tf turns into the function's own policy. ApprovalMonitor is
  # not a workflow step: EventBridge runs it every 5 minutes (approval_monitor.tf) for approval
  # metrics and reminders, and to delete expired pre-patch snapshots in the spokes (it queries the
  # `SNAPSHOTS` index items SendSsmCommand writes, and deletes each once its snapshots are gone):
  #   table         DynamoDB actions on the runs table
  #   bucket        S3 object actions on runs/* in the artifacts bucket
  #   spoke         sts:AssumeRole on the spoke role in the listed accounts (the spoke module's
  #                 default hub_role_names trusts exactly these functions)
  #   publish       sns:Publish on the alerts topic
  #   hmac_key      ssm:GetParameter (with decryption) on the approval-link HMAC key
  #   task_callback states:SendTaskSuccess / SendTaskFailure on the orchestrator
  #   bedrock       bedrock:InvokeAgent on the configured agent alias
  #   calendars     ssm:GetCalendarState on the hub's SSM documents (Change Calendars)
  #   waves         receives EC2PATCH_WAVES (the named waves `waveId` can select)
  function_specs = {
    PlanRun             = { bin = "plan", timeout = 60, memory = 256, asl_var = "plan", table = ["dynamodb:PutItem"], bucket = ["s3:PutObject"], waves = true, organizations = true }
    PreEC2Inventory     = { bin = "inventory", timeout = 300, memory = 512, asl_var = "inventory", table = ["dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:Query"], bucket = ["s3:GetObject", "s3:PutObject"], spoke = true }
    SendApprovalRequest = { bin = "approval-request", timeout = 60, memory = 256, asl_var = "approval_request", table = ["dynamodb:PutItem"], bucket = ["s3:GetObject"], publish = true, hmac_key = true }
    ApprovalCallback    = { bin = "approval-callback", timeout = 60, memory = 256, table = ["dynamodb:GetItem", "dynamodb:UpdateItem"], task_callback = true, hmac_key = true }
    SendSsmCommand      = { bin = "ssm-send", timeout = 300, memory = 256, asl_var = "ssm_send", table = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"], bucket = ["s3:GetObject"], spoke = true }
    PollSsmCommand      = { bin = "ssm-poll", timeout = 600, memory = 256, asl_var = "ssm_poll", table = ["dynamodb:Query", "dynamodb:BatchWriteItem"], spoke = true }
    PostEC2Verify       = { bin = "verify", timeout = 300, memory = 512, asl_var = "verify", table = ["dynamodb:GetItem", "dynamodb:BatchGetItem", "dynamodb:Query", "dynamodb:UpdateItem", "dynamodb:DeleteItem", "dynamodb:BatchWriteItem"], bucket = ["s3:GetObject", "s3:PutObject"], spoke = true }
    AnalyzeWithBedrock  = { bin = "bedrock-analysis", timeout = 180, memory = 256, asl_var = "analysis", bucket = ["s3:GetObject"], bedrock = true }
    CheckChangeFreeze   = { bin = "change-freeze", timeout = 60, memory = 256, asl_var = "change_freeze", table = ["dynamodb:UpdateItem"], bucket = ["s3:GetObject"], calendars = true }
    ApprovalMonitor     = { bin = "approval-monitor", timeout = 60, memory = 256, table = ["dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"], bucket = ["s3:GetObject"], publish = true, hmac_key = true, spoke = true }
  }
  function_defaults = {
    asl_var       = null
    table         = []
    bucket        = []
    spoke         = false
    publish       = false
    hmac_key      = false
    task_callback = false
    bedrock       = false
    waves         = false
    calendars     = false
    organizations = false
  }
  functions = { for name, spec in local.function_specs : name => merge(local.function_defaults, spec) }

  partition  = data.aws_partition.current.partition
  region     = data.aws_region.current.name
  account_id = var.orchestrator_account_id

  artifacts_dir     = coalesce(var.lambda_artifacts_dir, "${path.root}/../../target/lambda")
  asl_template_path = coalesce(var.state_machine_template, "${path.module}/../../../statemachine/orchestrator.asl.json")

  external_id      = coalesce(var.external_id, "${var.name_prefix}-${var.orchestrator_account_id}")
  default_regions  = length(var.default_regions) > 0 ? var.default_regions : [local.region]
  metric_namespace = coalesce(var.metric_namespace, "EC2Patch/${var.name_prefix}")
  bedrock_enabled  = var.bedrock_agent_id != null && var.bedrock_agent_alias_id != null

  # Every account a wave or a manual run may patch: the hub may assume the spoke role there only.
  spoke_accounts = sort(distinct(concat(flatten([for w in var.wave_rules : w.accounts]), var.spoke_account_ids)))
  spoke_role_arns = var.organization_id != null ? ["arn:${local.partition}:iam::*:role/${var.spoke_role_name}"] : [
    for account in local.spoke_accounts : "arn:${local.partition}:iam::${account}:role/${var.spoke_role_name}"
  ]

  function_names      = { for name, _ in local.functions : name => "${var.name_prefix}-${name}" }
  function_arns       = { for name, fn in local.function_names : name => "arn:${local.partition}:lambda:${local.region}:${local.account_id}:function:${fn}" }
  table_name          = "${var.name_prefix}-runs"
  bucket_name         = "${var.name_prefix}-artifacts-${var.orchestrator_account_id}-${local.region}"
  topic_name          = "${var.name_prefix}-PatchAlerts"
  state_machine_name  = "${var.name_prefix}-orchestrator"
  state_machine_arn   = "arn:${local.partition}:states:${local.region}:${local.account_id}:stateMachine:${local.state_machine_name}"
  hmac_parameter_name = "/${var.name_prefix}/approval-hmac-key"
  kms_key_arn         = var.kms_key_arn != null ? var.kms_key_arn : aws_kms_key.hub[0].arn

  # The ARNs the policies name, built from the names rather than read from the resources, so
  # that `terraform plan` shows every policy document in full before anything is applied (a
  # policy naming a resource's computed ARN is "known after apply"). Only the KMS key's ARN is
  # unknown until the key exists (tests/e2e/tests/least_privilege.rs plans both cases).
  table_arn              = "arn:${local.partition}:dynamodb:${local.region}:${local.account_id}:table/${local.table_name}"
  bucket_arn             = "arn:${local.partition}:s3:::${local.bucket_name}"
  topic_arn              = "arn:${local.partition}:sns:${local.region}:${local.account_id}:${local.topic_name}"
  hmac_parameter_arn     = "arn:${local.partition}:ssm:${local.region}:${local.account_id}:parameter${local.hmac_parameter_name}"
  schedule_dlq_name      = "${var.name_prefix}-schedule-dlq"
  schedule_dlq_arn       = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.schedule_dlq_name}"
  log_group_arn_prefix   = "arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:"
  function_log_group_arn = { for name, fn in local.function_names : name => "${local.log_group_arn_prefix}/aws/lambda/${fn}" }
  wave_rule_arns         = [for w in var.wave_rules : "arn:${local.partition}:events:${local.region}:${local.account_id}:rule/${var.name_prefix}-${w.name}"]

  tags = merge({ "ec2patch:hub" = var.name_prefix }, var.tags)
}
