//! Shared harness for the integration tests: a [`GuestPass`] for tenant
//! `contoso` with a fixed clock, a seeded random generator, the memory store,
//! the outbox and the memory audit log, plus helpers that walk a guest
//! through redemption and snapshot the store to prove a failed call changed
//! nothing.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use base64::Engine as _;
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use guestpass::audit::{AuditEvent, AuditKind, MemoryAudit};
use guestpass::clock::{Clock, FixedClock};
use guestpass::directory::{
    AddressThrottle, DirectoryStore, FlowRecord, Invitation, InvitationRecord, MemoryStore, ObjectRef,
    PasscodeRecord, UserRecord, Versioned, WriteBatch,
};
use guestpass::email::EmailAddress;
use guestpass::error::StoreError;
use guestpass::flow::machine::FlowState;
use guestpass::id::Id;
use guestpass::idp::PasscodePolicy;
use guestpass::invitation::{Redeemed, RedemptionStarted};
use guestpass::keys::{KeyRing, SigningKey};
use guestpass::mail::{Message, MessageKind, Outbox};
use guestpass::random::SeededRandom;
use guestpass::secret::Digest;
use guestpass::{
    ConsentDecision, Error, Finished, GuestPass, GuestPassBuilder, InvitationRequest, Inviter, RedemptionStep,
};
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

/// The tenant every harness serves.
pub const TENANT: &str = "contoso";
/// The organisation name shown to guests.
pub const TENANT_NAME: &str = "Contoso";
/// The tenant's initial domain (used in guest UPNs).
pub const TENANT_DOMAIN: &str = "contoso.example";
/// A second tenant that may share the store.
pub const OTHER_TENANT: &str = "fabrikam";
/// The public base URL links are built from.
pub const BASE_URL: &str = "https://guests.contoso.example/";
/// The registered redirect URL.
pub const REDIRECT: &str = "https://app.contoso.example/";
/// The signing key id. Four bytes make the raw ticket 95 bytes long, so its
/// padded base64 form differs from the unpadded one.
pub const KEY_ID: &str = "key1";
/// The signing key secret.
pub const KEY_SECRET: [u8; 32] = [42; 32];
/// Where the fixed clock starts.
pub const T0: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);
/// Passcode digits under the default policy.
pub const DIGITS: usize = 8;
/// The random seed of the default harness.
pub const SEED: u64 = 7;

/// The harness signing key.
pub fn signing_key() -> SigningKey {
    SigningKey::new(KEY_ID, KEY_SECRET).unwrap()
}

/// A key ring holding the harness key, for forging validly signed tickets.
pub fn key_ring() -> KeyRing {
    KeyRing::new(signing_key()).unwrap()
}

/// Default passcode limits, but sends are not rate limited.
pub fn permissive_policy() -> PasscodePolicy {
    PasscodePolicy {
        min_send_interval: Duration::ZERO,
        max_sends_per_window: 1000,
        ..PasscodePolicy::default()
    }
}

/// An invitation of `email` to the registered redirect, with a mail.
pub fn request(email: &str) -> InvitationRequest {
    InvitationRequest::new(email, REDIRECT)
}

/// As [`request`], with the display name `name`.
pub fn named_request(email: &str, name: &str) -> InvitationRequest {
    let mut req = request(email);
    req.invited_user_display_name = Some(name.to_owned());
    req
}

/// A request that resets the redemption of user `user_id`, sent to `email`.
pub fn reset_request(email: &str, user_id: Id) -> InvitationRequest {
    let mut req = request(email);
    req.reset_redemption = true;
    req.invited_user = Some(ObjectRef { id: user_id });
    req
}

/// The comparison key of an address.
pub fn key_of(address: &str) -> String {
    EmailAddress::parse(address).unwrap().comparison_key().to_owned()
}

/// A code of the right shape that is not `code`.
pub fn wrong_code(code: &str) -> String {
    let d = if code.starts_with('0') { '1' } else { '0' };
    std::iter::repeat_n(d, code.len()).collect()
}

/// The `ticket` query parameter of a link, URL-decoded.
pub fn ticket_from_link(link: &str) -> String {
    let (_, query) = link.split_once('?').expect("link has a query");
    let query = query.split('#').next().unwrap_or_default();
    let raw = query
        .split('&')
        .find_map(|pair| pair.strip_prefix("ticket="))
        .expect("link has a ticket parameter");
    percent_decode(raw)
}

