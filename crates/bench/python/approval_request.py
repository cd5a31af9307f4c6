"""SendApprovalRequest: the signing key and an SNS client at cold start; then the plan."""

import boto3

import common

KEY = common.signing_key()
sns = boto3.client("sns", config=common.CONFIG)


def handler(event, context):
    plan = common.load_plan(event["runId"])
    if event["waveIndex"] >= len(plan["waves"]):
        raise common.InvalidInput(f"run {plan['runId']} has {len(plan['waves'])} waves")
    return {}
