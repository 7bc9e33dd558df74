//! Property tests of conditional access over random policy sets and
//! sign-ins drawn from a small universe (so conditions often hold):
//!
//! - evaluation is deterministic, and `evaluate` equals `explain().decision`;
//! - the explanation's applied policies equal an independent oracle written
//!   here against the public model, and the decision means what the oracle
//!   says: blocked exactly when an enforced applying policy blocks,
//!   `missing` satisfied by a sign-in exactly when every enforced applying
//!   policy's grant is, the sign-in frequency the shortest;
//! - monotone: adding a `block` policy never turns a `Block` into anything
//!   else, and adding any enabled policy never removes a required control.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::IpAddr;

use guestpass::policy::conditional_access::{
    Applications, BuiltInControl, ClientAppType, CompiledPolicies, ConditionalAccessClientApp,
    ConditionalAccessPolicy, Conditions, Decision, ExternalTenants, FrequencyInterval, GrantControls,
    GrantOperator, GuestOrExternalUserType, GuestsOrExternalUsers, Locations, NamedLocation, PolicyOutcome,
    PolicySet, PolicyState, Satisfied, SessionControls, SignIn, SignInFrequency, SignInFrequencyType,
    UserKind, Users,
};
use proptest::prelude::*;
use proptest::sample::subsequence;
use time::Duration;

const USERS: [&str; 5] = ["u0", "u1", "u2", "u3", "u4"];
const GROUPS: [&str; 5] = ["g0", "g1", "g2", "g3", "g4"];
const APPS: [&str; 4] = ["a0", "a1", "a2", "a3"];
const TENANTS: [&str; 3] = ["t0", "t1", "t2"];
const TERMS: [&str; 2] = ["tou0", "tou1"];
const IPS: [&str; 10] = [
    "203.0.113.5",
    "203.0.113.200",
    "192.0.2.1",
    "192.0.2.200",
    "10.20.3.4",
    "198.51.100.7",
    "2001:db8:1::5",
    "2001:db8:2::5",
    "::ffff:192.0.2.1",
    "fe80::1",
];
const KINDS: [UserKind; 7] = [
    UserKind::Member,
    UserKind::InternalGuest,
    UserKind::B2bCollaborationGuest,
    UserKind::B2bCollaborationMember,
    UserKind::B2bDirectConnectUser,
    UserKind::OtherExternalUser,
    UserKind::ServiceProvider,
];
const CLIENTS: [ClientAppType; 4] = [
    ClientAppType::Browser,
    ClientAppType::MobileAppsAndDesktopClients,
    ClientAppType::ExchangeActiveSync,
    ClientAppType::Other,
];

fn named_locations() -> Vec<NamedLocation> {
    let loc = |id: &str, trusted: bool, ranges: &[&str]| NamedLocation {
        id: id.to_owned(),
        display_name: format!("Location {id}"),
        is_trusted: trusted,
        ip_ranges: ranges.iter().map(|r| (*r).to_owned()).collect(),
    };
    vec![
        loc("hq", true, &["203.0.113.0/24", "2001:db8:1::/48"]),
        loc("branch", false, &["192.0.2.0/25"]),
        // Overlaps hq: an address can be in two locations.
        loc("lab", true, &["10.20.0.0/16", "203.0.113.128/25"]),
    ]
}

fn strings(items: Vec<&str>) -> Vec<String> {
    items.into_iter().map(str::to_owned).collect()
}

fn arb_guest_rule(enumerated_only: bool) -> impl Strategy<Value = GuestsOrExternalUsers> {
    (
        subsequence(GuestOrExternalUserType::ALL.to_vec(), 1..=3),
        any::<bool>(),
        subsequence(TENANTS.to_vec(), 1..=2),
    )
        .prop_map(move |(types, all, tenants)| GuestsOrExternalUsers {
            guest_or_external_user_types: types,
            external_tenants: if all && !enumerated_only {
                ExternalTenants::All
            } else {
                ExternalTenants::Enumerated {
                    members: strings(tenants),
                }
            },
        })
}

