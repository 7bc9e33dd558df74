//! Issuing invitations: the Graph JSON shape, links built from the configured
//! base URL only (invariant 5), request validation with typed errors naming
//! the field (invariant 11), collaboration policy (domains compared as
//! A-labels by whole labels, invariant 8), mail content and language, and a
//! builder that refuses incomplete configuration.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::*;
use guestpass::audit::{AuditKind, MemoryAudit};
use guestpass::clock::FixedClock;
use guestpass::directory::{
    InvitationStatus, InvitedUserMessageInfo, MemoryStore, ObjectRef, Recipient, RecipientAddress, UserType,
};
use guestpass::email::EmailError;
use guestpass::error::{ConfigError, Denied, InputError, MailError};
use guestpass::idp::PasscodePolicy;
use guestpass::invitation::{MAX_DISPLAY_NAME_CHARS, MAX_MESSAGE_BODY_CHARS};
use guestpass::keys::SigningKey;
use guestpass::mail::{MessageKind, Outbox};
use guestpass::policy::{AllowInvitesFrom, CollaborationSettings, DomainRestriction, InviterRole};
use guestpass::{Error, GuestPass, GuestPassBuilder, InvitationRequest, Inviter};
use serde_json::{Value, json};
use time::Duration;

const ALICE: &str = "alice@fabrikam.example";

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().expect("an object").keys().cloned().collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| (*s).to_owned()).collect()
}

fn with_info(email: &str, info: InvitedUserMessageInfo) -> InvitationRequest {
    let mut r = request(email);
    r.invited_user_message_info = Some(info);
    r
}

fn recipient(address: &str, name: Option<&str>) -> Recipient {
    Recipient {
        email_address: RecipientAddress {
            address: address.to_owned(),
            name: name.map(str::to_owned),
        },
    }
}

fn invalid_field(e: &Error) -> &'static str {
    match e {
        Error::Input(InputError::Invalid { field, .. }) => field,
        other => panic!("expected InputError::Invalid, got {other:?}"),
    }
}

/// A harness with one invitation already in the store, so "unchanged" checks
/// compare a non-empty directory.
async fn seeded() -> Harness {
    seeded_with(|b| b).await
}

/// As [`seeded`], with the builder adjusted by `f`.
async fn seeded_with(f: impl FnOnce(GuestPassBuilder) -> GuestPassBuilder) -> Harness {
    let h = Harness::with(f);
    h.invite("existing@fabrikam.example").await;
    h
}