/// `application/x-www-form-urlencoded` decoding of one value.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// The base64url alphabet.
pub const URL_ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Base64url that decodes leniently (padding optional, trailing bits
/// allowed): tests decode tickets they tampered with.
const LENIENT_URL: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    base64::engine::GeneralPurposeConfig::new()
        .with_encode_padding(false)
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
);

/// Unpadded base64url.
pub fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Padded base64url.
pub fn b64url_padded(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE.encode(bytes)
}

/// Padded standard base64.
pub fn b64_standard(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Decodes unpadded base64url (lenient about trailing bits; test use only).
pub fn b64url_decode(s: &str) -> Vec<u8> {
    LENIENT_URL.decode(s).expect("base64url text")
}

/// A ticket for `invitation_id` in the harness tenant, signed with `keys`.
pub fn signed_ticket(
    keys: &KeyRing,
    invitation_id: Id,
    expires_at: OffsetDateTime,
    rng: &SeededRandom,
) -> String {
    guestpass::invitation::ticket::issue(keys, TENANT, invitation_id, expires_at, rng)
        .unwrap()
        .token
        .expose()
        .to_owned()
}

/// The invitation a genuine ticket of the harness tenant names, checked at `now`.
pub fn invitation_of(ticket: &str, now: OffsetDateTime) -> Id {
    guestpass::invitation::ticket::verify(&key_ring(), TENANT, ticket, now)
        .unwrap()
        .invitation_id
}

/// The verifier bytes inside a ticket.
pub fn verifier_of(ticket: &str) -> Vec<u8> {
    b64url_decode(ticket)[layout::VERIFIER..layout::EXPIRY].to_vec()
}

/// Byte offsets inside a raw ticket issued under [`KEY_ID`].
pub mod layout {
    /// Format version byte.
    pub const VERSION: usize = 0;
    /// Purpose byte.
    pub const PURPOSE: usize = 1;
    /// Key id length byte.
    pub const KID_LEN: usize = 2;
    /// First key id byte.
    pub const KID: usize = 3;
    /// First invitation id byte.
    pub const INVITATION: usize = KID + super::KEY_ID.len();
    /// First verifier byte.
    pub const VERIFIER: usize = INVITATION + 16;
    /// First expiry byte.
    pub const EXPIRY: usize = VERIFIER + 32;
    /// First tag byte.
    pub const TAG: usize = EXPIRY + 8;
    /// Total length.
    pub const LEN: usize = TAG + 32;
}

/// Every record of the store the harness knows how to reach, with versions,
/// plus how many mails and audit events there are.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// `users()` of each tenant.
    pub users: Vec<(String, Vec<UserRecord>)>,
    /// Each of those users read by id, with its version.
    pub user_versions: Vec<Option<Versioned<UserRecord>>>,
    /// Known invitations.
    pub invitations: Vec<(Id, Option<Versioned<InvitationRecord>>)>,
    /// Known redemption flows (with their inline passcodes), by handle.
    pub flows: Vec<Option<Versioned<FlowRecord>>>,
    /// Throttles of every known address in each tenant.
    pub throttles: Vec<(String, String, Option<Versioned<AddressThrottle>>)>,
    /// Messages in the outbox.
    pub mails: usize,
    /// Audit events recorded.
    pub audit_events: usize,
}

impl Snapshot {
    /// What differs from `other`, one line per changed part.
    pub fn differences(&self, other: &Snapshot) -> Vec<String> {
        fn cmp<T: PartialEq + std::fmt::Debug>(out: &mut Vec<String>, name: &str, a: &T, b: &T) {
            if a != b {
                out.push(format!("{name}:\n  before: {a:?}\n  after:  {b:?}"));
            }
        }
        let mut out = Vec::new();
        cmp(&mut out, "users", &self.users, &other.users);
        cmp(
            &mut out,
            "user versions",
            &self.user_versions,
            &other.user_versions,
        );
        cmp(&mut out, "invitations", &self.invitations, &other.invitations);
        cmp(&mut out, "flows", &self.flows, &other.flows);
        cmp(&mut out, "throttles", &self.throttles, &other.throttles);
        cmp(&mut out, "mails sent", &self.mails, &other.mails);
        cmp(&mut out, "audit events", &self.audit_events, &other.audit_events);
        out
    }
}

#[derive(Debug, Default)]
struct Tracked {
    invitations: Vec<Id>,
    handles: Vec<String>,
    addresses: Vec<String>,
}

