//! Email one-time passcodes (invariant 6): five tries per code, 100
//! consecutive failures per address across codes, codes bound to their
//! session, short-lived, send rate limited, counted with conditional writes
//! under concurrency, never shown in audit events or errors, and mailed to
//! the stored address (invariant 8).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::HashSet;

use common::*;
use guestpass::audit::AuditKind;
use guestpass::error::{PasscodeError, RedemptionError, StoreError};
use guestpass::idp::PasscodePolicy;
use guestpass::mail::MessageKind;
use guestpass::{ConsentDecision, Error, RedemptionStep};
use time::Duration;

const ALICE: &str = "alice@fabrikam.example";
const BOB: &str = "bob@fabrikam.example";

fn passcode(e: PasscodeError) -> Error {
    Error::Passcode(e)
}

/// Permissive sends, and the address locks after `failures` wrong tries
/// in a row.
fn locking_after(failures: u32) -> PasscodePolicy {
    PasscodePolicy {
        max_consecutive_failures: failures,
        ..permissive_policy()
    }
}

/// Resends the session's passcode, which must go out to Alice.
async fn resend_to_alice(h: &Harness, handle: &str) {
    let step = h.resend_passcode(handle).await.unwrap();
    assert_eq!(
        step,
        RedemptionStep::EnterPasscode {
            sent_to: ALICE.to_owned()
        }
    );
}

/// Mails a new code to Alice and submits one wrong guess at it, which must
/// lock her address; returns the new (right) code.
async fn resend_and_lock_with_a_wrong_code(h: &Harness, handle: &str) -> String {
    h.resend_passcode(handle).await.unwrap();
    let code = h.code_for(ALICE);
    let r = h.gp.submit_passcode(handle, &wrong_code(&code)).await;
    assert_eq!(r, Err(passcode(PasscodeError::AddressLocked)));
    code
}

/// While the address is locked, neither the right code nor a resend gets
/// through, and refusing them writes nothing.
async fn assert_locked_out(h: &Harness, handle: &str, code: &str) {
    let locked = passcode(PasscodeError::AddressLocked);
    h.fails_unchanged_with(
        "right code when locked",
        h.gp.submit_passcode(handle, code),
        locked.clone(),
    )
    .await;
    h.fails_unchanged_with("resend when locked", h.resend_passcode(handle), locked)
        .await;
}

#[tokio::test]
async fn five_wrong_codes_burn_the_code_and_a_new_one_works() {
    let h = Harness::new();
    let (_, handle, code) = h.invite_and_start(ALICE).await;
    let wrong = wrong_code(&code);
    for remaining in (1..=4).rev() {
        let r = h.gp.submit_passcode(&handle, &wrong).await;
        assert_eq!(r, Err(passcode(PasscodeError::Incorrect { remaining })));
    }
    let r = h.gp.submit_passcode(&handle, &wrong).await;
    assert_eq!(r, Err(passcode(PasscodeError::TooManyAttempts)));
    assert_eq!(h.session_passcode(&handle).await.value.attempts, 5);

    // The right code is refused now, and again; refusing writes nothing.
    for _ in 0..2 {
        h.fails_unchanged_with(
            "right code after the limit",
            h.gp.submit_passcode(&handle, &code),
            passcode(PasscodeError::TooManyAttempts),
        )
        .await;
    }
    assert_eq!(h.session_step(&handle).await, "passcode");

    // A new code (the address is far under its limit) works; the failure
    // count survived the new code and is cleared by the success.
    h.clock.advance(Duration::seconds(31));
    resend_to_alice(&h, &handle).await;
    assert_eq!(
        h.consecutive_failures(ALICE).await,
        5,
        "a new code does not reset the failure count"
    );
    let new_code = h.code_for(ALICE);
    let attempts = h.session_passcode(&handle).await.value.attempts;
    assert_eq!(attempts, 0, "the new code has its own five tries");
    if new_code != code {
        let e =
            h.gp.submit_passcode(&handle, &code)
                .await
                .expect_err("the earlier code stopped working");
        assert!(
            matches!(e, Error::Passcode(PasscodeError::Incorrect { .. })),
            "{e:?}"
        );
    }
    h.submit_to_consent(&handle, &new_code).await;
    assert_eq!(h.consecutive_failures(ALICE).await, 0);
}

