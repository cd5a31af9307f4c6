variable "orchestrator_account_id" {
  description = "The hub account's id: only its ec2patch function roles may assume this role."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.orchestrator_account_id))
    error_message = "orchestrator_account_id must be a 12-digit AWS account id."
  }
}

variable "role_name" {
  description = "Name of the cross-account role (the hub module's spoke_role_name)."
  type        = string
  default     = "PatchExecRole"

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be a valid IAM role name."
  }
}

variable "hub_name_prefix" {
  description = "The hub's name_prefix: names the hub roles trusted by default and the default ExternalId."
  type        = string
  default     = "ec2patch"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,22}[a-z0-9]$", var.hub_name_prefix))
    error_message = "hub_name_prefix must be the hub's name_prefix (2-24 characters of a-z, 0-9 and '-')."
  }
}

variable "external_id" {
  description = "ExternalId the hub must present. Null: `<hub_name_prefix>-<orchestrator_account_id>`, the hub module's default. Set your own in both for production."
  type        = string
  default     = null

  validation {
    condition     = var.external_id == null ? true : can(regex("^[A-Za-z0-9+=,.@:/_-]+$", var.external_id)) && length(var.external_id) >= 2 && length(var.external_id) <= 1224
    error_message = "external_id must be 2-1224 characters of A-Z, a-z, 0-9 and + = , . @ : / _ -."
  }
}

variable "hub_role_names" {
  description = "Hub role names allowed to assume this role. Null: the hub functions that work in spokes (`<hub_name_prefix>-PreEC2Inventory`, -SendSsmCommand, -PollSsmCommand, -PostEC2Verify, and -ApprovalMonitor, which deletes expired pre-patch snapshots, unless allow_snapshots is false)."
  type        = list(string)
  default     = null

  validation {
    condition     = var.hub_role_names == null ? true : length(var.hub_role_names) > 0 && alltrue([for n in var.hub_role_names : can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", n))])
    error_message = "hub_role_names must be a non-empty list of IAM role names."
  }
}

variable "patch_tag_key" {
  description = "Tag key an instance must carry for the hub to run AWS-RunPatchBaseline on it."
  type        = string
  default     = "PatchGroup"

  validation {
    condition     = length(var.patch_tag_key) >= 1 && length(var.patch_tag_key) <= 128 && !startswith(lower(var.patch_tag_key), "aws:")
    error_message = "patch_tag_key must be 1-128 characters and not start with aws:."
  }
}

variable "patch_tag_values" {
  description = "Values of patch_tag_key that may be patched (IAM StringLike patterns). Default: any value."
  type        = list(string)
  default     = ["*"]

  validation {
    condition     = length(var.patch_tag_values) > 0
    error_message = "patch_tag_values must list at least one value or pattern."
  }
}

variable "allow_snapshots" {
  description = "Whether the hub may snapshot patch-tagged instances before patching them (waves with `snapshot`) and delete those snapshots when they expire: ec2:CreateSnapshots (tagged instances, their volumes, snapshots created with the ec2patch tags), ec2:CreateTags on snapshots at creation only, ec2:DescribeSnapshots, ec2:DeleteSnapshot of snapshots tagged `ec2patch:delete-after`. false: none of these, and ApprovalMonitor is not trusted; instances of snapshot waves in this account are then skipped (SnapshotFailed), never patched unprotected."
  type        = bool
  default     = true
}

variable "max_session_duration" {
  description = "Longest session (seconds) the hub may hold; the hub renews credentials 5 minutes before expiry."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration >= 3600 && var.max_session_duration <= 43200
    error_message = "max_session_duration must be from 3600 to 43200."
  }
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary to attach to the role, if the organization requires one."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags of the role."
  type        = map(string)
  default     = {}
}
