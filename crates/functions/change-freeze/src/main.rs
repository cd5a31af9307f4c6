use ec2patch_change_freeze::{FreezeRequest, handle};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ec2patch_core::telemetry::init();
    let hub = ec2patch_core::Hub::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<FreezeRequest>| handle(&hub, event.payload))).await
}
