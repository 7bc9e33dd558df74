//! Cross-tenant access settings, as Entra's `crossTenantAccessPolicy`: a
//! default configuration for every other organisation, plus partner
//! configurations keyed by the partner's tenant id, where every field a
//! partner leaves unset inherits the default.
//!
//! - `b2bCollaborationInbound` decides which users and groups of the other
//!   organisation may come in as guests, and to which of our applications;
//!   `b2bCollaborationOutbound` the same for our users going to theirs.
//! - `inboundTrust` decides which claims of the guest's home organisation
//!   count here: multifactor authentication, compliant device, hybrid joined
//!   device.
//! - `automaticUserConsentSettings` decides automatic redemption: a guest
//!   redeems without the consent prompt only when our inbound setting and
//!   the partner's outbound setting both allow it. As in Entra, it is set
//!   per partner: the default configuration's values are always `false`.
//!
//! The documents read by [`CrossTenantSettings::from_json`] and
//! [`CrossTenantSettings::from_toml`] use Graph's names and shapes
//! (`crossTenantAccessPolicyConfigurationDefault`,
//! `crossTenantAccessPolicyConfigurationPartner`,
//! `crossTenantAccessPolicyB2BSetting`): `{"default": {...}, "partners":
//! [{"tenantId": "...", ...}]}`. A field left out (or `null`) is unset: at
//! a partner it inherits the default, at the default it takes Entra's
//! service default (B2B collaboration allowed for all users and all
//! applications both ways, no claim trusted, no automatic redemption).
//!
//! Identifiers:
//!
//! - a tenant id is the directory id GUID (the `tid` claim), never a domain:
//!   an organisation has many domains and a domain can move to another
//!   organisation, while the GUID is fixed. Ids are compared as GUIDs (case
//!   does not matter) and written back lowercase;
//! - user and group targets are object ids (GUIDs) in the partner's
//!   directory for inbound settings, in ours for outbound settings, or
//!   `AllUsers` (target type `user`);
//! - application targets are client ids (1 to 256 characters of
//!   `A-Z a-z 0-9 - _ .`, compared exactly, as sign-up configuration's
//!   `clientId`), or `AllApplications`.
//!
//! ```
//! use guestpass::policy::{AccessType, ConfigSource, CrossTenantSettings, TargetSetting};
//! let settings = CrossTenantSettings::from_json(r#"{
//!   "partners": [{
//!     "tenantId": "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b",
//!     "b2bCollaborationInbound": {
//!       "applications": {"accessType": "blocked", "targets": [{"target": "payroll", "targetType": "application"}]}
//!     }
//!   }]
//! }"#)?;
//! let partner = settings.effective("3F2A1B4C-5D6E-4F70-8A9B-0C1D2E3F4A5B");
//! let user = "6a1f0c2e-8d3b-4e5f-9a0b-1c2d3e4f5a6b";
//! let decision = partner.inbound_allows(user, &[], "payroll");
//! assert_eq!(decision.access(), AccessType::Blocked);
//! let by = decision.blocked_by().unwrap();
//! assert_eq!((by.setting, by.source), (TargetSetting::Applications, ConfigSource::Partner));
//! assert!(partner.inbound_allows(user, &[], "wiki").is_allowed());
//! # Ok::<(), guestpass::policy::PolicyConfigError>(())
//! ```

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::collaboration::{PolicyConfigError, read_json, read_toml};
use crate::flow::connector::quote;
use crate::id::Id;

/// Most partner configurations one policy may hold.
pub const MAX_PARTNERS: usize = 1000;
/// Most targets one `usersAndGroups` or `applications` list may hold.
pub const MAX_TARGETS: usize = 1000;
/// The target meaning every user (target type `user`).
pub const ALL_USERS: &str = "AllUsers";
/// The target meaning every application (target type `application`).
pub const ALL_APPLICATIONS: &str = "AllApplications";
/// Longest application target (a client id), in bytes.
pub const MAX_APPLICATION_ID_LEN: usize = 256;

const SETTINGS: &str = "crossTenantAccess";

// ---------------------------------------------------------------------------
// The declared configuration (Graph's shapes)
// ---------------------------------------------------------------------------

/// Whether the listed targets are allowed or blocked (Graph's
/// `crossTenantAccessPolicyTargetConfigurationAccessType`). Targets not
/// listed get the opposite.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AccessType {
    /// The listed targets are allowed.
    Allowed,
    /// The listed targets are blocked.
    Blocked,
}

impl AccessType {
    /// The other access type.
    pub const fn opposite(self) -> Self {
        match self {
            AccessType::Allowed => AccessType::Blocked,
            AccessType::Blocked => AccessType::Allowed,
        }
    }
}

/// What a target names (Graph's `crossTenantAccessPolicyTargetType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum TargetType {
    /// A user (`usersAndGroups` only).
    User,
    /// A group: its members (`usersAndGroups` only).
    Group,
    /// An application (`applications` only).
    Application,
}

/// One target (Graph's `crossTenantAccessPolicyTarget`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// `AllUsers`, a user or group object id, `AllApplications` or an
    /// application's client id.
    pub target: String,
    /// What `target` names.
    pub target_type: TargetType,
}

impl Target {
    /// A target of `target_type`.
    pub fn new(target: impl Into<String>, target_type: TargetType) -> Self {
        Self {
            target: target.into(),
            target_type,
        }
    }
}

/// The users and groups, or the applications, a setting allows or blocks
/// (Graph's `crossTenantAccessPolicyTargetConfiguration`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TargetConfiguration {
    /// What happens to the listed targets.
    pub access_type: AccessType,
    /// The targets: 1 to [`MAX_TARGETS`] distinct ones; `AllUsers` or
    /// `AllApplications` stands alone.
    pub targets: Vec<Target>,
}

