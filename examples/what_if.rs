//! Conditional access What-If: Contoso's policies, loaded from a
//! Graph-shaped JSON document, explained for a few hypothetical sign-ins,
//! then one cross-tenant access check for a partner whose users may not
//! come in as guests.
//!
//! Run it with `cargo run --example what_if`. Nothing is stored, mailed or
//! fetched: conditional access and the cross-tenant access settings are pure
//! functions of their configuration and the request.

use guestpass::policy::conditional_access::{ClientAppType, PolicySet, Satisfied, SignIn, UserKind};
use guestpass::policy::{
    AccessDecision, ConfigSource, CrossTenantSettings, SettingDecision, TargetMatch, TargetSetting,
};

/// Fabrikam's directory (tenant) id: its guests must accept Contoso's terms.
const FABRIKAM: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
/// Woodgrove's directory id: inbound B2B collaboration is blocked.
const WOODGROVE: &str = "9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e";

/// Contoso's conditional access, as Graph exports it (`namedLocations` are
/// `ipNamedLocation`s, `policies` are `conditionalAccessPolicy`s).
const POLICIES: &str = r##"{
  "namedLocations": [
    {"@odata.type": "#microsoft.graph.ipNamedLocation", "id": "contoso-hq",
     "displayName": "Contoso HQ", "isTrusted": true,
     "ipRanges": [
       {"@odata.type": "#microsoft.graph.iPv4CidrRange", "cidrAddress": "203.0.113.0/24"},
       {"@odata.type": "#microsoft.graph.iPv6CidrRange", "cidrAddress": "2001:db8:10::/48"}
     ]},
    {"id": "lab-network", "displayName": "Lab network", "isTrusted": false,
     "ipRanges": ["198.51.100.0/24", "2001:db8:bad::/48"]}
  ],
  "policies": [
    {"displayName": "Require MFA for guests on the partner portal", "state": "enabled",
     "conditions": {
       "users": {"includeUsers": ["GuestsOrExternalUsers"]},
       "applications": {"includeApplications": ["partner-portal"]},
       "clientAppTypes": ["all"],
       "locations": {"includeLocations": ["All"], "excludeLocations": ["AllTrusted"]}},
     "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}},
    {"displayName": "Block legacy authentication", "state": "enabled",
     "conditions": {
       "users": {"includeUsers": ["All"]},
       "applications": {"includeApplications": ["All"]},
       "clientAppTypes": ["exchangeActiveSync", "other"]},
     "grantControls": {"operator": "OR", "builtInControls": ["block"]}},
    {"displayName": "Terms of use for Fabrikam guests", "state": "enabled",
     "conditions": {
       "users": {"includeGuestsOrExternalUsers": {
         "guestOrExternalUserTypes": "b2bCollaborationGuest",
         "externalTenants": {"membershipKind": "enumerated",
                             "members": ["3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b"]}}},
       "applications": {"includeApplications": ["All"]}},
     "grantControls": {"termsOfUse": ["contoso-guest-terms"]}},
    {"displayName": "Block the lab network", "state": "enabledForReportingButNotEnforced",
     "conditions": {
       "users": {"includeUsers": ["All"]},
       "applications": {"includeApplications": ["All"]},
       "locations": {"includeLocations": ["lab-network"]}},
     "grantControls": {"operator": "OR", "builtInControls": ["block"]}},
    {"displayName": "Require a compliant device for members", "state": "disabled",
     "conditions": {
       "users": {"includeUsers": ["All"], "excludeUsers": ["GuestsOrExternalUsers"]},
       "applications": {"includeApplications": ["All"]}},
     "grantControls": {"operator": "OR", "builtInControls": ["compliantDevice"]}},
    {"displayName": "Guests sign in again every 4 hours", "state": "enabled",
     "conditions": {
       "users": {"includeUsers": ["GuestsOrExternalUsers"]},
       "applications": {"includeApplications": ["All"]}},
     "sessionControls": {"signInFrequency": {"value": 4, "type": "hours", "isEnabled": true}}}
  ]
}"##;

