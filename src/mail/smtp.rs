//! [`SmtpMailer`]: a [`MailTransport`] over SMTP (lettre, tokio, rustls).
//!
//! Messages go out as `multipart/alternative` with a UTF-8 `text/plain` and
//! a UTF-8 `text/html` part, and carry `From`, `To`, `Subject`, `Date`,
//! `Message-ID` (random, under the From domain) and `Content-Language`.
//!
//! Header text that comes from data (the recipient's display name, the
//! subject) has every control character replaced by a space before lettre
//! encodes it, so nothing a guest or an administrator typed can start a new
//! header line. Bodies are never logged and never appear in an error.

use std::fmt;
use std::net::IpAddr;
use std::sync::OnceLock;
use std::time::Duration;

use async_trait::async_trait;
use lettre::message::header::{HeaderName, HeaderValue};
use lettre::message::{Mailbox as LettreMailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Tls, TlsParameters};
use lettre::transport::smtp::{AsyncSmtpTransportBuilder, Error as SmtpError};
use lettre::{Address, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::{MailTransport, Mailbox, Message};
use crate::email::EmailAddress;
use crate::error::{ConfigError, MailError};
use crate::random::{SecureRandom, SystemRandom};
use crate::secret::SecretString;

/// The default time allowed to open the TCP connection.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time allowed for a whole send: connecting, TLS, `AUTH` and
/// the SMTP transaction.
pub const DEFAULT_SEND_TIMEOUT: Duration = Duration::from_secs(60);
/// The longest accepted timeout of either kind.
pub const MAX_SMTP_TIMEOUT: Duration = Duration::from_secs(600);
/// Longest server reply text kept in an error message, in characters.
const MAX_REPLY_CHARS: usize = 200;
/// Longest display name accepted for the From mailbox, in characters.
const MAX_FROM_NAME_CHARS: usize = 256;

/// How the connection to the SMTP server is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum SmtpSecurity {
    /// Connect in the clear, then require `STARTTLS` before anything else is
    /// sent; fails when the server does not offer it. The default; port 587
    /// unless set.
    #[default]
    StartTls,
    /// TLS from the first byte (SMTPS); port 465 unless set.
    ImplicitTls,
    /// No encryption at all; port 25 unless set. Accepted only for a
    /// loopback host (`127.0.0.0/8`, `::1`, `localhost`), such as a local
    /// relay or a test server, unless
    /// [`SmtpMailerBuilder::insecure_plain_to_any_host`] is called.
    Plain,
}

impl SmtpSecurity {
    /// The port used when none is set.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpSecurity::StartTls => 587,
            SmtpSecurity::ImplicitTls => 465,
            SmtpSecurity::Plain => 25,
        }
    }
}

/// SMTP `AUTH` credentials. `Debug` shows the user name, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpCredentials {
    username: String,
    password: SecretString,
}

impl SmtpCredentials {
    /// A user name and password.
    pub fn new(username: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }

    /// The user name.
    pub fn username(&self) -> &str {
        &self.username
    }
}

impl fmt::Debug for SmtpCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpCredentials")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// Builds an [`SmtpMailer`]; [`SmtpMailerBuilder::build`] checks every
/// setting and names the first bad one.
#[derive(Debug, Default, Clone)]
#[must_use]
pub struct SmtpMailerBuilder {
    host: Option<String>,
    port: Option<u16>,
    security: SmtpSecurity,
    insecure_plain_to_any_host: bool,
    credentials: Option<SmtpCredentials>,
    from: Option<String>,
    from_name: Option<String>,
    connect_timeout: Option<Duration>,
    send_timeout: Option<Duration>,
}

impl SmtpMailerBuilder {
    /// The server's host name or IP address (required). With TLS, the
    /// server's certificate must be valid for this name.
    pub fn host(mut self, host: impl Into<String>) -> Self {
        self.host = Some(host.into());
        self
    }

