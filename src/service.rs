//! [`GuestPass`]: the async facade hosts call.
//!
//! It drives the pure core and performs its effects with the adapters the
//! host plugged in: the [`DirectoryStore`], the [`MailTransport`], the
//! [`AuditSink`], the [`Clock`] and the [`SecureRandom`].
//!
//! # Failure and ordering
//!
//! Every operation validates its input and decides before it writes, and
//! writes with one conditional batch, so a refused or failed operation
//! leaves the store as it was. Two orderings of mail and write are chosen
//! deliberately:
//!
//! - **Invitation mail is sent before the write.** If the transport fails,
//!   nothing is stored and the call can simply be repeated. If the write
//!   then loses a race, the mail that went out carries a ticket the store
//!   never bound, so its link redeems nothing.
//! - **Passcode mail is sent after the write.** The write reserves the send
//!   in the address's rate limit, so concurrent requests cannot mail more
//!   codes than the limit allows. If the transport then fails, the reserved
//!   send still counts, and the guest asks for a new code.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use time::{Duration, OffsetDateTime};
use tracing::Span;
use tracing::field::{Empty, display};

use crate::audit::{AuditEvent, AuditKind, AuditSink, NoAudit};
use crate::clock::{Clock, SystemClock};
use crate::config::{self, Config, DEFAULT_SESSION_LIFETIME, DEFAULT_TICKET_LIFETIME};
use crate::directory::{
    AddressThrottle, DirectoryStore, Expect, FlowRecord, Invitation, InvitationRecord, InvitationStatus,
    PurgeReport, RedemptionBinding, RedemptionRecords, User, UserRecord, Versioned, Write, WriteBatch,
};
use crate::email::EmailAddress;
use crate::error::{
    ConfigError, Denied, Error, InputError, Internal, MailError, PasscodeError, RedemptionError, StoreError,
    TicketError,
};
use crate::flow::access::{
    self, AccessSubject, REDEMPTION_APPLICATION_ID, SignInContext, StepUpMethod, StepUpMethods, UserUpdate,
};
use crate::flow::approval::{Approver, HoldAll};
use crate::flow::config::SignUpConfig;
use crate::flow::machine::{self, Effect, FlowEnv, FlowInput, FlowState};
use crate::flow::token::TokenKeys;
use crate::http::HttpClient;
use crate::id::Id;
use crate::idp::PasscodePolicy;
use crate::idp::order::{Candidate, CandidateKind, Choice, RedemptionOrder};
use crate::idp::{
    AuthorizationStart, Callback, ExternalIdentity, IdentityProvider, IdpContext, PendingAuthorization,
};
use crate::invitation::redeem::{CONSENT_PERMISSIONS, check_redeemable, completion};
use crate::invitation::{
    ConsentDecision, Finished, InvitationRequest, Inviter, Redeemed, RedemptionStarted, RedemptionStep,
    RedemptionView, Target, plan, ticket, validate,
};
use crate::keys::{KeyRing, SigningKey};
use crate::mail::templates::{Language, render_passcode};
use crate::mail::{MailTransport, Mailbox, Message, MessageKind};
use crate::metrics::{Metrics, MetricsSnapshot, error_outcome};
use crate::policy::{CollaborationSettings, CrossTenantSettings, InviterRole, PolicySet, TermsOfUse};
use crate::random::{self, SecureRandom, SystemRandom};
use crate::secret::{Digest, SecretString};

mod admin;
mod directory_view;
mod signup;

pub use signup::{
    COMPLETION_DELIVERY_WINDOW, Completion, FlowAction, FlowPage, FlowStarted, FlowStep, FormField,
    PendingSignUp, SignUpRequest,
};

/// A stable object id for a tenant id: the first 16 bytes of
/// SHA-256(`guestpass/tenant/` + id).
fn derived_object_id(tenant_id: &str) -> Id {
    let digest = Digest::sha256(format!("guestpass/tenant/{tenant_id}").as_bytes());
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest.0[..16]);
    Id::from_bytes(bytes)
}

/// Most inputs one redemption request may feed the machine (the guest's
/// one plus the answers of its effects); a bound against a loop.
const MAX_REDEMPTION_STEPS: usize = 4;

/// Longest accepted redemption handle, in bytes.
const MAX_HANDLE_LEN: usize = 64;

/// The guestpass service for one tenant. Cheap to clone; share it across
/// request handlers.
///
/// ```
/// # tokio_test();
/// # fn tokio_test() {
/// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
/// # rt.block_on(async {
/// use std::sync::Arc;
/// use guestpass::{GuestPass, InvitationRequest, Inviter};
/// use guestpass::directory::MemoryStore;
/// use guestpass::keys::SigningKey;
/// use guestpass::mail::Outbox;
///
/// let outbox = Arc::new(Outbox::new());
/// let gp = GuestPass::builder()
///     .tenant("contoso", "Contoso", "contoso.example")
///     .public_base_url("https://guests.contoso.example/")
///     .signing_key(SigningKey::new("k1", [42u8; 32])?)
///     .redirect_url("https://app.contoso.example/")
///     .store(Arc::new(MemoryStore::new()))
///     .mail(outbox.clone())
///     .build()?;
///
/// let invitation = gp
///     .invite(&Inviter::admin(None), InvitationRequest::new("alice@fabrikam.example", "https://app.contoso.example/"))
///     .await?;
/// assert!(invitation.invite_redeem_url.unwrap().expose().starts_with("https://guests.contoso.example/redeem?ticket="));
/// assert_eq!(outbox.messages().len(), 1);
/// # Ok::<(), guestpass::Error>(())
/// # }).unwrap();
/// # }
/// ```
#[derive(Clone)]
pub struct GuestPass {
    inner: Arc<Inner>,
}

/// Shows the tenant and the adapters' kinds, never directory contents.
impl std::fmt::Debug for GuestPass {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestPass")
            .field("tenant_id", &self.inner.config.tenant_id)
            .field("public_base_url", &self.inner.config.public_base_url.as_str())
            .field("keys", &self.inner.config.keys)
            .finish_non_exhaustive()
    }
}

struct Inner {
    config: Config,
    store: Arc<dyn DirectoryStore>,
    mail: Arc<dyn MailTransport>,
    audit: Arc<dyn AuditSink>,
    clock: Arc<dyn Clock>,
    rng: Arc<dyn SecureRandom>,
    http: Option<Arc<dyn HttpClient>>,
    approver: Arc<dyn Approver>,
    providers: Vec<RegisteredProvider>,
    redemption_order: RedemptionOrder,
    metrics: Metrics,
}

/// A federated identity provider registered with the service, with what
/// the redemption order knows of it.
#[derive(Clone)]
struct RegisteredProvider {
    provider: Arc<dyn IdentityProvider>,
    candidate: Candidate,
}

/// The path, under the public base URL, that federated providers redirect
/// back to, followed by `/` and the provider's id
/// ([`GuestPass::federation_redirect_uri`]).
pub const FEDERATION_CALLBACK_PATH: &str = "federation/callback";

/// Builds a [`GuestPass`], refusing an incomplete or inconsistent
/// configuration with an error that names the field.
#[derive(Default)]
#[must_use]
pub struct GuestPassBuilder {
    tenant_id: Option<String>,
    tenant_name: Option<String>,
    tenant_domain: Option<String>,
    public_base_url: Option<String>,
    privacy_statement_url: Option<String>,
    signing_key: Option<SigningKey>,
    verification_keys: Vec<SigningKey>,
    redirect_urls: Vec<String>,
    default_language: Option<String>,
    ticket_lifetime: Option<Duration>,
    session_lifetime: Option<Duration>,
    passcode: Option<PasscodePolicy>,
    collaboration: Option<CollaborationSettings>,
    store: Option<Arc<dyn DirectoryStore>>,
    mail: Option<Arc<dyn MailTransport>>,
    audit: Option<Arc<dyn AuditSink>>,
    clock: Option<Arc<dyn Clock>>,
    rng: Option<Arc<dyn SecureRandom>>,
    sign_up: Option<SignUpConfig>,
    token_keys: Option<TokenKeys>,
    token_issuer: Option<String>,
    tenant_object_id: Option<Id>,
    http: Option<Arc<dyn HttpClient>>,
    approver: Option<Arc<dyn Approver>>,
    terms_of_use: Option<TermsOfUse>,
    providers: Vec<RegisteredProvider>,
    redemption_order: Option<RedemptionOrder>,
    conditional_access: Option<PolicySet>,
    cross_tenant: Option<CrossTenantSettings>,
    agreements: Vec<TermsOfUse>,
    step_up: Option<StepUpMethods>,
}

impl std::fmt::Debug for GuestPassBuilder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestPassBuilder")
            .field("tenant_id", &self.tenant_id)
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}

impl GuestPassBuilder {
    /// The self-service sign-up configuration: the applications people sign
    /// up to and the user flows assigned to them (default: none). A
    /// configuration with user flows needs [`token_keys`](Self::token_keys),
    /// and one with API connectors needs an [`http_client`](Self::http_client).
    pub fn sign_up(mut self, config: SignUpConfig) -> Self {
        self.sign_up = Some(config);
        self
    }

    /// The keys completion tokens are signed with (published as JWKS by
    /// [`GuestPass::jwks`]).
    pub fn token_keys(mut self, keys: TokenKeys) -> Self {
        self.token_keys = Some(keys);
        self
    }

