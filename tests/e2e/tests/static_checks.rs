//! Checks that run real external validators: statelint on the rendered state machine, and the
//! emulator launcher's own test suite.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use ec2patch_core::asl;
use ec2patch_local::moto::{ensure_venv, repo_root, venv_tool};

fn statelint(definition: &str, name: &str) -> std::process::Output {
    let root = repo_root();
    let python = ensure_venv(&root).unwrap();
    let dir = root.join("target/static-checks");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, definition).unwrap();
    venv_tool(&python, "statelint").arg(&path).output().unwrap()
}

fn rendered() -> String {
    let names = asl::placeholders(asl::ORCHESTRATOR_TEMPLATE);
    let values: BTreeMap<&str, String> = names
        .iter()
        .map(|n| {
            (
                n.as_str(),
                if n.ends_with("_arn") {
                    format!("arn:aws:lambda:us-east-1:111111111111:function:ec2patch-{n}")
                } else {
                    format!("ec2patch-{n}")
                },
            )
        })
        .collect();
    asl::render(asl::ORCHESTRATOR_TEMPLATE, &values).unwrap()
}

#[test]
fn statelint_accepts_the_rendered_state_machine() {
    let output = statelint(&rendered(), "orchestrator.asl.json");
    assert!(
        output.status.success(),
        "statelint: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn statelint_catches_a_broken_transition() {
    // Proves the check above can fail: a Next pointing nowhere must be reported.
    let broken = rendered().replace("\"Next\": \"HasMoreWaves\"", "\"Next\": \"NoSuchState\"");
    let output = statelint(&broken, "broken.asl.json");
    assert!(!output.status.success(), "statelint accepted a dangling Next");
}

#[test]
fn emulator_launcher_suite_passes() {
    let root = repo_root();
    let python = ensure_venv(&root).unwrap();
    let output = Command::new(python)
        .current_dir(&root)
        .args(["-m", "unittest", "discover", "-s", "crates/local/moto", "-p", "test_*.py"])
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "launcher tests failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(Path::new(&root).join("crates/local/moto/launcher.py").exists());
}
