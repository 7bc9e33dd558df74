//! The `smtp` feature against a real SMTP server.
//!
//! Each test starts `tests/support/smtp_sink.py` (an aiosmtpd server) on
//! 127.0.0.1 on a free port; it writes every delivered message to a
//! directory as a `.eml` file with its envelope next to it, and refuses any
//! recipient whose local part is `refused` with 550. The tests read the
//! delivered bytes back and parse them by hand (headers, multipart
//! boundaries, quoted-printable and base64), so what is checked is what went
//! over the wire.
//!
//! Needs Python 3 with aiosmtpd (`python3 -m pip install aiosmtpd`); set
//! `GUESTPASS_PYTHON` to use another interpreter. Without it the tests fail,
//! they are never skipped.
#![cfg(feature = "smtp")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use guestpass::clock::FixedClock;
use guestpass::directory::{ExternalUserState, MemoryStore};
use guestpass::email::EmailAddress;
use guestpass::error::{ConfigError, MailError, TicketError};
use guestpass::keys::SigningKey;
use guestpass::mail::{MailTransport, Mailbox, Message, MessageKind, SmtpMailer, SmtpSecurity};
use guestpass::random::SeededRandom;
use guestpass::{ConsentDecision, Error, Finished, GuestPass, InvitationRequest, Inviter, RedemptionStep};
use time::macros::datetime;
use time::{Duration as TimeDuration, OffsetDateTime};

const BASE_URL: &str = "https://guests.contoso.example/";
const REDIRECT: &str = "https://app.contoso.example/";
const LINK_PREFIX: &str = "https://guests.contoso.example/redeem?ticket=";
const FROM: &str = "invitations@contoso.example";
const T0: OffsetDateTime = datetime!(2026-11-01 12:00 UTC);

// ---------------------------------------------------------------------------
// The SMTP sink process
// ---------------------------------------------------------------------------

/// A running `smtp_sink.py`; killed, and its directory removed, on drop.
struct Sink {
    child: Child,
    stdin: Option<ChildStdin>,
    port: u16,
    dir: PathBuf,
}

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

fn python() -> String {
    std::env::var("GUESTPASS_PYTHON").unwrap_or_else(|_| "python3".to_owned())
}

impl Sink {
    /// Starts a sink on a free port.
    fn start() -> Sink {
        Sink::start_on(free_port())
    }

