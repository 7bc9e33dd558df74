//! Conditional access: which sign-ins must prove more (multi-factor
//! authentication, a compliant or domain-joined device, accepted terms of
//! use), which are blocked, and why, after Microsoft Graph's
//! `conditionalAccessPolicy`.
//!
//! A [`PolicySet`] is the configuration: named IP locations and policies,
//! loaded from Graph-shaped JSON ([`PolicySet::from_json`]) or TOML
//! ([`PolicySet::from_toml`]), or built in code. [`PolicySet::compile`]
//! validates it as a whole and indexes it into [`CompiledPolicies`], which
//! answers for one [`SignIn`] with a [`Decision`]
//! ([`CompiledPolicies::evaluate`]) or with the decision and, for every
//! policy, whether it applied and if not the first condition it did not
//! meet ([`CompiledPolicies::explain`], Entra's What-If). Both are pure
//! functions of the compiled set and the sign-in: no clock, no I/O, the same
//! answer every time.
//!
//! # Evaluation
//!
//! A policy *applies* to a sign-in when its state is `enabled` (or
//! `enabledForReportingButNotEnforced`, report-only) and every condition
//! holds, checked in this fixed order (the order [`NotApplied`] reports the
//! first unmet one in):
//!
//! 1. **state**: `disabled` policies never apply;
//! 2. **users**: the user matches an include (`includeUsers` with `All`,
//!    `GuestsOrExternalUsers` or the user's id, `includeGroups`,
//!    `includeGuestsOrExternalUsers`) and no exclude; an exclude always wins;
//! 3. **applications**: `includeApplications` has `All` or the application,
//!    and `excludeApplications` does not have it;
//! 4. **client apps**: `clientAppTypes` has `all` or the sign-in's client;
//! 5. **locations** (when configured): the IP address is in an included
//!    location (`All`, `AllTrusted`, or a named location's ranges) and in no
//!    excluded one; an unknown address (the unspecified `0.0.0.0` or `::`)
//!    meets every location condition, so a policy applies to it rather
//!    than not.
//!
//! Of the enforced (`enabled`) policies that apply, a `block` control wins
//! over everything ([`Decision::Block`] names the first such policy in
//! configured order). Otherwise the grant controls of *all* of them must be
//! satisfied, each policy's `operator` (`AND`, `OR`) combining its own
//! controls; what the sign-in does not satisfy yet is
//! [`Decision::Require`]'s `missing`, and the strictest (shortest)
//! `signInFrequency` of the applying policies is its `sign_in_frequency`.
//! Report-only policies never change the decision; the explanation shows
//! what they would have done.
//!
//! [`Satisfied`] is what the sign-in has already proven, *including* the
//! claims the caller trusts from the user's home organisation (inbound
//! trust of MFA and device claims in the cross-tenant access settings): the
//! caller decides that trust and passes the result; this module never looks
//! at claims itself.
//!
//! # Limits
//!
//! A set holds at most [`MAX_POLICIES`] policies and
//! [`MAX_NAMED_LOCATIONS`] named locations of at most
//! [`MAX_IP_RANGES_PER_LOCATION`] ranges each; a condition list holds at
//! most [`MAX_CONDITION_VALUES`] values; at most [`MAX_AGREEMENTS`]
//! distinct terms of use appear in one set. A larger document is refused
//! while it is parsed, with an error, not a slow path.
//!
//! # Example
//!
//! ```
//! use guestpass::policy::conditional_access::{
//!     ClientAppType, Decision, PolicySet, Satisfied, SignIn, UserKind,
//! };
//!
//! let set = PolicySet::from_json(r#"{
//!   "namedLocations": [{"id": "hq", "displayName": "Contoso HQ", "isTrusted": true,
//!                       "ipRanges": ["203.0.113.0/24", "2001:db8::/32"]}],
//!   "policies": [{
//!     "displayName": "Require MFA for guests outside HQ",
//!     "state": "enabled",
//!     "conditions": {
//!       "users": {"includeUsers": ["GuestsOrExternalUsers"]},
//!       "applications": {"includeApplications": ["All"]},
//!       "clientAppTypes": ["all"],
//!       "locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}
//!     },
//!     "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}
//!   }]
//! }"#)?;
//! let policies = set.compile()?;
//!
//! let mut signin = SignIn {
//!     user_id: "0f4c2a9e",
//!     groups: &[],
//!     user_kind: UserKind::B2bCollaborationGuest,
//!     home_tenant: Some("fabrikam-tenant"),
//!     application_id: "woodgrove",
//!     client_app: ClientAppType::Browser,
//!     ip: "198.51.100.7".parse().unwrap(),
//!     satisfied: Satisfied::default(),
//! };
//! let decision = policies.evaluate(&signin);
//! assert!(decision.missing().is_some_and(|m| m.mfa));
//!
//! signin.ip = "203.0.113.9".parse().unwrap();
//! assert_eq!(policies.evaluate(&signin), Decision::Allow);
//! let what_if = policies.explain(&signin);
//! assert_eq!(
//!     what_if.policies[0].to_string(),
//!     "`Require MFA for guests outside HQ`: not applied: locations: \
//!      the IP address is in excluded location `AllTrusted`"
//! );
//! # Ok::<(), guestpass::error::ConfigError>(())
//! ```

mod bits;
mod compile;
mod evaluate;
mod explain;
mod model;
mod net;

pub use compile::CompiledPolicies;
pub use evaluate::{ClientAppType, Controls, Decision, RequiredControls, Satisfied, SignIn, UserKind};
pub use explain::{
    Explanation, LocationRule, NotApplied, PolicyControls, PolicyOutcome, PolicyResult, UserRule,
};
pub use model::{
    Applications, BuiltInControl, ConditionalAccessClientApp, ConditionalAccessPolicy, Conditions,
    ExternalTenants, FrequencyInterval, GrantControls, GrantOperator, GuestOrExternalUserType,
    GuestsOrExternalUsers, Locations, NamedLocation, PolicySet, PolicyState, SessionControls,
    SignInFrequency, SignInFrequencyAuthenticationType, SignInFrequencyType, Users,
};

/// The `field` of every [`ConfigError::Invalid`](crate::error::ConfigError::Invalid)
/// this module returns; its `reason` starts with the path of the offending
/// value in backticks, such as
/// `` `policies[3] (Require MFA for guests).conditions.locations.includeLocations[0]`: ``
/// (a policy or named location is named by its index and display name).
pub const CONFIG_FIELD: &str = "conditional_access";

/// Most policies in one set.
pub const MAX_POLICIES: usize = 500;
/// Most named locations in one set.
pub const MAX_NAMED_LOCATIONS: usize = 1000;
/// Most IP ranges in one named location.
pub const MAX_IP_RANGES_PER_LOCATION: usize = 2000;
/// Most values in one include or exclude list (users, groups, applications,
/// locations, tenants) or `termsOfUse`.
pub const MAX_CONDITION_VALUES: usize = 2000;
/// Most distinct terms of use (agreement ids) in one set.
pub const MAX_AGREEMENTS: usize = 64;
/// Longest id or display name, in bytes.
pub const MAX_ID_LEN: usize = 256;
/// Longest policy description, in bytes.
pub const MAX_DESCRIPTION_LEN: usize = 1024;
