//! The configuration of self-service sign-up: the applications people sign
//! up to, and the user flows assigned to them.
//!
//! A [`SignUpConfig`] is loaded from JSON ([`SignUpConfig::from_json`]) or
//! TOML ([`SignUpConfig::from_toml`]) and validated as a whole; every error
//! names the offending field by its path, such as
//! `userFlows[0].attributes[2].maxLength`.
//!
//! - **Applications** have a client id, a display name and the redirect
//!   URIs the completion may be delivered to (compared exactly, character
//!   for character).
//! - **User flows** have an id, the identity providers they offer, the
//!   attributes they collect (in display order, see
//!   [`attributes`](crate::flow::attributes)), the applications assigned to
//!   them (many applications may share one flow; an application has at
//!   most one flow), at most one API connector per step, whether an
//!   administrator must approve each sign-up, and localized page strings.
//!
//! ```
//! use guestpass::flow::config::{SignUpConfig, TextKey};
//! use guestpass::mail::templates::Language;
//!
//! let config = SignUpConfig::from_json(r#"{
//!   "applications": [{
//!     "clientId": "woodgrove-groceries",
//!     "displayName": "Woodgrove Groceries",
//!     "redirectUris": ["https://woodgrove.example/signin-oidc"]
//!   }],
//!   "userFlows": [{
//!     "id": "woodgrove-signup",
//!     "identityProviders": ["emailOtp"],
//!     "attributes": [{"name": "givenName"}, {"name": "city", "isOptional": true}],
//!     "applications": ["woodgrove-groceries"],
//!     "localization": {"de-DE": {"attributesTitle": "Erzählen Sie uns von sich"}}
//!   }]
//! }"#)?;
//! let flow = config.flow_for_application("woodgrove-groceries").unwrap();
//! assert_eq!(flow.attributes().len(), 2);
//! assert_eq!(flow.text(TextKey::AttributesTitle, Language::DeDe), "Erzählen Sie uns von sich");
//!
//! let bad = SignUpConfig::from_json(r#"{"applications": [], "userFlows": [{"id": "x",
//!   "identityProviders": ["emailOtp"], "attributes": [], "applications": ["nope"]}]}"#);
//! assert_eq!(
//!     bad.unwrap_err().to_string(),
//!     "sign-up configuration field `userFlows[0].applications[0]` is invalid: no application has client id `nope`"
//! );
//! # Ok::<(), guestpass::flow::config::FlowConfigError>(())
//! ```

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::Duration;

use crate::flow::attributes::{AttributeDefinition, CollectedAttributes, DefinitionError, LocalizedText};
use crate::flow::connector::{ConnectorConfig, ConnectorStep};
use crate::mail::templates::Language;

/// Lifetime of a sign-up flow unless configured otherwise.
pub const DEFAULT_FLOW_LIFETIME: Duration = Duration::hours(1);
/// How long a sign-up waits for an administrator unless configured otherwise.
pub const DEFAULT_APPROVAL_LIFETIME: Duration = Duration::days(7);
/// Most applications one configuration may hold.
pub const MAX_APPLICATIONS: usize = 1000;
/// Most user flows one configuration may hold.
pub const MAX_USER_FLOWS: usize = 100;
/// Most redirect URIs one application may register.
pub const MAX_REDIRECT_URIS: usize = 32;
/// Longest id, client id or display name, in characters.
pub const MAX_NAME_LEN: usize = 256;
/// Longest localized page string, in characters.
pub const MAX_TEXT_LEN: usize = 1024;

/// A sign-up configuration that cannot be used: the path of the field and
/// what is wrong with it. A connector password's value is never quoted.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("sign-up configuration field `{path}` is invalid: {reason}")]
pub struct FlowConfigError {
    /// Where, such as `userFlows[0].applications[1]` (`.` for the document).
    pub path: String,
    /// What is wrong.
    pub reason: String,
}

impl FlowConfigError {
    fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }
}

impl From<FlowConfigError> for crate::error::ConfigError {
    fn from(e: FlowConfigError) -> Self {
        crate::error::ConfigError::Invalid {
            field: "sign_up",
            reason: e.to_string(),
        }
    }
}

