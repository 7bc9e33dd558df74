//! Load figures for guest redemption on the SQL directory stores.
//!
//! For each backend (SQLite, then PostgreSQL) the example creates a fresh
//! database (a temporary SQLite file; a `guestpass_load_<random>` PostgreSQL
//! database), builds a [`GuestPass`] over it with a permissive passcode
//! policy and a mail transport that only remembers the latest passcode per
//! address, and invites `--tickets` guests without mail (untimed setup).
//! Then `--tasks` tokio tasks on a multi-thread runtime take tickets from a
//! shared queue and each redeems one completely: `start_redemption`, read
//! the code the transport kept, `submit_passcode`, `finish_redemption`
//! (accept). It measures:
//!
//! - **redemptions/s**: completed redemptions divided by the wall time of
//!   the whole phase;
//! - **p50 / p99 latency** of each whole redemption (all four calls) and of
//!   the `finish_redemption` step alone;
//! - **finish steps/s**: `--tasks` divided by the mean finish latency
//!   (Little's law), the rate the finish step alone would reach at that
//!   concurrency under the same mixed load;
//! - **race check**: `--tasks` tasks each try `start_redemption` on 100
//!   random already-redeemed tickets; every attempt must be refused
//!   (`double redemptions: 0`), and every user in the directory must be
//!   `Accepted` with exactly one identity.
//!
//! The PostgreSQL store runs with its default pool
//! ([`POSTGRES_MAX_CONNECTIONS`](guestpass::directory::POSTGRES_MAX_CONNECTIONS),
//! 10 connections) unless `--connections C` sets another size: the tasks
//! queue for connections as a host's request handlers would. On two cores
//! a pool of about a dozen connections beats one connection per task (32
//! server processes contend for the cores); pgbench, by contrast, is
//! fastest with one connection per client (group commit), so it gets
//! `--tasks` clients.
//!
//! On PostgreSQL the same load database then gets a reference from
//! `pgbench` (when it is installed): `pgbench -i -s 10`, then the built-in
//! simple-update (`-N`) and select-only (`-S`) scripts with `--tasks`
//! clients, 2 threads, for `--pgbench-seconds` each. The ratio of
//! redemptions/s to simple-update TPS is printed with its target (≥ 0.3).
//! A redemption is three steps, each one joined read and one
//! `commit_batch` call: six round trips and three durable commits. A
//! simple-update transaction is five round trips and one commit, so about
//! a third of pgbench's rate is what three commits per redemption allow on
//! the same disk and cores.
//!
//! The PostgreSQL database is dropped (`WITH (FORCE)`) and the SQLite file
//! removed at the end, also when a step fails.
//!
//! Run it in release mode against a local server:
//!
//! ```text
//! cargo run --release --example load_redeem --features sqlite,postgres -- \
//!     [--postgres URL] [--sqlite PATH] [--tickets N] [--tasks T] [--connections C] \
//!     [--pgbench-seconds S] [--backends sqlite,postgres]
//! ```
//!
//! Defaults: `--tickets 10000 --tasks 32 --pgbench-seconds 10`, both
//! backends, the URL from `GUESTPASS_TEST_POSTGRES_URL` or else
//! `postgres://postgres@127.0.0.1:5432/postgres` (the user needs the right
//! to create databases), and a SQLite file in the temp directory (`--sqlite
//! PATH` must not exist yet; it is removed at the end too).

#[path = "support/figures.rs"]
mod figures;

use figures::{per_second, percentile, random_hex};
use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use guestpass::directory::{DirectoryStore, ExternalUserState, PostgresOptions, PostgresStore, SqliteStore};
use guestpass::email::EmailAddress;
use guestpass::error::MailError;
use guestpass::idp::PasscodePolicy;
use guestpass::keys::SigningKey;
use guestpass::mail::{MailTransport, Message, MessageKind};
use guestpass::random::{SecureRandom, SystemRandom};
use guestpass::{ConsentDecision, Error, Finished, GuestPass, InvitationRequest, Inviter, RedemptionStep};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const BASE_URL: &str = "http://127.0.0.1:8080/";
const APP_URL: &str = "https://app.contoso.example/welcome";
const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const POSTGRES_URL_VAR: &str = "GUESTPASS_TEST_POSTGRES_URL";
/// Attempts per task in the race check.
const RACE_ATTEMPTS_PER_TASK: usize = 100;
/// The scale `pgbench -i` initializes (1,000,000 accounts).
const PGBENCH_SCALE: u32 = 10;
/// The redemptions/s ÷ simple-update TPS ratio aimed for.
const TARGET_RATIO: f64 = 0.3;

