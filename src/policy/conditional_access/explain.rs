//! The What-If: for every policy, whether it applied to a sign-in and what
//! it asked, or the first condition it did not meet.

use std::fmt;

use time::Duration;

use super::compile::{CompiledPolicies, CompiledPolicy, GuestRule};
use super::evaluate::{Accumulator, ClientAppType, Controls, Decision, Frequency, LocationVerdict, SignIn};
use super::model::{GrantOperator, GuestOrExternalUserType, PolicyState};
use crate::flow::connector::quote;

/// What a policy demands when it applies.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyControls {
    /// It blocks.
    pub block: bool,
    /// How `grant` combines.
    pub operator: GrantOperator,
    /// Its grant controls (empty for a block or a session-only policy).
    pub grant: Controls,
    /// Its sign-in frequency, if enabled.
    pub sign_in_frequency: Option<Duration>,
}

impl fmt::Display for PolicyControls {
    /// `block`, `mfa AND compliantDevice`, `mfa; sign in again after 4 hours`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut wrote = false;
        if self.block {
            f.write_str("block")?;
            wrote = true;
        } else if !self.grant.is_empty() {
            let sep = match self.operator {
                GrantOperator::And => " AND ",
                GrantOperator::Or => " OR ",
            };
            self.grant.write_joined(f, sep)?;
            wrote = true;
        }
        if let Some(d) = self.sign_in_frequency {
            if wrote {
                f.write_str("; ")?;
            }
            write!(f, "sign in again {}", Frequency(d))?;
        }
        Ok(())
    }
}

/// The exclude that decided the users condition against the sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserRule<'a> {
    /// The user's id is in `excludeUsers`.
    User(&'a str),
    /// `excludeUsers` has `GuestsOrExternalUsers` and the user is not a
    /// member.
    GuestsOrExternalUsers,
    /// The user is in this group of `excludeGroups`.
    Group(&'a str),
    /// `excludeGuestsOrExternalUsers` lists the user's type (and tenant).
    GuestOrExternalUserType(GuestOrExternalUserType),
}

impl fmt::Display for UserRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UserRule::User(id) => write!(f, "excludeUsers `{}`", quote(id)),
            UserRule::GuestsOrExternalUsers => f.write_str("excludeUsers `GuestsOrExternalUsers`"),
            UserRule::Group(id) => write!(f, "excludeGroups `{}`", quote(id)),
            UserRule::GuestOrExternalUserType(t) => write!(f, "excludeGuestsOrExternalUsers (`{t}`)"),
        }
    }
}

/// The exclude that decided the locations condition against the sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LocationRule<'a> {
    /// `excludeLocations` has `AllTrusted` and the address is in a trusted
    /// named location.
    AllTrusted,
    /// The address is in this excluded named location.
    Named {
        /// Its id.
        id: &'a str,
        /// Its display name.
        display_name: &'a str,
    },
}

impl fmt::Display for LocationRule<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LocationRule::AllTrusted => f.write_str("`AllTrusted`"),
            LocationRule::Named { id, display_name } => {
                write!(f, "`{}` (`{}`)", quote(display_name), quote(id))
            }
        }
    }
}

/// Why a policy did not apply: the first unmet condition, checked in this
/// order: state, users, applications, client app types, locations. Within
/// users, `includeUsers` `None` comes first, then the excludes (an exclude
/// wins: `excludeUsers`, `excludeGroups` in configured order,
/// `excludeGuestsOrExternalUsers`), then the includes; within applications
/// and locations likewise `None`, excludes, includes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum NotApplied<'a> {
    /// The policy's state is `disabled`.
    Disabled,
    /// `includeUsers` is `None`.
    UsersNone,
    /// An exclude matches the user.
    UserExcluded(UserRule<'a>),
    /// No include matches the user.
    UserNotIncluded,
    /// `includeApplications` is `None`.
    ApplicationsNone,
    /// The application is in `excludeApplications`.
    ApplicationExcluded {
        /// The application id.
        application: &'a str,
    },
    /// The application is not in `includeApplications`.
    ApplicationNotIncluded,
    /// `clientAppTypes` does not have the sign-in's client.
    ClientAppNotIncluded {
        /// The sign-in's client.
        client_app: ClientAppType,
    },
    /// An excluded location has the address.
    LocationExcluded(LocationRule<'a>),
    /// No included location has the address.
    LocationNotIncluded,
}

impl NotApplied<'_> {
    /// The condition, as the policy's JSON names it: `state`, `users`,
    /// `applications`, `clientAppTypes` or `locations`.
    pub fn condition(&self) -> &'static str {
        match self {
            NotApplied::Disabled => "state",
            NotApplied::UsersNone | NotApplied::UserExcluded(_) | NotApplied::UserNotIncluded => "users",
            NotApplied::ApplicationsNone
            | NotApplied::ApplicationExcluded { .. }
            | NotApplied::ApplicationNotIncluded => "applications",
            NotApplied::ClientAppNotIncluded { .. } => "clientAppTypes",
            NotApplied::LocationExcluded(_) | NotApplied::LocationNotIncluded => "locations",
        }
    }
}

