//! Load figures for the web pages of `guestpass::web`, beside an axum
//! hello-world handler as the reference.
//!
//! One tokio multi-thread runtime runs two real HTTP/1.1 servers on
//! ephemeral ports of 127.0.0.1, both served with
//! `into_make_service_with_connect_info::<SocketAddr>()` and `TCP_NODELAY`:
//!
//! 1. the reference: an axum router whose only route is `GET /` → `hello`;
//! 2. [`web::router`] over a [`GuestPass`] on the SQLite store (a file in a
//!    fresh temporary directory, removed at the end) or, with `--database
//!    memory`, the [`MemoryStore`]; mail goes to the in-memory [`Outbox`].
//!    Its public base URL is `http://127.0.0.1:<port>/`. The passcode policy
//!    allows a send to one address at any time (up to 1,000 an hour), as the
//!    scenarios mail the same guests many times.
//!
//! Setup (untimed): `--invitations N` guests are invited through
//! [`GuestPass::invite`], their tickets read back from the invitation mails
//! in the outbox, and each ticket's CSRF token is scraped once from its
//! `GET /redeem?ticket=…` page.
//!
//! The clients are `--concurrency C` tokio tasks sharing one reqwest client
//! (a keep-alive connection pool per server, redirects not followed, the
//! redemption cookie carried by hand). Each task makes one request after
//! another until the scenario's time is up (`--seconds S`, after an untimed
//! warm-up of `--warmup W` seconds whose unexpected answers count as errors
//! too) or, with `--requests R`, until R requests were made in all. Task t
//! of C works on tickets t, t + C, t + 2C, … only, so one ticket never gets
//! two requests at once (unless C exceeds N). Every request's latency is
//! kept. The scenarios:
//!
//! - `hello`: `GET /` on the reference server, answer `200 hello`;
//! - `redeem_view`: `GET /redeem?ticket=…` cycling over the tickets, answer
//!   `200` with the invitation form;
//! - `redeem_start`: `POST /redeem` with a ticket and its CSRF token, cycling
//!   over the tickets: each creates a redemption flow, mails a passcode and
//!   answers `303` to `/redeem/step` with the `__Host-gp-redeem` cookie (a
//!   task stops after 800 requests per ticket of its own, to stay inside
//!   the passcode send limit, and the report says so);
//! - `redeem_full`: every ticket redeemed once, timed as a whole and per
//!   request: `POST /redeem` (`303` and the cookie), `GET /redeem/step` (the
//!   passcode form, whose CSRF token is bound to the flow's handle), the code
//!   read from the outbox, `POST /redeem/passcode` (`303` to the step page),
//!   `POST /redeem/consent` with `decision=accept` (`303` to the invitation's
//!   redirect URL). The consent form carries the same handle-bound token, so
//!   the consent page is not fetched. Afterwards every user must be
//!   `Accepted` with exactly one identity, and `POST /redeem` with any
//!   redeemed ticket must be refused;
//! - `sign_in_start`: `GET /signup?client_id=…&redirect_uri=…` of a
//!   configured sign-up application whose user flow offers the email
//!   one-time passcode only: each request starts a flow and chooses that
//!   provider, answer `303` to `/signup/step` with the `__Host-gp-flow`
//!   cookie. When the router does not serve `/signup` (a probe answers 404
//!   or 405) the scenario is skipped with a note.
//!
//! The report is a table per scenario: requests, seconds, requests per
//! second, p50 / p90 / p99 / max latency, errors, and the throughput and
//! median latency relative to `hello`. The example exits non-zero when any
//! request got an unexpected answer or a ticket was redeemed twice.
//!
//! ```text
//! cargo run --release --example load_web --features axum,reqwest,sqlite -- \
//!     [--invitations N (2000)] [--concurrency C (32)] [--seconds S (5)] \
//!     [--warmup W (0.5)] [--requests R] [--database sqlite|memory] [--quick]
//! ```
//!
//! `--quick` (for CI) sets `--invitations 100 --seconds 1 --warmup 0.2`;
//! flags after it override those.

#[path = "support/figures.rs"]
mod figures;

use figures::{per_second, percentile, random_hex};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use axum::serve::ListenerExt as _;
use guestpass::directory::{DirectoryStore, ExternalUserState, MemoryStore, SqliteStore};
use guestpass::email::EmailAddress;
use guestpass::flow::config::SignUpConfig;
use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::graph::auth::AdminTokenIssuer;
use guestpass::idp::PasscodePolicy;
use guestpass::keys::SigningKey;
use guestpass::mail::{MessageKind, Outbox};
use guestpass::random::{SecureRandom, SystemRandom};
use guestpass::web::{self, WebConfig};
use guestpass::{GuestPass, InvitationRequest, Inviter};
use reqwest::header::{self, HeaderMap};
use reqwest::{Client, StatusCode};

type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Res<T> = Result<T, BoxError>;

