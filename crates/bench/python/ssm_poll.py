"""PollSsmCommand: the batch's command records; for those not yet seen finished, per account the
spoke's role assumed (read-only) and per command its invocations (ListCommandInvocations with
details); a command whose invocations all ended gets them recorded (UpdateItem), so later polls
and PostEC2Verify read them from DynamoDB."""

import json
from concurrent.futures import ThreadPoolExecutor

import common
from inventory import READ_ONLY

TERMINAL = {"Success", "Failed", "TimedOut", "Cancelled", "Undeliverable", "Terminated", "DeliveryTimedOut",
            "ExecutionTimedOut", "InvalidPlatform", "AccessDenied"}


def handler(event, context):
    run_id, wave_index, batch = event["runId"], event["waveIndex"], event["batch"]
    pk = common.run_pk(run_id)
    records = common.dynamodb.query(
        TableName=common.TABLE, KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": common.command_prefix(wave_index, batch)}},
    )["Items"]
    finished = [json.loads(r["finalInvocations"]["S"]) for r in records if "finalInvocations" in r]
    open_records = [r for r in records if "finalInvocations" not in r and "commandId" in r]
    by_account = {}
    for record in open_records:
        by_account.setdefault((record["account"]["S"], record["region"]["S"]), []).append(record)

    def poll(item):
        (account, region), commands = item
        ssm = common.spoke_session(account, region, run_id, READ_ONLY).client("ssm", config=common.CONFIG)
        seen, ended = [], []
        for record in commands:
            invocations = []
            for page in ssm.get_paginator("list_command_invocations").paginate(
                    CommandId=record["commandId"]["S"], Details=True):
                invocations += [{"instanceId": i["InstanceId"], "status": i["Status"],
                                 "statusDetails": i.get("StatusDetails"),
                                 "startedAt": i["CommandPlugins"][0]["ResponseStartDateTime"].timestamp()
                                 if i.get("CommandPlugins") and "ResponseStartDateTime" in i["CommandPlugins"][0] else None,
                                 "finishedAt": i["CommandPlugins"][0]["ResponseFinishDateTime"].timestamp()
                                 if i.get("CommandPlugins") and "ResponseFinishDateTime" in i["CommandPlugins"][0] else None}
                                for i in page["CommandInvocations"]]
            if invocations and all(i["status"] in TERMINAL for i in invocations):
                # Kept on the record, written back whole with the others at the end.
                ended.append(dict(record, finalInvocations={"S": json.dumps(invocations, separators=(",", ":"))}))
            seen.append(invocations)
        return seen, ended

    with ThreadPoolExecutor(max_workers=max(1, min(common.CONCURRENCY, len(by_account)))) as pool:
        ended = []
        for seen, ended_here in pool.map(poll, by_account.items()):
            finished += seen
            ended += ended_here
    if ended:
        common.put_items(ended)
    invocations = [i for command in finished for i in command]
    in_progress = sum(1 for i in invocations if i["status"] not in TERMINAL)
    succeeded = sum(1 for i in invocations if i["status"] == "Success")
    done = in_progress == 0
    return {"batch": batch, "done": done, "timedOut": False, "invocations": len(invocations),
            "inProgress": in_progress, "succeeded": succeeded, "failed": len(invocations) - in_progress - succeeded,
            "unreadable": 0, "attempt": event["attempt"] + 1, "nextPollSeconds": 120 if done else 60}
