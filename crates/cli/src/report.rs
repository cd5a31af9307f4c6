//! `ec2patch report`: the run report a finished (or stopped) run wrote to S3.

use std::path::Path;

use anyhow::Context;

use ec2patch_core::report::RunReport;
pub use ec2patch_core::report::{html_key, json_key};
use ec2patch_core::store::ObjectRef;

use crate::connect::Connection;

pub async fn load(connection: &Connection, run_id: &str) -> anyhow::Result<RunReport> {
    connection
        .hub
        .store
        .get_json(&json_key(run_id))
        .await
        .with_context(|| format!("run {run_id} has no report yet (still running, or never started?)"))
}

/// Copies the HTML report to `path`.
pub async fn save_html(connection: &Connection, run_id: &str, path: &Path) -> anyhow::Result<ObjectRef> {
    let key = html_key(run_id);
    let bucket = connection.hub.store.bucket();
    let s3 = aws_sdk_s3::Client::from_conf(ec2patch_core::hub::s3_config(&connection.hub.sdk));
    let object = s3
        .get_object()
        .bucket(bucket)
        .key(&key)
        .send()
        .await
        .map_err(crate::connect::aws_error)
        .with_context(|| format!("s3://{bucket}/{key}"))?;
    let bytes = object.body.collect().await.with_context(|| format!("reading s3://{bucket}/{key}"))?.into_bytes();
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(ObjectRef { bucket: bucket.to_owned(), key })
}
