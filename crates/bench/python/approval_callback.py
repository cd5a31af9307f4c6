"""ApprovalCallback: the signing key and a Step Functions client at cold start; then, for the
emailed link opened (a GET), the signature checked, the approval read (consistent GetItem) and
the confirmation page rendered, whose form POSTs the decision."""

import html
import json
from urllib.parse import parse_qs

import boto3

import common

KEYS = common.signing_keys()
sfn = boto3.client("stepfunctions", config=common.CONFIG)
HEADERS = {"content-type": "text/html; charset=utf-8", "cache-control": "no-store, max-age=0", "pragma": "no-cache",
           "x-frame-options": "DENY", "referrer-policy": "no-referrer", "x-content-type-options": "nosniff",
           "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                                      "frame-ancestors 'none'; base-uri 'none'"}


def page(status, title, body):
    return {"statusCode": status, "headers": HEADERS, "multiValueHeaders": {},
            "body": f"<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                    f"<meta name=\"robots\" content=\"noindex, nofollow\">\n<title>{html.escape(title)} · ec2patch</title>\n"
                    f"</head>\n<body>\n<main>\n<h1>{html.escape(title)}</h1>\n{body}\n</main>\n</body>\n</html>\n",
            "isBase64Encoded": False}


def handler(event, context):
    method = event["requestContext"]["http"]["method"]
    query = parse_qs(event.get("rawQueryString") or "", strict_parsing=False)
    try:
        params = {k: v for k, [v] in query.items()}
        approval_id, action, expires, sig = params["id"], params["action"], int(params["exp"]), params["sig"]
    except (KeyError, ValueError):
        return page(400, "Invalid link", "<p>This link is not valid.</p>")
    if action not in ("approve", "reject") or not common.verify(KEYS, approval_id, action, expires, sig):
        return page(400, "Invalid link", "<p>This link is not valid.</p>")
    if expires <= common.now():
        return page(410, "Link expired", "<p>This link has expired.</p>")
    item = common.dynamodb.get_item(TableName=common.TABLE, ConsistentRead=True, Key={
        "pk": {"S": f"APPROVAL#{approval_id}"}, "sk": {"S": "APPROVAL"}}).get("Item")
    if not item:
        return page(404, "Unknown approval", "<p>No such approval.</p>")
    details = json.loads(item["details"]["S"])
    if details["linkExpiresAt"] != expires:
        return page(400, "Invalid link", "<p>This link is not valid.</p>")
    if method != "GET" or item["status"]["S"] != "pending":
        return page(409, "Already decided", "<p>This wave was already decided.</p>")
    verb = "Approve" if action == "approve" else "Reject"
    form = "".join(f'<input type="hidden" name="{k}" value="{html.escape(str(v))}">'
                   for k, v in (("id", approval_id), ("action", action), ("exp", expires), ("sig", sig)))
    body = (f"<p>Run {html.escape(details['runId'])}, wave {html.escape(details['waveName'])}: "
            f"{details['patchable']} instances in {details['accountsTotal']} accounts "
            f"({html.escape(', '.join(details['regions']))}).</p>\n"
            f"<form method=\"post\" action=\"callback\">{form}<button type=\"submit\">{verb}</button></form>")
    return page(200, f"{verb} wave {details['waveName']}?", body)
