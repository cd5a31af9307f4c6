"""ApprovalMonitor: the signing key and an SNS client at cold start; then the pending approvals
(a filtered Scan: none in the fixture) and the two metrics."""

import json
import time

import boto3

import common

KEY = common.signing_key()
sns = boto3.client("sns", config=common.CONFIG)


def handler(event, context):
    now = int(time.time())
    pages = common.dynamodb.get_paginator("scan").paginate(
        TableName=common.TABLE,
        FilterExpression="sk = :sk AND #status = :pending AND linkExpiresAt > :now",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":sk": {"S": "APPROVAL"}, ":pending": {"S": "pending"}, ":now": {"N": str(now)}},
    )
    requested = [int(item.get("requestedAt", {"N": str(now)})["N"]) for page in pages for item in page["Items"]]
    oldest = max(((now - at) // 60 for at in requested), default=0)
    print(json.dumps({"PendingApprovals": len(requested), "OldestPendingApprovalMinutes": oldest}))
    return {"pendingApprovals": len(requested), "oldestPendingApprovalMinutes": oldest,
            "remindersSent": [], "reminderFailures": []}
