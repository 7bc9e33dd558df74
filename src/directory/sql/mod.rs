//! SQL directory stores on sqlx: [`SqliteStore`](super::SqliteStore)
//! (feature `sqlite`) and [`PostgresStore`](super::PostgresStore) (feature
//! `postgres`).
//!
//! Both backends share this module: one schema shape, one set of statements
//! (SQL text with `$n` placeholders runs on both), one commit algorithm, one
//! error mapping. The backend files only open pools and run the embedded
//! migrations.
//!
//! # Schema
//!
//! Each table holds the record itself as JSON in `data` (serde_json of the
//! model record; `TEXT` on SQLite, `JSONB` on PostgreSQL), its `version`
//! (1 after insert, one more after every update) and the key columns every
//! lookup uses: `users (id, tenant_id, mail_key UNIQUE per tenant,
//! created_at)`, `user_identities (tenant_id, issuer, issuer_assigned_id)
//! PRIMARY KEY → user_id`, `invitations (id, tenant_id, ticket_expires_at)`,
//! `throttles (tenant_id, address_key)`, `flows (id, tenant_id,
//! handle_hash UNIQUE, awaiting_approval, created_at, expires_at)`
//! (migration 0003; migration 0004 drops the redemption sessions and
//! passcodes of schema version 1, which redemption flows replaced). Timestamps are unix
//! microseconds; expiries are rounded up and "now" down, so a record is never
//! purged before it has expired (at most a microsecond after).
//! `ticket_expires_at` is set while an invitation holds a ticket binding, so
//! its (partial) index holds exactly the bindings a purge may clear.
//!
//! # Commit
//!
//! [`commit`](crate::directory::DirectoryStore::commit) runs one transaction (SQLite: `BEGIN
//! IMMEDIATE`, so writers queue on the busy timeout instead of failing
//! half-way; PostgreSQL: `READ COMMITTED`). Every statement is conditional;
//! there is never a read followed by an unconditional write:
//!
//! 1. In batch order, every write's precondition is a statement: an insert
//!    is `INSERT ... ON CONFLICT (key) DO NOTHING`, an update is
//!    `UPDATE ... SET ..., version = version + 1 WHERE key AND tenant_id = $t
//!    AND version = $n`; zero rows affected is [`StoreError::Conflict`] (also
//!    when the row exists under another tenant). A flow's update also
//!    names its handle hash (`AND handle_hash = $h`), so an update that
//!    would change it is a conflict; an insert whose handle hash another
//!    flow holds is a unique violation, [`StoreError::Duplicate`] (`flow
//!    handle`). A user is written with
//!    `mail_key` NULL and its identity rows deleted, which releases every
//!    address and identity the batch's users held.
//! 2. Then every user of the batch claims its new mail key and inserts its
//!    identity rows; a unique violation is [`StoreError::Duplicate`]
//!    (`user mail` or `identity`). Because all releases come first, swaps and
//!    move-and-reclaim within one batch commit, as in the memory store.
//!
//! 3. Last, the invitations and redemption flows of every user the batch
//!    deletes are removed (see below).
//!
//! A batch that writes a single user sets its mail key in the user's own
//! statement instead (there is no swap to order), which spares a second
//! update of the row.
//!
//! A user deletion ([`Write::DeleteUser`]) is, among the preconditions,
//! `DELETE FROM users WHERE id AND tenant_id = $t AND version = $n` (zero
//! rows is a conflict), which frees the user's mail key and, by
//! `ON DELETE CASCADE` (and an explicit delete after it), its identity
//! rows; it counts as a user of the batch, so the claims of the batch's
//! other users follow it. After the claims come two deletes that find the
//! user's records by the ids their JSON holds: the tenant's redemption
//! flows bound to the user (`redemption.userId`) or to one of its
//! invitations (`redemption.invitationId`), then the tenant's invitations
//! whose `invitation.invitedUser.id` is the user. They scan the tenant's
//! rows (no index covers those paths): deletion is an administrator's
//! operation, not a sign-in's. No foreign key ties invitations or flows to
//! users, so the schema needs no migration for it.
//!
//! PostgreSQL runs the whole plan in one round trip: the statements are
//! sent as one JSON batch to the function `guestpass.commit_batch`
//! (migration 0002; migrations 0003 and 0004 replace it as the flow
//! statements come and the session and passcode statements go), which runs the same statements in order inside the
//! calling statement's transaction and raises SQLSTATE `GP001` for a failed
//! precondition, naming the failing statement by index in every error's
//! detail. While a fault-injection hook is installed the plan runs
//! statement by statement instead, so the hook runs between statements; so
//! does a plan that deletes a user, whose statements the function of
//! migration 0004 does not know (a transaction of its own, with
//! `READ COMMITTED`: a racer's conditional `UPDATE` or `DELETE` of the
//! user waits for it and then matches no row).
//!
//! Any error rolls the transaction back: nothing of the batch is visible.
//! PostgreSQL re-evaluates an `UPDATE`'s `WHERE` after a concurrent writer
//! commits, so of racers that read one version exactly one matches; a
//! deadlock or serialization failure between racers is reported as
//! [`StoreError::Conflict`] (retryable). A SQLite writer that still finds
//! the database locked after the busy timeout (5 s) gets
//! [`StoreError::Backend`] (`database is busy`), which the service reports as
//! unavailable (503); it is not a lost compare-and-set, so it is not a
//! conflict.
//!
//! # Joined reads
//!
//! [`redemption_by_invitation`](crate::directory::DirectoryStore::redemption_by_invitation)
//! and [`redemption_by_flow`](crate::directory::DirectoryStore::redemption_by_flow)
//! are one query each: `LEFT JOIN`s from the flow or invitation along the
//! ids its JSON holds (`redemption.invitationId`,
//! `invitation.invitedUser.id`) to primary keys, so a redemption step reads
//! once.
//!
//! # Purge
//!
//! [`purge_expired`](crate::directory::DirectoryStore::purge_expired) runs
//! its statements each on its own (what was purged before a failure stays
//! purged): one bounded `DELETE` for flows (oldest expiry first; the `DELETE` repeats the expiry condition, so a
//! flow whose expiry a concurrent commit extended stays), then, for the
//! oldest expired ticket bindings, the same conditional `UPDATE` a commit
//! uses, so an invitation changed meanwhile keeps its change.
//!
//! # Flows awaiting approval
//!
//! [`flows_awaiting_approval`](crate::directory::DirectoryStore::flows_awaiting_approval)
//! reads the tenant's rows with `awaiting_approval` set (a column kept from
//! [`FlowRecord::awaiting_approval`] by every write) and an expiry after
//! "now" (rounded down, so the rows are a superset of the live ones), by
//! `(created_at, id)` through the index `flows_tenant_awaiting`; the decoded
//! records are then filtered against `now` and ordered exactly, as the
//! memory store does.
//!
//! # Errors
//!
//! Error messages name the statement's record kind and key and the
//! database's message, never record contents (a stored record that does
//! not decode is named, not quoted).

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use sqlx::types::Json;
use sqlx::{Database, Encode, Type};
use time::OffsetDateTime;

use crate::directory::model::{AddressThrottle, FlowRecord, InvitationRecord, UserRecord};
use crate::directory::store::{Expect, PurgeReport, RedemptionRecords, Versioned, Write, WriteBatch};
use crate::error::StoreError;
use crate::id::Id;
use crate::secret::Digest;

#[cfg(feature = "postgres")]
pub(crate) mod postgres;
#[cfg(feature = "sqlite")]
pub(crate) mod sqlite;

/// A fault-injection hook for tests: called with `n` after the `n`-th
/// statement (counting from 1) inside a commit transaction, before the next
/// statement or the final `COMMIT`. Returning `Err(reason)` aborts the commit:
/// the transaction is rolled back and `commit` returns
/// [`StoreError::Backend`] naming the reason. A hook may also stop the
/// process (`std::process::abort`) or cut the connection, to show that an
/// interrupted commit leaves all or nothing.
///
/// Install it with `SqliteStore::with_commit_hook` or
/// `PostgresStore::with_commit_hook`. Production code has no reason to.
pub type CommitHook = Arc<dyn Fn(usize) -> Result<(), String> + Send + Sync>;