const APP_URL: &str = "https://app.contoso.example/welcome";
const SIGN_UP_CLIENT: &str = "contoso-portal";
const SIGN_UP_REDIRECT: &str = "https://app.contoso.example/signin-oidc";
const FORM: &str = "application/x-www-form-urlencoded";
const REDEEM_COOKIE: &str = "__Host-gp-redeem=";
const FLOW_COOKIE: &str = "__Host-gp-flow=";
/// Most `redeem_start` requests per ticket (a tenth more in the warm-up):
/// each mails a passcode, and the passcode policy allows at most 1,000
/// sends to one address an hour.
const MAX_STARTS_PER_TICKET: u64 = 800;
/// How many error messages a scenario keeps for the report.
const KEPT_ERRORS: usize = 3;

const SIGN_UP_CONFIG: &str = r#"{
  "applications": [{
    "clientId": "contoso-portal",
    "displayName": "Contoso portal",
    "redirectUris": ["https://app.contoso.example/signin-oidc"]
  }],
  "userFlows": [{
    "id": "contoso-customers",
    "displayName": "Contoso customers",
    "identityProviders": ["emailOtp"],
    "applications": ["contoso-portal"],
    "attributes": [{"name": "displayName"}]
  }]
}"#;

const USAGE: &str = "usage: cargo run --release --example load_web --features axum,reqwest,sqlite -- \
[--invitations N (2000)] [--concurrency C (32)] [--seconds S (5)] [--warmup W (0.5)] \
[--requests R] [--database sqlite|memory (sqlite)] [--quick]";

fn main() -> Res<()> {
    let Some(opts) = Options::parse(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    // The SQLite file lives in a directory of its own, removed once the
    // runtime (and with it every connection) is gone, also after a failure.
    let dir = match opts.database {
        Database::Sqlite => {
            let dir = std::env::temp_dir().join(format!("guestpass-load-web-{}", random_hex(8)?));
            std::fs::create_dir(&dir)?;
            Some(dir)
        }
        Database::Memory => None,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let result = runtime.block_on(run(&opts, dir.as_deref()));
    drop(runtime);
    if let Some(dir) = dir
        && let Err(e) = std::fs::remove_dir_all(&dir)
    {
        eprintln!("could not remove {}: {e}", dir.display());
    }
    result
}

// ---------------------------------------------------------------------------
// Options.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Database {
    Sqlite,
    Memory,
}

#[derive(Debug)]
struct Options {
    invitations: usize,
    concurrency: usize,
    seconds: f64,
    warmup: f64,
    /// A request count per timed scenario instead of a duration.
    requests: Option<u64>,
    database: Database,
}

impl Options {
    /// The options, or `None` for `--help`.
    fn parse(args: impl Iterator<Item = String>) -> Res<Option<Self>> {
        let mut opts = Options {
            invitations: 2000,
            concurrency: 32,
            seconds: 5.0,
            warmup: 0.5,
            requests: None,
            database: Database::Sqlite,
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
            if flag == "--quick" {
                opts.invitations = 100;
                opts.seconds = 1.0;
                opts.warmup = 0.2;
                continue;
            }
            let mut value = || -> Res<String> {
                match inline.clone().or_else(|| args.next()) {
                    Some(v) => Ok(v),
                    None => Err(format!("{flag} needs a value (see --help)").into()),
                }
            };
            match flag.as_str() {
                "--invitations" => opts.invitations = positive(&flag, &value()?)?,
                "--concurrency" => opts.concurrency = positive(&flag, &value()?)?,
                "--requests" => opts.requests = Some(positive(&flag, &value()?)? as u64),
                "--seconds" => opts.seconds = seconds(&flag, &value()?, false)?,
                "--warmup" => opts.warmup = seconds(&flag, &value()?, true)?,
                "--database" => {
                    opts.database = match value()?.as_str() {
                        "sqlite" => Database::Sqlite,
                        "memory" => Database::Memory,
                        other => return Err(format!("unknown database `{other}` (see --help)").into()),
                    }
                }
                other => return Err(format!("unknown argument `{other}` (see --help)").into()),
            }
        }
        Ok(Some(opts))
    }

    /// The plan of a timed scenario, at most `per_task` requests per task.
    fn plan(&self, per_task: Option<u64>) -> Plan {
        Plan {
            duration: self
                .requests
                .is_none()
                .then(|| Duration::from_secs_f64(self.seconds)),
            count: self.requests,
            per_task,
        }
    }

    /// The untimed warm-up before a timed scenario, if any.
    fn warmup_plan(&self, per_task: Option<u64>) -> Option<Plan> {
        (self.warmup > 0.0).then(|| Plan {
            duration: Some(Duration::from_secs_f64(self.warmup)),
            count: None,
            per_task: per_task.map(|c| c.div_ceil(10)),
        })
    }
}

fn positive(flag: &str, v: &str) -> Res<usize> {
    match v.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{flag} needs a positive whole number, not `{v}`").into()),
    }
}

