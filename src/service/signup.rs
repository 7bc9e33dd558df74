//! Self-service sign-up on the [`GuestPass`] service: it drives the pure
//! state machine of [`crate::flow::machine`], performs its effects with the
//! adapters (store, mail, API connectors, approver, token keys), and stores
//! each step as one conditional write of the flow record together with the
//! records the step changes (passcode counters, the new user).
//!
//! # The browser binding
//!
//! [`GuestPass::start_sign_up`] returns an opaque handle: the host keeps it
//! in a `__Host-` cookie and passes it to every later call; the store keeps
//! only its SHA-256. Every page also carries a CSRF token: an HMAC of the
//! handle's hash and the flow record's version under a key derived for this
//! purpose. [`GuestPass::advance_flow`] accepts a form only with the token
//! of the page it was rendered from, so a form of another flow, a forged
//! token and a form of an earlier step (a replayed or doubled submission)
//! are refused with [`FlowError::Csrf`] before anything is decided.
//!
//! # No enumeration
//!
//! Until the person has proven the address, every answer is the same for
//! known and unknown addresses: the code goes out either way (to the stored
//! spelling when a user has the address) and the page shows the address as
//! typed. Only after the proof does the flow sign an existing user in, or
//! tell the person that the address belongs to another account.
//!
//! # Races
//!
//! Each step commits with the flow's version as precondition, so of two
//! concurrent submissions of one flow exactly one applies. When two flows of
//! the same person race to create the account, the store's unique identity
//! and mail keys let only one create it; the other flow then signs the
//! person in to that account (or, if another user holds the address, ends
//! on the account-exists page), so no step creates two users.

use std::collections::{BTreeMap, VecDeque};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::hmac;
use serde_json::Value;
use tracing::Span;
use tracing::field::{Empty, display};
use url::Url;

use super::GuestPass;
use crate::audit::AuditKind;
use crate::directory::{AddressThrottle, Expect, FlowRecord, UserRecord, Versioned, Write, WriteBatch};
use crate::email::EmailAddress;
use crate::error::{Denied, Error, Internal, PasscodeError, StoreError};
use crate::flow::access::{
    AccessEnv, AccessReport, Assurance, SignInContext, StepUpMethod, StepUpPage, Then, UserUpdate,
};
use crate::flow::approval::ApprovalRequest;
use crate::flow::attributes::{FieldError, InputType, MAX_BODY_LEN, MAX_FIELDS};
use crate::flow::config::{IdentityProviderKind, TextKey, UserFlow};
use crate::flow::connector::{self, quote};
use crate::flow::machine::{
    self, Effect, ExistingAccount, FlowEnv, FlowError, FlowIdentity, FlowInput, FlowState,
};
use crate::flow::token::{self, CompletionClaims};
use crate::id::Id;
use crate::invitation::Inviter;
use crate::mail::templates::{Language, render_passcode};
use crate::mail::{Mailbox, Message, MessageKind};
use crate::metrics::Metrics;
use crate::policy::InviterRole;
use crate::random;
use crate::secret::{Digest, SecretString, constant_time_eq};

/// Longest accepted flow handle or CSRF token, in bytes.
const MAX_HANDLE_LEN: usize = 64;
/// Longest `state`, in bytes (the `nonce` is bounded by the token).
const MAX_PARAM_LEN: usize = 512;
/// Longest `ui_locales`, in bytes.
const MAX_LOCALES_LEN: usize = 128;
/// Most inputs one request may feed the machine (the person's one plus the
/// answers of its effects); a bound against a loop.
const MAX_STEPS: usize = 8;
/// Form fields the attribute form may carry besides attributes.
pub(crate) const FORM_CONTROL_FIELDS: [&str; 2] = ["csrf_token", "action"];

/// How an application asks for a sign-up, as in an authorization request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SignUpRequest {
    /// The application's client id.
    pub client_id: String,
    /// Where the completion goes: one of the application's registered
    /// redirect URIs, exactly.
    pub redirect_uri: String,
    /// Echoed in the completion token (replay protection for the app).
    pub nonce: Option<String>,
    /// Handed back with the completion (the app's CSRF protection).
    pub state: Option<String>,
    /// The person's languages, space-separated, most preferred first.
    pub ui_locales: Option<String>,
    /// Where the sign-in comes from (client address and kind), for
    /// conditional access; an unknown browser by default.
    pub context: SignInContext,
}

impl SignUpRequest {
    /// A request for `client_id` completing at `redirect_uri`.
    pub fn new(client_id: impl Into<String>, redirect_uri: impl Into<String>) -> Self {
        Self {
            client_id: client_id.into(),
            redirect_uri: redirect_uri.into(),
            ..Self::default()
        }
    }
}

/// A flow opened by [`GuestPass::start_sign_up`].
#[derive(Debug)]
pub struct FlowStarted {
    /// The opaque handle the browser keeps (a `__Host-` cookie).
    pub handle: SecretString,
    /// The first page.
    pub page: FlowPage,
}

/// What the person does on a page, as posted by the browser.
///
/// `Debug` leaves out what was typed in the attribute form (it holds the
/// form's `csrf_token` and the person's details) and shows its length
/// only; passcodes and codes are redacted by [`SecretString`].
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FlowAction {
    /// Picks an identity provider by its name (`emailOtp`, or a federated
    /// provider's id).
    ChooseProvider(String),
    /// Enters the address for a passcode.
    SubmitEmail(String),
    /// Asks for another passcode.
    ResendPasscode,
    /// Types the passcode.
    SubmitPasscode(SecretString),
    /// Submits the attribute form: the `application/x-www-form-urlencoded`
    /// body (the fields `csrf_token` and `action` are ignored).
    SubmitAttributes(Vec<u8>),
    /// Comes back to a flow that waited for approval.
    Resume,
    /// Picks a multi-factor step-up method (the page
    /// [`FlowStep::StepUp`]).
    ChooseStepUp(StepUpMethod),
    /// Types a step-up code (emailed, or from the authenticator app).
    SubmitStepUpCode(SecretString),
    /// Answers terms of use a conditional access policy requires.
    AnswerTerms(bool),
}

impl std::fmt::Debug for FlowAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::ChooseProvider(p) => f.debug_tuple("ChooseProvider").field(p).finish(),
            Self::SubmitEmail(e) => f.debug_tuple("SubmitEmail").field(e).finish(),
            Self::ResendPasscode => f.write_str("ResendPasscode"),
            Self::SubmitPasscode(c) => f.debug_tuple("SubmitPasscode").field(c).finish(),
            Self::SubmitAttributes(body) => write!(f, "SubmitAttributes(<{} bytes>)", body.len()),
            Self::Resume => f.write_str("Resume"),
            Self::ChooseStepUp(m) => f.debug_tuple("ChooseStepUp").field(m).finish(),
            Self::SubmitStepUpCode(c) => f.debug_tuple("SubmitStepUpCode").field(c).finish(),
            Self::AnswerTerms(yes) => f.debug_tuple("AnswerTerms").field(yes).finish(),
        }
    }
}

/// One field of the attribute form, ready to render.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct FormField {
    /// The field name (the attribute's name).
    pub name: String,
    /// The label in the page's language.
    pub label: String,
    /// How to render it.
    pub input_type: InputType,
    /// Whether it must be filled in.
    pub required: bool,
    /// The choices of a select input: (value, label).
    pub choices: Vec<(String, String)>,
    /// The current values (pre-filled or as submitted).
    pub values: Vec<String>,
    /// The error to show next to the field, in the page's language.
    pub error: Option<String>,
    /// Whether the field is fixed (the proven `email`).
    pub read_only: bool,
}

/// A completed flow: where to send the browser and what to hand the app.
#[derive(Debug)]
#[non_exhaustive]
pub struct Completion {
    /// One of the application's registered redirect URIs.
    pub redirect_uri: Url,
    /// The signed completion token for the application (deliver it with a
    /// form post, not in the URL).
    pub id_token: SecretString,
    /// The application's `state`, unchanged.
    pub state: Option<String>,
    /// The user.
    pub user_id: Id,
    /// Whether an existing user signed in (nothing was created).
    pub signed_in: bool,
    /// How long the host may keep the person's session before signing
    /// them in again: the strictest sign-in frequency of the conditional
    /// access policies that applied (zero: for this sign-in only); `None`
    /// when no policy set one.
    pub session_lifetime: Option<time::Duration>,
}

