//! The whole local stack: moto behind the router, the hub's identity, table, bucket and state
//! machine, deployed the way Terraform deploys them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_config::{BehaviorVersion, Region as SdkRegion, SdkConfig};
use aws_credential_types::Credentials;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType, TimeToLiveSpecification,
};
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::{ExecutionStatus, HistoryEvent};
use serde_json::Value;
use tokio::net::TcpListener;

use ec2patch_core::config::{HubConfig, PatchSettings, RunDefaults};
use ec2patch_core::plan::BedrockAgent;
use ec2patch_core::{Hub, asl};

use crate::estate::{self, Estate, EstateSpec};
use crate::faults::FaultRule;
use crate::functions::{self, LocalFunctions};
use crate::moto::{self, MotoServer};
use crate::router::Router;

/// The hub account of every local stack.
pub const HUB_ACCOUNT: &str = "111111111111";

#[derive(Debug, Clone)]
pub struct LocalStackOptions {
    pub name_prefix: String,
    pub region: String,
    pub external_id: String,
    pub inventory_concurrency: usize,
    /// How long a wave waits for approval (also the links' lifetime).
    pub approval_timeout_seconds: u32,
    pub targets_per_batch: usize,
    /// After this long a batch's commands count as timed out.
    pub command_timeout_seconds: u32,
    /// Run lock: what each lease renewal adds beyond the step's own wait
    /// (`EC2PATCH_RUN_LOCK_MARGIN_SECONDS`). Small values let tests watch a stopped run's lease
    /// expire.
    pub run_lock_margin_seconds: u32,
    /// The hub's Bedrock agent (Terraform's `bedrock_agent_id`/`_alias_id`): the only one a run
    /// input may name. `None`: rule-based analysis only.
    pub bedrock: Option<BedrockAgent>,
    /// The router's port on 127.0.0.1 (the stack's one endpoint); 0 picks a free one.
    pub router_port: u16,
}

impl Default for LocalStackOptions {
    fn default() -> Self {
        Self {
            name_prefix: "ec2patch".to_owned(),
            region: "us-east-1".to_owned(),
            external_id: "ec2patch-local-external-id".to_owned(),
            inventory_concurrency: 16,
            approval_timeout_seconds: 3600,
            targets_per_batch: 2,
            command_timeout_seconds: 30,
            run_lock_margin_seconds: 900,
            bedrock: None,
            router_port: 0,
        }
    }
}

/// A running local stack. Everything it started stops when it is dropped.
#[derive(Debug)]
pub struct LocalStack {
    pub options: LocalStackOptions,
    /// The hub's SDK configuration: hub credentials, calls through the router.
    pub sdk: SdkConfig,
    pub hub: Arc<Hub>,
    /// The hub identity's access key (an IAM user in [`HUB_ACCOUNT`]), e.g. for Terraform.
    pub hub_credentials: Credentials,
    pub functions: Arc<LocalFunctions>,
    pub state_machine_arn: String,
    pub router: Router,
    pub moto: MotoServer,
}

impl LocalStack {
    pub async fn start(options: LocalStackOptions) -> anyhow::Result<Self> {
        let root = moto::repo_root();
        let listener = TcpListener::bind(("127.0.0.1", options.router_port))
            .await
            .with_context(|| format!("binding the router to 127.0.0.1:{}", options.router_port))?;
        let router_port = listener.local_addr()?.port();
        let moto_port = moto::free_port()?;
        let functions = Arc::new(LocalFunctions::new(&options.name_prefix));
        let callback = functions.function_name(functions::APPROVAL_CALLBACK);
        let router = Router::serve(listener, moto_port, HUB_ACCOUNT, functions.clone(), &callback)?;
        let moto = MotoServer::start(&root, moto_port, router_port).await?;

        let credentials = hub_credentials(moto_port).await?;
        router.register_access_key(credentials.access_key_id(), HUB_ACCOUNT);
        let sdk = aws_config::defaults(BehaviorVersion::latest())
            .region(SdkRegion::new(options.region.clone()))
            .credentials_provider(credentials.clone())
            .endpoint_url(router.url())
            // The retries the functions get in Lambda (Hub::from_env).
            .retry_config(ec2patch_core::hub::retry_config())
            .load()
            .await;
        let topic_arn = create_topic(&sdk, &options.name_prefix, &router.url()).await?;
        let hmac_key_parameter = create_signing_key(&sdk, &options.name_prefix).await?;
        let table = format!("{}-runs", options.name_prefix);
        // Terraform's names (terraform/modules/hub), so `ec2patch` finds them without flags.
        let bucket = format!("{}-artifacts-{HUB_ACCOUNT}-{}", options.name_prefix, options.region);
        let config = HubConfig {
            external_id: Some(options.external_id.clone()),
            inventory_concurrency: options.inventory_concurrency,
            approval_timeout_seconds: options.approval_timeout_seconds,
            callback_base_url: Some(router.url()),
            hmac_key_parameter: Some(hmac_key_parameter),
            // Seconds, not minutes: the simulated patches take a second or two.
            patching: PatchSettings {
                targets_per_batch: options.targets_per_batch,
                poll_initial_seconds: 1,
                poll_max_seconds: 2,
                command_timeout_seconds: options.command_timeout_seconds,
                run_lock_margin_seconds: options.run_lock_margin_seconds,
                ..PatchSettings::default()
            },
            defaults: RunDefaults {
                regions: vec![options.region.clone()],
                sns_topic_arn: Some(topic_arn),
                bedrock: options.bedrock.clone(),
                ..RunDefaults::default()
            },
            ..HubConfig::new(&table, &bucket)
        };
        let hub = Arc::new(Hub::new(sdk.clone(), config));
        functions.set_hub(&hub);

        let mut stack = Self {
            options,
            sdk,
            hub,
            hub_credentials: credentials,
            functions,
            state_machine_arn: String::new(),
            router,
            moto,
        };
        stack.create_table().await?;
        stack.create_bucket().await?;
        stack.state_machine_arn = stack.deploy_state_machine().await?;
        Ok(stack)
    }

