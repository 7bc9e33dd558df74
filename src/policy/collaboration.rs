//! External collaboration settings: who may invite, which domains.

use crate::email::{EmailAddress, to_a_label};
use crate::error::{ConfigError, Denied};

/// Most entries in a domain allow or deny list.
pub const MAX_DOMAIN_RULES: usize = 1000;

/// Who may invite guests (Graph's `allowInvitesFrom`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum AllowInvitesFrom {
    /// Anyone, guests included.
    Everyone,
    /// Administrators, guest inviters and all members.
    #[default]
    AdminsGuestInvitersAndAllMembers,
    /// Administrators and guest inviters only.
    AdminsAndGuestInviters,
    /// Nobody (administrators included, as in Entra).
    None,
}

/// The role of the person inviting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum InviterRole {
    /// A directory administrator.
    Admin,
    /// A member holding the guest inviter role.
    GuestInviter,
    /// A member.
    Member,
    /// A guest.
    Guest,
}

impl AllowInvitesFrom {
    /// Whether `role` may invite under this setting.
    pub fn permits(self, role: InviterRole) -> bool {
        use InviterRole::*;
        match self {
            AllowInvitesFrom::Everyone => true,
            AllowInvitesFrom::AdminsGuestInvitersAndAllMembers => {
                matches!(role, Admin | GuestInviter | Member)
            }
            AllowInvitesFrom::AdminsAndGuestInviters => matches!(role, Admin | GuestInviter),
            AllowInvitesFrom::None => false,
        }
    }
}

/// One entry of a domain list: `example.com` matches exactly that domain;
/// `*.example.com` matches every subdomain of it (whole labels), not the
/// domain itself. Stored as A-labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DomainRule {
    domain: String,
    subdomains: bool,
}

impl DomainRule {
    /// Parses `example.com`, `*.example.com` or an internationalised form.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the rule.
    ///
    /// ```
    /// use guestpass::policy::DomainRule;
    /// let r = DomainRule::parse("*.Fabrikam.com")?;
    /// assert!(r.matches("eu.fabrikam.com"));
    /// assert!(!r.matches("fabrikam.com"));
    /// assert!(!r.matches("evil-fabrikam.com"));
    /// # Ok::<(), guestpass::error::ConfigError>(())
    /// ```
    pub fn parse(rule: &str) -> Result<Self, ConfigError> {
        let trimmed = rule.trim();
        let (subdomains, domain) = match trimmed.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, trimmed),
        };
        let domain = to_a_label(domain).map_err(|e| ConfigError::Invalid {
            field: "collaboration.domains",
            reason: format!("`{rule}`: {e}"),
        })?;
        Ok(Self { domain, subdomains })
    }

    /// Whether the A-label `domain` matches this rule.
    pub fn matches(&self, domain: &str) -> bool {
        if self.subdomains {
            domain.len() > self.domain.len() + 1
                && domain.ends_with(&self.domain)
                && domain.as_bytes()[domain.len() - self.domain.len() - 1] == b'.'
        } else {
            domain == self.domain
        }
    }
}

/// Collaboration restrictions: an allow list or a deny list, never both.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DomainRestriction {
    /// Any domain may be invited.
    #[default]
    AllowAll,
    /// Only these domains may be invited.
    AllowOnly(Vec<DomainRule>),
    /// These domains may not be invited.
    Deny(Vec<DomainRule>),
}

impl DomainRestriction {
    /// An allow list from rule strings.
    ///
    /// # Errors
    ///
    /// When a rule does not parse or there are too many.
    pub fn allow_only<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        Ok(Self::AllowOnly(parse_rules(rules)?))
    }

    /// A deny list from rule strings.
    ///
    /// # Errors
    ///
    /// When a rule does not parse or there are too many.
    pub fn deny<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Result<Self, ConfigError> {
        Ok(Self::Deny(parse_rules(rules)?))
    }

    /// Whether `domain` (an A-label) may be invited.
    pub fn permits(&self, domain: &str) -> bool {
        match self {
            DomainRestriction::AllowAll => true,
            DomainRestriction::AllowOnly(rules) => rules.iter().any(|r| r.matches(domain)),
            DomainRestriction::Deny(rules) => !rules.iter().any(|r| r.matches(domain)),
        }
    }
}

