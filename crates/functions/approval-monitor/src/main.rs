use ec2patch_approval_monitor::{Deps, handle};
use lambda_runtime::{LambdaEvent, service_fn};

// One thread: the handler's work is waiting on AWS calls, which it overlaps as futures, and a
// Lambda at the hub's memory sizes has at most one vCPU; more workers only cost memory.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), lambda_runtime::Error> {
    ec2patch_core::telemetry::init();
    let hub = ec2patch_core::Hub::from_env().await?;
    let deps = Deps::load(&hub).await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<serde_json::Value>| handle(&hub, &deps, event.payload))).await
}
