//! Administrators' changes to users: [`GuestPass::update_user`] and
//! [`GuestPass::delete_user`].
//!
//! Both are for administrators only ([`InviterRole::Admin`]), decided from
//! the caller alone before anything is read, so a refused caller learns
//! nothing about which ids exist. Both read the user with its version and
//! write with one conditional batch at that version: of an update and a
//! deletion (or two of either) that read one version, exactly one wins and
//! the other gets [`StoreError::Conflict`](crate::error::StoreError::Conflict)
//! with nothing written. Both record an audit event that names ids and
//! property names only, never an address or a value.

use tracing::Span;
use tracing::field::{Empty, display};

use super::GuestPass;
use crate::audit::AuditKind;
use crate::directory::{Expect, User, Write, WriteBatch};
use crate::error::{Denied, Error};
use crate::graph::users::UserPatch;
use crate::id::Id;
use crate::invitation::Inviter;
use crate::policy::InviterRole;

impl GuestPass {
    /// Deletes the user `id` of the tenant (Graph's `DELETE /users/{id}`)
    /// with everything that belongs to it, in one conditional write at the
    /// version read ([`Write::DeleteUser`]): its identities and its address
    /// are free at once for a new user (a new invitation of the address, a
    /// sign-up with the identity), its invitations are gone (their links
    /// answer [`TicketError::NoLongerValid`](crate::error::TicketError::NoLongerValid))
    /// and so are its redemption flows (their next step answers
    /// [`RedemptionError::UnknownSession`](crate::error::RedemptionError::UnknownSession)).
    /// The passcode counters of its address stay: a lockout is lifted by
    /// an administrator's reset of redemption, not by deleting the user.
    /// Records [`AuditKind::UserDeleted`].
    ///
    /// ```
    /// # tokio_test();
    /// # fn tokio_test() {
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// use std::sync::Arc;
    /// use guestpass::{Error, GuestPass, InvitationRequest, Inviter};
    /// use guestpass::directory::MemoryStore;
    /// use guestpass::error::Denied;
    /// use guestpass::policy::InviterRole;
    /// # use guestpass::keys::SigningKey;
    /// # use guestpass::mail::Outbox;
    ///
    /// let gp = GuestPass::builder()
    /// #   .tenant("contoso", "Contoso", "contoso.example")
    /// #   .public_base_url("https://guests.contoso.example/")
    /// #   .signing_key(SigningKey::new("k1", [42u8; 32])?)
    /// #   .redirect_url("https://app.contoso.example/")
    ///     // ...
    ///     .store(Arc::new(MemoryStore::new()))
    ///     .mail(Arc::new(Outbox::new()))
    ///     .build()?;
    /// let admin = Inviter::admin(None);
    /// let request = || InvitationRequest::new("alice@fabrikam.example", "https://app.contoso.example/");
    /// let alice = gp.invite(&admin, request()).await?.invited_user.id;
    ///
    /// // A member may not delete users; an administrator may.
    /// let member = Inviter { id: None, role: InviterRole::Member };
    /// let refused = gp.delete_user(&member, alice).await;
    /// assert_eq!(refused, Err(Denied::AdminOnly { operation: "delete users" }.into()));
    /// gp.delete_user(&admin, alice).await?;
    /// assert_eq!(gp.user(alice).await, Err(Error::NotFound { what: "user" }));
    ///
    /// // The address is free: inviting it again creates a new user.
    /// let again = gp.invite(&admin, request()).await?.invited_user.id;
    /// assert_ne!(again, alice);
    /// # Ok::<(), guestpass::Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Denied::AdminOnly`] unless `admin` is an administrator,
    /// [`Error::NotFound`] (`user`) for an id of no user of the tenant,
    /// [`Error::Store`] when the user changed or went since it was read
    /// (repeat the call) or the store fails.
    #[tracing::instrument(
        skip_all,
        fields(step = "delete_user", user_id = %id, outcome = Empty)
    )]
    pub async fn delete_user(&self, admin: &Inviter, id: Id) -> Result<(), Error> {
        let result = Box::pin(self.delete_user_step(admin, id)).await;
        self.observed(result, |()| "deleted")
    }

    /// [`delete_user`](Self::delete_user) without its span.
    async fn delete_user_step(&self, admin: &Inviter, id: Id) -> Result<(), Error> {
        admin_only(admin, "delete users")?;
        let store = &self.inner.store;
        let current = store
            .user(self.tenant(), id)
            .await?
            .ok_or(Error::NotFound { what: "user" })?;
        let batch = WriteBatch::new().with(Write::DeleteUser {
            tenant_id: self.tenant().to_owned(),
            id,
            expect: Expect::Version(current.version),
        });
        store.commit(batch).await?;
        self.audit(
            Some(id),
            AuditKind::UserDeleted {
                user_id: id,
                admin: admin.id,
            },
        )
        .await;
        Ok(())
    }

    /// Applies `patch` to the user `id` of the tenant (Graph's
    /// `PATCH /users/{id}`) with one conditional write at the version read,
    /// and returns the user as it now is. Records
    /// [`AuditKind::UserUpdated`] with the names of the properties whose
    /// value changed.
    ///
    /// A patch that changes nothing (`{}`, or only values the user already
    /// has) writes nothing, records nothing and leaves the user's version
    /// as it was; the user must still exist.
    ///
    /// ```
    /// # tokio_test();
    /// # fn tokio_test() {
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// use std::sync::Arc;
    /// use guestpass::{GuestPass, InvitationRequest, Inviter};
    /// use guestpass::audit::{AuditKind, MemoryAudit};
    /// use guestpass::directory::MemoryStore;
    /// use guestpass::graph::users::UserPatch;
    /// # use guestpass::keys::SigningKey;
    /// # use guestpass::mail::Outbox;
    ///
    /// let audit = Arc::new(MemoryAudit::new());
    /// let gp = GuestPass::builder()
    /// #   .tenant("contoso", "Contoso", "contoso.example")
    /// #   .public_base_url("https://guests.contoso.example/")
    /// #   .signing_key(SigningKey::new("k1", [42u8; 32])?)
    /// #   .redirect_url("https://app.contoso.example/")
    ///     // ...
    ///     .store(Arc::new(MemoryStore::new()))
    ///     .mail(Arc::new(Outbox::new()))
    ///     .audit(audit.clone())
    ///     .build()?;
    /// let admin = Inviter::admin(None);
    /// let request = InvitationRequest::new("alice@fabrikam.example", "https://app.contoso.example/");
    /// let alice = gp.invite(&admin, request).await?.invited_user.id;
    ///
    /// let patch = UserPatch::parse(br#"{"displayName": "Alice Smith", "accountEnabled": true}"#)?;
    /// let user = gp.update_user(&admin, alice, &patch).await?;
    /// assert_eq!(user.display_name.as_deref(), Some("Alice Smith"));
    /// // `accountEnabled` was true already: only `displayName` changed.
    /// let last = audit.events().pop().map(|e| e.kind);
    /// assert_eq!(
    ///     last,
    ///     Some(AuditKind::UserUpdated { user_id: alice, admin: None, properties: vec!["displayName"] })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Denied::AdminOnly`] unless `admin` is an administrator,
    /// [`Error::NotFound`] (`user`) for an id of no user of the tenant,
    /// [`Error::Store`] when the user changed or went since it was read
    /// (repeat the call) or the store fails.
    #[tracing::instrument(
        skip_all,
        fields(step = "update_user", user_id = %id, properties = Empty, outcome = Empty)
    )]
    pub async fn update_user(&self, admin: &Inviter, id: Id, patch: &UserPatch) -> Result<User, Error> {
        let result = Box::pin(self.update_user_step(admin, id, patch)).await;
        self.observed(result, |_| "updated")
    }

    /// [`update_user`](Self::update_user) without its span.
    async fn update_user_step(&self, admin: &Inviter, id: Id, patch: &UserPatch) -> Result<User, Error> {
        admin_only(admin, "update users")?;
        let store = &self.inner.store;
        let current = store
            .user(self.tenant(), id)
            .await?
            .ok_or(Error::NotFound { what: "user" })?;
        let mut record = current.value.clone();
        patch.apply(&mut record.user);
        let properties: Vec<&'static str> = patch
            .properties()
            .into_iter()
            .filter(|p| changed(&current.value.user, &record.user, p))
            .collect();
        if properties.is_empty() {
            return Ok(current.value.user);
        }
        Span::current().record("properties", display(properties.join(",")));
        let user = record.user.clone();
        let batch = WriteBatch::new().with(Write::User {
            record,
            expect: Expect::Version(current.version),
        });
        store.commit(batch).await?;
        self.audit(
            Some(id),
            AuditKind::UserUpdated {
                user_id: id,
                admin: admin.id,
                properties,
            },
        )
        .await;
        Ok(user)
    }
}

/// Refuses anyone but an administrator.
fn admin_only(who: &Inviter, operation: &'static str) -> Result<(), Error> {
    if who.role == InviterRole::Admin {
        Ok(())
    } else {
        Err(Denied::AdminOnly { operation }.into())
    }
}

/// Whether the writable property `property` (a name of
/// [`UserPatch::properties`]) differs between `before` and `after`.
fn changed(before: &User, after: &User, property: &str) -> bool {
    match property {
        "displayName" => before.display_name != after.display_name,
        "accountEnabled" => before.account_enabled != after.account_enabled,
        "userType" => before.user_type != after.user_type,
        // The profile attributes.
        other => before.attributes.get(other) != after.attributes.get(other),
    }
}
