//! The sign-up state machine: a pure transition function over
//! ([`FlowState`], [`FlowInput`]) that returns the next state and the
//! [`Effect`]s the service must perform.
//!
//! ```text
//! ChooseProvider ──choose──► EnterEmail ──email──► AwaitingPasscode ──code──► Authenticated
//!                                                    ▲   │ resend                 │ account looked up
//!                                                    └───┘                        ▼
//!        existing account ◄──────────────────────────────────────────────── (signed in: Completed)
//!        new person: PostFederationSignup ──connector──► CollectAttributes ──submit──►
//!        PostAttributeCollection ──connector──► [Reviewing ──► AwaitingApproval ──admin──► Approved ──resume──►]
//!        Completed (user created, token issued)
//! ```
//!
//! An invitation redemption ([`FlowRecord::redemption`] set) runs on the
//! same machine, through its own lane:
//!
//! ```text
//! Invited ──send──► AwaitingPasscode ──code──► Consent ──accept──► [TermsOfUse ──accept──►] Completed
//!                     ▲   │ resend                │ decline             │ decline
//!                     └───┘                       ▼                     ▼
//!                                              Declined              Declined
//! ```
//!
//! The passcode steps are the sign-up's own (one send, one check, the same
//! counters); a sign-up input never applies to a redemption state and the
//! reverse.
//!
//! `Invited` is a redemption's start, never stored: the flow is written
//! first with the passcode it sends.
//!
//! `Authenticated`, `PostFederationSignup`, `PostAttributeCollection` and
//! `Reviewing` are *transient*: they wait for the answer of an effect the
//! service performs within the same request (a directory lookup, a
//! connector call, the approver), and are never stored
//! ([`FlowState::is_durable`]). `Completed`, `Blocked` and `Denied` are
//! final: no input advances them.
//!
//! Inputs that come from the person ([`FlowInput::ChooseProvider`],
//! [`FlowInput::SubmitEmail`], ...) and inputs that only the service
//! produces from the results of effects ([`FlowInput::AccountLookedUp`],
//! [`FlowInput::ConnectorAnswered`], ...) share one enum, but each state
//! accepts only its own: anything else is [`FlowError::WrongStep`], so a
//! later step's input cannot skip an earlier step.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::directory::{
    AddressThrottle, AgreementAcceptance, CreationType, EMAIL_OTP_ISSUER, ExternalUserState, FlowRecord,
    ObjectIdentity, PasscodeRecord, SignInType, User, UserRecord, UserType, guest_upn,
};
use crate::email::EmailAddress;
use crate::error::{Denied, Error, PasscodeError};
use crate::flow::access::{
    self, AccessEnv, AccessReport, AccessSubject, Assurance, Gate, HomeOrganization, StepUpMethod,
    StepUpStep, Then, UserUpdate,
};
use crate::flow::attributes::{AttributeValues, BuiltInAttribute, DataType};
use crate::flow::config::{IdentityProviderKind, TextKey, UserFlow};
use crate::flow::connector::{
    ConnectorIdentity, ConnectorInput, ConnectorOutcome, ConnectorStep, MalformedReason,
};
use crate::id::Id;
use crate::idp::totp::{TotpEnrollment, TotpError};
use crate::idp::{ExternalIdentity, PasscodePolicy, PendingAuthorization, email_otp};
use crate::keys::KeyRing;
use crate::mail::templates::Language;
use crate::policy::{DomainRestriction, TermsOfUse};
use crate::random::SecureRandom;
use crate::secret::SecretString;

/// The identity a person proved, as it is recorded on their user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowIdentity {
    /// The issuer (`mail` for email one-time passcodes).
    pub issuer: String,
    /// The subject at the issuer (for `mail`: the address's comparison key).
    pub subject: String,
    /// The proven address, as the person entered it.
    pub email: EmailAddress,
    /// The organisation the person comes from, when a federated provider
    /// bound to it said so (cross-organisation access applies then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Box<HomeOrganization>>,
}

impl FlowIdentity {
    /// The identity as a directory `objectIdentity`.
    pub fn object_identity(&self) -> ObjectIdentity {
        ObjectIdentity {
            sign_in_type: SignInType::Federated,
            issuer: self.issuer.clone(),
            issuer_assigned_id: self.subject.clone(),
        }
    }

    /// How the person authenticated, for the token's `amr`.
    pub fn amr(&self) -> Vec<String> {
        if self.issuer == EMAIL_OTP_ISSUER {
            vec!["otp".to_owned()]
        } else {
            vec!["fed".to_owned()]
        }
    }
}

/// The account a federated provider signed in, waiting for its asserted
/// address to be proven with a passcode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederatedSubject {
    /// The provider's issuer.
    pub issuer: String,
    /// The subject at the provider.
    pub subject: String,
    /// The organisation the provider said the person comes from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<Box<HomeOrganization>>,
}

