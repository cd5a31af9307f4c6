# Inputs of the hub module. The first block is the seed README's contract (Quick Start and
# Configuration); the rest is what a real deployment needs, each with a safe default.

variable "orchestrator_account_id" {
  description = "The hub account's id. Apply fails if the provider's credentials are for another account."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.orchestrator_account_id))
    error_message = "orchestrator_account_id must be a 12-digit AWS account id."
  }
}

variable "name_prefix" {
  description = "Prefix of every resource name (functions are `<prefix>-<Function>`, the table `<prefix>-runs`, ...)."
  type        = string
  default     = "ec2patch"

  validation {
    # Lower case because the prefix is part of the S3 bucket name; 24 characters keep every
    # derived name (IAM role `<prefix>-SendApprovalRequest`, bucket) within AWS's limits.
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.name_prefix))
    error_message = "name_prefix must be 2-24 characters of a-z, 0-9 and '-', start with a letter and not end with '-'."
  }
}

variable "bedrock_agent_id" {
  description = "Bedrock agent used for patch analysis by default (`bedrock.agentId` of the run input). Null: rule-based analysis."
  type        = string
  default     = null

  validation {
    condition     = var.bedrock_agent_id == null || can(regex("^[A-Za-z0-9_-]{1,100}$", var.bedrock_agent_id))
    error_message = "bedrock_agent_id must be 1-100 characters of A-Z, a-z, 0-9, '_' and '-'."
  }
}

variable "bedrock_agent_alias_id" {
  description = "Alias of bedrock_agent_id. Set both or neither."
  type        = string
  default     = null

  validation {
    condition     = var.bedrock_agent_alias_id == null || can(regex("^[A-Za-z0-9_-]{1,100}$", var.bedrock_agent_alias_id))
    error_message = "bedrock_agent_alias_id must be 1-100 characters of A-Z, a-z, 0-9, '_' and '-'."
  }
}

