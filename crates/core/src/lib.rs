//! Domain types and rules shared by every ec2patch function.
//!
//! - [`input`]: the run input (both seed shapes) and its validation into one [`plan::RunPlan`].
//! - [`config`]: the hub's configuration, read from the Lambda environment Terraform sets.
//! - [`error_budget`]: a wave stops sending once its failures exceed its budget.
//! - [`error`]: the one error enum, with stable `error_type` names the state machine retries and catches on.
//! - [`sessions`]: cross-account sessions into each spoke's `PatchExecRole`, cached per account
//!   and kept across a warm container's invocations.
//! - [`store`]: where run state lives (DynamoDB items, S3 objects) and how it is keyed.
//! - [`run_lock`]: one run per waves and scheduled time, with a lease; resume of stopped runs.
//! - [`instance_lease`]: one run per instance: a lease taken before a patch command is sent.
//! - [`change_freeze`]: a wave sends nothing while an SSM Change Calendar is CLOSED.
//! - [`wave_gate`]: a scheduled wave patches only after the wave it follows passed its latest run.
//! - [`snapshots`]: pre-patch snapshots: their tags, the instance record, the cleanup's index.
//! - [`asl`]: rendering the state machine template the way Terraform's `templatefile` does.

pub mod approval;
pub mod asl;
pub mod aws;
pub mod change_freeze;
pub mod config;
pub mod error;
pub mod error_budget;
pub mod hash;
pub mod hub;
pub mod input;
pub mod instance_lease;
pub mod instance_records;
pub mod metrics;
pub mod patching;
pub mod plan;
pub mod regions;
pub mod report;
pub mod run_lock;
pub mod sessions;
pub mod snapshots;
pub mod status;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-util")]
pub mod test_util;
pub mod time;
pub mod wave;
pub mod wave_gate;

pub use error::{Error, Result};
pub use hub::Hub;
pub use plan::{AccountId, Region, RunPlan, TagFilter, Target, Wave};