impl TargetConfiguration {
    /// `access_type` for `targets`.
    pub fn new(access_type: AccessType, targets: impl IntoIterator<Item = Target>) -> Self {
        Self {
            access_type,
            targets: targets.into_iter().collect(),
        }
    }

    /// Every user allowed or blocked.
    pub fn all_users(access_type: AccessType) -> Self {
        Self::new(access_type, [Target::new(ALL_USERS, TargetType::User)])
    }

    /// Every application allowed or blocked.
    pub fn all_applications(access_type: AccessType) -> Self {
        Self::new(
            access_type,
            [Target::new(ALL_APPLICATIONS, TargetType::Application)],
        )
    }
}

/// B2B collaboration in one direction (Graph's
/// `crossTenantAccessPolicyB2BSetting`). An unset part inherits.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct B2bSetting {
    /// Which users and groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub users_and_groups: Option<TargetConfiguration>,
    /// Which applications.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applications: Option<TargetConfiguration>,
}

/// Which claims of a guest's home organisation count here (Graph's
/// `crossTenantAccessPolicyInboundTrust`). An unset claim inherits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InboundTrust {
    /// Whether the home organisation's multifactor authentication counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_mfa_accepted: Option<bool>,
    /// Whether the home organisation's compliant device claim counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub is_compliant_device_accepted: Option<bool>,
    /// Whether the home organisation's hybrid joined device claim counts.
    #[serde(
        default,
        rename = "isHybridAzureADJoinedDeviceAccepted",
        skip_serializing_if = "Option::is_none"
    )]
    pub is_hybrid_azure_ad_joined_device_accepted: Option<bool>,
}

/// Automatic redemption (Graph's `inboundOutboundPolicyConfiguration` under
/// `automaticUserConsentSettings`). An unset value inherits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AutomaticUserConsentSettings {
    /// Whether the partner's users redeem here without the consent prompt
    /// (when the partner's outbound setting allows it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_allowed: Option<bool>,
    /// Whether our users redeem at the partner without the consent prompt
    /// (when the partner's inbound setting allows it too).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_allowed: Option<bool>,
}

/// The default configuration (Graph's
/// `crossTenantAccessPolicyConfigurationDefault`): what applies to every
/// organisation that is not a partner, and what partners inherit. Unset
/// fields take Entra's service default.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DefaultConfiguration {
    /// Other organisations' users coming in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b2b_collaboration_inbound: Option<B2bSetting>,
    /// Our users going out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b2b_collaboration_outbound: Option<B2bSetting>,
    /// Which home-organisation claims count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_trust: Option<InboundTrust>,
    /// Automatic redemption: at the default, only `false` or unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_user_consent_settings: Option<AutomaticUserConsentSettings>,
}

/// The configuration of one partner organisation (Graph's
/// `crossTenantAccessPolicyConfigurationPartner`). Unset fields inherit the
/// default configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartnerConfiguration {
    /// The partner's tenant (directory) id, a GUID.
    pub tenant_id: String,
    /// The partner's users coming in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b2b_collaboration_inbound: Option<B2bSetting>,
    /// Our users going to the partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub b2b_collaboration_outbound: Option<B2bSetting>,
    /// Which of the partner's claims count.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_trust: Option<InboundTrust>,
    /// Automatic redemption with this partner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub automatic_user_consent_settings: Option<AutomaticUserConsentSettings>,
}

impl PartnerConfiguration {
    /// A partner that inherits everything from the default.
    pub fn new(tenant_id: impl Into<String>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            b2b_collaboration_inbound: None,
            b2b_collaboration_outbound: None,
            inbound_trust: None,
            automatic_user_consent_settings: None,
        }
    }
}

/// The whole declared policy (Graph's `crossTenantAccessPolicy` with its
/// `default` and `partners`), before validation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CrossTenantAccessPolicy {
    /// The default configuration.
    #[serde(default, skip_serializing_if = "is_unset_default")]
    pub default: DefaultConfiguration,
    /// The partner configurations, at most [`MAX_PARTNERS`], one per tenant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub partners: Vec<PartnerConfiguration>,
}

fn is_unset_default(d: &DefaultConfiguration) -> bool {
    *d == DefaultConfiguration::default()
}

// ---------------------------------------------------------------------------
// Decisions
// ---------------------------------------------------------------------------

/// Where a resolved setting comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConfigSource {
    /// The default configuration (or, where it is unset too, Entra's
    /// service default).
    Default,
    /// The partner's own configuration.
    Partner,
}

/// A resolved value and where it comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resolved<T> {
    /// The value in force.
    pub value: T,
    /// Which configuration set it.
    pub source: ConfigSource,
}

/// The two target settings of a B2B collaboration setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TargetSetting {
    /// `usersAndGroups`.
    UsersAndGroups,
    /// `applications`.
    Applications,
}

/// How a request met a target list.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TargetMatch {
    /// The list is `AllUsers` or `AllApplications`: its access type applies.
    AllTargets,
    /// `targets[index]` names the user, one of its groups or the
    /// application: the list's access type applies. (The first such target
    /// in list order.)
    Listed {
        /// The index in the setting's `targets`.
        index: usize,
    },
    /// Nothing in the list names the request: the opposite access type
    /// applies.
    NotListed,
}

/// What one target setting decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SettingDecision {
    /// Which setting.
    pub setting: TargetSetting,
    /// Which configuration the setting came from.
    pub source: ConfigSource,
    /// What it decided.
    pub access: AccessType,
    /// Why.
    pub matched: TargetMatch,
}

