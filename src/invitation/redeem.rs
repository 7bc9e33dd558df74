//! Redemption: the pure checks and the completion write.
//!
//! A redemption is a flow of the sign-up engine
//! ([`crate::flow::machine`], a [`FlowRecord`](crate::directory::FlowRecord) with
//! [`redemption`](crate::directory::FlowRecord::redemption) set) and runs in steps, each a
//! request of its own:
//!
//! 1. **view** (GET on the link): verify the ticket, show who invited whom.
//!    Changes nothing, sends nothing: mail scanners follow links.
//! 2. **start** (POST): open a server-held flow (the browser keeps only
//!    an opaque handle) and send a one-time passcode to the invited
//!    address.
//! 3. **passcode**: prove control of the address.
//! 4. **consent**: accept or decline what the organisation will see;
//!    declining leaves the invitation pending.
//! 5. **terms of use**, when the tenant has them: accept (recorded on the
//!    user with version and time) or decline.
//!
//! The last accepted step completes the redemption exactly once.
//!
//! Every refusal that depends on directory state (no such invitation,
//! revoked, replaced, already redeemed, another tenant's) is the same
//! [`TicketError::NoLongerValid`], so a link reveals nothing about who is in
//! the directory.

use time::OffsetDateTime;
use url::Url;

use crate::config::Config;
use crate::directory::{
    Expect, ExternalUserState, InvitationRecord, InvitationStatus, User, UserRecord, Versioned, Write,
};
use crate::error::{Denied, Error, TicketError};
use crate::flow::access::{StepUpPage, UserUpdate};
use crate::flow::machine::FlowIdentity;
use crate::policy::TermsOfUse;
use crate::secret::{Digest, SecretString};

/// What the page behind a redemption link shows (GET).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionView {
    /// The inviting organisation.
    pub organization: String,
    /// The invited address, as stored.
    pub invited_email: String,
    /// The guest's display name, if given.
    pub display_name: Option<String>,
    /// The organisation's privacy statement.
    pub privacy_statement_url: Option<String>,
    /// The federated provider the redemption order chose for the invited
    /// address (its id); `None` when the guest proves the address with an
    /// email one-time passcode.
    pub sign_in_with: Option<String>,
}

/// The next thing the guest must do.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedemptionStep {
    /// Enter the passcode mailed to `sent_to`.
    EnterPasscode {
        /// The address the code went to, as stored.
        sent_to: String,
    },
    /// The passcode could not be handed to the mail transport. The
    /// redemption is open and waiting for a code: offer to send another one with
    /// [`GuestPass::resend_passcode`](crate::GuestPass::resend_passcode)
    /// (the failed send counts against the address's send limit).
    PasscodeNotDelivered {
        /// The address the code was for, as stored.
        sent_to: String,
        /// Why the transport refused it.
        reason: crate::error::MailError,
    },
    /// Consent (or not) to what the organisation will see.
    Consent {
        /// The organisation asking.
        organization: String,
        /// Its privacy statement.
        privacy_statement_url: Option<String>,
        /// What the organisation will see, for the consent page.
        permissions: Vec<&'static str>,
    },
    /// Accept or decline the tenant's terms of use
    /// ([`GuestPass::answer_terms_of_use`](crate::GuestPass::answer_terms_of_use)).
    TermsOfUse {
        /// The terms.
        terms: TermsOfUse,
    },
    /// Send the browser to the federated provider the redemption order
    /// chose (a `303` to `url`); its callback goes to
    /// [`GuestPass::redemption_callback`](crate::GuestPass::redemption_callback).
    SignInWith {
        /// The provider's id.
        provider: String,
        /// The authorization request (its `Debug` hides the query).
        url: crate::idp::AuthorizationUrl,
    },
    /// Waiting for the federated provider's callback (a reload): open the
    /// invitation link again to start a new sign-in.
    AwaitingSignIn {
        /// The provider's id.
        provider: String,
    },
    /// Conditional access asks for multi-factor authentication: choose a
    /// method ([`GuestPass::choose_step_up`](crate::GuestPass::choose_step_up)),
    /// then enter its code
    /// ([`GuestPass::submit_step_up_code`](crate::GuestPass::submit_step_up_code)).
    StepUp(StepUpPage),
    /// An access policy (conditional access, or the cross-organisation
    /// settings for the guest's organisation) does not let the guest in;
    /// the invitation stays pending.
    Blocked {
        /// What to tell the guest.
        message: String,
    },
    /// The redemption is complete: the step that completed it (an accepted
    /// step-up code, say) hands back the accepted user and the
    /// invitation's registered redirect URL to send the browser to, as
    /// [`Finished::Redeemed`] does. A reload of the finished flow
    /// ([`GuestPass::redemption_step`](crate::GuestPass::redemption_step))
    /// shows the same, with the user as stored then.
    Redeemed(Box<Redeemed>),
    /// The guest declined; the invitation stays pending (a reload after a
    /// decline).
    Declined,
}