/// A GuestPass with inspectable adapters.
#[derive(Debug)]
pub struct Harness {
    /// The service.
    pub gp: GuestPass,
    /// The store behind it.
    pub store: Arc<MemoryStore>,
    /// The mail it sent.
    pub outbox: Arc<Outbox>,
    /// Its audit log.
    pub audit: Arc<MemoryAudit>,
    /// Its clock.
    pub clock: Arc<FixedClock>,
    /// The store in front of `store` in a [`Harness::racy`] harness.
    pub yielding: Option<Arc<YieldingStore>>,
    tracked: Mutex<Tracked>,
}

/// The builder the harness uses, over the given adapters.
pub fn builder_over(
    store: &Arc<MemoryStore>,
    outbox: &Arc<Outbox>,
    audit: &Arc<MemoryAudit>,
    clock: &Arc<FixedClock>,
    seed: u64,
) -> GuestPassBuilder {
    builder_with_store(store.clone(), outbox, audit, clock, seed)
}

/// As [`builder_over`], with any store in front.
pub fn builder_with_store(
    store: Arc<dyn DirectoryStore>,
    outbox: &Arc<Outbox>,
    audit: &Arc<MemoryAudit>,
    clock: &Arc<FixedClock>,
    seed: u64,
) -> GuestPassBuilder {
    builder_without_redirect(store, outbox, audit, clock, seed).redirect_url(REDIRECT)
}

/// As [`builder_with_store`], with no redirect URL registered yet.
pub fn builder_without_redirect(
    store: Arc<dyn DirectoryStore>,
    outbox: &Arc<Outbox>,
    audit: &Arc<MemoryAudit>,
    clock: &Arc<FixedClock>,
    seed: u64,
) -> GuestPassBuilder {
    GuestPass::builder()
        .tenant(TENANT, TENANT_NAME, TENANT_DOMAIN)
        .public_base_url(BASE_URL)
        .signing_key(signing_key())
        .store(store)
        .mail(outbox.clone())
        .audit(audit.clone())
        .clock(clock.clone())
        .random(Arc::new(SeededRandom::new(seed)))
}

impl Harness {
    /// The default harness.
    pub fn new() -> Self {
        Self::with(|b| b)
    }

    /// A harness whose passcode sends are not rate limited.
    pub fn permissive() -> Self {
        Self::with(|b| b.passcode_policy(permissive_policy()))
    }

    /// A harness whose builder is adjusted by `f` before building.
    pub fn with(f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder) -> Self {
        Self::try_with(f).unwrap()
    }

    /// As [`Harness::with`], returning the configuration error.
    pub fn try_with(
        f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder,
    ) -> Result<Self, guestpass::error::ConfigError> {
        Self::build(false, f)
    }

    /// A harness whose service reaches the memory store through
    /// [`YieldingStore`], so that concurrent calls interleave between their
    /// reads and their writes.
    pub fn racy(f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder) -> Self {
        Self::build(true, f).unwrap()
    }

    fn build(
        racy: bool,
        f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder,
    ) -> Result<Self, guestpass::error::ConfigError> {
        let store = Arc::new(MemoryStore::new());
        let outbox = Arc::new(Outbox::new());
        let audit = Arc::new(MemoryAudit::new());
        let clock = Arc::new(FixedClock::new(T0));
        let yielding = racy.then(|| Arc::new(YieldingStore(store.clone(), AtomicUsize::new(0))));
        let front: Arc<dyn DirectoryStore> = match &yielding {
            Some(y) => y.clone(),
            None => store.clone(),
        };
        let gp = f(builder_with_store(front, &outbox, &audit, &clock, SEED)).build()?;
        Ok(Self {
            gp,
            store,
            yielding,
            outbox,
            audit,
            clock,
            tracked: Mutex::new(Tracked::default()),
        })
    }

    /// The harness configuration for a second service sharing this
    /// harness's store, outbox, audit log and clock, drawing random bytes
    /// from `seed`.
    pub fn sibling(&self, seed: u64) -> GuestPassBuilder {
        builder_over(&self.store, &self.outbox, &self.audit, &self.clock, seed)
    }

    /// A service for tenant `fabrikam` with the same signing key, sharing this
    /// harness's store, outbox, audit log and clock.
    pub fn other_tenant(&self) -> GuestPass {
        self.sibling(SEED + 1)
            .tenant(OTHER_TENANT, "Fabrikam", "fabrikam.example")
            .build()
            .unwrap()
    }

