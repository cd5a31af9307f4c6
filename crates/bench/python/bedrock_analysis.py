"""AnalyzeWithBedrock (prePatch): a Bedrock agent client at cold start; then the plan and, with
no agent configured, the rules over the wave's inventory."""

import boto3

import common

bedrock = boto3.client("bedrock-agent-runtime", config=common.CONFIG)


def handler(event, context):
    plan = common.load_plan(event["runId"])
    wave = common.wave_of(plan, event["waveIndex"])
    inventory = event["inventory"]
    reasons = []
    if inventory["targets"] and inventory["targetsFailed"] / inventory["targets"] > 0.2:
        reasons.append(f"{inventory['targetsFailed']} of {inventory['targets']} targets could not be inventoried")
    if inventory["instances"] and inventory["offline"] / inventory["instances"] > 0.2:
        reasons.append(f"{inventory['offline']} of {inventory['instances']} instances have the SSM agent offline")
    if inventory["instances"] and not inventory["patchable"]:
        reasons.append("no instance is patchable")
    skipped = inventory["instances"] - inventory["patchable"]
    verb = "scan" if plan["dryRun"] else "install patches on"
    summary = (f'Wave "{wave["name"]}" (wave {event["waveIndex"] + 1}) will {verb} {inventory["patchable"]} patchable '
               f"instances; {skipped} of {inventory['instances']} instances skipped ({inventory['unmanaged']} not "
               f"managed by SSM, {inventory['offline']} with the SSM agent offline); {inventory['targetsFailed']} of "
               f"{inventory['targets']} account/region targets could not be inventoried. "
               + ("Risks: " + "; ".join(reasons) + "." if reasons else "No risks found by the rules."))
    return {"source": "rules", "issuesDetected": bool(reasons), "summary": summary, "reasons": reasons,
            "agentError": None}