fn arb_users() -> impl Strategy<Value = Users> {
    let include_users = subsequence(
        vec!["All", "GuestsOrExternalUsers", "u0", "u1", "u2", "u3"],
        0..=2,
    );
    let exclude_users = subsequence(vec!["GuestsOrExternalUsers", "u1", "u2", "u4"], 0..=2);
    (
        include_users,
        exclude_users,
        subsequence(GROUPS.to_vec(), 0..=2),
        subsequence(GROUPS.to_vec(), 0..=1),
        proptest::option::weighted(0.3, arb_guest_rule(false)),
        proptest::option::weighted(0.2, arb_guest_rule(true)),
    )
        .prop_map(|(iu, eu, ig, eg, igu, egu)| {
            let mut u = Users {
                include_users: strings(iu),
                exclude_users: strings(eu),
                include_groups: strings(ig),
                exclude_groups: strings(eg),
                include_guests_or_external_users: igu,
                exclude_guests_or_external_users: egu,
            };
            // Repair what compile refuses: includes an exclude always beats.
            let ex_users = u.exclude_users.clone();
            u.include_users.retain(|x| !ex_users.contains(x));
            let ex_groups = u.exclude_groups.clone();
            u.include_groups.retain(|x| !ex_groups.contains(x));
            let guests_kw = "GuestsOrExternalUsers".to_owned();
            if u.exclude_users.contains(&guests_kw)
                && (u.include_users.contains(&guests_kw) || u.include_guests_or_external_users.is_some())
            {
                u.exclude_users.retain(|x| *x != guests_kw);
            }
            if let (Some(inc), Some(exc)) = (
                &u.include_guests_or_external_users,
                &u.exclude_guests_or_external_users,
            ) && within(inc, exc)
            {
                u.exclude_guests_or_external_users = None;
            }
            if u.include_users.is_empty()
                && u.include_groups.is_empty()
                && u.include_guests_or_external_users.is_none()
            {
                u.include_users.push("All".to_owned());
            }
            u
        })
}

fn within(inc: &GuestsOrExternalUsers, exc: &GuestsOrExternalUsers) -> bool {
    let types = inc
        .guest_or_external_user_types
        .iter()
        .all(|t| exc.guest_or_external_user_types.contains(t));
    let tenants = match (&inc.external_tenants, &exc.external_tenants) {
        (_, ExternalTenants::All) => true,
        (ExternalTenants::All, _) => false,
        (ExternalTenants::Enumerated { members: a }, ExternalTenants::Enumerated { members: b }) => {
            a.iter().all(|t| b.contains(t))
        }
    };
    types && tenants
}

fn arb_apps() -> impl Strategy<Value = Applications> {
    (
        subsequence(vec!["All", "a0", "a1", "a2"], 0..=2),
        subsequence(vec!["a1", "a3"], 0..=1),
    )
        .prop_map(|(inc, exc)| {
            let mut a = Applications {
                include_applications: strings(inc),
                exclude_applications: strings(exc),
            };
            let ex = a.exclude_applications.clone();
            a.include_applications.retain(|x| !ex.contains(x));
            if a.include_applications.is_empty() {
                a.include_applications.push("All".to_owned());
            }
            a
        })
}

fn arb_locations() -> impl Strategy<Value = Option<Locations>> {
    proptest::option::weighted(
        0.5,
        (
            subsequence(vec!["All", "AllTrusted", "hq", "branch", "lab"], 0..=2),
            subsequence(vec!["AllTrusted", "hq", "branch", "lab"], 0..=1),
        )
            .prop_map(|(inc, exc)| {
                let mut l = Locations {
                    include_locations: strings(inc),
                    exclude_locations: strings(exc),
                };
                let ex = l.exclude_locations.clone();
                let trusted_out = ex.iter().any(|x| x == "AllTrusted");
                l.include_locations.retain(|x| {
                    !ex.contains(x) && !(trusted_out && (x == "AllTrusted" || x == "hq" || x == "lab"))
                });
                if l.include_locations.is_empty() {
                    l.include_locations.push("All".to_owned());
                }
                l
            }),
    )
}