    /// The clock's time.
    pub fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    fn tracked(&self) -> std::sync::MutexGuard<'_, Tracked> {
        self.tracked.lock().unwrap()
    }

    /// Remembers an invitation for snapshots.
    pub fn track_invitation(&self, id: Id) {
        let mut t = self.tracked();
        if !t.invitations.contains(&id) {
            t.invitations.push(id);
        }
    }

    /// Remembers a session handle for snapshots.
    pub fn track_handle(&self, handle: &str) {
        let mut t = self.tracked();
        if !t.handles.iter().any(|h| h == handle) {
            t.handles.push(handle.to_owned());
        }
    }

    /// Remembers an address whose throttle snapshots should read.
    pub fn track_address(&self, address: &str) {
        let key = key_of(address);
        let mut t = self.tracked();
        if !t.addresses.contains(&key) {
            t.addresses.push(key);
        }
    }

    /// Invites `email` as an administrator, to the registered redirect, with
    /// a mail.
    pub async fn invite(&self, email: &str) -> guestpass::directory::Invitation {
        self.invite_request(InvitationRequest::new(email, REDIRECT))
            .await
            .unwrap()
    }

    /// Sends `request` as an administrator, tracking what it creates.
    pub async fn invite_request(
        &self,
        request: InvitationRequest,
    ) -> Result<guestpass::directory::Invitation, Error> {
        self.invite_as(&Inviter::admin(None), request).await
    }

    /// Sends `request` as `inviter`, tracking what it creates.
    pub async fn invite_as(
        &self,
        inviter: &Inviter,
        request: InvitationRequest,
    ) -> Result<guestpass::directory::Invitation, Error> {
        if let Ok(a) = EmailAddress::parse(&request.invited_user_email_address) {
            self.track_address(a.as_str());
        }
        let inv = self.gp.invite(inviter, request).await?;
        self.track_invitation(inv.id);
        Ok(inv)
    }

    /// Sends `request` as an administrator without tracking anything, for
    /// calls expected to fail.
    pub async fn invite_untracked(
        &self,
        request: InvitationRequest,
    ) -> Result<guestpass::directory::Invitation, Error> {
        self.gp.invite(&Inviter::admin(None), request).await
    }

    /// Invites `email` and returns the invitation and the ticket from the
    /// mailed link.
    pub async fn invite_with_ticket(&self, email: &str) -> (guestpass::directory::Invitation, String) {
        let inv = self.invite(email).await;
        let ticket = self.ticket_for(email);
        (inv, ticket)
    }

    /// Resends a user's invitation as an administrator; returns the new
    /// invitation and the ticket from its mail.
    pub async fn resend(&self, user_id: Id, email: &str) -> (guestpass::directory::Invitation, String) {
        let inv = self.gp.resend(&Inviter::admin(None), user_id).await.unwrap();
        self.track_invitation(inv.id);
        (inv, self.ticket_for(email))
    }

    /// Resets the redemption of user `user_id` onto `email` as an
    /// administrator; returns the new invitation and the ticket from its
    /// mail.
    pub async fn reset(&self, user_id: Id, email: &str) -> (Invitation, String) {
        let inv = self.invite_request(reset_request(email, user_id)).await.unwrap();
        (inv, self.ticket_for(email))
    }

    /// Every message of `kind` in the outbox, oldest first.
    pub fn mails_of(&self, kind: MessageKind) -> Vec<Message> {
        self.outbox
            .messages()
            .into_iter()
            .filter(|m| m.kind == kind)
            .collect()
    }

    /// The newest message of `kind` to `address` (by comparison key).
    pub fn last_mail(&self, kind: MessageKind, address: &str) -> Message {
        let key = key_of(address);
        self.outbox
            .messages()
            .into_iter()
            .rev()
            .find(|m| m.kind == kind && m.to.address.comparison_key() == key)
            .unwrap_or_else(|| panic!("no {kind:?} mail to {address}"))
    }

    /// The ticket in the newest invitation mail to `address`.
    pub fn ticket_for(&self, address: &str) -> String {
        let mail = self.last_mail(MessageKind::Invitation, address);
        let link = mail
            .link_starting_with(BASE_URL)
            .expect("invitation mail carries a link under the base url");
        ticket_from_link(link)
    }

    /// The code in the newest passcode mail to `address`.
    pub fn code_for(&self, address: &str) -> String {
        let mail = self.last_mail(MessageKind::Passcode, address);
        mail.code(DIGITS)
            .expect("passcode mail carries a code")
            .to_owned()
    }

    /// Starts redeeming `ticket`; tracks and returns the session.
    pub async fn try_start(&self, ticket: &str) -> Result<RedemptionStarted, Error> {
        let started = self.gp.start_redemption(ticket).await?;
        self.track_handle(started.handle.expose());
        Ok(started)
    }

    /// Starts redeeming `ticket`; returns the handle.
    pub async fn start(&self, ticket: &str) -> String {
        self.try_start(ticket).await.unwrap().handle.expose().to_owned()
    }

    /// Resends the passcode of a redemption.
    pub async fn resend_passcode(&self, handle: &str) -> Result<RedemptionStep, Error> {
        self.gp.resend_passcode(handle).await
    }

    /// Invites `email`, starts redeeming the mailed ticket and reads the
    /// mailed code; returns the ticket, the session handle and the code.
    pub async fn invite_and_start(&self, email: &str) -> (String, String, String) {
        let (_, ticket) = self.invite_with_ticket(email).await;
        let handle = self.start(&ticket).await;
        let code = self.code_for(email);
        (ticket, handle, code)
    }

    /// Reads the newest code mailed to `address` and submits `n` wrong codes
    /// of its shape to the session; every one must be refused. Returns the
    /// errors, in order.
    pub async fn submit_wrong_codes(&self, handle: &str, address: &str, n: usize) -> Vec<Error> {
        let wrong = wrong_code(&self.code_for(address));
        let mut errors = Vec::with_capacity(n);
        for _ in 0..n {
            let r = self.gp.submit_passcode(handle, &wrong).await;
            assert!(r.is_err(), "a wrong code was accepted: {r:?}");
            errors.extend(r.err());
        }
        errors
    }

    /// Submits `code` to the session, which must move on to consent.
    pub async fn submit_to_consent(&self, handle: &str, code: &str) {
        let step = self.gp.submit_passcode(handle, code).await.unwrap();
        assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
    }

    /// Starts redeeming `ticket` and enters the mailed code: the session is
    /// at consent. Returns the handle.
    pub async fn to_consent(&self, ticket: &str, address: &str) -> String {
        let handle = self.start(ticket).await;
        let code = self.code_for(address);
        self.submit_to_consent(&handle, &code).await;
        handle
    }

    /// Accepts consent in a session, which must redeem; returns the result.
    pub async fn accept(&self, handle: &str) -> Redeemed {
        match self
            .gp
            .finish_redemption(handle, ConsentDecision::Accept)
            .await
            .unwrap()
        {
            Finished::Redeemed(r) => *r,
            other => panic!("accept did not redeem: {other:?}"),
        }
    }

    /// Redeems `ticket` end to end and returns the result.
    pub async fn redeem(&self, ticket: &str, address: &str) -> Redeemed {
        let handle = self.to_consent(ticket, address).await;
        self.accept(&handle).await
    }

    /// The redemption flow behind a handle.
    pub async fn session(&self, handle: &str) -> Option<Versioned<FlowRecord>> {
        self.store
            .flow(TENANT, &Digest::sha256(handle.as_bytes()))
            .await
            .unwrap()
    }

    /// The step an existing redemption flow is at: `passcode`, `consent`,
    /// `termsOfUse`, `completed` or `declined`.
    pub async fn session_step(&self, handle: &str) -> &'static str {
        self.session(handle)
            .await
            .expect("flow exists")
            .value
            .state
            .name()
    }

    /// The passcode a redemption flow waits for, if it is at the passcode
    /// step (with the flow's version).
    pub async fn session_passcode_opt(&self, handle: &str) -> Option<Versioned<PasscodeRecord>> {
        let f = self.session(handle).await.expect("flow exists");
        match f.value.state {
            FlowState::AwaitingPasscode { passcode, .. } => Some(Versioned {
                value: passcode,
                version: f.version,
            }),
            _ => None,
        }
    }

    /// The passcode a redemption flow waits for (it must be at that step).
    pub async fn session_passcode(&self, handle: &str) -> Versioned<PasscodeRecord> {
        self.session_passcode_opt(handle)
            .await
            .expect("flow is at the passcode step")
    }

    /// The throttle record of an address in the harness tenant.
    pub async fn throttle(&self, address: &str) -> Option<Versioned<AddressThrottle>> {
        self.store.throttle(TENANT, &key_of(address)).await.unwrap()
    }

    /// Consecutive passcode failures of an address that has a throttle
    /// record, in the harness tenant.
    pub async fn consecutive_failures(&self, address: &str) -> u32 {
        self.throttle(address)
            .await
            .expect("the address has a throttle record")
            .value
            .consecutive_failures
    }

    /// An invitation record.
    pub async fn invitation(&self, id: Id) -> Versioned<InvitationRecord> {
        self.store
            .invitation(id)
            .await
            .unwrap()
            .expect("invitation exists")
    }

    /// A user record in the harness tenant.
    pub async fn user(&self, id: Id) -> Versioned<UserRecord> {
        self.store.user(TENANT, id).await.unwrap().expect("user exists")
    }

    /// Every audit event's kind, oldest first.
    pub fn audit_kinds(&self) -> Vec<AuditKind> {
        self.audit.events().into_iter().map(|e| e.kind).collect()
    }

    /// Every audit event.
    pub fn audit_events(&self) -> Vec<AuditEvent> {
        self.audit.events()
    }

    /// How many audit events satisfy `pred`.
    pub fn count_audit(&self, pred: impl Fn(&AuditKind) -> bool) -> usize {
        self.audit_kinds().iter().filter(|k| pred(k)).count()
    }

    /// The mail address of every user in the harness tenant (each must have one).
    pub async fn user_mails(&self) -> Vec<String> {
        self.gp
            .users()
            .await
            .unwrap()
            .iter()
            .map(|u| u.mail.as_ref().unwrap().as_str().to_owned())
            .collect()
    }

    /// Reads everything the harness knows how to reach.
    pub async fn snapshot(&self) -> Snapshot {
        let (inv_ids, handles, mut addresses) = {
            let t = self.tracked();
            (t.invitations.clone(), t.handles.clone(), t.addresses.clone())
        };
        let mut users = Vec::new();
        let mut user_versions = Vec::new();
        let mut inv_ids = inv_ids;
        for tenant in [TENANT, OTHER_TENANT] {
            let list = self.store.users(tenant).await.unwrap();
            for u in &list {
                user_versions.push(self.store.user(tenant, u.user.id).await.unwrap());
                if let Some(i) = u.active_invitation
                    && !inv_ids.contains(&i)
                {
                    inv_ids.push(i);
                }
                if let Some(k) = u.mail_key()
                    && !addresses.iter().any(|a| a == k)
                {
                    addresses.push(k.to_owned());
                }
            }
            users.push((tenant.to_owned(), list));
        }
        let mut invitations = Vec::new();
        for id in inv_ids {
            invitations.push((id, self.store.invitation(id).await.unwrap()));
        }
        let mut flows = Vec::new();
        for h in handles {
            for tenant in [TENANT, OTHER_TENANT] {
                let hash = Digest::sha256(h.as_bytes());
                flows.push(self.store.flow(tenant, &hash).await.unwrap());
            }
        }
        let mut throttles = Vec::new();
        for tenant in [TENANT, OTHER_TENANT] {
            for a in &addresses {
                throttles.push((
                    tenant.to_owned(),
                    a.clone(),
                    self.store.throttle(tenant, a).await.unwrap(),
                ));
            }
        }
        Snapshot {
            users,
            user_versions,
            invitations,
            flows,
            throttles,
            mails: self.outbox.messages().len(),
            audit_events: self.audit.events().len(),
        }
    }

    /// Runs `fut`, asserting that the store, the outbox and the audit log are
    /// exactly as before; returns its output.
    pub async fn unchanged<T>(&self, what: &str, fut: impl Future<Output = T>) -> T {
        let before = self.snapshot().await;
        let out = fut.await;
        let after = self.snapshot().await;
        let changed = before.differences(&after);
        assert!(
            changed.is_empty(),
            "{what}: the store, outbox or audit log changed:\n{}",
            changed.join("\n")
        );
        out
    }

    /// Expects `fut` to fail without changing anything; returns the error.
    pub async fn fails_unchanged<T: std::fmt::Debug>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, Error>>,
    ) -> Error {
        match self.unchanged(what, fut).await {
            Ok(v) => panic!("{what}: expected an error, got {v:?}"),
            Err(e) => e,
        }
    }

    /// Expects `fut` to fail with `want` without changing anything; returns
    /// the error.
    pub async fn fails_unchanged_with<T: std::fmt::Debug>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, Error>>,
        want: Error,
    ) -> Error {
        let e = self.fails_unchanged(what, fut).await;
        assert_eq!(e, want, "{what}");
        e
    }

    /// Presents `ticket` to the redemption page (GET) and to the start of a
    /// redemption (POST); both must fail without changing anything. Returns
    /// the two errors.
    pub async fn view_and_start_fail_unchanged(&self, what: &str, ticket: &str) -> (Error, Error) {
        let view = self.fails_unchanged(what, self.gp.view_redemption(ticket)).await;
        let start = self.fails_unchanged(what, self.gp.start_redemption(ticket)).await;
        (view, start)
    }
}