    /// Starts a sink on `port` and waits until it accepts connections.
    fn start_on(port: u16) -> Sink {
        static N: AtomicU32 = AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "guestpass-smtp-{}-{}-{}",
            std::process::id(),
            port,
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let stderr = std::fs::File::create(dir.join("sink.stderr")).unwrap();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_sink.py");
        let mut child = match Command::new(python())
            .arg(&script)
            .arg(port.to_string())
            .arg(dir.join("mail"))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
        {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                panic!(
                    "cannot run `{}` ({e}): the smtp tests need Python 3 with aiosmtpd; \
                     install it with `python3 -m pip install aiosmtpd`",
                    python()
                )
            }
        };
        let stdin = child.stdin.take();
        let mut sink = Sink {
            child,
            stdin,
            port,
            dir,
        };
        sink.wait_until_listening();
        sink
    }

    fn wait_until_listening(&mut self) {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                let mut err = String::new();
                if let Ok(mut f) = std::fs::File::open(self.dir.join("sink.stderr")) {
                    let _ = f.read_to_string(&mut err);
                }
                let hint = if status.code() == Some(3) || err.contains("aiosmtpd") {
                    "aiosmtpd is missing: install it with `python3 -m pip install aiosmtpd`"
                } else {
                    "the smtp sink needs Python 3 with aiosmtpd (`python3 -m pip install aiosmtpd`)"
                };
                panic!("smtp sink exited with {status} before listening; {hint}\n{err}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "smtp sink did not listen on {addr} within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every message delivered so far, oldest first.
    fn messages(&self) -> Vec<Delivered> {
        let Ok(entries) = std::fs::read_dir(self.dir.join("mail")) else {
            return Vec::new();
        };
        let mut names: Vec<PathBuf> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "eml"))
            .collect();
        names.sort();
        names.iter().map(|p| Delivered::read(p)).collect()
    }

    /// Waits (bounded) until `n` messages were delivered; returns them.
    fn wait_for(&self, n: usize) -> Vec<Delivered> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let got = self.messages();
            if got.len() >= n {
                assert_eq!(got.len(), n, "more messages than expected");
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "expected {n} delivered messages, got {}",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

// ---------------------------------------------------------------------------
// A minimal reader for the delivered messages
// ---------------------------------------------------------------------------

/// Header block and body of an entity (the message or a MIME part).
struct Entity {
    /// The physical header lines, as received.
    lines: Vec<String>,
    /// Unfolded headers: name as received, value trimmed.
    headers: Vec<(String, String)>,
    body: String,
}

impl Entity {
    fn parse(raw: &str) -> Entity {
        let (head, body) = raw
            .split_once("\r\n\r\n")
            .expect("a blank CRLF line ends the headers");
        let lines: Vec<String> = head.split("\r\n").map(str::to_owned).collect();
        let mut headers: Vec<(String, String)> = Vec::new();
        for line in &lines {
            if line.starts_with([' ', '\t']) {
                let last = headers
                    .last_mut()
                    .expect("no continuation before the first header");
                last.1.push(' ');
                last.1.push_str(line.trim());
            } else {
                let (name, value) = line
                    .split_once(':')
                    .unwrap_or_else(|| panic!("header line without a colon: {line:?}"));
                assert!(
                    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic()),
                    "bad header name in {line:?}"
                );
                headers.push((name.to_owned(), value.trim().to_owned()));
            }
        }
        Entity {
            lines,
            headers,
            body: body.to_owned(),
        }
    }

    /// Values of every header named `name` (case-insensitive).
    fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// The value of the one header named `name`.
    fn one(&self, name: &str) -> &str {
        let all = self.all(name);
        assert_eq!(all.len(), 1, "expected one `{name}` header, got {all:?}");
        all[0]
    }

    /// A parameter of a header value, such as `boundary` of `Content-Type`.
    fn param(&self, header: &str, param: &str) -> Option<String> {
        self.one(header).split(';').skip(1).find_map(|p| {
            let (k, v) = p.trim().split_once('=')?;
            k.eq_ignore_ascii_case(param)
                .then(|| v.trim_matches('"').to_owned())
        })
    }

    /// The body decoded by its `Content-Transfer-Encoding`, as UTF-8.
    fn decoded(&self) -> String {
        let cte = self
            .all("Content-Transfer-Encoding")
            .first()
            .map(|v| v.to_ascii_lowercase())
            .unwrap_or_else(|| "7bit".to_owned());
        let bytes = match cte.as_str() {
            "7bit" | "8bit" => self.body.clone().into_bytes(),
            "quoted-printable" => decode_qp(&self.body),
            "base64" => decode_base64(&self.body),
            other => panic!("unexpected transfer encoding `{other}`"),
        };
        String::from_utf8(bytes).expect("the part is UTF-8")
    }
}

/// A delivered message: its bytes, parsed, and its envelope.
struct Delivered {
    raw: String,
    message: Entity,
    mail_from: String,
    rcpt_tos: Vec<String>,
}

