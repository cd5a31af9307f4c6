//! `ec2patch local up`: the local stack as an AWS endpoint other tools can use. Starts moto
//! behind the router, deploys the hub with Terraform's names, seeds a simulated estate, prints
//! the `export` lines that point the AWS CLI, Terraform, an SDK or `ec2patch` at it, and the
//! README's `start-execution` examples with the seeded account ids; then stays up, printing every
//! email the hub sends (approval links included), until Ctrl-C.

use std::fmt::Write as _;
use std::time::Duration;

use anyhow::bail;
use serde_json::{Value, json};

use ec2patch_core::AccountId;
use ec2patch_core::plan::BedrockAgent;
use ec2patch_local::{Estate, EstateSpec, HUB_ACCOUNT, LocalStack, LocalStackOptions, Mail};

/// The line `up` prints once the stack is ready (tests and scripts wait for it).
pub const READY_LINE: &str = "# ready: the local stack is up; Ctrl-C stops it";

/// The Bedrock agent the README's examples name: the local hub is configured with it so that
/// `"bedrock": {"agentId": "AGENT_ID", ...}` passes PlanRun. moto has no Bedrock agents, so the
/// analysis step falls back to its rules and says why in its output.
const EXAMPLE_AGENT: (&str, &str) = ("AGENT_ID", "ALIAS_ID");

#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// Spoke accounts to seed (12-digit ids). The default is the three the README's run inputs
    /// name (the hub's own account among them), so they run verbatim.
    #[arg(long, value_delimiter = ',', default_value = "111111111111,222222222222,333333333333")]
    pub accounts: Vec<String>,
    /// Regions to seed in every account (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "us-east-1")]
    pub regions: Vec<String>,
    /// Patchable instances per account x region (each target also gets one instance SSM does not
    /// manage and one without the patch tag).
    #[arg(long, default_value_t = 2)]
    pub instances: usize,
    /// Accounts (the last ones) whose PatchExecRole refuses the hub.
    #[arg(long, default_value_t = 0)]
    pub denied: usize,
    /// The endpoint's port on 127.0.0.1 (0 picks a free one).
    #[arg(long, default_value_t = 4566)]
    pub port: u16,
}

impl UpArgs {
    fn check(&self) -> Result<(), crate::InvalidInput> {
        let invalid = |message: String| Err(crate::InvalidInput(message));
        if self.accounts.is_empty() {
            return invalid("--accounts needs at least one account id".to_owned());
        }
        if let Some(bad) = self.accounts.iter().find(|a| AccountId::parse(a).is_none()) {
            return invalid(format!("--accounts: {bad:?} is not a 12-digit AWS account id"));
        }
        if self.denied >= self.accounts.len() {
            return invalid("--denied must leave at least one reachable account".to_owned());
        }
        if self.regions.is_empty() {
            return invalid("--regions needs at least one region".to_owned());
        }
        Ok(())
    }
}

/// Starts the stack and seeds it; returns it with what `up` prints on stdout.
pub async fn start(args: &UpArgs) -> anyhow::Result<(LocalStack, Estate, String)> {
    args.check()?;
    let (agent_id, agent_alias_id) = EXAMPLE_AGENT;
    let stack = LocalStack::start(LocalStackOptions {
        router_port: args.port,
        bedrock: Some(BedrockAgent { agent_id: agent_id.to_owned(), agent_alias_id: agent_alias_id.to_owned() }),
        ..LocalStackOptions::default()
    })
    .await?;
    let spec = EstateSpec::operator(args.accounts.len(), &args.regions, args.instances, args.denied);
    let estate = stack.seed_accounts(args.accounts.clone(), &spec).await?;
    let text = exports(&stack, &estate)?;
    Ok((stack, estate, text))
}

/// `ec2patch local up`: start, print, then print each email until Ctrl-C.
pub async fn run(args: &UpArgs) -> anyhow::Result<()> {
    eprintln!("Starting the local AWS stack (first use installs moto into .venv) ...");
    let (stack, estate, text) = start(args).await?;
    eprintln!(
        "Seeded {} instances in {} account(s) x {} region(s); moto's log: {}",
        estate.instances.len(),
        estate.accounts.len(),
        estate.regions.len(),
        stack.moto.log.display()
    );
    println!("{text}");
    println!("{READY_LINE}");
    let mut printed = 0;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            signal = tokio::signal::ctrl_c() => {
                signal?;
                eprintln!("Stopping the local stack.");
                // Returning drops the stack, which stops moto and the router.
                return Ok(());
            }
        }
        let mailbox = stack.router.mailbox();
        for mail in mailbox.iter().skip(printed) {
            eprintln!("{}", format_mail(mail));
        }
        printed = mailbox.len().max(printed);
    }
}

