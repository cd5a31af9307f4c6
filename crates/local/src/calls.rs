//! What an AWS call is, read from its HTTP request: service, operation and the account it acts
//! in. The router counts calls by it and fault rules match on it.

use hyper::Method;

/// The access key moto's interpreter signs its own service calls with.
const INTERPRETER_ACCESS_KEY: &str = "ak";

/// What the router knows about one AWS call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallInfo {
    pub service: String,
    pub operation: String,
    /// The account the call acts in: the caller's, or for `AssumeRole` the role's.
    pub account: Option<String>,
}

impl CallInfo {
    /// A Lambda `Invoke` of `function` (a name or an ARN): service `lambda`, operation
    /// `Invoke:<function name>`, in the hub account.
    pub fn lambda_invoke(function: &str, hub_account: &str) -> Self {
        Self {
            service: "lambda".to_owned(),
            operation: format!("Invoke:{}", short_name(function)),
            account: Some(hub_account.to_owned()),
        }
    }

    pub fn is_lambda_invoke(&self) -> bool {
        self.service == "lambda" && self.operation.starts_with("Invoke:")
    }

    /// The key calls are counted under: `service:Operation`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.service, self.operation)
    }
}

/// Service and operation from the SigV4 scope, `X-Amz-Target`, the query `Action`, or (for
/// REST services such as S3) the method and path. The account: the role's for `AssumeRole`,
/// the hub's for moto's interpreter, else `account_of_key` of the access key that signed.
pub fn describe(
    parts: &hyper::http::request::Parts,
    body: &[u8],
    hub_account: &str,
    account_of_key: impl Fn(&str) -> Option<String>,
) -> CallInfo {
    let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
    let scope: Vec<&str> = authorization
        .split("Credential=")
        .nth(1)
        .and_then(|rest| rest.split([',', ' ']).next())
        .map(|credential| credential.split('/').collect())
        .unwrap_or_default();
    let access_key = scope.first().copied().unwrap_or_default();
    let service = scope.get(3).copied().unwrap_or("unknown").to_owned();
    let form: Vec<(String, String)> = if parts
        .headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"))
    {
        form_urlencoded::parse(body).into_owned().collect()
    } else {
        Vec::new()
    };
    let form_value = |key: &str| form.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone());
    let operation = if let Some(target) = parts.headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        target.rsplit('.').next().unwrap_or(target).to_owned()
    } else if let Some(action) = form_value("Action") {
        action
    } else {
        rest_operation(&service, &parts.method, parts.uri.path())
    };
    let account = if operation == "AssumeRole" {
        form_value("RoleArn").and_then(|arn| arn.split(':').nth(4).map(str::to_owned))
    } else if access_key == INTERPRETER_ACCESS_KEY {
        Some(hub_account.to_owned())
    } else {
        account_of_key(access_key)
    };
    CallInfo { service, operation, account }
}

fn rest_operation(service: &str, method: &Method, path: &str) -> String {
    let segments = path.trim_matches('/').split('/').filter(|s| !s.is_empty()).count();
    match (service, method.as_str(), segments) {
        ("s3", "PUT", 1) => "CreateBucket".to_owned(),
        ("s3", "PUT", _) => "PutObject".to_owned(),
        ("s3", "GET", 0) => "ListBuckets".to_owned(),
        ("s3", "GET", 1) => "ListObjects".to_owned(),
        ("s3", "GET", _) => "GetObject".to_owned(),
        ("s3", "HEAD", _) => "HeadObject".to_owned(),
        ("s3", "DELETE", _) => "DeleteObject".to_owned(),
        // bedrock-agent-runtime: POST /agents/{id}/agentAliases/{alias}/sessions/{session}/text
        ("bedrock", "POST", _) if path.starts_with("/agents/") && path.ends_with("/text") => "InvokeAgent".to_owned(),
        (_, method, _) => format!("{method} {path}"),
    }
}

/// `/2015-03-31/functions/{name}/invocations`: name may be a bare name, an ARN or ARN:qualifier,
/// URL-encoded.
pub fn lambda_invoke_target(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/2015-03-31/functions/")?;
    let name = rest.strip_suffix("/invocations")?;
    Some(percent_encoding::percent_decode_str(name).decode_utf8_lossy().into_owned())
}

/// The function name inside an ARN (`arn:aws:lambda:r:a:function:NAME[:qualifier]`) or itself.
pub fn short_name(function: &str) -> &str {
    if function.starts_with("arn:") { function.split(':').nth(6).unwrap_or(function) } else { function }
}

