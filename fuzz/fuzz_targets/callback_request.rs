//! Approval links: query strings and form bodies, and the signature over them.
//!
//! The input is used twice. As a whole, it is a query string or form body from anyone: it may
//! parse, but it verifies only if its `sig` is exactly the one the hub would have issued for its
//! id, action and expiry. Then its first 25 bytes choose a genuine link (id, action, expiry) and
//! the rest edits that link's text: an edited link verifies only if it still carries the very
//! same id, action, expiry and signature.

#![no_main]

use ec2patch_approval_callback::{LinkParams, parse_params};
use ec2patch_core::approval::Action;
use ec2patch_fuzz::KEY;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(params) = parse_params(data) {
        let expected = KEY.sign(&params.id, params.action, params.expires_at);
        let verified = KEY.verify(&params.id, params.action, params.expires_at, &params.sig).is_ok();
        assert_eq!(verified, params.sig == expected, "only the issued signature verifies: {params:?}");
        // What parsed re-encodes to something that parses the same (the confirmation page's
        // forms rely on this).
        let form = form_urlencoded::Serializer::new(String::new())
            .append_pair("id", &params.id)
            .append_pair("action", params.action.as_str())
            .append_pair("exp", &params.expires_at.to_string())
            .append_pair("sig", &params.sig)
            .finish();
        assert_eq!(parse_params(form.as_bytes()).as_ref(), Some(&params));
    }

    if data.len() < 25 {
        return;
    }
    let id: String = data[..16].iter().map(|b| format!("{b:02x}")).collect();
    let action = if data[16] & 1 == 0 { Action::Approve } else { Action::Reject };
    let mut exp_bytes = [0u8; 8];
    exp_bytes.copy_from_slice(&data[17..25]);
    let expires_at = u64::from_le_bytes(exp_bytes);
    let link = KEY.link("https://hub.example", &id, action, expires_at);
    let Some((_, query)) = link.split_once('?') else { panic!("a link has a query: {link}") };
    let genuine = LinkParams { id: id.clone(), action, expires_at, sig: KEY.sign(&id, action, expires_at) };
    assert_eq!(parse_params(query.as_bytes()).as_ref(), Some(&genuine), "a genuine link parses");
    assert!(KEY.verify(&id, action, expires_at, &genuine.sig).is_ok(), "a genuine link verifies");

    let mut edited = query.as_bytes().to_vec();
    for edit in data[25..].chunks_exact(3) {
        let position = usize::from(edit[1]) % (edited.len() + 1);
        match edit[0] % 3 {
            0 if position < edited.len() => edited[position] = edit[2],
            1 => edited.insert(position, edit[2]),
            2 if position < edited.len() => {
                edited.remove(position);
            }
            _ => {}
        }
    }
    if let Some(params) = parse_params(&edited)
        && KEY.verify(&params.id, params.action, params.expires_at, &params.sig).is_ok()
    {
        // Percent-encoding a character or writing `exp` with a leading `+` or zeros changes the
        // text but not the values; any other edit must have failed above.
        assert_eq!(params, genuine, "a tampered link verified: {:?}", String::from_utf8_lossy(&edited));
    }
});
