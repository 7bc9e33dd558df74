//! External collaboration settings: who may invite, which domains, what
//! guests may see, and which ways in are open (email one-time passcode,
//! self-service sign-up).
//!
//! The settings read from JSON or TOML with the names Microsoft Graph uses
//! (`allowInvitesFrom`, `guestUserAccess`, `domains`, `emailOtpEnabled`,
//! `selfServiceSignUpEnabled`):
//!
//! ```
//! use guestpass::policy::{AllowInvitesFrom, CollaborationSettings, GuestUserAccess};
//! let s = CollaborationSettings::from_json(
//!     r#"{"allowInvitesFrom": "adminsAndGuestInviters", "guestUserAccess": "restricted",
//!         "domains": {"allow": ["fabrikam.example", "*.woodgrove.example"]},
//!         "emailOtpEnabled": false}"#,
//! )?;
//! assert_eq!(s.allow_invites_from, AllowInvitesFrom::AdminsAndGuestInviters);
//! assert_eq!(s.guest_user_access, GuestUserAccess::Restricted);
//! assert!(s.domains.permits("eu.woodgrove.example"));
//! assert!(!s.domains.permits("evil-fabrikam.example"));
//! assert!(!s.email_otp_enabled);
//! assert!(s.self_service_sign_up_enabled);
//! # Ok::<(), guestpass::policy::PolicyConfigError>(())
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::email::{EmailAddress, to_a_label};
use crate::error::{ConfigError, Denied};

/// Most entries in a domain allow or deny list.
pub const MAX_DOMAIN_RULES: usize = 1000;

/// Who may invite guests (Graph's `allowInvitesFrom`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllowInvitesFrom {
    /// Anyone, guests included.
    Everyone,
    /// Administrators, guest inviters and all members.
    #[default]
    AdminsGuestInvitersAndAllMembers,
    /// Administrators and guest inviters only.
    AdminsAndGuestInviters,
    /// Nobody (administrators included, as in Entra).
    None,
}

/// The role of the person inviting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InviterRole {
    /// A directory administrator.
    Admin,
    /// A member holding the guest inviter role.
    GuestInviter,
    /// A member.
    Member,
    /// A guest.
    Guest,
}

impl AllowInvitesFrom {
    /// Whether `role` may invite under this setting.
    pub fn permits(self, role: InviterRole) -> bool {
        use InviterRole::*;
        match self {
            AllowInvitesFrom::Everyone => true,
            AllowInvitesFrom::AdminsGuestInvitersAndAllMembers => {
                matches!(role, Admin | GuestInviter | Member)
            }
            AllowInvitesFrom::AdminsAndGuestInviters => matches!(role, Admin | GuestInviter),
            AllowInvitesFrom::None => false,
        }
    }
}

/// One entry of a domain list: `example.com` matches exactly that domain;
/// `*.example.com` matches every subdomain of it (whole labels), not the
/// domain itself. Stored as A-labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainRule {
    domain: String,
    subdomains: bool,
}

impl DomainRule {
    /// Parses `example.com`, `*.example.com` or an internationalised form.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the rule.
    ///
    /// ```
    /// use guestpass::policy::DomainRule;
    /// let r = DomainRule::parse("*.Fabrikam.com")?;
    /// assert!(r.matches("eu.fabrikam.com"));
    /// assert!(!r.matches("fabrikam.com"));
    /// assert!(!r.matches("evil-fabrikam.com"));
    /// # Ok::<(), guestpass::error::ConfigError>(())
    /// ```
    pub fn parse(rule: &str) -> Result<Self, ConfigError> {
        let trimmed = rule.trim();
        let (subdomains, domain) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let domain = to_a_label(domain).map_err(|e| ConfigError::Invalid {
            field: "collaboration.domains",
            reason: format!("`{rule}`: {e}"),
        })?;
        Ok(Self { domain, subdomains })
    }