/// An identity provider a user flow can offer: the email one-time passcode,
/// or a federated provider registered with the service under its id
/// ([`GuestPassBuilder::identity_provider`](crate::GuestPassBuilder::identity_provider)).
///
/// In configuration and forms it is a string: `emailOtp`, or the federated
/// provider's id (1 to 64 characters of `A-Z a-z 0-9 . _ -`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum IdentityProviderKind {
    /// Email one-time passcode: the person proves an address by typing the
    /// code mailed to it.
    EmailOtp,
    /// The federated provider with this id.
    Federated(String),
}

/// The configuration name of the email one-time passcode.
pub const EMAIL_OTP_PROVIDER: &str = "emailOtp";

impl IdentityProviderKind {
    /// The configuration (and form) name.
    pub fn as_str(&self) -> &str {
        match self {
            IdentityProviderKind::EmailOtp => EMAIL_OTP_PROVIDER,
            IdentityProviderKind::Federated(id) => id,
        }
    }

    /// The provider called `name` in configuration and forms, if `name` is
    /// `emailOtp` or a well-formed provider id.
    pub fn from_name(name: &str) -> Option<Self> {
        if name == EMAIL_OTP_PROVIDER {
            Some(IdentityProviderKind::EmailOtp)
        } else if is_provider_id(name) {
            Some(IdentityProviderKind::Federated(name.to_owned()))
        } else {
            None
        }
    }
}

/// Whether `id` is 1 to 64 characters of `A-Z a-z 0-9 . _ -`.
pub(crate) fn is_provider_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

impl Serialize for IdentityProviderKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for IdentityProviderKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        IdentityProviderKind::from_name(&name).ok_or_else(|| {
            serde::de::Error::custom(format!(
                "`{}` is neither `emailOtp` nor a provider id (1 to 64 characters of A-Z a-z 0-9 . _ -)",
                crate::flow::connector::quote(&name)
            ))
        })
    }
}

/// A page string of a user flow, overridable per language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum TextKey {
    /// Heading of the identity provider choice.
    ChooseProviderTitle,
    /// Prompt for the address a passcode goes to.
    EmailPrompt,
    /// Prompt for the passcode.
    PasscodePrompt,
    /// Heading of the attribute collection page.
    AttributesTitle,
    /// Shown while an administrator's approval is awaited.
    ApprovalPending,
    /// Shown when an administrator denied the sign-up.
    ApprovalDenied,
    /// Shown when an administrator approved the sign-up, before the person
    /// continues.
    ApprovalGranted,
    /// Shown when the proven address already belongs to another account.
    AccountExists,
    /// Shown when the account is disabled.
    AccountDisabled,
    /// Shown when the collected `email` differs from the proven address.
    EmailMismatch,
    /// Shown when a conditional access policy blocks the sign-in.
    AccessBlocked,
    /// Shown when the person's organisation may not collaborate with this
    /// one (cross-organisation access settings).
    PartnerBlocked,
    /// Shown when a policy asks for a compliant or domain-joined device,
    /// which no step of a flow can provide.
    DeviceRequired,
    /// Shown when multi-factor authentication is required but no step-up
    /// method is available for this sign-in.
    StepUpUnavailable,
    /// Shown when the person declined terms of use a policy requires.
    TermsDeclined,
    /// Shown when too many wrong authenticator codes were entered.
    StepUpFailed,
}

impl TextKey {
    /// Every key.
    pub const ALL: [TextKey; 16] = [
        TextKey::ChooseProviderTitle,
        TextKey::EmailPrompt,
        TextKey::PasscodePrompt,
        TextKey::AttributesTitle,
        TextKey::ApprovalPending,
        TextKey::ApprovalDenied,
        TextKey::ApprovalGranted,
        TextKey::AccountExists,
        TextKey::AccountDisabled,
        TextKey::EmailMismatch,
        TextKey::AccessBlocked,
        TextKey::PartnerBlocked,
        TextKey::DeviceRequired,
        TextKey::StepUpUnavailable,
        TextKey::TermsDeclined,
        TextKey::StepUpFailed,
    ];

