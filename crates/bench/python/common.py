"""What every ec2patch function builds at cold start, as the Rust `Hub::from_env` does: the hub
configuration from the environment and S3 + DynamoDB clients (adaptive retries, path-style S3 for
a custom endpoint). The endpoint and credentials come from the standard AWS_* variables."""

import json
import os

import boto3
from botocore.config import Config

TABLE = os.environ["EC2PATCH_TABLE"]
BUCKET = os.environ["EC2PATCH_BUCKET"]
CONFIG = Config(retries={"mode": "adaptive", "max_attempts": 5}, s3={"addressing_style": "path"})

s3 = boto3.client("s3", config=CONFIG)
dynamodb = boto3.client("dynamodb", config=CONFIG)


class InvalidInput(Exception):
    pass


class NotFound(Exception):
    pass


def plan_key(run_id):
    return f"runs/{run_id}/plan.json"


def load_plan(run_id):
    body = s3.get_object(Bucket=BUCKET, Key=plan_key(run_id))["Body"].read()
    return json.loads(body)


def signing_key():
    """The approval-link key, read once per cold start (Rust: Hub::load_signing_key)."""
    ssm = boto3.client("ssm", config=CONFIG)
    name = os.environ["EC2PATCH_HMAC_KEY_PARAMETER"]
    return ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