#[tokio::test]
async fn a_new_code_helps_only_while_the_address_is_under_its_limit() {
    let h = Harness::with(|b| b.passcode_policy(locking_after(10)));
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let handle = h.start(&ticket).await;
    // Code 1: five wrong (5 failures).
    h.submit_wrong_codes(&handle, ALICE, 5).await;
    // Code 2: four wrong (9 failures); still under the limit, so a code is sent.
    h.resend_passcode(&handle).await.unwrap();
    h.submit_wrong_codes(&handle, ALICE, 4).await;
    // Code 3: the first wrong try is the tenth failure: locked.
    let code = resend_and_lock_with_a_wrong_code(&h, &handle).await;
    assert_eq!(h.session_passcode(&handle).await.value.attempts, 1);
    assert_locked_out(&h, &handle, &code).await;
}

#[tokio::test]
async fn a_code_from_another_session_is_refused_and_does_not_advance() {
    let h = Harness::new();
    // Two guests, two sessions.
    let (_, t_alice) = h.invite_with_ticket(ALICE).await;
    let (_, t_bob) = h.invite_with_ticket(BOB).await;
    let alice = h.start(&t_alice).await;
    let bob = h.start(&t_bob).await;
    let alice_code = h.code_for(ALICE);
    let bob_code = h.code_for(BOB);
    assert_ne!(alice_code, bob_code);
    let r = h.gp.submit_passcode(&alice, &bob_code).await;
    assert_eq!(r, Err(passcode(PasscodeError::Incorrect { remaining: 4 })));
    assert_eq!(h.session_step(&alice).await, "passcode");
    // Bob's code was not consumed by the attempt, nor Alice's session by it.
    assert_eq!(h.session_passcode(&bob).await.value.attempts, 0);
    assert!(!h.session_passcode(&bob).await.value.consumed);

    // Two sessions of one guest: the code of the second does not open the first.
    h.clock.advance(Duration::seconds(31));
    let alice2 = h.start(&t_alice).await;
    let alice2_code = h.code_for(ALICE);
    assert_ne!(alice2_code, alice_code);
    let r = h.gp.submit_passcode(&alice, &alice2_code).await;
    assert_eq!(r, Err(passcode(PasscodeError::Incorrect { remaining: 3 })));
    assert_eq!(h.session_step(&alice).await, "passcode");
    assert!(!h.session_passcode(&alice2).await.value.consumed);

    // Each code still opens its own session.
    h.submit_to_consent(&bob, &bob_code).await;
    h.submit_to_consent(&alice2, &alice2_code).await;
    h.submit_to_consent(&alice, &alice_code).await;
}

#[tokio::test]
async fn one_hundred_failures_across_codes_lock_the_address_until_a_reset() {
    let h = Harness::permissive();
    let (inv, ticket) = h.invite_with_ticket(ALICE).await;
    let handle = h.start(&ticket).await;
    // 19 codes with five wrong tries each: 95 failures.
    for i in 0..19 {
        if i > 0 {
            h.resend_passcode(&handle).await.unwrap();
        }
        for e in h.submit_wrong_codes(&handle, ALICE, 5).await {
            assert!(
                matches!(
                    e,
                    Error::Passcode(PasscodeError::Incorrect { .. } | PasscodeError::TooManyAttempts)
                ),
                "{e:?}"
            );
        }
    }
    assert_eq!(h.consecutive_failures(ALICE).await, 95);
    // Code 20: four wrong (99).
    h.resend_passcode(&handle).await.unwrap();
    h.submit_wrong_codes(&handle, ALICE, 4).await;
    // Code 21 is still sent (99 < 100); its first wrong try locks.
    let code = resend_and_lock_with_a_wrong_code(&h, &handle).await;
    assert_eq!(h.consecutive_failures(ALICE).await, 100);
    assert_eq!(h.count_audit(|k| *k == AuditKind::AddressLocked), 1);

    // Locked: the right code, a new code, a new session are all refused.
    assert_locked_out(&h, &handle, &code).await;
    h.clock.advance(Duration::days(1));
    let e = h
        .fails_unchanged_with(
            "new session when locked",
            h.gp.start_redemption(&ticket),
            passcode(PasscodeError::AddressLocked),
        )
        .await;
    assert_eq!(e.status().as_u16(), 429);

    // An administrator's reset lifts it.
    let (_, new_ticket) = h.reset(inv.invited_user.id, ALICE).await;
    let done = h.redeem(&new_ticket, ALICE).await;
    assert_eq!(done.user.id, inv.invited_user.id);
}

