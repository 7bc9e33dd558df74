//! Loading, validating and compiling a [`PolicySet`] into
//! [`CompiledPolicies`].
//!
//! Compilation interns every id (users, groups, applications, tenants,
//! agreements) to a number, parses IP ranges into sorted intervals, and
//! builds, per id, the set of policies (a fixed-size bitset) that include or
//! exclude it, so evaluating a sign-in costs a handful of table lookups and
//! bitset operations whatever the number of policies.

use std::collections::hash_map::Entry;
use std::fmt;
use std::sync::Arc;

use time::Duration;

use super::bits::{Bits, IdMap, Interner};
use super::evaluate::{ClientAppType, Controls, UserKind};
use super::explain::PolicyControls;
use super::model::{
    ConditionalAccessClientApp, ConditionalAccessPolicy, ExternalTenants, FrequencyInterval, GrantOperator,
    GuestsOrExternalUsers, NamedLocation, PolicySet, PolicyState, SignInFrequency, SignInFrequencyType,
};
use super::net::{IpRanges, parse_cidr};
use super::{
    BuiltInControl, CONFIG_FIELD, MAX_AGREEMENTS, MAX_CONDITION_VALUES, MAX_DESCRIPTION_LEN,
    MAX_IP_RANGES_PER_LOCATION, MAX_NAMED_LOCATIONS, MAX_POLICIES,
};
use crate::error::ConfigError;
use crate::flow::connector::quote;

/// Grant-control bits of a control mask; bit `64 + n` is agreement `n`.
pub(super) const MFA: u128 = 1;
pub(super) const COMPLIANT_DEVICE: u128 = 1 << 1;
pub(super) const DOMAIN_JOINED_DEVICE: u128 = 1 << 2;
pub(super) const TERMS_SHIFT: u32 = 64;

/// Documents larger than this are not parsed a second time to name the
/// policy an error is in.
const NAME_LOOKUP_MAX_BYTES: usize = 4 << 20;

/// A validated, indexed policy set, ready to evaluate sign-ins.
///
/// Built by [`PolicySet::compile`]; immutable, `Send + Sync`, cheap to share
/// behind an `Arc`. [`evaluate`](Self::evaluate) and
/// [`explain`](Self::explain) are pure functions of it and a sign-in.
#[derive(Clone)]
pub struct CompiledPolicies {
    pub(super) policies: Box<[CompiledPolicy]>,
    pub(super) locations: Box<[CompiledLocation]>,
    pub(super) trusted: IpRanges,
    pub(super) users: Interner,
    pub(super) groups: Interner,
    pub(super) apps: Interner,
    pub(super) tenants: Interner,
    pub(super) agreements: Interner,
    pub(super) user_sets: Box<[IncExc]>,
    pub(super) group_sets: Box<[IncExc]>,
    pub(super) app_sets: Box<[IncExc]>,
    pub(super) tenant_rules: Box<[Box<[TenantRule]>]>,
    pub(super) kind_sets: [IncExc; UserKind::COUNT],
    pub(super) all_users: Bits,
    pub(super) all_apps: Bits,
    pub(super) client_sets: [Bits; ClientAppType::COUNT],
    pub(super) enforced: Bits,
    pub(super) blocking: Bits,
    pub(super) located: Bits,
}

impl fmt::Debug for CompiledPolicies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CompiledPolicies")
            .field("policies", &self.policies.len())
            .field("named_locations", &self.locations.len())
            .field("users", &self.users.len())
            .field("groups", &self.groups.len())
            .field("applications", &self.apps.len())
            .field("tenants", &self.tenants.len())
            .field("agreements", &self.agreements.len())
            .finish()
    }
}

impl CompiledPolicies {
    /// How many policies the set holds (every state).
    pub fn len(&self) -> usize {
        self.policies.len()
    }

    /// Whether the set holds no policy.
    pub fn is_empty(&self) -> bool {
        self.policies.is_empty()
    }

    /// The display names of the policies, in configured order.
    pub fn policy_names(&self) -> impl Iterator<Item = &str> + '_ {
        self.policies.iter().map(|p| &*p.name)
    }

    /// Whether any policy has a group condition (`includeGroups`,
    /// `excludeGroups`).
    pub fn uses_groups(&self) -> bool {
        self.groups.len() != 0
    }

    /// The ids of the terms of use (agreements) the policies' grant
    /// controls name, each once.
    pub fn agreement_ids(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.agreements.len()).filter_map(|n| u32::try_from(n).ok().map(|n| self.agreements.name_str(n)))
    }
}

/// The policies that include and that exclude one id (or user kind).
#[derive(Clone, Copy, Default)]
pub(super) struct IncExc {
    pub(super) include: Bits,
    pub(super) exclude: Bits,
}

/// A guest rule naming enumerated tenants, filed under each tenant.
#[derive(Clone, Copy)]
pub(super) struct TenantRule {
    pub(super) policy: u16,
    pub(super) kinds: u8,
    pub(super) exclude: bool,
}

#[derive(Clone)]
pub(super) struct CompiledLocation {
    pub(super) id: Arc<str>,
    pub(super) name: Arc<str>,
    pub(super) trusted: bool,
    pub(super) ranges: IpRanges,
}

