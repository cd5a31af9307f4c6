output "state_machine_arn" {
  description = "ARN of the orchestrator (start runs here)."
  value       = aws_sfn_state_machine.orchestrator.arn
}

output "state_machine_name" {
  description = "Name of the orchestrator."
  value       = aws_sfn_state_machine.orchestrator.name
}

output "callback_base_url" {
  description = "Invoke URL of the approval API (no trailing slash); approval links are <this>/callback?...."
  value       = aws_apigatewayv2_api.callback.api_endpoint
}

output "callback_url" {
  description = "The approval callback route."
  value       = "${aws_apigatewayv2_api.callback.api_endpoint}/callback"
}

output "sns_topic_arn" {
  description = "Alerts topic: approval requests, wave summaries, alarms."
  value       = aws_sns_topic.alerts.arn
}

output "table_name" {
  description = "DynamoDB table of run records."
  value       = aws_dynamodb_table.runs.name
}

output "bucket_name" {
  description = "S3 bucket of plans, manifests and reports (keys under runs/)."
  value       = aws_s3_bucket.artifacts.bucket
}

output "dashboard_name" {
  description = "CloudWatch dashboard name."
  value       = aws_cloudwatch_dashboard.hub.dashboard_name
}

output "dashboard_url" {
  description = "CloudWatch console URL of the dashboard."
  value       = "https://${local.region}.console.aws.amazon.com/cloudwatch/home?region=${local.region}#dashboards:name=${aws_cloudwatch_dashboard.hub.dashboard_name}"
}

output "function_arns" {
  description = "Lambda function ARNs by function name (PlanRun, PreEC2Inventory, ...)."
  value       = { for name, fn in aws_lambda_function.this : name => fn.arn }
}

output "function_role_arns" {
  description = "Execution role ARNs by function name."
  value       = { for name, role in aws_iam_role.function : name => role.arn }
}

output "spoke_caller_role_arns" {
  description = "Hub roles that assume the spoke role: what each spoke's trust policy must allow (the spoke module's default hub_role_names covers them)."
  value       = [for name, fn in local.functions : aws_iam_role.function[name].arn if fn.spoke]
}

output "external_id" {
  description = "ExternalId the spoke roles must require."
  value       = local.external_id
}

output "spoke_role_name" {
  description = "Role name the hub assumes in every spoke."
  value       = var.spoke_role_name
}

output "kms_key_arn" {
  description = "The hub's KMS key."
  value       = local.kms_key_arn
}

output "hmac_key_parameter" {
  description = "SSM SecureString parameter holding the approval-link HMAC key."
  value       = aws_ssm_parameter.hmac_key.name
}

output "wave_rule_names" {
  description = "EventBridge rule name by wave."
  value       = { for name, rule in aws_cloudwatch_event_rule.wave : name => rule.name }
}

output "wave_run_inputs" {
  description = "The run input each wave rule sends, by wave (JSON)."
  value       = local.wave_inputs
}

output "schedule_dead_letter_queue_url" {
  description = "SQS queue receiving wave-rule deliveries EventBridge gave up on."
  value       = aws_sqs_queue.schedule_dlq.url
}

output "function_environment" {
  description = "Each function's Lambda environment (the hub configuration, docs/api.md), by function name, less EC2PATCH_CALLBACK_BASE_URL (callback_base_url)."
  value       = local.function_environment
}
