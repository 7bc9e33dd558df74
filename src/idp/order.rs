//! The redemption order: which identity provider a guest redeems an
//! invitation with, decided from the invited address (home realm discovery)
//! and the tenant's configuration, as Entra's
//! `invitationRedemptionIdentityProviderConfiguration` does.
//!
//! The decision, in order:
//!
//! 1. A guest who already holds an identity of an enabled provider keeps it
//!    (until an administrator resets the redemption, which clears it).
//! 2. The **primary** provider kinds, in the configured precedence
//!    (`primaryIdentityProviderPrecedenceOrder`; Entra's default is
//!    `azureActiveDirectory`, `externalFederation`,
//!    `socialIdentityProviders`): the first enabled provider of a kind that
//!    is the authority for the invited domain wins. An organisation's
//!    provider and a direct federation are authorities for the domains they
//!    are configured with; Google is the authority for `gmail.com` and
//!    `googlemail.com` (and for the Workspace domain it is restricted to).
//! 3. The **fallback** (`fallbackIdentityProvider`): `emailOneTimePasscode`,
//!    `microsoftAccount`, or `defaultConfiguredIdp` (the passcode when it is
//!    enabled, else a Microsoft account).
//!
//! Disabled providers are skipped everywhere. The fallbacks are checked
//! when the order is built: at least one of email one-time passcode and
//! Microsoft account must be enabled, and a fallback that names a disabled
//! one is a configuration error, so turning one fallback off forces the
//! other.
//!
//! ```
//! use guestpass::idp::order::{Candidate, CandidateKind, Choice, FallbackProvider, RedemptionOrder};
//!
//! let order = RedemptionOrder::entra_default();
//! let google = Candidate::new("google", CandidateKind::Google { hosted_domain: None });
//! let choice = order.choose(&[google.clone()], "gmail.com", None);
//! assert_eq!(choice.choice, Choice::Provider("google".into()));
//! let choice = order.choose(&[google], "fabrikam.example", None);
//! assert_eq!(choice.choice, Choice::EmailOneTimePasscode);
//! # let _ = FallbackProvider::DefaultConfiguredIdp;
//! ```

use serde::{Deserialize, Serialize};

use crate::error::ConfigError;

/// A kind of primary provider, in Graph's `b2bIdentityProvidersType` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum PrimaryProvider {
    /// The guest's own organisation (another Entra tenant, by its domains).
    AzureActiveDirectory,
    /// A provider federated directly for the guest's domain.
    ExternalFederation,
    /// Google for Gmail addresses (and a configured Workspace domain).
    SocialIdentityProviders,
}

impl PrimaryProvider {
    /// The Graph name.
    pub fn as_str(self) -> &'static str {
        match self {
            PrimaryProvider::AzureActiveDirectory => "azureActiveDirectory",
            PrimaryProvider::ExternalFederation => "externalFederation",
            PrimaryProvider::SocialIdentityProviders => "socialIdentityProviders",
        }
    }
}

/// What a guest redeems with when no primary provider fits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum FallbackProvider {
    /// The email one-time passcode when it is enabled, else a Microsoft
    /// account.
    DefaultConfiguredIdp,
    /// Always the email one-time passcode.
    EmailOneTimePasscode,
    /// Always a Microsoft account.
    MicrosoftAccount,
}

impl FallbackProvider {
    /// The Graph name.
    pub fn as_str(self) -> &'static str {
        match self {
            FallbackProvider::DefaultConfiguredIdp => "defaultConfiguredIdp",
            FallbackProvider::EmailOneTimePasscode => "emailOneTimePasscode",
            FallbackProvider::MicrosoftAccount => "microsoftAccount",
        }
    }
}

/// What a configured provider is, for the redemption order.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum CandidateKind {
    /// An Entra organisation provider: the partner tenants it is the
    /// authority for, each with its verified domains. A token counts for a
    /// domain only when its `tid` is the tenant that owns the domain.
    Organization {
        /// The partner tenants.
        tenants: Vec<PartnerTenant>,
    },
    /// A direct federation, authority for these domains (A-labels).
    DirectFederation {
        /// The federated domains.
        domains: Vec<String>,
    },
    /// Google; with a Workspace domain, also its authority.
    Google {
        /// The Workspace domain the provider is restricted to, if any.
        hosted_domain: Option<String>,
    },
    /// Microsoft account (consumer).
    MicrosoftAccount,
    /// Facebook: offered for self-service sign-up only, never chosen for an
    /// invitation.
    Facebook,
}

