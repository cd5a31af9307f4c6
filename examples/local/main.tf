# Hub + two spokes on the local AWS stack: what tests/e2e/tests/terraform.rs applies, re-plans
# (expecting no changes) and destroys. The same modules as terraform/hub and terraform/spoke.

module "hub" {
  source = "../../terraform/modules/hub"

  orchestrator_account_id = "111111111111"
  name_prefix             = var.name_prefix
  lambda_artifacts_dir    = var.lambda_artifacts_dir
  bedrock_agent_id        = "AGENT_ID"
  bedrock_agent_alias_id  = "ALIAS_ID"
  sns_email_subscriptions = ["ops@example.com"]
  wave_pause_seconds      = 0
  abort_on_issues         = true
  log_retention_days      = 7

  wave_rules = [
    {
      name                = "wave1-critical"
      schedule_expression = "cron(0 3 ? * SAT *)"
      accounts            = [var.spoke_accounts[0]]
      regions             = ["us-east-1"]
      # Pre-patch snapshots: every instance's volumes, before its patch command.
      snapshot = true
    },
    {
      name                = "wave2-standard"
      schedule_expression = "cron(30 3 ? * SAT *)"
      accounts            = [var.spoke_accounts[1]]
      regions             = ["us-east-1", "us-west-2"]
      # A wave gate: this wave patches only if wave1-critical's latest run in the last day passed.
      after             = "wave1-critical"
      gate_window_hours = 24
    },
  ]
}

module "spoke_a" {
  source    = "../../terraform/modules/spoke"
  providers = { aws = aws.spoke_a }

  orchestrator_account_id = "111111111111"
  hub_name_prefix         = var.name_prefix
  external_id             = module.hub.external_id
}

module "spoke_b" {
  source    = "../../terraform/modules/spoke"
  providers = { aws = aws.spoke_b }

  orchestrator_account_id = "111111111111"
  hub_name_prefix         = var.name_prefix
  external_id             = module.hub.external_id
}
