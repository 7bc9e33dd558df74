//! Conditional access: every condition kind both ways, include/exclude
//! precedence, guests and external tenants, IPv4 and IPv6 locations,
//! malformed ranges, report-only policies, block and grant combination,
//! terms of use, sign-in frequency, the What-If explanation, JSON and TOML
//! loading, and the size limits.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use std::time::Instant;

use guestpass::error::ConfigError;
use guestpass::policy::conditional_access::{
    CONFIG_FIELD, ClientAppType, CompiledPolicies, ConditionalAccessPolicy, Controls, Decision, LocationRule,
    MAX_POLICIES, NotApplied, PolicyOutcome, PolicySet, RequiredControls, Satisfied, SignIn, UserKind,
    UserRule,
};
use serde_json::{Value, json};
use time::Duration;

// ---------------------------------------------------------------- helpers

fn signin() -> SignIn<'static> {
    SignIn {
        user_id: "u-alice",
        groups: &[],
        user_kind: UserKind::Member,
        home_tenant: None,
        application_id: "app-crm",
        client_app: ClientAppType::Browser,
        ip: "198.51.100.7".parse().unwrap(),
        satisfied: Satisfied::default(),
    }
}

/// A policy named `name` for every user and application with `conditions`
/// merged over that, requiring `grant` (built-in control names).
fn policy(name: &str, conditions: Value, grant: &[&str]) -> Value {
    let mut c = json!({
        "users": {"includeUsers": ["All"]},
        "applications": {"includeApplications": ["All"]},
    });
    if let (Some(base), Some(over)) = (c.as_object_mut(), conditions.as_object()) {
        for (k, v) in over {
            base.insert(k.clone(), v.clone());
        }
    }
    json!({
        "displayName": name,
        "state": "enabled",
        "conditions": c,
        "grantControls": {"operator": "AND", "builtInControls": grant},
    })
}

fn locations() -> Value {
    json!([
        {"id": "hq", "displayName": "Contoso HQ", "isTrusted": true,
         "ipRanges": ["203.0.113.0/24", "2001:db8:1::/48"]},
        {"id": "branch", "displayName": "Branch office", "isTrusted": false,
         "ipRanges": ["192.0.2.0/25"]},
        {"id": "lab", "displayName": "Lab", "isTrusted": true, "ipRanges": ["10.20.0.0/16"]},
    ])
}

fn document(policies: Vec<Value>) -> String {
    json!({"namedLocations": locations(), "policies": policies}).to_string()
}

fn compile(policies: Vec<Value>) -> CompiledPolicies {
    PolicySet::from_json(&document(policies))
        .and_then(PolicySet::compile)
        .unwrap()
}

fn compile_error(policies: Vec<Value>) -> String {
    match PolicySet::from_json(&document(policies)).and_then(PolicySet::compile) {
        Ok(_) => panic!("the set compiled"),
        Err(e) => e.to_string(),
    }
}

fn message(path: &str, reason: &str) -> String {
    format!("configuration field `conditional_access` is invalid: `{path}`: {reason}")
}

/// Evaluates, and checks that the explanation decides the same.
fn decide(c: &CompiledPolicies, s: &SignIn<'_>) -> Decision {
    let d = c.evaluate(s);
    let e = c.explain(s);
    assert_eq!(e.decision, d, "evaluate and explain disagree:\n{e}");
    assert_eq!(e.policies.len(), c.len());
    d
}

fn require(mfa: bool, compliant: bool, domain_joined: bool, terms: &[&str]) -> Decision {
    Decision::Require {
        missing: RequiredControls {
            mfa,
            compliant_device: compliant,
            domain_joined_device: domain_joined,
            terms_of_use: terms.iter().map(|t| Arc::from(*t)).collect(),
            one_of: vec![],
        },
        sign_in_frequency: None,
    }
}

fn mfa() -> Decision {
    require(true, false, false, &[])
}

/// The reason the explanation gives for policy `i`, or `None` if it applied.
fn reason<'c>(c: &'c CompiledPolicies, s: &SignIn<'_>, i: usize) -> Option<NotApplied<'c>> {
    match &c.explain(s).policies[i].outcome {
        PolicyOutcome::NotApplied { reason } => Some(*reason),
        PolicyOutcome::Applied { .. } => None,
    }
}

// ---------------------------------------------------------------- users

#[test]
fn users_by_id_and_all() {
    let c = compile(vec![policy(
        "Alice",
        json!({"users": {"includeUsers": ["u-alice", "u-carol"]}}),
        &["mfa"],
    )]);
    assert_eq!(decide(&c, &signin()), mfa());
    let bob = SignIn {
        user_id: "u-bob",
        ..signin()
    };
    assert_eq!(decide(&c, &bob), Decision::Allow);
    assert_eq!(reason(&c, &bob, 0), Some(NotApplied::UserNotIncluded));
}

#[test]
fn users_by_group_and_exclusions_win() {
    let c = compile(vec![policy(
        "Finance",
        json!({"users": {"includeGroups": ["g-finance"], "excludeGroups": ["g-breakglass"],
                         "excludeUsers": ["u-carol"]}}),
        &["mfa"],
    )]);
    let finance = SignIn {
        groups: &["g-sales", "g-finance"],
        ..signin()
    };
    assert_eq!(decide(&c, &finance), mfa());
    assert_eq!(decide(&c, &signin()), Decision::Allow, "no group, no include");
    assert_eq!(reason(&c, &signin(), 0), Some(NotApplied::UserNotIncluded));

    let breakglass = SignIn {
        groups: &["g-finance", "g-breakglass"],
        ..signin()
    };
    assert_eq!(decide(&c, &breakglass), Decision::Allow);
    assert_eq!(
        reason(&c, &breakglass, 0),
        Some(NotApplied::UserExcluded(UserRule::Group("g-breakglass")))
    );
    let carol = SignIn {
        user_id: "u-carol",
        groups: &["g-finance", "g-breakglass"],
        ..signin()
    };
    assert_eq!(
        reason(&c, &carol, 0),
        Some(NotApplied::UserExcluded(UserRule::User("u-carol"))),
        "excludeUsers is checked before excludeGroups"
    );
    assert_eq!(decide(&c, &carol), Decision::Allow);
}

#[test]
fn exclude_wins_over_include_all() {
    let c = compile(vec![policy(
        "Everyone but alice",
        json!({"users": {"includeUsers": ["All"], "excludeUsers": ["u-alice"]}}),
        &["mfa"],
    )]);
    assert_eq!(decide(&c, &signin()), Decision::Allow);
    assert_eq!(
        decide(
            &c,
            &SignIn {
                user_id: "u-bob",
                ..signin()
            }
        ),
        mfa()
    );
}

