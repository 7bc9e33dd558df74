//! The PostgreSQL directory store (feature `postgres`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection};

use super::{BatchCall, SqlCore, backend_error, migrate_error, sql_store, sqlx_rows};
use crate::error::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Most connections the pool opens unless
/// [`PostgresOptions::max_connections`] says otherwise.
pub const POSTGRES_MAX_CONNECTIONS: u32 = 10;

/// How long `connect` waits for the server, and a call for a connection.
pub const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The schema guestpass keeps its tables and its migration history in, so
/// it shares a database with the host application's own tables and
/// migrations without touching them.
pub const POSTGRES_SCHEMA: &str = "guestpass";

/// Settings of every pooled connection: the guestpass schema; `READ
/// COMMITTED` (what the conditional statements are written for, whatever
/// the server's default); a bounded wait for a row lock, so a stalled
/// transaction elsewhere makes calls fail with a typed error instead of
/// hanging; and an end to transactions left idle.
const SESSION_SETTINGS: &str = "SET search_path TO guestpass; \
     SET lock_timeout = '5s'; \
     SET idle_in_transaction_session_timeout = '30s'; \
     SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED";

/// Applies [`SESSION_SETTINGS`] to a new connection. No arguments: the
/// simple query protocol, which runs several statements in one round trip.
async fn apply_session_settings(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::Executor::execute(conn, SESSION_SETTINGS).await?;
    Ok(())
}

sqlx_rows!(sqlx::postgres::PgRow);

/// A pooled connection and whether it may be handed out again.
struct PgConn {
    conn: PgConnection,
    /// Idle, outside any transaction, with nothing unread: set before a
    /// statement is sent and cleared only when the connection is back at
    /// that state. A call dropped midway (a cancelled future) or a broken
    /// connection leaves it unset, and the pool closes the connection
    /// instead of reusing it.
    clean: bool,
}

/// Opens connections with the session settings and takes back only clean
/// ones. It never pings: a connection the server dropped while idle fails
/// its next statement, which [`PgBackend`] handles.
struct PgManager {
    options: PgConnectOptions,
}

impl deadpool::managed::Manager for PgManager {
    type Type = PgConn;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConn, sqlx::Error> {
        let mut conn = PgConnection::connect_with(&self.options).await?;
        apply_session_settings(&mut conn).await?;
        Ok(PgConn { conn, clean: true })
    }

    async fn recycle(
        &self,
        c: &mut PgConn,
        _: &deadpool::managed::Metrics,
    ) -> deadpool::managed::RecycleResult<sqlx::Error> {
        if c.clean {
            Ok(())
        } else {
            Err(deadpool::managed::RecycleError::message(
                "connection left mid-call or broken",
            ))
        }
    }
}

type PgPool = deadpool::managed::Pool<PgManager>;
type Pooled = deadpool::managed::Object<PgManager>;

/// Whether an error leaves the connection unusable: anything but an error
/// the server reported at less than FATAL severity (after which it is
/// ready for the next statement).
fn breaks_connection(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(db) => db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .is_none_or(|pg| {
                matches!(
                    pg.severity(),
                    sqlx::postgres::PgSeverity::Fatal | sqlx::postgres::PgSeverity::Panic
                )
            }),
        _ => true,
    }
}

/// The pool of a [`PostgresStore`]: deadpool over sqlx connections.
///
/// A read that meets a broken connection which had been idle in the pool
/// (the server restarted, or dropped it) is repeated on another connection,
/// up to the pool size: reads change nothing, and a server restart should
/// not fail one call per pooled connection. Writes are never repeated here;
/// the caller gets the error (their conditional statements make a repeat
/// by the caller safe).
struct PgBackend {
    pool: PgPool,
}

impl PgBackend {
    async fn get(&self) -> Result<Pooled, sqlx::Error> {
        use deadpool::managed::PoolError;
        match self.pool.get().await {
            Ok(c) => Ok(c),
            Err(PoolError::Backend(e)) => Err(e),
            Err(PoolError::Closed) => Err(sqlx::Error::PoolClosed),
            Err(PoolError::Timeout(_)) => Err(sqlx::Error::PoolTimedOut),
            Err(other) => Err(sqlx::Error::Protocol(other.to_string())),
        }
    }

