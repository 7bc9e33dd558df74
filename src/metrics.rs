//! Counters of what the [`GuestPass`](crate::GuestPass) service did, for
//! dashboards and alerts.
//!
//! The service counts with lock-free atomics in its shared state (every
//! clone of a service counts into the same counters); a counter only goes
//! up, from zero when the service is built. A step is counted once it took
//! effect: after its write was stored, or, for a mail, once the transport
//! accepted it. [`GuestPass::metrics`](crate::GuestPass::metrics) takes a
//! [`MetricsSnapshot`], and [`MetricsSnapshot::render_prometheus`] renders
//! it in the Prometheus text exposition format.
//!
//! The counters carry ids and categories only, never addresses, codes or
//! tokens.
//!
//! ```
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! use std::sync::Arc;
//! use guestpass::{GuestPass, InvitationRequest, Inviter};
//! use guestpass::directory::MemoryStore;
//! use guestpass::keys::SigningKey;
//! use guestpass::mail::Outbox;
//!
//! let gp = GuestPass::builder()
//!     .tenant("contoso", "Contoso", "contoso.example")
//!     .public_base_url("https://guests.contoso.example/")
//!     .signing_key(SigningKey::new("k1", [42u8; 32])?)
//!     .redirect_url("https://app.contoso.example/")
//!     .store(Arc::new(MemoryStore::new()))
//!     .mail(Arc::new(Outbox::new()))
//!     .build()?;
//! gp.invite(&Inviter::admin(None), InvitationRequest::new("alice@fabrikam.example", "https://app.contoso.example/"))
//!     .await?;
//! let metrics = gp.metrics();
//! assert_eq!(metrics.invitations_sent, 1);
//! assert!(metrics.render_prometheus().contains("\nguestpass_invitations_sent_total 1\n"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! # }).unwrap();
//! ```

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use crate::error::{Category, Error, PasscodeError};
use crate::flow::access::AccessReport;

/// The live counters, in the service's shared state.
#[derive(Debug, Default)]
pub(crate) struct Metrics {
    pub(crate) invitations_sent: AtomicU64,
    pub(crate) redemptions_started: AtomicU64,
    pub(crate) redemptions_completed: AtomicU64,
    pub(crate) redemptions_declined: AtomicU64,
    pub(crate) redemptions_blocked: AtomicU64,
    pub(crate) passcodes_sent: AtomicU64,
    pub(crate) passcodes_refused: AtomicU64,
    pub(crate) passcodes_locked: AtomicU64,
    pub(crate) sign_ups_started: AtomicU64,
    pub(crate) sign_ups_completed: AtomicU64,
    pub(crate) sign_ups_signed_in: AtomicU64,
    pub(crate) sign_ups_held: AtomicU64,
    pub(crate) sign_ups_blocked: AtomicU64,
    pub(crate) sign_ups_denied: AtomicU64,
    pub(crate) step_ups_required: AtomicU64,
    pub(crate) step_ups_passed: AtomicU64,
    pub(crate) step_ups_failed: AtomicU64,
    access_allow: AtomicU64,
    access_block: AtomicU64,
    access_require: AtomicU64,
    access_report_only: AtomicU64,
    errors: [AtomicU64; CATEGORIES.len()],
}

/// Every error category, in the order of [`ErrorCounts`].
const CATEGORIES: [Category; 10] = [
    Category::BadRequest,
    Category::Unauthorized,
    Category::Forbidden,
    Category::NotFound,
    Category::Conflict,
    Category::Gone,
    Category::TooManyRequests,
    Category::BadGateway,
    Category::Unavailable,
    Category::Internal,
];

/// The label of an error category: `bad_request`, `unauthorized`, ...
pub(crate) fn category_name(category: Category) -> &'static str {
    match category {
        Category::BadRequest => "bad_request",
        Category::Unauthorized => "unauthorized",
        Category::Forbidden => "forbidden",
        Category::NotFound => "not_found",
        Category::Conflict => "conflict",
        Category::Gone => "gone",
        Category::TooManyRequests => "too_many_requests",
        Category::BadGateway => "bad_gateway",
        Category::Unavailable => "unavailable",
        Category::Internal => "internal",
    }
}

/// The outcome a flow step's span records for an error: `rate_limited`
/// for a passcode that may not be sent now, `passcode_refused` for any
/// other passcode error, `step_up_code_refused` for a refused
/// authenticator code, else the error's category
/// ([`category_name`]).
pub(crate) fn error_outcome(error: &Error) -> &'static str {
    match error {
        Error::Passcode(PasscodeError::RateLimited { .. }) => "rate_limited",
        Error::Passcode(_) => "passcode_refused",
        Error::Totp(_) => "step_up_code_refused",
        other => category_name(other.category()),
    }
}