variable "wave_rules" {
  description = "Patch waves: one EventBridge rule `<prefix>-<name>` per wave starts a run of that wave on its schedule. `after` (a wave gate) names the wave whose latest run within `gate_window_hours` (default 168, one week) must have passed, or this wave's run stops with WaveGateClosed before inventory. `snapshot = true`: every instance's EBS volumes are snapshotted before it is patched (kept snapshot_retention_days); an instance whose snapshot fails is skipped, never patched unprotected."
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

  validation {
    condition = alltrue([for w in var.wave_rules :
    w.after == null || (w.after != w.name && contains([for o in var.wave_rules : o.name], coalesce(w.after, "-")))])
    error_message = "Each wave_rules[*].after must name another wave of wave_rules (a wave gate follows a scheduled wave, never itself)."
  }
  validation {
    condition = alltrue([for w in var.wave_rules :
    w.gate_window_hours >= 1 && w.gate_window_hours <= 8784 && floor(w.gate_window_hours) == w.gate_window_hours])
    error_message = "Each wave_rules[*].gate_window_hours must be a whole number of hours from 1 to 8784 (366 days)."
  }

  validation {
    condition     = alltrue([for w in var.wave_rules : can(regex("^[A-Za-z0-9._-]{1,39}$", w.name))])
    error_message = "Each wave_rules[*].name must be 1-39 characters of A-Z, a-z, 0-9, '.', '_' and '-'."
  }
  validation {
    condition     = length(distinct([for w in var.wave_rules : w.name])) == length(var.wave_rules)
    error_message = "wave_rules names must be unique."
  }
  validation {
    condition = alltrue([for w in var.wave_rules : can(regex(
      "^(cron\\(\\S+ \\S+ \\S+ \\S+ \\S+ \\S+\\)|rate\\([1-9][0-9]* (minute|minutes|hour|hours|day|days)\\))$",
    w.schedule_expression))])
    error_message = "Each wave_rules[*].schedule_expression must be an EventBridge cron(m h dom mon dow y) with six fields or rate(N unit)."
  }
  validation {
    condition = alltrue([for w in var.wave_rules :
    length(w.accounts) + length(w.organizational_units) > 0 && alltrue([for a in concat(w.accounts, w.exclude_accounts) : can(regex("^[0-9]{12}$", a))])])
    error_message = "Each wave_rules[*] must list accounts or organizational_units; accounts and exclude_accounts hold 12-digit AWS account ids."
  }
  validation {
    condition = alltrue([for w in var.wave_rules :
    length(w.organizational_units) <= 50 && alltrue([for o in w.organizational_units : can(regex("^(ou-[0-9a-z]{4,32}-[0-9a-z]{8,32}|r-[0-9a-z]{4,32})$", o))])])
    error_message = "Each wave_rules[*].organizational_units must hold at most 50 OU ids (ou-xxxx-xxxxxxxx) or root ids (r-xxxx)."
  }
  validation {
    condition     = alltrue([for w in var.wave_rules : length(distinct(w.accounts)) == length(w.accounts)])
    error_message = "An account may appear only once in a wave's accounts."
  }
  validation {
    condition = alltrue([for w in var.wave_rules :
    length(w.regions) > 0 && alltrue([for r in w.regions : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", r))])])
    error_message = "Each wave_rules[*].regions must be a non-empty list of region names such as us-east-1."
  }
}

variable "sns_email_subscriptions" {
  description = "Email addresses subscribed to the alerts topic (approval requests, wave summaries, alarms). Each must confirm by mail."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for e in var.sns_email_subscriptions : can(regex("^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", e))])
    error_message = "sns_email_subscriptions must be email addresses."
  }
}

variable "wave_pause_seconds" {
  description = "Default pause between waves of one run (`wavePauseSeconds`)."
  type        = number
  default     = 0

  validation {
    condition     = var.wave_pause_seconds >= 0 && var.wave_pause_seconds <= 86400 && floor(var.wave_pause_seconds) == var.wave_pause_seconds
    error_message = "wave_pause_seconds must be a whole number from 0 to 86400."
  }
}

variable "abort_on_issues" {
  description = "Default for `abortOnIssues`: stop later waves when a wave has issues."
  type        = bool
  default     = true
}

# ---- Beyond the seed: what a real deployment needs -------------------------------------------

variable "lambda_artifacts_dir" {
  description = "Directory with cargo-lambda's output, `<dir>/<bin>/bootstrap.zip` per function. Null: `<root module>/../../target/lambda` (the repository's target/lambda when applied from terraform/hub)."
  type        = string
  default     = null
}

variable "state_machine_template" {
  description = "Path of the state machine template. Null: the repository's statemachine/orchestrator.asl.json."
  type        = string
  default     = null
}

variable "spoke_role_name" {
  description = "Name of the role the hub assumes in every spoke account (the spoke module's role_name)."
  type        = string
  default     = "PatchExecRole"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.spoke_role_name))
    error_message = "spoke_role_name must be a valid IAM role name."
  }
}

variable "external_id" {
  description = "ExternalId the spoke roles require. Null: `<name_prefix>-<orchestrator_account_id>`, which is also the spoke module's default. Set your own in both for production."
  type        = string
  default     = null

  validation {
    condition     = var.external_id == null ? true : can(regex("^[A-Za-z0-9+=,.@:/_-]+$", var.external_id)) && length(var.external_id) >= 2 && length(var.external_id) <= 1224
    error_message = "external_id must be 2-1224 characters of A-Z, a-z, 0-9 and + = , . @ : / _ -."
  }
}

variable "spoke_account_ids" {
  description = "Accounts a manual run may target besides those in wave_rules (the hub may assume the spoke role only in listed accounts)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.spoke_account_ids : can(regex("^[0-9]{12}$", a))])
    error_message = "spoke_account_ids must be 12-digit AWS account ids."
  }
}

variable "organization_id" {
  description = "AWS Organizations id (o-...). When set, the hub may assume the spoke role in any account of the organization instead of listed accounts only: needed past ~180 accounts, where the listed ARNs no longer fit an IAM policy."
  type        = string
  default     = null

  validation {
    condition     = var.organization_id == null || can(regex("^o-[a-z0-9]{10,32}$", var.organization_id))
    error_message = "organization_id must look like o-abcd123456."
  }
}