#[tokio::test]
async fn the_invitation_serializes_as_graph_shows_it() {
    let h = Harness::new();
    let sponsor = guestpass::id::Id::random(&guestpass::random::SeededRandom::new(3)).unwrap();
    let mut req = with_info(
        ALICE,
        InvitedUserMessageInfo {
            cc_recipients: vec![recipient("boss@fabrikam.example", Some("The Boss"))],
            customized_message_body: Some("Welcome".into()),
            message_language: Some("de-DE".into()),
        },
    );
    req.invited_user_display_name = Some("Alice Smith".into());
    let inv = h.invite_as(&Inviter::admin(Some(sponsor)), req).await.unwrap();
    let v = serde_json::to_value(&inv).unwrap();
    assert_eq!(
        keys(&v),
        set(&[
            "id",
            "invitedUserDisplayName",
            "invitedUserEmailAddress",
            "invitedUserMessageInfo",
            "sendInvitationMessage",
            "inviteRedirectUrl",
            "inviteRedeemUrl",
            "invitedUserType",
            "status",
            "resetRedemption",
            "invitedUser",
            "invitedUserSponsors",
        ])
    );
    assert_eq!(
        keys(&v["invitedUserMessageInfo"]),
        set(&["ccRecipients", "customizedMessageBody", "messageLanguage"])
    );
    assert_eq!(keys(&v["invitedUser"]), set(&["id"]));
    assert_eq!(v["id"], json!(inv.id.to_string()));
    assert_eq!(v["invitedUserDisplayName"], json!("Alice Smith"));
    assert_eq!(v["invitedUserEmailAddress"], json!(ALICE));
    assert_eq!(v["sendInvitationMessage"], json!(true));
    assert_eq!(v["inviteRedirectUrl"], json!(REDIRECT));
    let redeem = v["inviteRedeemUrl"].as_str().unwrap();
    assert!(
        redeem.starts_with(&format!("{BASE_URL}redeem?ticket=")),
        "{redeem}"
    );
    assert_eq!(v["invitedUserType"], json!("Guest"));
    assert_eq!(v["status"], json!("PendingAcceptance"));
    assert_eq!(v["resetRedemption"], json!(false));
    assert_eq!(v["invitedUser"]["id"], json!(inv.invited_user.id.to_string()));
    assert_eq!(v["invitedUserSponsors"], json!([{ "id": sponsor.to_string() }]));
    assert_eq!(
        v["invitedUserMessageInfo"],
        json!({
            "ccRecipients": [{"emailAddress": {"address": "boss@fabrikam.example", "name": "The Boss"}}],
            "customizedMessageBody": "Welcome",
            "messageLanguage": "de-DE",
        })
    );
    // Ids are lowercase hyphenated GUIDs.
    let id = v["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert_eq!(id, id.to_lowercase());
    // And it reads back.
    let back: guestpass::directory::Invitation = serde_json::from_value(v).unwrap();
    assert_eq!(back, inv);
}

#[tokio::test]
async fn the_user_serializes_as_graph_shows_it() {
    let h = Harness::new();
    let (inv, ticket) = h.invite_with_ticket("Alice@Fabrikam.Example").await;
    let pending = serde_json::to_value(h.gp.user(inv.invited_user.id).await.unwrap()).unwrap();
    for k in [
        "id",
        "userType",
        "externalUserState",
        "externalUserStateChangeDateTime",
        "creationType",
        "identities",
        "mail",
        "otherMails",
        "displayName",
        "userPrincipalName",
        "accountEnabled",
        "sponsors",
        "createdDateTime",
    ] {
        assert!(pending.get(k).is_some(), "user JSON has `{k}`: {pending}");
    }
    assert!(
        keys(&pending).iter().all(|k| !k.contains('_')),
        "camelCase keys only: {pending}"
    );
    assert_eq!(pending["userType"], json!("Guest"));
    assert_eq!(pending["externalUserState"], json!("PendingAcceptance"));
    assert_eq!(
        pending["externalUserStateChangeDateTime"],
        json!("2026-11-01T12:00:00Z")
    );
    assert_eq!(pending["createdDateTime"], json!("2026-11-01T12:00:00Z"));
    assert_eq!(pending["creationType"], json!("Invitation"));
    assert_eq!(pending["identities"], json!([]));
    assert_eq!(pending["mail"], json!("Alice@Fabrikam.Example"));
    assert_eq!(
        pending["userPrincipalName"],
        json!("alice_fabrikam.example#EXT#@contoso.example")
    );
    assert_eq!(pending["accountEnabled"], json!(true));

    h.clock.advance(Duration::minutes(3));
    let done = h.redeem(&ticket, ALICE).await;
    let v = serde_json::to_value(&done.user).unwrap();
    assert_eq!(v["externalUserState"], json!("Accepted"));
    assert_eq!(
        v["externalUserStateChangeDateTime"],
        json!("2026-11-01T12:03:00Z")
    );
    assert_eq!(
        v["identities"],
        json!([{
            "signInType": "federated",
            "issuer": "mail",
            "issuerAssignedId": "alice@fabrikam.example",
        }])
    );
    assert_eq!(
        v["userPrincipalName"],
        json!("alice_fabrikam.example#EXT#@contoso.example")
    );
    let back: guestpass::directory::User = serde_json::from_value(v).unwrap();
    assert_eq!(back, done.user);
}

#[tokio::test]
async fn a_graph_request_body_is_accepted_and_unknown_fields_are_not() {
    let h = Harness::new();
    let req: InvitationRequest = serde_json::from_value(json!({
        "invitedUserEmailAddress": ALICE,
        "invitedUserDisplayName": "Alice",
        "inviteRedirectUrl": REDIRECT,
        "sendInvitationMessage": true,
        "invitedUserType": "Member",
        "invitedUserMessageInfo": {"messageLanguage": "nl-NL"},
    }))
    .unwrap();
    let inv = h.invite_request(req).await.unwrap();
    assert_eq!(inv.invited_user_type, UserType::Member);
    assert_eq!(h.last_mail(MessageKind::Invitation, ALICE).language, "nl-NL");
    let unknown = serde_json::from_value::<InvitationRequest>(json!({
        "invitedUserEmailAddress": ALICE,
        "inviteRedirectUrl": REDIRECT,
        "inviteRedeemUrl": "https://evil.example/",
    }));
    assert!(unknown.is_err(), "read-only and unknown fields are refused");
}

#[tokio::test]
async fn an_invitation_without_mail_sends_none_and_still_has_a_link() {
    let h = Harness::new();
    let mut req = request(ALICE);
    req.send_invitation_message = false;
    let inv = h.invite_request(req).await.unwrap();
    assert!(h.outbox.messages().is_empty());
    let url = inv.invite_redeem_url.unwrap();
    let ticket = ticket_from_link(url.expose());
    assert!(h.gp.view_redemption(&ticket).await.is_ok());
}

#[tokio::test]
async fn redeem_links_come_from_the_configured_base_url_only() {
    for (base, want_prefix) in [
        (
            "https://guests.contoso.example/b2b/",
            "https://guests.contoso.example/b2b/redeem?ticket=",
        ),
        (
            "https://guests.contoso.example/b2b",
            "https://guests.contoso.example/b2b/redeem?ticket=",
        ),
        (
            "https://guests.contoso.example/tenants/contoso/",
            "https://guests.contoso.example/tenants/contoso/redeem?ticket=",
        ),
        (
            "https://guests.contoso.example:8443/",
            "https://guests.contoso.example:8443/redeem?ticket=",
        ),
        ("http://127.0.0.1:8080/", "http://127.0.0.1:8080/redeem?ticket="),
        ("http://localhost:3000/", "http://localhost:3000/redeem?ticket="),
    ] {
        let h = Harness::with(|b| b.public_base_url(base));
        let inv = h.invite(ALICE).await;
        let url = inv.invite_redeem_url.as_ref().unwrap().expose().to_owned();
        assert!(url.starts_with(want_prefix), "{base}: {url}");
        let mail = h.last_mail(MessageKind::Invitation, ALICE);
        assert_eq!(mail.link_starting_with(want_prefix), Some(url.as_str()), "{base}");
        assert!(mail.html_body.contains(&url), "{base}: html link");
        // The link's ticket redeems.
        let ticket = ticket_from_link(&url);
        let done = h.redeem(&ticket, ALICE).await;
        assert_eq!(done.redirect_url.as_str(), REDIRECT);
    }
}

#[tokio::test]
async fn invalid_addresses_give_an_email_error_naming_the_problem() {
    let h = seeded().await;
    let long_local = format!("{}@fabrikam.example", "a".repeat(65));
    let too_long = "a".repeat(400);
    let cases: Vec<(&str, EmailError)> = vec![
        ("alice.fabrikam.example", EmailError::MissingAt),
        ("a@b@fabrikam.example", EmailError::MultipleAt),
        ("@fabrikam.example", EmailError::EmptyLocalPart),
        ("alice@", EmailError::EmptyDomain),
        (
            ".alice@fabrikam.example",
            EmailError::BadLocalPartEdge { character: '.' },
        ),
        (
            "alice-@fabrikam.example",
            EmailError::BadLocalPartEdge { character: '-' },
        ),
        ("al..ice@fabrikam.example", EmailError::ConsecutiveDots),
        (
            "al(ice@fabrikam.example",
            EmailError::ForbiddenCharacter {
                character: "(".into(),
            },
        ),
        (
            "al ice@fabrikam.example",
            EmailError::ForbiddenCharacter {
                character: " ".into(),
            },
        ),
        (long_local.as_str(), EmailError::LocalPartTooLong),
        (too_long.as_str(), EmailError::TooLong { max: 320 }),
    ];
    for (input, want) in cases {
        let e = h.fails_unchanged(input, h.invite_untracked(request(input))).await;
        assert_eq!(e, Error::Email(want.clone()), "{input}");
        assert_eq!(e.to_string(), format!("invalid email address: {want}"));
        assert_eq!(e.status().as_u16(), 400);
    }
    for input in [
        "alice@localhost",
        "alice@[127.0.0.1]",
        "alice@1.2.3.4",
        "alice@exa_mple.com",
        "alice@-fabrikam.example",
        "alice@fabrikam..example",
    ] {
        let e = h.fails_unchanged(input, h.invite_untracked(request(input))).await;
        assert!(
            matches!(e, Error::Email(EmailError::InvalidDomain { .. })),
            "{input}: {e:?}"
        );
        assert!(e.to_string().contains("domain"), "{e}");
    }
    for input in ["", "   "] {
        h.fails_unchanged_with(
            input,
            h.invite_untracked(request(input)),
            Error::Input(InputError::Missing {
                field: "invitedUserEmailAddress",
            }),
        )
        .await;
    }
}

fn deny(rules: &[&str]) -> CollaborationSettings {
    CollaborationSettings {
        domains: DomainRestriction::deny(rules).unwrap(),
        ..CollaborationSettings::default()
    }
}

fn allow_invites_from(who: AllowInvitesFrom) -> CollaborationSettings {
    CollaborationSettings {
        allow_invites_from: who,
        ..CollaborationSettings::default()
    }
}

#[tokio::test]
async fn denied_domains_are_refused_by_whole_labels() {
    let h = seeded_with(|b| b.collaboration(deny(&["example.com", "*.corp.example"]))).await;
    for (email, domain) in [
        ("bob@example.com", "example.com"),
        ("bob@EXAMPLE.COM", "example.com"),
        ("bob@eu.corp.example", "eu.corp.example"),
    ] {
        let e = h.fails_unchanged(email, h.invite_untracked(request(email))).await;
        assert_eq!(
            e,
            Error::Denied(Denied::DomainNotAllowed {
                domain: domain.into()
            }),
            "{email}"
        );
        assert_eq!(e.status().as_u16(), 403);
    }
    // Lookalikes are other domains.
    for email in [
        "bob@evil-example.com",
        "bob@example.com.evil.io",
        "bob@sub.example.com",
        "bob@corp.example",
        "bob@xcorp.example",
    ] {
        h.invite(email).await;
    }
}

#[tokio::test]
async fn idn_domains_compare_as_a_labels() {
    // Rule in U-label form, addresses in either form and any case.
    let h = Harness::with(|b| b.collaboration(deny(&["Bücher.example"])));
    for email in [
        "x@bücher.example",
        "x@BÜCHER.example",
        "x@xn--bcher-kva.example",
        "x@XN--BCHER-KVA.EXAMPLE",
    ] {
        let e = h.fails_unchanged(email, h.invite_untracked(request(email))).await;
        assert_eq!(
            e,
            Error::Denied(Denied::DomainNotAllowed {
                domain: "xn--bcher-kva.example".into()
            }),
            "{email}"
        );
    }
    h.invite("x@buecher.example").await;
    h.invite("x@bucher.example").await;
    // Rule in A-label form.
    let h = Harness::with(|b| b.collaboration(deny(&["xn--bcher-kva.example"])));
    let e = h
        .fails_unchanged(
            "u-label address",
            h.invite_untracked(request("juergen@Bücher.example")),
        )
        .await;
    assert!(matches!(e, Error::Denied(Denied::DomainNotAllowed { .. })));
    // An allow list admits only its own domains.
    let h = Harness::with(|b| {
        b.collaboration(CollaborationSettings {
            domains: DomainRestriction::allow_only(["bücher.example"]).unwrap(),
            ..CollaborationSettings::default()
        })
    });
    h.invite("x@XN--BCHER-KVA.example").await;
    h.fails_unchanged_with(
        "not on the allow list",
        h.invite_untracked(request("x@fabrikam.example")),
        Error::Denied(Denied::DomainNotAllowed {
            domain: "fabrikam.example".into(),
        }),
    )
    .await;
}

#[tokio::test]
async fn inviters_outside_allow_invites_from_are_refused() {
    let who = |role| Inviter { id: None, role };
    let h =
        seeded_with(|b| b.collaboration(allow_invites_from(AllowInvitesFrom::AdminsAndGuestInviters))).await;
    for role in [InviterRole::Member, InviterRole::Guest] {
        let e = h
            .fails_unchanged("member", h.gp.invite(&who(role), request(ALICE)))
            .await;
        assert_eq!(e, Error::Denied(Denied::InviterNotAllowed), "{role:?}");
    }
    h.invite_as(&who(InviterRole::GuestInviter), request(ALICE))
        .await
        .unwrap();

    let h = Harness::with(|b| b.collaboration(allow_invites_from(AllowInvitesFrom::None)));
    h.fails_unchanged_with(
        "admin under none",
        h.invite_untracked(request(ALICE)),
        Error::Denied(Denied::InviterNotAllowed),
    )
    .await;

    // Default settings: members may, guests may not.
    let h = Harness::new();
    h.invite_as(&who(InviterRole::Member), request(ALICE))
        .await
        .unwrap();
    h.fails_unchanged_with(
        "guest by default",
        h.gp.invite(&who(InviterRole::Guest), request("bob@fabrikam.example")),
        Error::Denied(Denied::InviterNotAllowed),
    )
    .await;
}

#[tokio::test]
async fn redirect_urls_must_be_registered_exactly() {
    let h = seeded().await;
    for url in [
        "https://app.contoso.example/other",
        "https://app.contoso.example",
        "https://APP.contoso.example/",
        "https://app.contoso.example/?x=1",
        "https://app.contoso.example.evil.io/",
        "http://app.contoso.example/",
    ] {
        let e = h
            .fails_unchanged(url, h.invite_untracked(InvitationRequest::new(ALICE, url)))
            .await;
        assert_eq!(
            e,
            Error::Input(InputError::RedirectNotRegistered { url: url.into() }),
            "{url}"
        );
    }
    h.fails_unchanged_with(
        "empty redirect",
        h.invite_untracked(InvitationRequest::new(ALICE, "")),
        Error::Input(InputError::Missing {
            field: "inviteRedirectUrl",
        }),
    )
    .await;
    let e = h
        .fails_unchanged(
            "not a url",
            h.invite_untracked(InvitationRequest::new(ALICE, "not a url")),
        )
        .await;
    assert_eq!(invalid_field(&e), "inviteRedirectUrl");
}

#[tokio::test]
async fn bad_fields_give_an_input_error_naming_the_field() {
    let h = seeded().await;
    let display = |name: String| named_request(ALICE, &name);
    let body = |text: String| {
        with_info(
            ALICE,
            InvitedUserMessageInfo {
                customized_message_body: Some(text),
                ..InvitedUserMessageInfo::default()
            },
        )
    };
    let language = |tag: &str| {
        with_info(
            ALICE,
            InvitedUserMessageInfo {
                message_language: Some(tag.into()),
                ..InvitedUserMessageInfo::default()
            },
        )
    };
    let cc = |list: Vec<Recipient>| {
        with_info(
            ALICE,
            InvitedUserMessageInfo {
                cc_recipients: list,
                ..InvitedUserMessageInfo::default()
            },
        )
    };
    let mut too_many_sponsors = request(ALICE);
    too_many_sponsors.invited_user_sponsors = (0..6)
        .map(|i| ObjectRef {
            id: guestpass::id::Id::from_bytes([i; 16]),
        })
        .collect();
    let cases: Vec<(&str, InvitationRequest, &str)> = vec![
        (
            "two cc recipients",
            cc(vec![
                recipient("a@fabrikam.example", None),
                recipient("b@fabrikam.example", None),
            ]),
            "invitedUserMessageInfo.ccRecipients",
        ),
        (
            "bad cc address",
            cc(vec![recipient("not-an-address", None)]),
            "invitedUserMessageInfo.ccRecipients",
        ),
        (
            "cc name with a line break",
            cc(vec![recipient(
                "a@fabrikam.example",
                Some("A\r\nBcc: x@y.example"),
            )]),
            "invitedUserMessageInfo.ccRecipients",
        ),
        (
            "overlong display name",
            display("x".repeat(MAX_DISPLAY_NAME_CHARS + 1)),
            "invitedUserDisplayName",
        ),
        (
            "display name with a bell",
            display("Alice\u{7}".into()),
            "invitedUserDisplayName",
        ),
        (
            "display name with a newline",
            display("Alice\nSmith".into()),
            "invitedUserDisplayName",
        ),
        (
            "display name with NUL",
            display("Al\0ice".into()),
            "invitedUserDisplayName",
        ),
        (
            "overlong body",
            body("x".repeat(MAX_MESSAGE_BODY_CHARS + 1)),
            "invitedUserMessageInfo.customizedMessageBody",
        ),
        (
            "body with escape",
            body("hello \u{1b}[31mred".into()),
            "invitedUserMessageInfo.customizedMessageBody",
        ),
        (
            "body with NUL",
            body("a\0b".into()),
            "invitedUserMessageInfo.customizedMessageBody",
        ),
        (
            "language with a space",
            language("en US"),
            "invitedUserMessageInfo.messageLanguage",
        ),
        (
            "one-letter language",
            language("e"),
            "invitedUserMessageInfo.messageLanguage",
        ),
        (
            "empty language",
            language(""),
            "invitedUserMessageInfo.messageLanguage",
        ),
        (
            "language with double hyphen",
            language("en--US"),
            "invitedUserMessageInfo.messageLanguage",
        ),
        (
            "language injection",
            language("en-US\"><script>"),
            "invitedUserMessageInfo.messageLanguage",
        ),
        ("six sponsors", too_many_sponsors, "invitedUserSponsors"),
    ];
    for (what, req, field) in cases {
        let e = h.fails_unchanged(what, h.invite_untracked(req)).await;
        assert_eq!(invalid_field(&e), field, "{what}");
        assert!(e.to_string().contains(&format!("`{field}`")), "{what}: {e}");
        assert_eq!(e.status().as_u16(), 400, "{what}");
    }
    // The limits themselves are fine, and multi-line bodies are plain text.
    h.invite_request(display("x".repeat(MAX_DISPLAY_NAME_CHARS)))
        .await
        .unwrap();
    h.invite_request(body(format!(
        "line one\r\nline two\n\t{}",
        "y".repeat(MAX_MESSAGE_BODY_CHARS - 20)
    )))
    .await
    .unwrap();
}

#[tokio::test]
async fn the_message_body_is_escaped_in_html_and_verbatim_in_text() {
    let h = Harness::new();
    let note = "<b>Welcome</b> & <script>alert(\"x\")</script>";
    h.invite_request(with_info(
        ALICE,
        InvitedUserMessageInfo {
            customized_message_body: Some(note.into()),
            ..InvitedUserMessageInfo::default()
        },
    ))
    .await
    .unwrap();
    let mail = h.last_mail(MessageKind::Invitation, ALICE);
    assert!(mail.text_body.contains(note), "{}", mail.text_body);
    assert!(!mail.html_body.contains("<b>"));
    assert!(!mail.html_body.contains("<script>"));
    assert!(
        mail.html_body.contains("&lt;b&gt;Welcome&lt;"),
        "{}",
        mail.html_body
    );
    assert!(mail.html_body.contains("&amp;"));
    assert!(mail.html_body.contains("&lt;script&gt;alert(&quot;x&quot;)"));
    // The display name is text in HTML too.
    h.invite_request(named_request(
        "bob@fabrikam.example",
        "<img src=x onerror=alert(1)>",
    ))
    .await
    .unwrap();
    let mail = h.last_mail(MessageKind::Invitation, "bob@fabrikam.example");
    assert!(!mail.html_body.contains("<img"));
}

async fn mail_language(h: &Harness, email: &str, language: Option<&str>) -> &'static str {
    h.invite_request(with_info(
        email,
        InvitedUserMessageInfo {
            message_language: language.map(str::to_owned),
            ..InvitedUserMessageInfo::default()
        },
    ))
    .await
    .unwrap();
    h.last_mail(MessageKind::Invitation, email).language
}

