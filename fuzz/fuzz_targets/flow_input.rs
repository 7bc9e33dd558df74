//! Drives the pure flow state machine — a sign-up or sign-in, or an
//! invitation redemption with or without terms of use, each ending at the
//! access gate (conditional access, step-up by emailed code or
//! authenticator app, policy-required terms of use, block) — with
//! structured random input sequences (connector answers built from raw
//! response bytes, form bodies decoded by the flow's attribute spec,
//! consent and terms answers, step-up choices and codes, clock jumps, and
//! further flows of the same people), under one of seven compiled policy
//! sets and four sets of step-up methods, each flow optionally started by a
//! canned way to the gate (`prefix`), and checks, after every step:
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
//!   proven, with the tenant's terms accepted exactly when the tenant has
//!   terms (and policy terms only when a policy asks for them), and never
//!   performs a sign-up effect;
//! - a passcode stored in the flow (also a step-up code) is bound to this
//!   flow's handle;
//! - every gate decision (and nothing else) comes with exactly one
//!   `AuditAccess` effect whose decision text matches the outcome
//!   (`block ...` for a block by policy, `require ...` naming what a
//!   step-up or terms step asks for, `allow` or `require nothing` for a
//!   completion), and lists every configured policy;
//! - with a `block` policy or a `compliantDevice` policy no transition ever
//!   completes (no `CreateUser`, `IssueToken`, `CompleteRedemption`) and
//!   every gate entry ends `Blocked` with the matching page text; a
//!   report-only block never blocks;
//! - with an `mfa` policy a completion follows a successful step-up in the
//!   same transition (the previous state was `StepUp`); a token's `acr` is
//!   multi-factor exactly when the flow stepped up;
//! - with a `termsOfUse` policy a completion records the acceptance of the
//!   policy's agreement at its configured version (on the created user, in
//!   the redemption's acceptances, or on the signed-in user); with `mfa` OR
//!   `termsOfUse`, one of the two;
//! - no authenticator code is accepted twice for the same time step of the
//!   same secret, across all flows of a run (accepted steps only increase);
//!   an accepted code is the secret's code for the recorded step, within
//!   the skew window; replaying the last accepted code never completes
//!   anything nor writes an `UpdateUser` with that step as a new use; the
//!   right code of a step not used yet, of an authenticator not locked, is
//!   accepted;
//! - a wrong authenticator code is counted in the flow, whatever the stage
//!   and however often a method was chosen again, and the flow ends at
//!   `MAX_AUTHENTICATOR_ATTEMPTS` counted ones; a refused code never
//!   records a use, a wrong challenge code is counted on the stored
//!   authenticator (at most `MAX_CONSECUTIVE_FAILURES` in a row across
//!   flows, the stored count always the harness's), and a locked
//!   authenticator ends the flow and lets no code through;
//! - the emailed step-up code is never offered after an email-passcode
//!   sign-in (choosing it is refused, and no step-up mail goes out), nor a
//!   method the tenant does not offer; a step-up never starts without a
//!   method to offer;
//! - an `UpdateUser` only ever targets the existing user of the flow (the
//!   signed-in account or the invited user).
#![no_main]

use std::collections::BTreeMap;
use std::sync::OnceLock;

use guestpass::directory::{
    AddressThrottle, AgreementAcceptance, EMAIL_OTP_ISSUER, FlowRecord, RedemptionBinding, UserType,
};
use guestpass::email::EmailAddress;
use guestpass::flow::access::{
    ACR_MULTI_FACTOR, AccessEnv, AccessReport, AccessSubject, MAX_AUTHENTICATOR_ATTEMPTS, StepUpMethod,
    StepUpMethods, StepUpStep,
};
use guestpass::flow::config::{IdentityProviderKind, SignUpConfig, TextKey, UserFlow};
use guestpass::flow::connector::{self, ConnectorStep};
use guestpass::flow::machine::{
    self, ApprovalVerdict, Effect, ExistingAccount, FlowEnv, FlowInput, FlowState, Transition,
};
use guestpass::http::{HeaderMap, HeaderValue, StatusCode, header};
use guestpass::id::Id;
use guestpass::idp::PasscodePolicy;
use guestpass::idp::totp::{
    self, MAX_CONSECUTIVE_FAILURES, SealedTotpSecret, TotpEnrollment, TotpError, TotpSecret,
};
use guestpass::idp::{ExternalIdentity, PendingAuthorization};
use guestpass::keys::{KeyRing, SigningKey};
use guestpass::mail::templates::Language;
use guestpass::policy::{CompiledPolicies, CrossTenantSettings, DomainRestriction, PolicySet, TermsOfUse};
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

/// The agreement policies 2 and 4 require, and its configured version.
const POLICY_TERMS: &str = "policy-terms";
const POLICY_TERMS_VERSION: u32 = 2;

/// The policy sets `Input::policy` chooses from, by index.
const POLICIES: [&str; 7] = [
    // 0: none.
    r#"{"policies": []}"#,
    // 1: multi-factor authentication for guests.
    r#"{"policies": [{"displayName": "Guests need MFA", "state": "enabled",
      "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
                     "applications": {"includeApplications": ["All"]}},
      "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}]}"#,
    // 2: terms of use for guests.
    r#"{"policies": [{"displayName": "Guests accept the terms", "state": "enabled",
      "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
                     "applications": {"includeApplications": ["All"]}},
      "grantControls": {"operator": "OR", "termsOfUse": ["policy-terms"]}}]}"#,
    // 3: block guests.
    r#"{"policies": [{"displayName": "Block guests", "state": "enabled",
      "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
                     "applications": {"includeApplications": ["All"]}},
      "grantControls": {"operator": "OR", "builtInControls": ["block"]}}]}"#,
    // 4: multi-factor authentication or terms of use.
    r#"{"policies": [{"displayName": "MFA or terms", "state": "enabled",
      "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
                     "applications": {"includeApplications": ["All"]}},
      "grantControls": {"operator": "OR", "builtInControls": ["mfa"], "termsOfUse": ["policy-terms"]}}]}"#,
    // 5: a compliant device, which no flow step provides.
    r#"{"policies": [{"displayName": "Managed devices only", "state": "enabled",
      "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
                     "applications": {"includeApplications": ["All"]}},
      "grantControls": {"operator": "OR", "builtInControls": ["compliantDevice"]}}]}"#,
    // 6: block guests, report-only.
    r#"{"policies": [{"displayName": "Would block guests", "state": "enabledForReportingButNotEnforced",
      "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
                     "applications": {"includeApplications": ["All"]}},
      "grantControls": {"operator": "OR", "builtInControls": ["block"]}}]}"#,
];
const POLICY_NONE: usize = 0;
const POLICY_MFA: usize = 1;
const POLICY_TERMS_OF_USE: usize = 2;
const POLICY_BLOCK: usize = 3;
const POLICY_MFA_OR_TERMS: usize = 4;
const POLICY_DEVICE: usize = 5;
const POLICY_REPORT_ONLY: usize = 6;