impl fmt::Display for NotApplied<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: ", self.condition())?;
        match self {
            NotApplied::Disabled => f.write_str("the policy is disabled"),
            NotApplied::UsersNone => f.write_str("includeUsers is `None`"),
            NotApplied::UserExcluded(rule) => write!(f, "the user is excluded by {rule}"),
            NotApplied::UserNotIncluded => f.write_str(
                "the user is in none of includeUsers, includeGroups and includeGuestsOrExternalUsers",
            ),
            NotApplied::ApplicationsNone => f.write_str("includeApplications is `None`"),
            NotApplied::ApplicationExcluded { application } => {
                write!(f, "`{}` is in excludeApplications", quote(application))
            }
            NotApplied::ApplicationNotIncluded => {
                f.write_str("the application is not in includeApplications")
            }
            NotApplied::ClientAppNotIncluded { client_app } => {
                write!(f, "`{}` is not in clientAppTypes", client_app.as_str())
            }
            NotApplied::LocationExcluded(rule) => write!(f, "the IP address is in excluded location {rule}"),
            NotApplied::LocationNotIncluded => f.write_str("the IP address is in none of includeLocations"),
        }
    }
}

/// What one policy did with the sign-in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyOutcome<'a> {
    /// Every condition held.
    Applied {
        /// What the policy demands.
        controls: &'a PolicyControls,
        /// Whether the sign-in already satisfies its grant controls (never
        /// for a block; always for a session-only policy).
        satisfied: bool,
        /// Whether the policy is report-only: it did not change the
        /// decision, this is what it would have done.
        report_only: bool,
    },
    /// A condition did not hold.
    NotApplied {
        /// The first unmet condition.
        reason: NotApplied<'a>,
    },
}

/// One policy's line of an [`Explanation`], borrowing from the
/// [`CompiledPolicies`] it explains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyResult<'a> {
    /// The policy's display name.
    pub policy: &'a str,
    /// The policy's id, if it has one.
    pub id: Option<&'a str>,
    /// The policy's state.
    pub state: PolicyState,
    /// Applied, or why not.
    pub outcome: PolicyOutcome<'a>,
}

impl fmt::Display for PolicyResult<'_> {
    /// `` `Require MFA`: applied: mfa; satisfied ``,
    /// `` `Block legacy` (report-only): applied: would block ``,
    /// `` `Require MFA`: not applied: users: ... ``.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`", quote(self.policy))?;
        if self.state == PolicyState::EnabledForReportingButNotEnforced {
            f.write_str(" (report-only)")?;
        }
        match &self.outcome {
            PolicyOutcome::NotApplied { reason } => write!(f, ": not applied: {reason}"),
            PolicyOutcome::Applied {
                controls,
                satisfied,
                report_only,
            } => {
                f.write_str(": applied: ")?;
                if *report_only {
                    f.write_str("would ")?;
                    if controls.block {
                        return f.write_str("block");
                    }
                    f.write_str("require ")?;
                } else if controls.block {
                    return f.write_str("block");
                }
                write!(f, "{controls}; ")?;
                f.write_str(if *satisfied { "satisfied" } else { "not satisfied" })
            }
        }
    }
}

/// The What-If of a sign-in: the decision, and every policy of the set in
/// configured order (disabled ones too). It borrows names and controls from
/// the [`CompiledPolicies`] that made it; [`to_string`](ToString::to_string)
/// it to keep the text.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Explanation<'a> {
    /// The decision, as [`CompiledPolicies::evaluate`] returns it.
    pub decision: Decision,
    /// One result per policy, in configured order.
    pub policies: Vec<PolicyResult<'a>>,
}

impl fmt::Display for Explanation<'_> {
    /// `decision: ...` then one line per policy.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "decision: {}", self.decision)?;
        for p in &self.policies {
            write!(f, "\n- {p}")?;
        }
        Ok(())
    }
}

/// A sign-in's ids, interned once per explanation.
struct Interned {
    user: Option<u32>,
    /// Sorted, for binary search.
    groups: Vec<u32>,
    tenant: Option<u32>,
    app: Option<u32>,
    kind_bit: u8,
}