    /// Whether the A-label `domain` matches this rule.
    pub fn matches(&self, domain: &str) -> bool {
        if self.subdomains {
            domain.len() > self.domain.len() + 1
                && domain.ends_with(&self.domain)
                && domain.as_bytes()[domain.len() - self.domain.len() - 1] == b'.'
        } else {
            domain == self.domain
        }
    }
}

/// The rule as written in configuration: `example.com` or `*.example.com`,
/// in A-labels (`*.xn--bcher-kva.example`).
impl fmt::Display for DomainRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.subdomains {
            f.write_str("*.")?;
        }
        f.write_str(&self.domain)
    }
}

/// A list of domain rules, indexed: matching a domain costs one lookup per
/// label of the domain, whatever the length of the list.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DomainList {
    rules: Vec<DomainRule>,
    /// The domains of exact rules.
    exact: std::collections::HashSet<String>,
    /// The parent domains of `*.` rules.
    subdomains_of: std::collections::HashSet<String>,
}

impl DomainList {
    /// The list of `rules`, in order.
    pub fn new(rules: Vec<DomainRule>) -> Self {
        let mut exact = std::collections::HashSet::new();
        let mut subdomains_of = std::collections::HashSet::new();
        for r in &rules {
            if r.subdomains {
                subdomains_of.insert(r.domain.clone());
            } else {
                exact.insert(r.domain.clone());
            }
        }
        Self {
            rules,
            exact,
            subdomains_of,
        }
    }

    /// The rules, in order.
    pub fn rules(&self) -> &[DomainRule] {
        &self.rules
    }

    /// How many rules there are.
    pub fn len(&self) -> usize {
        self.rules.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Whether a rule matches `domain` (an A-label): the same answer as
    /// asking every [`DomainRule::matches`].
    pub fn matches(&self, domain: &str) -> bool {
        if self.exact.contains(domain) {
            return true;
        }
        // Every proper parent, label by label: `a.b.example` asks for
        // `b.example` and `example`.
        let mut rest = domain;
        while let Some((label, parent)) = rest.split_once('.') {
            if !label.is_empty() && self.subdomains_of.contains(parent) {
                return true;
            }
            rest = parent;
        }
        false
    }
}

/// Collaboration restrictions: an allow list or a deny list, never both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DomainRestriction {
    /// Any domain may be invited.
    #[default]
    AllowAll,
    /// Only these domains may be invited.
    AllowOnly(DomainList),
    /// These domains may not be invited.
    Deny(DomainList),
}

impl DomainRestriction {
    /// An allow list from rule strings.
    ///
    /// # Errors
    ///
    /// When a rule does not parse or there are too many.
    pub fn allow_only<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        Ok(Self::AllowOnly(DomainList::new(parse_rules(rules)?)))
    }

    /// A deny list from rule strings.
    ///
    /// # Errors
    ///
    /// When a rule does not parse or there are too many.
    pub fn deny<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        Ok(Self::Deny(DomainList::new(parse_rules(rules)?)))
    }

    /// Whether `domain` (an A-label) may be invited.
    pub fn permits(&self, domain: &str) -> bool {
        match self {
            DomainRestriction::AllowAll => true,
            DomainRestriction::AllowOnly(list) => list.matches(domain),
            DomainRestriction::Deny(list) => !list.matches(domain),
        }
    }
}

fn parse_rules<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Result<Vec<DomainRule>, ConfigError> {
    let mut out = Vec::new();
    for r in rules {
        if out.len() == MAX_DOMAIN_RULES {
            return Err(ConfigError::Invalid {
                field: "collaboration.domains",
                reason: format!("more than {MAX_DOMAIN_RULES} entries"),
            });
        }
        out.push(DomainRule::parse(r.as_ref())?);
    }
    Ok(out)
}

/// What guests may see of the directory: Graph's `guestUserRoleId`, named
/// by the role it selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum GuestUserAccess {
    /// Guests have the same access as members (role `User`).
    SameAsMembers,
    /// Guests have limited access to the properties and memberships of
    /// directory objects (role `Guest User`), Entra's default.
    #[default]
    Limited,
    /// Guests see only the properties and memberships of their own
    /// directory objects (role `Restricted Guest User`).
    Restricted,
}

