//! Approving waves as a person would, for the tests, the benchmark and `ec2patch local demo`:
//! read the approval emails the local mailbox received, open the Approve link (the confirmation
//! page, which decides nothing) and submit its form (the POST that decides).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use aws_sdk_sfn::operation::describe_execution::DescribeExecutionOutput;
use aws_sdk_sfn::types::ExecutionStatus;
use bytes::Bytes;
use http_body_util::Full;
use hyper::Request;

use crate::router::{Mail, Router};
use crate::stack::LocalStack;

/// The link after `label` (e.g. `Approve:`) on a line of an email.
pub fn link_after(mail: &str, label: &str) -> Option<String> {
    mail.lines().find_map(|line| line.trim().strip_prefix(label)).map(|rest| rest.trim().to_owned())
}

/// An approval email and its Approve link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApprovalMail {
    pub mail: Mail,
    pub approve_link: String,
}

/// The approval emails not handled yet: of one run, or of every run on the stack.
#[derive(Debug, Clone, Default)]
pub struct ApprovalInbox {
    run_id: Option<String>,
    seen: BTreeSet<String>,
}

impl ApprovalInbox {
    /// Only the approvals of run `run_id` (a stack may run several).
    pub fn for_run(run_id: &str) -> Self {
        Self { run_id: Some(run_id.to_owned()), seen: BTreeSet::new() }
    }

    /// Every approval email on the stack.
    pub fn every_run() -> Self {
        Self::default()
    }

    /// Approval emails that arrived since the last call, oldest first.
    pub fn take_new(&mut self, router: &Router) -> Vec<ApprovalMail> {
        let run = self.run_id.as_ref().map(|run_id| format!("of run {run_id}."));
        router
            .mailbox()
            .into_iter()
            .filter(|mail| run.as_ref().is_none_or(|run| mail.message.contains(run.as_str())))
            .filter_map(|mail| {
                let approve_link = link_after(&mail.message, "Approve:")?;
                self.seen.insert(approve_link.clone()).then_some(ApprovalMail { mail, approve_link })
            })
            .collect()
    }
}

/// Opens `link`'s confirmation page (it must answer 200), then submits the page's form (the
/// link's query string is exactly the form) as `user_agent`. Returns the POST's status.
pub async fn approve(link: &str, user_agent: &str) -> anyhow::Result<u16> {
    let (base, form) = link.split_once('?').with_context(|| format!("approval link without a query: {link}"))?;
    let page = crate::http::get_status(link).await?;
    if page != 200 {
        bail!("the confirmation page {link} answered HTTP {page}");
    }
    let request = Request::post(base)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("user-agent", user_agent)
        .body(Full::new(Bytes::from(form.to_owned())))?;
    Ok(crate::http::send(request).await?.status().as_u16())
}

/// How [`LocalStack::approve_until_done`] approves.
#[derive(Debug, Clone)]
pub struct ApproveOptions {
    /// Only this run's approvals (`None`: every approval email on the stack).
    pub run_id: Option<String>,
    /// Give up (an error with the run's last events) when the execution runs this long.
    pub timeout: Duration,
    /// Accept a 503 answer to the POST (the decision is recorded but Step Functions was
    /// unreachable: the fault suite makes that happen on purpose).
    pub accept_unavailable: bool,
}

impl ApproveOptions {
    pub fn new(timeout: Duration) -> Self {
        Self { run_id: None, timeout, accept_unavailable: false }
    }

    pub fn for_run(mut self, run_id: &str) -> Self {
        self.run_id = Some(run_id.to_owned());
        self
    }

    pub fn accepting_unavailable(mut self) -> Self {
        self.accept_unavailable = true;
        self
    }
}

impl LocalStack {
    /// Approves every approval email as it arrives (GET the page, then POST its form), until
    /// the execution `arn` ends; returns how it ended.
    pub async fn approve_until_done(
        &self,
        arn: &str,
        options: &ApproveOptions,
    ) -> anyhow::Result<DescribeExecutionOutput> {
        let started = Instant::now();
        let mut inbox = match &options.run_id {
            Some(run_id) => ApprovalInbox::for_run(run_id),
            None => ApprovalInbox::every_run(),
        };
        loop {
            for approval in inbox.take_new(&self.router) {
                let status = approve(&approval.approve_link, "ec2patch-local approve_until_done").await?;
                if !(status == 200 || (options.accept_unavailable && status == 503)) {
                    bail!("approval POST answered {status}");
                }
            }
            let execution =
                self.sfn().describe_execution().execution_arn(arn).send().await.context("DescribeExecution")?;
            if execution.status != ExecutionStatus::Running {
                return Ok(execution);
            }
            if started.elapsed() > options.timeout {
                bail!(
                    "execution {arn} still running after {:?}; last events: {:#?}\ncalls: {:?}",
                    options.timeout,
                    self.recent_events(arn, 12).await?,
                    self.router.calls()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The execution's last `count` events, newest first, as `Type State Error` lines.
    async fn recent_events(&self, arn: &str, count: usize) -> anyhow::Result<Vec<String>> {
        let history = self.history(arn).await?;
        Ok(history
            .iter()
            .rev()
            .take(count)
            .map(|e| {
                let name = e.state_entered_event_details().map(|d| d.name().to_owned()).unwrap_or_default();
                let error = e.task_failed_event_details().and_then(|d| d.error()).unwrap_or_default();
                format!("{} {name} {error}", e.r#type().as_str())
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_read_after_their_label() {
        let mail = "Hello\n  Approve: http://x/callback?id=1 \nReject: http://x/callback?id=2\n";
        assert_eq!(link_after(mail, "Approve:").as_deref(), Some("http://x/callback?id=1"));
        assert_eq!(link_after(mail, "Reject:").as_deref(), Some("http://x/callback?id=2"));
        assert_eq!(link_after(mail, "Other:"), None);
    }
}