/// Where a flow is. Serialized (tagged by `step`) inside the stored
/// [`FlowRecord`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "step", rename_all = "camelCase")]
#[non_exhaustive]
pub enum FlowState {
    /// Choose one of the flow's identity providers.
    ChooseProvider,
    /// Enter the address a passcode goes to.
    EnterEmail,
    /// A passcode went to `email`; waiting for it.
    #[serde(rename_all = "camelCase")]
    AwaitingPasscode {
        /// The address as the person entered it (what the page shows).
        email: EmailAddress,
        /// The code at rest (keyed hash, attempts), bound to this flow.
        passcode: PasscodeRecord,
        /// Whether the mail transport accepted the code.
        delivered: bool,
        /// The federated sign-in whose address the code proves, when a
        /// provider asserted an address it cannot vouch for: the proven
        /// identity is then the provider's, not the passcode's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        federated: Option<FederatedSubject>,
    },
    /// Authenticated; waiting to learn whether the identity has an account
    /// (transient).
    Authenticated {
        /// The proven identity.
        identity: FlowIdentity,
    },
    /// Waiting for the `postFederationSignup` connector (transient).
    PostFederationSignup {
        /// The proven identity.
        identity: FlowIdentity,
    },
    /// Collect the flow's attributes.
    CollectAttributes {
        /// The proven identity.
        identity: FlowIdentity,
        /// Values to pre-fill, by attribute name, as form values.
        #[serde(default)]
        prefill: BTreeMap<String, Vec<String>>,
        /// A message to show above the form (a connector's validation error).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Waiting for the `postAttributeCollection` connector (transient).
    PostAttributeCollection {
        /// The proven identity.
        identity: FlowIdentity,
        /// The collected values, as JSON claims.
        attributes: BTreeMap<String, Value>,
    },
    /// Waiting for the approver's first word (transient).
    Reviewing {
        /// The proven identity.
        identity: FlowIdentity,
        /// The collected values, as JSON claims.
        attributes: BTreeMap<String, Value>,
    },
    /// Waiting for an administrator; resumable with the same flow.
    AwaitingApproval {
        /// The proven identity.
        identity: FlowIdentity,
        /// The collected values, as JSON claims.
        attributes: BTreeMap<String, Value>,
        /// A message for the person (the approver's), if any.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        message: Option<String>,
    },
    /// Approved; the person's next visit creates the account.
    Approved {
        /// The proven identity.
        identity: FlowIdentity,
        /// The collected values, as JSON claims.
        attributes: BTreeMap<String, Value>,
    },
    /// Done: the user was created or signed in, and a token issued.
    #[serde(rename_all = "camelCase")]
    Completed {
        /// The user.
        user_id: Id,
        /// Whether an existing user signed in (nothing was created).
        signed_in: bool,
    },
    /// Ended on a block page.
    Blocked {
        /// What the person is shown.
        message: String,
    },
    /// An administrator (or the approver) declined the sign-up.
    Denied {
        /// What the person is shown.
        message: String,
    },
    /// A redemption whose ticket was verified; a passcode or a federated
    /// sign-in goes out next (transient).
    Invited,
    /// A federated sign-in is being started with the provider (transient).
    #[serde(rename_all = "camelCase")]
    StartingFederation {
        /// The provider's id.
        provider_id: String,
    },
    /// The browser was sent to a federated provider; waiting for its
    /// callback. The pending authorization holds no secret usable alone.
    AwaitingFederation {
        /// What the callback is checked against.
        pending: PendingAuthorization,
    },
    /// A redemption whose guest proved the address; waiting for consent.
    Consent {
        /// The proven identity.
        identity: FlowIdentity,
    },
    /// A redemption waiting for the guest to accept the terms of use. The
    /// terms shown are kept with the flow, so a reload shows what an
    /// acceptance records.
    #[serde(rename_all = "camelCase")]
    TermsOfUse {
        /// The proven identity.
        identity: FlowIdentity,
        /// The terms shown (their id).
        agreement_id: String,
        /// The version shown: what an acceptance records.
        version: u32,
        /// Their name, as shown.
        display_name: String,
        /// Where their text is, as shown.
        url: String,
    },
    /// A redemption the guest declined (consent or terms); the invitation
    /// stays pending.
    Declined,
    /// Conditional access asks for multi-factor authentication: the
    /// person steps up before the flow goes on.
    StepUp {
        /// What the flow goes on with.
        gate: Box<Gate>,
        /// Where the step-up is.
        stage: StepUpStep,
    },
    /// Conditional access asks for terms of use: waiting for the person
    /// to accept the terms shown (kept, as with the tenant's own terms).
    #[serde(rename_all = "camelCase")]
    AccessTerms {
        /// What the flow goes on with.
        gate: Box<Gate>,
        /// The terms shown (their id).
        agreement_id: String,
        /// The version shown: what an acceptance records.
        version: u32,
        /// Their name, as shown.
        display_name: String,
        /// Where their text is, as shown.
        url: String,
    },
}

impl FlowState {
    /// A short name for messages and logs.
    pub fn name(&self) -> &'static str {
        match self {
            FlowState::ChooseProvider => "chooseProvider",
            FlowState::EnterEmail => "enterEmail",
            FlowState::AwaitingPasscode { .. } => "passcode",
            FlowState::Authenticated { .. } => "authenticated",
            FlowState::PostFederationSignup { .. } => "postFederationSignup",
            FlowState::CollectAttributes { .. } => "attributes",
            FlowState::PostAttributeCollection { .. } => "postAttributeCollection",
            FlowState::Reviewing { .. } => "reviewing",
            FlowState::AwaitingApproval { .. } => "awaitingApproval",
            FlowState::Approved { .. } => "approved",
            FlowState::Completed { .. } => "completed",
            FlowState::Blocked { .. } => "blocked",
            FlowState::Denied { .. } => "denied",
            FlowState::Invited => "invited",
            FlowState::StartingFederation { .. } => "startingFederation",
            FlowState::AwaitingFederation { .. } => "federation",
            FlowState::Consent { .. } => "consent",
            FlowState::TermsOfUse { .. } => "termsOfUse",
            FlowState::Declined => "declined",
            FlowState::StepUp { stage, .. } => stage.name(),
            FlowState::AccessTerms { .. } => "accessTerms",
        }
    }

    /// Whether the state may be stored: it waits for the person or an
    /// administrator, or is final.
    pub fn is_durable(&self) -> bool {
        !matches!(
            self,
            FlowState::Authenticated { .. }
                | FlowState::PostFederationSignup { .. }
                | FlowState::PostAttributeCollection { .. }
                | FlowState::Reviewing { .. }
                | FlowState::Invited
                | FlowState::StartingFederation { .. }
        )
    }

    /// Whether the flow has ended: no input advances it.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            FlowState::Completed { .. }
                | FlowState::Blocked { .. }
                | FlowState::Denied { .. }
                | FlowState::Declined
        )
    }
}

/// What an existing account looks like to the flow, after the identity was
/// proven.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingAccount {
    /// The user.
    pub user_id: Id,
    /// Member or guest.
    pub user_type: UserType,
    /// Whether it may sign in.
    pub enabled: bool,
    /// The user's stored mail: the spelling the completion token carries.
    pub mail: Option<EmailAddress>,
    /// Whether the user has a confirmed authenticator app.
    pub authenticator_enrolled: bool,
    /// The terms of use the user accepted.
    pub agreement_acceptances: Vec<AgreementAcceptance>,
}

/// The approver's verdict on a sign-up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApprovalVerdict {
    /// Create the account now.
    Approve,
    /// Decline, with a message for the person (the flow's text when `None`).
    Deny {
        /// The message.
        message: Option<String>,
    },
    /// Hold the sign-up for an administrator, with a message for the person
    /// (the flow's text when `None`).
    Hold {
        /// The message.
        message: Option<String>,
    },
}