    /// The `iss` of completion tokens (default: the public base URL).
    pub fn token_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.token_issuer = Some(issuer.into());
        self
    }

    /// The tenant's object id, the `tid` claim of completion tokens
    /// (default: derived from the tenant id, the same in every process).
    pub fn tenant_object_id(mut self, id: Id) -> Self {
        self.tenant_object_id = Some(id);
        self
    }

    /// The HTTP client API connectors are called with.
    pub fn http_client(mut self, client: Arc<dyn HttpClient>) -> Self {
        self.http = Some(client);
        self
    }

    /// The approver of flows that require approval (default: every sign-up
    /// is held for an administrator).
    pub fn approver(mut self, approver: Arc<dyn Approver>) -> Self {
        self.approver = Some(approver);
        self
    }

    /// The tenant: its id (`A-Z a-z 0-9 - _ .`, at most 64), the name shown to
    /// guests, and the initial domain used in guest user principal names.
    pub fn tenant(
        mut self,
        id: impl Into<String>,
        name: impl Into<String>,
        domain: impl Into<String>,
    ) -> Self {
        self.tenant_id = Some(id.into());
        self.tenant_name = Some(name.into());
        self.tenant_domain = Some(domain.into());
        self
    }

    /// The public base URL every link is built from (`https`, or `http` on a
    /// loopback host). Links never use a request's `Host` header.
    pub fn public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into());
        self
    }

    /// The organisation's privacy statement, shown on the consent page.
    pub fn privacy_statement_url(mut self, url: impl Into<String>) -> Self {
        self.privacy_statement_url = Some(url.into());
        self
    }

    /// The key that signs tickets (and keys passcode hashes).
    pub fn signing_key(mut self, key: SigningKey) -> Self {
        self.signing_key = Some(key);
        self
    }

    /// An older key that still verifies, during rotation.
    pub fn verification_key(mut self, key: SigningKey) -> Self {
        self.verification_keys.push(key);
        self
    }

    /// Registers a redirect URL; invitations may only name registered ones,
    /// compared exactly.
    pub fn redirect_url(mut self, url: impl Into<String>) -> Self {
        self.redirect_urls.push(url.into());
        self
    }

    /// The tenant's default mail language (`en-US` when unset).
    pub fn default_language(mut self, tag: impl Into<String>) -> Self {
        self.default_language = Some(tag.into());
        self
    }

    /// How long a ticket redeems (default 30 days; 1 hour to 90 days).
    pub fn ticket_lifetime(mut self, d: Duration) -> Self {
        self.ticket_lifetime = Some(d);
        self
    }

    /// Registers a federated identity provider (see
    /// [`crate::idp::presets`]): user flows offer it by its id, and the
    /// redemption order picks it for invitations by `kind` (an
    /// organisation or a direct federation for its domains, Google for
    /// Gmail addresses, a Microsoft account as a fallback; Facebook for
    /// sign-up only). Federated sign-ins need an
    /// [`http_client`](Self::http_client).
    pub fn identity_provider(mut self, provider: Arc<dyn IdentityProvider>, kind: CandidateKind) -> Self {
        let mut candidate = Candidate::new(provider.id(), kind);
        candidate.issuer = provider.issuer().map(str::to_owned);
        self.providers.push(RegisteredProvider { provider, candidate });
        self
    }

    /// The order that decides what an invited guest redeems with (default:
    /// Entra's, [`RedemptionOrder::entra_default`]).
    pub fn redemption_order(mut self, order: RedemptionOrder) -> Self {
        self.redemption_order = Some(order);
        self
    }

    /// The terms of use every redemption asks the guest to accept after
    /// consent (default: none). The acceptance is recorded on the user.
    pub fn terms_of_use(mut self, terms: TermsOfUse) -> Self {
        self.terms_of_use = Some(terms);
        self
    }

    /// The conditional access policies every sign-in, sign-up and
    /// redemption passes at its end (default: none). Compiled when the
    /// service is built; terms of use the policies require must be
    /// [`agreement`](Self::agreement)s (or the
    /// [`terms_of_use`](Self::terms_of_use)). See
    /// [`flow::access`](crate::flow::access) for what the flows do with the
    /// decision.
    pub fn conditional_access(mut self, policies: PolicySet) -> Self {
        self.conditional_access = Some(policies);
        self
    }

    /// The cross-organisation access settings (default: Entra's service
    /// default, every organisation allowed, no claim trusted).
    pub fn cross_tenant_access(mut self, settings: CrossTenantSettings) -> Self {
        self.cross_tenant = Some(settings);
        self
    }

    /// Terms of use conditional access policies may require (by id); call
    /// once per agreement.
    pub fn agreement(mut self, terms: TermsOfUse) -> Self {
        self.agreements.push(terms);
        self
    }

    /// The multi-factor step-up methods offered (default: an emailed code
    /// and an authenticator app).
    pub fn step_up_methods(mut self, methods: StepUpMethods) -> Self {
        self.step_up = Some(methods);
        self
    }

    /// How long a redemption flow lives (default 1 hour; 5 minutes to 1 day).
    pub fn session_lifetime(mut self, d: Duration) -> Self {
        self.session_lifetime = Some(d);
        self
    }

    /// The passcode limits (defaults: 8 digits, 10 minutes, 5 tries, 100
    /// consecutive failures, 30 s between sends, 5 sends an hour).
    pub fn passcode_policy(mut self, policy: PasscodePolicy) -> Self {
        self.passcode = Some(policy);
        self
    }

    /// Who may invite and which domains (default: admins, guest inviters and
    /// members; every domain).
    pub fn collaboration(mut self, settings: CollaborationSettings) -> Self {
        self.collaboration = Some(settings);
        self
    }

    /// The directory store (required).
    pub fn store(mut self, store: Arc<dyn DirectoryStore>) -> Self {
        self.store = Some(store);
        self
    }

    /// The mail transport (required).
    pub fn mail(mut self, mail: Arc<dyn MailTransport>) -> Self {
        self.mail = Some(mail);
        self
    }

    /// The audit sink (default: none).
    pub fn audit(mut self, audit: Arc<dyn AuditSink>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The clock (default: the system clock).
    pub fn clock(mut self, clock: Arc<dyn Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// The random generator (default: the operating system's CSPRNG).
    pub fn random(mut self, rng: Arc<dyn SecureRandom>) -> Self {
        self.rng = Some(rng);
        self
    }

    /// Checks the configuration and builds the service.
    ///
    /// # Errors
    ///
    /// [`ConfigError`] naming the first missing or invalid field.
    pub fn build(self) -> Result<GuestPass, ConfigError> {
        let missing = |field| ConfigError::Missing { field };
        let tenant_id = self.tenant_id.ok_or(missing("tenant_id"))?;
        config::check_tenant_id(&tenant_id)?;
        let tenant_name = self.tenant_name.ok_or(missing("tenant_name"))?;
        config::check_name("tenant_name", &tenant_name)?;
        let tenant_domain = config::check_domain(&self.tenant_domain.ok_or(missing("tenant_domain"))?)?;
        let public_base_url =
            config::check_base_url(&self.public_base_url.ok_or(missing("public_base_url"))?)?;
        let privacy_statement_url = self
            .privacy_statement_url
            .map(|u| config::check_url("privacy_statement_url", &u))
            .transpose()?;
        let mut keys = KeyRing::new(self.signing_key.ok_or(missing("signing_key"))?)?;
        for k in self.verification_keys {
            keys = keys.with_verification_key(k)?;
        }
        if self.redirect_urls.is_empty() {
            return Err(missing("redirect_urls"));
        }
        for (i, u) in self.redirect_urls.iter().enumerate() {
            config::check_url("redirect_urls", u)?;
            if self.redirect_urls[..i].contains(u) {
                return Err(ConfigError::Invalid {
                    field: "redirect_urls",
                    reason: format!("`{u}` is listed twice"),
                });
            }
        }
        let default_language = match self.default_language {
            None => Language::EnUs,
            Some(tag) => Language::from_tag(&tag).ok_or_else(|| ConfigError::Invalid {
                field: "default_language",
                reason: format!("`{tag}` is not a supported language"),
            })?,
        };
        let ticket_lifetime = self.ticket_lifetime.unwrap_or(DEFAULT_TICKET_LIFETIME);
        config::check_lifetime(
            "ticket_lifetime",
            ticket_lifetime,
            Duration::hours(1),
            Duration::days(90),
        )?;
        let session_lifetime = self.session_lifetime.unwrap_or(DEFAULT_SESSION_LIFETIME);
        config::check_lifetime(
            "session_lifetime",
            session_lifetime,
            Duration::minutes(5),
            Duration::days(1),
        )?;
        let passcode = self.passcode.unwrap_or_default();
        passcode.validate()?;
        let store = self.store.ok_or(missing("store"))?;
        let mail = self.mail.ok_or(missing("mail"))?;
        let sign_up = self.sign_up.unwrap_or_default();
        if !sign_up.user_flows().is_empty() && self.token_keys.is_none() {
            return Err(ConfigError::Invalid {
                field: "token_keys",
                reason: "user flows complete with a signed token; configure the keys".to_owned(),
            });
        }
        if sign_up.has_connectors() && self.http.is_none() {
            return Err(ConfigError::Invalid {
                field: "http_client",
                reason: "a user flow calls an api connector; configure an http client".to_owned(),
            });
        }
        for (i, p) in self.providers.iter().enumerate() {
            let id = p.provider.id();
            if !crate::flow::config::is_provider_id(id) || id == crate::flow::config::EMAIL_OTP_PROVIDER {
                return Err(ConfigError::Invalid {
                    field: "identity_provider",
                    reason: format!(
                        "`{}` must be 1 to 64 characters of A-Z a-z 0-9 . _ - and not `emailOtp`",
                        crate::flow::connector::quote(id)
                    ),
                });
            }
            if self.providers[..i].iter().any(|q| q.provider.id() == id) {
                return Err(ConfigError::Invalid {
                    field: "identity_provider",
                    reason: format!("`{id}` is registered twice"),
                });
            }
        }
        for uf in sign_up.user_flows() {
            for id in uf.federated_providers() {
                if !self.providers.iter().any(|p| p.provider.id() == id) {
                    return Err(ConfigError::Invalid {
                        field: "sign_up",
                        reason: format!(
                            "user flow `{}` offers `{id}`, which is not a registered identity provider",
                            uf.id()
                        ),
                    });
                }
            }
        }
        if !self.providers.is_empty() && self.http.is_none() {
            return Err(ConfigError::Invalid {
                field: "http_client",
                reason: "federated identity providers need an http client".to_owned(),
            });
        }
        let collaboration = self.collaboration.unwrap_or_default();
        let mut redemption_order = self.redemption_order.unwrap_or_default();
        if !collaboration.email_otp_enabled && redemption_order.email_otp_enabled() {
            // Turning the passcode off forces the Microsoft account fallback.
            redemption_order = RedemptionOrder::new(
                redemption_order.primary().to_vec(),
                redemption_order.fallback(),
                false,
                redemption_order.microsoft_account().map(str::to_owned),
            )
            .map_err(|e| ConfigError::Invalid {
                field: "collaboration",
                reason: format!("`emailOtpEnabled` is false: {e}"),
            })?;
        }
        if let Some(id) = redemption_order.microsoft_account()
            && !self.providers.iter().any(|p| p.provider.id() == id)
        {
            return Err(ConfigError::Invalid {
                field: "redemption_order",
                reason: format!("the microsoft account provider `{id}` is not registered"),
            });
        }
        let token_issuer = self.token_issuer.unwrap_or_else(|| public_base_url.to_string());
        let issuer_url = config::check_url("token_issuer", &token_issuer)?;
        if issuer_url.query().is_some() || token_issuer.len() > 256 {
            return Err(ConfigError::Invalid {
                field: "token_issuer",
                reason: format!("`{token_issuer}` must be at most 256 bytes without a query"),
            });
        }
        let tenant_object_id = self
            .tenant_object_id
            .unwrap_or_else(|| derived_object_id(&tenant_id));
        let policies = self.conditional_access.unwrap_or_default().compile()?;
        if policies.uses_groups() {
            // The directory holds no group memberships: a group condition
            // would never match (an include never applies, fail open).
            return Err(ConfigError::Invalid {
                field: "conditional_access",
                reason: "policies name groups (includeGroups, excludeGroups), but the directory holds no \
                         group memberships; target users, user types or external tenants"
                    .to_owned(),
            });
        }
        let mut agreements = self.agreements;
        for (i, a) in agreements.iter().enumerate() {
            if agreements[..i].iter().any(|b| b.id() == a.id()) {
                return Err(ConfigError::Invalid {
                    field: "agreements",
                    reason: format!("terms of use `{}` are configured twice", a.id()),
                });
            }
        }
        if let Some(t) = &self.terms_of_use
            && !agreements.iter().any(|a| a.id() == t.id())
        {
            agreements.push(t.clone());
        }
        if let Some(id) = policies
            .agreement_ids()
            .find(|id| !agreements.iter().any(|a| a.id() == *id))
        {
            return Err(ConfigError::Invalid {
                field: "conditional_access",
                reason: format!(
                    "a policy requires terms of use `{}`, which are not a configured agreement",
                    crate::flow::connector::quote(id)
                ),
            });
        }
        Ok(GuestPass {
            inner: Arc::new(Inner {
                config: Config {
                    tenant_id,
                    tenant_name,
                    tenant_domain,
                    public_base_url,
                    privacy_statement_url,
                    keys,
                    redirect_urls: self.redirect_urls,
                    default_language,
                    ticket_lifetime,
                    session_lifetime,
                    passcode,
                    collaboration,
                    sign_up,
                    token_keys: self.token_keys,
                    token_issuer,
                    tenant_object_id,
                    terms_of_use: self.terms_of_use,
                    policies,
                    cross_tenant: self.cross_tenant.unwrap_or_default(),
                    agreements,
                    step_up: self.step_up.unwrap_or_default(),
                },
                store,
                mail,
                audit: self.audit.unwrap_or_else(|| Arc::new(NoAudit)),
                clock: self.clock.unwrap_or_else(|| Arc::new(SystemClock)),
                rng: self.rng.unwrap_or_else(|| Arc::new(SystemRandom::new())),
                http: self.http,
                approver: self.approver.unwrap_or_else(|| Arc::new(HoldAll)),
                providers: self.providers,
                redemption_order,
                metrics: Metrics::default(),
            }),
        })
    }
}

impl GuestPass {
    /// A builder.
    pub fn builder() -> GuestPassBuilder {
        GuestPassBuilder::default()
    }

    /// The validated configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// The directory store.
    pub fn store(&self) -> &Arc<dyn DirectoryStore> {
        &self.inner.store
    }

    /// The service's counters now (see [`crate::metrics`]); every clone of
    /// the service counts into the same counters.
    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }

    /// Ends a flow step: records its outcome on the step's span (`ok`'s
    /// name for a success, [`error_outcome`] for an error) and counts an
    /// error by its category. (The public steps run their body boxed,
    /// `Box::pin(self.…_step(…))`, so that the span's wrapper does not
    /// double the future a caller holds on its stack.)
    fn observed<T>(&self, result: Result<T, Error>, ok: impl FnOnce(&T) -> &'static str) -> Result<T, Error> {
        let outcome = match &result {
            Ok(value) => ok(value),
            Err(e) => {
                self.inner.metrics.error(e);
                error_outcome(e)
            }
        };
        Span::current().record("outcome", outcome);
        result
    }

    fn tenant(&self) -> &str {
        &self.inner.config.tenant_id
    }

    fn now(&self) -> OffsetDateTime {
        self.inner.clock.now()
    }

    async fn audit(&self, user_id: Option<Id>, kind: AuditKind) {
        let event = AuditEvent {
            at: self.now(),
            tenant_id: self.tenant().to_owned(),
            user_id,
            kind,
        };
        self.inner.audit.record(event).await;
    }

    /// Invites a guest (Graph's `POST /invitations`), or resets a user's
    /// redemption when `resetRedemption` is set.
    ///
    /// Checks the inviter's role and the invited domain against the
    /// collaboration settings; creates the pending guest user or reuses the
    /// one that has the address; replaces any earlier pending invitation of
    /// that user (its ticket stops working, its status becomes `Error`);
    /// mails the invitation when `sendInvitationMessage` is set, and a copy
    /// without the link to a `ccRecipients` address. The returned invitation
    /// carries `inviteRedeemUrl`, built from the public base URL.
    ///
    /// Resetting redemption is for administrators only: it re-invites an
    /// existing user under its id, drops the identities it signed in with,
    /// and lifts a passcode lockout of the address.
    ///
    /// # Errors
    ///
    /// [`Error::Input`] or [`Error::Email`] for a bad request,
    /// [`Error::Denied`] when policy forbids it, [`Error::NotFound`] when the
    /// user to reset does not exist, [`Error::Mail`] when the mail could not
    /// be handed over (nothing is stored then), [`Error::Store`] when the
    /// store refuses (another user has the address, or a concurrent change:
    /// repeat the call).
    #[tracing::instrument(
        skip_all,
        fields(step = "invite", invitation_id = Empty, user_id = Empty, outcome = Empty)
    )]
    pub async fn invite(&self, inviter: &Inviter, request: InvitationRequest) -> Result<Invitation, Error> {
        let result = Box::pin(self.invite_step(inviter, request)).await;
        self.observed(result, |_| "invited")
    }

    /// [`invite`](Self::invite) without its span.
    async fn invite_step(&self, inviter: &Inviter, request: InvitationRequest) -> Result<Invitation, Error> {
        let cfg = &self.inner.config;
        let valid = validate(cfg, &request)?;
        cfg.collaboration.check_invite(inviter.role, &valid.email)?;
        if valid.reset_user.is_some() && inviter.role != InviterRole::Admin {
            return Err(Denied::ResetNotAllowed.into());
        }
        let store = &self.inner.store;
        let key = valid.email.comparison_key();
        let holder = store.user_by_mail(self.tenant(), key).await?;
        let target = match valid.reset_user {
            Some(id) => {
                let user = store
                    .user(self.tenant(), id)
                    .await?
                    .ok_or(Error::NotFound { what: "user" })?;
                // Refuse before any mail goes out when another user has the address.
                if let Some(h) = holder.as_ref().filter(|h| h.value.user.id != id) {
                    return Err(StoreError::Duplicate {
                        constraint: "user mail",
                        key: h.value.mail_key().unwrap_or_default().to_owned(),
                    }
                    .into());
                }
                Target::Reset(user)
            }
            None => match holder {
                Some(u) => Target::Existing(u),
                None => Target::New,
            },
        };
        let superseded = match &target {
            Target::Existing(u) | Target::Reset(u) => match u.value.active_invitation {
                Some(old) => store.invitation(old).await?,
                None => None,
            },
            Target::New => None,
        };
        let reset_throttle = match &target {
            Target::Reset(_) => store.throttle(self.tenant(), key).await?,
            _ => None,
        };
        let mut p = plan(
            cfg,
            inviter,
            valid,
            target,
            superseded,
            self.now(),
            self.inner.rng.as_ref(),
        )?;
        // An administrator's reset lifts the passcode lockout of the address.
        if let Some(t) = reset_throttle.filter(|t| t.value.consecutive_failures > 0) {
            let mut record = t.value;
            record.consecutive_failures = 0;
            p.batch.push(Write::Throttle {
                tenant_id: self.tenant().to_owned(),
                record,
                expect: Expect::Version(t.version),
            });
        }
        for m in &p.mails {
            self.inner.mail.send(m).await?;
        }
        store.commit(p.batch).await?;
        Metrics::inc(&self.inner.metrics.invitations_sent);
        let span = Span::current();
        span.record("invitation_id", display(p.invitation.id));
        span.record("user_id", display(p.user_id));
        self.audit(Some(p.user_id), p.audit).await;
        let mut invitation = p.invitation;
        invitation.invite_redeem_url = p.redeem_url;
        Ok(invitation)
    }

    /// Replaces a pending guest's invitation with a new one (same address,
    /// redirect and message) and mails it; the earlier ticket stops working.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] when there is no such user or no pending
    /// invitation; otherwise as [`GuestPass::invite`].
    #[tracing::instrument(
        skip_all,
        fields(step = "resend", invitation_id = Empty, user_id = %user_id, outcome = Empty)
    )]
    pub async fn resend(&self, inviter: &Inviter, user_id: Id) -> Result<Invitation, Error> {
        let result = Box::pin(self.resend_step(inviter, user_id)).await;
        self.observed(result, |_| "invited")
    }

    /// [`resend`](Self::resend) without its span.
    async fn resend_step(&self, inviter: &Inviter, user_id: Id) -> Result<Invitation, Error> {
        let (user, inv) = self.pending_invitation(user_id).await?;
        let request = InvitationRequest {
            invited_user_email_address: user
                .value
                .user
                .mail
                .map(|m| m.as_str().to_owned())
                .unwrap_or_default(),
            invited_user_display_name: user.value.user.display_name,
            invite_redirect_url: inv.value.invitation.invite_redirect_url,
            send_invitation_message: true,
            invited_user_message_info: Some(inv.value.invitation.invited_user_message_info),
            invited_user_type: Some(inv.value.invitation.invited_user_type),
            reset_redemption: false,
            invited_user: None,
            invited_user_sponsors: inv.value.invitation.invited_user_sponsors,
        };
        self.invite_step(inviter, request).await
    }

    /// The user and its pending invitation.
    async fn pending_invitation(
        &self,
        user_id: Id,
    ) -> Result<(Versioned<UserRecord>, Versioned<InvitationRecord>), Error> {
        let store = &self.inner.store;
        let user = store
            .user(self.tenant(), user_id)
            .await?
            .ok_or(Error::NotFound { what: "user" })?;
        let inv = match user.value.active_invitation {
            Some(id) => store.invitation(id).await?,
            None => None,
        };
        let inv = inv.ok_or(Error::NotFound {
            what: "pending invitation",
        })?;
        Ok((user, inv))
    }

    /// Revokes a guest's pending invitation: its ticket stops working at
    /// once; the user stays, pending, until invited again.
    ///
    /// # Errors
    ///
    /// [`Error::Denied`] when the inviter may not invite,
    /// [`Error::NotFound`] when there is nothing pending, [`Error::Store`] on a
    /// concurrent change.
    #[tracing::instrument(
        skip_all,
        fields(step = "revoke", invitation_id = Empty, user_id = %user_id, outcome = Empty)
    )]
    pub async fn revoke(&self, inviter: &Inviter, user_id: Id) -> Result<(), Error> {
        let result = Box::pin(self.revoke_step(inviter, user_id)).await;
        self.observed(result, |()| "revoked")
    }

    /// [`revoke`](Self::revoke) without its span.
    async fn revoke_step(&self, inviter: &Inviter, user_id: Id) -> Result<(), Error> {
        if !self
            .inner
            .config
            .collaboration
            .allow_invites_from
            .permits(inviter.role)
        {
            return Err(Denied::InviterNotAllowed.into());
        }
        let (user, inv) = self.pending_invitation(user_id).await?;
        let invitation_id = inv.value.invitation.id;
        Span::current().record("invitation_id", display(invitation_id));
        let mut u = user.value.clone();
        u.active_invitation = None;
        let mut i = inv.value.clone();
        i.invitation.status = InvitationStatus::Error;
        i.ticket = None;
        let batch = WriteBatch::new()
            .with(Write::User {
                record: u,
                expect: Expect::Version(user.version),
            })
            .with(Write::Invitation {
                record: i,
                expect: Expect::Version(inv.version),
            });
        self.inner.store.commit(batch).await?;
        self.audit(Some(user_id), AuditKind::Revoked { invitation_id })
            .await;
        Ok(())
    }

    /// A user by id.
    ///
    /// # Errors
    ///
    /// [`Error::NotFound`] or [`Error::Store`].
    pub async fn user(&self, id: Id) -> Result<User, Error> {
        Ok(self
            .inner
            .store
            .user(self.tenant(), id)
            .await?
            .ok_or(Error::NotFound { what: "user" })?
            .value
            .user)
    }

    /// Every user of the tenant.
    ///
    /// # Errors
    ///
    /// [`Error::Store`].
    pub async fn users(&self) -> Result<Vec<User>, Error> {
        Ok(self
            .inner
            .store
            .users(self.tenant())
            .await?
            .into_iter()
            .map(|r| r.user)
            .collect())
    }

    /// Removes expired flows (redemptions and sign-ups, with their inline
    /// passcodes) and clears expired ticket bindings, at most `limit` of each kind; hosts call it on a
    /// schedule (for example every minute with a limit of 1000) and again
    /// while a call reports a full batch.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] when the store fails.
    #[tracing::instrument(
        skip_all,
        fields(step = "purge", limit = limit, flows = Empty, tickets = Empty, outcome = Empty)
    )]
    pub async fn purge_expired(&self, now: OffsetDateTime, limit: u32) -> Result<PurgeReport, Error> {
        let result = self
            .inner
            .store
            .purge_expired(now, limit)
            .await
            .map_err(Error::from);
        if let Ok(report) = &result {
            let span = Span::current();
            span.record("flows", report.flows);
            span.record("tickets", report.tickets);
        }
        self.observed(result, |_| "purged")
    }

    /// Loads an invitation with its user (and the user's passcode counters)
    /// and checks that a ticket whose verifier hashes to `verifier_hash` may
    /// still redeem it now.
    async fn redeemable(&self, invitation_id: Id, verifier_hash: &Digest) -> Result<Redeemable, Error> {
        let records = self
            .inner
            .store
            .redemption_by_invitation(self.tenant(), invitation_id)
            .await?;
        self.checked(invitation_id, verifier_hash, records)
    }

    /// Checks that the invitation and user of `records` may be redeemed by a
    /// ticket whose verifier hashes to `verifier_hash`.
    fn checked(
        &self,
        invitation_id: Id,
        verifier_hash: &Digest,
        records: RedemptionRecords,
    ) -> Result<Redeemable, Error> {
        let cfg = &self.inner.config;
        let RedemptionRecords {
            invitation,
            user,
            throttle,
            ..
        } = records;
        // A store returns the user only for an invitation of this tenant;
        // check again rather than trust it.
        let user = user.filter(|_| {
            invitation
                .as_ref()
                .is_some_and(|i| i.value.tenant_id == cfg.tenant_id)
        });
        check_redeemable(
            cfg,
            invitation_id,
            verifier_hash,
            invitation.as_ref(),
            user.as_ref(),
            self.now(),
        )?;
        match (invitation, user) {
            (Some(invitation), Some(user)) => Ok(Redeemable {
                invitation,
                user,
                throttle,
            }),
            _ => Err(TicketError::NoLongerValid.into()),
        }
    }

    /// Verifies a ticket (before any lookup), then loads what it redeems.
    async fn redeemable_ticket(&self, token: &str) -> Result<(ticket::VerifiedTicket, Redeemable), Error> {
        let cfg = &self.inner.config;
        let verified = ticket::verify(&cfg.keys, &cfg.tenant_id, token, self.now())?;
        Span::current().record("invitation_id", display(verified.invitation_id));
        let r = self
            .redeemable(verified.invitation_id, &verified.verifier_hash())
            .await?;
        Ok((verified, r))
    }

    /// The language of mails for this invitation: its `messageLanguage`,
    /// else the tenant default.
    fn language(&self, inv: &InvitationRecord) -> Language {
        Language::resolve(
            inv.invitation
                .invited_user_message_info
                .message_language
                .as_deref(),
            self.inner.config.default_language,
        )
    }

    /// What the page behind a redemption link shows (GET). Redeems nothing,
    /// writes nothing, sends nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Ticket`] when the ticket is bad, expired or no longer valid.
    #[tracing::instrument(skip_all, fields(step = "view_redemption", invitation_id = Empty, outcome = Empty))]
    pub async fn view_redemption(&self, ticket: &str) -> Result<RedemptionView, Error> {
        let result = Box::pin(self.view_redemption_step(ticket)).await;
        self.observed(result, |_| "viewed")
    }

    /// [`view_redemption`](Self::view_redemption) without its span.
    async fn view_redemption_step(&self, ticket: &str) -> Result<RedemptionView, Error> {
        let (_, r) = self.redeemable_ticket(ticket).await?;
        let cfg = &self.inner.config;
        Ok(RedemptionView {
            organization: cfg.tenant_name.clone(),
            invited_email: r.user.value.user.mail.as_ref().map_or_else(
                || {
                    r.invitation
                        .value
                        .invitation
                        .invited_user_email_address
                        .to_string()
                },
                |m| m.to_string(),
            ),
            display_name: r.user.value.user.display_name.clone(),
            privacy_statement_url: cfg.privacy_statement_url.as_ref().map(|u| u.to_string()),
            sign_in_with: match r.user.value.user.mail.as_ref() {
                Some(mail) => match self.redemption_choice(&r.user.value, mail) {
                    Choice::Provider(id) => Some(id),
                    Choice::EmailOneTimePasscode => None,
                },
                None => None,
            },
        })
    }

    /// Starts redeeming (POST on the link): opens a server-held redemption
    /// flow and mails a one-time passcode to the invited address.
    ///
    /// The returned handle identifies the flow in the next steps. When the
    /// mail transport refuses the passcode, the flow is still open and the
    /// step is [`RedemptionStep::PasscodeNotDelivered`].
    ///
    /// # Errors
    ///
    /// [`Error::Ticket`] when the ticket is bad, [`Error::Passcode`] when the
    /// address is locked or rate limited, [`Error::Store`] on a concurrent
    /// change.
    pub async fn start_redemption(&self, ticket: &str) -> Result<RedemptionStarted, Error> {
        self.start_redemption_from(ticket, SignInContext::default()).await
    }

    /// [`start_redemption`](Self::start_redemption) for a guest whose
    /// client address and kind the host knows: conditional access
    /// evaluates the redemption with them (named locations, client app
    /// types). Without them a redemption is an unknown browser, in no
    /// named location.
    ///
    /// # Errors
    ///
    /// As [`start_redemption`](Self::start_redemption).
    #[tracing::instrument(
        skip_all,
        fields(step = "start_redemption", flow_id = Empty, invitation_id = Empty, outcome = Empty)
    )]
    pub async fn start_redemption_from(
        &self,
        ticket: &str,
        context: SignInContext,
    ) -> Result<RedemptionStarted, Error> {
        let result = Box::pin(self.start_redemption_step(ticket, context)).await;
        self.observed(result, |started| redemption_outcome(&started.step))
    }

    /// [`start_redemption_from`](Self::start_redemption_from) without its
    /// span.
    async fn start_redemption_step(
        &self,
        ticket: &str,
        context: SignInContext,
    ) -> Result<RedemptionStarted, Error> {
        let (verified, r) = self.redeemable_ticket(ticket).await?;
        let cfg = &self.inner.config;
        let now = self.now();
        let handle_bytes = random::bytes::<32>(self.inner.rng.as_ref())?;
        let handle = SecretString::new(URL_SAFE_NO_PAD.encode(handle_bytes));
        let invitation = &r.invitation.value.invitation;
        let record = FlowRecord {
            id: Id::random(self.inner.rng.as_ref())?,
            handle_hash: Digest::sha256(handle.expose().as_bytes()),
            tenant_id: cfg.tenant_id.clone(),
            user_flow_id: String::new(),
            client_id: self.redemption_application(&invitation.invite_redirect_url),
            redirect_uri: invitation.invite_redirect_url.clone(),
            redemption: Some(RedemptionBinding {
                invitation_id: invitation.id,
                user_id: r.user.value.user.id,
                verifier_hash: verified.verifier_hash(),
            }),
            nonce: None,
            app_state: None,
            ui_locales: None,
            context,
            state: FlowState::Invited,
            created_at: now,
            expires_at: now.saturating_add(cfg.session_lifetime),
        };
        Span::current().record("flow_id", display(record.id));
        let to = r.user.value.user.mail.clone().ok_or(TicketError::NoLongerValid)?;
        let key = to.comparison_key().to_owned();
        let step = match self.redemption_choice(&r.user.value, &to) {
            Choice::EmailOneTimePasscode => {
                self.step_redemption(&r, record, Expect::Absent, Some(&key), |throttle| {
                    FlowInput::SendPasscode { to, throttle }
                })
                .await?
            }
            Choice::Provider(provider_id) => {
                self.step_redemption(&r, record, Expect::Absent, None, |_| FlowInput::SignInWith {
                    provider_id,
                })
                .await?
            }
        };
        Metrics::inc(&self.inner.metrics.redemptions_started);
        Ok(RedemptionStarted {
            handle,
            step: step.page,
        })
    }

    /// The application a redemption landing on `redirect` signs in to: the
    /// sign-up application that registered the URL, else
    /// [`REDEMPTION_APPLICATION_ID`].
    fn redemption_application(&self, redirect: &str) -> String {
        self.inner
            .config
            .sign_up
            .applications()
            .iter()
            .find(|a| a.redirect_uris.iter().any(|u| u == redirect))
            .map_or_else(|| REDEMPTION_APPLICATION_ID.to_owned(), |a| a.client_id.clone())
    }

    /// The invited user as the access gate sees them.
    fn access_subject(user: &UserRecord) -> AccessSubject {
        AccessSubject {
            user_id: user.user.id,
            user_type: user.user.user_type,
            authenticator_enrolled: user.authenticator.is_some(),
            agreement_acceptances: user.user.agreement_acceptances.clone(),
        }
    }

    /// The counters of `address_key`: what the joined read of `r` found
    /// when it read them for that key, else a fresh read.
    ///
    /// The joined reads return the counters of the invited user's mail key
    /// (the store contract, which the conformance suite checks), so when
    /// that key is `address_key` an absent row there means no counters and
    /// needs no second read: a first passcode costs one read less. A
    /// counter row that appears meanwhile makes the step's conditional
    /// insert fail with a conflict, as it would after a fresh read.
    async fn throttle(
        &self,
        r: &Redeemable,
        address_key: &str,
    ) -> Result<Option<Versioned<AddressThrottle>>, Error> {
        match &r.throttle {
            Some(t) if t.value.address_key == address_key => Ok(Some(t.clone())),
            None if r.user.value.mail_key() == Some(address_key) => Ok(None),
            _ => Ok(self.inner.store.throttle(self.tenant(), address_key).await?),
        }
    }

    /// A redemption flow (never a sign-up's) whose invitation may still be
    /// redeemed, at a step `at` accepts, with what it redeems, in one read of
    /// the store.
    async fn live_redemption(
        &self,
        handle: &str,
        expected: &'static str,
        at: fn(&FlowState) -> bool,
    ) -> Result<LiveRedemption, Error> {
        let (flow, records) = self.read_redemption(handle).await?;
        self.check_live(flow, records, expected, at)
    }

    /// The redemption flow behind `handle` (of this tenant, under exactly
    /// this handle's hash; a sign-up flow is unknown here) with what it
    /// redeems, in one read.
    async fn read_redemption(
        &self,
        handle: &str,
    ) -> Result<(Versioned<FlowRecord>, RedemptionRecords), Error> {
        if handle.is_empty() || handle.len() > MAX_HANDLE_LEN {
            return Err(RedemptionError::UnknownSession.into());
        }
        let hash = Digest::sha256(handle.as_bytes());
        let mut records = self.inner.store.redemption_by_flow(self.tenant(), &hash).await?;
        match records.flow.take() {
            Some(f)
                if f.value.tenant_id == self.inner.config.tenant_id
                    && f.value.handle_hash == hash
                    && f.value.redemption.is_some() =>
            {
                Span::current().record("flow_id", display(f.value.id));
                Ok((f, records))
            }
            _ => Err(RedemptionError::UnknownSession.into()),
        }
    }

    /// Checks that `flow` is live, at a step `at` accepts, and that what it
    /// redeems still may be redeemed.
    fn check_live(
        &self,
        flow: Versioned<FlowRecord>,
        records: RedemptionRecords,
        expected: &'static str,
        at: fn(&FlowState) -> bool,
    ) -> Result<LiveRedemption, Error> {
        let Some(binding) = flow.value.redemption.clone() else {
            return Err(RedemptionError::UnknownSession.into());
        };
        if self.now() >= flow.value.expires_at {
            return Err(RedemptionError::SessionExpired.into());
        }
        if !at(&flow.value.state) {
            return Err(RedemptionError::WrongStep {
                expected,
                actual: flow.value.state.name(),
            }
            .into());
        }
        let r = self.checked(binding.invitation_id, &binding.verifier_hash, records)?;
        if r.user.value.user.id != binding.user_id {
            return Err(TicketError::NoLongerValid.into());
        }
        Ok(LiveRedemption { flow, redeemable: r })
    }

    /// Applies one input to a redemption flow (stored at `expect`) and
    /// stores the step as one conditional batch: the flow, the passcode
    /// counters of `address_key` (read along or fresh) and, when the step
    /// completes the redemption, the accepted user and the completed
    /// invitation. A passcode the step sends is rendered before and mailed
    /// after the write. `input` receives the counters.
    async fn step_redemption(
        &self,
        r: &Redeemable,
        mut record: FlowRecord,
        expect: Expect,
        address_key: Option<&str>,
        input: impl FnOnce(Option<AddressThrottle>) -> FlowInput,
    ) -> Result<Stepped, Error> {
        let cfg = &self.inner.config;
        let now = self.now();
        let throttle = match address_key {
            Some(key) => self.throttle(r, key).await?,
            None => None,
        };
        let access = cfg.access_env();
        let subject = Self::access_subject(&r.user.value);
        let env = FlowEnv {
            now,
            rng: self.inner.rng.as_ref(),
            keys: &cfg.keys,
            passcode: &cfg.passcode,
            domains: &cfg.collaboration.domains,
            user_flow: None,
            terms_of_use: cfg.terms_of_use.as_ref(),
            tenant_domain: &cfg.tenant_domain,
            access: &access,
            subject: Some(&subject),
            language: self.language(&r.invitation.value),
        };
        let at_terms = matches!(
            record.state,
            FlowState::TermsOfUse { .. } | FlowState::AccessTerms { .. }
        );
        let before = record.state.clone();
        let mut inputs =
            std::collections::VecDeque::from([input(throttle.as_ref().map(|t| t.value.clone()))]);
        let mut effects = Vec::new();
        let mut refused = None;
        let mut authenticator_refused = None;
        let mut redirect = None;
        let mut steps = 0;
        while let Some(input) = inputs.pop_front() {
            steps += 1;
            if steps > MAX_REDEMPTION_STEPS {
                return Err(Internal::Corrupt("redemption step did not settle".to_owned()).into());
            }
            let t = machine::transition(&env, &record, input)
                .map_err(|e| as_redemption_error(e, record.state.name()))?;
            record.state = t.state;
            refused = refused.or(t.refused);
            authenticator_refused = authenticator_refused.or(t.authenticator_refused);
            for effect in t.effects {
                if let Effect::StartFederation { provider_id } = effect {
                    let start = self.start_federation(&provider_id).await?;
                    redirect = Some(start.url);
                    inputs.push_back(FlowInput::FederationStarted {
                        pending: start.pending,
                    });
                } else {
                    effects.push(effect);
                }
            }
        }
        if !record.state.is_durable() {
            return Err(Internal::Corrupt(format!(
                "redemption flow stopped at transient step `{}`",
                record.state.name()
            ))
            .into());
        }
        let mut batch = WriteBatch::new();
        let mut mail = None;
        let mut redeemed = None;
        let mut failures = None;
        let mut reports = Vec::new();
        // Changes to the invited user: written with the completion, or on
        // their own, conditional on the version read with the flow.
        let mut user_update: Option<UserUpdate> = None;
        let mut completing = None;
        for effect in effects {
            match effect {
                Effect::StoreThrottle { record } => {
                    failures = Some(record.consecutive_failures);
                    batch.push(Write::Throttle {
                        tenant_id: self.tenant().to_owned(),
                        record,
                        expect: throttle
                            .as_ref()
                            .map_or(Expect::Absent, |t| Expect::Version(t.version)),
                    });
                }
                Effect::SendPasscode { to, code } => {
                    let language = self.language(&r.invitation.value);
                    let rendered = render_passcode(
                        language,
                        &cfg.tenant_name,
                        code.expose(),
                        cfg.passcode.lifetime.whole_minutes(),
                    )?;
                    mail = Some(Message {
                        kind: MessageKind::Passcode,
                        to: Mailbox {
                            address: to,
                            name: r.user.value.user.display_name.clone(),
                        },
                        subject: rendered.subject,
                        text_body: rendered.text,
                        html_body: rendered.html,
                        language: language.tag(),
                    });
                }
                Effect::CompleteRedemption {
                    identity,
                    acceptances,
                    authenticator,
                } => {
                    let update = UserUpdate {
                        authenticator,
                        agreement_acceptances: acceptances,
                    };
                    completing = Some((identity, update));
                }
                Effect::UpdateUser { user_id, update } if user_id == r.user.value.user.id => {
                    user_update.get_or_insert_with(UserUpdate::default).merge(update);
                }
                Effect::AuditAccess { report } => reports.push(report),
                other => {
                    return Err(Internal::Corrupt(format!(
                        "a redemption step asked for the sign-up effect {other:?}"
                    ))
                    .into());
                }
            }
        }
        match (completing, user_update) {
            (Some((identity, mut update)), earlier) => {
                if let Some(mut earlier) = earlier {
                    earlier.merge(update);
                    update = earlier;
                }
                let redirect_url = self.registered_redirect(&r.invitation.value)?;
                let (writes, user) = completion(&r.invitation, &r.user, &identity, update, now)?;
                redeemed = Some(Redeemed { user, redirect_url });
                for w in writes {
                    batch.push(w);
                }
            }
            (None, Some(update)) => {
                let mut user = r.user.value.clone();
                update.apply(&mut user);
                batch.push(Write::User {
                    record: user,
                    expect: Expect::Version(r.user.version),
                });
            }
            (None, None) => {}
        }
        batch.push(Write::Flow {
            record: record.clone(),
            expect,
        });
        self.inner.store.commit(batch).await?;
        self.count_redemption_step(
            &before,
            &record.state,
            &reports,
            refused.as_ref(),
            authenticator_refused.is_some(),
            failures,
            redeemed.is_some(),
        );
        let user_id = Some(r.user.value.user.id);
        for report in reports {
            self.audit(
                user_id,
                AuditKind::AccessEvaluated {
                    flow_id: record.id,
                    report,
                },
            )
            .await;
        }
        let invitation_id = r.invitation.value.invitation.id;
        let mut page = match (redirect, &record.state, &redeemed) {
            (_, _, Some(done)) => RedemptionStep::Redeemed(Box::new(done.clone())),
            (Some(url), FlowState::AwaitingFederation { pending }, None) => RedemptionStep::SignInWith {
                provider: pending.provider_id.clone(),
                url: url.into(),
            },
            _ => self.redemption_page(&record.state)?,
        };
        if let Some(message) = mail {
            let sent_to = message.to.address.to_string();
            match self.inner.mail.send(&message).await {
                Ok(()) => {
                    Metrics::inc(&self.inner.metrics.passcodes_sent);
                    self.audit(user_id, AuditKind::PasscodeSent).await;
                }
                Err(reason) => {
                    // Recorded with the flow, so a reload shows it too. The
                    // send stays reserved; the write is best effort (a
                    // racing step may have moved the flow on meanwhile).
                    if let FlowState::AwaitingPasscode { delivered, .. }
                    | FlowState::StepUp {
                        stage: access::StepUpStep::EmailCode { delivered, .. },
                        ..
                    } = &mut record.state
                    {
                        *delivered = false;
                        let stored_at = match expect {
                            Expect::Absent => 1,
                            Expect::Version(v) => v + 1,
                        };
                        // A step-up code: the step-up page says so (and
                        // choosing the emailed code again resends).
                        let step_up = matches!(record.state, FlowState::StepUp { .. });
                        if step_up {
                            page = self.redemption_page(&record.state)?;
                        }
                        let write = Write::Flow {
                            record,
                            expect: Expect::Version(stored_at),
                        };
                        let _ = self.inner.store.commit(WriteBatch::new().with(write)).await;
                        if step_up {
                            return Ok(Stepped { page, redeemed });
                        }
                    }
                    page = RedemptionStep::PasscodeNotDelivered { sent_to, reason };
                }
            }
            return Ok(Stepped { page, redeemed });
        }
        if let Some(refused) = refused {
            if let Some(consecutive_failures) = failures.filter(|f| *f > 0) {
                self.audit(user_id, AuditKind::PasscodeFailed { consecutive_failures })
                    .await;
            }
            if refused == PasscodeError::AddressLocked
                && failures == Some(cfg.passcode.max_consecutive_failures)
            {
                self.audit(user_id, AuditKind::AddressLocked).await;
            }
            return Err(refused.into());
        }
        if matches!(record.state, FlowState::Blocked { .. }) {
            self.audit(user_id, AuditKind::RedemptionBlocked { invitation_id })
                .await;
        }
        if let Some(refused) = authenticator_refused {
            return Err(refused.into());
        }
        if redeemed.is_some() {
            self.audit(user_id, AuditKind::Redeemed { invitation_id }).await;
        } else if at_terms && matches!(page, RedemptionStep::Declined) {
            self.audit(user_id, AuditKind::TermsOfUseDeclined { invitation_id })
                .await;
        } else if matches!(page, RedemptionStep::Declined) {
            self.audit(user_id, AuditKind::ConsentDeclined { invitation_id })
                .await;
        }
        Ok(Stepped { page, redeemed })
    }

    /// Counts a stored redemption step that moved a flow from `before` to
    /// `after`: its access decisions, refused codes, a lockout it began
    /// (`failures`: the address's consecutive failures it stored), the
    /// step-up and how the redemption ended.
    #[allow(clippy::too_many_arguments)]
    fn count_redemption_step(
        &self,
        before: &FlowState,
        after: &FlowState,
        reports: &[crate::flow::access::AccessReport],
        refused: Option<&PasscodeError>,
        authenticator_refused: bool,
        failures: Option<u32>,
        redeemed: bool,
    ) {
        let m = &self.inner.metrics;
        for report in reports {
            m.access(report);
        }
        if refused.is_some() {
            Metrics::inc(&m.passcodes_refused);
        }
        if refused == Some(&PasscodeError::AddressLocked)
            && failures == Some(self.inner.config.passcode.max_consecutive_failures)
        {
            Metrics::inc(&m.passcodes_locked);
        }
        self.count_step_up(before, after, refused.is_some() || authenticator_refused);
        if redeemed {
            Metrics::inc(&m.redemptions_completed);
        } else if !before.is_final() {
            match after {
                FlowState::Blocked { .. } => Metrics::inc(&m.redemptions_blocked),
                FlowState::Declined => Metrics::inc(&m.redemptions_declined),
                _ => {}
            }
        }
    }

    /// Counts the step-up of a stored step that moved a flow from `before`
    /// to `after` (`code_refused`: it refused a step-up code).
    fn count_step_up(&self, before: &FlowState, after: &FlowState, code_refused: bool) {
        let m = &self.inner.metrics;
        let was = matches!(before, FlowState::StepUp { .. });
        let is = matches!(after, FlowState::StepUp { .. });
        if !was && is {
            Metrics::inc(&m.step_ups_required);
        }
        if was && !is && !matches!(after, FlowState::Blocked { .. }) {
            Metrics::inc(&m.step_ups_passed);
        }
        if was && code_refused {
            Metrics::inc(&m.step_ups_failed);
        }
    }

    /// The page for a redemption flow at `state`, from what the flow holds
    /// (a completed flow's page is built with its user:
    /// [`redeemed_page`](Self::redeemed_page)).
    fn redemption_page(&self, state: &FlowState) -> Result<RedemptionStep, Error> {
        let cfg = &self.inner.config;
        Ok(match state {
            FlowState::AwaitingPasscode { email, delivered, .. } => {
                let sent_to = email.to_string();
                if *delivered {
                    RedemptionStep::EnterPasscode { sent_to }
                } else {
                    RedemptionStep::PasscodeNotDelivered {
                        sent_to,
                        reason: MailError::Transport {
                            message: "the passcode mail was not accepted".to_owned(),
                        },
                    }
                }
            }
            FlowState::Consent { .. } => RedemptionStep::Consent {
                organization: cfg.tenant_name.clone(),
                privacy_statement_url: cfg.privacy_statement_url.as_ref().map(|u| u.to_string()),
                permissions: CONSENT_PERMISSIONS.to_vec(),
            },
            FlowState::TermsOfUse {
                agreement_id,
                version,
                display_name,
                url,
                ..
            } => RedemptionStep::TermsOfUse {
                terms: TermsOfUse::new(agreement_id.clone(), display_name.clone(), url, *version)
                    .map_err(|e| Internal::Corrupt(format!("stored terms of use: {e}")))?,
            },
            FlowState::AwaitingFederation { pending } => RedemptionStep::AwaitingSignIn {
                provider: pending.provider_id.clone(),
            },
            FlowState::AccessTerms {
                agreement_id,
                version,
                display_name,
                url,
                ..
            } => RedemptionStep::TermsOfUse {
                terms: TermsOfUse::new(agreement_id.clone(), display_name.clone(), url, *version)
                    .map_err(|e| Internal::Corrupt(format!("stored terms of use: {e}")))?,
            },
            FlowState::StepUp { gate, stage } => RedemptionStep::StepUp(access::step_up_page(
                &cfg.keys,
                cfg.step_up,
                gate,
                stage,
                &cfg.tenant_name,
            )?),
            FlowState::Blocked { message } => RedemptionStep::Blocked {
                message: message.clone(),
            },
            FlowState::Completed { .. } => {
                return Err(Internal::Corrupt(
                    "a completed redemption's page was asked for without its user".to_owned(),
                )
                .into());
            }
            FlowState::Declined => RedemptionStep::Declined,
            other => {
                return Err(Internal::Corrupt(format!(
                    "redemption flow at the sign-up step `{}`",
                    other.name()
                ))
                .into());
            }
        })
    }

    /// What the redemption order chooses for `user`, invited at `to`: an
    /// identity the guest already holds from a registered provider, else
    /// the authority for the address's domain, else the fallback.
    fn redemption_choice(&self, user: &UserRecord, to: &EmailAddress) -> Choice {
        let existing = user
            .user
            .identities
            .iter()
            .find(|i| i.issuer != crate::directory::EMAIL_OTP_ISSUER)
            .map(|i| i.issuer.as_str());
        let candidates: Vec<Candidate> = self.inner.providers.iter().map(|p| p.candidate.clone()).collect();
        self.inner
            .redemption_order
            .choose(&candidates, to.domain(), existing)
            .choice
    }

    /// The URI the federated provider `provider_id` sends the browser back
    /// to: the public base URL joined with [`FEDERATION_CALLBACK_PATH`], `/`
    /// and the provider's id. Register it with that provider exactly as
    /// returned. Each provider has its own, so a callback that arrives on
    /// another provider's path is refused (a mix-up defence that does not
    /// depend on the provider sending `iss`).
    ///
    /// # Errors
    ///
    /// [`FlowError::ProviderNotOffered`](machine::FlowError::ProviderNotOffered)
    /// for a provider that is not registered.
    pub fn federation_redirect_uri(&self, provider_id: &str) -> Result<url::Url, Error> {
        let p = self.registered(provider_id)?;
        self.inner
            .config
            .public_base_url
            .join(&format!("{FEDERATION_CALLBACK_PATH}/{}", p.provider.id()))
            .map_err(|e| {
                ConfigError::Invalid {
                    field: "public_base_url",
                    reason: e.to_string(),
                }
                .into()
            })
    }

    /// The registered provider with this id.
    fn registered(&self, id: &str) -> Result<&RegisteredProvider, Error> {
        self.inner
            .providers
            .iter()
            .find(|p| p.provider.id() == id)
            .ok_or_else(|| {
                machine::FlowError::ProviderNotOffered {
                    provider: crate::flow::connector::quote(id),
                }
                .into()
            })
    }

    /// The HTTP client and the binding key a provider call takes.
    fn idp_context(&self) -> Result<(Arc<dyn HttpClient>, crate::idp::BindingKey), Error> {
        let http = self.inner.http.clone().ok_or_else(|| ConfigError::Invalid {
            field: "http_client",
            reason: "federated identity providers need an http client".to_owned(),
        })?;
        Ok((http, self.inner.config.keys.binding_key()))
    }

    /// Begins a sign-in with the registered provider `id`.
    pub(crate) async fn start_federation(&self, id: &str) -> Result<AuthorizationStart, Error> {
        let p = self.registered(id)?;
        let (http, key) = self.idp_context()?;
        let ctx = IdpContext {
            http: http.as_ref(),
            rng: self.inner.rng.as_ref(),
            now: self.now(),
            binding_key: &key,
        };
        let redirect = self.federation_redirect_uri(id)?;
        Ok(p.provider.start(&ctx, redirect.as_str()).await?)
    }

    /// Completes the sign-in `pending` from the callback's raw `query`,
    /// which arrived on the path of `provider_id`:
    /// the verified identity, and whether its provider proves the address
    /// it asserts ([`Candidate::proves_email`]).
    pub(crate) async fn finish_federation(
        &self,
        pending: &PendingAuthorization,
        provider_id: &str,
        query: &str,
    ) -> Result<(ExternalIdentity, bool), Error> {
        // The callback must arrive on the path of the provider the flow
        // went to.
        if provider_id != pending.provider_id {
            return Err(machine::FlowError::FederationMismatch.into());
        }
        let callback = Callback::parse(query)?;
        let p = self.registered(&pending.provider_id)?;
        let (http, key) = self.idp_context()?;
        let ctx = IdpContext {
            http: http.as_ref(),
            rng: self.inner.rng.as_ref(),
            now: self.now(),
            binding_key: &key,
        };
        let mut identity = p.provider.finish(&ctx, pending, &callback).await?;
        // Only a provider registered as an Entra organisation speaks for a
        // home organisation (cross-organisation access and its trusted
        // MFA claim); any other provider's `tid` names nobody.
        if !matches!(p.candidate.kind, CandidateKind::Organization { .. }) {
            identity.home_tenant_id = None;
        }
        let proven = p.candidate.proves_email(&identity);
        Ok((identity, proven))
    }

    /// Completes the federated sign-in of a redemption: the browser came
    /// back from the provider to its redirect URI
    /// ([`federation_redirect_uri`](Self::federation_redirect_uri); the host
    /// passes the provider id of that path) with `query` (the raw query
    /// string). The
    /// provider checks the callback (its `state` binds it to this flow),
    /// redeems the code and validates the tokens; the identity must assert
    /// the invited address, verified (or come from the configured authority
    /// for its domain). Then the guest consents, as after a passcode. A
    /// refused callback links nothing and changes nothing.
    ///
    /// # Errors
    ///
    /// [`Error::Redemption`] for an unknown, expired or other-step flow,
    /// [`Error::Ticket`] when the invitation is no longer redeemable,
    /// [`Error::Idp`] for a callback or token the provider refused,
    /// [`FlowError::WrongAccount`](machine::FlowError::WrongAccount) (naming
    /// the invited address) or
    /// [`FlowError::EmailNotVerified`](machine::FlowError::EmailNotVerified)
    /// for an identity that may not redeem, [`Error::Store`] on a
    /// concurrent change.
    #[tracing::instrument(
        skip_all,
        fields(step = "federation_callback", provider = Empty, flow_id = Empty, outcome = Empty)
    )]
    pub async fn redemption_callback(
        &self,
        handle: &str,
        provider_id: &str,
        query: &str,
    ) -> Result<RedemptionStep, Error> {
        record_provider(provider_id);
        let result = Box::pin(self.redemption_callback_step(handle, provider_id, query)).await;
        self.observed(result, redemption_outcome)
    }

    /// [`redemption_callback`](Self::redemption_callback) without its span.
    async fn redemption_callback_step(
        &self,
        handle: &str,
        provider_id: &str,
        query: &str,
    ) -> Result<RedemptionStep, Error> {
        let LiveRedemption { flow, redeemable } = self
            .live_redemption(handle, "federation", |s| {
                matches!(s, FlowState::AwaitingFederation { .. })
            })
            .await?;
        let FlowState::AwaitingFederation { pending } = &flow.value.state else {
            return Err(RedemptionError::WrongStep {
                expected: "federation",
                actual: flow.value.state.name(),
            }
            .into());
        };
        let (identity, email_proven) = self.finish_federation(pending, provider_id, query).await?;
        let invited = redeemable.user.value.user.mail.clone();
        let key = invited
            .as_ref()
            .map(|m| m.comparison_key().to_owned())
            .unwrap_or_default();
        let stepped = self
            .step_redemption(
                &redeemable,
                flow.value,
                Expect::Version(flow.version),
                Some(&key),
                |throttle| FlowInput::FederationFinished {
                    identity: Box::new(identity),
                    invited,
                    email_proven,
                    stored_spelling: None,
                    throttle,
                },
            )
            .await?;
        Ok(stepped.page)
    }

    /// The invitation's redirect URL, if it is still registered.
    fn registered_redirect(&self, inv: &InvitationRecord) -> Result<url::Url, Error> {
        self.registered_url(&inv.invitation.invite_redirect_url)
    }

    /// `redirect`, if it is one of the registered redirect URLs (exactly).
    fn registered_url(&self, redirect: &str) -> Result<url::Url, Error> {
        if !self.inner.config.redirect_urls.iter().any(|u| u == redirect) {
            return Err(InputError::RedirectNotRegistered {
                url: redirect.to_owned(),
            }
            .into());
        }
        url::Url::parse(redirect).map_err(|e| {
            InputError::Invalid {
                field: "inviteRedirectUrl",
                reason: e.to_string(),
            }
            .into()
        })
    }

    /// Where a redemption flow is, for a page (re)load: the step to show,
    /// from what the flow holds. Changes nothing. A finished redemption
    /// (redeemed, declined or blocked) shows its end until it is purged. A
    /// redeemed flow shows [`RedemptionStep::Redeemed`] as the step that
    /// completed it did, with the user as stored now and the invitation's
    /// redirect URL, checked against the registered ones again.
    ///
    /// # Errors
    ///
    /// [`Error::Redemption`] for an unknown (or purged) flow and for an
    /// expired unfinished one, [`Error::Ticket`] when the invitation of an
    /// unfinished flow was revoked, replaced or redeemed meanwhile; for a
    /// redeemed flow, [`Error::NotFound`] when its user was deleted since
    /// and [`Error::Input`] when its redirect URL is no longer registered.
    #[tracing::instrument(skip_all, fields(step = "view", flow_id = Empty, outcome = Empty))]
    pub async fn redemption_step(&self, handle: &str) -> Result<RedemptionStep, Error> {
        let result = Box::pin(self.redemption_step_view(handle)).await;
        self.observed(result, redemption_outcome)
    }

    /// [`redemption_step`](Self::redemption_step) without its span.
    async fn redemption_step_view(&self, handle: &str) -> Result<RedemptionStep, Error> {
        let (flow, records) = self.read_redemption(handle).await?;
        if let FlowState::Completed { user_id, .. } = &flow.value.state {
            return self.redeemed_page(&flow.value, records, *user_id).await;
        }
        if flow.value.state.is_final() {
            return self.redemption_page(&flow.value.state);
        }
        let live = self.check_live(flow, records, "a live step", |_| true)?;
        self.redemption_page(&live.flow.value.state)
    }

    /// The page of a redeemed `flow` on reload: its user (`user_id`, as
    /// `records` hold it or as stored now) and its redirect URL, if still
    /// registered.
    async fn redeemed_page(
        &self,
        flow: &FlowRecord,
        records: RedemptionRecords,
        user_id: Id,
    ) -> Result<RedemptionStep, Error> {
        let user = match records.user.filter(|u| u.value.user.id == user_id) {
            Some(u) => Some(u),
            None => self.inner.store.user(self.tenant(), user_id).await?,
        };
        let user = user
            .filter(|u| u.value.user.id == user_id)
            .ok_or(Error::NotFound { what: "user" })?;
        let redirect_url = self.registered_url(&flow.redirect_uri)?;
        Ok(RedemptionStep::Redeemed(Box::new(Redeemed {
            user: user.value.user,
            redirect_url,
        })))
    }

    /// Mails a new passcode for a redemption waiting for one; the earlier
    /// code stops working. Rate limited per address.
    ///
    /// # Errors
    ///
    /// [`Error::Redemption`] for an unknown, expired or advanced flow,
    /// [`Error::Ticket`] when the invitation was revoked, replaced or
    /// redeemed meanwhile, [`Error::Passcode`] when rate limited or locked.
    #[tracing::instrument(skip_all, fields(step = "resend_passcode", flow_id = Empty, outcome = Empty))]
    pub async fn resend_passcode(&self, handle: &str) -> Result<RedemptionStep, Error> {
        let result = Box::pin(self.resend_passcode_step(handle)).await;
        self.observed(result, redemption_outcome)
    }

    /// [`resend_passcode`](Self::resend_passcode) without its span.
    async fn resend_passcode_step(&self, handle: &str) -> Result<RedemptionStep, Error> {
        let LiveRedemption { flow, redeemable } = self
            .live_redemption(handle, "passcode", |s| {
                matches!(s, FlowState::AwaitingPasscode { .. })
            })
            .await?;
        let key = passcode_key(&flow.value.state);
        let stepped = self
            .step_redemption(
                &redeemable,
                flow.value,
                Expect::Version(flow.version),
                Some(&key),
                |throttle| FlowInput::ResendPasscode {
                    stored_spelling: None,
                    throttle,
                },
            )
            .await?;
        Ok(stepped.page)
    }

    /// Checks the passcode the guest typed. On success the flow moves to
    /// consent. Every wrong try is counted, per code and per address, with a
    /// conditional write: concurrent guesses cannot share an attempt.
    ///
    /// # Errors
    ///
    /// [`Error::Passcode`] naming why the code was refused,
    /// [`Error::Redemption`] for an unknown, expired or advanced flow,
    /// [`Error::Ticket`] when the invitation was revoked, replaced or
    /// redeemed meanwhile, [`Error::Store`] on a concurrent attempt (try
    /// again).
    #[tracing::instrument(skip_all, fields(step = "passcode", flow_id = Empty, outcome = Empty))]
    pub async fn submit_passcode(&self, handle: &str, code: &str) -> Result<RedemptionStep, Error> {
        let result = Box::pin(self.submit_passcode_step(handle, code)).await;
        self.observed(result, redemption_outcome)
    }

    /// [`submit_passcode`](Self::submit_passcode) without its span.
    async fn submit_passcode_step(&self, handle: &str, code: &str) -> Result<RedemptionStep, Error> {
        let LiveRedemption { flow, redeemable } = self
            .live_redemption(handle, "passcode", |s| {
                matches!(s, FlowState::AwaitingPasscode { .. })
            })
            .await?;
        let key = passcode_key(&flow.value.state);
        let code = SecretString::new(code.to_owned());
        let stepped = self
            .step_redemption(
                &redeemable,
                flow.value,
                Expect::Version(flow.version),
                Some(&key),
                |throttle| FlowInput::SubmitPasscode { code, throttle },
            )
            .await?;
        Ok(stepped.page)
    }

    /// Answers the consent page.
    ///
    /// `Accept` completes the redemption exactly once when the tenant has no
    /// terms of use: the user becomes `Accepted` with the email identity it
    /// proved, the invitation `Completed`, the flow closed — one conditional
    /// write, so of any number of concurrent finishes in any number of
    /// processes, one succeeds. With terms of use it moves to them
    /// ([`Finished::TermsOfUse`]; then
    /// [`answer_terms_of_use`](Self::answer_terms_of_use)). `Decline` closes
    /// the flow and leaves the invitation pending.
    ///
    /// # Errors
    ///
    /// [`Error::Redemption`] for an unknown, expired or not-yet-consenting
    /// flow, [`Error::Ticket`] when the invitation was revoked, replaced
    /// or redeemed meanwhile, [`Error::Input`] when the redirect URL is no
    /// longer registered, [`Error::Store`] when another finish won.
    #[tracing::instrument(
        skip_all,
        fields(step = "consent", accept = decision == ConsentDecision::Accept, flow_id = Empty, outcome = Empty)
    )]
    pub async fn finish_redemption(
        &self,
        handle: &str,
        decision: ConsentDecision,
    ) -> Result<Finished, Error> {
        let accept = decision == ConsentDecision::Accept;
        let result = Box::pin(self.answer(
            handle,
            "consent",
            |s| matches!(s, FlowState::Consent { .. }),
            move |_| FlowInput::Consent { accept },
        ))
        .await;
        self.observed(result, finished_outcome)
    }

    /// Answers the terms-of-use page that follows consent when the tenant
    /// has terms ([`GuestPassBuilder::terms_of_use`]). `Accept` completes the
    /// redemption exactly once, recording the acceptance (terms id, the
    /// version shown, time) on the user; `Decline` closes the flow and
    /// leaves the invitation pending.
    ///
    /// # Errors
    ///
    /// As [`finish_redemption`](Self::finish_redemption), with
    /// [`Error::Redemption`] when the flow is not at the terms of use.
    #[tracing::instrument(
        skip_all,
        fields(step = "terms", accept = decision == ConsentDecision::Accept, flow_id = Empty, outcome = Empty)
    )]
    pub async fn answer_terms_of_use(
        &self,
        handle: &str,
        decision: ConsentDecision,
    ) -> Result<Finished, Error> {
        let accept = decision == ConsentDecision::Accept;
        let result = Box::pin(self.answer(
            handle,
            "termsOfUse",
            |s| matches!(s, FlowState::TermsOfUse { .. } | FlowState::AccessTerms { .. }),
            move |_| FlowInput::AnswerTerms { accept },
        ))
        .await;
        self.observed(result, finished_outcome)
    }

    /// Picks the multi-factor step-up method for a redemption that
    /// conditional access asked to step up ([`RedemptionStep::StepUp`]):
    /// an emailed code goes to the invited address now; an authenticator
    /// app is enrolled (its secret shown) or, when the guest has one,
    /// challenged.
    ///
    /// ```
    /// # tokio_test();
    /// # fn tokio_test() {
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// use std::sync::Arc;
    /// use guestpass::{ConsentDecision, Finished, GuestPass, InvitationRequest, Inviter, RedemptionStep};
    /// use guestpass::directory::MemoryStore;
    /// use guestpass::flow::access::{StepUpMethod, StepUpPage};
    /// use guestpass::idp::totp::{TotpSecret, step_at};
    /// use guestpass::keys::SigningKey;
    /// use guestpass::mail::Outbox;
    /// use guestpass::policy::PolicySet;
    ///
    /// let mfa_for_guests = PolicySet::from_json(r#"{"policies": [{
    ///   "displayName": "Require MFA for guests", "state": "enabled",
    ///   "conditions": {"users": {"includeUsers": ["GuestsOrExternalUsers"]},
    ///                  "applications": {"includeApplications": ["All"]}, "clientAppTypes": ["all"]},
    ///   "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}}]}"#)?;
    /// let outbox = Arc::new(Outbox::new());
    /// let gp = GuestPass::builder()
    ///     .tenant("contoso", "Contoso", "contoso.example")
    ///     .public_base_url("https://guests.contoso.example/")
    ///     .signing_key(SigningKey::new("k1", [42u8; 32])?)
    ///     .redirect_url("https://app.contoso.example/")
    ///     .conditional_access(mfa_for_guests)
    ///     .store(Arc::new(MemoryStore::new()))
    ///     .mail(outbox.clone())
    ///     .build()?;
    /// let invited = gp
    ///     .invite(&Inviter::admin(None), InvitationRequest::new("alice@fabrikam.example", "https://app.contoso.example/"))
    ///     .await?;
    /// let link = invited.invite_redeem_url.unwrap();
    /// let ticket = link.expose().split("ticket=").nth(1).unwrap();
    /// let started = gp.start_redemption(ticket).await?;
    /// let handle = started.handle.expose();
    /// let code = outbox.last_to("alice@fabrikam.example").unwrap().code(8).unwrap().to_owned();
    /// gp.submit_passcode(handle, &code).await?;
    ///
    /// // Alice signed in with a passcode to her mailbox: she steps up with an
    /// // authenticator app, enrolled now.
    /// let Finished::StepUp(StepUpPage::Choose { methods, .. }) =
    ///     gp.finish_redemption(handle, ConsentDecision::Accept).await?
    /// else { panic!("expected a step-up") };
    /// assert!(methods.authenticator && !methods.email_otp);
    /// let RedemptionStep::StepUp(StepUpPage::EnrollAuthenticator { otpauth_uri, secret }) =
    ///     gp.choose_step_up(handle, StepUpMethod::Authenticator).await?
    /// else { panic!("expected an enrolment") };
    /// assert!(otpauth_uri.expose().starts_with("otpauth://totp/Contoso:alice%40fabrikam.example?"));
    ///
    /// // Her app shows the code of the current 30-second step.
    /// let app = TotpSecret::from_base32(secret.expose())?;
    /// let now = time::OffsetDateTime::now_utc();
    /// let step = gp.submit_step_up_code(handle, &app.code_at_step(step_at(now))).await?;
    /// let RedemptionStep::Redeemed(done) = step else { panic!("expected the redemption") };
    /// assert_eq!(done.redirect_url.as_str(), "https://app.contoso.example/");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Error::Flow`] when the method is not offered for this sign-in,
    /// [`Error::Passcode`] when no code may be sent now, and as
    /// [`submit_passcode`](Self::submit_passcode).
    #[tracing::instrument(
        skip_all,
        fields(step = "step_up_method", method = method.as_str(), flow_id = Empty, outcome = Empty)
    )]
    pub async fn choose_step_up(&self, handle: &str, method: StepUpMethod) -> Result<RedemptionStep, Error> {
        let result = Box::pin(self.choose_step_up_step(handle, method)).await;
        self.observed(result, redemption_outcome)
    }

    /// [`choose_step_up`](Self::choose_step_up) without its span.
    async fn choose_step_up_step(&self, handle: &str, method: StepUpMethod) -> Result<RedemptionStep, Error> {
        let LiveRedemption { flow, redeemable } = self
            .live_redemption(handle, "stepUp", |s| matches!(s, FlowState::StepUp { .. }))
            .await?;
        let key = step_up_key(&flow.value.state);
        let stored_spelling = redeemable.user.value.user.mail.clone();
        let stepped = self
            .step_redemption(
                &redeemable,
                flow.value,
                Expect::Version(flow.version),
                key.as_deref(),
                move |throttle| FlowInput::ChooseStepUp {
                    method,
                    stored_spelling,
                    throttle,
                },
            )
            .await?;
        Ok(stepped.page)
    }

    /// Checks a step-up code (emailed, or from the authenticator app) of a
    /// redemption. When nothing else is missing the redemption completes
    /// (exactly once, as [`finish_redemption`](Self::finish_redemption)):
    /// the page is then [`RedemptionStep::Redeemed`] with the accepted user
    /// and the invitation's registered redirect URL, and
    /// [`redemption_step`](Self::redemption_step) shows it on reload.
    ///
    /// # Errors
    ///
    /// [`Error::Passcode`] for a refused emailed code, [`Error::Totp`] for
    /// a refused authenticator code (wrong, or already used; counted, at
    /// most [`MAX_AUTHENTICATOR_ATTEMPTS`](crate::flow::access::MAX_AUTHENTICATOR_ATTEMPTS)
    /// per flow), and as [`submit_passcode`](Self::submit_passcode).
    #[tracing::instrument(skip_all, fields(step = "step_up_code", flow_id = Empty, outcome = Empty))]
    pub async fn submit_step_up_code(&self, handle: &str, code: &str) -> Result<RedemptionStep, Error> {
        let result = Box::pin(self.submit_step_up_code_step(handle, code)).await;
        self.observed(result, redemption_outcome)
    }

    /// [`submit_step_up_code`](Self::submit_step_up_code) without its span.
    async fn submit_step_up_code_step(&self, handle: &str, code: &str) -> Result<RedemptionStep, Error> {
        let LiveRedemption { flow, redeemable } = self
            .live_redemption(handle, "stepUp", |s| matches!(s, FlowState::StepUp { .. }))
            .await?;
        let key = step_up_key(&flow.value.state);
        let code = SecretString::new(code.to_owned());
        let authenticator = redeemable.user.value.authenticator.clone();
        let stepped = self
            .step_redemption(
                &redeemable,
                flow.value,
                Expect::Version(flow.version),
                key.as_deref(),
                move |throttle| FlowInput::SubmitStepUpCode {
                    code,
                    throttle,
                    authenticator,
                },
            )
            .await?;
        Ok(stepped.page)
    }

    /// Applies a consent or terms answer.
    async fn answer(
        &self,
        handle: &str,
        expected: &'static str,
        at: fn(&FlowState) -> bool,
        input: impl FnOnce(Option<AddressThrottle>) -> FlowInput,
    ) -> Result<Finished, Error> {
        let LiveRedemption { flow, redeemable } = self.live_redemption(handle, expected, at).await?;
        let stepped = self
            .step_redemption(
                &redeemable,
                flow.value,
                Expect::Version(flow.version),
                None,
                input,
            )
            .await?;
        Ok(match (stepped.redeemed, stepped.page) {
            (Some(redeemed), _) => Finished::Redeemed(Box::new(redeemed)),
            (None, RedemptionStep::TermsOfUse { terms }) => Finished::TermsOfUse { terms },
            (None, RedemptionStep::StepUp(page)) => Finished::StepUp(page),
            (None, RedemptionStep::Blocked { message }) => Finished::Blocked { message },
            (None, _) => Finished::Declined,
        })
    }
}

