//! Property test of sign-up flows: random sequences of what browsers and
//! administrators do (valid, stale, forged and foreign CSRF tokens; right,
//! wrong, foreign and malformed passcodes; random attribute bodies; clock
//! advances; approvals and denials) across two flows for the same address,
//! with and without approval and an attribute connector that answers every
//! way. Whatever happens: no panic, no internal error, no flow stored at a
//! transient step, and at most one user per address.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::*;
use guestpass::error::Error;
use guestpass::http::{FnHttpClient, HeaderValue, HttpError, HttpResponse, StatusCode, header};
use guestpass::{FlowAction, FlowPage, FlowStep, Inviter};
use proptest::prelude::*;
use time::Duration;

/// Spellings of one address, another address, and no address.
const ADDRESSES: [&str; 5] = [
    "ada@fabrikam.example",
    "ADA@fabrikam.example",
    "Ada@Fabrikam.EXAMPLE",
    "eve@evil.example",
    "not an address",
];

#[derive(Debug, Clone)]
enum Csrf {
    /// The token of the flow's current page.
    Current,
    /// A token of an earlier page of the flow.
    Stale,
    /// The other flow's current token.
    OtherFlow,
    /// Made up.
    Forged,
    /// None.
    Missing,
}

#[derive(Debug, Clone)]
enum Code {
    Right,
    Wrong,
    OtherFlows,
    Malformed,
}

#[derive(Debug, Clone)]
enum Op {
    Start(usize),
    View(usize),
    Choose(usize, Csrf, bool),
    Email(usize, Csrf, usize),
    Resend(usize, Csrf),
    Passcode(usize, Csrf, Code),
    Attributes(usize, Csrf, Vec<u8>),
    Resume(usize, Csrf),
    Approve(usize),
    Deny(usize),
    Wait(i64),
    /// Whatever moves the flow on from its current page, done right (with
    /// the address spelled one of three ways).
    Progress(usize, usize),
}

fn csrf() -> impl Strategy<Value = Csrf> {
    prop_oneof![
        6 => Just(Csrf::Current),
        1 => Just(Csrf::Stale),
        1 => Just(Csrf::OtherFlow),
        1 => Just(Csrf::Forged),
        1 => Just(Csrf::Missing),
    ]
}

