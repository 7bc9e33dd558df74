//! Benchmarks of conditional access, group `policy`:
//!
//! - `evaluate_50`: one realistic guest sign-in decided against 50
//!   conditional access policies (blocks, MFA, device, terms of use, sign-in
//!   frequency, report-only and disabled policies; conditions on users,
//!   groups, guest types, partner tenants, applications, client app types
//!   and 20 named locations of IPv4 and IPv6 ranges), together with what a
//!   host does around it: the guest's domain checked against a 500-domain
//!   allow list ([`DomainRestriction`]), and the partner's cross-tenant
//!   access settings (100 partner configurations) asked whether the guest
//!   may come in and which home-tenant claims count
//!   ([`CrossTenantSettings`]).
//! - `explain_50`: the same, with the What-If explanation of every policy
//!   instead of the bare decision.
//! - `baseline_cedar_50`: the same 50 policies written as Cedar `forbid`
//!   policies (one per enforced policy: its conditions, and unless it
//!   blocks, "and its grant controls are not met") beside one `permit`,
//!   decided by cedar-policy's `Authorizer::is_authorized`. Policies,
//!   entities (the user with its groups, the named locations with their
//!   ranges as `ipaddr` attributes) and the request are built once, outside
//!   the timed loop; the loop times the authorization alone.
//!
//! Before timing, the setup checks that Cedar and guestpass agree (allowed
//! or not) on the benchmark sign-in and a few variants of it.
//!
//! Run with `cargo bench --bench policy`.

// Benchmark setup may stop on a broken fixture; this is not library code.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::net::IpAddr;

use cedar_policy::{Authorizer, Context, Entities, EntityUid, Request};
use criterion::Criterion;
use guestpass::policy::conditional_access::{
    BuiltInControl, ClientAppType, CompiledPolicies, ConditionalAccessClientApp, ConditionalAccessPolicy,
    ExternalTenants, GrantOperator, GuestsOrExternalUsers, PolicySet, PolicyState, Satisfied, SignIn,
    UserKind,
};
use guestpass::policy::{CrossTenantSettings, DomainRestriction, HomeClaims};
use serde_json::{Value, json};

const POLICIES: usize = 50;
const LOCATIONS: usize = 20;
const DOMAINS: usize = 500;
const PARTNERS: usize = 100;

fn tenant(i: usize) -> String {
    format!("{i:08x}-5d6e-4f70-8a9b-0c1d2e3f4a5b")
}

fn named_locations() -> Vec<Value> {
    (0..LOCATIONS)
        .map(|k| {
            json!({
                "id": format!("loc-{k}"),
                "displayName": format!("Office {k}"),
                "isTrusted": k % 2 == 0,
                "ipRanges": [
                    format!("10.{k}.0.0/16"),
                    format!("172.16.{k}.0/24"),
                    format!("100.64.{}.0/22", k * 4),
                    format!("2001:db8:{k:x}::/48"),
                    format!("2001:db8:ff{k:02x}:8000::/49"),
                    format!("192.0.2.{}/30", k * 4),
                ]
            })
        })
        .collect()
}

