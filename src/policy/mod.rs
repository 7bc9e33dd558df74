//! Policies. Today: the external collaboration settings that decide who may
//! invite and which domains may be invited, checked at invite time and again
//! at redemption, and the terms of use a redemption asks guests to accept.

mod collaboration;
mod cross_tenant;
mod terms;

pub use collaboration::{
    AllowInvitesFrom, CollaborationSettings, DomainRestriction, DomainRule, InviterRole,
};
pub use collaboration::{GuestUserAccess, MAX_DOMAIN_RULES, PolicyConfigError};
pub use cross_tenant::{
    ALL_APPLICATIONS, ALL_USERS, AccessDecision, AccessType, AutomaticUserConsentSettings, B2bSetting,
    ConfigSource, CrossTenantAccessPolicy, CrossTenantSettings, DefaultConfiguration, EffectiveAccess,
    EffectiveB2bSetting, HomeClaims, InboundTrust, MAX_APPLICATION_ID_LEN, MAX_PARTNERS, MAX_TARGETS,
    PartnerConfiguration, Resolved, SettingDecision, Target, TargetConfiguration, TargetMatch, TargetSetting,
    TargetType,
};
pub use terms::{MAX_AGREEMENT_ID_LEN, TermsOfUse};
