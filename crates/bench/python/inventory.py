"""PreEC2Inventory's first call: read the plan; the wave index is out of range."""

import common


def handler(event, context):
    plan = common.load_plan(event["runId"])
    if event["waveIndex"] >= len(plan["waves"]):
        raise common.InvalidInput(f"run {plan['runId']} has {len(plan['waves'])} waves")
    return {}
