//! The configuration model, shaped and named as Microsoft Graph's
//! `conditionalAccessPolicy` and `ipNamedLocation` in camelCase JSON.
//!
//! Parsing is strict: an unknown field is an error, so a misspelled
//! `excludeUsers` cannot silently widen a policy. Graph's read-only
//! metadata (`createdDateTime`, `modifiedDateTime`, `templateId`,
//! `@odata.type`, ...) is accepted and ignored, so a policy exported from
//! Graph loads as it is. Graph conditions and controls this evaluator does
//! not decide on (risk levels, platforms, device filters, authentication
//! strength, persistent browser, ...) are accepted only when empty or
//! `null`: a policy that relies on one is refused rather than evaluated
//! without it.

use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use super::{MAX_CONDITION_VALUES, MAX_IP_RANGES_PER_LOCATION, MAX_NAMED_LOCATIONS, MAX_POLICIES};

/// A conditional access configuration: the named locations policies refer
/// to, and the policies in the order they are explained.
///
/// Build it in code, or load it with [`PolicySet::from_json`] /
/// [`PolicySet::from_toml`]; use it after [`PolicySet::compile`].
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicySet {
    /// Named IP locations (Graph's `ipNamedLocation`), referred to by id in
    /// `includeLocations` and `excludeLocations`.
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_NAMED_LOCATIONS>")]
    pub named_locations: Vec<NamedLocation>,
    /// The policies, in configured order.
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_POLICIES>")]
    pub policies: Vec<ConditionalAccessPolicy>,
}

/// A named IP location (Graph's `ipNamedLocation`).
///
/// `ipRanges` are CIDR ranges, as strings (`"10.0.0.0/8"`) or as Graph
/// writes them (`{"@odata.type": "#microsoft.graph.iPv4CidrRange",
/// "cidrAddress": "10.0.0.0/8"}`). A range must name its network address:
/// `10.0.0.1/8` is refused (host bits set).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawNamedLocation")]
pub struct NamedLocation {
    /// The id policies refer to it by; not `All` nor `AllTrusted`.
    pub id: String,
    /// The name explanations show.
    pub display_name: String,
    /// Whether `AllTrusted` includes it.
    pub is_trusted: bool,
    /// The ranges, in CIDR notation.
    pub ip_ranges: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawNamedLocation {
    #[serde(rename = "@odata.type", default)]
    _odata_type: Option<OdataType<IpNamedLocationType>>,
    id: String,
    display_name: String,
    #[serde(default)]
    is_trusted: bool,
    #[serde(deserialize_with = "bounded::<_, _, MAX_IP_RANGES_PER_LOCATION>")]
    ip_ranges: Vec<IpRangeEntry>,
    #[serde(default)]
    _created_date_time: Option<IgnoredAny>,
    #[serde(default)]
    _modified_date_time: Option<IgnoredAny>,
}

impl From<RawNamedLocation> for NamedLocation {
    fn from(raw: RawNamedLocation) -> Self {
        Self {
            id: raw.id,
            display_name: raw.display_name,
            is_trusted: raw.is_trusted,
            ip_ranges: raw.ip_ranges.into_iter().map(|r| r.0).collect(),
        }
    }
}

/// Whether a policy is on (Graph's `conditionalAccessPolicyState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PolicyState {
    /// Evaluated and enforced.
    #[default]
    Enabled,
    /// Not evaluated.
    Disabled,
    /// Report-only: evaluated and explained, never enforced.
    EnabledForReportingButNotEnforced,
}

impl PolicyState {
    /// The Graph spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyState::Enabled => "enabled",
            PolicyState::Disabled => "disabled",
            PolicyState::EnabledForReportingButNotEnforced => "enabledForReportingButNotEnforced",
        }
    }
}