    /// The server's port (default: 587, 465 or 25 by [`SmtpSecurity`]).
    pub fn port(mut self, port: u16) -> Self {
        self.port = Some(port);
        self
    }

    /// How the connection is protected (default: [`SmtpSecurity::StartTls`]).
    pub fn security(mut self, security: SmtpSecurity) -> Self {
        self.security = security;
        self
    }

    /// Allows [`SmtpSecurity::Plain`] to a host that is not a loopback
    /// address. Bodies carry redemption links and passcodes, and any
    /// credentials are sent in the clear: use this only on a network you
    /// trust completely.
    pub fn insecure_plain_to_any_host(mut self) -> Self {
        self.insecure_plain_to_any_host = true;
        self
    }

    /// Authenticates with `AUTH` (`PLAIN` or `LOGIN`) after the connection
    /// is protected.
    pub fn credentials(mut self, username: impl Into<String>, password: impl Into<SecretString>) -> Self {
        self.credentials = Some(SmtpCredentials::new(username, password));
        self
    }

    /// The sender address, used in the `From` header, the envelope sender
    /// and the `Message-ID` domain (required).
    pub fn from(mut self, address: impl Into<String>) -> Self {
        self.from = Some(address.into());
        self
    }

    /// The sender's display name, such as `Contoso invitations`.
    pub fn from_name(mut self, name: impl Into<String>) -> Self {
        self.from_name = Some(name.into());
        self
    }

    /// How long opening the TCP connection may take (default 10 s, at most
    /// 10 minutes).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = Some(timeout);
        self
    }

    /// How long a whole send may take, from connecting to the server's
    /// answer to the message (default 60 s, at most 10 minutes). lettre
    /// bounds only the connect; this also ends a send to a server that
    /// stops answering.
    pub fn send_timeout(mut self, timeout: Duration) -> Self {
        self.send_timeout = Some(timeout);
        self
    }

    /// Checks the settings and builds the mailer. Nothing connects yet: the
    /// first send opens the connection (and the connection pool, on the
    /// tokio runtime that send runs on).
    ///
    /// # Errors
    ///
    /// [`ConfigError::Missing`] for `host` or `from`;
    /// [`ConfigError::Invalid`] naming `host`, `port`, `security`,
    /// `credentials`, `from`, `from_name`, `connect_timeout` or
    /// `send_timeout`.
    pub fn build(self) -> Result<SmtpMailer, ConfigError> {
        let invalid = |field, reason: &str| ConfigError::Invalid {
            field,
            reason: reason.to_owned(),
        };
        let host_in = self.host.ok_or(ConfigError::Missing { field: "host" })?;
        let host = check_host(&host_in)?;
        let port = self.port.unwrap_or(self.security.default_port());
        if port == 0 {
            return Err(invalid("port", "port 0 cannot be connected to"));
        }
        if self.security == SmtpSecurity::Plain && !self.insecure_plain_to_any_host && !is_loopback(&host) {
            return Err(ConfigError::Invalid {
                field: "security",
                reason: format!(
                    "plain smtp to `{host}` would send links and passcodes unencrypted; use tls, \
                     a loopback host, or `insecure_plain_to_any_host`"
                ),
            });
        }
        let connect_timeout = self.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT);
        let send_timeout = self.send_timeout.unwrap_or(DEFAULT_SEND_TIMEOUT);
        for (field, t) in [
            ("connect_timeout", connect_timeout),
            ("send_timeout", send_timeout),
        ] {
            if t.is_zero() || t > MAX_SMTP_TIMEOUT {
                return Err(invalid(field, "must be more than zero and at most 10 minutes"));
            }
        }
        if let Some(c) = &self.credentials {
            if c.username.trim().is_empty() {
                return Err(invalid("credentials", "the user name is empty"));
            }
            if c.username.chars().any(char::is_control) {
                return Err(invalid("credentials", "the user name has a control character"));
            }
            if c.password.expose().is_empty() {
                return Err(invalid("credentials", "the password is empty"));
            }
        }
        let from_in = self.from.ok_or(ConfigError::Missing { field: "from" })?;
        let from = EmailAddress::parse(&from_in).map_err(|e| ConfigError::Invalid {
            field: "from",
            reason: e.to_string(),
        })?;
        let from_name = match self.from_name {
            None => None,
            Some(n) if n.trim().is_empty() => None,
            Some(n) => {
                if n.chars().any(is_line_breaking) {
                    return Err(invalid("from_name", "has a control character or line break"));
                }
                if n.chars().count() > MAX_FROM_NAME_CHARS {
                    return Err(invalid("from_name", "is longer than 256 characters"));
                }
                Some(n.trim().to_owned())
            }
        };
        let from_address = lettre_address(&from).map_err(|reason| ConfigError::Invalid {
            field: "from",
            reason,
        })?;
        let tls = match self.security {
            SmtpSecurity::Plain => Tls::None,
            SmtpSecurity::StartTls | SmtpSecurity::ImplicitTls => {
                let params = TlsParameters::new(host.clone()).map_err(|e| ConfigError::Invalid {
                    field: "host",
                    reason: format!("tls cannot be set up for `{host}`: {e}"),
                })?;
                if self.security == SmtpSecurity::StartTls {
                    Tls::Required(params)
                } else {
                    Tls::Wrapper(params)
                }
            }
        };
        let mut lettre_builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host.clone())
            .port(port)
            .tls(tls)
            .timeout(Some(connect_timeout));
        if let Some(c) = &self.credentials {
            lettre_builder = lettre_builder.credentials(Credentials::new(
                c.username.clone(),
                c.password.expose().to_owned(),
            ));
        }
        Ok(SmtpMailer {
            host,
            port,
            security: self.security,
            credentials: self.credentials,
            from_domain: from.domain().to_owned(),
            from: LettreMailbox::new(from_name, from_address),
            connect_timeout,
            send_timeout,
            lettre_builder,
            transport: OnceLock::new(),
            rng: SystemRandom::new(),
        })
    }
}