fn seconds(flag: &str, v: &str, zero_ok: bool) -> Res<f64> {
    match v.parse::<f64>() {
        Ok(s) if s.is_finite() && (s > 0.0 || (zero_ok && s == 0.0)) && s <= 3600.0 => Ok(s),
        _ => Err(format!("{flag} needs a number of seconds up to 3600, not `{v}`").into()),
    }
}

// ---------------------------------------------------------------------------
// The servers and the service.

/// Serves `app` on an ephemeral port of 127.0.0.1; its address.
async fn serve(listener: tokio::net::TcpListener, app: Router) -> Res<SocketAddr> {
    let addr = listener.local_addr()?;
    let listener = listener.tap_io(|tcp| {
        // Without it a response written in two parts waits for the
        // client's delayed acknowledgement.
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        if let Err(e) = axum::serve(listener, service).await {
            eprintln!("server on {addr} stopped: {e}");
        }
    });
    Ok(addr)
}

/// The service, its outbox and its public base URL, served on `listener`.
struct Site {
    gp: GuestPass,
    outbox: Arc<Outbox>,
    base: String,
    origin: String,
    digits: usize,
}

async fn guestpass_site(opts: &Options, dir: Option<&Path>, listener: tokio::net::TcpListener) -> Res<Site> {
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}/");
    let store: Arc<dyn DirectoryStore> = match (opts.database, dir) {
        (Database::Sqlite, Some(dir)) => {
            let path: PathBuf = dir.join("directory.db");
            let store = SqliteStore::open(&path).await?;
            println!("store: SQLite file {}", path.display());
            Arc::new(store)
        }
        _ => {
            println!("store: in memory");
            Arc::new(MemoryStore::new())
        }
    };
    let policy = PasscodePolicy {
        min_send_interval: time::Duration::ZERO,
        max_sends_per_window: 1000,
        ..PasscodePolicy::default()
    };
    let digits = usize::from(policy.digits);
    let rng = SystemRandom::new();
    let mut secret = [0u8; 32];
    rng.fill(&mut secret)?;
    let outbox = Arc::new(Outbox::new());
    let gp = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(base.clone())
        .signing_key(SigningKey::new("load", secret)?)
        .redirect_url(APP_URL)
        .passcode_policy(policy)
        .sign_up(SignUpConfig::from_json(SIGN_UP_CONFIG)?)
        .token_keys(TokenKeys::new(TokenSigningKey::generate(
            "load-tokens",
            TokenAlgorithm::Es256,
            &rng,
        )?))
        .store(store)
        .mail(outbox.clone())
        .build()?;
    let admin_keys = TokenKeys::new(TokenSigningKey::generate(
        "load-admin",
        TokenAlgorithm::Es256,
        &rng,
    )?);
    let admin_tokens = AdminTokenIssuer::new(&admin_keys, gp.config().public_base_url())?;
    serve(listener, web::router(gp.clone(), WebConfig::new(admin_tokens))).await?;
    Ok(Site {
        gp,
        outbox,
        origin: format!("http://{addr}"),
        base,
        digits,
    })
}

// ---------------------------------------------------------------------------
// The driver.

/// When a scenario stops: after `duration`, after `count` operations, or
/// at whichever comes first; a task also stops after `per_task` of its own.
#[derive(Debug, Clone, Copy)]
struct Plan {
    duration: Option<Duration>,
    count: Option<u64>,
    per_task: Option<u64>,
}

/// One operation's place: the client task running it, how many that task
/// ran before, and its number in the whole scenario.
#[derive(Debug, Clone, Copy)]
struct Turn {
    task: usize,
    k: u64,
    n: u64,
}

/// Why one operation failed: the request (index into the scenario's
/// request labels) and what was wrong.
#[derive(Debug)]
struct Failure {
    step: usize,
    message: String,
}

fn fail(step: usize, message: impl Into<String>) -> Failure {
    Failure {
        step,
        message: message.into(),
    }
}

/// What one scenario measured.
#[derive(Debug, Default)]
struct Run {
    wall: Duration,
    /// Latencies of whole operations that succeeded, sorted.
    whole: Vec<Duration>,
    /// Latencies per request of an operation, each sorted.
    parts: Vec<Vec<Duration>>,
    /// Failed operations, per failing request.
    errors: Vec<u64>,
    messages: Vec<String>,
    /// Whether a task stopped at its `per_task` limit.
    capped: bool,
}

impl Run {
    fn failed(&self) -> u64 {
        self.errors.iter().sum()
    }
}

