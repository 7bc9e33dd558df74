//! Evaluating a sign-in against [`CompiledPolicies`]: the sign-in, what it
//! satisfies, and the decision.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use time::Duration;

use super::bits::Bits;
use super::compile::{
    COMPLIANT_DEVICE, CompiledPolicies, CompiledPolicy, DOMAIN_JOINED_DEVICE, LocationCondition, MFA,
    TERMS_SHIFT,
};
use super::model::{GrantOperator, GuestOrExternalUserType};

/// Who is signing in, as conditional access sees them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum UserKind {
    /// A member of this directory.
    Member,
    /// A local guest (`internalGuest`).
    InternalGuest,
    /// A B2B collaboration guest (`b2bCollaborationGuest`).
    B2bCollaborationGuest,
    /// A B2B collaboration member (`b2bCollaborationMember`).
    B2bCollaborationMember,
    /// A B2B direct connect user (`b2bDirectConnectUser`).
    B2bDirectConnectUser,
    /// Another external user (`otherExternalUser`).
    OtherExternalUser,
    /// A service provider's user (`serviceProvider`).
    ServiceProvider,
}

impl UserKind {
    pub(super) const COUNT: usize = 7;
    pub(super) const ALL: [UserKind; Self::COUNT] = [
        UserKind::Member,
        UserKind::InternalGuest,
        UserKind::B2bCollaborationGuest,
        UserKind::B2bCollaborationMember,
        UserKind::B2bDirectConnectUser,
        UserKind::OtherExternalUser,
        UserKind::ServiceProvider,
    ];
    /// Every guest-or-external bit.
    pub(super) const ALL_GUEST_BITS: u8 = 0b0011_1111;

    /// The guest or external user type, or `None` for a member.
    pub fn guest_type(self) -> Option<GuestOrExternalUserType> {
        match self {
            UserKind::Member => None,
            UserKind::InternalGuest => Some(GuestOrExternalUserType::InternalGuest),
            UserKind::B2bCollaborationGuest => Some(GuestOrExternalUserType::B2bCollaborationGuest),
            UserKind::B2bCollaborationMember => Some(GuestOrExternalUserType::B2bCollaborationMember),
            UserKind::B2bDirectConnectUser => Some(GuestOrExternalUserType::B2bDirectConnectUser),
            UserKind::OtherExternalUser => Some(GuestOrExternalUserType::OtherExternalUser),
            UserKind::ServiceProvider => Some(GuestOrExternalUserType::ServiceProvider),
        }
    }

    pub(super) fn index(self) -> usize {
        self as usize
    }

    /// One bit per guest type (0 for a member).
    pub(super) fn guest_bit(self) -> u8 {
        match self {
            UserKind::Member => 0,
            other => 1 << (other as u8 - 1),
        }
    }
}

impl From<GuestOrExternalUserType> for UserKind {
    fn from(t: GuestOrExternalUserType) -> Self {
        match t {
            GuestOrExternalUserType::InternalGuest => UserKind::InternalGuest,
            GuestOrExternalUserType::B2bCollaborationGuest => UserKind::B2bCollaborationGuest,
            GuestOrExternalUserType::B2bCollaborationMember => UserKind::B2bCollaborationMember,
            GuestOrExternalUserType::B2bDirectConnectUser => UserKind::B2bDirectConnectUser,
            GuestOrExternalUserType::OtherExternalUser => UserKind::OtherExternalUser,
            GuestOrExternalUserType::ServiceProvider => UserKind::ServiceProvider,
        }
    }
}

/// The kind of client a sign-in comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum ClientAppType {
    /// A web browser.
    Browser,
    /// A mobile app or desktop client using modern authentication.
    MobileAppsAndDesktopClients,
    /// An Exchange ActiveSync client.
    ExchangeActiveSync,
    /// Another (legacy authentication) client.
    Other,
}

impl ClientAppType {
    pub(super) const COUNT: usize = 4;
    pub(super) const ALL: [ClientAppType; Self::COUNT] = [
        ClientAppType::Browser,
        ClientAppType::MobileAppsAndDesktopClients,
        ClientAppType::ExchangeActiveSync,
        ClientAppType::Other,
    ];
    pub(super) const ALL_BITS: u8 = 0b1111;

    pub(super) fn bit(self) -> u8 {
        1 << (self as u8)
    }