/// A [`MailTransport`] that hands messages to an SMTP server with lettre's
/// `AsyncSmtpTransport` on tokio (rustls with the webpki roots for TLS).
/// Each message travels on a connection of its own, closed after the send:
/// a send cut off by the send timeout can never leave a half-used
/// connection behind for the next message.
///
/// Needs the `smtp` feature and a tokio runtime at send time.
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use guestpass::mail::{SmtpMailer, SmtpSecurity};
///
/// let mailer = SmtpMailer::builder()
///     .host("smtp.contoso.example")
///     .port(587)
///     .security(SmtpSecurity::StartTls)
///     .credentials("invitations@contoso.example", "load from your secret store")
///     .from("invitations@contoso.example")
///     .from_name("Contoso")
///     .connect_timeout(Duration::from_secs(5))
///     .send_timeout(Duration::from_secs(30))
///     .build()?;
/// // Hand it to the service: `GuestPass::builder().mail(Arc::new(mailer))`.
/// let _mail: Arc<dyn guestpass::mail::MailTransport> = Arc::new(mailer);
/// # Ok::<(), guestpass::error::ConfigError>(())
/// ```
pub struct SmtpMailer {
    host: String,
    port: u16,
    security: SmtpSecurity,
    credentials: Option<SmtpCredentials>,
    from: LettreMailbox,
    from_domain: String,
    connect_timeout: Duration,
    send_timeout: Duration,
    lettre_builder: AsyncSmtpTransportBuilder,
    transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    rng: SystemRandom,
}

/// Shows the server, the sender and the user name; never the password.
impl fmt::Debug for SmtpMailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpMailer")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("from", &self.from.to_string())
            .field("credentials", &self.credentials)
            .field("connect_timeout", &self.connect_timeout)
            .field("send_timeout", &self.send_timeout)
            .finish_non_exhaustive()
    }
}

