"""SendSsmCommand's first calls: the plan, then the batch (which does not exist)."""

import common


def handler(event, context):
    plan = common.load_plan(event["runId"])
    key = f"runs/{plan['runId']}/waves/{event['waveIndex']:03}/batches/{event['batch']:05}.json"
    try:
        common.s3.get_object(Bucket=common.BUCKET, Key=key)
    except common.s3.exceptions.NoSuchKey:
        raise common.NotFound(f"s3://{common.BUCKET}/{key}")
    return {}
