"""AnalyzeWithBedrock: a Bedrock agent client at cold start; then the plan."""

import boto3

import common

bedrock = boto3.client("bedrock-agent-runtime", config=common.CONFIG)


def handler(event, context):
    plan = common.load_plan(event["runId"])
    if event["waveIndex"] >= len(plan["waves"]):
        raise common.InvalidInput(f"run {plan['runId']} has {len(plan['waves'])} waves")
    return {}