fn code() -> impl Strategy<Value = Code> {
    prop_oneof![
        4 => Just(Code::Right),
        2 => Just(Code::Wrong),
        1 => Just(Code::OtherFlows),
        1 => Just(Code::Malformed),
    ]
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    let seats = format!("{EXT}seats");
    prop_oneof![
        4 => Just(b"givenName=Ada".to_vec()),
        2 => Just(format!("givenName=Ada&{seats}=3").into_bytes()),
        1 => Just(b"givenName=".to_vec()),
        1 => Just(format!("givenName=Ada&{seats}=lots").into_bytes()),
        1 => Just(b"givenName=Ada&isAdmin=true".to_vec()),
        1 => Just(b"givenName=A&givenName=B".to_vec()),
        1 => proptest::collection::vec(any::<u8>(), 0..64),
        1 => "[a-zA-Z=&%0-9+_]{0,40}".prop_map(String::into_bytes),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let slot = 0..2usize;
    prop_oneof![
        12 => (slot.clone(), 0..3usize).prop_map(|(s, a)| Op::Progress(s, a)),
        1 => slot.clone().prop_map(Op::Start),
        1 => slot.clone().prop_map(Op::View),
        3 => (slot.clone(), csrf(), prop::bool::weighted(0.9)).prop_map(|(s, c, ok)| Op::Choose(s, c, ok)),
        3 => (slot.clone(), csrf(), prop_oneof![6 => 0..3usize, 1 => 3..5usize])
            .prop_map(|(s, c, a)| Op::Email(s, c, a)),
        1 => (slot.clone(), csrf()).prop_map(|(s, c)| Op::Resend(s, c)),
        4 => (slot.clone(), csrf(), code()).prop_map(|(s, c, k)| Op::Passcode(s, c, k)),
        4 => (slot.clone(), csrf(), body()).prop_map(|(s, c, b)| Op::Attributes(s, c, b)),
        1 => (slot.clone(), csrf()).prop_map(|(s, c)| Op::Resume(s, c)),
        1 => slot.clone().prop_map(Op::Approve),
        1 => slot.prop_map(Op::Deny),
        1 => prop_oneof![4 => Just(1i64), 4 => Just(31), 2 => Just(600), 1 => Just(3601), 1 => Just(2 * 86_400)]
            .prop_map(Op::Wait),
    ]
}

/// What the test knows of one flow.
#[derive(Debug, Default, Clone)]
struct Slot {
    handle: Option<String>,
    flow_id: Option<guestpass::id::Id>,
    tokens: Vec<String>,
    code: Option<String>,
}

/// A connector that answers by call number: continue, validation error,
/// server error (retried), block page, garbage, a value that does not fit.
fn connector_client() -> Arc<FnHttpClient> {
    Arc::new(FnHttpClient::new(|call, _| {
        let (status, body): (u16, String) = match call % 7 {
            0 | 6 => (200, r#"{"version":"1.0.0","action":"Continue"}"#.into()),
            1 => (
                400,
                r#"{"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"Try again"}"#
                    .into(),
            ),
            2 => (503, "{}".into()),
            3 => (
                200,
                r#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":"No"}"#.into(),
            ),
            4 => return Err(HttpError::Timeout),
            _ => (
                200,
                format!(r#"{{"version":"1.0.0","action":"Continue","{EXT}seats":"many"}}"#),
            ),
        };
        let mut r = HttpResponse::new(body.into_bytes());
        *r.status_mut() = StatusCode::from_u16(status).unwrap();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        Ok(r)
    }))
}

fn harness(approval: bool, connector: bool, rate_limited: bool) -> Harness {
    let mut fields = format!(
        r#""attributes": [{{"name": "givenName"}},
                          {{"name": "{EXT}seats", "dataType": "int64", "label": "Seats", "isOptional": true}}]"#
    );
    if approval {
        fields.push_str(r#", "approval": {"required": true, "pendingLifetimeDays": 1}"#);
    }
    if connector {
        fields.push_str(
            r#", "apiConnectors": [{"displayName": "Check", "targetUrl": "https://api.woodgrove.example/check",
                "authentication": {"type": "basic", "username": "u", "password": "p"},
                "step": "postAttributeCollection",
                "onUnavailable": {"block": {"default": "Unavailable"}}}]"#,
        );
    }
    let config = signup_config(&fields);
    signup_harness(config, |b| {
        let b = if connector {
            b.http_client(connector_client())
        } else {
            b
        };
        if rate_limited {
            b.passcode_policy(guestpass::idp::PasscodePolicy {
                max_consecutive_failures: 7,
                ..Default::default()
            })
        } else {
            b
        }
    })
}

fn token_of(slot: &Slot, other: &Slot, kind: &Csrf) -> String {
    match kind {
        Csrf::Current => slot.tokens.last().cloned().unwrap_or_default(),
        Csrf::Stale => slot
            .tokens
            .iter()
            .rev()
            .nth(1)
            .cloned()
            .unwrap_or_else(|| "c3RhbGU".into()),
        Csrf::OtherFlow => other.tokens.last().cloned().unwrap_or_default(),
        Csrf::Forged => b64url(&[7u8; 24]),
        Csrf::Missing => String::new(),
    }
}

/// Errors no sequence of requests may produce.
fn check_error(what: &str, e: &Error) {
    assert!(
        !matches!(e, Error::Internal(_) | Error::Config(_) | Error::Mail(_)),
        "{what}: {e:?}"
    );
}

async fn run(ops: Vec<Op>, approval: bool, connector: bool, rate_limited: bool) -> Harness {
    let h = harness(approval, connector, rate_limited);
    let admin = Inviter::admin(None);
    let mut slots = [Slot::default(), Slot::default()];
    for (n, op) in ops.iter().enumerate() {
        let what = format!("op {n} {op:?}");
        let mails_before = h.outbox.messages().len();
        let acted: Option<(usize, Result<FlowPage, Error>)> = match op.clone() {
            Op::Start(i) => {
                let started = h.gp.start_sign_up(signup_request()).await.unwrap();
                slots[i] = Slot {
                    handle: Some(started.handle.expose().to_owned()),
                    flow_id: Some(started.page.flow_id),
                    tokens: Vec::new(),
                    code: None,
                };
                Some((i, Ok(started.page)))
            }
            Op::Wait(secs) => {
                h.clock.advance(Duration::seconds(secs));
                None
            }
            Op::Approve(i) | Op::Deny(i) => {
                if let Some(id) = slots[i].flow_id {
                    let r = if matches!(op, Op::Approve(_)) {
                        h.gp.approve_sign_up(&admin, id).await
                    } else {
                        h.gp.deny_sign_up(&admin, id, None).await
                    };
                    if let Err(e) = &r {
                        check_error(&what, e);
                    }
                }
                None
            }
            Op::Progress(i, a) => match slots[i].handle.clone() {
                None => None,
                Some(handle) => {
                    let current = h.gp.view_flow(&handle).await;
                    match current {
                        Err(e) => Some((i, Err(e))),
                        Ok(page) => {
                            let action = match &page.step {
                                FlowStep::ChooseProvider { .. } => {
                                    Some(FlowAction::ChooseProvider("emailOtp".into()))
                                }
                                FlowStep::EnterEmail { .. } => {
                                    Some(FlowAction::SubmitEmail(ADDRESSES[a].into()))
                                }
                                FlowStep::EnterPasscode { .. } => Some(FlowAction::SubmitPasscode(
                                    slots[i].code.clone().unwrap_or_else(|| "00000000".into()).into(),
                                )),
                                FlowStep::CollectAttributes { .. } => {
                                    Some(FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()))
                                }
                                FlowStep::AwaitingApproval { .. } => Some(FlowAction::Resume),
                                _ => None,
                            };
                            match action {
                                Some(action) => Some((
                                    i,
                                    h.gp.advance_flow(&handle, page.csrf_token.expose(), action).await,
                                )),
                                None => Some((i, Ok(page))),
                            }
                        }
                    }
                }
            },
            Op::View(i) => match slots[i].handle.clone() {
                Some(handle) => Some((i, h.gp.view_flow(&handle).await)),
                None => None,
            },
            other => {
                let (i, kind) = match &other {
                    Op::Choose(i, c, _)
                    | Op::Email(i, c, _)
                    | Op::Resend(i, c)
                    | Op::Passcode(i, c, _)
                    | Op::Attributes(i, c, _)
                    | Op::Resume(i, c) => (*i, c.clone()),
                    _ => unreachable!(),
                };
                match slots[i].handle.clone() {
                    None => None,
                    Some(handle) => {
                        let token = token_of(&slots[i], &slots[1 - i], &kind);
                        let action = match other {
                            Op::Choose(_, _, ok) => {
                                FlowAction::ChooseProvider(if ok { "emailOtp" } else { "google" }.into())
                            }
                            Op::Email(_, _, a) => FlowAction::SubmitEmail(ADDRESSES[a].into()),
                            Op::Resend(..) => FlowAction::ResendPasscode,
                            Op::Passcode(_, _, k) => {
                                let right = slots[i].code.clone().unwrap_or_else(|| "00000000".into());
                                let code = match k {
                                    Code::Right => right,
                                    Code::Wrong => wrong_code(&right),
                                    Code::OtherFlows => {
                                        slots[1 - i].code.clone().unwrap_or_else(|| "11111111".into())
                                    }
                                    Code::Malformed => "12ab".into(),
                                };
                                FlowAction::SubmitPasscode(code.into())
                            }
                            Op::Attributes(_, _, b) => FlowAction::SubmitAttributes(b),
                            _ => FlowAction::Resume,
                        };
                        Some((i, h.gp.advance_flow(&handle, &token, action).await))
                    }
                }
            }
        };
        if let Some((i, result)) = acted {
            match result {
                Ok(page) => {
                    slots[i].tokens.push(page.csrf_token.expose().to_owned());
                    if let FlowStep::Completed(c) = &page.step {
                        assert!(
                            h.gp.user(c.user_id).await.is_ok(),
                            "{what}: the completion names an existing user"
                        );
                    }
                }
                Err(e) => check_error(&what, &e),
            }
        }
        // A new code belongs to the flow that asked for it.
        let mails = h.outbox.messages();
        if mails.len() > mails_before
            && let Op::Email(i, ..) | Op::Resend(i, ..) | Op::Progress(i, _) = op
        {
            assert_eq!(mails.len(), mails_before + 1, "{what}: one code per send");
            slots[*i].code = mails.last().and_then(|m| m.code(DIGITS)).map(str::to_owned);
        }

        // The invariants, after every step.
        for slot in &slots {
            let Some(handle) = &slot.handle else { continue };
            let stored = h.flow(handle).await.expect("flows are never lost");
            assert!(
                stored.value.state.is_durable(),
                "{what}: stored at transient step {}",
                stored.value.state.name()
            );
            match h.gp.view_flow(handle).await {
                Ok(_) => {}
                Err(e) => {
                    check_error(&what, &e);
                    assert_eq!(
                        e,
                        Error::Flow(guestpass::flow::machine::FlowError::Expired),
                        "{what}"
                    );
                }
            }
        }
        let mut per_address: BTreeMap<String, usize> = BTreeMap::new();
        for u in h.gp.users().await.unwrap() {
            *per_address
                .entry(u.mail.as_ref().unwrap().comparison_key().to_owned())
                .or_default() += 1;
            assert_eq!(u.identities.len(), 1, "{what}");
        }
        assert!(per_address.values().all(|n| *n == 1), "{what}: {per_address:?}");
    }
    h
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn random_flows_keep_the_invariants(
        ops in proptest::collection::vec(op(), 1..40),
        approval in any::<bool>(),
        connector in any::<bool>(),
        rate_limited in any::<bool>(),
    ) {
        // Both flows start first, so most sequences get somewhere.
        let mut all = vec![Op::Start(0), Op::Start(1)];
        all.extend(ops);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .unwrap()
            .block_on(run(all, approval, connector, rate_limited));
    }
}

