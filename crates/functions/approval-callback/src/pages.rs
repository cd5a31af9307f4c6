//! The HTML pages of the callback: rendered with askama (every value HTML-escaped), served with
//! headers that forbid framing, caching, sniffing and any script.

use askama::Template;
use aws_lambda_events::apigw::ApiGatewayV2httpResponse;
use aws_lambda_events::encodings::Body;
use ec2patch_core::approval::{Action, ApprovalDetails, Decision, SigningKey};
use ec2patch_core::time::format_epoch;
use http::{HeaderMap, HeaderValue};

use crate::LinkParams;

/// Security headers on every page.
pub const SECURITY_HEADERS: &[(&str, &str)] = &[
    ("content-type", "text/html; charset=utf-8"),
    ("cache-control", "no-store, max-age=0"),
    ("pragma", "no-cache"),
    ("x-frame-options", "DENY"),
    (
        "content-security-policy",
        "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("referrer-policy", "no-referrer"),
    ("x-content-type-options", "nosniff"),
];

/// A rendered page and its status code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    pub status: u16,
    pub html: String,
}

#[derive(Template)]
#[template(path = "confirm.html")]
struct ConfirmTemplate<'a> {
    verb: &'a str,
    details: &'a ApprovalDetails,
    wave_number: usize,
    operation: &'a str,
    accounts: String,
    regions: String,
    expires: String,
    analysis: &'a str,
    id: &'a str,
    exp: u64,
    approve_sig: String,
    reject_sig: String,
}

#[derive(Template)]
#[template(path = "decided.html")]
struct DecidedTemplate<'a> {
    wave_name: &'a str,
    run_id: &'a str,
    decision: &'a str,
    decided_by: &'a str,
    decided_at: &'a str,
    next_step: &'a str,
}

#[derive(Template)]
#[template(path = "problem.html")]
struct ProblemTemplate<'a> {
    title: &'a str,
    message: &'a str,
    decision: Option<&'a Decision>,
    changed_nothing: bool,
}

impl Page {
    fn render(status: u16, template: &impl Template) -> Self {
        match template.render() {
            Ok(html) => Self { status, html },
            // Rendering plain structs cannot fail in practice; still, never a 500 without a page.
            Err(error) => {
                tracing::error!(%error, "page rendering failed");
                Self {
                    status: 503,
                    html: "<!doctype html><title>Unavailable</title><p>Try again later.</p>".to_owned(),
                }
            }
        }
    }

    fn problem(status: u16, title: &str, message: &str) -> Self {
        Self::render(status, &ProblemTemplate { title, message, decision: None, changed_nothing: true })
    }

    /// The GET page: what will be patched, and the two forms that decide.
    pub fn confirm(details: &ApprovalDetails, params: &LinkParams, key: &SigningKey) -> Self {
        let mut accounts = details.accounts.join(", ");
        if details.accounts_total > details.accounts.len() {
            accounts
                .push_str(&format!(" and {} more (see the manifest)", details.accounts_total - details.accounts.len()));
        }
        let template = ConfirmTemplate {
            verb: match params.action {
                Action::Approve => "Approve",
                Action::Reject => "Reject",
            },
            details,
            wave_number: details.wave_index + 1,
            operation: if details.dry_run { "Scan only (dry run)" } else { "Install patches (AWS-RunPatchBaseline)" },
            accounts,
            regions: details.regions.join(", "),
            expires: format_epoch(details.link_expires_at),
            analysis: details.analysis.as_deref().unwrap_or("No analysis was run for this wave."),
            id: &params.id,
            exp: params.expires_at,
            approve_sig: key.sign(&params.id, Action::Approve, params.expires_at),
            reject_sig: key.sign(&params.id, Action::Reject, params.expires_at),
        };
        Self::render(200, &template)
    }

    pub fn decided(details: &ApprovalDetails, decision: &Decision) -> Self {
        let next_step = if decision.status == Action::Approve.decision() {
            "The run continues with this wave."
        } else {
            "This wave will not be patched."
        };
        Self::render(
            200,
            &DecidedTemplate {
                wave_name: &details.wave_name,
                run_id: &details.run_id,
                decision: decision.status.as_str(),
                decided_by: &decision.decided_by,
                decided_at: &decision.decided_at,
                next_step,
            },
        )
    }

    pub fn bad_request() -> Self {
        Self::problem(
            400,
            "This link is not valid",
            "The link is incomplete or has been changed. Open the link from the email exactly as it was sent.",
        )
    }

    pub fn not_found() -> Self {
        Self::problem(404, "No such approval", "There is no approval request with this id.")
    }

    pub fn already_decided(decision: Decision) -> Self {
        Self::render(
            409,
            &ProblemTemplate {
                title: "Already decided",
                message: "A decision on this wave has already been recorded; it cannot be changed.",
                decision: Some(&decision),
                changed_nothing: true,
            },
        )
    }

    pub fn expired() -> Self {
        Self::problem(410, "This link has expired", "The wave stopped waiting for a decision; it was not patched.")
    }

    /// The decision was recorded, but the execution had already stopped waiting.
    pub fn closed() -> Self {
        Self::render(
            410,
            &ProblemTemplate {
                title: "The wave is no longer waiting",
                message: "Your decision was recorded, but the run had already stopped waiting for it (timed out or stopped), so it has no effect.",
                decision: None,
                changed_nothing: false,
            },
        )
    }

    pub fn unavailable(decision_recorded: bool) -> Self {
        let message = if decision_recorded {
            "Your decision was recorded, but the run could not be resumed yet. Submit the form again in a minute."
        } else {
            "The approval service cannot reach its records right now. Try again in a minute."
        };
        Self::render(
            503,
            &ProblemTemplate {
                title: "Temporarily unavailable",
                message,
                decision: None,
                changed_nothing: !decision_recorded,
            },
        )
    }

    pub fn method_not_allowed() -> Self {
        Self::problem(405, "Method not allowed", "Open the link from the email in a browser.")
    }

    pub fn into_response(self) -> ApiGatewayV2httpResponse {
        let mut headers = HeaderMap::new();
        for (name, value) in SECURITY_HEADERS {
            headers.insert(*name, HeaderValue::from_static(value));
        }
        let mut response = ApiGatewayV2httpResponse::default();
        response.status_code = i64::from(self.status);
        response.headers = headers;
        response.body = Some(Body::Text(self.html));
        response.is_base64_encoded = false;
        response
    }
}