#[tokio::test]
async fn sends_are_rate_limited_per_address() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let first = h.start(&ticket).await;
    h.clock.advance(Duration::seconds(10));
    let limited = passcode(PasscodeError::RateLimited { retry_after_secs: 20 });
    h.fails_unchanged_with(
        "second start within 30 s",
        h.gp.start_redemption(&ticket),
        limited.clone(),
    )
    .await;
    h.fails_unchanged_with("resend within 30 s", h.resend_passcode(&first), limited)
        .await;
    h.clock.advance(Duration::seconds(20));
    h.start(&ticket).await;

    // At most five sends an hour, however far apart.
    for _ in 0..3 {
        h.clock.advance(Duration::minutes(1));
        h.start(&ticket).await;
    }
    h.clock.advance(Duration::minutes(1));
    let e = h
        .fails_unchanged("sixth send in an hour", h.gp.start_redemption(&ticket))
        .await;
    assert!(
        matches!(e, Error::Passcode(PasscodeError::RateLimited { .. })),
        "{e:?}"
    );
    h.clock.advance(Duration::hours(1));
    h.start(&ticket).await;
    assert_eq!(h.mails_of(MessageKind::Passcode).len(), 6);
}

#[tokio::test]
async fn an_expired_code_is_refused() {
    let h = Harness::new();
    let (_, handle, code) = h.invite_and_start(ALICE).await;
    h.clock.advance(Duration::minutes(10));
    h.fails_unchanged_with(
        "expired code",
        h.gp.submit_passcode(&handle, &code),
        passcode(PasscodeError::Expired),
    )
    .await;
    // A fresh code works.
    h.resend_passcode(&handle).await.unwrap();
    h.submit_to_consent(&handle, &h.code_for(ALICE)).await;
}

