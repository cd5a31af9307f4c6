//! The local AWS stack, used by the tests, the operator's local demo and the benchmarks.
//!
//! moto server (the AWS emulator, with its Step Functions interpreter switched on) runs as a
//! child process behind a Rust [`router::Router`]. The router answers Lambda `Invoke` requests
//! with our handlers in-process and forwards every other call to moto, counting calls per
//! operation and injecting faults on request. [`stack::LocalStack`] starts both, creates the
//! hub's identity, table, bucket and state machine, and seeds simulated spoke estates.

pub mod apigw;
pub mod approvals;
pub mod calls;
pub mod estate;
pub mod faults;
pub mod functions;
pub mod http;
pub mod moto;
pub mod router;
pub mod stack;

pub use approvals::{ApprovalInbox, ApproveOptions};
pub use estate::{Estate, EstateSpec, SeedKind};
pub use faults::FaultRule;
pub use router::Mail;
pub use stack::{HUB_ACCOUNT, LocalStack, LocalStackOptions};