    /// The Graph spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            ClientAppType::Browser => "browser",
            ClientAppType::MobileAppsAndDesktopClients => "mobileAppsAndDesktopClients",
            ClientAppType::ExchangeActiveSync => "exchangeActiveSync",
            ClientAppType::Other => "other",
        }
    }
}

/// What a sign-in has already satisfied.
///
/// This includes what the caller trusts from the user's home organisation:
/// when the cross-tenant access settings trust the home tenant's MFA (or
/// compliant or hybrid-joined device) claims (Graph's `inboundTrust`, see
/// `CrossTenantSettings::trusted_claims_from` in this crate's `policy`
/// module) and the home tenant's token carries them, set the flag. The
/// caller computes that trust; the evaluator never looks at claims itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Satisfied<'a> {
    /// Multi-factor authentication done (here, or trusted from home).
    pub mfa: bool,
    /// The device is marked compliant (here, or trusted from home).
    pub compliant_device: bool,
    /// The device is (hybrid) domain-joined (here, or trusted from home).
    pub domain_joined_device: bool,
    /// The ids of the terms of use (agreements) the user has accepted.
    pub terms_accepted: &'a [&'a str],
}

/// One sign-in, as conditional access evaluates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignIn<'a> {
    /// The user's object id here.
    pub user_id: &'a str,
    /// The ids of the groups the user is a member of (transitively, as the
    /// caller resolves them).
    pub groups: &'a [&'a str],
    /// Member, or which kind of guest or external user.
    pub user_kind: UserKind,
    /// The user's home tenant id, for guests and external users from
    /// another organisation; `None` when there is none.
    pub home_tenant: Option<&'a str>,
    /// The application (client id) signed in to.
    pub application_id: &'a str,
    /// The kind of client.
    pub client_app: ClientAppType,
    /// The client's IP address; an IPv4-mapped IPv6 address is compared as
    /// its IPv4 address. The unspecified address (`0.0.0.0`, `::`) means
    /// unknown: it meets every location condition (in every included
    /// location, in no excluded one), so policies apply rather than not.
    pub ip: IpAddr,
    /// What the sign-in has already satisfied.
    pub satisfied: Satisfied<'a>,
}

/// A set of grant controls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct Controls {
    /// Multi-factor authentication.
    pub mfa: bool,
    /// A compliant device.
    pub compliant_device: bool,
    /// A domain-joined device.
    pub domain_joined_device: bool,
    /// Terms of use (agreement ids), in configured order.
    pub terms_of_use: Vec<Arc<str>>,
}

impl Controls {
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        !self.mfa && !self.compliant_device && !self.domain_joined_device && self.terms_of_use.is_empty()
    }

    /// The controls' Graph names (`termsOfUse` entries as
    /// `` termsOfUse `id` ``), in a fixed order.
    fn names(&self) -> impl Iterator<Item = ControlName<'_>> + '_ {
        [
            (self.mfa, "mfa"),
            (self.compliant_device, "compliantDevice"),
            (self.domain_joined_device, "domainJoinedDevice"),
        ]
        .into_iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| ControlName::BuiltIn(n))
        .chain(self.terms_of_use.iter().map(|t| ControlName::Terms(t)))
    }

    /// Whether `satisfied` meets every control (`all`) or at least one.
    fn met_by(&self, satisfied: &Satisfied<'_>, all: bool) -> bool {
        let mut results = [
            (self.mfa, satisfied.mfa),
            (self.compliant_device, satisfied.compliant_device),
            (self.domain_joined_device, satisfied.domain_joined_device),
        ]
        .into_iter()
        .filter(|(wanted, _)| *wanted)
        .map(|(_, have)| have)
        .chain(
            self.terms_of_use
                .iter()
                .map(|t| satisfied.terms_accepted.contains(&&**t)),
        );
        if all {
            results.all(|ok| ok)
        } else {
            results.any(|ok| ok)
        }
    }

    /// Writes the controls joined by `sep`.
    pub(super) fn write_joined(&self, f: &mut fmt::Formatter<'_>, sep: &str) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(sep)?;
            }
            write!(f, "{name}")?;
        }
        Ok(())
    }
}

