# One EventBridge rule per wave: on its schedule it starts the orchestrator with the run input
# in the seed's EventBridge shape (examples/run-input-eventbridge.json). Deliveries EventBridge
# cannot make after its retries go to a dead-letter queue, which an alarm watches.

locals {
  # Each wave rule as a run input's wave (accountWaves[]); PlanRun's EC2PATCH_WAVES lists the
  # same objects. after/gateWindowHours are null without a gate: a conditional between {} and
  # an object with a number would turn the number into a string. `snapshot` is always there
  # (false unless the rule asks for pre-patch snapshots).
  wave_objects = {
    for w in var.wave_rules : w.name => {
      name                = w.name
      accounts            = w.accounts
      organizationalUnits = w.organizational_units
      excludeAccounts     = w.exclude_accounts
      regions             = w.regions
      after               = w.after
      gateWindowHours     = w.after == null ? null : w.gate_window_hours
      snapshot            = w.snapshot
    }
  }
  wave_inputs = {
    for w in var.wave_rules : w.name => jsonencode(merge(
      {
        accountWaves     = [local.wave_objects[w.name]]
        ec2              = { tagKey = var.tag_key, tagValue = var.tag_value }
        snsTopicArn      = aws_sns_topic.alerts.arn
        wavePauseSeconds = var.wave_pause_seconds
        abortOnIssues    = var.abort_on_issues
      },
      local.bedrock_enabled ? { bedrock = { agentId = var.bedrock_agent_id, agentAliasId = var.bedrock_agent_alias_id } } : {},
    ))
  }
  # The same input plus the time the schedule fired: the target's input transformer fills
  # <time> from the event's `time`. EventBridge delivers at least once, and the run lock
  # (crates/core/src/run_lock.rs) keyed by the wave and this time refuses a second execution
  # for the same firing (DuplicateRun), even one delivered after the first run ended.
  wave_input_templates = {
    for name, input in local.wave_inputs : name => "${trimsuffix(input, "}")},\"scheduledTime\":\"<time>\"}"
  }
}

resource "aws_sqs_queue" "schedule_dlq" {
  name                      = local.schedule_dlq_name
  message_retention_seconds = 1209600
  kms_master_key_id         = local.kms_key_arn
  tags                      = local.tags
}

resource "aws_sqs_queue_policy" "schedule_dlq" {
  count = length(var.wave_rules) > 0 ? 1 : 0

  queue_url = aws_sqs_queue.schedule_dlq.id
  policy    = data.aws_iam_policy_document.schedule_dlq[0].json
}

data "aws_iam_policy_document" "schedule_dlq" {
  count = length(var.wave_rules) > 0 ? 1 : 0

  statement {
    sid       = "WaveRulesDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [local.schedule_dlq_arn]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "ArnEquals"
      variable = "aws:SourceArn"
      values   = local.wave_rule_arns
    }
  }
}

data "aws_iam_policy_document" "events_trust" {
  statement {
    actions = ["sts:AssumeRole"]

    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }

    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "events" {
  name               = "${var.name_prefix}-schedules"
  description        = "ec2patch ${var.name_prefix}: wave rules start the orchestrator"
  assume_role_policy = data.aws_iam_policy_document.events_trust.json
  tags               = local.tags
}

data "aws_iam_policy_document" "events" {
  statement {
    sid       = "StartRuns"
    actions   = ["states:StartExecution"]
    resources = [local.state_machine_arn]
  }
}

resource "aws_iam_role_policy" "events" {
  name   = "start-runs"
  role   = aws_iam_role.events.id
  policy = data.aws_iam_policy_document.events.json
}

resource "aws_cloudwatch_event_rule" "wave" {
  for_each = { for w in var.wave_rules : w.name => w }

  name                = "${var.name_prefix}-${each.key}"
  description         = "ec2patch ${var.name_prefix}: patch wave ${each.key} (${length(each.value.organizational_units) > 0 ? "${length(each.value.accounts)} accounts + ${length(each.value.organizational_units)} OUs" : "${length(each.value.accounts)} accounts"} x ${length(each.value.regions)} regions)"
  schedule_expression = each.value.schedule_expression
  state               = var.wave_schedules_enabled ? "ENABLED" : "DISABLED"
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "wave" {
  for_each = aws_cloudwatch_event_rule.wave

  rule      = each.value.name
  target_id = "orchestrator"
  arn       = aws_sfn_state_machine.orchestrator.arn
  role_arn  = aws_iam_role.events.arn

  input_transformer {
    input_paths    = { time = "$.time" }
    input_template = local.wave_input_templates[each.key]
  }

  retry_policy {
    maximum_event_age_in_seconds = 3600
    maximum_retry_attempts       = 20
  }

  dead_letter_config {
    arn = aws_sqs_queue.schedule_dlq.arn
  }

  lifecycle {
    precondition {
      condition     = length(local.wave_input_templates[each.key]) <= 8192
      error_message = "The run input of wave ${each.key} exceeds EventBridge's 8192 characters: split the wave into several waves (each about 400 accounts at most)."
    }
  }
}