/// An input to the state machine.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum FlowInput {
    /// The person picked an identity provider.
    ChooseProvider {
        /// The provider.
        provider: IdentityProviderKind,
    },
    /// The person entered the address for a passcode.
    SubmitEmail {
        /// The address as typed.
        email: String,
        /// The stored spelling of this address, when a user has it: the
        /// code goes there, the page shows what was typed.
        stored_spelling: Option<EmailAddress>,
        /// The address's passcode counters.
        throttle: Option<AddressThrottle>,
    },
    /// The person asked for another passcode.
    ResendPasscode {
        /// The stored spelling of the address, when a user has it.
        stored_spelling: Option<EmailAddress>,
        /// The address's passcode counters.
        throttle: Option<AddressThrottle>,
    },
    /// The person typed a passcode.
    SubmitPasscode {
        /// The digits.
        code: SecretString,
        /// The address's passcode counters.
        throttle: Option<AddressThrottle>,
    },
    /// The service looked up the proven identity (service only).
    AccountLookedUp {
        /// The user holding the identity, if any.
        by_identity: Option<ExistingAccount>,
        /// Whether another user has the proven address as mail.
        mail_taken: bool,
    },
    /// A connector answered (service only).
    ConnectorAnswered {
        /// The step it ran at.
        step: ConnectorStep,
        /// What it said.
        outcome: ConnectorOutcome,
    },
    /// The person submitted the attribute form, decoded and validated.
    SubmitAttributes {
        /// The values.
        values: AttributeValues,
    },
    /// The approver reviewed the sign-up (service only).
    ApprovalReviewed {
        /// Its verdict.
        verdict: ApprovalVerdict,
    },
    /// An administrator decided (admin API only).
    AdminDecision {
        /// Approve or deny.
        approve: bool,
        /// The message for a denial.
        message: Option<String>,
    },
    /// The person came back to an approved flow.
    Resume,
    /// A redemption sends its first passcode (service only, when the flow
    /// opens).
    SendPasscode {
        /// The invited user's stored address.
        to: EmailAddress,
        /// The address's passcode counters.
        throttle: Option<AddressThrottle>,
    },
    /// A redemption signs in with the federated provider the redemption
    /// order chose (service only, when the flow opens).
    SignInWith {
        /// The provider's id.
        provider_id: String,
    },
    /// The provider began the sign-in (service only).
    FederationStarted {
        /// What the callback will be checked against.
        pending: PendingAuthorization,
    },
    /// The provider verified the callback and returned who signed in
    /// (service only).
    FederationFinished {
        /// The verified identity.
        identity: Box<ExternalIdentity>,
        /// For a redemption, the invited address: the identity must assert it.
        invited: Option<EmailAddress>,
        /// Whether the registered provider proves the asserted address (see
        /// [`Candidate::proves_email`](crate::idp::order::Candidate::proves_email));
        /// when it does not, a passcode to the address proves it first.
        email_proven: bool,
        /// The stored spelling of the asserted address, when a user has it.
        stored_spelling: Option<EmailAddress>,
        /// The asserted address's passcode counters.
        throttle: Option<AddressThrottle>,
    },
    /// The guest answered the consent page.
    Consent {
        /// Whether they accepted.
        accept: bool,
    },
    /// The guest answered the terms-of-use page (the tenant's, or terms a
    /// policy requires).
    AnswerTerms {
        /// Whether they accepted.
        accept: bool,
    },
    /// The person picked a step-up method.
    ChooseStepUp {
        /// The method.
        method: StepUpMethod,
        /// The stored spelling of the user's address, for an emailed code.
        stored_spelling: Option<EmailAddress>,
        /// The address's passcode counters, for an emailed code.
        throttle: Option<AddressThrottle>,
    },
    /// The person typed a step-up code (emailed or from the authenticator).
    SubmitStepUpCode {
        /// The digits.
        code: SecretString,
        /// The address's passcode counters, for an emailed code.
        throttle: Option<AddressThrottle>,
        /// The user's authenticator as stored now, for an authenticator
        /// challenge (its last used step decides replays).
        authenticator: Option<TotpEnrollment>,
    },
}

impl FlowInput {
    /// A short name for messages.
    pub fn name(&self) -> &'static str {
        match self {
            FlowInput::ChooseProvider { .. } => "chooseProvider",
            FlowInput::SubmitEmail { .. } => "submitEmail",
            FlowInput::ResendPasscode { .. } => "resendPasscode",
            FlowInput::SubmitPasscode { .. } => "submitPasscode",
            FlowInput::AccountLookedUp { .. } => "accountLookedUp",
            FlowInput::ConnectorAnswered { .. } => "connectorAnswered",
            FlowInput::SubmitAttributes { .. } => "submitAttributes",
            FlowInput::ApprovalReviewed { .. } => "approvalReviewed",
            FlowInput::AdminDecision { .. } => "adminDecision",
            FlowInput::Resume => "resume",
            FlowInput::SendPasscode { .. } => "sendPasscode",
            FlowInput::SignInWith { .. } => "signInWith",
            FlowInput::FederationStarted { .. } => "federationStarted",
            FlowInput::FederationFinished { .. } => "federationFinished",
            FlowInput::Consent { .. } => "consent",
            FlowInput::AnswerTerms { .. } => "answerTerms",
            FlowInput::ChooseStepUp { .. } => "chooseStepUp",
            FlowInput::SubmitStepUpCode { .. } => "submitStepUpCode",
        }
    }
}

/// What the service must do after a transition.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Effect {
    /// Store these passcode counters with the flow (same batch).
    StoreThrottle {
        /// The new counters.
        record: AddressThrottle,
    },
    /// Mail `code` to `to` after the flow is stored.
    SendPasscode {
        /// The stored spelling of the address.
        to: EmailAddress,
        /// The digits.
        code: SecretString,
    },
    /// Start a sign-in with the federated provider and answer with
    /// [`FlowInput::FederationStarted`].
    StartFederation {
        /// The provider's id.
        provider_id: String,
    },
    /// Look up the proven identity and answer with
    /// [`FlowInput::AccountLookedUp`].
    LookUpAccount {
        /// The identity.
        identity: FlowIdentity,
    },
    /// Call the flow's connector at `step` and answer with
    /// [`FlowInput::ConnectorAnswered`].
    CallConnector {
        /// The step.
        step: ConnectorStep,
        /// The request content.
        input: ConnectorInput,
    },
    /// Ask the approver and answer with [`FlowInput::ApprovalReviewed`].
    ReviewApproval {
        /// The person's address.
        email: EmailAddress,
        /// The collected values.
        attributes: BTreeMap<String, Value>,
    },
    /// Create this user with the flow (same batch).
    CreateUser {
        /// The new user.
        record: Box<UserRecord>,
    },
    /// Complete the flow's redemption with the flow (same batch): the user
    /// accepted with `identity` (and `acceptances`), the invitation completed.
    CompleteRedemption {
        /// The identity the guest proved.
        identity: FlowIdentity,
        /// The terms of use accepted on the way (the tenant's, and those
        /// policies required).
        acceptances: Vec<AgreementAcceptance>,
        /// The authenticator confirmed on the way, if any.
        authenticator: Option<TotpEnrollment>,
    },
    /// Issue the completion token after the flow is stored.
    IssueToken {
        /// The user.
        user_id: Id,
        /// Member or guest.
        user_type: UserType,
        /// The identity the person signed in with.
        identity: FlowIdentity,
        /// What the sign-in satisfied (`amr`, `acr`, session lifetime).
        assurance: Assurance,
    },
    /// Send this access decision and its explanation to the audit sink.
    AuditAccess {
        /// The decision and the explanation.
        report: AccessReport,
    },
    /// Change the existing user `user_id` with the flow (same batch), as a
    /// write conditional on the version the service read for this step
    /// (with the input where the input depends on it, as an authenticator
    /// challenge does; else when it meets the effect).
    UpdateUser {
        /// The user.
        user_id: Id,
        /// What changes.
        update: UserUpdate,
    },
}