/// The step-up methods `Input::step_up` chooses from.
const STEP_UP: [StepUpMethods; 4] = [
    StepUpMethods {
        email_otp: true,
        authenticator: true,
    },
    StepUpMethods {
        email_otp: true,
        authenticator: false,
    },
    StepUpMethods {
        email_otp: false,
        authenticator: true,
    },
    StepUpMethods {
        email_otp: false,
        authenticator: false,
    },
];

/// The user a sign-in finds when no earlier flow of the run created one.
fn existing_user() -> Id {
    Id::from_bytes([9; 16])
}

/// The invited user of a redemption.
fn invited_user() -> Id {
    Id::from_bytes([5; 16])
}
/// Most flows one input runs.
const MAX_FLOWS: usize = 4;

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
    /// The directory lookup's answer; `authenticator`: the account says it
    /// has an authenticator also when the harness holds none for it.
    Lookup {
        found: bool,
        enabled: bool,
        mail_taken: bool,
        authenticator: bool,
    },
    Connector {
        federation: bool,
        status: u16,
        json: bool,
        body: Vec<u8>,
    },
    /// A connector's plain `Continue` (for the federation step or not).
    ConnectorContinue(bool),
    Attributes(Vec<u8>),
    /// A valid attribute form.
    GoodAttributes,
    Review(u8),
    Admin(bool),
    Resume,
    SendFirst,
    Consent(bool),
    Terms(bool),
    /// Choose a step-up method (`true`: the emailed code).
    ChooseStepUp(bool),
    /// The step-up code the machine mailed last.
    StepUpRightEmailCode,
    StepUpCode(String),
    /// Six digits (most likely a wrong code, counted).
    StepUpDigits(u32),
    /// The current code of the authenticator being enrolled, or of the one
    /// the harness holds for the gate's user.
    RightAuthenticatorCode,
    /// The last accepted authenticator code, again.
    ReplayAuthenticatorCode,
    AnswerPolicyTerms(bool),
    /// Minutes pass.
    Wait(u8),
    /// Seconds pass.
    Tick(u8),
    /// A new flow of the same kind starts, after the canned way to the
    /// gate it chooses (the people and what they enrolled and accepted
    /// stay).
    Restart(u8),
}

#[derive(Debug, Arbitrary)]
struct Input {
    seed: u64,
    /// Run an invitation redemption instead of a sign-up.
    redemption: bool,
    /// The tenant has terms of use.
    terms: bool,
    /// The policy set (`POLICIES`, modulo).
    policy: u8,
    /// The step-up methods (`STEP_UP`, modulo).
    step_up: u8,
    /// The existing and the invited user start with an authenticator.
    enrolled: bool,
    /// A canned way to the gate the ops start after (`prefix`).
    prefix: u8,
    ops: Vec<Op>,
}

/// The ops that take a flow to the access gate, so that the random ops
/// spend their time there: by `choice`'s low three bits, for a sign-up
/// flow none, an email or a federated sign-in, an email or a federated
/// sign-up; for a redemption none, by passcode or federated. With bit 3
/// set the authenticator steps up (enrolment or challenge) with its
/// current code, with bit 4 policy terms are accepted.
fn prefix(redemption: bool, choice: u8) -> Vec<Op> {
    let federated = || {
        [
            Op::Started(true),
            Op::Finished {
                address: 0,
                verified: true,
                proven: true,
                same_provider: true,
            },
        ]
    };
    let lookup = |found| Op::Lookup {
        found,
        enabled: true,
        mail_taken: false,
        authenticator: false,
    };
    let sign_up = || {
        [
            Op::ConnectorContinue(true),
            Op::GoodAttributes,
            Op::ConnectorContinue(false),
            Op::Review(0),
        ]
    };
    let by_email = || [Op::Choose, Op::Email(0), Op::RightCode];
    let lane = choice & 0x07;
    let mut ops = Vec::new();
    if redemption {
        match lane % 3 {
            0 => return ops,
            1 => ops.extend([Op::SendFirst, Op::RightCode]),
            _ => {
                ops.push(Op::SignInWith);
                ops.extend(federated());
            }
        }
        ops.extend([Op::Consent(true), Op::Terms(true)]);
    } else {
        match lane % 5 {
            0 => return ops,
            1 => {
                ops.extend(by_email());
                ops.push(lookup(true));
            }
            2 => {
                ops.push(Op::ChooseFederated);
                ops.extend(federated());
                ops.push(lookup(true));
            }
            3 => {
                ops.extend(by_email());
                ops.push(lookup(false));
                ops.extend(sign_up());
            }
            _ => {
                ops.push(Op::ChooseFederated);
                ops.extend(federated());
                ops.push(lookup(false));
                ops.extend(sign_up());
            }
        }
    }
    if choice & 0x08 != 0 {
        ops.extend([Op::ChooseStepUp(false), Op::RightAuthenticatorCode]);
    }
    if choice & 0x10 != 0 {
        ops.push(Op::AnswerPolicyTerms(true));
    }
    ops
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

struct Fixture {
    config: SignUpConfig,
    keys: KeyRing,
    /// The compiled `POLICIES`, with how many policies each has.
    policies: Vec<(CompiledPolicies, usize)>,
    cross_tenant: CrossTenantSettings,
    agreements: Vec<TermsOfUse>,
}

/// The flow configuration, keys and policies, built once (regex
/// compilation and key derivation would otherwise dominate every run). A
/// fixture that no longer builds is a crash, not a silently empty run.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let config = SignUpConfig::from_json(CONFIG).expect("the flow configuration");
        let keys =
            KeyRing::new(SigningKey::new("k1", [7u8; 32]).expect("the signing key")).expect("the key ring");
        let policies = POLICIES
            .iter()
            .map(|json| {
                let set = PolicySet::from_json(json).expect("a policy set");
                let count = set.policies.len();
                (set.compile().expect("a compiled policy set"), count)
            })
            .collect();
        let agreements = vec![
            TermsOfUse::new(
                POLICY_TERMS,
                "Policy terms",
                "https://contoso.example/policy-terms",
                POLICY_TERMS_VERSION,
            )
            .expect("the policy terms"),
        ];
        Fixture {
            config,
            keys,
            policies,
            cross_tenant: CrossTenantSettings::default(),
            agreements,
        }
    })
}