/// The redemption API's own errors for the flow engine's: an expired flow
/// is [`RedemptionError::SessionExpired`], an input the flow's step does not
/// take (also a final step's) [`RedemptionError::WrongStep`]. The service
/// checks both before it steps, so these only surface when the clock moved
/// past the expiry in between.
fn as_redemption_error(e: Error, actual: &'static str) -> Error {
    match e {
        Error::Flow(machine::FlowError::Expired) => RedemptionError::SessionExpired.into(),
        Error::Flow(machine::FlowError::WrongStep { input, .. }) => RedemptionError::WrongStep {
            expected: input,
            actual,
        }
        .into(),
        Error::Flow(machine::FlowError::Finished { state }) => RedemptionError::WrongStep {
            expected: "a live step",
            actual: state,
        }
        .into(),
        other => other,
    }
}

/// The outcome a redemption step's span records for the page it leads to.
fn redemption_outcome(step: &RedemptionStep) -> &'static str {
    match step {
        RedemptionStep::EnterPasscode { .. } => "enter_passcode",
        RedemptionStep::PasscodeNotDelivered { .. } => "passcode_not_delivered",
        RedemptionStep::Consent { .. } => "consent",
        RedemptionStep::TermsOfUse { .. } => "terms_of_use",
        RedemptionStep::SignInWith { .. } => "sign_in_with",
        RedemptionStep::AwaitingSignIn { .. } => "awaiting_sign_in",
        RedemptionStep::StepUp(_) => "step_up",
        RedemptionStep::Blocked { .. } => "blocked",
        RedemptionStep::Redeemed(_) => "redeemed",
        RedemptionStep::Declined => "declined",
    }
}

