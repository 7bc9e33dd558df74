//! The demo portal's application: options, keys, the live service (rebuilt
//! when an administrator saves new settings) and the routes around it.
//!
//! The portal is three routers in one:
//!
//! - its own pages: the home page, the admin pages ([`admin`]), the dev
//!   mailbox ([`mailbox`]), the terms and privacy pages and the stylesheet;
//! - the live router: guestpass's [`web::router`] (redemption and sign-up
//!   pages, the Graph-compatible API, the JWKS) and the demo apps
//!   ([`demo`]), built from the current [`Settings`];
//! - a fallback that hands every other request to the live router of the
//!   moment, so a settings change takes effect for the next request while
//!   flows in progress go on (the store, the keys and the CSRF key stay).

pub mod admin;
pub mod bulk;
pub mod demo;
pub mod mailbox;
pub mod page;
pub mod settings;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use guestpass::GuestPass;
use guestpass::audit::MemoryAudit;
use guestpass::directory::{DirectoryStore, MemoryStore, PostgresStore, SqliteStore};
use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::graph::auth::{AdminTokenIssuer, Scope, Scopes};
use guestpass::id::Id;
use guestpass::mail::{MailTransport, Outbox, SmtpMailer, SmtpSecurity};
use guestpass::random::{SecureRandom, SystemRandom};
use guestpass::secret::SecretString;
use guestpass::web::{self, WebConfig};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tower::ServiceExt as _;
use url::Url;

pub use settings::Settings;

/// Any error of the portal's set-up.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The administrator the portal signs in: a fixed object id, so admin
/// tokens survive a restart of the portal (they are checked by signature).
pub fn admin_id() -> Id {
    Id::from_bytes([
        0x0a, 0xd3, 0x1e, 0x5c, 0x7b, 0x4f, 0x4c, 0x1a, 0x9e, 0x2d, 0x6f, 0x8b, 0x3c, 0x5a, 0x7d, 0x01,
    ])
}

/// Where the directory lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file (created when missing).
    Sqlite(PathBuf),
    /// A PostgreSQL URL.
    Postgres(String),
    /// Nothing kept: the in-memory store.
    Memory,
}

/// Where mail goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailChoice {
    /// The dev mailbox at `/dev/mailbox` (nothing leaves the process).
    Outbox,
    /// An SMTP server `host:port`, plain (for a local development server).
    Smtp(String),
}

/// The command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// The address to listen on (`--listen`, default `127.0.0.1:8080`).
    pub listen: SocketAddr,
    /// The directory (`--database`).
    pub database: Database,
    /// The mail transport (`--smtp host:port`, default the dev mailbox).
    pub mail: MailChoice,
    /// Keys and saved settings (`--data`, default `target/portal`).
    pub data_dir: PathBuf,
    /// The public base URL (`--base-url`, default `http://<listen>/`).
    pub base_url: Option<Url>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            database: Database::Sqlite(PathBuf::from("target/portal/directory.sqlite3")),
            mail: MailChoice::Outbox,
            data_dir: PathBuf::from("target/portal"),
            base_url: None,
        }
    }
}

impl Options {
    /// The `--help` text.
    pub const USAGE: &'static str = "\
usage: cargo run --features demo --example portal -- [options]

