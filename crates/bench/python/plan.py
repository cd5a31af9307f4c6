"""PlanRun's first invocation: take the run lock (a conditional PutItem), store the plan and the
lock in S3, record the run in DynamoDB."""

import hashlib
import json
import time

import common


def handler(event, context):
    run_id = event["runId"]
    waves = [{"name": w["name"], "accounts": w["accounts"], "regions": w["regions"]}
             for w in event["input"]["accountWaves"]]
    plan = {"runId": run_id, "dryRun": False, "waves": waves,
            "tagFilters": [{"key": "PatchGroup", "values": ["default"]}]}
    identity = json.dumps({"dryRun": False, "waves": waves, "tagFilters": plan["tagFilters"]})
    names = "+".join(w["name"] for w in waves)
    now = int(time.time())
    lock = {"pk": f"RUNLOCK#{names}#{hashlib.sha256(identity.encode()).hexdigest()[:32]}",
            "sk": "MANUAL", "runId": run_id, "leaseExpiresAt": now + 14_400, "status": "HELD"}
    common.dynamodb.put_item(
        TableName=common.TABLE, ConditionExpression="attribute_not_exists(pk)",
        Item={"pk": {"S": lock["pk"]}, "sk": {"S": "MANUAL"}, "runId": {"S": run_id},
              "leaseExpiresAt": {"N": str(lock["leaseExpiresAt"])}, "status": {"S": "HELD"}},
    )
    common.s3.put_object(Bucket=common.BUCKET, Key=common.plan_key(run_id), Body=json.dumps(plan),
                         ContentType="application/json")
    common.s3.put_object(Bucket=common.BUCKET, Key=f"runs/{run_id}/lock.json",
                         Body=json.dumps(lock), ContentType="application/json")
    common.dynamodb.put_item(TableName=common.TABLE, Item={
        "pk": {"S": f"RUN#{run_id}"}, "sk": {"S": "RUN"}, "runId": {"S": run_id},
        "status": {"S": "RUNNING"}, "plannedAt": {"N": str(now)}, "lock": {"S": lock["pk"]},
    })
    return {"runId": run_id, "waveCount": len(waves),
            "plan": {"bucket": common.BUCKET, "key": common.plan_key(run_id)}, "lock": lock}