variable "organizations_role_arn" {
  description = "Organizations targeting (a wave's organizational_units / organizationalUnits): the role PlanRun assumes to list the OUs' accounts, in the management account or a delegated administrator. Null: the hub's own role lists them (the hub is then the management or a delegated administrator account)."
  type        = string
  default     = null

  validation {
    condition     = var.organizations_role_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/[A-Za-z0-9+=,.@_/-]{1,512}$", var.organizations_role_arn))
    error_message = "organizations_role_arn must be an IAM role ARN (arn:aws:iam::123456789012:role/NAME)."
  }
}

variable "approval_timeout_seconds" {
  description = "How long a wave waits for an approval (and how long the emailed links live)."
  type        = number
  default     = 14400

  validation {
    condition     = var.approval_timeout_seconds >= 60 && var.approval_timeout_seconds <= 31536000 && floor(var.approval_timeout_seconds) == var.approval_timeout_seconds
    error_message = "approval_timeout_seconds must be a whole number from 60 to 31536000 (one year)."
  }
}

variable "tag_key" {
  description = "Tag key of patchable instances when the run input names none."
  type        = string
  default     = "PatchGroup"

  validation {
    condition     = length(var.tag_key) >= 1 && length(var.tag_key) <= 128 && !startswith(lower(var.tag_key), "aws:")
    error_message = "tag_key must be 1-128 characters and not start with aws:."
  }
}

variable "tag_value" {
  description = "Tag value of patchable instances when the run input names none."
  type        = string
  default     = "default"

  validation {
    condition     = length(var.tag_value) <= 256
    error_message = "tag_value must be at most 256 characters."
  }
}

variable "default_regions" {
  description = "Regions of a wave that names none. Empty: the hub's region."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.default_regions : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", r))])
    error_message = "default_regions must be region names such as us-east-1."
  }
}

variable "inventory_concurrency" {
  description = "Targets (account x region) one inventory invocation works on at once."
  type        = number
  default     = 16

  validation {
    condition     = var.inventory_concurrency >= 1 && var.inventory_concurrency <= 256
    error_message = "inventory_concurrency must be from 1 to 256."
  }
}

variable "record_ttl_days" {
  description = "Days run records stay in DynamoDB (TTL) and run artifacts in S3 (lifecycle)."
  type        = number
  default     = 90

  validation {
    condition     = var.record_ttl_days >= 1 && var.record_ttl_days <= 3650
    error_message = "record_ttl_days must be from 1 to 3650."
  }
}

variable "snapshot_retention_days" {
  description = "Days a pre-patch snapshot (waves with `snapshot = true`) is kept: each is tagged `ec2patch:delete-after` = creation time + this many days, and ApprovalMonitor deletes it once that time has passed (`EC2PATCH_SNAPSHOT_RETENTION_DAYS`)."
  type        = number
  default     = 7

  validation {
    condition     = var.snapshot_retention_days >= 1 && var.snapshot_retention_days <= 365 && floor(var.snapshot_retention_days) == var.snapshot_retention_days
    error_message = "snapshot_retention_days must be a whole number of days from 1 to 365."
  }
}

variable "log_retention_days" {
  description = "Retention of every log group the module creates."
  type        = number
  default     = 365

  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ..., 365, ..., 3653)."
  }
}

variable "log_level" {
  description = "Application log level of the functions (Lambda's JSON log filtering)."
  type        = string
  default     = "INFO"

  validation {
    condition     = contains(["TRACE", "DEBUG", "INFO", "WARN", "ERROR", "FATAL"], var.log_level)
    error_message = "log_level must be one of TRACE, DEBUG, INFO, WARN, ERROR, FATAL."
  }
}

variable "state_machine_log_level" {
  description = "Step Functions logging level (ALL, ERROR, FATAL, OFF). Execution data is never logged: it carries the approval task token."
  type        = string
  default     = "ERROR"

  validation {
    condition     = contains(["ALL", "ERROR", "FATAL", "OFF"], var.state_machine_log_level)
    error_message = "state_machine_log_level must be ALL, ERROR, FATAL or OFF."
  }
}