/// A partner organisation's Entra tenant and the domains it owns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartnerTenant {
    /// The tenant (directory) id: the `tid` claim.
    pub tenant_id: String,
    /// Its verified domains, as A-labels.
    pub domains: Vec<String>,
}

impl PartnerTenant {
    /// Tenant `tenant_id` owning `domains`.
    pub fn new<S: Into<String>>(tenant_id: impl Into<String>, domains: impl IntoIterator<Item = S>) -> Self {
        Self {
            tenant_id: tenant_id.into(),
            domains: domains.into_iter().map(Into::into).collect(),
        }
    }

    fn owns(&self, domain: &str) -> bool {
        self.domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
    }
}

/// A provider the tenant configured, as the order sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// The provider's id.
    pub id: String,
    /// What it is.
    pub kind: CandidateKind,
    /// Its issuer, to recognise identities a guest already holds.
    pub issuer: Option<String>,
    /// Whether it is enabled.
    pub enabled: bool,
}

impl Candidate {
    /// An enabled candidate without a known issuer.
    pub fn new(id: impl Into<String>, kind: CandidateKind) -> Self {
        Self {
            id: id.into(),
            kind,
            issuer: None,
            enabled: true,
        }
    }

    /// The same candidate with its issuer.
    #[must_use]
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// The same candidate, disabled.
    #[must_use]
    pub fn disabled(mut self) -> Self {
        self.enabled = false;
        self
    }

    /// Whether the candidate is the configured authority for `domain` (an
    /// A-label) under any primary kind: a partner tenant's or a direct
    /// federation's domain, or Google's Gmail and Workspace domains.
    pub fn is_authority_for(&self, domain: &str) -> bool {
        [
            PrimaryProvider::AzureActiveDirectory,
            PrimaryProvider::ExternalFederation,
            PrimaryProvider::SocialIdentityProviders,
        ]
        .into_iter()
        .any(|k| self.is_authority(k, domain))
    }

    /// Whether this provider proves the address `identity` asserts, so no
    /// passcode is needed:
    ///
    /// - an organisation: only for a domain of the partner tenant the token
    ///   comes from (its `tid`); Entra's `email` claim is not verified, and
    ///   another tenant may put any address there;
    /// - a direct federation: only for its own domains (whatever
    ///   `email_verified` says about others);
    /// - Google: when Google marks the address verified;
    /// - Microsoft accounts and Facebook: never (they send no verification
    ///   flag), so their addresses are proven with a passcode.
    pub fn proves_email(&self, identity: &crate::idp::ExternalIdentity) -> bool {
        let Some(email) = &identity.email else {
            return false;
        };
        let domain = email.domain();
        match &self.kind {
            CandidateKind::Organization { tenants } => identity.tenant_id.as_deref().is_some_and(|tid| {
                tenants
                    .iter()
                    .any(|t| t.tenant_id.eq_ignore_ascii_case(tid) && t.owns(domain))
            }),
            CandidateKind::DirectFederation { domains } => {
                domains.iter().any(|d| d.eq_ignore_ascii_case(domain))
            }
            CandidateKind::Google { .. } => identity.email_verified,
            CandidateKind::MicrosoftAccount | CandidateKind::Facebook => false,
        }
    }

    /// Whether the candidate is a primary provider of `kind` that is the
    /// authority for `domain` (an A-label, compared case-insensitively).
    fn is_authority(&self, kind: PrimaryProvider, domain: &str) -> bool {
        let listed = |ds: &[String]| ds.iter().any(|d| d.eq_ignore_ascii_case(domain));
        match (&self.kind, kind) {
            (CandidateKind::Organization { tenants }, PrimaryProvider::AzureActiveDirectory) => {
                tenants.iter().any(|t| t.owns(domain))
            }
            (CandidateKind::DirectFederation { domains }, PrimaryProvider::ExternalFederation) => {
                listed(domains)
            }
            (CandidateKind::Google { hosted_domain }, PrimaryProvider::SocialIdentityProviders) => {
                GMAIL_DOMAINS.iter().any(|d| d.eq_ignore_ascii_case(domain))
                    || hosted_domain
                        .as_deref()
                        .is_some_and(|h| h.eq_ignore_ascii_case(domain))
            }
            _ => false,
        }
    }
}

