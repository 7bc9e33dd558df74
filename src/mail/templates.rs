//! Localized mail templates.
//!
//! Messages are rendered in English (`en-US`), German (`de-DE`) or Dutch
//! (`nl-NL`). The language of an invitation is chosen as Entra chooses it:
//! the invitation's `messageLanguage`, else the tenant's default, else
//! `en-US`. A tag matches a supported language exactly (case-insensitively)
//! or by its primary subtag (`de-AT` gets German).
//!
//! HTML bodies are rendered with automatic escaping, so a display name or a
//! `customizedMessageBody` is always text, never markup. Plain-text bodies
//! carry the same content unescaped.

use std::sync::OnceLock;

use minijinja::{Environment, context};
use serde::Serialize;

use crate::error::MailError;

/// A supported message language.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Language {
    /// English (United States); the last fallback.
    #[default]
    EnUs,
    /// German (Germany).
    DeDe,
    /// Dutch (Netherlands).
    NlNl,
}

impl Language {
    /// Every supported language.
    pub const ALL: [Language; 3] = [Language::EnUs, Language::DeDe, Language::NlNl];

    /// The BCP 47 tag.
    pub fn tag(self) -> &'static str {
        match self {
            Language::EnUs => "en-US",
            Language::DeDe => "de-DE",
            Language::NlNl => "nl-NL",
        }
    }

    /// The supported language for `tag`, exactly or by primary subtag.
    ///
    /// ```
    /// use guestpass::mail::templates::Language;
    /// assert_eq!(Language::from_tag("DE-at"), Some(Language::DeDe));
    /// assert_eq!(Language::from_tag("fr-FR"), None);
    /// ```
    pub fn from_tag(tag: &str) -> Option<Language> {
        let tag = tag.trim();
        if let Some(l) = Self::ALL.iter().find(|l| l.tag().eq_ignore_ascii_case(tag)) {
            return Some(*l);
        }
        let primary = tag.split(['-', '_']).next().unwrap_or_default();
        Self::ALL
            .iter()
            .find(|l| {
                l.tag()
                    .split('-')
                    .next()
                    .is_some_and(|p| p.eq_ignore_ascii_case(primary))
            })
            .copied()
    }

    /// Entra's precedence: the requested language, then the tenant default,
    /// then `en-US`.
    pub fn resolve(requested: Option<&str>, tenant_default: Language) -> Language {
        requested.and_then(Language::from_tag).unwrap_or(tenant_default)
    }
}

/// Whether `tag` is shaped like a BCP 47 language tag (letters, digits and
/// hyphens, subtags of 1 to 8 characters, starting with 2 to 8 letters).
pub fn is_language_tag(tag: &str) -> bool {
    if tag.is_empty() || tag.len() > 35 {
        return false;
    }
    let mut parts = tag.split('-');
    let first_ok = parts
        .next()
        .is_some_and(|p| (2..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    first_ok && parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()))
}

#[derive(Serialize)]
struct InvitationStrings {
    subject: String,
    heading: &'static str,
    intro: String,
    note_label: String,
    accept: &'static str,
    link_hint: &'static str,
    ignore: &'static str,
    privacy: String,
    cc_notice: &'static str,
}

#[derive(Serialize)]
struct PasscodeStrings {
    subject: String,
    intro: String,
    expiry: String,
    ignore: &'static str,
}

