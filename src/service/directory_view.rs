//! Directory reads on behalf of a signed-in user, under the guest user
//! access level of the collaboration settings (`guestUserAccess`, see
//! [`GuestUserAccess::visibility`](crate::policy::GuestUserAccess::visibility)).
//!
//! [`GuestPass::user`] and [`GuestPass::users`] read as the host itself (an
//! administrator's tool); [`GuestPass::user_as`] and [`GuestPass::users_as`]
//! read as a user of the directory and show only what that user may see.

use super::GuestPass;
use crate::directory::User;
use crate::error::{Denied, Error};
use crate::id::Id;
use crate::policy::{DirectoryEntry, DirectoryRead, UserProfile, Visibility};

impl GuestPass {
    /// The user `id` as the directory's user `viewer` may see it: the whole
    /// object ([`DirectoryEntry::Full`]) for a member, for the viewer itself
    /// and for a guest when guests have the same access as members; the
    /// basic profile ([`DirectoryEntry::Profile`]) for a guest with limited
    /// access (the default); nothing for a guest with restricted access.
    ///
    /// Whether the read is allowed is decided from the viewer alone, before
    /// the target is looked up, so a refused viewer learns nothing about
    /// which ids exist.
    ///
    /// ```
    /// # tokio_test();
    /// # fn tokio_test() {
    /// # let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    /// # rt.block_on(async {
    /// use std::sync::Arc;
    /// use guestpass::{GuestPass, InvitationRequest, Inviter};
    /// use guestpass::directory::{MemoryStore, UserType};
    /// use guestpass::error::Denied;
    /// use guestpass::policy::DirectoryEntry;
    /// # use guestpass::keys::SigningKey;
    /// # use guestpass::mail::Outbox;
    ///
    /// let gp = GuestPass::builder()
    /// #   .tenant("contoso", "Contoso", "contoso.example")
    /// #   .public_base_url("https://guests.contoso.example/")
    /// #   .signing_key(SigningKey::new("k1", [42u8; 32])?)
    /// #   .redirect_url("https://app.contoso.example/")
    ///     // ... (guests have limited access by default)
    ///     .store(Arc::new(MemoryStore::new()))
    ///     .mail(Arc::new(Outbox::new()))
    ///     .build()?;
    /// let invite = |email: &str, user_type| {
    ///     let mut request = InvitationRequest::new(email, "https://app.contoso.example/");
    ///     request.invited_user_type = Some(user_type);
    ///     let gp = gp.clone();
    ///     async move { Ok::<_, guestpass::Error>(gp.invite(&Inviter::admin(None), request).await?.invited_user.id) }
    /// };
    /// let alice = invite("alice@fabrikam.example", UserType::Guest).await?;
    /// let bob = invite("bob@woodgrove.example", UserType::Guest).await?;
    /// let megan = invite("megan@contoso.example", UserType::Member).await?;
    ///
    /// // A guest sees its own object whole and another user's basic profile.
    /// assert!(matches!(gp.user_as(alice, alice).await?, DirectoryEntry::Full(_)));
    /// let DirectoryEntry::Profile(profile) = gp.user_as(alice, bob).await? else { unreachable!() };
    /// assert_eq!(profile.mail.unwrap().as_str(), "bob@woodgrove.example");
    /// // It may not list the directory; a member may.
    /// assert_eq!(gp.users_as(alice).await, Err(Denied::DirectoryReadNotAllowed.into()));
    /// assert_eq!(gp.users_as(megan).await?.len(), 3);
    /// # Ok::<(), guestpass::Error>(())
    /// # }).unwrap();
    /// # }
    /// ```
    ///
    /// # Errors
    ///
    /// [`Denied::DirectoryReadNotAllowed`] when the access level does not
    /// allow the read, or the viewer is not a user of the tenant or is
    /// disabled; [`Error::NotFound`] (`user`, as [`GuestPass::user`]) for an
    /// unknown `id` the viewer may read; [`Error::Store`].
    pub async fn user_as(&self, viewer: Id, id: Id) -> Result<DirectoryEntry, Error> {
        let viewer = self.viewer(viewer).await?;
        let visibility = self
            .inner
            .config
            .collaboration
            .guest_user_access
            .visibility(&viewer, DirectoryRead::User { target: id });
        if visibility == Visibility::Denied {
            return Err(Denied::DirectoryReadNotAllowed.into());
        }
        let target = if id == viewer.id {
            viewer
        } else {
            self.user(id).await?
        };
        Ok(match visibility {
            Visibility::Full => DirectoryEntry::Full(target),
            Visibility::BasicProfile | Visibility::Denied => {
                DirectoryEntry::Profile(UserProfile::from(&target))
            }
        })
    }

    /// Every user of the tenant, for the directory's user `viewer`: only a
    /// viewer that may enumerate the directory (a member, or a guest when
    /// guests have the same access as members) lists it, and sees every
    /// user whole.
    ///
    /// # Errors
    ///
    /// [`Denied::DirectoryReadNotAllowed`] for a guest with limited or
    /// restricted access, and for a viewer that is not a user of the tenant
    /// or is disabled; [`Error::Store`].
    pub async fn users_as(&self, viewer: Id) -> Result<Vec<User>, Error> {
        let viewer = self.viewer(viewer).await?;
        let visibility = self
            .inner
            .config
            .collaboration
            .guest_user_access
            .visibility(&viewer, DirectoryRead::List);
        if visibility != Visibility::Full {
            return Err(Denied::DirectoryReadNotAllowed.into());
        }
        self.users().await
    }

    /// The viewing user; an id that is no user of the tenant may read
    /// nothing.
    async fn viewer(&self, viewer: Id) -> Result<User, Error> {
        Ok(self
            .inner
            .store
            .user(self.tenant(), viewer)
            .await?
            .ok_or(Denied::DirectoryReadNotAllowed)?
            .value
            .user)
    }
}
