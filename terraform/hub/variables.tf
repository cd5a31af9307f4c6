# The seed README's hub variables (Quick Start and Configuration), then the module's optional
# inputs passed through. Descriptions and validations live in terraform/modules/hub.

variable "region" {
  description = "AWS region of the hub."
  type        = string
  default     = "us-east-1"
}

variable "orchestrator_account_id" {
  description = "The hub account's id (the credentials must be for this account)."
  type        = string
}

variable "name_prefix" {
  description = "Resource naming prefix."
  type        = string
  default     = "ec2patch"
}

variable "bedrock_agent_id" {
  description = "Bedrock agent identifier (null: rule-based analysis)."
  type        = string
  default     = null
}

variable "bedrock_agent_alias_id" {
  description = "Bedrock agent alias."
  type        = string
  default     = null
}

variable "wave_rules" {
  description = "Patching wave configuration: one EventBridge schedule per wave. `after` names the wave whose latest run (within `gate_window_hours`, default 168) must have passed before this wave patches (a wave gate). `snapshot = true` snapshots each instance's volumes before patching it."
  type = list(object({
    name                 = string
    schedule_expression  = string
    accounts             = optional(list(string), [])
    organizational_units = optional(list(string), [])
    exclude_accounts     = optional(list(string), [])
    regions              = list(string)
    after                = optional(string)
    gate_window_hours    = optional(number, 168)
    snapshot             = optional(bool, false)
  }))
  default = []
}

variable "sns_email_subscriptions" {
  description = "Email addresses for notifications and approval requests."
  type        = list(string)
  default     = []
}

variable "wave_pause_seconds" {
  description = "Delay between waves."
  type        = number
  default     = 0
}

variable "abort_on_issues" {
  description = "Stop on detected issues."
  type        = bool
  default     = true
}

variable "lambda_artifacts_dir" {
  description = "cargo-lambda output directory (<dir>/<bin>/bootstrap.zip). Null: the repository's target/lambda."
  type        = string
  default     = null
}

variable "spoke_role_name" {
  description = "Role assumed in each spoke account."
  type        = string
  default     = "PatchExecRole"
}

variable "external_id" {
  description = "ExternalId the spoke roles require. Null: <name_prefix>-<orchestrator_account_id>."
  type        = string
  default     = null
}

variable "spoke_account_ids" {
  description = "Extra accounts manual runs may target besides those in wave_rules."
  type        = list(string)
  default     = []
}

variable "organization_id" {
  description = "Organizations id: allow the spoke role in every account of the organization (large fleets)."
  type        = string
  default     = null
}

variable "organizations_role_arn" {
  description = "Role PlanRun assumes to resolve organizational_units into accounts (null: the hub's own role)."
  type        = string
  default     = null
}

variable "approval_timeout_seconds" {
  description = "How long a wave waits for approval."
  type        = number
  default     = 14400
}

variable "tag_key" {
  description = "Default tag key of patchable instances."
  type        = string
  default     = "PatchGroup"
}

variable "tag_value" {
  description = "Default tag value of patchable instances."
  type        = string
  default     = "default"
}

variable "default_regions" {
  description = "Regions of waves that name none (empty: the hub's region)."
  type        = list(string)
  default     = []
}

variable "log_retention_days" {
  description = "Retention of the hub's log groups."
  type        = number
  default     = 365
}

variable "kms_key_arn" {
  description = "Bring your own KMS key (null: the module creates one)."
  type        = string
  default     = null
}

variable "wave_schedules_enabled" {
  description = "Whether the wave rules fire (false: deploy first, run manually)."
  type        = bool
  default     = true
}

variable "inventory_concurrency" {
  description = "Targets one inventory invocation works on at once."
  type        = number
  default     = 16
}

variable "record_ttl_days" {
  description = "Days run records and artifacts are kept."
  type        = number
  default     = 90
}

variable "snapshot_retention_days" {
  description = "Days pre-patch snapshots are kept before ApprovalMonitor deletes them (1-365)."
  type        = number
  default     = 7
}

variable "log_level" {
  description = "Functions' application log level (TRACE, DEBUG, INFO, WARN, ERROR, FATAL)."
  type        = string
  default     = "INFO"
}

variable "state_machine_log_level" {
  description = "Step Functions logging level (ALL, ERROR, FATAL, OFF)."
  type        = string
  default     = "ERROR"
}

variable "metric_namespace" {
  description = "Namespace of ec2patch's metrics (null: EC2Patch/<name_prefix>)."
  type        = string
  default     = null
}

variable "targets_per_batch" {
  description = "Targets one batch of the state machine sends and polls."
  type        = number
  default     = 10
}

variable "reboot_option" {
  description = "AWS-RunPatchBaseline RebootOption: RebootIfNeeded or NoReboot."
  type        = string
  default     = "RebootIfNeeded"
}

variable "max_concurrency" {
  description = "SSM MaxConcurrency per target (number or percentage)."
  type        = string
  default     = "10%"
}

variable "max_errors" {
  description = "SSM MaxErrors per target (number or percentage)."
  type        = string
  default     = "10%"
}

variable "command_timeout_seconds" {
  description = "SSM command timeout; later a batch counts as timed out."
  type        = number
  default     = 7200
}

variable "poll_initial_seconds" {
  description = "First wait before polling a command."
  type        = number
  default     = 30
}

variable "poll_max_seconds" {
  description = "Longest wait between polls."
  type        = number
  default     = 300
}

variable "command_log_group" {
  description = "Spoke CloudWatch Logs group for command output (null: SSM only)."
  type        = string
  default     = null
}

variable "run_lock_margin_seconds" {
  description = "Run lock lease added per renewal (above 600)."
  type        = number
  default     = 900
}

variable "extra_regions" {
  description = "Regions accepted beyond the built-in list."
  type        = list(string)
  default     = []
}

variable "change_calendars" {
  description = "SSM Change Calendars that must be OPEN before a wave patches."
  type        = list(string)
  default     = []
}

variable "freeze_wait_seconds" {
  description = "How long a wave waits for a closed change calendar (0: stop at once)."
  type        = number
  default     = 0
}

variable "max_failed_instances" {
  description = "Default error budget per wave, in failed instances (null: none)."
  type        = number
  default     = null
}

variable "max_failed_percent" {
  description = "Default error budget per wave, in percent of its patchable instances (null: none)."
  type        = number
  default     = null
}

variable "max_concurrent_batches" {
  description = "Default bound on the batches a wave patches at once (null: 10 inline, 100 distributed)."
  type        = number
  default     = null
}

variable "bedrock_timeout_seconds" {
  description = "Bound on one Bedrock agent call (1-150)."
  type        = number
  default     = 60
}

variable "max_failure_rate" {
  description = "Tolerated failed share of a wave, 0 to 1."
  type        = number
  default     = 0
}

variable "max_unhealthy" {
  description = "Tolerated unhealthy instances after a wave."
  type        = number
  default     = 0
}

variable "unreachable_is_issue" {
  description = "Whether unreachable targets make a wave's result an issue."
  type        = bool
  default     = true
}

variable "callback_throttle" {
  description = "Approval API throttling: requests per second and burst."
  type = object({
    rate  = number
    burst = number
  })
  default = {
    rate  = 10
    burst = 20
  }
}

variable "state_machine_template" {
  description = "State machine template (null: the repository's statemachine/orchestrator.asl.json)."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags on every resource."
  type        = map(string)
  default     = {}
}

variable "assume_role_arn" {
  description = "Role Terraform assumes to deploy into the account (null: use the caller's credentials)."
  type        = string
  default     = null
}