fn invitation_strings(lang: Language, org: &str) -> InvitationStrings {
    let (subject, heading, intro, note, accept, hint, ignore, privacy, cc_notice) = match lang {
        Language::EnUs => (
            "{org} invited you to access its applications",
            "You're invited",
            "{org} has invited you to access its applications and resources. Sign in with the address this mail was sent to.",
            "A message from {org}:",
            "Accept invitation",
            "If the button does not work, copy this link into your browser:",
            "If you did not expect this invitation, you can ignore this mail.",
            "Privacy statement of {org}",
            "This is a copy of the invitation {org} sent to {invitee}. Only {invitee} can accept it.",
        ),
        Language::DeDe => (
            "{org} hat Sie eingeladen, auf ihre Anwendungen zuzugreifen",
            "Sie sind eingeladen",
            "{org} hat Sie eingeladen, auf ihre Anwendungen und Ressourcen zuzugreifen. Melden Sie sich mit der Adresse an, an die diese E-Mail gesendet wurde.",
            "Eine Nachricht von {org}:",
            "Einladung annehmen",
            "Falls die Schaltfläche nicht funktioniert, kopieren Sie diesen Link in Ihren Browser:",
            "Wenn Sie diese Einladung nicht erwartet haben, können Sie diese E-Mail ignorieren.",
            "Datenschutzerklärung von {org}",
            "Dies ist eine Kopie der Einladung, die {org} an {invitee} gesendet hat. Nur {invitee} kann sie annehmen.",
        ),
        Language::NlNl => (
            "{org} heeft je uitgenodigd voor toegang tot haar toepassingen",
            "Je bent uitgenodigd",
            "{org} heeft je uitgenodigd voor toegang tot haar toepassingen en resources. Meld je aan met het adres waarnaar deze e-mail is verzonden.",
            "Een bericht van {org}:",
            "Uitnodiging accepteren",
            "Werkt de knop niet? Kopieer dan deze link naar je browser:",
            "Had je deze uitnodiging niet verwacht? Dan kun je deze e-mail negeren.",
            "Privacyverklaring van {org}",
            "Dit is een kopie van de uitnodiging die {org} naar {invitee} heeft gestuurd. Alleen {invitee} kan deze accepteren.",
        ),
    };
    let fill = |s: &str| s.replace("{org}", org);
    InvitationStrings {
        subject: fill(subject),
        heading,
        intro: fill(intro),
        note_label: fill(note),
        accept,
        link_hint: hint,
        ignore,
        privacy: fill(privacy),
        cc_notice,
    }
}

fn passcode_strings(lang: Language, org: &str, minutes: i64) -> PasscodeStrings {
    let (subject, intro, expiry, ignore) = match lang {
        Language::EnUs => (
            "Your {org} verification code",
            "Use this code to confirm your email address for {org}:",
            "The code expires in {min} minutes and works once.",
            "If you did not ask for a code, you can ignore this mail.",
        ),
        Language::DeDe => (
            "Ihr Bestätigungscode für {org}",
            "Bestätigen Sie Ihre E-Mail-Adresse für {org} mit diesem Code:",
            "Der Code läuft in {min} Minuten ab und gilt einmal.",
            "Wenn Sie keinen Code angefordert haben, können Sie diese E-Mail ignorieren.",
        ),
        Language::NlNl => (
            "Je verificatiecode voor {org}",
            "Bevestig je e-mailadres voor {org} met deze code:",
            "De code verloopt over {min} minuten en werkt één keer.",
            "Heb je geen code aangevraagd? Dan kun je deze e-mail negeren.",
        ),
    };
    let fill = |s: &str| s.replace("{org}", org).replace("{min}", &minutes.to_string());
    PasscodeStrings {
        subject: fill(subject),
        intro: fill(intro),
        expiry: fill(expiry),
        ignore,
    }
}

fn env() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        // The templates are part of the crate and tested; a failure to add
        // one surfaces as a render error naming the template.
        let _ = env.add_template("invitation.txt", include_str!("templates/invitation.txt"));
        let _ = env.add_template("invitation.html", include_str!("templates/invitation.html"));
        let _ = env.add_template("passcode.txt", include_str!("templates/passcode.txt"));
        let _ = env.add_template("passcode.html", include_str!("templates/passcode.html"));
        env
    })
}

fn render(name: &'static str, ctx: minijinja::Value) -> Result<String, MailError> {
    env()
        .get_template(name)
        .and_then(|t| t.render(ctx))
        .map_err(|e| MailError::Template {
            template: name,
            message: e.to_string(),
        })
}