/// Runs `op` on `concurrency` tasks, one operation after another in each,
/// numbered 0, 1, … across all, until `plan` says stop. `op` answers the
/// latency of each of its `requests` requests.
async fn drive<F, Fut>(concurrency: usize, requests: usize, plan: Plan, op: F) -> Res<Run>
where
    F: Fn(Turn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Duration>, Failure>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let deadline = plan.duration.map(|d| started + d);
    let mut tasks = Vec::with_capacity(concurrency);
    for task in 0..concurrency {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = 0;
            let mut out = Run {
                parts: vec![Vec::new(); requests],
                errors: vec![0; requests],
                ..Run::default()
            };
            loop {
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                if plan.per_task.is_some_and(|c| k >= c) {
                    out.capped = true;
                    break;
                }
                let n = next.fetch_add(1, Ordering::Relaxed);
                if plan.count.is_some_and(|c| n >= c) {
                    break;
                }
                let t = Instant::now();
                let result = op(Turn { task, k, n }).await;
                let took = t.elapsed();
                k += 1;
                match result {
                    Ok(parts) => {
                        out.whole.push(took);
                        for (slot, d) in out.parts.iter_mut().zip(parts) {
                            slot.push(d);
                        }
                    }
                    Err(f) => {
                        if let Some(e) = out.errors.get_mut(f.step) {
                            *e += 1;
                        }
                        if out.messages.len() < KEPT_ERRORS {
                            out.messages.push(f.message);
                        }
                    }
                }
            }
            out
        }));
    }
    let mut run = Run {
        parts: vec![Vec::new(); requests],
        errors: vec![0; requests],
        ..Run::default()
    };
    for task in tasks {
        let r = task.await?;
        run.whole.extend(r.whole);
        for (all, mine) in run.parts.iter_mut().zip(r.parts) {
            all.extend(mine);
        }
        for (all, mine) in run.errors.iter_mut().zip(r.errors) {
            *all += mine;
        }
        for m in r.messages {
            if run.messages.len() < KEPT_ERRORS {
                run.messages.push(m);
            }
        }
        run.capped |= r.capped;
    }
    run.wall = started.elapsed();
    run.whole.sort_unstable();
    for p in &mut run.parts {
        p.sort_unstable();
    }
    Ok(run)
}

/// A timed scenario of single requests after its untimed warm-up; the
/// warm-up's unexpected answers count among the errors.
async fn timed<F, Fut>(opts: &Options, per_task: Option<u64>, op: F) -> Res<Run>
where
    F: Fn(Turn) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Vec<Duration>, Failure>> + Send + 'static,
{
    let op = Arc::new(op);
    let warm = match opts.warmup_plan(per_task) {
        Some(plan) => {
            let op = op.clone();
            Some(drive(opts.concurrency, 1, plan, move |turn| op(turn)).await?)
        }
        None => None,
    };
    let mut run = drive(opts.concurrency, 1, opts.plan(per_task), move |turn| op(turn)).await?;
    if let Some(warm) = warm {
        for (all, w) in run.errors.iter_mut().zip(&warm.errors) {
            *all += w;
        }
        for m in warm.messages {
            if run.messages.len() < KEPT_ERRORS {
                run.messages.push(format!("(warm-up) {m}"));
            }
        }
    }
    Ok(run)
}

// ---------------------------------------------------------------------------
// Requests.

/// One invited guest.
struct Guest {
    ticket: String,
    /// The ticket's CSRF token from its invitation page.
    csrf: String,
    /// The comparison key of the address, under which its mails are found.
    key: String,
}

/// What a scenario's requests share.
struct Ctx {
    client: Client,
    base: String,
    origin: String,
    outbox: Arc<Outbox>,
    digits: usize,
    guests: Vec<Guest>,
    /// The number of client tasks.
    tasks: usize,
}

impl Ctx {
    /// The guest of `turn`: task t of C cycles through guests t, t + C,
    /// t + 2C, …, so no two tasks share a ticket (unless there are more
    /// tasks than guests) and one ticket never sees two requests at once.
    fn guest(&self, turn: Turn) -> &Guest {
        let (n, tasks) = (self.guests.len(), self.tasks);
        // `guests` is never empty (at least one invitation).
        let i = if turn.task < n {
            let own = (n - turn.task).div_ceil(tasks) as u64;
            turn.task + tasks * (turn.k % own) as usize
        } else {
            turn.task % n
        };
        &self.guests[i]
    }

    /// The guest numbered `n`, for scenarios that use each guest once.
    fn nth(&self, n: u64) -> &Guest {
        &self.guests[(n % self.guests.len() as u64) as usize]
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn get(&self, url: &str, cookie: Option<&str>) -> Result<Answer, String> {
        let mut req = self.client.get(url);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        Answer::read(req.send().await).await
    }

    async fn post(&self, path: &str, cookie: Option<&str>, form: &[(&str, &str)]) -> Result<Answer, String> {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(form)
            .finish();
        let mut req = self
            .client
            .post(self.url(path))
            .header(header::CONTENT_TYPE, FORM)
            .header(header::ORIGIN, &self.origin)
            .body(body);
        if let Some(c) = cookie {
            req = req.header(header::COOKIE, c);
        }
        Answer::read(req.send().await).await
    }

    /// `POST /redeem`: the redemption cookie (`name=value`).
    async fn start(&self, guest: &Guest) -> Result<String, String> {
        let a = self
            .post(
                "redeem",
                None,
                &[("ticket", &guest.ticket), ("csrf", &guest.csrf)],
            )
            .await?;
        a.expect_redirect(&self.url("redeem/step"))?;
        a.cookie(REDEEM_COOKIE)
            .ok_or_else(|| "POST /redeem set no redemption cookie".to_owned())
    }
}

/// A response, read to the end so that its connection is reused.
struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: String,
}

