//! Policies. Today: the external collaboration settings that decide who may
//! invite and which domains may be invited, checked at invite time and again
//! at redemption, and the terms of use a redemption asks guests to accept.

mod collaboration;
mod terms;

pub use collaboration::{
    AllowInvitesFrom, CollaborationSettings, DomainRestriction, DomainRule, InviterRole,
};
pub use terms::{MAX_AGREEMENT_ID_LEN, TermsOfUse};