/// A rendered subject and bodies.
#[derive(Clone, PartialEq, Eq)]
pub struct Rendered {
    /// The subject (one line).
    pub subject: String,
    /// The plain-text body.
    pub text: String,
    /// The HTML body.
    pub html: String,
}

/// What an invitation mail says.
#[derive(Debug, Clone, Copy)]
pub struct InvitationContent<'a> {
    /// The inviting organisation's name.
    pub org_name: &'a str,
    /// The redemption link (carries the ticket: only the invitee gets it).
    pub redeem_url: &'a str,
    /// The inviter's personal note (plain text).
    pub note: Option<&'a str>,
    /// The organisation's privacy statement.
    pub privacy_url: Option<&'a str>,
}

/// Renders an invitation mail in `lang`.
///
/// # Errors
///
/// [`MailError::Template`] if a template fails.
///
/// ```
/// use guestpass::mail::templates::{InvitationContent, Language, render_invitation};
/// let r = render_invitation(Language::EnUs, &InvitationContent {
///     org_name: "Contoso",
///     redeem_url: "https://contoso.example/redeem?ticket=abc",
///     note: Some("<b>hi</b>"),
///     privacy_url: None,
/// })?;
/// assert!(r.html.contains("&lt;b&gt;hi") && !r.html.contains("<b>hi"));
/// assert!(r.text.contains("<b>hi</b>"));
/// # Ok::<(), guestpass::error::MailError>(())
/// ```
pub fn render_invitation(lang: Language, c: &InvitationContent<'_>) -> Result<Rendered, MailError> {
    render_invitation_mail(lang, c, Some(c.redeem_url), None)
}

/// Renders the copy of an invitation for a `ccRecipients` address: the same
/// organisation, note and privacy link, a line saying whom the invitation
/// was for, and no redemption link (the link carries the invitee's ticket).
///
/// # Errors
///
/// [`MailError::Template`] if a template fails.
pub fn render_invitation_notice(
    lang: Language,
    c: &InvitationContent<'_>,
    invitee: &str,
) -> Result<Rendered, MailError> {
    let notice = invitation_strings(lang, c.org_name)
        .cc_notice
        .replace("{org}", c.org_name)
        .replace("{invitee}", invitee);
    render_invitation_mail(lang, c, None, Some(&notice))
}

/// The invitation templates, with or without the link, with or without a
/// notice line. URLs are escaped once, minimally (`&"'<>`), so links stay
/// readable in mail clients; everything else goes through the template
/// escaper.
fn render_invitation_mail(
    lang: Language,
    c: &InvitationContent<'_>,
    link: Option<&str>,
    notice: Option<&str>,
) -> Result<Rendered, MailError> {
    let s = invitation_strings(lang, c.org_name);
    let ctx = context! {
        s => &s, lang => lang.tag(), subject => &s.subject, notice => notice,
        link => link, note => c.note, privacy => c.privacy_url,
    };
    let safe = |u: &str| minijinja::Value::from_safe_string(escape_attr(u));
    let html_ctx = context! {
        s => &s, lang => lang.tag(), subject => &s.subject, notice => notice,
        link => link.map(safe), note => c.note, privacy => c.privacy_url.map(safe),
    };
    Ok(Rendered {
        text: render("invitation.txt", ctx)?,
        html: render("invitation.html", html_ctx)?,
        subject: one_line(&s.subject),
    })
}

/// Renders a passcode mail in `lang`.
///
/// # Errors
///
/// [`MailError::Template`] if a template fails.
pub fn render_passcode(
    lang: Language,
    org_name: &str,
    code: &str,
    minutes: i64,
) -> Result<Rendered, MailError> {
    let s = passcode_strings(lang, org_name, minutes);
    let ctx = context! { s => &s, lang => lang.tag(), subject => &s.subject, code => code };
    Ok(Rendered {
        text: render("passcode.txt", ctx.clone())?,
        html: render("passcode.html", ctx)?,
        subject: one_line(&s.subject),
    })
}