/// Why an input cannot be applied.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowError {
    /// No flow matches the handle (or it belongs to another tenant).
    #[error("unknown sign-up flow")]
    UnknownFlow,
    /// The flow is older than its lifetime.
    #[error("sign-up flow has expired")]
    Expired,
    /// The form's CSRF token is missing, forged, or from another step or flow.
    #[error("the form's security token is missing or invalid; reload the page")]
    Csrf,
    /// The input belongs to another step.
    #[error("sign-up flow is at step `{actual}`; `{input}` does not apply")]
    WrongStep {
        /// The input given.
        input: &'static str,
        /// The step the flow is at.
        actual: &'static str,
    },
    /// The flow has ended.
    #[error("sign-up flow has ended at step `{state}`")]
    Finished {
        /// The final step.
        state: &'static str,
    },
    /// The flow does not offer that identity provider.
    #[error("identity provider `{provider}` is not offered by this flow")]
    ProviderNotOffered {
        /// The provider (quoted safely).
        provider: String,
    },
    /// The federated provider did not assert a verified email address.
    #[error("`{provider}` did not share a verified email address; choose another way to sign in")]
    EmailNotVerified {
        /// The provider.
        provider: String,
    },
    /// The federated account is not the invited one: nothing was linked.
    #[error("this invitation is for `{expected}`; sign in with that account")]
    WrongAccount {
        /// The invited address, as stored.
        expected: String,
    },
    /// The provider's answer belongs to another sign-in of this flow.
    #[error("the sign-in answer does not belong to this flow; start again")]
    FederationMismatch,
    /// No application has that client id, or it has no sign-up flow.
    #[error("application `{client_id}` has no sign-up flow")]
    UnknownApplication {
        /// The client id, as given (quoted safely).
        client_id: String,
    },
    /// The redirect URI is not one the application registered.
    #[error("redirect uri `{uri}` is not registered for this application")]
    RedirectNotRegistered {
        /// The URI, as given (quoted safely).
        uri: String,
    },
    /// A request parameter is out of range.
    #[error("invalid `{field}`: {reason}")]
    InvalidParameter {
        /// The parameter.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// The flow is not waiting for an administrator.
    #[error("sign-up flow is not awaiting approval")]
    NotAwaitingApproval,
}

/// The next state and what to do.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The next state.
    pub state: FlowState,
    /// The new expiry, when it changes (an approval extends it).
    pub expires_at: Option<OffsetDateTime>,
    /// The effects, in order.
    pub effects: Vec<Effect>,
    /// A passcode refusal that is stored along (attempt counts) and shown.
    pub refused: Option<PasscodeError>,
    /// An authenticator code refusal that is stored along (the flow's
    /// attempt count) and shown.
    pub authenticator_refused: Option<TotpError>,
}

impl Transition {
    pub(crate) fn to(state: FlowState) -> Self {
        Self {
            state,
            expires_at: None,
            effects: Vec::new(),
            refused: None,
            authenticator_refused: None,
        }
    }

    pub(crate) fn with(mut self, effect: Effect) -> Self {
        self.effects.push(effect);
        self
    }
}

/// What a transition may consult besides the flow and the input.
#[derive(Debug, Clone, Copy)]
pub struct FlowEnv<'a> {
    /// The time now.
    pub now: OffsetDateTime,
    /// The random generator (passcodes, user ids).
    pub rng: &'a dyn SecureRandom,
    /// The keys passcodes are hashed under.
    pub keys: &'a KeyRing,
    /// The passcode limits.
    pub passcode: &'a PasscodePolicy,
    /// The domains people may come from.
    pub domains: &'a DomainRestriction,
    /// The user flow a sign-up runs (`None` for a redemption, which has none).
    pub user_flow: Option<&'a UserFlow>,
    /// The tenant's terms of use, which a redemption asks the guest to accept.
    pub terms_of_use: Option<&'a TermsOfUse>,
    /// The tenant's initial domain, for guest user principal names.
    pub tenant_domain: &'a str,
    /// The access policies every flow's end passes (see
    /// [`access`]).
    pub access: &'a AccessEnv<'a>,
    /// For a redemption, the invited user as the gate sees them.
    pub subject: Option<&'a AccessSubject>,
    /// The language of block pages that have no user flow (a
    /// redemption's: the invitation's).
    pub language: Language,
}

