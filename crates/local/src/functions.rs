//! Our Lambda functions, hosted in-process: the router hands Lambda `Invoke` requests here.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use ec2patch_core::{Error, Hub};
use lambda_runtime::Diagnostic;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::OnceCell;

pub type InvokeFuture = Pin<Box<dyn Future<Output = Result<Value, Diagnostic>> + Send>>;

/// Answers Lambda invocations by function name (the part after `function:` in an ARN).
pub trait FunctionHost: Send + Sync {
    /// `None` when no function has that name.
    fn invoke(&self, function: &str, payload: Value) -> Option<InvokeFuture>;
}

/// The Lambda function names the hub deploys, as `<name_prefix>-<Function>`.
pub const PLAN_RUN: &str = "PlanRun";
pub const PRE_EC2_INVENTORY: &str = "PreEC2Inventory";
pub const SEND_APPROVAL_REQUEST: &str = "SendApprovalRequest";
pub const APPROVAL_CALLBACK: &str = "ApprovalCallback";
pub const SEND_SSM_COMMAND: &str = "SendSsmCommand";
pub const POLL_SSM_COMMAND: &str = "PollSsmCommand";
pub const POST_EC2_VERIFY: &str = "PostEC2Verify";
pub const ANALYZE_WITH_BEDROCK: &str = "AnalyzeWithBedrock";
pub const CHECK_CHANGE_FREEZE: &str = "CheckChangeFreeze";
/// Scheduled (EventBridge), not a workflow step: approval metrics and reminders, and the
/// cleanup of expired pre-patch snapshots.
pub const APPROVAL_MONITOR: &str = "ApprovalMonitor";

/// One hub function: its Lambda name (after the prefix) and its cargo binary. The binary is
/// also its directory under `crates/functions/`, its crate's name after `ec2patch-`, and its
/// package's directory under `target/lambda/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FunctionSpec {
    pub name: &'static str,
    pub binary: &'static str,
}

impl FunctionSpec {
    /// The cargo package, e.g. `ec2patch-ssm-send`.
    pub fn crate_name(&self) -> String {
        format!("ec2patch-{}", self.binary)
    }
}

/// Every function the hub deploys, in the order of the seed's function table.
pub const ALL: &[FunctionSpec] = &[
    FunctionSpec { name: PLAN_RUN, binary: "plan" },
    FunctionSpec { name: PRE_EC2_INVENTORY, binary: "inventory" },
    FunctionSpec { name: SEND_APPROVAL_REQUEST, binary: "approval-request" },
    FunctionSpec { name: APPROVAL_CALLBACK, binary: "approval-callback" },
    FunctionSpec { name: SEND_SSM_COMMAND, binary: "ssm-send" },
    FunctionSpec { name: POLL_SSM_COMMAND, binary: "ssm-poll" },
    FunctionSpec { name: POST_EC2_VERIFY, binary: "verify" },
    FunctionSpec { name: ANALYZE_WITH_BEDROCK, binary: "bedrock-analysis" },
    FunctionSpec { name: CHECK_CHANGE_FREEZE, binary: "change-freeze" },
    FunctionSpec { name: APPROVAL_MONITOR, binary: "approval-monitor" },
];

/// The functions' cargo binaries, in [`ALL`]'s order.
pub fn binaries() -> impl Iterator<Item = &'static str> {
    ALL.iter().map(|f| f.binary)
}

/// Every ec2patch function, each with a [`Hub`] of its own kept across invocations, as one warm
/// Lambda container per function would (its clients, and its spoke sessions). The hubs are set
/// once the emulator is up and the hub's credentials exist; until then no function answers.
#[derive(Debug)]
pub struct LocalFunctions {
    prefix: String,
    hubs: OnceLock<HashMap<&'static str, Arc<Hub>>>,
    // Loaded on first use, as each function's main() loads them at cold start.
    approval_request: Arc<OnceCell<ec2patch_approval_request::Deps>>,
    approval_callback: Arc<OnceCell<ec2patch_approval_callback::Deps>>,
    approval_monitor: Arc<OnceCell<ec2patch_approval_monitor::Deps>>,
    analysis: Arc<OnceCell<ec2patch_bedrock_analysis::Deps>>,
}

