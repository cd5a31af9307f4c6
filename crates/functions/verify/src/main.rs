use ec2patch_verify::{VerifyRequest, handle};
use lambda_runtime::{LambdaEvent, service_fn};

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    ec2patch_core::telemetry::init();
    let hub = ec2patch_core::Hub::from_env().await?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<VerifyRequest>| handle(&hub, event.payload))).await
}
