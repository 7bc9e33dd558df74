//! Structured logs and metrics: every flow step runs in a `tracing` span
//! with the flow's public id, the step and its outcome, and no span or
//! event carries a secret or an address; the service's counters follow
//! what happened and render in the Prometheus text format.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use common::*;
use guestpass::{ConsentDecision, Error, Finished, FlowAction, FlowPage, FlowStep, RedemptionStep};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

// ---------------------------------------------------------------------------
// A subscriber that keeps every span and event
// ---------------------------------------------------------------------------

/// A span as recorded: its name and its fields (as recorded last).
#[derive(Debug, Clone)]
struct SpanRecord {
    name: &'static str,
    metadata: &'static Metadata<'static>,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Captured {
    spans: Vec<SpanRecord>,
    /// Every event's fields, the message under `message`.
    events: Vec<BTreeMap<String, String>>,
    /// The entered spans, innermost last.
    entered: Vec<Id>,
}

#[derive(Debug, Default)]
struct Capture {
    next: AtomicU64,
    captured: Arc<Mutex<Captured>>,
}

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        span.record(&mut Fields(&mut fields));
        let mut c = self.captured.lock().unwrap();
        c.spans.push(SpanRecord {
            name: span.metadata().name(),
            metadata: span.metadata(),
            fields,
        });
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        assert_eq!(n as usize, c.spans.len() - 1);
        Id::from_u64(n + 1)
    }

    fn record(&self, span: &Id, values: &Record<'_>) {
        let mut c = self.captured.lock().unwrap();
        let i = usize::try_from(span.into_u64() - 1).unwrap();
        values.record(&mut Fields(&mut c.spans[i].fields));
    }

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        self.captured.lock().unwrap().events.push(fields);
    }

    fn enter(&self, span: &Id) {
        self.captured.lock().unwrap().entered.push(span.clone());
    }

    fn exit(&self, span: &Id) {
        let mut c = self.captured.lock().unwrap();
        if let Some(i) = c.entered.iter().rposition(|s| s == span) {
            c.entered.remove(i);
        }
    }

    fn current_span(&self) -> tracing_core::span::Current {
        let c = self.captured.lock().unwrap();
        match c.entered.last() {
            Some(id) => {
                let i = usize::try_from(id.into_u64() - 1).unwrap();
                tracing_core::span::Current::new(id.clone(), c.spans[i].metadata)
            }
            None => tracing_core::span::Current::none(),
        }
    }
}

impl Captured {
    /// The spans of `step`, in the order they opened.
    fn steps(&self, step: &str) -> Vec<&SpanRecord> {
        self.spans
            .iter()
            .filter(|s| s.fields.get("step").map(String::as_str) == Some(step))
            .collect()
    }

    /// Every recorded text: span names, field names and values, events.
    fn texts(&self) -> Vec<String> {
        let mut out = Vec::new();
        for s in &self.spans {
            out.push(s.name.to_owned());
            for (k, v) in &s.fields {
                out.push(k.clone());
                out.push(v.clone());
            }
        }
        for e in &self.events {
            for (k, v) in e {
                out.push(k.clone());
                out.push(v.clone());
            }
        }
        out
    }

    /// Fails when any recorded text contains one of `secrets`.
    fn assert_free_of(&self, secrets: &[String]) {
        let texts = self.texts();
        for secret in secrets {
            assert!(secret.len() >= 8, "too short to search for: {secret:?}");
            for text in &texts {
                assert!(
                    !text.to_lowercase().contains(&secret.to_lowercase()),
                    "a span or event carries a secret: {text:?}"
                );
            }
        }
    }
}

/// Runs `f` with the capturing subscriber as the thread's default (the
/// tests run on a current-thread runtime).
async fn captured<F: Future<Output = ()>>(f: impl FnOnce() -> F) -> Arc<Mutex<Captured>> {
    let capture = Capture::default();
    let captured = capture.captured.clone();
    let _guard = tracing::subscriber::set_default(capture);
    f().await;
    captured
}

fn field<'a>(span: &'a SpanRecord, name: &str) -> &'a str {
    span.fields
        .get(name)
        .map(String::as_str)
        .unwrap_or_else(|| panic!("span {span:?} has no `{name}`"))
}

