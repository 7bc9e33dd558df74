//! The in-memory directory store: the default, for development and tests.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::directory::model::{AddressThrottle, FlowRecord, InvitationRecord, UserRecord};
use crate::directory::store::{DirectoryStore, Expect, PurgeReport, Versioned, Write, WriteBatch};
use crate::error::StoreError;
use crate::id::Id;
use crate::secret::Digest;

type IdentityKey = (String, String, String);

#[derive(Debug, Default)]
struct Inner {
    users: HashMap<Id, (u64, UserRecord)>,
    mail_index: HashMap<(String, String), Id>,
    identity_index: HashMap<IdentityKey, Id>,
    invitations: HashMap<Id, (u64, InvitationRecord)>,
    throttles: HashMap<(String, String), (u64, AddressThrottle)>,
    flows: HashMap<Id, (u64, FlowRecord)>,
    flow_handles: HashMap<Digest, Id>,
}

/// A [`DirectoryStore`] in process memory, behind one mutex: every commit
/// checks all its preconditions and applies all its writes under the lock.
///
/// ```
/// use std::sync::Arc;
/// use guestpass::directory::{DirectoryStore, MemoryStore};
/// let store: Arc<dyn DirectoryStore> = Arc::new(MemoryStore::new());
/// ```
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let inner = self.lock();
        f.debug_struct("MemoryStore")
            .field("users", &inner.users.len())
            .field("invitations", &inner.invitations.len())
            .field("flows", &inner.flows.len())
            .finish_non_exhaustive()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave a half-applied batch:
        // commit validates everything before it mutates anything.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn versioned<T: Clone>(entry: Option<&(u64, T)>) -> Option<Versioned<T>> {
    entry.map(|(version, value)| Versioned {
        value: value.clone(),
        version: *version,
    })
}

fn check(expect: Expect, current: Option<u64>, record: &'static str, key: String) -> Result<(), StoreError> {
    let ok = match (expect, current) {
        (Expect::Absent, None) => true,
        (Expect::Version(want), Some(have)) => want == have,
        _ => false,
    };
    if ok {
        Ok(())
    } else {
        Err(StoreError::Conflict { record, key })
    }
}

/// The version of a stored record, refusing a write that would move it to
/// another tenant.
fn version_in_tenant<V>(
    current: Option<&(u64, V)>,
    tenant_of: impl Fn(&V) -> &String,
    new_tenant: &str,
    record: &'static str,
    key: &str,
) -> Result<Option<u64>, StoreError> {
    match current {
        Some((_, v)) if tenant_of(v) != new_tenant => Err(StoreError::Conflict {
            record,
            key: key.to_owned(),
        }),
        _ => Ok(current.map(|e| e.0)),
    }
}

fn identity_keys(r: &UserRecord) -> impl Iterator<Item = IdentityKey> + '_ {
    r.user.identities.iter().map(move |i| {
        (
            r.tenant_id.clone(),
            i.issuer.clone(),
            i.issuer_assigned_id.clone(),
        )
    })
}

fn mail_index_key(r: &UserRecord) -> Option<(String, String)> {
    r.mail_key().map(|k| (r.tenant_id.clone(), k.to_owned()))
}

