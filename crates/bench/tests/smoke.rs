//! The benchmark at small scale, as CI runs it: it must complete and produce every figure (each a
//! finite number). What the figures say is docs/performance.md's business, not this test's.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::LazyLock;
use std::time::Instant;

use ec2patch_bench::{FUNCTION_CRATES, Options};

/// Every figure a run reports, whatever the scale.
const KEYS: &[&str] = &[
    "fanout.inventorySeconds",
    "fanout.latencyInventorySeconds",
    "fanout.latencyInventoryWiderSeconds",
    "cost.per1000TargetsDollars",
    "cost.vsFixedPoll",
    "cost.perTargetDollars",
    "cost.waveAtScaleDollars",
    "cost.billPer1000TargetsDollars",
    "cost.billPerInstanceDollars",
    "history.parentEvents",
    "history.largestChildEvents",
    "payload.largestBytes",
    "calls.spokePerTarget.5",
    "calls.allPerTarget.5",
    "calls.spokePerTarget.50",
    "calls.allPerTarget.50",
    "calls.pollsPerTarget",
    "polling.delaySeconds",
];

/// The function binaries (one per function crate).
static BINARIES: LazyLock<Vec<&str>> = LazyLock::new(|| ec2patch_local::functions::binaries().collect());

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_small_run_completes_and_produces_every_figure() {
    let started = Instant::now();
    let root = ec2patch_local::moto::repo_root();
    let options = Options::smoke(&root);
    // `cargo test` builds the binaries of crates with integration tests, which every function
    // crate has (its tests/bootstrap.rs): with the same features as the test build, so nothing
    // is compiled twice. Build them only when missing (a filtered `cargo test -p ...` run).
    assert_eq!(BINARIES.len(), FUNCTION_CRATES.len());
    if BINARIES.iter().any(|bin| !options.binaries.join(bin).exists()) {
        ec2patch_bench::build(&root, "dev").unwrap();
    }
    let results = ec2patch_bench::run(&root, &options).await.unwrap();

    assert_eq!(results.definition_check, "OK", "the emulator's parser refuses the definition");
    let keys = ec2patch_bench::figure_keys(&results);
    for bin in BINARIES.iter() {
        for figure in ["millis", "peakRssMib"] {
            let key = format!("coldStart.{bin}.{figure}");
            assert!(keys.contains(&key.as_str()), "no {key} in {keys:?}");
        }
    }
    for key in KEYS {
        assert!(keys.contains(key), "no {key} in {keys:?}");
    }
    for figure in &results.figures {
        assert!(figure.value.is_finite(), "{} is {}", figure.key, figure.value);
        if let Some(ratio) = figure.ratio {
            assert!(ratio.is_finite(), "{}'s ratio is {ratio}", figure.key);
        }
        assert!(figure.target.is_none() || figure.met.is_some(), "{} has a target but no verdict", figure.key);
    }

    // The JSON and the table carry all of them.
    ec2patch_bench::write_json(&results, &options.output).unwrap();
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&options.output).unwrap()).unwrap();
    assert_eq!(json["figures"].as_array().unwrap().len(), results.figures.len());
    assert!(json["machine"]["cpus"].as_u64().unwrap() >= 1);
    let table = ec2patch_bench::table(&results).to_string();
    assert!(results.figures.iter().all(|f| table.contains(&f.label)), "{table}");
    println!("{table}\nsmoke run: {:.1} s", started.elapsed().as_secs_f64());
}
