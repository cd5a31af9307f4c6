# The approval callback: an HTTP API with GET /callback (confirmation page, changes nothing) and
# POST /callback (the decision), both proxied to ApprovalCallback (payload format 2.0). Links are
# HMAC-signed and single-use; see docs/architecture.md.

resource "aws_apigatewayv2_api" "callback" {
  name          = "${var.name_prefix}-approvals"
  description   = "ec2patch ${var.name_prefix}: approval links"
  protocol_type = "HTTP"
  tags          = local.tags
}

resource "aws_apigatewayv2_integration" "callback" {
  api_id                 = aws_apigatewayv2_api.callback.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.this["ApprovalCallback"].arn
  payload_format_version = "2.0"
  timeout_milliseconds   = 29000
}

resource "aws_apigatewayv2_route" "callback" {
  for_each = toset(["GET /callback", "POST /callback"])

  # checkov:skip=CKV_AWS_309:The routes are opened from an email by a person without AWS credentials; each link carries an HMAC signature over a random approval id, checked by ApprovalCallback, and only the POST from its confirmation page decides.
  api_id             = aws_apigatewayv2_api.callback.id
  route_key          = each.key
  target             = "integrations/${aws_apigatewayv2_integration.callback.id}"
  authorization_type = "NONE"
}

resource "aws_cloudwatch_log_group" "api" {
  name              = "/aws/apigateway/${var.name_prefix}-approvals"
  retention_in_days = var.log_retention_days
  kms_key_id        = local.kms_key_arn
  tags              = local.tags
}

resource "aws_apigatewayv2_stage" "callback" {
  api_id      = aws_apigatewayv2_api.callback.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit  = var.callback_throttle.rate
    throttling_burst_limit = var.callback_throttle.burst
  }

  # No query string in the access log: it holds the link's approval id and signature.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.api.arn
    format = jsonencode({
      requestId    = "$context.requestId"
      time         = "$context.requestTime"
      sourceIp     = "$context.identity.sourceIp"
      userAgent    = "$context.identity.userAgent"
      routeKey     = "$context.routeKey"
      status       = "$context.status"
      latency      = "$context.responseLatency"
      errorMessage = "$context.error.message"
      integration  = "$context.integrationErrorMessage"
    })
  }

  tags = local.tags
}

resource "aws_lambda_permission" "callback" {
  statement_id  = "ApprovalApi"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.this["ApprovalCallback"].function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.callback.execution_arn}/*/*/callback"
}
