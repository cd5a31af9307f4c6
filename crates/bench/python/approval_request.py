"""SendApprovalRequest: the signing key and an SNS client at cold start; then the plan, the run
lock renewed for the approval window, the pending approval recorded (conditional put, and the
wave's pointer to it), and the email with signed Approve/Reject links published."""

import json
import os

import boto3

import common

KEYS = common.signing_keys()
sns = boto3.client("sns", config=common.CONFIG)
BASE_URL = os.environ["EC2PATCH_CALLBACK_BASE_URL"]


def handler(event, context):
    run_id, wave_index, inventory = event["runId"], event["waveIndex"], event["inventory"]
    plan = common.load_plan(run_id)
    wave = common.wave_of(plan, wave_index)
    topic = plan.get("snsTopicArn") or os.environ.get("EC2PATCH_SNS_TOPIC_ARN")
    if not topic:
        raise common.InvalidInput("no SNS topic")
    common.renew_run_lock(run_id, common.APPROVAL_TIMEOUT_SECONDS + common.RUN_LOCK_MARGIN_SECONDS)
    expires = common.now() + common.APPROVAL_TIMEOUT_SECONDS
    details = {
        "runId": run_id, "waveIndex": wave_index, "waveName": wave["name"], "dryRun": plan["dryRun"],
        "accounts": wave["accounts"][:50], "accountsTotal": len(wave["accounts"]), "regions": wave["regions"],
        **{k: inventory[k] for k in ("targets", "targetsFailed", "instances", "patchable", "offline", "unmanaged")},
        "analysis": event.get("analysis"), "manifest": inventory["manifest"], "linkExpiresAt": expires,
    }
    approval_id, at = common.new_id(), common.now()
    s, n = (lambda v: {"S": v}), (lambda v: {"N": str(v)})
    # The record, its entry in the pending index and the run's pointer, in one transaction.
    common.dynamodb.transact_write_items(TransactItems=[
        {"Put": {"TableName": common.TABLE, "ConditionExpression": "attribute_not_exists(pk)", "Item": {
            "pk": s(f"APPROVAL#{approval_id}"), "sk": s("APPROVAL"), "approvalId": s(approval_id),
            "runId": s(run_id), "waveIndex": n(wave_index), "status": s("pending"), "taskToken": s(event["taskToken"]),
            "details": s(json.dumps(details, separators=(",", ":"))), "requestedAt": n(at), "linkExpiresAt": n(expires),
            "expiresAt": common.expires_at(),
        }}},
        {"Put": {"TableName": common.TABLE, "Item": {
            "pk": s("APPROVALS#PENDING"), "sk": s(f"{expires:010}#{approval_id}"), "approvalId": s(approval_id),
            "expiresAt": common.expires_at(),
        }}},
        {"Put": {"TableName": common.TABLE, "Item": {
            "pk": s(common.run_pk(run_id)), "sk": s(f"APPROVAL#{wave_index:03}"), "approvalId": s(approval_id),
            "wave": n(wave_index), "requestedAt": n(at), "expiresAt": common.expires_at(),
        }}},
    ])
    approve = common.link(BASE_URL, KEYS[0], approval_id, "approve", expires)
    reject = common.link(BASE_URL, KEYS[0], approval_id, "reject", expires)
    skipped = details["instances"] - details["patchable"]
    message = "\n".join([
        f'ec2patch needs a decision on wave "{wave["name"]}" (wave {wave_index + 1}) of run {run_id}.', "",
        "What will be patched",
        f"  Accounts:  {details['accountsTotal']} ({', '.join(details['accounts'])})",
        f"  Regions:   {', '.join(details['regions'])}",
        f"  Instances: {details['patchable']} will run AWS-RunPatchBaseline (Install); {skipped} skipped "
        f"({details['unmanaged']} not managed by SSM, {details['offline']} with the SSM agent offline)", "",
        "Analysis", "  " + (details["analysis"] or "No analysis was run for this wave."), "",
        f"Approve: {approve}", "", f"Reject:  {reject}", "",
        "Each link opens a confirmation page; nothing is decided until you press a button there.",
        f"The links expire at {common.iso(expires)}; if nobody decides by then, the wave is not patched.",
        f"Manifest of every instance: s3://{inventory['manifest']['bucket']}/{inventory['manifest']['key']}",
    ])
    published = sns.publish(TopicArn=topic, Message=message,
                            Subject=f"[ec2patch] Approve wave {wave['name']} of run {run_id}: "
                                    f"{details['patchable']} instances")
    print(f"approval requested run_id={run_id} wave={wave_index} approval_id={approval_id}")
    common.metric(wave["name"], {"PendingApprovals": 1})
    return {"approvalId": approval_id, "linkExpiresAt": expires, "messageId": published["MessageId"]}