#[test]
fn guests_or_external_users_keyword() {
    let c = compile(vec![
        policy(
            "Guests",
            json!({"users": {"includeUsers": ["GuestsOrExternalUsers"]}}),
            &["mfa"],
        ),
        policy(
            "Members",
            json!({"users": {"includeUsers": ["All"], "excludeUsers": ["GuestsOrExternalUsers"]}}),
            &["compliantDevice"],
        ),
    ]);
    assert_eq!(decide(&c, &signin()), require(false, true, false, &[]));
    assert_eq!(reason(&c, &signin(), 0), Some(NotApplied::UserNotIncluded));
    for kind in [
        UserKind::InternalGuest,
        UserKind::B2bCollaborationGuest,
        UserKind::B2bCollaborationMember,
        UserKind::B2bDirectConnectUser,
        UserKind::OtherExternalUser,
        UserKind::ServiceProvider,
    ] {
        let guest = SignIn {
            user_kind: kind,
            ..signin()
        };
        assert_eq!(decide(&c, &guest), mfa(), "{kind:?}");
        assert_eq!(
            reason(&c, &guest, 1),
            Some(NotApplied::UserExcluded(UserRule::GuestsOrExternalUsers))
        );
    }
}

#[test]
fn guest_types_and_enumerated_tenants() {
    let c = compile(vec![
        policy(
            "Partners",
            json!({"users": {"includeGuestsOrExternalUsers": {
                "guestOrExternalUserTypes": "b2bCollaborationGuest,b2bDirectConnectUser",
                "externalTenants": {"@odata.type": "#microsoft.graph.conditionalAccessEnumeratedExternalTenants",
                                    "membershipKind": "enumerated", "members": ["t-fabrikam", "t-woodgrove"]}}}}),
            &["mfa"],
        ),
        policy(
            "All service providers",
            json!({"users": {"includeGuestsOrExternalUsers": {
                "guestOrExternalUserTypes": ["serviceProvider"],
                "externalTenants": {"membershipKind": "all"}}}}),
            &["compliantDevice"],
        ),
    ]);
    let guest = |kind, tenant| SignIn {
        user_kind: kind,
        home_tenant: tenant,
        ..signin()
    };
    assert_eq!(
        decide(&c, &guest(UserKind::B2bCollaborationGuest, Some("t-fabrikam"))),
        mfa()
    );
    assert_eq!(
        decide(&c, &guest(UserKind::B2bDirectConnectUser, Some("t-woodgrove"))),
        mfa()
    );
    assert_eq!(
        decide(&c, &guest(UserKind::B2bCollaborationGuest, Some("t-contoso"))),
        Decision::Allow,
        "tenant not listed"
    );
    assert_eq!(
        decide(&c, &guest(UserKind::B2bCollaborationGuest, None)),
        Decision::Allow,
        "no home tenant never matches an enumerated list"
    );
    assert_eq!(
        decide(&c, &guest(UserKind::B2bCollaborationMember, Some("t-fabrikam"))),
        Decision::Allow,
        "type not listed"
    );
    assert_eq!(
        decide(
            &c,
            &SignIn {
                home_tenant: Some("t-fabrikam"),
                ..signin()
            }
        ),
        Decision::Allow,
        "members are never guests"
    );
    assert_eq!(
        decide(&c, &guest(UserKind::ServiceProvider, Some("t-anything"))),
        require(false, true, false, &[])
    );
    assert_eq!(
        decide(&c, &guest(UserKind::ServiceProvider, None)),
        require(false, true, false, &[]),
        "membershipKind all matches without a tenant"
    );
}

#[test]
fn excluded_guest_types_and_tenants() {
    let c = compile(vec![policy(
        "Everyone but trusted partners",
        json!({"users": {"includeUsers": ["All"], "excludeGuestsOrExternalUsers": {
            "guestOrExternalUserTypes": "b2bCollaborationGuest,b2bCollaborationMember",
            "externalTenants": {"membershipKind": "enumerated", "members": ["t-fabrikam"]}}}}),
        &["mfa"],
    )]);
    let from = |kind, tenant| SignIn {
        user_kind: kind,
        home_tenant: Some(tenant),
        ..signin()
    };
    let partner = from(UserKind::B2bCollaborationMember, "t-fabrikam");
    assert_eq!(decide(&c, &partner), Decision::Allow);
    assert_eq!(
        reason(&c, &partner, 0),
        Some(NotApplied::UserExcluded(UserRule::GuestOrExternalUserType(
            guestpass::policy::conditional_access::GuestOrExternalUserType::B2bCollaborationMember
        )))
    );
    assert_eq!(
        decide(&c, &from(UserKind::B2bCollaborationMember, "t-other")),
        mfa()
    );
    assert_eq!(
        decide(&c, &from(UserKind::B2bDirectConnectUser, "t-fabrikam")),
        mfa()
    );
    assert_eq!(decide(&c, &signin()), mfa());
}

#[test]
fn users_none_never_applies() {
    let c = compile(vec![policy(
        "Staged",
        json!({"users": {"includeUsers": ["None"]}}),
        &["block"],
    )]);
    assert_eq!(decide(&c, &signin()), Decision::Allow);
    assert_eq!(reason(&c, &signin(), 0), Some(NotApplied::UsersNone));
}

// ---------------------------------------------------------------- applications and clients

#[test]
fn applications_include_exclude_and_none() {
    let c = compile(vec![
        policy(
            "CRM",
            json!({"applications": {"includeApplications": ["app-crm", "app-hr"]}}),
            &["mfa"],
        ),
        policy(
            "All but CRM",
            json!({"applications": {"includeApplications": ["All"], "excludeApplications": ["app-crm"]}}),
            &["compliantDevice"],
        ),
        policy(
            "Nothing",
            json!({"applications": {"includeApplications": ["none"]}}),
            &["block"],
        ),
    ]);
    assert_eq!(decide(&c, &signin()), mfa());
    assert_eq!(
        reason(&c, &signin(), 1),
        Some(NotApplied::ApplicationExcluded {
            application: "app-crm"
        })
    );
    assert_eq!(reason(&c, &signin(), 2), Some(NotApplied::ApplicationsNone));
    let wiki = SignIn {
        application_id: "app-wiki",
        ..signin()
    };
    assert_eq!(decide(&c, &wiki), require(false, true, false, &[]));
    assert_eq!(reason(&c, &wiki, 0), Some(NotApplied::ApplicationNotIncluded));
}

#[test]
fn client_app_types() {
    let c = compile(vec![
        policy(
            "Block legacy authentication",
            json!({"clientAppTypes": ["exchangeActiveSync", "other"]}),
            &["block"],
        ),
        policy(
            "MFA in browsers and apps",
            json!({"clientAppTypes": ["browser", "mobileAppsAndDesktopClients"]}),
            &["mfa"],
        ),
    ]);
    assert_eq!(decide(&c, &signin()), mfa());
    assert_eq!(
        reason(&c, &signin(), 0),
        Some(NotApplied::ClientAppNotIncluded {
            client_app: ClientAppType::Browser
        })
    );
    for legacy in [ClientAppType::ExchangeActiveSync, ClientAppType::Other] {
        let s = SignIn {
            client_app: legacy,
            ..signin()
        };
        assert_eq!(
            decide(&c, &s),
            Decision::Block {
                policy: Arc::from("Block legacy authentication")
            }
        );
    }
    let app = SignIn {
        client_app: ClientAppType::MobileAppsAndDesktopClients,
        ..signin()
    };
    assert_eq!(decide(&c, &app), mfa());
}

// ---------------------------------------------------------------- locations

