//! The approval email (SNS): what the wave will patch and the signed links. SendApprovalRequest
//! sends it; the approval monitor re-sends it once, marked as a reminder, halfway through the window.

use super::ApprovalDetails;
use crate::time::format_epoch;

/// SNS subjects are at most 100 printable ASCII characters.
pub fn subject(details: &ApprovalDetails) -> String {
    subject_with(details, "")
}

/// The reminder's subject: the request's, marked so mail rules and people tell them apart.
pub fn reminder_subject(details: &ApprovalDetails) -> String {
    subject_with(details, "Reminder: ")
}

fn subject_with(details: &ApprovalDetails, mark: &str) -> String {
    let text = format!(
        "[ec2patch] {mark}Approve wave {} of run {}: {} instances",
        details.wave_name, details.run_id, details.patchable
    );
    text.chars().filter(|c| c.is_ascii() && !c.is_ascii_control()).take(100).collect()
}

/// The email body: plain text that reads well in any mail client.
pub fn email_text(details: &ApprovalDetails, approve_link: &str, reject_link: &str) -> String {
    let mut accounts = details.accounts.join(", ");
    if details.accounts_total > details.accounts.len() {
        accounts.push_str(&format!(", and {} more", details.accounts_total - details.accounts.len()));
    }
    let operation = if details.dry_run { "Scan (dry run)" } else { "Install" };
    let skipped = details.offline + details.unmanaged;
    let mut text = format!(
        "ec2patch needs a decision on wave \"{wave}\" (wave {number}) of run {run}.\n\n\
         What will be patched\n\
         \x20 Accounts:  {total} ({accounts})\n\
         \x20 Regions:   {regions}\n\
         \x20 Instances: {patchable} will run AWS-RunPatchBaseline ({operation}); {skipped} skipped \
         ({unmanaged} not managed by SSM, {offline} with the SSM agent offline)\n",
        wave = details.wave_name,
        number = details.wave_index + 1,
        run = details.run_id,
        total = details.accounts_total,
        regions = details.regions.join(", "),
        patchable = details.patchable,
        unmanaged = details.unmanaged,
        offline = details.offline,
    );
    if details.targets_failed > 0 {
        text.push_str(&format!(
            "  Not reachable: {} of {} account/region targets could not be inventoried and will not be patched\n",
            details.targets_failed, details.targets
        ));
    }
    text.push_str(&format!(
        "\nAnalysis\n  {}\n\n\
         Approve: {approve_link}\n\n\
         Reject:  {reject_link}\n\n\
         Each link opens a confirmation page; nothing is decided until you press a button there.\n\
         The links expire at {expiry}; if nobody decides by then, the wave is not patched.\n\
         Manifest of every instance: s3://{bucket}/{key}\n",
        details.analysis.as_deref().unwrap_or("No analysis was run for this wave."),
        expiry = format_epoch(details.link_expires_at),
        bucket = details.manifest.bucket,
        key = details.manifest.key,
    ));
    text
}

/// The reminder's body: a first line saying it is one, then the request's text with the same links.
pub fn reminder_text(details: &ApprovalDetails, approve_link: &str, reject_link: &str) -> String {
    format!(
        "REMINDER: this approval is still pending; half of its window has passed. The links expire at {}.\n\n{}",
        format_epoch(details.link_expires_at),
        email_text(details, approve_link, reject_link)
    )
}