impl Metrics {
    /// Adds one to `counter`.
    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a flow step that ended with `error`.
    pub(crate) fn error(&self, error: &Error) {
        let category = error.category();
        if let Some(i) = CATEGORIES.iter().position(|c| *c == category)
            && let Some(counter) = self.errors.get(i)
        {
            Self::inc(counter);
        }
    }

    /// Counts one access decision and the report-only policies that
    /// applied to it.
    pub(crate) fn access(&self, report: &AccessReport) {
        let decision = report.decision.as_str();
        if decision.starts_with("allow") {
            Self::inc(&self.access_allow);
        } else if decision.starts_with("block") {
            Self::inc(&self.access_block);
        } else {
            Self::inc(&self.access_require);
        }
        let report_only = report
            .policies
            .iter()
            .filter(|p| p.contains(" (report-only): applied"))
            .count();
        self.access_report_only
            .fetch_add(u64::try_from(report_only).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// The counters now.
    pub(crate) fn snapshot(&self) -> MetricsSnapshot {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        let error = |category: Category| {
            CATEGORIES
                .iter()
                .position(|c| *c == category)
                .and_then(|i| self.errors.get(i))
                .map_or(0, get)
        };
        MetricsSnapshot {
            invitations_sent: get(&self.invitations_sent),
            redemptions_started: get(&self.redemptions_started),
            redemptions_completed: get(&self.redemptions_completed),
            redemptions_declined: get(&self.redemptions_declined),
            redemptions_blocked: get(&self.redemptions_blocked),
            passcodes_sent: get(&self.passcodes_sent),
            passcodes_refused: get(&self.passcodes_refused),
            passcodes_locked: get(&self.passcodes_locked),
            sign_ups_started: get(&self.sign_ups_started),
            sign_ups_completed: get(&self.sign_ups_completed),
            sign_ups_signed_in: get(&self.sign_ups_signed_in),
            sign_ups_held: get(&self.sign_ups_held),
            sign_ups_blocked: get(&self.sign_ups_blocked),
            sign_ups_denied: get(&self.sign_ups_denied),
            step_ups_required: get(&self.step_ups_required),
            step_ups_passed: get(&self.step_ups_passed),
            step_ups_failed: get(&self.step_ups_failed),
            access: AccessCounts {
                allow: get(&self.access_allow),
                block: get(&self.access_block),
                require: get(&self.access_require),
                report_only: get(&self.access_report_only),
            },
            errors: ErrorCounts {
                bad_request: error(Category::BadRequest),
                unauthorized: error(Category::Unauthorized),
                forbidden: error(Category::Forbidden),
                not_found: error(Category::NotFound),
                conflict: error(Category::Conflict),
                gone: error(Category::Gone),
                too_many_requests: error(Category::TooManyRequests),
                bad_gateway: error(Category::BadGateway),
                unavailable: error(Category::Unavailable),
                internal: error(Category::Internal),
            },
        }
    }
}

/// The service's counters at one moment
/// ([`GuestPass::metrics`](crate::GuestPass::metrics)). Each counts from
/// zero since the service was built; the Prometheus name of each field is
/// `guestpass_<field>_total`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct MetricsSnapshot {
    /// Invitations stored by [`invite`](crate::GuestPass::invite),
    /// [`resend`](crate::GuestPass::resend) and redemption resets, whether
    /// or not an invitation mail went out (`sendInvitationMessage`).
    pub invitations_sent: u64,
    /// Redemption flows opened by
    /// [`start_redemption`](crate::GuestPass::start_redemption) (also when
    /// the passcode mail then failed).
    pub redemptions_started: u64,
    /// Redemptions completed: the guest accepted, the invitation
    /// `Completed`.
    pub redemptions_completed: u64,
    /// Redemptions the guest declined (consent or terms of use).
    pub redemptions_declined: u64,
    /// Redemptions that ended on a block page (conditional access, the
    /// cross-organisation settings, or too many wrong authenticator codes).
    pub redemptions_blocked: u64,
    /// One-time passcode mails the transport accepted: redemption and
    /// sign-up passcodes, and emailed step-up codes.
    pub passcodes_sent: u64,
    /// Typed one-time passcodes (redemption, sign-up and emailed step-up
    /// codes) that were checked and refused, each a counted attempt.
    /// Codes refused before counting (malformed, expired, already used)
    /// count only under [`errors`](Self::errors) (when the step failed).
    pub passcodes_refused: u64,
    /// Addresses locked: refused passcodes that reached the address's
    /// limit of consecutive failures.
    pub passcodes_locked: u64,
    /// Sign-up flows opened by
    /// [`start_sign_up`](crate::GuestPass::start_sign_up).
    pub sign_ups_started: u64,
    /// Sign-up flows that completed with a new account.
    pub sign_ups_completed: u64,
    /// Sign-up flows that completed by signing an existing account in.
    pub sign_ups_signed_in: u64,
    /// Sign-up flows held for an administrator's approval.
    pub sign_ups_held: u64,
    /// Sign-up flows that ended on a block page (an API connector,
    /// conditional access, the cross-organisation settings, a disabled
    /// account, too many wrong authenticator codes).
    pub sign_ups_blocked: u64,
    /// Sign-up flows denied, by the approver or by an administrator.
    pub sign_ups_denied: u64,
    /// Flow steps (redemption or sign-up) that moved a flow into the
    /// multi-factor step-up that conditional access asked for.
    pub step_ups_required: u64,
    /// Flow steps that took a flow past the step-up: the code was
    /// accepted and the flow went on (not to a block page).
    pub step_ups_passed: u64,
    /// Step-up codes refused: an emailed code checked and refused, or a
    /// wrong or replayed authenticator code.
    pub step_ups_failed: u64,
    /// Access decisions of conditional access and the cross-organisation
    /// settings.
    pub access: AccessCounts,
    /// Flow steps (every public step of the service) that failed, by the
    /// error's category.
    pub errors: ErrorCounts,
}

/// Access decisions, one per evaluation at the end of a sign-in, sign-up
/// or redemption (again after each step-up or accepted terms).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct AccessCounts {
    /// Decisions that let the sign-in in as it was.
    pub allow: u64,
    /// Decisions that blocked (a policy's block, or the cross-organisation
    /// settings).
    pub block: u64,
    /// Decisions that required more: a step-up, terms of use, a device
    /// (or a session limit only).
    pub require: u64,
    /// Report-only policies that applied to a decision: what they would
    /// have enforced (they never change the decision).
    pub report_only: u64,
}

