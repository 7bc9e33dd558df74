//! The settings an administrator edits on `/admin/settings`: four JSON
//! documents in the shapes guestpass reads (the sign-up applications and
//! user flows, the external collaboration settings, the conditional access
//! policies and the cross-tenant access settings).
//!
//! `{base}` in a document stands for the portal's public base URL (it ends
//! with `/`), so saved settings keep working when the portal moves to
//! another port. Saved settings live in `<data>/settings.json`; a document
//! that no longer builds at start-up is reported and the defaults are used.

use std::fmt;
use std::path::Path;

use guestpass::GuestPass;
use guestpass::flow::access::StepUpMethods;
use guestpass::flow::config::SignUpConfig;
use guestpass::idp::email_otp::PasscodePolicy;
use guestpass::keys::SigningKey;
use guestpass::policy::{CollaborationSettings, CrossTenantSettings, PolicySet, TermsOfUse};
use serde::{Deserialize, Serialize};

use super::Deps;

/// The client id of the demo app.
pub const DEMO_APP: &str = "contoso-demo";
/// The client id of the payroll app (conditional access asks for MFA).
pub const PAYROLL_APP: &str = "contoso-payroll";
/// The agreement guests accept for payroll.
pub const GUEST_TERMS: &str = "contoso-guest-terms";

/// The default sign-up configuration: two applications and one user flow
/// collecting built-in and custom attributes.
pub const DEFAULT_SIGN_UP: &str = r#"{
  "applications": [
    {"clientId": "contoso-demo", "displayName": "Contoso demo app",
     "redirectUris": ["{base}app/callback"]},
    {"clientId": "contoso-payroll", "displayName": "Contoso payroll",
     "redirectUris": ["{base}payroll/callback"]}
  ],
  "userFlows": [{
    "id": "contoso-customers",
    "displayName": "Contoso customers",
    "identityProviders": ["emailOtp"],
    "applications": ["contoso-demo", "contoso-payroll"],
    "attributes": [
      {"name": "displayName"},
      {"name": "givenName"},
      {"name": "surname"},
      {"name": "country", "userInputType": "dropdownSingleSelect",
       "userAttributeValues": [
         {"name": {"en-US": "Netherlands", "de-DE": "Niederlande"}, "value": "NL", "isDefault": true},
         {"name": {"en-US": "Germany", "de-DE": "Deutschland"}, "value": "DE"},
         {"name": {"en-US": "United States", "de-DE": "Vereinigte Staaten"}, "value": "US"}
       ]},
      {"name": "postalCode", "isOptional": true, "pattern": "[0-9]{4,5}( ?[A-Z]{2})?"},
      {"name": "extension_7d3c2b1a0f9e4d8c8b7a6f5e4d3c2b1a_newsletter",
       "dataType": "boolean", "userInputType": "checkboxSingleSelect", "isOptional": true,
       "label": {"en-US": "Send me the Contoso newsletter", "de-DE": "Contoso-Newsletter senden"}}
    ],
    "localization": {"en-US": {"attributesTitle": "Tell Contoso about yourself"},
                     "de-DE": {"attributesTitle": "Erzählen Sie Contoso von sich"}}
  }]
}"#;

/// The default external collaboration settings.
pub const DEFAULT_COLLABORATION: &str = r#"{
  "allowInvitesFrom": "adminsAndGuestInviters",
  "guestUserAccess": "limited",
  "domains": {"deny": ["blocked.example"]},
  "emailOtpEnabled": true,
  "selfServiceSignUpEnabled": true
}"#;

/// The default conditional access: MFA and the guest terms for payroll,
/// and a report-only block of a lab network.
pub const DEFAULT_CONDITIONAL_ACCESS: &str = r#"{
  "namedLocations": [
    {"id": "lab-network", "displayName": "Lab network", "isTrusted": false,
     "ipRanges": ["198.51.100.0/24"]}
  ],
  "policies": [
    {"displayName": "Require MFA for payroll", "state": "enabled",
     "conditions": {
       "users": {"includeUsers": ["All"]},
       "applications": {"includeApplications": ["contoso-payroll"]}},
     "grantControls": {"operator": "OR", "builtInControls": ["mfa"]}},
    {"displayName": "Guests accept the guest terms for payroll", "state": "enabled",
     "conditions": {
       "users": {"includeUsers": ["GuestsOrExternalUsers"]},
       "applications": {"includeApplications": ["contoso-payroll"]}},
     "grantControls": {"termsOfUse": ["contoso-guest-terms"]}},
    {"displayName": "Block the lab network", "state": "enabledForReportingButNotEnforced",
     "conditions": {
       "users": {"includeUsers": ["All"]},
       "applications": {"includeApplications": ["All"]},
       "locations": {"includeLocations": ["lab-network"]}},
     "grantControls": {"operator": "OR", "builtInControls": ["block"]}}
  ]
}"#;