    /// The built-in text in `lang`.
    pub fn default_text(self, lang: Language) -> &'static str {
        use Language::{DeDe, NlNl};
        use TextKey::*;
        match (self, lang) {
            (ChooseProviderTitle, DeDe) => "Wählen Sie, wie Sie sich anmelden",
            (ChooseProviderTitle, NlNl) => "Kies hoe u zich aanmeldt",
            (ChooseProviderTitle, _) => "Choose how to sign in",
            (EmailPrompt, DeDe) => "Geben Sie Ihre E-Mail-Adresse ein",
            (EmailPrompt, NlNl) => "Voer uw e-mailadres in",
            (EmailPrompt, _) => "Enter your email address",
            (PasscodePrompt, DeDe) => "Geben Sie den Code ein, den wir Ihnen gesendet haben",
            (PasscodePrompt, NlNl) => "Voer de code in die we u hebben gestuurd",
            (PasscodePrompt, _) => "Enter the code we sent you",
            (AttributesTitle, DeDe) => "Erzählen Sie uns etwas über sich",
            (AttributesTitle, NlNl) => "Vertel ons iets over uzelf",
            (AttributesTitle, _) => "Tell us about yourself",
            (ApprovalPending, DeDe) => "Ihre Anfrage wartet auf Genehmigung",
            (ApprovalPending, NlNl) => "Uw aanvraag wacht op goedkeuring",
            (ApprovalPending, _) => "Your request is waiting for approval",
            (ApprovalDenied, DeDe) => "Ihre Anfrage wurde abgelehnt",
            (ApprovalDenied, NlNl) => "Uw aanvraag is afgewezen",
            (ApprovalDenied, _) => "Your request was declined",
            (ApprovalGranted, DeDe) => {
                "Ihre Anfrage wurde genehmigt. Fahren Sie fort, um Ihr Konto zu erstellen"
            }
            (ApprovalGranted, NlNl) => "Uw aanvraag is goedgekeurd. Ga verder om uw account aan te maken",
            (ApprovalGranted, _) => "Your request was approved. Continue to create your account",
            (AccountExists, DeDe) => {
                "Für diese Adresse gibt es bereits ein Konto. Wenn Sie eingeladen wurden, öffnen Sie den Link in Ihrer Einladung"
            }
            (AccountExists, NlNl) => {
                "Voor dit adres bestaat al een account. Bent u uitgenodigd, open dan de link in uw uitnodiging"
            }
            (AccountExists, _) => {
                "An account already exists for this address. If you were invited, open the link in your invitation"
            }
            (AccountDisabled, DeDe) => "Ihr Konto ist deaktiviert",
            (AccountDisabled, NlNl) => "Uw account is uitgeschakeld",
            (AccountDisabled, _) => "Your account is disabled",
            (EmailMismatch, DeDe) => "Die E-Mail-Adresse muss die bestätigte Adresse sein",
            (EmailMismatch, NlNl) => "Het e-mailadres moet het bevestigde adres zijn",
            (EmailMismatch, _) => "The email address must be the one you verified",
            (AccessBlocked, DeDe) => "Ihre Organisation erlaubt diese Anmeldung nicht",
            (AccessBlocked, NlNl) => "Uw organisatie staat deze aanmelding niet toe",
            (AccessBlocked, _) => "Your sign-in was blocked by an access policy",
            (PartnerBlocked, DeDe) => "Ihre Organisation ist für die Zusammenarbeit nicht freigegeben",
            (PartnerBlocked, NlNl) => "Uw organisatie is niet toegestaan voor samenwerking",
            (PartnerBlocked, _) => "Your organization is not allowed to collaborate with this one",
            (DeviceRequired, DeDe) => "Für diese Anwendung ist ein verwaltetes Gerät erforderlich",
            (DeviceRequired, NlNl) => "Voor deze toepassing is een beheerd apparaat vereist",
            (DeviceRequired, _) => "This application requires a managed device",
            (StepUpUnavailable, DeDe) => {
                "Für diese Anmeldung ist eine mehrstufige Authentifizierung erforderlich, aber keine Methode ist verfügbar"
            }
            (StepUpUnavailable, NlNl) => {
                "Voor deze aanmelding is meervoudige verificatie vereist, maar er is geen methode beschikbaar"
            }
            (StepUpUnavailable, _) => {
                "This sign-in requires multifactor authentication, but no method is available"
            }
            (TermsDeclined, DeDe) => "Ohne Zustimmung zu den Nutzungsbedingungen ist keine Anmeldung möglich",
            (TermsDeclined, NlNl) => "Zonder akkoord met de gebruiksvoorwaarden kunt u zich niet aanmelden",
            (TermsDeclined, _) => "You cannot sign in without accepting the terms of use",
            (StepUpFailed, DeDe) => "Zu viele falsche Codes. Melden Sie sich erneut an",
            (StepUpFailed, NlNl) => "Te veel onjuiste codes. Meld u opnieuw aan",
            (StepUpFailed, _) => "Too many wrong codes. Sign in again",
        }
    }
}