enum ControlName<'a> {
    BuiltIn(&'static str),
    Terms(&'a str),
}

impl fmt::Display for ControlName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ControlName::BuiltIn(n) => f.write_str(n),
            ControlName::Terms(t) => write!(f, "termsOfUse `{}`", crate::flow::connector::quote(t)),
        }
    }
}

/// What a sign-in must still satisfy: every control listed here, and for
/// each entry of `one_of`, at least one of its controls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RequiredControls {
    /// Multi-factor authentication (a step-up).
    pub mfa: bool,
    /// A compliant device.
    pub compliant_device: bool,
    /// A domain-joined device.
    pub domain_joined_device: bool,
    /// Terms of use to accept, in configured order.
    pub terms_of_use: Vec<Arc<str>>,
    /// Choices from `OR` policies the sign-in does not satisfy yet: each
    /// needs any one of its controls. A choice that a control above already
    /// settles, or that another choice implies, is left out.
    pub one_of: Vec<Controls>,
}

impl RequiredControls {
    /// Whether nothing is missing.
    pub fn is_empty(&self) -> bool {
        !self.mfa
            && !self.compliant_device
            && !self.domain_joined_device
            && self.terms_of_use.is_empty()
            && self.one_of.is_empty()
    }

    /// Whether a sign-in that satisfies `satisfied` has everything required
    /// here.
    pub fn is_satisfied_by(&self, satisfied: &Satisfied<'_>) -> bool {
        self.all_of().met_by(satisfied, true) && self.one_of.iter().all(|c| c.met_by(satisfied, false))
    }

    fn all_of(&self) -> Controls {
        Controls {
            mfa: self.mfa,
            compliant_device: self.compliant_device,
            domain_joined_device: self.domain_joined_device,
            terms_of_use: self.terms_of_use.clone(),
        }
    }
}

impl fmt::Display for RequiredControls {
    /// `mfa and termsOfUse `guest-terms` and one of (compliantDevice or
    /// domainJoinedDevice)`; `nothing` when empty.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return f.write_str("nothing");
        }
        let all = self.all_of();
        all.write_joined(f, " and ")?;
        for (i, choice) in self.one_of.iter().enumerate() {
            if i > 0 || !all.is_empty() {
                f.write_str(" and ")?;
            }
            f.write_str("one of (")?;
            choice.write_joined(f, " or ")?;
            f.write_str(")")?;
        }
        Ok(())
    }
}

/// The outcome of conditional access for a sign-in.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Decision {
    /// No enforced policy asks for anything: sign in.
    Allow,
    /// An enforced policy that applies blocks the sign-in.
    Block {
        /// The display name of the first such policy in configured order.
        policy: Arc<str>,
    },
    /// Enforced policies apply and ask for controls, a session limit, or
    /// both.
    ///
    /// With `missing` empty the sign-in may proceed now (its grant controls
    /// are already satisfied) and its session must be re-authenticated
    /// within `sign_in_frequency`; otherwise it must first satisfy
    /// `missing` (a step-up, a device, terms of use).
    Require {
        /// What the sign-in still must satisfy.
        missing: RequiredControls,
        /// The strictest (shortest) sign-in frequency of the applying
        /// policies; zero means every time.
        sign_in_frequency: Option<Duration>,
    },
}

impl Decision {
    /// What is missing, when the decision requires something.
    pub fn missing(&self) -> Option<&RequiredControls> {
        match self {
            Decision::Require { missing, .. } => Some(missing),
            _ => None,
        }
    }

    /// The sign-in frequency of the decision, if any.
    pub fn sign_in_frequency(&self) -> Option<Duration> {
        match self {
            Decision::Require {
                sign_in_frequency, ..
            } => *sign_in_frequency,
            _ => None,
        }
    }

    /// Whether the sign-in may proceed as it is: [`Decision::Allow`], or
    /// [`Decision::Require`] with nothing missing (a session limit only).
    pub fn allows_sign_in(&self) -> bool {
        match self {
            Decision::Allow => true,
            Decision::Block { .. } => false,
            Decision::Require { missing, .. } => missing.is_empty(),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Decision::Allow => f.write_str("allow"),
            Decision::Block { policy } => write!(f, "block (by `{}`)", crate::flow::connector::quote(policy)),
            Decision::Require {
                missing,
                sign_in_frequency,
            } => {
                write!(f, "require {missing}")?;
                if let Some(d) = sign_in_frequency {
                    write!(f, "; sign in again {}", Frequency(*d))?;
                }
                Ok(())
            }
        }
    }
}

