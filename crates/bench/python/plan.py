"""PlanRun: validate the input, take the run lock (a conditional PutItem), store the plan (with
its lock) in S3, record the run in DynamoDB."""

import hashlib
import json
import uuid

import common


def handler(event, context):
    run_id = event["runId"]
    source = event["input"]["accountWaves"]
    for wave in source:
        for account in wave["accounts"]:
            if not (len(account) == 12 and account.isdigit()):
                raise common.InvalidInput(f"accountWaves: {account!r} is not a 12-digit account id")
    waves = [{"name": w["name"], "accounts": w["accounts"], "regions": w["regions"]} for w in source]
    tag_filters = [{"key": "PatchGroup", "values": ["default"]}]
    identity = json.dumps({"dryRun": False, "waves": waves, "tagFilters": tag_filters})
    names = [w["name"] for w in waves]
    now = common.now()
    lease = 900
    pk = f"RUNLOCK#{hashlib.sha256(identity.encode()).hexdigest()[:32]}"
    expires = common.expires_at()
    s, n = (lambda v: {"S": v}), (lambda v: {"N": str(v)})
    try:
        common.dynamodb.put_item(
            TableName=common.TABLE, ConditionExpression="attribute_not_exists(pk)",
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
            Item={"pk": s(pk), "sk": s("MANUAL"), "runId": s(run_id), "status": s("HELD"),
                  "waves": {"L": [s(w) for w in names]}, "resumes": {"L": []}, "renewedAt": n(now),
                  "leaseExpiresAt": n(now + lease), "leaseUntil": s(common.iso(now + lease)), "expiresAt": expires},
        )
    except common.dynamodb.exceptions.ConditionalCheckFailedException:
        raise common.DuplicateRun(f"waves {names} are already being patched")
    lock = {"pk": pk, "sk": "MANUAL", "runId": run_id, "scheduledTime": None, "waves": names, "resumes": [],
            "expiresAt": expires["N"]}
    plan = {"runId": run_id, "dryRun": False, "waves": waves, "tagFilters": tag_filters, "snsTopicArn": None,
            "bedrock": None, "wavePauseSeconds": 0, "abortOnIssues": True, "snapshotId": str(uuid.uuid4()),
            "changeCalendars": [], "freezeWaitSeconds": 0,
            "errorBudget": {"maxFailedInstances": None, "maxFailedPercent": None}, "maxConcurrentBatches": None,
            "ignoreGates": False, "runLock": lock}
    plan_ref = common.put_json(common.plan_key(run_id), plan)
    targets = sum(len(w["accounts"]) * len(w["regions"]) for w in waves)
    common.dynamodb.put_item(TableName=common.TABLE, Item={
        "pk": s(common.run_pk(run_id)), "sk": s("RUN"), "runId": s(run_id), "status": s("RUNNING"),
        "plannedAt": n(now), "lock": s(f"{pk}/MANUAL"), "waves": {"L": [s(w) for w in names]},
        "resumes": {"L": []}, "waveCount": n(len(waves)), "targetCount": n(targets), "dryRun": {"BOOL": False},
        "ignoreGates": {"BOOL": False}, "expiresAt": expires,
    })
    print(f"run planned run_id={run_id} waves={len(waves)} targets={targets}")
    return {"runId": run_id, "dryRun": False, "waveCount": len(waves), "targetCount": targets,
            "wavePauseSeconds": 0, "abortOnIssues": True, "approvalTimeoutSeconds": common.APPROVAL_TIMEOUT_SECONDS,
            "snsTopicArn": None, "changeFreeze": False, "inlineBatchConcurrency": 10,
            "distributedBatchConcurrency": 100, "plan": plan_ref,
            "lock": {"pk": pk, "sk": "MANUAL", "expiresAt": expires["N"]}}
