//! How the CLI finds the hub: the standard AWS configuration (profile, region, credentials,
//! `AWS_ENDPOINT_URL`) plus the names Terraform gives the hub's resources.

use anyhow::Context;
use aws_config::{BehaviorVersion, Region, SdkConfig};

use ec2patch_core::Hub;
use ec2patch_core::config::HubConfig;

/// Where the hub is: flags, else the environment, else the names `terraform/modules/hub` uses.
#[derive(Debug, Clone, clap::Args)]
pub struct HubArgs {
    /// AWS region of the hub (else AWS_REGION / the profile's region).
    #[arg(long, global = true)]
    pub region: Option<String>,
    /// AWS profile to use (else AWS_PROFILE / default credentials).
    #[arg(long, global = true)]
    pub profile: Option<String>,
    /// The hub's `name_prefix` (Terraform variable).
    #[arg(long, global = true, env = "EC2PATCH_PREFIX", default_value = "ec2patch")]
    pub prefix: String,
    /// The orchestrator state machine (default: `<prefix>-orchestrator` in the hub account).
    #[arg(long, global = true, env = "EC2PATCH_STATE_MACHINE_ARN")]
    pub state_machine_arn: Option<String>,
    /// The run-state table (default: `<prefix>-runs`).
    #[arg(long, global = true, env = "EC2PATCH_TABLE")]
    pub table: Option<String>,
    /// The artifacts bucket (default: `<prefix>-artifacts-<account>-<region>`).
    #[arg(long, global = true, env = "EC2PATCH_BUCKET")]
    pub bucket: Option<String>,
}

/// A connection to the hub, as the caller's identity.
#[derive(Debug)]
pub struct Connection {
    pub hub: Hub,
    pub state_machine_arn: String,
    pub caller_arn: String,
}

impl Connection {
    pub async fn open(args: &HubArgs) -> anyhow::Result<Self> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(region) = &args.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(profile) = &args.profile {
            loader = loader.profile_name(profile);
        }
        Self::with_sdk(loader.load().await, args).await
    }

    /// Connects with a ready SDK configuration (the local demo's).
    pub async fn with_sdk(sdk: SdkConfig, args: &HubArgs) -> anyhow::Result<Self> {
        let region = sdk.region().map(ToString::to_string).context("no AWS region: pass --region or set AWS_REGION")?;
        let identity = aws_sdk_sts::Client::new(&sdk)
            .get_caller_identity()
            .send()
            .await
            .map_err(aws_error)
            .context("sts:GetCallerIdentity (are AWS credentials configured?)")?;
        let account = identity.account.context("GetCallerIdentity returned no account")?;
        let caller_arn = identity.arn.unwrap_or_else(|| format!("arn:aws:iam::{account}:unknown"));
        let prefix = &args.prefix;
        let table = args.table.clone().unwrap_or_else(|| format!("{prefix}-runs"));
        let bucket = args.bucket.clone().unwrap_or_else(|| format!("{prefix}-artifacts-{account}-{region}"));
        let state_machine_arn = args
            .state_machine_arn
            .clone()
            .unwrap_or_else(|| format!("arn:aws:states:{region}:{account}:stateMachine:{prefix}-orchestrator"));
        let config = HubConfig::from_lookup(|name| match name {
            "EC2PATCH_TABLE" => Some(table.clone()),
            "EC2PATCH_BUCKET" => Some(bucket.clone()),
            _ => None,
        })?;
        Ok(Self { hub: Hub::new(sdk, config), state_machine_arn, caller_arn })
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.hub.sdk)
    }

    /// An execution ARN from an ARN or a run id (the execution's name).
    pub fn execution_arn(&self, execution: &str) -> String {
        if execution.starts_with("arn:") {
            return execution.to_owned();
        }
        // arn:aws:states:<region>:<account>:stateMachine:<name> -> ...:execution:<name>:<run id>
        format!("{}:{execution}", self.state_machine_arn.replacen(":stateMachine:", ":execution:", 1))
    }
}

/// The run id of an execution: its name, the last part of the ARN.
pub fn run_id_of(execution_arn: &str) -> &str {
    execution_arn.rsplit(':').next().unwrap_or(execution_arn)
}

/// An SDK error with its whole chain (service code and message, not just "service error").
pub fn aws_error<E: std::error::Error>(error: E) -> anyhow::Error {
    anyhow::anyhow!("{}", aws_smithy_types::error::display::DisplayErrorContext(&error))
}