/// One conditional access policy (Graph's `conditionalAccessPolicy`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawPolicy")]
pub struct ConditionalAccessPolicy {
    /// Graph's object id, if any; unique in the set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The name explanations show; unique in the set (ignoring case).
    pub display_name: String,
    /// A description for administrators.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// On, off or report-only.
    pub state: PolicyState,
    /// Who, which application, which client, where.
    pub conditions: Conditions,
    /// What an applying policy demands; a policy has grant controls, an
    /// enabled session control, or both.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grant_controls: Option<GrantControls>,
    /// How the session is limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_controls: Option<SessionControls>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawPolicy {
    #[serde(default)]
    id: Option<String>,
    display_name: String,
    #[serde(default)]
    description: Option<String>,
    state: PolicyState,
    conditions: Conditions,
    #[serde(default)]
    grant_controls: Option<GrantControls>,
    #[serde(default)]
    session_controls: Option<SessionControls>,
    #[serde(rename = "@odata.type", default)]
    _odata_type: Option<IgnoredAny>,
    #[serde(default)]
    _template_id: Option<IgnoredAny>,
    #[serde(default)]
    _created_date_time: Option<IgnoredAny>,
    #[serde(default)]
    _modified_date_time: Option<IgnoredAny>,
    #[serde(default)]
    _deleted_date_time: Option<IgnoredAny>,
    #[serde(default)]
    _partial_enablement_strategy: Option<IgnoredAny>,
}

impl From<RawPolicy> for ConditionalAccessPolicy {
    fn from(raw: RawPolicy) -> Self {
        Self {
            id: raw.id,
            display_name: raw.display_name,
            description: raw.description,
            state: raw.state,
            conditions: raw.conditions,
            grant_controls: raw.grant_controls,
            session_controls: raw.session_controls,
        }
    }
}

/// The conditions of a policy (Graph's `conditionalAccessConditionSet`).
/// `users` and `applications` are required; `clientAppTypes` defaults to
/// `["all"]`; without `locations` the location does not matter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawConditions")]
pub struct Conditions {
    /// Who.
    pub users: Users,
    /// Which applications.
    pub applications: Applications,
    /// Which kinds of client; must not be empty.
    pub client_app_types: Vec<ConditionalAccessClientApp>,
    /// From where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locations: Option<Locations>,
}