  --listen ADDR        address to listen on (default 127.0.0.1:8080; port 0 picks one)
  --database WHERE     sqlite:PATH (default sqlite:target/portal/directory.sqlite3),
                       postgres://..., or memory
  --smtp HOST:PORT     send mail to a plain SMTP server instead of the dev mailbox
  --data DIR           keys and saved settings (default target/portal)
  --base-url URL       public base URL (default http://<listen>/)
  --help               this text";

    /// Parses the arguments after the program name; `None` for `--help`.
    ///
    /// # Errors
    ///
    /// A message naming the bad argument.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Option<Self>, String> {
        let mut options = Self::default();
        let mut data_dir_set = false;
        let mut database_set = false;
        let mut args = args.into_iter();
        while let Some(arg) = args.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n.to_owned(), Some(v.to_owned())),
                _ => (arg.clone(), None),
            };
            if name == "--help" || name == "-h" {
                return Ok(None);
            }
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| args.next())
                    .ok_or_else(|| format!("`{name}` needs a value"))
            };
            match name.as_str() {
                "--listen" => {
                    let v = value()?;
                    options.listen = v
                        .parse()
                        .map_err(|_| format!("`--listen {v}` is not an address such as 127.0.0.1:8080"))?;
                }
                "--database" => {
                    options.database = parse_database(&value()?)?;
                    database_set = true;
                }
                "--smtp" => options.mail = MailChoice::Smtp(value()?),
                "--data" => {
                    options.data_dir = PathBuf::from(value()?);
                    data_dir_set = true;
                }
                "--base-url" => {
                    let v = value()?;
                    let url = Url::parse(&v).map_err(|e| format!("`--base-url {v}`: {e}"))?;
                    options.base_url = Some(url);
                }
                other => return Err(format!("unknown argument `{other}`")),
            }
        }
        if data_dir_set && !database_set {
            options.database = Database::Sqlite(options.data_dir.join("directory.sqlite3"));
        }
        options.check()?;
        Ok(Some(options))
    }

    /// Refuses combinations that would expose the dev mailbox.
    ///
    /// The mailbox page shows every mail the portal sent, sign-in links and
    /// one-time passcodes included, to whoever can open it, so it is only
    /// served on a loopback address and under a loopback base URL. A portal
    /// that others reach sends its mail with `--smtp`.
    ///
    /// # Errors
    ///
    /// A message naming `--listen` or `--base-url` and the way out.
    pub fn check(&self) -> Result<(), String> {
        if self.mail != MailChoice::Outbox {
            return Ok(());
        }
        if !self.listen.ip().is_loopback() {
            return Err(format!(
                "`--listen {}` is not a loopback address, and the dev mailbox would show every sign-in \
                 link and passcode to whoever reaches it: listen on 127.0.0.1 or send mail with --smtp",
                self.listen
            ));
        }
        match &self.base_url {
            Some(base) if !guestpass::config::is_loopback(base) => Err(format!(
                "`--base-url {base}` is not a loopback address, and the dev mailbox would show every \
                 sign-in link and passcode to whoever reaches it: send mail with --smtp"
            )),
            _ => Ok(()),
        }
    }
}

fn parse_database(value: &str) -> Result<Database, String> {
    if value == "memory" {
        Ok(Database::Memory)
    } else if value.starts_with("postgres://") || value.starts_with("postgresql://") {
        Ok(Database::Postgres(value.to_owned()))
    } else if let Some(path) = value.strip_prefix("sqlite:") {
        let path = path.trim_start_matches("//");
        if path.is_empty() {
            return Err("`--database sqlite:` needs a file path".to_owned());
        }
        Ok(Database::Sqlite(PathBuf::from(path)))
    } else {
        Err(format!(
            "`--database {value}`: use sqlite:PATH, postgres://... or memory"
        ))
    }
}

/// The parts of the portal that never change while it runs.
pub struct Deps {
    /// The public base URL (ends with `/`).
    pub base: Url,
    /// The directory.
    pub store: Arc<dyn DirectoryStore>,
    /// The mail transport.
    pub mail: Arc<dyn MailTransport>,
    /// The dev mailbox, when mail stays in the process.
    pub outbox: Option<Arc<Outbox>>,
    /// Audit events, newest last (shown on the admin page).
    pub audit: Arc<MemoryAudit>,
    /// The key of redemption tickets.
    pub ticket_key: [u8; 32],
    /// The key of CSRF tokens (guestpass's pages and the portal's).
    pub csrf_key: [u8; 32],
    /// Completion token keys.
    pub token_keys: TokenKeys,
    /// Admin token keys.
    pub admin_tokens: AdminTokenIssuer,
    /// Randomness.
    pub random: Arc<SystemRandom>,
    /// Where settings are saved.
    pub data_dir: PathBuf,
}

/// The service of the moment and the router built around it.
#[derive(Clone)]
pub struct Live {
    /// The service.
    pub gp: GuestPass,
    /// guestpass's router and the demo apps.
    pub router: Router,
    /// The settings it was built from.
    pub settings: Settings,
}

/// What every portal handler shares.
pub struct Portal {
    /// The fixed parts.
    pub deps: Deps,
    live: RwLock<Live>,
    /// Admin sign-in.
    pub admin: admin::AdminAuth,
}

/// The shared state of the portal's handlers.
pub type Shared = Arc<Portal>;

