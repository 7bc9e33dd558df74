//! Cross-tenant access settings: a partner's unset fields inherit the
//! default, B2B collaboration decisions name the setting that decided,
//! conflicting configuration is refused with the path of the offending
//! field (invariant 11), automatic redemption needs both sides, and
//! home-organisation claims count only from the user's home tenant.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use guestpass::error::ConfigError;
use guestpass::policy::{
    AccessType, B2bSetting, ConfigSource, CrossTenantAccessPolicy, CrossTenantSettings, HomeClaims,
    MAX_PARTNERS, MAX_TARGETS, PartnerConfiguration, PolicyConfigError, Resolved, SettingDecision, Target,
    TargetConfiguration, TargetMatch, TargetSetting, TargetType,
};

const FABRIKAM: &str = "3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b";
const WOODGROVE: &str = "9c8b7a6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d";
const NORTHWIND: &str = "5a6b7c8d-9e0f-4a1b-9c2d-3e4f5a6b7c8d";
/// Not configured as a partner.
const TAILSPIN: &str = "0d1e2f3a-4b5c-4d6e-8f7a-8b9c0d1e2f3a";

/// Users and groups in the partners' directories.
const ALICE: &str = "6a1f0c2e-8d3b-4e5f-9a0b-1c2d3e4f5a6b";
const BOB: &str = "1b2c3d4e-5f6a-4b7c-8d9e-0f1a2b3c4d5e";
const CAROL: &str = "2c3d4e5f-6a7b-4c8d-9e0f-1a2b3c4d5e6f";
const SALES: &str = "7b2e1d3f-9e4c-4f60-8b1c-2d3e4f5a6b7c";
/// A group of our directory.
const CONTRACTORS: &str = "8c3f2e4a-0f5d-4a71-9c2d-3e4f5a6b7c8d";

const ALL: HomeClaims = HomeClaims {
    mfa: true,
    compliant_device: true,
    hybrid_joined_device: true,
};

/// A default and three partners: Fabrikam (trusted, only Sales and Alice,
/// automatic redemption), Woodgrove (blocked), Northwind (payroll blocked,
/// MFA not trusted).
fn realistic_json() -> String {
    format!(
        r#"{{
  "default": {{
    "b2bCollaborationInbound": {{
      "usersAndGroups": {{"accessType": "allowed", "targets": [{{"target": "AllUsers", "targetType": "user"}}]}},
      "applications": {{"accessType": "allowed", "targets": [
        {{"target": "wiki", "targetType": "application"}},
        {{"target": "support-portal", "targetType": "application"}}
      ]}}
    }},
    "b2bCollaborationOutbound": {{
      "usersAndGroups": {{"accessType": "blocked", "targets": [{{"target": "{CONTRACTORS}", "targetType": "group"}}]}},
      "applications": {{"accessType": "allowed", "targets": [{{"target": "AllApplications", "targetType": "application"}}]}}
    }},
    "inboundTrust": {{"isMfaAccepted": true, "isCompliantDeviceAccepted": false, "isHybridAzureADJoinedDeviceAccepted": false}},
    "automaticUserConsentSettings": {{"inboundAllowed": false, "outboundAllowed": false}}
  }},
  "partners": [
    {{
      "tenantId": "{FABRIKAM}",
      "b2bCollaborationInbound": {{
        "usersAndGroups": {{"accessType": "allowed", "targets": [
          {{"target": "{SALES}", "targetType": "group"}},
          {{"target": "{ALICE}", "targetType": "user"}}
        ]}}
      }},
      "inboundTrust": {{"isCompliantDeviceAccepted": true}},
      "automaticUserConsentSettings": {{"inboundAllowed": true, "outboundAllowed": true}}
    }},
    {{
      "tenantId": "{WOODGROVE}",
      "b2bCollaborationInbound": {{
        "usersAndGroups": {{"accessType": "blocked", "targets": [{{"target": "AllUsers", "targetType": "user"}}]}}
      }}
    }},
    {{
      "tenantId": "{NORTHWIND}",
      "b2bCollaborationInbound": {{
        "applications": {{"accessType": "blocked", "targets": [{{"target": "payroll", "targetType": "application"}}]}}
      }},
      "inboundTrust": {{"isMfaAccepted": false}},
      "automaticUserConsentSettings": {{"outboundAllowed": true}}
    }}
  ]
}}"#
    )
}

