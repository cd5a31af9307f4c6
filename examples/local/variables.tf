variable "endpoint" {
  description = "URL of the local AWS stack (its router); every service is called there."
  type        = string
}

variable "access_key" {
  description = "Access key of the local stack's hub identity (account 111111111111)."
  type        = string
  sensitive   = true
}

variable "secret_key" {
  description = "Its secret key."
  type        = string
  sensitive   = true
}

variable "lambda_artifacts_dir" {
  description = "Directory with <bin>/bootstrap.zip per function. The emulator never runs them, so the test passes placeholder zips here; real zips come from cargo-lambda (hub-deploy.yml)."
  type        = string
}

variable "name_prefix" {
  description = "Hub name prefix (must differ from the local stack's own prefix, whose table and state machine already exist)."
  type        = string
  default     = "ec2patch"
}

variable "spoke_accounts" {
  description = "The two spoke accounts, each patched by its own wave."
  type        = list(string)
  default     = ["222222222222", "333333333333"]
}