// ---------------------------------------------------------------------------
// Spans
// ---------------------------------------------------------------------------

const ALICE: &str = "alice@fabrikam.example";
const ADA: &str = "ada@fabrikam.example";

#[tokio::test]
async fn a_redemption_is_traced_step_by_step_without_secrets() {
    let h = Harness::new();
    let mut secrets = vec![ALICE.to_owned()];
    let mut flow_id = None;
    let mut invitation_id = None;
    let c = captured(|| async {
        let invitation = h.invite(ALICE).await;
        invitation_id = Some(invitation.id);
        let link = invitation.invite_redeem_url.clone().unwrap();
        secrets.push(link.expose().to_owned());
        let ticket = h.ticket_for(ALICE);
        secrets.push(ticket.clone());
        h.gp.view_redemption(&ticket).await.unwrap();
        let started = h.gp.start_redemption(&ticket).await.unwrap();
        let handle = started.handle.expose().to_owned();
        secrets.push(handle.clone());
        flow_id = Some(h.session(&handle).await.unwrap().value.id);
        let code = h.code_for(ALICE);
        let wrong = wrong_code(&code);
        secrets.push(code.clone());
        secrets.push(wrong.clone());
        let e = h.gp.submit_passcode(&handle, &wrong).await.unwrap_err();
        assert!(matches!(e, Error::Passcode(_)), "{e:?}");
        let step = h.gp.submit_passcode(&handle, &code).await.unwrap();
        assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
        let reload = h.gp.redemption_step(&handle).await.unwrap();
        assert!(matches!(reload, RedemptionStep::Consent { .. }), "{reload:?}");
        let done =
            h.gp.finish_redemption(&handle, ConsentDecision::Accept)
                .await
                .unwrap();
        assert!(matches!(done, Finished::Redeemed(_)), "{done:?}");
        let reload = h.gp.redemption_step(&handle).await.unwrap();
        assert!(matches!(reload, RedemptionStep::Redeemed(_)), "{reload:?}");
        // A step on the finished flow fails; its span says how.
        let e = h.gp.submit_passcode(&handle, &code).await.unwrap_err();
        assert!(matches!(e, Error::Redemption(_) | Error::Ticket(_)), "{e:?}");
        h.gp.purge_expired(h.now(), 100).await.unwrap();
    })
    .await;
    let c = c.lock().unwrap();
    let flow_id = flow_id.unwrap().to_string();
    let invitation_id = invitation_id.unwrap().to_string();

    let invite = c.steps("invite");
    assert_eq!(invite.len(), 1, "{:?}", c.spans);
    assert_eq!(invite[0].name, "invite");
    assert_eq!(field(invite[0], "outcome"), "invited");
    assert_eq!(field(invite[0], "invitation_id"), invitation_id);
    assert!(invite[0].fields.contains_key("user_id"));

    let view = c.steps("view_redemption");
    assert_eq!(field(view[0], "invitation_id"), invitation_id);
    assert_eq!(field(view[0], "outcome"), "viewed");

    let start = c.steps("start_redemption");
    assert_eq!(start.len(), 1);
    assert_eq!(start[0].name, "start_redemption_from");
    assert_eq!(field(start[0], "flow_id"), flow_id);
    assert_eq!(field(start[0], "invitation_id"), invitation_id);
    assert_eq!(field(start[0], "outcome"), "enter_passcode");

    let passcode = c.steps("passcode");
    let outcomes: Vec<&str> = passcode.iter().map(|s| field(s, "outcome")).collect();
    assert_eq!(outcomes, ["passcode_refused", "consent", "conflict"]);
    for s in &passcode {
        assert_eq!(field(s, "flow_id"), flow_id);
    }

    let views: Vec<&str> = c.steps("view").iter().map(|s| field(s, "outcome")).collect();
    assert_eq!(views, ["consent", "redeemed"]);

    let consent = c.steps("consent");
    assert_eq!(field(consent[0], "flow_id"), flow_id);
    assert_eq!(field(consent[0], "accept"), "true");
    assert_eq!(field(consent[0], "outcome"), "redeemed");

    let purge = c.steps("purge");
    assert_eq!(field(purge[0], "outcome"), "purged");
    assert!(purge[0].fields.contains_key("flows"));

    c.assert_free_of(&secrets);
}

