output "state_machine_arn" {
  value = module.hub.state_machine_arn
}

output "function_arns" {
  value = module.hub.function_arns
}

output "table_name" {
  value = module.hub.table_name
}

output "wave_run_inputs" {
  value = module.hub.wave_run_inputs
}

output "external_id" {
  value = module.hub.external_id
}

output "spoke_role_arns" {
  value = [module.spoke_a.role_arn, module.spoke_b.role_arn]
}

output "spoke_trusted_hub_role_arns" {
  value = module.spoke_a.trusted_hub_role_arns
}

output "spoke_caller_role_arns" {
  value = module.hub.spoke_caller_role_arns
}
