//! The `DirectoryStore` trait: reads, and one atomic conditional batch write.
//!
//! Every state change that must happen once (redeeming a ticket, using a
//! passcode, counting a failure, replacing an invitation) is a
//! compare-and-set: the core reads records with their versions, decides, and
//! commits a [`WriteBatch`] whose every write names the version it expects.
//! The store applies the whole batch or nothing. Two racers that read the
//! same version cannot both win, in one process or in many, because the
//! store (a mutex, a SQL transaction with `WHERE version = $n`) decides —
//! never a read followed by an unconditional write.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::directory::model::{AddressThrottle, FlowRecord, InvitationRecord, UserRecord};
use crate::error::StoreError;
use crate::id::Id;
use crate::secret::Digest;

/// A record with the version the store holds it at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned<T> {
    /// The record.
    pub value: T,
    /// Its version: 1 after insert, one more after every update.
    pub version: u64,
}

/// What a write expects to find.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// No record under this key (an insert).
    Absent,
    /// The record at exactly this version (an update).
    Version(u64),
}

/// One conditional write.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Write {
    /// Insert or update a user. Enforces unique `(tenant, mail key)` and
    /// unique `(tenant, issuer, issuerAssignedId)` across users.
    User {
        /// The new value.
        record: UserRecord,
        /// The precondition.
        expect: Expect,
    },
    /// Insert or update an invitation.
    Invitation {
        /// The new value.
        record: InvitationRecord,
        /// The precondition.
        expect: Expect,
    },
    /// Insert or update an address's passcode counters.
    Throttle {
        /// The tenant.
        tenant_id: String,
        /// The new value.
        record: AddressThrottle,
        /// The precondition.
        expect: Expect,
    },
    /// Insert or update a flow (sign-up or redemption), keyed by its id. Enforces a unique
    /// handle hash across flows; a flow never moves to another tenant.
    Flow {
        /// The new value.
        record: FlowRecord,
        /// The precondition.
        expect: Expect,
    },
    /// Delete a user of a tenant with everything that belongs to it: the
    /// user record, its identities (which frees every
    /// `(issuer, issuerAssignedId)` it held) and its mail key (which frees
    /// the address), every invitation of the tenant whose invited user it
    /// is, and every redemption flow bound to the user or to one of those
    /// invitations.
    ///
    /// `expect` must be [`Expect::Version`]: the version the caller read.
    /// A user that is absent, of another tenant or at another version is a
    /// [`StoreError::Conflict`] (record `user`); a deletion that expects
    /// [`Expect::Absent`] means nothing and the batch is refused
    /// ([`WriteBatch::check`]).
    ///
    /// Within a batch the user's mail key and identities are released
    /// before any user of the batch claims its own (as an update releases
    /// them), so a batch may delete a user and hand its address or
    /// identities to another. Its invitations and flows are removed after
    /// every other write of the batch, so nothing the batch writes for the
    /// user is left behind either. Sign-up flows are not removed: one that
    /// holds the user (a sign-in at the access gate, a completed sign-up)
    /// reads it again at its next step and ends there. Passcode counters
    /// belong to the address, not to the user, and stay (a lockout outlives
    /// the user, as it outlives codes).
    DeleteUser {
        /// The user's tenant.
        tenant_id: String,
        /// The user's id.
        id: Id,
        /// The precondition: the version the caller read.
        expect: Expect,
    },
}

impl Write {
    /// The record kind and key, for messages and duplicate detection.
    pub fn key(&self) -> (&'static str, String) {
        match self {
            Write::User { record, .. } => ("user", record.user.id.to_string()),
            Write::Invitation { record, .. } => ("invitation", record.invitation.id.to_string()),
            Write::Throttle {
                tenant_id, record, ..
            } => ("throttle", format!("{tenant_id}/{}", record.address_key)),
            Write::Flow { record, .. } => ("flow", record.id.to_string()),
            Write::DeleteUser { id, .. } => ("user", id.to_string()),
        }
    }

    /// The precondition.
    pub fn expect(&self) -> Expect {
        match self {
            Write::User { expect, .. }
            | Write::Invitation { expect, .. }
            | Write::Throttle { expect, .. }
            | Write::Flow { expect, .. }
            | Write::DeleteUser { expect, .. } => *expect,
        }
    }
}

/// Writes applied all together or not at all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WriteBatch {
    writes: Vec<Write>,
}

