//! Drives the pure flow state machine — a sign-up, or an invitation
//! redemption with or without terms of use — with structured random input
//! sequences (connector answers built from raw response bytes, form bodies
//! decoded by the flow's attribute spec, consent and terms answers, clock
//! jumps) and checks, after every step:
//!
//! - no panic, whatever the sequence;
//! - a refused input changes nothing (the harness keeps the old record)
//!   and a final state refuses every input;
//! - a transient state always comes with the effect that settles it;
//! - a user is created at most once per flow, only by a transition to
//!   `Completed` that also issues the token, and only after the address was
//!   proven by the code the flow mailed;
//! - a federated identity is accepted only from the provider the flow went
//!   to, with an address that is, for a redemption, the invited one; an
//!   address its provider does not prove is proven with a passcode first;
//! - a redemption completes at most once, only after the address was
//!   proven, with the terms accepted exactly when the tenant has terms, and
//!   never performs a sign-up effect;
//! - a passcode stored in the flow is bound to this flow's handle.
#![no_main]

use std::sync::OnceLock;

use guestpass::directory::{AddressThrottle, FlowRecord, RedemptionBinding};
use guestpass::email::EmailAddress;
use guestpass::flow::config::{IdentityProviderKind, SignUpConfig};
use guestpass::flow::connector::{self, ConnectorStep};
use guestpass::flow::machine::{
    self, ApprovalVerdict, Effect, ExistingAccount, FlowEnv, FlowInput, FlowState,
};
use guestpass::http::{HeaderMap, HeaderValue, StatusCode, header};
use guestpass::id::Id;
use guestpass::idp::PasscodePolicy;
use guestpass::idp::{ExternalIdentity, PendingAuthorization};
use guestpass::keys::{KeyRing, SigningKey};
use guestpass::policy::{DomainRestriction, TermsOfUse};
use guestpass::random::SeededRandom;
use guestpass::secret::{Digest, SecretString};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use time::Duration;
use time::macros::datetime;

const CONFIG: &str = r#"{
  "applications": [{"clientId": "app", "displayName": "App", "redirectUris": ["https://app.example/done"]}],
  "userFlows": [{
    "id": "signup", "identityProviders": ["emailOtp", "fabrikam"], "applications": ["app"],
    "attributes": [
      {"name": "givenName"},
      {"name": "email", "isOptional": true},
      {"name": "country", "isOptional": true, "userInputType": "dropdownSingleSelect",
       "userAttributeValues": [{"value": "NL", "name": "Netherlands"}, {"value": "DE", "name": "Germany"}]},
      {"name": "extension_0f8fad5bd9cb469fa16570867728950e_age", "dataType": "int64", "isOptional": true, "label": "Age"}
    ],
    "apiConnectors": [
      {"displayName": "A", "targetUrl": "https://a.example/", "authentication": {"type": "basic", "username": "u", "password": "p"},
       "step": "postFederationSignup", "onUnavailable": {"block": {"default": "down"}}},
      {"displayName": "B", "targetUrl": "https://b.example/", "authentication": {"type": "basic", "username": "u", "password": "p"},
       "step": "postAttributeCollection", "onUnavailable": {"block": {"default": "down"}}}
    ],
    "approval": {"required": true}
  }]
}"#;