/// lettre's connection pool spawns its shutdown on the tokio runtime when it
/// is dropped; outside a runtime that would panic, so give it a short-lived
/// one.
impl Drop for SmtpMailer {
    fn drop(&mut self) {
        let Some(transport) = self.transport.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            drop(transport);
            return;
        }
        match tokio::runtime::Builder::new_current_thread().build() {
            Ok(rt) => {
                let _entered = rt.enter();
                drop(transport);
            }
            // No runtime to be had: leak the pool rather than panic.
            Err(_) => std::mem::forget(transport),
        }
    }
}

impl SmtpMailer {
    /// A builder.
    pub fn builder() -> SmtpMailerBuilder {
        SmtpMailerBuilder::default()
    }

    /// The server host, normalised (an IDNA A-label, or an IP address).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The server port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// How the connection is protected.
    pub fn security(&self) -> SmtpSecurity {
        self.security
    }

    /// Builds the MIME message lettre sends.
    fn compose(&self, message: &Message) -> Result<lettre::Message, MailError> {
        let to = recipient(&message.to)?;
        let message_id = self.message_id()?;
        let mut builder = lettre::Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(header_text(&message.subject))
            .date_now()
            .message_id(Some(message_id));
        let language = language_tag(message.language);
        if !language.is_empty() {
            builder = builder.raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("Content-Language"),
                language,
            ));
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                message.text_body.clone(),
                message.html_body.clone(),
            ))
            .map_err(|e| MailError::Transport {
                message: format!("the message could not be built: {e}"),
            })
    }

    /// `<32 hex digits@from-domain>`, from the operating system's CSPRNG.
    fn message_id(&self) -> Result<String, MailError> {
        let mut bytes = [0u8; 16];
        self.rng.fill(&mut bytes).map_err(|_| MailError::Transport {
            message: "no random bytes for a message id".to_owned(),
        })?;
        let mut hex = String::with_capacity(32);
        crate::secret::push_hex(&mut hex, &bytes);
        Ok(format!("<{hex}@{}>", self.from_domain))
    }

    fn transport(&self) -> Result<&AsyncSmtpTransport<Tokio1Executor>, MailError> {
        if let Some(t) = self.transport.get() {
            return Ok(t);
        }
        // lettre's pool spawns its upkeep task when it is created.
        if tokio::runtime::Handle::try_current().is_err() {
            return Err(MailError::Transport {
                message: "the smtp transport must run on a tokio runtime".to_owned(),
            });
        }
        Ok(self.transport.get_or_init(|| self.lettre_builder.clone().build()))
    }

    /// A transport error without credentials or body content: the server,
    /// lettre's error kind and SMTP code, and the server's reply unless it
    /// quotes the message.
    fn error(&self, e: &SmtpError, message: &Message) -> MailError {
        let what = if e.is_timeout() {
            format!(
                "connecting timed out after {} s",
                self.connect_timeout.as_secs_f32()
            )
        } else {
            let text = lowercase_first(&one_line(&e.to_string(), MAX_REPLY_CHARS));
            if quotes_a_secret(&text, message) {
                match e.status() {
                    Some(code) => format!("server replied {code} (reply withheld: it quotes the message)"),
                    None => "failed (details withheld: they quote the message)".to_owned(),
                }
            } else {
                text
            }
        };
        MailError::Transport {
            message: format!("smtp server `{}:{}`: {what}", self.host, self.port),
        }
    }
}

#[async_trait]
impl MailTransport for SmtpMailer {
    async fn send(&self, message: &Message) -> Result<(), MailError> {
        let email = self.compose(message)?;
        let transport = self.transport()?;
        match tokio::time::timeout(self.send_timeout, transport.send(email)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(self.error(&e, message)),
            Err(_) => Err(MailError::Transport {
                message: format!(
                    "smtp server `{}:{}`: sending timed out after {} s",
                    self.host,
                    self.port,
                    self.send_timeout.as_secs_f32()
                ),
            }),
        }
    }
}