fn arb_client_apps() -> impl Strategy<Value = Vec<ConditionalAccessClientApp>> {
    prop_oneof![
        Just(vec![ConditionalAccessClientApp::All]),
        subsequence(
            vec![
                ConditionalAccessClientApp::Browser,
                ConditionalAccessClientApp::MobileAppsAndDesktopClients,
                ConditionalAccessClientApp::ExchangeActiveSync,
                ConditionalAccessClientApp::Other,
            ],
            1..=3
        ),
    ]
}

fn arb_grant() -> impl Strategy<Value = Option<GrantControls>> {
    let controls = (
        subsequence(
            vec![
                BuiltInControl::Mfa,
                BuiltInControl::CompliantDevice,
                BuiltInControl::DomainJoinedDevice,
            ],
            0..=3,
        ),
        subsequence(TERMS.to_vec(), 0..=2),
        any::<bool>(),
    )
        .prop_map(|(built_in, terms, or)| {
            let mut g = GrantControls {
                operator: Some(if or { GrantOperator::Or } else { GrantOperator::And }),
                built_in_controls: built_in,
                terms_of_use: strings(terms),
            };
            if g.built_in_controls.is_empty() && g.terms_of_use.is_empty() {
                g.built_in_controls.push(BuiltInControl::Mfa);
            }
            Some(g)
        });
    prop_oneof![
        1 => Just(None),
        1 => Just(Some(GrantControls {
            operator: None,
            built_in_controls: vec![BuiltInControl::Block],
            terms_of_use: vec![],
        })),
        5 => controls,
    ]
}

fn arb_session() -> impl Strategy<Value = Option<SessionControls>> {
    let f = prop_oneof![
        (1u32..=23).prop_map(|h| (Some(h), Some(SignInFrequencyType::Hours), None)),
        (1u32..=30).prop_map(|d| (Some(d), Some(SignInFrequencyType::Days), None)),
        Just((None, None, Some(FrequencyInterval::EveryTime))),
    ];
    proptest::option::weighted(
        0.3,
        (f, any::<bool>()).prop_map(|((value, t, interval), enabled)| SessionControls {
            sign_in_frequency: Some(SignInFrequency {
                value,
                frequency_type: t,
                is_enabled: enabled || interval.is_some(),
                frequency_interval: interval,
                authentication_type: None,
            }),
        }),
    )
}

fn arb_state() -> impl Strategy<Value = PolicyState> {
    prop_oneof![
        6 => Just(PolicyState::Enabled),
        1 => Just(PolicyState::EnabledForReportingButNotEnforced),
        1 => Just(PolicyState::Disabled),
    ]
}

fn arb_policy_with(
    state: BoxedStrategy<PolicyState>,
    grant: BoxedStrategy<Option<GrantControls>>,
) -> impl Strategy<Value = ConditionalAccessPolicy> {
    (
        state,
        arb_users(),
        arb_apps(),
        arb_client_apps(),
        arb_locations(),
        grant,
        arb_session(),
    )
        .prop_map(
            |(state, users, applications, client_app_types, locations, grant, session)| {
                let mut p = ConditionalAccessPolicy {
                    id: None,
                    display_name: String::new(),
                    description: None,
                    state,
                    conditions: Conditions {
                        users,
                        applications,
                        client_app_types,
                        locations,
                    },
                    grant_controls: grant,
                    session_controls: session,
                };
                if p.grant_controls.is_none() && frequency(&p).is_none() {
                    p.grant_controls = Some(GrantControls {
                        operator: None,
                        built_in_controls: vec![BuiltInControl::Mfa],
                        terms_of_use: vec![],
                    });
                }
                p
            },
        )
}

fn arb_policy() -> impl Strategy<Value = ConditionalAccessPolicy> {
    arb_policy_with(arb_state().boxed(), arb_grant().boxed())
}