/// Escapes the characters that matter inside a double-quoted attribute or
/// element text.
fn escape_attr(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
    out
}

/// Subjects are single lines whatever the organisation name holds.
fn one_line(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn content(note: Option<&'static str>) -> InvitationContent<'static> {
        InvitationContent {
            org_name: "Contoso",
            redeem_url: "https://contoso.example/redeem?ticket=T0K3N",
            note,
            privacy_url: Some("https://contoso.example/privacy"),
        }
    }

    #[test]
    fn every_language_renders_link_and_note() {
        let mut subjects = std::collections::HashSet::new();
        for lang in Language::ALL {
            let r = render_invitation(lang, &content(Some("Welcome aboard"))).unwrap();
            assert!(
                r.text.contains("https://contoso.example/redeem?ticket=T0K3N"),
                "{lang:?}"
            );
            assert!(
                r.html
                    .contains("href=\"https://contoso.example/redeem?ticket=T0K3N\""),
                "{lang:?}"
            );
            assert!(r.text.contains("Welcome aboard"));
            assert!(r.html.contains(&format!("lang=\"{}\"", lang.tag())));
            assert!(subjects.insert(r.subject.clone()), "subjects differ per language");
            let p = render_passcode(lang, "Contoso", "12345678", 10).unwrap();
            assert!(p.text.contains("12345678") && p.html.contains("12345678"));
            assert!(p.text.contains("10"));
        }
    }

    #[test]
    fn copies_for_cc_carry_no_link() {
        for lang in Language::ALL {
            let r =
                render_invitation_notice(lang, &content(Some("Hello")), "alice@fabrikam.example").unwrap();
            assert!(
                !r.text.contains("ticket") && !r.html.contains("ticket"),
                "{lang:?}"
            );
            assert!(r.text.contains("alice@fabrikam.example") && r.text.contains("Hello"));
        }
    }

    #[test]
    fn note_is_text_in_html() {
        let r = render_invitation(Language::DeDe, &content(Some("<script>alert(1)</script>\"'"))).unwrap();
        assert!(!r.html.contains("<script>"));
        assert!(r.html.contains("&lt;script&gt;"));
    }

    #[test]
    fn links_are_attribute_safe() {
        let r = render_invitation(
            Language::EnUs,
            &InvitationContent {
                redeem_url: "https://x.example/a?b=1&c=\"><script>",
                ..content(None)
            },
        )
        .unwrap();
        assert!(
            r.html
                .contains("href=\"https://x.example/a?b=1&amp;c=&quot;&gt;&lt;script&gt;\"")
        );
        assert!(!r.html.contains("<script>"));
    }

    #[test]
    fn subject_is_one_line() {
        let r = render_invitation(
            Language::EnUs,
            &InvitationContent {
                org_name: "Evil\r\nBcc: x@y.example",
                ..content(None)
            },
        )
        .unwrap();
        assert!(!r.subject.contains('\n') && !r.subject.contains('\r'));
    }

    #[test]
    fn language_precedence() {
        assert_eq!(Language::resolve(Some("nl-NL"), Language::DeDe), Language::NlNl);
        assert_eq!(Language::resolve(Some("fr-FR"), Language::DeDe), Language::DeDe);
        assert_eq!(Language::resolve(None, Language::EnUs), Language::EnUs);
        assert_eq!(Language::resolve(Some("nl-BE"), Language::EnUs), Language::NlNl);
        assert!(is_language_tag("en-US") && is_language_tag("zh-Hant-TW"));
        assert!(
            !is_language_tag("")
                && !is_language_tag("e")
                && !is_language_tag("en US")
                && !is_language_tag("en--US")
        );
    }
}
