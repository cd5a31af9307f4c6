"""PreEC2Inventory: every account x region target of the wave, side by side (16 at a time, as
the Rust handler's inventory concurrency): the spoke's role assumed once per account with the
read-only session policy, its running instances with the run's tags, which of them SSM manages
and their patch state; each target's records in one BatchWriteItem; then the wave's manifest,
one object per batch of targets, and the wave record."""

import threading
from concurrent.futures import ThreadPoolExecutor

import boto3

import common

READ_ONLY = {"Version": "2012-10-17", "Statement": [{
    "Sid": "ReadOnlyStep", "Effect": "Allow",
    "Action": ["ec2:DescribeInstances", "ec2:DescribeInstanceStatus", "ssm:DescribeInstanceInformation",
               "ssm:DescribeInstancePatchStates", "ssm:ListCommands", "ssm:ListCommandInvocations"],
    "Resource": "*"}]}


def handler(event, context):
    started_at = common.now()
    run_id, wave_index = event["runId"], event["waveIndex"]
    plan = common.load_plan(run_id)
    wave = common.wave_of(plan, wave_index)
    filters = plan["tagFilters"]
    credentials, locks, guard = {}, {}, threading.Lock()

    def session(account, region):
        # One AssumeRole per account, whichever of its targets comes first.
        with guard:
            account_lock = locks.setdefault(account, threading.Lock())
        with account_lock:
            if account not in credentials:
                credentials[account] = common.spoke_session(account, region, run_id, READ_ONLY).get_credentials()
            c = credentials[account]
        return boto3.session.Session(aws_access_key_id=c.access_key, aws_secret_access_key=c.secret_key,
                                     aws_session_token=c.token, region_name=region)

    def target(account_region):
        account, region = account_region
        try:
            instances = discover(session(account, region), filters)
            failure = None
        except Exception as error:  # recorded with its reason; the other targets complete
            instances, failure = [], {"account": account, "region": region,
                                      "errorType": type(error).__name__, "message": str(error)}
        records = target_records(run_id, wave_index, account, region, instances, failure)
        return {"account": account, "region": region, "failure": failure, "instances": instances,
                "recordParts": common.parts_for(len(instances))}, records

    targets = [(a, r) for a in wave["accounts"] for r in wave["regions"]]
    with ThreadPoolExecutor(max_workers=max(1, min(common.CONCURRENCY, len(targets)))) as pool:
        inventoried = list(pool.map(target, targets))
    # The wave's records packed across targets, 25 to a BatchWriteItem, as the handler does.
    records = [item for _, items in inventoried for item in items]
    chunks = [records[i:i + 25] for i in range(0, len(records), 25)]
    with ThreadPoolExecutor(max_workers=max(1, min(common.CONCURRENCY, len(chunks) or 1))) as pool:
        list(pool.map(common.put_items, chunks))
    manifest_targets = sorted((t for t, _ in inventoried), key=lambda t: (t["account"], t["region"]))
    manifest = {"runId": run_id, "waveIndex": wave_index, "waveName": wave["name"], "tagFilters": filters,
                "targets": manifest_targets}
    manifest_ref = common.put_json(common.manifest_key(run_id, wave_index), manifest)
    patchable = [dict(t, instances=[i for i in t["instances"] if i["ssm"]["state"] == "online"])
                 for t in manifest_targets if not t["failure"]]
    patchable = [t for t in patchable if t["instances"]]
    batches = [patchable[i:i + common.TARGETS_PER_BATCH] for i in range(0, len(patchable), common.TARGETS_PER_BATCH)]
    with ThreadPoolExecutor(max_workers=max(1, min(common.CONCURRENCY, len(batches)))) as pool:
        list(pool.map(lambda b: common.put_json(common.batch_key(run_id, wave_index, b[0]), {
            "runId": run_id, "waveIndex": wave_index, "batch": b[0], "targets": b[1]}), enumerate(batches)))
    instances = [i for t in manifest_targets for i in t["instances"]]
    failures = [t["failure"] for t in manifest_targets if t["failure"]]
    summary = {
        "runId": run_id, "waveIndex": wave_index, "waveName": wave["name"], "targets": len(manifest_targets),
        "targetsFailed": len(failures), "instances": len(instances),
        "patchable": sum(1 for i in instances if i["ssm"]["state"] == "online"),
        "offline": sum(1 for i in instances if i["ssm"]["state"] == "offline"),
        "unmanaged": sum(1 for i in instances if i["ssm"]["state"] == "notManaged"),
        "failures": failures[:20], "failuresOmitted": max(0, len(failures) - 20), "manifest": manifest_ref,
        "batches": len(batches), "batchIndexes": list(range(len(batches))),
    }
    n = lambda v: {"N": str(v)}
    common.dynamodb.put_item(TableName=common.TABLE, Item={
        "pk": {"S": common.run_pk(run_id)}, "sk": {"S": f"WAVE#{wave_index:03}"}, "waveName": {"S": wave["name"]},
        "status": {"S": "INVENTORIED"}, "targets": n(summary["targets"]), "targetsFailed": n(len(failures)),
        "instances": n(summary["instances"]), "patchable": n(summary["patchable"]),
        "offline": n(summary["offline"]), "unmanaged": n(summary["unmanaged"]),
        "manifestKey": {"S": manifest_ref["key"]}, "startedAt": n(started_at), "batchFailures": {"M": {}},
        "expiresAt": common.expires_at(),
    })
    print(f"wave inventoried run_id={run_id} wave={wave_index} targets={summary['targets']} "
          f"instances={summary['instances']} patchable={summary['patchable']}")
    return summary