/// One policy, with ids interned, in the shape the explanation walks.
#[derive(Clone)]
pub(super) struct CompiledPolicy {
    pub(super) name: Arc<str>,
    pub(super) id: Option<Arc<str>>,
    pub(super) state: PolicyState,
    pub(super) users: UserCondition,
    pub(super) apps: AppCondition,
    /// Bit per [`ClientAppType`].
    pub(super) client_apps: u8,
    pub(super) locations: Option<LocationCondition>,
    pub(super) block: bool,
    pub(super) grant_mask: u128,
    pub(super) operator: GrantOperator,
    pub(super) sign_in_frequency: Option<Duration>,
    pub(super) controls: PolicyControls,
}

#[derive(Clone, Default)]
pub(super) struct UserCondition {
    pub(super) include_all: bool,
    pub(super) include_none: bool,
    pub(super) include_guests_keyword: bool,
    pub(super) include_users: Box<[u32]>,
    pub(super) include_groups: Box<[u32]>,
    pub(super) include_guests: Option<GuestRule>,
    pub(super) exclude_guests_keyword: bool,
    pub(super) exclude_users: Box<[u32]>,
    pub(super) exclude_groups: Box<[u32]>,
    pub(super) exclude_guests: Option<GuestRule>,
}

/// Guest or external users: a bit per type, and the tenants (`None`: all).
#[derive(Clone)]
pub(super) struct GuestRule {
    pub(super) kinds: u8,
    pub(super) tenants: Option<Box<[u32]>>,
}

impl GuestRule {
    pub(super) fn matches(&self, kind_bit: u8, tenant: Option<u32>) -> bool {
        self.kinds & kind_bit != 0
            && match &self.tenants {
                None => true,
                Some(list) => tenant.is_some_and(|t| list.contains(&t)),
            }
    }

    /// Whether every user this rule matches, `other` matches too.
    fn within(&self, other: &GuestRule) -> bool {
        self.kinds & !other.kinds == 0
            && match (&self.tenants, &other.tenants) {
                (_, None) => true,
                (None, Some(_)) => false,
                (Some(mine), Some(theirs)) => mine.iter().all(|t| theirs.contains(t)),
            }
    }
}

#[derive(Clone, Default)]
pub(super) struct AppCondition {
    pub(super) include_all: bool,
    pub(super) include_none: bool,
    pub(super) include: Box<[u32]>,
    pub(super) exclude: Box<[u32]>,
}

#[derive(Clone, Default)]
pub(super) struct LocationCondition {
    pub(super) include_all: bool,
    pub(super) include_trusted: bool,
    pub(super) include: Box<[u32]>,
    pub(super) exclude_trusted: bool,
    pub(super) exclude: Box<[u32]>,
}

/// The keywords of include and exclude lists, compared ignoring ASCII case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Keyword {
    All,
    None,
    GuestsOrExternalUsers,
    AllTrusted,
}

fn keyword(value: &str) -> Option<Keyword> {
    [
        ("All", Keyword::All),
        ("None", Keyword::None),
        ("GuestsOrExternalUsers", Keyword::GuestsOrExternalUsers),
        ("AllTrusted", Keyword::AllTrusted),
    ]
    .into_iter()
    .find(|(name, _)| value.eq_ignore_ascii_case(name))
    .map(|(_, k)| k)
}

fn invalid(path: impl fmt::Display, reason: impl fmt::Display) -> ConfigError {
    ConfigError::Invalid {
        field: CONFIG_FIELD,
        reason: format!("`{path}`: {reason}"),
    }
}

/// `policies[3] (Require MFA for guests)`: an indexed item with its
/// display name, as error paths name it.
struct Item<'a> {
    list: &'static str,
    index: usize,
    name: &'a str,
}

impl fmt::Display for Item<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}] ({})", self.list, self.index, quote(self.name))
    }
}

/// Ids: 1 to 256 bytes, no control characters, no surrounding white space.
fn check_id(value: &str) -> Result<(), String> {
    if value.is_empty() || value.len() > super::MAX_ID_LEN {
        return Err(format!("must be 1 to {} bytes", super::MAX_ID_LEN));
    }
    if value.chars().any(char::is_control) || value.trim() != value {
        return Err(format!(
            "`{}` has control characters or surrounding white space",
            quote(value)
        ));
    }
    Ok(())
}

/// Display names: as ids, and not blank.
fn check_name(value: &str) -> Result<(), String> {
    if value.trim().is_empty() {
        return Err("must not be empty".to_owned());
    }
    check_id(value)
}

