//! The GitHub Actions workflows, checked as far as they can be without GitHub:
//!
//! - checkov's github_actions checks pass, with exactly the skips written in the workflows (each
//!   with its reason there);
//! - every action is pinned by a full commit SHA (a tag can be moved to other code);
//! - every workflow runs its steps in bash with pipefail (`defaults.run.shell: bash`), so a
//!   failing `terraform plan | tee` fails its step;
//! - pull-request plans never assume a deploy role.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;

use ec2patch_local::moto::{ensure_venv_at, repo_root, venv_tool};
use serde_json::Value;

const EXPECTED_SKIPS: &[&str] = &["CKV_GHA_7"]; // spoke-deploy's account list input: see the file

fn workflows() -> Vec<(String, String)> {
    let dir = repo_root().join(".github/workflows");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read_to_string(&p).unwrap()))
        .collect();
    files.sort();
    assert!(files.len() >= 4, "{files:?}");
    files
}

#[test]
fn actions_are_pinned_by_commit_sha_and_steps_run_with_pipefail() {
    for (name, text) in workflows() {
        for line in
            text.lines().filter(|l| l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:"))
        {
            let reference = line.split("uses:").nth(1).unwrap().split('#').next().unwrap().trim();
            let sha = reference.rsplit_once('@').map(|(_, r)| r).unwrap_or_default();
            assert!(
                sha.len() == 40 && sha.chars().all(|c| c.is_ascii_hexdigit()),
                "{name}: {reference} is not pinned by a commit SHA"
            );
            assert!(line.contains("# v"), "{name}: {reference} does not say which release the SHA is");
        }
        assert!(
            text.contains("defaults:\n  run:\n    shell: bash\n"),
            "{name}: steps must run in an explicit bash (GitHub then adds -eo pipefail)"
        );
        // A pull request's job may hold only the plan roles.
        if name == "hub-deploy.yml" {
            assert!(
                text.contains(
                    "github.event_name == 'pull_request' && vars.HUB_PLAN_ROLE_ARN || vars.HUB_DEPLOY_ROLE_ARN"
                )
            );
        }
        if name == "spoke-deploy.yml" {
            assert!(text.contains("env.APPLY == 'true' && vars.SPOKE_DEPLOYER_ROLE_ARN || vars.SPOKE_PLAN_ROLE_ARN"));
        }
    }
}

#[test]
fn checkov_github_actions_checks_pass() {
    let root = repo_root();
    let python = ensure_venv_at(&root, ".venv-checks", &root.join("terraform/requirements-checks.txt")).unwrap();
    let output = venv_tool(&python, "checkov")
        .args(["--directory", ".github/workflows", "--framework", "github_actions"])
        .args(["--skip-download", "--output", "json", "--compact"])
        .current_dir(&root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let report: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("checkov output is not JSON ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
    });
    let report = if report.is_array() { report[0].clone() } else { report };
    let summary = &report["summary"];
    eprintln!("checkov .github/workflows: {summary}");
    assert_eq!(summary["failed"], 0, "checkov failed checks:\n{:#}", report["results"]["failed_checks"]);
    assert!(summary["passed"].as_u64().unwrap() > 100, "checkov checked too little: {summary}");
    let mut skipped = BTreeSet::new();
    for check in report["results"]["skipped_checks"].as_array().into_iter().flatten() {
        let id = check["check_id"].as_str().unwrap().to_owned();
        let reason = check["check_result"]["suppress_comment"].as_str().unwrap_or_default();
        assert!(reason.len() > 40, "skip of {id} has no real reason: {reason:?}");
        skipped.insert(id);
    }
    let expected: BTreeSet<String> = EXPECTED_SKIPS.iter().map(|s| (*s).to_owned()).collect();
    assert_eq!(skipped, expected, "checkov skips changed: review the new skip's reason, then update EXPECTED_SKIPS");
}