impl GuestUserAccess {
    /// Every access level, most open first.
    pub const ALL: [GuestUserAccess; 3] = [
        GuestUserAccess::SameAsMembers,
        GuestUserAccess::Limited,
        GuestUserAccess::Restricted,
    ];

    /// The role id Graph's `authorizationPolicy.guestUserRoleId` holds for
    /// this level.
    ///
    /// ```
    /// use guestpass::policy::GuestUserAccess;
    /// let id = GuestUserAccess::Restricted.guest_user_role_id();
    /// assert_eq!(id, "2af84b1e-32c8-42b7-82bc-daa82404023b");
    /// assert_eq!(GuestUserAccess::from_guest_user_role_id(id), Some(GuestUserAccess::Restricted));
    /// ```
    pub const fn guest_user_role_id(self) -> &'static str {
        match self {
            GuestUserAccess::SameAsMembers => "a0b1b346-4d3e-4e8b-98f8-753987be4970",
            GuestUserAccess::Limited => "10dae51f-b6af-4016-8d66-8c2a99b929b3",
            GuestUserAccess::Restricted => "2af84b1e-32c8-42b7-82bc-daa82404023b",
        }
    }

    /// The level whose Graph `guestUserRoleId` is `id` (compared
    /// case-insensitively), if any.
    pub fn from_guest_user_role_id(id: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|level| level.guest_user_role_id().eq_ignore_ascii_case(id))
    }
}

/// The external collaboration settings: checked at invite time and again
/// at redemption (who may invite, which domains), and what guests get.
///
/// [`Default`] is Entra's default: members, guest inviters and
/// administrators invite any domain, guests have limited access, email
/// one-time passcodes and self-service sign-up are on.
///
/// Serialized (and read by [`from_json`](Self::from_json),
/// [`from_toml`](Self::from_toml) and [`Deserialize`]) in Graph's camelCase
/// names; every field may be left out for its default. Domain rules are
/// written back in A-labels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollaborationSettings {
    /// Who may invite (`allowInvitesFrom`).
    pub allow_invites_from: AllowInvitesFrom,
    /// What guests may see (`guestUserAccess`).
    pub guest_user_access: GuestUserAccess,
    /// Which domains may be invited (`domains`: `{"allow": [...]}`,
    /// `{"deny": [...]}`, or left out for every domain).
    pub domains: DomainRestriction,
    /// Whether guests without another identity provider may redeem with an
    /// email one-time passcode (`emailOtpEnabled`).
    pub email_otp_enabled: bool,
    /// Whether self-service sign-up user flows may run
    /// (`selfServiceSignUpEnabled`).
    pub self_service_sign_up_enabled: bool,
}

impl Default for CollaborationSettings {
    fn default() -> Self {
        Self {
            allow_invites_from: AllowInvitesFrom::default(),
            guest_user_access: GuestUserAccess::default(),
            domains: DomainRestriction::default(),
            email_otp_enabled: true,
            self_service_sign_up_enabled: true,
        }
    }
}

impl CollaborationSettings {
    /// Decides whether `role` may invite `email`.
    ///
    /// # Errors
    ///
    /// The [`Denied`] reason.
    pub fn check_invite(&self, role: InviterRole, email: &EmailAddress) -> Result<(), Denied> {
        if !self.allow_invites_from.permits(role) {
            return Err(Denied::InviterNotAllowed);
        }
        if !self.domains.permits(email.domain()) {
            return Err(Denied::DomainNotAllowed {
                domain: email.domain().to_owned(),
            });
        }
        Ok(())
    }
}

