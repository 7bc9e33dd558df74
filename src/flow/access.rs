//! The access gate every flow passes before it ends: cross-organisation
//! access, conditional access and what they ask for (a multi-factor
//! step-up, terms of use), decided by the pure evaluators of
//! [`policy`](crate::policy).
//!
//! # Where it runs
//!
//! A sign-in through a user flow (an existing account), a sign-up (after
//! the attributes, the connectors and any approval, before the account is
//! created) and an invitation redemption (after consent and the tenant's
//! terms of use, before the invitation completes) all enter the gate with
//! what they would do next (a [`Then`]). A federated sign-in also meets the
//! cross-organisation check as soon as the provider answers, so a guest from
//! a blocked partner organisation stops before consent.
//!
//! # What it decides
//!
//! 1. **Cross-organisation access**: a person from another organisation
//!    (an Entra tenant id known from the `tid` of a provider registered as
//!    an Entra organisation, [`CandidateKind::Organization`](crate::idp::order::CandidateKind::Organization);
//!    other providers name no organisation) passes only when
//!    the inbound B2B collaboration settings in force for their home
//!    organisation allow the user and the application
//!    ([`CrossTenantSettings`]).
//!    A person without a known home organisation (an email passcode, a
//!    social account) is not subject to them, as in Entra.
//! 2. **Conditional access**: the sign-in (user, user kind, home tenant,
//!    application, client address and kind from the flow's
//!    [`SignInContext`]) is explained with
//!    [`CompiledPolicies::explain`]; the explanation goes to the audit sink
//!    with the decision ([`AccessReport`]) every time the gate decides.
//!    What counts as satisfied: a step-up done in this flow, the home
//!    organisation's MFA claim when the inbound trust settings accept it
//!    from the user's home organisation (a claim issued by any other
//!    organisation counts for nothing), and terms of use the user accepted
//!    at their current version.
//! 3. **The outcome**: a block ends the flow on a block page; a compliant
//!    or domain-joined device, which no flow step can provide, ends it
//!    too; missing MFA adds the step-up step ([`StepUpStep`]), then missing
//!    terms of use add a terms step; once nothing is missing the flow does
//!    what it was about to do, and the completion token's `amr` and `acr`
//!    say what was satisfied ([`Assurance`]).
//!
//! # Step-up methods
//!
//! An authenticator app (TOTP, RFC 6238, see [`totp`]):
//! enrolled in the flow (the secret shown as an `otpauth://` URI) when the
//! user has none, else challenged; and, when the host turns it on
//! ([`StepUpMethods::email_otp`]), a code mailed to the user's verified
//! address. The emailed code is off by default because it is a weak second
//! factor: the provider a person signed in with often runs their mailbox
//! too. It is never offered after an email-passcode sign-in, where a
//! second code to the same mailbox proves nothing new.
//!
//! A code is single use: an authenticator code whose time step was already
//! used is refused, and the new last step is written with a compare-and-set
//! on the user, so two concurrent uses cannot both pass. Wrong
//! authenticator codes are limited twice: at most
//! [`MAX_AUTHENTICATOR_ATTEMPTS`] per flow, and
//! [`MAX_CONSECUTIVE_FAILURES`](crate::idp::totp::MAX_CONSECUTIVE_FAILURES)
//! in a row across flows (counted on the user, so a new sign-in brings no
//! new guesses), after which the authenticator is locked until an
//! administrator removes it. A second enrolment never replaces an
//! authenticator the user confirmed meanwhile. Emailed codes keep their own
//! limits.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::Duration;

use crate::directory::{AgreementAcceptance, EMAIL_OTP_ISSUER, PasscodeRecord, UserType};
use crate::email::EmailAddress;
use crate::error::Error;
use crate::flow::config::TextKey;
use crate::flow::machine::{Effect, FlowEnv, FlowError, FlowIdentity, FlowInput, FlowState, Transition};
use crate::id::Id;
use crate::idp::totp::{self, SealedTotpSecret, TotpEnrollment, TotpError, TotpSecret};
use crate::policy::conditional_access::{ClientAppType, Explanation, RequiredControls, SignIn, UserKind};
use crate::policy::{CompiledPolicies, CrossTenantSettings, Decision, HomeClaims, Satisfied, TermsOfUse};
use crate::secret::SecretString;

/// The application a redemption signs the guest in to, for conditional
/// access, when no sign-up application registered the invitation's
/// redirect URL: policies for `All` applications (or naming this id) apply.
pub const REDEMPTION_APPLICATION_ID: &str = "invitations";

/// The tenant personal Microsoft accounts sign in through: no
/// organisation, so cross-organisation access does not apply to them.
pub const MICROSOFT_CONSUMERS_TENANT_ID: &str = "9188040d-6c67-4c5b-b112-36a304b66dad";

/// Most wrong authenticator codes one flow accepts before it ends.
pub const MAX_AUTHENTICATOR_ATTEMPTS: u32 = 5;

/// The `acr` of a completion token whose sign-in used one factor.
pub const ACR_SINGLE_FACTOR: &str = "urn:guestpass:acr:sfa";
/// The `acr` of a completion token whose sign-in satisfied multi-factor
/// authentication (a step-up, or a trusted home organisation's claim).
pub const ACR_MULTI_FACTOR: &str = "urn:guestpass:acr:mfa";

/// Where a sign-in comes from, as conditional access sees it. Captured when
/// a flow opens and kept with it.
///
/// [`Default`] is an unknown client: the unspecified address `0.0.0.0`,
/// which meets every location condition (a policy for a location applies,
/// one excluding trusted locations applies too), and a browser, as every
/// flow is. Hosts with location-based policies pass the real address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignInContext {
    /// The client's IP address, as the host determined it.
    pub ip: IpAddr,
    /// The kind of client.
    pub client_app: ClientAppType,
}

impl Default for SignInContext {
    fn default() -> Self {
        Self {
            ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            client_app: ClientAppType::Browser,
        }
    }
}

