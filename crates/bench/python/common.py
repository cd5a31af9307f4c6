"""What every ec2patch function builds at cold start, as the Rust `Hub::from_env` does: the hub
configuration from the environment and S3 + DynamoDB clients (adaptive retries, path-style S3 for
a custom endpoint). The endpoint and credentials come from the standard AWS_* variables, the
trusted certificates from AWS_CA_BUNDLE.

Plus what several functions share, as the Rust side's ec2patch-core does: the run store's keys
and writes, spoke sessions (AssumeRole), the run lock's renewal and the approval links' HMAC."""

import base64
import hashlib
import hmac
import json
import os
import time
import uuid

import boto3
from botocore.config import Config

TABLE = os.environ["EC2PATCH_TABLE"]
BUCKET = os.environ["EC2PATCH_BUCKET"]
EXTERNAL_ID = os.environ.get("EC2PATCH_EXTERNAL_ID") or None
ROLE_NAME = os.environ.get("EC2PATCH_SPOKE_ROLE_NAME", "PatchExecRole")
CONCURRENCY = int(os.environ.get("EC2PATCH_INVENTORY_CONCURRENCY", "16"))
TARGETS_PER_BATCH = int(os.environ.get("EC2PATCH_TARGETS_PER_BATCH", "10"))
COMMAND_TIMEOUT_SECONDS = int(os.environ.get("EC2PATCH_COMMAND_TIMEOUT_SECONDS", "7200"))
RUN_LOCK_MARGIN_SECONDS = int(os.environ.get("EC2PATCH_RUN_LOCK_MARGIN_SECONDS", "900"))
APPROVAL_TIMEOUT_SECONDS = int(os.environ.get("EC2PATCH_APPROVAL_TIMEOUT_SECONDS", "14400"))
RECORD_TTL_DAYS = int(os.environ.get("EC2PATCH_RECORD_TTL_DAYS", "90"))
CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 5}, s3={"addressing_style": "path"})

s3 = boto3.client("s3", config=CONFIG)
dynamodb = boto3.client("dynamodb", config=CONFIG)


class InvalidInput(Exception):
    pass


class NotFound(Exception):
    pass


class DuplicateRun(Exception):
    pass


def now():
    return int(time.time())


def iso(epoch):
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))


def expires_at():
    return {"N": str(now() + RECORD_TTL_DAYS * 86_400)}


def run_pk(run_id):
    return f"RUN#{run_id}"


def plan_key(run_id):
    return f"runs/{run_id}/plan.json"


def manifest_key(run_id, wave_index):
    return f"runs/{run_id}/waves/{wave_index:03}/manifest.json"


def batch_key(run_id, wave_index, batch):
    return f"runs/{run_id}/waves/{wave_index:03}/batches/{batch}.json"


# Instance records kept in groups, one per target (per part of PART_SIZE instances), as the
# Rust handlers keep them (ec2patch_core::instance_records).
PART_SIZE = 200