/// The same settings in TOML, tenant ids in upper case.
fn realistic_toml() -> String {
    let fabrikam = FABRIKAM.to_uppercase();
    format!(
        r#"
[default.b2bCollaborationInbound.usersAndGroups]
accessType = "allowed"
targets = [{{ target = "AllUsers", targetType = "user" }}]

[default.b2bCollaborationInbound.applications]
accessType = "allowed"
targets = [
  {{ target = "wiki", targetType = "application" }},
  {{ target = "support-portal", targetType = "application" }},
]

[default.b2bCollaborationOutbound.usersAndGroups]
accessType = "blocked"
targets = [{{ target = "{CONTRACTORS}", targetType = "group" }}]

[default.b2bCollaborationOutbound.applications]
accessType = "allowed"
targets = [{{ target = "AllApplications", targetType = "application" }}]

[default.inboundTrust]
isMfaAccepted = true
isCompliantDeviceAccepted = false
isHybridAzureADJoinedDeviceAccepted = false

[default.automaticUserConsentSettings]
inboundAllowed = false
outboundAllowed = false

[[partners]]
tenantId = "{fabrikam}"
inboundTrust = {{ isCompliantDeviceAccepted = true }}
automaticUserConsentSettings = {{ inboundAllowed = true, outboundAllowed = true }}

[partners.b2bCollaborationInbound.usersAndGroups]
accessType = "allowed"
targets = [
  {{ target = "{SALES}", targetType = "group" }},
  {{ target = "{ALICE}", targetType = "user" }},
]

[[partners]]
tenantId = "{WOODGROVE}"

[partners.b2bCollaborationInbound.usersAndGroups]
accessType = "blocked"
targets = [{{ target = "AllUsers", targetType = "user" }}]

[[partners]]
tenantId = "{NORTHWIND}"
inboundTrust = {{ isMfaAccepted = false }}
automaticUserConsentSettings = {{ outboundAllowed = true }}

[partners.b2bCollaborationInbound.applications]
accessType = "blocked"
targets = [{{ target = "payroll", targetType = "application" }}]
"#
    )
}

fn realistic() -> CrossTenantSettings {
    CrossTenantSettings::from_json(&realistic_json()).unwrap()
}

fn decided(
    setting: TargetSetting,
    source: ConfigSource,
    access: AccessType,
    matched: TargetMatch,
) -> SettingDecision {
    SettingDecision {
        setting,
        source,
        access,
        matched,
    }
}

fn guid(i: usize) -> String {
    format!("{i:08x}-0000-4000-8000-{i:012x}")
}

fn users(access_type: AccessType, targets: &[(&str, TargetType)]) -> TargetConfiguration {
    TargetConfiguration::new(access_type, targets.iter().map(|(t, ty)| Target::new(*t, *ty)))
}

/// The realistic policy with `inbound` as the third partner's (Northwind's)
/// inbound B2B setting.
fn with_third_partner_inbound(inbound: B2bSetting) -> Result<CrossTenantSettings, PolicyConfigError> {
    let mut policy: CrossTenantAccessPolicy = serde_json::from_str(&realistic_json()).unwrap();
    policy.partners[2].b2b_collaboration_inbound = Some(inbound);
    CrossTenantSettings::new(policy)
}

fn refused_inbound_users(targets: &[(&str, TargetType)]) -> PolicyConfigError {
    with_third_partner_inbound(B2bSetting {
        users_and_groups: Some(users(AccessType::Allowed, targets)),
        applications: None,
    })
    .expect_err("must be refused")
}