impl SignInContext {
    /// A browser sign-in from `ip`.
    pub fn browser(ip: IpAddr) -> Self {
        Self {
            ip,
            client_app: ClientAppType::Browser,
        }
    }
}

/// Which step-up methods a tenant offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepUpMethods {
    /// A code mailed to the user's verified address (off by default: see
    /// [`Default`]); offered only after a federated sign-in.
    pub email_otp: bool,
    /// An authenticator app (TOTP).
    pub authenticator: bool,
}

impl Default for StepUpMethods {
    /// The authenticator app only. An emailed code is a weak second factor
    /// (the provider a person signed in with often runs their mailbox too:
    /// an organisation's mail, Gmail, Outlook.com), so a host opts in.
    fn default() -> Self {
        Self {
            email_otp: false,
            authenticator: true,
        }
    }
}

impl StepUpMethods {
    /// Whether neither is on.
    pub fn is_empty(self) -> bool {
        !self.email_otp && !self.authenticator
    }
}

/// A step-up method, as a person picks it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum StepUpMethod {
    /// A code mailed to the verified address.
    EmailOtp,
    /// An authenticator app.
    Authenticator,
}

impl StepUpMethod {
    /// The form value: `emailOtp` or `authenticator`.
    pub fn as_str(self) -> &'static str {
        match self {
            StepUpMethod::EmailOtp => "emailOtp",
            StepUpMethod::Authenticator => "authenticator",
        }
    }

    /// The method a form value names.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "emailOtp" => Some(StepUpMethod::EmailOtp),
            "authenticator" => Some(StepUpMethod::Authenticator),
            _ => None,
        }
    }
}

/// What the gate consults besides the flow: the tenant's compiled
/// policies, its cross-organisation settings, the terms of use policies may
/// require, and the step-up methods on offer.
#[derive(Debug, Clone, Copy)]
pub struct AccessEnv<'a> {
    /// The compiled conditional access policies.
    pub policies: &'a CompiledPolicies,
    /// The cross-organisation access settings.
    pub cross_tenant: &'a CrossTenantSettings,
    /// The terms of use (agreements) policies may require, by id.
    pub agreements: &'a [TermsOfUse],
    /// The step-up methods on offer.
    pub step_up: StepUpMethods,
}

impl AccessEnv<'_> {
    fn agreement(&self, id: &str) -> Option<&TermsOfUse> {
        self.agreements.iter().find(|t| t.id() == id)
    }
}

/// The organisation a federated person comes from, as their provider said.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HomeOrganization {
    /// The user's home tenant id.
    pub tenant_id: String,
    /// The tenant that issued the sign-in's token (`tid`): the user's home
    /// tenant, or another organisation where the user is a guest.
    pub issuer_tenant_id: String,
    /// The user's object id in the issuing tenant (`oid`), if given: what
    /// the partner's user targets name when the issuing tenant is the home
    /// tenant (in another tenant it is the guest object's id, and a list
    /// blocking specific users then blocks, unable to tell).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object_id: Option<String>,
    /// Whether the token says multi-factor authentication was done (`amr`
    /// has `mfa`).
    #[serde(default)]
    pub mfa: bool,
}

/// The user the gate decides for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessSubject {
    /// The user's id (for a sign-up, the id the account will get).
    pub user_id: Id,
    /// Member or guest.
    pub user_type: UserType,
    /// Whether the user has a confirmed authenticator app.
    #[serde(default)]
    pub authenticator_enrolled: bool,
    /// The terms of use the user accepted before this flow.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreement_acceptances: Vec<AgreementAcceptance>,
}

impl AccessSubject {
    /// Conditional access's user kind: every user here signed in with an
    /// identity from outside the tenant, so a guest is a
    /// `b2bCollaborationGuest` and a member a `b2bCollaborationMember`.
    pub fn user_kind(&self) -> UserKind {
        match self.user_type {
            UserType::Guest => UserKind::B2bCollaborationGuest,
            UserType::Member => UserKind::B2bCollaborationMember,
        }
    }
}

/// What a flow does once the gate lets it through.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase")]
pub enum Then {
    /// An existing account signs in.
    SignIn {
        /// The identity, with the account's stored address.
        identity: FlowIdentity,
    },
    /// A new account is created with the collected attributes.
    Create {
        /// The proven identity.
        identity: FlowIdentity,
        /// The collected values, as JSON claims.
        attributes: BTreeMap<String, Value>,
    },
    /// The invitation is redeemed.
    Redeem {
        /// The proven identity.
        identity: FlowIdentity,
        /// The tenant's terms of use, accepted on the way.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        acceptance: Option<AgreementAcceptance>,
    },
}

impl Then {
    /// The identity the person proved.
    pub fn identity(&self) -> &FlowIdentity {
        match self {
            Then::SignIn { identity } | Then::Create { identity, .. } | Then::Redeem { identity, .. } => {
                identity
            }
        }
    }
}

/// How multi-factor authentication was satisfied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum MfaMethod {
    /// A code mailed to the verified address, after a federated sign-in.
    EmailOtp,
    /// An authenticator app code.
    Authenticator,
    /// The home organisation's claim, trusted by the inbound settings.
    HomeOrganization,
}

/// A flow held at the gate: for whom, what follows, and what this flow has
/// satisfied so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gate {
    /// The user.
    pub subject: AccessSubject,
    /// What follows.
    pub then: Then,
    /// The step-up done in this flow, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mfa: Option<MfaMethod>,
    /// Terms of use accepted in this flow (recorded on the user when it
    /// ends).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub accepted: Vec<AgreementAcceptance>,
    /// An authenticator confirmed in this flow (stored on the user when it
    /// ends).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enrolled: Option<TotpEnrollment>,
    /// Wrong authenticator codes in this flow, whatever the stage and
    /// however often a method was chosen again.
    #[serde(default)]
    pub authenticator_failures: u32,
}

impl Gate {
    /// A gate for `subject` that ends with `then`.
    pub fn new(subject: AccessSubject, then: Then) -> Self {
        Self {
            subject,
            then,
            mfa: None,
            accepted: Vec::new(),
            enrolled: None,
            authenticator_failures: 0,
        }
    }