impl Default for Harness {
    fn default() -> Self {
        Self::new()
    }
}

/// Spawns `n` copies of a task on the runtime and collects their outputs.
pub async fn race<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let fut = f(i);
        let barrier = barrier.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            fut.await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// A store that lets other tasks run before every read and write it
/// forwards to a [`MemoryStore`]: under a multi-threaded runtime, racing
/// calls then really interleave between what they read and what they
/// commit, so only the store's compare-and-set keeps them apart. It also
/// counts the separate reads of address counters the service makes.
#[derive(Debug)]
pub struct YieldingStore(pub Arc<MemoryStore>, pub AtomicUsize);

impl YieldingStore {
    /// How many times [`DirectoryStore::throttle`] was called.
    pub fn throttle_reads(&self) -> usize {
        self.1.load(Ordering::SeqCst)
    }
}

#[async_trait::async_trait]
impl DirectoryStore for YieldingStore {
    async fn user(&self, tenant_id: &str, id: Id) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        tokio::task::yield_now().await;
        self.0.user(tenant_id, id).await
    }

    async fn user_by_mail(
        &self,
        tenant_id: &str,
        mail_key: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        tokio::task::yield_now().await;
        self.0.user_by_mail(tenant_id, mail_key).await
    }

    async fn user_by_identity(
        &self,
        tenant_id: &str,
        issuer: &str,
        subject: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        tokio::task::yield_now().await;
        self.0.user_by_identity(tenant_id, issuer, subject).await
    }

    async fn users(&self, tenant_id: &str) -> Result<Vec<UserRecord>, StoreError> {
        tokio::task::yield_now().await;
        self.0.users(tenant_id).await
    }

    async fn invitation(&self, id: Id) -> Result<Option<Versioned<InvitationRecord>>, StoreError> {
        tokio::task::yield_now().await;
        self.0.invitation(id).await
    }

    async fn throttle(
        &self,
        tenant_id: &str,
        address_key: &str,
    ) -> Result<Option<Versioned<AddressThrottle>>, StoreError> {
        tokio::task::yield_now().await;
        self.1.fetch_add(1, Ordering::SeqCst);
        self.0.throttle(tenant_id, address_key).await
    }

    async fn flow(
        &self,
        tenant_id: &str,
        handle_hash: &Digest,
    ) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        tokio::task::yield_now().await;
        self.0.flow(tenant_id, handle_hash).await
    }

    async fn flow_by_id(&self, tenant_id: &str, id: Id) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        tokio::task::yield_now().await;
        self.0.flow_by_id(tenant_id, id).await
    }

    async fn flows_awaiting_approval(
        &self,
        tenant_id: &str,
        now: time::OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Versioned<FlowRecord>>, StoreError> {
        tokio::task::yield_now().await;
        self.0.flows_awaiting_approval(tenant_id, now, limit).await
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        tokio::task::yield_now().await;
        self.0.commit(batch).await
    }

    async fn purge_expired(
        &self,
        now: time::OffsetDateTime,
        limit: u32,
    ) -> Result<guestpass::directory::PurgeReport, StoreError> {
        tokio::task::yield_now().await;
        self.0.purge_expired(now, limit).await
    }
}