impl Default for Conditions {
    fn default() -> Self {
        Self {
            users: Users::default(),
            applications: Applications::default(),
            client_app_types: vec![ConditionalAccessClientApp::All],
            locations: None,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawConditions {
    users: Users,
    applications: Applications,
    #[serde(
        default = "all_client_apps",
        deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>"
    )]
    client_app_types: Vec<ConditionalAccessClientApp>,
    #[serde(default)]
    locations: Option<Locations>,
    #[serde(default)]
    _user_risk_levels: MustBeEmpty,
    #[serde(default)]
    _sign_in_risk_levels: MustBeEmpty,
    #[serde(default)]
    _service_principal_risk_levels: MustBeEmpty,
    #[serde(default)]
    _insider_risk_levels: MustBeEmpty,
    #[serde(default)]
    _platforms: MustBeEmpty,
    #[serde(default)]
    _devices: MustBeEmpty,
    #[serde(default)]
    _device_states: MustBeEmpty,
    #[serde(default)]
    _client_applications: MustBeEmpty,
    #[serde(default)]
    _authentication_flows: MustBeEmpty,
    #[serde(default)]
    _times: MustBeEmpty,
}

fn all_client_apps() -> Vec<ConditionalAccessClientApp> {
    vec![ConditionalAccessClientApp::All]
}

impl From<RawConditions> for Conditions {
    fn from(raw: RawConditions) -> Self {
        Self {
            users: raw.users,
            applications: raw.applications,
            client_app_types: raw.client_app_types,
            locations: raw.locations,
        }
    }
}

/// The users condition (Graph's `conditionalAccessUsers`).
///
/// `includeUsers` holds user ids and the keywords `All`, `None` (the policy
/// applies to no one) and `GuestsOrExternalUsers` (every user who is not a
/// member); `excludeUsers` holds user ids and `GuestsOrExternalUsers`.
/// Keywords compare ignoring ASCII case. At least one include is required.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawUsers")]
pub struct Users {
    /// Included users.
    pub include_users: Vec<String>,
    /// Excluded users.
    pub exclude_users: Vec<String>,
    /// Included groups: members of any of them are included.
    pub include_groups: Vec<String>,
    /// Excluded groups: members of any of them are excluded.
    pub exclude_groups: Vec<String>,
    /// Included guest or external users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_guests_or_external_users: Option<GuestsOrExternalUsers>,
    /// Excluded guest or external users.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_guests_or_external_users: Option<GuestsOrExternalUsers>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawUsers {
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    include_users: Vec<String>,
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    exclude_users: Vec<String>,
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    include_groups: Vec<String>,
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    exclude_groups: Vec<String>,
    #[serde(default)]
    include_guests_or_external_users: Option<GuestsOrExternalUsers>,
    #[serde(default)]
    exclude_guests_or_external_users: Option<GuestsOrExternalUsers>,
    #[serde(default)]
    _include_roles: MustBeEmpty,
    #[serde(default)]
    _exclude_roles: MustBeEmpty,
}

impl From<RawUsers> for Users {
    fn from(raw: RawUsers) -> Self {
        Self {
            include_users: raw.include_users,
            exclude_users: raw.exclude_users,
            include_groups: raw.include_groups,
            exclude_groups: raw.exclude_groups,
            include_guests_or_external_users: raw.include_guests_or_external_users,
            exclude_guests_or_external_users: raw.exclude_guests_or_external_users,
        }
    }
}

/// Guest or external users by type and home tenant (Graph's
/// `conditionalAccessGuestsOrExternalUsers`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GuestsOrExternalUsers {
    /// The types; Graph writes them as one comma-separated string
    /// (`"internalGuest,b2bCollaborationGuest"`), an array is accepted too.
    /// Must not be empty.
    #[serde(
        deserialize_with = "guest_types::deserialize",
        serialize_with = "guest_types::serialize"
    )]
    pub guest_or_external_user_types: Vec<GuestOrExternalUserType>,
    /// Which home tenants; all when absent.
    #[serde(default)]
    pub external_tenants: ExternalTenants,
}

/// A kind of guest or external user (Graph's
/// `conditionalAccessGuestOrExternalUserTypes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GuestOrExternalUserType {
    /// A local guest: a user object of type guest authenticating with this
    /// directory's credentials.
    InternalGuest,
    /// A B2B collaboration guest (an invited guest from another
    /// organisation or a social identity).
    B2bCollaborationGuest,
    /// A B2B collaboration user of type member from another organisation.
    B2bCollaborationMember,
    /// A B2B direct connect user (shared channels), without a user object
    /// here.
    B2bDirectConnectUser,
    /// Any other external user.
    OtherExternalUser,
    /// A service provider's user (partner delegated administration).
    ServiceProvider,
}

impl GuestOrExternalUserType {
    /// All six types, in Graph's order.
    pub const ALL: [GuestOrExternalUserType; 6] = [
        GuestOrExternalUserType::InternalGuest,
        GuestOrExternalUserType::B2bCollaborationGuest,
        GuestOrExternalUserType::B2bCollaborationMember,
        GuestOrExternalUserType::B2bDirectConnectUser,
        GuestOrExternalUserType::OtherExternalUser,
        GuestOrExternalUserType::ServiceProvider,
    ];

    /// The Graph spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GuestOrExternalUserType::InternalGuest => "internalGuest",
            GuestOrExternalUserType::B2bCollaborationGuest => "b2bCollaborationGuest",
            GuestOrExternalUserType::B2bCollaborationMember => "b2bCollaborationMember",
            GuestOrExternalUserType::B2bDirectConnectUser => "b2bDirectConnectUser",
            GuestOrExternalUserType::OtherExternalUser => "otherExternalUser",
            GuestOrExternalUserType::ServiceProvider => "serviceProvider",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|t| t.as_str() == name)
    }
}