/// A new flow record, `index`-th of the run.
fn new_flow(index: usize, redemption: bool, at: time::OffsetDateTime) -> FlowRecord {
    let n = u8::try_from(index).unwrap_or(u8::MAX);
    FlowRecord {
        id: Id::from_bytes([0x30 + n; 16]),
        handle_hash: Digest::sha256(format!("flow-handle-{index}").as_bytes()),
        tenant_id: "t".into(),
        user_flow_id: "signup".into(),
        client_id: "app".into(),
        redirect_uri: "https://app.example/done".into(),
        redemption: redemption.then(|| RedemptionBinding {
            invitation_id: Id::from_bytes([4; 16]),
            user_id: invited_user(),
            verifier_hash: Digest::sha256(b"verifier"),
        }),
        nonce: None,
        app_state: None,
        ui_locales: Some("de-DE en".into()),
        context: Default::default(),
        state: if redemption {
            FlowState::Invited
        } else {
            FlowState::ChooseProvider
        },
        created_at: at,
        expires_at: at + Duration::hours(1),
    }
}

/// An authenticator the harness enrolled for `user` before the run.
fn pre_enrolled(keys: &KeyRing, user: Id, fill: u8, rng: &SeededRandom) -> Option<TotpEnrollment> {
    let secret = TotpSecret::from_bytes(&[fill; 20]).ok()?;
    let sealed = totp::seal(keys, &secret, user.to_string().as_bytes(), rng).ok()?;
    Some(TotpEnrollment {
        secret: sealed,
        last_used_step: None,
        created_date_time: datetime!(2026-11-01 12:00 UTC),
        consecutive_failures: 0,
    })
}

/// What the machine checks an authenticator code against, at `state`: the
/// secret being enrolled, or, at a challenge, the enrollment the harness
/// holds for the gate's user (the one it passes along).
struct Authenticator {
    /// Whose it is (the sealing binding).
    user: Id,
    sealed: SealedTotpSecret,
    opened: TotpSecret,
    /// The enrollment passed with the input, for a challenge.
    enrollment: Option<TotpEnrollment>,
    /// The secret is being enrolled in this flow.
    enrolling: bool,
}

impl Authenticator {
    /// A key naming the secret across flows.
    fn key(&self) -> String {
        format!("{}:{}", self.user, self.opened.base32().expose())
    }
}

fn authenticator_at(
    keys: &KeyRing,
    state: &FlowState,
    enrollments: &BTreeMap<Id, TotpEnrollment>,
) -> Option<Authenticator> {
    let FlowState::StepUp { gate, stage } = state else {
        return None;
    };
    let user = gate.subject.user_id;
    let binding = user.to_string();
    match stage {
        StepUpStep::EnrollAuthenticator { secret, .. } => {
            let opened = totp::open(keys, secret, binding.as_bytes());
            assert!(
                opened.is_ok(),
                "the secret being enrolled does not open for its user"
            );
            Some(Authenticator {
                user,
                sealed: secret.clone(),
                opened: opened.ok()?,
                enrollment: None,
                enrolling: true,
            })
        }
        StepUpStep::Authenticator => {
            let enrollment = enrollments.get(&user)?;
            let opened = totp::open(keys, &enrollment.secret, binding.as_bytes()).ok()?;
            Some(Authenticator {
                user,
                sealed: enrollment.secret.clone(),
                opened,
                enrollment: Some(enrollment.clone()),
                enrolling: false,
            })
        }
        StepUpStep::Choose | StepUpStep::EmailCode { .. } => None,
    }
}

/// The enrollment held for the gate's user at `state`, as the service
/// reads it along with a step-up code.
fn held_enrollment(state: &FlowState, enrollments: &BTreeMap<Id, TotpEnrollment>) -> Option<TotpEnrollment> {
    match state {
        FlowState::StepUp { gate, .. } => enrollments.get(&gate.subject.user_id).cloned(),
        _ => None,
    }
}

/// An authenticator code accepted by the machine.
#[derive(Clone)]
struct Accepted {
    code: String,
    user: Id,
    key: String,
    sealed: SealedTotpSecret,
    step: u64,
}

/// How the harness chose a step-up code.
enum CodeKind {
    /// The authenticator's code now; `fresh`: its step was not used yet,
    /// so it must be accepted.
    Right {
        fresh: bool,
    },
    /// The last accepted code again.
    Replay(Accepted),
    Other,
}

/// Whether `input` at `prev` makes the machine enter the access gate.
#[derive(PartialEq)]
enum Entry {
    No,
    Yes,
    /// A step-up code: when it is accepted.
    IfAccepted,
}