variable "kms_key_arn" {
  description = "Customer managed KMS key for the table, bucket, topic, queue, logs, parameter and Lambda environment. Null: the module creates one (with rotation). A key you bring must allow CloudWatch Logs, CloudWatch alarms and EventBridge (see the module README)."
  type        = string
  default     = null

  validation {
    condition     = var.kms_key_arn == null || can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN."
  }
}

variable "wave_schedules_enabled" {
  description = "Whether the wave rules start runs on their schedules. Deploy with false to try manual dry runs first."
  type        = bool
  default     = true
}

variable "metric_namespace" {
  description = "CloudWatch namespace of ec2patch's own metrics (PatchFailures, InstancesUnhealthy, PendingApprovals; `EC2PATCH_METRIC_NAMESPACE`). Null: `EC2Patch/<name_prefix>`."
  type        = string
  default     = null

  validation {
    condition     = var.metric_namespace == null || can(regex("^[A-Za-z0-9.\\-_/#:]{1,255}$", var.metric_namespace)) && !startswith(coalesce(var.metric_namespace, "x"), "AWS/")
    error_message = "metric_namespace must be 1-255 characters of A-Z, a-z, 0-9, '.', '-', '_', '/', '#' and ':', and not start with AWS/."
  }
}

variable "callback_throttle" {
  description = "Rate (requests per second) and burst limits of the approval callback API."
  type = object({
    rate  = number
    burst = number
  })
  default = {
    rate  = 10
    burst = 20
  }

  validation {
    condition     = var.callback_throttle.rate > 0 && var.callback_throttle.burst >= 1 && floor(var.callback_throttle.burst) == var.callback_throttle.burst && var.callback_throttle.burst <= 5000
    error_message = "callback_throttle needs rate > 0 and a whole burst from 1 to 5000."
  }
}

# ---- Patching: how AWS-RunPatchBaseline is sent and watched (SendSsmCommand, PollSsmCommand) ----

variable "targets_per_batch" {
  description = "Targets (account x region) one iteration of the state machine's batch Map sends and polls (`EC2PATCH_TARGETS_PER_BATCH`). Larger batches mean fewer state transitions and longer invocations."
  type        = number
  default     = 10

  validation {
    condition     = var.targets_per_batch >= 1 && var.targets_per_batch <= 100 && floor(var.targets_per_batch) == var.targets_per_batch
    error_message = "targets_per_batch must be a whole number from 1 to 100."
  }
}

variable "reboot_option" {
  description = "AWS-RunPatchBaseline's RebootOption (`EC2PATCH_REBOOT_OPTION`): RebootIfNeeded or NoReboot."
  type        = string
  default     = "RebootIfNeeded"

  validation {
    condition     = contains(["RebootIfNeeded", "NoReboot"], var.reboot_option)
    error_message = "reboot_option must be RebootIfNeeded or NoReboot."
  }
}

variable "max_concurrency" {
  description = "SSM SendCommand MaxConcurrency per target (`EC2PATCH_MAX_CONCURRENCY`): instances patched at once, a number or a percentage."
  type        = string
  default     = "10%"

  validation {
    condition     = can(regex("^([1-9][0-9]{0,3}|[1-9][0-9]?%|100%)$", var.max_concurrency))
    error_message = "max_concurrency must be a number from 1 to 9999 or a percentage from 1% to 100% (SSM's MaxConcurrency)."
  }
}

variable "max_errors" {
  description = "SSM SendCommand MaxErrors per target (`EC2PATCH_MAX_ERRORS`): failed instances after which SSM stops sending, a number or a percentage."
  type        = string
  default     = "10%"

  validation {
    condition     = can(regex("^(0|[1-9][0-9]{0,3}|[0-9]%|[1-9][0-9]%|100%)$", var.max_errors))
    error_message = "max_errors must be a number from 0 to 9999 or a percentage from 0% to 100% (SSM's MaxErrors)."
  }
}