/// Fifty policies from ten templates.
fn policies() -> Vec<Value> {
    let base = |name: String, users: Value, apps: Value| {
        json!({
            "displayName": name,
            "state": "enabled",
            "conditions": {"users": users, "applications": apps, "clientAppTypes": ["all"]},
        })
    };
    let all_apps = json!({"includeApplications": ["All"]});
    (0..POLICIES)
        .map(|i| {
            let mut p = match i % 10 {
                0 => {
                    let mut p = base(
                        format!("Block legacy authentication {i}"),
                        json!({"includeUsers": ["All"], "excludeUsers": [format!("u-breakglass-{i}")]}),
                        all_apps.clone(),
                    );
                    p["conditions"]["clientAppTypes"] = json!(["exchangeActiveSync", "other"]);
                    p["grantControls"] = json!({"operator": "OR", "builtInControls": ["block"]});
                    p
                }
                1 => {
                    let mut p = base(
                        format!("Require MFA for guests to app {i}"),
                        json!({"includeUsers": ["GuestsOrExternalUsers"], "excludeGroups": ["g-breakglass"]}),
                        json!({"includeApplications": [format!("app-{i}"), format!("app-{}", i + 1)]}),
                    );
                    p["grantControls"] = json!({"operator": "OR", "builtInControls": ["mfa"]});
                    p
                }
                2 => {
                    let mut p = base(
                        format!("Managed device for finance {i}"),
                        json!({"includeGroups": [format!("g-finance-{i}"), format!("g-controllers-{i}")],
                               "excludeUsers": [format!("u-svc-{i}")]}),
                        json!({"includeApplications": ["All"], "excludeApplications": [format!("app-{}", i + 3)]}),
                    );
                    p["conditions"]["clientAppTypes"] = json!(["browser", "mobileAppsAndDesktopClients"]);
                    p["grantControls"] =
                        json!({"operator": "OR", "builtInControls": ["compliantDevice", "domainJoinedDevice"]});
                    p
                }
                3 => {
                    let mut p = base(
                        format!("Partner guests accept terms {i}"),
                        json!({"includeGuestsOrExternalUsers": {
                            "guestOrExternalUserTypes": "b2bCollaborationGuest,b2bCollaborationMember",
                            "externalTenants": {"membershipKind": "enumerated",
                                                "members": [tenant(i), tenant(i + 1), tenant(i + 20)]}}}),
                        all_apps.clone(),
                    );
                    p["grantControls"] =
                        json!({"operator": "AND", "builtInControls": ["mfa"], "termsOfUse": ["tou-guests"]});
                    p
                }
                4 => {
                    let mut p = base(
                        format!("Block admins outside trusted locations {i}"),
                        json!({"includeGroups": [format!("g-admins-{i}")]}),
                        all_apps.clone(),
                    );
                    p["conditions"]["locations"] =
                        json!({"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]});
                    p["grantControls"] = json!({"operator": "OR", "builtInControls": ["block"]});
                    p
                }
                5 => {
                    let mut p = base(
                        format!("Sign in every 8 hours to app {i}"),
                        json!({"includeUsers": ["All"]}),
                        json!({"includeApplications": [format!("app-{i}"), "app-21"]}),
                    );
                    p["sessionControls"] =
                        json!({"signInFrequency": {"value": 8 + i % 3, "type": "hours", "isEnabled": true}});
                    p
                }
                6 => {
                    let mut p = base(
                        format!("Report-only: block office {i}"),
                        json!({"includeUsers": ["All"]}),
                        all_apps.clone(),
                    );
                    p["state"] = json!("enabledForReportingButNotEnforced");
                    p["conditions"]["locations"] = json!({"includeLocations": [format!("loc-{}", i % LOCATIONS)]});
                    p["grantControls"] = json!({"operator": "OR", "builtInControls": ["block"]});
                    p
                }
                7 => {
                    let mut p = base(
                        format!("Old MFA policy {i}"),
                        json!({"includeUsers": ["All"]}),
                        all_apps.clone(),
                    );
                    p["state"] = json!("disabled");
                    p["grantControls"] = json!({"operator": "OR", "builtInControls": ["mfa"]});
                    p
                }
                8 => {
                    let mut p = base(
                        format!("MFA for members outside trusted locations {i}"),
                        json!({"includeUsers": ["All"], "excludeUsers": ["GuestsOrExternalUsers"]}),
                        all_apps.clone(),
                    );
                    p["conditions"]["locations"] = json!({"includeLocations": ["All"],
                        "excludeLocations": ["AllTrusted", format!("loc-{}", (i + 1) % LOCATIONS)]});
                    p["grantControls"] = json!({"operator": "OR", "builtInControls": ["mfa"]});
                    p
                }
                _ => {
                    let mut p = base(
                        format!("Service providers on managed devices {i}"),
                        json!({"includeGuestsOrExternalUsers": {
                            "guestOrExternalUserTypes": "serviceProvider",
                            "externalTenants": {"membershipKind": "all"}}}),
                        all_apps.clone(),
                    );
                    p["grantControls"] =
                        json!({"operator": "AND", "builtInControls": ["mfa", "compliantDevice"]});
                    p
                }
            };
            p["id"] = json!(format!("00000000-0000-4000-8000-{i:012}"));
            p
        })
        .collect()
}

fn policy_set() -> PolicySet {
    let doc = json!({"namedLocations": named_locations(), "policies": policies()});
    PolicySet::from_json(&doc.to_string()).expect("policy set")
}

// ---------------------------------------------------------------- Cedar

fn quoted(s: &str) -> String {
    format!("{s:?}")
}

fn any_of(terms: Vec<String>) -> String {
    if terms.is_empty() {
        "false".to_owned()
    } else {
        format!("({})", terms.join(" || "))
    }
}

fn guests(g: &GuestsOrExternalUsers) -> String {
    let types: Vec<String> = g
        .guest_or_external_user_types
        .iter()
        .map(|t| quoted(t.as_str()))
        .collect();
    let kinds = format!("[{}].contains(context.userKind)", types.join(", "));
    match &g.external_tenants {
        ExternalTenants::All => kinds,
        ExternalTenants::Enumerated { members } => {
            let m: Vec<String> = members.iter().map(|t| quoted(t)).collect();
            format!(
                "({kinds} && context has homeTenant && [{}].contains(context.homeTenant))",
                m.join(", ")
            )
        }
    }
}

fn entity_list(kind: &str, ids: &[String]) -> String {
    let e: Vec<String> = ids.iter().map(|i| format!("{kind}::{}", quoted(i))).collect();
    format!("[{}]", e.join(", "))
}

fn location_terms(set: &PolicySet, ids: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    for id in ids {
        let wanted: Vec<_> = if id == "All" {
            out.push("true".to_owned());
            continue;
        } else if id == "AllTrusted" {
            set.named_locations.iter().filter(|l| l.is_trusted).collect()
        } else {
            set.named_locations.iter().filter(|l| &l.id == id).collect()
        };
        for l in wanted {
            for r in 0..l.ip_ranges.len() {
                out.push(format!("context.ip.isInRange(Location::{}.r{r})", quoted(&l.id)));
            }
        }
    }
    out
}

/// The Cedar condition under which a policy applies.
fn cedar_condition(set: &PolicySet, p: &ConditionalAccessPolicy) -> String {
    let u = &p.conditions.users;
    let mut include = Vec::new();
    let mut ids = Vec::new();
    for v in &u.include_users {
        match v.as_str() {
            "All" => include.push("true".to_owned()),
            "None" => {}
            "GuestsOrExternalUsers" => include.push("context.userKind != \"member\"".to_owned()),
            id => ids.push(id.to_owned()),
        }
    }
    if !ids.is_empty() {
        include.push(format!("principal in {}", entity_list("User", &ids)));
    }
    if !u.include_groups.is_empty() {
        include.push(format!(
            "principal in {}",
            entity_list("Group", &u.include_groups)
        ));
    }
    if let Some(g) = &u.include_guests_or_external_users {
        include.push(guests(g));
    }
    let mut exclude = Vec::new();
    let mut ids = Vec::new();
    for v in &u.exclude_users {
        match v.as_str() {
            "GuestsOrExternalUsers" => exclude.push("context.userKind != \"member\"".to_owned()),
            id => ids.push(id.to_owned()),
        }
    }
    if !ids.is_empty() {
        exclude.push(format!("principal in {}", entity_list("User", &ids)));
    }
    if !u.exclude_groups.is_empty() {
        exclude.push(format!(
            "principal in {}",
            entity_list("Group", &u.exclude_groups)
        ));
    }
    if let Some(g) = &u.exclude_guests_or_external_users {
        exclude.push(guests(g));
    }
    let mut cond = vec![any_of(include), format!("!{}", any_of(exclude))];

    let a = &p.conditions.applications;
    if !a.include_applications.iter().any(|x| x == "All") {
        cond.push(format!(
            "resource in {}",
            entity_list("Application", &a.include_applications)
        ));
    }
    if !a.exclude_applications.is_empty() {
        cond.push(format!(
            "!(resource in {})",
            entity_list("Application", &a.exclude_applications)
        ));
    }
    let clients = &p.conditions.client_app_types;
    if !clients.contains(&ConditionalAccessClientApp::All) {
        let names: Vec<String> = clients
            .iter()
            .map(|c| {
                quoted(match c {
                    ConditionalAccessClientApp::All => "all",
                    ConditionalAccessClientApp::Browser => "browser",
                    ConditionalAccessClientApp::MobileAppsAndDesktopClients => "mobileAppsAndDesktopClients",
                    ConditionalAccessClientApp::ExchangeActiveSync => "exchangeActiveSync",
                    ConditionalAccessClientApp::Other => "other",
                })
            })
            .collect();
        cond.push(format!("[{}].contains(context.clientApp)", names.join(", ")));
    }
    if let Some(l) = &p.conditions.locations {
        cond.push(any_of(location_terms(set, &l.include_locations)));
        cond.push(format!("!{}", any_of(location_terms(set, &l.exclude_locations))));
    }
    cond.join(" && ")
}

fn cedar_policies(set: &PolicySet) -> String {
    let mut text = String::from("permit(principal, action, resource);\n");
    for p in set.policies.iter().filter(|p| p.state == PolicyState::Enabled) {
        let cond = cedar_condition(set, p);
        let Some(g) = &p.grant_controls else {
            continue; // Session controls only: no bearing on allow or deny.
        };
        let mut controls: Vec<String> = Vec::new();
        let mut block = false;
        for c in &g.built_in_controls {
            match c {
                BuiltInControl::Block => block = true,
                BuiltInControl::Mfa => controls.push("context.mfa".to_owned()),
                BuiltInControl::CompliantDevice => controls.push("context.compliantDevice".to_owned()),
                BuiltInControl::DomainJoinedDevice => controls.push("context.domainJoinedDevice".to_owned()),
            }
        }
        for t in &g.terms_of_use {
            controls.push(format!("context.termsAccepted.contains({})", quoted(t)));
        }
        let sep = match g.operator.unwrap_or_default() {
            GrantOperator::And => " && ",
            GrantOperator::Or => " || ",
        };
        let id = quoted(p.id.as_deref().unwrap_or(&p.display_name));
        if block {
            writeln!(
                text,
                "@id({id})\nforbid(principal, action, resource) when {{ {cond} }};"
            )
            .unwrap();
        } else {
            writeln!(
                text,
                "@id({id})\nforbid(principal, action, resource) when {{ {cond} && !({}) }};",
                controls.join(sep)
            )
            .unwrap();
        }
    }
    text
}

fn cedar_entities(set: &PolicySet, user: &str, groups: &[&str], app: &str) -> Value {
    let mut entities = vec![json!({
        "uid": {"type": "User", "id": user},
        "attrs": {},
        "parents": groups.iter().map(|g| json!({"type": "Group", "id": g})).collect::<Vec<_>>(),
    })];
    for g in groups {
        entities.push(json!({"uid": {"type": "Group", "id": g}, "attrs": {}, "parents": []}));
    }
    entities.push(json!({"uid": {"type": "Application", "id": app}, "attrs": {}, "parents": []}));
    for l in &set.named_locations {
        let mut attrs = serde_json::Map::new();
        for (r, range) in l.ip_ranges.iter().enumerate() {
            attrs.insert(format!("r{r}"), json!({"__extn": {"fn": "ip", "arg": range}}));
        }
        entities.push(json!({"uid": {"type": "Location", "id": l.id}, "attrs": attrs, "parents": []}));
    }
    Value::Array(entities)
}

fn cedar_request(s: &SignIn<'_>) -> Request {
    let kind = match s.user_kind {
        UserKind::Member => "member",
        k => k.guest_type().unwrap().as_str(),
    };
    let mut ctx = json!({
        "userKind": kind,
        "clientApp": s.client_app.as_str(),
        "ip": {"__extn": {"fn": "ip", "arg": s.ip.to_string()}},
        "mfa": s.satisfied.mfa,
        "compliantDevice": s.satisfied.compliant_device,
        "domainJoinedDevice": s.satisfied.domain_joined_device,
        "termsAccepted": s.satisfied.terms_accepted,
    });
    if let Some(t) = s.home_tenant {
        ctx["homeTenant"] = json!(t);
    }
    let principal: EntityUid = format!("User::{}", quoted(s.user_id)).parse().unwrap();
    let action: EntityUid = r#"Action::"signIn""#.parse().unwrap();
    let resource: EntityUid = format!("Application::{}", quoted(s.application_id))
        .parse()
        .unwrap();
    let context = Context::from_json_value(ctx, None).unwrap();
    Request::new(principal, action, resource, context, None).unwrap()
}

// ---------------------------------------------------------------- the host around it

struct Host {
    policies: CompiledPolicies,
    domains: DomainRestriction,
    partners: CrossTenantSettings,
}

fn host(set: PolicySet) -> Host {
    let domains = DomainRestriction::allow_only((0..DOMAINS).map(|i| format!("partner{i}.example"))).unwrap();
    let partners: Vec<Value> = (0..PARTNERS)
        .map(|i| {
            json!({
                "tenantId": tenant(i),
                "inboundTrust": {"isMfaAccepted": i % 3 != 0, "isCompliantDeviceAccepted": i % 2 == 0},
                "b2bCollaborationInbound": {"applications": {"accessType": "blocked",
                    "targets": [{"target": format!("app-secret-{i}"), "targetType": "application"}]}}
            })
        })
        .collect();
    let partners = CrossTenantSettings::from_json(&json!({"partners": partners}).to_string())
        .expect("cross-tenant settings");
    Host {
        policies: set.compile().expect("compile"),
        domains,
        partners,
    }
}

/// A guest signing in: the claims of the home organisation, and who they are.
struct Guest<'a> {
    domain: &'a str,
    home_claims: HomeClaims,
    signin: SignIn<'a>,
}

impl Host {
    /// What a host does for a guest sign-in: the domain allow list, the
    /// partner's inbound setting and trust, then conditional access. Returns
    /// the sign-in with the trusted claims, or `None` when refused earlier.
    fn prepare<'a>(&self, g: &Guest<'a>) -> Option<SignIn<'a>> {
        if !self.domains.permits(g.domain) {
            return None;
        }
        let s = &g.signin;
        let tenant = s.home_tenant?;
        let access = self.partners.effective(tenant);
        if !access
            .inbound_allows(s.user_id, s.groups, s.application_id)
            .is_allowed()
        {
            return None;
        }
        let trusted = access.trusted_claims_from(Some(tenant), tenant, g.home_claims);
        let mut signin = *s;
        signin.satisfied.mfa |= trusted.mfa;
        signin.satisfied.compliant_device |= trusted.compliant_device;
        signin.satisfied.domain_joined_device |= trusted.hybrid_joined_device;
        Some(signin)
    }
}