/// Failed flow steps by [`Category`].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ErrorCounts {
    /// [`Category::BadRequest`].
    pub bad_request: u64,
    /// [`Category::Unauthorized`] (a wrong passcode).
    pub unauthorized: u64,
    /// [`Category::Forbidden`].
    pub forbidden: u64,
    /// [`Category::NotFound`].
    pub not_found: u64,
    /// [`Category::Conflict`].
    pub conflict: u64,
    /// [`Category::Gone`].
    pub gone: u64,
    /// [`Category::TooManyRequests`].
    pub too_many_requests: u64,
    /// [`Category::BadGateway`].
    pub bad_gateway: u64,
    /// [`Category::Unavailable`].
    pub unavailable: u64,
    /// [`Category::Internal`].
    pub internal: u64,
}

impl ErrorCounts {
    /// The count of `category`.
    pub fn get(&self, category: Category) -> u64 {
        match category {
            Category::BadRequest => self.bad_request,
            Category::Unauthorized => self.unauthorized,
            Category::Forbidden => self.forbidden,
            Category::NotFound => self.not_found,
            Category::Conflict => self.conflict,
            Category::Gone => self.gone,
            Category::TooManyRequests => self.too_many_requests,
            Category::BadGateway => self.bad_gateway,
            Category::Unavailable => self.unavailable,
            Category::Internal => self.internal,
        }
    }

    /// Failed steps in all.
    pub fn total(&self) -> u64 {
        CATEGORIES.iter().map(|c| self.get(*c)).sum()
    }
}