// ---------------------------------------------------------------------------
// Sign-up flows
// ---------------------------------------------------------------------------

/// The client id of the sign-up application.
pub const APP: &str = "woodgrove-groceries";
/// Its registered redirect URI.
pub const APP_REDIRECT: &str = "https://woodgrove.example/signin-oidc";
/// The user flow assigned to it.
pub const USER_FLOW: &str = "woodgrove-signup";
/// The prefix of the custom attributes (`extension_<appId>_`).
pub const EXT: &str = "extension_0f8fad5bd9cb469fa16570867728950e_";

/// Keys for completion tokens, the same in every run.
pub fn token_keys() -> guestpass::flow::token::TokenKeys {
    use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
    TokenKeys::new(TokenSigningKey::generate("tok1", TokenAlgorithm::Es256, &SeededRandom::new(99)).unwrap())
}

/// A sign-up configuration with one application (`APP` at `APP_REDIRECT`)
/// and one flow (`USER_FLOW`) whose remaining fields are `flow_fields`
/// (JSON object members without the braces, such as
/// `"attributes": [...]`).
pub fn signup_json(flow_fields: &str) -> String {
    format!(
        r#"{{
          "applications": [{{"clientId": "{APP}", "displayName": "Woodgrove Groceries",
                             "redirectUris": ["{APP_REDIRECT}", "https://woodgrove.example/other"]}}],
          "userFlows": [{{"id": "{USER_FLOW}", "identityProviders": ["emailOtp"],
                          "applications": ["{APP}"], {flow_fields}}}]
        }}"#
    )
}

