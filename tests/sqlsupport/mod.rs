//! Support shared by the SQL store tests (`tests/sqlite.rs`,
//! `tests/postgres.rs`, `tests/multiprocess.rs`): temporary files and
//! PostgreSQL databases that clean up after themselves, a [`GuestPass`] over
//! any store, and checks every SQL backend must pass beyond the conformance
//! suite.
#![allow(dead_code)]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use guestpass::clock::FixedClock;
use guestpass::directory::{
    CommitHook, DirectoryStore, EMAIL_OTP_ISSUER, Expect, ExternalUserState, FlowRecord, InvitationRecord,
    InvitationStatus, UserRecord, Versioned, Write, WriteBatch,
};
use guestpass::email::EmailAddress;
use guestpass::error::StoreError;
use guestpass::id::Id;
use guestpass::idp::PasscodePolicy;
use guestpass::keys::SigningKey;
use guestpass::mail::{MessageKind, Outbox};
use guestpass::random::SeededRandom;
use guestpass::secret::Digest;
use guestpass::{ConsentDecision, Error, Finished, GuestPass, InvitationRequest, Inviter, RedemptionStep};
use time::OffsetDateTime;
use time::macros::datetime;

/// The tenant of every test service.
pub const TENANT: &str = "contoso";
/// The registered redirect URL.
pub const REDIRECT: &str = "https://app.contoso.example/";
/// The public base URL.
pub const BASE_URL: &str = "https://guests.contoso.example/";
/// Where the fixed clock starts.
pub const T0: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);
/// Passcode digits under the default policy.
pub const DIGITS: usize = 8;
/// The environment variable naming the PostgreSQL server for tests.
pub const PG_URL_VAR: &str = "GUESTPASS_TEST_POSTGRES_URL";

/// A name no other test run uses: pid, time and a counter.
pub fn unique(tag: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{tag}_{}_{:x}_{n}", std::process::id(), nanos & 0xffff_ffff_ffff)
}

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty directory under the system temp dir.
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique(&format!("guestpass_{tag}")));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }

    /// A path inside the directory.
    pub fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------
// PostgreSQL test databases.

#[cfg(feature = "postgres")]
#[allow(unused_imports)]
pub use pg::*;

#[cfg(feature = "postgres")]
mod pg {
    use super::{PG_URL_VAR, unique};

    /// The server URL from [`PG_URL_VAR`]; fails the test when it is unset.
    pub fn admin_url() -> String {
        match std::env::var(PG_URL_VAR) {
            Ok(url) if !url.is_empty() => url,
            _ => panic!(
                "{PG_URL_VAR} is not set: the PostgreSQL tests need a server, e.g. \
                 {PG_URL_VAR}=postgres://postgres@127.0.0.1:5432/postgres"
            ),
        }
    }

    /// `url` with its database replaced by `db`.
    pub fn url_for(url: &str, db: &str) -> String {
        let mut u = url::Url::parse(url).expect("a postgres url");
        u.set_path(&format!("/{db}"));
        u.to_string()
    }

    /// Runs one statement on its own connection.
    pub async fn pg_exec(url: &str, sql: &str) {
        use sqlx::{Connection, Executor};
        let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
        conn.execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
        conn.close().await.unwrap();
    }

    /// A uniquely named database, dropped (with `FORCE`) when this guard goes,
    /// also when the test fails.
    #[derive(Debug)]
    pub struct TestDb {
        /// The database name.
        pub name: String,
        /// Its URL.
        pub url: String,
        admin: String,
    }

    impl TestDb {
        /// Creates the database.
        pub async fn create() -> Self {
            let admin = admin_url();
            let name = unique("guestpass_test");
            pg_exec(&admin, &format!("CREATE DATABASE \"{name}\"")).await;
            Self {
                url: url_for(&admin, &name),
                name,
                admin,
            }
        }

