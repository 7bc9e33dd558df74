//! Policies. Today: the external collaboration settings that decide who may
//! invite and which domains may be invited, checked at invite time.

mod collaboration;

pub use collaboration::{
    AllowInvitesFrom, CollaborationSettings, DomainRestriction, DomainRule, InviterRole,
};