/// The shortest lifetime of a completion token: long enough for the
/// browser to carry it to the application and the application to verify
/// it, also under a sign-in frequency of "every time".
pub const COMPLETION_DELIVERY_WINDOW: time::Duration = time::Duration::minutes(5);

/// The lifetime of a completion token: [`token::DEFAULT_TOKEN_LIFETIME`],
/// cut to the sign-in frequency of the conditional access policies that
/// applied, but never below [`COMPLETION_DELIVERY_WINDOW`]. An application
/// that keeps its session only as long as the token (as
/// [`AppSession`](crate::web::session::AppSession) does) so signs the person
/// in again as often as the policies ask.
pub(crate) fn completion_token_lifetime(session_lifetime: Option<time::Duration>) -> time::Duration {
    match session_lifetime {
        Some(d) => d.clamp(COMPLETION_DELIVERY_WINDOW, token::DEFAULT_TOKEN_LIFETIME),
        None => token::DEFAULT_TOKEN_LIFETIME,
    }
}

/// The page a flow is on.
#[derive(Debug)]
#[non_exhaustive]
pub enum FlowStep {
    /// Pick an identity provider.
    ChooseProvider {
        /// The heading.
        title: String,
        /// The providers offered, in order.
        providers: Vec<IdentityProviderKind>,
    },
    /// Send the browser to the federated provider (a `303` to `url`); its
    /// callback goes to [`GuestPass::sign_up_callback`].
    SignInWith {
        /// The provider's id.
        provider: String,
        /// The authorization request (its `Debug` hides the query).
        url: crate::idp::AuthorizationUrl,
    },
    /// Waiting for the federated provider's callback (a reload): offer to
    /// start that sign-in again or to choose another provider.
    AwaitingSignIn {
        /// The provider's id.
        provider: String,
        /// The providers offered, in order.
        providers: Vec<IdentityProviderKind>,
    },
    /// Enter an address.
    EnterEmail {
        /// The prompt.
        prompt: String,
        /// Why the last address was refused, if it was.
        error: Option<String>,
    },
    /// Enter the passcode sent to `sent_to`.
    EnterPasscode {
        /// The prompt.
        prompt: String,
        /// The address as typed.
        sent_to: String,
        /// Whether the mail transport accepted the code (offer a resend
        /// when not).
        delivered: bool,
        /// Why the last code was refused, if it was.
        refused: Option<PasscodeError>,
    },
    /// Fill in the attributes.
    CollectAttributes {
        /// The heading.
        title: String,
        /// The fields, in display order.
        fields: Vec<FormField>,
        /// A message above the form (a connector's validation error).
        message: Option<String>,
    },
    /// Waiting for an administrator.
    AwaitingApproval {
        /// What to tell the person.
        message: String,
    },
    /// Approved by an administrator: offer to continue
    /// ([`FlowAction::Resume`]), which creates the account.
    Approved {
        /// What to tell the person.
        message: String,
    },
    /// Done, just now: deliver the completion.
    Completed(Box<Completion>),
    /// Done earlier: the token was handed out once; start a new sign-in.
    AlreadyCompleted,
    /// Ended on a block page.
    Blocked {
        /// What to tell the person.
        message: String,
    },
    /// Declined by an administrator or the approver.
    Denied {
        /// What to tell the person.
        message: String,
    },
    /// Conditional access asks for multi-factor authentication: choose a
    /// method ([`FlowAction::ChooseStepUp`]), then enter its code
    /// ([`FlowAction::SubmitStepUpCode`]).
    StepUp {
        /// The step-up page.
        page: StepUpPage,
        /// Why the last code was refused, if it was (an emailed code's).
        refused: Option<PasscodeError>,
    },
    /// Accept or decline terms of use a conditional access policy requires
    /// ([`FlowAction::AnswerTerms`]).
    TermsOfUse {
        /// The terms.
        terms: crate::policy::TermsOfUse,
    },
}

/// A page: the flow, its CSRF token for the next form, the language, the step.
#[derive(Debug)]
#[non_exhaustive]
pub struct FlowPage {
    /// The flow's public id.
    pub flow_id: Id,
    /// The token the next form must carry (field `csrf_token`).
    pub csrf_token: SecretString,
    /// The page's language.
    pub language: Language,
    /// What to show.
    pub step: FlowStep,
}

/// A sign-up waiting for an administrator.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PendingSignUp {
    /// The flow, to approve or deny by.
    pub flow_id: Id,
    /// The user flow configuration.
    pub user_flow_id: String,
    /// The application.
    pub client_id: String,
    /// The proven address.
    pub email: String,
    /// The collected attributes, as JSON claims.
    pub attributes: BTreeMap<String, Value>,
    /// When the flow started.
    pub created_at: time::OffsetDateTime,
    /// When the request lapses.
    pub expires_at: time::OffsetDateTime,
}

/// What a drive of the machine leaves to do.
struct Driven {
    record: FlowRecord,
    throttles: Vec<(AddressThrottle, Expect)>,
    user: Option<Box<UserRecord>>,
    mails: Vec<(EmailAddress, SecretString)>,
    token: Option<(Id, crate::directory::UserType, FlowIdentity, Assurance)>,
    refused: Option<PasscodeError>,
    authenticator_refused: Option<crate::idp::totp::TotpError>,
    /// The existing user to change with the flow, as read (the write is
    /// conditional on this version), and the change.
    user_update: Option<(Versioned<UserRecord>, UserUpdate)>,
    /// Access decisions for the audit sink.
    reports: Vec<AccessReport>,
    completion: Option<Completion>,
    /// The authorization request a federated sign-in began with.
    redirect: Option<Url>,
}

fn check_param(field: &'static str, value: Option<&str>, max: usize) -> Result<(), Error> {
    if let Some(v) = value
        && (v.is_empty() || v.len() > max || v.chars().any(char::is_control))
    {
        return Err(FlowError::InvalidParameter {
            field,
            reason: format!("must be 1 to {max} bytes without control characters"),
        }
        .into());
    }
    Ok(())
}

/// `ui_locales` are language tags (space- or comma-separated, with
/// `;q=` weights as in `Accept-Language`): API connectors send them on, and
/// refuse blank text or formatting characters.
fn check_locales(value: Option<&str>) -> Result<(), Error> {
    if let Some(v) = value
        && (!v.bytes().any(|b| b.is_ascii_alphanumeric())
            || !v
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b" -_,;=.*".contains(&b)))
    {
        return Err(FlowError::InvalidParameter {
            field: "ui_locales",
            reason: "must be language tags".to_owned(),
        }
        .into());
    }
    Ok(())
}

/// Whether the flow collects an attribute called `name`.
fn spec_has(uf: &UserFlow, name: &str) -> bool {
    uf.attributes().get(name).is_some()
}

impl GuestPass {
    fn csrf_for(&self, handle_hash: &Digest, version: u64) -> Result<SecretString, Error> {
        let key = self
            .inner
            .config
            .keys
            .signing()
            .ok_or(crate::error::ConfigError::Missing { field: "signing_key" })?;
        Ok(SecretString::new(URL_SAFE_NO_PAD.encode(csrf_tag(
            &key.csrf,
            handle_hash,
            version,
        ))))
    }

    fn csrf_ok(&self, handle_hash: &Digest, version: u64, submitted: &str) -> bool {
        let Ok(bytes) = URL_SAFE_NO_PAD.decode(submitted.as_bytes()) else {
            return false;
        };
        self.inner
            .config
            .keys
            .all()
            .any(|k| constant_time_eq(&csrf_tag(&k.csrf, handle_hash, version), &bytes))
    }

    fn user_flow(&self, id: &str) -> Result<&UserFlow, Error> {
        self.inner
            .config
            .sign_up
            .user_flow(id)
            .ok_or(Error::Internal(Internal::Corrupt(format!(
                "flow names user flow `{}` that is not configured",
                quote(id)
            ))))
    }