#[tokio::test]
async fn the_mail_language_follows_entras_precedence() {
    let h = Harness::with(|b| b.default_language("de-DE"));
    assert_eq!(
        mail_language(&h, "a@fabrikam.example", Some("nl-NL")).await,
        "nl-NL"
    );
    let dutch = h.last_mail(MessageKind::Invitation, "a@fabrikam.example");
    assert!(dutch.subject.contains("uitgenodigd"), "{}", dutch.subject);
    assert!(dutch.html_body.contains("lang=\"nl-NL\""));
    assert_eq!(
        mail_language(&h, "b@fabrikam.example", Some("fr-FR")).await,
        "de-DE"
    );
    let german = h.last_mail(MessageKind::Invitation, "b@fabrikam.example");
    assert!(german.subject.contains("eingeladen"), "{}", german.subject);
    assert_eq!(mail_language(&h, "c@fabrikam.example", None).await, "de-DE");
    assert_eq!(
        mail_language(&h, "d@fabrikam.example", Some("NL-be")).await,
        "nl-NL"
    );

    let h = Harness::new();
    assert_eq!(mail_language(&h, "a@fabrikam.example", None).await, "en-US");
    assert_eq!(
        mail_language(&h, "b@fabrikam.example", Some("fr-FR")).await,
        "en-US"
    );
    let english = h.last_mail(MessageKind::Invitation, "b@fabrikam.example");
    assert!(english.subject.contains("invited you"), "{}", english.subject);
    assert_eq!(
        mail_language(&h, "c@fabrikam.example", Some("de-AT")).await,
        "de-DE"
    );
}