impl fmt::Display for GuestOrExternalUserType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

mod guest_types {
    use super::*;

    pub(super) fn serialize<S: Serializer>(
        types: &[GuestOrExternalUserType],
        s: S,
    ) -> Result<S::Ok, S::Error> {
        let joined: Vec<&str> = types.iter().map(|t| t.as_str()).collect();
        s.serialize_str(&joined.join(","))
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Vec<GuestOrExternalUserType>, D::Error> {
        d.deserialize_any(TypesVisitor)
    }

    struct TypesVisitor;

    fn unknown<E: de::Error>(name: &str) -> E {
        E::custom(format!(
            "unknown guest or external user type `{}`, expected {}",
            crate::flow::connector::quote(name),
            GuestOrExternalUserType::ALL.map(|t| t.as_str()).join(", ")
        ))
    }

    impl<'de> Visitor<'de> for TypesVisitor {
        type Value = Vec<GuestOrExternalUserType>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a comma-separated string or an array of guest or external user types")
        }

        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            let mut out = Vec::new();
            for part in v.split(',').map(str::trim).filter(|p| !p.is_empty()) {
                let t = GuestOrExternalUserType::from_name(part).ok_or_else(|| unknown::<E>(part))?;
                push_type(&mut out, t);
            }
            Ok(out)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::new();
            while let Some(t) = seq.next_element::<GuestOrExternalUserType>()? {
                push_type(&mut out, t);
            }
            Ok(out)
        }
    }

    /// Keeps the first of repeated types (as compile keeps the first of
    /// repeated ids), so the list holds at most six.
    fn push_type(out: &mut Vec<GuestOrExternalUserType>, t: GuestOrExternalUserType) {
        if !out.contains(&t) {
            out.push(t);
        }
    }
}

/// The home tenants of guest or external users (Graph's
/// `conditionalAccessExternalTenants`): `{"membershipKind": "all"}` or
/// `{"membershipKind": "enumerated", "members": ["<tenant id>", ...]}`.
///
/// An enumerated list matches a sign-in only when its
/// [`home_tenant`](super::SignIn::home_tenant) is listed; a user without a
/// home tenant (an internal guest, say) never matches one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawExternalTenants", into = "RawExternalTenants")]
pub enum ExternalTenants {
    /// Every tenant, and users without one.
    #[default]
    All,
    /// Only users whose home tenant is listed; must not be empty.
    Enumerated {
        /// The tenant ids.
        members: Vec<String>,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawExternalTenants {
    #[serde(rename = "@odata.type", default, skip_serializing)]
    _odata_type: Option<IgnoredAnyString>,
    membership_kind: MembershipKind,
    #[serde(
        default,
        deserialize_with = "bounded_opt::<_, _, MAX_CONDITION_VALUES>",
        skip_serializing_if = "Option::is_none"
    )]
    members: Option<Vec<String>>,
}

#[derive(Serialize, Deserialize, Clone, Copy)]
#[serde(rename_all = "camelCase")]
enum MembershipKind {
    All,
    Enumerated,
}

impl TryFrom<RawExternalTenants> for ExternalTenants {
    type Error = &'static str;

    fn try_from(raw: RawExternalTenants) -> Result<Self, Self::Error> {
        match (raw.membership_kind, raw.members) {
            (MembershipKind::All, None) => Ok(ExternalTenants::All),
            (MembershipKind::All, Some(m)) if m.is_empty() => Ok(ExternalTenants::All),
            (MembershipKind::All, Some(_)) => Err("`members` is for membershipKind `enumerated` only"),
            (MembershipKind::Enumerated, m) => Ok(ExternalTenants::Enumerated {
                members: m.unwrap_or_default(),
            }),
        }
    }
}