/// Applies `input` to `flow`.
///
/// # Errors
///
/// [`FlowError`] when the flow has expired or ended or the input belongs to
/// another step; an email, passcode-sending or policy error for a bad
/// address. Nothing should be written on an error. A wrong passcode is not
/// an error here: it is a transition (the attempt is counted) with
/// [`Transition::refused`] set.
pub fn transition(env: &FlowEnv<'_>, flow: &FlowRecord, input: FlowInput) -> Result<Transition, Error> {
    let state = &flow.state;
    if state.is_final() {
        return Err(FlowError::Finished { state: state.name() }.into());
    }
    // A flow awaiting approval lives until its own (extended) expiry.
    if env.now >= flow.expires_at {
        return Err(FlowError::Expired.into());
    }
    let wrong = |input: &FlowInput| -> Error {
        FlowError::WrongStep {
            input: input.name(),
            actual: state.name(),
        }
        .into()
    };
    if matches!(state, FlowState::StepUp { .. } | FlowState::AccessTerms { .. }) {
        return access::on_input(env, flow, input);
    }
    if let Some(binding) = &flow.redemption {
        return redemption(env, flow, binding.user_id, input);
    }
    let uf = env.user_flow.ok_or(FlowError::UnknownFlow)?;
    let lang = uf.language(flow.ui_locales.as_deref());
    match (state, input) {
        (
            FlowState::ChooseProvider | FlowState::AwaitingFederation { .. },
            FlowInput::ChooseProvider { provider },
        ) => {
            if !uf.offers(&provider) {
                return Err(FlowError::ProviderNotOffered {
                    provider: crate::flow::connector::quote(provider.as_str()),
                }
                .into());
            }
            match provider {
                IdentityProviderKind::EmailOtp => Ok(Transition::to(FlowState::EnterEmail)),
                IdentityProviderKind::Federated(provider_id) => Ok(start_federation(provider_id)),
            }
        }
        (FlowState::StartingFederation { provider_id }, FlowInput::FederationStarted { pending }) => {
            federation_started(provider_id, pending)
        }
        (
            FlowState::AwaitingFederation { pending },
            FlowInput::FederationFinished {
                identity,
                invited,
                email_proven,
                stored_spelling,
                throttle,
            },
        ) => {
            let (identity, proven) = federated_identity(pending, identity, invited.as_ref(), email_proven)?;
            if !env.domains.permits(identity.email.domain()) {
                return Err(Denied::DomainNotAllowed {
                    domain: identity.email.domain().to_owned(),
                }
                .into());
            }
            if let Some(blocked) = access::partner_blocked(env, flow, &identity) {
                return Ok(blocked);
            }
            if !proven {
                return prove_federated_email(env, flow, identity, stored_spelling, throttle.as_ref());
            }
            Ok(Transition::to(FlowState::Authenticated {
                identity: identity.clone(),
            })
            .with(Effect::LookUpAccount { identity }))
        }
        (
            FlowState::EnterEmail,
            FlowInput::SubmitEmail {
                email,
                stored_spelling,
                throttle,
            },
        ) => {
            let email = EmailAddress::parse(&email)?;
            if !env.domains.permits(email.domain()) {
                return Err(Denied::DomainNotAllowed {
                    domain: email.domain().to_owned(),
                }
                .into());
            }
            send_code(env, flow, email, stored_spelling, throttle.as_ref(), None)
        }
        (
            FlowState::AwaitingPasscode { email, federated, .. },
            FlowInput::ResendPasscode {
                stored_spelling,
                throttle,
            },
        ) => send_code(
            env,
            flow,
            email.clone(),
            stored_spelling,
            throttle.as_ref(),
            federated.clone(),
        ),
        (
            FlowState::AwaitingPasscode {
                email,
                passcode,
                delivered,
                federated,
            },
            FlowInput::SubmitPasscode { code, throttle },
        ) => {
            let mut next = check_code(env, flow, email, passcode, *delivered, federated, &code, throttle)?;
            if let FlowState::Authenticated { identity } = &next.state {
                let identity = identity.clone();
                next = next.with(Effect::LookUpAccount { identity });
            }
            Ok(next)
        }
        (
            FlowState::Authenticated { identity },
            FlowInput::AccountLookedUp {
                by_identity,
                mail_taken,
            },
        ) => Ok(match by_identity {
            Some(account) if account.enabled => {
                let mut identity = identity.clone();
                if let Some(stored) = account
                    .mail
                    .filter(|m| m.comparison_key() == identity.email.comparison_key())
                {
                    identity.email = stored;
                }
                let subject = AccessSubject {
                    user_id: account.user_id,
                    user_type: account.user_type,
                    authenticator_enrolled: account.authenticator_enrolled,
                    agreement_acceptances: account.agreement_acceptances,
                };
                access::enter(env, flow, Gate::new(subject, Then::SignIn { identity }))?
            }
            Some(_) => Transition::to(FlowState::Blocked {
                message: uf.text(TextKey::AccountDisabled, lang).to_owned(),
            }),
            None if mail_taken => Transition::to(FlowState::Blocked {
                message: uf.text(TextKey::AccountExists, lang).to_owned(),
            }),
            None => after_authentication(flow, uf, identity.clone()),
        }),
        (
            FlowState::PostFederationSignup { identity },
            FlowInput::ConnectorAnswered {
                step: ConnectorStep::PostFederationSignup,
                outcome,
            },
        ) => Ok(match outcome.at_step(ConnectorStep::PostFederationSignup) {
            ConnectorOutcome::Continue { claims } => Transition::to(FlowState::CollectAttributes {
                identity: identity.clone(),
                prefill: prefill(uf, identity, &claims),
                message: None,
            }),
            other => blocked(uf, flow, ConnectorStep::PostFederationSignup, &other),
        }),
        (FlowState::CollectAttributes { identity, .. }, FlowInput::SubmitAttributes { values }) => {
            if let Some(mismatch) = email_mismatch(identity, &values) {
                return Ok(Transition::to(FlowState::CollectAttributes {
                    identity: identity.clone(),
                    prefill: form_values(&values),
                    message: Some(uf.text(mismatch, lang).to_owned()),
                }));
            }
            if uf.connector(ConnectorStep::PostAttributeCollection).is_some() {
                let input = connector_input(flow, identity, Some(&values));
                Ok(Transition::to(FlowState::PostAttributeCollection {
                    identity: identity.clone(),
                    attributes: claims_of(&values),
                })
                .with(Effect::CallConnector {
                    step: ConnectorStep::PostAttributeCollection,
                    input,
                }))
            } else {
                collected(env, uf, flow, identity.clone(), claims_of(&values))
            }
        }
        (
            FlowState::PostAttributeCollection { identity, attributes },
            FlowInput::ConnectorAnswered {
                step: ConnectorStep::PostAttributeCollection,
                outcome,
            },
        ) => match outcome.at_step(ConnectorStep::PostAttributeCollection) {
            ConnectorOutcome::Continue { claims } => match overridden(uf, attributes, &claims) {
                Ok(values) => collected(env, uf, flow, identity.clone(), claims_of(&values)),
                // The API returned a value the attribute does not accept.
                Err(name) => Ok(blocked(
                    uf,
                    flow,
                    ConnectorStep::PostAttributeCollection,
                    &ConnectorOutcome::Malformed {
                        reason: MalformedReason::InvalidClaimValue {
                            name,
                            problem: "the value does not fit the attribute",
                        },
                    },
                )),
            },
            ConnectorOutcome::ValidationError { user_message } => {
                Ok(Transition::to(FlowState::CollectAttributes {
                    identity: identity.clone(),
                    prefill: claims_form_values(attributes),
                    message: Some(user_message),
                }))
            }
            other => Ok(blocked(uf, flow, ConnectorStep::PostAttributeCollection, &other)),
        },
        (FlowState::Reviewing { identity, attributes }, FlowInput::ApprovalReviewed { verdict }) => {
            match verdict {
                ApprovalVerdict::Approve => sign_up(env, flow, identity.clone(), attributes.clone()),
                ApprovalVerdict::Deny { message } => Ok(Transition::to(FlowState::Denied {
                    message: message.unwrap_or_else(|| uf.text(TextKey::ApprovalDenied, lang).to_owned()),
                })),
                ApprovalVerdict::Hold { message } => {
                    let mut t = Transition::to(FlowState::AwaitingApproval {
                        identity: identity.clone(),
                        attributes: attributes.clone(),
                        message,
                    });
                    t.expires_at = Some(env.now.saturating_add(uf.approval_lifetime()));
                    Ok(t)
                }
            }
        }
        (
            FlowState::AwaitingApproval {
                identity, attributes, ..
            },
            FlowInput::AdminDecision { approve, message },
        ) => Ok(if approve {
            Transition::to(FlowState::Approved {
                identity: identity.clone(),
                attributes: attributes.clone(),
            })
        } else {
            Transition::to(FlowState::Denied {
                message: message.unwrap_or_else(|| uf.text(TextKey::ApprovalDenied, lang).to_owned()),
            })
        }),
        (_, FlowInput::AdminDecision { .. }) => Err(FlowError::NotAwaitingApproval.into()),
        (FlowState::Approved { identity, attributes }, FlowInput::Resume) => {
            sign_up(env, flow, identity.clone(), attributes.clone())
        }
        (_, input) => Err(wrong(&input)),
    }
}