const GROUPS: [&str; 5] = [
    "g-all-guests",
    "g-finance-12",
    "g-project-x",
    "g-partners",
    "g-sales",
];
const TERMS: [&str; 1] = ["tou-guests"];

fn bench(c: &mut Criterion) {
    let set = policy_set();
    let cedar_set: cedar_policy::PolicySet = cedar_policies(&set).parse().expect("cedar policies");
    let host = host(set.clone());
    let tenant13 = tenant(13);
    let guest = Guest {
        domain: "partner499.example",
        home_claims: HomeClaims {
            mfa: true,
            compliant_device: false,
            hybrid_joined_device: false,
        },
        signin: SignIn {
            user_id: "7c4d2e1f-guest",
            groups: &GROUPS,
            user_kind: UserKind::B2bCollaborationGuest,
            home_tenant: Some(&tenant13),
            application_id: "app-21",
            client_app: ClientAppType::Browser,
            ip: "198.51.100.23".parse().unwrap(),
            satisfied: Satisfied {
                mfa: false,
                compliant_device: false,
                domain_joined_device: false,
                terms_accepted: &TERMS,
            },
        },
    };
    let prepared = host.prepare(&guest).expect("the guest may come in");
    assert!(prepared.satisfied.mfa, "partner 13 trusts home MFA");
    let entities = Entities::from_json_value(
        cedar_entities(&set, guest.signin.user_id, &GROUPS, "app-21"),
        None,
    )
    .expect("entities");
    let authorizer = Authorizer::new();

    // Cedar and guestpass agree on the sign-in and variants of it.
    let decision = host.policies.evaluate(&prepared);
    let explanation = host.policies.explain(&prepared);
    let applied = explanation
        .policies
        .iter()
        .filter(|p| {
            matches!(
                p.outcome,
                guestpass::policy::conditional_access::PolicyOutcome::Applied { .. }
            )
        })
        .count();
    println!("policy: {decision} ({applied} of {POLICIES} policies apply)");
    let variants: Vec<(bool, bool, bool, &str)> = vec![
        (true, false, false, "198.51.100.23"),
        (true, true, false, "198.51.100.23"),
        (true, false, true, "10.2.3.4"),
        (false, true, false, "2001:db8:4::1"),
        (true, true, true, "172.16.7.9"),
    ];
    for (mfa, compliant, joined, ip) in variants {
        let mut s = prepared;
        s.satisfied.mfa = mfa;
        s.satisfied.compliant_device = compliant;
        s.satisfied.domain_joined_device = joined;
        s.ip = ip.parse::<IpAddr>().unwrap();
        let ours = host.policies.evaluate(&s).allows_sign_in();
        let r = authorizer.is_authorized(&cedar_request(&s), &cedar_set, &entities);
        let theirs = r.decision() == cedar_policy::Decision::Allow;
        assert_eq!(
            ours,
            theirs,
            "cedar and guestpass disagree for {s:?}: {:?}",
            r.diagnostics()
        );
    }
    let request = cedar_request(&prepared);

    let mut group = c.benchmark_group("policy");
    group.bench_function("evaluate_50", |b| {
        b.iter(|| {
            let s = host.prepare(black_box(&guest)).expect("admitted");
            black_box(host.policies.evaluate(&s))
        })
    });
    group.bench_function("explain_50", |b| {
        b.iter(|| {
            let s = host.prepare(black_box(&guest)).expect("admitted");
            black_box(host.policies.explain(&s))
        })
    });
    group.bench_function("baseline_cedar_50", |b| {
        b.iter(|| black_box(authorizer.is_authorized(black_box(&request), &cedar_set, &entities)))
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