impl From<ExternalTenants> for RawExternalTenants {
    fn from(t: ExternalTenants) -> Self {
        match t {
            ExternalTenants::All => RawExternalTenants {
                _odata_type: None,
                membership_kind: MembershipKind::All,
                members: None,
            },
            ExternalTenants::Enumerated { members } => RawExternalTenants {
                _odata_type: None,
                membership_kind: MembershipKind::Enumerated,
                members: Some(members),
            },
        }
    }
}

/// The applications condition (Graph's `conditionalAccessApplications`):
/// application ids and the keywords `All` and `None`. At least one include
/// is required.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawApplications")]
pub struct Applications {
    /// Included applications.
    pub include_applications: Vec<String>,
    /// Excluded applications.
    pub exclude_applications: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawApplications {
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    include_applications: Vec<String>,
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    exclude_applications: Vec<String>,
    #[serde(default)]
    _include_user_actions: MustBeEmpty,
    #[serde(default)]
    _include_authentication_context_class_references: MustBeEmpty,
    #[serde(default)]
    _application_filter: MustBeEmpty,
    #[serde(default)]
    _global_secure_access: MustBeEmpty,
    #[serde(default)]
    _network_access: MustBeEmpty,
}

impl From<RawApplications> for Applications {
    fn from(raw: RawApplications) -> Self {
        Self {
            include_applications: raw.include_applications,
            exclude_applications: raw.exclude_applications,
        }
    }
}

/// A kind of client in `clientAppTypes` (Graph's
/// `conditionalAccessClientApp`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ConditionalAccessClientApp {
    /// Every client.
    All,
    /// Web browsers.
    Browser,
    /// Mobile apps and desktop clients (modern authentication).
    MobileAppsAndDesktopClients,
    /// Exchange ActiveSync clients.
    ExchangeActiveSync,
    /// Other (legacy authentication) clients.
    Other,
}

/// The locations condition (Graph's `conditionalAccessLocations`): named
/// location ids and the keywords `All` (any address, in a named location or
/// not) and `AllTrusted` (any trusted named location). `includeLocations`
/// must not be empty.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Locations {
    /// Included locations.
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    pub include_locations: Vec<String>,
    /// Excluded locations.
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    pub exclude_locations: Vec<String>,
}

/// How a policy's grant controls combine (Graph's `operator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum GrantOperator {
    /// Every control is required.
    #[default]
    #[serde(rename = "AND", alias = "and")]
    And,
    /// Any one control suffices.
    #[serde(rename = "OR", alias = "or")]
    Or,
}

impl GrantOperator {
    /// The Graph spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            GrantOperator::And => "AND",
            GrantOperator::Or => "OR",
        }
    }
}

/// A built-in grant control (Graph's `conditionalAccessGrantControl`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum BuiltInControl {
    /// Block access; cannot be combined with other controls.
    Block,
    /// Require multi-factor authentication.
    Mfa,
    /// Require a device marked compliant.
    CompliantDevice,
    /// Require a (hybrid) domain-joined device.
    DomainJoinedDevice,
}

impl BuiltInControl {
    /// The Graph spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltInControl::Block => "block",
            BuiltInControl::Mfa => "mfa",
            BuiltInControl::CompliantDevice => "compliantDevice",
            BuiltInControl::DomainJoinedDevice => "domainJoinedDevice",
        }
    }
}