const USAGE: &str = "usage: cargo run --release --example load_redeem --features sqlite,postgres -- \
[--postgres URL] [--sqlite PATH] [--tickets N (10000)] [--tasks T (32)] [--connections C (10)] \
[--pgbench-seconds S (10)] \
[--backends sqlite,postgres]";

fn main() -> Res<()> {
    let Some(opts) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(opts))
}

// ---------------------------------------------------------------------------
// Options.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

#[derive(Debug)]
struct Options {
    postgres_url: String,
    sqlite_path: Option<PathBuf>,
    tickets: usize,
    tasks: usize,
    /// PostgreSQL pool size (default: the store's own default).
    connections: Option<usize>,
    pgbench_seconds: u64,
    backends: Vec<Backend>,
}

impl Options {
    /// The options, or `None` for `--help`.
    fn parse(args: impl Iterator<Item = String>) -> Res<Option<Self>> {
        let mut opts = Options {
            postgres_url: std::env::var(POSTGRES_URL_VAR)
                .ok()
                .filter(|u| !u.is_empty())
                .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned()),
            sqlite_path: None,
            tickets: 10_000,
            tasks: 32,
            connections: None,
            pgbench_seconds: 10,
            backends: vec![Backend::Sqlite, Backend::Postgres],
        };
        let mut args = args.peekable();
        while let Some(arg) = args.next() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            if flag == "--help" || flag == "-h" {
                return Ok(None);
            }
            let mut value = || -> Res<String> {
                match inline.clone().or_else(|| args.next()) {
                    Some(v) => Ok(v),
                    None => Err(format!("{flag} needs a value (see --help)").into()),
                }
            };
            match flag.as_str() {
                "--postgres" => opts.postgres_url = value()?,
                "--sqlite" => opts.sqlite_path = Some(PathBuf::from(value()?)),
                "--tickets" => opts.tickets = positive(&flag, &value()?)?,
                "--tasks" => opts.tasks = positive(&flag, &value()?)?,
                "--connections" => opts.connections = Some(positive(&flag, &value()?)?),
                "--pgbench-seconds" => opts.pgbench_seconds = positive(&flag, &value()?)? as u64,
                "--backends" => {
                    let mut backends = Vec::new();
                    for name in value()?.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                        backends.push(match name {
                            "sqlite" => Backend::Sqlite,
                            "postgres" => Backend::Postgres,
                            other => return Err(format!("unknown backend `{other}` (see --help)").into()),
                        });
                    }
                    if backends.is_empty() {
                        return Err("--backends names none (see --help)".into());
                    }
                    opts.backends = backends;
                }
                other => return Err(format!("unknown argument `{other}` (see --help)").into()),
            }
        }
        Ok(Some(opts))
    }
}

fn positive(flag: &str, v: &str) -> Res<usize> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} needs a positive whole number, not `{v}`").into()),
    }
}

// ---------------------------------------------------------------------------
// The mail transport: the latest passcode per address.

/// Keeps the latest passcode mailed to each address (by comparison key);
/// every other message is dropped.
#[derive(Debug)]
struct LatestCodes {
    digits: usize,
    codes: Mutex<HashMap<String, String>>,
}

impl LatestCodes {
    fn new(digits: usize) -> Self {
        Self {
            digits,
            codes: Mutex::new(HashMap::new()),
        }
    }

    /// Takes the latest code mailed to the address with comparison key `key`.
    fn take(&self, key: &str) -> Option<String> {
        self.codes.lock().ok()?.remove(key)
    }
}

