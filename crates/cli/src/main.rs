//! `ec2patch`: see the crate docs and `ec2patch --help`.

use std::process::ExitCode;

use clap::Parser;
use ec2patch_cli::{Cli, InvalidInput, run};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            if error.downcast_ref::<InvalidInput>().is_some() { ExitCode::from(2) } else { ExitCode::FAILURE }
        }
    }
}