    /// Starts a self-service sign-up (or sign-in) for an application: checks
    /// the application has a user flow and that `redirect_uri` is one of its
    /// registered redirect URIs (exactly: no case folding, no trailing-slash
    /// or query tolerance), and opens a flow that lives for the flow's
    /// lifetime (1 hour by default).
    ///
    /// ```
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// use std::sync::Arc;
    /// use guestpass::{FlowAction, FlowStep, GuestPass, SignUpRequest};
    /// use guestpass::directory::MemoryStore;
    /// use guestpass::flow::config::SignUpConfig;
    /// use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
    /// use guestpass::keys::SigningKey;
    /// use guestpass::mail::Outbox;
    /// use guestpass::random::SystemRandom;
    ///
    /// let sign_up = SignUpConfig::from_json(r#"{
    ///   "applications": [{"clientId": "app", "displayName": "App",
    ///                     "redirectUris": ["https://app.example/done"]}],
    ///   "userFlows": [{"id": "signup", "identityProviders": ["emailOtp"],
    ///                  "attributes": [{"name": "givenName"}], "applications": ["app"]}]
    /// }"#)?;
    /// let outbox = Arc::new(Outbox::new());
    /// let gp = GuestPass::builder()
    ///     .tenant("contoso", "Contoso", "contoso.example")
    ///     .public_base_url("https://guests.contoso.example/")
    ///     .signing_key(SigningKey::new("k1", [42u8; 32])?)
    ///     .redirect_url("https://app.example/done")
    ///     .store(Arc::new(MemoryStore::new()))
    ///     .mail(outbox.clone())
    ///     .sign_up(sign_up)
    ///     .token_keys(TokenKeys::new(TokenSigningKey::generate("t1", TokenAlgorithm::Es256, &SystemRandom::new())?))
    ///     .build()?;
    ///
    /// let started = gp.start_sign_up(SignUpRequest::new("app", "https://app.example/done")).await?;
    /// let handle = started.handle.expose();
    /// let page = gp.advance_flow(handle, started.page.csrf_token.expose(), FlowAction::ChooseProvider("emailOtp".into())).await?;
    /// let page = gp.advance_flow(handle, page.csrf_token.expose(), FlowAction::SubmitEmail("ada@fabrikam.example".into())).await?;
    /// let code = outbox.messages()[0].code(8).unwrap().to_owned();
    /// let page = gp.advance_flow(handle, page.csrf_token.expose(), FlowAction::SubmitPasscode(code.into())).await?;
    /// let page = gp.advance_flow(handle, page.csrf_token.expose(), FlowAction::SubmitAttributes(b"givenName=Ada".to_vec())).await?;
    /// let FlowStep::Completed(done) = page.step else { panic!("{:?}", page.step) };
    /// assert_eq!(done.redirect_uri.as_str(), "https://app.example/done");
    /// assert!(!done.signed_in);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    ///
    /// # Errors
    ///
    /// [`FlowError::UnknownApplication`] when the application has no user
    /// flow, [`FlowError::RedirectNotRegistered`] for any other redirect
    /// URI, [`FlowError::InvalidParameter`] for an oversized `nonce`,
    /// `state` or `ui_locales`, [`Denied::SelfServiceSignUpDisabled`] when
    /// the collaboration settings turn sign-up off, [`Error::Store`] when
    /// the store fails.
    #[tracing::instrument(
        skip_all,
        fields(step = "start_sign_up", flow_id = Empty, client_id = Empty, user_flow = Empty, outcome = Empty)
    )]
    pub async fn start_sign_up(&self, request: SignUpRequest) -> Result<FlowStarted, Error> {
        let result = Box::pin(self.start_sign_up_step(request)).await;
        self.observed(result, |started| page_outcome(&started.page))
    }

    /// [`start_sign_up`](Self::start_sign_up) without its span.
    async fn start_sign_up_step(&self, request: SignUpRequest) -> Result<FlowStarted, Error> {
        let cfg = &self.inner.config;
        if !cfg.collaboration.self_service_sign_up_enabled {
            return Err(Denied::SelfServiceSignUpDisabled.into());
        }
        let unknown = || FlowError::UnknownApplication {
            client_id: quote(&request.client_id),
        };
        let app = cfg.sign_up.application(&request.client_id).ok_or_else(unknown)?;
        let uf = cfg
            .sign_up
            .flow_for_application(&app.client_id)
            .ok_or_else(unknown)?;
        let span = Span::current();
        span.record("client_id", app.client_id.as_str());
        span.record("user_flow", uf.id());
        if !app.redirect_uris.contains(&request.redirect_uri) {
            return Err(FlowError::RedirectNotRegistered {
                uri: quote(&request.redirect_uri),
            }
            .into());
        }
        // The nonce goes into the completion token, which carries at most
        // `token::MAX_NONCE_LEN` bytes: a longer one would fail only after
        // the account was created.
        check_param("nonce", request.nonce.as_deref(), token::MAX_NONCE_LEN)?;
        check_param("state", request.state.as_deref(), MAX_PARAM_LEN)?;
        check_param("ui_locales", request.ui_locales.as_deref(), MAX_LOCALES_LEN)?;
        check_locales(request.ui_locales.as_deref())?;
        let now = self.now();
        let rng = self.inner.rng.as_ref();
        let handle = SecretString::new(URL_SAFE_NO_PAD.encode(random::bytes::<32>(rng)?));
        let record = FlowRecord {
            id: Id::random(rng)?,
            handle_hash: Digest::sha256(handle.expose().as_bytes()),
            tenant_id: cfg.tenant_id.clone(),
            user_flow_id: uf.id().to_owned(),
            client_id: app.client_id.clone(),
            redirect_uri: request.redirect_uri,
            redemption: None,
            nonce: request.nonce,
            app_state: request.state,
            ui_locales: request.ui_locales,
            context: request.context,
            state: FlowState::ChooseProvider,
            created_at: now,
            expires_at: now.saturating_add(uf.lifetime()),
        };
        span.record("flow_id", display(record.id));
        self.inner
            .store
            .commit(WriteBatch::new().with(Write::Flow {
                record: record.clone(),
                expect: Expect::Absent,
            }))
            .await?;
        Metrics::inc(&self.inner.metrics.sign_ups_started);
        let page = self.page(uf, &record, 1, None, None)?;
        Ok(FlowStarted { handle, page })
    }

    /// A sign-up flow by its handle, checked live (a redemption flow's
    /// handle is unknown here).
    async fn live_flow(&self, handle: &str) -> Result<Versioned<FlowRecord>, Error> {
        if handle.is_empty() || handle.len() > MAX_HANDLE_LEN {
            return Err(FlowError::UnknownFlow.into());
        }
        let hash = Digest::sha256(handle.as_bytes());
        match self.inner.store.flow(self.tenant(), &hash).await? {
            Some(f)
                if f.value.tenant_id == self.inner.config.tenant_id
                    && f.value.handle_hash == hash
                    && f.value.redemption.is_none() =>
            {
                Span::current().record("flow_id", display(f.value.id));
                Ok(f)
            }
            _ => Err(FlowError::UnknownFlow.into()),
        }
    }

    /// The page a flow is on (GET): changes nothing, sends nothing.
    ///
    /// # Errors
    ///
    /// [`FlowError::UnknownFlow`] for an unknown handle,
    /// [`FlowError::Expired`] for an expired flow, [`Error::Store`].
    #[tracing::instrument(skip_all, fields(step = "view_flow", flow_id = Empty, outcome = Empty))]
    pub async fn view_flow(&self, handle: &str) -> Result<FlowPage, Error> {
        let result = Box::pin(self.view_flow_step(handle)).await;
        self.observed(result, page_outcome)
    }

    /// [`view_flow`](Self::view_flow) without its span.
    async fn view_flow_step(&self, handle: &str) -> Result<FlowPage, Error> {
        let flow = self.live_flow(handle).await?;
        if !flow.value.state.is_final() && self.now() >= flow.value.expires_at {
            return Err(FlowError::Expired.into());
        }
        let uf = self.user_flow(&flow.value.user_flow_id)?;
        self.page(uf, &flow.value, flow.version, None, None)
    }

    /// Applies what the person did on the page whose CSRF token is `csrf`,
    /// runs the steps that follow without the person (account lookup, API
    /// connectors, approver), stores the result as one conditional write,
    /// then mails a passcode or issues the completion token if the step
    /// calls for it, and returns the next page.
    ///
    /// A wrong passcode is stored (its attempt counts) and comes back as
    /// the passcode page with [`FlowStep::EnterPasscode::refused`] set; an
    /// attribute form with errors comes back as the form with the errors
    /// next to their fields, and nothing is stored. [`FlowAction::Resume`]
    /// on a flow still awaiting approval returns its page and changes
    /// nothing.
    ///
    /// # Errors
    ///
    /// [`FlowError::Csrf`] for a missing, forged or stale token (checked
    /// first), [`FlowError::UnknownFlow`], [`FlowError::Expired`],
    /// [`FlowError::Finished`] for a flow that ended,
    /// [`FlowError::WrongStep`] for an action of another step,
    /// [`Error::Email`] or [`Error::Denied`] for an address that may not
    /// sign up, [`Error::Passcode`] when a code may not be sent now or the
    /// address is locked, [`Error::Store`] on a concurrent change (the
    /// other submission won: reload the page).
    #[tracing::instrument(
        skip_all,
        fields(step = "advance_flow", action = action.kind(), flow_id = Empty, outcome = Empty)
    )]
    pub async fn advance_flow(
        &self,
        handle: &str,
        csrf: &str,
        action: FlowAction,
    ) -> Result<FlowPage, Error> {
        let result = Box::pin(self.advance_flow_step(handle, csrf, action)).await;
        self.observed(result, page_outcome)
    }

    /// [`advance_flow`](Self::advance_flow) without its span.
    async fn advance_flow_step(
        &self,
        handle: &str,
        csrf: &str,
        action: FlowAction,
    ) -> Result<FlowPage, Error> {
        let flow = self.live_flow(handle).await?;
        if csrf.is_empty()
            || csrf.len() > MAX_HANDLE_LEN
            || !self.csrf_ok(&flow.value.handle_hash, flow.version, csrf)
        {
            return Err(FlowError::Csrf.into());
        }
        let uf = self.user_flow(&flow.value.user_flow_id)?;
        // A sign-in held at the access gate decides on the account as it is
        // now: it may have been disabled, or reset and redeemed by someone
        // else, since it was looked up.
        let account = match &flow.value.state {
            FlowState::StepUp { gate, .. } | FlowState::AccessTerms { gate, .. }
                if matches!(gate.then, Then::SignIn { .. }) =>
            {
                let identity = gate.then.identity();
                match self.inner.store.user(self.tenant(), gate.subject.user_id).await? {
                    Some(u)
                        if u.value.user.account_enabled
                            && u.value.user.has_identity(&identity.issuer, &identity.subject) =>
                    {
                        Some(u)
                    }
                    _ => return self.end_sign_in(uf, flow).await,
                }
            }
            _ => None,
        };
        let input = match action {
            FlowAction::ChooseProvider(name) => {
                if !matches!(
                    flow.value.state,
                    FlowState::ChooseProvider | FlowState::AwaitingFederation { .. }
                ) {
                    return Err(wrong_step(&flow.value.state, "chooseProvider"));
                }
                FlowInput::ChooseProvider {
                    provider: IdentityProviderKind::from_name(&name).ok_or_else(|| {
                        FlowError::ProviderNotOffered {
                            provider: quote(&name),
                        }
                    })?,
                }
            }
            FlowAction::SubmitEmail(email) => {
                let key = EmailAddress::parse(&email).map(|e| e.comparison_key().to_owned());
                let (stored_spelling, throttle) = match &key {
                    Ok(key) => self.address_state(key).await?,
                    Err(_) => (None, None),
                };
                return self
                    .advance(
                        uf,
                        flow,
                        FlowInput::SubmitEmail {
                            email,
                            stored_spelling,
                            throttle: throttle.as_ref().map(|t| t.value.clone()),
                        },
                        throttle,
                    )
                    .await;
            }
            FlowAction::ResendPasscode => {
                let FlowState::AwaitingPasscode { passcode, .. } = &flow.value.state else {
                    return Err(wrong_step(&flow.value.state, "resendPasscode"));
                };
                let (stored_spelling, throttle) = self.address_state(&passcode.address_key).await?;
                let input = FlowInput::ResendPasscode {
                    stored_spelling,
                    throttle: throttle.as_ref().map(|t| t.value.clone()),
                };
                return self.advance(uf, flow, input, throttle).await;
            }
            FlowAction::SubmitPasscode(code) => {
                let FlowState::AwaitingPasscode { passcode, .. } = &flow.value.state else {
                    return Err(wrong_step(&flow.value.state, "submitPasscode"));
                };
                let throttle = self
                    .inner
                    .store
                    .throttle(self.tenant(), &passcode.address_key)
                    .await?;
                let input = FlowInput::SubmitPasscode {
                    code,
                    throttle: throttle.as_ref().map(|t| t.value.clone()),
                };
                return self.advance(uf, flow, input, throttle).await;
            }
            FlowAction::SubmitAttributes(body) => {
                if !matches!(flow.value.state, FlowState::CollectAttributes { .. }) {
                    return Err(wrong_step(&flow.value.state, "submitAttributes"));
                }
                if self.now() >= flow.value.expires_at {
                    return Err(FlowError::Expired.into());
                }
                match uf.attributes().decode_form(&body, &FORM_CONTROL_FIELDS) {
                    Ok(values) => FlowInput::SubmitAttributes { values },
                    Err(errors) => {
                        return self.page(uf, &flow.value, flow.version, Some((&body, &errors)), None);
                    }
                }
            }
            FlowAction::Resume => {
                // Back before the administrator decided: the same page, and
                // nothing is written (the page's token stays valid).
                if matches!(flow.value.state, FlowState::AwaitingApproval { .. }) {
                    if self.now() >= flow.value.expires_at {
                        return Err(FlowError::Expired.into());
                    }
                    return self.page(uf, &flow.value, flow.version, None, None);
                }
                FlowInput::Resume
            }
            FlowAction::ChooseStepUp(method) => {
                let FlowState::StepUp { gate, .. } = &flow.value.state else {
                    return Err(wrong_step(&flow.value.state, "chooseStepUp"));
                };
                let key = gate.then.identity().email.comparison_key().to_owned();
                let (stored_spelling, throttle) = self.address_state(&key).await?;
                let input = FlowInput::ChooseStepUp {
                    method,
                    stored_spelling,
                    throttle: throttle.as_ref().map(|t| t.value.clone()),
                };
                return self.advance_with_user(uf, flow, input, throttle, account).await;
            }
            FlowAction::SubmitStepUpCode(code) => {
                let FlowState::StepUp { gate, .. } = &flow.value.state else {
                    return Err(wrong_step(&flow.value.state, "submitStepUpCode"));
                };
                let key = gate.then.identity().email.comparison_key().to_owned();
                let throttle = self.inner.store.throttle(self.tenant(), &key).await?;
                // The user's authenticator as stored now: its last used
                // step decides a replay, and the write of the new one is
                // conditional on this read.
                let input = FlowInput::SubmitStepUpCode {
                    code,
                    throttle: throttle.as_ref().map(|t| t.value.clone()),
                    authenticator: account.as_ref().and_then(|u| u.value.authenticator.clone()),
                };
                return self.advance_with_user(uf, flow, input, throttle, account).await;
            }
            FlowAction::AnswerTerms(accept) => {
                return self
                    .advance_with_user(uf, flow, FlowInput::AnswerTerms { accept }, None, account)
                    .await;
            }
        };
        self.advance(uf, flow, input, None).await
    }

    /// Completes a federated sign-in of a sign-up flow: the browser came back
    /// from the provider `provider_id` to its redirect URI
    /// ([`GuestPass::federation_redirect_uri`]) with `query` (the raw query
    /// string). The provider checks the callback (the `state` binds it to
    /// this flow, so no CSRF token is needed), redeems the code and
    /// validates the tokens; the flow then goes on as after a passcode: an
    /// existing account signs in, a new person continues to the attributes.
    /// A refused callback changes nothing: the person may start again or
    /// choose another provider.
    ///
    /// # Errors
    ///
    /// [`FlowError::UnknownFlow`], [`FlowError::Expired`],
    /// [`FlowError::WrongStep`] when the flow is not waiting for a provider,
    /// [`Error::Idp`] for a callback or token the provider refused,
    /// [`FlowError::EmailNotVerified`] when the provider shared no verified
    /// address, [`Error::Store`] on a concurrent change.
    #[tracing::instrument(
        skip_all,
        fields(step = "sign_up_callback", provider = Empty, flow_id = Empty, outcome = Empty)
    )]
    pub async fn sign_up_callback(
        &self,
        handle: &str,
        provider_id: &str,
        query: &str,
    ) -> Result<FlowPage, Error> {
        super::record_provider(provider_id);
        let result = Box::pin(self.sign_up_callback_step(handle, provider_id, query)).await;
        self.observed(result, page_outcome)
    }

    /// [`sign_up_callback`](Self::sign_up_callback) without its span.
    async fn sign_up_callback_step(
        &self,
        handle: &str,
        provider_id: &str,
        query: &str,
    ) -> Result<FlowPage, Error> {
        let flow = self.live_flow(handle).await?;
        let FlowState::AwaitingFederation { pending } = &flow.value.state else {
            return Err(wrong_step(&flow.value.state, "federationFinished"));
        };
        if self.now() >= flow.value.expires_at {
            return Err(FlowError::Expired.into());
        }
        let uf = self.user_flow(&flow.value.user_flow_id)?;
        let (identity, email_proven) = self.finish_federation(pending, provider_id, query).await?;
        let (stored_spelling, throttle) = match &identity.email {
            Some(email) => self.address_state(email.comparison_key()).await?,
            None => (None, None),
        };
        let input = FlowInput::FederationFinished {
            identity: Box::new(identity),
            invited: None,
            email_proven,
            stored_spelling,
            throttle: throttle.as_ref().map(|t| t.value.clone()),
        };
        self.advance(uf, flow, input, throttle).await
    }

    /// The stored spelling of an address and its passcode counters.
    async fn address_state(
        &self,
        key: &str,
    ) -> Result<(Option<EmailAddress>, Option<Versioned<AddressThrottle>>), Error> {
        let store = &self.inner.store;
        let holder = store.user_by_mail(self.tenant(), key).await?;
        let throttle = store.throttle(self.tenant(), key).await?;
        Ok((holder.and_then(|u| u.value.user.mail), throttle))
    }

    fn env<'a>(&'a self, uf: &'a UserFlow, access: &'a AccessEnv<'a>) -> FlowEnv<'a> {
        let cfg = &self.inner.config;
        FlowEnv {
            now: self.now(),
            rng: self.inner.rng.as_ref(),
            keys: &cfg.keys,
            passcode: &cfg.passcode,
            domains: &cfg.collaboration.domains,
            user_flow: Some(uf),
            terms_of_use: None,
            tenant_domain: &cfg.tenant_domain,
            access,
            subject: None,
            language: uf.default_language(),
        }
    }

    /// Runs `input` and the inputs its effects produce, then stores the
    /// durable result and performs the effects that follow a write.
    async fn advance(
        &self,
        uf: &UserFlow,
        flow: Versioned<FlowRecord>,
        input: FlowInput,
        throttle: Option<Versioned<AddressThrottle>>,
    ) -> Result<FlowPage, Error> {
        self.advance_with_user(uf, flow, input, throttle, None).await
    }

    /// [`advance`](Self::advance) with the existing user the input was
    /// built from (its changes are written conditional on this read).
    async fn advance_with_user(
        &self,
        uf: &UserFlow,
        flow: Versioned<FlowRecord>,
        input: FlowInput,
        throttle: Option<Versioned<AddressThrottle>>,
        user: Option<Versioned<UserRecord>>,
    ) -> Result<FlowPage, Error> {
        let mut driven = self.drive(uf, &flow.value, input, throttle, user).await?;
        // The token is signed before the write: a completion that cannot
        // hand out its token is not stored.
        driven.completion = self.prepare_completion(&driven)?;
        let version = flow.version;
        let driven = match self.commit_driven(&driven, version).await {
            Ok(()) => driven,
            Err(Error::Store(StoreError::Duplicate { .. })) if driven.user.is_some() => {
                // Another flow created this person's account meanwhile.
                let mut settled = self.settle_duplicate(uf, &flow.value, driven).await?;
                settled.completion = self.prepare_completion(&settled)?;
                self.commit_driven(&settled, version).await?;
                settled
            }
            Err(e) => return Err(e),
        };
        self.count_sign_up_step(&flow.value.state, &driven);
        self.after_commit(uf, driven, version + 1).await
    }

    /// Counts a stored sign-up step that moved a flow from `before` to
    /// `driven`'s state: its access decisions, a refused code, a lockout it
    /// began and the step-up (how the flow ended is counted with its
    /// audit, in [`after_commit`](Self::after_commit)).
    fn count_sign_up_step(&self, before: &FlowState, driven: &Driven) {
        let m = &self.inner.metrics;
        for report in &driven.reports {
            m.access(report);
        }
        if driven.refused.is_some() {
            Metrics::inc(&m.passcodes_refused);
        }
        let limit = self.inner.config.passcode.max_consecutive_failures;
        if driven.refused == Some(PasscodeError::AddressLocked)
            && driven
                .throttles
                .iter()
                .any(|(t, _)| t.consecutive_failures == limit)
        {
            Metrics::inc(&m.passcodes_locked);
        }
        self.count_step_up(
            before,
            &driven.record.state,
            driven.refused.is_some() || driven.authenticator_refused.is_some(),
        );
    }

    async fn drive(
        &self,
        uf: &UserFlow,
        flow: &FlowRecord,
        input: FlowInput,
        throttle: Option<Versioned<AddressThrottle>>,
        read_user: Option<Versioned<UserRecord>>,
    ) -> Result<Driven, Error> {
        let access = self.inner.config.access_env();
        let env = self.env(uf, &access);
        let mut out = Driven {
            record: flow.clone(),
            throttles: Vec::new(),
            user: None,
            mails: Vec::new(),
            token: None,
            refused: None,
            authenticator_refused: None,
            user_update: None,
            reports: Vec::new(),
            completion: None,
            redirect: None,
        };
        let mut read_user = read_user;
        let read_throttle = throttle;
        let mut inputs = VecDeque::from([input]);
        let mut steps = 0;
        while let Some(input) = inputs.pop_front() {
            steps += 1;
            if steps > MAX_STEPS {
                return Err(Internal::Corrupt("sign-up flow did not settle".to_owned()).into());
            }
            let t = machine::transition(&env, &out.record, input)?;
            out.record.state = t.state;
            if let Some(at) = t.expires_at {
                out.record.expires_at = at;
            }
            if t.refused.is_some() {
                out.refused = t.refused;
            }
            if t.authenticator_refused.is_some() {
                out.authenticator_refused = t.authenticator_refused;
            }
            for effect in t.effects {
                match effect {
                    Effect::StoreThrottle { record } => {
                        let expect = read_throttle
                            .as_ref()
                            .filter(|t| t.value.address_key == record.address_key)
                            .map_or(Expect::Absent, |t| Expect::Version(t.version));
                        out.throttles.push((record, expect));
                    }
                    Effect::SendPasscode { to, code } => out.mails.push((to, code)),
                    Effect::LookUpAccount { identity } => inputs.push_back(self.look_up(&identity).await?),
                    Effect::CallConnector { step, input } => {
                        let (Some(config), Some(http)) = (uf.connector(step), self.inner.http.as_ref())
                        else {
                            return Err(
                                Internal::Corrupt("connector step without a connector".to_owned()).into()
                            );
                        };
                        let outcome = connector::call(http.as_ref(), config, &input).await?;
                        inputs.push_back(FlowInput::ConnectorAnswered { step, outcome });
                    }
                    Effect::ReviewApproval { email, attributes } => {
                        let request = ApprovalRequest {
                            flow_id: flow.id,
                            user_flow_id: flow.user_flow_id.clone(),
                            client_id: flow.client_id.clone(),
                            email,
                            attributes,
                            ui_locales: flow.ui_locales.clone(),
                        };
                        let verdict = self.inner.approver.review(&request).await;
                        inputs.push_back(FlowInput::ApprovalReviewed { verdict });
                    }
                    Effect::CreateUser { record } => out.user = Some(record),
                    Effect::CompleteRedemption { .. } => {
                        return Err(Internal::Corrupt(
                            "a sign-up step asked to complete a redemption".to_owned(),
                        )
                        .into());
                    }
                    Effect::StartFederation { provider_id } => {
                        let start = self.start_federation(&provider_id).await?;
                        out.redirect = Some(start.url);
                        inputs.push_back(FlowInput::FederationStarted {
                            pending: start.pending,
                        });
                    }
                    Effect::IssueToken {
                        user_id,
                        user_type,
                        identity,
                        assurance,
                    } => out.token = Some((user_id, user_type, identity, assurance)),
                    Effect::AuditAccess { report } => out.reports.push(report),
                    Effect::UpdateUser { user_id, update } => {
                        let user = match read_user.take().filter(|u| u.value.user.id == user_id) {
                            Some(u) => Some(u),
                            None => self.inner.store.user(self.tenant(), user_id).await?,
                        };
                        let Some(user) = user else {
                            // The account went away meanwhile.
                            return Err(Error::NotFound { what: "user" });
                        };
                        match &mut out.user_update {
                            Some((_, pending)) => pending.merge(update),
                            None => out.user_update = Some((user, update)),
                        }
                    }
                }
            }
        }
        if !out.record.state.is_durable() {
            return Err(Internal::Corrupt(format!(
                "sign-up flow stopped at transient step `{}`",
                out.record.state.name()
            ))
            .into());
        }
        // A sign-in that completes on an account read for this step is
        // stored conditional on that read, changed or not: a concurrent
        // disable or reset makes the write, and so the token, fail.
        if let (Some(user), None, FlowState::Completed { signed_in: true, .. }) =
            (read_user, &out.user_update, &out.record.state)
        {
            out.user_update = Some((user, UserUpdate::default()));
        }
        Ok(out)
    }

    /// Ends a sign-in held at the access gate whose account was disabled,
    /// or no longer holds the identity, on the account-disabled page.
    async fn end_sign_in(&self, uf: &UserFlow, flow: Versioned<FlowRecord>) -> Result<FlowPage, Error> {
        let lang = uf.language(flow.value.ui_locales.as_deref());
        let mut record = flow.value;
        record.state = FlowState::Blocked {
            message: uf.text(TextKey::AccountDisabled, lang).to_owned(),
        };
        self.inner
            .store
            .commit(WriteBatch::new().with(Write::Flow {
                record: record.clone(),
                expect: Expect::Version(flow.version),
            }))
            .await?;
        Metrics::inc(&self.inner.metrics.sign_ups_blocked);
        self.audit(None, AuditKind::SignUpBlocked { flow_id: record.id })
            .await;
        self.page(uf, &record, flow.version + 1, None, None)
    }

    async fn look_up(&self, identity: &FlowIdentity) -> Result<FlowInput, Error> {
        let store = &self.inner.store;
        let by_identity = store
            .user_by_identity(self.tenant(), &identity.issuer, &identity.subject)
            .await?
            .map(|u| ExistingAccount {
                user_id: u.value.user.id,
                user_type: u.value.user.user_type,
                enabled: u.value.user.account_enabled,
                mail: u.value.user.mail,
                authenticator_enrolled: u.value.authenticator.is_some(),
                agreement_acceptances: u.value.user.agreement_acceptances,
            });
        let mail_taken = by_identity.is_none()
            && store
                .user_by_mail(self.tenant(), identity.email.comparison_key())
                .await?
                .is_some();
        Ok(FlowInput::AccountLookedUp {
            by_identity,
            mail_taken,
        })
    }

    /// After losing the race to create the account: the flow goes back to
    /// the moment the identity was proven and the machine decides again
    /// with a fresh lookup (sign in to the account that holds the identity
    /// now, or end on the account-exists or account-disabled page).
    async fn settle_duplicate(
        &self,
        uf: &UserFlow,
        flow: &FlowRecord,
        driven: Driven,
    ) -> Result<Driven, Error> {
        let Some((_, _, identity, _)) = driven.token else {
            return Err(Internal::Corrupt("account creation without a token".to_owned()).into());
        };
        let mut authenticated = flow.clone();
        authenticated.state = FlowState::Authenticated {
            identity: identity.clone(),
        };
        let looked_up = self.look_up(&identity).await?;
        self.drive(uf, &authenticated, looked_up, None, None).await
    }

    async fn commit_driven(&self, driven: &Driven, version: u64) -> Result<(), Error> {
        let mut batch = WriteBatch::new().with(Write::Flow {
            record: driven.record.clone(),
            expect: Expect::Version(version),
        });
        for (record, expect) in &driven.throttles {
            batch.push(Write::Throttle {
                tenant_id: self.tenant().to_owned(),
                record: record.clone(),
                expect: *expect,
            });
        }
        if let Some(user) = &driven.user {
            batch.push(Write::User {
                record: user.as_ref().clone(),
                expect: Expect::Absent,
            });
        }
        if let Some((user, update)) = &driven.user_update {
            let mut record = user.value.clone();
            update.clone().apply(&mut record);
            batch.push(Write::User {
                record,
                expect: Expect::Version(user.version),
            });
        }
        Ok(self.inner.store.commit(batch).await?)
    }

    async fn after_commit(
        &self,
        uf: &UserFlow,
        mut driven: Driven,
        mut version: u64,
    ) -> Result<FlowPage, Error> {
        let record = &driven.record;
        let lang = uf.language(record.ui_locales.as_deref());
        let flow_id = record.id;
        for (to, code) in std::mem::take(&mut driven.mails) {
            let delivered = self.mail_code(lang, &to, &code).await;
            if !delivered
                && let FlowState::AwaitingPasscode { delivered, .. }
                | FlowState::StepUp {
                    stage: crate::flow::access::StepUpStep::EmailCode { delivered, .. },
                    ..
                } = &mut driven.record.state
            {
                *delivered = false;
                // Recorded so that the page says so on reload too; if the
                // flow changed meanwhile, the newer state stands.
                let noted = self
                    .inner
                    .store
                    .commit(WriteBatch::new().with(Write::Flow {
                        record: driven.record.clone(),
                        expect: Expect::Version(version),
                    }))
                    .await;
                if noted.is_ok() {
                    version += 1;
                }
            }
        }
        let record = &driven.record;
        let subject = record.redemption.as_ref().map(|r| r.user_id);
        for report in std::mem::take(&mut driven.reports) {
            self.audit(subject, AuditKind::AccessEvaluated { flow_id, report })
                .await;
        }
        let m = &self.inner.metrics;
        match &record.state {
            FlowState::Completed { signed_in: true, .. } => Metrics::inc(&m.sign_ups_signed_in),
            FlowState::Completed { signed_in: false, .. } => Metrics::inc(&m.sign_ups_completed),
            FlowState::AwaitingApproval { .. } => Metrics::inc(&m.sign_ups_held),
            FlowState::Blocked { .. } => Metrics::inc(&m.sign_ups_blocked),
            FlowState::Denied { .. } => Metrics::inc(&m.sign_ups_denied),
            _ => {}
        }
        match &record.state {
            FlowState::Completed { user_id, signed_in } => {
                let kind = if *signed_in {
                    AuditKind::SignedIn { flow_id }
                } else {
                    AuditKind::SignedUp {
                        flow_id,
                        user_flow_id: record.user_flow_id.clone(),
                    }
                };
                self.audit(Some(*user_id), kind).await;
            }
            FlowState::AwaitingApproval { .. } => self.audit(None, AuditKind::SignUpHeld { flow_id }).await,
            FlowState::Blocked { .. } => self.audit(None, AuditKind::SignUpBlocked { flow_id }).await,
            FlowState::Denied { .. } => {
                self.audit(None, AuditKind::SignUpDenied { flow_id, admin: None })
                    .await;
            }
            _ => {}
        }
        // A refused authenticator code is stored (its count) and, once the
        // flow ended on it, audited above; the person sees the refusal.
        if let Some(refused) = driven.authenticator_refused {
            return Err(refused.into());
        }
        if let Some(completion) = driven.completion.take() {
            return Ok(FlowPage {
                flow_id,
                csrf_token: self.csrf_for(&record.handle_hash, version)?,
                language: lang,
                step: FlowStep::Completed(Box::new(completion)),
            });
        }
        if let (Some(url), FlowState::AwaitingFederation { pending }) =
            (driven.redirect.take(), &record.state)
        {
            return Ok(FlowPage {
                flow_id,
                csrf_token: self.csrf_for(&record.handle_hash, version)?,
                language: lang,
                step: FlowStep::SignInWith {
                    provider: pending.provider_id.clone(),
                    url: url.into(),
                },
            });
        }
        self.page(uf, record, version, None, driven.refused)
    }

    /// Mails a passcode; whether the transport took it.
    async fn mail_code(&self, lang: Language, to: &EmailAddress, code: &SecretString) -> bool {
        let cfg = &self.inner.config;
        let Ok(rendered) = render_passcode(
            lang,
            &cfg.tenant_name,
            code.expose(),
            cfg.passcode.lifetime.whole_minutes(),
        ) else {
            return false;
        };
        let message = Message {
            kind: MessageKind::Passcode,
            to: Mailbox {
                address: to.clone(),
                name: None,
            },
            subject: rendered.subject,
            text_body: rendered.text,
            html_body: rendered.html,
            language: lang.tag(),
        };
        match self.inner.mail.send(&message).await {
            Ok(()) => {
                Metrics::inc(&self.inner.metrics.passcodes_sent);
                self.audit(None, AuditKind::PasscodeSent).await;
                true
            }
            Err(_) => false,
        }
    }

    /// The completion of a drive that issues a token, signed now.
    fn prepare_completion(&self, driven: &Driven) -> Result<Option<Completion>, Error> {
        driven
            .token
            .as_ref()
            .map(|(user_id, user_type, identity, assurance)| {
                self.complete(&driven.record, *user_id, *user_type, identity, assurance)
            })
            .transpose()
    }

    fn complete(
        &self,
        record: &FlowRecord,
        user_id: Id,
        user_type: crate::directory::UserType,
        identity: &FlowIdentity,
        assurance: &Assurance,
    ) -> Result<Completion, Error> {
        let cfg = &self.inner.config;
        let keys = cfg
            .token_keys
            .as_ref()
            .ok_or(crate::error::ConfigError::Missing { field: "token_keys" })?;
        let app = cfg
            .sign_up
            .application(&record.client_id)
            .filter(|a| a.redirect_uris.contains(&record.redirect_uri))
            .ok_or_else(|| FlowError::RedirectNotRegistered {
                uri: quote(&record.redirect_uri),
            })?;
        let redirect_uri =
            Url::parse(&record.redirect_uri).map_err(|_| FlowError::RedirectNotRegistered {
                uri: quote(&record.redirect_uri),
            })?;
        let claims = CompletionClaims {
            issuer: cfg.token_issuer.clone(),
            audience: app.client_id.clone(),
            subject: user_id,
            tenant_id: cfg.tenant_object_id,
            email: identity.email.clone(),
            identity_provider: identity.issuer.clone(),
            user_type,
            amr: assurance.amr.clone(),
            acr: Some(assurance.acr.clone()),
            nonce: record.nonce.clone(),
            token_id: token::new_token_id(self.inner.rng.as_ref()).map_err(token_error)?,
            lifetime: completion_token_lifetime(assurance.session_lifetime),
        };
        let id_token = token::issue(keys, &claims, self.now()).map_err(token_error)?;
        Ok(Completion {
            redirect_uri,
            id_token: SecretString::new(id_token),
            state: record.app_state.clone(),
            user_id,
            signed_in: matches!(record.state, FlowState::Completed { signed_in: true, .. }),
            session_lifetime: assurance.session_lifetime,
        })
    }

    /// The page for `record` at `version`, with a failed attribute
    /// submission's values and errors when given.
    fn page(
        &self,
        uf: &UserFlow,
        record: &FlowRecord,
        version: u64,
        failed: Option<(&[u8], &crate::flow::attributes::FormErrors)>,
        refused: Option<PasscodeError>,
    ) -> Result<FlowPage, Error> {
        let lang = uf.language(record.ui_locales.as_deref());
        let step = match &record.state {
            FlowState::ChooseProvider => FlowStep::ChooseProvider {
                title: uf.text(TextKey::ChooseProviderTitle, lang).to_owned(),
                providers: uf.identity_providers().to_vec(),
            },
            FlowState::EnterEmail => FlowStep::EnterEmail {
                prompt: uf.text(TextKey::EmailPrompt, lang).to_owned(),
                error: None,
            },
            FlowState::AwaitingFederation { pending } => FlowStep::AwaitingSignIn {
                provider: pending.provider_id.clone(),
                providers: uf.identity_providers().to_vec(),
            },
            FlowState::AwaitingPasscode { email, delivered, .. } => FlowStep::EnterPasscode {
                prompt: uf.text(TextKey::PasscodePrompt, lang).to_owned(),
                sent_to: email.to_string(),
                delivered: *delivered,
                refused,
            },
            FlowState::CollectAttributes { prefill, message, .. } => {
                // A body the decoder refused to read (too large) is not
                // read here either: the form shows the pre-filled values.
                let submitted: Option<BTreeMap<String, Vec<String>>> = failed
                    .filter(|(body, _)| body.len() <= MAX_BODY_LEN)
                    .map(|(body, _)| {
                        let mut m: BTreeMap<String, Vec<String>> = BTreeMap::new();
                        for (k, v) in url::form_urlencoded::parse(body).take(MAX_FIELDS) {
                            if spec_has(uf, &k) {
                                m.entry(k.into_owned()).or_default().push(v.into_owned());
                            }
                        }
                        m
                    });
                let spec = uf.attributes();
                let fields = spec
                    .attributes()
                    .iter()
                    .map(|a| {
                        let name = a.name().as_str().to_owned();
                        let values = submitted
                            .as_ref()
                            .map_or_else(|| prefill.get(&name).cloned(), |s| s.get(&name).cloned())
                            .unwrap_or_default();
                        let error = failed
                            .and_then(|(_, e)| e.field(&name))
                            .map(|e: &FieldError| e.message(lang, spec));
                        FormField {
                            read_only: name == "email" && prefill.contains_key("email"),
                            label: a.label(lang, uf.default_language()).to_owned(),
                            input_type: a.input_type(),
                            required: a.is_required(),
                            choices: a
                                .choices()
                                .iter()
                                .map(|c| {
                                    (
                                        c.value.clone(),
                                        c.name
                                            .resolve(lang, uf.default_language())
                                            .unwrap_or(&c.value)
                                            .to_owned(),
                                    )
                                })
                                .collect(),
                            values,
                            error,
                            name,
                        }
                    })
                    .collect();
                let form_message = failed.and_then(|(_, e)| e.form().map(|f| f.message(lang)));
                FlowStep::CollectAttributes {
                    title: uf.text(TextKey::AttributesTitle, lang).to_owned(),
                    fields,
                    message: form_message.or_else(|| message.clone()),
                }
            }
            FlowState::AwaitingApproval { message, .. } => FlowStep::AwaitingApproval {
                message: message
                    .clone()
                    .unwrap_or_else(|| uf.text(TextKey::ApprovalPending, lang).to_owned()),
            },
            FlowState::Approved { .. } => FlowStep::Approved {
                message: uf.text(TextKey::ApprovalGranted, lang).to_owned(),
            },
            FlowState::Completed { .. } => FlowStep::AlreadyCompleted,
            FlowState::Blocked { message } => FlowStep::Blocked {
                message: message.clone(),
            },
            FlowState::Denied { message } => FlowStep::Denied {
                message: message.clone(),
            },
            FlowState::StepUp { gate, stage } => FlowStep::StepUp {
                page: crate::flow::access::step_up_page(
                    &self.inner.config.keys,
                    self.inner.config.step_up,
                    gate,
                    stage,
                    &self.inner.config.tenant_name,
                )?,
                refused,
            },
            FlowState::AccessTerms {
                agreement_id,
                version,
                display_name,
                url,
                ..
            } => FlowStep::TermsOfUse {
                terms: crate::policy::TermsOfUse::new(
                    agreement_id.clone(),
                    display_name.clone(),
                    url,
                    *version,
                )
                .map_err(|e| Internal::Corrupt(format!("stored terms of use: {e}")))?,
            },
            other => {
                return Err(Internal::Corrupt(format!(
                    "sign-up flow stored at transient step `{}`",
                    other.name()
                ))
                .into());
            }
        };
        Ok(FlowPage {
            flow_id: record.id,
            csrf_token: self.csrf_for(&record.handle_hash, version)?,
            language: lang,
            step,
        })
    }

    /// Sign-ups waiting for an administrator, oldest first, at most `limit`.
    ///
    /// # Errors
    ///
    /// [`Denied::AdminOnly`] unless `admin` is an administrator,
    /// [`Error::Store`].
    pub async fn pending_sign_ups(&self, admin: &Inviter, limit: u32) -> Result<Vec<PendingSignUp>, Error> {
        require_admin(admin, "review sign-ups")?;
        let flows = self
            .inner
            .store
            .flows_awaiting_approval(self.tenant(), self.now(), limit)
            .await?;
        Ok(flows
            .into_iter()
            .filter_map(|f| match f.value.state {
                FlowState::AwaitingApproval {
                    identity, attributes, ..
                } => Some(PendingSignUp {
                    flow_id: f.value.id,
                    user_flow_id: f.value.user_flow_id,
                    client_id: f.value.client_id,
                    email: identity.email.to_string(),
                    attributes,
                    created_at: f.value.created_at,
                    expires_at: f.value.expires_at,
                }),
                _ => None,
            })
            .collect())
    }

    /// Approves a held sign-up; the person's next visit to the flow creates
    /// the account and completes.
    ///
    /// # Errors
    ///
    /// [`Denied::AdminOnly`], [`Error::NotFound`] for an unknown flow,
    /// [`FlowError::NotAwaitingApproval`] when it is not held,
    /// [`FlowError::Expired`], [`Error::Store`] on a concurrent decision.
    #[tracing::instrument(skip_all, fields(step = "approve_sign_up", flow_id = %flow_id, outcome = Empty))]
    pub async fn approve_sign_up(&self, admin: &Inviter, flow_id: Id) -> Result<(), Error> {
        let result = Box::pin(self.decide(admin, flow_id, true, None)).await;
        self.observed(result, |()| "approved")
    }

    /// Denies a held sign-up; the person sees `message` (or the flow's
    /// text) when they come back.
    ///
    /// # Errors
    ///
    /// As [`GuestPass::approve_sign_up`], and [`Error::Input`] for a message
    /// longer than 1024 characters or with control characters.
    #[tracing::instrument(skip_all, fields(step = "deny_sign_up", flow_id = %flow_id, outcome = Empty))]
    pub async fn deny_sign_up(
        &self,
        admin: &Inviter,
        flow_id: Id,
        message: Option<String>,
    ) -> Result<(), Error> {
        let result = Box::pin(self.deny_sign_up_step(admin, flow_id, message)).await;
        self.observed(result, |()| "denied")
    }

    /// [`deny_sign_up`](Self::deny_sign_up) without its span.
    async fn deny_sign_up_step(
        &self,
        admin: &Inviter,
        flow_id: Id,
        message: Option<String>,
    ) -> Result<(), Error> {
        if let Some(m) = &message
            && (m.trim().is_empty() || m.chars().count() > 1024 || m.chars().any(char::is_control))
        {
            return Err(crate::error::InputError::Invalid {
                field: "message",
                reason: "must be 1 to 1024 characters without control characters".to_owned(),
            }
            .into());
        }
        self.decide(admin, flow_id, false, message).await
    }

    async fn decide(
        &self,
        admin: &Inviter,
        flow_id: Id,
        approve: bool,
        message: Option<String>,
    ) -> Result<(), Error> {
        require_admin(admin, "approve or deny sign-ups")?;
        let flow = self
            .inner
            .store
            .flow_by_id(self.tenant(), flow_id)
            .await?
            .filter(|f| f.value.redemption.is_none())
            .ok_or(Error::NotFound { what: "sign-up flow" })?;
        let uf = self.user_flow(&flow.value.user_flow_id)?;
        let driven = self
            .drive(
                uf,
                &flow.value,
                FlowInput::AdminDecision { approve, message },
                None,
                None,
            )
            .await?;
        self.commit_driven(&driven, flow.version).await?;
        if matches!(driven.record.state, FlowState::Denied { .. }) {
            Metrics::inc(&self.inner.metrics.sign_ups_denied);
        }
        let kind = if approve {
            AuditKind::SignUpApproved {
                flow_id,
                admin: admin.id,
            }
        } else {
            AuditKind::SignUpDenied {
                flow_id,
                admin: admin.id,
            }
        };
        self.audit(None, kind).await;
        Ok(())
    }

    /// The public keys completion tokens are verified with, as a JWKS
    /// document to publish (`None` without token keys).
    pub fn jwks(&self) -> Option<token::Jwks> {
        self.inner.config.token_keys.as_ref().map(token::TokenKeys::jwks)
    }
}