#[async_trait]
impl MailTransport for LatestCodes {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        if message.kind != MessageKind::Passcode {
            return Ok(());
        }
        let code = message.code(self.digits).ok_or_else(|| MailError::Transport {
            message: "no passcode in the message".to_owned(),
        })?;
        let mut codes = self.codes.lock().map_err(|_| MailError::Transport {
            message: "the code map is poisoned".to_owned(),
        })?;
        codes.insert(message.to.address.comparison_key().to_owned(), code.to_owned());
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// The run.

/// What one backend measured.
#[derive(Debug, Default)]
struct Figures {
    backend: &'static str,
    tickets: usize,
    setup: Duration,
    redeemed: usize,
    failed: usize,
    errors: Vec<String>,
    wall: Duration,
    /// Whole redemptions, sorted.
    whole: Vec<Duration>,
    /// Finish steps, sorted.
    finish: Vec<Duration>,
    race_attempts: usize,
    double_redemptions: usize,
    race_unexpected: usize,
    users: usize,
    accepted_one_identity: usize,
    reference: Option<Reference>,
}

impl Figures {
    fn redemptions_per_s(&self) -> f64 {
        per_second(self.redeemed, self.wall)
    }

    /// Finish steps per second at the run's concurrency: tasks ÷ mean latency.
    fn finish_per_s(&self, tasks: usize) -> f64 {
        let total: Duration = self.finish.iter().sum();
        if self.finish.is_empty() || total.is_zero() {
            return 0.0;
        }
        let mean = total.as_secs_f64() / self.finish.len() as f64;
        tasks as f64 / mean
    }
}

/// The pgbench reference.
#[derive(Debug)]
enum Reference {
    NotInstalled,
    Failed(String),
    Done { simple_update: f64, select_only: f64 },
}

async fn run(opts: Options) -> Res<()> {
    println!(
        "guestpass load_redeem: {} tickets, {} tasks, {} worker threads",
        opts.tickets,
        opts.tasks,
        std::thread::available_parallelism().map_or(1, |n| n.get())
    );
    let mut all = Vec::new();
    for backend in opts.backends.clone() {
        println!();
        println!("== {} ==", backend.name());
        let figures = match backend {
            Backend::Sqlite => sqlite_run(&opts).await?,
            Backend::Postgres => postgres_run(&opts).await?,
        };
        all.push(figures);
    }
    println!();
    print_table(&opts, &all);
    let bad: Vec<&str> = all
        .iter()
        .filter(|f| {
            f.failed > 0
                || f.double_redemptions > 0
                || f.race_unexpected > 0
                || f.accepted_one_identity != f.users
                || f.users != f.tickets
        })
        .map(|f| f.backend)
        .collect();
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("correctness checks failed on: {}", bad.join(", ")).into())
    }
}

/// Removes a SQLite database file and its WAL files when dropped.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        for suffix in ["", "-wal", "-shm", "-journal"] {
            let mut name = self.0.clone().into_os_string();
            name.push(suffix);
            let _ = std::fs::remove_file(PathBuf::from(name));
        }
    }
}

async fn sqlite_run(opts: &Options) -> Res<Figures> {
    let path = match &opts.sqlite_path {
        Some(p) if p.exists() => {
            return Err(format!(
                "{} exists; give a path that does not (it is removed at the end)",
                p.display()
            )
            .into());
        }
        Some(p) => p.clone(),
        None => std::env::temp_dir().join(format!("guestpass_load_{}.db", random_hex(8)?)),
    };
    let _cleanup = RemoveOnDrop(path.clone());
    println!("database: {} (removed at the end)", path.display());
    let store = Arc::new(SqliteStore::open(&path).await?);
    println!("store: {store:?}");
    let result = bench(Backend::Sqlite, opts, store.clone()).await;
    store.close().await;
    result
}

async fn postgres_run(opts: &Options) -> Res<Figures> {
    let admin = opts.postgres_url.clone();
    let name = format!("guestpass_load_{}", random_hex(8)?);
    let url = with_database(&admin, &name)?;
    pg_exec(&admin, &format!("CREATE DATABASE {name}")).await?;
    println!("database: {} (dropped at the end)", redacted(&url));
    let result = postgres_body(opts, &url).await;
    let dropped = pg_exec(&admin, &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)")).await;
    match (result, dropped) {
        (Ok(f), Ok(())) => Ok(f),
        (Ok(_), Err(e)) => Err(format!("cannot drop database {name}: {e}").into()),
        (Err(e), Ok(())) => Err(e),
        (Err(e), Err(d)) => {
            eprintln!("cannot drop database {name}: {d}");
            Err(e)
        }
    }
}