/// The redemption lane of [`transition`] (the flow is not final nor
/// expired).
fn redemption(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    user_id: Id,
    input: FlowInput,
) -> Result<Transition, Error> {
    let state = &flow.state;
    match (state, input) {
        (FlowState::Invited, FlowInput::SendPasscode { to, throttle }) => {
            send_code(env, flow, to, None, throttle.as_ref(), None)
        }
        (
            FlowState::Invited | FlowState::AwaitingFederation { .. },
            FlowInput::SignInWith { provider_id },
        ) => Ok(start_federation(provider_id)),
        (FlowState::StartingFederation { provider_id }, FlowInput::FederationStarted { pending }) => {
            federation_started(provider_id, pending)
        }
        (
            FlowState::AwaitingFederation { pending },
            FlowInput::FederationFinished {
                identity,
                invited,
                email_proven,
                throttle,
                ..
            },
        ) => {
            // A redemption must name the invited address.
            let Some(invited) = invited else {
                return Err(FlowError::FederationMismatch.into());
            };
            let (identity, proven) = federated_identity(pending, identity, Some(&invited), email_proven)?;
            if let Some(blocked) = access::partner_blocked(env, flow, &identity) {
                return Ok(blocked);
            }
            if !proven {
                // The code goes to the invited address as stored.
                return prove_federated_email(env, flow, identity, Some(invited), throttle.as_ref());
            }
            Ok(Transition::to(FlowState::Consent { identity }))
        }
        (
            FlowState::AwaitingPasscode { email, federated, .. },
            FlowInput::ResendPasscode { throttle, .. },
        ) => send_code(
            env,
            flow,
            email.clone(),
            None,
            throttle.as_ref(),
            federated.clone(),
        ),
        (
            FlowState::AwaitingPasscode {
                email,
                passcode,
                delivered,
                federated,
            },
            FlowInput::SubmitPasscode { code, throttle },
        ) => {
            let mut next = check_code(env, flow, email, passcode, *delivered, federated, &code, throttle)?;
            if let FlowState::Authenticated { identity } = next.state {
                next.state = FlowState::Consent { identity };
            }
            Ok(next)
        }
        (FlowState::Consent { identity }, FlowInput::Consent { accept }) => match env.terms_of_use {
            _ if !accept => Ok(Transition::to(FlowState::Declined)),
            Some(terms) => Ok(Transition::to(terms_step(identity.clone(), terms))),
            None => redeem(env, flow, user_id, identity.clone(), None),
        },
        (
            FlowState::TermsOfUse {
                identity,
                agreement_id,
                version,
                ..
            },
            FlowInput::AnswerTerms { accept },
        ) => match env.terms_of_use {
            // The tenant changed its terms since they were shown: show the
            // current ones; an acceptance is only ever of what was shown.
            Some(terms) if accept && (terms.id() != agreement_id || terms.version() != *version) => {
                Ok(Transition::to(terms_step(identity.clone(), terms)))
            }
            // Accepted (the terms shown, also when the tenant has dropped
            // its terms since: the guest did accept them).
            _ if accept => {
                let acceptance = AgreementAcceptance {
                    agreement_id: agreement_id.clone(),
                    version: *version,
                    recorded_date_time: env.now,
                };
                redeem(env, flow, user_id, identity.clone(), Some(acceptance))
            }
            _ => Ok(Transition::to(FlowState::Declined)),
        },
        (_, input) => Err(FlowError::WrongStep {
            input: input.name(),
            actual: state.name(),
        }
        .into()),
    }
}

/// The terms-of-use step showing `terms`.
fn terms_step(identity: FlowIdentity, terms: &TermsOfUse) -> FlowState {
    FlowState::TermsOfUse {
        identity,
        agreement_id: terms.id().to_owned(),
        version: terms.version(),
        display_name: terms.display_name().to_owned(),
        url: terms.url().to_string(),
    }
}

/// A sign-in with the federated provider `provider_id` begins.
fn start_federation(provider_id: String) -> Transition {
    Transition::to(FlowState::StartingFederation {
        provider_id: provider_id.clone(),
    })
    .with(Effect::StartFederation { provider_id })
}

/// The provider began the sign-in: wait for its callback.
fn federation_started(provider_id: &str, pending: PendingAuthorization) -> Result<Transition, Error> {
    if pending.provider_id != provider_id {
        return Err(FlowError::FederationMismatch.into());
    }
    Ok(Transition::to(FlowState::AwaitingFederation { pending }))
}

/// The identity a federated sign-in asserts, if it may be used, and
/// whether its address is proven: it comes from the provider the flow went
/// to, asserts an email address and, for a redemption, the invited one
/// (domains compared as A-labels). The address is proven when the
/// registered provider proves it (`email_proven`); otherwise a passcode to
/// it must ([`prove_federated_email`]). Accounts key on the provider's
/// issuer and subject, never on the email.
fn federated_identity(
    pending: &PendingAuthorization,
    identity: Box<ExternalIdentity>,
    invited: Option<&EmailAddress>,
    email_proven: bool,
) -> Result<(FlowIdentity, bool), Error> {
    if identity.provider_id != pending.provider_id {
        return Err(FlowError::FederationMismatch.into());
    }
    let identity = *identity;
    let Some(email) = identity.email else {
        return Err(FlowError::EmailNotVerified {
            provider: pending.provider_id.clone(),
        }
        .into());
    };
    if let Some(invited) = invited
        && invited.comparison_key() != email.comparison_key()
    {
        return Err(FlowError::WrongAccount {
            expected: invited.to_string(),
        }
        .into());
    }
    // The organisation, when the provider is bound to it: its `tid` (the
    // issuing tenant) and the user's home tenant.
    // Personal Microsoft accounts sign in through the consumers tenant,
    // which is no organisation: cross-organisation settings do not apply.
    let home = match (identity.home_tenant_id, identity.tenant_id) {
        (Some(home), Some(issuer_tenant)) if home != access::MICROSOFT_CONSUMERS_TENANT_ID => {
            Some(Box::new(HomeOrganization {
                tenant_id: home,
                issuer_tenant_id: issuer_tenant.to_ascii_lowercase(),
                object_id: identity.object_id,
                mfa: identity.amr.iter().any(|m| m == "mfa"),
            }))
        }
        _ => None,
    };
    Ok((
        FlowIdentity {
            issuer: identity.issuer,
            subject: identity.subject,
            email,
            home,
        },
        email_proven,
    ))
}

/// A federated sign-in asserted an address its provider cannot prove:
/// mail a passcode to it (to `stored_spelling` when a user has the
/// address); the right code proves the address and yields the provider's
/// identity.
fn prove_federated_email(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    identity: FlowIdentity,
    stored_spelling: Option<EmailAddress>,
    throttle: Option<&AddressThrottle>,
) -> Result<Transition, Error> {
    let federated = FederatedSubject {
        issuer: identity.issuer,
        subject: identity.subject,
        home: identity.home,
    };
    send_code(
        env,
        flow,
        identity.email,
        stored_spelling,
        throttle,
        Some(federated),
    )
}