fn arb_set() -> impl Strategy<Value = PolicySet> {
    proptest::collection::vec(arb_policy(), 0..8).prop_map(|policies| PolicySet {
        named_locations: named_locations(),
        policies: policies
            .into_iter()
            .enumerate()
            .map(|(i, mut p)| {
                p.display_name = format!("Policy {i}");
                p
            })
            .collect(),
    })
}

/// A sign-in's owned parts (a `SignIn` borrows them).
#[derive(Debug, Clone)]
struct Input {
    user: &'static str,
    groups: Vec<&'static str>,
    kind: UserKind,
    tenant: Option<&'static str>,
    app: &'static str,
    client: ClientAppType,
    ip: IpAddr,
    mfa: bool,
    compliant: bool,
    domain_joined: bool,
    terms: Vec<&'static str>,
}

impl Input {
    fn signin(&self) -> SignIn<'_> {
        SignIn {
            user_id: self.user,
            groups: &self.groups,
            user_kind: self.kind,
            home_tenant: self.tenant,
            application_id: self.app,
            client_app: self.client,
            ip: self.ip,
            satisfied: Satisfied {
                mfa: self.mfa,
                compliant_device: self.compliant,
                domain_joined_device: self.domain_joined,
                terms_accepted: &self.terms,
            },
        }
    }
}

fn arb_input() -> impl Strategy<Value = Input> {
    (
        proptest::sample::select(USERS.to_vec()),
        subsequence(GROUPS.to_vec(), 0..=3),
        proptest::sample::select(KINDS.to_vec()),
        proptest::option::of(proptest::sample::select(TENANTS.to_vec())),
        proptest::sample::select(APPS.to_vec()),
        proptest::sample::select(CLIENTS.to_vec()),
        proptest::sample::select(IPS.to_vec()),
        (any::<bool>(), any::<bool>(), any::<bool>()),
        subsequence(TERMS.to_vec(), 0..=2),
    )
        .prop_map(
            |(user, groups, kind, tenant, app, client, ip, (mfa, compliant, domain_joined), terms)| Input {
                user,
                groups,
                kind,
                tenant,
                app,
                client,
                ip: ip.parse().unwrap(),
                mfa,
                compliant,
                domain_joined,
                terms,
            },
        )
}

// ---------------------------------------------------------------- the oracle

fn is_keyword(v: &str, k: &str) -> bool {
    v.eq_ignore_ascii_case(k)
}

fn guest_rule_matches(rule: &GuestsOrExternalUsers, s: &SignIn<'_>) -> bool {
    let Some(t) = s.user_kind.guest_type() else {
        return false;
    };
    rule.guest_or_external_user_types.contains(&t)
        && match &rule.external_tenants {
            ExternalTenants::All => true,
            ExternalTenants::Enumerated { members } => {
                s.home_tenant.is_some_and(|h| members.iter().any(|m| m == h))
            }
        }
}

fn users_match(u: &Users, s: &SignIn<'_>) -> bool {
    let guest = s.user_kind != UserKind::Member;
    let excluded = u.exclude_users.iter().any(|x| x == s.user_id)
        || (guest
            && u.exclude_users
                .iter()
                .any(|x| is_keyword(x, "GuestsOrExternalUsers")))
        || u.exclude_groups.iter().any(|g| s.groups.contains(&g.as_str()))
        || u.exclude_guests_or_external_users
            .as_ref()
            .is_some_and(|r| guest_rule_matches(r, s));
    let included = u.include_users.iter().any(|x| is_keyword(x, "All"))
        || (guest
            && u.include_users
                .iter()
                .any(|x| is_keyword(x, "GuestsOrExternalUsers")))
        || u.include_users.iter().any(|x| x == s.user_id)
        || u.include_groups.iter().any(|g| s.groups.contains(&g.as_str()))
        || u.include_guests_or_external_users
            .as_ref()
            .is_some_and(|r| guest_rule_matches(r, s));
    included && !excluded
}

