//! Approval links a mail scanner cannot use: what is signed, how, and the approval record.
//!
//! An email carries `GET <base>/callback?id=<approval id>&action=approve|reject&exp=<epoch>&sig=<hmac>`.
//! `sig` is HMAC-SHA256, keyed with a secret only the hub holds, over the id, the action and the
//! expiry, so none of them can be changed and a link cannot outlive its wave's approval window.
//! The Step Functions task token never leaves DynamoDB: not in the email, a URL, or a log line.
//! A GET only shows a confirmation page; only the page's POST decides (see ApprovalCallback).
//!
//! - [`record`]: the approval record in DynamoDB (to and from its item) and its statuses.
//! - [`decide`]: deciding an approval (one conditional write, then delivery to the waiting
//!   execution), shared by the callback's POST and the operator CLI; the pending approvals.
//! - [`email`]: the approval email and its reminder.
//! - [`monitor`]: what the scheduled approval monitor measures and when it reminds.

pub mod decide;
pub mod email;
pub mod monitor;
pub mod record;

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::{Error, Result};

/// Shortest HMAC key accepted (bytes): the key is as strong as SHA-256's block needs.
pub const MIN_KEY_BYTES: usize = 32;

/// What the person chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Approve,
    Reject,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Approve => "approve",
            Action::Reject => "reject",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "approve" => Some(Action::Approve),
            "reject" => Some(Action::Reject),
            _ => None,
        }
    }

    /// The approval status this action records.
    pub fn decision(self) -> ApprovalStatus {
        match self {
            Action::Approve => ApprovalStatus::Approved,
            Action::Reject => ApprovalStatus::Rejected,
        }
    }
}

/// A Step Functions task token. Its Debug and Display never show it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TaskToken(String);

impl TaskToken {
    pub fn new(token: String) -> Self {
        Self(token)
    }

    /// The token itself, for DynamoDB and `SendTask*` only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for TaskToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TaskToken(<redacted>)")
    }
}

/// A random approval id: 128 bits from the OS, as 32 hex digits.
pub fn new_approval_id() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|e| Error::ConfigError(format!("no randomness from the OS: {e}")))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Whether `id` has the shape [`new_approval_id`] produces (checked before any lookup).
pub fn is_approval_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The hub's HMAC keys for approval links: the current key, which signs, and any previous keys,
/// which still verify. Rotation without breaking links already mailed: store `<new>,<old>` in the
/// SSM parameter (current first, comma-separated), and drop `<old>` once the approval timeout has
/// passed since the change (every link signed with it has expired by then).
#[derive(Clone)]
pub struct SigningKey(Vec<Vec<u8>>);

/// Keys one SSM parameter may hold (current + previous ones).
pub const MAX_KEYS: usize = 4;

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

/// Why a link's signature is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Malformed,
    Mismatch,
}

impl SigningKey {
    pub fn new(key: &[u8]) -> Result<Self> {
        Self::with_previous(key, &[])
    }

    /// `current` signs; `previous` keys (newest first) only verify.
    pub fn with_previous(current: &[u8], previous: &[&[u8]]) -> Result<Self> {
        let keys: Vec<&[u8]> = std::iter::once(current).chain(previous.iter().copied()).collect();
        if keys.len() > MAX_KEYS {
            return Err(Error::ConfigError(format!(
                "the approval HMAC key parameter holds {} keys; at most {MAX_KEYS} (current first) are accepted",
                keys.len()
            )));
        }
        for (index, key) in keys.iter().enumerate() {
            if key.len() < MIN_KEY_BYTES {
                // The position, never the key: this message can reach a log.
                return Err(Error::ConfigError(format!(
                    "approval HMAC key #{} has {} bytes; at least {MIN_KEY_BYTES} are required",
                    index + 1,
                    key.len()
                )));
            }
        }
        Ok(Self(keys.into_iter().map(<[u8]>::to_vec).collect()))
    }

    /// Parses a parameter value: `<current>[,<previous>...]` (whitespace around keys ignored).
    pub fn parse(value: &str) -> Result<Self> {
        let keys: Vec<&[u8]> = value.split(',').map(|k| k.trim().as_bytes()).collect();
        match keys.split_first() {
            Some((current, previous)) => Self::with_previous(current, previous),
            None => Err(Error::ConfigError("the approval HMAC key parameter is empty".to_owned())),
        }
    }

    /// How many keys verify (1 + previous keys).
    pub fn key_count(&self) -> usize {
        self.0.len()
    }

    /// Reads the key from an SSM SecureString parameter (once per cold start).
    pub async fn load(ssm: &aws_sdk_ssm::Client, parameter: &str) -> Result<Self> {
        let output = ssm.get_parameter().name(parameter).with_decryption(true).send().await.map_err(|e| {
            Error::ConfigError(format!(
                "cannot read the approval HMAC key from SSM parameter {parameter}: {}",
                aws_smithy_types::error::display::DisplayErrorContext(&e)
            ))
        })?;
        let value = output
            .parameter
            .and_then(|p| p.value)
            .ok_or_else(|| Error::ConfigError(format!("SSM parameter {parameter} has no value")))?;
        Self::parse(&value).map_err(|e| Error::ConfigError(format!("SSM parameter {parameter}: {e}")))
    }