/// The outcome a consent or terms answer's span records.
fn finished_outcome(finished: &Finished) -> &'static str {
    match finished {
        Finished::Redeemed(_) => "redeemed",
        Finished::Declined => "declined",
        Finished::TermsOfUse { .. } => "terms_of_use",
        Finished::StepUp(_) => "step_up",
        Finished::Blocked { .. } => "blocked",
    }
}

/// Records a federated provider's id on the current span, when it is a
/// well-formed provider id (a callback's path may carry anything).
fn record_provider(provider_id: &str) {
    if crate::flow::config::is_provider_id(provider_id) {
        Span::current().record("provider", provider_id);
    }
}

/// The address key of an emailed step-up code for a flow at the step-up.
fn step_up_key(state: &FlowState) -> Option<String> {
    match state {
        FlowState::StepUp { gate, .. } => Some(gate.then.identity().email.comparison_key().to_owned()),
        _ => None,
    }
}

/// The address key of the passcode a flow waits for.
fn passcode_key(state: &FlowState) -> String {
    match state {
        FlowState::AwaitingPasscode { passcode, .. } => passcode.address_key.clone(),
        _ => String::new(),
    }
}

/// An invitation and its user, checked redeemable, with the counters of
/// the user's address as the store read them along (checked before use).
struct Redeemable {
    invitation: Versioned<InvitationRecord>,
    user: Versioned<UserRecord>,
    throttle: Option<Versioned<AddressThrottle>>,
}

/// A redemption flow checked live, and what it redeems.
struct LiveRedemption {
    flow: Versioned<FlowRecord>,
    redeemable: Redeemable,
}

/// What a redemption step ended with.
struct Stepped {
    /// The page to show next.
    page: RedemptionStep,
    /// The completed redemption, when the step completed it.
    redeemed: Option<Redeemed>,
}