fn in_cidr(ip: IpAddr, cidr: &str) -> bool {
    let (addr, prefix) = cidr.split_once('/').unwrap();
    let prefix: u32 = prefix.parse().unwrap();
    match (ip.to_canonical(), addr.parse::<IpAddr>().unwrap()) {
        (IpAddr::V4(a), IpAddr::V4(n)) => prefix == 0 || (u32::from(a) ^ u32::from(n)) >> (32 - prefix) == 0,
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            prefix == 0 || (u128::from(a) ^ u128::from(n)) >> (128 - prefix) == 0
        }
        _ => false,
    }
}

fn in_location(set: &PolicySet, id: &str, ip: IpAddr) -> bool {
    set.named_locations
        .iter()
        .filter(|l| l.id == id)
        .any(|l| l.ip_ranges.iter().any(|r| in_cidr(ip, r)))
}

fn in_trusted(set: &PolicySet, ip: IpAddr) -> bool {
    set.named_locations
        .iter()
        .filter(|l| l.is_trusted)
        .any(|l| l.ip_ranges.iter().any(|r| in_cidr(ip, r)))
}

fn location_matches(set: &PolicySet, l: &Locations, ip: IpAddr) -> bool {
    let hit = |v: &String| {
        if is_keyword(v, "All") {
            true
        } else if is_keyword(v, "AllTrusted") {
            in_trusted(set, ip)
        } else {
            in_location(set, v, ip)
        }
    };
    l.include_locations.iter().any(hit) && !l.exclude_locations.iter().any(hit)
}

fn applies(set: &PolicySet, p: &ConditionalAccessPolicy, s: &SignIn<'_>) -> bool {
    let c = &p.conditions;
    let app = c
        .applications
        .exclude_applications
        .iter()
        .all(|a| a != s.application_id)
        && c.applications
            .include_applications
            .iter()
            .any(|a| is_keyword(a, "All") || a == s.application_id);
    let client = c.client_app_types.iter().any(|t| {
        matches!(
            (t, s.client_app),
            (ConditionalAccessClientApp::All, _)
                | (ConditionalAccessClientApp::Browser, ClientAppType::Browser)
                | (
                    ConditionalAccessClientApp::MobileAppsAndDesktopClients,
                    ClientAppType::MobileAppsAndDesktopClients
                )
                | (
                    ConditionalAccessClientApp::ExchangeActiveSync,
                    ClientAppType::ExchangeActiveSync
                )
                | (ConditionalAccessClientApp::Other, ClientAppType::Other)
        )
    });
    let location = c
        .locations
        .as_ref()
        .is_none_or(|l| location_matches(set, l, s.ip));
    p.state != PolicyState::Disabled && users_match(&c.users, s) && app && client && location
}

fn blocks(p: &ConditionalAccessPolicy) -> bool {
    p.grant_controls
        .as_ref()
        .is_some_and(|g| g.built_in_controls.contains(&BuiltInControl::Block))
}

fn grant_satisfied(p: &ConditionalAccessPolicy, s: &Satisfied<'_>) -> bool {
    let Some(g) = &p.grant_controls else {
        return true;
    };
    let results: Vec<bool> = g
        .built_in_controls
        .iter()
        .map(|c| match c {
            BuiltInControl::Block => false,
            BuiltInControl::Mfa => s.mfa,
            BuiltInControl::CompliantDevice => s.compliant_device,
            BuiltInControl::DomainJoinedDevice => s.domain_joined_device,
        })
        .chain(
            g.terms_of_use
                .iter()
                .map(|t| s.terms_accepted.contains(&t.as_str())),
        )
        .collect();
    match g.operator.unwrap_or_default() {
        GrantOperator::And => results.iter().all(|r| *r),
        GrantOperator::Or => results.iter().any(|r| *r),
    }
}

fn frequency(p: &ConditionalAccessPolicy) -> Option<Duration> {
    let f = p.session_controls.as_ref()?.sign_in_frequency.as_ref()?;
    if !f.is_enabled {
        return None;
    }
    if f.frequency_interval == Some(FrequencyInterval::EveryTime) {
        return Some(Duration::ZERO);
    }
    let v = i64::from(f.value?);
    Some(match f.frequency_type? {
        SignInFrequencyType::Hours => Duration::hours(v),
        SignInFrequencyType::Days => Duration::days(v),
    })
}