/// A sign-in frequency for display: `every time`, `after 4 hours`.
pub(super) struct Frequency(pub(super) Duration);

impl fmt::Display for Frequency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0.whole_seconds();
        if secs <= 0 {
            f.write_str("every time")
        } else if secs % 86_400 == 0 {
            let d = secs / 86_400;
            write!(f, "after {d} day{}", if d == 1 { "" } else { "s" })
        } else if secs % 3600 == 0 {
            let h = secs / 3600;
            write!(f, "after {h} hour{}", if h == 1 { "" } else { "s" })
        } else {
            write!(f, "after {secs} seconds")
        }
    }
}

/// Where a location condition stands for an address.
pub(super) enum LocationVerdict {
    Applies,
    NotIncluded,
    ExcludedTrusted,
    Excluded(u32),
}

/// Combines the grant and session controls of the enforced policies that
/// apply (blocking ones are decided before).
#[derive(Default)]
pub(super) struct Accumulator {
    all: u128,
    choices: Vec<u128>,
    frequency: Option<Duration>,
}

impl Accumulator {
    pub(super) fn add(&mut self, p: &CompiledPolicy, satisfied: u128) {
        if let Some(f) = p.sign_in_frequency {
            self.frequency = Some(self.frequency.map_or(f, |g| g.min(f)));
        }
        let m = p.grant_mask;
        if m == 0 {
            return;
        }
        match p.operator {
            GrantOperator::And => self.all |= m & !satisfied,
            GrantOperator::Or if m & satisfied != 0 => {}
            GrantOperator::Or if m.count_ones() == 1 => self.all |= m,
            GrantOperator::Or => self.choices.push(m),
        }
    }

    pub(super) fn finish(self, set: &CompiledPolicies) -> Decision {
        let all = self.all;
        // Drop choices a required control settles, repeated ones, and those
        // another choice implies (a subset of them), in place.
        let mut choices = self.choices;
        choices.retain(|c| c & all == 0);
        let mut i = 0;
        while i < choices.len() {
            let c = choices[i];
            let implied = choices
                .iter()
                .enumerate()
                .any(|(j, &d)| j != i && d & !c == 0 && (d != c || j < i));
            if implied {
                choices.remove(i);
            } else {
                i += 1;
            }
        }
        if all == 0 && choices.is_empty() && self.frequency.is_none() {
            return Decision::Allow;
        }
        let flat = set.controls_of(all);
        Decision::Require {
            missing: RequiredControls {
                mfa: flat.mfa,
                compliant_device: flat.compliant_device,
                domain_joined_device: flat.domain_joined_device,
                terms_of_use: flat.terms_of_use,
                one_of: choices.into_iter().map(|m| set.controls_of(m)).collect(),
            },
            sign_in_frequency: self.frequency,
        }
    }
}

impl CompiledPolicies {
    /// Decides a sign-in.
    ///
    /// Only the policies whose application condition and client app type
    /// can match are looked at; no allocation happens unless the decision
    /// itself needs one (terms of use or choices to list).
    pub fn evaluate(&self, signin: &SignIn<'_>) -> Decision {
        let mut apps = self.all_apps;
        let mut excluded_apps = Bits::default();
        if let Some(set) = self
            .apps
            .get(signin.application_id)
            .and_then(|a| self.app_sets.get(a as usize))
        {
            apps.union(&set.include);
            excluded_apps = set.exclude;
        }
        let client = self
            .client_sets
            .get(signin.client_app as usize)
            .copied()
            .unwrap_or_default();
        let candidates = self.enforced.and(&apps).and_not(&excluded_apps).and(&client);
        if candidates.is_empty() {
            return Decision::Allow;
        }
        let mut applied = candidates.and(&self.user_bits(signin));
        for p in applied.and(&self.located).iter() {
            let keep = self
                .policies
                .get(p)
                .and_then(|policy| policy.locations.as_ref())
                .is_none_or(|l| matches!(self.location_verdict(l, signin.ip), LocationVerdict::Applies));
            if !keep {
                applied.remove(p);
            }
        }
        if let Some(p) = applied
            .and(&self.blocking)
            .first()
            .and_then(|p| self.policies.get(p))
        {
            return Decision::Block {
                policy: p.name.clone(),
            };
        }
        let satisfied = self.satisfied_mask(&signin.satisfied);
        let mut acc = Accumulator::default();
        for p in applied.iter().filter_map(|p| self.policies.get(p)) {
            acc.add(p, satisfied);
        }
        acc.finish(self)
    }