fn refused_inbound_applications(targets: &[(&str, TargetType)]) -> PolicyConfigError {
    with_third_partner_inbound(B2bSetting {
        users_and_groups: None,
        applications: Some(users(AccessType::Blocked, targets)),
    })
    .expect_err("must be refused")
}

#[test]
fn unset_partner_fields_inherit_the_default_and_set_fields_override() {
    let s = realistic();
    assert_eq!(s.partner_count(), 3);
    let fabrikam = s.effective(FABRIKAM);
    assert_eq!(
        fabrikam.tenant_id().map(|t| t.to_string()).as_deref(),
        Some(FABRIKAM)
    );
    let inbound = fabrikam.b2b_collaboration_inbound();
    // Set: Fabrikam's own users-and-groups list.
    let ug = inbound.users_and_groups();
    assert_eq!(ug.source, ConfigSource::Partner);
    assert_eq!(
        *ug.value,
        users(
            AccessType::Allowed,
            &[(SALES, TargetType::Group), (ALICE, TargetType::User)]
        )
    );
    // Unset: the default's application list.
    let apps = inbound.applications();
    assert_eq!(apps.source, ConfigSource::Default);
    assert_eq!(
        apps.value,
        s.default_access()
            .b2b_collaboration_inbound()
            .applications()
            .value
    );
    let d = fabrikam.inbound_allows(ALICE, &[], "payroll");
    assert_eq!(
        d.applications,
        decided(
            TargetSetting::Applications,
            ConfigSource::Default,
            AccessType::Blocked,
            TargetMatch::NotListed
        )
    );
    // Outbound unset entirely: the default's.
    assert_eq!(
        fabrikam.b2b_collaboration_outbound(),
        s.default_access().b2b_collaboration_outbound()
    );
    // Trust: MFA inherited (true), compliant device set (true), hybrid
    // inherited (false).
    let r = |value| Resolved {
        value,
        source: ConfigSource::Default,
    };
    assert_eq!(fabrikam.is_mfa_accepted(), r(true));
    assert_eq!(
        fabrikam.is_compliant_device_accepted(),
        Resolved {
            value: true,
            source: ConfigSource::Partner
        }
    );
    assert_eq!(fabrikam.is_hybrid_azure_ad_joined_device_accepted(), r(false));
    // Northwind overrides MFA trust with false, and only the outbound half
    // of automatic consent; the inbound half inherits false.
    let northwind = s.effective(NORTHWIND);
    assert_eq!(
        northwind.is_mfa_accepted(),
        Resolved {
            value: false,
            source: ConfigSource::Partner
        }
    );
    assert_eq!(northwind.automatic_user_consent_inbound(), r(false));
    assert_eq!(
        northwind.automatic_user_consent_outbound(),
        Resolved {
            value: true,
            source: ConfigSource::Partner
        }
    );
    // Not a partner (or not a tenant id at all): the default.
    for other in [TAILSPIN, "fabrikam.example", ""] {
        let e = s.effective(other);
        assert_eq!(e, s.default_access(), "{other}");
        assert_eq!(e.tenant_id(), None);
    }
    assert!(s.partner(TAILSPIN).is_none());
    assert_eq!(s.partner(&FABRIKAM.to_uppercase()), Some(fabrikam));
}

#[test]
fn a_blocked_partner_is_blocked_by_its_own_setting() {
    let s = realistic();
    let d = s.effective(WOODGROVE).inbound_allows(ALICE, &[SALES], "wiki");
    assert_eq!(d.access(), AccessType::Blocked);
    assert!(!d.is_allowed());
    let blocked = decided(
        TargetSetting::UsersAndGroups,
        ConfigSource::Partner,
        AccessType::Blocked,
        TargetMatch::AllTargets,
    );
    assert_eq!(d.blocked_by(), Some(blocked));
    assert_eq!(d.users_and_groups, blocked);
    // The application setting (inherited) would have allowed it.
    assert_eq!(
        d.applications,
        decided(
            TargetSetting::Applications,
            ConfigSource::Default,
            AccessType::Allowed,
            TargetMatch::Listed { index: 0 }
        )
    );
}

