//! Several operating-system processes on one database, for SQLite (one
//! file) and PostgreSQL (one database): racing redemptions have exactly one
//! winner, concurrent first opens all succeed, and a process killed in the
//! middle of a commit leaves all or nothing; racing submissions of the
//! attribute page of self-service sign-up flows have exactly one winner per
//! flow, and racing flows of one address make one account.
//!
//! The parent re-invokes this test binary (`--exact child_process_entry`)
//! with [`CHILD_ENV`] naming a job file; in a normal run
//! `child_process_entry` finds no job and returns at once. Children print
//! their results as lines starting with `MP `.
//!
//! Needs `GUESTPASS_TEST_POSTGRES_URL` for the PostgreSQL half (see
//! `tests/postgres.rs`).
#![cfg(all(feature = "sqlite", feature = "postgres"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod sqlsupport;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use guestpass::directory::{DirectoryStore, EMAIL_OTP_ISSUER, PostgresStore, SqliteStore};
use guestpass::error::StoreError;
use guestpass::flow::config::SignUpConfig;
use guestpass::flow::machine::FlowError;
use guestpass::flow::machine::FlowState;
use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::random::SeededRandom;
use guestpass::secret::Digest;
use guestpass::{Error, Finished, FlowAction, FlowStep, GuestPass, RedemptionStep, SignUpRequest};
use serde::{Deserialize, Serialize};
use sqlsupport::{Invited, REDIRECT, TENANT, TempDir, TestDb, key_of, service};

/// The environment variable that makes `child_process_entry` a child: the
/// path of its job file.
const CHILD_ENV: &str = "GUESTPASS_MP_CHILD";
/// Processes racing.
const CHILDREN: usize = 4;
/// Invitations whose redemption the children race to complete.
const INVITATIONS: usize = 20;
/// Consenting sessions per such invitation (all hold the same ticket).
const SESSIONS_PER_INVITATION: usize = 3;
/// Guests with sessions waiting for a passcode.
const PASSCODE_GUESTS: usize = 10;
/// Passcode sessions per such guest.
const SESSIONS_PER_PASSCODE_GUEST: usize = 2;
/// Statements of the completion batch: the user (with its mail key), the
/// release of its identities, invitation, session, then the identity insert.
const COMPLETION_STATEMENTS: usize = 5;
/// Sign-up flows, one address each, whose attribute page the children race.
const FLOWS: usize = 20;
/// Addresses with two flows each at the attribute page.
const FLOW_PAIRS: usize = 10;
/// The application of the sign-up flows.
const CLIENT: &str = "contoso-app";
/// The attribute form every child submits.
const FORM: &[u8] = b"givenName=Ada&surname=Lovelace";
/// How long a child waits for the start signal.
const GO_TIMEOUT: Duration = Duration::from_secs(120);

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Location {
    Sqlite(PathBuf),
    Postgres(String),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum Role {
    /// Open the store and report.
    Open,
    /// Race the passcodes and the consents.
    Race {
        /// (passcode number, session handle, code)
        passcodes: Vec<(usize, String, String)>,
        /// (invitation number, session handle)
        consents: Vec<(usize, String)>,
    },
    /// Submit the attribute form of every flow.
    Flows {
        /// (flow number, flow handle, CSRF token of the attribute page)
        flows: Vec<(usize, String, String)>,
    },
    /// Accept consent in `handle` and abort after statement `after` of the
    /// commit.
    Crash { handle: String, after: usize },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    index: usize,
    location: Location,
    /// Where the ready and go files are.
    sync_dir: PathBuf,
    role: Role,
}

/// The child side. Does nothing unless [`CHILD_ENV`] is set.
#[test]
fn child_process_entry() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let job: Job = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(child(job));
}

async fn open(
    location: &Location,
    hook: Option<guestpass::directory::CommitHook>,
) -> Arc<dyn DirectoryStore> {
    match location {
        Location::Sqlite(path) => {
            let s = SqliteStore::open(path).await.unwrap();
            Arc::new(match hook {
                Some(h) => s.with_commit_hook(h),
                None => s,
            })
        }
        Location::Postgres(url) => {
            let s = PostgresStore::connect(url).await.unwrap();
            Arc::new(match hook {
                Some(h) => s.with_commit_hook(h),
                None => s,
            })
        }
    }
}