async fn postgres_body(opts: &Options, url: &str) -> Res<Figures> {
    // The store's default pool unless `--connections` says otherwise: the
    // tasks queue for connections as a host's request handlers do.
    let pool = match opts.connections {
        Some(n) => PostgresOptions::default().max_connections(u32::try_from(n)?),
        None => PostgresOptions::default(),
    };
    let store = Arc::new(PostgresStore::connect_with(url, pool).await?);
    println!("store: {store:?}");
    let result = bench(Backend::Postgres, opts, store.clone()).await;
    store.close().await;
    let mut figures = result?;
    println!(
        "pgbench reference: -i -s {PGBENCH_SCALE}, then -N and -S with -c {} for {} s each",
        opts.tasks, opts.pgbench_seconds
    );
    let (clients, seconds, target) = (opts.tasks, opts.pgbench_seconds, url.to_owned());
    let reference = tokio::task::spawn_blocking(move || pgbench_reference(&target, clients, seconds)).await?;
    match &reference {
        Reference::NotInstalled => println!("pgbench is not installed: skipping the reference"),
        Reference::Failed(why) => println!("pgbench failed, skipping the reference: {why}"),
        Reference::Done {
            simple_update,
            select_only,
        } => println!("simple-update {simple_update:.0} tps, select-only {select_only:.0} tps"),
    }
    figures.reference = Some(reference);
    Ok(figures)
}

/// One invited guest.
struct Guest {
    ticket: String,
    /// The comparison key of the address, under which its codes are kept.
    key: String,
}

/// Invites, redeems and checks on one store.
async fn bench(backend: Backend, opts: &Options, store: Arc<dyn DirectoryStore>) -> Res<Figures> {
    let policy = PasscodePolicy {
        min_send_interval: time::Duration::ZERO,
        max_sends_per_window: 1000,
        ..PasscodePolicy::default()
    };
    let mail = Arc::new(LatestCodes::new(usize::from(policy.digits)));
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret)?;
    let gp = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(BASE_URL)
        .signing_key(SigningKey::new("load", secret)?)
        .redirect_url(APP_URL)
        .passcode_policy(policy)
        .store(store)
        .mail(mail.clone())
        .build()?;
    let mut figures = Figures {
        backend: backend.name(),
        tickets: opts.tickets,
        ..Figures::default()
    };

    // Setup (untimed in the figures): invite every guest, without mail.
    let started = Instant::now();
    let guests = Arc::new(invite_all(&gp, opts.tickets, opts.tasks).await?);
    figures.setup = started.elapsed();
    println!(
        "setup: invited {} guests in {:.1} s",
        guests.len(),
        figures.setup.as_secs_f64()
    );

    // The timed phase.
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut handles = Vec::with_capacity(opts.tasks);
    for _ in 0..opts.tasks {
        let (gp, mail, guests, next) = (gp.clone(), mail.clone(), guests.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut out = TaskResult::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(guest) = guests.get(i) else { break };
                let t = Instant::now();
                match redeem(&gp, &mail, guest).await {
                    Ok(finish) => {
                        out.whole.push(t.elapsed());
                        out.finish.push(finish);
                        out.redeemed.push(i);
                    }
                    Err(e) => {
                        out.failed += 1;
                        if out.errors.len() < 3 {
                            out.errors.push(e.to_string());
                        }
                    }
                }
            }
            out
        }));
    }
    let mut redeemed = Vec::with_capacity(opts.tickets);
    for h in handles {
        let r = h.await?;
        figures.whole.extend(r.whole);
        figures.finish.extend(r.finish);
        figures.failed += r.failed;
        figures.errors.extend(r.errors);
        redeemed.extend(r.redeemed);
    }
    figures.wall = started.elapsed();
    figures.redeemed = redeemed.len();
    figures.whole.sort_unstable();
    figures.finish.sort_unstable();
    println!(
        "redeemed {} of {} in {:.2} s: {:.1} redemptions/s; whole p50 {} p99 {}; finish p50 {} p99 {}",
        figures.redeemed,
        opts.tickets,
        figures.wall.as_secs_f64(),
        figures.redemptions_per_s(),
        ms(percentile(&figures.whole, 50)),
        ms(percentile(&figures.whole, 99)),
        ms(percentile(&figures.finish, 50)),
        ms(percentile(&figures.finish, 99)),
    );
    if figures.failed > 0 {
        println!("failed redemptions: {}", figures.failed);
        for e in figures.errors.iter().take(5) {
            println!("   {e}");
        }
    }

    // Race check: redeemed tickets must all be refused.
    let redeemed = Arc::new(redeemed);
    let mut handles = Vec::with_capacity(opts.tasks);
    if !redeemed.is_empty() {
        for _ in 0..opts.tasks {
            let (gp, guests, redeemed) = (gp.clone(), guests.clone(), redeemed.clone());
            handles.push(tokio::spawn(async move { race(&gp, &guests, &redeemed).await }));
        }
    }
    for h in handles {
        let (attempts, accepted, unexpected) = h.await??;
        figures.race_attempts += attempts;
        figures.double_redemptions += accepted;
        figures.race_unexpected += unexpected;
    }
    println!(
        "double redemptions: {} (of {} attempts on redeemed tickets{})",
        figures.double_redemptions,
        figures.race_attempts,
        if figures.race_unexpected > 0 {
            format!("; {} refused with a non-ticket error", figures.race_unexpected)
        } else {
            String::new()
        }
    );

    // The directory: every user accepted with exactly one identity.
    let users = gp.users().await?;
    figures.users = users.len();
    figures.accepted_one_identity = users
        .iter()
        .filter(|u| u.external_user_state == Some(ExternalUserState::Accepted) && u.identities.len() == 1)
        .count();
    println!(
        "directory: {} users, {} accepted with exactly one identity",
        figures.users, figures.accepted_one_identity
    );
    Ok(figures)
}