impl Inner {
    fn validate(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        batch.check()?;
        let mut batch_users: HashMap<Id, &UserRecord> = HashMap::new();
        // Users the batch deletes: they release their mail and identities.
        let mut deleted: HashSet<Id> = HashSet::new();
        for w in batch.writes() {
            let (kind, key) = w.key();
            let current = match w {
                Write::User { record, .. } => {
                    batch_users.insert(record.user.id, record);
                    let current = self.users.get(&record.user.id);
                    version_in_tenant(current, |r| &r.tenant_id, &record.tenant_id, kind, &key)?
                }
                Write::Invitation { record, .. } => {
                    let current = self.invitations.get(&record.invitation.id);
                    version_in_tenant(current, |r| &r.tenant_id, &record.tenant_id, kind, &key)?
                }
                Write::Throttle {
                    tenant_id, record, ..
                } => self
                    .throttles
                    .get(&(tenant_id.clone(), record.address_key.clone()))
                    .map(|e| e.0),
                Write::Flow { record, .. } => {
                    let current = self.flows.get(&record.id);
                    if let Some(owner) = self.flow_handles.get(&record.handle_hash)
                        && *owner != record.id
                    {
                        return Err(StoreError::Duplicate {
                            constraint: "flow handle",
                            key: record.handle_hash.to_hex(),
                        });
                    }
                    if current.is_some_and(|(_, old)| old.handle_hash != record.handle_hash) {
                        return Err(StoreError::Conflict { record: kind, key });
                    }
                    version_in_tenant(current, |r| &r.tenant_id, &record.tenant_id, kind, &key)?
                }
                Write::DeleteUser { tenant_id, id, .. } => {
                    deleted.insert(*id);
                    let current = self.users.get(id);
                    version_in_tenant(current, |r| &r.tenant_id, tenant_id, kind, &key)?
                }
            };
            check(w.expect(), current, kind, key)?;
        }
        // Uniqueness of mail and identities across users, taking the batch's
        // own users at their new values.
        let mut claimed_mail: HashMap<(String, String), Id> = HashMap::new();
        let mut claimed_identity: HashMap<IdentityKey, Id> = HashMap::new();
        for (id, record) in &batch_users {
            if let Some(k) = mail_index_key(record)
                && claimed_mail.insert(k.clone(), *id).is_some_and(|o| o != *id)
            {
                return Err(StoreError::Duplicate {
                    constraint: "user mail",
                    key: k.1,
                });
            }
            let mut own = HashSet::new();
            for k in identity_keys(record) {
                if !own.insert(k.clone()) || claimed_identity.insert(k.clone(), *id).is_some_and(|o| o != *id)
                {
                    return Err(StoreError::Duplicate {
                        constraint: "identity",
                        key: format!("{}/{}", k.1, k.2),
                    });
                }
            }
        }
        let held_elsewhere = |owner: &Id, id: &Id, still: bool| owner != id && still;
        for (k, id) in &claimed_mail {
            if let Some(owner) = self.mail_index.get(k) {
                let still = !deleted.contains(owner)
                    && batch_users
                        .get(owner)
                        .is_none_or(|r| mail_index_key(r).as_ref() == Some(k));
                if held_elsewhere(owner, id, still) {
                    return Err(StoreError::Duplicate {
                        constraint: "user mail",
                        key: k.1.clone(),
                    });
                }
            }
        }
        for (k, id) in &claimed_identity {
            if let Some(owner) = self.identity_index.get(k) {
                let still = !deleted.contains(owner)
                    && batch_users
                        .get(owner)
                        .is_none_or(|r| identity_keys(r).any(|x| &x == k));
                if held_elsewhere(owner, id, still) {
                    return Err(StoreError::Duplicate {
                        constraint: "identity",
                        key: format!("{}/{}", k.1, k.2),
                    });
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, batch: WriteBatch) {
        // Release the old index keys of every user the batch writes or
        // deletes before claiming any new one, so a batch that moves an
        // address or an identity from one user to another leaves the
        // indexes exact.
        for w in batch.writes() {
            let id = match w {
                Write::User { record, .. } => record.user.id,
                Write::DeleteUser { id, .. } => *id,
                _ => continue,
            };
            if let Some((_, old)) = self.users.get(&id) {
                if let Some(k) = mail_index_key(old)
                    && self.mail_index.get(&k) == Some(&id)
                {
                    self.mail_index.remove(&k);
                }
                for k in identity_keys(old) {
                    if self.identity_index.get(&k) == Some(&id) {
                        self.identity_index.remove(&k);
                    }
                }
            }
        }
        let mut deletions = Vec::new();
        for w in batch.into_writes() {
            match w {
                Write::User { record, .. } => {
                    let id = record.user.id;
                    let version = self.users.get(&id).map_or(1, |e| e.0 + 1);
                    if let Some(k) = mail_index_key(&record) {
                        self.mail_index.insert(k, id);
                    }
                    for k in identity_keys(&record) {
                        self.identity_index.insert(k, id);
                    }
                    self.users.insert(id, (version, record));
                }
                Write::Invitation { record, .. } => {
                    bump(&mut self.invitations, record.invitation.id, record);
                }
                Write::Throttle {
                    tenant_id, record, ..
                } => {
                    let key = (tenant_id, record.address_key.clone());
                    bump(&mut self.throttles, key, record);
                }
                Write::Flow { record, .. } => {
                    self.flow_handles.insert(record.handle_hash, record.id);
                    bump(&mut self.flows, record.id, record);
                }
                Write::DeleteUser { tenant_id, id, .. } => deletions.push((tenant_id, id)),
            }
        }
        // Deletions come last, so nothing the batch wrote for a deleted
        // user stays behind.
        for (tenant_id, id) in deletions {
            self.delete_user(&tenant_id, id);
        }
    }

    /// Removes a user (whose index keys are already released), its
    /// invitations and the redemption flows bound to it or to them.
    fn delete_user(&mut self, tenant_id: &str, id: Id) {
        self.users.remove(&id);
        let invitations: HashSet<Id> = self
            .invitations
            .iter()
            .filter(|(_, (_, r))| r.tenant_id == tenant_id && r.invitation.invited_user.id == id)
            .map(|(k, _)| *k)
            .collect();
        let flows: Vec<Id> = self
            .flows
            .iter()
            .filter(|(_, (_, f))| {
                f.tenant_id == tenant_id
                    && f.redemption
                        .as_ref()
                        .is_some_and(|b| b.user_id == id || invitations.contains(&b.invitation_id))
            })
            .map(|(k, _)| *k)
            .collect();
        for k in flows {
            if let Some((_, f)) = self.flows.remove(&k) {
                self.flow_handles.remove(&f.handle_hash);
            }
        }
        for k in invitations {
            self.invitations.remove(&k);
        }
    }
}

/// The keys of at most `limit` records whose expiry is at or before `now`,
/// oldest first.
fn oldest_expired<K: Clone, V>(
    map: &HashMap<K, (u64, V)>,
    expiry: impl Fn(&V) -> Option<OffsetDateTime>,
    now: OffsetDateTime,
    limit: usize,
) -> Vec<K> {
    let mut due: Vec<(OffsetDateTime, K)> = map
        .iter()
        .filter_map(|(k, (_, v))| expiry(v).filter(|at| *at <= now).map(|at| (at, k.clone())))
        .collect();
    due.sort_by_key(|(at, _)| *at);
    due.truncate(limit);
    due.into_iter().map(|(_, k)| k).collect()
}

fn bump<K: std::hash::Hash + Eq, V>(map: &mut HashMap<K, (u64, V)>, key: K, value: V) {
    let version = map.get(&key).map_or(1, |e| e.0 + 1);
    map.insert(key, (version, value));
}

#[async_trait]
impl DirectoryStore for MemoryStore {
    async fn user(&self, tenant_id: &str, id: Id) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        Ok(versioned(
            self.lock().users.get(&id).filter(|e| e.1.tenant_id == tenant_id),
        ))
    }

    async fn user_by_mail(
        &self,
        tenant_id: &str,
        mail_key: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        let inner = self.lock();
        let id = inner.mail_index.get(&(tenant_id.to_owned(), mail_key.to_owned()));
        Ok(versioned(id.and_then(|id| inner.users.get(id))))
    }

    async fn user_by_identity(
        &self,
        tenant_id: &str,
        issuer: &str,
        issuer_assigned_id: &str,
    ) -> Result<Option<Versioned<UserRecord>>, StoreError> {
        let inner = self.lock();
        let key = (
            tenant_id.to_owned(),
            issuer.to_owned(),
            issuer_assigned_id.to_owned(),
        );
        Ok(versioned(
            inner.identity_index.get(&key).and_then(|id| inner.users.get(id)),
        ))
    }

    async fn users(&self, tenant_id: &str) -> Result<Vec<UserRecord>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<UserRecord> = inner
            .users
            .values()
            .filter(|e| e.1.tenant_id == tenant_id)
            .map(|e| e.1.clone())
            .collect();
        out.sort_by_key(|r| (r.user.created_date_time, r.user.id));
        Ok(out)
    }

    async fn invitation(&self, id: Id) -> Result<Option<Versioned<InvitationRecord>>, StoreError> {
        Ok(versioned(self.lock().invitations.get(&id)))
    }

    async fn throttle(
        &self,
        tenant_id: &str,
        address_key: &str,
    ) -> Result<Option<Versioned<AddressThrottle>>, StoreError> {
        Ok(versioned(
            self.lock()
                .throttles
                .get(&(tenant_id.to_owned(), address_key.to_owned())),
        ))
    }

    async fn flow(
        &self,
        tenant_id: &str,
        handle_hash: &Digest,
    ) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        let inner = self.lock();
        let id = inner.flow_handles.get(handle_hash);
        Ok(versioned(
            id.and_then(|id| inner.flows.get(id))
                .filter(|e| e.1.tenant_id == tenant_id),
        ))
    }