impl PolicySet {
    /// Parses a JSON document (`{"namedLocations": [...], "policies": [...]}`,
    /// each entry as Graph writes it).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with field [`CONFIG_FIELD`], naming the path
    /// of the first field that does not parse; the set is not validated
    /// until [`compile`](Self::compile).
    pub fn from_json(json: &str) -> Result<Self, ConfigError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let set: PolicySet = serde_path_to_error::deserialize(&mut de).map_err(|e| {
            let path = e.path().to_string();
            let path = name_path(&path, || {
                (json.len() <= NAME_LOOKUP_MAX_BYTES).then_some(())?;
                serde_json::from_str::<serde_json::Value>(json)
                    .ok()
                    .map(|v| DisplayNames::from_json(&v))
            });
            invalid(path, e.inner())
        })?;
        de.end().map_err(|e| invalid(".", e))?;
        Ok(set)
    }

    /// Parses a TOML document with the same fields as JSON
    /// (`[[namedLocations]]`, `[[policies]]`, `[policies.conditions.users]`).
    ///
    /// # Errors
    ///
    /// As [`from_json`](Self::from_json).
    pub fn from_toml(text: &str) -> Result<Self, ConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| invalid(".", e.message()))?;
        // The message alone: the error's display quotes the document's line.
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let path = name_path(&path, || {
                (text.len() <= NAME_LOOKUP_MAX_BYTES).then_some(())?;
                // Read as JSON values, so one lookup serves both formats.
                toml::from_str::<serde_json::Value>(text)
                    .ok()
                    .map(|v| DisplayNames::from_json(&v))
            });
            invalid(path, e.inner().message())
        })
    }

    /// Validates the set as a whole and compiles it.
    ///
    /// Refused, naming the policy (or named location) and field: a set over
    /// the [limits](super#limits); a missing or duplicate display name or
    /// id; users or applications that include nothing; `clientAppTypes` or
    /// `includeLocations` empty; `All` excluded; an include that an exclude
    /// of the same value always overrides (so it can never apply); a
    /// location id that no named location has; a malformed IP range (not
    /// CIDR, prefix too long, host bits set); `block` combined with other
    /// controls; several controls without `operator`; a policy without grant
    /// controls or an enabled session control; a sign-in frequency out of
    /// range.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] with field [`CONFIG_FIELD`]; its reason
    /// starts with the path, such as
    /// `` `policies[3] (Require MFA for guests).conditions.locations.includeLocations[0]`: ``.
    pub fn compile(self) -> Result<CompiledPolicies, ConfigError> {
        Compiler {
            users: Interner::folding(),
            groups: Interner::folding(),
            tenants: Interner::folding(),
            ..Compiler::default()
        }
        .run(self)
    }
}

/// The display names of policies and named locations in a document that
/// did not deserialize, to name them in the error.
struct DisplayNames {
    policies: Vec<Option<String>>,
    locations: Vec<Option<String>>,
}