impl Answer {
    async fn read(sent: Result<reqwest::Response, reqwest::Error>) -> Result<Answer, String> {
        let res = sent.map_err(|e| format!("request failed: {e}"))?;
        let status = res.status();
        let headers = res.headers().clone();
        let body = res
            .text()
            .await
            .map_err(|e| format!("reading the body failed: {e}"))?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }

    fn location(&self) -> &str {
        self.headers
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    }

    /// A short description of an unexpected answer.
    fn unexpected(&self, wanted: &str) -> String {
        let snippet: String = self.body.chars().take(160).collect();
        format!(
            "wanted {wanted}, got {} (location `{}`): {}",
            self.status,
            self.location(),
            snippet.split_whitespace().collect::<Vec<_>>().join(" ")
        )
    }

    fn expect_ok(&self) -> Result<(), String> {
        if self.status == StatusCode::OK {
            Ok(())
        } else {
            Err(self.unexpected("200"))
        }
    }

    fn expect_redirect(&self, location: &str) -> Result<(), String> {
        if self.status == StatusCode::SEE_OTHER && self.location() == location {
            Ok(())
        } else {
            Err(self.unexpected(&format!("303 to {location}")))
        }
    }

    /// The `name=value` pair of the cookie `prefix` (`name=`) it sets.
    fn cookie(&self, prefix: &str) -> Option<String> {
        self.headers
            .get_all(header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .filter_map(|v| v.split(';').next())
            .find(|pair| pair.starts_with(prefix) && pair.len() > prefix.len())
            .map(str::to_owned)
    }

    /// The value of the first hidden `csrf` field.
    fn csrf(&self) -> Option<String> {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker)? + marker.len();
        let len = self.body.get(start..)?.find('"')?;
        self.body
            .get(start..start + len)
            .filter(|t| !t.is_empty())
            .map(str::to_owned)
    }
}

fn redeem_link(ctx: &Ctx, ticket: &str) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(ticket.as_bytes()).collect();
    ctx.url(&format!("redeem?ticket={encoded}"))
}

/// Times one request.
async fn time<T>(f: impl Future<Output = T>) -> (T, Duration) {
    let t = Instant::now();
    let out = f.await;
    (out, t.elapsed())
}

/// One whole redemption of `guest`; the latency of each of its requests.
async fn redeem(ctx: &Ctx, guest: &Guest) -> Result<Vec<Duration>, Failure> {
    let (cookie, start) = time(ctx.start(guest)).await;
    let cookie = cookie.map_err(|e| fail(0, e))?;

    let (page, step) = time(ctx.get(&ctx.url("redeem/step"), Some(&cookie))).await;
    let page = page.map_err(|e| fail(1, e))?;
    page.expect_ok().map_err(|e| fail(1, e))?;
    let csrf = page
        .csrf()
        .ok_or_else(|| fail(1, "the passcode page has no CSRF token"))?;

    let code = ctx
        .outbox
        .last_to(&guest.key)
        .filter(|m| m.kind == MessageKind::Passcode)
        .and_then(|m| m.code(ctx.digits).map(str::to_owned))
        .ok_or_else(|| fail(2, "no passcode was mailed"))?;
    let (answer, passcode) = time(ctx.post(
        "redeem/passcode",
        Some(&cookie),
        &[("csrf", &csrf), ("code", &code)],
    ))
    .await;
    answer
        .and_then(|a| a.expect_redirect(&ctx.url("redeem/step")))
        .map_err(|e| fail(2, e))?;

    let (answer, consent) = time(ctx.post(
        "redeem/consent",
        Some(&cookie),
        &[("csrf", &csrf), ("decision", "accept")],
    ))
    .await;
    answer
        .and_then(|a| a.expect_redirect(APP_URL))
        .map_err(|e| fail(3, e))?;
    Ok(vec![start, step, passcode, consent])
}

// ---------------------------------------------------------------------------
// The run.

/// One row of the report.
struct Row {
    label: String,
    count: usize,
    wall: Duration,
    /// Sorted latencies.
    latencies: Vec<Duration>,
    errors: u64,
}

impl Row {
    fn of(label: &str, run: &Run) -> Row {
        Row {
            label: label.to_owned(),
            count: run.whole.len(),
            wall: run.wall,
            latencies: run.whole.clone(),
            errors: run.failed(),
        }
    }

    fn rate(&self) -> f64 {
        per_second(self.count, self.wall)
    }
}