fn parse_rules<S: AsRef<str>>(rules: impl IntoIterator<Item = S>) -> Result<Vec<DomainRule>, ConfigError> {
    let mut out = Vec::new();
    for r in rules {
        if out.len() == MAX_DOMAIN_RULES {
            return Err(ConfigError::Invalid {
                field: "collaboration.domains",
                reason: format!("more than {MAX_DOMAIN_RULES} entries"),
            });
        }
        out.push(DomainRule::parse(r.as_ref())?);
    }
    Ok(out)
}

/// The external collaboration settings checked at invite time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CollaborationSettings {
    /// Who may invite.
    pub allow_invites_from: AllowInvitesFrom,
    /// Which domains may be invited.
    pub domains: DomainRestriction,
}

impl CollaborationSettings {
    /// Decides whether `role` may invite `email`.
    ///
    /// # Errors
    ///
    /// The [`Denied`] reason.
    pub fn check_invite(&self, role: InviterRole, email: &EmailAddress) -> Result<(), Denied> {
        if !self.allow_invites_from.permits(role) {
            return Err(Denied::InviterNotAllowed);
        }
        if !self.domains.permits(email.domain()) {
            return Err(Denied::DomainNotAllowed {
                domain: email.domain().to_owned(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_label_matching() {
        let deny = DomainRestriction::deny(["example.com", "*.corp.example"]).unwrap();
        assert!(!deny.permits("example.com"));
        assert!(deny.permits("evil-example.com"));
        assert!(deny.permits("example.com.evil.io"));
        assert!(
            deny.permits("sub.example.com"),
            "exact rule does not cover subdomains"
        );
        assert!(!deny.permits("a.corp.example"));
        assert!(deny.permits("corp.example"));
        assert!(deny.permits("xcorp.example"));
    }

    #[test]
    fn idn_rules_compare_as_a_labels() {
        let allow = DomainRestriction::allow_only(["Bücher.example"]).unwrap();
        let a = EmailAddress::parse("x@BÜCHER.example").unwrap();
        let settings = CollaborationSettings {
            domains: allow,
            ..Default::default()
        };
        assert!(settings.check_invite(InviterRole::Admin, &a).is_ok());
        let b = EmailAddress::parse("x@buecher.example").unwrap();
        assert!(matches!(
            settings.check_invite(InviterRole::Admin, &b),
            Err(Denied::DomainNotAllowed { .. })
        ));
    }

    #[test]
    fn who_may_invite() {
        use InviterRole::*;
        let table = [
            (AllowInvitesFrom::Everyone, [true, true, true, true]),
            (
                AllowInvitesFrom::AdminsGuestInvitersAndAllMembers,
                [true, true, true, false],
            ),
            (
                AllowInvitesFrom::AdminsAndGuestInviters,
                [true, true, false, false],
            ),
            (AllowInvitesFrom::None, [false, false, false, false]),
        ];
        for (setting, want) in table {
            for (role, w) in [Admin, GuestInviter, Member, Guest].into_iter().zip(want) {
                assert_eq!(setting.permits(role), w, "{setting:?} {role:?}");
            }
        }
    }

    #[test]
    fn bad_rules_and_oversized_lists_are_refused() {
        assert!(DomainRestriction::deny(["not a domain"]).is_err());
        let many: Vec<String> = (0..=MAX_DOMAIN_RULES).map(|i| format!("d{i}.example")).collect();
        assert!(DomainRestriction::deny(&many).is_err());
    }
}