#[tokio::test]
async fn one_cc_recipient_gets_a_copy_without_the_link() {
    let h = Harness::with(|b| b.default_language("de-DE"));
    h.invite_request(with_info(
        ALICE,
        InvitedUserMessageInfo {
            cc_recipients: vec![recipient("Boss@Fabrikam.Example", Some("The Boss"))],
            customized_message_body: Some("Hello Alice".into()),
            message_language: Some("nl-NL".into()),
        },
    ))
    .await
    .unwrap();
    let messages = h.outbox.messages();
    assert_eq!(messages.len(), 2, "the invitation and one copy");
    let invitation = h.last_mail(MessageKind::Invitation, ALICE);
    let ticket = h.ticket_for(ALICE);
    let copy = messages
        .iter()
        .find(|m| m.kind == MessageKind::InvitationCopy)
        .expect("a copy for the cc recipient");
    assert_eq!(copy.to.address.as_str(), "Boss@Fabrikam.Example");
    assert_eq!(copy.to.name.as_deref(), Some("The Boss"));
    assert_eq!(
        copy.language, "nl-NL",
        "the copy speaks the invitation's language"
    );
    assert_eq!(invitation.language, "nl-NL");
    // The copy names the invitee and carries the note, never the link.
    assert!(copy.text_body.contains(ALICE), "{}", copy.text_body);
    assert!(copy.text_body.contains("Hello Alice"));
    for body in [&copy.text_body, &copy.html_body] {
        assert!(!body.contains(&ticket), "the copy carries the ticket");
        assert!(!body.contains("redeem?ticket="), "the copy carries the link");
    }
    // Nobody but the guest gets the passcode, in the invitation's language.
    h.start(&ticket).await;
    let passcode_mails = h.mails_of(MessageKind::Passcode);
    assert_eq!(passcode_mails.len(), 1);
    assert_eq!(passcode_mails[0].to.address.as_str(), ALICE);
    assert_eq!(passcode_mails[0].language, "nl-NL");
}