/// Every combination of what a sign-in could satisfy.
fn universe() -> Vec<(bool, bool, bool, Vec<&'static str>)> {
    let mut out = Vec::new();
    for bits in 0..8u8 {
        for terms in [vec![], vec!["tou0"], vec!["tou1"], vec!["tou0", "tou1"]] {
            out.push((bits & 1 != 0, bits & 2 != 0, bits & 4 != 0, terms));
        }
    }
    out
}

fn compile(set: &PolicySet) -> CompiledPolicies {
    match set.clone().compile() {
        Ok(c) => c,
        Err(e) => panic!("a valid-by-construction set was refused: {e}\n{set:#?}"),
    }
}

fn check_monotone(old: &Decision, new: &Decision) -> Result<(), TestCaseError> {
    match (old, new) {
        (_, Decision::Block { .. }) => Ok(()),
        (Decision::Block { .. }, other) => Err(TestCaseError::fail(format!("block became {other:?}"))),
        (Decision::Require { .. }, Decision::Allow) => Err(TestCaseError::fail("a requirement disappeared")),
        (Decision::Allow, _) => Ok(()),
        (
            Decision::Require {
                missing: m_old,
                sign_in_frequency: f_old,
            },
            Decision::Require {
                missing: m_new,
                sign_in_frequency: f_new,
            },
        ) => {
            prop_assert!(!m_old.mfa || m_new.mfa, "mfa dropped: {m_old:?} -> {m_new:?}");
            prop_assert!(!m_old.compliant_device || m_new.compliant_device);
            prop_assert!(!m_old.domain_joined_device || m_new.domain_joined_device);
            for t in &m_old.terms_of_use {
                prop_assert!(m_new.terms_of_use.contains(t), "terms `{t}` dropped");
            }
            for (mfa, compliant_device, domain_joined_device, terms) in universe() {
                let s = Satisfied {
                    mfa,
                    compliant_device,
                    domain_joined_device,
                    terms_accepted: &terms,
                };
                prop_assert!(
                    !m_new.is_satisfied_by(&s) || m_old.is_satisfied_by(&s),
                    "{s:?} satisfies the new requirement {m_new} but not the old {m_old}"
                );
            }
            if let Some(f) = f_old {
                prop_assert!(f_new.is_some_and(|g| g <= *f), "frequency {f_old:?} -> {f_new:?}");
            }
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn deterministic_and_explained_alike(set in arb_set(), input in arb_input()) {
        let c = compile(&set);
        let again = compile(&set);
        let s = input.signin();
        let d = c.evaluate(&s);
        prop_assert_eq!(&d, &c.evaluate(&s));
        prop_assert_eq!(&d, &again.evaluate(&s));
        let e = c.explain(&s);
        prop_assert_eq!(&e, &c.explain(&s));
        prop_assert_eq!(&e, &again.explain(&s));
        prop_assert_eq!(&e.decision, &d);
        prop_assert_eq!(e.policies.len(), set.policies.len());
    }

    #[test]
    fn decisions_agree_with_the_oracle(set in arb_set(), input in arb_input()) {
        let c = compile(&set);
        let s = input.signin();
        let e = c.explain(&s);
        let applied: Vec<bool> = set.policies.iter().map(|p| applies(&set, p, &s)).collect();
        for (i, (p, r)) in set.policies.iter().zip(&e.policies).enumerate() {
            prop_assert_eq!(r.policy, p.display_name.as_str());
            match &r.outcome {
                PolicyOutcome::Applied { report_only, satisfied, .. } => {
                    prop_assert!(applied[i], "policy {} explained as applied:\n{}", i, e);
                    prop_assert_eq!(*report_only, p.state == PolicyState::EnabledForReportingButNotEnforced);
                    prop_assert_eq!(*satisfied, !blocks(p) && grant_satisfied(p, &s.satisfied));
                }
                PolicyOutcome::NotApplied { .. } => prop_assert!(!applied[i], "policy {} not applied:\n{}", i, e),
            }
        }
        let enforced: Vec<&ConditionalAccessPolicy> = set
            .policies
            .iter()
            .zip(&applied)
            .filter(|(p, a)| **a && p.state == PolicyState::Enabled)
            .map(|(p, _)| p)
            .collect();
        let d = c.evaluate(&s);
        if let Some(first) = enforced.iter().find(|p| blocks(p)) {
            prop_assert_eq!(d, Decision::Block { policy: first.display_name.as_str().into() });
            return Ok(());
        }
        let shortest = enforced.iter().filter_map(|p| frequency(p)).min();
        prop_assert_eq!(d.sign_in_frequency(), shortest);
        let all_met = |sat: &Satisfied<'_>| enforced.iter().all(|p| grant_satisfied(p, sat));
        prop_assert_eq!(d == Decision::Allow, all_met(&s.satisfied) && shortest.is_none());
        let missing = d.missing().cloned().unwrap_or_default();
        // Whatever the sign-in adds to what it has: `missing` is met exactly
        // when every policy's grant is.
        for (mfa, compliant_device, domain_joined_device, extra) in universe() {
            let mut terms: Vec<&str> = s.satisfied.terms_accepted.to_vec();
            terms.extend(extra);
            let more = Satisfied {
                mfa: mfa || s.satisfied.mfa,
                compliant_device: compliant_device || s.satisfied.compliant_device,
                domain_joined_device: domain_joined_device || s.satisfied.domain_joined_device,
                terms_accepted: &terms,
            };
            prop_assert_eq!(missing.is_satisfied_by(&more), all_met(&more), "with {:?}: {}", more, e);
        }
    }

    #[test]
    fn adding_a_block_never_unblocks(
        set in arb_set(),
        input in arb_input(),
        block in arb_policy_with(Just(PolicyState::Enabled).boxed(), Just(Some(GrantControls {
            operator: None,
            built_in_controls: vec![BuiltInControl::Block],
            terms_of_use: vec![],
        })).boxed()),
        at in any::<prop::sample::Index>(),
    ) {
        let s = input.signin();
        let old = compile(&set).evaluate(&s);
        let mut block = block;
        block.display_name = "Added block".to_owned();
        let mut appended = set.clone();
        appended.policies.push(block.clone());
        let new = compile(&appended).evaluate(&s);
        if matches!(old, Decision::Block { .. }) {
            prop_assert_eq!(&new, &old, "appended: the first blocking policy stays first");
        }
        let mut inserted = set;
        let i = at.index(inserted.policies.len() + 1);
        inserted.policies.insert(i, block);
        let new = compile(&inserted).evaluate(&s);
        if matches!(old, Decision::Block { .. }) {
            prop_assert!(matches!(new, Decision::Block { .. }), "{:?}", new);
        }
        check_monotone(&old, &new)?;
    }

    #[test]
    fn adding_an_enabled_policy_never_removes_a_requirement(
        set in arb_set(),
        input in arb_input(),
        extra in arb_policy_with(Just(PolicyState::Enabled).boxed(), arb_grant().boxed()),
        at in any::<prop::sample::Index>(),
    ) {
        let s = input.signin();
        let old = compile(&set).evaluate(&s);
        let mut extra = extra;
        extra.display_name = "Added".to_owned();
        let mut more = set;
        let i = at.index(more.policies.len() + 1);
        more.policies.insert(i, extra);
        let new = compile(&more).evaluate(&s);
        check_monotone(&old, &new)?;
    }

    #[test]
    fn report_only_never_enforces(set in arb_set(), input in arb_input()) {
        let mut report_only = set;
        for p in &mut report_only.policies {
            if p.state == PolicyState::Enabled {
                p.state = PolicyState::EnabledForReportingButNotEnforced;
            }
        }
        let s = input.signin();
        let c = compile(&report_only);
        prop_assert_eq!(c.evaluate(&s), Decision::Allow);
        prop_assert_eq!(c.explain(&s).decision, Decision::Allow);
    }
}