/// A B2B collaboration decision: access is allowed when both the
/// users-and-groups setting and the applications setting allow it. Both
/// are always evaluated, so an explanation can show each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccessDecision {
    /// What `usersAndGroups` decided for the user and its groups.
    pub users_and_groups: SettingDecision,
    /// What `applications` decided for the application.
    pub applications: SettingDecision,
}

impl AccessDecision {
    /// Allowed when both settings allow.
    pub fn access(&self) -> AccessType {
        if self.is_allowed() {
            AccessType::Allowed
        } else {
            AccessType::Blocked
        }
    }

    /// Whether both settings allow.
    pub fn is_allowed(&self) -> bool {
        self.users_and_groups.access == AccessType::Allowed && self.applications.access == AccessType::Allowed
    }

    /// The setting that blocked (users and groups first, as Entra checks
    /// them first), or `None` when access is allowed.
    pub fn blocked_by(&self) -> Option<SettingDecision> {
        [self.users_and_groups, self.applications]
            .into_iter()
            .find(|d| d.access == AccessType::Blocked)
    }
}

/// The claims a guest's home organisation made about the sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HomeClaims {
    /// The user passed multifactor authentication.
    pub mfa: bool,
    /// The device is compliant.
    pub compliant_device: bool,
    /// The device is hybrid Entra joined.
    pub hybrid_joined_device: bool,
}

impl HomeClaims {
    /// No claim.
    pub const NONE: HomeClaims = HomeClaims {
        mfa: false,
        compliant_device: false,
        hybrid_joined_device: false,
    };
}

/// A target list prepared for lookups.
#[derive(Debug, PartialEq, Eq)]
struct CompiledTargets {
    /// The list as declared (normalised: GUIDs lowercase).
    declared: TargetConfiguration,
    all: bool,
    users: HashMap<Id, usize>,
    groups: HashMap<Id, usize>,
    applications: HashMap<String, usize>,
}

impl CompiledTargets {
    fn decide(&self, setting: TargetSetting, source: ConfigSource, matched: TargetMatch) -> SettingDecision {
        let access = match matched {
            TargetMatch::AllTargets | TargetMatch::Listed { .. } => self.declared.access_type,
            TargetMatch::NotListed => self.declared.access_type.opposite(),
        };
        SettingDecision {
            setting,
            source,
            access,
            matched,
        }
    }

    fn match_principal(&self, user_id: &str, groups: &[&str]) -> TargetMatch {
        if self.all {
            return TargetMatch::AllTargets;
        }
        let mut best = user_id
            .parse::<Id>()
            .ok()
            .and_then(|id| self.users.get(&id).copied());
        if !self.groups.is_empty() {
            for g in groups {
                if let Some(&i) = g.parse::<Id>().ok().and_then(|id| self.groups.get(&id)) {
                    best = Some(best.map_or(i, |b| b.min(i)));
                }
            }
        }
        best.map_or(TargetMatch::NotListed, |index| TargetMatch::Listed { index })
    }

    fn match_application(&self, application_id: &str) -> TargetMatch {
        if self.all {
            return TargetMatch::AllTargets;
        }
        self.applications
            .get(application_id)
            .map_or(TargetMatch::NotListed, |&index| TargetMatch::Listed { index })
    }
}

/// A target list in force and where it comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SourcedTargets {
    targets: Arc<CompiledTargets>,
    source: ConfigSource,
}

/// B2B collaboration in one direction as it applies to one organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveB2bSetting {
    users_and_groups: SourcedTargets,
    applications: SourcedTargets,
}

impl EffectiveB2bSetting {
    /// The users-and-groups setting in force.
    pub fn users_and_groups(&self) -> Resolved<&TargetConfiguration> {
        Resolved {
            value: &self.users_and_groups.targets.declared,
            source: self.users_and_groups.source,
        }
    }

    /// The applications setting in force.
    pub fn applications(&self) -> Resolved<&TargetConfiguration> {
        Resolved {
            value: &self.applications.targets.declared,
            source: self.applications.source,
        }
    }

    /// Whether `user_id`, a member of `groups`, may use `application_id`.
    /// User and group ids are GUIDs (any case); an id that is not a GUID
    /// matches no user or group target. Does not allocate.
    pub fn allows(&self, user_id: &str, groups: &[&str], application_id: &str) -> AccessDecision {
        let u = &self.users_and_groups;
        let a = &self.applications;
        AccessDecision {
            users_and_groups: u.targets.decide(
                TargetSetting::UsersAndGroups,
                u.source,
                u.targets.match_principal(user_id, groups),
            ),
            applications: a.targets.decide(
                TargetSetting::Applications,
                a.source,
                a.targets.match_application(application_id),
            ),
        }
    }
}

/// Everything the cross-tenant access settings decide for one other
/// organisation, with inheritance resolved: a partner's configuration over
/// the default, or the default alone for an organisation that is not a
/// partner. Decisions are pure and do not allocate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveAccess {
    tenant_id: Option<Id>,
    inbound: EffectiveB2bSetting,
    outbound: EffectiveB2bSetting,
    mfa_accepted: Resolved<bool>,
    compliant_device_accepted: Resolved<bool>,
    hybrid_joined_device_accepted: Resolved<bool>,
    automatic_inbound: Resolved<bool>,
    automatic_outbound: Resolved<bool>,
}

impl EffectiveAccess {
    /// The partner these settings are for, or `None` for the default.
    pub fn tenant_id(&self) -> Option<Id> {
        self.tenant_id
    }

    /// B2B collaboration inbound: the partner's users coming in.
    pub fn b2b_collaboration_inbound(&self) -> &EffectiveB2bSetting {
        &self.inbound
    }

    /// B2B collaboration outbound: our users going to the partner.
    pub fn b2b_collaboration_outbound(&self) -> &EffectiveB2bSetting {
        &self.outbound
    }