#[test]
fn ipv4_and_ipv6_named_locations() {
    let c = compile(vec![
        policy(
            "Block branch",
            json!({"locations": {"includeLocations": ["branch"]}}),
            &["block"],
        ),
        policy(
            "MFA at HQ",
            json!({"locations": {"includeLocations": ["hq"]}}),
            &["mfa"],
        ),
    ]);
    let at = |ip: &str| SignIn {
        ip: ip.parse().unwrap(),
        ..signin()
    };
    assert_eq!(
        decide(&c, &at("192.0.2.1")),
        Decision::Block {
            policy: Arc::from("Block branch")
        }
    );
    assert_eq!(
        decide(&c, &at("192.0.2.127")),
        Decision::Block {
            policy: Arc::from("Block branch")
        }
    );
    assert_eq!(
        decide(&c, &at("192.0.2.128")),
        Decision::Allow,
        "just past the /25"
    );
    assert_eq!(decide(&c, &at("203.0.113.255")), mfa());
    assert_eq!(decide(&c, &at("2001:db8:1:ffff::1")), mfa());
    assert_eq!(
        decide(&c, &at("2001:db8:2::1")),
        Decision::Allow,
        "outside the /48"
    );
    assert_eq!(
        decide(&c, &at("::ffff:203.0.113.9")),
        mfa(),
        "IPv4-mapped compares as IPv4"
    );
    assert_eq!(
        reason(&c, &at("198.51.100.1"), 1),
        Some(NotApplied::LocationNotIncluded)
    );
}