#[tokio::test]
async fn a_sign_up_is_traced_step_by_step_without_secrets() {
    let h = signup_harness(signup_config(r#""attributes": [{"name": "givenName"}]"#), |b| b);
    let mut secrets = vec![ADA.to_owned()];
    let mut flow_id = None;
    let c = captured(|| async {
        let started = h.gp.start_sign_up(signup_request()).await.unwrap();
        let handle = started.handle.expose().to_owned();
        secrets.push(handle.clone());
        flow_id = Some(started.page.flow_id);
        let mut page = started.page;
        let post = async |page: &FlowPage, action: FlowAction, secrets: &mut Vec<String>| {
            secrets.push(page.csrf_token.expose().to_owned());
            h.gp.advance_flow(&handle, page.csrf_token.expose(), action).await
        };
        page = post(&page, FlowAction::ChooseProvider("emailOtp".into()), &mut secrets)
            .await
            .unwrap();
        page = post(&page, FlowAction::SubmitEmail(ADA.to_owned()), &mut secrets)
            .await
            .unwrap();
        let earlier = page.csrf_token.expose().to_owned();
        let code = h.code_for(ADA);
        let wrong = wrong_code(&code);
        secrets.push(code.clone());
        secrets.push(wrong.clone());
        page = post(&page, FlowAction::SubmitPasscode(wrong.into()), &mut secrets)
            .await
            .unwrap();
        assert!(
            matches!(page.step, FlowStep::EnterPasscode { refused: Some(_), .. }),
            "{:?}",
            page.step
        );
        page = post(&page, FlowAction::SubmitPasscode(code.into()), &mut secrets)
            .await
            .unwrap();
        h.gp.view_flow(&handle).await.unwrap();
        // A stale token is refused before anything is decided.
        let stale = h.gp.advance_flow(&handle, &earlier, FlowAction::Resume).await;
        assert!(stale.is_err());
        let done = post(
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
            &mut secrets,
        )
        .await
        .unwrap();
        let FlowStep::Completed(completion) = &done.step else {
            panic!("{:?}", done.step)
        };
        secrets.push(completion.id_token.expose().to_owned());
    })
    .await;
    let c = c.lock().unwrap();
    let flow_id = flow_id.unwrap().to_string();

    let start = c.steps("start_sign_up");
    assert_eq!(start.len(), 1);
    assert_eq!(field(start[0], "flow_id"), flow_id);
    assert_eq!(field(start[0], "client_id"), APP);
    assert_eq!(field(start[0], "user_flow"), USER_FLOW);
    assert_eq!(field(start[0], "outcome"), "choose_provider");

    let advance = c.steps("advance_flow");
    let seen: Vec<(&str, &str)> = advance
        .iter()
        .map(|s| (field(s, "action"), field(s, "outcome")))
        .collect();
    assert_eq!(
        seen,
        [
            ("chooseProvider", "enter_email"),
            ("submitEmail", "enter_passcode"),
            ("submitPasscode", "passcode_refused"),
            ("submitPasscode", "collect_attributes"),
            ("resume", "forbidden"),
            ("submitAttributes", "signed_up"),
        ]
    );
    for s in &advance {
        assert_eq!(field(s, "flow_id"), flow_id);
    }
    assert_eq!(field(c.steps("view_flow")[0], "outcome"), "collect_attributes");

    c.assert_free_of(&secrets);
}

#[tokio::test]
async fn admin_and_invitation_steps_have_spans() {
    let h = signup_harness(signup_config(r#""attributes": [{"name": "givenName"}]"#), |b| b);
    let c = captured(|| async {
        let inv = h.invite(ALICE).await;
        let user_id = inv.invited_user.id;
        h.gp.resend(&guestpass::Inviter::admin(None), user_id)
            .await
            .unwrap();
        h.gp.revoke(&guestpass::Inviter::admin(None), user_id)
            .await
            .unwrap();
        let e =
            h.gp.revoke(&guestpass::Inviter::admin(None), user_id)
                .await
                .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
        let e =
            h.gp.approve_sign_up(
                &guestpass::Inviter::admin(None),
                guestpass::id::Id::from_bytes([1; 16]),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotFound { .. }), "{e:?}");
    })
    .await;
    let c = c.lock().unwrap();
    assert_eq!(field(c.steps("resend")[0], "outcome"), "invited");
    // The resend's invitation is recorded on its own span (no nested invite span).
    assert!(c.steps("resend")[0].fields.contains_key("invitation_id"));
    assert_eq!(c.steps("invite").len(), 1);
    let revokes: Vec<&str> = c.steps("revoke").iter().map(|s| field(s, "outcome")).collect();
    assert_eq!(revokes, ["revoked", "not_found"]);
    assert_eq!(field(c.steps("approve_sign_up")[0], "outcome"), "not_found");
    c.assert_free_of(&[ALICE.to_owned()]);
}

#[tokio::test]
async fn a_step_up_is_traced_and_counted() {
    use guestpass::flow::access::{StepUpMethod, StepUpPage};
    use guestpass::idp::totp::{TotpSecret, step_at};
    let mfa = guestpass::policy::PolicySet::from_json(
        r#"{"policies": [{
          "displayName": "Require MFA for guests", "state": "enabled",
          "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
                         "applications": {"includeApplications": ["All"]}, "clientAppTypes": ["all"]},
          "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}]}"#,
    )
    .unwrap();
    let h = Harness::with(|b| b.conditional_access(mfa));
    let mut secrets = vec![ALICE.to_owned()];
    let c = captured(|| async {
        h.invite(ALICE).await;
        let ticket = h.ticket_for(ALICE);
        let handle = h.to_consent(&ticket, ALICE).await;
        secrets.push(handle.clone());
        let out =
            h.gp.finish_redemption(&handle, ConsentDecision::Accept)
                .await
                .unwrap();
        assert!(matches!(out, Finished::StepUp(_)), "{out:?}");
        let RedemptionStep::StepUp(StepUpPage::EnrollAuthenticator { otpauth_uri, secret }) =
            h.gp.choose_step_up(&handle, StepUpMethod::Authenticator)
                .await
                .unwrap()
        else {
            panic!("expected an enrolment")
        };
        secrets.push(otpauth_uri.expose().to_owned());
        secrets.push(secret.expose().to_owned());
        let app = TotpSecret::from_base32(secret.expose()).unwrap();
        let code = app.code_at_step(step_at(h.now()));
        let wrong: String = code.chars().map(|c| if c == '0' { '1' } else { '0' }).collect();
        h.gp.submit_step_up_code(&handle, &wrong).await.unwrap_err();
        let done = h.gp.submit_step_up_code(&handle, &code).await.unwrap();
        let RedemptionStep::Redeemed(done) = done else {
            panic!("{done:?}")
        };
        assert_eq!(done.redirect_url.as_str(), REDIRECT);
    })
    .await;
    let c = c.lock().unwrap();
    assert_eq!(field(c.steps("consent")[0], "outcome"), "step_up");
    let method = c.steps("step_up_method");
    assert_eq!(field(method[0], "method"), "authenticator");
    assert_eq!(field(method[0], "outcome"), "step_up");
    let codes: Vec<&str> = c
        .steps("step_up_code")
        .iter()
        .map(|s| field(s, "outcome"))
        .collect();
    assert_eq!(codes, ["step_up_code_refused", "redeemed"]);
    c.assert_free_of(&secrets);

    let m = h.gp.metrics();
    assert_eq!(
        (m.step_ups_required, m.step_ups_passed, m.step_ups_failed),
        (1, 1, 1)
    );
    assert_eq!(m.redemptions_completed, 1);
    assert_eq!((m.access.require, m.access.allow), (1, 1));
}

// ---------------------------------------------------------------------------
// Counters
// ---------------------------------------------------------------------------

#[tokio::test]
async fn counters_follow_a_known_sequence() {
    let h = signup_harness(signup_config(r#""attributes": [{"name": "givenName"}]"#), |b| b);
    assert_eq!(h.gp.metrics(), guestpass::metrics::MetricsSnapshot::default());

    // Invite and redeem, with one wrong passcode first.
    h.invite(ALICE).await;
    let ticket = h.ticket_for(ALICE);
    let handle = h.start(&ticket).await;
    let code = h.code_for(ALICE);
    h.gp.submit_passcode(&handle, &wrong_code(&code))
        .await
        .unwrap_err();
    h.gp.submit_passcode(&handle, &code).await.unwrap();
    h.gp.finish_redemption(&handle, ConsentDecision::Accept)
        .await
        .unwrap();

    // A sign-up.
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    let done = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap();
    assert!(matches!(done.step, FlowStep::Completed(_)), "{:?}", done.step);

    let m = h.gp.metrics();
    assert_eq!(m.invitations_sent, 1);
    assert_eq!(m.redemptions_started, 1);
    assert_eq!(m.redemptions_completed, 1);
    assert_eq!(m.redemptions_declined, 0);
    assert_eq!(m.redemptions_blocked, 0);
    assert_eq!(m.passcodes_sent, 2);
    assert_eq!(m.passcodes_refused, 1);
    assert_eq!(m.passcodes_locked, 0);
    assert_eq!(m.sign_ups_started, 1);
    assert_eq!(m.sign_ups_completed, 1);
    assert_eq!(m.sign_ups_signed_in, 0);
    assert_eq!(m.sign_ups_blocked, 0);
    assert_eq!(m.sign_ups_denied, 0);
    assert_eq!(
        (m.step_ups_required, m.step_ups_passed, m.step_ups_failed),
        (0, 0, 0)
    );
    // Each flow's end passes the access gate once; no policy: allowed.
    assert_eq!(
        (
            m.access.allow,
            m.access.block,
            m.access.require,
            m.access.report_only
        ),
        (2, 0, 0, 0)
    );
    assert_eq!(m.errors.unauthorized, 1, "the wrong passcode");
    assert_eq!(m.errors.total(), 1);

    // Every clone counts into the same counters.
    let clone = h.gp.clone();
    clone.view_redemption("not-a-ticket").await.unwrap_err();
    assert_eq!(h.gp.metrics().errors.total(), 2);

    let text = h.gp.metrics().render_prometheus();
    for line in [
        "guestpass_invitations_sent_total 1",
        "guestpass_redemptions_completed_total 1",
        "guestpass_passcodes_refused_total 1",
        "guestpass_sign_ups_completed_total 1",
        "guestpass_access_decisions_total{decision=\"allow\"} 2",
        "guestpass_errors_total{category=\"unauthorized\"} 1",
        "guestpass_errors_total{category=\"bad_request\"} 1",
    ] {
        assert!(text.lines().any(|l| l == line), "missing `{line}` in\n{text}");
    }
    assert_prometheus_format(&text);
    // Serializable, for a JSON endpoint.
    let json = serde_json::to_value(h.gp.metrics()).unwrap();
    assert_eq!(json["passcodes_sent"], 2);
    assert_eq!(json["errors"]["unauthorized"], 1);
}

/// Every sample belongs to a counter family announced just before it with
/// `# HELP` and `# TYPE … counter`, and its value is a whole number.
fn assert_prometheus_format(text: &str) {
    assert!(text.ends_with('\n'));
    let mut family: Option<String> = None;
    let mut helped = None;
    let mut families = Vec::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap();
            assert!(!help.is_empty());
            helped = Some(name.to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert_eq!(kind, "counter", "{line}");
            assert_eq!(helped.as_deref(), Some(name), "TYPE without HELP: {line}");
            assert!(
                name.starts_with("guestpass_") && name.ends_with("_total"),
                "{name}"
            );
            assert!(name.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{name}");
            assert!(!families.contains(&name.to_owned()), "{name} twice");
            families.push(name.to_owned());
            family = Some(name.to_owned());
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap();
            let name = series.split('{').next().unwrap();
            assert_eq!(Some(name), family.as_deref(), "sample outside its family: {line}");
            value.parse::<u64>().unwrap();
            if let Some(labels) = series.strip_prefix(name).filter(|l| !l.is_empty()) {
                assert!(labels.starts_with('{') && labels.ends_with('}'), "{line}");
                let (k, v) = labels[1..labels.len() - 1].split_once('=').unwrap();
                assert!(k == "decision" || k == "category", "{line}");
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
        }
    }
    assert!(families.len() >= 20, "{families:?}");
}