impl Delivered {
    fn read(path: &Path) -> Delivered {
        let bytes = std::fs::read(path).unwrap();
        assert!(
            bytes.is_ascii(),
            "the message on the wire is ASCII (MIME encoded)"
        );
        let raw = String::from_utf8(bytes).unwrap();
        let envelope: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path.with_extension("json")).unwrap()).unwrap();
        Delivered {
            message: Entity::parse(&raw),
            mail_from: envelope["mail_from"].as_str().unwrap().to_owned(),
            rcpt_tos: envelope["rcpt_tos"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect(),
            raw,
        }
    }

    /// The parts of a `multipart/*` message.
    fn parts(&self) -> Vec<Entity> {
        let boundary = self
            .message
            .param("Content-Type", "boundary")
            .expect("a multipart boundary");
        let delimiter = format!("--{boundary}");
        let body = &self.message.body;
        let end = body.find(&format!("{delimiter}--")).expect("a closing boundary");
        body[..end]
            .split(&delimiter)
            .skip(1)
            .map(|p| {
                let p = p.strip_prefix("\r\n").expect("CRLF after a boundary");
                Entity::parse(p.strip_suffix("\r\n").unwrap_or(p))
            })
            .collect()
    }

    /// The decoded `text/plain` and `text/html` parts of a
    /// `multipart/alternative` message.
    fn text_and_html(&self) -> (String, String) {
        let ct = self.message.one("Content-Type").to_ascii_lowercase();
        assert!(ct.starts_with("multipart/alternative;"), "{ct}");
        let parts = self.parts();
        assert_eq!(parts.len(), 2, "a text and an html part");
        let kinds: Vec<String> = parts
            .iter()
            .map(|p| p.one("Content-Type").to_ascii_lowercase().replace(' ', ""))
            .collect();
        assert_eq!(kinds, ["text/plain;charset=utf-8", "text/html;charset=utf-8"]);
        (parts[0].decoded(), parts[1].decoded())
    }
}

fn decode_qp(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' {
            if b[i + 1..].starts_with(b"\r\n") {
                i += 3;
            } else {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    out
}

fn decode_base64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    const MIME: base64::engine::GeneralPurpose = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new()
            .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
    );
    let text: String = s.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    MIME.decode(text).expect("a base64 body")
}

/// Decodes RFC 2047 encoded words (`=?utf-8?b?...?=`, `=?utf-8?q?...?=`);
/// white space between two adjacent encoded words is dropped.
fn decode_words(value: &str) -> String {
    let mut out = Vec::new();
    let mut rest = value;
    let mut after_word = false;
    while !rest.is_empty() {
        let Some(start) = rest.find("=?") else {
            out.extend_from_slice(rest.as_bytes());
            break;
        };
        let between = &rest[..start];
        if !(after_word && between.chars().all(char::is_whitespace)) {
            out.extend_from_slice(between.as_bytes());
        }
        let word = &rest[start + 2..];
        let mut fields = word.splitn(3, '?');
        let charset = fields.next().unwrap().to_ascii_lowercase();
        let encoding = fields.next().unwrap().to_ascii_lowercase();
        let tail = fields.next().unwrap();
        let end = tail.find("?=").expect("an encoded word ends with ?=");
        let text = &tail[..end];
        assert_eq!(charset, "utf-8");
        match encoding.as_str() {
            "b" => out.extend(decode_base64(text)),
            "q" => out.extend(decode_qp(&text.replace('_', " "))),
            other => panic!("unknown encoded-word encoding `{other}`"),
        }
        rest = &tail[end + 2..];
        after_word = true;
    }
    String::from_utf8(out).unwrap()
}

/// The ticket in the first redemption link of a text body.
fn ticket_in(text: &str) -> String {
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(LINK_PREFIX))
        .unwrap_or_else(|| panic!("no redemption link in:\n{text}"));
    let ticket = &link[LINK_PREFIX.len()..];
    assert!(
        ticket
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
        "ticket is base64url: {ticket}"
    );
    ticket.to_owned()
}

/// The first run of exactly eight digits in a text body.
fn code_in(text: &str) -> String {
    text.split(|c: char| !c.is_ascii_digit())
        .find(|run| run.len() == 8)
        .unwrap_or_else(|| panic!("no passcode in:\n{text}"))
        .to_owned()
}

// ---------------------------------------------------------------------------
// The service under test
// ---------------------------------------------------------------------------