#[test]
fn a_scripted_sequence_completes_once_across_two_flows() {
    // The sequence the random one hopes to find: both flows reach the form,
    // both submit; one creates, the other signs in.
    let ops = vec![
        Op::Start(0),
        Op::Start(1),
        Op::Choose(0, Csrf::Current, true),
        Op::Choose(1, Csrf::Current, true),
        Op::Email(0, Csrf::Current, 0),
        Op::Email(1, Csrf::Current, 1),
        Op::Passcode(0, Csrf::Current, Code::Right),
        Op::Passcode(1, Csrf::Current, Code::Right),
        Op::Attributes(0, Csrf::Current, b"givenName=Ada".to_vec()),
        Op::Attributes(1, Csrf::Current, b"givenName=Ada".to_vec()),
    ];
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap()
        .block_on(async {
            let h = run(ops, false, false, false).await;
            let users = h.gp.users().await.unwrap();
            assert_eq!(users.len(), 1);
            let completed: Vec<_> = h
                .audit_kinds()
                .into_iter()
                .filter(|k| {
                    matches!(
                        k,
                        guestpass::audit::AuditKind::SignedUp { .. }
                            | guestpass::audit::AuditKind::SignedIn { .. }
                    )
                })
                .collect();
            assert_eq!(completed.len(), 2, "{completed:?}");
        });
}