#[test]
fn all_trusted_and_all_except_trusted() {
    let c = compile(vec![
        policy(
            "Outside trusted locations",
            json!({"locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}}),
            &["mfa"],
        ),
        policy(
            "Inside trusted locations",
            json!({"locations": {"includeLocations": ["AllTrusted"], "excludeLocations": ["lab"]}}),
            &["compliantDevice"],
        ),
    ]);
    let at = |ip: &str| SignIn {
        ip: ip.parse().unwrap(),
        ..signin()
    };
    assert_eq!(decide(&c, &at("198.51.100.7")), mfa(), "unknown address");
    assert_eq!(decide(&c, &at("192.0.2.9")), mfa(), "untrusted named location");
    assert_eq!(
        decide(&c, &at("203.0.113.9")),
        require(false, true, false, &[]),
        "trusted HQ"
    );
    assert_eq!(
        reason(&c, &at("203.0.113.9"), 0),
        Some(NotApplied::LocationExcluded(LocationRule::AllTrusted))
    );
    assert_eq!(
        decide(&c, &at("10.20.1.1")),
        Decision::Allow,
        "trusted lab is excluded from the second"
    );
    assert_eq!(
        reason(&c, &at("10.20.1.1"), 1),
        Some(NotApplied::LocationExcluded(LocationRule::Named {
            id: "lab",
            display_name: "Lab"
        }))
    );
    assert_eq!(
        reason(&c, &at("198.51.100.7"), 1),
        Some(NotApplied::LocationNotIncluded)
    );
}

#[test]
fn graph_shaped_ip_ranges_are_accepted() {
    let doc = json!({
        "namedLocations": [{
            "@odata.type": "#microsoft.graph.ipNamedLocation",
            "id": "b2bd5a2e-8e4c-4f2e-9f5a-5d3e0b3c1a11",
            "displayName": "Office",
            "isTrusted": true,
            "createdDateTime": "2024-01-02T03:04:05Z",
            "modifiedDateTime": null,
            "ipRanges": [
                {"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": "12.34.220.0/22"},
                {"@odata.type": "#microsoft.graph.iPv6CidrRange", "cidrAddress": "2001:0:9d38:90d6:0:0:0:0/63"}
            ]
        }],
        "policies": [policy(
            "Office only",
            json!({"locations": {"includeLocations": ["b2bd5a2e-8e4c-4f2e-9f5a-5d3e0b3c1a11"]}}),
            &["mfa"],
        )]
    });
    let c = PolicySet::from_json(&doc.to_string()).unwrap().compile().unwrap();
    let at = |ip: &str| SignIn {
        ip: ip.parse().unwrap(),
        ..signin()
    };
    assert_eq!(decide(&c, &at("12.34.223.255")), mfa());
    assert_eq!(decide(&c, &at("12.34.224.0")), Decision::Allow);
    assert_eq!(decide(&c, &at("2001:0:9d38:90d7::1")), mfa());
    assert_eq!(decide(&c, &at("2001:0:9d38:90d8::1")), Decision::Allow);
}

#[test]
fn malformed_ranges_are_refused_naming_the_field() {
    let cases = [
        ("10.0.0.0/33", "prefix length 33 is longer than 32 bits"),
        (
            "10.0.0.1/8",
            "`10.0.0.1/8` has host bits set below the prefix; the network is `10.0.0.0/8`",
        ),
        ("::1/129", "prefix length 129 is longer than 128 bits"),
        (
            "2001:db8::1/32",
            "`2001:db8::1/32` has host bits set below the prefix; the network is `2001:db8::/32`",
        ),
        (
            "garbage",
            "`garbage` is not in CIDR notation (address/prefix length)",
        ),
        ("300.1.1.1/32", "`300.1.1.1` is not an IPv4 or IPv6 address"),
        ("10.0.0.0/x", "prefix length `x` is not a number"),
    ];
    for (range, reason) in cases {
        let doc = json!({"namedLocations": [{"id": "office", "displayName": "Office",
                         "ipRanges": ["192.0.2.0/24", range]}], "policies": []});
        let err = PolicySet::from_json(&doc.to_string())
            .unwrap()
            .compile()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            message("namedLocations[0] (Office).ipRanges[1]", reason),
            "{range}"
        );
        assert!(matches!(err, ConfigError::Invalid { field, .. } if field == CONFIG_FIELD));
    }
}

// ---------------------------------------------------------------- report-only, block, grants

#[test]
fn report_only_is_explained_never_enforced() {
    let mut block = policy("Block everyone (report-only)", json!({}), &["block"]);
    block["state"] = json!("enabledForReportingButNotEnforced");
    let mut mfa_ro = policy("MFA (report-only)", json!({}), &["mfa"]);
    mfa_ro["state"] = json!("enabledForReportingButNotEnforced");
    let mut off = policy("Old block", json!({}), &["block"]);
    off["state"] = json!("disabled");
    let c = compile(vec![block, mfa_ro, off]);
    assert_eq!(decide(&c, &signin()), Decision::Allow);
    let e = c.explain(&signin());
    let lines: Vec<String> = e.policies.iter().map(|p| p.to_string()).collect();
    assert_eq!(
        lines,
        [
            "`Block everyone (report-only)` (report-only): applied: would block",
            "`MFA (report-only)` (report-only): applied: would require mfa; not satisfied",
            "`Old block`: not applied: state: the policy is disabled",
        ]
    );
    match &e.policies[0].outcome {
        PolicyOutcome::Applied {
            controls,
            satisfied,
            report_only,
        } => {
            assert!(controls.block && !satisfied && *report_only);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn block_wins_over_grants_in_any_order() {
    for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
        let all = [
            policy("MFA", json!({}), &["mfa"]),
            policy(
                "Block CRM",
                json!({"applications": {"includeApplications": ["app-crm"]}}),
                &["block"],
            ),
            policy("Block all", json!({}), &["block"]),
        ];
        let c = compile(order.iter().map(|&i| all[i].clone()).collect());
        let first_block = order
            .iter()
            .find(|&&i| i != 0)
            .map(|&i| if i == 1 { "Block CRM" } else { "Block all" });
        let everything = SignIn {
            satisfied: Satisfied {
                mfa: true,
                compliant_device: true,
                domain_joined_device: true,
                terms_accepted: &[],
            },
            ..signin()
        };
        for s in [signin(), everything] {
            assert_eq!(
                decide(&c, &s),
                Decision::Block {
                    policy: Arc::from(first_block.unwrap())
                },
                "{order:?}"
            );
        }
    }
}

#[test]
fn and_and_or_operators() {
    let and = json!({"displayName": "Both", "state": "enabled",
        "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]}},
        "grantControls": {"operator": "AND", "builtInControls": ["mfa", "compliantDevice"]}});
    let c = compile(vec![and]);
    assert_eq!(decide(&c, &signin()), require(true, true, false, &[]));
    let with_mfa = SignIn {
        satisfied: Satisfied {
            mfa: true,
            ..Satisfied::default()
        },
        ..signin()
    };
    assert_eq!(decide(&c, &with_mfa), require(false, true, false, &[]));

    let or = json!({"displayName": "Either", "state": "enabled",
        "conditions": {"users": {"includeUsers": ["All"]}, "applications": {"includeApplications": ["All"]}},
        "grantControls": {"operator": "OR", "builtInControls": ["mfa", "compliantDevice"]}});
    let c = compile(vec![or]);
    assert_eq!(decide(&c, &with_mfa), Decision::Allow);
    let d = decide(&c, &signin());
    assert_eq!(
        d,
        Decision::Require {
            missing: RequiredControls {
                one_of: vec![Controls {
                    mfa: true,
                    compliant_device: true,
                    ..Controls::default()
                }],
                ..RequiredControls::default()
            },
            sign_in_frequency: None,
        }
    );
    assert_eq!(d.to_string(), "require one of (mfa or compliantDevice)");
    assert!(!d.allows_sign_in());
}

#[test]
fn every_applying_policys_grants_are_required() {
    let mut either = policy(
        "Either device",
        json!({}),
        &["compliantDevice", "domainJoinedDevice"],
    );
    either["grantControls"]["operator"] = json!("OR");
    let mut mfa_or_device = policy("MFA or compliant", json!({}), &["mfa", "compliantDevice"]);
    mfa_or_device["grantControls"]["operator"] = json!("OR");
    let c = compile(vec![
        policy("MFA", json!({}), &["mfa"]),
        either,
        mfa_or_device,
        policy(
            "Other app",
            json!({"applications": {"includeApplications": ["app-hr"]}}),
            &["domainJoinedDevice"],
        ),
    ]);
    let d = decide(&c, &signin());
    assert_eq!(
        d,
        Decision::Require {
            missing: RequiredControls {
                mfa: true,
                one_of: vec![Controls {
                    compliant_device: true,
                    domain_joined_device: true,
                    ..Controls::default()
                }],
                ..RequiredControls::default()
            },
            sign_in_frequency: None,
        },
        "the mfa-or-compliant choice is settled by the required mfa"
    );
    assert_eq!(
        d.to_string(),
        "require mfa and one of (compliantDevice or domainJoinedDevice)"
    );
    let stepped_up = Satisfied {
        mfa: true,
        domain_joined_device: true,
        ..Satisfied::default()
    };
    assert!(d.missing().unwrap().is_satisfied_by(&stepped_up));
    assert!(!d.missing().unwrap().is_satisfied_by(&Satisfied {
        mfa: true,
        ..Satisfied::default()
    }));
    assert_eq!(
        decide(
            &c,
            &SignIn {
                satisfied: stepped_up,
                ..signin()
            }
        ),
        Decision::Allow
    );
}

#[test]
fn terms_of_use_by_id() {
    let mut terms = policy("Guest terms", json!({}), &[]);
    terms["grantControls"] = json!({"operator": "AND", "termsOfUse": ["tou-guests", "tou-privacy"]});
    let mut or_terms = policy("Any terms or MFA", json!({}), &["mfa"]);
    or_terms["grantControls"]["operator"] = json!("OR");
    or_terms["grantControls"]["termsOfUse"] = json!(["tou-privacy"]);
    let c = compile(vec![terms, or_terms]);
    assert_eq!(
        decide(&c, &signin()),
        require(false, false, false, &["tou-guests", "tou-privacy"]),
        "the OR choice is settled by the required tou-privacy"
    );
    let accepted = SignIn {
        satisfied: Satisfied {
            terms_accepted: &["tou-privacy", "tou-unrelated"],
            ..Satisfied::default()
        },
        ..signin()
    };
    let d = decide(&c, &accepted);
    assert_eq!(d, require(false, false, false, &["tou-guests"]));
    assert_eq!(d.to_string(), "require termsOfUse `tou-guests`");
    let both = SignIn {
        satisfied: Satisfied {
            terms_accepted: &["tou-guests", "tou-privacy"],
            ..Satisfied::default()
        },
        ..signin()
    };
    assert_eq!(decide(&c, &both), Decision::Allow);
}

#[test]
fn strictest_sign_in_frequency_wins() {
    let with_frequency = |name: &str, f: Value| {
        let mut p = policy(name, json!({}), &[]);
        p.as_object_mut().unwrap().remove("grantControls");
        p["sessionControls"] = json!({"signInFrequency": f});
        p
    };
    let c = compile(vec![
        with_frequency("Daily", json!({"value": 1, "type": "days", "isEnabled": true})),
        with_frequency(
            "Four hours",
            json!({"value": 4, "type": "hours", "isEnabled": true,
                                            "authenticationType": "primaryAndSecondaryAuthentication",
                                            "frequencyInterval": "timeBased"}),
        ),
        policy("Off", json!({}), &["mfa"])
            .with_session(json!({"signInFrequency": {"value": 1, "type": "hours",
                                                                                  "isEnabled": false}})),
        with_frequency(
            "Every time for HR",
            json!({"frequencyInterval": "everyTime", "isEnabled": true}),
        )
        .tap_apps(&["app-hr"]),
        policy("MFA", json!({}), &["mfa"]),
    ]);
    let d = decide(&c, &signin());
    assert_eq!(
        d,
        Decision::Require {
            missing: RequiredControls {
                mfa: true,
                ..RequiredControls::default()
            },
            sign_in_frequency: Some(Duration::hours(4)),
        }
    );
    assert_eq!(d.to_string(), "require mfa; sign in again after 4 hours");
    let done = SignIn {
        satisfied: Satisfied {
            mfa: true,
            ..Satisfied::default()
        },
        ..signin()
    };
    let d = decide(&c, &done);
    assert_eq!(d.missing(), Some(&RequiredControls::default()));
    assert!(d.allows_sign_in(), "nothing missing: a session limit only");
    assert_eq!(d.sign_in_frequency(), Some(Duration::hours(4)));
    let hr = SignIn {
        application_id: "app-hr",
        ..done
    };
    assert_eq!(decide(&c, &hr).sign_in_frequency(), Some(Duration::ZERO));
}

trait TapApps {
    fn tap_apps(self, apps: &[&str]) -> Self;
}

impl TapApps for Value {
    fn tap_apps(mut self, apps: &[&str]) -> Self {
        self["conditions"]["applications"] = json!({"includeApplications": apps});
        self
    }
}

// ---------------------------------------------------------------- explanation

#[test]
fn explanation_lists_every_policy_with_its_first_unmet_condition() {
    let mut off = policy("Off", json!({}), &["block"]);
    off["state"] = json!("disabled");
    let c = compile(vec![
        off,
        policy(
            "Other users",
            json!({"users": {"includeUsers": ["u-bob"]}, "applications": {"includeApplications": ["app-none"]}}),
            &["block"],
        ),
        policy(
            "Excluded group",
            json!({"users": {"includeUsers": ["All"], "excludeGroups": ["g-x", "g-vip"]},
                   "clientAppTypes": ["other"]}),
            &["block"],
        ),
        policy(
            "Other app",
            json!({"applications": {"includeApplications": ["app-hr"]}, "clientAppTypes": ["other"]}),
            &["block"],
        ),
        policy(
            "Legacy clients",
            json!({"clientAppTypes": ["exchangeActiveSync", "other"]}),
            &["block"],
        ),
        policy(
            "Branch only",
            json!({"locations": {"includeLocations": ["branch"]}}),
            &["block"],
        ),
        policy(
            "Not from HQ",
            json!({"locations": {"includeLocations": ["All"], "excludeLocations": ["hq"]}}),
            &["block"],
        ),
        policy("MFA", json!({}), &["mfa"]),
        policy("Done", json!({}), &[]).with_grant(json!({"builtInControls": ["compliantDevice"]})),
    ]);
    let s = SignIn {
        groups: &["g-vip"],
        ip: "203.0.113.5".parse().unwrap(),
        satisfied: Satisfied {
            compliant_device: true,
            ..Satisfied::default()
        },
        ..signin()
    };
    let e = c.explain(&s);
    assert_eq!(e.decision, c.evaluate(&s));
    assert_eq!(
        e.to_string(),
        "decision: require mfa\n\
         - `Off`: not applied: state: the policy is disabled\n\
         - `Other users`: not applied: users: the user is in none of includeUsers, includeGroups and includeGuestsOrExternalUsers\n\
         - `Excluded group`: not applied: users: the user is excluded by excludeGroups `g-vip`\n\
         - `Other app`: not applied: applications: the application is not in includeApplications\n\
         - `Legacy clients`: not applied: clientAppTypes: `browser` is not in clientAppTypes\n\
         - `Branch only`: not applied: locations: the IP address is in none of includeLocations\n\
         - `Not from HQ`: not applied: locations: the IP address is in excluded location `Contoso HQ` (`hq`)\n\
         - `MFA`: applied: mfa; not satisfied\n\
         - `Done`: applied: compliantDevice; satisfied"
    );
    let conditions: Vec<&str> = e
        .policies
        .iter()
        .map(|p| match &p.outcome {
            PolicyOutcome::NotApplied { reason } => reason.condition(),
            PolicyOutcome::Applied { .. } => "applied",
        })
        .collect();
    assert_eq!(
        conditions,
        [
            "state",
            "users",
            "users",
            "applications",
            "clientAppTypes",
            "locations",
            "locations",
            "applied",
            "applied"
        ]
    );
    let names: Vec<&str> = c.policy_names().collect();
    let explained: Vec<&str> = e.policies.iter().map(|p| p.policy).collect();
    assert_eq!(names, explained, "configured order");
}

trait WithGrant {
    fn with_grant(self, grant: Value) -> Self;
    fn with_session(self, session: Value) -> Self;
}

impl WithGrant for Value {
    fn with_grant(mut self, grant: Value) -> Self {
        self["grantControls"] = grant;
        self
    }

    fn with_session(mut self, session: Value) -> Self {
        self["sessionControls"] = session;
        self
    }
}

// ---------------------------------------------------------------- loading

/// A set as Graph returns it: metadata, unsupported conditions left empty
/// or null, guest types as a comma-separated string.
const GRAPH_SET: &str = r##"{
  "namedLocations": [
    {
      "@odata.type": "#microsoft.graph.ipNamedLocation",
      "id": "0854951d-5fc0-4eb1-b392-9b2c9d7949c2",
      "displayName": "Contoso offices",
      "modifiedDateTime": "2021-01-01T00:00:00Z",
      "createdDateTime": "2021-01-01T00:00:00Z",
      "isTrusted": true,
      "ipRanges": [
        {"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": "203.0.113.0/24"},
        {"@odata.type": "#microsoft.graph.iPv6CidrRange", "cidrAddress": "2001:db8::/32"}
      ]
    }
  ],
  "policies": [
    {
      "id": "2b31ac51-b855-40a6-a986-0a4ed1a0b0b7",
      "templateId": null,
      "displayName": "Require multifactor authentication for guest access",
      "createdDateTime": "2023-06-01T12:00:00Z",
      "modifiedDateTime": null,
      "state": "enabled",
      "sessionControls": null,
      "conditions": {
        "userRiskLevels": [],
        "signInRiskLevels": [],
        "clientAppTypes": ["all"],
        "servicePrincipalRiskLevels": [],
        "insiderRiskLevels": null,
        "platforms": null,
        "locations": null,
        "devices": null,
        "clientApplications": null,
        "authenticationFlows": null,
        "applications": {
          "includeApplications": ["All"],
          "excludeApplications": [],
          "includeUserActions": [],
          "includeAuthenticationContextClassReferences": [],
          "applicationFilter": null
        },
        "users": {
          "includeUsers": [],
          "excludeUsers": [],
          "includeGroups": [],
          "excludeGroups": ["9c8b1c43-0f0c-4a7a-8c34-1e0c6a0f3b1e"],
          "includeRoles": [],
          "excludeRoles": [],
          "includeGuestsOrExternalUsers": {
            "guestOrExternalUserTypes": "internalGuest,b2bCollaborationGuest,b2bCollaborationMember,b2bDirectConnectUser,otherExternalUser,serviceProvider",
            "externalTenants": {
              "@odata.type": "#microsoft.graph.conditionalAccessAllExternalTenants",
              "membershipKind": "all"
            }
          },
          "excludeGuestsOrExternalUsers": null
        }
      },
      "grantControls": {
        "operator": "OR",
        "builtInControls": ["mfa"],
        "customAuthenticationFactors": [],
        "termsOfUse": [],
        "authenticationStrength@odata.context": "https://graph.microsoft.com/v1.0/$metadata#identity/conditionalAccess/policies('2b31ac51-b855-40a6-a986-0a4ed1a0b0b7')/grantControls/authenticationStrength/$entity",
        "authenticationStrength": null
      }
    },
    {
      "id": "8f8c3b1e-3a1c-4f55-9d6e-1b0e2f8a9c00",
      "displayName": "Block legacy authentication",
      "state": "enabled",
      "conditions": {
        "clientAppTypes": ["exchangeActiveSync", "other"],
        "applications": {"includeApplications": ["All"]},
        "users": {"includeUsers": ["All"], "excludeUsers": ["a1b2c3d4-0000-0000-0000-00000000b1a5"]}
      },
      "grantControls": {"operator": "OR", "builtInControls": ["block"]}
    },
    {
      "id": "0a7c1e59-0d43-4b0f-8c0e-4e1d2a3b4c5d",
      "displayName": "Guests outside the offices accept terms, sign in every 8 hours",
      "state": "enabledForReportingButNotEnforced",
      "conditions": {
        "clientAppTypes": ["browser", "mobileAppsAndDesktopClients"],
        "applications": {"includeApplications": ["00000003-0000-0ff1-ce00-000000000000"]},
        "users": {"includeUsers": ["GuestsOrExternalUsers"]},
        "locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}
      },
      "grantControls": {"operator": "AND", "builtInControls": [], "termsOfUse": ["b6a7c8d9-guest-terms"]},
      "sessionControls": {
        "applicationEnforcedRestrictions": null,
        "cloudAppSecurity": null,
        "persistentBrowser": null,
        "disableResilienceDefaults": null,
        "continuousAccessEvaluation": null,
        "secureSignInSession": null,
        "signInFrequency": {
          "value": 8,
          "type": "hours",
          "authenticationType": "primaryAndSecondaryAuthentication",
          "frequencyInterval": "timeBased",
          "isEnabled": true
        }
      }
    }
  ]
}"##;

const TOML_SET: &str = r#"
[[namedLocations]]
id = "0854951d-5fc0-4eb1-b392-9b2c9d7949c2"
displayName = "Contoso offices"
isTrusted = true
ipRanges = ["203.0.113.0/24", "2001:db8::/32"]

[[policies]]
id = "2b31ac51-b855-40a6-a986-0a4ed1a0b0b7"
displayName = "Require multifactor authentication for guest access"
state = "enabled"
[policies.conditions]
clientAppTypes = ["all"]
[policies.conditions.applications]
includeApplications = ["All"]
[policies.conditions.users]
excludeGroups = ["9c8b1c43-0f0c-4a7a-8c34-1e0c6a0f3b1e"]
[policies.conditions.users.includeGuestsOrExternalUsers]
guestOrExternalUserTypes = ["internalGuest", "b2bCollaborationGuest", "b2bCollaborationMember", "b2bDirectConnectUser", "otherExternalUser", "serviceProvider"]
externalTenants = { membershipKind = "all" }
[policies.grantControls]
operator = "OR"
builtInControls = ["mfa"]

[[policies]]
id = "8f8c3b1e-3a1c-4f55-9d6e-1b0e2f8a9c00"
displayName = "Block legacy authentication"
state = "enabled"
[policies.conditions]
clientAppTypes = ["exchangeActiveSync", "other"]
applications = { includeApplications = ["All"] }
users = { includeUsers = ["All"], excludeUsers = ["a1b2c3d4-0000-0000-0000-00000000b1a5"] }
[policies.grantControls]
operator = "OR"
builtInControls = ["block"]

[[policies]]
id = "0a7c1e59-0d43-4b0f-8c0e-4e1d2a3b4c5d"
displayName = "Guests outside the offices accept terms, sign in every 8 hours"
state = "enabledForReportingButNotEnforced"
[policies.conditions]
clientAppTypes = ["browser", "mobileAppsAndDesktopClients"]
applications = { includeApplications = ["00000003-0000-0ff1-ce00-000000000000"] }
users = { includeUsers = ["GuestsOrExternalUsers"] }
locations = { includeLocations = ["All"], excludeLocations = ["AllTrusted"] }
[policies.grantControls]
operator = "AND"
termsOfUse = ["b6a7c8d9-guest-terms"]
[policies.sessionControls.signInFrequency]
value = 8
type = "hours"
authenticationType = "primaryAndSecondaryAuthentication"
frequencyInterval = "timeBased"
isEnabled = true
"#;

#[test]
fn graph_json_and_toml_load_the_same_set() {
    let json = PolicySet::from_json(GRAPH_SET).unwrap();
    let toml = PolicySet::from_toml(TOML_SET).unwrap();
    assert_eq!(json, toml);
    assert_eq!(json.policies.len(), 3);
    assert_eq!(
        json.policies[0]
            .conditions
            .users
            .include_guests_or_external_users
            .as_ref()
            .unwrap()
            .guest_or_external_user_types
            .len(),
        6
    );
    // Written back in Graph's shape, the set reads the same.
    let again = PolicySet::from_json(&serde_json::to_string(&json).unwrap()).unwrap();
    assert_eq!(again, json);

    let c = json.compile().unwrap();
    let guest = SignIn {
        user_id: "0b8e2d5a-guest",
        user_kind: UserKind::B2bCollaborationGuest,
        home_tenant: Some("fabrikam"),
        application_id: "00000003-0000-0ff1-ce00-000000000000",
        ..signin()
    };
    assert_eq!(decide(&c, &guest), mfa());
    let e = c.explain(&guest);
    assert_eq!(
        e.policies[2].to_string(),
        "`Guests outside the offices accept terms, sign in every 8 hours` (report-only): applied: \
         would require termsOfUse `b6a7c8d9-guest-terms`; sign in again after 8 hours; not satisfied"
    );
    let legacy = SignIn {
        client_app: ClientAppType::ExchangeActiveSync,
        ..guest
    };
    assert_eq!(
        decide(&c, &legacy),
        Decision::Block {
            policy: Arc::from("Block legacy authentication")
        }
    );
    let breakglass = SignIn {
        user_id: "a1b2c3d4-0000-0000-0000-00000000b1a5",
        client_app: ClientAppType::ExchangeActiveSync,
        ..signin()
    };
    assert_eq!(decide(&c, &breakglass), Decision::Allow);
}

#[test]
fn parse_errors_name_the_path_and_the_policy() {
    let policy0 = "policies[0] (Require multifactor authentication for guest access)";
    let bad = GRAPH_SET.replacen(r#""signInRiskLevels": []"#, r#""signInRiskLevels": ["high"]"#, 1);
    assert_eq!(
        PolicySet::from_json(&bad).unwrap_err().to_string(),
        message(
            &format!("{policy0}.conditions.signInRiskLevels"),
            "is not evaluated by guestpass; it must be empty or null at line 27 column 36"
        )
    );
    let bad = GRAPH_SET.replacen(r#""excludeUsers": []"#, r#""excludeUser": []"#, 1);
    assert_eq!(
        PolicySet::from_json(&bad).unwrap_err().to_string(),
        message(
            &format!("{policy0}.conditions.users.excludeUser"),
            "unknown field `excludeUser`, expected one of `includeUsers`, `excludeUsers`, `includeGroups`, \
             `excludeGroups`, `includeGuestsOrExternalUsers`, `excludeGuestsOrExternalUsers`, `includeRoles`, \
             `excludeRoles` at line 45 column 23"
        )
    );
    let bad = GRAPH_SET.replacen(
        r#""builtInControls": ["mfa"]"#,
        r#""builtInControls": ["approvedApplication"]"#,
        1,
    );
    assert_eq!(
        PolicySet::from_json(&bad).unwrap_err().to_string(),
        message(
            &format!("{policy0}.grantControls.builtInControls[0]"),
            "unknown variant `approvedApplication`, expected one of `block`, `mfa`, `compliantDevice`, \
             `domainJoinedDevice` at line 62 column 49"
        )
    );
    let bad = TOML_SET.replacen(r#"type = "hours""#, r#"type = "weeks""#, 1);
    assert_eq!(
        PolicySet::from_toml(&bad).unwrap_err().to_string(),
        message(
            "policies[2] (Guests outside the offices accept terms, sign in every 8 hours).sessionControls.signInFrequency.type",
            "unknown variant `weeks`, expected `hours` or `days`"
        )
    );
    assert_eq!(
        PolicySet::from_json("{\"policies\": [").unwrap_err().to_string(),
        message("policies", "EOF while parsing a list at line 1 column 14")
    );
    assert_eq!(
        PolicySet::from_toml("[[policies]\n").unwrap_err().to_string(),
        message(".", "unclosed array table, expected `]`")
    );
    let e = PolicySet::from_json(
        r#"{"policies": [{"displayName": "x", "state": "enabled",
        "conditions": {"users": {"includeGuestsOrExternalUsers": {"guestOrExternalUserTypes": "internalGuest,member"}},
        "applications": {"includeApplications": ["All"]}}}]}"#,
    )
    .unwrap_err()
    .to_string();
    assert_eq!(
        e,
        message(
            "policies[0] (x).conditions.users.includeGuestsOrExternalUsers.guestOrExternalUserTypes",
            "unknown guest or external user type `member`, expected internalGuest, b2bCollaborationGuest, \
             b2bCollaborationMember, b2bDirectConnectUser, otherExternalUser, serviceProvider at line 2 column 116"
        )
    );
}

// ---------------------------------------------------------------- validation

#[test]
fn validation_names_the_policy_and_field() {
    let named =
        |name: &str, conditions: Value, grant: &[&str]| compile_error(vec![policy(name, conditions, grant)]);
    assert_eq!(
        named(
            "Require MFA for guests",
            json!({"locations": {"includeLocations": ["nowhere"]}}),
            &["mfa"]
        ),
        message(
            "policies[0] (Require MFA for guests).conditions.locations.includeLocations[0]",
            "no named location has id `nowhere`"
        )
    );
    assert_eq!(
        named("P", json!({"users": {"includeUsers": []}}), &["mfa"]),
        message(
            "policies[0] (P).conditions.users.includeUsers",
            "the policy must include users: user ids, `All`, `GuestsOrExternalUsers` or `None` in \
             includeUsers, includeGroups, or includeGuestsOrExternalUsers"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"applications": {"includeApplications": []}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.applications.includeApplications",
            "the policy must include applications: application ids, `All` or `None`"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"users": {"includeUsers": ["All"], "excludeUsers": ["All"]}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.users.excludeUsers[0]",
            "excluding `All` leaves no user the policy could apply to"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"applications": {"includeApplications": ["All"], "excludeApplications": ["all"]}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.applications.excludeApplications[0]",
            "excluding `All` leaves no application the policy could apply to"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"locations": {"includeLocations": ["All"], "excludeLocations": ["All"]}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.locations.excludeLocations[0]",
            "excluding `All` leaves no location the policy could apply to"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"users": {"includeUsers": ["u-1", "u-2"], "excludeUsers": ["u-2"]}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.users.includeUsers[1]",
            "`u-2` is also in excludeUsers, which wins: this include can never apply"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"users": {"includeGroups": ["g"], "excludeGroups": ["g"]}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.users.includeGroups[0]",
            "`g` is also in excludeGroups, which wins: this include can never apply"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"locations": {"includeLocations": ["hq"], "excludeLocations": ["AllTrusted"]}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.locations.includeLocations[0]",
            "`hq` is trusted and excludeLocations has `AllTrusted`, which wins: this include can never apply"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"users": {"includeUsers": ["GuestsOrExternalUsers"], "excludeUsers": ["GuestsOrExternalUsers"]}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.users.includeUsers[0]",
            "every guest or external user is also excluded, which wins: this include can never apply"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"users": {
                "includeGuestsOrExternalUsers": {"guestOrExternalUserTypes": "b2bCollaborationGuest",
                    "externalTenants": {"membershipKind": "enumerated", "members": ["t1"]}},
                "excludeGuestsOrExternalUsers": {"guestOrExternalUserTypes": "b2bCollaborationGuest,internalGuest"}}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.users.includeGuestsOrExternalUsers",
            "every user it includes is also excluded, which wins: this include can never apply"
        )
    );
    assert_eq!(
        named(
            "P",
            json!({"users": {"includeGuestsOrExternalUsers": {"guestOrExternalUserTypes": "b2bCollaborationGuest",
                    "externalTenants": {"membershipKind": "enumerated", "members": []}}}}),
            &["mfa"]
        ),
        message(
            "policies[0] (P).conditions.users.includeGuestsOrExternalUsers.externalTenants.members",
            "an enumerated list must name at least one tenant (or use membershipKind `all`)"
        )
    );
    assert_eq!(
        named("P", json!({"users": {"includeUsers": ["None", "u-1"]}}), &["mfa"]),
        message(
            "policies[0] (P).conditions.users.includeUsers[0]",
            "`None` cannot be combined with other includes"
        )
    );
    assert_eq!(
        named("P", json!({"clientAppTypes": []}), &["mfa"]),
        message(
            "policies[0] (P).conditions.clientAppTypes",
            "must list at least one client app type (`all` for every client)"
        )
    );
    assert_eq!(
        named("P", json!({}), &["block", "mfa"]),
        message(
            "policies[0] (P).grantControls.builtInControls[0]",
            "`block` cannot be combined with other controls"
        )
    );
    assert_eq!(
        named("P", json!({}), &[]),
        message(
            "policies[0] (P).grantControls.builtInControls",
            "must list at least one control (or leave grantControls out)"
        )
    );
    let mut no_operator = policy("P", json!({}), &["mfa", "compliantDevice"]);
    no_operator["grantControls"]
        .as_object_mut()
        .unwrap()
        .remove("operator");
    assert_eq!(
        compile_error(vec![no_operator]),
        message(
            "policies[0] (P).grantControls.operator",
            "`AND` or `OR` is required when more than one control is listed"
        )
    );
    let mut nothing = policy("P", json!({}), &[]);
    nothing.as_object_mut().unwrap().remove("grantControls");
    assert_eq!(
        compile_error(vec![nothing.clone()]),
        message(
            "policies[0] (P).grantControls",
            "a policy needs grant controls or an enabled session control"
        )
    );
    let mut hours = nothing;
    hours["sessionControls"] = json!({"signInFrequency": {"value": 24, "type": "hours"}});
    assert_eq!(
        compile_error(vec![hours]),
        message(
            "policies[0] (P).sessionControls.signInFrequency.value",
            "hours must be 1 to 23 (use days)"
        )
    );
}

#[test]
fn duplicate_names_and_ids_are_refused() {
    assert_eq!(
        compile_error(vec![
            policy("Require MFA", json!({}), &["mfa"]),
            policy("require mfa", json!({}), &["mfa"]),
        ]),
        message(
            "policies[1] (require mfa).displayName",
            "policies[0] has the same display name"
        )
    );
    let mut a = policy("A", json!({}), &["mfa"]);
    a["id"] = json!("p-1");
    let mut b = policy("B", json!({}), &["mfa"]);
    b["id"] = json!("p-1");
    assert_eq!(
        compile_error(vec![a, b]),
        message("policies[1] (B).id", "policies[0] has the same id `p-1`")
    );
    let doc = json!({"namedLocations": [
        {"id": "x", "displayName": "X", "ipRanges": ["10.0.0.0/8"]},
        {"id": "x", "displayName": "Y", "ipRanges": ["11.0.0.0/8"]}], "policies": []});
    assert_eq!(
        PolicySet::from_json(&doc.to_string())
            .unwrap()
            .compile()
            .unwrap_err()
            .to_string(),
        message(
            "namedLocations[1] (Y).id",
            "namedLocations[0] has the same id `x`"
        )
    );
    let doc =
        json!({"namedLocations": [{"id": "AllTrusted", "displayName": "X", "ipRanges": ["10.0.0.0/8"]}]});
    assert_eq!(
        PolicySet::from_json(&doc.to_string())
            .unwrap()
            .compile()
            .unwrap_err()
            .to_string(),
        message(
            "namedLocations[0] (X).id",
            "`AllTrusted` is a keyword of includeLocations"
        )
    );
    let doc = json!({"namedLocations": [{"id": "x", "displayName": "X", "ipRanges": []}]});
    assert_eq!(
        PolicySet::from_json(&doc.to_string())
            .unwrap()
            .compile()
            .unwrap_err()
            .to_string(),
        message("namedLocations[0] (X).ipRanges", "must list at least one range")
    );
}

// ---------------------------------------------------------------- limits

#[test]
fn too_large_sets_are_refused_quickly() {
    // 100,000 policies: parsing stops at the 501st.
    let one = policy("P", json!({}), &["mfa"]).to_string();
    let mut doc = String::from(r#"{"policies": ["#);
    for i in 0..100_000 {
        if i > 0 {
            doc.push(',');
        }
        doc.push_str(&one);
    }
    doc.push_str("]}");
    let start = Instant::now();
    let e = PolicySet::from_json(&doc).unwrap_err().to_string();
    let took = start.elapsed();
    let at = format!("at line 1 column {}", (one.len() + 1) * (MAX_POLICIES + 1) + 14);
    assert_eq!(
        e,
        message("policies", &format!("more than {MAX_POLICIES} entries {at}"))
    );
    assert!(took.as_secs_f64() < 2.0, "took {took:?}");

    // Built in code, compile refuses before looking at any policy.
    let p: ConditionalAccessPolicy = serde_json::from_value(policy("P", json!({}), &["mfa"])).unwrap();
    let set = PolicySet {
        named_locations: vec![],
        policies: vec![p; MAX_POLICIES + 1],
    };
    let start = Instant::now();
    assert_eq!(
        set.compile().unwrap_err().to_string(),
        message("policies", "more than 500 entries")
    );
    assert!(start.elapsed().as_secs_f64() < 1.0);

    let ranges: Vec<String> = (0..2001)
        .map(|i| format!("10.{}.{}.0/24", i / 256, i % 256))
        .collect();
    let doc = json!({"namedLocations": [{"id": "x", "displayName": "X", "ipRanges": ranges}]});
    let e = PolicySet::from_json(&doc.to_string()).unwrap_err().to_string();
    assert!(
        e.starts_with(&message(
            "namedLocations[0] (X).ipRanges",
            "more than 2000 entries at line 1 column"
        )),
        "{e}"
    );
    let many: Vec<Value> = (0..1001)
        .map(|i| json!({"id": format!("l{i}"), "displayName": format!("L{i}"), "ipRanges": ["10.0.0.0/8"]}))
        .collect();
    let doc = json!({"namedLocations": many});
    let e = PolicySet::from_json(&doc.to_string()).unwrap_err().to_string();
    assert!(
        e.starts_with(&message(
            "namedLocations",
            "more than 1000 entries at line 1 column"
        )),
        "{e}"
    );
    let terms: Vec<Value> = (0..65)
        .map(|i| {
            policy(&format!("T{i}"), json!({}), &[]).with_grant(json!({"termsOfUse": [format!("tou-{i}")]}))
        })
        .collect();
    assert_eq!(
        compile_error(terms),
        message(
            "policies[64] (T64).grantControls.termsOfUse[0]",
            "more than 64 distinct terms of use in the set"
        )
    );
}

#[test]
fn a_full_set_compiles_and_evaluates() {
    // 500 policies, 1000 locations of 20 ranges each: within the limits.
    let locations: Vec<Value> = (0..1000)
        .map(|i| {
            let ranges: Vec<String> = (0..20)
                .map(|j| format!("10.{}.{}.0/24", i % 250, j + 20 * (i / 250)))
                .collect();
            json!({"id": format!("l{i}"), "displayName": format!("L{i}"), "ipRanges": ranges})
        })
        .collect();
    let policies: Vec<Value> = (0..500)
        .map(|i| {
            policy(
                &format!("P{i}"),
                json!({"users": {"includeGroups": [format!("g{i}")]},
                       "locations": {"includeLocations": [format!("l{}", i * 2)]}}),
                &["mfa"],
            )
        })
        .collect();
    let doc = json!({"namedLocations": locations, "policies": policies}).to_string();
    let c = PolicySet::from_json(&doc).unwrap().compile().unwrap();
    assert_eq!(c.len(), 500);
    // P499 uses l998: 10.248.(0..20 + 60).0/24.
    let s = SignIn {
        groups: &["g499"],
        ip: "10.248.61.1".parse().unwrap(),
        ..signin()
    };
    assert_eq!(decide(&c, &s), mfa());
    let s = SignIn {
        groups: &["g499"],
        ip: "10.248.81.1".parse().unwrap(),
        ..signin()
    };
    assert_eq!(decide(&c, &s), Decision::Allow);
}

#[test]
fn compiled_policies_are_shareable() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<CompiledPolicies>();
    shareable::<Decision>();
    let c = compile(vec![policy("MFA", json!({}), &["mfa"])]);
    assert_eq!(
        format!("{c:?}").split_once(' ').map(|(name, _)| name),
        Some("CompiledPolicies")
    );
    assert_eq!(c.policy_names().collect::<Vec<_>>(), ["MFA"]);
    assert!(!c.is_empty());
}

#[test]
fn an_unknown_address_meets_every_location_condition() {
    let c = compile(vec![
        policy(
            "Block branch",
            json!({"locations": {"includeLocations": ["branch"]}}),
            &["block"],
        ),
        policy(
            "MFA outside trusted",
            json!({"locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}}),
            &["mfa"],
        ),
    ]);
    for unknown in ["0.0.0.0", "::", "::ffff:0.0.0.0"] {
        let s = SignIn {
            ip: unknown.parse().unwrap(),
            ..signin()
        };
        assert_eq!(
            decide(&c, &s),
            Decision::Block {
                policy: Arc::from("Block branch")
            },
            "{unknown}: an include applies"
        );
        assert_eq!(reason(&c, &s, 1), None, "{unknown}: an exclude does not exempt");
    }
    // A known address outside both named locations: only the MFA policy.
    let known = SignIn {
        ip: "198.51.100.7".parse().unwrap(),
        ..signin()
    };
    assert_eq!(decide(&c, &known), mfa());
}