impl CompiledPolicies {
    /// Explains a sign-in: the same decision as [`evaluate`](Self::evaluate),
    /// and for every policy whether it applied, with what it demands and
    /// whether the sign-in satisfies it, or the first condition it did not
    /// meet (see [`NotApplied`]). Report-only policies are explained as if
    /// enforced, marked `report_only`, and never change the decision.
    ///
    /// This walks every policy condition by condition, independently of the
    /// indexes `evaluate` uses; it allocates the result and one list of the
    /// sign-in's groups.
    pub fn explain(&self, signin: &SignIn<'_>) -> Explanation<'_> {
        let mut groups: Vec<u32> = signin.groups.iter().filter_map(|g| self.groups.get(g)).collect();
        groups.sort_unstable();
        let ids = Interned {
            user: self.users.get(signin.user_id),
            groups,
            tenant: signin.home_tenant.and_then(|t| self.tenants.get(t)),
            app: self.apps.get(signin.application_id),
            kind_bit: signin.user_kind.guest_bit(),
        };
        let satisfied = self.satisfied_mask(&signin.satisfied);
        let mut acc = Accumulator::default();
        let mut block: Option<&CompiledPolicy> = None;
        let mut policies = Vec::with_capacity(self.policies.len());
        for p in self.policies.iter() {
            let outcome = match self.first_unmet(p, &ids, signin) {
                Some(reason) => PolicyOutcome::NotApplied { reason },
                None => {
                    let report_only = p.state == PolicyState::EnabledForReportingButNotEnforced;
                    if !report_only {
                        if p.block {
                            block.get_or_insert(p);
                        } else {
                            acc.add(p, satisfied);
                        }
                    }
                    PolicyOutcome::Applied {
                        controls: &p.controls,
                        satisfied: !p.block && grant_met(p, satisfied),
                        report_only,
                    }
                }
            };
            policies.push(PolicyResult {
                policy: &p.name,
                id: p.id.as_deref(),
                state: p.state,
                outcome,
            });
        }
        let decision = match block {
            Some(p) => Decision::Block {
                policy: p.name.clone(),
            },
            None => acc.finish(self),
        };
        Explanation { decision, policies }
    }

    fn first_unmet<'a>(
        &'a self,
        p: &'a CompiledPolicy,
        ids: &Interned,
        signin: &SignIn<'_>,
    ) -> Option<NotApplied<'a>> {
        if p.state == PolicyState::Disabled {
            return Some(NotApplied::Disabled);
        }
        if let Some(reason) = self.users_unmet(p, ids, signin) {
            return Some(reason);
        }
        let a = &p.apps;
        if a.include_none {
            return Some(NotApplied::ApplicationsNone);
        }
        if let Some(app) = ids.app.filter(|app| a.exclude.contains(app)) {
            return Some(NotApplied::ApplicationExcluded {
                application: self.apps.name_str(app),
            });
        }
        if !a.include_all && !ids.app.is_some_and(|app| a.include.contains(&app)) {
            return Some(NotApplied::ApplicationNotIncluded);
        }
        if p.client_apps & signin.client_app.bit() == 0 {
            return Some(NotApplied::ClientAppNotIncluded {
                client_app: signin.client_app,
            });
        }
        let l = p.locations.as_ref()?;
        match self.location_verdict(l, signin.ip) {
            LocationVerdict::Applies => None,
            LocationVerdict::NotIncluded => Some(NotApplied::LocationNotIncluded),
            LocationVerdict::ExcludedTrusted => Some(NotApplied::LocationExcluded(LocationRule::AllTrusted)),
            LocationVerdict::Excluded(n) => {
                let loc = self.locations.get(n as usize)?;
                Some(NotApplied::LocationExcluded(LocationRule::Named {
                    id: &loc.id,
                    display_name: &loc.name,
                }))
            }
        }
    }

    fn users_unmet<'a>(
        &'a self,
        p: &CompiledPolicy,
        ids: &Interned,
        signin: &SignIn<'_>,
    ) -> Option<NotApplied<'a>> {
        let u = &p.users;
        if u.include_none {
            return Some(NotApplied::UsersNone);
        }
        if let Some(user) = ids.user.filter(|user| u.exclude_users.contains(user)) {
            return Some(NotApplied::UserExcluded(UserRule::User(
                self.users.name_str(user),
            )));
        }
        if u.exclude_guests_keyword && ids.kind_bit != 0 {
            return Some(NotApplied::UserExcluded(UserRule::GuestsOrExternalUsers));
        }
        if let Some(&g) = u
            .exclude_groups
            .iter()
            .find(|g| ids.groups.binary_search(g).is_ok())
        {
            return Some(NotApplied::UserExcluded(UserRule::Group(self.groups.name_str(g))));
        }
        if let Some(rule) = &u.exclude_guests
            && rule.matches(ids.kind_bit, ids.tenant)
            && let Some(t) = signin.user_kind.guest_type()
        {
            return Some(NotApplied::UserExcluded(UserRule::GuestOrExternalUserType(t)));
        }
        let included = u.include_all
            || (u.include_guests_keyword && ids.kind_bit != 0)
            || ids.user.is_some_and(|user| u.include_users.contains(&user))
            || u.include_groups
                .iter()
                .any(|g| ids.groups.binary_search(g).is_ok())
            || u.include_guests
                .as_ref()
                .is_some_and(|r: &GuestRule| r.matches(ids.kind_bit, ids.tenant));
        if included {
            None
        } else {
            Some(NotApplied::UserNotIncluded)
        }
    }
}

/// Whether `satisfied` meets the policy's grant controls (a policy without
/// any is met).
fn grant_met(p: &CompiledPolicy, satisfied: u128) -> bool {
    let m = p.grant_mask;
    m == 0
        || match p.operator {
            GrantOperator::And => m & !satisfied == 0,
            GrantOperator::Or => m & satisfied != 0,
        }
}
