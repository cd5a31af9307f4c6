# The seed README's spoke variables, then the module's optional inputs passed through.

variable "region" {
  description = "Region for spoke resources (the role is global; this is the provider's region)."
  type        = string
  default     = "us-east-1"
}

variable "orchestrator_account_id" {
  description = "Hub account ID."
  type        = string
}

variable "role_name" {
  description = "Cross-account role name."
  type        = string
  default     = "PatchExecRole"
}

variable "external_id" {
  description = "ExternalId the hub presents (the hub's external_id output). Null: <hub_name_prefix>-<orchestrator_account_id>."
  type        = string
  default     = null
}

variable "hub_name_prefix" {
  description = "The hub's name_prefix."
  type        = string
  default     = "ec2patch"
}

variable "hub_role_names" {
  description = "Hub roles allowed to assume the role (null: the hub's spoke-facing functions)."
  type        = list(string)
  default     = null
}

variable "patch_tag_key" {
  description = "Tag key an instance must carry to be patched."
  type        = string
  default     = "PatchGroup"
}

variable "patch_tag_values" {
  description = "Allowed values (patterns) of patch_tag_key."
  type        = list(string)
  default     = ["*"]
}

variable "allow_snapshots" {
  description = "Whether the hub may snapshot tagged instances before patching them and delete those snapshots when they expire (false: snapshot waves skip this account's instances)."
  type        = bool
  default     = true
}

variable "permissions_boundary_arn" {
  description = "Permissions boundary for the role, if required."
  type        = string
  default     = null
}

variable "tags" {
  description = "Extra tags."
  type        = map(string)
  default     = {}
}

variable "assume_role_arn" {
  description = "Role Terraform assumes to deploy into the account (null: use the caller's credentials)."
  type        = string
  default     = null
}