impl MetricsSnapshot {
    /// The counters in the Prometheus text exposition format (version
    /// 0.0.4): per counter a `# HELP` and a `# TYPE … counter` line, then
    /// `guestpass_<name>_total <value>`; access decisions with a
    /// `decision` label (`allow`, `block`, `require`), errors with a
    /// `category` label (`bad_request`, `unauthorized`, ...). Serve it as
    /// `text/plain; version=0.0.4`.
    pub fn render_prometheus(&self) -> String {
        let plain: [(&str, &str, u64); 17] = [
            (
                "invitations_sent",
                "Invitations stored by invite, resend and redemption resets.",
                self.invitations_sent,
            ),
            (
                "redemptions_started",
                "Redemption flows opened.",
                self.redemptions_started,
            ),
            (
                "redemptions_completed",
                "Redemptions completed.",
                self.redemptions_completed,
            ),
            (
                "redemptions_declined",
                "Redemptions declined by the guest (consent or terms of use).",
                self.redemptions_declined,
            ),
            (
                "redemptions_blocked",
                "Redemptions that ended on a block page.",
                self.redemptions_blocked,
            ),
            (
                "passcodes_sent",
                "One-time passcode mails accepted by the transport.",
                self.passcodes_sent,
            ),
            (
                "passcodes_refused",
                "Typed one-time passcodes checked and refused (counted attempts).",
                self.passcodes_refused,
            ),
            (
                "passcodes_locked",
                "Addresses locked after too many consecutive passcode failures.",
                self.passcodes_locked,
            ),
            ("sign_ups_started", "Sign-up flows opened.", self.sign_ups_started),
            (
                "sign_ups_completed",
                "Sign-up flows completed with a new account.",
                self.sign_ups_completed,
            ),
            (
                "sign_ups_signed_in",
                "Sign-up flows completed by signing an existing account in.",
                self.sign_ups_signed_in,
            ),
            (
                "sign_ups_held",
                "Sign-up flows held for approval.",
                self.sign_ups_held,
            ),
            (
                "sign_ups_blocked",
                "Sign-up flows that ended on a block page.",
                self.sign_ups_blocked,
            ),
            (
                "sign_ups_denied",
                "Sign-up flows denied by the approver or an administrator.",
                self.sign_ups_denied,
            ),
            (
                "step_ups_required",
                "Flows moved into a multi-factor step-up.",
                self.step_ups_required,
            ),
            (
                "step_ups_passed",
                "Flows taken past the multi-factor step-up.",
                self.step_ups_passed,
            ),
            ("step_ups_failed", "Step-up codes refused.", self.step_ups_failed),
        ];
        let mut out = String::new();
        for (name, help, value) in plain {
            header(&mut out, name, help);
            let _ = writeln!(out, "guestpass_{name}_total {value}");
        }
        header(
            &mut out,
            "access_decisions",
            "Access decisions of conditional access and the cross-organisation settings.",
        );
        for (decision, value) in [
            ("allow", self.access.allow),
            ("block", self.access.block),
            ("require", self.access.require),
        ] {
            let _ = writeln!(
                out,
                "guestpass_access_decisions_total{{decision=\"{decision}\"}} {value}"
            );
        }
        header(
            &mut out,
            "access_report_only",
            "Report-only policies that applied to an access decision.",
        );
        let _ = writeln!(
            out,
            "guestpass_access_report_only_total {}",
            self.access.report_only
        );
        header(&mut out, "errors", "Flow steps that failed, by error category.");
        for category in CATEGORIES {
            let _ = writeln!(
                out,
                "guestpass_errors_total{{category=\"{}\"}} {}",
                category_name(category),
                self.errors.get(category)
            );
        }
        out
    }
}

/// The `# HELP` and `# TYPE` lines of counter `guestpass_<name>_total`.
fn header(out: &mut String, name: &str, help: &str) {
    let _ = writeln!(out, "# HELP guestpass_{name}_total {help}");
    let _ = writeln!(out, "# TYPE guestpass_{name}_total counter");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_has_a_slot() {
        let m = Metrics::default();
        for c in CATEGORIES {
            m.error(&match c {
                Category::NotFound => Error::NotFound { what: "user" },
                _ => Error::from(PasscodeError::Malformed),
            });
        }
        let s = m.snapshot();
        assert_eq!(s.errors.not_found, 1);
        assert_eq!(s.errors.bad_request, 9);
        assert_eq!(s.errors.total(), 10);
    }

    #[test]
    fn access_decisions_are_classified() {
        let m = Metrics::default();
        let report = |decision: &str, policies: &[&str]| AccessReport {
            application_id: "app".to_owned(),
            decision: decision.to_owned(),
            policies: policies.iter().map(|p| (*p).to_owned()).collect(),
        };
        m.access(&report("allow", &["`A` (report-only): applied: would block"]));
        m.access(&report("block (by `B`)", &["`B`: applied: block"]));
        m.access(&report("require mfa", &["`C` (report-only): not applied: users"]));
        let s = m.snapshot().access;
        assert_eq!((s.allow, s.block, s.require, s.report_only), (1, 1, 1, 1));
    }

    #[test]
    fn prometheus_text_format() {
        let text = MetricsSnapshot {
            passcodes_sent: 3,
            ..MetricsSnapshot::default()
        }
        .render_prometheus();
        assert!(text.contains(
            "# HELP guestpass_passcodes_sent_total One-time passcode mails accepted by the transport.\n\
             # TYPE guestpass_passcodes_sent_total counter\n\
             guestpass_passcodes_sent_total 3\n"
        ));
        assert!(text.contains("guestpass_errors_total{category=\"too_many_requests\"} 0\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(
                line.starts_with("guestpass_") && line.contains("_total"),
                "{line}"
            );
        }
    }
}