#[test]
fn an_allowed_user_can_still_be_blocked_by_the_application() {
    let s = realistic();
    let northwind = s.effective(NORTHWIND);
    let d = northwind.inbound_allows(CAROL, &[], "payroll");
    assert_eq!(d.access(), AccessType::Blocked);
    assert_eq!(
        d.users_and_groups,
        decided(
            TargetSetting::UsersAndGroups,
            ConfigSource::Default,
            AccessType::Allowed,
            TargetMatch::AllTargets
        )
    );
    assert_eq!(
        d.blocked_by(),
        Some(decided(
            TargetSetting::Applications,
            ConfigSource::Partner,
            AccessType::Blocked,
            TargetMatch::Listed { index: 0 }
        ))
    );
    // Northwind's block list replaces the default's allow list: an
    // application the default does not list is allowed for Northwind only.
    let d = northwind.inbound_allows(CAROL, &[], "reports");
    assert!(d.is_allowed());
    assert_eq!(d.blocked_by(), None);
    assert_eq!(
        d.applications,
        decided(
            TargetSetting::Applications,
            ConfigSource::Partner,
            AccessType::Allowed,
            TargetMatch::NotListed
        )
    );
    let d = s.effective(TAILSPIN).inbound_allows(CAROL, &[], "reports");
    assert_eq!(
        d.blocked_by(),
        Some(decided(
            TargetSetting::Applications,
            ConfigSource::Default,
            AccessType::Blocked,
            TargetMatch::NotListed
        ))
    );
    // Client ids compare exactly.
    assert!(
        !s.effective(TAILSPIN)
            .inbound_allows(CAROL, &[], "Wiki")
            .is_allowed()
    );
    assert!(
        s.effective(TAILSPIN)
            .inbound_allows(CAROL, &[], "wiki")
            .is_allowed()
    );
}

#[test]
fn all_users_versus_specific_users_and_groups() {
    let s = realistic();
    let fabrikam = s.effective(FABRIKAM);
    let ug = |user: &str, groups: &[&str]| fabrikam.inbound_allows(user, groups, "wiki").users_and_groups;
    let partner = |access, matched| {
        decided(
            TargetSetting::UsersAndGroups,
            ConfigSource::Partner,
            access,
            matched,
        )
    };
    // Alice is listed herself (index 1); Bob through Sales (index 0); a
    // member of Sales who is also listed gets the earlier target.
    assert_eq!(
        ug(ALICE, &[]),
        partner(AccessType::Allowed, TargetMatch::Listed { index: 1 })
    );
    assert_eq!(
        ug(BOB, &[CAROL, SALES]),
        partner(AccessType::Allowed, TargetMatch::Listed { index: 0 })
    );
    assert_eq!(
        ug(&BOB.to_uppercase(), &[&SALES.to_uppercase()]),
        partner(AccessType::Allowed, TargetMatch::Listed { index: 0 })
    );
    assert_eq!(
        ug(ALICE, &[SALES]),
        partner(AccessType::Allowed, TargetMatch::Listed { index: 0 })
    );
    // Carol is in neither: blocked. A group id given as the user id, or a
    // user id given as a group, does not match.
    assert_eq!(
        ug(CAROL, &[]),
        partner(AccessType::Blocked, TargetMatch::NotListed)
    );
    assert_eq!(
        ug(SALES, &[]),
        partner(AccessType::Blocked, TargetMatch::NotListed)
    );
    assert_eq!(
        ug(CAROL, &[ALICE]),
        partner(AccessType::Blocked, TargetMatch::NotListed)
    );
    assert_eq!(
        ug("not-a-guid", &["nor-this"]),
        partner(AccessType::Blocked, TargetMatch::NotListed)
    );
    // The default's AllUsers admits anyone.
    for user in [ALICE, CAROL, "not-a-guid"] {
        assert_eq!(
            s.effective(TAILSPIN)
                .inbound_allows(user, &[], "wiki")
                .users_and_groups,
            decided(
                TargetSetting::UsersAndGroups,
                ConfigSource::Default,
                AccessType::Allowed,
                TargetMatch::AllTargets
            )
        );
    }
    // Outbound: our contractors are blocked from every partner.
    let out = s
        .effective(FABRIKAM)
        .outbound_allows(CAROL, &[CONTRACTORS], "their-app");
    assert_eq!(
        out.blocked_by(),
        Some(decided(
            TargetSetting::UsersAndGroups,
            ConfigSource::Default,
            AccessType::Blocked,
            TargetMatch::Listed { index: 0 }
        ))
    );
    assert!(
        s.effective(FABRIKAM)
            .outbound_allows(CAROL, &[SALES], "their-app")
            .is_allowed()
    );
}