    /// Whether the partner's user `user_id`, a member of the partner's
    /// `groups`, may come in as a guest to our application
    /// `application_id` (`b2bCollaborationInbound`).
    pub fn inbound_allows(&self, user_id: &str, groups: &[&str], application_id: &str) -> AccessDecision {
        self.inbound.allows(user_id, groups, application_id)
    }

    /// Whether our user `user_id`, a member of our `groups`, may go to the
    /// partner's application `application_id` (`b2bCollaborationOutbound`).
    pub fn outbound_allows(&self, user_id: &str, groups: &[&str], application_id: &str) -> AccessDecision {
        self.outbound.allows(user_id, groups, application_id)
    }

    /// `inboundTrust.isMfaAccepted` in force.
    pub fn is_mfa_accepted(&self) -> Resolved<bool> {
        self.mfa_accepted
    }

    /// `inboundTrust.isCompliantDeviceAccepted` in force.
    pub fn is_compliant_device_accepted(&self) -> Resolved<bool> {
        self.compliant_device_accepted
    }

    /// `inboundTrust.isHybridAzureADJoinedDeviceAccepted` in force.
    pub fn is_hybrid_azure_ad_joined_device_accepted(&self) -> Resolved<bool> {
        self.hybrid_joined_device_accepted
    }

    /// `automaticUserConsentSettings.inboundAllowed` in force.
    pub fn automatic_user_consent_inbound(&self) -> Resolved<bool> {
        self.automatic_inbound
    }

    /// `automaticUserConsentSettings.outboundAllowed` in force.
    pub fn automatic_user_consent_outbound(&self) -> Resolved<bool> {
        self.automatic_outbound
    }

    /// Whether the partner's users redeem here without the consent prompt:
    /// only when our inbound setting allows it and the partner declares
    /// that its outbound setting allows it (`partner_outbound_allowed`).
    /// Access itself is still decided by
    /// [`inbound_allows`](Self::inbound_allows).
    pub fn automatic_redemption(&self, partner_outbound_allowed: bool) -> bool {
        self.automatic_inbound.value && partner_outbound_allowed
    }

    /// Whether our users redeem at the partner without the consent prompt:
    /// only when our outbound setting allows it and the partner declares
    /// that its inbound setting allows it.
    pub fn outbound_automatic_redemption(&self, partner_inbound_allowed: bool) -> bool {
        self.automatic_outbound.value && partner_inbound_allowed
    }

    /// The home organisation's `claims` that count here: each claim whose
    /// `inboundTrust` setting is off is turned off. The caller vouches that
    /// the claims come from the user's home organisation, which is this
    /// partner; prefer [`trusted_claims_from`](Self::trusted_claims_from).
    pub fn trusted_claims(&self, claims: HomeClaims) -> HomeClaims {
        HomeClaims {
            mfa: claims.mfa && self.mfa_accepted.value,
            compliant_device: claims.compliant_device && self.compliant_device_accepted.value,
            hybrid_joined_device: claims.hybrid_joined_device && self.hybrid_joined_device_accepted.value,
        }
    }

    /// The `claims` issued by `claim_issuer_tenant` that count here for a
    /// user whose home tenant is `user_home_tenant`: nothing unless both are
    /// tenant ids of the same tenant (a claim from an organisation that is
    /// not the user's home proves nothing about the user) and, for a
    /// partner's settings, that tenant is this partner; then as
    /// [`trusted_claims`](Self::trusted_claims).
    ///
    /// For the default settings the caller must have resolved the issuer
    /// with [`CrossTenantSettings::effective`];
    /// [`CrossTenantSettings::trusted_claims_from`] does both.
    pub fn trusted_claims_from(
        &self,
        user_home_tenant: Option<&str>,
        claim_issuer_tenant: &str,
        claims: HomeClaims,
    ) -> HomeClaims {
        let Ok(issuer) = claim_issuer_tenant.parse::<Id>() else {
            return HomeClaims::NONE;
        };
        let home = user_home_tenant.and_then(|h| h.parse::<Id>().ok());
        if home != Some(issuer) || self.tenant_id.is_some_and(|t| t != issuer) {
            return HomeClaims::NONE;
        }
        self.trusted_claims(claims)
    }
}

// ---------------------------------------------------------------------------
// The validated settings
// ---------------------------------------------------------------------------

/// The validated cross-tenant access settings: the declared
/// [`CrossTenantAccessPolicy`] and, computed once, the
/// [`EffectiveAccess`] of the default and of every partner.
///
/// [`Default`] is Entra's service default with no partners. Serialized as
/// the declared policy (tenant ids and user and group ids lowercase), and
/// deserialized with the checks of [`new`](Self::new).
#[derive(Debug, Clone)]
pub struct CrossTenantSettings {
    policy: CrossTenantAccessPolicy,
    default: EffectiveAccess,
    partners: HashMap<Id, EffectiveAccess>,
}

impl PartialEq for CrossTenantSettings {
    fn eq(&self, other: &Self) -> bool {
        // The effective settings are computed from the policy.
        self.policy == other.policy
    }
}

impl Eq for CrossTenantSettings {}

impl Default for CrossTenantSettings {
    fn default() -> Self {
        Self {
            policy: CrossTenantAccessPolicy::default(),
            default: service_default(),
            partners: HashMap::new(),
        }
    }
}

/// A setting compiled from the declared policy, or `None` when unset.
struct CompiledB2b {
    users_and_groups: Option<Arc<CompiledTargets>>,
    applications: Option<Arc<CompiledTargets>>,
}