/// A statement parameter.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    OptText(Option<String>),
    Int(i64),
    OptInt(Option<i64>),
    Bool(bool),
    Json(Box<RawValue>),
}

/// A fetched row: every read selects `version, data`.
#[derive(Debug)]
pub(crate) struct Stored {
    version: i64,
    data: Box<RawValue>,
}

/// One open transaction of a backend.
#[async_trait]
pub(crate) trait Tx: Send {
    /// Runs a statement; returns the rows affected.
    async fn execute(&mut self, sql: &'static str, args: &[Arg]) -> Result<u64, sqlx::Error>;
    /// Commits.
    async fn commit(self: Box<Self>) -> Result<(), sqlx::Error>;
    /// Rolls back.
    async fn rollback(self: Box<Self>) -> Result<(), sqlx::Error>;
}

/// A backend's connection pool.
#[async_trait]
pub(crate) trait Backend: Send + Sync {
    /// Runs a query selecting `version, data` (never NULL) outside any
    /// transaction: [`fetch_wide`](Self::fetch_wide) of one pair.
    async fn fetch(&self, sql: &'static str, args: &[Arg]) -> Result<Vec<Stored>, sqlx::Error> {
        self.fetch_wide(sql, args, 1)
            .await?
            .into_iter()
            .map(|row| {
                row.into_iter()
                    .next()
                    .flatten()
                    .ok_or_else(|| sqlx::Error::Decode("a stored row without version or data".into()))
            })
            .collect()
    }
    /// Runs a query selecting `pairs` pairs of `version, data` columns
    /// (either NULL where a join found nothing) outside any transaction.
    async fn fetch_wide(
        &self,
        sql: &'static str,
        args: &[Arg],
        pairs: usize,
    ) -> Result<Vec<Vec<Option<Stored>>>, sqlx::Error>;
    /// Runs one statement in a transaction of its own; returns the rows
    /// affected.
    async fn execute(&self, sql: &'static str, args: &[Arg]) -> Result<u64, sqlx::Error>;
    /// Begins a write transaction.
    async fn begin(&self) -> Result<Box<dyn Tx>, sqlx::Error>;
}

/// Binds `args` in order.
pub(crate) fn bind<'q, DB>(
    mut q: sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>,
    args: &'q [Arg],
) -> sqlx::query::Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
    bool: Encode<'q, DB> + Type<DB>,
    Json<&'q RawValue>: Encode<'q, DB> + Type<DB>,
{
    for a in args {
        q = match a {
            Arg::Text(s) => q.bind(s.as_str()),
            Arg::OptText(s) => q.bind(s.as_deref()),
            Arg::Int(i) => q.bind(*i),
            Arg::OptInt(i) => q.bind(*i),
            Arg::Bool(b) => q.bind(*b),
            Arg::Json(v) => q.bind(Json(v.as_ref())),
        };
    }
    q
}

/// Defines `decode_wide`, which turns one sqlx database's rows into
/// [`Stored`] records.
macro_rules! sqlx_rows {
    ($row:ty) => {
        fn decode_wide(
            rows: Vec<$row>,
            pairs: usize,
        ) -> Result<Vec<Vec<Option<$crate::directory::sql::Stored>>>, sqlx::Error> {
            use sqlx::Row as _;
            rows.iter()
                .map(|r| {
                    (0..pairs)
                        .map(|k| {
                            let version: Option<i64> = r.try_get(2 * k)?;
                            let data: Option<sqlx::types::Json<Box<serde_json::value::RawValue>>> =
                                r.try_get(2 * k + 1)?;
                            Ok(version
                                .zip(data)
                                .map(|(v, d)| $crate::directory::sql::Stored::new(v, d.0)))
                        })
                        .collect()
                })
                .collect()
        }
    };
}
pub(crate) use sqlx_rows;

/// Implements [`Tx`] and [`Backend`] for one sqlx database over its
/// `sqlx::Pool`; `$begin` opens a write transaction on a pool.
#[cfg(feature = "sqlite")]
macro_rules! sqlx_backend {
    ($db:ty, $row:ty, |$pool:ident| $begin:expr) => {
        $crate::directory::sql::sqlx_rows!($row);

        #[async_trait::async_trait]
        impl $crate::directory::sql::Tx for sqlx::Transaction<'static, $db> {
            async fn execute(
                &mut self,
                sql: &'static str,
                args: &[$crate::directory::sql::Arg],
            ) -> Result<u64, sqlx::Error> {
                let q = $crate::directory::sql::bind(sqlx::query(sql), args);
                Ok(q.execute(&mut **self).await?.rows_affected())
            }

            async fn commit(self: Box<Self>) -> Result<(), sqlx::Error> {
                (*self).commit().await
            }

            async fn rollback(self: Box<Self>) -> Result<(), sqlx::Error> {
                (*self).rollback().await
            }
        }

        #[async_trait::async_trait]
        impl $crate::directory::sql::Backend for sqlx::Pool<$db> {
            async fn fetch_wide(
                &self,
                sql: &'static str,
                args: &[$crate::directory::sql::Arg],
                pairs: usize,
            ) -> Result<Vec<Vec<Option<$crate::directory::sql::Stored>>>, sqlx::Error> {
                let q = $crate::directory::sql::bind(sqlx::query(sql), args);
                decode_wide(q.fetch_all(self).await?, pairs)
            }

            async fn execute(
                &self,
                sql: &'static str,
                args: &[$crate::directory::sql::Arg],
            ) -> Result<u64, sqlx::Error> {
                let q = $crate::directory::sql::bind(sqlx::query(sql), args);
                Ok(q.execute(self).await?.rows_affected())
            }

            async fn begin(&self) -> Result<Box<dyn $crate::directory::sql::Tx>, sqlx::Error> {
                let $pool = self;
                Ok(Box::new($begin.await?))
            }
        }
    };
}
#[cfg(feature = "sqlite")]
pub(crate) use sqlx_backend;