/// Checks and normalises the configured host: an IP address (IPv6 with or
/// without brackets) or a host name, returned as a lowercase A-label.
fn check_host(input: &str) -> Result<String, ConfigError> {
    let invalid = |reason: &str| ConfigError::Invalid {
        field: "host",
        reason: format!("`{}` {reason}", input.escape_default()),
    };
    let trimmed = input.trim();
    if trimmed.is_empty() {
        return Err(ConfigError::Missing { field: "host" });
    }
    if trimmed.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid("has white space or a control character"));
    }
    let unbracketed = trimmed
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(trimmed);
    if let Ok(ip) = unbracketed.parse::<IpAddr>() {
        return Ok(ip.to_string());
    }
    let ascii = idna::domain_to_ascii(trimmed).map_err(|_| invalid("is not a valid host name"))?;
    let ascii = ascii.strip_suffix('.').unwrap_or(&ascii);
    if ascii.is_empty() || ascii.len() > 253 {
        return Err(invalid("is not a valid host name"));
    }
    for label in ascii.split('.') {
        let ok = !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !ok {
            return Err(invalid("is not a valid host name (give a host, not a url)"));
        }
    }
    Ok(ascii.to_ascii_lowercase())
}

/// `127.0.0.0/8`, `::1` (also IPv4-mapped loopback) and `localhost`.
fn is_loopback(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(v4)) => v4.is_loopback(),
        Ok(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// The lettre address of a parsed address: the local part as stored, the
/// domain as its A-label (so no server needs SMTPUTF8).
fn lettre_address(address: &EmailAddress) -> Result<Address, String> {
    Address::new(address.local_part(), address.domain())
        .map_err(|e| format!("`{address}` cannot be used in smtp: {e}"))
}

fn recipient(to: &Mailbox) -> Result<LettreMailbox, MailError> {
    let address = lettre_address(&to.address).map_err(|message| MailError::Transport { message })?;
    let name = to.name.as_deref().map(header_text).filter(|n| !n.is_empty());
    Ok(LettreMailbox::new(name, address))
}

/// Control characters and Unicode line or paragraph separators.
fn is_line_breaking(c: char) -> bool {
    c.is_control() || matches!(c, '\u{2028}' | '\u{2029}')
}

/// Header text from data: every control character or line separator
/// becomes a space, so the text stays one header line whatever it holds.
fn header_text(s: &str) -> String {
    s.chars()
        .map(|c| if is_line_breaking(c) { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// A language tag reduced to the characters a tag may have.
fn language_tag(tag: &str) -> String {
    tag.chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(35)
        .collect()
}

/// `s` on one line, at most `max` characters.
fn one_line(s: &str, max: usize) -> String {
    let flat = header_text(s);
    if flat.chars().count() <= max {
        flat
    } else {
        let mut cut: String = flat.chars().take(max).collect();
        cut.push('…');
        cut
    }
}

/// `s` with its first character lowercased (lettre says `Connection error`).
fn lowercase_first(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_lowercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// Whether a server reply repeats what makes a message secret: a link or a
/// long run of digits from the body (the redemption link, the passcode).
fn quotes_a_secret(reply: &str, message: &Message) -> bool {
    let tokens = message
        .text_body
        .split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>')
        .chain(
            message
                .html_body
                .split(|c: char| c.is_whitespace() || c == '"' || c == '<' || c == '>' || c == '\''),
        );
    for token in tokens {
        let token = token.trim_matches(|c: char| matches!(c, '.' | ',' | ';' | ')' | '('));
        let secretish = token.contains("://")
            || token.contains('?')
            || (token.len() >= 6 && token.bytes().all(|b| b.is_ascii_digit()));
        if secretish && reply.contains(token) {
            return true;
        }
        // A reply may quote a shortened link.
        if token.contains("://") && token.len() > 24 {
            let prefix: String = token.chars().take(24).collect();
            if reply.contains(&prefix) {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::MessageKind;

    fn message(subject: &str, name: Option<&str>) -> Message {
        Message {
            kind: MessageKind::Invitation,
            to: Mailbox {
                address: EmailAddress::parse("Alice@Bücher.example").unwrap(),
                name: name.map(str::to_owned),
            },
            subject: subject.to_owned(),
            text_body: "Open https://guests.contoso.example/redeem?ticket=AAAA code 12345678".to_owned(),
            html_body: "<a href=\"https://guests.contoso.example/redeem?ticket=AAAA\">open</a>".to_owned(),
            language: "de-DE",
        }
    }

    fn mailer() -> SmtpMailer {
        SmtpMailer::builder()
            .host("127.0.0.1")
            .security(SmtpSecurity::Plain)
            .from("invites@contoso.example")
            .from_name("Contoso")
            .build()
            .unwrap()
    }

    #[test]
    fn header_text_never_breaks_a_line() {
        for s in [
            "Hi\r\nBcc: x@y.example",
            "a\nb",
            "a\rb",
            "a\u{2028}b",
            "a\u{85}b",
            "a\0b",
            "\ta\t",
        ] {
            let t = header_text(s);
            assert!(!t.chars().any(is_line_breaking), "{s:?} -> {t:?}");
        }
        assert_eq!(header_text("Hi\r\nBcc: x@y.example"), "Hi  Bcc: x@y.example");
    }

    #[test]
    fn composes_one_line_headers_and_an_ascii_envelope() {
        let m = mailer()
            .compose(&message(
                "Hi\r\nBcc: evil@x.example",
                Some("Eve\r\nBcc: evil@x.example"),
            ))
            .unwrap();
        let raw = String::from_utf8(m.formatted()).unwrap();
        let (head, _) = raw.split_once("\r\n\r\n").unwrap();
        assert!(
            !head.lines().any(|l| l.to_ascii_lowercase().starts_with("bcc:")),
            "{head}"
        );
        assert!(head.contains("Content-Language: de-DE\r\n"), "{head}");
        assert!(head.contains("@contoso.example>\r\n"), "{head}");
        let rcpt: Vec<String> = m.envelope().to().iter().map(ToString::to_string).collect();
        assert_eq!(rcpt, ["Alice@xn--bcher-kva.example"]);
    }

    #[test]
    fn message_ids_differ() {
        let m = mailer();
        assert_ne!(m.message_id().unwrap(), m.message_id().unwrap());
    }

    #[test]
    fn replies_quoting_the_body_are_withheld() {
        let m = message("s", None);
        assert!(quotes_a_secret(
            "550 bad link https://guests.contoso.example/redeem?ticket=AAAA",
            &m
        ));
        assert!(quotes_a_secret(
            "550 spam: https://guests.contoso.example/re...",
            &m
        ));
        assert!(quotes_a_secret("554 content 12345678 rejected", &m));
        assert!(!quotes_a_secret("550 5.1.1 recipient refused", &m));
    }

    #[test]
    fn hosts_are_normalised_and_checked() {
        assert_eq!(check_host("[::1]").unwrap(), "::1");
        assert_eq!(
            check_host("SMTP.Bücher.example.").unwrap(),
            "smtp.xn--bcher-kva.example"
        );
        assert!(check_host("smtp://x.example").is_err());
        assert!(check_host("a b").is_err());
        assert!(matches!(
            check_host(" "),
            Err(ConfigError::Missing { field: "host" })
        ));
        for loopback in [
            "127.0.0.1",
            "127.8.9.10",
            "::1",
            "localhost",
            "LOCALHOST",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_loopback(&check_host(loopback).unwrap()), "{loopback}");
        }
        for remote in ["10.0.0.1", "::2", "localhost.example", "128.0.0.1"] {
            assert!(!is_loopback(&check_host(remote).unwrap()), "{remote}");
        }
    }
}