/// A [`GuestPass`] like [`service`] with a sign-up flow for [`CLIENT`].
/// Every process derives the same signing key (fixed bytes) and the same
/// token key (from a fixed seed), so a CSRF token of one process verifies
/// in all of them; `seed` drives the rest of the randomness.
fn flow_service(store: Arc<dyn DirectoryStore>, seed: u64) -> (GuestPass, Arc<Outbox>) {
    let sign_up = SignUpConfig::from_json(&format!(
        r#"{{"applications": [{{"clientId": "{CLIENT}", "displayName": "Contoso app",
                                "redirectUris": ["{REDIRECT}"]}}],
            "userFlows": [{{"id": "signup", "identityProviders": ["emailOtp"],
                           "applications": ["{CLIENT}"],
                           "attributes": [{{"name": "givenName"}}, {{"name": "surname"}}]}}]}}"#
    ))
    .unwrap();
    let token_key = TokenSigningKey::generate("t1", TokenAlgorithm::Es256, &SeededRandom::new(7)).unwrap();
    let outbox = Arc::new(Outbox::new());
    let gp = GuestPass::builder()
        .tenant(TENANT, "Contoso", "contoso.example")
        .public_base_url(sqlsupport::BASE_URL)
        .signing_key(SigningKey::new("key1", [42u8; 32]).unwrap())
        .redirect_url(REDIRECT)
        .passcode_policy(sqlsupport::permissive_policy())
        .store(store)
        .mail(outbox.clone())
        .clock(Arc::new(guestpass::clock::FixedClock::new(sqlsupport::T0)))
        .random(Arc::new(SeededRandom::new(seed)))
        .sign_up(sign_up)
        .token_keys(TokenKeys::new(token_key))
        .build()
        .unwrap();
    (gp, outbox)
}

/// Takes a new flow for `email` to its attribute page; the handle and the
/// page's CSRF token.
async fn flow_to_attributes(gp: &GuestPass, outbox: &Outbox, email: &str) -> (String, String) {
    let started = gp
        .start_sign_up(SignUpRequest::new(CLIENT, REDIRECT))
        .await
        .unwrap();
    let handle = started.handle.expose().to_owned();
    let page = gp
        .advance_flow(
            &handle,
            started.page.csrf_token.expose(),
            FlowAction::ChooseProvider("emailOtp".into()),
        )
        .await
        .unwrap();
    let page = gp
        .advance_flow(
            &handle,
            page.csrf_token.expose(),
            FlowAction::SubmitEmail(email.to_owned()),
        )
        .await
        .unwrap();
    assert!(
        matches!(page.step, FlowStep::EnterPasscode { .. }),
        "{:?}",
        page.step
    );
    let key = key_of(email);
    let code = outbox
        .messages()
        .into_iter()
        .rev()
        .find(|m| m.to.address.comparison_key() == key)
        .and_then(|m| m.code(sqlsupport::DIGITS).map(str::to_owned))
        .expect("a passcode mail");
    let page = gp
        .advance_flow(
            &handle,
            page.csrf_token.expose(),
            FlowAction::SubmitPasscode(code.into()),
        )
        .await
        .unwrap();
    assert!(
        matches!(page.step, FlowStep::CollectAttributes { .. }),
        "{:?}",
        page.step
    );
    (handle, page.csrf_token.expose().to_owned())
}