impl WriteBatch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a write.
    pub fn push(&mut self, write: Write) -> &mut Self {
        self.writes.push(write);
        self
    }

    /// Adds a write (builder style).
    #[must_use]
    pub fn with(mut self, write: Write) -> Self {
        self.writes.push(write);
        self
    }

    /// The writes, in order.
    pub fn writes(&self) -> &[Write] {
        &self.writes
    }

    /// Consumes the batch.
    pub fn into_writes(self) -> Vec<Write> {
        self.writes
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty()
    }

    /// Checks that no record is written twice in the batch (a batch that
    /// names a record twice is a bug in the caller). A deletion and a write
    /// of one user name it twice. Adapters call [`check`](Self::check),
    /// which includes this.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the record.
    pub fn check_distinct(&self) -> Result<(), StoreError> {
        let mut seen = std::collections::HashSet::new();
        for w in &self.writes {
            let key = w.key();
            if !seen.insert(key.clone()) {
                return Err(StoreError::Backend {
                    message: format!("batch writes {} `{}` twice", key.0, key.1),
                });
            }
        }
        Ok(())
    }

    /// The checks every adapter makes before it looks at stored records:
    /// [`check_distinct`](Self::check_distinct), and that every
    /// [`Write::DeleteUser`] names the version it read. Both refusals are
    /// bugs in the caller, so nothing of the batch is applied.
    ///
    /// ```
    /// use guestpass::directory::{Expect, Write, WriteBatch};
    /// use guestpass::error::StoreError;
    /// use guestpass::id::Id;
    ///
    /// let delete = |expect| Write::DeleteUser { tenant_id: "contoso".into(), id: Id::from_bytes([7; 16]), expect };
    /// assert_eq!(WriteBatch::new().with(delete(Expect::Version(3))).check(), Ok(()));
    /// let e = WriteBatch::new().with(delete(Expect::Absent)).check().unwrap_err();
    /// assert!(matches!(e, StoreError::Backend { .. }));
    /// assert_eq!(
    ///     e.to_string(),
    ///     "directory store failed: batch deletes user `07070707-0707-0707-0707-070707070707` \
    ///      expecting it absent; a deletion names the version it read"
    /// );
    /// ```
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] naming the record.
    pub fn check(&self) -> Result<(), StoreError> {
        self.check_distinct()?;
        for w in &self.writes {
            if let Write::DeleteUser {
                id,
                expect: Expect::Absent,
                ..
            } = w
            {
                return Err(StoreError::Backend {
                    message: format!(
                        "batch deletes user `{id}` expecting it absent; a deletion names the version it read"
                    ),
                });
            }
        }
        Ok(())
    }
}

/// What one [`DirectoryStore::purge_expired`] call removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PurgeReport {
    /// Expired ticket bindings cleared from pending invitations.
    pub tickets: u64,
    /// Flows (sign-ups and redemptions) deleted.
    pub flows: u64,
}

impl PurgeReport {
    /// Records affected in all.
    pub fn total(&self) -> u64 {
        self.tickets + self.flows
    }
}

/// The records one redemption step reads, fetched together by
/// [`DirectoryStore::redemption_by_invitation`] and
/// [`DirectoryStore::redemption_by_flow`]. Each is `None` when absent, or
/// when the record it hangs off is absent or belongs to another tenant.
/// Adapters that override the joined reads build it from
/// `RedemptionRecords::default()` and set its fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RedemptionRecords {
    /// The redemption flow (only from a read by flow).
    pub flow: Option<Versioned<FlowRecord>>,
    /// The invitation: the one asked for, or the flow's.
    pub invitation: Option<Versioned<InvitationRecord>>,
    /// The invitation's invited user, when the invitation belongs to the
    /// tenant read for.
    pub user: Option<Versioned<UserRecord>>,
    /// The passcode counters of the user's mail.
    pub throttle: Option<Versioned<AddressThrottle>>,
}

/// Directory storage. Implementations must make [`DirectoryStore::commit`]
/// atomic and conditional, also across processes sharing one database; the
/// conformance suite (`guestpass::directory::conformance`, feature
/// `conformance`) checks this.
///
/// The trait is object safe: hosts hold an `Arc<dyn DirectoryStore>`.
#[async_trait]
pub trait DirectoryStore: Send + Sync + std::fmt::Debug {
    /// A user by id within a tenant.
    async fn user(&self, tenant_id: &str, id: Id) -> Result<Option<Versioned<UserRecord>>, StoreError>;