/// Settings read from JSON or TOML that cannot be used: which settings, the
/// path of the field and what is wrong with it.
///
/// The path uses the configuration's (Graph's) names, such as
/// `domains.allow[3]` or
/// `partners[2].b2bCollaborationInbound.usersAndGroups.targets[0]`; `.` is
/// the document itself.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{settings} field `{path}` is invalid: {reason}")]
pub struct PolicyConfigError {
    /// Which settings: `collaboration` or `crossTenantAccess`.
    pub settings: &'static str,
    /// Where, such as `domains.allow[3]` (`.` for the document).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl PolicyConfigError {
    pub(super) fn new(settings: &'static str, path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            settings,
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<PolicyConfigError> for ConfigError {
    fn from(e: PolicyConfigError) -> Self {
        ConfigError::Invalid {
            field: e.settings,
            reason: format!("`{}`: {}", e.path, e.reason),
        }
    }
}

/// Reads `T` from JSON, naming the path of the first field that does not
/// deserialize.
pub(super) fn read_json<T: serde::de::DeserializeOwned>(
    settings: &'static str,
    json: &str,
) -> Result<T, PolicyConfigError> {
    let mut de = serde_json::Deserializer::from_str(json);
    let raw: T = serde_path_to_error::deserialize(&mut de)
        .map_err(|e| PolicyConfigError::new(settings, e.path().to_string(), e.inner().to_string()))?;
    de.end()
        .map_err(|e| PolicyConfigError::new(settings, ".", e.to_string()))?;
    Ok(raw)
}

/// Reads `T` from TOML, naming the path of the first field that does not
/// deserialize.
pub(super) fn read_toml<T: serde::de::DeserializeOwned>(
    settings: &'static str,
    text: &str,
) -> Result<T, PolicyConfigError> {
    let de =
        toml::Deserializer::parse(text).map_err(|e| PolicyConfigError::new(settings, ".", e.message()))?;
    // The message alone: the error's display quotes the document's line.
    serde_path_to_error::deserialize(de)
        .map_err(|e| PolicyConfigError::new(settings, e.path().to_string(), e.inner().message().to_owned()))
}

const SETTINGS: &str = "collaboration";

/// The document form of [`CollaborationSettings`].
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawCollaboration {
    #[serde(default)]
    allow_invites_from: AllowInvitesFrom,
    #[serde(default)]
    guest_user_access: GuestUserAccess,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    domains: Option<RawDomains>,
    #[serde(default = "enabled")]
    email_otp_enabled: bool,
    #[serde(default = "enabled")]
    self_service_sign_up_enabled: bool,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDomains {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    allow: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    deny: Option<Vec<String>>,
}

fn enabled() -> bool {
    true
}

impl CollaborationSettings {
    /// Parses and validates a JSON document, such as
    /// `{"allowInvitesFrom": "adminsAndGuestInviters", "guestUserAccess":
    /// "restricted", "domains": {"allow": ["fabrikam.example",
    /// "*.woodgrove.example"]}, "emailOtpEnabled": false,
    /// "selfServiceSignUpEnabled": true}`.
    ///
    /// `domains` holds `allow` or `deny` (not both), a list of 1 to
    /// [`MAX_DOMAIN_RULES`] distinct rules; leave it out to allow every
    /// domain. Unknown fields are refused.
    ///
    /// # Errors
    ///
    /// [`PolicyConfigError`] naming the path of the first bad field, such
    /// as `domains` or `domains.allow[3]`.
    pub fn from_json(json: &str) -> Result<Self, PolicyConfigError> {
        Self::validate(read_json(SETTINGS, json)?)
    }

    /// Parses and validates a TOML document with the fields of
    /// [`from_json`](Self::from_json) (`allowInvitesFrom = "none"`,
    /// `[domains]` with `deny = [...]`).
    ///
    /// # Errors
    ///
    /// [`PolicyConfigError`] naming the path of the first bad field.
    pub fn from_toml(text: &str) -> Result<Self, PolicyConfigError> {
        Self::validate(read_toml(SETTINGS, text)?)
    }

    fn validate(raw: RawCollaboration) -> Result<Self, PolicyConfigError> {
        let domains = match raw.domains {
            None => DomainRestriction::AllowAll,
            Some(RawDomains {
                allow: Some(_),
                deny: Some(_),
            }) => {
                return Err(PolicyConfigError::new(
                    SETTINGS,
                    "domains",
                    "has both `allow` and `deny`; domains are restricted by an allow list or a deny list",
                ));
            }
            Some(RawDomains {
                allow: None,
                deny: None,
            }) => {
                return Err(PolicyConfigError::new(
                    SETTINGS,
                    "domains",
                    "needs `allow` or `deny` (leave `domains` out to allow every domain)",
                ));
            }
            Some(RawDomains {
                allow: Some(rules),
                deny: None,
            }) => DomainRestriction::AllowOnly(DomainList::new(validate_rules("domains.allow", &rules)?)),
            Some(RawDomains {
                allow: None,
                deny: Some(rules),
            }) => DomainRestriction::Deny(DomainList::new(validate_rules("domains.deny", &rules)?)),
        };
        Ok(Self {
            allow_invites_from: raw.allow_invites_from,
            guest_user_access: raw.guest_user_access,
            domains,
            email_otp_enabled: raw.email_otp_enabled,
            self_service_sign_up_enabled: raw.self_service_sign_up_enabled,
        })
    }

    fn to_raw(&self) -> RawCollaboration {
        let rules = |rules: &[DomainRule]| rules.iter().map(DomainRule::to_string).collect();
        let domains = match &self.domains {
            DomainRestriction::AllowAll => None,
            DomainRestriction::AllowOnly(r) => Some(RawDomains {
                allow: Some(rules(r.rules())),
                deny: None,
            }),
            DomainRestriction::Deny(r) => Some(RawDomains {
                allow: None,
                deny: Some(rules(r.rules())),
            }),
        };
        RawCollaboration {
            allow_invites_from: self.allow_invites_from,
            guest_user_access: self.guest_user_access,
            domains,
            email_otp_enabled: self.email_otp_enabled,
            self_service_sign_up_enabled: self.self_service_sign_up_enabled,
        }
    }
}

fn validate_rules(list: &str, rules: &[String]) -> Result<Vec<DomainRule>, PolicyConfigError> {
    if rules.is_empty() {
        return Err(PolicyConfigError::new(
            SETTINGS,
            list,
            "lists no domain (leave `domains` out to allow every domain)",
        ));
    }
    if rules.len() > MAX_DOMAIN_RULES {
        return Err(PolicyConfigError::new(
            SETTINGS,
            list,
            format!("at most {MAX_DOMAIN_RULES} domains (found {})", rules.len()),
        ));
    }
    let mut out: Vec<DomainRule> = Vec::with_capacity(rules.len());
    for (i, text) in rules.iter().enumerate() {
        let at = || format!("{list}[{i}]");
        let rule = DomainRule::parse(text).map_err(|e| {
            let reason = match e {
                ConfigError::Invalid { reason, .. } => reason,
                other => other.to_string(),
            };
            PolicyConfigError::new(SETTINGS, at(), reason)
        })?;
        if let Some(j) = out.iter().position(|r| *r == rule) {
            return Err(PolicyConfigError::new(
                SETTINGS,
                at(),
                format!("`{rule}` is listed twice (also at `{list}[{j}]`)"),
            ));
        }
        out.push(rule);
    }
    Ok(out)
}

impl Serialize for CollaborationSettings {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.to_raw().serialize(serializer)
    }
}

/// Validated as by [`CollaborationSettings::from_json`]; the error's
/// message names the field's path.
impl<'de> Deserialize<'de> for CollaborationSettings {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = RawCollaboration::deserialize(deserializer)?;
        Self::validate(raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// The indexed list answers as asking every rule does.
        #[test]
        fn an_indexed_list_matches_as_its_rules_do(
            rules in proptest::collection::vec(("(\\*\\.)?([ab]{1,2}\\.){0,2}ex", proptest::bool::ANY), 1..12),
            domain in "([ab]{1,2}\\.){0,3}ex",
        ) {
            let parsed: Vec<DomainRule> = rules
                .iter()
                .filter_map(|(r, _)| DomainRule::parse(r).ok())
                .collect();
            let list = DomainList::new(parsed.clone());
            let expected = parsed.iter().any(|r| r.matches(&domain));
            proptest::prop_assert_eq!(list.matches(&domain), expected);
        }
    }

    #[test]
    fn whole_label_matching() {
        let deny = DomainRestriction::deny(["example.com", "*.corp.example"]).unwrap();
        assert!(!deny.permits("example.com"));
        assert!(deny.permits("evil-example.com"));
        assert!(deny.permits("example.com.evil.io"));
        assert!(
            deny.permits("sub.example.com"),
            "exact rule does not cover subdomains"
        );
        assert!(!deny.permits("a.corp.example"));
        assert!(deny.permits("corp.example"));
        assert!(deny.permits("xcorp.example"));
    }

    #[test]
    fn idn_rules_compare_as_a_labels() {
        let allow = DomainRestriction::allow_only(["Bücher.example"]).unwrap();
        let a = EmailAddress::parse("x@BÜCHER.example").unwrap();
        let settings = CollaborationSettings {
            domains: allow,
            ..Default::default()
        };
        assert!(settings.check_invite(InviterRole::Admin, &a).is_ok());
        let b = EmailAddress::parse("x@buecher.example").unwrap();
        assert!(matches!(
            settings.check_invite(InviterRole::Admin, &b),
            Err(Denied::DomainNotAllowed { .. })
        ));
    }

    #[test]
    fn who_may_invite() {
        use InviterRole::*;
        let table = [
            (AllowInvitesFrom::Everyone, [true, true, true, true]),
            (
                AllowInvitesFrom::AdminsGuestInvitersAndAllMembers,
                [true, true, true, false],
            ),
            (
                AllowInvitesFrom::AdminsAndGuestInviters,
                [true, true, false, false],
            ),
            (AllowInvitesFrom::None, [false, false, false, false]),
        ];
        for (setting, want) in table {
            for (role, w) in [Admin, GuestInviter, Member, Guest].into_iter().zip(want) {
                assert_eq!(setting.permits(role), w, "{setting:?} {role:?}");
            }
        }
    }

    fn refused(json: &str) -> PolicyConfigError {
        CollaborationSettings::from_json(json).expect_err("must be refused")
    }

    #[test]
    fn defaults_are_entras() {
        let d = CollaborationSettings::default();
        assert_eq!(
            d.allow_invites_from,
            AllowInvitesFrom::AdminsGuestInvitersAndAllMembers
        );
        assert_eq!(d.guest_user_access, GuestUserAccess::Limited);
        assert_eq!(d.domains, DomainRestriction::AllowAll);
        assert!(d.email_otp_enabled);
        assert!(d.self_service_sign_up_enabled);
        assert_eq!(CollaborationSettings::from_json("{}").unwrap(), d);
        assert_eq!(CollaborationSettings::from_toml("").unwrap(), d);
        assert_eq!(
            serde_json::to_string(&d).unwrap(),
            r#"{"allowInvitesFrom":"adminsGuestInvitersAndAllMembers","guestUserAccess":"limited","emailOtpEnabled":true,"selfServiceSignUpEnabled":true}"#
        );
    }

    #[test]
    fn json_and_toml_read_the_same_settings_and_round_trip() {
        let json = r#"{"allowInvitesFrom": "adminsAndGuestInviters", "guestUserAccess": "restricted",
            "domains": {"allow": ["fabrikam.example", "*.woodgrove.example", "Bücher.example"]},
            "emailOtpEnabled": false, "selfServiceSignUpEnabled": true}"#;
        let toml = r#"
            allowInvitesFrom = "adminsAndGuestInviters"
            guestUserAccess = "restricted"
            emailOtpEnabled = false
            selfServiceSignUpEnabled = true
            [domains]
            allow = ["fabrikam.example", "*.woodgrove.example", "Bücher.example"]
        "#;
        let from_json = CollaborationSettings::from_json(json).unwrap();
        let from_toml = CollaborationSettings::from_toml(toml).unwrap();
        assert_eq!(from_json, from_toml);
        assert_eq!(
            from_json,
            CollaborationSettings {
                allow_invites_from: AllowInvitesFrom::AdminsAndGuestInviters,
                guest_user_access: GuestUserAccess::Restricted,
                domains: DomainRestriction::allow_only([
                    "fabrikam.example",
                    "*.woodgrove.example",
                    "xn--bcher-kva.example"
                ])
                .unwrap(),
                email_otp_enabled: false,
                self_service_sign_up_enabled: true,
            }
        );
        let written = serde_json::to_string(&from_json).unwrap();
        assert_eq!(
            written,
            r#"{"allowInvitesFrom":"adminsAndGuestInviters","guestUserAccess":"restricted","domains":{"allow":["fabrikam.example","*.woodgrove.example","xn--bcher-kva.example"]},"emailOtpEnabled":false,"selfServiceSignUpEnabled":true}"#
        );
        assert_eq!(CollaborationSettings::from_json(&written).unwrap(), from_json);
        // TOML: through the value tree (the crate builds `toml` without its
        // text writer), then back through the validating `Deserialize`.
        let table = toml::Table::try_from(&from_json).unwrap();
        assert_eq!(table.try_into::<CollaborationSettings>().unwrap(), from_json);

        let deny = CollaborationSettings {
            domains: DomainRestriction::deny(["evil.example"]).unwrap(),
            ..Default::default()
        };
        let written = serde_json::to_string(&deny).unwrap();
        assert!(
            written.contains(r#""domains":{"deny":["evil.example"]}"#),
            "{written}"
        );
        assert_eq!(CollaborationSettings::from_json(&written).unwrap(), deny);
    }

    #[test]
    fn every_level_names_its_graph_role() {
        let ids: Vec<&str> = GuestUserAccess::ALL
            .iter()
            .map(|l| l.guest_user_role_id())
            .collect();
        assert_eq!(
            ids,
            [
                "a0b1b346-4d3e-4e8b-98f8-753987be4970",
                "10dae51f-b6af-4016-8d66-8c2a99b929b3",
                "2af84b1e-32c8-42b7-82bc-daa82404023b"
            ]
        );
        for level in GuestUserAccess::ALL {
            let upper = level.guest_user_role_id().to_uppercase();
            assert_eq!(GuestUserAccess::from_guest_user_role_id(&upper), Some(level));
        }
        assert_eq!(GuestUserAccess::from_guest_user_role_id("limited"), None);
        let read = |v: &str| CollaborationSettings::from_json(&format!(r#"{{"guestUserAccess": "{v}"}}"#));
        assert_eq!(
            read("sameAsMembers").unwrap().guest_user_access,
            GuestUserAccess::SameAsMembers
        );
        assert_eq!(
            read("limited").unwrap().guest_user_access,
            GuestUserAccess::Limited
        );
        assert_eq!(read("Limited").unwrap_err().path, "guestUserAccess");
    }

    #[test]
    fn domain_list_errors_name_the_field() {
        let e = refused(r#"{"domains": {"allow": ["a.example"], "deny": ["b.example"]}}"#);
        assert_eq!((e.settings, e.path.as_str()), ("collaboration", "domains"));
        assert!(e.reason.contains("both `allow` and `deny`"), "{e}");
        assert_eq!(refused(r#"{"domains": {}}"#).path, "domains");
        assert_eq!(refused(r#"{"domains": {"allow": []}}"#).path, "domains.allow");
        assert_eq!(refused(r#"{"domains": {"deny": []}}"#).path, "domains.deny");
        let e = refused(r#"{"domains": {"deny": ["ok.example", "not a domain"]}}"#);
        assert_eq!(e.path, "domains.deny[1]");
        let e = refused(r#"{"domains": {"allow": ["a.example", "*.b.example", "A.example"]}}"#);
        assert_eq!(e.path, "domains.allow[2]");
        assert_eq!(
            e.reason,
            "`a.example` is listed twice (also at `domains.allow[0]`)"
        );
        assert_eq!(
            refused(r#"{"domains": {"alow": ["a.example"]}}"#).path,
            "domains.alow"
        );
        assert_eq!(
            refused(r#"{"allowInvitesFrom": "admins"}"#).path,
            "allowInvitesFrom"
        );
        assert_eq!(refused(r#"{"emailOtp": false}"#).path, "emailOtp");
        assert_eq!(refused(r#"{"emailOtpEnabled": "no"}"#).path, "emailOtpEnabled");
        assert_eq!(refused(r#"{} {}"#).path, ".");
        let e = CollaborationSettings::from_toml("[domains]\ndeny = [\"x\"]\nallow = [\"y.example\"]")
            .unwrap_err();
        assert_eq!(e.path, "domains");

        let rules: Vec<String> = (0..=MAX_DOMAIN_RULES)
            .map(|i| format!("\"d{i}.example\""))
            .collect();
        let e = refused(&format!(r#"{{"domains": {{"deny": [{}]}}}}"#, rules.join(",")));
        assert_eq!(e.path, "domains.deny");
        assert_eq!(e.reason, "at most 1000 domains (found 1001)");
        let at_limit = format!(
            r#"{{"domains": {{"allow": [{}]}}}}"#,
            rules[..MAX_DOMAIN_RULES].join(",")
        );
        match CollaborationSettings::from_json(&at_limit).unwrap().domains {
            DomainRestriction::AllowOnly(rules) => assert_eq!(rules.len(), MAX_DOMAIN_RULES),
            other => panic!("not an allow list: {other:?}"),
        }
    }

    #[test]
    fn errors_convert_and_deserialize_names_the_path() {
        let e = refused(r#"{"domains": {}}"#);
        assert_eq!(
            e.to_string(),
            "collaboration field `domains` is invalid: needs `allow` or `deny` (leave `domains` out to allow every domain)"
        );
        assert_eq!(
            ConfigError::from(e),
            ConfigError::Invalid {
                field: "collaboration",
                reason: "`domains`: needs `allow` or `deny` (leave `domains` out to allow every domain)"
                    .to_owned(),
            }
        );
        let e =
            serde_json::from_str::<CollaborationSettings>(r#"{"domains": {"allow": ["x"]}}"#).unwrap_err();
        assert!(e.to_string().contains("`domains.allow[0]`"), "{e}");
    }

    #[test]
    fn configured_lists_match_whole_labels() {
        let allow = CollaborationSettings::from_json(r#"{"domains": {"allow": ["example.com"]}}"#).unwrap();
        assert!(allow.domains.permits("example.com"));
        assert!(!allow.domains.permits("evil-example.com"));
        assert!(!allow.domains.permits("sub.example.com"));
        assert!(!allow.domains.permits("example.com.evil.io"));
        let sub = CollaborationSettings::from_json(r#"{"domains": {"allow": ["*.example.com"]}}"#).unwrap();
        assert!(sub.domains.permits("sub.example.com"));
        assert!(sub.domains.permits("a.b.example.com"));
        assert!(!sub.domains.permits("example.com"));
        assert!(!sub.domains.permits("evil-example.com"));
        assert!(!sub.domains.permits("subexample.com"));
        let deny = CollaborationSettings::from_json(r#"{"domains": {"deny": ["example.com"]}}"#).unwrap();
        let inviter = InviterRole::Member;
        let check =
            |s: &CollaborationSettings, a: &str| s.check_invite(inviter, &EmailAddress::parse(a).unwrap());
        assert!(matches!(
            check(&deny, "x@EXAMPLE.com"),
            Err(Denied::DomainNotAllowed { domain }) if domain == "example.com"
        ));
        assert!(check(&deny, "x@evil-example.com").is_ok());
        assert!(check(&deny, "x@sub.example.com").is_ok());
    }

    #[test]
    fn bad_rules_and_oversized_lists_are_refused() {
        assert!(DomainRestriction::deny(["not a domain"]).is_err());
        let many: Vec<String> = (0..=MAX_DOMAIN_RULES).map(|i| format!("d{i}.example")).collect();
        assert!(DomainRestriction::deny(&many).is_err());
    }
}