impl Portal {
    /// The live service and router.
    pub fn live(&self) -> Live {
        match self.live.read() {
            Ok(live) => live.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Builds a service from `settings` and, if it builds, makes it live
    /// and saves the settings.
    ///
    /// # Errors
    ///
    /// The first setting that does not build, by name; nothing changes.
    pub fn replace_settings(&self, settings: Settings) -> Result<(), settings::SettingsError> {
        let live = build_live(&self.deps, settings)?;
        live.settings.save(&self.deps.data_dir);
        match self.live.write() {
            Ok(mut slot) => *slot = live,
            Err(poisoned) => *poisoned.into_inner() = live,
        }
        Ok(())
    }

    /// An absolute link on the public base URL.
    pub fn link(&self, path: &str) -> String {
        self.deps
            .base
            .join(path.trim_start_matches('/'))
            .map_or_else(|_| self.deps.base.to_string(), |u| u.to_string())
    }
}

/// Builds the service and the live router from `settings`.
///
/// # Errors
///
/// The first setting that does not build.
pub fn build_live(deps: &Deps, settings: Settings) -> Result<Live, settings::SettingsError> {
    let gp = settings.build(deps)?;
    let config = WebConfig::new(deps.admin_tokens.clone())
        .csrf_key(deps.csrf_key)
        .random(deps.random.clone());
    let router = web::router(gp.clone(), config).merge(demo::routes(&gp, deps)?);
    Ok(Live { gp, router, settings })
}

/// A started portal.
pub struct Running {
    /// The public base URL.
    pub base_url: Url,
    /// The bound address.
    pub addr: SocketAddr,
    /// The one-time administrator sign-in link.
    pub admin_link: SecretString,
    /// An admin API bearer token (8 hours, every scope).
    pub api_token: SecretString,
    /// The shared state (the live service, the dev mailbox).
    pub portal: Shared,
    shutdown: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Running {
    /// What the portal prints when it starts.
    pub fn banner(&self) -> String {
        let base = &self.base_url;
        let mailbox = if self.portal.deps.outbox.is_some() {
            format!("  dev mailbox:        {base}dev/mailbox\n")
        } else {
            String::new()
        };
        format!(
            "guestpass demo portal for Contoso on {base}\n\
             \n\
             {mailbox}  demo app:           {base}app\n\
             \x20 payroll (MFA):      {base}payroll\n\
             \x20 sign up:            {base}app/sign-in\n\
             \n\
             One-time administrator sign-in link (valid once, until the portal stops):\n\
             \x20 {link}\n\
             \n\
             Admin API token (8 hours), for example:\n\
             \x20 curl -s -H 'Authorization: Bearer {token}' {base}v1.0/users\n",
            link = self.admin_link.expose(),
            token = self.api_token.expose(),
        )
    }

    /// Waits while the server runs; returns when it fails.
    ///
    /// # Errors
    ///
    /// The server's I/O error.
    pub async fn serve(&mut self) -> Result<(), BoxError> {
        (&mut self.task).await??;
        Ok(())
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// A portal ready to serve: its state and its first admin credentials.
pub struct Prepared {
    /// The shared state.
    pub portal: Shared,
    /// The one-time administrator sign-in link.
    pub admin_link: SecretString,
    /// An admin API bearer token (8 hours, every scope).
    pub api_token: SecretString,
}

/// Binds the listener, prepares the portal for the bound address and starts
/// serving.
///
/// # Errors
///
/// An address that cannot be bound, options [`Options::check`] refuses, or
/// what [`prepare`] refuses.
pub async fn start(options: Options) -> Result<Running, BoxError> {
    options.check()?;
    let listener = TcpListener::bind(options.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", options.listen))?;
    let addr = listener.local_addr()?;
    let base = match &options.base_url {
        Some(url) if url.path().ends_with('/') => url.clone(),
        Some(url) => Url::parse(&format!("{url}/"))?,
        None => Url::parse(&format!("http://{addr}/"))?,
    };
    let Prepared {
        portal,
        admin_link,
        api_token,
    } = prepare(&options, base.clone()).await?;
    let app = routes(portal.clone());
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
    });
    Ok(Running {
        base_url: base,
        addr,
        admin_link,
        api_token,
        portal,
        shutdown: Some(tx),
        task,
    })
}

/// Opens the store, loads or creates the keys and builds the service for
/// the public base URL `base` (ending with `/`).
///
/// # Errors
///
/// A store that cannot be opened, keys that cannot be read or written, or
/// settings that do not build even as the defaults.
pub async fn prepare(options: &Options, base: Url) -> Result<Prepared, BoxError> {
    std::fs::create_dir_all(&options.data_dir)
        .map_err(|e| format!("cannot create `{}`: {e}", options.data_dir.display()))?;
    let store: Arc<dyn DirectoryStore> = match &options.database {
        Database::Sqlite(path) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)?;
            }
            Arc::new(
                SqliteStore::open(path)
                    .await
                    .map_err(|e| format!("cannot open the SQLite directory `{}`: {e}", path.display()))?,
            )
        }
        Database::Postgres(url) => Arc::new(
            PostgresStore::connect(url)
                .await
                .map_err(|e| format!("cannot open the PostgreSQL directory: {e}"))?,
        ),
        Database::Memory => Arc::new(MemoryStore::new()),
    };
    let (mail, outbox): (Arc<dyn MailTransport>, Option<Arc<Outbox>>) = match &options.mail {
        MailChoice::Outbox => {
            let outbox = Arc::new(Outbox::new());
            (outbox.clone(), Some(outbox))
        }
        MailChoice::Smtp(server) => {
            let (host, port) = server
                .rsplit_once(':')
                .and_then(|(h, p)| Some((h.to_owned(), p.parse::<u16>().ok()?)))
                .ok_or_else(|| format!("`--smtp {server}` is not HOST:PORT"))?;
            let mailer = SmtpMailer::builder()
                .host(host)
                .port(port)
                .security(SmtpSecurity::Plain)
                .insecure_plain_to_any_host()
                .from("invites@contoso.example")
                .from_name("Contoso")
                .build()?;
            (Arc::new(mailer), None)
        }
    };

    let random = Arc::new(SystemRandom::new());
    let keys = Keys::load_or_create(&options.data_dir, random.as_ref())?;
    let admin_tokens = AdminTokenIssuer::new(&keys.admin, &base)?;
    let deps = Deps {
        base: base.clone(),
        store,
        mail,
        outbox,
        audit: Arc::new(MemoryAudit::new()),
        ticket_key: keys.ticket,
        csrf_key: keys.csrf,
        token_keys: keys.tokens,
        admin_tokens: admin_tokens.clone(),
        random: random.clone(),
        data_dir: options.data_dir.clone(),
    };
    let settings = Settings::load(&options.data_dir);
    let live = match build_live(&deps, settings) {
        Ok(live) => live,
        Err(e) => {
            eprintln!("saved settings do not build ({e}); starting with the defaults");
            build_live(&deps, Settings::default())?
        }
    };
    let (admin, admin_link) = admin::AdminAuth::new(&base, random.clone())?;
    let now = time::OffsetDateTime::now_utc();
    let api_token = admin_tokens.issue(
        admin_id(),
        &all_scopes(),
        time::Duration::hours(8),
        now,
        random.as_ref(),
    )?;
    let portal: Shared = Arc::new(Portal {
        deps,
        live: RwLock::new(live),
        admin,
    });
    Ok(Prepared {
        portal,
        admin_link,
        api_token,
    })
}

/// Every admin scope.
pub fn all_scopes() -> Scopes {
    let mut scopes = Scopes::empty();
    for s in Scope::ALL {
        scopes.insert(s);
    }
    scopes
}

/// The portal's router: its own pages, then the live router for the rest.
pub fn routes(portal: Shared) -> Router {
    Router::new()
        .route("/", get(page::home))
        .route("/static/portal.css", get(page::stylesheet))
        .route("/terms/guests", get(page::terms))
        .route("/privacy", get(page::privacy))
        .merge(admin::routes())
        .merge(mailbox::routes())
        .fallback(live_router)
        .layer(axum::middleware::map_response(web::security::apply))
        .with_state(portal)
}

/// Hands the request to the live router of the moment.
async fn live_router(State(portal): State<Shared>, request: Request) -> Response {
    let router = portal.live().router;
    match router.oneshot(request).await {
        Ok(response) => response,
        Err(never) => match never {},
    }
    .into_response()
}

/// The portal's keys, kept in the data directory so links and tokens
/// survive a restart.
struct Keys {
    ticket: [u8; 32],
    csrf: [u8; 32],
    tokens: TokenKeys,
    admin: TokenKeys,
}

impl Keys {
    fn load_or_create(dir: &Path, rng: &dyn SecureRandom) -> Result<Self, BoxError> {
        let ticket = secret_file(&dir.join("ticket.key"), rng)?;
        let csrf = secret_file(&dir.join("csrf.key"), rng)?;
        let tokens = TokenKeys::new(token_key_file(&dir.join("token-key.pem"), "portal-1", rng)?);
        let admin = TokenKeys::new(token_key_file(
            &dir.join("admin-token-key.pem"),
            "portal-admin-1",
            rng,
        )?);
        Ok(Self {
            ticket,
            csrf,
            tokens,
            admin,
        })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    options.open(path)?.write_all(bytes)
}

fn secret_file(path: &Path, rng: &dyn SecureRandom) -> Result<[u8; 32], BoxError> {
    if let Ok(bytes) = std::fs::read(path) {
        return <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| {
            format!(
                "`{}` must hold 32 bytes; delete it to make a new key",
                path.display()
            )
            .into()
        });
    }
    let mut key = [0u8; 32];
    rng.fill(&mut key)?;
    write_private(path, &key)?;
    Ok(key)
}

fn token_key_file(path: &Path, kid: &str, rng: &dyn SecureRandom) -> Result<TokenSigningKey, BoxError> {
    if let Ok(pem) = std::fs::read_to_string(path) {
        return TokenSigningKey::from_pkcs8_pem(kid, TokenAlgorithm::Es256, &pem)
            .map_err(|e| format!("`{}`: {e}; delete it to make a new key", path.display()).into());
    }
    let key = TokenSigningKey::generate(kid, TokenAlgorithm::Es256, rng)?;
    write_private(path, key.export_pkcs8_pem().expose().as_bytes())?;
    Ok(key)
}