/// `own` over `base`: each list `own` sets comes from `own_source`, each it
/// leaves unset is `base`'s, from the default.
fn overlay_b2b(
    own: &CompiledB2b,
    base: &EffectiveB2bSetting,
    own_source: ConfigSource,
) -> EffectiveB2bSetting {
    let pick = |own: &Option<Arc<CompiledTargets>>, base: &SourcedTargets| match own {
        Some(t) => SourcedTargets {
            targets: Arc::clone(t),
            source: own_source,
        },
        None => SourcedTargets {
            targets: Arc::clone(&base.targets),
            source: ConfigSource::Default,
        },
    };
    EffectiveB2bSetting {
        users_and_groups: pick(&own.users_and_groups, &base.users_and_groups),
        applications: pick(&own.applications, &base.applications),
    }
}

/// `own` over `base`, as [`overlay_b2b`].
fn overlay_bool(own: Option<bool>, base: Resolved<bool>, own_source: ConfigSource) -> Resolved<bool> {
    match own {
        Some(value) => Resolved {
            value,
            source: own_source,
        },
        None => Resolved {
            value: base.value,
            source: ConfigSource::Default,
        },
    }
}

/// The settings of `tenant_id` (`None` for the default): its own
/// `inbound`, `outbound`, `trust` and `consent`, set in `own_source`, over
/// `base` for every part they leave unset.
fn resolve(
    tenant_id: Option<Id>,
    base: &EffectiveAccess,
    own_source: ConfigSource,
    inbound: &CompiledB2b,
    outbound: &CompiledB2b,
    trust: InboundTrust,
    consent: AutomaticUserConsentSettings,
) -> EffectiveAccess {
    EffectiveAccess {
        tenant_id,
        inbound: overlay_b2b(inbound, &base.inbound, own_source),
        outbound: overlay_b2b(outbound, &base.outbound, own_source),
        mfa_accepted: overlay_bool(trust.is_mfa_accepted, base.mfa_accepted, own_source),
        compliant_device_accepted: overlay_bool(
            trust.is_compliant_device_accepted,
            base.compliant_device_accepted,
            own_source,
        ),
        hybrid_joined_device_accepted: overlay_bool(
            trust.is_hybrid_azure_ad_joined_device_accepted,
            base.hybrid_joined_device_accepted,
            own_source,
        ),
        automatic_inbound: overlay_bool(consent.inbound_allowed, base.automatic_inbound, own_source),
        automatic_outbound: overlay_bool(consent.outbound_allowed, base.automatic_outbound, own_source),
    }
}

/// Entra's service default: B2B collaboration allowed for all users and
/// all applications both ways, no claim trusted, no automatic redemption.
fn service_default() -> EffectiveAccess {
    let compiled = |declared: TargetConfiguration| SourcedTargets {
        targets: Arc::new(CompiledTargets {
            declared,
            all: true,
            users: HashMap::new(),
            groups: HashMap::new(),
            applications: HashMap::new(),
        }),
        source: ConfigSource::Default,
    };
    let b2b = EffectiveB2bSetting {
        users_and_groups: compiled(TargetConfiguration::all_users(AccessType::Allowed)),
        applications: compiled(TargetConfiguration::all_applications(AccessType::Allowed)),
    };
    let off = Resolved {
        value: false,
        source: ConfigSource::Default,
    };
    EffectiveAccess {
        tenant_id: None,
        inbound: b2b.clone(),
        outbound: b2b,
        mfa_accepted: off,
        compliant_device_accepted: off,
        hybrid_joined_device_accepted: off,
        automatic_inbound: off,
        automatic_outbound: off,
    }
}

impl CrossTenantSettings {
    /// Validates `policy` and resolves every partner against the default.
    ///
    /// Refused: more than [`MAX_PARTNERS`] partners; a tenant id that is
    /// not a GUID, or a tenant configured twice; an empty target list or
    /// one longer than [`MAX_TARGETS`]; `AllUsers` or `AllApplications`
    /// next to other targets; a target listed twice (also as both a user
    /// and a group); a target whose type does not fit its list (`user` or
    /// `group` in `usersAndGroups`, `application` in `applications`) or its
    /// value (`AllUsers` is a `user`); a user or group id that is not a
    /// GUID; an application id that is not a client id; automatic
    /// redemption turned on in the default configuration.
    ///
    /// # Errors
    ///
    /// [`PolicyConfigError`] naming the path of the first bad field, such
    /// as `partners[2].b2bCollaborationInbound.usersAndGroups.targets[0]`.
    pub fn new(mut policy: CrossTenantAccessPolicy) -> Result<Self, PolicyConfigError> {
        if policy.partners.len() > MAX_PARTNERS {
            return Err(PolicyConfigError::new(
                SETTINGS,
                "partners",
                format!(
                    "at most {MAX_PARTNERS} partners (found {})",
                    policy.partners.len()
                ),
            ));
        }
        let d = &mut policy.default;
        if let Some(consent) = &d.automatic_user_consent_settings {
            for (field, value) in [
                ("inboundAllowed", consent.inbound_allowed),
                ("outboundAllowed", consent.outbound_allowed),
            ] {
                if value == Some(true) {
                    return Err(PolicyConfigError::new(
                        SETTINGS,
                        format!("default.automaticUserConsentSettings.{field}"),
                        "automatic redemption is set per partner; in the default configuration it is always `false`",
                    ));
                }
            }
        }
        let inbound = compile_b2b(
            "default.b2bCollaborationInbound",
            &mut d.b2b_collaboration_inbound,
        )?;
        let outbound = compile_b2b(
            "default.b2bCollaborationOutbound",
            &mut d.b2b_collaboration_outbound,
        )?;
        let default = resolve(
            None,
            &service_default(),
            ConfigSource::Default,
            &inbound,
            &outbound,
            d.inbound_trust.unwrap_or_default(),
            AutomaticUserConsentSettings::default(),
        );

        let mut partners: HashMap<Id, EffectiveAccess> = HashMap::with_capacity(policy.partners.len());
        let mut index_of: HashMap<Id, usize> = HashMap::with_capacity(policy.partners.len());
        for (i, p) in policy.partners.iter_mut().enumerate() {
            let at = |field: &str| format!("partners[{i}].{field}");
            let tenant: Id = p.tenant_id.parse().map_err(|_| {
                PolicyConfigError::new(
                    SETTINGS,
                    at("tenantId"),
                    format!("`{}` is not a tenant id (a GUID)", quote(&p.tenant_id)),
                )
            })?;
            match index_of.entry(tenant) {
                Entry::Occupied(e) => {
                    return Err(PolicyConfigError::new(
                        SETTINGS,
                        at("tenantId"),
                        format!(
                            "tenant `{tenant}` is configured twice (also at `partners[{}]`)",
                            e.get()
                        ),
                    ));
                }
                Entry::Vacant(e) => {
                    e.insert(i);
                }
            }
            p.tenant_id = tenant.to_string();
            let inbound = compile_b2b(&at("b2bCollaborationInbound"), &mut p.b2b_collaboration_inbound)?;
            let outbound = compile_b2b(&at("b2bCollaborationOutbound"), &mut p.b2b_collaboration_outbound)?;
            let effective = resolve(
                Some(tenant),
                &default,
                ConfigSource::Partner,
                &inbound,
                &outbound,
                p.inbound_trust.unwrap_or_default(),
                p.automatic_user_consent_settings.unwrap_or_default(),
            );
            partners.insert(tenant, effective);
        }
        Ok(Self {
            policy,
            default,
            partners,
        })
    }