#[tokio::test]
async fn a_cc_recipient_in_a_denied_domain_is_refused() {
    let h = seeded_with(|b| b.collaboration(deny(&["example.com"]))).await;
    h.fails_unchanged_with(
        "cc to a denied domain",
        h.invite_untracked(with_info(
            ALICE,
            InvitedUserMessageInfo {
                cc_recipients: vec![recipient("spy@Example.COM", None)],
                ..InvitedUserMessageInfo::default()
            },
        )),
        Error::Denied(Denied::DomainNotAllowed {
            domain: "example.com".into(),
        }),
    )
    .await;
}

#[tokio::test]
async fn a_mail_failure_leaves_the_store_unchanged() {
    let h = seeded().await;
    h.outbox.fail_next(1);
    let e = h
        .fails_unchanged("new guest", h.invite_untracked(request(ALICE)))
        .await;
    assert!(matches!(e, Error::Mail(MailError::Transport { .. })), "{e:?}");
    assert_eq!(e.status().as_u16(), 502);
    assert!(h.user_mails().await.iter().all(|m| m != ALICE));
    // The call can simply be repeated.
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    assert!(h.audit_kinds().contains(&AuditKind::Invited {
        invitation_id: inv.id,
        inviter: None
    }));

    // A failed resend keeps the earlier ticket working.
    h.outbox.fail_next(1);
    let e = h
        .fails_unchanged("resend", h.gp.resend(&Inviter::admin(None), inv.invited_user.id))
        .await;
    assert!(matches!(e, Error::Mail(_)));
    h.outbox.fail_next(1);
    let e = h
        .fails_unchanged("re-invite", h.invite_untracked(request(ALICE)))
        .await;
    assert!(matches!(e, Error::Mail(_)));
    h.redeem(&ticket, ALICE).await;
}