    fn binding(&self) -> Vec<u8> {
        self.subject.user_id.to_string().into_bytes()
    }
}

/// Where a step-up is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "method", rename_all = "camelCase")]
pub enum StepUpStep {
    /// Choose a method.
    Choose,
    /// A code went to `email`; waiting for it.
    #[serde(rename_all = "camelCase")]
    EmailCode {
        /// The verified address (what the page shows).
        email: EmailAddress,
        /// The code at rest, bound to this flow.
        passcode: PasscodeRecord,
        /// Whether the mail transport accepted it.
        delivered: bool,
    },
    /// A new authenticator secret is shown; waiting for its first code.
    #[serde(rename_all = "camelCase")]
    EnrollAuthenticator {
        /// The secret, sealed to the user.
        secret: SealedTotpSecret,
    },
    /// Waiting for a code of the user's authenticator.
    Authenticator,
}

impl StepUpStep {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            StepUpStep::Choose => "stepUp",
            StepUpStep::EmailCode { .. } => "stepUpEmailCode",
            StepUpStep::EnrollAuthenticator { .. } => "stepUpEnrollAuthenticator",
            StepUpStep::Authenticator => "stepUpAuthenticator",
        }
    }
}

/// Changes to an existing user that a flow's end (or an authenticator
/// code) writes, with the flow, as one conditional write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserUpdate {
    /// The user's authenticator: newly confirmed, or with its new last
    /// used step.
    pub authenticator: Option<TotpEnrollment>,
    /// Terms of use accepted (appended; an earlier acceptance of the same
    /// agreement is replaced).
    pub agreement_acceptances: Vec<AgreementAcceptance>,
}

impl UserUpdate {
    /// Applies the update to a user record.
    pub fn apply(self, record: &mut crate::directory::UserRecord) {
        if let Some(a) = self.authenticator {
            record.authenticator = Some(a);
        }
        record_acceptances(&mut record.user.agreement_acceptances, self.agreement_acceptances);
    }

    /// Adds `other` to this update (a later authenticator wins).
    pub fn merge(&mut self, other: UserUpdate) {
        if other.authenticator.is_some() {
            self.authenticator = other.authenticator;
        }
        self.agreement_acceptances.extend(other.agreement_acceptances);
    }
}

/// Appends `new` to `list`, replacing earlier acceptances of the same
/// agreements.
pub(crate) fn record_acceptances(list: &mut Vec<AgreementAcceptance>, new: Vec<AgreementAcceptance>) {
    for a in new {
        list.retain(|old| old.agreement_id != a.agreement_id);
        list.push(a);
    }
}

/// What a completed sign-in satisfied, for the completion token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assurance {
    /// `amr`: the primary method (`otp` for an email passcode, `fed` for a
    /// federated provider), `otp` for a step-up code, and `mfa` when
    /// multi-factor authentication was satisfied.
    pub amr: Vec<String>,
    /// `acr`: [`ACR_MULTI_FACTOR`] or [`ACR_SINGLE_FACTOR`].
    pub acr: String,
    /// The strictest sign-in frequency of the policies that applied: how
    /// long the host may keep the session before signing the person in
    /// again (zero: for this sign-in only).
    pub session_lifetime: Option<Duration>,
}

impl Assurance {
    /// The assurance of `identity` with `mfa`.
    pub fn new(identity: &FlowIdentity, mfa: Option<MfaMethod>, session_lifetime: Option<Duration>) -> Self {
        let mut amr = identity.amr();
        let mut add = |m: &str| {
            if !amr.iter().any(|a| a == m) {
                amr.push(m.to_owned());
            }
        };
        if let Some(method) = mfa {
            if method != MfaMethod::HomeOrganization {
                add("otp");
            }
            add("mfa");
        }
        Self {
            amr,
            acr: if mfa.is_some() {
                ACR_MULTI_FACTOR
            } else {
                ACR_SINGLE_FACTOR
            }
            .to_owned(),
            session_lifetime,
        }
    }
}

/// One access decision with its explanation, as it goes to the audit sink.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AccessReport {
    /// The application signed in to.
    pub application_id: String,
    /// The decision, such as `allow`, `require mfa` or
    /// ``block (by `Block legacy clients`)``.
    pub decision: String,
    /// One line per policy: applied with its controls, or the first unmet
    /// condition (see [`Explanation`]); for a cross-organisation block, the
    /// setting that blocked.
    pub policies: Vec<String>,
}

impl AccessReport {
    /// The report of a conditional access explanation.
    pub fn from_explanation(application_id: &str, explanation: &Explanation<'_>) -> Self {
        Self {
            application_id: application_id.to_owned(),
            decision: explanation.decision.to_string(),
            policies: explanation.policies.iter().map(ToString::to_string).collect(),
        }
    }
}

/// The block page for `key`, in the flow's language.
pub(crate) fn block(env: &FlowEnv<'_>, flow: &crate::directory::FlowRecord, key: TextKey) -> Transition {
    let message = match env.user_flow {
        Some(uf) => uf.text(key, uf.language(flow.ui_locales.as_deref())).to_owned(),
        None => key.default_text(env.language).to_owned(),
    };
    Transition::to(FlowState::Blocked { message })
}

