"""PostEC2Verify (batch step): the plan and the batch's commands (with the results the polls
recorded); per account, side by side, the spoke's role assumed (read-only), the instances' status
checks and patch state after; the instance records read, their outcomes written; the instance
leases released (one transaction, else one conditional delete each)."""

import json
from concurrent.futures import ThreadPoolExecutor

import common
from inventory import READ_ONLY

TERMINAL_OK = ("Success",)


def handler(event, context):
    run_id, wave_index, batch = event["runId"], event["waveIndex"], event["batch"]
    common.load_plan(run_id)
    commands = common.query_prefix(common.run_pk(run_id), common.command_prefix(wave_index, batch))
    results = {}
    for command in commands:
        for invocation in json.loads(command.get("finalInvocations", {}).get("S", "[]")):
            results[(command["account"]["S"], command["region"]["S"], invocation["instanceId"])] = (command, invocation)
        for instance_id in command["instanceIds"]["SS"]:
            results.setdefault((command["account"]["S"], command["region"]["S"], instance_id), (command, None))
    targets = {}
    for account, region, instance_id in results:
        targets.setdefault((account, region), []).append(instance_id)

    def check(target):
        (account, region), ids = target
        session = common.spoke_session(account, region, run_id, READ_ONLY)
        ec2, ssm = session.client("ec2", config=common.CONFIG), session.client("ssm", config=common.CONFIG)
        statuses = {s["InstanceId"]: s for s in ec2.describe_instance_status(
            InstanceIds=ids, IncludeAllInstances=True)["InstanceStatuses"]}
        states = {s["InstanceId"]: s for s in ssm.describe_instance_patch_states(InstanceIds=ids)["InstancePatchStates"]}
        return {(account, region, i): (statuses.get(i), states.get(i)) for i in ids}

    checked = {}
    with ThreadPoolExecutor(max_workers=max(1, min(common.CONCURRENCY, len(targets)))) as pool:
        for part in pool.map(check, targets.items()):
            checked.update(part)
    pk = common.run_pk(run_id)
    # The instance records' groups (one per target), read 100 to a call and written back whole.
    group_of = {(a, r, i): common.group_sk(wave_index, a, r, int(c.get("recordParts", {"N": "1"})["N"]), i)
                for (a, r, i), (c, _) in results.items()}
    groups = {item["sk"]["S"]: item for item in common.get_items([(pk, sk) for sk in sorted(set(group_of.values()))])}
    counts = {"patched": 0, "failed": 0, "timedOut": 0, "unreachable": 0, "unhealthy": 0}
    for (account, region, instance_id), (command, result) in results.items():
        sk = group_of[(account, region, instance_id)]
        group = groups.setdefault(sk, {"pk": {"S": pk}, "sk": {"S": sk}, "wave": {"N": str(wave_index)},
                                       "account": {"S": account}, "region": {"S": region},
                                       "records": {"M": {}}, "expiresAt": common.expires_at()})
        record = group["records"]["M"].setdefault(instance_id, {"M": {}})["M"]
        status, state = checked.get((account, region, instance_id), (None, None))
        invocation = (result or {}).get("status")
        healthy = bool(status) and status.get("InstanceState", {}).get("Name") == "running" and all(
            status.get(k, {}).get("Status") in ("ok", "initializing", "not-applicable", None)
            for k in ("InstanceStatus", "SystemStatus"))
        missing = (state or {}).get("MissingCount", 0)
        failed_patches = (state or {}).get("FailedCount", 0)
        outcome = "PATCHED" if invocation in TERMINAL_OK and healthy and not failed_patches else "FAILED"
        counts["patched" if outcome == "PATCHED" else "failed"] += 1
        if not healthy:
            counts["unhealthy"] += 1
        record.update({
            "outcome": {"S": outcome},
            "invocationStatus": {"S": invocation or "Unknown"}, "commandId": command.get("commandId", {"S": ""}),
            "healthy": {"BOOL": healthy}, "missingPatches": {"N": str(missing)},
            "failedPatches": {"N": str(failed_patches)},
            "pendingReboot": {"N": str((state or {}).get("InstalledPendingRebootCount", 0))},
            "finishedAt": {"N": str(common.now())},
        })
    items = list(groups.values())
    common.put_items(items)
    release_leases(run_id, list(results))
    return {"batch": batch, **counts}


def release_leases(run_id, instances):
    """Each lease deleted if this run still holds it: one transaction, else one by one."""
    deletes = [{"Delete": {"TableName": common.TABLE, "Key": {"pk": {"S": f"LEASE#{a}#{r}#{i}"}, "sk": {"S": "LEASE"}},
                           "ConditionExpression": "runId = :run",
                           "ExpressionAttributeValues": {":run": {"S": run_id}}}} for (a, r, i) in instances]
    for start in range(0, len(deletes), 100):
        chunk = deletes[start:start + 100]
        try:
            common.dynamodb.transact_write_items(TransactItems=chunk)
        except common.dynamodb.exceptions.TransactionCanceledException:
            for delete in chunk:
                try:
                    common.dynamodb.delete_item(**delete["Delete"])
                except common.dynamodb.exceptions.ConditionalCheckFailedException:
                    pass