/// The items a DynamoDB batch or transaction call carries (`None` for any other call): every
/// request of every table of a BatchWriteItem, every key of a BatchGetItem, every action of a
/// TransactWriteItems.
pub fn dynamodb_items(call: &CallInfo, body: &[u8]) -> Option<u64> {
    if call.service != "dynamodb" {
        return None;
    }
    let body: serde_json::Value = serde_json::from_slice(body).ok()?;
    let per_table = |field: &str, each: &dyn Fn(&serde_json::Value) -> usize| -> u64 {
        body.get(field).and_then(|v| v.as_object()).map_or(0, |tables| tables.values().map(each).sum::<usize>() as u64)
    };
    match call.operation.as_str() {
        "BatchWriteItem" => Some(per_table("RequestItems", &|t| t.as_array().map_or(0, Vec::len))),
        "BatchGetItem" => {
            Some(per_table("RequestItems", &|t| t.get("Keys").and_then(|k| k.as_array()).map_or(0, Vec::len)))
        }
        "TransactWriteItems" => Some(body.get("TransactItems").and_then(|v| v.as_array()).map_or(0, Vec::len) as u64),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_and_transaction_calls_count_their_items() {
        let call = |operation: &str| CallInfo {
            service: "dynamodb".to_owned(),
            operation: operation.to_owned(),
            account: None,
        };
        let write = br#"{"RequestItems":{"runs":[{"PutRequest":{}},{"PutRequest":{}},{"DeleteRequest":{}}]}}"#;
        assert_eq!(dynamodb_items(&call("BatchWriteItem"), write), Some(3));
        let get = br#"{"RequestItems":{"runs":{"Keys":[{},{}],"ConsistentRead":true}}}"#;
        assert_eq!(dynamodb_items(&call("BatchGetItem"), get), Some(2));
        let transaction = br#"{"TransactItems":[{"Put":{}},{"Delete":{}},{"Put":{}},{"Put":{}}]}"#;
        assert_eq!(dynamodb_items(&call("TransactWriteItems"), transaction), Some(4));
        assert_eq!(dynamodb_items(&call("PutItem"), br#"{"Item":{}}"#), None);
    }

    fn parts(request: hyper::Request<()>) -> hyper::http::request::Parts {
        request.into_parts().0
    }

    #[test]
    fn lambda_invokes_are_named_by_function() {
        let target = lambda_invoke_target(
            "/2015-03-31/functions/arn%3Aaws%3Alambda%3Aus-east-1%3A1%3Afunction%3Aec2patch-PlanRun/invocations",
        );
        let call = CallInfo::lambda_invoke(&target.unwrap(), "111111111111");
        assert_eq!(call.key(), "lambda:Invoke:ec2patch-PlanRun");
        assert!(call.is_lambda_invoke());
        assert_eq!(lambda_invoke_target("/2015-03-31/functions/x"), None);
    }

    #[test]
    fn calls_are_described_from_target_action_or_rest_path() {
        let signed = |key: &str, service: &str| {
            format!("AWS4-HMAC-SHA256 Credential={key}/20261129/us-east-1/{service}/aws4_request, SignedHeaders=host")
        };
        let json = parts(
            hyper::Request::post("/")
                .header("authorization", signed("AKIAHUB", "dynamodb"))
                .header("x-amz-target", "DynamoDB_20120810.PutItem")
                .body(())
                .unwrap(),
        );
        let call = describe(&json, b"", "111111111111", |key| (key == "AKIAHUB").then(|| "111111111111".to_owned()));
        assert_eq!((call.key(), call.account.as_deref()), ("dynamodb:PutItem".to_owned(), Some("111111111111")));

        let assume = parts(
            hyper::Request::post("/")
                .header("authorization", signed("AKIAHUB", "sts"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(())
                .unwrap(),
        );
        let form = b"Action=AssumeRole&RoleArn=arn%3Aaws%3Aiam%3A%3A222222222222%3Arole%2FPatchExecRole";
        let call = describe(&assume, form, "111111111111", |_| None);
        assert_eq!((call.key(), call.account.as_deref()), ("sts:AssumeRole".to_owned(), Some("222222222222")));

        let s3 = parts(
            hyper::Request::get("/bucket/runs/r/plan.json")
                .header("authorization", signed("ak", "s3"))
                .body(())
                .unwrap(),
        );
        let call = describe(&s3, b"", "111111111111", |_| None);
        assert_eq!((call.key(), call.account.as_deref()), ("s3:GetObject".to_owned(), Some("111111111111")));
    }
}