    pub fn function_arn(&self, function: &str) -> String {
        format!(
            "arn:aws:lambda:{}:{HUB_ACCOUNT}:function:{}",
            self.options.region,
            self.functions.function_name(function)
        )
    }

    /// The values Terraform's `templatefile` receives, for this stack.
    pub fn template_values(&self) -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("plan_function_arn", self.function_arn(functions::PLAN_RUN)),
            ("inventory_function_arn", self.function_arn(functions::PRE_EC2_INVENTORY)),
            ("approval_request_function_arn", self.function_arn(functions::SEND_APPROVAL_REQUEST)),
            ("ssm_send_function_arn", self.function_arn(functions::SEND_SSM_COMMAND)),
            ("ssm_poll_function_arn", self.function_arn(functions::POLL_SSM_COMMAND)),
            ("verify_function_arn", self.function_arn(functions::POST_EC2_VERIFY)),
            ("analysis_function_arn", self.function_arn(functions::ANALYZE_WITH_BEDROCK)),
            ("change_freeze_function_arn", self.function_arn(functions::CHECK_CHANGE_FREEZE)),
            ("table_name", self.hub.config.table.clone()),
        ])
    }

    async fn create_table(&self) -> anyhow::Result<()> {
        let dynamodb = aws_sdk_dynamodb::Client::new(&self.sdk);
        let table = &self.hub.config.table;
        let key = |name: &str, kind| KeySchemaElement::builder().attribute_name(name).key_type(kind).build();
        let attribute = |name: &str| {
            AttributeDefinition::builder().attribute_name(name).attribute_type(ScalarAttributeType::S).build()
        };
        dynamodb
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .attribute_definitions(attribute("pk")?)
            .attribute_definitions(attribute("sk")?)
            .send()
            .await
            .context("CreateTable")?;
        dynamodb
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder().enabled(true).attribute_name("expiresAt").build()?,
            )
            .send()
            .await
            .context("UpdateTimeToLive")?;
        Ok(())
    }

    async fn create_bucket(&self) -> anyhow::Result<()> {
        let s3 = aws_sdk_s3::Client::from_conf(ec2patch_core::hub::s3_config(&self.sdk));
        s3.create_bucket().bucket(&self.hub.config.bucket).send().await.context("CreateBucket")?;
        Ok(())
    }

    async fn deploy_state_machine(&self) -> anyhow::Result<String> {
        let definition = asl::render(asl::ORCHESTRATOR_TEMPLATE, &self.template_values())?;
        let output = self
            .sfn()
            .create_state_machine()
            .name(format!("{}-orchestrator", self.options.name_prefix))
            .role_arn(format!("arn:aws:iam::{HUB_ACCOUNT}:role/{}-orchestrator", self.options.name_prefix))
            .definition(definition)
            .send()
            .await
            .context("CreateStateMachine")?;
        Ok(output.state_machine_arn)
    }

    pub fn sfn(&self) -> aws_sdk_sfn::Client {
        aws_sdk_sfn::Client::new(&self.sdk)
    }

    /// Seeds the estate, then makes the denied accounts refuse the hub's AssumeRole.
    pub async fn seed(&self, spec: &EstateSpec) -> anyhow::Result<Estate> {
        let sessions = self.hub.spoke_sessions("seed");
        let estate = estate::seed(&sessions, spec).await?;
        self.deny_hub(&estate);
        Ok(estate)
    }

    /// Seeds the estate into the given account ids (see [`estate::seed_accounts`]).
    pub async fn seed_accounts(&self, accounts: Vec<String>, spec: &EstateSpec) -> anyhow::Result<Estate> {
        let sessions = self.hub.spoke_sessions("seed");
        let estate = estate::seed_accounts(&sessions, accounts, spec).await?;
        self.deny_hub(&estate);
        Ok(estate)
    }

    fn deny_hub(&self, estate: &Estate) {
        for account in &estate.denied {
            self.router.faults().add(FaultRule::deny_assume_role(account));
        }
    }

    /// Starts an execution (always named: moto needs it, and the name is the run id).
    pub async fn start_execution(&self, name: &str, input: &Value) -> anyhow::Result<String> {
        let output = self
            .sfn()
            .start_execution()
            .state_machine_arn(&self.state_machine_arn)
            .name(name)
            .input(input.to_string())
            .send()
            .await
            .context("StartExecution")?;
        Ok(output.execution_arn)
    }

    /// Polls until the execution leaves RUNNING.
    pub async fn wait_for_execution(
        &self,
        execution_arn: &str,
        timeout: Duration,
    ) -> anyhow::Result<DescribeExecutionOutput> {
        let started = Instant::now();
        loop {
            let output = self
                .sfn()
                .describe_execution()
                .execution_arn(execution_arn)
                .send()
                .await
                .context("DescribeExecution")?;
            if output.status != ExecutionStatus::Running {
                return Ok(output);
            }
            if started.elapsed() > timeout {
                bail!("execution {execution_arn} still running after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until the mailbox holds at least `count` messages and returns them.
    pub async fn wait_for_mail(&self, count: usize, timeout: Duration) -> anyhow::Result<Vec<crate::router::Mail>> {
        let started = Instant::now();
        loop {
            let mail = self.router.mailbox();
            if mail.len() >= count {
                return Ok(mail);
            }
            if started.elapsed() > timeout {
                bail!("mailbox has {} of {count} messages after {timeout:?}", mail.len());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn history(&self, execution_arn: &str) -> anyhow::Result<Vec<HistoryEvent>> {
        let mut events = Vec::new();
        let mut pages = self.sfn().get_execution_history().execution_arn(execution_arn).into_paginator().send();
        while let Some(page) = pages.next().await {
            events.extend(page.context("GetExecutionHistory")?.events);
        }
        Ok(events)
    }
}

/// The hub's notification topic, with the local mailbox (`/mailbox` on the router) subscribed
/// over HTTP as an email address would be.
async fn create_topic(sdk: &SdkConfig, prefix: &str, router_url: &str) -> anyhow::Result<String> {
    let sns = aws_sdk_sns::Client::new(sdk);
    let topic = sns.create_topic().name(format!("{prefix}-PatchAlerts")).send().await.context("CreateTopic")?;
    let arn = topic.topic_arn.context("CreateTopic returned no ARN")?;
    sns.subscribe()
        .topic_arn(&arn)
        .protocol("http")
        .endpoint(format!("{router_url}/mailbox"))
        .send()
        .await
        .context("Subscribe")?;
    Ok(arn)
}

/// A fresh random approval-link key in an SSM SecureString, as the hub module creates it.
async fn create_signing_key(sdk: &SdkConfig, prefix: &str) -> anyhow::Result<String> {
    let name = format!("/{prefix}/approval-hmac-key");
    let key = format!("{}{}", ec2patch_core::approval::new_approval_id()?, ec2patch_core::approval::new_approval_id()?);
    aws_sdk_ssm::Client::new(sdk)
        .put_parameter()
        .name(&name)
        .value(key)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .overwrite(true)
        .send()
        .await
        .context("PutParameter (approval HMAC key)")?;
    Ok(name)
}

/// An IAM user in the hub account and its access key: the identity the hub's functions run as.
async fn hub_credentials(moto_port: u16) -> anyhow::Result<Credentials> {
    let endpoint = format!("http://127.0.0.1:{moto_port}/");
    let user = "ec2patch-hub";
    crate::http::query_call(
        &endpoint,
        HUB_ACCOUNT,
        "iam",
        &[("Action", "CreateUser"), ("UserName", user), ("Version", "2010-05-08")],
    )
    .await?;
    let xml = crate::http::query_call(
        &endpoint,
        HUB_ACCOUNT,
        "iam",
        &[("Action", "CreateAccessKey"), ("UserName", user), ("Version", "2010-05-08")],
    )
    .await?;
    let key = crate::http::xml_text(&xml, "AccessKeyId").context("CreateAccessKey answer has no AccessKeyId")?;
    let secret =
        crate::http::xml_text(&xml, "SecretAccessKey").context("CreateAccessKey answer has no SecretAccessKey")?;
    Ok(Credentials::new(key, secret, None, None, "ec2patch-local-hub"))
}