/// The domains Google is the home realm of.
pub const GMAIL_DOMAINS: [&str; 2] = ["gmail.com", "googlemail.com"];

/// What a guest redeems with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    /// The configured provider with this id.
    Provider(String),
    /// The email one-time passcode.
    EmailOneTimePasscode,
}

/// Why the order chose what it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// The guest already holds an identity of this provider.
    ExistingIdentity,
    /// The provider is the authority for the invited domain, under this
    /// primary kind.
    Primary(PrimaryProvider),
    /// No primary provider fits; this fallback applies.
    Fallback(FallbackProvider),
}

/// A decision with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// What to redeem with.
    pub choice: Choice,
    /// Why.
    pub reason: Reason,
}

/// The validated redemption order of a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedemptionOrder {
    primary: Vec<PrimaryProvider>,
    fallback: FallbackProvider,
    email_otp_enabled: bool,
    microsoft_account: Option<String>,
}

impl RedemptionOrder {
    /// Entra's default: every primary kind in its default precedence, then
    /// `defaultConfiguredIdp` with the email one-time passcode enabled.
    pub fn entra_default() -> Self {
        Self {
            primary: vec![
                PrimaryProvider::AzureActiveDirectory,
                PrimaryProvider::ExternalFederation,
                PrimaryProvider::SocialIdentityProviders,
            ],
            fallback: FallbackProvider::DefaultConfiguredIdp,
            email_otp_enabled: true,
            microsoft_account: None,
        }
    }

    /// An order with this precedence of primary kinds and this fallback.
    /// `email_otp_enabled` says whether the email one-time passcode may be
    /// used; `microsoft_account` is the id of an enabled Microsoft account
    /// provider, if the tenant has one.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming `primaryIdentityProviderPrecedenceOrder`
    /// for a kind listed twice, or `fallbackIdentityProvider` when no
    /// fallback is enabled or the chosen one is not.
    pub fn new(
        primary: Vec<PrimaryProvider>,
        fallback: FallbackProvider,
        email_otp_enabled: bool,
        microsoft_account: Option<String>,
    ) -> Result<Self, ConfigError> {
        for (i, p) in primary.iter().enumerate() {
            if primary[..i].contains(p) {
                return Err(ConfigError::Invalid {
                    field: "primaryIdentityProviderPrecedenceOrder",
                    reason: format!("`{}` is listed twice", p.as_str()),
                });
            }
        }
        let invalid = |reason: &str| ConfigError::Invalid {
            field: "fallbackIdentityProvider",
            reason: reason.to_owned(),
        };
        match fallback {
            _ if !email_otp_enabled && microsoft_account.is_none() => {
                return Err(invalid(
                    "at least one fallback must stay enabled: the email one-time passcode or a \
                     microsoft account provider",
                ));
            }
            FallbackProvider::EmailOneTimePasscode if !email_otp_enabled => {
                return Err(invalid(
                    "`emailOneTimePasscode` is the fallback but the email one-time passcode is disabled",
                ));
            }
            FallbackProvider::MicrosoftAccount if microsoft_account.is_none() => {
                return Err(invalid(
                    "`microsoftAccount` is the fallback but no microsoft account provider is enabled",
                ));
            }
            _ => {}
        }
        Ok(Self {
            primary,
            fallback,
            email_otp_enabled,
            microsoft_account,
        })
    }

    /// The precedence of primary kinds.
    pub fn primary(&self) -> &[PrimaryProvider] {
        &self.primary
    }

    /// The fallback.
    pub fn fallback(&self) -> FallbackProvider {
        self.fallback
    }

    /// Whether the email one-time passcode may be used.
    pub fn email_otp_enabled(&self) -> bool {
        self.email_otp_enabled
    }

    /// The id of the Microsoft account provider the fallback may use.
    pub fn microsoft_account(&self) -> Option<&str> {
        self.microsoft_account.as_deref()
    }