#[test]
fn conflicting_targets_are_refused_with_the_field_path() {
    use TargetType::*;
    let base = "partners[2].b2bCollaborationInbound.usersAndGroups.targets";
    let twice = format!("`{ALICE}` is listed twice (also at `{base}[0]`)");
    let both = format!("`{SALES}` is listed as both a user and a group (also at `{base}[0]`)");
    let cases: Vec<(PolicyConfigError, String, &str)> = vec![
        (
            refused_inbound_users(&[("AllUsers", User), (ALICE, User)]),
            format!("{base}[1]"),
            "`AllUsers` (at `partners[2].b2bCollaborationInbound.usersAndGroups.targets[0]`) already covers every target; list it alone",
        ),
        (
            refused_inbound_users(&[(ALICE, User), ("AllUsers", User)]),
            format!("{base}[1]"),
            "`AllUsers` covers every target; list it alone",
        ),
        (
            refused_inbound_users(&[]),
            base.to_owned(),
            "lists no target; name `AllUsers` or specific targets",
        ),
        (
            refused_inbound_users(&[(ALICE, User), ("wiki", Application)]),
            format!("{base}[1].targetType"),
            "`application` is not a target type of `usersAndGroups` (use `user` or `group`)",
        ),
        (
            refused_inbound_users(&[("AllUsers", Group)]),
            format!("{base}[0].targetType"),
            "`AllUsers` has target type `user`, not `group`",
        ),
        (
            refused_inbound_users(&[(ALICE, User), (&ALICE.to_uppercase(), User)]),
            format!("{base}[1]"),
            &twice,
        ),
        (
            refused_inbound_users(&[(SALES, Group), (SALES, User)]),
            format!("{base}[1]"),
            &both,
        ),
        (
            refused_inbound_users(&[("alice@fabrikam.example", User)]),
            format!("{base}[0].target"),
            "`alice@fabrikam.example` is neither `AllUsers` nor a user object id (a GUID)",
        ),
        (
            refused_inbound_users(&[("allUsers", User)]),
            format!("{base}[0].target"),
            "write `AllUsers` (found `allUsers`)",
        ),
        (
            refused_inbound_applications(&[("wiki", Application), (ALICE, User)]),
            "partners[2].b2bCollaborationInbound.applications.targets[1].targetType".to_owned(),
            "`user` is not a target type of `applications` (use `application`)",
        ),
        (
            refused_inbound_applications(&[("AllApplications", Application), ("wiki", Application)]),
            "partners[2].b2bCollaborationInbound.applications.targets[1]".to_owned(),
            "`AllApplications` (at `partners[2].b2bCollaborationInbound.applications.targets[0]`) already covers every target; list it alone",
        ),
    ];
    for (e, path, reason) in &cases {
        assert_eq!(
            (e.settings, e.path.as_str(), e.reason.as_str()),
            ("crossTenantAccess", path.as_str(), *reason)
        );
    }
    let many: Vec<String> = (0..=MAX_TARGETS).map(guid).collect();
    let many: Vec<(&str, TargetType)> = many.iter().map(|g| (g.as_str(), User)).collect();
    let e = refused_inbound_users(&many);
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        (base, "at most 1000 targets (found 1001)")
    );
    assert!(
        with_third_partner_inbound(B2bSetting {
            users_and_groups: Some(users(AccessType::Allowed, &many[..MAX_TARGETS])),
            applications: None,
        })
        .is_ok()
    );
}