/// The redemption would complete: the invited user accepts with
/// `identity`, once the access gate lets them through.
fn redeem(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    user_id: Id,
    identity: FlowIdentity,
    acceptance: Option<AgreementAcceptance>,
) -> Result<Transition, Error> {
    let subject = match env.subject {
        Some(s) if s.user_id == user_id => s.clone(),
        _ => {
            return Err(crate::error::Internal::Corrupt(
                "a redemption step without its invited user".to_owned(),
            )
            .into());
        }
    };
    access::enter(
        env,
        flow,
        Gate::new(subject, Then::Redeem { identity, acceptance }),
    )
}

/// The account would be created, once the access gate lets it through
/// (under the id it will have).
fn sign_up(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    identity: FlowIdentity,
    attributes: BTreeMap<String, Value>,
) -> Result<Transition, Error> {
    let subject = AccessSubject {
        user_id: Id::random(env.rng)?,
        user_type: UserType::Guest,
        authenticator_enrolled: false,
        agreement_acceptances: Vec::new(),
    };
    access::enter(
        env,
        flow,
        Gate::new(subject, Then::Create { identity, attributes }),
    )
}

/// Checks a typed passcode against the flow's. A right code moves to
/// `Authenticated` (the caller decides what follows); a wrong one that was
/// counted stays at the passcode with the count stored and
/// [`Transition::refused`] set; a code refused before counting is an error.
#[allow(clippy::too_many_arguments)]
fn check_code(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    email: &EmailAddress,
    passcode: &PasscodeRecord,
    delivered: bool,
    federated: &Option<FederatedSubject>,
    code: &SecretString,
    throttle: Option<AddressThrottle>,
) -> Result<Transition, Error> {
    let outcome = check_flow_code(env, flow, passcode, throttle, code);
    let mut next = match (&outcome.verdict, outcome.passcode) {
        (Ok(()), _) => Transition::to(FlowState::Authenticated {
            identity: match federated {
                // The provider's account, its address now proven.
                Some(f) => FlowIdentity {
                    issuer: f.issuer.clone(),
                    subject: f.subject.clone(),
                    email: email.clone(),
                    home: f.home.clone(),
                },
                None => FlowIdentity {
                    issuer: EMAIL_OTP_ISSUER.to_owned(),
                    subject: passcode.address_key.clone(),
                    email: email.clone(),
                    home: None,
                },
            },
        }),
        (Err(_), Some(counted)) => Transition::to(FlowState::AwaitingPasscode {
            email: email.clone(),
            passcode: counted,
            delivered,
            federated: federated.clone(),
        }),
        // Refused before counting (malformed, expired, locked): nothing to store.
        (Err(e), None) => return Err(e.clone().into()),
    };
    if let Some(record) = outcome.throttle {
        next = next.with(Effect::StoreThrottle { record });
    }
    next.refused = outcome.verdict.err();
    Ok(next)
}

/// Checks `code` against the flow's `passcode` (bound to this flow) with
/// the address's counters when they are the passcode's.
pub(crate) fn check_flow_code(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    passcode: &PasscodeRecord,
    throttle: Option<AddressThrottle>,
    code: &SecretString,
) -> email_otp::CheckOutcome {
    let throttle = throttle.filter(|t| t.address_key == passcode.address_key);
    email_otp::check(
        env.passcode,
        env.keys,
        passcode,
        throttle.as_ref(),
        code.expose(),
        &flow.handle_hash,
        env.now,
    )
}

/// A new passcode for `email`, mailed to its stored spelling.
fn send_code(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    email: EmailAddress,
    stored_spelling: Option<EmailAddress>,
    throttle: Option<&AddressThrottle>,
    federated: Option<FederatedSubject>,
) -> Result<Transition, Error> {
    let (passcode, effects) = issue_code(env, flow, &email, stored_spelling, throttle)?;
    let mut t = Transition::to(FlowState::AwaitingPasscode {
        email,
        passcode,
        delivered: true,
        federated,
    });
    t.effects.extend(effects);
    Ok(t)
}

/// A new passcode for `email` bound to `flow`, within the address's send
/// limits: the code at rest, and the effects that store the counters and
/// mail the code to the stored spelling (when it is the same address).
pub(crate) fn issue_code(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    email: &EmailAddress,
    stored_spelling: Option<EmailAddress>,
    throttle: Option<&AddressThrottle>,
) -> Result<(PasscodeRecord, [Effect; 2]), Error> {
    let key = email.comparison_key().to_owned();
    let throttle = throttle.filter(|t| t.address_key == key);
    let next_throttle = email_otp::plan_send(env.passcode, throttle, &key, env.now)?;
    let (code, passcode) =
        email_otp::generate(env.passcode, env.keys, env.rng, flow.handle_hash, &key, env.now)?;
    let to = stored_spelling
        .filter(|s| s.comparison_key() == key)
        .unwrap_or_else(|| email.clone());
    Ok((
        passcode,
        [
            Effect::StoreThrottle {
                record: next_throttle,
            },
            Effect::SendPasscode { to, code },
        ],
    ))
}

/// After a new person authenticated: the `postFederationSignup` connector,
/// or straight to the attribute page.
fn after_authentication(flow: &FlowRecord, uf: &UserFlow, identity: FlowIdentity) -> Transition {
    if uf.connector(ConnectorStep::PostFederationSignup).is_some() {
        let input = connector_input(flow, &identity, None);
        Transition::to(FlowState::PostFederationSignup { identity }).with(Effect::CallConnector {
            step: ConnectorStep::PostFederationSignup,
            input,
        })
    } else {
        let prefill = prefill(uf, &identity, &BTreeMap::new());
        Transition::to(FlowState::CollectAttributes {
            identity,
            prefill,
            message: None,
        })
    }
}

/// The block page for a connector outcome that does not let the flow go on.
fn blocked(uf: &UserFlow, flow: &FlowRecord, step: ConnectorStep, outcome: &ConnectorOutcome) -> Transition {
    let fallback = "Sign-up is not available right now";
    let message = uf
        .connector(step)
        .and_then(|c| outcome.block_message(c.on_unavailable(), flow.ui_locales.as_deref()))
        .unwrap_or(fallback);
    Transition::to(FlowState::Blocked {
        message: message.to_owned(),
    })
}

/// The attributes are final: approval, or the account.
fn collected(
    env: &FlowEnv<'_>,
    uf: &UserFlow,
    flow: &FlowRecord,
    identity: FlowIdentity,
    attributes: BTreeMap<String, Value>,
) -> Result<Transition, Error> {
    if uf.approval_required() {
        let email = identity.email.clone();
        Ok(Transition::to(FlowState::Reviewing {
            identity,
            attributes: attributes.clone(),
        })
        .with(Effect::ReviewApproval { email, attributes }))
    } else {
        sign_up(env, flow, identity, attributes)
    }
}