impl LocalFunctions {
    pub fn new(name_prefix: &str) -> Self {
        Self {
            prefix: format!("{name_prefix}-"),
            hubs: OnceLock::new(),
            approval_request: Arc::new(OnceCell::new()),
            approval_callback: Arc::new(OnceCell::new()),
            approval_monitor: Arc::new(OnceCell::new()),
            analysis: Arc::new(OnceCell::new()),
        }
    }

    /// Gives every function a hub configured as `hub` (a container of its own).
    pub fn set_hub(&self, hub: &Hub) {
        let hubs = ALL.iter().map(|f| (f.name, Arc::new(Hub::new(hub.sdk.clone(), hub.config.clone())))).collect();
        let _ = self.hubs.set(hubs);
    }

    pub fn function_name(&self, function: &str) -> String {
        format!("{}{function}", self.prefix)
    }
}

impl FunctionHost for LocalFunctions {
    fn invoke(&self, function: &str, payload: Value) -> Option<InvokeFuture> {
        let name = function.strip_prefix(&self.prefix)?;
        let hub = self.hubs.get()?.get(name)?.clone();
        let future: InvokeFuture = match name {
            PLAN_RUN => run(payload, move |request| async move { ec2patch_plan::handle(&hub, request).await }),
            PRE_EC2_INVENTORY => {
                run(payload, move |request| async move { ec2patch_inventory::handle(&hub, request).await })
            }
            SEND_SSM_COMMAND => {
                run(payload, move |request| async move { ec2patch_ssm_send::handle(&hub, request).await })
            }
            POLL_SSM_COMMAND => {
                run(payload, move |request| async move { ec2patch_ssm_poll::handle(&hub, request).await })
            }
            POST_EC2_VERIFY => run(payload, move |request| async move { ec2patch_verify::handle(&hub, request).await }),
            CHECK_CHANGE_FREEZE => {
                run(payload, move |request| async move { ec2patch_change_freeze::handle(&hub, request).await })
            }
            ANALYZE_WITH_BEDROCK => {
                let deps = self.analysis.clone();
                run(payload, move |request| async move {
                    let deps = deps.get_or_try_init(|| ec2patch_bedrock_analysis::Deps::load(&hub)).await?;
                    ec2patch_bedrock_analysis::handle(&hub, deps, request).await
                })
            }
            SEND_APPROVAL_REQUEST => {
                let deps = self.approval_request.clone();
                run(payload, move |request| async move {
                    let deps = deps.get_or_try_init(|| ec2patch_approval_request::Deps::load(&hub)).await?;
                    ec2patch_approval_request::handle(&hub, deps, request).await
                })
            }
            APPROVAL_CALLBACK => {
                let deps = self.approval_callback.clone();
                run(payload, move |request| async move {
                    let deps = deps.get_or_try_init(|| ec2patch_approval_callback::Deps::load(&hub)).await?;
                    ec2patch_approval_callback::handle(&hub, deps, request).await
                })
            }
            APPROVAL_MONITOR => {
                let deps = self.approval_monitor.clone();
                run(payload, move |event| async move {
                    let deps = deps.get_or_try_init(|| ec2patch_approval_monitor::Deps::load(&hub)).await?;
                    ec2patch_approval_monitor::handle(&hub, deps, event).await
                })
            }
            _ => return None,
        };
        Some(future)
    }
}

/// Decodes the payload as the Lambda runtime would, runs the handler on its own task (so a
/// panic becomes an error answer, as it does in Lambda), and encodes the result.
fn run<Req, Res, F, Fut>(payload: Value, handler: F) -> InvokeFuture
where
    Req: DeserializeOwned + Send + 'static,
    Res: Serialize + Send + 'static,
    F: FnOnce(Req) -> Fut + Send + 'static,
    Fut: Future<Output = Result<Res, Error>> + Send + 'static,
{
    Box::pin(async move {
        let request: Req =
            serde_json::from_value(payload).map_err(|e| Diagnostic::from(Error::invalid("payload", e.to_string())))?;
        match tokio::spawn(handler(request)).await {
            Ok(Ok(response)) => serde_json::to_value(response).map_err(|e| Diagnostic {
                error_type: "Runtime.SerializationError".to_owned(),
                error_message: e.to_string(),
            }),
            Ok(Err(error)) => Err(error.into()),
            Err(join_error) => {
                Err(Diagnostic { error_type: "Runtime.ExitError".to_owned(), error_message: join_error.to_string() })
            }
        }
    })
}
