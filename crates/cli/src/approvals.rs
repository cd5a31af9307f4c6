//! `ec2patch approvals`, `approve`, `reject`: the same decision the emailed page records (one
//! conditional write, the same audit fields), made as the caller's IAM identity.

use anyhow::bail;

use ec2patch_core::approval::decide::{self as approval_decide, Decider, DecisionOutcome, Delivery, PendingApproval};
use ec2patch_core::approval::{Action, Decision, is_approval_id};

use crate::connect::Connection;

pub async fn list(connection: &Connection) -> anyhow::Result<Vec<PendingApproval>> {
    Ok(approval_decide::pending(&connection.hub.store).await?)
}

/// Decides approval `id`; an error when nothing was decided by this call.
pub async fn decide(
    connection: &Connection,
    id: &str,
    action: Action,
    reason: Option<&str>,
) -> anyhow::Result<Decision> {
    if !is_approval_id(id) {
        bail!(crate::InvalidInput(format!("{id:?} is not an approval id (see `ec2patch approvals`)")));
    }
    let decided_by = match reason {
        Some(reason) => format!("iam:{} ({reason})", connection.caller_arn),
        None => format!("iam:{}", connection.caller_arn),
    };
    let decider = Decider {
        decided_by,
        source_ip: "cli".to_owned(),
        user_agent: format!("ec2patch-cli/{}", env!("CARGO_PKG_VERSION")),
    };
    match approval_decide::decide(&connection.hub.store, &connection.sfn(), id, action, &decider).await {
        DecisionOutcome::Decided { decision, delivery: Delivery::Resumed } => Ok(decision),
        DecisionOutcome::Decided { delivery: Delivery::TaskClosed, .. } => {
            bail!("approval {id}: recorded, but the run had already stopped waiting (timed out or stopped)")
        }
        DecisionOutcome::Decided { delivery: Delivery::Unavailable, .. } => {
            bail!(
                "approval {id}: recorded, but Step Functions could not be reached; run the same command again to deliver it"
            )
        }
        DecisionOutcome::AlreadyDecided(earlier) => {
            bail!("approval {id} was already {} by {} at {}", earlier.status, earlier.decided_by, earlier.decided_at)
        }
        DecisionOutcome::Expired => bail!("approval {id} has expired: the wave stopped waiting"),
        DecisionOutcome::NotFound => bail!("no approval {id} in table {}", connection.hub.store.table()),
        DecisionOutcome::Unavailable => {
            bail!(
                "cannot read or write table {} (permissions? region?); nothing was decided",
                connection.hub.store.table()
            )
        }
    }
}
