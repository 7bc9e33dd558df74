//! The PostgreSQL directory store (feature `postgres`).

use std::str::FromStr;
use std::time::Duration;

use sqlx::Connection as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};

use super::{SqlCore, backend_error, migrate_error, sql_store, sqlx_backend};
use crate::error::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/postgres");

/// Most connections the pool opens.
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

sqlx_backend!(sqlx::Postgres, sqlx::postgres::PgRow, |pool| pool.begin());

/// A [`DirectoryStore`](crate::directory::DirectoryStore) in a PostgreSQL
/// database (feature `postgres`), over a pool of at most
/// [`POSTGRES_MAX_CONNECTIONS`] connections.
///
/// Every commit is one `READ COMMITTED` transaction of conditional
/// statements, so racers in any number of processes get exactly one winner.
/// The embedded schema migrations run on connect, under the advisory lock
/// sqlx's migrator takes, so several processes may connect at once. A
/// connection the server drops is replaced on the next call: the call that
/// meets the broken connection fails with [`StoreError::Backend`], nothing
/// of its batch is written, and a repeat succeeds.
///
/// TLS (rustls, with the webpki roots) follows the URL's `sslmode`:
/// `prefer` (the default) encrypts when the server offers it without
/// checking its certificate, `require` insists on encryption, and
/// `verify-ca` / `verify-full` also check the certificate (and host name).
/// Use `sslmode=verify-full` for a database on another host.
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
        let shown = redact(url);
        let options = PgConnectOptions::from_str(url).map_err(|e| StoreError::Backend {
            message: format!("invalid postgres url `{shown}`: {}", error_kind(&e)),
        })?;
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
        let created = create_schema(&mut conn).await;
        // Closing politely can fail on a broken connection; dropping it is enough.
        let _ = conn.close().await;
        created.map_err(|e| {
            backend_error(
                &format!("cannot create schema `{POSTGRES_SCHEMA}` in {shown}"),
                &e,
            )
        })?;
        let pool = PgPoolOptions::new()
            .max_connections(POSTGRES_MAX_CONNECTIONS)
            .acquire_timeout(POSTGRES_CONNECT_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    // No arguments: the simple query protocol, which runs
                    // several statements in one round trip.
                    sqlx::Executor::execute(&mut *conn, SESSION_SETTINGS).await?;
                    Ok(())
                })
            })
            .connect_lazy_with(options);
        // The migrator holds an advisory lock while it works, so concurrent
        // connects wait for each other's migrations.
        let max = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        if let Err(e) = MIGRATOR.run(&pool).await {
            pool.close().await;
            return Err(migrate_error(&e, max));
        }
        Ok(Self {
            core: SqlCore::new(Box::new(pool.clone())),
            pool,
            shown,
        })
    }
}

sql_store!(PostgresStore, "url");

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
    fn redact_drops_passwords() {
        let shown = redact("postgres://alice:s3cret@db:5432/app?password=s3cret&sslmode=require");
        assert_eq!(shown, "postgres://alice@db:5432/app");
        assert_eq!(redact("not a url s3cret"), "<unparsable url>");
    }
}