/// Implements [`DirectoryStore`](crate::directory::DirectoryStore),
/// `Debug` and the hook and close methods for a store type with fields
/// `core: SqlCore` and `shown: String` (where it is, without secrets;
/// labelled `$shown` in `Debug`) and methods `max_connections()` and
/// `close_pool()`, by delegation to [`SqlCore`].
macro_rules! sql_store {
    ($store:ident, $shown:literal) => {
        /// Shows where the store is (never a password) and its pool size.
        impl std::fmt::Debug for $store {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($store))
                    .field($shown, &self.shown)
                    .field("max_connections", &self.max_connections())
                    .field("commit_hook", &self.core.hook.is_some())
                    .finish()
            }
        }

        impl $store {
            /// Installs a fault-injection hook, called after every statement
            /// inside a commit transaction. For tests only; see
            /// [`CommitHook`](crate::directory::CommitHook).
            #[must_use]
            pub fn with_commit_hook(mut self, hook: $crate::directory::sql::CommitHook) -> Self {
                self.core.hook = Some(hook);
                self
            }

            /// Closes the connection pool, waiting for connections in use to
            /// be returned. Later calls fail with [`StoreError::Backend`].
            pub async fn close(&self) {
                self.close_pool().await;
            }
        }

        #[async_trait::async_trait]
        impl $crate::directory::DirectoryStore for $store {
            async fn user(
                &self,
                tenant_id: &str,
                id: $crate::id::Id,
            ) -> Result<Option<$crate::directory::Versioned<$crate::directory::UserRecord>>, StoreError> {
                self.core.user(tenant_id, id).await
            }

            async fn user_by_mail(
                &self,
                tenant_id: &str,
                mail_key: &str,
            ) -> Result<Option<$crate::directory::Versioned<$crate::directory::UserRecord>>, StoreError> {
                self.core.user_by_mail(tenant_id, mail_key).await
            }

            async fn user_by_identity(
                &self,
                tenant_id: &str,
                issuer: &str,
                issuer_assigned_id: &str,
            ) -> Result<Option<$crate::directory::Versioned<$crate::directory::UserRecord>>, StoreError> {
                self.core
                    .user_by_identity(tenant_id, issuer, issuer_assigned_id)
                    .await
            }

            async fn users(&self, tenant_id: &str) -> Result<Vec<$crate::directory::UserRecord>, StoreError> {
                self.core.users(tenant_id).await
            }

            async fn invitation(
                &self,
                id: $crate::id::Id,
            ) -> Result<Option<$crate::directory::Versioned<$crate::directory::InvitationRecord>>, StoreError>
            {
                self.core.invitation(id).await
            }

            async fn throttle(
                &self,
                tenant_id: &str,
                address_key: &str,
            ) -> Result<Option<$crate::directory::Versioned<$crate::directory::AddressThrottle>>, StoreError>
            {
                self.core.throttle(tenant_id, address_key).await
            }

            async fn flow(
                &self,
                tenant_id: &str,
                handle_hash: &$crate::secret::Digest,
            ) -> Result<Option<$crate::directory::Versioned<$crate::directory::FlowRecord>>, StoreError> {
                self.core.flow(tenant_id, handle_hash).await
            }

            async fn flow_by_id(
                &self,
                tenant_id: &str,
                id: $crate::id::Id,
            ) -> Result<Option<$crate::directory::Versioned<$crate::directory::FlowRecord>>, StoreError> {
                self.core.flow_by_id(tenant_id, id).await
            }

            async fn flows_awaiting_approval(
                &self,
                tenant_id: &str,
                now: time::OffsetDateTime,
                limit: u32,
            ) -> Result<Vec<$crate::directory::Versioned<$crate::directory::FlowRecord>>, StoreError> {
                self.core
                    .flows_awaiting_approval(tenant_id, now, limit)
                    .await
            }

            async fn redemption_by_invitation(
                &self,
                tenant_id: &str,
                invitation_id: $crate::id::Id,
            ) -> Result<$crate::directory::RedemptionRecords, StoreError> {
                self.core
                    .redemption_by_invitation(tenant_id, invitation_id)
                    .await
            }

            async fn redemption_by_flow(
                &self,
                tenant_id: &str,
                handle_hash: &$crate::secret::Digest,
            ) -> Result<$crate::directory::RedemptionRecords, StoreError> {
                self.core.redemption_by_flow(tenant_id, handle_hash).await
            }

            async fn commit(&self, batch: $crate::directory::WriteBatch) -> Result<(), StoreError> {
                self.core.commit(batch).await
            }

            async fn purge_expired(
                &self,
                now: time::OffsetDateTime,
                limit: u32,
            ) -> Result<$crate::directory::PurgeReport, StoreError> {
                self.core.purge_expired(now, limit).await
            }
        }
    };
}
pub(crate) use sql_store;

impl Stored {
    pub(crate) fn new(version: i64, data: Box<RawValue>) -> Self {
        Self { version, data }
    }
}

// ---------------------------------------------------------------------------
// Statements. `$n` placeholders work on SQLite and PostgreSQL alike. Every
// update takes the same parameters as the insert of its table plus the
// expected version last.

/// A write statement of a commit. `op` names it in the batch the
/// PostgreSQL function `guestpass.commit_batch` runs (its latest version,
/// in migration 0004, holds the same statement under that name, with
/// parameter `$n` read from the batch entry's argument `n - 1`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Statement {
    op: &'static str,
    sql: &'static str,
}

const USER_INSERT: Statement = Statement {
    op: "user_insert",
    sql: "INSERT INTO users (id, tenant_id, created_at, data, version, mail_key) \
     VALUES ($1, $2, $3, $4, 1, NULL) ON CONFLICT (id) DO NOTHING",
};
const USER_UPDATE: Statement = Statement {
    op: "user_update",
    sql: "UPDATE users SET created_at = $3, data = $4, version = version + 1, mail_key = NULL \
     WHERE id = $1 AND tenant_id = $2 AND version = $5",
};
/// A batch's only user is written with its mail key in one statement
/// (no other user of the batch can hold the key meanwhile), which spares a
/// second update of the row. `$5` mail key (or NULL).
const USER_INSERT_MAIL: Statement = Statement {
    op: "user_insert_mail",
    sql: "INSERT INTO users (id, tenant_id, created_at, data, version, mail_key) \
     VALUES ($1, $2, $3, $4, 1, $5) ON CONFLICT (id) DO NOTHING",
};
const USER_UPDATE_MAIL: Statement = Statement {
    op: "user_update_mail",
    sql: "UPDATE users SET created_at = $3, data = $4, version = version + 1, mail_key = $5 \
     WHERE id = $1 AND tenant_id = $2 AND version = $6",
};
const USER_RELEASE_IDENTITIES: Statement = Statement {
    op: "user_release_identities",
    sql: "DELETE FROM user_identities WHERE user_id = $1",
};
const USER_CLAIM_MAIL: Statement = Statement {
    op: "user_claim_mail",
    sql: "UPDATE users SET mail_key = $2 WHERE id = $1",
};
const IDENTITY_INSERT: Statement = Statement {
    op: "identity_insert",
    sql: "INSERT INTO user_identities (user_id, tenant_id, issuer, issuer_assigned_id) VALUES ($1, $2, $3, $4)",
};
const INVITATION_INSERT: Statement = Statement {
    op: "invitation_insert",
    sql: "INSERT INTO invitations (id, tenant_id, ticket_expires_at, data, version) \
     VALUES ($1, $2, $3, $4, 1) ON CONFLICT (id) DO NOTHING",
};
const INVITATION_UPDATE: Statement = Statement {
    op: "invitation_update",
    sql: "UPDATE invitations SET ticket_expires_at = $3, data = $4, version = version + 1 \
     WHERE id = $1 AND tenant_id = $2 AND version = $5",
};
const THROTTLE_INSERT: Statement = Statement {
    op: "throttle_insert",
    sql: "INSERT INTO throttles (tenant_id, address_key, data, version) \
     VALUES ($1, $2, $3, 1) ON CONFLICT (tenant_id, address_key) DO NOTHING",
};
const THROTTLE_UPDATE: Statement = Statement {
    op: "throttle_update",
    sql: "UPDATE throttles SET data = $3, version = version + 1 \
     WHERE tenant_id = $1 AND address_key = $2 AND version = $4",
};

/// `$1` id, `$2` tenant, `$3` handle hash, `$4` awaiting approval, `$5`
/// created, `$6` expiry, `$7` the record. A handle hash another flow holds
/// is a unique violation (`flows_handle_hash`).
const FLOW_INSERT: Statement = Statement {
    op: "flow_insert",
    sql: "INSERT INTO flows (id, tenant_id, handle_hash, awaiting_approval, created_at, expires_at, data, version) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, 1) ON CONFLICT (id) DO NOTHING",
};
/// The handle hash is a condition, never set: an update that would change
/// it (or the tenant) matches no row.
const FLOW_UPDATE: Statement = Statement {
    op: "flow_update",
    sql: "UPDATE flows SET awaiting_approval = $4, created_at = $5, expires_at = $6, data = $7, \
     version = version + 1 WHERE id = $1 AND tenant_id = $2 AND handle_hash = $3 AND version = $8",
};

/// A user deletion's precondition: `$1` id, `$2` tenant, `$3` the
/// expected version. Removing the row frees its mail key; its identity
/// rows go with it (`ON DELETE CASCADE`, and [`USER_RELEASE_IDENTITIES`]
/// runs after it as well).
const USER_DELETE: Statement = Statement {
    op: "user_delete",
    sql: "DELETE FROM users WHERE id = $1 AND tenant_id = $2 AND version = $3",
};
/// The redemption flows of a deleted user: bound to it, or to one of its
/// invitations (run before those go). `$1` user id, `$2` tenant.
const USER_DELETE_FLOWS: Statement = Statement {
    op: "user_delete_flows",
    sql: "DELETE FROM flows WHERE tenant_id = $2 AND ((data -> 'redemption' ->> 'userId') = $1 \
     OR (data -> 'redemption' ->> 'invitationId') IN (SELECT id FROM invitations \
     WHERE tenant_id = $2 AND (data -> 'invitation' -> 'invitedUser' ->> 'id') = $1))",
};
/// The invitations of a deleted user. `$1` user id, `$2` tenant.
const USER_DELETE_INVITATIONS: Statement = Statement {
    op: "user_delete_invitations",
    sql: "DELETE FROM invitations WHERE tenant_id = $2 \
     AND (data -> 'invitation' -> 'invitedUser' ->> 'id') = $1",
};
/// The statements `guestpass.commit_batch` (migration 0004) does not know:
/// a plan holding one runs statement by statement in a transaction.
const UNBATCHED: [Statement; 3] = [USER_DELETE, USER_DELETE_FLOWS, USER_DELETE_INVITATIONS];