fn enters_gate(prev: &FlowState, input: &FlowInput, terms: Option<&TermsOfUse>) -> Entry {
    match (prev, input) {
        (
            FlowState::Authenticated { .. },
            FlowInput::AccountLookedUp {
                by_identity: Some(account),
                ..
            },
        ) if account.enabled => Entry::Yes,
        (
            FlowState::Reviewing { .. },
            FlowInput::ApprovalReviewed {
                verdict: ApprovalVerdict::Approve,
            },
        ) => Entry::Yes,
        (FlowState::Approved { .. }, FlowInput::Resume) => Entry::Yes,
        (FlowState::Consent { .. }, FlowInput::Consent { accept: true }) if terms.is_none() => Entry::Yes,
        (
            FlowState::TermsOfUse {
                agreement_id,
                version,
                ..
            },
            FlowInput::AnswerTerms { accept: true },
        ) if terms.is_none_or(|t| t.id() == agreement_id && t.version() == *version) => Entry::Yes,
        (
            FlowState::AccessTerms {
                agreement_id,
                version,
                ..
            },
            FlowInput::AnswerTerms { accept: true },
        ) if agreement_id != POLICY_TERMS || *version == POLICY_TERMS_VERSION => Entry::Yes,
        (FlowState::StepUp { .. }, FlowInput::SubmitStepUpCode { .. }) => Entry::IfAccepted,
        _ => Entry::No,
    }
}

/// The block page text for `key`, as the machine words it.
fn block_text(uf: Option<&UserFlow>, flow: &FlowRecord, key: TextKey) -> String {
    match uf {
        Some(uf) => uf.text(key, uf.language(flow.ui_locales.as_deref())).to_owned(),
        None => key.default_text(Language::EnUs).to_owned(),
    }
}

fn has_policy_terms(list: &[AgreementAcceptance]) -> bool {
    list.iter()
        .any(|a| a.agreement_id == POLICY_TERMS && a.version == POLICY_TERMS_VERSION)
}

/// The authenticator enrollment a transition carries (stored on a user, or
/// kept in the gate), if any.
fn carried_enrollment(t: &Transition) -> Option<&TotpEnrollment> {
    let from_effects = t.effects.iter().find_map(|e| match e {
        Effect::UpdateUser { update, .. } => update.authenticator.as_ref(),
        Effect::CreateUser { record } => record.authenticator.as_ref(),
        Effect::CompleteRedemption { authenticator, .. } => authenticator.as_ref(),
        _ => None,
    });
    from_effects.or(match &t.state {
        FlowState::StepUp { gate, .. } | FlowState::AccessTerms { gate, .. } => gate.enrolled.as_ref(),
        _ => None,
    })
}

/// The methods a gate may step up with (the machine's rule, restated).
fn offered(step_up: StepUpMethods, issuer: &str) -> StepUpMethods {
    StepUpMethods {
        email_otp: step_up.email_otp && issuer != EMAIL_OTP_ISSUER,
        authenticator: step_up.authenticator,
    }
}