fn plain_mailer(port: u16) -> SmtpMailer {
    SmtpMailer::builder()
        .host("127.0.0.1")
        .port(port)
        .security(SmtpSecurity::Plain)
        .from(FROM)
        .from_name("Contoso")
        .send_timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

struct Service {
    gp: GuestPass,
    clock: Arc<FixedClock>,
}

fn service(mailer: SmtpMailer) -> Service {
    let clock = Arc::new(FixedClock::new(T0));
    let gp = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(BASE_URL)
        .signing_key(SigningKey::new("k1", [7u8; 32]).unwrap())
        .redirect_url(REDIRECT)
        .store(Arc::new(MemoryStore::new()))
        .mail(Arc::new(mailer))
        .clock(clock.clone())
        .random(Arc::new(SeededRandom::new(7)))
        .build()
        .unwrap();
    Service { gp, clock }
}

fn request(address: &str) -> InvitationRequest {
    let mut r = InvitationRequest::new(address, REDIRECT);
    r.invited_user_display_name = Some("Alice Müller".to_owned());
    r
}

fn admin() -> Inviter {
    Inviter::admin(None)
}

fn transport_message(e: &Error) -> &str {
    match e {
        Error::Mail(MailError::Transport { message }) => message,
        other => panic!("expected Error::Mail(MailError::Transport), got {other:?}"),
    }
}

/// What a failed call must not leave behind: any user (and so any
/// invitation, which is written in the same batch).
async fn assert_no_users(gp: &GuestPass) {
    let users = gp.users().await.unwrap();
    assert!(users.is_empty(), "the store changed: {users:?}");
}

/// Checks the headers every message carries.
fn assert_envelope_and_headers(d: &Delivered, to: &str) {
    let m = &d.message;
    assert_eq!(m.one("From"), format!("Contoso <{FROM}>"));
    assert!(m.one("To").ends_with(&format!("<{to}>")), "{}", m.one("To"));
    assert!(!m.one("Subject").is_empty());
    let date = m.one("Date");
    OffsetDateTime::parse(date, &time::format_description::well_known::Rfc2822)
        .unwrap_or_else(|e| panic!("Date `{date}` is not RFC 2822: {e}"));
    let id = m.one("Message-ID");
    assert!(
        id.starts_with('<') && id.ends_with("@contoso.example>") && id.len() > 30,
        "Message-ID `{id}`"
    );
    assert_eq!(m.one("Content-Language"), "en-US");
    assert_eq!(m.one("MIME-Version"), "1.0");
    assert_eq!(d.mail_from, FROM);
    assert_eq!(d.rcpt_tos, [to]);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// (a) An invitation and the passcode travel over SMTP, and what arrives is
/// enough to redeem.
#[tokio::test]
async fn invitation_over_smtp_redeems_end_to_end() {
    let sink = Sink::start();
    let s = service(plain_mailer(sink.port));
    let inv =
        s.gp.invite(&admin(), request("alice@fabrikam.example"))
            .await
            .unwrap();

    let mails = sink.wait_for(1);
    let invitation = &mails[0];
    assert_envelope_and_headers(invitation, "alice@fabrikam.example");
    assert_eq!(
        decode_words(invitation.message.one("To")),
        "Alice Müller <alice@fabrikam.example>",
        "the non-ASCII name is encoded, and decodes"
    );
    assert!(invitation.message.one("Subject").contains("Contoso"));
    let (text, html) = invitation.text_and_html();
    let ticket = ticket_in(&text);
    assert!(
        html.contains(&format!("{LINK_PREFIX}{ticket}")),
        "the html part links too"
    );
    assert_eq!(
        inv.invite_redeem_url.unwrap().expose(),
        format!("{LINK_PREFIX}{ticket}")
    );

    let started = s.gp.start_redemption(&ticket).await.unwrap();
    assert_eq!(
        started.step,
        RedemptionStep::EnterPasscode {
            sent_to: "alice@fabrikam.example".to_owned()
        }
    );
    let mails = sink.wait_for(2);
    let passcode = &mails[1];
    assert_envelope_and_headers(passcode, "alice@fabrikam.example");
    assert_ne!(
        passcode.message.one("Message-ID"),
        invitation.message.one("Message-ID"),
        "message ids are unique"
    );
    let (text, html) = passcode.text_and_html();
    let code = code_in(&text);
    assert!(html.contains(&code));

    let handle = started.handle.expose();
    let step = s.gp.submit_passcode(handle, &code).await.unwrap();
    assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
    match s
        .gp
        .finish_redemption(handle, ConsentDecision::Accept)
        .await
        .unwrap()
    {
        Finished::Redeemed(r) => {
            assert_eq!(r.user.external_user_state, Some(ExternalUserState::Accepted));
            assert_eq!(r.redirect_url.as_str(), REDIRECT);
        }
        other => panic!("accept did not redeem: {other:?}"),
    }
}

/// An address with an internationalised domain goes out under its A-label,
/// so the server needs no SMTPUTF8.
#[tokio::test]
async fn international_domain_goes_out_as_its_a_label() {
    let sink = Sink::start();
    let s = service(plain_mailer(sink.port));
    s.gp.invite(&admin(), request("Juergen@Bücher.example"))
        .await
        .unwrap();
    let d = &sink.wait_for(1)[0];
    assert_eq!(d.rcpt_tos, ["Juergen@xn--bcher-kva.example"]);
    assert!(
        d.message.one("To").ends_with("<Juergen@xn--bcher-kva.example>"),
        "{}",
        d.message.one("To")
    );
}

/// (b) A recipient the server refuses: a typed transport error naming the
/// 550, nothing stored, nothing delivered, and the mailer keeps working.
#[tokio::test]
async fn refused_recipient_is_a_transport_error_and_stores_nothing() {
    let sink = Sink::start();
    let s = service(plain_mailer(sink.port));
    let err =
        s.gp.invite(&admin(), request("refused@fabrikam.example"))
            .await
            .unwrap_err();
    let message = transport_message(&err);
    assert!(message.contains("550"), "{message}");
    assert!(message.contains("recipient refused"), "{message}");
    assert!(
        !message.contains("ticket") && !message.contains("guests.contoso"),
        "{message}"
    );
    assert_eq!(err.status().as_u16(), 502);
    assert_no_users(&s.gp).await;
    assert!(sink.messages().is_empty());

    // A later invitation goes through on the same mailer.
    let inv =
        s.gp.invite(&admin(), request("bob@fabrikam.example"))
            .await
            .unwrap();
    let mails = sink.wait_for(1);
    assert_envelope_and_headers(&mails[0], "bob@fabrikam.example");
    let users = s.gp.users().await.unwrap();
    assert_eq!(users.len(), 1);
    assert_eq!(users[0].id, inv.invited_user.id);
}

/// (c) No server: typed error and nothing stored; once the server is up the
/// same call works. A resend while it is down changes nothing either (the
/// earlier link still works), and a passcode that cannot be mailed is
/// reported as `PasscodeNotDelivered`, recoverable with a resend.
#[tokio::test]
async fn server_down_then_up() {
    let port = free_port();
    let s = service(plain_mailer(port));

    let err =
        s.gp.invite(&admin(), request("alice@fabrikam.example"))
            .await
            .unwrap_err();
    let message = transport_message(&err);
    assert!(message.contains(&format!("127.0.0.1:{port}")), "{message}");
    assert!(message.to_lowercase().contains("connection refused"), "{message}");
    assert_no_users(&s.gp).await;

    let sink = Sink::start_on(port);
    let inv =
        s.gp.invite(&admin(), request("alice@fabrikam.example"))
            .await
            .unwrap();
    let user_id = inv.invited_user.id;
    let first_ticket = ticket_in(&sink.wait_for(1)[0].text_and_html().0);
    drop(sink);

    // Down again: a resend fails and leaves the first link valid.
    let err = s.gp.resend(&admin(), user_id).await.unwrap_err();
    transport_message(&err);
    s.gp.view_redemption(&first_ticket).await.unwrap();

    // The passcode cannot be delivered: the session is open, the step says so.
    let started = s.gp.start_redemption(&first_ticket).await.unwrap();
    match &started.step {
        RedemptionStep::PasscodeNotDelivered { sent_to, reason } => {
            assert_eq!(sent_to, "alice@fabrikam.example");
            assert!(matches!(reason, MailError::Transport { .. }), "{reason:?}");
        }
        other => panic!("expected PasscodeNotDelivered, got {other:?}"),
    }

    // Up again: another passcode arrives (after the send interval) and redeems.
    let sink = Sink::start_on(port);
    s.clock.advance(TimeDuration::seconds(31));
    let handle = started.handle.expose();
    let step = s.gp.resend_passcode(handle).await.unwrap();
    assert!(matches!(step, RedemptionStep::EnterPasscode { .. }), "{step:?}");
    let mails = sink.wait_for(1);
    assert_envelope_and_headers(&mails[0], "alice@fabrikam.example");
    let code = code_in(&mails[0].text_and_html().0);
    s.gp.submit_passcode(handle, &code).await.unwrap();
    let finished =
        s.gp.finish_redemption(handle, ConsentDecision::Accept)
            .await
            .unwrap();
    assert!(matches!(finished, Finished::Redeemed(_)));
}

/// (c, continued) A resend once the server is back replaces the link.
#[tokio::test]
async fn resend_after_outage_replaces_the_link() {
    let port = free_port();
    let s = service(plain_mailer(port));
    let sink = Sink::start_on(port);
    let inv =
        s.gp.invite(&admin(), request("carol@fabrikam.example"))
            .await
            .unwrap();
    let first = ticket_in(&sink.wait_for(1)[0].text_and_html().0);
    drop(sink);
    transport_message(&s.gp.resend(&admin(), inv.invited_user.id).await.unwrap_err());

    let sink = Sink::start_on(port);
    s.gp.resend(&admin(), inv.invited_user.id).await.unwrap();
    let second = ticket_in(&sink.wait_for(1)[0].text_and_html().0);
    assert_ne!(first, second);
    assert_eq!(
        s.gp.view_redemption(&first).await.unwrap_err(),
        Error::Ticket(TicketError::NoLongerValid)
    );
    s.gp.view_redemption(&second).await.unwrap();
}

/// (d) CR/LF in a display name or subject cannot add headers or recipients.
#[tokio::test]
async fn crlf_in_name_and_subject_adds_no_header() {
    let sink = Sink::start();
    let mailer = plain_mailer(sink.port);
    let message = Message {
        kind: MessageKind::Invitation,
        to: Mailbox {
            address: EmailAddress::parse("eve@fabrikam.example").unwrap(),
            name: Some("Eve\r\nBcc: evil@x.example\r\nX-Injected: 1".to_owned()),
        },
        subject: "Hi\r\nBcc: evil@x.example\nX-Injected: 2\r\n\r\nbody?".to_owned(),
        text_body: "line one\r\n.\r\nBcc: body@x.example\r\nlast".to_owned(),
        html_body: "<p>hello</p>".to_owned(),
        language: "en-US",
    };
    mailer.send(&message).await.unwrap();

    let d = &sink.wait_for(1)[0];
    let m = &d.message;
    assert_eq!(
        d.rcpt_tos,
        ["eve@fabrikam.example"],
        "no extra envelope recipient"
    );
    let mut names: Vec<String> = m.headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    names.sort();
    assert_eq!(
        names,
        [
            "content-language",
            "content-type",
            "date",
            "from",
            "message-id",
            "mime-version",
            "subject",
            "to"
        ],
        "exactly the expected headers, once each:\n{}",
        m.lines.join("\n")
    );
    for line in &m.lines {
        let lower = line.to_ascii_lowercase();
        assert!(
            !lower.starts_with("bcc") && !lower.starts_with("x-injected"),
            "injected header line {line:?}"
        );
    }
    // The texts arrive whole, on one (unfolded) header line each, with the
    // line breaks turned into spaces.
    assert_eq!(
        decode_words(m.one("Subject")),
        "Hi  Bcc: evil@x.example X-Injected: 2    body?"
    );
    let to = m.one("To");
    let (name, address) = to.rsplit_once(' ').unwrap();
    assert_eq!(address, "<eve@fabrikam.example>");
    assert_eq!(
        decode_words(name.trim_matches('"')),
        "Eve  Bcc: evil@x.example  X-Injected: 1"
    );

    // The body line that is a lone `.` did not end the DATA early.
    let (text, _) = d.text_and_html();
    assert_eq!(
        text.replace("\r\n", "\n"),
        "line one\n.\nBcc: body@x.example\nlast"
    );
    assert!(!d.raw.contains("X-Injected: 1\r\n"));
}

/// `StartTls` is required, not opportunistic: a server without STARTTLS gets
/// nothing.
#[tokio::test]
async fn starttls_is_required() {
    let sink = Sink::start();
    let mailer = SmtpMailer::builder()
        .host("127.0.0.1")
        .port(sink.port)
        .security(SmtpSecurity::StartTls)
        .from(FROM)
        .send_timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let s = service(mailer);
    let err =
        s.gp.invite(&admin(), request("alice@fabrikam.example"))
            .await
            .unwrap_err();
    transport_message(&err);
    assert_no_users(&s.gp).await;
    assert!(sink.messages().is_empty());
}

/// A server that accepts the connection and never answers: the send
/// timeout ends the attempt with a typed error (lettre's own timeout covers
/// only the connect).
#[tokio::test]
async fn silent_server_times_out() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    // Accepts and holds connections, never says a word; the thread ends with
    // the test process.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let mailer = SmtpMailer::builder()
        .host("127.0.0.1")
        .port(port)
        .security(SmtpSecurity::Plain)
        .from(FROM)
        .send_timeout(Duration::from_secs(1))
        .build()
        .unwrap();
    let s = service(mailer);
    let started = Instant::now();
    let err =
        s.gp.invite(&admin(), request("alice@fabrikam.example"))
            .await
            .unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(8),
        "{:?}",
        started.elapsed()
    );
    let message = transport_message(&err);
    assert!(message.contains("sending timed out after 1 s"), "{message}");
    assert_no_users(&s.gp).await;
}