        /// Terminates every connection to this database except the caller's,
        /// and waits until they are gone.
        pub async fn terminate_connections(&self) -> u64 {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
            let killed: i64 = sqlx::query(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                 WHERE datname = $1 AND pid <> pg_backend_pid()) t",
            )
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
            for _ in 0..500 {
                let left: i64 = sqlx::query("SELECT count(*) FROM pg_stat_activity WHERE datname = $1")
                    .bind(&self.name)
                    .fetch_one(&mut conn)
                    .await
                    .unwrap()
                    .get(0);
                if left == 0 {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            conn.close().await.unwrap();
            u64::try_from(killed).unwrap()
        }

        /// How many connections to this database wait in `pg_sleep`.
        pub async fn sleeping_backends(&self) -> i64 {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::PgConnection::connect(&self.admin).await.unwrap();
            let n: i64 = sqlx::query(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND wait_event = 'PgSleep'",
            )
            .bind(&self.name)
            .fetch_one(&mut conn)
            .await
            .unwrap()
            .get(0);
            conn.close().await.unwrap();
            n
        }

        /// [`TestDb::terminate_connections`] from a synchronous context (a
        /// commit hook): on its own thread and runtime.
        pub fn terminate_connections_blocking(&self) -> u64 {
            let admin = self.admin.clone();
            let name = self.name.clone();
            let url = self.url.clone();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                let db = TestDb { name, url, admin };
                let n = rt.block_on(db.terminate_connections());
                std::mem::forget(db); // not ours to drop
                n
            })
            .join()
            .unwrap()
        }
    }

    impl Drop for TestDb {
        fn drop(&mut self) {
            let admin = self.admin.clone();
            let sql = format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name);
            // A fresh runtime on a separate thread: the test's runtime may be
            // gone or unwinding.
            let done = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(pg_exec(&admin, &sql));
            })
            .join();
            if done.is_err() && !std::thread::panicking() {
                panic!("could not drop test database {}", self.name);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A service over any store.

/// Default passcode limits, but sends are not rate limited.
pub fn permissive_policy() -> PasscodePolicy {
    PasscodePolicy {
        min_send_interval: time::Duration::ZERO,
        max_sends_per_window: 1000,
        ..PasscodePolicy::default()
    }
}

/// A [`GuestPass`] for [`TENANT`] with its outbox and clock.
#[derive(Debug, Clone)]
pub struct World {
    /// The service.
    pub gp: GuestPass,
    /// The mail it sent.
    pub outbox: Arc<Outbox>,
    /// Its clock.
    pub clock: Arc<FixedClock>,
}

/// A service over `store`, drawing random bytes from `seed`.
pub fn service(store: Arc<dyn DirectoryStore>, seed: u64) -> World {
    let outbox = Arc::new(Outbox::new());
    let clock = Arc::new(FixedClock::new(T0));
    let gp = GuestPass::builder()
        .tenant(TENANT, "Contoso", "contoso.example")
        .public_base_url(BASE_URL)
        .signing_key(SigningKey::new("key1", [42u8; 32]).unwrap())
        .redirect_url(REDIRECT)
        .passcode_policy(permissive_policy())
        .store(store)
        .mail(outbox.clone())
        .clock(clock.clone())
        .random(Arc::new(SeededRandom::new(seed)))
        .build()
        .unwrap();
    World { gp, outbox, clock }
}

/// An invited guest.
#[derive(Debug, Clone)]
pub struct Invited {
    /// The address.
    pub email: String,
    /// The invitation.
    pub invitation: Id,
    /// The user.
    pub user: Id,
    /// The ticket of the redemption link.
    pub ticket: String,
}

impl World {
    /// Invites `email` as an administrator.
    pub async fn invite(&self, email: &str) -> Invited {
        let inv = self
            .gp
            .invite(&Inviter::admin(None), InvitationRequest::new(email, REDIRECT))
            .await
            .unwrap();
        let url = inv.invite_redeem_url.expect("a redeem url");
        let ticket = url
            .expose()
            .split_once("ticket=")
            .expect("a ticket parameter")
            .1
            .split('&')
            .next()
            .unwrap()
            .to_owned();
        Invited {
            email: email.to_owned(),
            invitation: inv.id,
            user: inv.invited_user.id,
            ticket,
        }
    }

    /// Starts redeeming; returns the handle and the mailed code.
    pub async fn start(&self, guest: &Invited) -> (String, String) {
        let started = self.gp.start_redemption(&guest.ticket).await.unwrap();
        assert!(
            matches!(started.step, RedemptionStep::EnterPasscode { .. }),
            "{:?}",
            started.step
        );
        (started.handle.expose().to_owned(), self.code_for(&guest.email))
    }

    /// The code of the newest passcode mail to `email`.
    pub fn code_for(&self, email: &str) -> String {
        let key = key_of(email);
        let mail = self
            .outbox
            .messages()
            .into_iter()
            .rev()
            .find(|m| m.kind == MessageKind::Passcode && m.to.address.comparison_key() == key)
            .expect("a passcode mail");
        mail.code(DIGITS).expect("a code").to_owned()
    }

    /// Starts redeeming and enters the code: the session is at consent.
    pub async fn to_consent(&self, guest: &Invited) -> String {
        let (handle, code) = self.start(guest).await;
        let step = self.gp.submit_passcode(&handle, &code).await.unwrap();
        assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
        handle
    }

    /// Accepts consent.
    pub async fn accept(&self, handle: &str) -> Result<Finished, Error> {
        self.gp.finish_redemption(handle, ConsentDecision::Accept).await
    }
}

/// The comparison key of an address.
pub fn key_of(email: &str) -> String {
    EmailAddress::parse(email).unwrap().comparison_key().to_owned()
}

/// What one redemption touches, with versions.
#[derive(Debug, Clone, PartialEq)]
pub struct RedemptionState {
    /// The user.
    pub user: Versioned<UserRecord>,
    /// The invitation.
    pub invitation: Versioned<InvitationRecord>,
    /// The redemption flow.
    pub session: Option<Versioned<FlowRecord>>,
    /// Who holds the email identity.
    pub identity_holder: Option<Id>,
    /// Who holds the mail.
    pub mail_holder: Option<Id>,
}

/// Reads the state of `guest`'s redemption through `handle`.
pub async fn redemption_state(store: &dyn DirectoryStore, guest: &Invited, handle: &str) -> RedemptionState {
    let key = key_of(&guest.email);
    RedemptionState {
        user: store.user(TENANT, guest.user).await.unwrap().unwrap(),
        invitation: store.invitation(guest.invitation).await.unwrap().unwrap(),
        session: store
            .flow(TENANT, &Digest::sha256(handle.as_bytes()))
            .await
            .unwrap(),
        identity_holder: store
            .user_by_identity(TENANT, EMAIL_OTP_ISSUER, &key)
            .await
            .unwrap()
            .map(|u| u.value.user.id),
        mail_holder: store
            .user_by_mail(TENANT, &key)
            .await
            .unwrap()
            .map(|u| u.value.user.id),
    }
}

/// Asserts the redemption is still pending, untouched by a failed step.
pub fn assert_pending(s: &RedemptionState) {
    assert_eq!(
        s.user.value.user.external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert!(s.user.value.user.identities.is_empty());
    assert!(s.user.value.active_invitation.is_some());
    assert_eq!(
        s.invitation.value.invitation.status,
        InvitationStatus::PendingAcceptance
    );
    assert!(s.invitation.value.ticket.is_some());
    assert_eq!(s.identity_holder, None, "no identity was written");
    assert_eq!(s.mail_holder, Some(s.user.value.user.id));
}

/// Asserts the redemption completed.
pub fn assert_redeemed(s: &RedemptionState) {
    assert_eq!(
        s.user.value.user.external_user_state,
        Some(ExternalUserState::Accepted)
    );
    assert_eq!(s.invitation.value.invitation.status, InvitationStatus::Completed);
    assert!(s.invitation.value.ticket.is_none());
    assert_eq!(s.identity_holder, Some(s.user.value.user.id));
    assert_eq!(s.mail_holder, Some(s.user.value.user.id));
}

/// Asserts that no two users of [`TENANT`] share a mail key or an identity
/// and that every mail and identity finds its user through the indexes.
pub async fn assert_indexes_exact(store: &dyn DirectoryStore) {
    let users = store.users(TENANT).await.unwrap();
    let mut mails = std::collections::HashSet::new();
    let mut identities = std::collections::HashSet::new();
    for u in &users {
        if let Some(k) = u.mail_key() {
            assert!(mails.insert(k.to_owned()), "two users have mail {k}");
            let holder = store.user_by_mail(TENANT, k).await.unwrap().unwrap();
            assert_eq!(holder.value.user.id, u.user.id);
        }
        for i in &u.user.identities {
            let k = (i.issuer.clone(), i.issuer_assigned_id.clone());
            assert!(identities.insert(k.clone()), "two users have identity {k:?}");
            let holder = store
                .user_by_identity(TENANT, &i.issuer, &i.issuer_assigned_id)
                .await
                .unwrap()
                .unwrap();
            assert_eq!(holder.value.user.id, u.user.id);
        }
    }
}

// ---------------------------------------------------------------------------
// Checks both SQL backends run.

/// A hook that fails the commit at statement `fail_at` (0: never).
pub fn failing_hook(fail_at: Arc<AtomicUsize>) -> CommitHook {
    Arc::new(move |n| {
        if n == fail_at.load(Ordering::SeqCst) {
            Err("injected failure".to_owned())
        } else {
            Ok(())
        }
    })
}

/// A full redemption over the public API: invite, start, passcode,
/// consent; every record reads back, and the indexes find the guest.
pub async fn redemption_flow(store: Arc<dyn DirectoryStore>) {
    let w = service(store.clone(), 11);
    let guest = w.invite("Alice@Fabrikam.example").await;
    let handle = w.to_consent(&guest).await;
    assert_pending(&redemption_state(store.as_ref(), &guest, &handle).await);
    match w.accept(&handle).await.unwrap() {
        Finished::Redeemed(r) => assert_eq!(r.user.id, guest.user),
        other => panic!("accept did not redeem: {other:?}"),
    }
    let s = redemption_state(store.as_ref(), &guest, &handle).await;
    assert_redeemed(&s);
    assert_eq!(s.session.unwrap().value.state.name(), "completed");
    // The ticket redeems nothing more.
    assert!(w.gp.start_redemption(&guest.ticket).await.is_err());
    assert_indexes_exact(store.as_ref()).await;
}

/// A commit that fails after any of its statements leaves nothing behind,
/// and then succeeds. `fail_at` drives the store's hook (see
/// [`failing_hook`]).
pub async fn injected_failures_roll_back(store: Arc<dyn DirectoryStore>, fail_at: Arc<AtomicUsize>) {
    let w = service(store.clone(), 12);
    let guest = w.invite("bob@fabrikam.example").await;
    let handle = w.to_consent(&guest).await;
    let before = redemption_state(store.as_ref(), &guest, &handle).await;
    assert_pending(&before);
    // The completion batch: the user (with its mail key), the release of
    // its identities, invitation, flow, then the identity insert.
    for n in 1..=5 {
        fail_at.store(n, Ordering::SeqCst);
        let r = w.accept(&handle).await;
        match r {
            Err(Error::Store(StoreError::Backend { message })) => {
                assert!(message.contains("fault-injection"), "{message}");
                assert!(message.contains(&format!("statement {n}")), "{message}");
            }
            other => panic!("statement {n}: expected an injected failure, got {other:?}"),
        }
        let after = redemption_state(store.as_ref(), &guest, &handle).await;
        assert_eq!(after, before, "a commit failing after statement {n} left a trace");
    }
    fail_at.store(0, Ordering::SeqCst);
    w.accept(&handle).await.unwrap();
    assert_redeemed(&redemption_state(store.as_ref(), &guest, &handle).await);
}

/// A stored record that does not decode gives a typed error that does not
/// quote the stored JSON. `corrupt` overwrites the `data` of user `id` with
/// a JSON object holding the string `"hunter2"`.
pub async fn corrupt_records_do_not_leak<F, Fut>(store: Arc<dyn DirectoryStore>, corrupt: F)
where
    F: FnOnce(String) -> Fut,
    Fut: Future<Output = ()>,
{
    let w = service(store.clone(), 13);
    let guest = w.invite("carol@fabrikam.example").await;
    corrupt(guest.user.to_string()).await;
    let err = store.user(TENANT, guest.user).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, StoreError::Backend { .. }), "{err:?}");
    assert!(message.contains(&guest.user.to_string()), "{message}");
    assert!(!message.contains("hunter2"), "{message}");
    assert!(!format!("{err:?}").contains("hunter2"));
    let err = store.users(TENANT).await.unwrap_err();
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

/// Versions, tenants and timestamps survive exactly: a record written with
/// sub-microsecond times reads back equal, and expiry columns round so that
/// nothing is purged before it expires.
pub async fn purge_rounds_safely(store: Arc<dyn DirectoryStore>) {
    let w = service(store.clone(), 14);
    let guest = w.invite("dave@fabrikam.example").await;
    let (handle, _) = w.start(&guest).await;
    let hash = Digest::sha256(handle.as_bytes());
    let mut session = store.flow(TENANT, &hash).await.unwrap().unwrap();
    let odd = T0 + time::Duration::nanoseconds(1_500);
    session.value.expires_at = odd;
    store
        .commit(WriteBatch::new().with(Write::Flow {
            record: session.value.clone(),
            expect: Expect::Version(session.version),
        }))
        .await
        .unwrap();
    let got = store.flow(TENANT, &hash).await.unwrap().unwrap();
    assert_eq!(got.value, session.value, "nanoseconds survive");
    assert_eq!(got.version, session.version + 1);
    // 1 µs before the odd expiry rounds: still live.
    let r = store
        .purge_expired(T0 + time::Duration::nanoseconds(1_499), 100)
        .await
        .unwrap();
    assert_eq!(r.flows, 0);
    assert!(store.flow(TENANT, &hash).await.unwrap().is_some());
    // Expiries are kept in microseconds rounded up: a sub-microsecond
    // expiry is purged within a microsecond after it, never before.
    let r = store
        .purge_expired(odd + time::Duration::nanoseconds(500), 100)
        .await
        .unwrap();
    assert_eq!(r.flows, 1, "expired at its rounded expiry");
    assert!(store.flow(TENANT, &hash).await.unwrap().is_none());
}

/// `purge_expired`: oldest expiry first, at most `limit` of each kind,
/// tickets cleared with a version bump, users and throttles untouched.
pub async fn purge_takes_oldest_first(store: Arc<dyn DirectoryStore>) {
    use guestpass::directory::{AddressThrottle, PasscodeRecord, RedemptionBinding, conformance};
    use guestpass::flow::machine::FlowState;
    let minutes = time::Duration::minutes;
    let u = conformance::user(TENANT, 1, "ivan");
    let mut batch = WriteBatch::new().with(Write::User {
        record: u.clone(),
        expect: Expect::Absent,
    });
    let mut hashes = Vec::new();
    for n in 1..=3u8 {
        let mut inv = conformance::invitation(TENANT, n, &u);
        inv.ticket = Some(guestpass::directory::TicketBinding {
            verifier_hash: Digest::sha256(&[n]),
            expires_at: T0 + minutes(i64::from(4 - n)),
        });
        batch.push(Write::Invitation {
            record: inv,
            expect: Expect::Absent,
        });
        // A redemption flow waiting for its passcode, expiring at T0+n min.
        let mut flow = conformance::flow(TENANT, n, FlowState::Invited);
        flow.expires_at = T0 + minutes(i64::from(n));
        flow.redemption = Some(RedemptionBinding {
            invitation_id: Id::from_bytes([n; 16]),
            user_id: u.user.id,
            verifier_hash: Digest::sha256(b"v"),
        });
        flow.state = FlowState::AwaitingPasscode {
            email: EmailAddress::parse("ivan@fabrikam.example").unwrap(),
            passcode: PasscodeRecord {
                id: Id::from_bytes([n + 10; 16]),
                bound_to: flow.handle_hash,
                address_key: "ivan@fabrikam.example".into(),
                code_hash: Digest::sha256(b"c"),
                attempts: 0,
                consumed: false,
                issued_at: T0,
                expires_at: T0 + minutes(i64::from(n)),
            },
            delivered: true,
            federated: None,
        };
        hashes.push(flow.handle_hash);
        batch.push(Write::Flow {
            record: flow,
            expect: Expect::Absent,
        });
    }
    batch.push(Write::Throttle {
        tenant_id: TENANT.into(),
        record: AddressThrottle {
            address_key: "ivan@fabrikam.example".into(),
            consecutive_failures: 2,
            recent_sends: vec![T0],
        },
        expect: Expect::Absent,
    });
    store.commit(batch).await.unwrap();
    let session = |n: u8| {
        let store = store.clone();
        let hash = hashes[usize::from(n) - 1];
        async move { store.flow(TENANT, &hash).await.unwrap() }
    };
    let inv = |n: u8| {
        let store = store.clone();
        let u = u.clone();
        async move {
            let id = conformance::invitation(TENANT, n, &u).invitation.id;
            store.invitation(id).await.unwrap().unwrap()
        }
    };

    // At T0+2m, flows 1 and 2 and tickets 3 and 2 are due.
    let now = T0 + minutes(2);
    let r = store.purge_expired(now, 1).await.unwrap();
    assert_eq!((r.flows, r.tickets), (1, 1));
    assert!(session(1).await.is_none(), "oldest flow first");
    assert!(session(2).await.is_some());
    let third = inv(3).await;
    assert_eq!((third.value.ticket.is_none(), third.version), (true, 2));
    assert!(inv(2).await.value.ticket.is_some(), "oldest ticket first");
    let r = store.purge_expired(now, 10).await.unwrap();
    assert_eq!((r.flows, r.tickets), (1, 1));
    let r = store.purge_expired(now, 10).await.unwrap();
    assert_eq!(r.total(), 0);
    assert!(session(3).await.is_some());
    assert_eq!(inv(1).await.version, 1, "live ticket untouched");
    assert_eq!(
        inv(1).await.value.ticket.map(|t| t.expires_at),
        Some(T0 + minutes(3))
    );
    assert_eq!(store.purge_expired(T0 + minutes(60), 0).await.unwrap().total(), 0);
    let r = store.purge_expired(T0 + minutes(60), 10).await.unwrap();
    assert_eq!((r.flows, r.tickets), (1, 1));
    // Users and throttles stay.
    assert_eq!(store.user(TENANT, u.user.id).await.unwrap().unwrap().version, 1);
    let t = store
        .throttle(TENANT, "ivan@fabrikam.example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((t.version, t.value.consecutive_failures), (1, 2));
}

/// A commit of a flow with a user (the flow's insert, the user's with its
/// mail, the user's identity) that fails after any of its statements
/// leaves neither; so does a flow update failing after its statement. Then
/// both commit. `fail_at` drives the store's hook (see [`failing_hook`]).
pub async fn injected_failures_roll_back_flows(store: Arc<dyn DirectoryStore>, fail_at: Arc<AtomicUsize>) {
    use guestpass::directory::conformance;
    use guestpass::flow::machine::FlowState;
    let flow = conformance::flow(TENANT, 1, FlowState::ChooseProvider);
    let mut user = conformance::user(TENANT, 1, "judy");
    user.user.identities.push(guestpass::directory::ObjectIdentity {
        sign_in_type: guestpass::directory::SignInType::Federated,
        issuer: EMAIL_OTP_ISSUER.into(),
        issuer_assigned_id: key_of("judy@fabrikam.example"),
    });
    let batch = || {
        WriteBatch::new()
            .with(Write::Flow {
                record: flow.clone(),
                expect: Expect::Absent,
            })
            .with(Write::User {
                record: user.clone(),
                expect: Expect::Absent,
            })
    };
    let injected = |r: Result<(), StoreError>, n: usize| match r {
        Err(StoreError::Backend { message }) => {
            assert!(message.contains("fault-injection"), "{message}");
            assert!(message.contains(&format!("statement {n}")), "{message}");
        }
        other => panic!("statement {n}: expected an injected failure, got {other:?}"),
    };
    for n in 1..=3 {
        fail_at.store(n, Ordering::SeqCst);
        injected(store.commit(batch()).await, n);
        assert!(
            store.flow(TENANT, &flow.handle_hash).await.unwrap().is_none(),
            "flow after {n}"
        );
        assert!(store.flow_by_id(TENANT, flow.id).await.unwrap().is_none());
        assert!(
            store.user(TENANT, user.user.id).await.unwrap().is_none(),
            "user after {n}"
        );
        assert!(
            store
                .user_by_identity(TENANT, EMAIL_OTP_ISSUER, &key_of("judy@fabrikam.example"))
                .await
                .unwrap()
                .is_none()
        );
    }
    fail_at.store(0, Ordering::SeqCst);
    store.commit(batch()).await.unwrap();

    let mut next = flow.clone();
    next.state = conformance::awaiting_approval("judy");
    fail_at.store(1, Ordering::SeqCst);
    injected(
        store
            .commit(WriteBatch::new().with(Write::Flow {
                record: next.clone(),
                expect: Expect::Version(1),
            }))
            .await,
        1,
    );
    let got = store.flow(TENANT, &flow.handle_hash).await.unwrap().unwrap();
    assert_eq!(
        (got.value, got.version),
        (flow.clone(), 1),
        "a failed update left a trace"
    );
    assert!(
        store
            .flows_awaiting_approval(TENANT, T0, 10)
            .await
            .unwrap()
            .is_empty()
    );
    fail_at.store(0, Ordering::SeqCst);
    store
        .commit(WriteBatch::new().with(Write::Flow {
            record: next.clone(),
            expect: Expect::Version(1),
        }))
        .await
        .unwrap();
    let queued = store.flows_awaiting_approval(TENANT, T0, 10).await.unwrap();
    assert_eq!(queued.len(), 1);
    assert_eq!((&queued[0].value, queued[0].version), (&next, 2));
}

/// A directory holding copies of the `dialect` migrations (`sqlite` or
/// `postgres`) up to `version`: what an older guestpass shipped.
pub fn migrations_up_to(dialect: &str, version: i64) -> TempDir {
    let dir = TempDir::new("migrations");
    let source = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("migrations")
        .join(dialect);
    for entry in std::fs::read_dir(&source).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        let v: i64 = name.split('_').next().unwrap().parse().unwrap();
        if v <= version {
            std::fs::copy(&path, dir.file(&name)).unwrap();
        }
    }
    dir
}

/// The passcode counters an older schema's database holds before the
/// upgrade, as stored JSON.
pub fn old_throttle() -> guestpass::directory::AddressThrottle {
    guestpass::directory::AddressThrottle {
        address_key: "old@fabrikam.example".into(),
        consecutive_failures: 4,
        recent_sends: vec![T0],
    }
}

/// After an upgrade: what the old schema held reads back, and flows work
/// (round trip, conditional writes, the approval queue, purge).
pub async fn upgraded_store_works(store: Arc<dyn DirectoryStore>) {
    use guestpass::directory::conformance;
    let t = store
        .throttle(TENANT, "old@fabrikam.example")
        .await
        .unwrap()
        .expect("the old record survives the upgrade");
    assert_eq!((t.value, t.version), (old_throttle(), 1));
    conformance::flows_round_trip(store.clone()).await;
    let f = conformance::flow(TENANT, 2, conformance::awaiting_approval("kim"));
    store
        .commit(WriteBatch::new().with(Write::Flow {
            record: f.clone(),
            expect: Expect::Absent,
        }))
        .await
        .unwrap();
    let queued = store.flows_awaiting_approval(TENANT, T0, 10).await.unwrap();
    assert_eq!(queued.iter().map(|q| q.value.id).collect::<Vec<_>>(), [f.id]);
    let purged = store
        .purge_expired(T0 + time::Duration::days(30), 10)
        .await
        .unwrap();
    assert_eq!(purged.flows, 2);
}

/// Everything a redemption wrote reads back the same from a store opened
/// anew on the database, which then finishes the redemption.
pub async fn records_persist_across_reopen<F, Fut>(store: Arc<dyn DirectoryStore>, reopen: F)
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Arc<dyn DirectoryStore>>,
{
    let w = service(store.clone(), 21);
    let guest = w.invite("erin@fabrikam.example").await;
    let handle = w.to_consent(&guest).await;
    let before = redemption_state(store.as_ref(), &guest, &handle).await;
    let users = store.users(TENANT).await.unwrap();
    drop(w);
    drop(store);

    let store = reopen().await;
    assert_eq!(redemption_state(store.as_ref(), &guest, &handle).await, before);
    assert_eq!(store.users(TENANT).await.unwrap(), users);
    service(store.clone(), 22).accept(&handle).await.unwrap();
    assert_redeemed(&redemption_state(store.as_ref(), &guest, &handle).await);
}

/// The tests every SQL backend runs through the checks above. `$fresh` is
/// an `async fn(Option<CommitHook>) -> (guard, Arc<dyn DirectoryStore>)`
/// giving a store over a fresh database (dropped with the guard); `$reopen`
/// an `async fn(&guard) -> Arc<dyn DirectoryStore>` opening that database
/// again.
#[allow(unused_macros)]
macro_rules! shared_store_tests {
    ($fresh:path, $reopen:path) => {
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn records_persist_across_reopen() {
            let (guard, store) = $fresh(None).await;
            sqlsupport::records_persist_across_reopen(store, || $reopen(&guard)).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn redemption_flow_end_to_end() {
            let (_guard, store) = $fresh(None).await;
            sqlsupport::redemption_flow(store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn injected_failures_roll_back() {
            let fail_at = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let hook = sqlsupport::failing_hook(fail_at.clone());
            let (_guard, store) = $fresh(Some(hook)).await;
            sqlsupport::injected_failures_roll_back(store, fail_at).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn injected_failures_roll_back_flows() {
            let fail_at = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
            let hook = sqlsupport::failing_hook(fail_at.clone());
            let (_guard, store) = $fresh(Some(hook)).await;
            sqlsupport::injected_failures_roll_back_flows(store, fail_at).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn purge_rounds_safely() {
            let (_guard, store) = $fresh(None).await;
            sqlsupport::purge_rounds_safely(store).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn purge_takes_oldest_first() {
            let (_guard, store) = $fresh(None).await;
            sqlsupport::purge_takes_oldest_first(store).await;
        }
    };
}
#[allow(unused_imports)]
pub(crate) use shared_store_tests;