    /// A user by the comparison key of their mail, within a tenant.
    async fn user_by_mail(
        &self,
        tenant_id: &str,
        mail_key: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError>;

    /// The user holding identity `(issuer, issuer_assigned_id)` in a tenant.
    async fn user_by_identity(
        &self,
        tenant_id: &str,
        issuer: &str,
        issuer_assigned_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError>;

    /// All users of a tenant, ordered by creation time then id.
    async fn users(&self, tenant_id: &str) -> Result<Vec<UserRecord>, StoreError>;

    /// An invitation by id (any tenant; the caller checks the binding).
    async fn invitation(&self, id: Id) -> Result<Option<Versioned<InvitationRecord>>, StoreError>;

    /// An address's passcode counters within a tenant.
    async fn throttle(
        &self,
        tenant_id: &str,
        address_key: &str,
    ) -> Result<Option<Versioned<AddressThrottle>>, StoreError>;

    /// A flow of `tenant_id` by the hash of its handle (a flow of
    /// another tenant reads as absent).
    async fn flow(
        &self,
        tenant_id: &str,
        handle_hash: &Digest,
    ) -> Result<Option<Versioned<FlowRecord>>, StoreError>;

    /// A flow of `tenant_id` by its id (a flow of another tenant
    /// reads as absent).
    async fn flow_by_id(&self, tenant_id: &str, id: Id) -> Result<Option<Versioned<FlowRecord>>, StoreError>;

    /// The flows of `tenant_id` whose state awaits an administrator's
    /// approval ([`FlowRecord::awaiting_approval`]) and that have not
    /// expired at `now`, oldest first, at most `limit`.
    async fn flows_awaiting_approval(
        &self,
        tenant_id: &str,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Versioned<FlowRecord>>, StoreError>;

    /// An invitation with its invited user and that user's passcode
    /// counters, as one read where the backend can (the SQL stores join).
    /// The default composes [`invitation`](Self::invitation),
    /// [`user`](Self::user) and [`throttle`](Self::throttle); an override
    /// must return the same records.
    ///
    /// The user (and so the counters) is read only when the invitation
    /// belongs to `tenant_id`; `flow` is `None`.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails.
    async fn redemption_by_invitation(
        &self,
        tenant_id: &str,
        invitation_id: Id,
    ) -> Result<RedemptionRecords, StoreError> {
        let invitation = self.invitation(invitation_id).await?;
        let user = match &invitation {
            Some(i) if i.value.tenant_id == tenant_id => {
                self.user(tenant_id, i.value.invitation.invited_user.id).await?
            }
            _ => None,
        };
        let throttle = match user.as_ref().and_then(|u| u.value.mail_key()) {
            Some(key) => self.throttle(tenant_id, key).await?,
            None => None,
        };
        Ok(RedemptionRecords {
            flow: None,
            invitation,
            user,
            throttle,
        })
    }

    /// A redemption flow of `tenant_id` with everything its next step
    /// reads, as one read where the backend can: the invitation it redeems
    /// ([`FlowRecord::redemption`]), the invitation's user (when the
    /// invitation belongs to `tenant_id`) and the counters of the user's
    /// mail. The default composes the single reads; an override must
    /// return the same records.
    ///
    /// A flow of another tenant reads as absent, and then so does
    /// everything else; a sign-up flow comes back alone.
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails.
    async fn redemption_by_flow(
        &self,
        tenant_id: &str,
        handle_hash: &Digest,
    ) -> Result<RedemptionRecords, StoreError> {
        let Some(flow) = self.flow(tenant_id, handle_hash).await? else {
            return Ok(RedemptionRecords::default());
        };
        let mut out = match &flow.value.redemption {
            Some(b) => self.redemption_by_invitation(tenant_id, b.invitation_id).await?,
            None => RedemptionRecords::default(),
        };
        out.flow = Some(flow);
        Ok(out)
    }

    /// Applies every write of `batch` if every precondition and uniqueness
    /// rule holds, and none otherwise.
    ///
    /// # Errors
    ///
    /// [`StoreError::Conflict`] when a precondition fails,
    /// [`StoreError::Duplicate`] when a uniqueness rule would break,
    /// [`StoreError::Backend`] when the backend fails. In every error case
    /// nothing of the batch is visible.
    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError>;

    /// Deletes flows (sign-ups and redemptions, with their inline passcodes)
    /// whose expiry is at or before `now`, and clears the ticket binding (`ticket = None`, version + 1) of
    /// invitations whose ticket expired — at most `limit` records of each
    /// kind per call, oldest expiry first, so a host can call it on a
    /// schedule without long pauses. Users and passcode counters are never
    /// touched (a lockout outlives its codes).
    ///
    /// # Errors
    ///
    /// [`StoreError::Backend`] when the backend fails; what was purged
    /// before the failure stays purged (each record's removal stands alone).
    async fn purge_expired(&self, now: OffsetDateTime, limit: u32) -> Result<PurgeReport, StoreError>;
}