#[derive(Debug, Arbitrary)]
enum Op {
    Choose,
    ChooseFederated,
    SignInWith,
    /// The provider began the sign-in (`true`: for the provider the flow
    /// went to).
    Started(bool),
    /// The provider's verified identity: which address, verified, from the
    /// domain's authority, for the flow's provider.
    Finished {
        address: u8,
        verified: bool,
        proven: bool,
        same_provider: bool,
    },
    Email(u8),
    EmailRaw(String),
    Resend,
    RightCode,
    Code(String),
    Lookup {
        found: bool,
        enabled: bool,
        mail_taken: bool,
    },
    Connector {
        federation: bool,
        status: u16,
        json: bool,
        body: Vec<u8>,
    },
    Attributes(Vec<u8>),
    Review(u8),
    Admin(bool),
    Resume,
    SendFirst,
    Consent(bool),
    Terms(bool),
    Wait(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    seed: u64,
    /// Run an invitation redemption instead of a sign-up.
    redemption: bool,
    /// The tenant has terms of use.
    terms: bool,
    ops: Vec<Op>,
}

/// A pending authorization of `provider_id`.
fn pending(provider_id: &str, at: time::OffsetDateTime) -> PendingAuthorization {
    PendingAuthorization {
        provider_id: provider_id.into(),
        state_hash: Digest::sha256(b"state"),
        salt: [5; 32],
        redirect_uri: "https://guests.example/federation/callback".into(),
        issued_at: at,
    }
}

const ADDRESSES: [&str; 3] = [
    "ada@fabrikam.example",
    "Ada@FABRIKAM.example",
    "bob@b\u{fc}cher.example",
];

/// The flow configuration and keys, built once (regex compilation and key
/// derivation would otherwise dominate every run).
fn fixture() -> Option<&'static (SignUpConfig, KeyRing)> {
    static FIXTURE: OnceLock<Option<(SignUpConfig, KeyRing)>> = OnceLock::new();
    FIXTURE
        .get_or_init(|| {
            let config = SignUpConfig::from_json(CONFIG).ok()?;
            let keys = KeyRing::new(SigningKey::new("k1", [7u8; 32]).ok()?).ok()?;
            Some((config, keys))
        })
        .as_ref()
}

