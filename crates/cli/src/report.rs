//! `ec2patch report`: the run report a finished (or stopped) run wrote to S3.

use std::path::Path;

use anyhow::Context;

use ec2patch_core::report::RunReport;
pub use ec2patch_core::report::{csv_key, html_key, json_key};
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
    save(connection, html_key(run_id), path).await
}

/// Copies the CSV of every instance to `path`.
pub async fn save_csv(connection: &Connection, run_id: &str, path: &Path) -> anyhow::Result<ObjectRef> {
    save(connection, csv_key(run_id), path).await
}

async fn save(connection: &Connection, key: String, path: &Path) -> anyhow::Result<ObjectRef> {
    let bucket = connection.hub.store.bucket();
    let bytes = connection.hub.store.get_bytes(&key).await.with_context(|| format!("s3://{bucket}/{key}"))?;
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
    Ok(ObjectRef { bucket: bucket.to_owned(), key })
}