/// The cross-organisation check for a federated `identity`: the block page
/// (and its audit report) when the inbound settings for the person's home
/// organisation do not allow them or the application.
pub(crate) fn partner_blocked(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    identity: &FlowIdentity,
) -> Option<Transition> {
    let home = identity.home.as_ref()?;
    let user = home.object_id.as_deref().unwrap_or(&identity.subject);
    let effective = env.access.cross_tenant.effective(&home.tenant_id);
    let decision = effective.inbound_allows(user, &[], &flow.client_id);
    let (setting, source) = match decision.blocked_by() {
        Some(blocked) => (blocked.setting, blocked.source),
        None => {
            // A list that blocks specific users or groups cannot be
            // checked when the person's home-tenant object id is unknown
            // (no `oid`, or the token came from a tenant where they are a
            // guest) or when it names groups (memberships are the
            // partner's): it blocks then, rather than let them through.
            let users = effective.b2b_collaboration_inbound().users_and_groups();
            let list = users.value;
            let unknown_user = home.object_id.is_none() || home.issuer_tenant_id != home.tenant_id;
            let names_groups = list
                .targets
                .iter()
                .any(|t| t.target_type == crate::policy::TargetType::Group);
            let specific = !list.targets.iter().any(|t| t.target == crate::policy::ALL_USERS);
            if list.access_type == crate::policy::AccessType::Blocked
                && specific
                && (unknown_user || names_groups)
            {
                (crate::policy::TargetSetting::UsersAndGroups, users.source)
            } else {
                return None;
            }
        }
    };
    let setting = match setting {
        crate::policy::TargetSetting::UsersAndGroups => "usersAndGroups",
        crate::policy::TargetSetting::Applications => "applications",
    };
    let source = match source {
        crate::policy::ConfigSource::Default => "the default settings",
        crate::policy::ConfigSource::Partner => "the partner's settings",
    };
    let report = AccessReport {
        application_id: flow.client_id.clone(),
        decision: "block (cross-organisation access)".to_owned(),
        policies: vec![format!(
            "b2bCollaborationInbound.{setting} of {source} for tenant `{}` blocks",
            crate::flow::connector::quote(&home.tenant_id)
        )],
    };
    Some(block(env, flow, TextKey::PartnerBlocked).with(Effect::AuditAccess { report }))
}

/// Enters (or re-enters) the gate: decides, and either ends the flow, asks
/// for a step, or does what the flow was about to do.
///
/// # Errors
///
/// A random or sealing failure while finishing; nothing is decided then.
pub(crate) fn enter(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    gate: Gate,
) -> Result<Transition, Error> {
    let identity = gate.then.identity();
    if let Some(t) = partner_blocked(env, flow, identity) {
        return Ok(t);
    }
    let access = env.access;
    let trusted = identity.home.as_ref().map_or(HomeClaims::NONE, |h| {
        access.cross_tenant.trusted_claims_from(
            Some(&h.tenant_id),
            &h.issuer_tenant_id,
            HomeClaims {
                mfa: h.mfa,
                ..HomeClaims::NONE
            },
        )
    });
    let redeemed_terms = match &gate.then {
        Then::Redeem { acceptance, .. } => acceptance.as_ref(),
        _ => None,
    };
    let accepted: Vec<&str> = gate
        .subject
        .agreement_acceptances
        .iter()
        .chain(&gate.accepted)
        .chain(redeemed_terms)
        .filter(|a| {
            access
                .agreement(&a.agreement_id)
                .is_none_or(|current| a.version >= current.version())
        })
        .map(|a| a.agreement_id.as_str())
        .collect();
    let user_id = gate.subject.user_id.to_string();
    let signin = SignIn {
        user_id: &user_id,
        groups: &[],
        user_kind: gate.subject.user_kind(),
        home_tenant: identity.home.as_ref().map(|h| h.tenant_id.as_str()),
        application_id: &flow.client_id,
        client_app: flow.context.client_app,
        ip: flow.context.ip,
        satisfied: Satisfied {
            mfa: gate.mfa.is_some() || trusted.mfa,
            compliant_device: trusted.compliant_device,
            domain_joined_device: trusted.hybrid_joined_device,
            terms_accepted: &accepted,
        },
    };
    let explanation = access.policies.explain(&signin);
    let report = AccessReport::from_explanation(&flow.client_id, &explanation);
    let decision = explanation.decision;
    let mut t = match decision {
        Decision::Block { .. } => block(env, flow, TextKey::AccessBlocked),
        ref d if d.allows_sign_in() => {
            let mfa = gate.mfa.or(trusted.mfa.then_some(MfaMethod::HomeOrganization));
            finish(env, flow, gate, mfa, d.sign_in_frequency())?
        }
        Decision::Require { ref missing, .. } => plan(env, flow, gate, missing),
        // `allows_sign_in` covers `Allow`.
        Decision::Allow => block(env, flow, TextKey::AccessBlocked),
    };
    t.effects.insert(0, Effect::AuditAccess { report });
    Ok(t)
}

/// The methods `gate` may step up with, of those `offered`.
pub(crate) fn methods(offered: StepUpMethods, gate: &Gate) -> StepUpMethods {
    StepUpMethods {
        email_otp: offered.email_otp && gate.then.identity().issuer != EMAIL_OTP_ISSUER,
        authenticator: offered.authenticator,
    }
}

/// The step for what is `missing`.
fn plan(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    gate: Gate,
    missing: &RequiredControls,
) -> Transition {
    // No flow step gives a device its compliance.
    if missing.compliant_device || missing.domain_joined_device {
        return block(env, flow, TextKey::DeviceRequired);
    }
    let can_step_up = !methods(env.access.step_up, &gate).is_empty();
    let mut mfa = missing.mfa;
    let mut terms: Vec<&str> = missing.terms_of_use.iter().map(|t| &**t).collect();
    for choice in &missing.one_of {
        if choice.mfa && can_step_up {
            mfa = true;
        } else if let Some(t) = choice
            .terms_of_use
            .iter()
            .find(|t| env.access.agreement(t).is_some())
        {
            terms.push(t);
        } else if choice.mfa {
            mfa = true;
        } else {
            return block(env, flow, TextKey::DeviceRequired);
        }
    }
    if mfa {
        if !can_step_up {
            return block(env, flow, TextKey::StepUpUnavailable);
        }
        return Transition::to(FlowState::StepUp {
            gate: Box::new(gate),
            stage: StepUpStep::Choose,
        });
    }
    match terms.first().and_then(|id| env.access.agreement(id)) {
        Some(agreement) => terms_step(gate, agreement),
        // Policies name only configured agreements (checked when the
        // service is built); anything else cannot be satisfied here.
        None => block(env, flow, TextKey::AccessBlocked),
    }
}