#[tokio::test]
async fn a_used_code_and_malformed_input_change_nothing() {
    let h = Harness::new();
    let (_, handle, code) = h.invite_and_start(ALICE).await;
    for bad in ["", "1234", "abcdefgh", "123456789", "１２３４５６７８"] {
        let e = h.fails_unchanged(bad, h.gp.submit_passcode(&handle, bad)).await;
        assert_eq!(e, passcode(PasscodeError::Malformed), "{bad:?}");
    }
    h.gp.submit_passcode(&handle, &code).await.unwrap();
    h.fails_unchanged_with(
        "code again",
        h.gp.submit_passcode(&handle, &code),
        Error::Redemption(RedemptionError::WrongStep {
            expected: "passcode",
            actual: "consent",
        }),
    )
    .await;
    let unknown = Error::Redemption(RedemptionError::UnknownSession);
    h.fails_unchanged_with(
        "unknown handle",
        h.gp.submit_passcode("nope", &code),
        unknown.clone(),
    )
    .await;
    h.fails_unchanged_with(
        "oversized handle",
        h.gp.submit_passcode(&"x".repeat(10_000), &code),
        unknown,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_wrong_guesses_never_exceed_five_attempts() {
    let h = Harness::racy(|b| b);
    let (_, handle, code) = h.invite_and_start(ALICE).await;
    let wrong = wrong_code(&code);
    let mut seen_remaining = Vec::new();
    let mut rounds = 0;
    while h.session_passcode(&handle).await.value.attempts < 5 {
        rounds += 1;
        assert!(rounds <= 40, "the attempts never reached the limit");
        let gp = h.gp.clone();
        let (hd, w) = (handle.clone(), wrong.clone());
        let results = race(32, move |_| {
            let gp = gp.clone();
            let (hd, w) = (hd.clone(), w.clone());
            async move { gp.submit_passcode(&hd, &w).await }
        })
        .await;
        for r in results {
            match r {
                Err(Error::Passcode(PasscodeError::Incorrect { remaining })) => {
                    seen_remaining.push(remaining)
                }
                Err(Error::Passcode(PasscodeError::TooManyAttempts))
                | Err(Error::Store(StoreError::Conflict { .. })) => {}
                other => panic!("unexpected outcome of a wrong guess: {other:?}"),
            }
        }
        let attempts = h.session_passcode(&handle).await.value.attempts;
        assert!(attempts <= 5, "{attempts} attempts recorded");
    }
    // Each counted attempt answered with its own remaining count, once.
    let distinct: HashSet<u32> = seen_remaining.iter().copied().collect();
    assert_eq!(distinct.len(), seen_remaining.len(), "{seen_remaining:?}");
    assert!(distinct.is_subset(&HashSet::from([1, 2, 3, 4])));
    let record = h.session_passcode(&handle).await.value;
    assert_eq!(record.attempts, 5);
    assert!(!record.consumed);
    assert_eq!(
        h.consecutive_failures(ALICE).await,
        5,
        "each counted attempt counted once for the address"
    );
    let mut failures: Vec<u32> = h
        .audit_kinds()
        .into_iter()
        .filter_map(|k| match k {
            AuditKind::PasscodeFailed { consecutive_failures } => Some(consecutive_failures),
            _ => None,
        })
        .collect();
    failures.sort_unstable();
    assert_eq!(failures, vec![1, 2, 3, 4, 5]);
    h.fails_unchanged_with(
        "right code after racing",
        h.gp.submit_passcode(&handle, &code),
        passcode(PasscodeError::TooManyAttempts),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_right_code_racing_wrong_ones_gets_in_only_within_the_limit() {
    let h = Harness::racy(|b| b.passcode_policy(permissive_policy()));
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    for trial in 0..6 {
        let handle = h.start(&ticket).await;
        let code = h.code_for(ALICE);
        let wrong = wrong_code(&code);
        let gp = h.gp.clone();
        let results = race(32, {
            let (handle, code, wrong) = (handle.clone(), code.clone(), wrong.clone());
            move |i| {
                let gp = gp.clone();
                let handle = handle.clone();
                let guess = if i == 16 { code.clone() } else { wrong.clone() };
                async move { gp.submit_passcode(&handle, &guess).await }
            }
        })
        .await;
        let record = h.session_passcode_opt(&handle).await.map(|p| p.value);
        let step = h.session_step(&handle).await;
        let accepted = results.iter().filter(|r| r.is_ok()).count();
        assert!(accepted <= 1, "trial {trial}: {accepted} acceptances");
        // A proven address leaves the passcode step (the code goes with it).
        if let Some(record) = record {
            assert!(record.attempts <= 5, "trial {trial}");
            assert!(
                !record.consumed,
                "trial {trial}: a used code stays at the passcode step"
            );
            assert_eq!(accepted, 0, "trial {trial}");
            assert_eq!(step, "passcode", "trial {trial}");
            if record.attempts == 5 {
                let e = h.gp.submit_passcode(&handle, &code).await.unwrap_err();
                assert_eq!(e, passcode(PasscodeError::TooManyAttempts));
            } else {
                // Keep the address far from its lockout between trials.
                h.gp.submit_passcode(&handle, &code).await.unwrap();
            }
        } else {
            assert_eq!(accepted, 1, "trial {trial}");
            assert_eq!(step, "consent", "trial {trial}");
            let refused = results
                .iter()
                .filter(|r| matches!(r, Err(Error::Passcode(PasscodeError::Incorrect { .. }))))
                .count();
            assert!(refused < 5, "trial {trial}: accepted after the limit");
        }
    }
}

#[tokio::test]
async fn codes_never_appear_in_audit_events_or_errors() {
    let h = Harness::new();
    let (ticket, handle, code) = h.invite_and_start(ALICE).await;
    let mut shown = Vec::new();
    let wrong = wrong_code(&code);
    for e in h.submit_wrong_codes(&handle, ALICE, 5).await {
        shown.push(format!("{e} {e:?}"));
    }
    let e = h.gp.submit_passcode(&handle, &code).await.unwrap_err();
    shown.push(format!("{e} {e:?}"));
    h.clock.advance(Duration::seconds(31));
    h.resend_passcode(&handle).await.unwrap();
    let code2 = h.code_for(ALICE);
    h.clock.advance(Duration::minutes(11));
    let e = h.gp.submit_passcode(&handle, &code2).await.unwrap_err();
    shown.push(format!("{e} {e:?}"));
    h.resend_passcode(&handle).await.unwrap();
    let code3 = h.code_for(ALICE);
    let e = h.resend_passcode(&handle).await.unwrap_err();
    assert!(matches!(e, Error::Passcode(PasscodeError::RateLimited { .. })));
    shown.push(format!("{e} {e:?}"));
    let e = h.gp.submit_passcode(&handle, "12").await.unwrap_err();
    shown.push(format!("{e} {e:?}"));
    h.gp.submit_passcode(&handle, &code3).await.unwrap();
    h.gp.finish_redemption(&handle, ConsentDecision::Accept)
        .await
        .unwrap();
    for event in h.audit_events() {
        shown.push(format!("{event:?}"));
    }
    assert!(shown.len() > 10);
    for text in &shown {
        for secret in [&code, &code2, &code3, &wrong, &handle, &ticket] {
            assert!(!text.contains(secret.as_str()), "{text}");
        }
    }
}

#[tokio::test]
async fn codes_go_to_the_stored_spelling_of_the_address() {
    let h = Harness::new();
    let first = h.invite("Alice@Fabrikam.Example").await;
    let second = h.invite("ALICE@fabrikam.example").await;
    assert_eq!(first.invited_user.id, second.invited_user.id, "one guest");
    assert_eq!(
        second.invited_user_email_address.as_str(),
        "Alice@Fabrikam.Example"
    );
    let invitation_mails = h.mails_of(MessageKind::Invitation);
    assert_eq!(invitation_mails.len(), 2);
    for m in &invitation_mails {
        assert_eq!(m.to.address.as_str(), "Alice@Fabrikam.Example");
    }
    let ticket = h.ticket_for("alice@fabrikam.example");
    let started = h.try_start(&ticket).await.unwrap();
    assert_eq!(
        started.step,
        RedemptionStep::EnterPasscode {
            sent_to: "Alice@Fabrikam.Example".to_owned()
        }
    );
    let mail = h.last_mail(MessageKind::Passcode, "alice@fabrikam.example");
    assert_eq!(mail.to.address.as_str(), "Alice@Fabrikam.Example");
    let view = h.gp.view_redemption(&ticket).await.unwrap();
    assert_eq!(view.invited_email, "Alice@Fabrikam.Example");
    let code = mail.code(DIGITS).unwrap().to_owned();
    h.gp.submit_passcode(started.handle.expose(), &code)
        .await
        .unwrap();
    let done = h.accept(started.handle.expose()).await;
    assert_eq!(
        done.user.mail.as_ref().unwrap().as_str(),
        "Alice@Fabrikam.Example"
    );
    assert_eq!(
        done.user.identities[0].issuer_assigned_id,
        "alice@fabrikam.example"
    );

    // A reset requested with yet another spelling keeps the stored one.
    let reset = h
        .invite_request(reset_request("ALICE@FABRIKAM.EXAMPLE", done.user.id))
        .await
        .unwrap();
    assert_eq!(
        reset.invited_user_email_address.as_str(),
        "Alice@Fabrikam.Example"
    );
    assert_eq!(
        h.last_mail(MessageKind::Invitation, "alice@fabrikam.example")
            .to
            .address
            .as_str(),
        "Alice@Fabrikam.Example"
    );
    assert_eq!(
        h.gp.user(done.user.id).await.unwrap().mail.unwrap().as_str(),
        "Alice@Fabrikam.Example"
    );
    h.clock.advance(Duration::minutes(1));
    let ticket = h.ticket_for("alice@fabrikam.example");
    let started = h.try_start(&ticket).await.unwrap();
    assert_eq!(
        started.step,
        RedemptionStep::EnterPasscode {
            sent_to: "Alice@Fabrikam.Example".to_owned()
        }
    );
}

#[tokio::test]
async fn an_undelivered_code_keeps_the_session_and_counts_as_a_send() {
    let h = Harness::new();
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    h.outbox.fail_next(1);
    let started = h.try_start(&ticket).await.unwrap();
    match &started.step {
        RedemptionStep::PasscodeNotDelivered { sent_to, reason } => {
            assert_eq!(sent_to, ALICE);
            assert!(matches!(reason, guestpass::error::MailError::Transport { .. }));
        }
        other => panic!("expected PasscodeNotDelivered, got {other:?}"),
    }
    let handle = started.handle.expose().to_owned();
    assert_eq!(h.session_step(&handle).await, "passcode");
    assert!(
        h.mails_of(MessageKind::Passcode).is_empty(),
        "no passcode mail went out"
    );
    assert!(!h.audit_kinds().contains(&AuditKind::PasscodeSent));
    // The failed send counts against the rate limit ...
    let e = h
        .fails_unchanged("resend at once", h.resend_passcode(&handle))
        .await;
    assert!(
        matches!(e, Error::Passcode(PasscodeError::RateLimited { .. })),
        "{e:?}"
    );
    // ... and a later resend delivers a code that works.
    h.clock.advance(Duration::seconds(30));
    resend_to_alice(&h, &handle).await;
    h.submit_to_consent(&handle, &h.code_for(ALICE)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_starts_send_one_code() {
    let h = Harness::racy(|b| b);
    let (_, ticket) = h.invite_with_ticket(ALICE).await;
    let gp = h.gp.clone();
    let t = ticket.clone();
    let results = race(32, move |_| {
        let gp = gp.clone();
        let t = t.clone();
        async move {
            gp.start_redemption(&t)
                .await
                .map(|s| s.handle.expose().to_owned())
        }
    })
    .await;
    let mut started = Vec::new();
    for r in results {
        match r {
            Ok(handle) => started.push(handle),
            Err(Error::Store(StoreError::Conflict { .. }))
            | Err(Error::Passcode(PasscodeError::RateLimited { .. })) => {}
            Err(e) => panic!("unexpected error from a racing start: {e:?}"),
        }
    }
    assert_eq!(started.len(), 1, "one send within the interval");
    assert_eq!(h.mails_of(MessageKind::Passcode).len(), 1);
    assert_eq!(h.throttle(ALICE).await.unwrap().value.recent_sends.len(), 1);
    h.submit_to_consent(&started[0], &h.code_for(ALICE)).await;
}

#[tokio::test]
async fn lockouts_are_per_tenant() {
    let h = Harness::with(|b| b.passcode_policy(locking_after(5)));
    let (ticket, handle, code) = h.invite_and_start(ALICE).await;
    for _ in 0..5 {
        let _ = h.gp.submit_passcode(&handle, &wrong_code(&code)).await;
    }
    assert_eq!(
        h.gp.start_redemption(&ticket).await.unwrap_err(),
        passcode(PasscodeError::AddressLocked)
    );
    // Fabrikam shares the store; its guest with the same address is not locked.
    let fabrikam = h.other_tenant();
    fabrikam
        .invite(&guestpass::Inviter::admin(None), request(ALICE))
        .await
        .unwrap();
    let fab_ticket = h.ticket_for(ALICE);
    let started = fabrikam.start_redemption(&fab_ticket).await.unwrap();
    let fab_code = h.code_for(ALICE);
    let step = fabrikam
        .submit_passcode(started.handle.expose(), &fab_code)
        .await
        .unwrap();
    assert!(matches!(step, RedemptionStep::Consent { .. }), "{step:?}");
    // And Contoso's lock still holds.
    assert_eq!(
        h.gp.start_redemption(&ticket).await.unwrap_err(),
        passcode(PasscodeError::AddressLocked)
    );
}

/// The first passcode of a redemption needs no read of the address's
/// counters of its own: the redemption's joined read of the invitation and
/// its user already found that there are none. A resend finds them in the
/// flow's joined read. (The memory store composes each joined read from the
/// single reads, one counter read apiece, so every read counted here is
/// part of a joined read.) Both still count: the counters are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passcode_counters_come_with_the_redemption_reads() {
    let h = Harness::racy(|b| b.passcode_policy(permissive_policy()));
    let front = h.yielding.clone().unwrap();
    let (_, handle, _) = h.invite_and_start(ALICE).await;
    assert_eq!(
        front.throttle_reads(),
        1,
        "the first send read the counters again"
    );
    let sent = h.throttle(ALICE).await.unwrap();
    resend_to_alice(&h, &handle).await;
    assert_eq!(front.throttle_reads(), 2, "the resend read the counters again");
    assert!(h.throttle(ALICE).await.unwrap().version > sent.version);
}