    /// Parses and validates a JSON document: `{"default": {...},
    /// "partners": [...]}` in Graph's names, checked as by
    /// [`new`](Self::new). Unknown fields are refused.
    ///
    /// # Errors
    ///
    /// [`PolicyConfigError`] naming the path of the first bad field.
    pub fn from_json(json: &str) -> Result<Self, PolicyConfigError> {
        Self::new(read_json(SETTINGS, json)?)
    }

    /// Parses and validates a TOML document with the fields of
    /// [`from_json`](Self::from_json) (`[default.inboundTrust]`,
    /// `[[partners]]`, `[partners.b2bCollaborationInbound.usersAndGroups]`).
    ///
    /// # Errors
    ///
    /// [`PolicyConfigError`] naming the path of the first bad field.
    pub fn from_toml(text: &str) -> Result<Self, PolicyConfigError> {
        Self::new(read_toml(SETTINGS, text)?)
    }

    /// The declared policy (normalised: ids lowercase).
    pub fn policy(&self) -> &CrossTenantAccessPolicy {
        &self.policy
    }

    /// The settings for an organisation that is not a partner.
    pub fn default_access(&self) -> &EffectiveAccess {
        &self.default
    }

    /// The settings of partner `tenant_id` (a GUID, any case), if it is
    /// configured.
    pub fn partner(&self, tenant_id: &str) -> Option<&EffectiveAccess> {
        tenant_id.parse::<Id>().ok().and_then(|id| self.partners.get(&id))
    }

    /// The number of partners.
    pub fn partner_count(&self) -> usize {
        self.partners.len()
    }

    /// The settings in force for the organisation `tenant_id`: the
    /// partner's, with its unset fields inherited from the default, or the
    /// default when `tenant_id` is not a configured partner (also when it
    /// is not a GUID: a domain name is never a tenant id here). A lookup;
    /// does not allocate.
    pub fn effective(&self, tenant_id: &str) -> &EffectiveAccess {
        self.partner(tenant_id).unwrap_or(&self.default)
    }

    /// The home-organisation `claims` issued by `claim_issuer_tenant` that
    /// count for a user whose home tenant is `user_home_tenant`, under the
    /// issuer's effective settings (see
    /// [`EffectiveAccess::trusted_claims_from`]).
    pub fn trusted_claims_from(
        &self,
        user_home_tenant: Option<&str>,
        claim_issuer_tenant: &str,
        claims: HomeClaims,
    ) -> HomeClaims {
        self.effective(claim_issuer_tenant)
            .trusted_claims_from(user_home_tenant, claim_issuer_tenant, claims)
    }
}

impl TryFrom<CrossTenantAccessPolicy> for CrossTenantSettings {
    type Error = PolicyConfigError;
    fn try_from(policy: CrossTenantAccessPolicy) -> Result<Self, Self::Error> {
        Self::new(policy)
    }
}

impl Serialize for CrossTenantSettings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.policy.serialize(serializer)
    }
}

/// Validated as by [`CrossTenantSettings::new`]; the error's message names
/// the field's path.
impl<'de> Deserialize<'de> for CrossTenantSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let policy = CrossTenantAccessPolicy::deserialize(deserializer)?;
        Self::new(policy).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

fn compile_b2b(path: &str, setting: &mut Option<B2bSetting>) -> Result<CompiledB2b, PolicyConfigError> {
    let Some(s) = setting else {
        return Ok(CompiledB2b {
            users_and_groups: None,
            applications: None,
        });
    };
    let users_and_groups = match &mut s.users_and_groups {
        Some(t) => Some(Arc::new(compile_targets(
            &format!("{path}.usersAndGroups"),
            TargetSetting::UsersAndGroups,
            t,
        )?)),
        None => None,
    };
    let applications = match &mut s.applications {
        Some(t) => Some(Arc::new(compile_targets(
            &format!("{path}.applications"),
            TargetSetting::Applications,
            t,
        )?)),
        None => None,
    };
    Ok(CompiledB2b {
        users_and_groups,
        applications,
    })
}

