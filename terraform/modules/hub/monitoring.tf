# Alerts topic (approval requests, wave summaries, alarms), the dashboard and the alarms of the
# seed's Monitoring section.

resource "aws_sns_topic" "alerts" {
  name              = local.topic_name
  kms_master_key_id = local.kms_key_arn
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "email" {
  for_each = toset(var.sns_email_subscriptions)

  topic_arn = aws_sns_topic.alerts.arn
  protocol  = "email"
  endpoint  = each.value
}

locals {
  # The seed's alarms, by the seed's names, on ec2patch's own metrics (namespace
  # local.metric_namespace, no dimensions); the seed's third, ApprovalTimeout, is in
  # approval_monitor.tf.
  metric_alarms = {
    PatchFailureRate = {
      metric      = "PatchFailures"
      description = "More than 5 instances failed to patch within 5 minutes."
      statistic   = "Sum"
      period      = 300
      evaluations = 1
      threshold   = 5
    }
    InstanceDowntime = {
      metric      = "InstancesUnhealthy"
      description = "More than 2 instances failed post-patch verification within 5 minutes."
      statistic   = "Maximum"
      period      = 300
      evaluations = 1
      threshold   = 2
    }
    PendingApprovals = {
      metric      = "PendingApprovals"
      description = "An approval has been pending for 60 minutes."
      statistic   = "Maximum"
      period      = 300
      evaluations = 12
      threshold   = 0
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "metric" {
  for_each = local.metric_alarms

  alarm_name          = "${var.name_prefix}-${each.key}"
  alarm_description   = "ec2patch ${var.name_prefix}: ${each.value.description}"
  namespace           = local.metric_namespace
  metric_name         = each.value.metric
  statistic           = each.value.statistic
  period              = each.value.period
  evaluation_periods  = each.value.evaluations
  threshold           = each.value.threshold
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  ok_actions          = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "executions_failed" {
  alarm_name          = "${var.name_prefix}-ExecutionsFailed"
  alarm_description   = "ec2patch ${var.name_prefix}: a patch run failed, timed out or was aborted."
  comparison_operator = "GreaterThanThreshold"
  evaluation_periods  = 1
  threshold           = 0
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = local.tags

  metric_query {
    id          = "problems"
    expression  = "failed + timedout + aborted"
    label       = "Runs that did not succeed"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = { failed = "ExecutionsFailed", timedout = "ExecutionsTimedOut", aborted = "ExecutionsAborted" }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/States"
        metric_name = metric_query.value
        period      = 300
        stat        = "Sum"
        dimensions = {
          StateMachineArn = aws_sfn_state_machine.orchestrator.arn
        }
      }
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "function_errors" {
  for_each = local.functions

  alarm_name          = "${local.function_names[each.key]}-Errors"
  alarm_description   = "ec2patch ${var.name_prefix}: ${each.key} returned errors (the state machine retries transient ones)."
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.this[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "schedule_dead_letters" {
  alarm_name          = "${var.name_prefix}-ScheduleDeadLetters"
  alarm_description   = "ec2patch ${var.name_prefix}: a wave rule could not start its run (see the ${aws_sqs_queue.schedule_dlq.name} queue)."
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = aws_sqs_queue.schedule_dlq.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 0
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alerts.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_dashboard" "hub" {
  dashboard_name = "${var.name_prefix}-dashboard"
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title  = "Patch runs (Step Functions)"
          region = local.region
          stat   = "Sum"
          period = 300
          metrics = [for m in ["ExecutionsStarted", "ExecutionsSucceeded", "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"] :
          ["AWS/States", m, "StateMachineArn", aws_sfn_state_machine.orchestrator.arn]]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title   = "Patch outcome (ec2patch metrics)"
          region  = local.region
          stat    = "Sum"
          period  = 300
          metrics = [for m in ["InstancesPatched", "PatchFailures", "InstancesUnhealthy", "PendingApprovals"] : [local.metric_namespace, m]]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 12, height = 6
        properties = {
          title   = "Function errors"
          region  = local.region
          stat    = "Sum"
          period  = 300
          metrics = [for name, fn in local.function_names : ["AWS/Lambda", "Errors", "FunctionName", fn]]
        }
      },
      {
        type = "metric", x = 12, y = 6, width = 12, height = 6
        properties = {
          title   = "Function duration (p95, ms)"
          region  = local.region
          stat    = "p95"
          period  = 300
          metrics = [for name, fn in local.function_names : ["AWS/Lambda", "Duration", "FunctionName", fn]]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 12, height = 6
        properties = {
          title   = "Execution time (ms)"
          region  = local.region
          stat    = "Maximum"
          period  = 300
          metrics = [["AWS/States", "ExecutionTime", "StateMachineArn", aws_sfn_state_machine.orchestrator.arn]]
        }
      },
      {
        # The seed's KPIs: patch success rate per wave, and how long waves take.
        type = "metric", x = 0, y = 18, width = 12, height = 6
        properties = {
          title   = "Patch success rate (%, lowest wave)"
          region  = local.region
          stat    = "Minimum"
          period  = 3600
          yAxis   = { left = { min = 0, max = 100 } }
          metrics = [[local.metric_namespace, "PatchSuccessRate"]]
        }
      },
      {
        type = "metric", x = 12, y = 18, width = 12, height = 6
        properties = {
          title   = "Wave duration (s, longest wave)"
          region  = local.region
          stat    = "Maximum"
          period  = 3600
          metrics = [[local.metric_namespace, "WaveDurationSeconds"]]
        }
      },
      {
        # The seed's third KPI: instances missing patches before and after each wave.
        type = "metric", x = 0, y = 24, width = 12, height = 6
        properties = {
          title   = "Compliance: instances missing patches (before / after)"
          region  = local.region
          stat    = "Sum"
          period  = 3600
          metrics = [[local.metric_namespace, "InstancesNonCompliantBefore"], [local.metric_namespace, "InstancesNonCompliantAfter"]]
        }
      },
      {
        type = "alarm", x = 12, y = 12, width = 12, height = 6
        properties = {
          title = "Alarms"
          alarms = concat(
            [for a in aws_cloudwatch_metric_alarm.metric : a.arn],
            [aws_cloudwatch_metric_alarm.approval_timeout.arn, aws_cloudwatch_metric_alarm.executions_failed.arn, aws_cloudwatch_metric_alarm.schedule_dead_letters.arn],
          )
        }
      },
    ]
  })
}