    /// Runs `f` on a pooled connection, keeping the connection clean when
    /// `f` ends normally and repeating a read (`retry`) that met a broken,
    /// previously idle connection.
    async fn with_conn<T, F, Fut>(&self, retry: bool, f: F) -> Result<T, sqlx::Error>
    where
        F: Fn(Pooled) -> Fut,
        Fut: std::future::Future<Output = (Pooled, Result<T, sqlx::Error>)>,
    {
        let attempts = self.pool.status().max_size + 1;
        let mut n = 0;
        loop {
            n += 1;
            let mut c = self.get().await?;
            let reused = deadpool::managed::Object::metrics(&c).recycle_count > 0;
            c.clean = false;
            let (mut c, r) = f(c).await;
            match r {
                Ok(v) => {
                    c.clean = true;
                    return Ok(v);
                }
                Err(e) if breaks_connection(&e) => {
                    drop(c);
                    if !(retry && reused && n < attempts) {
                        return Err(e);
                    }
                }
                Err(e) => {
                    c.clean = true;
                    return Err(e);
                }
            }
        }
    }
}

#[async_trait::async_trait]
impl super::Backend for PgBackend {
    async fn fetch_wide(
        &self,
        sql: &'static str,
        args: &[super::Arg],
        pairs: usize,
    ) -> Result<Vec<Vec<Option<super::Stored>>>, sqlx::Error> {
        let rows = self
            .with_conn(true, |mut c| async move {
                let r = super::bind(sqlx::query(sql), args).fetch_all(&mut c.conn).await;
                (c, r)
            })
            .await?;
        decode_wide(rows, pairs)
    }

    async fn execute(&self, sql: &'static str, args: &[super::Arg]) -> Result<u64, sqlx::Error> {
        self.with_conn(false, |mut c| async move {
            let r = super::bind(sqlx::query(sql), args).execute(&mut c.conn).await;
            (c, r.map(|done| done.rows_affected()))
        })
        .await
    }

    async fn begin(&self) -> Result<Box<dyn super::Tx>, sqlx::Error> {
        let mut c = self.get().await?;
        c.clean = false;
        sqlx::Executor::execute(&mut c.conn, "BEGIN").await?;
        Ok(Box::new(PgTx { c }))
    }
}

/// An open transaction on a pooled connection. The connection stays
/// unclean until `COMMIT` or `ROLLBACK` succeeds, so a transaction dropped
/// midway is never reused: closing the connection rolls it back.
struct PgTx {
    c: Pooled,
}

#[async_trait::async_trait]
impl super::Tx for PgTx {
    async fn execute(&mut self, sql: &'static str, args: &[super::Arg]) -> Result<u64, sqlx::Error> {
        let q = super::bind(sqlx::query(sql), args);
        Ok(q.execute(&mut self.c.conn).await?.rows_affected())
    }

    async fn commit(mut self: Box<Self>) -> Result<(), sqlx::Error> {
        sqlx::Executor::execute(&mut self.c.conn, "COMMIT").await?;
        self.c.clean = true;
        Ok(())
    }

    async fn rollback(mut self: Box<Self>) -> Result<(), sqlx::Error> {
        sqlx::Executor::execute(&mut self.c.conn, "ROLLBACK").await?;
        self.c.clean = true;
        Ok(())
    }
}

/// How a [`PostgresStore`] connects, beyond its URL.
///
/// ```
/// use guestpass::directory::PostgresOptions;
///
/// let options = PostgresOptions::default().max_connections(32);
/// assert_eq!(options.pool_size(), 32);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    max_connections: u32,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        Self {
            max_connections: POSTGRES_MAX_CONNECTIONS,
        }
    }
}

impl PostgresOptions {
    /// The most connections the pool opens (at least 1; 0 counts as 1).
    /// Commits wait for the server's disk: more connections let more of
    /// them share one flush, up to what the server's `max_connections`
    /// allows all processes together.
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }

    /// The pool size these options give.
    pub fn pool_size(&self) -> u32 {
        self.max_connections
    }
}