/// What an applying policy demands (Graph's
/// `conditionalAccessGrantControls`). `operator` combines the built-in
/// controls and the terms of use; it is required when more than one is
/// listed.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawGrantControls")]
pub struct GrantControls {
    /// `AND` or `OR`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operator: Option<GrantOperator>,
    /// Built-in controls.
    pub built_in_controls: Vec<BuiltInControl>,
    /// Terms of use (agreement ids) the user must have accepted.
    pub terms_of_use: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawGrantControls {
    #[serde(default)]
    operator: Option<GrantOperator>,
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    built_in_controls: Vec<BuiltInControl>,
    #[serde(default, deserialize_with = "bounded::<_, _, MAX_CONDITION_VALUES>")]
    terms_of_use: Vec<String>,
    #[serde(default)]
    _custom_authentication_factors: MustBeEmpty,
    #[serde(default)]
    _authentication_strength: MustBeEmpty,
    #[serde(rename = "authenticationStrength@odata.context", default)]
    _authentication_strength_context: Option<IgnoredAny>,
}

impl From<RawGrantControls> for GrantControls {
    fn from(raw: RawGrantControls) -> Self {
        Self {
            operator: raw.operator,
            built_in_controls: raw.built_in_controls,
            terms_of_use: raw.terms_of_use,
        }
    }
}

/// How an applying policy limits the session (Graph's
/// `conditionalAccessSessionControls`); of these only the sign-in frequency
/// is evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", from = "RawSessionControls")]
pub struct SessionControls {
    /// How often the user must sign in again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sign_in_frequency: Option<SignInFrequency>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSessionControls {
    #[serde(default)]
    sign_in_frequency: Option<SignInFrequency>,
    #[serde(default)]
    _application_enforced_restrictions: MustBeEmpty,
    #[serde(default)]
    _cloud_app_security: MustBeEmpty,
    #[serde(default)]
    _persistent_browser: MustBeEmpty,
    #[serde(default)]
    _continuous_access_evaluation: MustBeEmpty,
    #[serde(default)]
    _secure_sign_in_session: MustBeEmpty,
    #[serde(default)]
    _disable_resilience_defaults: MustBeEmpty,
    #[serde(default)]
    _global_secure_access_filtering_profile: MustBeEmpty,
}

impl From<RawSessionControls> for SessionControls {
    fn from(raw: RawSessionControls) -> Self {
        Self {
            sign_in_frequency: raw.sign_in_frequency,
        }
    }
}

/// The sign-in frequency session control (Graph's
/// `signInFrequencySessionControl`): `{"value": 4, "type": "hours",
/// "isEnabled": true}`, or `"frequencyInterval": "everyTime"` without value
/// and type (sign in again every time). Hours are 1 to 23, days 1 to 365.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SignInFrequency {
    /// How many hours or days.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u32>,
    /// Hours or days.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub frequency_type: Option<SignInFrequencyType>,
    /// Whether the control is on; `true` when absent.
    #[serde(default = "yes")]
    pub is_enabled: bool,
    /// Time-based (the default) or every time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frequency_interval: Option<FrequencyInterval>,
    /// Which authentications it asks for again; kept for Graph, not
    /// evaluated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authentication_type: Option<SignInFrequencyAuthenticationType>,
}

fn yes() -> bool {
    true
}

/// The unit of a sign-in frequency (Graph's `signinFrequencyType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignInFrequencyType {
    /// Hours (1 to 23).
    Hours,
    /// Days (1 to 365).
    Days,
}

/// Whether a sign-in frequency is a period or every time (Graph's
/// `signInFrequencyInterval`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FrequencyInterval {
    /// After `value` hours or days.
    TimeBased,
    /// Every sign-in (a zero period).
    EveryTime,
}

/// What a sign-in frequency asks for again (Graph's
/// `signInFrequencyAuthenticationType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignInFrequencyAuthenticationType {
    /// Primary and secondary authentication.
    PrimaryAndSecondaryAuthentication,
    /// Secondary authentication only.
    SecondaryAuthentication,
}

#[derive(Deserialize)]
#[serde(rename = "@odata.type")]
enum IpNamedLocationType {
    #[serde(rename = "#microsoft.graph.ipNamedLocation")]
    IpNamedLocation,
}

/// An `@odata.type` that must be one value.
struct OdataType<T>(#[allow(dead_code)] T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for OdataType<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        T::deserialize(d)
            .map(OdataType)
            .map_err(|_| de::Error::custom("only `#microsoft.graph.ipNamedLocation` is supported"))
    }
}

/// Any string, ignored.
struct IgnoredAnyString;

impl<'de> Deserialize<'de> for IgnoredAnyString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|_| IgnoredAnyString)
    }
}