#[derive(Default)]
struct TaskResult {
    whole: Vec<Duration>,
    finish: Vec<Duration>,
    redeemed: Vec<usize>,
    failed: usize,
    errors: Vec<String>,
}

/// Invites `n` guests with `tasks` concurrent tasks; the guests in order.
async fn invite_all(gp: &GuestPass, n: usize, tasks: usize) -> Res<Vec<Guest>> {
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let (gp, next, stop) = (gp.clone(), next.clone(), stop.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= n {
                    break;
                }
                match invite(&gp, i).await {
                    Ok(g) => out.push((i, g)),
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        return Err(format!("inviting guest {i}: {e}"));
                    }
                }
            }
            Ok(out)
        }));
    }
    let mut slots: Vec<Option<Guest>> = (0..n).map(|_| None).collect();
    let mut first_error = None;
    for h in handles {
        match h.await? {
            Ok(list) => {
                for (i, g) in list {
                    if let Some(slot) = slots.get_mut(i) {
                        *slot = Some(g);
                    }
                }
            }
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e.into());
    }
    slots
        .into_iter()
        .enumerate()
        .map(|(i, g)| g.ok_or_else(|| format!("guest {i} was not invited").into()))
        .collect()
}

async fn invite(gp: &GuestPass, i: usize) -> Res<Guest> {
    let address = format!("guest{i:06}@fabrikam.example");
    let request = InvitationRequest {
        send_invitation_message: false,
        invited_user_display_name: Some(format!("Guest {i}")),
        ..InvitationRequest::new(address.clone(), APP_URL)
    };
    let invitation = gp.invite(&Inviter::admin(None), request).await?;
    let link = invitation
        .invite_redeem_url
        .ok_or("the invitation has no redeem URL")?;
    let ticket = url::Url::parse(link.expose())?
        .query_pairs()
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .ok_or("no ticket in the redeem URL")?;
    let key = EmailAddress::parse(&address)?.comparison_key().to_owned();
    Ok(Guest { ticket, key })
}