async fn run(opts: &Options, dir: Option<&Path>) -> Res<()> {
    let hello_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let site_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hello_addr = serve(
        hello_listener,
        Router::new().route("/", get(|| async { "hello" })),
    )
    .await?;
    let site = guestpass_site(opts, dir, site_listener).await?;
    println!("hello-world server: http://{hello_addr}/");
    println!("guestpass server:   {}", site.base);
    println!(
        "{} invitations, {} client tasks, {}, warm-up {} s",
        opts.invitations,
        opts.concurrency,
        match opts.requests {
            Some(r) => format!("{r} requests per scenario"),
            None => format!("{} s per scenario", opts.seconds),
        },
        opts.warmup
    );

    let client = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .tcp_nodelay(true)
        .pool_max_idle_per_host(opts.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;

    // Setup, untimed: invitations, tickets from the mails, CSRF tokens.
    let t = Instant::now();
    let keys = invite_all(&site.gp, opts.invitations, opts.concurrency).await?;
    let links: HashMap<String, String> = site
        .outbox
        .messages()
        .into_iter()
        .filter(|m| m.kind == MessageKind::Invitation)
        .filter_map(|m| {
            let link = m
                .link_starting_with(&format!("{}redeem?ticket=", site.base))?
                .to_owned();
            Some((m.to.address.comparison_key().to_owned(), link))
        })
        .collect();
    site.outbox.clear();
    let mut tickets = Vec::with_capacity(keys.len());
    for key in keys {
        let link = links
            .get(&key)
            .ok_or_else(|| format!("no invitation mail to {key}"))?;
        let ticket = url::Url::parse(link)?
            .query_pairs()
            .find(|(k, _)| k == "ticket")
            .map(|(_, v)| v.into_owned())
            .ok_or("no ticket in the invitation link")?;
        tickets.push((ticket, key));
    }
    println!(
        "setup: {} invitations through the service, tickets read from the outbox, in {:.1} s",
        tickets.len(),
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let guests = scrape_csrf(&client, &site.base, tickets, opts.concurrency).await?;
    println!(
        "setup: {} CSRF tokens scraped from the invitation pages in {:.1} s",
        guests.len(),
        t.elapsed().as_secs_f64()
    );
    let ctx = Arc::new(Ctx {
        client,
        base: site.base.clone(),
        origin: site.origin.clone(),
        outbox: site.outbox.clone(),
        digits: site.digits,
        guests,
        tasks: opts.concurrency,
    });
    let mut rows: Vec<Row> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    let mut problems: Vec<String> = Vec::new();

    // 1. hello.
    let hello_url = format!("http://{hello_addr}/");
    let c = ctx.clone();
    let run = timed(opts, None, move |_| {
        let (c, url) = (c.clone(), hello_url.clone());
        async move {
            let a = c.get(&url, None).await.map_err(|e| fail(0, e))?;
            if a.status == StatusCode::OK && a.body == "hello" {
                Ok(Vec::new())
            } else {
                Err(fail(0, a.unexpected("200 hello")))
            }
        }
    })
    .await?;
    report(&mut rows, &mut problems, "hello", &run);

    // 2. redeem_view.
    let c = ctx.clone();
    let run = timed(opts, None, move |turn| {
        let c = c.clone();
        async move {
            let url = redeem_link(&c, &c.guest(turn).ticket);
            let a = c.get(&url, None).await.map_err(|e| fail(0, e))?;
            a.expect_ok().map_err(|e| fail(0, e))?;
            if a.csrf().is_none() {
                return Err(fail(0, "the invitation page has no form"));
            }
            Ok(Vec::new())
        }
    })
    .await?;
    report(&mut rows, &mut problems, "redeem_view", &run);

    // 3. redeem_start. The outbox is emptied as it goes, to keep its
    // memory flat; nothing reads these passcodes.
    let (guests, tasks) = (ctx.guests.len() as u64, opts.concurrency as u64);
    let cap = if guests >= tasks {
        (guests / tasks).saturating_mul(MAX_STARTS_PER_TICKET)
    } else {
        (MAX_STARTS_PER_TICKET / tasks.div_ceil(guests)).max(1)
    };
    let outbox = site.outbox.clone();
    let sweeper = tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(250)).await;
            outbox.clear();
        }
    });
    let c = ctx.clone();
    let run = timed(opts, Some(cap), move |turn| {
        let c = c.clone();
        async move {
            c.start(c.guest(turn)).await.map_err(|e| fail(0, e))?;
            Ok(Vec::new())
        }
    })
    .await;
    sweeper.abort();
    let run = run?;
    if run.capped {
        notes.push(format!(
            "redeem_start stopped at {MAX_STARTS_PER_TICKET} requests per ticket (the passcode send limit)"
        ));
    }
    report(&mut rows, &mut problems, "redeem_start", &run);
    site.outbox.clear();

    // 4. redeem_full: every ticket once.
    let c = ctx.clone();
    let plan = Plan {
        duration: None,
        count: Some(ctx.guests.len() as u64),
        per_task: None,
    };
    let full = drive(opts.concurrency, 4, plan, move |turn| {
        let c = c.clone();
        async move { redeem(&c, c.nth(turn.n)).await }
    })
    .await?;
    let labels = [
        "  POST /redeem",
        "  GET /redeem/step",
        "  POST /redeem/passcode",
        "  POST /redeem/consent",
    ];
    report(&mut rows, &mut problems, "redeem_full: whole redemptions", &full);
    let mut all: Vec<Duration> = full.parts.iter().flatten().copied().collect();
    all.sort_unstable();
    rows.push(Row {
        label: "redeem_full: all requests".to_owned(),
        count: all.len(),
        wall: full.wall,
        latencies: all,
        errors: full.failed(),
    });
    for ((label, part), errors) in labels.iter().zip(&full.parts).zip(&full.errors) {
        rows.push(Row {
            label: (*label).to_owned(),
            count: part.len(),
            wall: full.wall,
            latencies: part.clone(),
            errors: *errors,
        });
    }
    let redeemed = full.whole.len();

    // Every ticket redeemed exactly once: the directory, then replays.
    let users = site.gp.users().await?;
    let accepted = users
        .iter()
        .filter(|u| u.external_user_state == Some(ExternalUserState::Accepted))
        .count();
    let twice = users
        .iter()
        .filter(|u| u.external_user_state == Some(ExternalUserState::Accepted) && u.identities.len() != 1)
        .count();
    println!(
        "directory: {} users, {accepted} accepted, {twice} accepted with other than exactly one identity",
        users.len()
    );
    if accepted != redeemed || accepted != ctx.guests.len() {
        problems.push(format!(
            "{accepted} users accepted after {redeemed} redemptions of {} tickets",
            ctx.guests.len()
        ));
    }
    if twice > 0 {
        problems.push(format!("{twice} users redeemed more than once"));
    }
    let c = ctx.clone();
    let replays = drive(
        opts.concurrency,
        1,
        Plan {
            duration: None,
            count: Some(ctx.guests.len() as u64),
            per_task: None,
        },
        move |turn| {
            let c = c.clone();
            async move {
                let g = c.nth(turn.n);
                let a = c
                    .post("redeem", None, &[("ticket", &g.ticket), ("csrf", &g.csrf)])
                    .await
                    .map_err(|e| fail(0, e))?;
                if a.status.is_client_error() && a.cookie(REDEEM_COOKIE).is_none() {
                    Ok(Vec::new())
                } else {
                    Err(fail(0, a.unexpected("a 4xx refusal of a redeemed ticket")))
                }
            }
        },
    )
    .await?;
    println!(
        "replays: POST /redeem with each redeemed ticket: {} refused, {} not refused",
        replays.whole.len(),
        replays.failed()
    );
    for m in &replays.messages {
        println!("   {m}");
    }
    if replays.failed() > 0 {
        problems.push(format!(
            "{} redeemed tickets started a redemption again",
            replays.failed()
        ));
    }

    // 5. sign_in_start, when the router serves /signup.
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("client_id", SIGN_UP_CLIENT)
        .append_pair("redirect_uri", SIGN_UP_REDIRECT)
        .finish();
    let signup_url = ctx.url(&format!("signup?{query}"));
    let probe = ctx.get(&signup_url, None).await?;
    if probe.status == StatusCode::NOT_FOUND || probe.status == StatusCode::METHOD_NOT_ALLOWED {
        let note = format!(
            "sign_in_start skipped: the router does not serve GET /signup (it answered {})",
            probe.status
        );
        println!("{note}");
        notes.push(note);
    } else {
        let c = ctx.clone();
        let run = timed(opts, None, move |_| {
            let (c, url) = (c.clone(), signup_url.clone());
            async move {
                let a = c.get(&url, None).await.map_err(|e| fail(0, e))?;
                a.expect_redirect(&c.url("signup/step")).map_err(|e| fail(0, e))?;
                match a.cookie(FLOW_COOKIE) {
                    Some(_) => Ok(Vec::new()),
                    None => Err(fail(0, "GET /signup set no flow cookie")),
                }
            }
        })
        .await?;
        report(&mut rows, &mut problems, "sign_in_start", &run);
    }

    println!();
    print_table(opts, &rows);
    for note in &notes {
        println!("note: {note}");
    }
    if problems.is_empty() {
        Ok(())
    } else {
        for p in &problems {
            println!("FAILED: {p}");
        }
        Err(format!("{} checks failed", problems.len()).into())
    }
}