    fn mac(&self, id: &str, action: Action, expires_at: u64) -> Hmac<Sha256> {
        self.mac_with(0, id, action, expires_at)
    }

    fn mac_with(&self, key: usize, id: &str, action: Action, expires_at: u64) -> Hmac<Sha256> {
        let key = self.0.get(key).map(Vec::as_slice).unwrap_or_default();
        // new_from_slice accepts keys of any length for HMAC; the length was checked in new().
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).unwrap_or_else(|_| unreachable_hmac());
        // Unambiguous framing: fields are separated by a byte none of them can contain.
        mac.update(format!("ec2patch-approval-v1\n{id}\n{}\n{expires_at}", action.as_str()).as_bytes());
        mac
    }

    /// The `sig` query parameter for a link.
    pub fn sign(&self, id: &str, action: Action, expires_at: u64) -> String {
        URL_SAFE_NO_PAD.encode(self.mac(id, action, expires_at).finalize().into_bytes())
    }

    /// Checks `signature` in constant time (the comparison does not stop at the first wrong byte).
    pub fn verify(&self, id: &str, action: Action, expires_at: u64, signature: &str) -> Result<(), SignatureError> {
        let bytes = URL_SAFE_NO_PAD.decode(signature.as_bytes()).map_err(|_| SignatureError::Malformed)?;
        if bytes.len() != 32 {
            return Err(SignatureError::Malformed);
        }
        // Every key is tried (each comparison constant-time), so which key matched does not show
        // in the timing beyond the number of keys, which is not secret.
        let matched = (0..self.0.len())
            .map(|key| self.mac_with(key, id, action, expires_at).verify_slice(&bytes).is_ok())
            .fold(false, |any, ok| any | ok);
        if matched { Ok(()) } else { Err(SignatureError::Mismatch) }
    }

    /// The full link for `action`.
    pub fn link(&self, base_url: &str, id: &str, action: Action, expires_at: u64) -> String {
        format!(
            "{}/callback?id={id}&action={}&exp={expires_at}&sig={}",
            base_url.trim_end_matches('/'),
            action.as_str(),
            self.sign(id, action, expires_at)
        )
    }
}

#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    // HMAC takes keys of every length (long keys are hashed), so new_from_slice cannot fail.
    // Kept as a function so the invariant has one place and no panic path is hidden in a closure.
    #[allow(clippy::expect_used)]
    <Hmac<Sha256> as KeyInit>::new_from_slice(&[0u8; 32]).expect("a 32-byte HMAC key is always valid")
}

/// What a person is asked to approve: shown in the email and on the confirmation page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApprovalDetails {
    pub run_id: String,
    pub wave_index: usize,
    pub wave_name: String,
    pub dry_run: bool,
    /// The wave's accounts, at most [`MAX_LISTED_ACCOUNTS`] of them (`accounts_total` counts all).
    pub accounts: Vec<String>,
    pub accounts_total: usize,
    pub regions: Vec<String>,
    pub targets: usize,
    pub targets_failed: usize,
    pub instances: usize,
    pub patchable: usize,
    pub offline: usize,
    pub unmanaged: usize,
    pub analysis: Option<String>,
    pub manifest: crate::store::ObjectRef,
    /// When the links stop working and the wave stops waiting (epoch seconds).
    pub link_expires_at: u64,
}

/// Accounts listed by name in an approval; the manifest has every one.
pub const MAX_LISTED_ACCOUNTS: usize = 25;