    async fn flow_by_id(&self, tenant_id: &str, id: Id) -> Result<Option<Versioned<FlowRecord>>, StoreError> {
        Ok(versioned(
            self.lock().flows.get(&id).filter(|e| e.1.tenant_id == tenant_id),
        ))
    }

    async fn flows_awaiting_approval(
        &self,
        tenant_id: &str,
        now: OffsetDateTime,
        limit: u32,
    ) -> Result<Vec<Versioned<FlowRecord>>, StoreError> {
        let inner = self.lock();
        let mut out: Vec<Versioned<FlowRecord>> = inner
            .flows
            .values()
            .filter(|(_, f)| f.tenant_id == tenant_id && f.awaiting_approval() && f.expires_at > now)
            .map(|(version, f)| Versioned {
                value: f.clone(),
                version: *version,
            })
            .collect();
        out.sort_by_key(|f| (f.value.created_at, f.value.id));
        out.truncate(limit as usize);
        Ok(out)
    }

    async fn commit(&self, batch: WriteBatch) -> Result<(), StoreError> {
        let mut inner = self.lock();
        inner.validate(&batch)?;
        inner.apply(batch);
        Ok(())
    }

    async fn purge_expired(&self, now: OffsetDateTime, limit: u32) -> Result<PurgeReport, StoreError> {
        let limit = limit as usize;
        let mut inner = self.lock();
        let tickets = oldest_expired(
            &inner.invitations,
            |i| i.ticket.as_ref().map(|t| t.expires_at),
            now,
            limit,
        );
        for k in &tickets {
            if let Some((version, record)) = inner.invitations.get_mut(k) {
                record.ticket = None;
                *version += 1;
            }
        }
        let flows = oldest_expired(&inner.flows, |f| Some(f.expires_at), now, limit);
        for k in &flows {
            if let Some((_, f)) = inner.flows.remove(k) {
                inner.flow_handles.remove(&f.handle_hash);
            }
        }
        Ok(PurgeReport {
            tickets: tickets.len() as u64,
            flows: flows.len() as u64,
        })
    }
}