/// Prints a scenario's figures and keeps its row; an unexpected answer is
/// a problem.
fn report(rows: &mut Vec<Row>, problems: &mut Vec<String>, label: &str, run: &Run) {
    let row = Row::of(label, run);
    println!(
        "{label}: {} operations in {:.2} s, {:.0}/s, p50 {}, {} errors",
        row.count,
        row.wall.as_secs_f64(),
        row.rate(),
        ms(percentile(&row.latencies, 50)),
        row.errors
    );
    for m in &run.messages {
        println!("   {m}");
    }
    if row.errors > 0 {
        problems.push(format!("{label}: {} unexpected answers", row.errors));
    }
    rows.push(row);
}

/// Invites `n` guests with `tasks` concurrent tasks (mail to the outbox);
/// the comparison keys of their addresses, in order.
async fn invite_all(gp: &GuestPass, n: usize, tasks: usize) -> Res<Vec<String>> {
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let (gp, next) = (gp.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= n {
                    return Ok::<(), String>(());
                }
                let address = format!("guest{i:06}@fabrikam.example");
                let request = InvitationRequest {
                    invited_user_display_name: Some(format!("Guest {i}")),
                    ..InvitationRequest::new(address, APP_URL)
                };
                gp.invite(&Inviter::admin(None), request)
                    .await
                    .map_err(|e| format!("inviting guest {i}: {e}"))?;
            }
        }));
    }
    for h in handles {
        h.await??;
    }
    (0..n)
        .map(|i| {
            let address = EmailAddress::parse(&format!("guest{i:06}@fabrikam.example"))?;
            Ok(address.comparison_key().to_owned())
        })
        .collect()
}

