//! Several operating-system processes on one database, for SQLite (one
//! file) and PostgreSQL (one database): racing redemptions have exactly one
//! winner, concurrent first opens all succeed, and a process killed in the
//! middle of a commit leaves all or nothing.
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

use guestpass::directory::{DirectoryStore, EMAIL_OTP_ISSUER, PostgresStore, SessionStep, SqliteStore};
use guestpass::error::StoreError;
use guestpass::secret::Digest;
use guestpass::{Error, Finished, RedemptionStep};
use serde::{Deserialize, Serialize};
use sqlsupport::{Invited, TENANT, TempDir, TestDb, key_of, service};

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
    let w = service(store, 1000 + job.index as u64);
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
                        Ok(Finished::Declined) => panic!("declined"),
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
                .session(&Digest::sha256(handle.as_bytes()))
                .await
                .unwrap()
                .unwrap();
            if s.value.step == SessionStep::Completed {
                n += 1;
            }
        }
        n
    };
    assert_eq!(completed, INVITATIONS, "one completed session per invitation");
    for (_, handle, _) in &passcodes {
        let s = store
            .session(&Digest::sha256(handle.as_bytes()))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(s.value.step, SessionStep::AwaitingConsent);
        let p = store
            .passcode(s.value.passcode_id.unwrap())
            .await
            .unwrap()
            .unwrap();
        assert!(p.value.consumed);
    }
    let users = store.users(TENANT).await.unwrap();
    assert_eq!(users.len(), INVITATIONS + PASSCODE_GUESTS, "no duplicate users");
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
        Finished::Declined => panic!("declined"),
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
}
