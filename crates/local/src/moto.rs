//! moto server as a child process: a project-local virtualenv with the pinned moto, and our
//! launcher (`crates/local/moto/launcher.py`) that switches on the Step Functions interpreter and
//! fills the SSM and Step Functions gaps our functions and Terraform need.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::process::{Child, Command};

use crate::http;

/// The repository root (this crate lives at `crates/local`).
pub fn repo_root() -> PathBuf {
    match std::env::var_os("EC2PATCH_REPO_ROOT") {
        Some(root) => PathBuf::from(root),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").components().collect(),
    }
}

fn moto_dir(root: &Path) -> PathBuf {
    root.join("crates/local/moto")
}

/// Returns the virtualenv's python, creating the virtualenv first when it is missing or was
/// built from other requirements. Safe to call from several processes at once (a file lock
/// serialises them), and an interrupted install never leaves a half-built `.venv`: it is built
/// in a private directory and renamed into place.
///
/// The rename makes the venv's console scripts' shebangs point at the build directory, so run
/// tools as `python <venv>/bin/<tool>` (see [`venv_tool`]), never by their script directly.
pub fn ensure_venv(root: &Path) -> anyhow::Result<PathBuf> {
    ensure_venv_at(root, ".venv", &moto_dir(root).join("requirements.txt"))
}

/// Like [`ensure_venv`], for another virtualenv `<root>/<name>` built from `requirements_path`
/// (for example static-check tools that the emulator does not need).
pub fn ensure_venv_at(root: &Path, name: &str, requirements_path: &Path) -> anyhow::Result<PathBuf> {
    let venv = root.join(name);
    let requirements = std::fs::read_to_string(requirements_path)
        .with_context(|| format!("reading {}", requirements_path.display()))?;
    let stamp = venv.join(".ec2patch-requirements");
    let python = venv.join("bin/python");
    let current = || python.exists() && std::fs::read_to_string(&stamp).ok().as_deref() == Some(requirements.as_str());
    if current() {
        return Ok(python);
    }
    let lock_path = root.join(format!("{name}.lock"));
    let lock = std::fs::File::create(&lock_path).with_context(|| format!("creating {}", lock_path.display()))?;
    lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
    if current() {
        return Ok(python);
    }
    let staging = root.join(format!("{name}-build-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&staging);
    let host_python = std::env::var("EC2PATCH_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    eprintln!("ec2patch-local: installing {} into {} ...", requirements_path.display(), venv.display());
    run(Command::new(&host_python).arg("-m").arg("venv").arg(&staging), "creating the virtualenv")?;
    run(
        Command::new(staging.join("bin/python"))
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-r"])
            .arg(requirements_path),
        &format!("pip install -r {}", requirements_path.display()),
    )?;
    std::fs::write(staging.join(".ec2patch-requirements"), &requirements)?;
    if venv.exists() && std::fs::read_to_string(&stamp).ok().as_deref() != Some(requirements.as_str()) {
        // An outdated virtualenv: replace it.
        let _ = std::fs::remove_dir_all(&venv);
    }
    if std::fs::rename(&staging, &venv).is_err() {
        // Another process installed it first.
        let _ = std::fs::remove_dir_all(&staging);
    }
    if !python.exists() {
        bail!("virtualenv at {} has no bin/python after installation", venv.display());
    }
    Ok(python)
}

/// A command running one of the virtualenv's console scripts through its python.
pub fn venv_tool(python: &Path, tool: &str) -> std::process::Command {
    let mut command = std::process::Command::new(python);
    if let Some(bin) = python.parent() {
        command.arg(bin.join(tool));
    }
    command
}

fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let std_command = command.as_std();
    let output = std::process::Command::new(std_command.get_program())
        .args(std_command.get_args())
        .output()
        .with_context(|| what.to_owned())?;
    if !output.status.success() {
        bail!("{what} failed: {}\n{}", output.status, String::from_utf8_lossy(&output.stderr));
    }
    Ok(())
}

/// A running moto server; killed when dropped.
#[derive(Debug)]
pub struct MotoServer {
    pub port: u16,
    pub log: PathBuf,
    _child: Child,
}

impl MotoServer {
    /// Starts moto on `port`. Its Step Functions interpreter sends every service call (Lambda
    /// invokes included) to `localhost:$MOTO_PORT`, which we point at the router.
    pub async fn start(root: &Path, port: u16, router_port: u16) -> anyhow::Result<Self> {
        let python = ensure_venv(root)?;
        let log_dir = root.join("target/local-stack");
        std::fs::create_dir_all(&log_dir)?;
        let log = log_dir.join(format!("moto-{port}.log"));
        let log_file = std::fs::File::create(&log)?;
        let child = Command::new(python)
            .arg(moto_dir(root).join("launcher.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .env("MOTO_PORT", router_port.to_string())
            // Multi-account isolation depends on this never being set.
            .env_remove("MOTO_ACCOUNT_ID")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .context("starting moto")?;
        let server = Self { port, log, _child: child };
        server.wait_ready(Duration::from_secs(60)).await?;
        Ok(server)
    }

    async fn wait_ready(&self, timeout: Duration) -> anyhow::Result<()> {
        let started = Instant::now();
        let url = format!("http://127.0.0.1:{}/moto-api/", self.port);
        loop {
            if http::get_status(&url).await.is_ok_and(|status| status == 200) {
                return Ok(());
            }
            if started.elapsed() > timeout {
                let log = std::fs::read_to_string(&self.log).unwrap_or_default();
                bail!("moto did not answer on port {} within {timeout:?}; its log:\n{log}", self.port);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// A free TCP port on 127.0.0.1.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