/// The parsed [`signup_json`].
pub fn signup_config(flow_fields: &str) -> guestpass::flow::config::SignUpConfig {
    guestpass::flow::config::SignUpConfig::from_json(&signup_json(flow_fields)).unwrap()
}

/// A harness serving `config` with token keys, sends not rate limited,
/// adjusted further by `f`.
pub fn signup_harness(
    config: guestpass::flow::config::SignUpConfig,
    f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder,
) -> Harness {
    Harness::with(|b| {
        f(b.sign_up(config)
            .token_keys(token_keys())
            .passcode_policy(permissive_policy()))
    })
}

/// The request of `APP` completing at `APP_REDIRECT`.
pub fn signup_request() -> guestpass::SignUpRequest {
    guestpass::SignUpRequest::new(APP, APP_REDIRECT)
}

impl Harness {
    /// Starts a sign-up with `request`; tracks the handle. Returns the
    /// handle and the first page.
    pub async fn start_flow(&self, request: guestpass::SignUpRequest) -> (String, guestpass::FlowPage) {
        let started = self.gp.start_sign_up(request).await.unwrap();
        let handle = started.handle.expose().to_owned();
        self.track_handle(&handle);
        (handle, started.page)
    }

    /// Posts `action` on `page` of the flow `handle`.
    pub async fn post(
        &self,
        handle: &str,
        page: &guestpass::FlowPage,
        action: guestpass::FlowAction,
    ) -> Result<guestpass::FlowPage, Error> {
        self.gp
            .advance_flow(handle, page.csrf_token.expose(), action)
            .await
    }