/// Redeems one ticket completely; returns how long the finish step took.
async fn redeem(gp: &GuestPass, mail: &LatestCodes, guest: &Guest) -> Res<Duration> {
    let started = gp.start_redemption(&guest.ticket).await?;
    if let RedemptionStep::PasscodeNotDelivered { reason, .. } = &started.step {
        return Err(format!("passcode not delivered: {reason}").into());
    }
    let code = mail.take(&guest.key).ok_or("no passcode was mailed")?;
    let handle = started.handle.expose();
    gp.submit_passcode(handle, &code).await?;
    let t = Instant::now();
    let finished = gp.finish_redemption(handle, ConsentDecision::Accept).await?;
    let took = t.elapsed();
    match finished {
        Finished::Redeemed(_) => Ok(took),
        other => Err(format!("the redemption did not complete: {other:?}").into()),
    }
}

/// Tries `start_redemption` on random redeemed tickets: (attempts,
/// accepted, refused with an error other than a ticket error).
async fn race(gp: &GuestPass, guests: &[Guest], redeemed: &[usize]) -> Res<(usize, usize, usize)> {
    let rng = SystemRandom::new();
    let (mut accepted, mut unexpected) = (0, 0);
    for _ in 0..RACE_ATTEMPTS_PER_TASK {
        let mut bytes = [0u8; 8];
        rng.fill(&mut bytes)?;
        let pick = (u64::from_le_bytes(bytes) % redeemed.len() as u64) as usize;
        let Some(guest) = redeemed.get(pick).and_then(|&i| guests.get(i)) else {
            continue;
        };
        match gp.start_redemption(&guest.ticket).await {
            Ok(_) => accepted += 1,
            Err(Error::Ticket(_)) => {}
            Err(_) => unexpected += 1,
        }
    }
    Ok((RACE_ATTEMPTS_PER_TASK, accepted, unexpected))
}

// ---------------------------------------------------------------------------
// PostgreSQL helpers and the pgbench reference.

/// `url` naming database `db` instead.
fn with_database(url: &str, db: &str) -> Res<String> {
    let mut u = url::Url::parse(url)?;
    u.set_path(&format!("/{db}"));
    Ok(u.to_string())
}

/// `url` without its password, for printing.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_password(None);
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// Runs one statement on a connection of its own.
async fn pg_exec(url: &str, sql: &str) -> Res<()> {
    use sqlx::{Connection as _, Executor as _};
    let mut conn = sqlx::PgConnection::connect(url)
        .await
        .map_err(|e| format!("cannot connect to {}: {e}", redacted(url)))?;
    let result = conn.execute(sql).await;
    let _ = conn.close().await;
    result.map_err(|e| format!("{sql}: {e}"))?;
    Ok(())
}

fn pgbench_reference(url: &str, clients: usize, seconds: u64) -> Reference {
    match Command::new("pgbench").arg("--version").output() {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Reference::NotInstalled,
        Err(e) => return Reference::Failed(format!("cannot run pgbench: {e}")),
        Ok(_) => {}
    }
    let scale = PGBENCH_SCALE.to_string();
    if let Err(e) = pgbench(&["-i", "-q", "-s", &scale, url]) {
        return Reference::Failed(format!("pgbench -i: {e}"));
    }
    let clients = clients.to_string();
    let threads = if clients == "1" { "1" } else { "2" };
    let seconds = seconds.to_string();
    let mut tps = [0.0; 2];
    for (slot, script) in tps.iter_mut().zip(["-N", "-S"]) {
        let args = [script, "-c", &clients, "-j", threads, "-T", &seconds, url];
        match pgbench(&args).and_then(|out| parse_tps(&out)) {
            Ok(t) => *slot = t,
            Err(e) => return Reference::Failed(format!("pgbench {script}: {e}")),
        }
    }
    Reference::Done {
        simple_update: tps[0],
        select_only: tps[1],
    }
}

/// Runs pgbench; its standard output, or why it failed.
fn pgbench(args: &[&str]) -> Result<String, String> {
    let out = Command::new("pgbench")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run pgbench: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let last = stderr.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
        Err(format!("{} ({})", out.status, last.trim()))
    }
}

