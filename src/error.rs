//! Typed errors, each in a category that maps to an HTTP status.
//!
//! Messages are lowercase, have no final period, and quote user input in
//! backticks. No message ever contains a secret (ticket, passcode, key,
//! session handle): errors name *what* was wrong, never the secret value.

use http::StatusCode;

pub use crate::email::EmailError;

/// Every error guestpass returns.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A request field is missing, malformed or out of range.
    #[error(transparent)]
    Input(#[from] InputError),
    /// An email address did not parse.
    #[error("invalid email address: {0}")]
    Email(#[from] EmailError),
    /// A redemption ticket was rejected.
    #[error(transparent)]
    Ticket(#[from] TicketError),
    /// A one-time passcode was rejected, or none may be sent now.
    #[error(transparent)]
    Passcode(#[from] PasscodeError),
    /// A redemption session is unknown, expired, or at another step.
    #[error(transparent)]
    Redemption(#[from] RedemptionError),
    /// A sign-up flow could not advance.
    #[error(transparent)]
    Flow(#[from] crate::flow::machine::FlowError),
    /// A sign-in with an external identity provider failed.
    #[error(transparent)]
    Idp(#[from] crate::idp::IdpError),
    /// An authenticator app code was refused, or its secret is unusable.
    #[error(transparent)]
    Totp(#[from] crate::idp::totp::TotpError),
    /// A policy forbids the operation.
    #[error(transparent)]
    Denied(#[from] Denied),
    /// The named object does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for, such as `invitation` or `user`.
        what: &'static str,
    },
    /// The configuration is incomplete or inconsistent.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The directory store failed or refused a write.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The mail transport failed.
    #[error(transparent)]
    Mail(#[from] MailError),
    /// A fault inside the library or its platform.
    #[error(transparent)]
    Internal(#[from] Internal),
}

/// The broad class of an error; what an HTTP adapter answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Category {
    /// The request was malformed (400).
    BadRequest,
    /// A credential (passcode) was wrong (401).
    Unauthorized,
    /// A policy forbids it (403).
    Forbidden,
    /// The object does not exist (404).
    NotFound,
    /// The state changed underneath the request (409).
    Conflict,
    /// A link or code is no longer valid (410).
    Gone,
    /// Too many attempts or sends (429).
    TooManyRequests,
    /// A dependency (mail server) failed (502).
    BadGateway,
    /// The store is unavailable (503).
    Unavailable,
    /// A bug or misconfiguration (500).
    Internal,
}

impl Category {
    /// The HTTP status for this category.
    pub fn status(self) -> StatusCode {
        match self {
            Category::BadRequest => StatusCode::BAD_REQUEST,
            Category::Unauthorized => StatusCode::UNAUTHORIZED,
            Category::Forbidden => StatusCode::FORBIDDEN,
            Category::NotFound => StatusCode::NOT_FOUND,
            Category::Conflict => StatusCode::CONFLICT,
            Category::Gone => StatusCode::GONE,
            Category::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            Category::BadGateway => StatusCode::BAD_GATEWAY,
            Category::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            Category::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl Error {
    /// The category of this error.
    ///
    /// ```
    /// use guestpass::error::{Category, Error, TicketError};
    /// let e = Error::from(TicketError::Expired);
    /// assert_eq!(e.category(), Category::Gone);
    /// assert_eq!(e.status().as_u16(), 410);
    /// ```
    pub fn category(&self) -> Category {
        match self {
            Error::Input(_) | Error::Email(_) => Category::BadRequest,
            Error::Ticket(t) => match t {
                TicketError::Expired | TicketError::NoLongerValid => Category::Gone,
                _ => Category::BadRequest,
            },
            Error::Passcode(p) => match p {
                PasscodeError::Incorrect { .. } => Category::Unauthorized,
                PasscodeError::Expired | PasscodeError::AlreadyUsed => Category::Gone,
                PasscodeError::TooManyAttempts
                | PasscodeError::AddressLocked
                | PasscodeError::RateLimited { .. } => Category::TooManyRequests,
                PasscodeError::Malformed | PasscodeError::NotIssued => Category::BadRequest,
            },
            Error::Redemption(r) => match r {
                RedemptionError::UnknownSession => Category::NotFound,
                RedemptionError::SessionExpired => Category::Gone,
                RedemptionError::WrongStep { .. } => Category::Conflict,
            },
            Error::Flow(f) => {
                use crate::flow::machine::FlowError;
                match f {
                    FlowError::UnknownFlow => Category::NotFound,
                    FlowError::Expired | FlowError::Finished { .. } => Category::Gone,
                    FlowError::Csrf | FlowError::EmailNotVerified { .. } | FlowError::WrongAccount { .. } => {
                        Category::Forbidden
                    }
                    FlowError::FederationMismatch => Category::BadRequest,
                    FlowError::WrongStep { .. } | FlowError::NotAwaitingApproval => Category::Conflict,
                    FlowError::ProviderNotOffered { .. }
                    | FlowError::UnknownApplication { .. }
                    | FlowError::RedirectNotRegistered { .. }
                    | FlowError::InvalidParameter { .. } => Category::BadRequest,
                }
            }
            Error::Idp(e) => e.category(),
            Error::Totp(e) => {
                use crate::idp::totp::TotpError;
                match e {
                    TotpError::Wrong | TotpError::Replayed => Category::Unauthorized,
                    TotpError::Locked => Category::TooManyRequests,
                    TotpError::Unsealable | TotpError::InvalidSecret | TotpError::InvalidLabel => {
                        Category::Internal
                    }
                    _ => Category::BadRequest,
                }
            }
            Error::Denied(_) => Category::Forbidden,
            Error::NotFound { .. } => Category::NotFound,
            Error::Config(_) | Error::Internal(_) => Category::Internal,
            Error::Store(s) => match s {
                StoreError::Conflict { .. } | StoreError::Duplicate { .. } => Category::Conflict,
                StoreError::Backend { .. } => Category::Unavailable,
            },
            Error::Mail(_) => Category::BadGateway,
        }
    }

    /// The HTTP status of this error's category.
    pub fn status(&self) -> StatusCode {
        self.category().status()
    }
}

/// A request field that is missing, malformed or out of range.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InputError {
    /// A field failed validation.
    #[error("invalid `{field}`: {reason}")]
    Invalid {
        /// The field, in its Graph (camelCase) spelling.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A required field is missing or empty.
    #[error("`{field}` is required")]
    Missing {
        /// The field, in its Graph (camelCase) spelling.
        field: &'static str,
    },
    /// A redirect URL is not one of the registered ones.
    #[error("redirect url `{url}` is not registered")]
    RedirectNotRegistered {
        /// The URL as submitted.
        url: String,
    },
}

/// Why a redemption ticket was rejected.
///
/// The first five are decided from the ticket alone, before any store
/// lookup. [`TicketError::NoLongerValid`] covers every state-dependent
/// refusal (revoked, replaced by a resend or reset, already redeemed, or no
/// such invitation) with one message, so a ticket reveals nothing about the
/// directory.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum TicketError {
    /// The ticket is not in the ticket format (bad encoding, length or layout).
    #[error("malformed ticket: {0}")]
    Malformed(&'static str),
    /// The ticket is of a format version this library does not read.
    #[error("unsupported ticket version `{version}`")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// The ticket is for another purpose than redemption.
    #[error("not a redemption ticket")]
    WrongPurpose,
    /// The ticket names a key that is not configured for verification.
    #[error("ticket signed with an unknown key")]
    UnknownKey,
    /// The authentication tag does not match (tampered, or another tenant's).
    #[error("ticket signature does not verify")]
    BadSignature,
    /// The ticket's expiry has passed.
    #[error("ticket has expired")]
    Expired,
    /// The invitation behind the ticket cannot be redeemed with it.
    #[error("this invitation link is no longer valid")]
    NoLongerValid,
}

/// Why a one-time passcode was rejected or not sent.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PasscodeError {
    /// The code does not look like a passcode (wrong length or characters).
    #[error("passcode must be the digits from the mail")]
    Malformed,
    /// No passcode has been sent for this step.
    #[error("no passcode has been sent for this step")]
    NotIssued,
    /// The code is wrong.
    #[error("passcode is incorrect; {remaining} attempts left")]
    Incorrect {
        /// Attempts left for this code.
        remaining: u32,
    },
    /// The code has expired; ask for a new one.
    #[error("passcode has expired")]
    Expired,
    /// The code was already used.
    #[error("passcode was already used")]
    AlreadyUsed,
    /// Too many wrong tries for this code; ask for a new one.
    #[error("too many wrong attempts for this passcode")]
    TooManyAttempts,
    /// Too many consecutive failures for the address; an administrator must
    /// reset redemption.
    #[error("too many failed passcode attempts for this address")]
    AddressLocked,
    /// A passcode was sent recently; wait before asking again.
    #[error("a passcode was sent recently; try again in {retry_after_secs} seconds")]
    RateLimited {
        /// Seconds until another code may be sent.
        retry_after_secs: u64,
    },
}

/// Why a redemption (its flow, named by the handle the browser holds) could
/// not advance.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RedemptionError {
    /// No session matches the handle.
    #[error("unknown redemption session")]
    UnknownSession,
    /// The session is older than its lifetime.
    #[error("redemption session has expired")]
    SessionExpired,
    /// The session is not at the step the call belongs to.
    #[error("redemption session is at step `{actual}`, not `{expected}`")]
    WrongStep {
        /// The step the call needs.
        expected: &'static str,
        /// The step the session is at.
        actual: &'static str,
    },
}

/// A policy decision that forbids the operation.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Denied {
    /// The inviter's role may not invite under `allowInvitesFrom`.
    #[error("inviter may not invite guests under the current collaboration settings")]
    InviterNotAllowed,
    /// The invited domain is denied, or not on the allow list.
    #[error("invitations to domain `{domain}` are not allowed")]
    DomainNotAllowed {
        /// The domain, as an A-label.
        domain: String,
    },
    /// Only administrators may reset a user's redemption.
    #[error("only administrators may reset redemption")]
    ResetNotAllowed,
    /// The account is disabled.
    #[error("the account is disabled")]
    AccountDisabled,
    /// The operation is for administrators only.
    #[error("only administrators may {operation}")]
    AdminOnly {
        /// What was attempted, such as `approve sign-ups`.
        operation: &'static str,
    },
    /// The tenant turned self-service sign-up off
    /// (`selfServiceSignUpEnabled`).
    #[error("self-service sign-up is turned off for this organisation")]
    SelfServiceSignUpDisabled,
    /// The guest user access level (`guestUserAccess`) does not let the
    /// viewer read this (a `restricted` guest reading another user, a
    /// `limited` or `restricted` guest listing users), or the viewer is
    /// unknown or disabled.
    #[error("the guest user access level does not allow this directory read")]
    DirectoryReadNotAllowed,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("configuration field `{field}` is required")]
    Missing {
        /// The setting.
        field: &'static str,
    },
    /// A setting has an unusable value.
    #[error("configuration field `{field}` is invalid: {reason}")]
    Invalid {
        /// The setting.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// A store failure.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// A conditional write lost: the record changed (or appeared, or went)
    /// since it was read. Nothing of the batch was written.
    #[error("{record} `{key}` changed concurrently")]
    Conflict {
        /// The record kind.
        record: &'static str,
        /// Its key.
        key: String,
    },
    /// An insert would break a uniqueness rule. Nothing of the batch was
    /// written.
    #[error("{constraint} `{key}` already exists")]
    Duplicate {
        /// The rule, such as `identity` or `user mail`.
        constraint: &'static str,
        /// The duplicated key.
        key: String,
    },
    /// The backend failed.
    #[error("directory store failed: {message}")]
    Backend {
        /// A description without secrets.
        message: String,
    },
}

/// A mail transport failure.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MailError {
    /// The transport could not hand the message over.
    #[error("mail transport failed: {message}")]
    Transport {
        /// A description without secrets.
        message: String,
    },
    /// A template failed to render.
    #[error("mail template `{template}` failed: {message}")]
    Template {
        /// The template name.
        template: &'static str,
        /// What went wrong.
        message: String,
    },
}

/// A fault inside the library or its platform.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Internal {
    /// The random generator failed.
    #[error("secure random generator unavailable")]
    RandomUnavailable,
    /// A stored record could not be decoded.
    #[error("stored record is corrupt: {0}")]
    Corrupt(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_maps_to_its_status() {
        let cases = [
            (Error::from(InputError::Missing { field: "x" }), 400),
            (Error::from(TicketError::BadSignature), 400),
            (Error::from(TicketError::NoLongerValid), 410),
            (Error::from(PasscodeError::Incorrect { remaining: 1 }), 401),
            (Error::from(PasscodeError::AddressLocked), 429),
            (Error::from(Denied::InviterNotAllowed), 403),
            (Error::NotFound { what: "user" }, 404),
            (
                Error::from(StoreError::Conflict {
                    record: "user",
                    key: "k".into(),
                }),
                409,
            ),
            (
                Error::from(MailError::Transport {
                    message: "down".into(),
                }),
                502,
            ),
            (
                Error::from(StoreError::Backend {
                    message: "down".into(),
                }),
                503,
            ),
            (Error::from(Internal::RandomUnavailable), 500),
            (Error::from(crate::idp::IdpError::StateMismatch), 400),
            (
                Error::from(crate::idp::IdpError::AccessDenied { description: None }),
                403,
            ),
            (
                Error::from(crate::idp::IdpError::Unreachable(crate::http::HttpError::Timeout)),
                503,
            ),
            (Error::from(crate::idp::IdpError::BadSignature), 502),
        ];
        for (e, status) in cases {
            assert_eq!(e.status().as_u16(), status, "{e}");
        }
    }

    #[test]
    fn messages_are_lowercase_without_period() {
        let e = Error::from(InputError::RedirectNotRegistered {
            url: "https://x".into(),
        });
        let m = e.to_string();
        assert_eq!(m, "redirect url `https://x` is not registered");
        assert!(!m.ends_with('.'));
    }
}