fuzz_target!(|input: Input| {
    let Some((config, keys)) = fixture() else {
        return;
    };
    let Some(uf) = config.user_flow("signup") else {
        return;
    };
    let policy = PasscodePolicy {
        min_send_interval: Duration::ZERO,
        ..PasscodePolicy::default()
    };
    let domains = DomainRestriction::default();
    let rng = SeededRandom::new(input.seed);
    let start = datetime!(2026-12-01 12:00 UTC);
    let mut now = start;
    let handle_hash = Digest::sha256(b"flow-handle");
    let mut flow = FlowRecord {
        id: Id::from_bytes([3; 16]),
        handle_hash,
        tenant_id: "t".into(),
        user_flow_id: "signup".into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/done".into(),
        redemption: input.redemption.then(|| RedemptionBinding {
            invitation_id: Id::from_bytes([4; 16]),
            user_id: Id::from_bytes([5; 16]),
            verifier_hash: Digest::sha256(b"verifier"),
        }),
        nonce: None,
        app_state: None,
        ui_locales: Some("de-DE en".into()),
        state: if input.redemption {
            FlowState::Invited
        } else {
            FlowState::ChooseProvider
        },
        created_at: start,
        expires_at: start + Duration::hours(1),
    };
    let mut throttle: Option<AddressThrottle> = None;
    let mut last_code: Option<SecretString> = None;
    let mut proven = false;
    let mut users_created = 0u32;
    let mut redemptions = 0u32;
    let terms = TermsOfUse::new("terms", "Terms", "https://contoso.example/terms", 3).ok();
    let terms = terms.as_ref().filter(|_| input.terms);

    for op in input.ops.into_iter().take(64) {
        let flow_input = match op {
            Op::ChooseFederated => FlowInput::ChooseProvider {
                provider: IdentityProviderKind::Federated("fabrikam".into()),
            },
            Op::SignInWith => FlowInput::SignInWith {
                provider_id: "fabrikam".into(),
            },
            Op::Started(same) => FlowInput::FederationStarted {
                pending: pending(if same { "fabrikam" } else { "other" }, start),
            },
            Op::Finished {
                address,
                verified,
                proven,
                same_provider,
            } => FlowInput::FederationFinished {
                identity: Box::new(ExternalIdentity {
                    provider_id: if same_provider { "fabrikam" } else { "other" }.into(),
                    issuer: "https://idp.fabrikam.example".into(),
                    subject: "subject-1".into(),
                    email: EmailAddress::parse(ADDRESSES[usize::from(address) % ADDRESSES.len()]).ok(),
                    email_verified: verified,
                    name: None,
                    given_name: None,
                    family_name: None,
                    tenant_id: None,
                    hosted_domain: None,
                }),
                invited: input
                    .redemption
                    .then(|| EmailAddress::parse(ADDRESSES[0]).ok())
                    .flatten(),
                email_proven: proven,
                stored_spelling: None,
                throttle: throttle.clone(),
            },
            Op::Choose => FlowInput::ChooseProvider {
                provider: IdentityProviderKind::EmailOtp,
            },
            Op::Email(i) => FlowInput::SubmitEmail {
                email: ADDRESSES[usize::from(i) % ADDRESSES.len()].to_owned(),
                stored_spelling: EmailAddress::parse(ADDRESSES[0]).ok(),
                throttle: throttle.clone(),
            },
            Op::EmailRaw(s) => FlowInput::SubmitEmail {
                email: s,
                stored_spelling: None,
                throttle: throttle.clone(),
            },
            Op::Resend => FlowInput::ResendPasscode {
                stored_spelling: None,
                throttle: throttle.clone(),
            },
            Op::RightCode => match &last_code {
                Some(c) => FlowInput::SubmitPasscode {
                    code: c.clone(),
                    throttle: throttle.clone(),
                },
                None => continue,
            },
            Op::Code(s) => FlowInput::SubmitPasscode {
                code: SecretString::new(s),
                throttle: throttle.clone(),
            },
            Op::Lookup {
                found,
                enabled,
                mail_taken,
            } => FlowInput::AccountLookedUp {
                by_identity: found.then_some(ExistingAccount {
                    user_id: Id::from_bytes([9; 16]),
                    user_type: guestpass::directory::UserType::Guest,
                    enabled,
                    mail: None,
                }),
                mail_taken,
            },
            Op::Connector {
                federation,
                status,
                json,
                body,
            } => {
                let mut headers = HeaderMap::new();
                if json {
                    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                }
                let status = StatusCode::from_u16(status.clamp(100, 599)).unwrap_or(StatusCode::OK);
                let step = if federation {
                    ConnectorStep::PostFederationSignup
                } else {
                    ConnectorStep::PostAttributeCollection
                };
                FlowInput::ConnectorAnswered {
                    step,
                    outcome: connector::parse_response(status, &headers, &body),
                }
            }
            Op::Attributes(body) => match uf.attributes().decode_form(&body, &[]) {
                Ok(values) => FlowInput::SubmitAttributes { values },
                Err(_) => continue,
            },
            Op::Review(v) => FlowInput::ApprovalReviewed {
                verdict: match v % 3 {
                    0 => ApprovalVerdict::Approve,
                    1 => ApprovalVerdict::Deny { message: None },
                    _ => ApprovalVerdict::Hold {
                        message: Some("wait".into()),
                    },
                },
            },
            Op::Admin(approve) => FlowInput::AdminDecision {
                approve,
                message: None,
            },
            Op::Resume => FlowInput::Resume,
            Op::SendFirst => FlowInput::SendPasscode {
                to: match EmailAddress::parse(ADDRESSES[0]) {
                    Ok(e) => e,
                    Err(_) => continue,
                },
                throttle: throttle.clone(),
            },
            Op::Consent(accept) => FlowInput::Consent { accept },
            Op::Terms(accept) => FlowInput::AnswerTerms { accept },
            Op::Wait(minutes) => {
                now += Duration::minutes(i64::from(minutes));
                continue;
            }
        };
        let env = FlowEnv {
            now,
            rng: &rng,
            keys,
            passcode: &policy,
            domains: &domains,
            user_flow: Some(uf),
            terms_of_use: terms,
            tenant_domain: "contoso.example",
        };
        // For a federated answer: whether it may be used at all, and
        // whether its address counts as proven without a passcode.
        let federation = match &flow_input {
            FlowInput::FederationFinished {
                identity,
                invited,
                email_proven,
                ..
            } => Some((
                identity.provider_id == "fabrikam"
                    && identity.email.as_ref().is_some_and(|e| {
                        invited
                            .as_ref()
                            .is_none_or(|i| i.comparison_key() == e.comparison_key())
                    }),
                *email_proven,
            )),
            _ => None,
        };
        let was_final = flow.state.is_final();
        let Ok(t) = machine::transition(&env, &flow, flow_input) else {
            continue;
        };
        assert!(!was_final, "a final state accepted an input");
        if let Some((allowed, email_proven)) = federation {
            assert!(
                allowed,
                "a federated identity was accepted against the binding rules"
            );
            match &t.state {
                FlowState::Authenticated { .. } | FlowState::Consent { .. } => {
                    assert!(email_proven, "an unproven federated address skipped its passcode");
                    proven = true;
                }
                FlowState::AwaitingPasscode { federated, .. } => {
                    assert!(
                        !email_proven && federated.is_some(),
                        "a proven address was sent a passcode"
                    );
                }
                other => panic!("a federated answer led to `{}`", other.name()),
            }
        }
        if matches!(flow.state, FlowState::AwaitingPasscode { .. })
            && matches!(
                t.state,
                FlowState::Authenticated { .. } | FlowState::Consent { .. }
            )
        {
            proven = true;
        }
        for e in &t.effects {
            match e {
                Effect::CompleteRedemption { acceptance, .. } => {
                    assert!(input.redemption, "a sign-up completed a redemption");
                    assert!(proven, "redeemed before the address was proven");
                    assert!(matches!(t.state, FlowState::Completed { .. }));
                    assert_eq!(acceptance.is_some(), terms.is_some(), "terms acceptance");
                    redemptions += 1;
                }
                Effect::CreateUser { .. }
                | Effect::IssueToken { .. }
                | Effect::LookUpAccount { .. }
                | Effect::CallConnector { .. }
                | Effect::ReviewApproval { .. } => {
                    assert!(!input.redemption, "a redemption performed a sign-up effect");
                }
                _ => {}
            }
        }
        let creates = t
            .effects
            .iter()
            .filter(|e| matches!(e, Effect::CreateUser { .. }))
            .count();
        if creates > 0 {
            assert_eq!(creates, 1);
            assert!(proven, "a user was created before the address was proven");
            assert!(matches!(t.state, FlowState::Completed { signed_in: false, .. }));
            assert!(t.effects.iter().any(|e| matches!(e, Effect::IssueToken { .. })));
            users_created += 1;
        }
        if matches!(t.state, FlowState::Completed { .. }) {
            assert!(proven, "completed without a proven address");
        }
        if !t.state.is_durable() {
            let settles = t.effects.iter().any(|e| {
                matches!(
                    e,
                    Effect::LookUpAccount { .. }
                        | Effect::CallConnector { .. }
                        | Effect::ReviewApproval { .. }
                        | Effect::StartFederation { .. }
                )
            });
            assert!(settles, "transient state {} without its effect", t.state.name());
        }
        if let FlowState::AwaitingPasscode { passcode, .. } = &t.state {
            assert!(passcode.bound_to.ct_eq(&handle_hash));
        }
        for e in &t.effects {
            match e {
                Effect::StoreThrottle { record } => throttle = Some(record.clone()),
                Effect::SendPasscode { code, .. } => last_code = Some(code.clone()),
                _ => {}
            }
        }
        flow.state = t.state;
        if let Some(at) = t.expires_at {
            flow.expires_at = at;
        }
    }
    assert!(users_created <= 1, "one flow created {users_created} users");
    assert!(redemptions <= 1, "one flow redeemed {redemptions} times");
});