#[test]
fn partner_tenants_are_guids_configured_once() {
    let mut policy: CrossTenantAccessPolicy = serde_json::from_str(&realistic_json()).unwrap();
    policy.partners[2].tenant_id = FABRIKAM.to_uppercase();
    let e = CrossTenantSettings::new(policy.clone()).unwrap_err();
    assert_eq!(e.path, "partners[2].tenantId");
    assert_eq!(
        e.reason,
        format!("tenant `{FABRIKAM}` is configured twice (also at `partners[0]`)")
    );
    for bad in [
        "fabrikam.example",
        "{3f2a1b4c-5d6e-4f70-8a9b-0c1d2e3f4a5b}",
        "3f2a1b4c5d6e4f708a9b0c1d2e3f4a5b",
        "",
    ] {
        policy.partners[2].tenant_id = bad.to_owned();
        let e = CrossTenantSettings::new(policy.clone()).unwrap_err();
        assert_eq!(e.path, "partners[2].tenantId", "{bad}");
        assert_eq!(e.reason, format!("`{bad}` is not a tenant id (a GUID)"));
    }
    // Written back in lower case.
    policy.partners[2].tenant_id = NORTHWIND.to_uppercase();
    let s = CrossTenantSettings::new(policy).unwrap();
    assert_eq!(s.policy().partners[2].tenant_id, NORTHWIND);
}