const SELECT_USER: &str = "SELECT version, data FROM users WHERE id = $1 AND tenant_id = $2";
const SELECT_USER_BY_MAIL: &str = "SELECT version, data FROM users WHERE tenant_id = $1 AND mail_key = $2";
const SELECT_USER_BY_IDENTITY: &str = "SELECT u.version, u.data FROM user_identities i \
     JOIN users u ON u.id = i.user_id \
     WHERE i.tenant_id = $1 AND i.issuer = $2 AND i.issuer_assigned_id = $3";
const SELECT_USERS: &str = "SELECT version, data FROM users WHERE tenant_id = $1 ORDER BY created_at, id";
const SELECT_INVITATION: &str = "SELECT version, data FROM invitations WHERE id = $1";
const SELECT_THROTTLE: &str = "SELECT version, data FROM throttles WHERE tenant_id = $1 AND address_key = $2";
const SELECT_FLOW: &str = "SELECT version, data FROM flows WHERE handle_hash = $1 AND tenant_id = $2";
const SELECT_FLOW_BY_ID: &str = "SELECT version, data FROM flows WHERE id = $1 AND tenant_id = $2";
/// `$1` tenant, `$2` now (rounded down), `$3` limit.
const SELECT_FLOWS_AWAITING: &str = "SELECT version, data FROM flows \
     WHERE tenant_id = $1 AND awaiting_approval = TRUE AND expires_at > $2 \
     ORDER BY created_at, id LIMIT $3";

/// An invitation, its user (when the invitation is the tenant's) and the
/// user's passcode counters. `$1` tenant, `$2` invitation id. The JSON
/// paths are the serde names of the model records.
const SELECT_REDEMPTION_BY_INVITATION: &str = "SELECT i.version, i.data, u.version, u.data, \
     t.version, t.data FROM invitations i \
     LEFT JOIN users u ON i.tenant_id = $1 AND u.tenant_id = $1 \
     AND u.id = (i.data -> 'invitation' -> 'invitedUser' ->> 'id') \
     LEFT JOIN throttles t ON t.tenant_id = $1 AND t.address_key = u.mail_key \
     WHERE i.id = $2";
/// A flow of the tenant, the invitation it redeems, the invitation's user
/// (when the invitation is the tenant's) and the counters of the user's
/// mail. `$1` tenant, `$2` handle hash.
const SELECT_REDEMPTION_BY_FLOW: &str = "SELECT f.version, f.data, i.version, i.data, \
     u.version, u.data, t.version, t.data FROM flows f \
     LEFT JOIN invitations i ON i.id = (f.data -> 'redemption' ->> 'invitationId') \
     LEFT JOIN users u ON i.tenant_id = $1 AND u.tenant_id = $1 \
     AND u.id = (i.data -> 'invitation' -> 'invitedUser' ->> 'id') \
     LEFT JOIN throttles t ON t.tenant_id = $1 AND t.address_key = u.mail_key \
     WHERE f.tenant_id = $1 AND f.handle_hash = $2";

const PURGE_FLOWS: &str = "DELETE FROM flows WHERE expires_at <= $1 AND id IN \
     (SELECT id FROM flows WHERE expires_at <= $1 ORDER BY expires_at, id LIMIT $2)";
const SELECT_EXPIRED_TICKETS: &str = "SELECT version, data FROM invitations WHERE ticket_expires_at <= $1 \
     ORDER BY ticket_expires_at, id LIMIT $2";

// ---------------------------------------------------------------------------
// Values.

/// Unix microseconds, rounded down, saturating.
pub(crate) fn micros_floor(t: OffsetDateTime) -> i64 {
    saturate(t.unix_timestamp_nanos().div_euclid(1000))
}

/// Unix microseconds, rounded up, saturating.
pub(crate) fn micros_ceil(t: OffsetDateTime) -> i64 {
    let n = t.unix_timestamp_nanos();
    saturate(n.div_euclid(1000) + i128::from(n.rem_euclid(1000) != 0))
}

fn saturate(v: i128) -> i64 {
    i64::try_from(v).unwrap_or(if v < 0 { i64::MIN } else { i64::MAX })
}

fn to_json<T: Serialize>(what: &'static str, key: &str, value: &T) -> Result<Box<RawValue>, StoreError> {
    serde_json::value::to_raw_value(value).map_err(|_| StoreError::Backend {
        message: format!("cannot serialize {what} `{key}`"),
    })
}

fn decode<T: DeserializeOwned>(
    what: &'static str,
    key: &str,
    row: Stored,
) -> Result<Versioned<T>, StoreError> {
    // serde's messages may quote stored values: name the record, not them.
    let value = serde_json::from_str(row.data.get()).map_err(|e| StoreError::Backend {
        message: format!(
            "stored {what} `{key}` is not a valid record ({:?} error)",
            e.classify()
        ),
    })?;
    let version = u64::try_from(row.version).map_err(|_| StoreError::Backend {
        message: format!("stored {what} `{key}` has a negative version"),
    })?;
    Ok(Versioned { value, version })
}

/// [`decode`] of a record a joined read may not have found; `key` names
/// the record the read started from (`of invitation <id>`).
fn decode_opt<T: DeserializeOwned>(
    what: &'static str,
    key: &str,
    row: Option<Stored>,
) -> Result<Option<Versioned<T>>, StoreError> {
    row.map(|r| decode(what, key, r)).transpose()
}

/// The expiry of an invitation's ticket, if it holds one.
fn ticket_expiry(r: &InvitationRecord) -> Option<i64> {
    r.ticket.as_ref().map(|t| micros_ceil(t.expires_at))
}

// ---------------------------------------------------------------------------
// Errors.

/// SQLite extended result codes of `SQLITE_BUSY` and `SQLITE_LOCKED`.
pub(crate) const SQLITE_BUSY_CODES: [&str; 8] = ["5", "261", "517", "773", "6", "262", "518", "774"];
/// PostgreSQL `deadlock_detected` and `serialization_failure`.
const PG_RETRY_CODES: [&str; 2] = ["40P01", "40001"];

/// A backend error as a [`StoreError::Backend`] whose message says what was
/// being done and what failed, without record contents.
pub(crate) fn backend_error(doing: &str, e: &sqlx::Error) -> StoreError {
    let detail = match e {
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            if SQLITE_BUSY_CODES.contains(&code.as_str()) {
                format!("database is busy: {}", db.message())
            } else {
                format!("{} (code {code})", db.message())
            }
        }
        sqlx::Error::Io(io) => format!("connection failed: {io}"),
        sqlx::Error::PoolTimedOut => "timed out waiting for a database connection".to_owned(),
        sqlx::Error::PoolClosed => "the store is closed".to_owned(),
        sqlx::Error::ColumnDecode { index, .. } => format!("cannot decode column {index}"),
        sqlx::Error::Decode(_) => "cannot decode a stored value".to_owned(),
        sqlx::Error::Encode(_) => "cannot encode a value".to_owned(),
        other => other.to_string(),
    };
    StoreError::Backend {
        message: format!("{doing}: {detail}"),
    }
}

fn is_retryable_race(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db)
        if db.code().is_some_and(|c| PG_RETRY_CODES.contains(&c.as_ref())))
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.kind() == sqlx::error::ErrorKind::UniqueViolation)
}

