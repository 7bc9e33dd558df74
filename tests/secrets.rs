//! Invariant 10: secrets (tickets, session handles, passcodes, key material)
//! never appear in `Debug` output, error messages or audit events; and
//! invariant 2: the store holds only hashes of them, so a copy of the
//! database redeems nothing.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;
use guestpass::directory::DirectoryStore;
use guestpass::keys::{KeyRing, SigningKey};
use guestpass::mail::MessageKind;
use guestpass::secret::Digest;
use guestpass::{ConsentDecision, Error, InvitationRequest, Inviter};
use time::Duration;

const ALICE: &str = "alice@fabrikam.example";

/// Everything secret from one redemption.
struct Secrets {
    ticket: String,
    handle: String,
    codes: Vec<String>,
    verifier: Vec<u8>,
}

impl Secrets {
    /// Fragments that must never be shown: each secret whole, and long
    /// enough pieces of it that a partial leak is caught as well.
    fn needles(&self) -> Vec<String> {
        let mut out = vec![self.ticket.clone(), self.handle.clone()];
        for s in [&self.ticket, &self.handle] {
            for chunk in s.as_bytes().chunks(16) {
                if chunk.len() >= 12 {
                    out.push(String::from_utf8(chunk.to_vec()).unwrap());
                }
            }
        }
        out.extend(self.codes.iter().cloned());
        out.push(hex(&self.verifier));
        out.push(b64url(&self.verifier));
        out.extend(key_needles());
        out
    }