/// One entry of `ipRanges`: `"10.0.0.0/8"`, or Graph's `{"@odata.type":
/// "#microsoft.graph.iPv4CidrRange", "cidrAddress": "10.0.0.0/8"}`.
struct IpRangeEntry(String);

impl<'de> Deserialize<'de> for IpRangeEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;

        impl<'de> Visitor<'de> for EntryVisitor {
            type Value = IpRangeEntry;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a CIDR range string or {\"cidrAddress\": \"...\"}")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(IpRangeEntry(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut cidr = None;
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "cidrAddress" => cidr = Some(map.next_value::<String>()?),
                        "@odata.type" => {
                            let t = map.next_value::<String>()?;
                            if t != "#microsoft.graph.iPv4CidrRange" && t != "#microsoft.graph.iPv6CidrRange"
                            {
                                return Err(de::Error::custom(
                                    "`@odata.type` must be `#microsoft.graph.iPv4CidrRange` or \
                                     `#microsoft.graph.iPv6CidrRange`",
                                ));
                            }
                        }
                        other => {
                            return Err(de::Error::unknown_field(other, &["cidrAddress", "@odata.type"]));
                        }
                    }
                }
                cidr.map(IpRangeEntry)
                    .ok_or_else(|| de::Error::missing_field("cidrAddress"))
            }
        }

        d.deserialize_any(EntryVisitor)
    }
}

/// A Graph field this evaluator does not decide on: accepted when absent,
/// `null`, `false`, `""`, `[]` or `{}`, refused otherwise.
#[derive(Default)]
struct MustBeEmpty;

impl<'de> Deserialize<'de> for MustBeEmpty {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EmptyVisitor;

        const UNSUPPORTED: &str = "is not evaluated by guestpass; it must be empty or null";

        impl<'de> Visitor<'de> for EmptyVisitor {
            type Value = MustBeEmpty;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an empty value")
            }

            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MustBeEmpty)
            }

            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(MustBeEmpty)
            }

            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
                if v {
                    Err(E::custom(UNSUPPORTED))
                } else {
                    Ok(MustBeEmpty)
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                if v.is_empty() {
                    Ok(MustBeEmpty)
                } else {
                    Err(E::custom(UNSUPPORTED))
                }
            }

            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
                Err(E::custom(UNSUPPORTED))
            }

            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
                Err(E::custom(UNSUPPORTED))
            }

            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
                Err(E::custom(UNSUPPORTED))
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                match seq.next_element::<IgnoredAny>()? {
                    None => Ok(MustBeEmpty),
                    Some(_) => Err(de::Error::custom(UNSUPPORTED)),
                }
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                // A Graph object whose every value is itself empty (`{"isEnabled": false}`,
                // `{"includePlatforms": []}`) is as good as null.
                while let Some(key) = map.next_key::<String>()? {
                    if key == "@odata.type" {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                    map.next_value::<MustBeEmpty>()?;
                }
                Ok(MustBeEmpty)
            }
        }

        d.deserialize_any(EmptyVisitor)
    }
}

/// A list of at most `N` entries; the `N + 1`th is refused as it is read,
/// so an oversized document stops parsing there.
fn bounded<'de, D, T, const N: usize>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    struct BoundedVisitor<T, const N: usize>(std::marker::PhantomData<T>);

    impl<'de, T: Deserialize<'de>, const N: usize> Visitor<'de> for BoundedVisitor<T, N> {
        type Value = Vec<T>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "a list of at most {N} entries")
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(N).min(64));
            while let Some(item) = seq.next_element()? {
                if out.len() == N {
                    return Err(de::Error::custom(format!("more than {N} entries")));
                }
                out.push(item);
            }
            Ok(out)
        }
    }

    d.deserialize_seq(BoundedVisitor::<T, N>(std::marker::PhantomData))
}

fn bounded_opt<'de, D, T, const N: usize>(d: D) -> Result<Option<Vec<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    bounded::<D, T, N>(d).map(Some)
}