/// Maps a migration failure; `max` is the newest version this build knows.
pub(crate) fn migrate_error(e: &sqlx::migrate::MigrateError, max: i64) -> StoreError {
    use sqlx::migrate::MigrateError;
    let message = match e {
        MigrateError::VersionMissing(v) if *v > max => {
            format!("database schema version {v} is newer than this guestpass (max {max})")
        }
        MigrateError::VersionMissing(v) => {
            format!("database schema version {v} is applied but unknown to this guestpass (max {max})")
        }
        MigrateError::VersionMismatch(v) => {
            format!("database schema version {v} differs from the migration this guestpass ships")
        }
        MigrateError::Dirty(v) => format!("database schema version {v} was partially applied"),
        MigrateError::Execute(err) => return backend_error("cannot migrate the database schema", err),
        MigrateError::ExecuteMigration(err, v) => {
            return backend_error(&format!("cannot apply schema migration {v}"), err);
        }
        other => format!("cannot migrate the database schema: {other}"),
    };
    StoreError::Backend { message }
}

// ---------------------------------------------------------------------------
// The commit plan.

/// One statement of a commit and what its outcomes mean.
struct Stmt {
    statement: Statement,
    args: Vec<Arg>,
    /// The write it belongs to.
    record: &'static str,
    key: String,
    /// Zero rows affected is a conflict.
    must_affect: bool,
    /// A unique violation breaks this rule on this key.
    unique: Option<(&'static str, String)>,
}

impl Stmt {
    fn error(&self, e: &sqlx::Error) -> StoreError {
        match &self.unique {
            Some((constraint, key)) if is_unique_violation(e) => StoreError::Duplicate {
                constraint,
                key: key.clone(),
            },
            _ if is_retryable_race(e) => self.conflict(),
            _ => backend_error(&format!("cannot write {} `{}`", self.record, self.key), e),
        }
    }

    fn conflict(&self) -> StoreError {
        StoreError::Conflict {
            record: self.record,
            key: self.key.clone(),
        }
    }
}

/// The conditional statement for a write: its insert, or its update with
/// the expected version appended.
fn conditional(
    expect: Expect,
    (insert, update): (Statement, Statement),
    mut args: Vec<Arg>,
    record: &'static str,
    key: String,
) -> Result<Stmt, StoreError> {
    let statement = match expect {
        Expect::Absent => insert,
        Expect::Version(n) => {
            // No stored version exceeds i64::MAX, so such a write cannot match.
            let n = i64::try_from(n).map_err(|_| StoreError::Conflict {
                record,
                key: key.clone(),
            })?;
            args.push(Arg::Int(n));
            update
        }
    };
    Ok(Stmt {
        statement,
        args,
        record,
        key,
        must_affect: true,
        unique: None,
    })
}

fn plain(statement: Statement, args: Vec<Arg>, record: &'static str, key: &str) -> Stmt {
    Stmt {
        statement,
        args,
        record,
        key: key.to_owned(),
        must_affect: false,
        unique: None,
    }
}

/// The statements of a batch: every precondition (and the release of the
/// written users' mail keys and identities) first, then the users' claims.
/// A batch that writes one user only claims its mail key in the user's own
/// statement: with no other user in the batch there is no swap to order.
fn plan(batch: WriteBatch) -> Result<Vec<Stmt>, StoreError> {
    use Arg::{Int, Json, OptInt, OptText, Text};
    let mut preconditions = Vec::new();
    let mut claims = Vec::new();
    // The removals of deleted users' invitations and flows: last of all.
    let mut removals = Vec::new();
    // A deletion releases a mail key another user of the batch may claim,
    // so it counts as a user here: the claims then follow every release.
    let users = batch
        .writes()
        .iter()
        .filter(|w| matches!(w, Write::User { .. } | Write::DeleteUser { .. }))
        .count();
    let single_user = users == 1;
    for w in batch.into_writes() {
        let (record, key) = w.key();
        let expect = w.expect();
        // A user update also releases the user's identities.
        let mut release = None;
        // A user that claims its mail key in its own statement.
        let mut claims_mail = None;
        // The unique key another write's statement may violate.
        let mut unique = None;
        let (statements, args) = match w {
            Write::User { record: u, .. } => {
                let id = u.user.id.to_string();
                if let Expect::Version(_) = expect {
                    release = Some(plain(
                        USER_RELEASE_IDENTITIES,
                        vec![Text(id.clone())],
                        record,
                        &key,
                    ));
                }
                claims.extend(user_claims(&u, record, &key, !single_user));
                let mut args = vec![
                    Text(id),
                    Text(u.tenant_id.clone()),
                    Int(micros_floor(u.user.created_date_time)),
                    Json(to_json(record, &key, &u)?),
                ];
                if single_user {
                    claims_mail = u.mail_key().map(str::to_owned);
                    args.push(OptText(claims_mail.clone()));
                    ((USER_INSERT_MAIL, USER_UPDATE_MAIL), args)
                } else {
                    ((USER_INSERT, USER_UPDATE), args)
                }
            }
            Write::Invitation { record: mut r, .. } => {
                // The redeem URL carries the ticket: it is never stored.
                r.invitation.invite_redeem_url = None;
                (
                    (INVITATION_INSERT, INVITATION_UPDATE),
                    vec![
                        Text(r.invitation.id.to_string()),
                        Text(r.tenant_id.clone()),
                        OptInt(ticket_expiry(&r)),
                        Json(to_json(record, &key, &r)?),
                    ],
                )
            }
            Write::Throttle {
                tenant_id, record: t, ..
            } => (
                (THROTTLE_INSERT, THROTTLE_UPDATE),
                vec![
                    Text(tenant_id),
                    Text(t.address_key.clone()),
                    Json(to_json(record, &key, &t)?),
                ],
            ),
            Write::DeleteUser { tenant_id, id, .. } => {
                let (now, last) = deletion(&tenant_id, id, expect)?;
                preconditions.extend(now);
                removals.extend(last);
                continue;
            }
            Write::Flow { record: f, .. } => {
                let handle = f.handle_hash.to_hex();
                unique = Some(("flow handle", handle.clone()));
                (
                    (FLOW_INSERT, FLOW_UPDATE),
                    vec![
                        Text(f.id.to_string()),
                        Text(f.tenant_id.clone()),
                        Text(handle),
                        Arg::Bool(f.awaiting_approval()),
                        Int(micros_floor(f.created_at)),
                        Int(micros_ceil(f.expires_at)),
                        Json(to_json(record, &key, &f)?),
                    ],
                )
            }
        };
        let mut statement = conditional(expect, statements, args, record, key)?;
        statement.unique = claims_mail.map(|k| ("user mail", k)).or(unique);
        preconditions.push(statement);
        preconditions.extend(release);
    }
    preconditions.extend(claims);
    preconditions.extend(removals);
    Ok(preconditions)
}

/// The statements of a user's deletion: its conditional delete and the
/// release of its identities, which run among the preconditions, and the
/// removal of its redemption flows and invitations, which run last.
fn deletion(tenant_id: &str, id: Id, expect: Expect) -> Result<(Vec<Stmt>, Vec<Stmt>), StoreError> {
    let (record, key) = ("user", id.to_string());
    let Expect::Version(n) = expect else {
        // `WriteBatch::check` refused it already.
        return Err(StoreError::Backend {
            message: format!("batch deletes user `{key}` expecting it absent"),
        });
    };
    // No stored version exceeds i64::MAX, so such a deletion cannot match.
    let n = i64::try_from(n).map_err(|_| StoreError::Conflict {
        record,
        key: key.clone(),
    })?;
    let ids = || vec![Arg::Text(key.clone()), Arg::Text(tenant_id.to_owned())];
    let mut delete = plain(USER_DELETE, ids(), record, &key);
    delete.args.push(Arg::Int(n));
    delete.must_affect = true;
    let release = plain(
        USER_RELEASE_IDENTITIES,
        vec![Arg::Text(key.clone())],
        record,
        &key,
    );
    let removals = vec![
        plain(USER_DELETE_FLOWS, ids(), record, &key),
        plain(USER_DELETE_INVITATIONS, ids(), record, &key),
    ];
    Ok((vec![delete, release], removals))
}

/// The statements by which a written user claims its identities and, with
/// `claim_mail`, its mail key.
fn user_claims(u: &UserRecord, record: &'static str, key: &str, claim_mail: bool) -> Vec<Stmt> {
    let id = u.user.id.to_string();
    let mut out = Vec::new();
    if let Some(mail_key) = u.mail_key().filter(|_| claim_mail) {
        let mut claim = plain(
            USER_CLAIM_MAIL,
            vec![Arg::Text(id.clone()), Arg::Text(mail_key.to_owned())],
            record,
            key,
        );
        claim.must_affect = true;
        claim.unique = Some(("user mail", mail_key.to_owned()));
        out.push(claim);
    }
    for i in &u.user.identities {
        let mut claim = plain(
            IDENTITY_INSERT,
            vec![
                Arg::Text(id.clone()),
                Arg::Text(u.tenant_id.clone()),
                Arg::Text(i.issuer.clone()),
                Arg::Text(i.issuer_assigned_id.clone()),
            ],
            record,
            key,
        );
        claim.unique = Some(("identity", format!("{}/{}", i.issuer, i.issuer_assigned_id)));
        out.push(claim);
    }
    out
}

/// A plan as the batch `guestpass.commit_batch` takes; moves the
/// arguments out of the plan (what stays is what errors are named by).
fn batch_json(plan: &mut [Stmt]) -> Result<Box<RawValue>, StoreError> {
    /// One entry of the batch.
    #[derive(Serialize)]
    struct Entry {
        op: &'static str,
        m: bool,
        a: Vec<Arg>,
    }
    let entries: Vec<Entry> = plan
        .iter_mut()
        .map(|s| Entry {
            op: s.statement.op,
            m: s.must_affect,
            a: std::mem::take(&mut s.args),
        })
        .collect();
    serde_json::value::to_raw_value(&entries).map_err(|_| StoreError::Backend {
        message: "cannot serialize a commit batch".to_owned(),
    })
}

/// An argument as the JSON value `guestpass.commit_batch` reads it as.
impl Serialize for Arg {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Arg::Text(t) => s.serialize_str(t),
            Arg::OptText(t) => t.serialize(s),
            Arg::Int(i) => s.serialize_i64(*i),
            Arg::OptInt(i) => i.serialize(s),
            Arg::Bool(b) => s.serialize_bool(*b),
            Arg::Json(v) => v.serialize(s),
        }
    }
}