    fn assert_absent(&self, what: &str, text: &str) {
        for n in self.needles() {
            assert!(!text.contains(&n), "{what} shows a secret (`{n}`):\n{text}");
        }
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Renderings of the signing key's secret bytes.
fn key_needles() -> Vec<String> {
    let k = KEY_SECRET;
    vec![
        format!("{:?}", &k[..4]).trim_end_matches(']').to_owned(),
        hex(&k[..6]),
        hex(&k[..6]).to_uppercase(),
        b64url(&k[..6]),
        String::from_utf8_lossy(&k[..8]).into_owned(),
    ]
}

/// A harness where Alice got as far as consent, with two codes mailed.
async fn mid_redemption() -> (Harness, Secrets) {
    let h = Harness::new();
    let (ticket, handle, first) = h.invite_and_start(ALICE).await;
    h.clock.advance(Duration::seconds(31));
    h.resend_passcode(&handle).await.unwrap();
    let second = h.code_for(ALICE);
    (
        h,
        Secrets {
            verifier: verifier_of(&ticket),
            ticket,
            handle,
            codes: vec![first, second],
        },
    )
}

#[test]
fn the_needles_would_catch_a_leak() {
    // Sanity: the key renderings are what Debug of the raw bytes would show.
    let shown = format!("{:?}", KEY_SECRET);
    assert!(key_needles().iter().any(|n| shown.contains(n.as_str())));
    assert!(hex(&KEY_SECRET).contains(&key_needles()[1]));
}

#[tokio::test]
async fn debug_of_the_service_and_its_configuration_shows_no_secret() {
    let (h, s) = mid_redemption().await;
    let code = s.codes[1].clone();
    h.gp.submit_passcode(&s.handle, &code).await.unwrap();
    // The service holds the store, the outbox with its messages, the audit
    // log and the keys: none of it may print a secret.
    s.assert_absent("GuestPass", &format!("{:?}", h.gp));
    s.assert_absent("GuestPass (pretty)", &format!("{:#?}", h.gp));
    s.assert_absent("Config", &format!("{:?}", h.gp.config()));
    s.assert_absent("MemoryStore", &format!("{:?}", h.store));
    s.assert_absent("Outbox", &format!("{:?}", h.outbox));
    s.assert_absent("SigningKey", &format!("{:?}", signing_key()));
    s.assert_absent("KeyRing", &format!("{:?}", key_ring()));
    let shown = format!("{:?}", signing_key());
    assert!(shown.contains(KEY_ID), "the key id is shown: {shown}");
}

#[tokio::test]
async fn debug_of_invitations_sessions_and_messages_shows_no_secret() {
    let h = Harness::new();
    let inv = h.invite_request(named_request(ALICE, "Alice")).await.unwrap();
    let url = inv.invite_redeem_url.as_ref().unwrap().expose().to_owned();
    let ticket = ticket_from_link(&url);
    let started = h.try_start(&ticket).await.unwrap();
    let handle = started.handle.expose().to_owned();
    let code = h.code_for(ALICE);
    let s = Secrets {
        verifier: verifier_of(&ticket),
        ticket,
        handle,
        codes: vec![code.clone()],
    };

    let inv_debug = format!("{inv:?}");
    s.assert_absent("Invitation", &inv_debug);
    assert!(!inv_debug.contains(&url), "{inv_debug}");
    s.assert_absent("Invitation (pretty)", &format!("{inv:#?}"));
    s.assert_absent("RedemptionStarted", &format!("{started:?}"));
    s.assert_absent("RedemptionStep", &format!("{:?}", started.step));
    for m in h.outbox.messages() {
        // The bodies do carry the secrets (that is what mail is for) ...
        match m.kind {
            MessageKind::Invitation => assert!(m.text_body.contains(&s.ticket)),
            MessageKind::Passcode => assert!(m.text_body.contains(&code)),
            _ => {}
        }
        // ... but Debug shows the envelope only.
        s.assert_absent("Message", &format!("{m:?}"));
        s.assert_absent("Message (pretty)", &format!("{m:#?}"));
    }
    let view = h.gp.view_redemption(&s.ticket).await.unwrap();
    s.assert_absent("RedemptionView", &format!("{view:?}"));
    let step = h.gp.submit_passcode(&s.handle, &code).await.unwrap();
    s.assert_absent("consent step", &format!("{step:?}"));
    let done =
        h.gp.finish_redemption(&s.handle, ConsentDecision::Accept)
            .await
            .unwrap();
    s.assert_absent("Finished", &format!("{done:?}"));
    s.assert_absent("audit events", &format!("{:?}", h.audit_events()));
}

/// Every refusal an attacker can provoke, with the secrets of a live
/// redemption in play.
async fn attack_errors(h: &Harness, s: &Secrets) -> Vec<(String, String, Error)> {
    let mut out: Vec<(String, String, Error)> = Vec::new();
    let raw = b64url_decode(&s.ticket);
    let mut inputs: Vec<(String, String)> = vec![
        ("empty".into(), String::new()),
        ("oversized".into(), format!("{}{}", s.ticket, "A".repeat(64))),
        ("padded".into(), b64url_padded(&raw)),
        ("standard".into(), b64_standard(&raw)),
        ("truncated".into(), s.ticket[..s.ticket.len() - 3].to_owned()),
        ("trailing space".into(), format!("{} ", s.ticket)),
    ];
    for (name, pos) in [
        ("version", layout::VERSION),
        ("purpose", layout::PURPOSE),
        ("kid len", layout::KID_LEN),
        ("kid", layout::KID + 3),
        ("invitation", layout::INVITATION),
        ("verifier", layout::VERIFIER),
        ("expiry", layout::EXPIRY + 7),
        ("tag", layout::TAG),
    ] {
        let mut m = raw.clone();
        m[pos] ^= 0x01;
        inputs.push((format!("tampered {name}"), b64url(&m)));
    }
    let other = KeyRing::new(SigningKey::new(KEY_ID, [9u8; 32]).unwrap()).unwrap();
    let rng = guestpass::random::SeededRandom::new(77);
    let inv_id = invitation_of(&s.ticket, h.now());
    let expires = h.now() + Duration::days(1);
    inputs.push(("forged".into(), signed_ticket(&other, inv_id, expires, &rng)));
    inputs.push((
        "guessed verifier".into(),
        signed_ticket(&key_ring(), inv_id, expires, &rng),
    ));
    for (name, input) in inputs {
        if let Err(e) = h.gp.view_redemption(&input).await {
            out.push((format!("view {name}"), input.clone(), e));
        }
        if let Err(e) = h.gp.start_redemption(&input).await {
            out.push((format!("start {name}"), input.clone(), e));
        }
    }
    // Another tenant presented with the real ticket and handle.
    let fabrikam = h.other_tenant();
    if let Err(e) = fabrikam.start_redemption(&s.ticket).await {
        out.push(("other tenant start".into(), String::new(), e));
    }
    if let Err(e) = fabrikam.submit_passcode(&s.handle, &s.codes[1]).await {
        out.push(("other tenant code".into(), String::new(), e));
    }
    // Session and code attacks.
    let mut handle_guess = s.handle.clone();
    handle_guess.pop();
    handle_guess.push('A');
    for (name, handle, code) in [
        ("guessed handle", handle_guess.as_str(), s.codes[1].as_str()),
        ("long handle", &*"h".repeat(500), s.codes[1].as_str()),
        ("malformed code", s.handle.as_str(), "12ab"),
        ("old code", s.handle.as_str(), s.codes[0].as_str()),
        ("wrong code", s.handle.as_str(), "00000000"),
    ] {
        if let Err(e) = h.gp.submit_passcode(handle, code).await {
            out.push((name.into(), code.to_owned(), e));
        }
    }
    if let Err(e) = h.gp.resend_passcode(&s.handle).await {
        out.push(("rate limited resend".into(), String::new(), e));
    }
    if let Err(e) = h.gp.finish_redemption(&s.handle, ConsentDecision::Accept).await {
        out.push(("finish before consent".into(), String::new(), e));
    }
    // Replay after completion, and expiry.
    h.gp.submit_passcode(&s.handle, &s.codes[1]).await.unwrap();
    h.gp.finish_redemption(&s.handle, ConsentDecision::Accept)
        .await
        .unwrap();
    if let Err(e) = h.gp.start_redemption(&s.ticket).await {
        out.push(("replay".into(), String::new(), e));
    }
    if let Err(e) = h.gp.submit_passcode(&s.handle, &s.codes[1]).await {
        out.push(("replayed code".into(), String::new(), e));
    }
    h.clock.advance(Duration::days(31));
    if let Err(e) = h.gp.view_redemption(&s.ticket).await {
        out.push(("expired".into(), String::new(), e));
    }
    // Invitation misuse that echoes input.
    let mut req = InvitationRequest::new(format!("{}@fabrikam.example", s.handle), REDIRECT);
    req.invited_user_display_name = Some(format!("{}\u{7}", s.codes[1]));
    if let Err(e) = h.gp.invite(&Inviter::admin(None), req).await {
        out.push(("invite".into(), String::new(), e));
    }
    out
}

#[tokio::test]
async fn errors_from_attacks_never_show_a_secret() {
    let (h, s) = mid_redemption().await;
    let errors = attack_errors(&h, &s).await;
    assert!(errors.len() >= 30, "only {} refusals", errors.len());
    for (what, input, e) in &errors {
        let shown = format!("{e} | {e:?} | {:?}", e.category());
        s.assert_absent(what, &shown);
        // A ticket-shaped input is not echoed back either.
        if input.len() >= 24 {
            assert!(
                !shown.contains(input.as_str()),
                "{what} echoes its input: {shown}"
            );
        }
    }
    s.assert_absent("audit after attacks", &format!("{:#?}", h.audit_events()));
}

#[tokio::test]
async fn audit_events_never_carry_a_secret() {
    let (h, s) = mid_redemption().await;
    let wrong = wrong_code(&s.codes[1]);
    let _ = h.gp.submit_passcode(&s.handle, &wrong).await;
    h.gp.submit_passcode(&s.handle, &s.codes[1]).await.unwrap();
    h.gp.finish_redemption(&s.handle, ConsentDecision::Decline)
        .await
        .unwrap();
    let user = h.gp.users().await.unwrap()[0].id;
    h.gp.revoke(&Inviter::admin(None), user).await.unwrap();
    let events = h.audit_events();
    assert!(events.len() >= 5, "{events:?}");
    for e in &events {
        s.assert_absent("audit event", &format!("{e:?}"));
    }
}

#[tokio::test]
async fn the_store_at_rest_holds_no_secret() {
    let (h, s) = mid_redemption().await;
    let mut dump = String::new();
    for u in h.store.users(TENANT).await.unwrap() {
        dump.push_str(&serde_json::to_string(&u).unwrap());
        if let Some(i) = u.active_invitation {
            let inv = h.store.invitation(i).await.unwrap().unwrap();
            dump.push_str(&serde_json::to_string(&inv.value).unwrap());
            // Only the verifier's hash is kept.
            assert_eq!(
                inv.value.ticket.as_ref().unwrap().verifier_hash,
                Digest::sha256(&s.verifier)
            );
        }
    }
    let session = h.session(&s.handle).await.unwrap();
    dump.push_str(&serde_json::to_string(&session.value).unwrap());
    let pass = h.session_passcode(&s.handle).await;
    dump.push_str(&serde_json::to_string(&pass.value).unwrap());
    dump.push_str(&serde_json::to_string(&h.throttle(ALICE).await.unwrap().value).unwrap());
    dump.push_str(&format!("{:?}", h.snapshot().await));
    assert!(dump.contains(&key_of(ALICE)), "the dump is not empty");
    s.assert_absent("stored records", &dump);
    // The session is found by the handle's hash, not the handle.
    assert_eq!(session.value.handle_hash, Digest::sha256(s.handle.as_bytes()));
}

#[test]
fn debug_of_flow_actions_shows_no_form_token_passcode_or_typed_detail() {
    use guestpass::FlowAction;
    use guestpass::secret::SecretString;
    let body = b"csrf_token=Zm9ybS10b2tlbi1zZWNyZXQ&givenName=Adaline&action=continue".to_vec();
    let shown = format!("{:?}", FlowAction::SubmitAttributes(body.clone()));
    assert_eq!(shown, format!("SubmitAttributes(<{} bytes>)", body.len()));
    for action in [
        FlowAction::SubmitPasscode(SecretString::new("73914265".to_owned())),
        FlowAction::SubmitStepUpCode(SecretString::new("73914265".to_owned())),
    ] {
        let shown = format!("{action:?}");
        assert!(!shown.contains("73914265"), "{shown}");
    }
    assert_eq!(
        format!("{:?}", FlowAction::ChooseProvider("emailOtp".to_owned())),
        "ChooseProvider(\"emailOtp\")"
    );
}
