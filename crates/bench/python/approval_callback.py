"""ApprovalCallback: the signing key and a Step Functions client at cold start; a link with a
bad signature is refused before any read."""

import boto3

import common

KEY = common.signing_key()
sfn = boto3.client("stepfunctions", config=common.CONFIG)


def handler(event, context):
    return {"statusCode": 400, "headers": {"content-type": "text/html; charset=utf-8"},
            "body": "<!doctype html><title>Invalid link</title><p>This link is not valid.</p>"}