def parts_for(instances):
    return max(1, -(-instances // PART_SIZE))


def fnv1a(text):
    value = 0xcbf29ce484222325
    for byte in text.encode():
        value = ((value ^ byte) * 0x100000001b3) % (1 << 64)
    return value


def group_sk(wave_index, account, region, parts, instance_id):
    return f"INSTANCES#{wave_index:03}#{account}#{region}#{fnv1a(instance_id) % max(1, parts):03}"


def command_prefix(wave_index, batch):
    return f"COMMAND#{wave_index:03}#{batch:05}#"


def get_json(key):
    try:
        body = s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()
    except s3.exceptions.NoSuchKey:
        raise NotFound(f"s3://{BUCKET}/{key}")
    return json.loads(body)


def put_json(key, value):
    s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(value, separators=(",", ":")),
                  ContentType="application/json")
    return {"bucket": BUCKET, "key": key}


def load_plan(run_id):
    return get_json(plan_key(run_id))


def wave_of(plan, wave_index):
    if wave_index >= len(plan["waves"]):
        raise InvalidInput(f"run {plan['runId']} has {len(plan['waves'])} waves, got index {wave_index}")
    return plan["waves"][wave_index]


def put_items(items):
    """BatchWriteItem, 25 to a call, re-sending what DynamoDB leaves unprocessed."""
    for start in range(0, len(items), 25):
        pending = {TABLE: [{"PutRequest": {"Item": item}} for item in items[start:start + 25]]}
        while pending:
            pending = dynamodb.batch_write_item(RequestItems=pending).get("UnprocessedItems") or None


def get_items(keys):
    """BatchGetItem of the (pk, sk) keys, 100 to a strongly consistent call, re-asking for what
    DynamoDB leaves unprocessed; keys without an item are left out."""
    items = []
    for start in range(0, len(keys), 100):
        chunk = [{"pk": {"S": pk}, "sk": {"S": sk}} for pk, sk in keys[start:start + 100]]
        pending = {TABLE: {"Keys": chunk, "ConsistentRead": True}}
        while pending:
            answer = dynamodb.batch_get_item(RequestItems=pending)
            items.extend(answer["Responses"].get(TABLE, []))
            pending = answer.get("UnprocessedKeys") or None
    return items


def query_prefix(pk, prefix):
    items = []
    for page in dynamodb.get_paginator("query").paginate(
        TableName=TABLE, KeyConditionExpression="pk = :pk AND begins_with(sk, :prefix)",
        ExpressionAttributeValues={":pk": {"S": pk}, ":prefix": {"S": prefix}}, ConsistentRead=True,
    ):
        items.extend(page["Items"])
    return items


def renew_run_lock(run_id, lease_seconds):
    """The run must still hold its lock: renewed with a conditional put (Rust: run_lock::renew_for_run)."""
    lock = load_plan(run_id)["runLock"]
    at = now()
    try:
        dynamodb.put_item(
            TableName=TABLE,
            Item={"pk": {"S": lock["pk"]}, "sk": {"S": lock["sk"]}, "runId": {"S": run_id},
                  "status": {"S": "HELD"}, "waves": {"L": [{"S": w} for w in lock["waves"]]},
                  "resumes": {"L": [{"S": r} for r in lock["resumes"]]}, "renewedAt": {"N": str(at)},
                  "leaseExpiresAt": {"N": str(at + lease_seconds)}, "leaseUntil": {"S": iso(at + lease_seconds)},
                  "expiresAt": {"N": lock["expiresAt"]}},
            ConditionExpression="runId = :run AND #status = :held",
            ExpressionAttributeNames={"#status": "status"},
            ExpressionAttributeValues={":run": {"S": run_id}, ":held": {"S": "HELD"}},
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    except dynamodb.exceptions.ConditionalCheckFailedException:
        raise DuplicateRun(f"run {run_id} no longer holds its run lock")
    return lock


def spoke_session(account, region, run_id, policy=None):
    """A session acting as the spoke's role (Rust: SpokeSessions), ExternalId and all."""
    sts = boto3.client("sts", config=CONFIG)
    args = {"RoleArn": f"arn:aws:iam::{account}:role/{ROLE_NAME}", "RoleSessionName": f"ec2patch-{run_id}"[:64],
            "DurationSeconds": 3600}
    if policy:
        args["Policy"] = json.dumps(policy, separators=(",", ":"))
    if EXTERNAL_ID:
        args["ExternalId"] = EXTERNAL_ID
    credentials = sts.assume_role(**args)["Credentials"]
    return boto3.session.Session(
        aws_access_key_id=credentials["AccessKeyId"], aws_secret_access_key=credentials["SecretAccessKey"],
        aws_session_token=credentials["SessionToken"], region_name=region,
    )


def metric(wave, values):
    """A CloudWatch embedded-metric-format line (Rust: ec2patch_core::metrics::emit)."""
    record = {"_aws": {"Timestamp": now() * 1000, "CloudWatchMetrics": [{
        "Namespace": "ec2patch", "Dimensions": [["Wave"]] if wave else [[]],
        "Metrics": [{"Name": name, "Unit": "Count"} for name in values]}]}}
    if wave:
        record["Wave"] = wave
    record.update(values)
    print(json.dumps(record))


def signing_keys():
    """The approval-link keys, read once per cold start (Rust: Hub::load_signing_key)."""
    ssm = boto3.client("ssm", config=CONFIG)
    name = os.environ["EC2PATCH_HMAC_KEY_PARAMETER"]
    value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    return [key.strip().encode() for key in value.split(",")]


def sign(key, approval_id, action, expires):
    mac = hmac.new(key, f"ec2patch-approval-v1\n{approval_id}\n{action}\n{expires}".encode(), hashlib.sha256)
    return base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode()


def verify(keys, approval_id, action, expires, signature):
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(sign(key, approval_id, action, expires), signature)
    return matched


def link(base_url, key, approval_id, action, expires):
    return (f"{base_url.rstrip('/')}/callback?id={approval_id}&action={action}&exp={expires}"
            f"&sig={sign(key, approval_id, action, expires)}")


def new_id():
    return uuid.uuid4().hex