/// Creates the guest user `id` (with what the access gate collected) and
/// completes the flow.
pub(crate) fn create(
    env: &FlowEnv<'_>,
    flow: &FlowRecord,
    id: Id,
    identity: FlowIdentity,
    mut attributes: BTreeMap<String, Value>,
    collected: UserUpdate,
    assurance: Assurance,
) -> Transition {
    let display_name = match attributes.remove(BuiltInAttribute::DisplayName.as_str()) {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    attributes.remove(BuiltInAttribute::Email.as_str());
    let user = User {
        id,
        user_type: UserType::Guest,
        external_user_state: Some(ExternalUserState::Accepted),
        external_user_state_change_date_time: Some(env.now),
        creation_type: Some(CreationType::SelfServiceSignUp),
        identities: vec![identity.object_identity()],
        mail: Some(identity.email.clone()),
        other_mails: Vec::new(),
        display_name,
        user_principal_name: guest_upn(&identity.email, env.tenant_domain),
        account_enabled: true,
        sponsors: Vec::new(),
        created_date_time: env.now,
        agreement_acceptances: Vec::new(),
        attributes,
    };
    let mut record = UserRecord {
        user,
        tenant_id: flow.tenant_id.clone(),
        active_invitation: None,
        authenticator: None,
    };
    collected.apply(&mut record);
    Transition::to(FlowState::Completed {
        user_id: id,
        signed_in: false,
    })
    .with(Effect::CreateUser {
        record: Box::new(record),
    })
    .with(Effect::IssueToken {
        user_id: id,
        user_type: UserType::Guest,
        identity,
        assurance,
    })
}

/// The request content for a connector call.
fn connector_input(
    flow: &FlowRecord,
    identity: &FlowIdentity,
    values: Option<&AttributeValues>,
) -> ConnectorInput {
    let oi = identity.object_identity();
    let sign_in_type = serde_json::to_value(oi.sign_in_type)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "federated".to_owned());
    let mut input = ConnectorInput::new(flow.client_id.clone())
        .with_email(identity.email.as_str())
        .with_identity(ConnectorIdentity::new(
            sign_in_type,
            oi.issuer,
            oi.issuer_assigned_id,
        ));
    if let Some(values) = values {
        for (name, value) in claims_of(values) {
            // A collected `email` is the proven address (see
            // `email_mismatch`), already sent as the request's own `email`,
            // which a claim may not repeat.
            if name != BuiltInAttribute::Email.as_str() {
                input = input.with_claim(name, value);
            }
        }
    }
    if let Some(locales) = &flow.ui_locales {
        input = input.with_ui_locales(locales.clone());
    }
    input
}

/// The values as JSON claims by name.
pub(crate) fn claims_of(values: &AttributeValues) -> BTreeMap<String, Value> {
    values
        .iter()
        .filter_map(|(n, v)| serde_json::to_value(v).ok().map(|j| (n.as_str().to_owned(), j)))
        .collect()
}

/// The values as form values by name.
fn form_values(values: &AttributeValues) -> BTreeMap<String, Vec<String>> {
    values
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.form_values()))
        .collect()
}

/// JSON claims as form values by name (claims of another shape are left out).
fn claims_form_values(claims: &BTreeMap<String, Value>) -> BTreeMap<String, Vec<String>> {
    claims
        .iter()
        .filter_map(|(n, v)| claim_form_values(v).map(|f| (n.clone(), f)))
        .collect()
}

/// A JSON claim as the form values that submit it, if it has that shape.
fn claim_form_values(value: &Value) -> Option<Vec<String>> {
    match value {
        Value::String(s) => Some(vec![s.clone()]),
        Value::Bool(b) => Some(vec![b.to_string()]),
        Value::Number(n) => n.as_i64().map(|n| vec![n.to_string()]),
        Value::Array(items) => items.iter().map(|i| i.as_str().map(str::to_owned)).collect(),
        Value::Null | Value::Object(_) => None,
    }
}

/// The pre-filled form: the proven address for an `email` attribute, then
/// connector claims the flow collects.
fn prefill(
    uf: &UserFlow,
    identity: &FlowIdentity,
    claims: &BTreeMap<String, Value>,
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for a in uf.attributes().attributes() {
        let name = a.name().as_str();
        if let Some(values) = claims.get(name).and_then(claim_form_values) {
            out.insert(name.to_owned(), values);
        }
    }
    if uf.attributes().get(BuiltInAttribute::Email.as_str()).is_some() {
        out.insert(
            BuiltInAttribute::Email.as_str().to_owned(),
            vec![identity.email.to_string()],
        );
    }
    out
}

/// The collected values with a connector's returned claims in place of
/// theirs, validated again; the name of the first returned claim that does
/// not fit its attribute otherwise.
fn overridden(
    uf: &UserFlow,
    collected: &BTreeMap<String, Value>,
    claims: &BTreeMap<String, Value>,
) -> Result<AttributeValues, String> {
    let mut form = claims_form_values(collected);
    for a in uf.attributes().attributes() {
        let name = a.name().as_str();
        if let Some(claim) = claims.get(name) {
            // The JSON type must be the attribute's: an array is no string,
            // `"true"` no boolean, `"5"` no int64.
            if !claim_fits(a.data_type(), claim) {
                return Err(name.to_owned());
            }
            form.insert(
                name.to_owned(),
                claim_form_values(claim).ok_or_else(|| name.to_owned())?,
            );
        }
    }
    let pairs = form
        .iter()
        .flat_map(|(n, vs)| vs.iter().map(move |v| (n.as_str(), v.as_str())));
    uf.attributes().decode_pairs(pairs, &[]).map_err(|e| {
        e.fields()
            .first()
            .map_or_else(String::new, |f| f.name().as_str().to_owned())
    })
}

/// Whether a returned claim has the JSON type of an attribute of `data_type`.
fn claim_fits(data_type: DataType, claim: &Value) -> bool {
    match data_type {
        DataType::String | DataType::DateTime => claim.is_string(),
        DataType::Boolean => claim.is_boolean(),
        DataType::Int64 => claim.as_i64().is_some(),
        DataType::StringCollection => claim
            .as_array()
            .is_some_and(|items| items.iter().all(Value::is_string)),
    }
}

/// Whether a collected `email` differs from the proven address.
fn email_mismatch(identity: &FlowIdentity, values: &AttributeValues) -> Option<TextKey> {
    match values.get(BuiltInAttribute::Email.as_str()) {
        Some(crate::flow::attributes::AttributeValue::String(s)) => {
            let same =
                EmailAddress::parse(s).is_ok_and(|e| e.comparison_key() == identity.email.comparison_key());
            (!same).then_some(TextKey::EmailMismatch)
        }
        _ => None,
    }
}