/// Reads each ticket's CSRF token from its invitation page, `tasks` at a
/// time; the guests in order.
async fn scrape_csrf(
    client: &Client,
    base: &str,
    tickets: Vec<(String, String)>,
    tasks: usize,
) -> Res<Vec<Guest>> {
    let tickets = Arc::new(tickets);
    let next = Arc::new(AtomicU64::new(0));
    let mut handles = Vec::with_capacity(tasks);
    for _ in 0..tasks {
        let (client, base, tickets, next) = (client.clone(), base.to_owned(), tickets.clone(), next.clone());
        handles.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some((ticket, _)) = tickets.get(i) else {
                    return Ok::<_, String>(out);
                };
                let encoded: String = url::form_urlencoded::byte_serialize(ticket.as_bytes()).collect();
                let page =
                    Answer::read(client.get(format!("{base}redeem?ticket={encoded}")).send().await).await?;
                page.expect_ok()?;
                let csrf = page.csrf().ok_or("the invitation page has no CSRF token")?;
                out.push((i, csrf));
            }
        }));
    }
    let mut tokens: Vec<Option<String>> = vec![None; tickets.len()];
    for h in handles {
        for (i, csrf) in h.await?? {
            if let Some(slot) = tokens.get_mut(i) {
                *slot = Some(csrf);
            }
        }
    }
    tickets
        .iter()
        .zip(tokens)
        .map(|((ticket, key), csrf)| {
            Ok(Guest {
                ticket: ticket.clone(),
                csrf: csrf.ok_or("a ticket has no CSRF token")?,
                key: key.clone(),
            })
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Figures.

/// [`figures::ms`] with this report's precision.
fn ms(d: Option<Duration>) -> String {
    figures::ms(d, 3)
}

fn print_table(opts: &Options, rows: &[Row]) {
    let hello = rows.iter().find(|r| r.label == "hello");
    let hello_rate = hello.map(Row::rate).filter(|r| *r > 0.0);
    let hello_p50 = hello.and_then(|r| percentile(&r.latencies, 50));
    let header = [
        "scenario",
        "requests",
        "seconds",
        "req/s",
        "p50",
        "p90",
        "p99",
        "max",
        "errors",
        "req/s ÷ hello",
        "p50 ÷ hello",
    ];
    let mut table: Vec<Vec<String>> = vec![header.iter().map(|h| (*h).to_owned()).collect()];
    for r in rows {
        let p50 = percentile(&r.latencies, 50);
        table.push(vec![
            r.label.clone(),
            r.count.to_string(),
            format!("{:.2}", r.wall.as_secs_f64()),
            format!("{:.0}", r.rate()),
            ms(p50),
            ms(percentile(&r.latencies, 90)),
            ms(percentile(&r.latencies, 99)),
            ms(r.latencies.last().copied()),
            r.errors.to_string(),
            hello_rate.map_or_else(|| "-".to_owned(), |h| format!("{:.3}", r.rate() / h)),
            match (p50, hello_p50) {
                (Some(p), Some(h)) if !h.is_zero() => format!("{:.1}", p.as_secs_f64() / h.as_secs_f64()),
                _ => "-".to_owned(),
            },
        ]);
    }
    let columns = header.len();
    let widths: Vec<usize> = (0..columns)
        .map(|c| {
            table
                .iter()
                .filter_map(|row| row.get(c))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    println!(
        "{} invitations, {} client tasks, {} store, one runtime on {} threads",
        opts.invitations,
        opts.concurrency,
        match opts.database {
            Database::Sqlite => "SQLite",
            Database::Memory => "memory",
        },
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    for (i, row) in table.iter().enumerate() {
        let mut line = String::new();
        for (c, (cell, w)) in row.iter().zip(&widths).enumerate() {
            if c == 0 {
                line.push_str(&format!("{cell:<w$}"));
            } else {
                line.push_str(&format!(" | {cell:>w$}"));
            }
        }
        println!("{line}");
        if i == 0 {
            println!("{}", "-".repeat(line.chars().count()));
        }
    }
    if let Some(whole) = rows.iter().find(|r| r.label.starts_with("redeem_full: whole")) {
        println!(
            "redeem_full: {:.1} redemptions/s ({} requests each); the whole row's latency is one redemption",
            whole.rate(),
            4
        );
    }
}