/// The `tps = X` figure of a pgbench report.
fn parse_tps(report: &str) -> Result<f64, String> {
    report
        .lines()
        .find_map(|l| l.trim().strip_prefix("tps = "))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| "no `tps = ` line in its report".to_owned())
}

// ---------------------------------------------------------------------------
// Figures.

/// [`figures::ms`] with this report's precision.
fn ms(d: Option<Duration>) -> String {
    figures::ms(d, 2)
}

fn print_table(opts: &Options, all: &[Figures]) {
    let mut rows: Vec<(String, Vec<String>)> = Vec::new();
    let mut row = |label: &str, f: &dyn Fn(&Figures) -> String| {
        rows.push((label.to_owned(), all.iter().map(f).collect()));
    };
    row("tickets", &|f| f.tickets.to_string());
    row("setup: invite all (untimed)", &|f| {
        format!("{:.1} s", f.setup.as_secs_f64())
    });
    row("redeemed", &|f| f.redeemed.to_string());
    row("failed redemptions", &|f| f.failed.to_string());
    row("redemption phase wall time", &|f| {
        format!("{:.2} s", f.wall.as_secs_f64())
    });
    row("redemptions/s", &|f| format!("{:.1}", f.redemptions_per_s()));
    row("whole redemption p50", &|f| ms(percentile(&f.whole, 50)));
    row("whole redemption p99", &|f| ms(percentile(&f.whole, 99)));
    row("finish step p50", &|f| ms(percentile(&f.finish, 50)));
    row("finish step p99", &|f| ms(percentile(&f.finish, 99)));
    let tasks = opts.tasks;
    row("finish steps/s (tasks / mean)", &|f| {
        format!("{:.1}", f.finish_per_s(tasks))
    });
    row("double redemptions", &|f| {
        format!("{} of {}", f.double_redemptions, f.race_attempts)
    });
    row("accepted, one identity", &|f| {
        format!("{} of {}", f.accepted_one_identity, f.users)
    });
    let tps = |f: &Figures| match &f.reference {
        Some(Reference::Done {
            simple_update,
            select_only,
        }) => Some((*simple_update, *select_only)),
        _ => None,
    };
    row("pgbench simple-update (-N) tps", &|f| match &f.reference {
        Some(Reference::Done { simple_update, .. }) => format!("{simple_update:.1}"),
        Some(Reference::NotInstalled) => "not installed".to_owned(),
        Some(Reference::Failed(_)) => "failed".to_owned(),
        None => "-".to_owned(),
    });
    row("pgbench select-only (-S) tps", &|f| {
        tps(f).map_or_else(|| "-".to_owned(), |(_, s)| format!("{s:.1}"))
    });
    row("redemptions/s / simple-update", &|f| {
        tps(f).map_or_else(
            || "-".to_owned(),
            |(n, _)| {
                let r = f.redemptions_per_s() / n;
                let verdict = if r >= TARGET_RATIO { "meets" } else { "below" };
                format!("{r:.3} ({verdict} {TARGET_RATIO})")
            },
        )
    });
    row("finish steps/s / simple-update", &|f| {
        tps(f).map_or_else(
            || "-".to_owned(),
            |(n, _)| format!("{:.3}", f.finish_per_s(tasks) / n),
        )
    });

    let title = format!("{} tickets, {} tasks", opts.tickets, opts.tasks);
    let label_width = rows
        .iter()
        .map(|(l, _)| l.chars().count())
        .chain([title.chars().count()])
        .max()
        .unwrap_or(0);
    let widths: Vec<usize> = (0..all.len())
        .map(|i| {
            rows.iter()
                .filter_map(|(_, v)| v.get(i))
                .map(|s| s.chars().count())
                .chain(all.get(i).map(|f| f.backend.len()))
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |label: &str, cells: &[String]| {
        let mut s = format!("{label:<label_width$}");
        for (cell, w) in cells.iter().zip(&widths) {
            s.push_str(&format!(" | {cell:>w$}"));
        }
        s
    };
    let header = line(
        &title,
        &all.iter().map(|f| f.backend.to_owned()).collect::<Vec<_>>(),
    );
    println!("{header}");
    println!("{}", "-".repeat(header.chars().count()));
    for (label, cells) in &rows {
        println!("{}", line(label, cells));
    }
}
