"""PollSsmCommand's first call: the batch's command records (none)."""

import common


def handler(event, context):
    prefix = f"COMMAND#{event['waveIndex']:03}#{event['batch']:05}#"
    items = common.dynamodb.query(
        TableName=common.TABLE, KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={":pk": {"S": f"RUN#{event['runId']}"}, ":prefix": {"S": prefix}},
    )["Items"]
    return {"batch": event["batch"], "done": not items, "timedOut": False, "invocations": 0,
            "attempt": event["attempt"] + 1, "nextPollSeconds": 60}