fn compile_targets(
    path: &str,
    setting: TargetSetting,
    declared: &mut TargetConfiguration,
) -> Result<CompiledTargets, PolicyConfigError> {
    let (all_keyword, all_type, kinds) = match setting {
        TargetSetting::UsersAndGroups => (ALL_USERS, TargetType::User, "`user` or `group`"),
        TargetSetting::Applications => (ALL_APPLICATIONS, TargetType::Application, "`application`"),
    };
    let list = format!("{path}.targets");
    let n = declared.targets.len();
    if n == 0 {
        return Err(PolicyConfigError::new(
            SETTINGS,
            list,
            format!("lists no target; name `{all_keyword}` or specific targets"),
        ));
    }
    if n > MAX_TARGETS {
        return Err(PolicyConfigError::new(
            SETTINGS,
            list,
            format!("at most {MAX_TARGETS} targets (found {n})"),
        ));
    }
    let mut out = CompiledTargets {
        declared: TargetConfiguration {
            access_type: declared.access_type,
            targets: Vec::new(),
        },
        all: false,
        users: HashMap::new(),
        groups: HashMap::new(),
        applications: HashMap::new(),
    };
    for (i, t) in declared.targets.iter_mut().enumerate() {
        let at = |field: &str| format!("{list}[{i}]{field}");
        let fits = match setting {
            TargetSetting::UsersAndGroups => matches!(t.target_type, TargetType::User | TargetType::Group),
            TargetSetting::Applications => t.target_type == TargetType::Application,
        };
        if !fits {
            return Err(PolicyConfigError::new(
                SETTINGS,
                at(".targetType"),
                format!(
                    "`{}` is not a target type of `{}` (use {kinds})",
                    type_name(t.target_type),
                    setting_name(setting)
                ),
            ));
        }
        let is_all = t.target == all_keyword;
        if !is_all && t.target.eq_ignore_ascii_case(all_keyword) {
            return Err(PolicyConfigError::new(
                SETTINGS,
                at(".target"),
                format!("write `{all_keyword}` (found `{}`)", quote(&t.target)),
            ));
        }
        if is_all && t.target_type != all_type {
            return Err(PolicyConfigError::new(
                SETTINGS,
                at(".targetType"),
                format!(
                    "`{all_keyword}` has target type `{}`, not `{}`",
                    type_name(all_type),
                    type_name(t.target_type)
                ),
            ));
        }
        if is_all && i > 0 {
            return Err(PolicyConfigError::new(
                SETTINGS,
                at(""),
                format!("`{all_keyword}` covers every target; list it alone"),
            ));
        }
        if is_all {
            out.all = true;
            continue;
        }
        if out.all {
            return Err(PolicyConfigError::new(
                SETTINGS,
                at(""),
                format!("`{all_keyword}` (at `{list}[0]`) already covers every target; list it alone"),
            ));
        }
        match t.target_type {
            TargetType::User | TargetType::Group => {
                let id: Id = t.target.parse().map_err(|_| {
                    PolicyConfigError::new(
                        SETTINGS,
                        at(".target"),
                        format!(
                            "`{}` is neither `{ALL_USERS}` nor a {} object id (a GUID)",
                            quote(&t.target),
                            type_name(t.target_type)
                        ),
                    )
                })?;
                let (same, other) = if t.target_type == TargetType::User {
                    (&mut out.users, &out.groups)
                } else {
                    (&mut out.groups, &out.users)
                };
                if let Some(j) = other.get(&id) {
                    return Err(PolicyConfigError::new(
                        SETTINGS,
                        at(""),
                        format!("`{id}` is listed as both a user and a group (also at `{list}[{j}]`)"),
                    ));
                }
                match same.entry(id) {
                    Entry::Occupied(e) => {
                        return Err(PolicyConfigError::new(
                            SETTINGS,
                            at(""),
                            format!("`{id}` is listed twice (also at `{list}[{}]`)", e.get()),
                        ));
                    }
                    Entry::Vacant(e) => {
                        e.insert(i);
                    }
                }
                t.target = id.to_string();
            }
            TargetType::Application => {
                check_application_id(&t.target).map_err(|reason| {
                    PolicyConfigError::new(
                        SETTINGS,
                        at(".target"),
                        format!("`{}` {reason}", quote(&t.target)),
                    )
                })?;
                match out.applications.entry(t.target.clone()) {
                    Entry::Occupied(e) => {
                        return Err(PolicyConfigError::new(
                            SETTINGS,
                            at(""),
                            format!("`{}` is listed twice (also at `{list}[{}]`)", t.target, e.get()),
                        ));
                    }
                    Entry::Vacant(e) => {
                        e.insert(i);
                    }
                }
            }
        }
    }
    out.declared.targets = declared.targets.clone();
    Ok(out)
}

fn check_application_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_APPLICATION_ID_LEN {
        return Err("is neither `AllApplications` nor a client id of 1 to 256 characters");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err("is neither `AllApplications` nor a client id (`A-Z a-z 0-9 - _ .`)");
    }
    Ok(())
}

fn type_name(t: TargetType) -> &'static str {
    match t {
        TargetType::User => "user",
        TargetType::Group => "group",
        TargetType::Application => "application",
    }
}