/// Resetting one guest's redemption onto an address another guest holds
/// cannot succeed, and must not mail that other guest.
#[tokio::test]
async fn a_reset_onto_another_guests_address_is_refused_without_mail() {
    let h = Harness::new();
    let alice = h.invite("alice@fabrikam.example").await;
    h.invite("bob@fabrikam.example").await;
    h.fails_unchanged_with(
        "reset onto bob",
        h.invite_untracked(reset_request("bob@fabrikam.example", alice.invited_user.id)),
        Error::Store(guestpass::error::StoreError::Duplicate {
            constraint: "user mail",
            key: "bob@fabrikam.example".into(),
        }),
    )
    .await;
}

#[tokio::test]
async fn resetting_an_unknown_user_is_not_found_whatever_the_address() {
    let h = Harness::new();
    h.invite("bob@fabrikam.example").await;
    let ghost = "0f8fad5b-d9cb-469f-a165-70867728950e".parse().unwrap();
    h.fails_unchanged_with(
        "reset of an unknown user",
        h.invite_untracked(reset_request("bob@fabrikam.example", ghost)),
        Error::NotFound { what: "user" },
    )
    .await;
}

#[tokio::test]
async fn reinviting_a_redeemed_guest_links_to_the_app() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let done = h.redeem(&ticket, ALICE).await;
    let again = h.invite(ALICE).await;
    assert_eq!(again.invited_user.id, done.user.id);
    assert_eq!(again.status, InvitationStatus::Completed);
    assert_eq!(again.invite_redeem_url.unwrap().expose(), REDIRECT);
    let user = h.gp.user(done.user.id).await.unwrap();
    assert_eq!(user, done.user, "the redeemed guest is untouched");
}

