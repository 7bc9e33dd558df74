//! Redemption: the pure checks and the completion write.
//!
//! A redemption runs in steps, each a request of its own:
//!
//! 1. **view** (GET on the link): verify the ticket, show who invited whom.
//!    Changes nothing, sends nothing: mail scanners follow links.
//! 2. **start** (POST): open a server-held session (the browser keeps only
//!    an opaque handle) and send a one-time passcode to the invited
//!    address.
//! 3. **passcode**: prove control of the address.
//! 4. **finish** with the consent decision: accept completes the redemption
//!    exactly once; decline leaves the invitation pending.
//!
//! Every refusal that depends on directory state (no such invitation,
//! revoked, replaced, already redeemed, another tenant's) is the same
//! [`TicketError::NoLongerValid`], so a link reveals nothing about who is in
//! the directory.

use time::OffsetDateTime;
use url::Url;

use crate::config::Config;
use crate::directory::{
    EMAIL_OTP_ISSUER, Expect, ExternalUserState, InvitationRecord, InvitationStatus, ObjectIdentity,
    RedemptionSession, SessionStep, SignInType, User, UserRecord, Versioned, Write, WriteBatch,
};
use crate::error::{Denied, Error, RedemptionError, TicketError};
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
    /// The passcode could not be handed to the mail transport. The session
    /// is open and waiting for a code: offer to send another one with
    /// [`GuestPass::resend_passcode`](crate::GuestPass::resend_passcode)
    /// (the failed send counts against the address's send limit).
    PasscodeNotDelivered {
        /// The address the code was for, as stored.
        sent_to: String,
        /// Why the transport refused it.
        reason: crate::error::MailError,
    },
    /// Accept or decline the organisation's terms.
    Consent {
        /// The organisation asking.
        organization: String,
        /// Its privacy statement.
        privacy_statement_url: Option<String>,
        /// What the organisation will see, for the consent page.
        permissions: Vec<&'static str>,
    },
}

/// A session opened by [`GuestPass::start_redemption`](crate::GuestPass::start_redemption).
#[derive(Debug)]
pub struct RedemptionStarted {
    /// The opaque handle; the host keeps it in the guest's browser (a
    /// `__Host-` cookie) and passes it to the next steps.
    pub handle: SecretString,
    /// What to show next.
    pub step: RedemptionStep,
}

/// The guest's answer on the consent page.
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

/// How [`GuestPass::finish_redemption`](crate::GuestPass::finish_redemption) ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finished {
    /// Redeemed.
    Redeemed(Box<Redeemed>),
    /// Consent declined; nothing changed but the session.
    Declined,
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

/// Checks a session is usable at `now` and at `expected`.
pub(crate) fn check_session(
    session: &RedemptionSession,
    expected: SessionStep,
    now: OffsetDateTime,
) -> Result<(), RedemptionError> {
    if now >= session.expires_at {
        return Err(RedemptionError::SessionExpired);
    }
    if session.step != expected {
        return Err(RedemptionError::WrongStep {
            expected: expected.name(),
            actual: session.step.name(),
        });
    }
    Ok(())
}

/// The exactly-once completion: the user accepted with the email identity
/// it proved, the invitation completed, the session closed — one
/// conditional batch.
///
/// The identity's subject is the address the passcode proved, and the user's
/// mail must still be that address; otherwise nothing is written.
pub(crate) fn completion(
    session: &Versioned<RedemptionSession>,
    invitation: &Versioned<InvitationRecord>,
    user: &Versioned<UserRecord>,
    now: OffsetDateTime,
) -> Result<(WriteBatch, User), Error> {
    let proven = session
        .value
        .proven_address
        .as_deref()
        .ok_or(RedemptionError::WrongStep {
            expected: SessionStep::AwaitingConsent.name(),
            actual: SessionStep::AwaitingPasscode.name(),
        })?;
    if user.value.mail_key() != Some(proven) {
        return Err(TicketError::NoLongerValid.into());
    }
    let mut u = user.value.clone();
    u.active_invitation = None;
    u.user.external_user_state = Some(ExternalUserState::Accepted);
    u.user.external_user_state_change_date_time = Some(now);
    if !u.user.has_identity(EMAIL_OTP_ISSUER, proven) {
        u.user.identities.push(ObjectIdentity {
            sign_in_type: SignInType::Federated,
            issuer: EMAIL_OTP_ISSUER.to_owned(),
            issuer_assigned_id: proven.to_owned(),
        });
    }
    let mut inv = invitation.value.clone();
    inv.invitation.status = InvitationStatus::Completed;
    inv.ticket = None;
    let mut s = session.value.clone();
    s.step = SessionStep::Completed;
    let user_out = u.user.clone();
    let batch = WriteBatch::new()
        .with(Write::User {
            record: u,
            expect: Expect::Version(user.version),
        })
        .with(Write::Invitation {
            record: inv,
            expect: Expect::Version(invitation.version),
        })
        .with(Write::Session {
            record: s,
            expect: Expect::Version(session.version),
        });
    Ok((batch, user_out))
}