#[test]
fn document_errors_name_the_field_and_convert_to_config_errors() {
    let json = realistic_json().replace(
        r#""inboundTrust": {"isCompliantDeviceAccepted": true}"#,
        r#""inboundTrust": {"isCompliantDeviceAcepted": true}"#,
    );
    let e = CrossTenantSettings::from_json(&json).unwrap_err();
    assert_eq!(e.path, "partners[0].inboundTrust.isCompliantDeviceAcepted");
    let json = realistic_json().replacen(r#""accessType": "blocked""#, r#""accessType": "deny""#, 1);
    let e = CrossTenantSettings::from_json(&json).unwrap_err();
    assert_eq!(
        e.path,
        "default.b2bCollaborationOutbound.usersAndGroups.accessType"
    );
    let toml = realistic_toml().replacen(r#"targetType = "application""#, r#"targetType = "app""#, 1);
    let e = CrossTenantSettings::from_toml(&toml).unwrap_err();
    assert_eq!(
        e.path,
        "default.b2bCollaborationInbound.applications.targets[0].targetType"
    );
    let toml = realistic_toml().replace(r#"target = "payroll""#, r#"target = "pay roll""#);
    let e = CrossTenantSettings::from_toml(&toml).unwrap_err();
    assert_eq!(
        e.path,
        "partners[2].b2bCollaborationInbound.applications.targets[0].target"
    );
    assert_eq!(
        e.reason,
        "`pay roll` is neither `AllApplications` nor a client id (`A-Z a-z 0-9 - _ .`)"
    );
    assert_eq!(
        ConfigError::from(e),
        ConfigError::Invalid {
            field: "crossTenantAccess",
            reason: "`partners[2].b2bCollaborationInbound.applications.targets[0].target`: \
                     `pay roll` is neither `AllApplications` nor a client id (`A-Z a-z 0-9 - _ .`)"
                .to_owned(),
        }
    );
    let e = CrossTenantSettings::from_json(&format!("{} []", realistic_json())).unwrap_err();
    assert_eq!(e.path, ".");
    // Through `Deserialize` (embedded in a host's configuration), the
    // message names the path.
    let e = serde_json::from_str::<CrossTenantSettings>(r#"{"partners": [{"tenantId": "x"}]}"#).unwrap_err();
    assert!(e.to_string().contains("`partners[0].tenantId`"), "{e}");
}

#[test]
fn automatic_redemption_needs_our_inbound_and_their_outbound() {
    let s = realistic();
    // (tenant, our inbound allows, partner outbound declared, expected)
    let table = [
        (FABRIKAM, true, true),
        (FABRIKAM, false, false),
        (NORTHWIND, true, false),
        (NORTHWIND, false, false),
        (WOODGROVE, true, false),
        (TAILSPIN, true, false),
        (TAILSPIN, false, false),
    ];
    for (tenant, partner_outbound, want) in table {
        assert_eq!(
            s.effective(tenant).automatic_redemption(partner_outbound),
            want,
            "{tenant} {partner_outbound}"
        );
    }
    // The other direction: our outbound and their inbound.
    let table = [
        (FABRIKAM, true, true),
        (FABRIKAM, false, false),
        (NORTHWIND, true, true),
        (NORTHWIND, false, false),
        (WOODGROVE, true, false),
        (TAILSPIN, true, false),
    ];
    for (tenant, partner_inbound, want) in table {
        assert_eq!(
            s.effective(tenant).outbound_automatic_redemption(partner_inbound),
            want,
            "{tenant} {partner_inbound}"
        );
    }
    // The default never allows it.
    let json = r#"{"default": {"automaticUserConsentSettings": {"inboundAllowed": true}}}"#;
    let e = CrossTenantSettings::from_json(json).unwrap_err();
    assert_eq!(e.path, "default.automaticUserConsentSettings.inboundAllowed");
}

#[test]
fn only_trusted_claims_from_the_home_tenant_count() {
    let s = realistic();
    let fabrikam = s.effective(FABRIKAM);
    let northwind = s.effective(NORTHWIND);
    // Fabrikam: MFA (inherited) and compliant device trusted, hybrid not.
    let trusted = HomeClaims {
        mfa: true,
        compliant_device: true,
        hybrid_joined_device: false,
    };
    assert_eq!(fabrikam.trusted_claims(ALL), trusted);
    // Northwind turned MFA trust off: its MFA claim is ignored.
    assert_eq!(northwind.trusted_claims(ALL), HomeClaims::NONE);
    let mfa_only = HomeClaims {
        mfa: true,
        ..HomeClaims::NONE
    };
    assert_eq!(northwind.trusted_claims(mfa_only), HomeClaims::NONE);
    assert_eq!(fabrikam.trusted_claims(mfa_only), mfa_only);
    assert_eq!(s.effective(TAILSPIN).trusted_claims(ALL), mfa_only);

    // From the home tenant (any case): trusted as configured.
    let upper = FABRIKAM.to_uppercase();
    assert_eq!(fabrikam.trusted_claims_from(Some(FABRIKAM), &upper, ALL), trusted);
    assert_eq!(s.trusted_claims_from(Some(&upper), FABRIKAM, ALL), trusted);
    // A Fabrikam user whose MFA claim comes from Northwind, or from a
    // tenant that is not a partner: nothing counts.
    assert_eq!(
        s.trusted_claims_from(Some(FABRIKAM), NORTHWIND, ALL),
        HomeClaims::NONE
    );
    assert_eq!(
        s.trusted_claims_from(Some(FABRIKAM), TAILSPIN, ALL),
        HomeClaims::NONE
    );
    assert_eq!(
        s.effective(TAILSPIN)
            .trusted_claims_from(Some(FABRIKAM), TAILSPIN, ALL),
        HomeClaims::NONE
    );
    // A Tailspin user's own claim: the default's trust.
    assert_eq!(s.trusted_claims_from(Some(TAILSPIN), TAILSPIN, ALL), mfa_only);
    // Unknown home, or ids that are not tenant ids: nothing.
    assert_eq!(s.trusted_claims_from(None, FABRIKAM, ALL), HomeClaims::NONE);
    assert_eq!(
        s.trusted_claims_from(Some("fabrikam.example"), "fabrikam.example", ALL),
        HomeClaims::NONE
    );
    // A partner's settings never vouch for another tenant's claims, even
    // from that tenant's own users.
    assert_eq!(
        fabrikam.trusted_claims_from(Some(TAILSPIN), TAILSPIN, ALL),
        HomeClaims::NONE
    );
}

#[test]
fn json_and_toml_round_trip_a_realistic_configuration() {
    let from_json = realistic();
    let from_toml = CrossTenantSettings::from_toml(&realistic_toml()).unwrap();
    assert_eq!(from_json, from_toml);
    assert_eq!(from_toml.policy().partners[0].tenant_id, FABRIKAM);

    // JSON text: unset fields stay unset (null-free, left out).
    let written = serde_json::to_string_pretty(&from_json).unwrap();
    assert!(!written.contains("null"), "{written}");
    let again = CrossTenantSettings::from_json(&written).unwrap();
    assert_eq!(again, from_json);
    assert_eq!(again.policy(), from_json.policy());
    let fabrikam = &again.policy().partners[0];
    assert!(fabrikam.b2b_collaboration_outbound.is_none());
    assert!(
        fabrikam
            .b2b_collaboration_inbound
            .as_ref()
            .unwrap()
            .applications
            .is_none()
    );
    assert_eq!(fabrikam.inbound_trust.unwrap().is_mfa_accepted, None);
    let value: serde_json::Value = serde_json::from_str(&written).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&realistic_json()).unwrap();
    assert_eq!(value, expected);

    // TOML: through the value tree and back through the validating
    // `Deserialize` (the crate's `toml` has no text writer).
    let table = toml::Table::try_from(&from_toml).unwrap();
    assert_eq!(table["partners"].as_array().unwrap().len(), 3);
    let back: CrossTenantSettings = table.try_into().unwrap();
    assert_eq!(back, from_json);
    // The decisions agree too.
    for s in [&from_json, &from_toml, &again, &back] {
        assert!(
            !s.effective(WOODGROVE)
                .inbound_allows(ALICE, &[], "wiki")
                .is_allowed()
        );
        assert!(
            s.effective(FABRIKAM)
                .inbound_allows(BOB, &[SALES], "wiki")
                .is_allowed()
        );
    }
}

#[test]
fn at_most_the_partner_limit() {
    let partners: Vec<PartnerConfiguration> = (0..=MAX_PARTNERS)
        .map(|i| PartnerConfiguration::new(guid(i)))
        .collect();
    let e = CrossTenantSettings::new(CrossTenantAccessPolicy {
        default: Default::default(),
        partners: partners.clone(),
    })
    .unwrap_err();
    assert_eq!(
        (e.path.as_str(), e.reason.as_str()),
        ("partners", "at most 1000 partners (found 1001)")
    );
    let json = serde_json::to_string(&CrossTenantAccessPolicy {
        default: Default::default(),
        partners: partners.clone(),
    })
    .unwrap();
    assert_eq!(
        CrossTenantSettings::from_json(&json).unwrap_err().path,
        "partners"
    );

    let mut blocked = partners;
    blocked.truncate(MAX_PARTNERS);
    let last = guid(MAX_PARTNERS - 1);
    blocked[MAX_PARTNERS - 1].b2b_collaboration_inbound = Some(B2bSetting {
        users_and_groups: Some(TargetConfiguration::all_users(AccessType::Blocked)),
        applications: None,
    });
    let s = CrossTenantSettings::new(CrossTenantAccessPolicy {
        default: Default::default(),
        partners: blocked,
    })
    .unwrap();
    assert_eq!(s.partner_count(), MAX_PARTNERS);
    assert!(!s.effective(&last).inbound_allows(ALICE, &[], "wiki").is_allowed());
    assert!(
        s.effective(&guid(0))
            .inbound_allows(ALICE, &[], "wiki")
            .is_allowed()
    );
}
