//! The approval email reads well and carries exactly what a person needs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use ec2patch_approval_request::{email_text, subject};
use ec2patch_core::approval::ApprovalDetails;
use ec2patch_core::store::ObjectRef;

fn details(accounts_total: usize) -> ApprovalDetails {
    ApprovalDetails {
        run_id: "wave1-critical-20261129".into(),
        wave_index: 0,
        wave_name: "wave1-critical".into(),
        dry_run: false,
        accounts: (0..accounts_total.min(25)).map(|i| format!("{:012}", 200_000_000_001u64 + i as u64)).collect(),
        accounts_total,
        regions: vec!["us-east-1".into()],
        targets: accounts_total,
        targets_failed: 1,
        instances: 57,
        patchable: 50,
        offline: 3,
        unmanaged: 4,
        analysis: None,
        manifest: ObjectRef { bucket: "ec2patch-artifacts".into(), key: "runs/r/waves/000/manifest.json".into() },
        link_expires_at: 1_795_000_000,
    }
}

#[test]
fn the_email_lists_the_wave_the_counts_and_both_links() {
    let text =
        email_text(&details(40), "https://h/callback?id=1&action=approve", "https://h/callback?id=1&action=reject");
    assert!(text.contains("wave \"wave1-critical\""));
    assert!(text.contains("Accounts:  40 (200000000001"), "{text}");
    assert!(text.contains("and 15 more"), "{text}");
    assert!(
        text.contains(
            "50 will run AWS-RunPatchBaseline (Install); 7 skipped (4 not managed by SSM, 3 with the SSM agent offline)"
        ),
        "{text}"
    );
    assert!(text.contains("1 of 40 account/region targets could not be inventoried"), "{text}");
    assert!(text.contains("Approve: https://h/callback?id=1&action=approve"));
    assert!(text.contains("Reject:  https://h/callback?id=1&action=reject"));
    assert!(text.contains("nothing is decided until you press a button"));
    assert!(text.contains("expire at 2026-11-18T11:06:40Z"), "expiry in RFC 3339: {text}");
    assert!(text.contains("No analysis was run"));
}

#[test]
fn subjects_fit_sns_limits() {
    let mut long = details(1);
    long.run_id = "r".repeat(80);
    long.wave_name = "w-é-".repeat(20);
    let subject = subject(&long);
    assert!(subject.len() <= 100);
    assert!(subject.chars().all(|c| c.is_ascii() && !c.is_ascii_control()));
    assert!(subject.starts_with("[ec2patch] Approve wave"));
}