/// An application people sign up to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Application {
    /// The client id: `A-Z a-z 0-9 - _ .`, 1 to 256 characters.
    pub client_id: String,
    /// The name people see.
    pub display_name: String,
    /// Where completions may be delivered: absolute `https` URLs (`http`
    /// on a loopback host), without fragment or credentials, compared
    /// exactly.
    pub redirect_uris: Vec<String>,
}

/// Whether an administrator approves each sign-up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApprovalSettings {
    /// Whether sign-ups wait for approval.
    #[serde(default)]
    pub required: bool,
    /// How long a pending sign-up waits, in days (1 to 90, default 7).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_lifetime_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawUserFlow {
    id: String,
    #[serde(default)]
    display_name: Option<String>,
    identity_providers: Vec<IdentityProviderKind>,
    // Validated in `SignUpConfig::validate`, so an error can name the
    // attribute's index and field.
    attributes: Vec<AttributeDefinition>,
    applications: Vec<String>,
    #[serde(default)]
    api_connectors: Vec<ConnectorConfig>,
    #[serde(default)]
    approval: Option<ApprovalSettings>,
    #[serde(default)]
    default_language: Option<String>,
    #[serde(default)]
    localization: BTreeMap<String, BTreeMap<TextKey, String>>,
    #[serde(default)]
    flow_lifetime_minutes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawSignUpConfig {
    #[serde(default)]
    applications: Vec<Application>,
    #[serde(default)]
    user_flows: Vec<RawUserFlow>,
}

/// One self-service sign-up user flow, validated.
#[derive(Debug, Clone)]
pub struct UserFlow {
    id: String,
    display_name: String,
    identity_providers: Vec<IdentityProviderKind>,
    attributes: CollectedAttributes,
    applications: Vec<String>,
    post_federation_signup: Option<ConnectorConfig>,
    post_attribute_collection: Option<ConnectorConfig>,
    approval_required: bool,
    approval_lifetime: Duration,
    default_language: Language,
    localization: BTreeMap<TextKey, LocalizedText>,
    lifetime: Duration,
}

impl UserFlow {
    /// The flow's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name administrators see (the id unless configured).
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// The identity providers offered, in the configured order.
    pub fn identity_providers(&self) -> &[IdentityProviderKind] {
        &self.identity_providers
    }

    /// The attributes collected, in display order.
    pub fn attributes(&self) -> &CollectedAttributes {
        &self.attributes
    }

    /// The client ids of the applications assigned.
    pub fn applications(&self) -> &[String] {
        &self.applications
    }

    /// The API connector at `step`, if any.
    pub fn connector(&self, step: ConnectorStep) -> Option<&ConnectorConfig> {
        match step {
            ConnectorStep::PostFederationSignup => self.post_federation_signup.as_ref(),
            ConnectorStep::PostAttributeCollection => self.post_attribute_collection.as_ref(),
        }
    }

    /// Whether any API connector is configured.
    pub fn has_connectors(&self) -> bool {
        self.post_federation_signup.is_some() || self.post_attribute_collection.is_some()
    }

    /// Whether sign-ups wait for an administrator's approval.
    pub fn approval_required(&self) -> bool {
        self.approval_required
    }

    /// How long a pending sign-up waits for approval.
    pub fn approval_lifetime(&self) -> Duration {
        self.approval_lifetime
    }

    /// The flow's default language: the fallback for strings and labels
    /// missing in the requested language.
    pub fn default_language(&self) -> Language {
        self.default_language
    }

    /// How long a flow lives from its start (while not awaiting approval).
    pub fn lifetime(&self) -> Duration {
        self.lifetime
    }

    /// The page string `key` in `lang`: the flow's override in `lang`, else
    /// the built-in text in `lang`. (An override in one language never
    /// replaces the built-in text of another.)
    pub fn text(&self, key: TextKey, lang: Language) -> &str {
        self.localization
            .get(&key)
            .and_then(|t| t.get(lang.tag()))
            .unwrap_or_else(|| key.default_text(lang))
    }

    /// The language to show a person whose `ui_locales` (space-separated,
    /// most preferred first) is given: the first supported one, else the
    /// flow's default language.
    pub fn language(&self, ui_locales: Option<&str>) -> Language {
        ui_locales
            .into_iter()
            .flat_map(str::split_whitespace)
            .find_map(Language::from_tag)
            .unwrap_or(self.default_language)
    }