/// The default cross-tenant access settings: the service defaults.
pub const DEFAULT_CROSS_TENANT: &str = r#"{
  "partners": []
}"#;

/// The demo's passcode policy: a code may be sent to one address every
/// second (and 30 an hour), so a guest who just redeemed an invitation can
/// sign in to an app at once. A real host keeps the defaults (30 seconds,
/// 5 an hour), which slow down anyone flooding an address with mail.
pub fn demo_passcode_policy() -> PasscodePolicy {
    PasscodePolicy {
        min_send_interval: time::Duration::seconds(1),
        max_sends_per_window: 30,
        ..PasscodePolicy::default()
    }
}

/// The four documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// Applications and user flows ([`SignUpConfig`]).
    pub sign_up: String,
    /// External collaboration settings ([`CollaborationSettings`]).
    pub collaboration: String,
    /// Conditional access ([`PolicySet`]).
    pub conditional_access: String,
    /// Cross-tenant access settings ([`CrossTenantSettings`]).
    pub cross_tenant: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            sign_up: DEFAULT_SIGN_UP.to_owned(),
            collaboration: DEFAULT_COLLABORATION.to_owned(),
            conditional_access: DEFAULT_CONDITIONAL_ACCESS.to_owned(),
            cross_tenant: DEFAULT_CROSS_TENANT.to_owned(),
        }
    }
}

/// A setting that does not build: which document, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsError {
    /// `signUp`, `collaboration`, `conditionalAccess`, `crossTenant`, or
    /// `service` when the documents parse but do not fit together.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SettingsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

impl std::error::Error for SettingsError {}

fn err(field: &'static str) -> impl Fn(String) -> SettingsError {
    move |message| SettingsError { field, message }
}

const FILE: &str = "settings.json";

impl Settings {
    /// The saved settings in `dir`, or the defaults.
    pub fn load(dir: &Path) -> Self {
        std::fs::read_to_string(dir.join(FILE))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    /// Saves the settings in `dir` (a failure is reported, not fatal).
    pub fn save(&self, dir: &Path) {
        let written = serde_json::to_string_pretty(self)
            .map_err(std::io::Error::other)
            .and_then(|text| std::fs::write(dir.join(FILE), text));
        if let Err(e) = written {
            eprintln!("cannot save the settings in `{}`: {e}", dir.display());
        }
    }

    /// The conditional access policies, parsed (for What-If).
    ///
    /// # Errors
    ///
    /// The document's error.
    pub fn policies(&self, base: &str) -> Result<PolicySet, SettingsError> {
        PolicySet::from_json(&self.conditional_access.replace("{base}", base))
            .map_err(|e| err("conditionalAccess")(e.to_string()))
    }

    /// The sign-up configuration, parsed.
    ///
    /// # Errors
    ///
    /// The document's error.
    pub fn sign_up(&self, base: &str) -> Result<SignUpConfig, SettingsError> {
        SignUpConfig::from_json(&self.sign_up.replace("{base}", base))
            .map_err(|e| err("signUp")(e.to_string()))
    }

    /// Builds Contoso's service from these settings.
    ///
    /// # Errors
    ///
    /// The first document that does not parse, or `service` when the
    /// builder refuses the combination.
    pub fn build(&self, deps: &Deps) -> Result<GuestPass, SettingsError> {
        let base = deps.base.as_str();
        let sign_up = self.sign_up(base)?;
        let collaboration = CollaborationSettings::from_json(&self.collaboration.replace("{base}", base))
            .map_err(|e| err("collaboration")(e.to_string()))?;
        let policies = self.policies(base)?;
        let cross_tenant = CrossTenantSettings::from_json(&self.cross_tenant.replace("{base}", base))
            .map_err(|e| err("crossTenant")(e.to_string()))?;
        let service = err("service");
        let terms = TermsOfUse::new(
            GUEST_TERMS,
            "Contoso guest terms",
            &format!("{base}terms/guests"),
            1,
        )
        .map_err(|e| service(e.to_string()))?;
        let signing = SigningKey::new("portal-1", deps.ticket_key).map_err(|e| service(e.to_string()))?;
        GuestPass::builder()
            .tenant("contoso", "Contoso", "contoso.example")
            .public_base_url(base)
            .privacy_statement_url(format!("{base}privacy"))
            .signing_key(signing)
            .redirect_url(format!("{base}app"))
            .redirect_url(format!("{base}payroll"))
            .store(deps.store.clone())
            .mail(deps.mail.clone())
            .audit(deps.audit.clone())
            .random(deps.random.clone())
            .token_keys(deps.token_keys.clone())
            .sign_up(sign_up)
            .collaboration(collaboration)
            .conditional_access(policies)
            .cross_tenant_access(cross_tenant)
            .agreement(terms)
            .step_up_methods(StepUpMethods::default())
            .passcode_policy(demo_passcode_policy())
            .build()
            .map_err(|e| service(e.to_string()))
    }
}