/// Contoso's cross-tenant access settings: the service default for every
/// organisation, but Woodgrove's users may not come in as guests.
const CROSS_TENANT: &str = r#"{
  "partners": [{
    "tenantId": "9b8c7d6e-5f4a-4b3c-8d2e-1f0a9b8c7d6e",
    "b2bCollaborationInbound": {
      "usersAndGroups": {"accessType": "blocked",
                         "targets": [{"target": "AllUsers", "targetType": "user"}]}
    }
  }]
}"#;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let set = PolicySet::from_json(POLICIES)?;
    let locations = set.named_locations.len();
    let policies = set.compile()?;
    println!(
        "{} conditional access policies, {locations} named locations",
        policies.len()
    );

    let guest = SignIn {
        user_id: "6a1f0c2e-8d3b-4e5f-9a0b-1c2d3e4f5a6b",
        groups: &[],
        user_kind: UserKind::B2bCollaborationGuest,
        home_tenant: Some(FABRIKAM),
        application_id: "partner-portal",
        client_app: ClientAppType::Browser,
        ip: "192.0.2.44".parse()?,
        satisfied: Satisfied::default(),
    };
    let accepted: &[&str] = &["contoso-guest-terms"];
    let at_hq = SignIn {
        ip: "2001:db8:10::25".parse()?,
        satisfied: Satisfied {
            terms_accepted: accepted,
            ..Satisfied::default()
        },
        ..guest
    };
    let legacy = SignIn {
        client_app: ClientAppType::Other,
        ip: "198.51.100.20".parse()?,
        ..guest
    };
    let member = SignIn {
        user_id: "1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d",
        user_kind: UserKind::Member,
        home_tenant: None,
        ip: "198.51.100.21".parse()?,
        ..guest
    };

    for (title, signin) in [
        ("Fabrikam guest, browser, from an untrusted address", &guest),
        ("the same guest from Contoso HQ (IPv6), terms accepted", &at_hq),
        (
            "the same guest with a legacy client from the lab network",
            &legacy,
        ),
        ("a member, browser, from the lab network", &member),
    ] {
        println!(
            "\nWhat if: {title} ({}, {} to `{}`)",
            signin.ip,
            signin.client_app.as_str(),
            signin.application_id
        );
        println!("{}", policies.explain(signin));
    }

    let settings = CrossTenantSettings::from_json(CROSS_TENANT)?;
    let user = "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c";
    println!("\nCross-tenant access, inbound B2B collaboration to `partner-portal`:");
    for (name, tenant) in [("Fabrikam", FABRIKAM), ("Woodgrove", WOODGROVE)] {
        let decision = settings
            .effective(tenant)
            .inbound_allows(user, &[], "partner-portal");
        println!("- {name} ({tenant}): {}", describe(&decision));
    }
    Ok(())
}

/// `allowed` or `blocked by usersAndGroups (partner configuration, AllUsers)`.
fn describe(decision: &AccessDecision) -> String {
    match decision.blocked_by() {
        None => format!(
            "allowed (usersAndGroups: {}; applications: {})",
            source(&decision.users_and_groups),
            source(&decision.applications)
        ),
        Some(by) => {
            let setting = match by.setting {
                TargetSetting::UsersAndGroups => "usersAndGroups",
                TargetSetting::Applications => "applications",
            };
            let matched = match by.matched {
                TargetMatch::AllTargets => "every target".to_owned(),
                TargetMatch::Listed { index } => format!("targets[{index}]"),
                TargetMatch::NotListed => "not listed".to_owned(),
            };
            format!("blocked by {setting} ({}, {matched})", source(&by))
        }
    }
}

fn source(d: &SettingDecision) -> &'static str {
    match d.source {
        ConfigSource::Default => "default configuration",
        ConfigSource::Partner => "partner configuration",
    }
}
