//! The SQLite directory store (feature `sqlite`).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::{MigrateError, Migrator};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions};

use super::{SQLITE_BUSY_CODES, SqlCore, backend_error, migrate_error, sql_store, sqlx_backend};
use crate::error::StoreError;

static MIGRATOR: Migrator = sqlx::migrate!("migrations/sqlite");

/// How long a writer waits for the database lock before its commit fails
/// with [`StoreError::Backend`] (`database is busy`).
pub const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Connections in the pool of a file database (one for a memory database).
const MAX_CONNECTIONS: u32 = 4;

/// How often `open` repeats an attempt that met another process opening
/// the same file (about 4 s in all).
const OPEN_ATTEMPTS: u32 = 50;

sqlx_backend!(sqlx::Sqlite, sqlx::sqlite::SqliteRow, |pool| pool
    .begin_with("BEGIN IMMEDIATE"));

/// A [`DirectoryStore`](crate::directory::DirectoryStore) in a SQLite file
/// (feature `sqlite`).
///
/// The database runs in WAL mode with `synchronous = FULL`, foreign keys on
/// and a busy timeout of [`SQLITE_BUSY_TIMEOUT`]. Every commit is one
/// `BEGIN IMMEDIATE` transaction, so writers from any number of threads and
/// processes queue for the write lock instead of failing half-way, and
/// readers never wait. The embedded schema migrations run on open; several
/// processes may open one file at once.
///
/// ```no_run
/// # async fn example() -> Result<(), guestpass::error::StoreError> {
/// use std::sync::Arc;
/// use guestpass::directory::{DirectoryStore, SqliteStore};
///
/// let store: Arc<dyn DirectoryStore> = Arc::new(SqliteStore::open("guestpass.db").await?);
/// # Ok(())
/// # }
/// ```
pub struct SqliteStore {
    pool: SqlitePool,
    core: SqlCore,
    shown: String,
}

impl SqliteStore {
    /// Opens the database at a file path or a `sqlite:` URL, creating the
    /// file if it does not exist, and brings its schema up to date.
    ///
    /// ```no_run
    /// # async fn example() -> Result<(), guestpass::error::StoreError> {
    /// use guestpass::directory::SqliteStore;
    ///
    /// let by_path = SqliteStore::open("/var/lib/guestpass/directory.db").await?;
    /// let by_url = SqliteStore::open("sqlite:///var/lib/guestpass/directory.db").await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the file cannot be opened or created,
    /// when migrating fails, or when the database's schema is newer than
    /// this version of guestpass knows (`database schema version N is newer
    /// than this guestpass (max M)`).
    pub async fn open(path_or_url: impl AsRef<Path>) -> Result<Self, StoreError> {
        let given = path_or_url.as_ref();
        let url = given.to_str().filter(|s| s.starts_with("sqlite:"));
        let options = match url {
            Some(u) => SqliteConnectOptions::from_str(u).map_err(|e| StoreError::Backend {
                message: format!("invalid sqlite url: {e}"),
            })?,
            None => SqliteConnectOptions::new().filename(given),
        };
        let memory = url.is_some_and(|u| u.contains(":memory:") || u.contains("mode=memory"));
        let location = if memory {
            ":memory:".to_owned()
        } else {
            options.get_filename().display().to_string()
        };
        Self::open_with(options, location, memory).await
    }

    /// A fresh database in memory, for tests and development. It lives as
    /// long as the store (on one connection, so commits run one at a time).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when SQLite cannot start.
    pub async fn in_memory() -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(|e| StoreError::Backend {
            message: format!("cannot open a memory database: {e}"),
        })?;
        Self::open_with(options, ":memory:".to_owned(), true).await
    }

    async fn open_with(
        options: SqliteConnectOptions,
        location: String,
        memory: bool,
    ) -> Result<Self, StoreError> {
        let options = options
            .create_if_missing(true)
            .foreign_keys(true)
            .busy_timeout(SQLITE_BUSY_TIMEOUT);
        let (pool_options, options) = if memory {
            // Each connection to `:memory:` would be another database.
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .min_connections(1)
                .idle_timeout(None)
                .max_lifetime(None);
            (pool, options)
        } else {
            let pool = SqlitePoolOptions::new().max_connections(MAX_CONNECTIONS);
            (pool, options.journal_mode(SqliteJournalMode::Wal))
        };
        // While another process creates the file, switches it to WAL or
        // migrates it, SQLite may answer `database is locked` at once,
        // without waiting for the busy timeout, or the migration may fail on
        // tables the other process just created. Both are repeated.
        let mut attempt = 0;
        let pool = loop {
            let error = match pool_options.clone().connect_with(options.clone()).await {
                Ok(pool) => match migrate(&pool).await {
                    Ok(()) => break pool,
                    Err(e) => {
                        pool.close().await;
                        e
                    }
                },
                Err(e) => Opening::Connect(e),
            };
            if attempt >= OPEN_ATTEMPTS || !error.is_transient() {
                return Err(error.into_store_error(&location));
            }
            attempt += 1;
            tokio::time::sleep(Duration::from_millis(10 * u64::from(attempt.min(10)))).await;
        };
        Ok(Self {
            core: SqlCore::new(Box::new(pool.clone())),
            pool,
            shown: location,
        })
    }
}

impl SqliteStore {
    fn max_connections(&self) -> u32 {
        self.pool.options().get_max_connections()
    }

    async fn close_pool(&self) {
        self.pool.close().await;
    }
}

sql_store!(SqliteStore, "location");

/// Why an attempt to open failed.
enum Opening {
    Connect(sqlx::Error),
    Migrate(MigrateError),
}

impl Opening {
    /// Whether another process opening the same file may have caused it.
    fn is_transient(&self) -> bool {
        match self {
            Opening::Connect(e) | Opening::Migrate(MigrateError::Execute(e)) => is_busy(e),
            // The loser of a race to apply a migration fails on what the
            // winner created; the repeat finds the migration applied.
            Opening::Migrate(MigrateError::ExecuteMigration(..)) => true,
            Opening::Migrate(_) => false,
        }
    }

    fn into_store_error(self, location: &str) -> StoreError {
        match self {
            Opening::Connect(e) => backend_error(&format!("cannot open sqlite database `{location}`"), &e),
            Opening::Migrate(e) => {
                let max = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
                migrate_error(&e, max)
            }
        }
    }
}

fn is_busy(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().is_some_and(|c| SQLITE_BUSY_CODES.contains(&c.as_ref())))
}

/// Applies the embedded migrations (sqlx's migrator takes no lock on
/// SQLite; `open` repeats a migration that lost a race).
async fn migrate(pool: &SqlitePool) -> Result<(), Opening> {
    MIGRATOR.run(pool).await.map_err(Opening::Migrate)
}