// ---------------------------------------------------------------------------
// The builder.

struct Parts {
    store: Arc<MemoryStore>,
    outbox: Arc<Outbox>,
}

fn parts() -> Parts {
    Parts {
        store: Arc::new(MemoryStore::new()),
        outbox: Arc::new(Outbox::new()),
    }
}

/// A complete builder, minus the pieces `skip` names.
fn builder(p: &Parts, skip: &[&str]) -> GuestPassBuilder {
    let mut b = GuestPass::builder()
        .clock(Arc::new(FixedClock::new(T0)))
        .audit(Arc::new(MemoryAudit::new()));
    if !skip.contains(&"tenant") {
        b = b.tenant(TENANT, TENANT_NAME, TENANT_DOMAIN);
    }
    if !skip.contains(&"base") {
        b = b.public_base_url(BASE_URL);
    }
    if !skip.contains(&"key") {
        b = b.signing_key(signing_key());
    }
    if !skip.contains(&"redirect") {
        b = b.redirect_url(REDIRECT);
    }
    if !skip.contains(&"store") {
        b = b.store(p.store.clone());
    }
    if !skip.contains(&"mail") {
        b = b.mail(p.outbox.clone());
    }
    b
}

fn config_error(b: GuestPassBuilder) -> ConfigError {
    b.build().expect_err("the builder must refuse this")
}

