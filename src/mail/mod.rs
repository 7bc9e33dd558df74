//! Mail: messages, the transport trait, the development outbox, and the
//! localized templates.

mod outbox;
#[cfg(feature = "smtp")]
mod smtp;
pub mod templates;

use std::fmt;

use async_trait::async_trait;

use crate::email::EmailAddress;
use crate::error::MailError;

pub use outbox::Outbox;
#[cfg(feature = "smtp")]
pub use smtp::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_SEND_TIMEOUT, MAX_SMTP_TIMEOUT, SmtpCredentials, SmtpMailer,
    SmtpMailerBuilder, SmtpSecurity,
};

/// A recipient.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Mailbox {
    /// The address, as stored for the user (never a submitted spelling).
    pub address: EmailAddress,
    /// The display name, if any.
    pub name: Option<String>,
}

/// What a message is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MessageKind {
    /// An invitation with a redemption link.
    Invitation,
    /// The copy of an invitation for a `ccRecipients` address, without the
    /// redemption link.
    InvitationCopy,
    /// A one-time passcode.
    Passcode,
}

/// A rendered message, ready for a transport.
///
/// Bodies carry secrets (a redemption link, a passcode), so `Debug` shows
/// the envelope and subject only.
#[derive(Clone, PartialEq, Eq)]
pub struct Message {
    /// What it is for.
    pub kind: MessageKind,
    /// The one recipient. guestpass never copies a message that carries a
    /// link or a code: `ccRecipients` of an invitation get a separate
    /// [`MessageKind::InvitationCopy`].
    pub to: Mailbox,
    /// The subject line (single line).
    pub subject: String,
    /// The plain-text body.
    pub text_body: String,
    /// The HTML body.
    pub html_body: String,
    /// The language tag the message was rendered in, such as `en-US`.
    pub language: &'static str,
}

impl fmt::Debug for Message {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Message")
            .field("kind", &self.kind)
            .field("to", &self.to)
            .field("subject", &self.subject)
            .field("language", &self.language)
            .finish_non_exhaustive()
    }
}

impl Message {
    /// The first URL in the text body that starts with `prefix`.
    pub fn link_starting_with(&self, prefix: &str) -> Option<&str> {
        self.text_body.split_whitespace().find(|w| w.starts_with(prefix))
    }

    /// The first run of exactly `digits` ASCII digits in the text body.
    pub fn code(&self, digits: usize) -> Option<&str> {
        self.text_body
            .split(|c: char| !c.is_ascii_digit())
            .find(|run| run.len() == digits)
    }
}

/// Delivers messages. Implementations must not log bodies.
#[async_trait]
pub trait MailTransport: Send + Sync + fmt::Debug {
    /// Hands `message` to the mail system.
    ///
    /// # Errors
    ///
    /// [`MailError::Transport`] when it could not.
    async fn send(&self, message: &Message) -> Result<(), MailError>;
}