def discover(session, filters):
    ec2, ssm = session.client("ec2", config=common.CONFIG), session.client("ssm", config=common.CONFIG)
    ec2_filters = [{"Name": "instance-state-name", "Values": ["running"]}]
    ec2_filters += [{"Name": f"tag:{f['key']}", "Values": f["values"]} for f in filters]
    instances = []
    for page in ec2.get_paginator("describe_instances").paginate(Filters=ec2_filters):
        for instance in (i for r in page["Reservations"] for i in r["Instances"]):
            tags = {t["Key"]: t["Value"] for t in instance.get("Tags", [])}
            if not all(tags.get(f["key"]) in f["values"] for f in filters):
                continue
            instances.append({
                "instanceId": instance["InstanceId"], "name": tags.get("Name"),
                "platform": instance.get("PlatformDetails", "Linux/UNIX"), "instanceType": instance.get("InstanceType"),
                "availabilityZone": instance.get("Placement", {}).get("AvailabilityZone"),
                "ssm": {"state": "notManaged"}, "patchState": None,
            })
    ids = [i["instanceId"] for i in instances]
    ping = {}
    for start in range(0, len(ids), 50):
        for page in ssm.get_paginator("describe_instance_information").paginate(
                Filters=[{"Key": "InstanceIds", "Values": ids[start:start + 50]}]):
            for info in page["InstanceInformationList"]:
                ping[info["InstanceId"]] = info.get("PingStatus", "Unknown")
    for instance in instances:
        status = ping.get(instance["instanceId"])
        instance["ssm"] = ({"state": "online"} if status == "Online" else
                           {"state": "notManaged"} if status is None else {"state": "offline", "pingStatus": status})
    online = [i["instanceId"] for i in instances if i["ssm"]["state"] == "online"]
    states = {}
    for start in range(0, len(online), 50):
        for page in ssm.get_paginator("describe_instance_patch_states").paginate(InstanceIds=online[start:start + 50]):
            for state in page["InstancePatchStates"]:
                states[state["InstanceId"]] = {
                    "missing": state.get("MissingCount", 0), "failed": state.get("FailedCount", 0),
                    "installed": state.get("InstalledCount", 0),
                    "installedPendingReboot": state.get("InstalledPendingRebootCount", 0)}
    for instance in instances:
        instance["patchState"] = states.get(instance["instanceId"])
    return sorted(instances, key=lambda i: i["instanceId"])


def target_records(run_id, wave_index, account, region, instances, failure):
    s, n, pk, expires = (lambda v: {"S": v}), (lambda v: {"N": str(v)}), common.run_pk(run_id), common.expires_at()
    online = [i for i in instances if i["ssm"]["state"] == "online"]
    target = {"pk": s(pk), "sk": s(f"TARGET#{wave_index:03}#{account}#{region}"), "wave": n(wave_index),
              "account": s(account), "region": s(region), "instances": n(len(instances)),
              "patchable": n(len(online)), "expiresAt": expires}
    if failure:
        target.update(status=s("FAILED"), errorType=s(failure["errorType"]), error=s(failure["message"]))
    else:
        target["status"] = s("INVENTORIED")
    items = [target]
    parts = common.parts_for(len(instances))
    groups = {}
    for instance in instances:
        ssm = instance["ssm"]
        record = {"platform": s(instance["platform"]),
                  "ssm": s({"online": "Online", "notManaged": "NotManaged"}.get(ssm["state"], ssm.get("pingStatus", "")))}
        if instance["name"]:
            record["name"] = s(instance["name"])
        if instance["patchState"]:
            state = instance["patchState"]
            record.update(missingBefore=n(state["missing"]), failedBefore=n(state["failed"]),
                          installedBefore=n(state["installed"]))
        if ssm["state"] == "online":
            record["outcome"] = s("PENDING")
        else:
            record.update(outcome=s("SKIPPED"), reason=s("SsmNotManaged" if ssm["state"] == "notManaged" else "SsmOffline"))
        sk = common.group_sk(wave_index, account, region, parts, instance["instanceId"])
        group = groups.setdefault(sk, {"pk": s(pk), "sk": s(sk), "wave": n(wave_index), "account": s(account),
                                       "region": s(region), "part": n(int(sk.rsplit("#", 1)[1])),
                                       "records": {"M": {}}, "expiresAt": expires})
        group["records"]["M"][instance["instanceId"]] = {"M": record}
    items.extend(groups.values())
    return items