fn setting_name(s: TargetSetting) -> &'static str {
    match s {
        TargetSetting::UsersAndGroups => "usersAndGroups",
        TargetSetting::Applications => "applications",
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const FABRIKAM: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
    const ALICE: &str = "6a1f0c2e-8d3b-4e5f-9a0b-1c2d3e4f5a6b";
    const SALES: &str = "7b2e1d3f-9e4c-4f60-8b1c-2d3e4f5a6b7c";

    fn err(json: &str) -> PolicyConfigError {
        CrossTenantSettings::from_json(json).expect_err("must be refused")
    }

    #[test]
    fn service_default_allows_everything_and_trusts_nothing() {
        let s = CrossTenantSettings::default();
        let e = s.effective(FABRIKAM);
        assert_eq!(e.tenant_id(), None);
        let d = e.inbound_allows(ALICE, &[], "any-app");
        assert!(d.is_allowed());
        assert_eq!(d.users_and_groups.matched, TargetMatch::AllTargets);
        assert_eq!(d.applications.matched, TargetMatch::AllTargets);
        assert!(e.outbound_allows(ALICE, &[], "any-app").is_allowed());
        let all = HomeClaims {
            mfa: true,
            compliant_device: true,
            hybrid_joined_device: true,
        };
        assert_eq!(e.trusted_claims(all), HomeClaims::NONE);
        assert!(!e.automatic_redemption(true));
        assert_eq!(s, CrossTenantSettings::from_json("{}").unwrap());
        assert_eq!(serde_json::to_string(&s).unwrap(), "{}");
    }

    #[test]
    fn earliest_listed_target_is_reported() {
        let s = CrossTenantSettings::from_json(&format!(
            r#"{{"default": {{"b2bCollaborationInbound": {{"usersAndGroups": {{"accessType": "allowed",
              "targets": [{{"target": "{SALES}", "targetType": "group"}}, {{"target": "{ALICE}", "targetType": "user"}}]}}}}}}}}"#
        ))
        .unwrap();
        let d = s.default_access().inbound_allows(ALICE, &[SALES], "app");
        assert_eq!(d.users_and_groups.matched, TargetMatch::Listed { index: 0 });
        let d = s.default_access().inbound_allows(ALICE, &["not-a-guid"], "app");
        assert_eq!(d.users_and_groups.matched, TargetMatch::Listed { index: 1 });
        let d = s.default_access().inbound_allows("not-a-guid", &[], "app");
        assert_eq!(d.users_and_groups.matched, TargetMatch::NotListed);
        assert_eq!(d.users_and_groups.access, AccessType::Blocked);
    }

    #[test]
    fn default_cannot_turn_on_automatic_redemption() {
        let e = err(r#"{"default": {"automaticUserConsentSettings": {"outboundAllowed": true}}}"#);
        assert_eq!(e.path, "default.automaticUserConsentSettings.outboundAllowed");
        assert!(
            CrossTenantSettings::from_json(
                r#"{"default": {"automaticUserConsentSettings": {"inboundAllowed": false, "outboundAllowed": false}}}"#
            )
            .is_ok()
        );
    }

    #[test]
    fn target_errors_name_the_field() {
        let cases = [
            (
                r#"{"default": {"b2bCollaborationInbound": {"applications": {"accessType": "allowed", "targets": [{"target": "AllApplications", "targetType": "user"}]}}}}"#,
                "default.b2bCollaborationInbound.applications.targets[0].targetType",
            ),
            (
                r#"{"default": {"b2bCollaborationInbound": {"usersAndGroups": {"accessType": "allowed", "targets": [{"target": "AllUsers", "targetType": "group"}]}}}}"#,
                "default.b2bCollaborationInbound.usersAndGroups.targets[0].targetType",
            ),
            (
                r#"{"default": {"b2bCollaborationOutbound": {"usersAndGroups": {"accessType": "allowed", "targets": [{"target": "allusers", "targetType": "user"}]}}}}"#,
                "default.b2bCollaborationOutbound.usersAndGroups.targets[0].target",
            ),
            (
                r#"{"default": {"b2bCollaborationOutbound": {"applications": {"accessType": "blocked", "targets": [{"target": "has space", "targetType": "application"}]}}}}"#,
                "default.b2bCollaborationOutbound.applications.targets[0].target",
            ),
            (
                r#"{"default": {"b2bCollaborationOutbound": {"applications": {"accessType": "blocked", "targets": [{"target": "a", "targetType": "application"}, {"target": "a", "targetType": "application"}]}}}}"#,
                "default.b2bCollaborationOutbound.applications.targets[1]",
            ),
            (
                r#"{"default": {"b2bCollaborationOutbound": {"applications": {"accessType": "blocked", "targets": [{"target": "a", "targetType": "application"}, {"target": "AllApplications", "targetType": "application"}]}}}}"#,
                "default.b2bCollaborationOutbound.applications.targets[1]",
            ),
            (
                r#"{"default": {"b2bCollaborationOutbound": {"applications": {"accessType": "sometimes", "targets": []}}}}"#,
                "default.b2bCollaborationOutbound.applications.accessType",
            ),
            (
                r#"{"default": {"inboundTrust": {"isMfaAccepted": true, "isHybridAzureAdJoinedDeviceAccepted": true}}}"#,
                "default.inboundTrust.isHybridAzureAdJoinedDeviceAccepted",
            ),
        ];
        for (json, path) in cases {
            let e = err(json);
            assert_eq!(e.path, path, "{json}: {e}");
            assert_eq!(e.settings, "crossTenantAccess");
        }
    }

    #[test]
    fn error_converts_to_config_error() {
        let e = err(r#"{"partners": [{"tenantId": "fabrikam.example"}]}"#);
        assert_eq!(e.path, "partners[0].tenantId");
        assert_eq!(
            e.to_string(),
            "crossTenantAccess field `partners[0].tenantId` is invalid: `fabrikam.example` is not a tenant id (a GUID)"
        );
        let c: crate::error::ConfigError = e.into();
        assert_eq!(
            c,
            crate::error::ConfigError::Invalid {
                field: "crossTenantAccess",
                reason: "`partners[0].tenantId`: `fabrikam.example` is not a tenant id (a GUID)".to_owned(),
            }
        );
    }
}
