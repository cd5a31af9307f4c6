"""PostEC2Verify (batch step)'s first calls: the plan, then the batch's command records (none)."""

import common


def handler(event, context):
    common.load_plan(event["runId"])
    prefix = f"COMMAND#{event['waveIndex']:03}#{event['batch']:05}#"
    common.dynamodb.query(
        TableName=common.TABLE, KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{event['runId']}"}, ":prefix": {"S": prefix}},
    )
    return {"batch": event["batch"], "patched": 0, "failed": 0, "timedOut": 0, "unreachable": 0,
            "unhealthy": 0}
