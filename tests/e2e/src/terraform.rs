//! Terraform for the tests: offline, with the machine's filesystem mirror of the AWS provider
//! (these machines ship one; nothing is ever downloaded), in its own process group.

use std::path::{Path, PathBuf};

/// The machine's filesystem mirror of the AWS provider. `EC2PATCH_TF_PLUGIN_MIRROR` overrides
/// the search.
pub fn provider_mirror() -> PathBuf {
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_default();
    let candidates: Vec<PathBuf> = std::env::var_os("EC2PATCH_TF_PLUGIN_MIRROR")
        .map(PathBuf::from)
        .into_iter()
        .chain([
            PathBuf::from("/opt/tf-plugins"),
            PathBuf::from("/usr/local/share/terraform/plugins"),
            PathBuf::from("/usr/share/terraform/plugins"),
            home.join(".terraform.d/plugins"),
            home.join(".local/share/terraform/plugins"),
        ])
        .collect();
    candidates
        .iter()
        .find(|dir| dir.join("registry.terraform.io/hashicorp/aws").is_dir())
        .cloned()
        .unwrap_or_else(|| {
            panic!("no filesystem mirror of registry.terraform.io/hashicorp/aws in any of {candidates:?}; set EC2PATCH_TF_PLUGIN_MIRROR")
        })
}

/// A CLI config in `dir` installing providers from the mirror only (TF_CLI_CONFIG_FILE on these
/// machines points at a file that does not exist).
pub fn cli_config(dir: &Path) -> PathBuf {
    let path = dir.join(format!("terraformrc-{}", std::process::id()));
    if !path.exists() {
        std::fs::write(
            &path,
            format!(
                "provider_installation {{\n  filesystem_mirror {{\n    path    = \"{}\"\n    include = [\"registry.terraform.io/hashicorp/aws\"]\n  }}\n}}\n",
                provider_mirror().display()
            ),
        )
        .unwrap();
    }
    path
}

/// Copies a tree of Terraform sources, leaving out state, lock files and `.terraform`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name == ".terraform" || name.contains(".tfstate") || name == ".terraform.lock.hcl" {
            continue;
        }
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &to.join(&*name));
        } else {
            std::fs::copy(entry.path(), to.join(&*name)).unwrap();
        }
    }
}

/// What one terraform command did.
#[derive(Debug)]
pub struct TerraformOutput {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl TerraformOutput {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }

    pub fn text(&self) -> String {
        format!("exit {:?}\n--- stdout\n{}\n--- stderr\n{}", self.code, self.stdout, self.stderr)
    }
}

/// A process group killed when dropped before its command finished (a test panicking mid-way).
struct ProcessGroup(Option<u32>);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            let _ = std::process::Command::new("kill").args(["-KILL", "--", &format!("-{pgid}")]).status();
        }
    }
}

/// Runs terraform in `dir` with `cli_config`, free of the caller's AWS and Terraform settings
/// (through tokio, so a local stack in the same process keeps serving).
pub async fn run(dir: &Path, args: &[&str], cli_config: &Path) -> TerraformOutput {
    let child = tokio::process::Command::new("terraform")
        .args(args)
        .current_dir(dir)
        .env("TF_CLI_CONFIG_FILE", cli_config)
        .env("TF_IN_AUTOMATION", "1")
        .env("TF_INPUT", "0")
        .env("CHECKPOINT_DISABLE", "1")
        .env_remove("TF_PLUGIN_CACHE_DIR")
        .env_remove("TF_DATA_DIR")
        .env_remove("TF_WORKSPACE")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ACCESS_KEY_ID")
        .env_remove("AWS_SECRET_ACCESS_KEY")
        .env_remove("AWS_SESSION_TOKEN")
        // Its own process group, so that a test failing while terraform runs also stops the
        // provider plugin terraform started (killing terraform alone leaves it running).
        .process_group(0)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running terraform (is it installed and on PATH?): {e}"));
    let mut group = ProcessGroup(child.id());
    let output = child.wait_with_output().await.unwrap();
    group.0 = None;
    TerraformOutput {
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// An override file for a root's `provider "aws"` block sending every call to the emulator at
/// `endpoint` with the given access key (the override merges into the root's block; its nested
/// `endpoints` replaces the original's).
pub fn emulator_provider_override(endpoint: &str, access_key: &str, secret_key: &str) -> String {
    let services = [
        "apigatewayv2",
        "cloudwatch",
        "dynamodb",
        "events",
        "iam",
        "kms",
        "lambda",
        "logs",
        "s3",
        "sfn",
        "sns",
        "sqs",
        "ssm",
        "sts",
    ];
    let endpoints: String = services.iter().map(|s| format!("    {s} = \"{endpoint}\"\n")).collect();
    format!(
        "# Written by the e2e tests (tests/e2e): every AWS call goes to the emulator.\n\
         provider \"aws\" {{\n  access_key = \"{access_key}\"\n  secret_key = \"{secret_key}\"\n\
         \x20 skip_credentials_validation = true\n  skip_requesting_account_id = true\n\
         \x20 skip_metadata_api_check = true\n  s3_use_path_style = true\n  max_retries = 1\n\
         \x20 endpoints {{\n{endpoints}  }}\n}}\n"
    )
}