    /// Starts a flow for `email` and submits the address: the flow waits
    /// for the passcode. Returns the handle and the passcode page.
    pub async fn flow_to_passcode(
        &self,
        request: guestpass::SignUpRequest,
        email: &str,
    ) -> (String, guestpass::FlowPage) {
        self.track_address(email);
        let (handle, page) = self.start_flow(request).await;
        let page = self
            .post(
                &handle,
                &page,
                guestpass::FlowAction::ChooseProvider("emailOtp".into()),
            )
            .await
            .unwrap();
        let page = self
            .post(
                &handle,
                &page,
                guestpass::FlowAction::SubmitEmail(email.to_owned()),
            )
            .await
            .unwrap();
        assert!(
            matches!(page.step, guestpass::FlowStep::EnterPasscode { .. }),
            "{:?}",
            page.step
        );
        (handle, page)
    }

    /// As [`Harness::flow_to_passcode`], then enters the mailed code.
    /// Returns the handle and the page after the code.
    pub async fn flow_past_passcode(
        &self,
        request: guestpass::SignUpRequest,
        email: &str,
    ) -> (String, guestpass::FlowPage) {
        let (handle, page) = self.flow_to_passcode(request, email).await;
        let code = self.code_for(email);
        let page = self
            .post(&handle, &page, guestpass::FlowAction::SubmitPasscode(code.into()))
            .await
            .unwrap();
        (handle, page)
    }

    /// The flow record behind a handle, in the harness tenant.
    pub async fn flow(&self, handle: &str) -> Option<Versioned<FlowRecord>> {
        self.store
            .flow(TENANT, &Digest::sha256(handle.as_bytes()))
            .await
            .unwrap()
    }

    /// The flow records of every tracked handle.
    pub async fn flows(&self) -> Vec<Option<Versioned<FlowRecord>>> {
        let handles = self.tracked().handles.clone();
        let mut out = Vec::with_capacity(handles.len());
        for h in handles {
            out.push(self.flow(&h).await);
        }
        out
    }

    /// Runs `fut`, asserting that [`Harness::snapshot`] and every tracked
    /// flow record (with its version) are exactly as before.
    pub async fn flows_unchanged<T>(&self, what: &str, fut: impl Future<Output = T>) -> T {
        let flows = self.flows().await;
        let out = self.unchanged(what, fut).await;
        assert_eq!(flows, self.flows().await, "{what}: a flow record changed");
        out
    }

    /// Expects `fut` to fail with `want` without changing the store, the
    /// outbox, the audit log or any tracked flow.
    pub async fn flow_fails_unchanged<T: std::fmt::Debug>(
        &self,
        what: &str,
        fut: impl Future<Output = Result<T, Error>>,
        want: Error,
    ) {
        match self.flows_unchanged(what, fut).await {
            Ok(v) => panic!("{what}: expected {want:?}, got {v:?}"),
            Err(e) => assert_eq!(e, want, "{what}"),
        }
    }
}