    /// Whether the flow offers `provider`.
    pub fn offers(&self, provider: &IdentityProviderKind) -> bool {
        self.identity_providers.contains(provider)
    }

    /// The ids of the federated providers the flow offers.
    pub fn federated_providers(&self) -> impl Iterator<Item = &str> {
        self.identity_providers.iter().filter_map(|p| match p {
            IdentityProviderKind::Federated(id) => Some(id.as_str()),
            IdentityProviderKind::EmailOtp => None,
        })
    }
}

/// The validated sign-up configuration of a tenant.
#[derive(Debug, Clone, Default)]
pub struct SignUpConfig {
    applications: Vec<Application>,
    user_flows: Vec<UserFlow>,
}

impl SignUpConfig {
    /// Parses and validates a JSON document.
    ///
    /// # Errors
    ///
    /// [`FlowConfigError`] naming the path of the first bad field.
    pub fn from_json(json: &str) -> Result<Self, FlowConfigError> {
        let mut de = serde_json::Deserializer::from_str(json);
        let raw: RawSignUpConfig = serde_path_to_error::deserialize(&mut de)
            .map_err(|e| path_error(e.path().to_string(), || e.inner().to_string()))?;
        de.end().map_err(|e| FlowConfigError::new(".", e.to_string()))?;
        Self::validate(raw)
    }

    /// Parses and validates a TOML document (the same fields as JSON:
    /// `[[applications]]`, `[[userFlows]]`, `[[userFlows.attributes]]`).
    ///
    /// # Errors
    ///
    /// [`FlowConfigError`] naming the path of the first bad field.
    pub fn from_toml(text: &str) -> Result<Self, FlowConfigError> {
        let de = toml::Deserializer::parse(text).map_err(|e| FlowConfigError::new(".", e.message()))?;
        // The message alone: the error's display quotes the document's line.
        let raw: RawSignUpConfig = serde_path_to_error::deserialize(de)
            .map_err(|e| path_error(e.path().to_string(), || e.inner().message().to_owned()))?;
        Self::validate(raw)
    }

    /// The applications.
    pub fn applications(&self) -> &[Application] {
        &self.applications
    }

    /// The user flows.
    pub fn user_flows(&self) -> &[UserFlow] {
        &self.user_flows
    }

    /// The application with `client_id`.
    pub fn application(&self, client_id: &str) -> Option<&Application> {
        self.applications.iter().find(|a| a.client_id == client_id)
    }

    /// The user flow with `id`.
    pub fn user_flow(&self, id: &str) -> Option<&UserFlow> {
        self.user_flows.iter().find(|f| f.id == id)
    }

    /// The user flow assigned to the application `client_id`, if any.
    pub fn flow_for_application(&self, client_id: &str) -> Option<&UserFlow> {
        self.user_flows
            .iter()
            .find(|f| f.applications.iter().any(|a| a == client_id))
    }

    /// Whether any flow calls an API connector.
    pub fn has_connectors(&self) -> bool {
        self.user_flows.iter().any(UserFlow::has_connectors)
    }