fuzz_target!(|input: Input| {
    let fx = fixture();
    let keys = &fx.keys;
    let policy_index = usize::from(input.policy) % POLICIES.len();
    let (policies, policy_count) = &fx.policies[policy_index];
    let step_up = STEP_UP[usize::from(input.step_up) % STEP_UP.len()];
    let access = AccessEnv {
        policies,
        cross_tenant: &fx.cross_tenant,
        agreements: &fx.agreements,
        step_up,
    };
    let Some(uf) = fx.config.user_flow("signup") else {
        panic!("the fixture's user flow is missing");
    };
    // A redemption has no user flow, as the service runs it.
    let env_uf = (!input.redemption).then_some(uf);
    let policy = PasscodePolicy {
        min_send_interval: Duration::ZERO,
        ..PasscodePolicy::default()
    };
    let domains = DomainRestriction::default();
    let rng = SeededRandom::new(input.seed);
    let start = datetime!(2026-12-01 12:00 UTC);
    let mut now = start;

    // What lasts across the flows of a run: the people, what they
    // enrolled and accepted, the address counters, the codes seen.
    let mut enrollments: BTreeMap<Id, TotpEnrollment> = BTreeMap::new();
    if input.enrolled {
        let seal_rng = SeededRandom::new(!input.seed);
        for (user, fill) in [(existing_user(), 0x42), (invited_user(), 0x43)] {
            if let Some(e) = pre_enrolled(keys, user, fill, &seal_rng) {
                enrollments.insert(user, e);
            }
        }
    }
    let mut user_acceptances: BTreeMap<Id, Vec<AgreementAcceptance>> = BTreeMap::new();
    let mut known_user: Option<Id> = None;
    let mut accepted_steps: BTreeMap<String, Vec<(usize, u64)>> = BTreeMap::new();
    let mut last_accepted: Option<Accepted> = None;
    // Wrong codes in a row, per user, since their authenticator last
    // accepted one (or was enrolled).
    let mut wrong_in_a_row: BTreeMap<Id, u32> = BTreeMap::new();
    let mut throttle: Option<AddressThrottle> = None;
    let mut last_code: Option<SecretString> = None;
    let terms = TermsOfUse::new("terms", "Terms", "https://contoso.example/terms", 3).ok();
    let terms = terms.as_ref().filter(|_| input.terms);

    // What one flow has done.
    let mut flow_index = 0usize;
    let mut flow = new_flow(flow_index, input.redemption, now);
    let mut proven = false;
    let mut users_created = 0u32;
    let mut redemptions = 0u32;
    let mut stepped_up = false;
    let mut authenticator_refusals = 0u32;
    // The existing user this flow signs in (or redeems for), and the
    // acceptances the lookup reported for them.
    let mut existing: Option<(Id, Vec<AgreementAcceptance>)> =
        input.redemption.then(|| (invited_user(), Vec::new()));

    let mut ops: std::collections::VecDeque<Op> = prefix(input.redemption, input.prefix)
        .into_iter()
        .chain(input.ops.into_iter().take(128))
        .collect();
    while let Some(op) = ops.pop_front() {
        let mut code_kind = CodeKind::Other;
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
                    home_tenant_id: None,
                    object_id: None,
                    amr: vec![],
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
                authenticator,
            } => {
                let user_id = known_user.unwrap_or(existing_user());
                FlowInput::AccountLookedUp {
                    by_identity: found.then(|| ExistingAccount {
                        user_id,
                        user_type: UserType::Guest,
                        enabled,
                        mail: None,
                        // The store is truthful about an authenticator it
                        // holds; one it does not hold may have gone away
                        // since the account was read.
                        authenticator_enrolled: authenticator || enrollments.contains_key(&user_id),
                        agreement_acceptances: user_acceptances.get(&user_id).cloned().unwrap_or_default(),
                    }),
                    mail_taken,
                }
            }
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
            Op::ConnectorContinue(federation) => {
                let mut headers = HeaderMap::new();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
                FlowInput::ConnectorAnswered {
                    step: if federation {
                        ConnectorStep::PostFederationSignup
                    } else {
                        ConnectorStep::PostAttributeCollection
                    },
                    outcome: connector::parse_response(
                        StatusCode::OK,
                        &headers,
                        br#"{"version":"1.0.0","action":"Continue"}"#,
                    ),
                }
            }
            Op::Attributes(body) => match uf.attributes().decode_form(&body, &[]) {
                Ok(values) => FlowInput::SubmitAttributes { values },
                Err(_) => continue,
            },
            Op::GoodAttributes => match uf.attributes().decode_form(b"givenName=Ada&country=NL", &[]) {
                Ok(values) => FlowInput::SubmitAttributes { values },
                Err(e) => panic!("the harness's attribute form is refused: {e:?}"),
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
            Op::Terms(accept) | Op::AnswerPolicyTerms(accept) => FlowInput::AnswerTerms { accept },
            Op::ChooseStepUp(email) => FlowInput::ChooseStepUp {
                method: if email {
                    StepUpMethod::EmailOtp
                } else {
                    StepUpMethod::Authenticator
                },
                stored_spelling: None,
                throttle: throttle.clone(),
            },
            Op::StepUpRightEmailCode => match &last_code {
                Some(c) => FlowInput::SubmitStepUpCode {
                    code: c.clone(),
                    throttle: throttle.clone(),
                    authenticator: held_enrollment(&flow.state, &enrollments),
                },
                None => continue,
            },
            Op::StepUpCode(s) => FlowInput::SubmitStepUpCode {
                code: SecretString::new(s),
                throttle: throttle.clone(),
                authenticator: held_enrollment(&flow.state, &enrollments),
            },
            Op::StepUpDigits(n) => FlowInput::SubmitStepUpCode {
                code: SecretString::new(format!("{:06}", n % 1_000_000)),
                throttle: throttle.clone(),
                authenticator: held_enrollment(&flow.state, &enrollments),
            },
            Op::RightAuthenticatorCode => {
                let Some(a) = authenticator_at(keys, &flow.state, &enrollments) else {
                    continue;
                };
                let step = totp::step_at(now);
                let fresh = a.enrolling
                    || a.enrollment
                        .as_ref()
                        .is_some_and(|e| !e.is_locked() && e.last_used_step.is_none_or(|last| last < step));
                code_kind = CodeKind::Right { fresh };
                FlowInput::SubmitStepUpCode {
                    code: SecretString::new(a.opened.code_at_step(step)),
                    throttle: throttle.clone(),
                    authenticator: a.enrollment,
                }
            }
            Op::ReplayAuthenticatorCode => {
                let Some(last) = &last_accepted else {
                    continue;
                };
                code_kind = CodeKind::Replay(last.clone());
                FlowInput::SubmitStepUpCode {
                    code: SecretString::new(last.code.clone()),
                    throttle: throttle.clone(),
                    authenticator: held_enrollment(&flow.state, &enrollments)
                        .or_else(|| enrollments.get(&last.user).cloned()),
                }
            }
            Op::Wait(minutes) => {
                now += Duration::minutes(i64::from(minutes));
                continue;
            }
            Op::Tick(seconds) => {
                now += Duration::seconds(i64::from(seconds));
                continue;
            }
            Op::Restart(choice) => {
                if flow_index + 1 >= MAX_FLOWS {
                    continue;
                }
                for op in prefix(input.redemption, choice).into_iter().rev() {
                    ops.push_front(op);
                }
                assert!(users_created <= 1, "one flow created {users_created} users");
                assert!(redemptions <= 1, "one flow redeemed {redemptions} times");
                flow_index += 1;
                flow = new_flow(flow_index, input.redemption, now);
                proven = false;
                users_created = 0;
                redemptions = 0;
                stepped_up = false;
                authenticator_refusals = 0;
                existing = input.redemption.then(|| (invited_user(), Vec::new()));
                continue;
            }
        };
        let subject = AccessSubject {
            user_id: invited_user(),
            user_type: UserType::Guest,
            authenticator_enrolled: enrollments.contains_key(&invited_user()),
            agreement_acceptances: Vec::new(),
        };
        let env = FlowEnv {
            now,
            rng: &rng,
            keys,
            passcode: &policy,
            domains: &domains,
            user_flow: env_uf,
            terms_of_use: terms,
            tenant_domain: "contoso.example",
            access: &access,
            subject: Some(&subject),
            language: Language::EnUs,
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
        // The authenticator a step-up code is checked against, and the
        // code as submitted.
        let checked = match &flow_input {
            FlowInput::SubmitStepUpCode { code, .. } => authenticator_at(keys, &flow.state, &enrollments)
                .filter(|a| {
                    a.enrolling
                        || matches!(
                            &flow_input,
                            FlowInput::SubmitStepUpCode {
                                authenticator: Some(e),
                                ..
                            } if e.secret == a.sealed
                        )
                })
                .map(|a| (a, code.expose().to_owned())),
            _ => None,
        };
        let entry = enters_gate(&flow.state, &flow_input, terms);
        // The account a sign-in goes on with.
        let looked_up = match (&flow.state, &flow_input) {
            (
                FlowState::Authenticated { .. },
                FlowInput::AccountLookedUp {
                    by_identity: Some(account),
                    ..
                },
            ) if account.enabled => Some((account.user_id, account.agreement_acceptances.clone())),
            _ => None,
        };
        // A step-up method that must be refused here.
        let refused_method = match (&flow.state, &flow_input) {
            (FlowState::StepUp { gate, .. }, FlowInput::ChooseStepUp { method, .. }) => {
                let offered = offered(step_up, &gate.then.identity().issuer);
                match method {
                    StepUpMethod::EmailOtp => !offered.email_otp,
                    StepUpMethod::Authenticator => !offered.authenticator,
                }
            }
            _ => false,
        };
        let is_choice = matches!(flow_input, FlowInput::ChooseStepUp { .. });
        let sent = flow_input.clone();
        let was_final = flow.state.is_final();
        let result = machine::transition(&env, &flow, flow_input);
        if refused_method {
            assert!(
                result.is_err(),
                "a step-up method that is not offered (or an emailed code after an email passcode) was accepted"
            );
        }
        let t = match result {
            Ok(t) => t,
            Err(e) => {
                if let CodeKind::Right { fresh: true } = code_kind
                    && now < flow.expires_at
                {
                    panic!("the right authenticator code of an unused step was refused: {e}");
                }
                continue;
            }
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
        if let Some(account) = looked_up {
            existing = Some(account);
        }

        // The access gate.
        let from_step_up = matches!(flow.state, FlowState::StepUp { .. });
        let accepted_code = entry == Entry::IfAccepted
            && !matches!(t.state, FlowState::StepUp { .. })
            && t.refused.is_none()
            && t.authenticator_refused.is_none();
        let entered = entry == Entry::Yes || accepted_code;
        if accepted_code {
            stepped_up = true;
        }
        let audits: Vec<&AccessReport> = t
            .effects
            .iter()
            .filter_map(|e| match e {
                Effect::AuditAccess { report } => Some(report),
                _ => None,
            })
            .collect();
        if entered {
            assert_eq!(
                audits.len(),
                1,
                "a gate decision without exactly one audit report"
            );
            let report = audits[0];
            let d = report.decision.as_str();
            assert_eq!(report.application_id, "app");
            assert_eq!(
                report.policies.len(),
                *policy_count,
                "the report leaves out policies"
            );
            let allowing = d == "allow" || d.starts_with("require nothing");
            match &t.state {
                FlowState::Completed { .. } => {
                    assert!(allowing, "completed on the decision `{d}`")
                }
                FlowState::StepUp {
                    gate,
                    stage: StepUpStep::Choose,
                } => {
                    assert!(
                        d.starts_with("require") && d.contains("mfa"),
                        "a step-up on the decision `{d}`"
                    );
                    assert!(
                        !offered(step_up, &gate.then.identity().issuer).is_empty(),
                        "a step-up with no method to offer"
                    );
                }
                FlowState::AccessTerms {
                    agreement_id,
                    version,
                    ..
                } => {
                    assert!(
                        d.starts_with("require") && d.contains(agreement_id.as_str()),
                        "terms `{agreement_id}` asked for on the decision `{d}`"
                    );
                    assert_eq!(agreement_id, POLICY_TERMS);
                    assert_eq!(*version, POLICY_TERMS_VERSION);
                }
                FlowState::Blocked { .. } => assert!(
                    d.starts_with("block") || (d.starts_with("require") && !allowing),
                    "blocked on the decision `{d}`"
                ),
                other => panic!("a gate decision led to `{}`", other.name()),
            }
            if d.starts_with("block") {
                assert!(
                    matches!(t.state, FlowState::Blocked { .. }),
                    "`{d}` did not block"
                );
            }
            let blocked_with = |key: TextKey| match &t.state {
                FlowState::Blocked { message } => *message == block_text(env_uf, &flow, key),
                _ => false,
            };
            match policy_index {
                POLICY_NONE | POLICY_REPORT_ONLY => {
                    assert_eq!(d, "allow", "a report-only or empty policy set decided `{d}`");
                    assert!(
                        matches!(t.state, FlowState::Completed { .. }),
                        "a report-only or empty policy set did not let the flow through"
                    );
                }
                POLICY_BLOCK => {
                    assert!(d.starts_with("block (by `Block guests`)"), "decision `{d}`");
                    assert!(
                        blocked_with(TextKey::AccessBlocked),
                        "a block policy did not block"
                    );
                }
                POLICY_DEVICE => {
                    assert!(d.starts_with("require") && d.contains("compliantDevice"));
                    assert!(
                        blocked_with(TextKey::DeviceRequired),
                        "a device policy did not block"
                    );
                }
                POLICY_MFA => {
                    if from_step_up {
                        assert!(matches!(t.state, FlowState::Completed { .. }));
                    } else {
                        assert!(
                            matches!(
                                t.state,
                                FlowState::StepUp {
                                    stage: StepUpStep::Choose,
                                    ..
                                }
                            ) || blocked_with(TextKey::StepUpUnavailable),
                            "an mfa policy led to `{}`",
                            t.state.name()
                        );
                    }
                }
                POLICY_TERMS_OF_USE => assert!(
                    matches!(
                        t.state,
                        FlowState::Completed { .. } | FlowState::AccessTerms { .. }
                    ),
                    "a terms policy led to `{}`",
                    t.state.name()
                ),
                _ => assert!(
                    matches!(
                        t.state,
                        FlowState::Completed { .. }
                            | FlowState::AccessTerms { .. }
                            | FlowState::StepUp { .. }
                    ),
                    "an mfa-or-terms policy led to `{}`",
                    t.state.name()
                ),
            }
        } else {
            assert!(
                audits.is_empty(),
                "an audit report without a gate decision (`{}` to `{}`)",
                flow.state.name(),
                t.state.name()
            );
        }

        // Step-up codes and methods.
        if let FlowState::StepUp { gate, stage } = &flow.state {
            if gate.then.identity().issuer == EMAIL_OTP_ISSUER {
                assert!(
                    !t.effects.iter().any(|e| matches!(e, Effect::SendPasscode { .. })),
                    "a step-up code was mailed after an email-passcode sign-in"
                );
            }
            if is_choice
                && let FlowState::StepUp {
                    stage: StepUpStep::EmailCode { email, .. },
                    ..
                } = &t.state
            {
                let to = t.effects.iter().find_map(|e| match e {
                    Effect::SendPasscode { to, .. } => Some(to),
                    _ => None,
                });
                assert!(
                    to.is_some_and(|to| to.comparison_key() == gate.then.identity().email.comparison_key()),
                    "a step-up code went elsewhere than the verified address"
                );
                assert_eq!(
                    email.comparison_key(),
                    gate.then.identity().email.comparison_key()
                );
            }
            let passed = match &sent {
                FlowInput::SubmitStepUpCode { authenticator, .. } => authenticator.as_ref(),
                _ => None,
            };
            if let Some(error) = t.authenticator_refused {
                assert!(
                    matches!(
                        stage,
                        StepUpStep::EnrollAuthenticator { .. } | StepUpStep::Authenticator
                    ),
                    "an authenticator refusal at `{}`",
                    stage.name()
                );
                if error == TotpError::Locked {
                    assert!(
                        passed.is_some_and(TotpEnrollment::is_locked),
                        "an authenticator that is not locked was refused as locked"
                    );
                    assert!(
                        matches!(&t.state, FlowState::Blocked { message }
                            if *message == block_text(env_uf, &flow, TextKey::StepUpFailed)),
                        "a locked authenticator did not end the flow"
                    );
                } else {
                    authenticator_refusals += 1;
                    match &t.state {
                        FlowState::StepUp {
                            gate: next,
                            stage: next_stage,
                        } => {
                            assert_eq!(next_stage, stage, "a wrong code ({error}) changed the stage");
                            assert_eq!(
                                next.authenticator_failures,
                                gate.authenticator_failures + 1,
                                "a wrong code ({error}) was not counted"
                            );
                            assert!(
                                next.authenticator_failures < MAX_AUTHENTICATOR_ATTEMPTS,
                                "the flow outlived its attempts"
                            );
                        }
                        FlowState::Blocked { message } => {
                            assert!(
                                gate.authenticator_failures + 1 >= MAX_AUTHENTICATOR_ATTEMPTS,
                                "blocked before the limit"
                            );
                            assert_eq!(*message, block_text(env_uf, &flow, TextKey::StepUpFailed));
                        }
                        other => panic!("a wrong code led to `{}`", other.name()),
                    }
                    assert!(
                        authenticator_refusals <= MAX_AUTHENTICATOR_ATTEMPTS,
                        "one flow took {authenticator_refusals} wrong authenticator codes"
                    );
                }
                // A refusal never records a use, and counts a wrong code
                // against the stored authenticator.
                for e in &t.effects {
                    if let Effect::UpdateUser { update, .. } = e
                        && let Some(a) = &update.authenticator
                    {
                        let Some(before) = passed else {
                            panic!("a refused code wrote an authenticator the user does not have");
                        };
                        assert!(
                            a.secret == before.secret,
                            "a refused code replaced the authenticator"
                        );
                        assert_eq!(
                            a.last_used_step, before.last_used_step,
                            "a refused code recorded a use"
                        );
                        assert_eq!(a.consecutive_failures, before.consecutive_failures + 1);
                    }
                }
                if matches!(stage, StepUpStep::Authenticator) && error == TotpError::Wrong {
                    let counted = t.effects.iter().any(|e| matches!(e, Effect::UpdateUser { .. }));
                    assert!(counted, "a wrong code was not counted against the authenticator");
                    let in_a_row = wrong_in_a_row.entry(gate.subject.user_id).or_default();
                    *in_a_row += 1;
                    assert!(
                        *in_a_row <= MAX_CONSECUTIVE_FAILURES,
                        "an authenticator took {in_a_row} wrong codes in a row across flows"
                    );
                }
            } else if accepted_code && matches!(stage, StepUpStep::Authenticator) {
                assert!(
                    passed.is_some_and(|a| !a.is_locked()),
                    "a locked (or missing) authenticator let a code through"
                );
                wrong_in_a_row.remove(&gate.subject.user_id);
            }
        }
        if let FlowState::StepUp { gate, .. } = &t.state {
            // However often a method was chosen again.
            assert_eq!(
                gate.authenticator_failures, authenticator_refusals,
                "the flow's count of wrong authenticator codes went astray"
            );
        }
        if let FlowState::StepUp {
            stage: StepUpStep::EmailCode { passcode, .. },
            ..
        } = &t.state
        {
            assert!(passcode.bound_to.ct_eq(&flow.handle_hash));
        }
        match &code_kind {
            CodeKind::Right { fresh: true } => {
                assert!(
                    accepted_code,
                    "the right authenticator code of an unused step was refused"
                )
            }
            CodeKind::Replay(last) => {
                // A write of the replayed step as a new use (a refusal
                // keeps the stored step as it was).
                let replayed = |e: &TotpEnrollment| {
                    e.secret == last.sealed
                        && e.last_used_step == Some(last.step)
                        && t.authenticator_refused.is_none()
                };
                assert!(
                    !t.effects.iter().any(|e| matches!(
                        e,
                        Effect::UpdateUser { update, .. } if update.authenticator.as_ref().is_some_and(replayed)
                    )),
                    "a replayed authenticator code wrote its step again"
                );
            }
            _ => {}
        }
        if accepted_code && let Some((a, code)) = &checked {
            let Some(enrollment) = carried_enrollment(&t) else {
                panic!("an accepted authenticator code left no used step");
            };
            assert!(
                enrollment.secret == a.sealed,
                "the accepted code's step was stored for another secret"
            );
            let Some(step) = enrollment.last_used_step else {
                panic!("an accepted authenticator code left no used step");
            };
            let current = totp::step_at(now);
            assert!(
                step + 1 >= current && step <= current + 1,
                "step {step} accepted at step {current}"
            );
            let digits: String = code.chars().filter(char::is_ascii_digit).collect();
            assert_eq!(
                digits,
                a.opened.code_at_step(step),
                "a code accepted for a step it is not of"
            );
            let key = a.key();
            let seen = accepted_steps.entry(key.clone()).or_default();
            assert!(
                seen.iter().all(|(_, s)| *s < step),
                "authenticator step {step} accepted in flow {flow_index} after {seen:?} (flow, step)"
            );
            seen.push((flow_index, step));
            if let CodeKind::Replay(last) = &code_kind {
                assert!(
                    !(last.key == key && last.step == step),
                    "a replayed authenticator code was accepted"
                );
            }
            last_accepted = Some(Accepted {
                code: code.clone(),
                user: a.user,
                key,
                sealed: a.sealed.clone(),
                step,
            });
        }

        // Completions.
        let completes = t.effects.iter().any(|e| {
            matches!(
                e,
                Effect::CreateUser { .. } | Effect::IssueToken { .. } | Effect::CompleteRedemption { .. }
            )
        });
        if completes {
            assert!(
                policy_index != POLICY_BLOCK && policy_index != POLICY_DEVICE,
                "a flow completed under a block or device policy"
            );
            assert!(entered, "a completion without a gate decision");
            // The policy terms recorded by this completion.
            let recorded = t.effects.iter().any(|e| match e {
                Effect::CreateUser { record } => has_policy_terms(&record.user.agreement_acceptances),
                Effect::CompleteRedemption { acceptances, .. } => has_policy_terms(acceptances),
                Effect::UpdateUser { update, .. } => has_policy_terms(&update.agreement_acceptances),
                _ => false,
            });
            let signed_in = matches!(t.state, FlowState::Completed { signed_in: true, .. });
            let earlier = signed_in
                && existing.as_ref().is_some_and(|(_, list)| {
                    list.iter()
                        .any(|a| a.agreement_id == POLICY_TERMS && a.version >= POLICY_TERMS_VERSION)
                });
            match policy_index {
                POLICY_MFA => assert!(from_step_up, "completed under an mfa policy without a step-up"),
                POLICY_TERMS_OF_USE => assert!(
                    recorded || earlier,
                    "completed under a terms policy without recording the acceptance"
                ),
                POLICY_MFA_OR_TERMS => assert!(
                    stepped_up || recorded || earlier,
                    "completed under an mfa-or-terms policy with neither"
                ),
                _ => {}
            }
            if !matches!(policy_index, POLICY_TERMS_OF_USE | POLICY_MFA_OR_TERMS) {
                assert!(
                    !recorded,
                    "policy terms recorded without a policy asking for them"
                );
            }
        }
        for e in &t.effects {
            match e {
                Effect::CompleteRedemption { acceptances, .. } => {
                    assert!(input.redemption, "a sign-up completed a redemption");
                    assert!(proven, "redeemed before the address was proven");
                    assert!(matches!(
                        t.state,
                        FlowState::Completed { user_id, signed_in: false } if user_id == invited_user()
                    ));
                    let tenant_terms = acceptances
                        .iter()
                        .filter(|a| a.agreement_id == "terms" && a.version == 3)
                        .count();
                    assert_eq!(
                        tenant_terms,
                        usize::from(terms.is_some()),
                        "tenant terms acceptance"
                    );
                    assert!(
                        acceptances.iter().all(|a| a.agreement_id == "terms"
                            || (a.agreement_id == POLICY_TERMS && a.version == POLICY_TERMS_VERSION)),
                        "an acceptance of terms never shown"
                    );
                    if policy_index == POLICY_TERMS_OF_USE {
                        assert!(has_policy_terms(acceptances), "policy terms acceptance");
                    }
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
            match e {
                Effect::IssueToken {
                    user_id, assurance, ..
                } => {
                    assert!(matches!(t.state, FlowState::Completed { user_id: u, .. } if u == *user_id));
                    assert_eq!(
                        assurance.acr == ACR_MULTI_FACTOR,
                        stepped_up,
                        "the token's acr `{}` misstates the step-up",
                        assurance.acr
                    );
                    assert_eq!(assurance.amr.iter().any(|m| m == "mfa"), stepped_up);
                    if policy_index == POLICY_MFA {
                        assert_eq!(assurance.acr, ACR_MULTI_FACTOR);
                    }
                }
                Effect::UpdateUser { user_id, .. } => {
                    assert!(
                        existing.as_ref().is_some_and(|(id, _)| id == user_id),
                        "an update of a user the flow did not sign in"
                    );
                    assert!(
                        !t.effects.iter().any(|e| matches!(e, Effect::CreateUser { .. })),
                        "an update along with a creation"
                    );
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
            assert!(completes, "completed without its effects");
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
            assert!(passcode.bound_to.ct_eq(&flow.handle_hash));
        }

        // What the store would keep.
        for e in &t.effects {
            match e {
                Effect::StoreThrottle { record } => throttle = Some(record.clone()),
                Effect::SendPasscode { code, .. } => last_code = Some(code.clone()),
                Effect::CreateUser { record } => {
                    let id = record.user.id;
                    known_user = Some(id);
                    if let Some(a) = &record.authenticator {
                        wrong_in_a_row.remove(&id);
                        enrollments.insert(id, a.clone());
                    }
                    user_acceptances.insert(id, record.user.agreement_acceptances.clone());
                }
                Effect::UpdateUser { user_id, update } => {
                    if let Some(a) = &update.authenticator {
                        if enrollments.get(user_id).is_none_or(|old| old.secret != a.secret) {
                            wrong_in_a_row.remove(user_id);
                        }
                        enrollments.insert(*user_id, a.clone());
                    }
                    let list = user_acceptances.entry(*user_id).or_default();
                    for a in &update.agreement_acceptances {
                        list.retain(|old| old.agreement_id != a.agreement_id);
                        list.push(a.clone());
                    }
                }
                Effect::CompleteRedemption {
                    authenticator: Some(a),
                    ..
                } => {
                    wrong_in_a_row.remove(&invited_user());
                    enrollments.insert(invited_user(), a.clone());
                }
                _ => {}
            }
        }
        for (user, enrollment) in &enrollments {
            assert_eq!(
                enrollment.consecutive_failures,
                wrong_in_a_row.get(user).copied().unwrap_or(0),
                "the stored count of wrong codes in a row went astray"
            );
        }
        flow.state = t.state;
        if let Some(at) = t.expires_at {
            flow.expires_at = at;
        }
    }
    assert!(users_created <= 1, "one flow created {users_created} users");
    assert!(redemptions <= 1, "one flow redeemed {redemptions} times");
});
