//! The Lambda bootstrap without the hub's configuration fails cleanly, naming what is missing.

#[test]
fn the_bootstrap_names_the_missing_configuration() {
    ec2patch_core::test_util::assert_refuses_to_start_unconfigured(env!("CARGO_BIN_EXE_change-freeze"));
}
