//! Terms of use: the document a guest accepts before a redemption completes.

use url::Url;

use crate::config::{check_name, check_url};
use crate::error::ConfigError;

/// Longest terms-of-use id, in bytes.
pub const MAX_AGREEMENT_ID_LEN: usize = 64;

/// A tenant's terms of use (Entra's "agreement"): when the service has
/// them, every redemption shows them after consent, and completing the
/// redemption records the acceptance (id, version, time) on the user as an
/// [`AgreementAcceptance`](crate::directory::AgreementAcceptance). Raising
/// the version makes new redemptions accept the new text; acceptances of
/// earlier versions stay recorded.
///
/// ```
/// use guestpass::policy::TermsOfUse;
/// let terms = TermsOfUse::new("guest-terms", "Contoso guest terms", "https://contoso.example/terms", 2)?;
/// assert_eq!(terms.version(), 2);
/// assert!(TermsOfUse::new("guest-terms", "Terms", "http://contoso.example/terms", 1).is_err());
/// # Ok::<(), guestpass::error::ConfigError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TermsOfUse {
    id: String,
    display_name: String,
    url: Url,
    version: u32,
}

impl TermsOfUse {
    /// Terms with a stable `id` (1 to 64 characters of `A-Z a-z 0-9 - _ .`),
    /// the name the page shows, where the text is (`https`, or `http` on a
    /// loopback host), and a version of at least 1.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Invalid`] naming the field (`terms_of_use.id`,
    /// `terms_of_use.display_name`, `terms_of_use.url`,
    /// `terms_of_use.version`).
    pub fn new(
        id: impl Into<String>,
        display_name: impl Into<String>,
        url: &str,
        version: u32,
    ) -> Result<Self, ConfigError> {
        let id = id.into();
        if id.is_empty()
            || id.len() > MAX_AGREEMENT_ID_LEN
            || !id
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        {
            return Err(ConfigError::Invalid {
                field: "terms_of_use.id",
                reason: "must be 1 to 64 characters of A-Z a-z 0-9 - _ .".to_owned(),
            });
        }
        let display_name = display_name.into();
        check_name("terms_of_use.display_name", &display_name)?;
        let url = check_url("terms_of_use.url", url)?;
        if version == 0 {
            return Err(ConfigError::Invalid {
                field: "terms_of_use.version",
                reason: "must be at least 1".to_owned(),
            });
        }
        Ok(Self {
            id,
            display_name,
            url,
            version,
        })
    }

    /// The stable id acceptances are recorded under.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The name the page shows.
    pub fn display_name(&self) -> &str {
        &self.display_name
    }

    /// Where the text is.
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// The current version.
    pub fn version(&self) -> u32 {
        self.version
    }
}
