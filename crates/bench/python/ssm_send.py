"""SendSsmCommand: the plan and the batch; the run lock renewed (the run must still hold it);
per target, side by side: the spoke's role assumed, each instance leased to this run (one
transaction), and per command (at most 50 instances) a claim recorded before AWS-RunPatchBaseline
is sent and the command id after."""

import json
import secrets
from concurrent.futures import ThreadPoolExecutor

import common

INSTANCES_PER_COMMAND = 50


def handler(event, context):
    run_id, wave_index, batch_index = event["runId"], event["waveIndex"], event["batch"]
    plan = common.load_plan(run_id)
    batch = common.get_json(common.batch_key(run_id, wave_index, batch_index))
    common.renew_run_lock(run_id, common.COMMAND_TIMEOUT_SECONDS + common.RUN_LOCK_MARGIN_SECONDS)
    lease_seconds = common.COMMAND_TIMEOUT_SECONDS + common.RUN_LOCK_MARGIN_SECONDS

    def send_target(target):
        account, region = target["account"], target["region"]
        session = common.spoke_session(account, region, run_id)
        ssm = session.client("ssm", config=common.CONFIG)
        ids = [i["instanceId"] for i in target["instances"]]
        at = common.now()
        s, n = (lambda v: {"S": v}), (lambda v: {"N": str(v)})
        common.dynamodb.transact_write_items(TransactItems=[{"Put": {
            "TableName": common.TABLE,
            "Item": {"pk": s(f"LEASE#{account}#{region}#{i}"), "sk": s("LEASE"), "runId": s(run_id),
                     "account": s(account), "region": s(region), "instanceId": s(i),
                     "leaseUntil": n(at + lease_seconds), "expiresAt": n(at + lease_seconds + 86_400)},
            "ConditionExpression": "attribute_not_exists(pk) OR leaseUntil < :now OR runId IN (:run)",
            "ExpressionAttributeValues": {":now": n(at), ":run": s(run_id)}}} for i in ids])
        commands = 0
        for chunk, start in enumerate(range(0, len(ids), INSTANCES_PER_COMMAND)):
            chunk_ids = ids[start:start + INSTANCES_PER_COMMAND]
            key = {"pk": s(common.run_pk(run_id)),
                   "sk": s(f"{common.command_prefix(wave_index, batch_index)}{account}#{region}#{chunk:03}")}
            # One call: the claim, or the one already there (its failed condition returns it).
            try:
                common.dynamodb.put_item(
                    TableName=common.TABLE, ConditionExpression="attribute_not_exists(pk)",
                    ReturnValuesOnConditionCheckFailure="ALL_OLD", Item={
                        **key, "account": s(account), "region": s(region), "instanceIds": {"SS": chunk_ids},
                        "claimedAt": n(common.now()), "expiresAt": common.expires_at()})
            except common.dynamodb.exceptions.ConditionalCheckFailedException as failed:
                if "commandId" in failed.response.get("Item", {}):
                    continue
            command = ssm.send_command(
                InstanceIds=chunk_ids, DocumentName="AWS-RunPatchBaseline", TimeoutSeconds=common.COMMAND_TIMEOUT_SECONDS,
                Comment=f"ec2patch claim {secrets.token_hex(8)}", MaxConcurrency="10%", MaxErrors="10%",
                Parameters={"Operation": ["Scan" if plan["dryRun"] else "Install"], "RebootOption": ["RebootIfNeeded"],
                            "SnapshotId": [plan["snapshotId"]]},
            )["Command"]
            common.dynamodb.update_item(TableName=common.TABLE, Key=key, UpdateExpression="SET commandId = :id, sentAt = :at",
                                        ExpressionAttributeValues={":id": s(command["CommandId"]), ":at": n(common.now())})
            commands += 1
        return commands, len(ids)

    targets = batch["targets"]
    with ThreadPoolExecutor(max_workers=max(1, min(common.CONCURRENCY, len(targets)))) as pool:
        sent = list(pool.map(send_target, targets))
    print(json.dumps({"message": "batch sent", "runId": run_id, "batch": batch_index, "commands": sum(c for c, _ in sent)}))
    return {"batch": batch_index, "commands": sum(c for c, _ in sent), "reused": 0,
            "instances": sum(i for _, i in sent), "unreachableTargets": 0, "busyInstances": 0,
            "budgetSkippedInstances": 0, "unprotectedInstances": 0, "nextPollSeconds": 30, "attempt": 0,
            "done": False, "timedOut": False}
