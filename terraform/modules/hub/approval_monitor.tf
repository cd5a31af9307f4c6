# The approval alarm that fires: ApprovalMonitor (local.function_specs in main.tf) runs every five
# minutes, emits PendingApprovals and OldestPendingApprovalMinutes (EMF, no dimensions, namespace
# local.metric_namespace) and re-sends an approval's email once halfway through its window.
# ApprovalTimeout watches the age, so an approval left pending for hours keeps the alarm in ALARM.
# The same run deletes expired pre-patch snapshots: for each `SNAPSHOTS` index item of the runs
# table it assumes the spoke role of that account and deletes the run's snapshots whose
# `ec2patch:delete-after` tag is past (snapshot_retention_days), then the item.

variable "approval_alarm_minutes" {
  description = "ApprovalTimeout alarms when an approval has been pending this many minutes (the seed: 60)."
  type        = number
  default     = 60

  validation {
    condition     = var.approval_alarm_minutes >= 5 && floor(var.approval_alarm_minutes) == var.approval_alarm_minutes
    error_message = "approval_alarm_minutes must be a whole number of at least 5 (the monitor runs every 5 minutes)."
  }
}

resource "aws_cloudwatch_event_rule" "approval_monitor" {
  name                = "${var.name_prefix}-approval-monitor"
  description         = "ec2patch ${var.name_prefix}: approval metrics and reminders, expired snapshot cleanup"
  schedule_expression = "rate(5 minutes)"
  tags                = local.tags
}

resource "aws_cloudwatch_event_target" "approval_monitor" {
  rule = aws_cloudwatch_event_rule.approval_monitor.name
  arn  = aws_lambda_function.this["ApprovalMonitor"].arn
}

resource "aws_lambda_permission" "approval_monitor" {
  statement_id  = "ApprovalMonitorSchedule"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["ApprovalMonitor"].function_name
  principal     = "events.amazonaws.com"
  source_arn    = aws_cloudwatch_event_rule.approval_monitor.arn
}

resource "aws_cloudwatch_metric_alarm" "approval_timeout" {
  alarm_name          = "${var.name_prefix}-ApprovalTimeout"
  alarm_description   = "ec2patch ${var.name_prefix}: an approval has been pending for ${var.approval_alarm_minutes} minutes (ec2patch approvals lists it)."
  namespace           = local.metric_namespace
  metric_name         = "OldestPendingApprovalMinutes"
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = var.approval_alarm_minutes
  comparison_operator = "GreaterThanOrEqualToThreshold"
  # No data means the monitor did not run: that is not an approval waiting (function_errors and
  # the Lambda's own logs cover a failing monitor).
  treat_missing_data = "notBreaching"
  alarm_actions      = [aws_sns_topic.alerts.arn]
  ok_actions         = [aws_sns_topic.alerts.arn]
  tags               = local.tags
}