/// A [`DirectoryStore`](crate::directory::DirectoryStore) in a PostgreSQL
/// database (feature `postgres`), over a pool of at most
/// [`POSTGRES_MAX_CONNECTIONS`] connections (see [`PostgresOptions`]).
///
/// A commit is one call of the server-side function
/// `guestpass.commit_batch` (installed by the migrations), which runs the
/// batch's conditional statements in the call's own transaction: one round
/// trip per commit. The reads a redemption step makes are one joined query.
///
/// Every commit is one `READ COMMITTED` transaction of conditional
/// statements, so racers in any number of processes get exactly one winner.
/// The embedded schema migrations run on connect, under the advisory lock
/// sqlx's migrator takes, so several processes may connect at once.
///
/// The pool (deadpool) hands out connections without pinging them and
/// takes back only connections left idle and outside a transaction; one
/// that broke or whose call was dropped midway is closed. A read that
/// meets a connection the server dropped while it was idle is repeated on
/// another; a commit that meets one fails with [`StoreError::Backend`],
/// nothing of its batch is written, and a repeat succeeds.
///
/// TLS (rustls, with the webpki roots) follows the URL's `sslmode`:
/// `disable`, `prefer` (encrypts when the server offers it, without
/// checking its certificate), `require` (insists on encryption), and
/// `verify-ca` / `verify-full` (also check the certificate, and the host
/// name). A URL without `sslmode` gets `verify-full` unless its host is the
/// loopback interface (`localhost`, `127.0.0.1`, `::1`) or a Unix socket,
/// where it gets `prefer`: a database elsewhere is only reached over a
/// checked, encrypted connection unless the URL says otherwise.
///
/// `Debug` shows the server and database, never a password.
pub struct PostgresStore {
    pool: PgPool,
    core: SqlCore,
    shown: String,
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// brings its schema up to date and returns the store.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), guestpass::error::StoreError> {
    /// use std::sync::Arc;
    /// use guestpass::directory::{DirectoryStore, PostgresStore};
    ///
    /// let store = PostgresStore::connect("postgres://guestpass@db.internal:5432/guestpass").await?;
    /// let store: Arc<dyn DirectoryStore> = Arc::new(store);
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the URL is invalid, when the server
    /// cannot be reached within [`POSTGRES_CONNECT_TIMEOUT`] or refuses
    /// (`cannot connect to postgres://user@host:port/db: ...`, without the
    /// password), when migrating fails, or when the database's schema is
    /// newer than this version of guestpass knows (`database schema version
    /// N is newer than this guestpass (max M)`).
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_with(url, PostgresOptions::default()).await
    }

    /// [`connect`](Self::connect) with options.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), guestpass::error::StoreError> {
    /// use guestpass::directory::{PostgresOptions, PostgresStore};
    ///
    /// let options = PostgresOptions::default().max_connections(32);
    /// let store = PostgresStore::connect_with("postgres://guestpass@db.internal/guestpass", options).await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// As [`connect`](Self::connect).
    pub async fn connect_with(url: &str, settings: PostgresOptions) -> Result<Self, StoreError> {
        let shown = redact(url);
        let mut options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Backend {
            message: format!("invalid postgres url `{shown}`: {}", error_kind(&e)),
        })?;
        if needs_verified_tls(url) {
            options = options.ssl_mode(sqlx::postgres::PgSslMode::VerifyFull);
        }
        // A first connection of our own reports why the server cannot be
        // reached (the pool would retry a refused connection until its
        // timeout and then only say that it timed out).
        let conn = tokio::time::timeout(POSTGRES_CONNECT_TIMEOUT, PgConnection::connect_with(&options))
            .await
            .map_err(|_| StoreError::Backend {
                message: format!(
                    "cannot connect to {shown}: no answer within {}s",
                    POSTGRES_CONNECT_TIMEOUT.as_secs()
                ),
            })?
            .map_err(|e| backend_error(&format!("cannot connect to {shown}"), &e))?;
        let mut conn = conn;
        let prepared = prepare(&mut conn, &options).await;
        // Closing politely can fail on a broken connection; dropping it is enough.
        let _ = conn.close().await;
        prepared.map_err(|e| match e {
            Preparing::Schema(e) => backend_error(
                &format!("cannot create schema `{POSTGRES_SCHEMA}` in {shown}"),
                &e,
            ),
            Preparing::Migrate(e) => {
                let max = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
                migrate_error(&e, max)
            }
        })?;
        let pool = PgPool::builder(PgManager { options })
            .max_size(usize::try_from(settings.max_connections).unwrap_or(usize::MAX))
            .wait_timeout(Some(POSTGRES_CONNECT_TIMEOUT))
            .create_timeout(Some(POSTGRES_CONNECT_TIMEOUT))
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .map_err(|e| StoreError::Backend {
                message: format!("cannot build the connection pool for {shown}: {e}"),
            })?;
        Ok(Self {
            core: SqlCore::new(Box::new(PgBackend { pool: pool.clone() })).with_batch_call(BatchCall {
                sql: "SELECT guestpass.commit_batch($1)",
                statement_of: failed_statement,
            }),
            pool,
            shown,
        })
    }

    fn max_connections(&self) -> u32 {
        u32::try_from(self.pool.status().max_size).unwrap_or(u32::MAX)
    }

    async fn close_pool(&self) {
        self.pool.close();
    }
}