/// The error of a failed batch call, named by the statement that failed.
fn batch_error(plan: &[Stmt], call: BatchCall, e: &sqlx::Error) -> StoreError {
    let code = match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    };
    match (call.statement_of)(e).and_then(|i| plan.get(i)) {
        Some(s) if code.as_deref() == Some(BATCH_CONFLICT_CODE) => s.conflict(),
        Some(s) => s.error(e),
        None => backend_error("cannot commit a batch", e),
    }
}

/// Runs a plan inside an open transaction, calling the hook after each
/// statement.
async fn run(tx: &mut dyn Tx, plan: &[Stmt], hook: Option<&CommitHook>) -> Result<(), StoreError> {
    for (i, s) in plan.iter().enumerate() {
        let affected = tx
            .execute(s.statement.sql, &s.args)
            .await
            .map_err(|e| s.error(&e))?;
        if s.must_affect && affected == 0 {
            return Err(s.conflict());
        }
        if let Some(hook) = hook {
            hook(i + 1).map_err(|reason| StoreError::Backend {
                message: format!(
                    "commit aborted by the fault-injection hook after statement {}: {reason}",
                    i + 1
                ),
            })?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// The store logic both backends share.

/// A server-side function that runs a whole commit plan in one call (see
/// [`Statement`]).
#[derive(Clone, Copy)]
pub(crate) struct BatchCall {
    /// The call, with the plan as its one JSON parameter.
    pub(crate) sql: &'static str,
    /// The index of the plan statement a failed call names, if any.
    pub(crate) statement_of: fn(&sqlx::Error) -> Option<usize>,
}

/// The SQLSTATE `guestpass.commit_batch` raises for a failed precondition.
const BATCH_CONFLICT_CODE: &str = "GP001";

/// The directory store over any [`Backend`].
pub(crate) struct SqlCore {
    backend: Box<dyn Backend>,
    pub(crate) hook: Option<CommitHook>,
    batch: Option<BatchCall>,
}

impl fmt::Debug for SqlCore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqlCore")
            .field("commit_hook", &self.hook.is_some())
            .finish_non_exhaustive()
    }
}

impl SqlCore {
    pub(crate) fn new(backend: Box<dyn Backend>) -> Self {
        Self {
            backend,
            hook: None,
            batch: None,
        }
    }

    /// Commits through `call` (one round trip) instead of statement by
    /// statement, except while a fault-injection hook is installed (the
    /// hook needs to run between statements).
    pub(crate) fn with_batch_call(mut self, call: BatchCall) -> Self {
        self.batch = Some(call);
        self
    }

    async fn one<T: DeserializeOwned>(
        &self,
        what: &'static str,
        key: &str,
        sql: &'static str,
        args: Vec<Arg>,
    ) -> Result<Option<Versioned<T>>, StoreError> {
        let rows = self
            .backend
            .fetch(sql, &args)
            .await
            .map_err(|e| backend_error(&format!("cannot read {what} `{key}`"), &e))?;
        rows.into_iter().next().map(|r| decode(what, key, r)).transpose()
    }

    pub(crate) async fn user(
        &self,
        tenant_id: &str,
        id: Id,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        let key = id.to_string();
        let args = vec![Arg::Text(key.clone()), Arg::Text(tenant_id.to_owned())];
        self.one("user", &key, SELECT_USER, args).await
    }

    pub(crate) async fn user_by_mail(
        &self,
        tenant_id: &str,
        mail_key: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        let args = vec![Arg::Text(tenant_id.to_owned()), Arg::Text(mail_key.to_owned())];
        self.one("user", mail_key, SELECT_USER_BY_MAIL, args).await
    }

    pub(crate) async fn user_by_identity(
        &self,
        tenant_id: &str,
        issuer: &str,
        issuer_assigned_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        let args = vec![
            Arg::Text(tenant_id.to_owned()),
            Arg::Text(issuer.to_owned()),
            Arg::Text(issuer_assigned_id.to_owned()),
        ];
        let key = format!("{issuer}/{issuer_assigned_id}");
        self.one("user", &key, SELECT_USER_BY_IDENTITY, args).await
    }

    pub(crate) async fn users(&self, tenant_id: &str) -> Result<Vec<UserRecord>, StoreError> {
        let rows = self
            .backend
            .fetch(SELECT_USERS, &[Arg::Text(tenant_id.to_owned())])
            .await
            .map_err(|e| backend_error(&format!("cannot list the users of `{tenant_id}`"), &e))?;
        let mut out = rows
            .into_iter()
            .map(|r| decode::<UserRecord>("user", tenant_id, r).map(|v| v.value))
            .collect::<Result<Vec<_>, _>>()?;
        // The column holds microseconds; order exactly as the memory store.
        out.sort_by_key(|r| (r.user.created_date_time, r.user.id));
        Ok(out)
    }

    pub(crate) async fn invitation(&self, id: Id) -> Result<Option<Versioned<InvitationRecord>>, StoreError> {
        let key = id.to_string();
        let args = vec![Arg::Text(key.clone())];
        self.one("invitation", &key, SELECT_INVITATION, args).await
    }

    pub(crate) async fn throttle(
        &self,
        tenant_id: &str,
        address_key: &str,
    ) -> Result<Option<Versioned<AddressThrottle>>, StoreError> {
        let args = vec![Arg::Text(tenant_id.to_owned()), Arg::Text(address_key.to_owned())];
        let key = format!("{tenant_id}/{address_key}");
        self.one("throttle", &key, SELECT_THROTTLE, args).await
    }

    pub(crate) async fn flow(
        &self,
        tenant_id: &str,
        handle_hash: &Digest,
    ) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        let key = handle_hash.to_hex();
        let args = vec![Arg::Text(key.clone()), Arg::Text(tenant_id.to_owned())];
        self.one("flow", &key, SELECT_FLOW, args).await
    }

    pub(crate) async fn flow_by_id(
        &self,
        tenant_id: &str,
        id: Id,
    ) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        let key = id.to_string();
        let args = vec![Arg::Text(key.clone()), Arg::Text(tenant_id.to_owned())];
        self.one("flow", &key, SELECT_FLOW_BY_ID, args).await
    }

    pub(crate) async fn flows_awaiting_approval(
        &self,
        tenant_id: &str,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Versioned<FlowRecord>>, StoreError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let args = [
            Arg::Text(tenant_id.to_owned()),
            Arg::Int(micros_floor(now)),
            Arg::Int(i64::from(limit)),
        ];
        let rows = self
            .backend
            .fetch(SELECT_FLOWS_AWAITING, &args)
            .await
            .map_err(|e| {
                backend_error(
                    &format!("cannot list the flows awaiting approval in `{tenant_id}`"),
                    &e,
                )
            })?;
        let mut out = Vec::with_capacity(rows.len());
        for row in rows {
            let f = decode::<FlowRecord>("flow", &format!("awaiting approval in {tenant_id}"), row)?;
            // The columns round to microseconds; the records are exact.
            if f.value.awaiting_approval() && f.value.expires_at > now {
                out.push(f);
            }
        }
        out.sort_by_key(|f| (f.value.created_at, f.value.id));
        Ok(out)
    }

    /// Runs a joined read and decodes its one row (or none) into pairs.
    async fn joined(
        &self,
        what: &str,
        sql: &'static str,
        args: Vec<Arg>,
        pairs: usize,
    ) -> Result<Vec<Option<Stored>>, StoreError> {
        let rows = self
            .backend
            .fetch_wide(sql, &args, pairs)
            .await
            .map_err(|e| backend_error(&format!("cannot read {what}"), &e))?;
        Ok(rows
            .into_iter()
            .next()
            .unwrap_or_else(|| (0..pairs).map(|_| None).collect()))
    }

    pub(crate) async fn redemption_by_invitation(
        &self,
        tenant_id: &str,
        invitation_id: Id,
    ) -> Result<RedemptionRecords, StoreError> {
        let key = invitation_id.to_string();
        let args = vec![Arg::Text(tenant_id.to_owned()), Arg::Text(key.clone())];
        let what = format!("the redemption of invitation `{key}`");
        let mut cols = self
            .joined(&what, SELECT_REDEMPTION_BY_INVITATION, args, 3)
            .await?
            .into_iter();
        let key = format!("of invitation {key}");
        Ok(RedemptionRecords {
            flow: None,
            invitation: decode_opt("invitation", &key, cols.next().flatten())?,
            user: decode_opt("user", &key, cols.next().flatten())?,
            throttle: decode_opt("throttle", &key, cols.next().flatten())?,
        })
    }

    pub(crate) async fn redemption_by_flow(
        &self,
        tenant_id: &str,
        handle_hash: &Digest,
    ) -> Result<RedemptionRecords, StoreError> {
        let key = handle_hash.to_hex();
        let args = vec![Arg::Text(tenant_id.to_owned()), Arg::Text(key.clone())];
        let what = format!("the redemption of flow `{key}`");
        let mut cols = self
            .joined(&what, SELECT_REDEMPTION_BY_FLOW, args, 4)
            .await?
            .into_iter();
        let key = format!("of flow {key}");
        Ok(RedemptionRecords {
            flow: decode_opt("flow", &key, cols.next().flatten())?,
            invitation: decode_opt("invitation", &key, cols.next().flatten())?,
            user: decode_opt("user", &key, cols.next().flatten())?,
            throttle: decode_opt("throttle", &key, cols.next().flatten())?,
        })
    }

    pub(crate) async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        batch.check()?;
        let mut plan = plan(batch)?;
        if plan.is_empty() {
            return Ok(());
        }
        let batched = plan.iter().all(|s| !UNBATCHED.contains(&s.statement));
        if let (Some(call), None, true) = (self.batch, &self.hook, batched) {
            let json = batch_json(&mut plan)?;
            return match self.backend.execute(call.sql, &[Arg::Json(json)]).await {
                Ok(_) => Ok(()),
                Err(e) => Err(batch_error(&plan, call, &e)),
            };
        }
        let mut tx = self
            .backend
            .begin()
            .await
            .map_err(|e| backend_error("cannot begin a commit", &e))?;
        match run(tx.as_mut(), &plan, self.hook.as_ref()).await {
            Ok(()) => tx
                .commit()
                .await
                .map_err(|e| backend_error("cannot commit a batch", &e)),
            Err(e) => {
                // The rollback's own failure changes nothing: an unfinished
                // transaction is rolled back when its connection goes.
                let _ = tx.rollback().await;
                Err(e)
            }
        }
    }

    /// Purges in statements of their own, each conditional, so what was
    /// purged before a failure stays purged and a concurrent commit is never
    /// undone: an invitation changed since it was read keeps its new state
    /// (and is left for a later purge).
    pub(crate) async fn purge_expired(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<PurgeReport, StoreError> {
        if limit == 0 {
            return Ok(PurgeReport::default());
        }
        let bounds = [Arg::Int(micros_floor(now)), Arg::Int(i64::from(limit))];
        let db = &self.backend;
        let flows = db
            .execute(PURGE_FLOWS, &bounds)
            .await
            .map_err(|e| backend_error("cannot purge expired flows", &e))?;
        let expired = db
            .fetch(SELECT_EXPIRED_TICKETS, &bounds)
            .await
            .map_err(|e| backend_error("cannot read expired tickets", &e))?;
        let mut tickets = 0;
        for row in expired {
            let current = decode::<InvitationRecord>("invitation", "with an expired ticket", row)?;
            let mut r = current.value;
            r.ticket = None;
            let key = r.invitation.id.to_string();
            let s = conditional(
                Expect::Version(current.version),
                (INVITATION_INSERT, INVITATION_UPDATE),
                vec![
                    Arg::Text(key.clone()),
                    Arg::Text(r.tenant_id.clone()),
                    Arg::OptInt(None),
                    Arg::Json(to_json("invitation", &key, &r)?),
                ],
                "invitation",
                key,
            )?;
            tickets += db
                .execute(s.statement.sql, &s.args)
                .await
                .map_err(|e| s.error(&e))?;
        }
        Ok(PurgeReport { tickets, flows })
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn micros_round_outwards() {
        let t = datetime!(2026-11-01 12:00:00.000_000_5 UTC);
        assert_eq!(micros_floor(t) + 1, micros_ceil(t));
        let whole = datetime!(2026-11-01 12:00 UTC);
        assert_eq!(micros_floor(whole), micros_ceil(whole));
        assert_eq!(micros_floor(whole), whole.unix_timestamp() * 1_000_000);
        let before = datetime!(1969-12-31 23:59:59.999_999_5 UTC);
        assert_eq!(micros_floor(before), -1);
        assert_eq!(micros_ceil(before), 0);
    }

    fn user(n: u8, local: &str) -> UserRecord {
        let mail = crate::email::EmailAddress::parse(&format!("{local}@fabrikam.example")).ok();
        UserRecord {
            user: crate::directory::User {
                id: Id::from_bytes([n; 16]),
                user_type: crate::directory::UserType::Guest,
                external_user_state: None,
                external_user_state_change_date_time: None,
                creation_type: None,
                identities: vec![crate::directory::ObjectIdentity {
                    sign_in_type: crate::directory::SignInType::Federated,
                    issuer: "mail".into(),
                    issuer_assigned_id: local.into(),
                }],
                mail,
                other_mails: Vec::new(),
                display_name: None,
                user_principal_name: local.into(),
                account_enabled: true,
                sponsors: Vec::new(),
                created_date_time: datetime!(2026-11-01 12:00 UTC),
                agreement_acceptances: Vec::new(),
                attributes: Default::default(),
            },
            tenant_id: "t1".into(),
            active_invitation: None,
            authenticator: None,
        }
    }

    #[test]
    fn plan_releases_before_claims() {
        let mut a = user(1, "a");
        a.user.mail = None;
        let plan = plan(
            WriteBatch::new()
                .with(Write::User {
                    record: a,
                    expect: Expect::Version(1),
                })
                .with(Write::User {
                    record: user(2, "b"),
                    expect: Expect::Absent,
                }),
        )
        .map_err(|e| e.to_string());
        let sql: Vec<Statement> = plan.iter().flatten().map(|s| s.statement).collect();
        assert_eq!(
            sql,
            [
                USER_UPDATE,
                USER_RELEASE_IDENTITIES,
                USER_INSERT,
                IDENTITY_INSERT,
                USER_CLAIM_MAIL,
                IDENTITY_INSERT
            ]
        );
    }

    #[test]
    fn a_single_user_claims_its_mail_in_its_own_statement() {
        let plan = plan(WriteBatch::new().with(Write::User {
            record: user(1, "a"),
            expect: Expect::Version(3),
        }))
        .map_err(|e| e.to_string());
        let steps: Vec<(Statement, Option<&str>)> = plan
            .iter()
            .flatten()
            .map(|s| (s.statement, s.unique.as_ref().map(|u| u.0)))
            .collect();
        assert_eq!(
            steps,
            [
                (USER_UPDATE_MAIL, Some("user mail")),
                (USER_RELEASE_IDENTITIES, None),
                (IDENTITY_INSERT, Some("identity"))
            ]
        );
    }

    /// Every write statement `guestpass.commit_batch` runs, for the checks
    /// below (the others are [`UNBATCHED`]).
    const STATEMENTS: [Statement; 13] = [
        USER_INSERT,
        USER_UPDATE,
        USER_INSERT_MAIL,
        USER_UPDATE_MAIL,
        USER_RELEASE_IDENTITIES,
        USER_CLAIM_MAIL,
        IDENTITY_INSERT,
        INVITATION_INSERT,
        INVITATION_UPDATE,
        THROTTLE_INSERT,
        THROTTLE_UPDATE,
        FLOW_INSERT,
        FLOW_UPDATE,
    ];

    #[test]
    fn the_latest_commit_batch_knows_every_statement() {
        // The newest migration that (re)defines the function.
        let function = include_str!("../../../migrations/postgres/0004_redemption_flows.sql");
        assert!(function.contains("CREATE OR REPLACE FUNCTION guestpass.commit_batch"));
        for s in STATEMENTS {
            assert!(
                function.contains(&format!("WHEN '{}' THEN", s.op)),
                "commit_batch lacks `{}`",
                s.op
            );
        }
    }

    #[test]
    fn deletions_run_outside_commit_batch() {
        let function = include_str!("../../../migrations/postgres/0004_redemption_flows.sql");
        for s in UNBATCHED {
            assert!(!STATEMENTS.contains(&s));
            assert!(
                !function.contains(&format!("WHEN '{}' THEN", s.op)),
                "commit_batch knows `{}`: batch it",
                s.op
            );
        }
    }

    #[test]
    fn a_deletion_releases_first_and_removes_last() {
        let delete = Write::DeleteUser {
            tenant_id: "t1".into(),
            id: Id::from_bytes([1; 16]),
            expect: Expect::Version(3),
        };
        let plan = plan(
            WriteBatch::new()
                .with(Write::User {
                    record: user(2, "a"),
                    expect: Expect::Absent,
                })
                .with(delete.clone()),
        )
        .unwrap();
        let steps: Vec<(Statement, bool)> = plan.iter().map(|s| (s.statement, s.must_affect)).collect();
        assert_eq!(
            steps,
            [
                (USER_INSERT, true),
                (USER_DELETE, true),
                (USER_RELEASE_IDENTITIES, false),
                (USER_CLAIM_MAIL, true),
                (IDENTITY_INSERT, false),
                (USER_DELETE_FLOWS, false),
                (USER_DELETE_INVITATIONS, false)
            ]
        );
        let args: Vec<String> = plan[1].args.iter().map(|a| format!("{a:?}")).collect();
        assert_eq!(args.last().map(String::as_str), Some("Int(3)"));

        let absent = WriteBatch::new().with(Write::DeleteUser {
            tenant_id: "t1".into(),
            id: Id::from_bytes([1; 16]),
            expect: Expect::Absent,
        });
        assert!(matches!(super::plan(absent), Err(StoreError::Backend { .. })));
        let huge = WriteBatch::new().with(Write::DeleteUser {
            tenant_id: "t1".into(),
            id: Id::from_bytes([1; 16]),
            expect: Expect::Version(u64::MAX),
        });
        assert!(matches!(super::plan(huge), Err(StoreError::Conflict { .. })));
    }

    fn flow(awaiting: bool) -> FlowRecord {
        use crate::flow::machine::{FlowIdentity, FlowState};
        let state = if awaiting {
            FlowState::AwaitingApproval {
                identity: FlowIdentity {
                    issuer: "mail".into(),
                    subject: "a@fabrikam.example".into(),
                    email: crate::email::EmailAddress::parse("a@fabrikam.example").unwrap(),
                    home: None,
                },
                attributes: Default::default(),
                message: None,
            }
        } else {
            FlowState::ChooseProvider
        };
        FlowRecord {
            id: Id::from_bytes([7; 16]),
            handle_hash: Digest::sha256(b"h"),
            tenant_id: "t1".into(),
            user_flow_id: "f".into(),
            client_id: "c".into(),
            redirect_uri: "https://app.example/".into(),
            redemption: None,
            nonce: None,
            app_state: None,
            ui_locales: None,
            context: Default::default(),
            state,
            created_at: datetime!(2026-11-01 12:00 UTC),
            expires_at: datetime!(2026-11-01 12:00:00.000_000_5 UTC),
        }
    }

    #[test]
    fn a_flow_is_one_conditional_statement_guarded_by_its_handle() {
        let plan = plan(
            WriteBatch::new()
                .with(Write::Flow {
                    record: flow(true),
                    expect: Expect::Version(4),
                })
                .with(Write::User {
                    record: user(1, "a"),
                    expect: Expect::Absent,
                }),
        )
        .unwrap();
        let steps: Vec<(Statement, bool, Option<&str>)> = plan
            .iter()
            .map(|s| (s.statement, s.must_affect, s.unique.as_ref().map(|u| u.0)))
            .collect();
        assert_eq!(
            steps,
            [
                (FLOW_UPDATE, true, Some("flow handle")),
                (USER_INSERT_MAIL, true, Some("user mail")),
                (IDENTITY_INSERT, false, Some("identity"))
            ]
        );
        let args: Vec<String> = plan[0].args.iter().map(|a| format!("{a:?}")).collect();
        let hash = Digest::sha256(b"h").to_hex();
        assert_eq!(args.get(2), Some(&format!("Text({hash:?})")));
        assert_eq!(args.get(3).map(String::as_str), Some("Bool(true)"));
        // The expiry rounds up, the creation time down; the version is last.
        let created = datetime!(2026-11-01 12:00 UTC).unix_timestamp() * 1_000_000;
        assert_eq!(args.get(4), Some(&format!("Int({created})")));
        assert_eq!(args.get(5), Some(&format!("Int({})", created + 1)));
        assert_eq!(args.get(7).map(String::as_str), Some("Int(4)"));

        let insert = super::plan(WriteBatch::new().with(Write::Flow {
            record: flow(false),
            expect: Expect::Absent,
        }))
        .unwrap();
        assert_eq!(insert.len(), 1);
        assert_eq!(insert[0].statement, FLOW_INSERT);
        assert_eq!(format!("{:?}", insert[0].args[3]), "Bool(false)");
    }

    #[test]
    fn stale_versions_beyond_i64_conflict() {
        let r = plan(WriteBatch::new().with(Write::User {
            record: user(1, "a"),
            expect: Expect::Version(u64::MAX),
        }));
        assert!(matches!(r, Err(StoreError::Conflict { .. })));
    }
}