/// The mailer may outlive the runtime it first sent on, and be dropped
/// outside any runtime (lettre's pool spawns on drop).
#[test]
fn mailer_outlives_its_runtime() {
    let sink = Sink::start();
    let mailer = plain_mailer(sink.port);
    let message = Message {
        kind: MessageKind::Passcode,
        to: Mailbox {
            address: EmailAddress::parse("dave@fabrikam.example").unwrap(),
            name: None,
        },
        subject: "Your code".to_owned(),
        text_body: "12345678".to_owned(),
        html_body: "<p>12345678</p>".to_owned(),
        language: "en-US",
    };
    for _ in 0..2 {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(mailer.send(&message)).unwrap();
    }
    drop(mailer);
    let mails = sink.wait_for(2);
    assert!(mails[0].message.all("Content-Language") == ["en-US"]);
}

/// Credentials never show: not in `Debug`, not in an error.
#[tokio::test]
async fn credentials_stay_secret() {
    let sink = Sink::start();
    let builder = SmtpMailer::builder()
        .host("localhost")
        .port(sink.port)
        .security(SmtpSecurity::Plain)
        .credentials("mailer-user", "hunter2-very-secret")
        .from(FROM);
    let shown = format!("{builder:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    let mailer = SmtpMailer::builder()
        .host("127.0.0.1")
        .port(sink.port)
        .security(SmtpSecurity::Plain)
        .credentials("mailer-user", "hunter2-very-secret")
        .from(FROM)
        .build()
        .unwrap();
    let shown = format!("{mailer:?}");
    assert!(!shown.contains("hunter2"), "{shown}");
    assert!(
        shown.contains("mailer-user") && shown.contains("SecretString(..)"),
        "{shown}"
    );

    // The sink offers no AUTH: the send fails, and says nothing secret.
    let s = service(mailer);
    let err =
        s.gp.invite(&admin(), request("alice@fabrikam.example"))
            .await
            .unwrap_err();
    let message = transport_message(&err).to_owned();
    let all = format!("{message} {err} {err:?}");
    assert!(!all.contains("hunter2"), "{all}");
    assert!(!all.contains("ticket"), "{all}");
    assert_no_users(&s.gp).await;
}

/// (e) Every setting is checked, and the error names it.
#[test]
fn config_errors_name_the_field() {
    let ok = || SmtpMailer::builder().host("smtp.contoso.example").from(FROM);
    let field_of = |r: Result<SmtpMailer, ConfigError>| match r {
        Ok(m) => panic!("expected a config error, built {m:?}"),
        Err(ConfigError::Invalid { field, reason }) => {
            assert!(!reason.is_empty());
            ("invalid", field)
        }
        Err(ConfigError::Missing { field }) => ("missing", field),
        Err(e) => panic!("unexpected {e:?}"),
    };

    let m = ok().build().unwrap();
    assert_eq!(
        (m.host(), m.port(), m.security()),
        ("smtp.contoso.example", 587, SmtpSecurity::StartTls)
    );
    let m = ok().security(SmtpSecurity::ImplicitTls).build().unwrap();
    assert_eq!(m.port(), 465);

    // Plain only to loopback, unless explicitly insecure.
    assert_eq!(
        field_of(ok().security(SmtpSecurity::Plain).build()),
        ("invalid", "security")
    );
    assert_eq!(
        field_of(ok().host("10.1.2.3").security(SmtpSecurity::Plain).build()),
        ("invalid", "security")
    );
    assert_eq!(
        field_of(
            ok().host("localhost.contoso.example")
                .security(SmtpSecurity::Plain)
                .build()
        ),
        ("invalid", "security")
    );
    let m = ok()
        .security(SmtpSecurity::Plain)
        .insecure_plain_to_any_host()
        .build()
        .unwrap();
    assert_eq!(m.port(), 25);
    for host in ["127.0.0.1", "127.3.4.5", "::1", "[::1]", "localhost", "LocalHost"] {
        ok().host(host).security(SmtpSecurity::Plain).build().unwrap();
    }

    assert_eq!(
        field_of(SmtpMailer::builder().from(FROM).build()),
        ("missing", "host")
    );
    assert_eq!(field_of(ok().host("").build()), ("missing", "host"));
    assert_eq!(
        field_of(ok().host("smtp://smtp.contoso.example").build()),
        ("invalid", "host")
    );
    assert_eq!(
        field_of(ok().host("smtp.contoso.example\r\nX: y").build()),
        ("invalid", "host")
    );
    assert_eq!(
        field_of(SmtpMailer::builder().host("smtp.contoso.example").build()),
        ("missing", "from")
    );
    assert_eq!(field_of(ok().from("not an address").build()), ("invalid", "from"));
    assert_eq!(
        field_of(ok().from_name("Contoso\r\nBcc: x@y.example").build()),
        ("invalid", "from_name")
    );
    assert_eq!(field_of(ok().port(0).build()), ("invalid", "port"));
    assert_eq!(
        field_of(ok().connect_timeout(Duration::ZERO).build()),
        ("invalid", "connect_timeout")
    );
    assert_eq!(
        field_of(ok().send_timeout(Duration::from_secs(601)).build()),
        ("invalid", "send_timeout")
    );
    assert_eq!(
        field_of(ok().credentials("", "pw").build()),
        ("invalid", "credentials")
    );
    assert_eq!(
        field_of(ok().credentials("user", "").build()),
        ("invalid", "credentials")
    );

    // The error message names the field and keeps to the crate's style.
    let e = ok().security(SmtpSecurity::Plain).build().unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with("configuration field `security` is invalid"),
        "{shown}"
    );
    assert!(!shown.ends_with('.'));
}
