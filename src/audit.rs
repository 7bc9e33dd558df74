//! Audit events: what happened, to whom, without secrets.

use std::sync::Mutex;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::id::Id;

/// Something worth recording. Events never carry tickets, passcodes or
/// session handles.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AuditKind {
    /// An invitation was created (and mailed, when asked).
    Invited {
        /// The invitation.
        invitation_id: Id,
        /// Who invited.
        inviter: Option<Id>,
    },
    /// A pending invitation was replaced by a new one for the same user.
    Resent {
        /// The new invitation.
        invitation_id: Id,
        /// The one it replaced.
        replaced: Id,
    },
    /// A pending invitation was revoked.
    Revoked {
        /// The invitation.
        invitation_id: Id,
    },
    /// A user's redemption was reset.
    RedemptionReset {
        /// The new invitation.
        invitation_id: Id,
    },
    /// A passcode was sent.
    PasscodeSent,
    /// A wrong passcode was entered.
    PasscodeFailed {
        /// Consecutive failures for the address now.
        consecutive_failures: u32,
    },
    /// The address reached the consecutive failure limit.
    AddressLocked,
    /// Consent was declined; the invitation stays pending.
    ConsentDeclined {
        /// The invitation.
        invitation_id: Id,
    },
    /// The terms of use were declined; the invitation stays pending.
    TermsOfUseDeclined {
        /// The invitation.
        invitation_id: Id,
    },
    /// The invitation was redeemed.
    Redeemed {
        /// The invitation.
        invitation_id: Id,
    },
    /// A self-service sign-up created its user.
    SignedUp {
        /// The flow.
        flow_id: Id,
        /// The user flow configuration.
        user_flow_id: String,
    },
    /// An existing user signed in through a sign-up flow.
    SignedIn {
        /// The flow.
        flow_id: Id,
    },
    /// A sign-up waits for an administrator.
    SignUpHeld {
        /// The flow.
        flow_id: Id,
    },
    /// An administrator approved a held sign-up.
    SignUpApproved {
        /// The flow.
        flow_id: Id,
        /// Who approved.
        admin: Option<Id>,
    },
    /// A sign-up was denied (by the approver or an administrator).
    SignUpDenied {
        /// The flow.
        flow_id: Id,
        /// Who denied (`None` for the approver).
        admin: Option<Id>,
    },
    /// A sign-up ended on a block page (a connector, an existing account).
    SignUpBlocked {
        /// The flow.
        flow_id: Id,
    },
    /// A redemption ended on a block page (an access policy, the guest's
    /// organisation, too many wrong authenticator codes); the invitation
    /// stays pending.
    RedemptionBlocked {
        /// The invitation.
        invitation_id: Id,
    },
    /// An administrator deleted a user, with its identities, invitations
    /// and redemption flows.
    UserDeleted {
        /// The user deleted.
        user_id: Id,
        /// Who deleted it (`None` for the system or an API client).
        admin: Option<Id>,
    },
    /// An administrator changed a user's properties.
    UserUpdated {
        /// The user changed.
        user_id: Id,
        /// Who changed it (`None` for the system or an API client).
        admin: Option<Id>,
        /// The Graph names of the properties whose value changed, in
        /// [`WRITABLE_PROPERTIES`](crate::graph::users::WRITABLE_PROPERTIES)
        /// order; never their values.
        properties: Vec<&'static str>,
    },
    /// An access decision was made at the end of a flow (conditional
    /// access, cross-organisation access), with its explanation.
    AccessEvaluated {
        /// The flow.
        flow_id: Id,
        /// The decision and, for every policy, why it applied or not.
        report: crate::flow::access::AccessReport,
    },
}

/// An audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEvent {
    /// When.
    pub at: OffsetDateTime,
    /// The tenant.
    pub tenant_id: String,
    /// The user concerned, if known.
    pub user_id: Option<Id>,
    /// What.
    pub kind: AuditKind,
}

/// Receives audit events. Recording must not fail the operation, so the
/// method returns nothing; a sink that can fail handles it itself.
#[async_trait]
pub trait AuditSink: Send + Sync + std::fmt::Debug {
    /// Records an event.
    async fn record(&self, event: AuditEvent);
}

/// Drops every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoAudit;

#[async_trait]
impl AuditSink for NoAudit {
    async fn record(&self, _event: AuditEvent) {}
}

/// Keeps events in memory, for tests and the development portal.
#[derive(Debug, Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAudit {
    /// An empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every event so far, oldest first.
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl AuditSink for MemoryAudit {
    async fn record(&self, event: AuditEvent) {
        self.events.lock().unwrap_or_else(|e| e.into_inner()).push(event);
    }
}