fn terms_step(gate: Gate, terms: &TermsOfUse) -> Transition {
    Transition::to(FlowState::AccessTerms {
        gate: Box::new(gate),
        agreement_id: terms.id().to_owned(),
        version: terms.version(),
        display_name: terms.display_name().to_owned(),
        url: terms.url().to_string(),
    })
}

/// Nothing is missing: do what the flow was about to do.
fn finish(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    gate: Gate,
    mfa: Option<MfaMethod>,
    session_lifetime: Option<Duration>,
) -> Result<Transition, Error> {
    let Gate {
        subject,
        then,
        accepted,
        enrolled,
        ..
    } = gate;
    let assurance = Assurance::new(then.identity(), mfa, session_lifetime);
    Ok(match then {
        Then::SignIn { identity } => {
            let mut t = Transition::to(FlowState::Completed {
                user_id: subject.user_id,
                signed_in: true,
            });
            if !accepted.is_empty() || enrolled.is_some() {
                t = t.with(Effect::UpdateUser {
                    user_id: subject.user_id,
                    update: UserUpdate {
                        authenticator: enrolled,
                        agreement_acceptances: accepted,
                    },
                });
            }
            t.with(Effect::IssueToken {
                user_id: subject.user_id,
                user_type: subject.user_type,
                identity,
                assurance,
            })
        }
        Then::Create { identity, attributes } => crate::flow::machine::create(
            env,
            flow,
            subject.user_id,
            identity,
            attributes,
            UserUpdate {
                authenticator: enrolled,
                agreement_acceptances: accepted,
            },
            assurance,
        ),
        Then::Redeem { identity, acceptance } => {
            let mut acceptances: Vec<AgreementAcceptance> = acceptance.into_iter().collect();
            record_acceptances(&mut acceptances, accepted);
            Transition::to(FlowState::Completed {
                user_id: subject.user_id,
                signed_in: false,
            })
            .with(Effect::CompleteRedemption {
                identity,
                acceptances,
                authenticator: enrolled,
            })
        }
    })
}

/// Applies `input` to a flow held at the gate (its state is
/// [`FlowState::StepUp`] or [`FlowState::AccessTerms`]).
pub(crate) fn on_input(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    input: FlowInput,
) -> Result<Transition, Error> {
    match (&flow.state, input) {
        (FlowState::StepUp { gate, stage }, input) => step_up(env, flow, gate, stage, input),
        (
            FlowState::AccessTerms {
                gate,
                agreement_id,
                version,
                ..
            },
            FlowInput::AnswerTerms { accept },
        ) => answer_terms(env, flow, gate, agreement_id, *version, accept),
        (_, other) => Err(wrong(flow, &other)),
    }
}

fn wrong(flow: &crate::directory::FlowRecord, input: &FlowInput) -> Error {
    FlowError::WrongStep {
        input: input.name(),
        actual: flow.state.name(),
    }
    .into()
}

fn answer_terms(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    gate: &Gate,
    agreement_id: &str,
    version: u32,
    accept: bool,
) -> Result<Transition, Error> {
    if !accept {
        return Ok(if flow.redemption.is_some() {
            // As with the tenant's own terms: the invitation stays pending.
            Transition::to(FlowState::Declined)
        } else {
            block(env, flow, TextKey::TermsDeclined)
        });
    }
    let mut gate = gate.clone();
    match env.access.agreement(agreement_id) {
        // Changed since it was shown: show the current version.
        Some(current) if current.version() != version => return Ok(terms_step(gate, current)),
        _ => {}
    }
    record_acceptances(
        &mut gate.accepted,
        vec![AgreementAcceptance {
            agreement_id: agreement_id.to_owned(),
            version,
            recorded_date_time: env.now,
        }],
    );
    enter(env, flow, gate)
}