fn field_of(e: &ConfigError) -> &'static str {
    match e {
        ConfigError::Missing { field } | ConfigError::Invalid { field, .. } => field,
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn the_builder_accepts_a_complete_configuration() {
    let p = parts();
    let gp = builder(&p, &[]).build().unwrap();
    assert_eq!(gp.config().tenant_id(), TENANT);
    assert_eq!(gp.config().public_base_url().as_str(), BASE_URL);
    assert_eq!(gp.config().redirect_urls(), [REDIRECT.to_owned()]);
    assert_eq!(gp.config().passcode_policy(), &PasscodePolicy::default());
}

#[test]
fn the_builder_names_each_missing_piece() {
    let p = parts();
    for (skip, field) in [
        ("tenant", "tenant_id"),
        ("base", "public_base_url"),
        ("key", "signing_key"),
        ("redirect", "redirect_urls"),
        ("store", "store"),
        ("mail", "mail"),
    ] {
        let e = config_error(builder(&p, &[skip]));
        assert_eq!(e, ConfigError::Missing { field }, "without {skip}");
        assert!(e.to_string().contains(&format!("`{field}`")), "{e}");
    }
    assert!(matches!(
        config_error(GuestPass::builder()),
        ConfigError::Missing { field: "tenant_id" }
    ));
}

#[test]
fn the_builder_refuses_inconsistent_values_naming_the_field() {
    let p = parts();
    let b = || builder(&p, &[]);
    let base = |url: &str| builder(&p, &["base"]).public_base_url(url);
    let cases: Vec<(&str, GuestPassBuilder, &str)> = vec![
        (
            "http base on a public host",
            base("http://guests.contoso.example/"),
            "public_base_url",
        ),
        (
            "http base on a localhost lookalike",
            base("http://localhost.evil.example/"),
            "public_base_url",
        ),
        (
            "base with a query",
            base("https://guests.contoso.example/?a=b"),
            "public_base_url",
        ),
        (
            "base with a fragment",
            base("https://guests.contoso.example/#x"),
            "public_base_url",
        ),
        (
            "base with credentials",
            base("https://user:pw@guests.contoso.example/"),
            "public_base_url",
        ),
        ("relative base", base("/guests/"), "public_base_url"),
        (
            "ftp base",
            base("ftp://guests.contoso.example/"),
            "public_base_url",
        ),
        ("duplicate redirect", b().redirect_url(REDIRECT), "redirect_urls"),
        (
            "http redirect",
            b().redirect_url("http://app.contoso.example/"),
            "redirect_urls",
        ),
        ("relative redirect", b().redirect_url("/app"), "redirect_urls"),
        (
            "unknown default language",
            b().default_language("fr-FR"),
            "default_language",
        ),
        (
            "malformed default language",
            b().default_language("not a tag"),
            "default_language",
        ),
        (
            "short ticket lifetime",
            b().ticket_lifetime(Duration::minutes(30)),
            "ticket_lifetime",
        ),
        (
            "long ticket lifetime",
            b().ticket_lifetime(Duration::days(91)),
            "ticket_lifetime",
        ),
        (
            "negative ticket lifetime",
            b().ticket_lifetime(Duration::days(-1)),
            "ticket_lifetime",
        ),
        (
            "short session lifetime",
            b().session_lifetime(Duration::minutes(1)),
            "session_lifetime",
        ),
        (
            "long session lifetime",
            b().session_lifetime(Duration::days(2)),
            "session_lifetime",
        ),
        (
            "bad tenant id",
            builder(&p, &["tenant"]).tenant("con toso", TENANT_NAME, TENANT_DOMAIN),
            "tenant_id",
        ),
        (
            "empty tenant name",
            builder(&p, &["tenant"]).tenant(TENANT, "  ", TENANT_DOMAIN),
            "tenant_name",
        ),
        (
            "bad tenant domain",
            builder(&p, &["tenant"]).tenant(TENANT, TENANT_NAME, "not a domain"),
            "tenant_domain",
        ),
        (
            "privacy statement over http",
            b().privacy_statement_url("http://contoso.example/privacy"),
            "privacy_statement_url",
        ),
        ("duplicate key id", b().verification_key(signing_key()), "keys"),
        (
            "four-digit passcodes",
            b().passcode_policy(PasscodePolicy {
                digits: 4,
                ..PasscodePolicy::default()
            }),
            "passcode.digits",
        ),
        (
            "unlimited attempts",
            b().passcode_policy(PasscodePolicy {
                max_attempts_per_code: 50,
                ..PasscodePolicy::default()
            }),
            "passcode.max_attempts_per_code",
        ),
    ];
    for (what, builder, field) in cases {
        let e = config_error(builder);
        assert!(matches!(e, ConfigError::Invalid { .. }), "{what}: {e:?}");
        assert_eq!(field_of(&e), field, "{what}: {e}");
        assert!(e.to_string().contains(&format!("`{field}`")), "{what}: {e}");
    }
    // Loopback hosts may use http; the lifetime bounds are inclusive.
    for ok in [
        base("http://127.0.0.1:8080/"),
        base("http://localhost/"),
        base("http://[::1]:9000/"),
        b().ticket_lifetime(Duration::hours(1)),
        b().ticket_lifetime(Duration::days(90)),
        b().session_lifetime(Duration::minutes(5)),
        b().session_lifetime(Duration::days(1)),
        b().default_language("nl-NL"),
        b().redirect_url("https://other.contoso.example/cb"),
        b().verification_key(SigningKey::new("old", [1u8; 32]).unwrap()),
    ] {
        ok.build().unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_invites_of_one_address_leave_one_guest_and_one_live_link() {
    let h = Harness::racy(|b| b);
    let gp = h.gp.clone();
    let results = race(32, move |i| {
        let gp = gp.clone();
        // Different spellings of one address.
        let email = if i % 2 == 0 {
            "Alice@Fabrikam.Example"
        } else {
            "alice@FABRIKAM.example"
        };
        async move { gp.invite(&Inviter::admin(None), request(email)).await }
    })
    .await;
    let mut ok = 0;
    for r in &results {
        match r {
            Ok(inv) => {
                ok += 1;
                h.track_invitation(inv.id);
            }
            Err(Error::Store(_)) => {}
            Err(e) => panic!("unexpected error from a racing invite: {e:?}"),
        }
    }
    assert!(ok >= 1);
    let users = h.gp.users().await.unwrap();
    assert_eq!(users.len(), 1, "one guest for one address");
    let user = h.user(users[0].id).await.value;
    let live = user.active_invitation.expect("a pending invitation");
    // Every mailed link but one redeems nothing.
    let tickets: Vec<String> = h
        .mails_of(MessageKind::Invitation)
        .iter()
        .map(|m| ticket_from_link(m.link_starting_with(BASE_URL).unwrap()))
        .collect();
    assert_eq!(tickets.len(), 32, "each call mailed before it wrote");
    let mut working = Vec::new();
    for t in &tickets {
        match h.gp.view_redemption(t).await {
            Ok(_) => working.push(t.clone()),
            Err(e) => assert_eq!(e, Error::Ticket(guestpass::error::TicketError::NoLongerValid)),
        }
    }
    assert_eq!(working.len(), 1, "exactly one live link");
    let verified = guestpass::invitation::ticket::verify(&key_ring(), TENANT, &working[0], h.now()).unwrap();
    assert_eq!(verified.invitation_id, live);
    let done = h.redeem(&working[0], ALICE).await;
    assert_eq!(done.user.id, user.user.id);
}

#[tokio::test]
async fn the_privacy_statement_is_linked_from_mail_page_and_consent() {
    let privacy = "https://contoso.example/privacy";
    let h = Harness::with(|b| b.privacy_statement_url(privacy));
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let mail = h.last_mail(MessageKind::Invitation, ALICE);
    assert!(mail.text_body.contains(privacy));
    assert!(mail.html_body.contains(&format!("href=\"{privacy}\"")));
    let view = h.gp.view_redemption(&ticket).await.unwrap();
    assert_eq!(view.privacy_statement_url.as_deref(), Some(privacy));
    let handle = h.start(&ticket).await;
    let step = h.gp.submit_passcode(&handle, &h.code_for(ALICE)).await.unwrap();
    match step {
        guestpass::RedemptionStep::Consent {
            privacy_statement_url,
            ..
        } => assert_eq!(privacy_statement_url.as_deref(), Some(privacy)),
        other => panic!("expected consent, got {other:?}"),
    }
}