    /// Decides what a guest invited at `domain` (the invited address's
    /// domain as an A-label) redeems with, given the configured
    /// `candidates` and the issuer of an identity the guest already holds.
    pub fn choose(&self, candidates: &[Candidate], domain: &str, existing_issuer: Option<&str>) -> Decision {
        if let Some(issuer) = existing_issuer
            && let Some(c) = candidates
                .iter()
                .find(|c| c.enabled && c.issuer.as_deref() == Some(issuer))
        {
            return Decision {
                choice: Choice::Provider(c.id.clone()),
                reason: Reason::ExistingIdentity,
            };
        }
        for kind in &self.primary {
            if let Some(c) = candidates
                .iter()
                .find(|c| c.enabled && c.is_authority(*kind, domain))
            {
                return Decision {
                    choice: Choice::Provider(c.id.clone()),
                    reason: Reason::Primary(*kind),
                };
            }
        }
        let otp = Choice::EmailOneTimePasscode;
        let msa = self.microsoft_account.clone().map(Choice::Provider);
        let choice = match self.fallback {
            FallbackProvider::EmailOneTimePasscode => Some(otp),
            FallbackProvider::MicrosoftAccount => msa,
            FallbackProvider::DefaultConfiguredIdp if self.email_otp_enabled => Some(otp),
            FallbackProvider::DefaultConfiguredIdp => msa,
        };
        Decision {
            // `new` guarantees the fallback it keeps is enabled; the
            // passcode is the last resort of a hand-built order.
            choice: choice.unwrap_or(Choice::EmailOneTimePasscode),
            reason: Reason::Fallback(self.fallback),
        }
    }
}