/// The shell lines that point tools at the stack, and the README's two example runs.
fn exports(stack: &LocalStack, estate: &Estate) -> anyhow::Result<String> {
    let region = &stack.options.region;
    let reachable: Vec<&String> = estate.accounts.iter().filter(|a| !estate.denied.contains(a)).collect();
    let Some(first) = reachable.first() else { bail!("no reachable account was seeded") };
    let rest: Vec<&&String> = reachable.iter().skip(1).collect();
    let api_example = json!({
        "waveId": "wave1-critical",
        "dryRun": false,
        "accounts": [first],
        "regions": [estate.regions[0]],
        "tagFilters": {"PatchGroup": "default"}
    });
    let eventbridge_example = json!({
        "accountWaves": [{"accounts": if rest.is_empty() { vec![first] } else { rest }, "regions": [estate.regions[0]]}],
        "ec2": {"tagKey": "PatchGroup", "tagValue": "default"},
        "snsTopicArn": stack.hub.config.defaults.sns_topic_arn,
        "bedrock": {"agentId": EXAMPLE_AGENT.0, "agentAliasId": EXAMPLE_AGENT.1},
        "wavePauseSeconds": 0,
        "abortOnIssues": true
    });
    let credentials = &stack.hub_credentials;
    let mut text = String::new();
    writeln!(
        text,
        "# ec2patch hub {HUB_ACCOUNT} in {region}; spoke accounts {} (regions {}){}",
        estate.accounts.join(","),
        estate.regions.join(","),
        if estate.denied.is_empty() {
            String::new()
        } else {
            format!("; refusing the hub: {}", estate.denied.join(","))
        }
    )?;
    writeln!(text, "export AWS_ENDPOINT_URL={}", stack.router.url())?;
    writeln!(text, "export AWS_ACCESS_KEY_ID={}", credentials.access_key_id())?;
    writeln!(text, "export AWS_SECRET_ACCESS_KEY={}", credentials.secret_access_key())?;
    writeln!(text, "export AWS_REGION={region}")?;
    writeln!(text, "export AWS_DEFAULT_REGION={region}")?;
    writeln!(
        text,
        "# State machine {} ; table {} ; bucket {}",
        stack.state_machine_arn, stack.hub.config.table, stack.hub.config.bucket
    )?;
    writeln!(text, "# The README's examples against this stack:")?;
    for (name, input) in [("manual-patch", &api_example), ("eventbridge-shape", &eventbridge_example)] {
        writeln!(text, "aws stepfunctions start-execution \\")?;
        writeln!(text, "  --state-machine-arn {} \\", stack.state_machine_arn)?;
        writeln!(text, "  --name \"{name}-$(date +%s)\" \\")?;
        writeln!(text, "  --input '{}'", shell_quoted_json(input))?;
    }
    write!(
        text,
        "# Then: ec2patch approvals, ec2patch approve ID (or open the Approve link printed on stderr), \
         ec2patch watch RUN_ID, ec2patch report RUN_ID"
    )?;
    Ok(text)
}

/// Compact JSON for a single-quoted shell word (JSON from `json!` holds no `'`, but be sure).
fn shell_quoted_json(value: &Value) -> String {
    value.to_string().replace('\'', "'\\''")
}

fn format_mail(mail: &Mail) -> String {
    let body: Vec<String> = mail.message.lines().map(|line| format!("  | {line}")).collect();
    format!("Email: {}\n{}", mail.subject.as_deref().unwrap_or("(no subject)"), body.join("\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(accounts: &[&str], denied: usize) -> UpArgs {
        UpArgs {
            accounts: accounts.iter().map(|a| (*a).to_owned()).collect(),
            regions: vec!["us-east-1".to_owned()],
            instances: 1,
            denied,
            port: 0,
        }
    }

    #[test]
    fn bad_arguments_name_the_flag() {
        let message = |a: UpArgs| a.check().map_err(|e| e.0).err().unwrap_or_default();
        assert!(message(args(&["12345"], 0)).starts_with("--accounts: \"12345\""));
        assert!(message(args(&[], 0)).starts_with("--accounts"));
        assert!(message(args(&["222222222222"], 1)).starts_with("--denied"));
        assert_eq!(message(args(&["222222222222", "333333333333"], 1)), "");
    }

    #[test]
    fn quotes_survive_a_single_quoted_shell_word() {
        assert_eq!(shell_quoted_json(&json!({"a": "it's"})), r#"{"a":"it'\''s"}"#);
    }
}
