//! A small HTTP client over hyper, shared by the router (forwarding to moto) and the stack
//! (readiness checks, raw IAM calls).

use std::sync::OnceLock;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

pub type HttpClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> &'static HttpClient {
    static CLIENT: OnceLock<HttpClient> = OnceLock::new();
    CLIENT.get_or_init(|| Client::builder(TokioExecutor::new()).build_http())
}

pub async fn send(request: Request<Full<Bytes>>) -> anyhow::Result<Response<Bytes>> {
    let response = client().request(request).await?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok(Response::from_parts(parts, body))
}

pub async fn get_status(url: &str) -> anyhow::Result<u16> {
    let request = Request::get(url).body(Full::new(Bytes::new()))?;
    Ok(send(request).await?.status().as_u16())
}

/// A form-encoded AWS query-protocol call (IAM, STS) to moto, in the account named by moto's
/// `x-moto-account-id` header. Returns the XML body.
pub async fn query_call(
    endpoint: &str,
    account: &str,
    service: &str,
    params: &[(&str, &str)],
) -> anyhow::Result<String> {
    let body = form_urlencoded::Serializer::new(String::new()).extend_pairs(params).finish();
    let request = Request::post(endpoint)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-moto-account-id", account)
        .header(
            "authorization",
            format!("AWS4-HMAC-SHA256 Credential=AKIAEC2PATCHLOCAL/20260101/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0"),
        )
        .body(Full::new(Bytes::from(body)))?;
    let response = send(request).await?;
    let text = String::from_utf8_lossy(response.body()).into_owned();
    if !response.status().is_success() {
        anyhow::bail!("{service} {params:?} answered {}: {text}", response.status());
    }
    Ok(text)
}

/// The text of the first `<tag>...</tag>` in an XML document (enough for AWS query responses).
pub fn xml_text<'a>(xml: &'a str, tag: &str) -> Option<&'a str> {
    let open = format!("<{tag}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&format!("</{tag}>"))? + start;
    Some(&xml[start..end])
}