/// A redemption opened by [`GuestPass::start_redemption`](crate::GuestPass::start_redemption).
#[derive(Debug)]
pub struct RedemptionStarted {
    /// The opaque handle; the host keeps it in the guest's browser (a
    /// `__Host-` cookie) and passes it to the next steps.
    pub handle: SecretString,
    /// What to show next.
    pub step: RedemptionStep,
}

/// The guest's answer on the consent page or the terms-of-use page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentDecision {
    /// Accept: complete the redemption.
    Accept,
    /// Decline: the invitation stays pending.
    Decline,
}

/// A completed redemption.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redeemed {
    /// The accepted user.
    pub user: User,
    /// Where to send the browser: the invitation's registered redirect URL.
    pub redirect_url: Url,
}

/// How [`GuestPass::finish_redemption`](crate::GuestPass::finish_redemption)
/// (consent) or [`GuestPass::answer_terms_of_use`](crate::GuestPass::answer_terms_of_use)
/// ended.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Finished {
    /// Redeemed.
    Redeemed(Box<Redeemed>),
    /// Declined; nothing changed but the flow, the invitation stays pending.
    Declined,
    /// Consent given; terms of use come next (the tenant's, or terms a
    /// conditional access policy requires).
    TermsOfUse {
        /// The terms to show.
        terms: TermsOfUse,
    },
    /// Conditional access asks for multi-factor authentication first.
    StepUp(StepUpPage),
    /// An access policy does not let the guest in; the invitation stays
    /// pending.
    Blocked {
        /// What to tell the guest.
        message: String,
    },
}

/// What the organisation receives, shown on the consent page.
pub const CONSENT_PERMISSIONS: [&str; 3] = ["name", "email address", "profile photo"];

/// Checks that `invitation` and `user` still allow redeeming a ticket whose
/// verifier hashes to `verifier_hash`, at `now`, in this tenant.
pub(crate) fn check_redeemable(
    config: &Config,
    invitation_id: crate::id::Id,
    verifier_hash: &Digest,
    invitation: Option<&Versioned<InvitationRecord>>,
    user: Option<&Versioned<UserRecord>>,
    now: OffsetDateTime,
) -> Result<(), Error> {
    let no = || Error::Ticket(TicketError::NoLongerValid);
    let inv = invitation.ok_or_else(no)?;
    let user = user.ok_or_else(no)?;
    let binding = inv.value.ticket.as_ref().ok_or_else(no)?;
    let ok = inv.value.tenant_id == config.tenant_id
        && inv.value.invitation.id == invitation_id
        && matches!(
            inv.value.invitation.status,
            InvitationStatus::PendingAcceptance | InvitationStatus::InProgress
        )
        && binding.verifier_hash.ct_eq(verifier_hash)
        && user.value.tenant_id == config.tenant_id
        && user.value.active_invitation == Some(invitation_id)
        && user.value.user.external_user_state == Some(ExternalUserState::PendingAcceptance)
        && user.value.user.account_enabled;
    if !ok {
        return Err(no());
    }
    if now >= binding.expires_at {
        return Err(Error::Ticket(TicketError::Expired));
    }
    // The collaboration settings may have changed since the invitation.
    if let Some(mail) = &user.value.user.mail
        && !config.collaboration.domains.permits(mail.domain())
    {
        return Err(Denied::DomainNotAllowed {
            domain: mail.domain().to_owned(),
        }
        .into());
    }
    Ok(())
}

/// The exactly-once completion: the user accepted with the email identity
/// the flow proved (and the terms it accepted), the invitation completed —
/// the writes that go into one conditional batch with the flow's own.
///
/// The user's mail must still be the address the identity proved (the
/// passcode's address, or the federated provider's verified email);
/// otherwise nothing is written. The identity recorded is the provider's
/// issuer and subject.
pub(crate) fn completion(
    invitation: &Versioned<InvitationRecord>,
    user: &Versioned<UserRecord>,
    identity: &FlowIdentity,
    update: UserUpdate,
    now: OffsetDateTime,
) -> Result<([Write; 2], User), Error> {
    if user.value.mail_key() != Some(identity.email.comparison_key()) {
        return Err(TicketError::NoLongerValid.into());
    }
    let mut u = user.value.clone();
    u.active_invitation = None;
    u.user.external_user_state = Some(ExternalUserState::Accepted);
    u.user.external_user_state_change_date_time = Some(now);
    if !u.user.has_identity(&identity.issuer, &identity.subject) {
        u.user.identities.push(identity.object_identity());
    }
    update.apply(&mut u);
    let mut inv = invitation.value.clone();
    inv.invitation.status = InvitationStatus::Completed;
    inv.ticket = None;
    let user_out = u.user.clone();
    let writes = [
        Write::User {
            record: u,
            expect: Expect::Version(user.version),
        },
        Write::Invitation {
            record: inv,
            expect: Expect::Version(invitation.version),
        },
    ];
    Ok((writes, user_out))
}