pub use decide::{Decider, DecisionOutcome, Delivery, PendingApproval};
pub use record::{APPROVAL_SK, ApprovalRecord, ApprovalStatus, Decision, Notified, PENDING_INDEX_PK, approval_pk};

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::new(b"0123456789abcdef0123456789abcdef").unwrap()
    }

    #[test]
    fn a_signed_link_verifies_and_any_change_breaks_it() {
        let key = key();
        let id = new_approval_id().unwrap();
        let sig = key.sign(&id, Action::Approve, 1_900_000_000);
        assert_eq!(key.verify(&id, Action::Approve, 1_900_000_000, &sig), Ok(()));
        assert_eq!(key.verify(&id, Action::Reject, 1_900_000_000, &sig), Err(SignatureError::Mismatch));
        assert_eq!(key.verify(&id, Action::Approve, 1_900_000_001, &sig), Err(SignatureError::Mismatch));
        let other = new_approval_id().unwrap();
        assert_eq!(key.verify(&other, Action::Approve, 1_900_000_000, &sig), Err(SignatureError::Mismatch));
        let other_key = SigningKey::new(b"fedcba9876543210fedcba9876543210").unwrap();
        assert_eq!(other_key.verify(&id, Action::Approve, 1_900_000_000, &sig), Err(SignatureError::Mismatch));
    }

    #[test]
    fn malformed_signatures_are_told_apart_from_wrong_ones() {
        let key = key();
        let id = "0".repeat(32);
        assert_eq!(key.verify(&id, Action::Approve, 1, "not base64!"), Err(SignatureError::Malformed));
        assert_eq!(key.verify(&id, Action::Approve, 1, ""), Err(SignatureError::Malformed));
        assert_eq!(key.verify(&id, Action::Approve, 1, "AAAA"), Err(SignatureError::Malformed), "too short");
        let mut sig = key.sign(&id, Action::Approve, 1).into_bytes();
        sig[0] = if sig[0] == b'A' { b'B' } else { b'A' };
        assert_eq!(
            key.verify(&id, Action::Approve, 1, std::str::from_utf8(&sig).unwrap()),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn verification_uses_the_constant_time_comparison() {
        // verify_slice (hmac crate) compares with `subtle::ConstantTimeEq`. Wall-clock timing is
        // too noisy to assert in a test; what can be asserted is that a signature differing only
        // in its last byte is rejected exactly like one differing in its first, i.e. the
        // comparison looks at every byte.
        let key = key();
        let id = "a".repeat(32);
        let good = URL_SAFE_NO_PAD.decode(key.sign(&id, Action::Reject, 7)).unwrap();
        for position in [0, 15, 31] {
            let mut bad = good.clone();
            bad[position] ^= 1;
            assert_eq!(
                key.verify(&id, Action::Reject, 7, &URL_SAFE_NO_PAD.encode(&bad)),
                Err(SignatureError::Mismatch)
            );
        }
    }

    #[test]
    fn links_carry_id_action_expiry_and_signature_but_nothing_else() {
        let key = key();
        let link = key.link("https://abc.execute-api.us-east-1.amazonaws.com/", &"b".repeat(32), Action::Approve, 42);
        assert!(link.starts_with("https://abc.execute-api.us-east-1.amazonaws.com/callback?id=bbbb"), "{link}");
        assert!(link.contains("&action=approve&exp=42&sig="), "{link}");
    }

    #[test]
    fn ids_are_random_128_bit_hex() {
        let a = new_approval_id().unwrap();
        let b = new_approval_id().unwrap();
        assert!(is_approval_id(&a) && is_approval_id(&b));
        assert_ne!(a, b);
        assert!(!is_approval_id("../../etc/passwd"));
        assert!(!is_approval_id(&"A".repeat(32)));
    }

    #[test]
    fn links_signed_with_the_previous_key_still_verify_after_rotation() {
        let old = b"0123456789abcdef0123456789abcdef";
        let new = b"NEW-KEY-0123456789abcdef01234567";
        let before = SigningKey::new(old).unwrap();
        let id = new_approval_id().unwrap();
        let mailed = before.sign(&id, Action::Approve, 1_900_000_000);

        let rotated =
            SigningKey::parse(&format!("{},{}", std::str::from_utf8(new).unwrap(), std::str::from_utf8(old).unwrap()))
                .unwrap();
        assert_eq!(rotated.key_count(), 2);
        assert_eq!(rotated.verify(&id, Action::Approve, 1_900_000_000, &mailed), Ok(()), "the old link still works");
        // New links use the current key: the old key alone does not verify them.
        let fresh = rotated.sign(&id, Action::Approve, 1_900_000_000);
        assert_ne!(fresh, mailed);
        assert_eq!(SigningKey::new(new).unwrap().verify(&id, Action::Approve, 1_900_000_000, &fresh), Ok(()));
        assert_eq!(before.verify(&id, Action::Approve, 1_900_000_000, &fresh), Err(SignatureError::Mismatch));
        // Rotation does not loosen anything else: a changed field still fails under every key.
        assert_eq!(rotated.verify(&id, Action::Reject, 1_900_000_000, &mailed), Err(SignatureError::Mismatch));
        // Once the old key is dropped, its links stop working.
        let dropped = SigningKey::parse(std::str::from_utf8(new).unwrap()).unwrap();
        assert_eq!(dropped.verify(&id, Action::Approve, 1_900_000_000, &mailed), Err(SignatureError::Mismatch));
    }

    #[test]
    fn key_lists_are_checked_without_printing_keys() {
        let long = "k".repeat(32);
        assert!(SigningKey::parse(&format!("{long}, {long}")).is_ok(), "spaces around keys are ignored");
        let error = SigningKey::parse(&format!("{long},short-secret")).unwrap_err().to_string();
        assert!(error.contains("#2") && !error.contains("short-secret"), "{error}");
        assert!(SigningKey::parse(&[long.as_str(); MAX_KEYS + 1].join(",")).is_err());
        assert!(SigningKey::parse("").is_err());
        assert_eq!(format!("{:?}", SigningKey::parse(&format!("{long},{long}")).unwrap()), "SigningKey(<redacted>)");
    }

    #[test]
    fn short_keys_are_refused_and_secrets_are_not_printed() {
        assert!(SigningKey::new(b"short").is_err());
        assert_eq!(format!("{:?}", key()), "SigningKey(<redacted>)");
        assert_eq!(format!("{:?}", TaskToken::new("AQCEAAAAKgAAAAMAAAAA".into())), "TaskToken(<redacted>)");
    }
}
