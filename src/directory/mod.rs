//! The directory: the Graph-shaped model, the store trait, and its
//! implementations: in memory (always), SQLite (feature `sqlite`) and
//! PostgreSQL (feature `postgres`).
//!
//! Storage adapters implement [`DirectoryStore`]; the `conformance` suite
//! (feature `conformance`) checks that an adapter keeps every guarantee the
//! core relies on.

#[cfg(feature = "conformance")]
pub mod conformance;
mod memory;
mod model;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod sql;
mod store;

pub use memory::MemoryStore;
pub use model::*;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use sql::CommitHook;
#[cfg(feature = "postgres")]
pub use sql::postgres::{POSTGRES_CONNECT_TIMEOUT, POSTGRES_MAX_CONNECTIONS, PostgresOptions, PostgresStore};
#[cfg(feature = "sqlite")]
pub use sql::sqlite::{SQLITE_BUSY_TIMEOUT, SqliteStore};
pub use store::{DirectoryStore, Expect, PurgeReport, RedemptionRecords, Versioned, Write, WriteBatch};