    /// The policies whose users condition holds for the sign-in.
    fn user_bits(&self, signin: &SignIn<'_>) -> Bits {
        let mut include = self.all_users;
        let mut exclude = Bits::default();
        if !self.user_sets.is_empty()
            && let Some(set) = self
                .users
                .get(signin.user_id)
                .and_then(|u| self.user_sets.get(u as usize))
        {
            include.union(&set.include);
            exclude.union(&set.exclude);
        }
        if !self.group_sets.is_empty() {
            for g in signin.groups {
                if let Some(set) = self.groups.get(g).and_then(|g| self.group_sets.get(g as usize)) {
                    include.union(&set.include);
                    exclude.union(&set.exclude);
                }
            }
        }
        if let Some(set) = self.kind_sets.get(signin.user_kind.index()) {
            include.union(&set.include);
            exclude.union(&set.exclude);
        }
        let bit = signin.user_kind.guest_bit();
        if bit != 0 && !self.tenant_rules.is_empty() {
            let rules = signin
                .home_tenant
                .and_then(|t| self.tenants.get(t))
                .and_then(|t| self.tenant_rules.get(t as usize));
            for rule in rules.into_iter().flatten() {
                if rule.kinds & bit != 0 {
                    if rule.exclude {
                        exclude.set(usize::from(rule.policy));
                    } else {
                        include.set(usize::from(rule.policy));
                    }
                }
            }
        }
        include.and_not(&exclude)
    }

    pub(super) fn location_verdict(&self, l: &LocationCondition, ip: IpAddr) -> LocationVerdict {
        // An unknown address (unspecified) is in every included location
        // and in no excluded one: a location condition can only make a
        // policy apply, never let a sign-in of unknown origin through.
        if ip.is_unspecified() || ip.to_canonical().is_unspecified() {
            return LocationVerdict::Applies;
        }
        let in_trusted = || self.trusted.contains(ip);
        if l.exclude_trusted && in_trusted() {
            return LocationVerdict::ExcludedTrusted;
        }
        for &n in l.exclude.iter() {
            if self
                .locations
                .get(n as usize)
                .is_some_and(|loc| loc.ranges.contains(ip))
            {
                return LocationVerdict::Excluded(n);
            }
        }
        let included = l.include_all
            || (l.include_trusted && in_trusted())
            || l.include.iter().any(|&n| {
                self.locations
                    .get(n as usize)
                    .is_some_and(|loc| loc.ranges.contains(ip))
            });
        if included {
            LocationVerdict::Applies
        } else {
            LocationVerdict::NotIncluded
        }
    }

    /// The control mask of what `satisfied` has.
    pub(super) fn satisfied_mask(&self, satisfied: &Satisfied<'_>) -> u128 {
        let mut mask = 0;
        if satisfied.mfa {
            mask |= MFA;
        }
        if satisfied.compliant_device {
            mask |= COMPLIANT_DEVICE;
        }
        if satisfied.domain_joined_device {
            mask |= DOMAIN_JOINED_DEVICE;
        }
        if self.agreements.len() != 0 {
            for t in satisfied.terms_accepted {
                if let Some(n) = self.agreements.get(t) {
                    mask |= 1u128 << (TERMS_SHIFT + n);
                }
            }
        }
        mask
    }

    /// The controls of a mask.
    pub(super) fn controls_of(&self, mask: u128) -> Controls {
        let mut terms = mask >> TERMS_SHIFT;
        let mut terms_of_use = Vec::new();
        while terms != 0 {
            let n = terms.trailing_zeros();
            terms &= terms - 1;
            terms_of_use.push(self.agreements.name(n));
        }
        Controls {
            mfa: mask & MFA != 0,
            compliant_device: mask & COMPLIANT_DEVICE != 0,
            domain_joined_device: mask & DOMAIN_JOINED_DEVICE != 0,
            terms_of_use,
        }
    }
}