variable "command_timeout_seconds" {
  description = "SSM command timeout (`EC2PATCH_COMMAND_TIMEOUT_SECONDS`); a batch still running this long after sending is recorded as timed out. SendCommand accepts 30 s to 30 days."
  type        = number
  default     = 7200

  validation {
    condition     = var.command_timeout_seconds >= 30 && var.command_timeout_seconds <= 2592000 && floor(var.command_timeout_seconds) == var.command_timeout_seconds
    error_message = "command_timeout_seconds must be a whole number from 30 to 2592000 (SSM SendCommand's TimeoutSeconds range)."
  }
}

variable "poll_initial_seconds" {
  description = "First wait before polling a sent command (`EC2PATCH_POLL_INITIAL_SECONDS`); each further wait doubles up to poll_max_seconds, or ends just after the command's estimated end once its first invocations have finished (never more polls than the doubling would make)."
  type        = number
  default     = 30

  validation {
    condition     = var.poll_initial_seconds >= 1 && var.poll_initial_seconds <= 3600 && floor(var.poll_initial_seconds) == var.poll_initial_seconds
    error_message = "poll_initial_seconds must be a whole number from 1 to 3600."
  }
}

variable "poll_max_seconds" {
  description = "Longest wait between two polls of a command (`EC2PATCH_POLL_MAX_SECONDS`), at least poll_initial_seconds."
  type        = number
  default     = 300

  validation {
    condition     = var.poll_max_seconds >= 1 && var.poll_max_seconds <= 3600 && floor(var.poll_max_seconds) == var.poll_max_seconds
    error_message = "poll_max_seconds must be a whole number from 1 to 3600."
  }
}

variable "command_log_group" {
  description = "CloudWatch Logs group (in each spoke account) that receives the patch commands' output (`EC2PATCH_COMMAND_LOG_GROUP`). Null: output stays in SSM only (truncated to 24,000 characters). The spoke instances' profile must allow writing to it."
  type        = string
  default     = null

  validation {
    condition     = var.command_log_group == null || can(regex("^[.\\-_/#A-Za-z0-9]{1,512}$", var.command_log_group))
    error_message = "command_log_group must be a CloudWatch Logs group name: 1-512 characters of A-Z, a-z, 0-9, '.', '-', '_', '/' and '#'."
  }
}

variable "run_lock_margin_seconds" {
  description = "What every renewal of a run's lock adds for the steps until the next renewal (`EC2PATCH_RUN_LOCK_MARGIN_SECONDS`). It must exceed the longest function timeout (PollSsmCommand, 600 s): an expired lease then means no invocation of that run is in flight."
  type        = number
  default     = 900

  validation {
    condition     = var.run_lock_margin_seconds > 600 && var.run_lock_margin_seconds <= 86400 && floor(var.run_lock_margin_seconds) == var.run_lock_margin_seconds
    error_message = "run_lock_margin_seconds must be a whole number above 600 (PollSsmCommand's timeout) and at most 86400."
  }
}

variable "extra_regions" {
  description = "Regions run inputs may name beyond ec2patch's built-in list (`EC2PATCH_EXTRA_REGIONS`), e.g. a region newer than the release."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for r in var.extra_regions : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]+$", r))])
    error_message = "extra_regions must be region names such as ap-southeast-7."
  }
}

variable "change_calendars" {
  description = "SSM Change Calendars (names or document ARNs, in the hub account) that must be OPEN before a wave sends patch commands (`EC2PATCH_CHANGE_CALENDARS`); a run input's `changeCalendars` adds to them."
  type        = list(string)
  default     = []

  validation {
    condition     = length(var.change_calendars) <= 10 && alltrue([for c in var.change_calendars : can(regex("^([a-zA-Z0-9_.-]{3,128}|arn:aws[a-z-]*:ssm:[a-z0-9-]+:[0-9]{12}:document/[a-zA-Z0-9_.-]{3,128})$", c))])
    error_message = "change_calendars must be at most 10 Change Calendar names (3-128 of letters, digits, _ - .) or their SSM document ARNs."
  }
}