fn step_up(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    gate: &Gate,
    step: &StepUpStep,
    input: FlowInput,
) -> Result<Transition, Error> {
    let offered = methods(env.access.step_up, gate);
    match (step, input) {
        (
            _,
            FlowInput::ChooseStepUp {
                method,
                stored_spelling,
                throttle,
            },
        ) => match method {
            StepUpMethod::EmailOtp if offered.email_otp => {
                send_code(env, flow, gate, stored_spelling, throttle.as_ref())
            }
            StepUpMethod::Authenticator if offered.authenticator => {
                let step = if gate.subject.authenticator_enrolled {
                    StepUpStep::Authenticator
                } else if let StepUpStep::EnrollAuthenticator { .. } = step {
                    // Choosing again keeps the secret already shown.
                    step.clone()
                } else {
                    let secret = TotpSecret::generate(env.rng)?;
                    StepUpStep::EnrollAuthenticator {
                        secret: totp::seal(env.keys, &secret, &gate.binding(), env.rng)?,
                    }
                };
                Ok(Transition::to(FlowState::StepUp {
                    gate: Box::new(gate.clone()),
                    stage: step,
                }))
            }
            other => Err(FlowError::InvalidParameter {
                field: "method",
                reason: format!("`{}` is not offered for this sign-in", other.as_str()),
            }
            .into()),
        },
        (
            StepUpStep::EmailCode { .. },
            FlowInput::ResendPasscode {
                stored_spelling,
                throttle,
            },
        ) => send_code(env, flow, gate, stored_spelling, throttle.as_ref()),
        (
            StepUpStep::EmailCode {
                email,
                passcode,
                delivered,
            },
            FlowInput::SubmitStepUpCode { code, throttle, .. },
        ) => {
            let outcome = crate::flow::machine::check_flow_code(env, flow, passcode, throttle, &code);
            let mut next = match (&outcome.verdict, outcome.passcode) {
                (Ok(()), _) => {
                    let mut gate = gate.clone();
                    gate.mfa = Some(MfaMethod::EmailOtp);
                    enter(env, flow, gate)?
                }
                (Err(_), Some(counted)) => Transition::to(FlowState::StepUp {
                    gate: Box::new(gate.clone()),
                    stage: StepUpStep::EmailCode {
                        email: email.clone(),
                        passcode: counted,
                        delivered: *delivered,
                    },
                }),
                (Err(e), None) => return Err(e.clone().into()),
            };
            if let Some(record) = outcome.throttle {
                next = next.with(Effect::StoreThrottle { record });
            }
            next.refused = outcome.verdict.err();
            Ok(next)
        }
        (
            StepUpStep::EnrollAuthenticator { secret },
            FlowInput::SubmitStepUpCode {
                code, authenticator, ..
            },
        ) => {
            // The user confirmed an authenticator elsewhere meanwhile: a
            // second enrolment must not replace it; challenge it instead.
            if authenticator.is_some() {
                let mut gate = gate.clone();
                gate.subject.authenticator_enrolled = true;
                return Ok(Transition::to(FlowState::StepUp {
                    gate: Box::new(gate),
                    stage: StepUpStep::Authenticator,
                }));
            }
            let opened = totp::open(env.keys, secret, &gate.binding())?;
            match totp::verify(&opened, code.expose(), env.now, totp::DEFAULT_SKEW_STEPS, None) {
                Ok(used) => {
                    let mut gate = gate.clone();
                    gate.mfa = Some(MfaMethod::Authenticator);
                    gate.enrolled = Some(TotpEnrollment {
                        secret: secret.clone(),
                        last_used_step: Some(used),
                        created_date_time: env.now,
                        consecutive_failures: 0,
                    });
                    enter(env, flow, gate)
                }
                Err(e) => authenticator_refused(env, flow, gate, step, e),
            }
        }
        (
            StepUpStep::Authenticator,
            FlowInput::SubmitStepUpCode {
                code, authenticator, ..
            },
        ) => {
            // The authenticator went away meanwhile (an administrator
            // reset it): choose again.
            let Some(enrollment) = authenticator else {
                let mut gate = gate.clone();
                gate.subject.authenticator_enrolled = false;
                return Ok(Transition::to(FlowState::StepUp {
                    gate: Box::new(gate),
                    stage: StepUpStep::Choose,
                }));
            };
            if enrollment.is_locked() {
                let mut t = block(env, flow, TextKey::StepUpFailed);
                t.authenticator_refused = Some(TotpError::Locked);
                return Ok(t);
            }
            let opened = totp::open(env.keys, &enrollment.secret, &gate.binding())?;
            match totp::verify(
                &opened,
                code.expose(),
                env.now,
                totp::DEFAULT_SKEW_STEPS,
                enrollment.last_used_step,
            ) {
                Ok(used) => {
                    let user_id = gate.subject.user_id;
                    let mut gate = gate.clone();
                    gate.mfa = Some(MfaMethod::Authenticator);
                    let mut t = enter(env, flow, gate)?;
                    // The used step is written now, with a compare-and-set
                    // on the user, whatever the gate asks for next.
                    t.effects.push(Effect::UpdateUser {
                        user_id,
                        update: UserUpdate {
                            authenticator: Some(TotpEnrollment {
                                last_used_step: Some(used),
                                consecutive_failures: 0,
                                ..enrollment
                            }),
                            agreement_acceptances: Vec::new(),
                        },
                    });
                    Ok(t)
                }
                Err(e) => {
                    let mut t = authenticator_refused(env, flow, gate, step, e)?;
                    // A wrong code counts against the authenticator across
                    // flows, written with a compare-and-set on the user: a
                    // new sign-in does not bring new guesses.
                    if e == TotpError::Wrong {
                        t.effects.push(Effect::UpdateUser {
                            user_id: gate.subject.user_id,
                            update: UserUpdate {
                                authenticator: Some(TotpEnrollment {
                                    consecutive_failures: enrollment.consecutive_failures.saturating_add(1),
                                    ..enrollment
                                }),
                                agreement_acceptances: Vec::new(),
                            },
                        });
                    }
                    Ok(t)
                }
            }
        }
        (_, other) => Err(wrong(flow, &other)),
    }
}

/// A wrong authenticator code: counted in the flow (a malformed one is
/// refused uncounted); the flow ends at the limit.
fn authenticator_refused(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    gate: &Gate,
    stage: &StepUpStep,
    error: TotpError,
) -> Result<Transition, Error> {
    if error == TotpError::Malformed {
        return Err(error.into());
    }
    let mut gate = gate.clone();
    gate.authenticator_failures = gate.authenticator_failures.saturating_add(1);
    let mut t = if gate.authenticator_failures >= MAX_AUTHENTICATOR_ATTEMPTS {
        block(env, flow, TextKey::StepUpFailed)
    } else {
        Transition::to(FlowState::StepUp {
            gate: Box::new(gate),
            stage: stage.clone(),
        })
    };
    t.authenticator_refused = Some(error);
    Ok(t)
}

/// Mails a step-up code to the gate's verified address (its stored
/// spelling when given).
fn send_code(
    env: &FlowEnv<'_>,
    flow: &crate::directory::FlowRecord,
    gate: &Gate,
    stored_spelling: Option<EmailAddress>,
    throttle: Option<&crate::directory::AddressThrottle>,
) -> Result<Transition, Error> {
    let email = gate.then.identity().email.clone();
    let (passcode, effects) = crate::flow::machine::issue_code(env, flow, &email, stored_spelling, throttle)?;
    let mut t = Transition::to(FlowState::StepUp {
        gate: Box::new(gate.clone()),
        stage: StepUpStep::EmailCode {
            email,
            passcode,
            delivered: true,
        },
    });
    t.effects.extend(effects);
    Ok(t)
}

/// The step-up page content for a flow at `step`, for page builders.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StepUpPage {
    /// Choose a method.
    Choose {
        /// The methods offered.
        methods: StepUpMethods,
        /// The address an emailed code goes to.
        email: String,
        /// Whether the authenticator method challenges an enrolled app (or
        /// enrols a new one).
        authenticator_enrolled: bool,
    },
    /// Enter the code mailed to `sent_to`.
    EnterEmailCode {
        /// The address.
        sent_to: String,
        /// Whether the mail transport accepted it.
        delivered: bool,
    },
    /// Add the account to an authenticator app, then enter its code.
    EnrollAuthenticator {
        /// The `otpauth://` URI (for a QR code or a link).
        otpauth_uri: SecretString,
        /// The secret in base32, for typing in by hand.
        secret: SecretString,
    },
    /// Enter the authenticator app's code.
    EnterAuthenticatorCode,
}