impl DisplayNames {
    fn from_json(v: &serde_json::Value) -> Self {
        let names = |key: &str| {
            v.get(key)
                .and_then(|l| l.as_array())
                .map(|items| {
                    items
                        .iter()
                        .map(|p| p.get("displayName").and_then(|n| n.as_str()).map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default()
        };
        Self {
            policies: names("policies"),
            locations: names("namedLocations"),
        }
    }
}

/// `policies[3].conditions` becomes `policies[3] (Name).conditions` when the
/// document has a display name there.
fn name_path(path: &str, names: impl FnOnce() -> Option<DisplayNames>) -> String {
    for (list, limit) in [
        ("policies", MAX_POLICIES),
        ("namedLocations", MAX_NAMED_LOCATIONS),
    ] {
        let Some(rest) = path.strip_prefix(list).and_then(|r| r.strip_prefix('[')) else {
            continue;
        };
        let Some((index, tail)) = rest.split_once(']') else {
            continue;
        };
        let Ok(index) = index.parse::<usize>() else {
            continue;
        };
        // An oversized list was refused while parsing; reading the document
        // again to name an entry would make that slow.
        if index >= limit {
            break;
        }
        let Some(names) = names() else { break };
        let list_names = if list == "policies" {
            &names.policies
        } else {
            &names.locations
        };
        if let Some(Some(name)) = list_names.get(index) {
            return format!("{}{tail}", Item { list, index, name });
        }
        break;
    }
    path.to_owned()
}

#[derive(Default)]
struct Compiler {
    users: Interner,
    groups: Interner,
    apps: Interner,
    tenants: Interner,
    agreements: Interner,
    user_sets: Vec<IncExc>,
    group_sets: Vec<IncExc>,
    app_sets: Vec<IncExc>,
    tenant_rules: Vec<Vec<TenantRule>>,
    kind_sets: [IncExc; UserKind::COUNT],
    all_users: Bits,
    all_apps: Bits,
    client_sets: [Bits; ClientAppType::COUNT],
    enforced: Bits,
    blocking: Bits,
    located: Bits,
}

fn set_at(sets: &mut Vec<IncExc>, id: u32) -> &mut IncExc {
    let i = id as usize;
    if sets.len() <= i {
        sets.resize(i + 1, IncExc::default());
    }
    &mut sets[i]
}

impl Compiler {
    fn run(mut self, set: PolicySet) -> Result<CompiledPolicies, ConfigError> {
        if set.policies.len() > MAX_POLICIES {
            return Err(invalid("policies", format!("more than {MAX_POLICIES} entries")));
        }
        if set.named_locations.len() > MAX_NAMED_LOCATIONS {
            return Err(invalid(
                "namedLocations",
                format!("more than {MAX_NAMED_LOCATIONS} entries"),
            ));
        }
        let (locations, location_ids, trusted) = compile_locations(&set.named_locations)?;

        let mut names: IdMap<String, usize> = IdMap::default();
        let mut ids: IdMap<&str, usize> = IdMap::default();
        let mut policies = Vec::with_capacity(set.policies.len());
        for (index, policy) in set.policies.iter().enumerate() {
            check_name(&policy.display_name)
                .map_err(|r| invalid(format!("policies[{index}].displayName"), r))?;
            let item = Item {
                list: "policies",
                index,
                name: &policy.display_name,
            };
            match names.entry(policy.display_name.to_lowercase()) {
                Entry::Occupied(e) => {
                    return Err(invalid(
                        format_args!("{item}.displayName"),
                        format!("policies[{}] has the same display name", e.get()),
                    ));
                }
                Entry::Vacant(e) => {
                    e.insert(index);
                }
            }
            if let Some(id) = &policy.id {
                check_id(id).map_err(|r| invalid(format_args!("{item}.id"), r))?;
                if let Some(other) = ids.insert(id, index) {
                    return Err(invalid(
                        format_args!("{item}.id"),
                        format!("policies[{other}] has the same id `{}`", quote(id)),
                    ));
                }
            }
            if policy
                .description
                .as_ref()
                .is_some_and(|d| d.len() > MAX_DESCRIPTION_LEN)
            {
                return Err(invalid(
                    format_args!("{item}.description"),
                    format!("longer than {MAX_DESCRIPTION_LEN} bytes"),
                ));
            }
            policies.push(self.policy(index, &item, policy, &locations, &location_ids)?);
        }

        let mut tenant_rules: Vec<Box<[TenantRule]>> =
            self.tenant_rules.into_iter().map(Vec::into_boxed_slice).collect();
        tenant_rules.resize_with(self.tenants.len(), Default::default);
        let mut user_sets = self.user_sets;
        user_sets.resize(self.users.len(), IncExc::default());
        let mut group_sets = self.group_sets;
        group_sets.resize(self.groups.len(), IncExc::default());
        let mut app_sets = self.app_sets;
        app_sets.resize(self.apps.len(), IncExc::default());
        Ok(CompiledPolicies {
            policies: policies.into_boxed_slice(),
            locations: locations.into_boxed_slice(),
            trusted,
            users: self.users,
            groups: self.groups,
            apps: self.apps,
            tenants: self.tenants,
            agreements: self.agreements,
            user_sets: user_sets.into_boxed_slice(),
            group_sets: group_sets.into_boxed_slice(),
            app_sets: app_sets.into_boxed_slice(),
            tenant_rules: tenant_rules.into_boxed_slice(),
            kind_sets: self.kind_sets,
            all_users: self.all_users,
            all_apps: self.all_apps,
            client_sets: self.client_sets,
            enforced: self.enforced,
            blocking: self.blocking,
            located: self.located,
        })
    }

    fn policy(
        &mut self,
        index: usize,
        item: &Item<'_>,
        policy: &ConditionalAccessPolicy,
        locations: &[CompiledLocation],
        location_ids: &IdMap<&str, u32>,
    ) -> Result<CompiledPolicy, ConfigError> {
        let users = self.users_condition(index, item, &policy.conditions.users)?;
        let apps = self.apps_condition(index, item, &policy.conditions.applications)?;

        let client_types = &policy.conditions.client_app_types;
        if client_types.is_empty() {
            return Err(invalid(
                format_args!("{item}.conditions.clientAppTypes"),
                "must list at least one client app type (`all` for every client)",
            ));
        }
        let mut client_apps = 0u8;
        for t in client_types {
            client_apps |= match t {
                ConditionalAccessClientApp::All => ClientAppType::ALL_BITS,
                ConditionalAccessClientApp::Browser => ClientAppType::Browser.bit(),
                ConditionalAccessClientApp::MobileAppsAndDesktopClients => {
                    ClientAppType::MobileAppsAndDesktopClients.bit()
                }
                ConditionalAccessClientApp::ExchangeActiveSync => ClientAppType::ExchangeActiveSync.bit(),
                ConditionalAccessClientApp::Other => ClientAppType::Other.bit(),
            };
        }
        for (c, set) in ClientAppType::ALL.iter().zip(self.client_sets.iter_mut()) {
            if client_apps & c.bit() != 0 {
                set.set(index);
            }
        }

        let location_condition = match &policy.conditions.locations {
            None => None,
            Some(l) => {
                self.located.set(index);
                Some(location_condition(item, l, locations, location_ids)?)
            }
        };

        let (block, grant_mask, operator, grant) = self.grant(item, policy)?;
        let sign_in_frequency = match policy
            .session_controls
            .as_ref()
            .and_then(|s| s.sign_in_frequency.as_ref())
        {
            Some(f) if f.is_enabled => Some(sign_in_frequency(item, f)?),
            _ => None,
        };
        if policy.grant_controls.is_none() && sign_in_frequency.is_none() {
            return Err(invalid(
                format_args!("{item}.grantControls"),
                "a policy needs grant controls or an enabled session control",
            ));
        }
        match policy.state {
            PolicyState::Enabled => self.enforced.set(index),
            PolicyState::Disabled | PolicyState::EnabledForReportingButNotEnforced => {}
        }
        if block {
            self.blocking.set(index);
        }
        Ok(CompiledPolicy {
            name: Arc::from(policy.display_name.as_str()),
            id: policy.id.as_deref().map(Arc::from),
            state: policy.state,
            users,
            apps,
            client_apps,
            locations: location_condition,
            block,
            grant_mask,
            operator,
            sign_in_frequency,
            controls: PolicyControls {
                block,
                operator,
                grant,
                sign_in_frequency,
            },
        })
    }

    fn users_condition(
        &mut self,
        index: usize,
        item: &Item<'_>,
        users: &super::model::Users,
    ) -> Result<UserCondition, ConfigError> {
        let at = |field: &str, j: usize| format!("{item}.conditions.users.{field}[{j}]");
        let mut c = UserCondition::default();
        let mut keyword_at = None;

        let mut exclude_users = Vec::new();
        for (j, v) in users.exclude_users.iter().enumerate() {
            match keyword(v) {
                Some(Keyword::All) => {
                    return Err(invalid(
                        at("excludeUsers", j),
                        "excluding `All` leaves no user the policy could apply to",
                    ));
                }
                Some(Keyword::None) => {
                    return Err(invalid(
                        at("excludeUsers", j),
                        "`None` belongs in includeUsers; leave excludeUsers empty to exclude no one",
                    ));
                }
                Some(Keyword::GuestsOrExternalUsers) => c.exclude_guests_keyword = true,
                _ => {
                    check_id(v).map_err(|r| invalid(at("excludeUsers", j), r))?;
                    push_unique(&mut exclude_users, self.users.intern(v));
                }
            }
        }
        let mut exclude_groups = Vec::new();
        for (j, v) in users.exclude_groups.iter().enumerate() {
            check_id(v).map_err(|r| invalid(at("excludeGroups", j), r))?;
            push_unique(&mut exclude_groups, self.groups.intern(v));
        }
        let exclude_guests = match &users.exclude_guests_or_external_users {
            None => None,
            Some(g) => Some(self.guest_rule(
                &format!("{item}.conditions.users.excludeGuestsOrExternalUsers"),
                g,
            )?),
        };
        let all_guests_excluded = c.exclude_guests_keyword
            || exclude_guests
                .as_ref()
                .is_some_and(|g| g.tenants.is_none() && g.kinds == UserKind::ALL_GUEST_BITS);

        let mut include_users = Vec::new();
        for (j, v) in users.include_users.iter().enumerate() {
            match keyword(v) {
                Some(Keyword::All) => c.include_all = true,
                Some(Keyword::None) => {
                    c.include_none = true;
                    keyword_at = Some(j);
                }
                Some(Keyword::GuestsOrExternalUsers) => {
                    if all_guests_excluded {
                        return Err(invalid(
                            at("includeUsers", j),
                            "every guest or external user is also excluded, which wins: this include can never apply",
                        ));
                    }
                    c.include_guests_keyword = true;
                }
                _ => {
                    check_id(v).map_err(|r| invalid(at("includeUsers", j), r))?;
                    let id = self.users.intern(v);
                    if exclude_users.contains(&id) {
                        return Err(dead_include(at("includeUsers", j), v, "excludeUsers"));
                    }
                    push_unique(&mut include_users, id);
                }
            }
        }
        let mut include_groups = Vec::new();
        for (j, v) in users.include_groups.iter().enumerate() {
            check_id(v).map_err(|r| invalid(at("includeGroups", j), r))?;
            let id = self.groups.intern(v);
            if exclude_groups.contains(&id) {
                return Err(dead_include(at("includeGroups", j), v, "excludeGroups"));
            }
            push_unique(&mut include_groups, id);
        }
        let include_guests = match &users.include_guests_or_external_users {
            None => None,
            Some(g) => {
                let path = format!("{item}.conditions.users.includeGuestsOrExternalUsers");
                let rule = self.guest_rule(&path, g)?;
                if c.exclude_guests_keyword || exclude_guests.as_ref().is_some_and(|e| rule.within(e)) {
                    return Err(invalid(
                        path,
                        "every user it includes is also excluded, which wins: this include can never apply",
                    ));
                }
                Some(rule)
            }
        };

        let anything = c.include_all
            || c.include_guests_keyword
            || !include_users.is_empty()
            || !include_groups.is_empty()
            || include_guests.is_some();
        if let Some(j) = keyword_at {
            if anything {
                return Err(invalid(
                    at("includeUsers", j),
                    "`None` cannot be combined with other includes",
                ));
            }
        } else if !anything {
            return Err(invalid(
                format_args!("{item}.conditions.users.includeUsers"),
                "the policy must include users: user ids, `All`, `GuestsOrExternalUsers` or `None` \
                 in includeUsers, includeGroups, or includeGuestsOrExternalUsers",
            ));
        }

        // The index for evaluation.
        if c.include_all {
            self.all_users.set(index);
        }
        for &u in &include_users {
            set_at(&mut self.user_sets, u).include.set(index);
        }
        for &u in &exclude_users {
            set_at(&mut self.user_sets, u).exclude.set(index);
        }
        for &g in &include_groups {
            set_at(&mut self.group_sets, g).include.set(index);
        }
        for &g in &exclude_groups {
            set_at(&mut self.group_sets, g).exclude.set(index);
        }
        for kind in UserKind::ALL {
            let bit = kind.guest_bit();
            if bit == 0 {
                continue;
            }
            let sets = &mut self.kind_sets[kind.index()];
            if c.include_guests_keyword
                || include_guests
                    .as_ref()
                    .is_some_and(|g| g.tenants.is_none() && g.kinds & bit != 0)
            {
                sets.include.set(index);
            }
            if c.exclude_guests_keyword
                || exclude_guests
                    .as_ref()
                    .is_some_and(|g| g.tenants.is_none() && g.kinds & bit != 0)
            {
                sets.exclude.set(index);
            }
        }
        let policy = u16::try_from(index).unwrap_or(u16::MAX);
        for (rule, exclude) in [(&include_guests, false), (&exclude_guests, true)] {
            if let Some(GuestRule {
                kinds,
                tenants: Some(tenants),
            }) = rule
            {
                for &t in tenants.iter() {
                    let i = t as usize;
                    if self.tenant_rules.len() <= i {
                        self.tenant_rules.resize_with(i + 1, Vec::new);
                    }
                    if let Some(rules) = self.tenant_rules.get_mut(i) {
                        rules.push(TenantRule {
                            policy,
                            kinds: *kinds,
                            exclude,
                        });
                    }
                }
            }
        }

        c.include_users = include_users.into_boxed_slice();
        c.include_groups = include_groups.into_boxed_slice();
        c.include_guests = include_guests;
        c.exclude_users = exclude_users.into_boxed_slice();
        c.exclude_groups = exclude_groups.into_boxed_slice();
        c.exclude_guests = exclude_guests;
        Ok(c)
    }

    fn guest_rule(&mut self, path: &str, g: &GuestsOrExternalUsers) -> Result<GuestRule, ConfigError> {
        if g.guest_or_external_user_types.is_empty() {
            return Err(invalid(
                format_args!("{path}.guestOrExternalUserTypes"),
                "must list at least one guest or external user type",
            ));
        }
        let kinds = g
            .guest_or_external_user_types
            .iter()
            .fold(0u8, |k, &t| k | UserKind::from(t).guest_bit());
        let tenants = match &g.external_tenants {
            ExternalTenants::All => None,
            ExternalTenants::Enumerated { members } => {
                if members.is_empty() {
                    return Err(invalid(
                        format_args!("{path}.externalTenants.members"),
                        "an enumerated list must name at least one tenant (or use membershipKind `all`)",
                    ));
                }
                if members.len() > MAX_CONDITION_VALUES {
                    return Err(invalid(
                        format_args!("{path}.externalTenants.members"),
                        format!("more than {MAX_CONDITION_VALUES} entries"),
                    ));
                }
                let mut ids = Vec::with_capacity(members.len());
                for (j, m) in members.iter().enumerate() {
                    check_id(m)
                        .map_err(|r| invalid(format_args!("{path}.externalTenants.members[{j}]"), r))?;
                    push_unique(&mut ids, self.tenants.intern(m));
                }
                Some(ids.into_boxed_slice())
            }
        };
        Ok(GuestRule { kinds, tenants })
    }

    fn apps_condition(
        &mut self,
        index: usize,
        item: &Item<'_>,
        apps: &super::model::Applications,
    ) -> Result<AppCondition, ConfigError> {
        let at = |field: &str, j: usize| format!("{item}.conditions.applications.{field}[{j}]");
        let mut c = AppCondition::default();
        let mut exclude = Vec::new();
        for (j, v) in apps.exclude_applications.iter().enumerate() {
            match keyword(v) {
                Some(Keyword::All) => {
                    return Err(invalid(
                        at("excludeApplications", j),
                        "excluding `All` leaves no application the policy could apply to",
                    ));
                }
                Some(Keyword::None) => {
                    return Err(invalid(
                        at("excludeApplications", j),
                        "`None` belongs in includeApplications; leave excludeApplications empty to exclude none",
                    ));
                }
                _ => {
                    check_id(v).map_err(|r| invalid(at("excludeApplications", j), r))?;
                    push_unique(&mut exclude, self.apps.intern(v));
                }
            }
        }
        let mut include = Vec::new();
        let mut none_at = None;
        for (j, v) in apps.include_applications.iter().enumerate() {
            match keyword(v) {
                Some(Keyword::All) => c.include_all = true,
                Some(Keyword::None) => {
                    c.include_none = true;
                    none_at = Some(j);
                }
                _ => {
                    check_id(v).map_err(|r| invalid(at("includeApplications", j), r))?;
                    let id = self.apps.intern(v);
                    if exclude.contains(&id) {
                        return Err(dead_include(
                            at("includeApplications", j),
                            v,
                            "excludeApplications",
                        ));
                    }
                    push_unique(&mut include, id);
                }
            }
        }
        let anything = c.include_all || !include.is_empty();
        if let Some(j) = none_at {
            if anything {
                return Err(invalid(
                    at("includeApplications", j),
                    "`None` cannot be combined with other includes",
                ));
            }
        } else if !anything {
            return Err(invalid(
                format_args!("{item}.conditions.applications.includeApplications"),
                "the policy must include applications: application ids, `All` or `None`",
            ));
        }
        if c.include_all {
            self.all_apps.set(index);
        }
        for &a in &include {
            set_at(&mut self.app_sets, a).include.set(index);
        }
        for &a in &exclude {
            set_at(&mut self.app_sets, a).exclude.set(index);
        }
        c.include = include.into_boxed_slice();
        c.exclude = exclude.into_boxed_slice();
        Ok(c)
    }

    fn grant(
        &mut self,
        item: &Item<'_>,
        policy: &ConditionalAccessPolicy,
    ) -> Result<(bool, u128, GrantOperator, Controls), ConfigError> {
        let Some(g) = &policy.grant_controls else {
            return Ok((false, 0, GrantOperator::And, Controls::default()));
        };
        let at = |field: &str| format!("{item}.grantControls.{field}");
        if g.built_in_controls.is_empty() && g.terms_of_use.is_empty() {
            return Err(invalid(
                at("builtInControls"),
                "must list at least one control (or leave grantControls out)",
            ));
        }
        let mut block = false;
        let mut mask = 0u128;
        let mut controls = Controls::default();
        for (j, c) in g.built_in_controls.iter().enumerate() {
            match c {
                BuiltInControl::Block => {
                    if g.built_in_controls.iter().any(|o| *o != BuiltInControl::Block)
                        || !g.terms_of_use.is_empty()
                    {
                        return Err(invalid(
                            format_args!("{item}.grantControls.builtInControls[{j}]"),
                            "`block` cannot be combined with other controls",
                        ));
                    }
                    block = true;
                }
                BuiltInControl::Mfa => {
                    mask |= MFA;
                    controls.mfa = true;
                }
                BuiltInControl::CompliantDevice => {
                    mask |= COMPLIANT_DEVICE;
                    controls.compliant_device = true;
                }
                BuiltInControl::DomainJoinedDevice => {
                    mask |= DOMAIN_JOINED_DEVICE;
                    controls.domain_joined_device = true;
                }
            }
        }
        for (j, t) in g.terms_of_use.iter().enumerate() {
            check_id(t).map_err(|r| invalid(format_args!("{item}.grantControls.termsOfUse[{j}]"), r))?;
            let n = self.agreements.intern(t);
            if n as usize >= MAX_AGREEMENTS {
                return Err(invalid(
                    format_args!("{item}.grantControls.termsOfUse[{j}]"),
                    format!("more than {MAX_AGREEMENTS} distinct terms of use in the set"),
                ));
            }
            let bit = 1u128 << (TERMS_SHIFT + n);
            if mask & bit == 0 {
                mask |= bit;
                controls.terms_of_use.push(self.agreements.name(n));
            }
        }
        let distinct = mask.count_ones() + u32::from(block);
        let operator = match g.operator {
            Some(op) => op,
            None if distinct > 1 => {
                return Err(invalid(
                    at("operator"),
                    "`AND` or `OR` is required when more than one control is listed",
                ));
            }
            None => GrantOperator::And,
        };
        Ok((block, mask, operator, controls))
    }
}

fn push_unique(list: &mut Vec<u32>, id: u32) {
    if !list.contains(&id) {
        list.push(id);
    }
}

fn dead_include(path: String, value: &str, exclude: &str) -> ConfigError {
    invalid(
        path,
        format!(
            "`{}` is also in {exclude}, which wins: this include can never apply",
            quote(value)
        ),
    )
}

type Locations<'a> = (Vec<CompiledLocation>, IdMap<&'a str, u32>, IpRanges);

/// The named locations, their index by id, and the union of the trusted
/// ones' ranges.
fn compile_locations(named: &[NamedLocation]) -> Result<Locations<'_>, ConfigError> {
    let mut out = Vec::with_capacity(named.len());
    let mut trusted = Vec::new();
    let mut ids: IdMap<&str, u32> = IdMap::default();
    let mut names: IdMap<String, usize> = IdMap::default();
    for (index, l) in named.iter().enumerate() {
        check_name(&l.display_name)
            .map_err(|r| invalid(format!("namedLocations[{index}].displayName"), r))?;
        let item = Item {
            list: "namedLocations",
            index,
            name: &l.display_name,
        };
        check_id(&l.id).map_err(|r| invalid(format_args!("{item}.id"), r))?;
        if matches!(keyword(&l.id), Some(Keyword::All | Keyword::AllTrusted)) {
            return Err(invalid(
                format_args!("{item}.id"),
                format!("`{}` is a keyword of includeLocations", quote(&l.id)),
            ));
        }
        let n = u32::try_from(index).unwrap_or(u32::MAX);
        if let Some(other) = ids.insert(&l.id, n) {
            return Err(invalid(
                format_args!("{item}.id"),
                format!("namedLocations[{other}] has the same id `{}`", quote(&l.id)),
            ));
        }
        if let Some(other) = names.insert(l.display_name.to_lowercase(), index) {
            return Err(invalid(
                format_args!("{item}.displayName"),
                format!("namedLocations[{other}] has the same display name"),
            ));
        }
        if l.ip_ranges.is_empty() {
            return Err(invalid(
                format_args!("{item}.ipRanges"),
                "must list at least one range",
            ));
        }
        if l.ip_ranges.len() > MAX_IP_RANGES_PER_LOCATION {
            return Err(invalid(
                format_args!("{item}.ipRanges"),
                format!("more than {MAX_IP_RANGES_PER_LOCATION} entries"),
            ));
        }
        let mut ranges = Vec::with_capacity(l.ip_ranges.len());
        for (j, r) in l.ip_ranges.iter().enumerate() {
            ranges
                .push(parse_cidr(r).map_err(|reason| invalid(format_args!("{item}.ipRanges[{j}]"), reason))?);
        }
        if l.is_trusted {
            trusted.extend_from_slice(&ranges);
        }
        out.push(CompiledLocation {
            id: Arc::from(l.id.as_str()),
            name: Arc::from(l.display_name.as_str()),
            trusted: l.is_trusted,
            ranges: IpRanges::new(ranges),
        });
    }
    Ok((out, ids, IpRanges::new(trusted)))
}

fn location_condition(
    item: &Item<'_>,
    l: &super::model::Locations,
    locations: &[CompiledLocation],
    ids: &IdMap<&str, u32>,
) -> Result<LocationCondition, ConfigError> {
    let at = |field: &str, j: usize| format!("{item}.conditions.locations.{field}[{j}]");
    let mut c = LocationCondition::default();
    let resolve = |field: &str, j: usize, v: &str| {
        ids.get(v)
            .copied()
            .ok_or_else(|| invalid(at(field, j), format!("no named location has id `{}`", quote(v))))
    };
    let mut exclude = Vec::new();
    for (j, v) in l.exclude_locations.iter().enumerate() {
        match keyword(v) {
            Some(Keyword::All) => {
                return Err(invalid(
                    at("excludeLocations", j),
                    "excluding `All` leaves no location the policy could apply to",
                ));
            }
            Some(Keyword::AllTrusted) => c.exclude_trusted = true,
            _ => push_unique(&mut exclude, resolve("excludeLocations", j, v)?),
        }
    }
    if l.include_locations.is_empty() {
        return Err(invalid(
            format_args!("{item}.conditions.locations.includeLocations"),
            "must list at least one location (`All` for any); leave locations out to ignore the location",
        ));
    }
    let mut include = Vec::new();
    for (j, v) in l.include_locations.iter().enumerate() {
        match keyword(v) {
            Some(Keyword::All) => c.include_all = true,
            Some(Keyword::AllTrusted) => {
                if c.exclude_trusted {
                    return Err(dead_include(at("includeLocations", j), v, "excludeLocations"));
                }
                c.include_trusted = true;
            }
            _ => {
                let n = resolve("includeLocations", j, v)?;
                if exclude.contains(&n) {
                    return Err(dead_include(at("includeLocations", j), v, "excludeLocations"));
                }
                if c.exclude_trusted && locations.get(n as usize).is_some_and(|loc| loc.trusted) {
                    return Err(invalid(
                        at("includeLocations", j),
                        format!(
                            "`{}` is trusted and excludeLocations has `AllTrusted`, which wins: \
                             this include can never apply",
                            quote(v)
                        ),
                    ));
                }
                push_unique(&mut include, n);
            }
        }
    }
    c.include = include.into_boxed_slice();
    c.exclude = exclude.into_boxed_slice();
    Ok(c)
}

fn sign_in_frequency(item: &Item<'_>, f: &SignInFrequency) -> Result<Duration, ConfigError> {
    let at = |field: &str| format!("{item}.sessionControls.signInFrequency.{field}");
    match f.frequency_interval {
        Some(FrequencyInterval::EveryTime) => {
            if f.value.is_some() || f.frequency_type.is_some() {
                return Err(invalid(
                    at("value"),
                    "`value` and `type` must be left out with frequencyInterval `everyTime`",
                ));
            }
            Ok(Duration::ZERO)
        }
        Some(FrequencyInterval::TimeBased) | None => {
            let value = f
                .value
                .ok_or_else(|| invalid(at("value"), "is required for a time-based sign-in frequency"))?;
            let unit = f
                .frequency_type
                .ok_or_else(|| invalid(at("type"), "`hours` or `days` is required"))?;
            match unit {
                SignInFrequencyType::Hours if (1..=23).contains(&value) => {
                    Ok(Duration::hours(i64::from(value)))
                }
                SignInFrequencyType::Days if (1..=365).contains(&value) => {
                    Ok(Duration::days(i64::from(value)))
                }
                SignInFrequencyType::Hours => Err(invalid(at("value"), "hours must be 1 to 23 (use days)")),
                SignInFrequencyType::Days => Err(invalid(at("value"), "days must be 1 to 365")),
            }
        }
    }
}