async fn child(job: Job) {
    let hook = match &job.role {
        Role::Crash { after, .. } => {
            let after = *after;
            let hook: guestpass::directory::CommitHook = Arc::new(move |n| {
                if n == after {
                    println!("MP abort after statement {n}");
                    std::process::abort();
                }
                Ok(())
            });
            Some(hook)
        }
        _ => None,
    };
    let store = match &job.role {
        // Opening is what is raced: open after the signal.
        Role::Open => None,
        _ => Some(open(&job.location, hook.clone()).await),
    };
    std::fs::write(job.sync_dir.join(format!("ready-{}", job.index)), b"").unwrap();
    let started = Instant::now();
    while !job.sync_dir.join("go").exists() {
        assert!(started.elapsed() < GO_TIMEOUT, "no start signal");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let store = match store {
        Some(s) => s,
        None => open(&job.location, None).await,
    };
    let w = service(store.clone(), 1000 + job.index as u64);
    match job.role {
        Role::Open => println!("MP opened"),
        Role::Race { passcodes, consents } => {
            // Compare-and-set losses retried, and final refusals.
            let (mut conflicts, mut refused) = (0, 0);
            for (n, handle, code) in &passcodes {
                for _ in 0..100 {
                    match w.gp.submit_passcode(handle, code).await {
                        Ok(RedemptionStep::Consent { .. }) => {
                            println!("MP passcode {n}");
                            break;
                        }
                        Ok(other) => panic!("unexpected step {other:?}"),
                        // A concurrent attempt won the compare-and-set: look again.
                        Err(Error::Store(_)) => conflicts += 1,
                        Err(_) => {
                            refused += 1;
                            break;
                        }
                    }
                }
            }
            for (n, handle) in &consents {
                for _ in 0..100 {
                    match w.accept(handle).await {
                        Ok(Finished::Redeemed(_)) => {
                            println!("MP redeemed {n}");
                            break;
                        }
                        Ok(other) => panic!("accept did not redeem: {other:?}"),
                        Err(Error::Store(_)) => conflicts += 1,
                        Err(_) => {
                            refused += 1;
                            break;
                        }
                    }
                }
            }
            println!("MP stats {conflicts} {refused}");
        }
        Role::Flows { flows } => {
            let (gp, _outbox) = flow_service(store, 2000 + job.index as u64);
            let (mut conflicts, mut refused) = (0, 0);
            for (n, handle, csrf) in &flows {
                for _ in 0..100 {
                    match gp
                        .advance_flow(handle, csrf, FlowAction::SubmitAttributes(FORM.to_vec()))
                        .await
                    {
                        Ok(page) => {
                            let FlowStep::Completed(done) = page.step else {
                                panic!("flow {n}: unexpected step {:?}", page.step);
                            };
                            println!("MP flow {n} {} {}", done.user_id, done.signed_in);
                            break;
                        }
                        // A concurrent submission won the compare-and-set:
                        // look again (and find the token stale).
                        Err(Error::Store(_)) => conflicts += 1,
                        Err(Error::Flow(FlowError::Csrf)) => {
                            refused += 1;
                            break;
                        }
                        Err(e) => panic!("flow {n}: unexpected error {e:?}"),
                    }
                }
            }
            println!("MP stats {conflicts} {refused}");
        }
        Role::Crash { handle, .. } => {
            let r = w.accept(&handle).await;
            println!("MP survived {r:?}");
        }
    }
    println!("MP done");
}

/// Starts one child per job, waits until all are ready, starts them
/// together and returns their outputs.
async fn run_children(sync_dir: &Path, jobs: Vec<Job>) -> Vec<Output> {
    let exe = std::env::current_exe().unwrap();
    let mut children = Vec::new();
    for job in &jobs {
        let job_path = sync_dir.join(format!("job-{}.json", job.index));
        std::fs::write(&job_path, serde_json::to_vec(job).unwrap()).unwrap();
        let child = Command::new(&exe)
            .args([
                "--exact",
                "child_process_entry",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(CHILD_ENV, &job_path)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        children.push(child);
    }
    let started = Instant::now();
    while !jobs
        .iter()
        .all(|j| sync_dir.join(format!("ready-{}", j.index)).exists())
    {
        assert!(started.elapsed() < GO_TIMEOUT, "children never got ready");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    std::fs::write(sync_dir.join("go"), b"").unwrap();
    let mut outputs = Vec::new();
    for child in children {
        outputs.push(
            tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
                .await
                .unwrap(),
        );
    }
    outputs
}

fn mp_lines(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        // The harness's `test child_process_entry ... ` precedes the first.
        .filter_map(|l| l.split_once("MP ").map(|(_, rest)| rest.to_owned()))
        .collect()
}

fn describe(output: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every child opens a database nobody has opened yet, at the same moment.
async fn concurrent_first_opens(location: Location) {
    let sync = TempDir::new("mp_open");
    let jobs = (0..CHILDREN)
        .map(|index| Job {
            index,
            location: location.clone(),
            sync_dir: sync.path().to_owned(),
            role: Role::Open,
        })
        .collect();
    for out in run_children(sync.path(), jobs).await {
        assert!(out.status.success(), "{}", describe(&out));
        let lines = mp_lines(&out);
        assert_eq!(lines, ["opened", "done"], "{}", describe(&out));
    }
}

/// The parent prepares consenting sessions (several per invitation) and
/// passcode sessions; the children race them all.
async fn racing_processes(location: Location) {
    let store = open(&location, None).await;
    let w = service(store.clone(), 41);
    let mut guests: Vec<Invited> = Vec::new();
    let mut consents = Vec::new();
    for i in 0..INVITATIONS {
        let g = w.invite(&format!("guest{i}@fabrikam.example")).await;
        for _ in 0..SESSIONS_PER_INVITATION {
            consents.push((i, w.to_consent(&g).await));
        }
        guests.push(g);
    }
    let mut passcode_guests = Vec::new();
    let mut passcodes = Vec::new();
    for j in 0..PASSCODE_GUESTS {
        let g = w.invite(&format!("otp{j}@fabrikam.example")).await;
        for _ in 0..SESSIONS_PER_PASSCODE_GUEST {
            let (handle, code) = w.start(&g).await;
            passcodes.push((passcodes.len(), handle, code));
        }
        passcode_guests.push(g);
    }

    let sync = TempDir::new("mp_race");
    let jobs = (0..CHILDREN)
        .map(|index| Job {
            index,
            location: location.clone(),
            sync_dir: sync.path().to_owned(),
            role: Role::Race {
                passcodes: passcodes.clone(),
                consents: consents.clone(),
            },
        })
        .collect();
    let mut passcode_wins: BTreeMap<usize, usize> = BTreeMap::new();
    let mut redemptions: BTreeMap<usize, usize> = BTreeMap::new();
    let (mut conflicts, mut refused) = (0, 0);
    for out in run_children(sync.path(), jobs).await {
        assert!(out.status.success(), "{}", describe(&out));
        let lines = mp_lines(&out);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("done"),
            "{}",
            describe(&out)
        );
        for l in lines {
            let mut words = l.split(' ');
            match (words.next(), words.next().and_then(|n| n.parse::<usize>().ok())) {
                (Some("passcode"), Some(n)) => *passcode_wins.entry(n).or_default() += 1,
                (Some("redeemed"), Some(n)) => *redemptions.entry(n).or_default() += 1,
                (Some("stats"), Some(n)) => {
                    conflicts += n;
                    refused += words.next().and_then(|n| n.parse::<usize>().ok()).unwrap();
                }
                _ => {}
            }
        }
    }
    // Every attempt of every child ended in a success or a refusal.
    let attempts = CHILDREN * (passcodes.len() + consents.len());
    let wins = passcodes.len() + INVITATIONS;
    assert_eq!(refused, attempts - wins, "every losing attempt was refused");
    eprintln!("{location:?}: {wins} wins, {refused} refusals, {conflicts} compare-and-set losses retried");
    let expected_passcodes: BTreeMap<usize, usize> = (0..passcodes.len()).map(|n| (n, 1)).collect();
    assert_eq!(
        passcode_wins, expected_passcodes,
        "exactly one success per passcode"
    );
    let expected_redemptions: BTreeMap<usize, usize> = (0..INVITATIONS).map(|n| (n, 1)).collect();
    assert_eq!(
        redemptions, expected_redemptions,
        "exactly one redemption per invitation"
    );

    // The directory agrees.
    for g in &guests {
        let user = store.user(TENANT, g.user).await.unwrap().unwrap().value;
        assert_eq!(user.user.identities.len(), 1, "{}", g.email);
        let holder = store
            .user_by_identity(TENANT, EMAIL_OTP_ISSUER, &key_of(&g.email))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(holder.value.user.id, g.user);
        let inv = store.invitation(g.invitation).await.unwrap().unwrap().value;
        assert_eq!(
            inv.invitation.status,
            guestpass::directory::InvitationStatus::Completed
        );
    }
    let completed = {
        let mut n = 0;
        for (_, handle) in &consents {
            let s = store
                .flow(TENANT, &Digest::sha256(handle.as_bytes()))
                .await
                .unwrap()
                .unwrap();
            if matches!(s.value.state, FlowState::Completed { .. }) {
                n += 1;
            }
        }
        n
    };
    assert_eq!(completed, INVITATIONS, "one completed session per invitation");
    for (_, handle, _) in &passcodes {
        let s = store
            .flow(TENANT, &Digest::sha256(handle.as_bytes()))
            .await
            .unwrap()
            .unwrap();
        // The one accepted code moved the flow on to consent.
        assert_eq!(s.value.state.name(), "consent");
    }
    let users = store.users(TENANT).await.unwrap();
    assert_eq!(users.len(), INVITATIONS + PASSCODE_GUESTS, "no duplicate users");
    sqlsupport::assert_indexes_exact(store.as_ref()).await;
}

/// The parent takes sign-up flows to their attribute page: one flow each
/// for [`FLOWS`] addresses, two flows each for [`FLOW_PAIRS`] more. Every
/// child then submits the attribute form of every flow with the page's CSRF
/// token (half the children take a pair's flows in the other order): each
/// flow completes exactly once, and each address ends with one account
/// (the flow losing a pair's create race signs in to it).
async fn racing_flows(location: Location) {
    let store = open(&location, None).await;
    let (gp, outbox) = flow_service(store.clone(), 61);
    // (flow number, address, handle, CSRF token)
    let mut flows: Vec<(usize, String, String, String)> = Vec::new();
    for i in 0..FLOWS {
        let email = format!("signup{i}@fabrikam.example");
        let (handle, csrf) = flow_to_attributes(&gp, &outbox, &email).await;
        flows.push((flows.len(), email, handle, csrf));
    }
    for j in 0..FLOW_PAIRS {
        let email = format!("pair{j}@fabrikam.example");
        for _ in 0..2 {
            let (handle, csrf) = flow_to_attributes(&gp, &outbox, &email).await;
            flows.push((flows.len(), email.clone(), handle, csrf));
        }
    }
    let total = flows.len();
    assert_eq!(total, FLOWS + 2 * FLOW_PAIRS);

    let sync = TempDir::new("mp_flows");
    let jobs = (0..CHILDREN)
        .map(|index| {
            let mut mine: Vec<(usize, String, String)> = flows
                .iter()
                .map(|(n, _, h, c)| (*n, h.clone(), c.clone()))
                .collect();
            if index % 2 == 1 {
                for pair in mine[FLOWS..].chunks_mut(2) {
                    pair.swap(0, 1);
                }
            }
            Job {
                index,
                location: location.clone(),
                sync_dir: sync.path().to_owned(),
                role: Role::Flows { flows: mine },
            }
        })
        .collect();
    // flow number -> (user id, signed in) of each success
    let mut wins: BTreeMap<usize, Vec<(String, bool)>> = BTreeMap::new();
    let (mut conflicts, mut refused) = (0, 0);
    for out in run_children(sync.path(), jobs).await {
        assert!(out.status.success(), "{}", describe(&out));
        let lines = mp_lines(&out);
        assert_eq!(
            lines.last().map(String::as_str),
            Some("done"),
            "{}",
            describe(&out)
        );
        for l in lines {
            let words: Vec<&str> = l.split(' ').collect();
            match words.as_slice() {
                ["flow", n, user, signed_in] => wins
                    .entry(n.parse().unwrap())
                    .or_default()
                    .push(((*user).to_owned(), signed_in.parse().unwrap())),
                ["stats", c, r] => {
                    conflicts += c.parse::<usize>().unwrap();
                    refused += r.parse::<usize>().unwrap();
                }
                _ => {}
            }
        }
    }
    eprintln!(
        "{location:?}: {} flow wins, {refused} refusals, {conflicts} compare-and-set losses retried",
        wins.values().map(Vec::len).sum::<usize>()
    );
    let per_flow: BTreeMap<usize, usize> = wins.iter().map(|(n, w)| (*n, w.len())).collect();
    let expected: BTreeMap<usize, usize> = (0..total).map(|n| (n, 1)).collect();
    assert_eq!(per_flow, expected, "exactly one successful submission per flow");
    assert_eq!(
        refused,
        CHILDREN * total - total,
        "every losing submission was refused"
    );

    // Distinct addresses: each flow created its account.
    for (n, _, _, _) in &flows[..FLOWS] {
        assert!(!wins[n][0].1, "flow {n} signed in instead of signing up");
    }
    // Pairs: one flow created the account, the other signed in to it.
    for pair in flows[FLOWS..].chunks(2) {
        let (a, b) = (&wins[&pair[0].0][0], &wins[&pair[1].0][0]);
        assert_eq!(a.0, b.0, "{}: both flows end at one user", pair[0].1);
        assert!(
            a.1 != b.1,
            "{}: one sign-up and one sign-in, got {a:?} {b:?}",
            pair[0].1
        );
    }

    // Every flow is completed, and its token was handed out once.
    for (n, _, handle, _) in &flows {
        let page = gp.view_flow(handle).await.unwrap();
        assert!(
            matches!(page.step, FlowStep::AlreadyCompleted),
            "flow {n}: {:?}",
            page.step
        );
    }
    // The directory agrees: one user per address, holding its identity.
    let mut addresses: Vec<&str> = flows.iter().map(|(_, e, _, _)| e.as_str()).collect();
    addresses.dedup();
    assert_eq!(addresses.len(), FLOWS + FLOW_PAIRS);
    for (n, email, _, _) in &flows {
        let holder = store
            .user_by_identity(TENANT, EMAIL_OTP_ISSUER, &key_of(email))
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("no user holds {email}"));
        assert_eq!(holder.value.user.id.to_string(), wins[n][0].0, "{email}");
        assert_eq!(holder.value.user.identities.len(), 1, "{email}");
        let by_mail = store.user_by_mail(TENANT, &key_of(email)).await.unwrap().unwrap();
        assert_eq!(by_mail.value.user.id, holder.value.user.id, "{email}");
    }
    let users = store.users(TENANT).await.unwrap();
    assert_eq!(users.len(), FLOWS + FLOW_PAIRS, "no duplicate users");
    let mut identities: Vec<(String, String)> = users
        .iter()
        .flat_map(|u| u.user.identities.iter())
        .map(|i| (i.issuer.clone(), i.issuer_assigned_id.clone()))
        .collect();
    identities.sort();
    let all = identities.len();
    identities.dedup();
    assert_eq!(identities.len(), all, "no duplicate identities");
    assert_eq!(all, FLOWS + FLOW_PAIRS);
    sqlsupport::assert_indexes_exact(store.as_ref()).await;
}

/// A child aborts in the middle of the completion batch (after its second
/// statement, then after its last): the store holds none of it, and a new
/// session for the same ticket completes.
async fn a_process_killed_mid_commit(location: Location) {
    let store = open(&location, None).await;
    let w = service(store.clone(), 51);
    let guest = w.invite("heidi@fabrikam.example").await;
    let handle = w.to_consent(&guest).await;
    let before = sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await;
    sqlsupport::assert_pending(&before);
    for after in [2, COMPLETION_STATEMENTS] {
        let sync = TempDir::new("mp_crash");
        let job = Job {
            index: 0,
            location: location.clone(),
            sync_dir: sync.path().to_owned(),
            role: Role::Crash {
                handle: handle.clone(),
                after,
            },
        };
        let out = run_children(sync.path(), vec![job]).await.remove(0);
        assert!(!out.status.success(), "{}", describe(&out));
        #[cfg(unix)]
        {
            use std::os::unix::process::ExitStatusExt;
            assert_eq!(out.status.signal(), Some(6), "SIGABRT: {}", describe(&out));
        }
        assert_eq!(
            mp_lines(&out),
            [format!("abort after statement {after}")],
            "{}",
            describe(&out)
        );
        let now = sqlsupport::redemption_state(store.as_ref(), &guest, &handle).await;
        assert_eq!(
            now, before,
            "a commit killed after statement {after} left a trace"
        );
    }
    // A new session for the same ticket completes.
    let retry = w.to_consent(&guest).await;
    match w.accept(&retry).await.unwrap() {
        Finished::Redeemed(r) => assert_eq!(r.user.id, guest.user),
        other => panic!("accept did not redeem: {other:?}"),
    }
    sqlsupport::assert_redeemed(&sqlsupport::redemption_state(store.as_ref(), &guest, &retry).await);
    // The interrupted session cannot redeem again.
    let again = w.accept(&handle).await;
    assert!(
        matches!(
            again,
            Err(Error::Ticket(_) | Error::Store(StoreError::Conflict { .. }))
        ),
        "{again:?}"
    );
    sqlsupport::assert_indexes_exact(store.as_ref()).await;
}

/// A test per backend for each scenario, on a fresh database.
macro_rules! on_both_backends {
    ($($scenario:ident => $sqlite:ident, $postgres:ident;)*) => {$(
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            let dir = TempDir::new(stringify!($sqlite));
            $scenario(Location::Sqlite(dir.file("d.db"))).await;
        }

        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            let db = TestDb::create().await;
            $scenario(Location::Postgres(db.url.clone())).await;
        }
    )*};
}

on_both_backends! {
    concurrent_first_opens => sqlite_concurrent_first_opens, postgres_concurrent_first_opens;
    racing_processes => sqlite_racing_processes, postgres_racing_processes;
    a_process_killed_mid_commit => sqlite_process_killed_mid_commit, postgres_process_killed_mid_commit;
    racing_flows => sqlite_racing_flows, postgres_racing_flows;
}
