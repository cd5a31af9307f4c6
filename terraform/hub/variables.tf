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
  description = "Patching wave configuration: one EventBridge schedule per wave."
  type = list(object({
    name                = string
    schedule_expression = string
    accounts            = list(string)
    regions             = list(string)
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