/// Why preparing the database failed.
enum Preparing {
    Schema(sqlx::Error),
    Migrate(sqlx::migrate::MigrateError),
}

/// Creates the schema on `conn`, then brings it up to date on a
/// one-connection pool of its own (the migrator holds an advisory lock on
/// that connection while it works, so concurrent connects wait for each
/// other's migrations).
async fn prepare(conn: &mut PgConnection, options: &PgConnectOptions) -> Result<(), Preparing> {
    create_schema(conn).await.map_err(Preparing::Schema)?;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(POSTGRES_CONNECT_TIMEOUT)
        .after_connect(|conn, _meta| Box::pin(apply_session_settings(conn)))
        .connect_lazy_with(options.clone());
    let migrated = MIGRATOR.run(&pool).await.map_err(Preparing::Migrate);
    pool.close().await;
    migrated
}

sql_store!(PostgresStore, "url");

/// The index `guestpass.commit_batch` names in the detail of its errors
/// (`statement <n>`).
fn failed_statement(e: &sqlx::Error) -> Option<usize> {
    let sqlx::Error::Database(db) = e else {
        return None;
    };
    db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?
        .detail()?
        .strip_prefix("statement ")?
        .parse()
        .ok()
}

/// `CREATE SCHEMA IF NOT EXISTS` can still lose a race with another process
/// creating the same schema (a unique violation); the loser tries again and
/// then finds it.
async fn create_schema(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    let sql = "CREATE SCHEMA IF NOT EXISTS guestpass";
    let mut last = None;
    for _ in 0..3 {
        match sqlx::Executor::execute(&mut *conn, sql).await {
            Ok(_) => return Ok(()),
            Err(e) => last = Some(e),
        }
    }
    match last {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Whether `url` names no `sslmode` and a host other than the loopback
/// interface or a Unix socket (those get the driver's `prefer`).
fn needs_verified_tls(url: &str) -> bool {
    let Ok(u) = url::Url::parse(url) else {
        return false;
    };
    if u.query_pairs().any(|(k, _)| k == "sslmode") {
        return false;
    }
    // A `host` parameter names a socket directory (or a host) instead.
    let socket_host = u
        .query_pairs()
        .find(|(k, _)| k == "host")
        .map(|(_, v)| v.into_owned());
    let host = match (socket_host, u.host()) {
        (Some(h), _) => h,
        (None, Some(url::Host::Domain(d))) => d.to_owned(),
        (None, Some(url::Host::Ipv4(ip))) => return !ip.is_loopback(),
        (None, Some(url::Host::Ipv6(ip))) => return !ip.is_loopback(),
        (None, None) => return false,
    };
    // URLs of this scheme leave IPv4 addresses as names.
    if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        return !ip.is_loopback();
    }
    !(host.starts_with('/') || host.eq_ignore_ascii_case("localhost"))
}

/// The URL without password and query (which may carry one).
fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            // Both fail only for URLs that cannot have credentials.
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => "<unparsable url>".to_owned(),
    }
}

/// An option parsing error without the value that failed (it may be the
/// password).
fn error_kind(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "malformed connection options",
        _ => "unreadable",
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn remote_hosts_default_to_verified_tls() {
        use super::needs_verified_tls as verified;
        assert!(verified("postgres://app@db.internal:5432/app"));
        assert!(verified("postgres://app@10.0.0.7/app"));
        assert!(verified("postgres://app@[2001:db8::1]/app"));
        assert!(!verified("postgres://app@localhost/app"));
        assert!(!verified("postgres://app@127.0.0.1:5432/app"));
        assert!(!verified("postgres://app@[::1]/app"));
        assert!(!verified("postgres://app@db.internal/app?sslmode=disable"));
        assert!(!verified("postgres://app@db.internal/app?sslmode=require"));
        assert!(!verified("postgres:///app?host=/var/run/postgresql"));
        assert!(verified("postgres:///app?host=db.internal"));
        assert!(verified("postgres://app@127.0.0.2.example/app"));
        assert!(!verified("postgres://app@127.0.0.2/app"));
    }

    #[test]
    fn redact_drops_passwords() {
        let shown = redact("postgres://alice:s3cret@db:5432/app?password=s3cret&sslmode=require");
        assert_eq!(shown, "postgres://alice@db:5432/app");
        assert_eq!(redact("not a url s3cret"), "<unparsable url>");
    }
}