variable "freeze_wait_seconds" {
  description = "How long a wave waits for a CLOSED change calendar to open before the run stops with ChangeFreeze (`EC2PATCH_FREEZE_WAIT_SECONDS`; 0: stop at once)."
  type        = number
  default     = 0

  validation {
    condition     = var.freeze_wait_seconds >= 0 && var.freeze_wait_seconds <= 604800 && floor(var.freeze_wait_seconds) == var.freeze_wait_seconds
    error_message = "freeze_wait_seconds must be a whole number of seconds from 0 to 604800 (one week)."
  }
}

variable "max_failed_instances" {
  description = "Default error budget per wave: once more instances than this failed (FAILED or TIMED_OUT), no further batch of the wave is sent (`EC2PATCH_MAX_FAILED_INSTANCES`; null: no count budget). A run input's maxFailedInstances overrides it."
  type        = number
  default     = null

  validation {
    condition     = var.max_failed_instances == null || try(var.max_failed_instances >= 0 && floor(var.max_failed_instances) == var.max_failed_instances, false)
    error_message = "max_failed_instances must be a whole number of at least 0, or null."
  }
}

variable "max_failed_percent" {
  description = "Default error budget per wave as a percentage of its patchable instances (`EC2PATCH_MAX_FAILED_PERCENT`; null: no percentage budget). With max_failed_instances too, the smaller allowance holds."
  type        = number
  default     = null

  validation {
    condition     = var.max_failed_percent == null || try(var.max_failed_percent >= 0 && var.max_failed_percent <= 100 && floor(var.max_failed_percent) == var.max_failed_percent, false)
    error_message = "max_failed_percent must be a whole number from 0 to 100, or null."
  }
}

variable "max_concurrent_batches" {
  description = "Default bound on the batches a wave patches at once (`EC2PATCH_MAX_CONCURRENT_BATCHES`; null: 10 inline, 100 distributed). An error budget can stop only batches that start after failures are known."
  type        = number
  default     = null

  validation {
    condition     = var.max_concurrent_batches == null || try(var.max_concurrent_batches >= 1 && var.max_concurrent_batches <= 1000 && floor(var.max_concurrent_batches) == var.max_concurrent_batches, false)
    error_message = "max_concurrent_batches must be a whole number from 1 to 1000, or null."
  }
}

# ---- Analysis: when a wave's results count as issues (AnalyzeWithBedrock) --------------------

variable "bedrock_timeout_seconds" {
  description = "Bound on one Bedrock InvokeAgent call, answer stream included (`EC2PATCH_BEDROCK_TIMEOUT_SECONDS`); past it the rules decide. At most 150 s, so the rules still answer within AnalyzeWithBedrock's 180 s timeout."
  type        = number
  default     = 60

  validation {
    condition     = var.bedrock_timeout_seconds >= 1 && var.bedrock_timeout_seconds <= 150 && floor(var.bedrock_timeout_seconds) == var.bedrock_timeout_seconds
    error_message = "bedrock_timeout_seconds must be a whole number from 1 to 150 (AnalyzeWithBedrock's timeout is 180 s)."
  }
}

variable "max_failure_rate" {
  description = "Highest tolerated share of a wave's attempted instances that failed or timed out, 0 to 1 (`EC2PATCH_MAX_FAILURE_RATE`); above it the wave has issues. 0.05 tolerates 5 %."
  type        = number
  default     = 0

  validation {
    condition     = var.max_failure_rate >= 0 && var.max_failure_rate <= 1
    error_message = "max_failure_rate must be a fraction from 0 to 1."
  }
}

variable "max_unhealthy" {
  description = "Highest tolerated number of a wave's instances unhealthy after patching (`EC2PATCH_MAX_UNHEALTHY`)."
  type        = number
  default     = 0

  validation {
    condition     = var.max_unhealthy >= 0 && floor(var.max_unhealthy) == var.max_unhealthy
    error_message = "max_unhealthy must be a whole number of at least 0."
  }
}

variable "unreachable_is_issue" {
  description = "Whether targets that could not be reached (role not assumable, region not enabled) make a wave's result an issue (`EC2PATCH_UNREACHABLE_IS_ISSUE`)."
  type        = bool
  default     = true
}

variable "tags" {
  description = "Tags added to every resource that takes tags (besides the provider's default_tags)."
  type        = map(string)
  default     = {}
}
