//! Benchmark of a whole invitation round trip through the [`GuestPass`]
//! facade, against the in-memory store and the outbox:
//!
//! invite → start redemption (ticket from the invitation link) → read the
//! passcode from the outbox → submit it → finish with consent.
//!
//! Each iteration invites a fresh address (a counter), because passcode
//! sends are rate limited per address; the passcode policy is also opened up
//! (no minimum interval, 1000 sends a window). Time stands still on a
//! [`FixedClock`]. Each criterion sample gets a new service, store and
//! outbox, so the store holds at most one sample's worth of guests and
//! building the service is not timed. The service runs on a tokio
//! current-thread runtime.
//!
//! Run with `cargo bench --bench redeem`.

// Benchmark setup may stop on a broken fixture; this is not library code.
#![allow(clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::Criterion;
use guestpass::clock::FixedClock;
use guestpass::directory::MemoryStore;
use guestpass::email::EmailAddress;
use guestpass::idp::PasscodePolicy;
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::random::SeededRandom;
use guestpass::{ConsentDecision, Finished, GuestPass, InvitationRequest, Inviter};
use time::Duration;
use time::macros::datetime;

const REDIRECT: &str = "https://app.contoso.example/";

fn service() -> (GuestPass, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new());
    let policy = PasscodePolicy {
        min_send_interval: Duration::ZERO,
        max_sends_per_window: 1000,
        ..PasscodePolicy::default()
    };
    let gp = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url("https://guests.contoso.example/")
        .signing_key(SigningKey::new("k1", [42u8; 32]).expect("valid key"))
        .redirect_url(REDIRECT)
        .passcode_policy(policy)
        .store(Arc::new(MemoryStore::new()))
        .mail(outbox.clone())
        .clock(Arc::new(FixedClock::new(datetime!(2026-11-01 12:00 UTC))))
        .random(Arc::new(SeededRandom::new(11)))
        .build()
        .expect("valid configuration");
    (gp, outbox)
}

/// One full round trip for guest number `n`.
async fn round_trip(gp: &GuestPass, outbox: &Outbox, n: u64) {
    let address = format!("guest{n}@fabrikam.example");
    let invitation = gp
        .invite(
            &Inviter::admin(None),
            InvitationRequest::new(address.clone(), REDIRECT),
        )
        .await
        .expect("invite");
    let link = invitation.invite_redeem_url.expect("a redeem url");
    let link = url::Url::parse(link.expose()).expect("a url");
    let ticket = link
        .query_pairs()
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .expect("a ticket in the link");
    let started = gp.start_redemption(&ticket).await.expect("start redemption");
    let key = EmailAddress::parse(&address).expect("valid address");
    let message = outbox.last_to(key.comparison_key()).expect("a passcode mail");
    let digits = usize::from(PasscodePolicy::default().digits);
    let code = message.code(digits).expect("a passcode").to_owned();
    gp.submit_passcode(started.handle.expose(), &code)
        .await
        .expect("passcode accepted");
    let finished = gp
        .finish_redemption(started.handle.expose(), ConsentDecision::Accept)
        .await
        .expect("finish");
    assert!(matches!(finished, Finished::Redeemed(_)));
    black_box(finished);
}

fn bench_redeem(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    // Check the path once before timing it.
    {
        let (gp, outbox) = service();
        rt.block_on(round_trip(&gp, &outbox, 0));
    }
    let mut group = c.benchmark_group("redeem");
    group.bench_function("memory_round_trip", |b| {
        b.iter_custom(|iters| {
            let (gp, outbox) = service();
            rt.block_on(async {
                let start = Instant::now();
                for n in 0..iters {
                    round_trip(&gp, &outbox, n).await;
                }
                start.elapsed()
            })
        })
    });
    group.finish();
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, without the
    // undocumented public function the group macro generates.
    let mut criterion = Criterion::default().configure_from_args();
    bench_redeem(&mut criterion);
    criterion.final_summary();
}
