"""SendSsmCommand: the plan and the batch; the run lock renewed (the run must still hold it);
per target, side by side: the spoke's role assumed; the batch's instances leased to this run and
its commands (at most 50 instances each) claimed, 100 to a transaction across targets, before
AWS-RunPatchBaseline is sent; the command ids recorded after, 25 to a BatchWriteItem."""

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

    s, n = (lambda v: {"S": v}), (lambda v: {"N": str(v)})
    targets = batch["targets"]
    workers = max(1, min(common.CONCURRENCY, len(targets)))

    def session(target):
        return common.spoke_session(target["account"], target["region"], run_id).client("ssm", config=common.CONFIG)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        clients = list(pool.map(session, targets))
    # The batch's leases, 100 to a transaction across targets.
    at = common.now()
    leases = [{"Put": {
        "TableName": common.TABLE,
        "Item": {"pk": s(f"LEASE#{t['account']}#{t['region']}#{i['instanceId']}"), "sk": s("LEASE"),
                 "runId": s(run_id), "account": s(t["account"]), "region": s(t["region"]),
                 "instanceId": s(i["instanceId"]), "leaseUntil": n(at + lease_seconds),
                 "expiresAt": n(at + lease_seconds + 86_400)},
        "ConditionExpression": "attribute_not_exists(pk) OR leaseUntil < :now OR runId IN (:run)",
        "ExpressionAttributeValues": {":now": n(at), ":run": s(run_id)}}} for t in targets for i in t["instances"]]
    for start in range(0, len(leases), 100):
        common.dynamodb.transact_write_items(TransactItems=leases[start:start + 100])
    # The claims, 100 to a transaction; a claim already there (a retry) is read back one by one.
    claims = []
    for target, ssm in zip(targets, clients):
        account, region = target["account"], target["region"]
        ids = [i["instanceId"] for i in target["instances"]]
        for chunk, start in enumerate(range(0, len(ids), INSTANCES_PER_COMMAND)):
            claims.append((ssm, {
                "pk": s(common.run_pk(run_id)),
                "sk": s(f"{common.command_prefix(wave_index, batch_index)}{account}#{region}#{chunk:03}"),
                "account": s(account), "region": s(region), "instanceIds": {"SS": ids[start:start + INSTANCES_PER_COMMAND]},
                "claimedAt": n(common.now()), "recordParts": n(target.get("recordParts", 1)),
                "expiresAt": common.expires_at()}))
    to_send = []
    for start in range(0, len(claims), 100):
        chunk = claims[start:start + 100]
        try:
            common.dynamodb.transact_write_items(TransactItems=[{"Put": {
                "TableName": common.TABLE, "Item": item, "ConditionExpression": "attribute_not_exists(pk)"}}
                for _, item in chunk])
            to_send += chunk
        except common.dynamodb.exceptions.TransactionCanceledException:
            for ssm, item in chunk:
                try:
                    common.dynamodb.put_item(TableName=common.TABLE, Item=item, ConditionExpression="attribute_not_exists(pk)",
                                             ReturnValuesOnConditionCheckFailure="ALL_OLD")
                    to_send.append((ssm, item))
                except common.dynamodb.exceptions.ConditionalCheckFailedException as failed:
                    if "commandId" not in failed.response.get("Item", {}):
                        to_send.append((ssm, item))

    def send(claim):
        ssm, item = claim
        command = ssm.send_command(
            InstanceIds=item["instanceIds"]["SS"], DocumentName="AWS-RunPatchBaseline",
            TimeoutSeconds=common.COMMAND_TIMEOUT_SECONDS, Comment=f"ec2patch claim {secrets.token_hex(8)}",
            MaxConcurrency="10%", MaxErrors="10%",
            Parameters={"Operation": ["Scan" if plan["dryRun"] else "Install"], "RebootOption": ["RebootIfNeeded"],
                        "SnapshotId": [plan["snapshotId"]]},
        )["Command"]
        return dict(item, commandId=s(command["CommandId"]), sentAt=n(common.now()))

    with ThreadPoolExecutor(max_workers=workers) as pool:
        sent = list(pool.map(send, to_send))
    # The command ids, 25 records to a BatchWriteItem.
    common.put_items(sent)
    instances = sum(len(t["instances"]) for t in targets)
    print(json.dumps({"message": "batch sent", "runId": run_id, "batch": batch_index, "commands": len(sent)}))
    return {"batch": batch_index, "commands": len(sent), "reused": 0,
            "instances": instances, "unreachableTargets": 0, "busyInstances": 0,
            "budgetSkippedInstances": 0, "unprotectedInstances": 0, "nextPollSeconds": 30, "attempt": 0,
            "done": False, "timedOut": False}
