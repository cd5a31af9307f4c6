output "state_machine_arn" {
  description = "Start runs here (aws stepfunctions start-execution --state-machine-arn ...)."
  value       = module.hub.state_machine_arn
}

output "callback_url" {
  description = "Approval callback route."
  value       = module.hub.callback_url
}

output "sns_topic_arn" {
  description = "Alerts topic."
  value       = module.hub.sns_topic_arn
}

output "table_name" {
  description = "Run records table."
  value       = module.hub.table_name
}

output "bucket_name" {
  description = "Plans, manifests and reports bucket."
  value       = module.hub.bucket_name
}

output "dashboard_url" {
  description = "CloudWatch dashboard."
  value       = module.hub.dashboard_url
}

output "external_id" {
  description = "ExternalId to give every spoke (terraform/spoke -var external_id=...)."
  value       = module.hub.external_id
}

output "spoke_caller_role_arns" {
  description = "Hub roles each spoke role trusts."
  value       = module.hub.spoke_caller_role_arns
}

output "wave_rule_names" {
  description = "EventBridge rule per wave."
  value       = module.hub.wave_rule_names
}

output "function_arns" {
  description = "Lambda functions by name."
  value       = module.hub.function_arns
}

output "schedule_dead_letter_queue_url" {
  description = "Queue of wave rule events EventBridge could not deliver (docs/troubleshooting-guide.md)."
  value       = module.hub.schedule_dead_letter_queue_url
}