    fn validate(raw: RawSignUpConfig) -> Result<Self, FlowConfigError> {
        if raw.applications.len() > MAX_APPLICATIONS {
            return Err(FlowConfigError::new(
                "applications",
                format!("at most {MAX_APPLICATIONS} applications"),
            ));
        }
        if raw.user_flows.len() > MAX_USER_FLOWS {
            return Err(FlowConfigError::new(
                "userFlows",
                format!("at most {MAX_USER_FLOWS} user flows"),
            ));
        }
        for (i, app) in raw.applications.iter().enumerate() {
            let at = |field: &str| format!("applications[{i}].{field}");
            check_id(&app.client_id).map_err(|r| FlowConfigError::new(at("clientId"), r))?;
            if raw.applications[..i].iter().any(|a| a.client_id == app.client_id) {
                return Err(FlowConfigError::new(
                    at("clientId"),
                    format!("client id `{}` is listed twice", app.client_id),
                ));
            }
            check_text(&app.display_name, MAX_NAME_LEN)
                .map_err(|r| FlowConfigError::new(at("displayName"), r))?;
            if app.redirect_uris.is_empty() || app.redirect_uris.len() > MAX_REDIRECT_URIS {
                return Err(FlowConfigError::new(
                    at("redirectUris"),
                    format!("must list 1 to {MAX_REDIRECT_URIS} uris"),
                ));
            }
            for (j, uri) in app.redirect_uris.iter().enumerate() {
                let path = format!("applications[{i}].redirectUris[{j}]");
                crate::config::check_url("redirectUris", uri)
                    .map_err(|e| FlowConfigError::new(&path, config_reason(e)))?;
                if app.redirect_uris[..j].contains(uri) {
                    return Err(FlowConfigError::new(path, format!("`{uri}` is listed twice")));
                }
            }
        }
        let mut flows = Vec::with_capacity(raw.user_flows.len());
        let mut assigned: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, f) in raw.user_flows.iter().enumerate() {
            let at = |field: &str| format!("userFlows[{i}].{field}");
            check_id(&f.id).map_err(|r| FlowConfigError::new(at("id"), r))?;
            if raw.user_flows[..i].iter().any(|o| o.id == f.id) {
                return Err(FlowConfigError::new(
                    at("id"),
                    format!("user flow id `{}` is used twice", f.id),
                ));
            }
            if let Some(name) = &f.display_name {
                check_text(name, MAX_NAME_LEN).map_err(|r| FlowConfigError::new(at("displayName"), r))?;
            }
            if f.identity_providers.is_empty() {
                return Err(FlowConfigError::new(
                    at("identityProviders"),
                    "must offer at least one identity provider",
                ));
            }
            for (j, p) in f.identity_providers.iter().enumerate() {
                if f.identity_providers[..j].contains(p) {
                    return Err(FlowConfigError::new(
                        format!("userFlows[{i}].identityProviders[{j}]"),
                        format!("`{}` is listed twice", p.as_str()),
                    ));
                }
            }
            let attributes = CollectedAttributes::new(f.attributes.clone())
                .map_err(|e| FlowConfigError::new(attribute_path(i, &f.attributes, &e), e.to_string()))?;
            for (j, client_id) in f.applications.iter().enumerate() {
                let path = format!("userFlows[{i}].applications[{j}]");
                if !raw.applications.iter().any(|a| &a.client_id == client_id) {
                    return Err(FlowConfigError::new(
                        path,
                        format!("no application has client id `{client_id}`"),
                    ));
                }
                if let Some(other) = assigned.insert(client_id.as_str(), i) {
                    let reason = if other == i {
                        format!("`{client_id}` is listed twice")
                    } else {
                        format!(
                            "application `{client_id}` is already assigned to user flow `{}`; an application has at most one user flow",
                            raw.user_flows.get(other).map_or("", |o| o.id.as_str())
                        )
                    };
                    return Err(FlowConfigError::new(path, reason));
                }
            }
            let mut post_federation_signup = None;
            let mut post_attribute_collection = None;
            for (j, c) in f.api_connectors.iter().enumerate() {
                let slot = match c.step() {
                    ConnectorStep::PostFederationSignup => &mut post_federation_signup,
                    ConnectorStep::PostAttributeCollection => &mut post_attribute_collection,
                };
                if slot.is_some() {
                    return Err(FlowConfigError::new(
                        format!("userFlows[{i}].apiConnectors[{j}].step"),
                        format!("a flow has at most one connector at `{}`", c.step().wire_name()),
                    ));
                }
                *slot = Some(c.clone());
            }
            let approval = f.approval.clone().unwrap_or(ApprovalSettings {
                required: false,
                pending_lifetime_days: None,
            });
            let approval_lifetime = match approval.pending_lifetime_days {
                None => DEFAULT_APPROVAL_LIFETIME,
                Some(d @ 1..=90) => Duration::days(i64::from(d)),
                Some(_) => {
                    return Err(FlowConfigError::new(
                        at("approval.pendingLifetimeDays"),
                        "must be 1 to 90",
                    ));
                }
            };
            let default_language = match &f.default_language {
                None => Language::EnUs,
                Some(tag) => Language::from_tag(tag).ok_or_else(|| {
                    FlowConfigError::new(
                        at("defaultLanguage"),
                        format!("`{tag}` is not a supported language"),
                    )
                })?,
            };
            let mut localization: BTreeMap<TextKey, LocalizedText> = BTreeMap::new();
            for (tag, texts) in &f.localization {
                if Language::from_tag(tag).is_none_or(|l| !l.tag().eq_ignore_ascii_case(tag)) {
                    return Err(FlowConfigError::new(
                        format!("userFlows[{i}].localization.{tag}"),
                        format!(
                            "`{tag}` is not a supported language (one of {})",
                            Language::ALL.map(Language::tag).join(", ")
                        ),
                    ));
                }
                for (key, text) in texts {
                    check_text(text, MAX_TEXT_LEN).map_err(|r| {
                        FlowConfigError::new(
                            format!("userFlows[{i}].localization.{tag}.{}", key_name(*key)),
                            r,
                        )
                    })?;
                    localization.entry(*key).or_default().insert(tag, text);
                }
            }
            let lifetime = match f.flow_lifetime_minutes {
                None => DEFAULT_FLOW_LIFETIME,
                Some(m @ 5..=1440) => Duration::minutes(i64::from(m)),
                Some(_) => {
                    return Err(FlowConfigError::new(
                        at("flowLifetimeMinutes"),
                        "must be 5 to 1440",
                    ));
                }
            };
            flows.push(UserFlow {
                id: f.id.clone(),
                display_name: f.display_name.clone().unwrap_or_else(|| f.id.clone()),
                identity_providers: f.identity_providers.clone(),
                attributes: attributes.with_default_language(default_language),
                applications: f.applications.clone(),
                post_federation_signup,
                post_attribute_collection,
                approval_required: approval.required,
                approval_lifetime,
                default_language,
                localization,
                lifetime,
            });
        }
        Ok(Self {
            applications: raw.applications,
            user_flows: flows,
        })
    }
}

