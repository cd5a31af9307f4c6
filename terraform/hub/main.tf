# Root configuration of the hub account: `cd terraform/hub && terraform init && terraform apply
# -var ...` as in the README's Quick Start. Everything is in terraform/modules/hub.

module "hub" {
  source = "../modules/hub"

  orchestrator_account_id  = var.orchestrator_account_id
  name_prefix              = var.name_prefix
  bedrock_agent_id         = var.bedrock_agent_id
  bedrock_agent_alias_id   = var.bedrock_agent_alias_id
  wave_rules               = var.wave_rules
  sns_email_subscriptions  = var.sns_email_subscriptions
  wave_pause_seconds       = var.wave_pause_seconds
  abort_on_issues          = var.abort_on_issues
  lambda_artifacts_dir     = var.lambda_artifacts_dir
  spoke_role_name          = var.spoke_role_name
  external_id              = var.external_id
  spoke_account_ids        = var.spoke_account_ids
  organization_id          = var.organization_id
  organizations_role_arn   = var.organizations_role_arn
  approval_timeout_seconds = var.approval_timeout_seconds
  tag_key                  = var.tag_key
  tag_value                = var.tag_value
  default_regions          = var.default_regions
  log_retention_days       = var.log_retention_days
  kms_key_arn              = var.kms_key_arn
  wave_schedules_enabled   = var.wave_schedules_enabled
  inventory_concurrency    = var.inventory_concurrency
  record_ttl_days          = var.record_ttl_days
  snapshot_retention_days  = var.snapshot_retention_days
  log_level                = var.log_level
  state_machine_log_level  = var.state_machine_log_level
  metric_namespace         = var.metric_namespace
  targets_per_batch        = var.targets_per_batch
  reboot_option            = var.reboot_option
  max_concurrency          = var.max_concurrency
  max_errors               = var.max_errors
  command_timeout_seconds  = var.command_timeout_seconds
  poll_initial_seconds     = var.poll_initial_seconds
  poll_max_seconds         = var.poll_max_seconds
  command_log_group        = var.command_log_group
  run_lock_margin_seconds  = var.run_lock_margin_seconds
  extra_regions            = var.extra_regions
  change_calendars         = var.change_calendars
  freeze_wait_seconds      = var.freeze_wait_seconds
  max_failed_instances     = var.max_failed_instances
  max_failed_percent       = var.max_failed_percent
  max_concurrent_batches   = var.max_concurrent_batches
  bedrock_timeout_seconds  = var.bedrock_timeout_seconds
  max_failure_rate         = var.max_failure_rate
  max_unhealthy            = var.max_unhealthy
  unreachable_is_issue     = var.unreachable_is_issue
  callback_throttle        = var.callback_throttle
  state_machine_template   = var.state_machine_template
}
