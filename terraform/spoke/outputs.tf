output "role_arn" {
  description = "ARN of the role the hub assumes."
  value       = module.spoke.role_arn
}

output "external_id" {
  description = "ExternalId the role requires."
  value       = module.spoke.external_id
}

output "trusted_hub_role_arns" {
  description = "Hub roles allowed to assume the role."
  value       = module.spoke.trusted_hub_role_arns
}