/// The path of the definition (and field) `e` is about, in user flow `i`.
fn attribute_path(i: usize, definitions: &[AttributeDefinition], e: &DefinitionError) -> String {
    use DefinitionError::*;
    let (name, field) = match e {
        TooManyAttributes { .. } | Json { .. } => return format!("userFlows[{i}].attributes"),
        DuplicateName { .. } => {
            // The first definition whose name was listed before it.
            let j = definitions
                .iter()
                .enumerate()
                .position(|(j, d)| definitions[..j].iter().any(|o| o.name == d.name))
                .unwrap_or(0);
            return format!("userFlows[{i}].attributes[{j}].name");
        }
        MissingDataType { name } | DataTypeMismatch { name, .. } => (name, "dataType"),
        InputTypeMismatch { name, .. } | EmailBoxRequired { name } => (name, "userInputType"),
        MissingValues { name, .. }
        | ValuesNotAllowed { name, .. }
        | TooManyValues { name, .. }
        | DuplicateValue { name, .. }
        | InvalidValue { name, .. }
        | MultipleDefaults { name } => (name, "userAttributeValues"),
        FieldNotApplicable { name, field }
        | MissingEnglishText { name, field }
        | InvalidText { name, field, .. }
        | TooManyLanguages { name, field, .. } => (name, *field),
        ZeroMaxLength { name } | MaxLengthAboveCap { name, .. } => (name, "maxLength"),
        LengthRange { name, .. } => (name, "minLength"),
        PatternTooLong { name, .. } | InvalidPattern { name, .. } => (name, "pattern"),
    };
    match definitions.iter().position(|d| &d.name == name) {
        Some(j) => format!("userFlows[{i}].attributes[{j}].{field}"),
        None => format!("userFlows[{i}].attributes"),
    }
}

fn key_name(key: TextKey) -> String {
    serde_json::to_value(key)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn path_error(path: String, message: impl FnOnce() -> String) -> FlowConfigError {
    // The parser's message may quote the value; the values of a connector's
    // credentials never appear in an error.
    if path
        .split('.')
        .any(|segment| segment == "authentication" || segment == "password")
    {
        return FlowConfigError::new(
            path,
            "must be {type = \"basic\", username, password} or {type = \"clientCertificate\", certificate} \
             with string values (the values are not shown)",
        );
    }
    FlowConfigError::new(path, message())
}

fn config_reason(e: crate::error::ConfigError) -> String {
    match e {
        crate::error::ConfigError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// Ids and client ids: 1 to 256 characters of `A-Z a-z 0-9 - _ .`.
fn check_id(id: &str) -> Result<(), String> {
    if id.is_empty()
        || id.len() > MAX_NAME_LEN
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "must be 1 to {MAX_NAME_LEN} characters of A-Z a-z 0-9 - _ ."
        ));
    }
    Ok(())
}

fn check_text(text: &str, max: usize) -> Result<(), String> {
    if text.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if text.chars().count() > max {
        return Err(format!("must be at most {max} characters"));
    }
    if text.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}