impl FlowAction {
    /// The action's kind, without what the person typed: `chooseProvider`,
    /// `submitEmail`, `resendPasscode`, `submitPasscode`,
    /// `submitAttributes`, `resume`, `chooseStepUp`, `submitStepUpCode`,
    /// `answerTerms`.
    pub fn kind(&self) -> &'static str {
        match self {
            FlowAction::ChooseProvider(_) => "chooseProvider",
            FlowAction::SubmitEmail(_) => "submitEmail",
            FlowAction::ResendPasscode => "resendPasscode",
            FlowAction::SubmitPasscode(_) => "submitPasscode",
            FlowAction::SubmitAttributes(_) => "submitAttributes",
            FlowAction::Resume => "resume",
            FlowAction::ChooseStepUp(_) => "chooseStepUp",
            FlowAction::SubmitStepUpCode(_) => "submitStepUpCode",
            FlowAction::AnswerTerms(_) => "answerTerms",
        }
    }
}

/// The outcome a sign-up step's span records for the page it leads to.
fn page_outcome(page: &FlowPage) -> &'static str {
    match &page.step {
        FlowStep::ChooseProvider { .. } => "choose_provider",
        FlowStep::SignInWith { .. } => "sign_in_with",
        FlowStep::AwaitingSignIn { .. } => "awaiting_sign_in",
        FlowStep::EnterEmail { .. } => "enter_email",
        FlowStep::EnterPasscode { refused: Some(_), .. } => "passcode_refused",
        FlowStep::EnterPasscode { .. } => "enter_passcode",
        FlowStep::CollectAttributes { .. } => "collect_attributes",
        FlowStep::AwaitingApproval { .. } => "awaiting_approval",
        FlowStep::Approved { .. } => "approved",
        FlowStep::Completed(c) if c.signed_in => "signed_in",
        FlowStep::Completed(_) => "signed_up",
        FlowStep::AlreadyCompleted => "already_completed",
        FlowStep::Blocked { .. } => "blocked",
        FlowStep::Denied { .. } => "denied",
        FlowStep::StepUp { refused: Some(_), .. } => "passcode_refused",
        FlowStep::StepUp { .. } => "step_up",
        FlowStep::TermsOfUse { .. } => "terms_of_use",
    }
}

fn require_admin(admin: &Inviter, operation: &'static str) -> Result<(), Error> {
    if admin.role == InviterRole::Admin {
        Ok(())
    } else {
        Err(Denied::AdminOnly { operation }.into())
    }
}

fn wrong_step(state: &FlowState, input: &'static str) -> Error {
    if state.is_final() {
        FlowError::Finished { state: state.name() }.into()
    } else {
        FlowError::WrongStep {
            input,
            actual: state.name(),
        }
        .into()
    }
}

fn token_error(e: token::TokenError) -> Error {
    Error::Internal(Internal::Corrupt(format!("completion token: {e}")))
}

fn csrf_tag(key: &hmac::Key, handle_hash: &Digest, version: u64) -> Vec<u8> {
    let mut ctx = hmac::Context::with_key(key);
    ctx.update(b"flow-csrf");
    ctx.update(&handle_hash.0);
    ctx.update(&version.to_be_bytes());
    ctx.sign().as_ref()[..24].to_vec()
}
