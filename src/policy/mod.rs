//! Policies:
//!
//! - the external collaboration settings: who may invite, which domains may
//!   come in (checked at invite time and again at redemption), guest
//!   access, and the passcode and self-service sign-up switches;
//! - the guest user access level applied to directory reads: what a guest
//!   may see of other users;
//! - the cross-organisation access settings: per-partner inbound and
//!   outbound B2B collaboration, trust of the home organisation's claims,
//!   automatic redemption;
//! - conditional access: compiled policies evaluated per sign-in, with a
//!   What-If explanation of every decision;
//! - the terms of use a redemption asks guests to accept.

mod collaboration;
pub mod conditional_access;
mod cross_tenant;
mod guest_access;
mod terms;

pub use collaboration::{
    AllowInvitesFrom, CollaborationSettings, DomainList, DomainRestriction, DomainRule, InviterRole,
};
pub use collaboration::{GuestUserAccess, MAX_DOMAIN_RULES, PolicyConfigError};
pub use conditional_access::{
    ClientAppType, CompiledPolicies, ConditionalAccessPolicy, Decision, Explanation, PolicySet,
    RequiredControls, Satisfied, SignIn, UserKind,
};
pub use cross_tenant::{
    ALL_APPLICATIONS, ALL_USERS, AccessDecision, AccessType, AutomaticUserConsentSettings, B2bSetting,
    ConfigSource, CrossTenantAccessPolicy, CrossTenantSettings, DefaultConfiguration, EffectiveAccess,
    EffectiveB2bSetting, HomeClaims, InboundTrust, MAX_APPLICATION_ID_LEN, MAX_PARTNERS, MAX_TARGETS,
    PartnerConfiguration, Resolved, SettingDecision, Target, TargetConfiguration, TargetMatch, TargetSetting,
    TargetType,
};
pub use guest_access::{DirectoryEntry, DirectoryRead, UserProfile, Visibility};
pub use terms::{MAX_AGREEMENT_ID_LEN, TermsOfUse};