/// The page for a flow at the step-up `step`, opening an enrolment's secret
/// to show it.
///
/// # Errors
///
/// [`TotpError::Unsealable`] when the secret no longer opens (its key left
/// the ring).
pub(crate) fn step_up_page(
    keys: &crate::keys::KeyRing,
    offered: StepUpMethods,
    gate: &Gate,
    step: &StepUpStep,
    issuer: &str,
) -> Result<StepUpPage, Error> {
    let email = gate.then.identity().email.to_string();
    Ok(match step {
        StepUpStep::Choose => StepUpPage::Choose {
            methods: methods(offered, gate),
            email,
            authenticator_enrolled: gate.subject.authenticator_enrolled,
        },
        StepUpStep::EmailCode { email, delivered, .. } => StepUpPage::EnterEmailCode {
            sent_to: email.to_string(),
            delivered: *delivered,
        },
        StepUpStep::EnrollAuthenticator { secret, .. } => {
            let opened = totp::open(keys, secret, &gate.binding())?;
            StepUpPage::EnrollAuthenticator {
                // The URI's label separates issuer and account with `:`.
                otpauth_uri: totp::otpauth_uri(&opened, &issuer.replace(':', " "), &email)?,
                secret: opened.base32(),
            }
        }
        StepUpStep::Authenticator => StepUpPage::EnterAuthenticatorCode,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::directory::{FlowRecord, RedemptionBinding};
    use crate::flow::machine::{self, FlowInput};
    use crate::idp::PasscodePolicy;
    use crate::keys::{KeyRing, SigningKey};
    use crate::mail::templates::Language;
    use crate::policy::{DomainRestriction, PolicySet};
    use crate::random::SeededRandom;
    use crate::secret::Digest;
    use time::macros::datetime;

    const NOW: time::OffsetDateTime = datetime!(2026-12-02 09:00 UTC);
    const PARTNER: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";

    fn identity(issuer: &str, home: Option<HomeOrganization>) -> FlowIdentity {
        FlowIdentity {
            issuer: issuer.into(),
            subject: "s-1".into(),
            email: EmailAddress::parse("ada@fabrikam.example").unwrap(),
            home: home.map(Box::new),
        }
    }

    fn consent_flow(identity: FlowIdentity) -> FlowRecord {
        FlowRecord {
            id: Id::from_bytes([1; 16]),
            handle_hash: Digest::sha256(b"h"),
            tenant_id: "t".into(),
            user_flow_id: String::new(),
            client_id: REDEMPTION_APPLICATION_ID.into(),
            redirect_uri: "https://app.example/".into(),
            redemption: Some(RedemptionBinding {
                invitation_id: Id::from_bytes([2; 16]),
                user_id: Id::from_bytes([3; 16]),
                verifier_hash: Digest::sha256(b"v"),
            }),
            nonce: None,
            app_state: None,
            ui_locales: None,
            context: SignInContext::default(),
            state: FlowState::Consent { identity },
            created_at: NOW,
            expires_at: NOW + time::Duration::hours(1),
        }
    }

    fn policies(controls: &str) -> CompiledPolicies {
        PolicySet::from_json(&format!(
            r#"{{"policies": [{{"displayName": "P", "state": "enabled",
              "conditions": {{"users": {{"includeUsers": ["GuestsOrExternalUsers"]}},
                "applications": {{"includeApplications": ["All"]}}, "clientAppTypes": ["all"]}},
              "grantControls": {controls}}}]}}"#
        ))
        .unwrap()
        .compile()
        .unwrap()
    }

    /// Consents on a redemption under `policies` and `cross_tenant` with
    /// `methods`; the transition.
    fn consent(
        policies: &CompiledPolicies,
        cross_tenant: &CrossTenantSettings,
        agreements: &[TermsOfUse],
        methods: StepUpMethods,
        identity: FlowIdentity,
    ) -> Transition {
        let keys = KeyRing::new(SigningKey::new("k1", [9u8; 32]).unwrap()).unwrap();
        let access = AccessEnv {
            policies,
            cross_tenant,
            agreements,
            step_up: methods,
        };
        let subject = AccessSubject {
            user_id: Id::from_bytes([3; 16]),
            user_type: UserType::Guest,
            authenticator_enrolled: false,
            agreement_acceptances: Vec::new(),
        };
        let env = FlowEnv {
            now: NOW,
            rng: &SeededRandom::new(1),
            keys: &keys,
            passcode: &PasscodePolicy::default(),
            domains: &DomainRestriction::default(),
            user_flow: None,
            terms_of_use: None,
            tenant_domain: "contoso.example",
            access: &access,
            subject: Some(&subject),
            language: Language::DeDe,
        };
        machine::transition(&env, &consent_flow(identity), FlowInput::Consent { accept: true }).unwrap()
    }

    fn home(tenant: &str, issuer_tenant: &str, mfa: bool) -> HomeOrganization {
        HomeOrganization {
            tenant_id: tenant.into(),
            issuer_tenant_id: issuer_tenant.into(),
            object_id: None,
            mfa,
        }
    }

    fn trusting_partner() -> CrossTenantSettings {
        CrossTenantSettings::from_json(&format!(
            r#"{{"partners": [{{"tenantId": "{PARTNER}", "inboundTrust": {{"isMfaAccepted": true}}}}]}}"#
        ))
        .unwrap()
    }

    #[test]
    fn assurance_names_what_was_satisfied() {
        let mail = identity(EMAIL_OTP_ISSUER, None);
        let fed = identity("https://idp.example", None);
        let one = Assurance::new(&mail, None, None);
        assert_eq!(
            (one.amr, one.acr.as_str()),
            (vec!["otp".to_owned()], ACR_SINGLE_FACTOR)
        );
        let app = Assurance::new(&mail, Some(MfaMethod::Authenticator), None);
        assert_eq!(
            (app.amr, app.acr.as_str()),
            (vec!["otp".into(), "mfa".into()], ACR_MULTI_FACTOR)
        );
        let emailed = Assurance::new(&fed, Some(MfaMethod::EmailOtp), None);
        assert_eq!(emailed.amr, ["fed", "otp", "mfa"]);
        let home = Assurance::new(&fed, Some(MfaMethod::HomeOrganization), None);
        assert_eq!(
            (home.amr, home.acr.as_str()),
            (vec!["fed".into(), "mfa".into()], ACR_MULTI_FACTOR)
        );
    }

    #[test]
    fn an_emailed_code_is_offered_only_after_a_federated_sign_in() {
        let subject = AccessSubject {
            user_id: Id::from_bytes([3; 16]),
            user_type: UserType::Guest,
            authenticator_enrolled: false,
            agreement_acceptances: Vec::new(),
        };
        let gate = |issuer| {
            Gate::new(
                subject.clone(),
                Then::Redeem {
                    identity: identity(issuer, None),
                    acceptance: None,
                },
            )
        };
        let both = StepUpMethods {
            email_otp: true,
            authenticator: true,
        };
        assert!(!StepUpMethods::default().email_otp, "an opt-in");
        assert!(!methods(both, &gate(EMAIL_OTP_ISSUER)).email_otp);
        assert!(methods(both, &gate(EMAIL_OTP_ISSUER)).authenticator);
        assert!(methods(both, &gate("https://idp.example")).email_otp);
        let email_only = StepUpMethods {
            email_otp: true,
            authenticator: false,
        };
        assert!(methods(email_only, &gate(EMAIL_OTP_ISSUER)).is_empty());
    }

    #[test]
    fn mfa_without_a_method_blocks_in_the_invitations_language() {
        let t = consent(
            &policies(r#"{"operator": "OR", "builtInControls": ["mfa"]}"#),
            &CrossTenantSettings::default(),
            &[],
            StepUpMethods {
                email_otp: true,
                authenticator: false,
            },
            identity(EMAIL_OTP_ISSUER, None),
        );
        assert_eq!(
            t.state,
            FlowState::Blocked {
                message: TextKey::StepUpUnavailable.default_text(Language::DeDe).to_owned()
            }
        );
        assert!(
            !t.effects
                .iter()
                .any(|e| matches!(e, Effect::CompleteRedemption { .. }))
        );
    }

    #[test]
    fn mfa_or_terms_takes_the_terms_when_no_step_up_is_possible() {
        let terms =
            TermsOfUse::new("guest-terms", "Guest terms", "https://contoso.example/terms", 2).unwrap();
        let set =
            policies(r#"{"operator": "OR", "builtInControls": ["mfa"], "termsOfUse": ["guest-terms"]}"#);
        let none = StepUpMethods {
            email_otp: false,
            authenticator: false,
        };
        let t = consent(
            &set,
            &CrossTenantSettings::default(),
            std::slice::from_ref(&terms),
            none,
            identity(EMAIL_OTP_ISSUER, None),
        );
        assert!(
            matches!(&t.state, FlowState::AccessTerms { agreement_id, version: 2, .. } if agreement_id == "guest-terms")
        );
        let t = consent(
            &set,
            &CrossTenantSettings::default(),
            &[terms],
            StepUpMethods::default(),
            identity(EMAIL_OTP_ISSUER, None),
        );
        assert!(matches!(
            t.state,
            FlowState::StepUp {
                stage: StepUpStep::Choose,
                ..
            }
        ));
    }

    #[test]
    fn a_trusted_home_mfa_claim_counts_only_from_the_home_organisation() {
        let set = policies(r#"{"operator": "OR", "builtInControls": ["mfa"]}"#);
        let trust = trusting_partner();
        let fed = |h| identity("https://login.microsoftonline.com/x/v2.0", Some(h));
        // From the partner itself, trusted: no step-up, redeemed.
        let t = consent(
            &set,
            &trust,
            &[],
            StepUpMethods::default(),
            fed(home(PARTNER, PARTNER, true)),
        );
        assert!(
            t.effects
                .iter()
                .any(|e| matches!(e, Effect::CompleteRedemption { .. }))
        );
        // The claim issued by the partner for a user whose home is elsewhere.
        let other = "9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e";
        let t = consent(
            &set,
            &trust,
            &[],
            StepUpMethods::default(),
            fed(home(other, PARTNER, true)),
        );
        assert!(matches!(t.state, FlowState::StepUp { .. }));
        // No claim, or trust off.
        let t = consent(
            &set,
            &trust,
            &[],
            StepUpMethods::default(),
            fed(home(PARTNER, PARTNER, false)),
        );
        assert!(matches!(t.state, FlowState::StepUp { .. }));
        let t = consent(
            &set,
            &CrossTenantSettings::default(),
            &[],
            StepUpMethods::default(),
            fed(home(PARTNER, PARTNER, true)),
        );
        assert!(matches!(t.state, FlowState::StepUp { .. }));
    }

    #[test]
    fn every_decision_is_reported_first() {
        let t = consent(
            &policies(r#"{"operator": "OR", "builtInControls": ["block"]}"#),
            &CrossTenantSettings::default(),
            &[],
            StepUpMethods::default(),
            identity(EMAIL_OTP_ISSUER, None),
        );
        match t.effects.first() {
            Some(Effect::AuditAccess { report }) => {
                assert_eq!(report.decision, "block (by `P`)");
                assert_eq!(report.application_id, REDEMPTION_APPLICATION_ID);
                assert_eq!(report.policies, ["`P`: applied: block"]);
            }
            other => panic!("expected the report, got {other:?}"),
        }
        assert!(matches!(t.state, FlowState::Blocked { .. }));
    }

    #[test]
    fn acceptances_replace_earlier_ones_of_the_same_agreement() {
        let at = |v| AgreementAcceptance {
            agreement_id: "a".into(),
            version: v,
            recorded_date_time: NOW,
        };
        let mut list = vec![at(1)];
        record_acceptances(&mut list, vec![at(2)]);
        assert_eq!(list, [at(2)]);
    }
}