impl Default for RedemptionOrder {
    fn default() -> Self {
        Self::entra_default()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use super::*;

    const FABRIKAM_TID: &str = "11111111-2222-3333-4444-555555555555";

    fn org(id: &str, domains: &[&str]) -> Candidate {
        Candidate::new(
            id,
            CandidateKind::Organization {
                tenants: vec![PartnerTenant::new(FABRIKAM_TID, domains.iter().copied())],
            },
        )
    }

    fn fed(id: &str, domains: &[&str]) -> Candidate {
        Candidate::new(
            id,
            CandidateKind::DirectFederation {
                domains: domains.iter().map(|d| (*d).to_owned()).collect(),
            },
        )
    }

    fn google() -> Candidate {
        Candidate::new("google", CandidateKind::Google { hosted_domain: None })
    }

    fn msa() -> Candidate {
        Candidate::new("msa", CandidateKind::MicrosoftAccount)
            .with_issuer("https://login.microsoftonline.com/9188040d-6c67-4c5b-b112-36a304b66dad/v2.0")
    }

    fn provider(id: &str) -> Choice {
        Choice::Provider(id.to_owned())
    }

    #[test]
    fn the_default_order_prefers_the_organisation_then_federation_then_social() {
        let order = RedemptionOrder::entra_default();
        let all = [
            google(),
            fed("fed", &["fabrikam.example"]),
            org("org", &["fabrikam.example"]),
        ];
        let d = order.choose(&all, "fabrikam.example", None);
        assert_eq!(d.choice, provider("org"));
        assert_eq!(d.reason, Reason::Primary(PrimaryProvider::AzureActiveDirectory));
        let d = order.choose(&all[..2], "fabrikam.example", None);
        assert_eq!(d.choice, provider("fed"));
        assert_eq!(d.reason, Reason::Primary(PrimaryProvider::ExternalFederation));
        let d = order.choose(&all, "GMAIL.com", None);
        assert_eq!(d.choice, provider("google"));
        assert_eq!(
            order.choose(&all, "googlemail.com", None).choice,
            provider("google")
        );
        let d = order.choose(&all, "woodgrove.example", None);
        assert_eq!(d.choice, Choice::EmailOneTimePasscode);
        assert_eq!(d.reason, Reason::Fallback(FallbackProvider::DefaultConfiguredIdp));
    }

    #[test]
    fn a_configured_precedence_is_followed() {
        let order = RedemptionOrder::new(
            vec![
                PrimaryProvider::ExternalFederation,
                PrimaryProvider::AzureActiveDirectory,
            ],
            FallbackProvider::EmailOneTimePasscode,
            true,
            None,
        )
        .unwrap();
        let all = [
            org("org", &["fabrikam.example"]),
            fed("fed", &["fabrikam.example"]),
        ];
        assert_eq!(
            order.choose(&all, "fabrikam.example", None).choice,
            provider("fed")
        );
        // A kind left out of the precedence is never chosen.
        let social_off = RedemptionOrder::new(
            vec![PrimaryProvider::AzureActiveDirectory],
            FallbackProvider::DefaultConfiguredIdp,
            true,
            None,
        )
        .unwrap();
        assert_eq!(
            social_off.choose(&[google()], "gmail.com", None).choice,
            Choice::EmailOneTimePasscode
        );
    }

    #[test]
    fn domains_match_whole_names_only() {
        let order = RedemptionOrder::entra_default();
        let all = [org("org", &["fabrikam.example"])];
        for other in [
            "evil-fabrikam.example",
            "sub.fabrikam.example",
            "fabrikam.example.evil",
        ] {
            assert_eq!(
                order.choose(&all, other, None).choice,
                Choice::EmailOneTimePasscode,
                "{other}"
            );
        }
        assert_eq!(
            order.choose(&all, "FABRIKAM.example", None).choice,
            provider("org")
        );
    }

    #[test]
    fn disabled_providers_are_skipped() {
        let order = RedemptionOrder::entra_default();
        let all = [
            org("org", &["fabrikam.example"]).disabled(),
            fed("fed", &["fabrikam.example"]),
        ];
        assert_eq!(
            order.choose(&all, "fabrikam.example", None).choice,
            provider("fed")
        );
        let all = [google().disabled()];
        assert_eq!(
            order.choose(&all, "gmail.com", None).choice,
            Choice::EmailOneTimePasscode
        );
    }

    #[test]
    fn an_existing_identity_is_kept() {
        let order = RedemptionOrder::entra_default();
        let all = [org("org", &["fabrikam.example"]), msa()];
        let issuer = msa().issuer.unwrap();
        let d = order.choose(&all, "fabrikam.example", Some(&issuer));
        assert_eq!(d.choice, provider("msa"));
        assert_eq!(d.reason, Reason::ExistingIdentity);
        // Not when that provider is now disabled, nor for an unknown issuer.
        let all = [org("org", &["fabrikam.example"]), msa().disabled()];
        assert_eq!(
            order.choose(&all, "fabrikam.example", Some(&issuer)).choice,
            provider("org")
        );
        assert_eq!(
            order
                .choose(&all, "fabrikam.example", Some("https://unknown.example"))
                .choice,
            provider("org")
        );
    }

    #[test]
    fn google_is_the_authority_for_its_workspace_domain() {
        let order = RedemptionOrder::entra_default();
        let g = Candidate::new(
            "google",
            CandidateKind::Google {
                hosted_domain: Some("woodgrove.example".into()),
            },
        );
        assert_eq!(
            order
                .choose(std::slice::from_ref(&g), "woodgrove.example", None)
                .choice,
            provider("google")
        );
        assert_eq!(order.choose(&[g], "gmail.com", None).choice, provider("google"));
    }

    #[test]
    fn facebook_and_microsoft_accounts_are_never_primary() {
        let order = RedemptionOrder::entra_default();
        let fb = Candidate::new("facebook", CandidateKind::Facebook);
        assert_eq!(
            order.choose(&[fb, msa()], "outlook.com", None).choice,
            Choice::EmailOneTimePasscode
        );
    }

    #[test]
    fn fallbacks_follow_what_is_enabled() {
        // Passcodes off: the default falls back to the Microsoft account.
        let order = RedemptionOrder::new(
            vec![],
            FallbackProvider::DefaultConfiguredIdp,
            false,
            Some("msa".into()),
        )
        .unwrap();
        let d = order.choose(&[msa()], "fabrikam.example", None);
        assert_eq!(d.choice, provider("msa"));
        assert_eq!(d.reason, Reason::Fallback(FallbackProvider::DefaultConfiguredIdp));
        // Microsoft account as the fallback even with passcodes on.
        let order = RedemptionOrder::new(
            vec![],
            FallbackProvider::MicrosoftAccount,
            true,
            Some("msa".into()),
        )
        .unwrap();
        assert_eq!(
            order.choose(&[msa()], "fabrikam.example", None).choice,
            provider("msa")
        );
    }

    #[test]
    fn a_fallback_must_stay_enabled() {
        let field = |r: Result<RedemptionOrder, ConfigError>| match r {
            Err(ConfigError::Invalid { field, .. }) => field,
            other => panic!("expected a configuration error, got {other:?}"),
        };
        assert_eq!(
            field(RedemptionOrder::new(
                vec![],
                FallbackProvider::DefaultConfiguredIdp,
                false,
                None
            )),
            "fallbackIdentityProvider"
        );
        assert_eq!(
            field(RedemptionOrder::new(
                vec![],
                FallbackProvider::EmailOneTimePasscode,
                false,
                Some("msa".into())
            )),
            "fallbackIdentityProvider"
        );
        assert_eq!(
            field(RedemptionOrder::new(
                vec![],
                FallbackProvider::MicrosoftAccount,
                true,
                None
            )),
            "fallbackIdentityProvider"
        );
        assert_eq!(
            field(RedemptionOrder::new(
                vec![
                    PrimaryProvider::ExternalFederation,
                    PrimaryProvider::ExternalFederation
                ],
                FallbackProvider::DefaultConfiguredIdp,
                true,
                None
            )),
            "primaryIdentityProviderPrecedenceOrder"
        );
    }

    fn asserted(email: &str, verified: bool, tid: Option<&str>) -> crate::idp::ExternalIdentity {
        crate::idp::ExternalIdentity {
            provider_id: "p".into(),
            issuer: "https://idp.example".into(),
            subject: "s".into(),
            email: crate::email::EmailAddress::parse(email).ok(),
            email_verified: verified,
            name: None,
            given_name: None,
            family_name: None,
            tenant_id: tid.map(str::to_owned),
            hosted_domain: None,
            home_tenant_id: None,
            object_id: None,
            amr: vec![],
        }
    }

    #[test]
    fn only_a_domains_authority_proves_its_addresses() {
        // An organisation: only tokens of the tenant that owns the domain.
        let o = org("org", &["fabrikam.example"]);
        assert!(o.proves_email(&asserted("a@fabrikam.example", false, Some(FABRIKAM_TID))));
        assert!(!o.proves_email(&asserted("a@fabrikam.example", true, Some("attacker-tenant"))));
        assert!(!o.proves_email(&asserted("a@fabrikam.example", true, None)));
        assert!(!o.proves_email(&asserted("a@woodgrove.example", true, Some(FABRIKAM_TID))));
        // A direct federation: only its own domains, whatever it claims.
        let f = fed("fed", &["fabrikam.example"]);
        assert!(f.proves_email(&asserted("a@FABRIKAM.example", false, None)));
        assert!(!f.proves_email(&asserted("ceo@contoso.example", true, None)));
        assert!(!f.proves_email(&asserted("a@evil-fabrikam.example", true, None)));
        // Google: its verification flag.
        assert!(google().proves_email(&asserted("a@gmail.com", true, None)));
        assert!(!google().proves_email(&asserted("a@gmail.com", false, None)));
        // Microsoft accounts and Facebook: never.
        assert!(!msa().proves_email(&asserted("a@outlook.com", true, None)));
        let fb = Candidate::new("fb", CandidateKind::Facebook);
        assert!(!fb.proves_email(&asserted("a@example.com", true, None)));
        // No address, nothing proven.
        let mut none = asserted("a@fabrikam.example", true, Some(FABRIKAM_TID));
        none.email = None;
        assert!(!o.proves_email(&none));
    }

    #[test]
    fn graph_names_round_trip() {
        let json = serde_json::to_string(&PrimaryProvider::SocialIdentityProviders).unwrap();
        assert_eq!(json, "\"socialIdentityProviders\"");
        let back: FallbackProvider = serde_json::from_str("\"emailOneTimePasscode\"").unwrap();
        assert_eq!(back, FallbackProvider::EmailOneTimePasscode);
        assert_eq!(
            FallbackProvider::DefaultConfiguredIdp.as_str(),
            "defaultConfiguredIdp"
        );
    }
}
