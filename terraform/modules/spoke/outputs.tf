output "role_arn" {
  description = "ARN of the role the hub assumes."
  value       = aws_iam_role.patch_exec.arn
}

output "role_name" {
  description = "Name of the role (the hub's spoke_role_name)."
  value       = aws_iam_role.patch_exec.name
}

output "external_id" {
  description = "ExternalId the role requires (the hub's external_id)."
  value       = local.external_id
}

output "trusted_hub_role_arns" {
  description = "Hub roles allowed to assume this role."
  value       = local.hub_role_arns
}
