//! Benchmarks of self-service sign-up flows, group `flow`:
//!
//! - `signup_complete_memory`: a whole sign-up through the [`GuestPass`]
//!   facade on the in-memory store: start, choose the email one-time
//!   passcode, submit the address, read the code from the outbox and submit
//!   it, submit six attributes, one `postAttributeCollection` connector
//!   answering `Continue` in-process, and the signed completion token.
//! - `transition`: one pure state transition (the attribute submission of
//!   a flow without connectors: it builds the new user and asks for the
//!   token).
//! - beside them, the primitives the sign-up pays for, measured in the same
//!   run: `baseline_es256_sign` (one ECDSA P-256 signature with ring, what
//!   the completion token costs at least), `baseline_hmac_sha256` (one
//!   HMAC, the unit of passcode hashing and CSRF tokens) and
//!   `baseline_form_decode` (decoding and validating the six-attribute form
//!   alone).
//!
//! Each iteration signs up a fresh address (a counter) so no passcode rate
//! limit applies; time stands still on a [`FixedClock`]. The service runs on
//! a tokio current-thread runtime.
//!
//! Run with `cargo bench --bench flow`.

// Benchmark setup may stop on a broken fixture; this is not library code.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::panic)]

use std::collections::BTreeMap;
use std::hint::black_box;
use std::sync::Arc;

use criterion::Criterion;
use guestpass::clock::FixedClock;
use guestpass::directory::{FlowRecord, MemoryStore};
use guestpass::email::EmailAddress;
use guestpass::flow::config::SignUpConfig;
use guestpass::flow::machine::{self, FlowEnv, FlowIdentity, FlowInput, FlowState};
use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey};
use guestpass::http::{FnHttpClient, HttpResponse, header};
use guestpass::id::Id;
use guestpass::idp::PasscodePolicy;
use guestpass::keys::{KeyRing, SigningKey};
use guestpass::mail::Outbox;
use guestpass::policy::DomainRestriction;
use guestpass::random::SeededRandom;
use guestpass::secret::Digest;
use guestpass::{FlowAction, FlowStep, GuestPass, SignUpRequest};
use time::Duration;
use time::macros::datetime;

const CLIENT: &str = "woodgrove";
const REDIRECT: &str = "https://woodgrove.example/done";
const ATTRIBUTES: &str = r#"[
  {"name": "displayName"},
  {"name": "givenName"},
  {"name": "surname"},
  {"name": "city"},
  {"name": "country", "userInputType": "dropdownSingleSelect",
   "userAttributeValues": [{"value": "NL", "name": "Netherlands"}, {"value": "DE", "name": "Germany"}]},
  {"name": "extension_0f8fad5bd9cb469fa16570867728950e_newsletter", "dataType": "boolean",
   "isOptional": true, "label": "Newsletter"}
]"#;
const FORM: &[u8] = b"displayName=Ada+L&givenName=Ada&surname=Lovelace&city=Delft&country=NL\
&extension_0f8fad5bd9cb469fa16570867728950e_newsletter=true";

fn config(with_connector: bool) -> SignUpConfig {
    let connector = if with_connector {
        r#", "apiConnectors": [{"displayName": "Check", "targetUrl": "https://api.woodgrove.example/check",
            "authentication": {"type": "basic", "username": "u", "password": "p"},
            "step": "postAttributeCollection",
            "onUnavailable": {"block": {"default": "Try again later"}}}]"#
    } else {
        ""
    };
    SignUpConfig::from_json(&format!(
        r#"{{"applications": [{{"clientId": "{CLIENT}", "displayName": "Woodgrove", "redirectUris": ["{REDIRECT}"]}}],
            "userFlows": [{{"id": "signup", "identityProviders": ["emailOtp"], "applications": ["{CLIENT}"],
                           "attributes": {ATTRIBUTES} {connector}}}]}}"#
    ))
    .expect("valid configuration")
}

fn service() -> (GuestPass, Arc<Outbox>) {
    let outbox = Arc::new(Outbox::new());
    let connector = Arc::new(FnHttpClient::new(|_, _| {
        let mut r = HttpResponse::new(br#"{"version":"1.0.0","action":"Continue","city":"Leiden"}"#.to_vec());
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        Ok(r)
    }));
    let rng = SeededRandom::new(7);
    let gp = GuestPass::builder()
        .tenant("woodgrove", "Woodgrove", "woodgrove.example")
        .public_base_url("https://login.woodgrove.example/")
        .signing_key(SigningKey::new("k1", [42u8; 32]).expect("valid key"))
        .redirect_url(REDIRECT)
        .passcode_policy(PasscodePolicy {
            min_send_interval: Duration::ZERO,
            max_sends_per_window: 1000,
            ..PasscodePolicy::default()
        })
        .store(Arc::new(MemoryStore::new()))
        .mail(outbox.clone())
        .sign_up(config(true))
        .token_keys(TokenKeys::new(
            TokenSigningKey::generate("t1", TokenAlgorithm::Es256, &rng).expect("key"),
        ))
        .http_client(connector)
        .clock(Arc::new(FixedClock::new(datetime!(2026-12-01 12:00 UTC))))
        .random(Arc::new(rng))
        .build()
        .expect("valid configuration");
    (gp, outbox)
}

async fn sign_up(gp: &GuestPass, outbox: &Outbox, n: u64) {
    let started = gp
        .start_sign_up(SignUpRequest::new(CLIENT, REDIRECT))
        .await
        .expect("start");
    let h = started.handle.expose();
    let mut page = started.page;
    page = gp
        .advance_flow(
            h,
            page.csrf_token.expose(),
            FlowAction::ChooseProvider("emailOtp".into()),
        )
        .await
        .expect("choose");
    page = gp
        .advance_flow(
            h,
            page.csrf_token.expose(),
            FlowAction::SubmitEmail(format!("user{n}@fabrikam.example")),
        )
        .await
        .expect("email");
    let code = outbox
        .messages()
        .last()
        .and_then(|m| m.code(8).map(str::to_owned))
        .expect("code");
    outbox.clear();
    page = gp
        .advance_flow(
            h,
            page.csrf_token.expose(),
            FlowAction::SubmitPasscode(code.into()),
        )
        .await
        .expect("passcode");
    page = gp
        .advance_flow(
            h,
            page.csrf_token.expose(),
            FlowAction::SubmitAttributes(FORM.to_vec()),
        )
        .await
        .expect("attributes");
    let FlowStep::Completed(done) = page.step else {
        panic!("not completed: {:?}", page.step)
    };
    black_box(done);
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("flow");

    let (gp, outbox) = service();
    let mut n = 0u64;
    group.bench_function("signup_complete_memory", |b| {
        b.iter(|| {
            n += 1;
            rt.block_on(sign_up(&gp, &outbox, n));
        })
    });

    // One pure transition: the attribute submission of a flow without connectors.
    let cfg = config(false);
    let uf = cfg.user_flow("signup").expect("flow");
    let values = uf.attributes().decode_form(FORM, &[]).expect("valid form");
    let keys = KeyRing::new(SigningKey::new("k1", [42u8; 32]).expect("key")).expect("ring");
    let policy = PasscodePolicy::default();
    let domains = DomainRestriction::default();
    let rng = SeededRandom::new(3);
    let now = datetime!(2026-12-01 12:00 UTC);
    let identity = FlowIdentity {
        issuer: "mail".into(),
        subject: "ada@fabrikam.example".into(),
        email: EmailAddress::parse("ada@fabrikam.example").expect("address"),
        home: None,
    };
    let flow = FlowRecord {
        id: Id::from_bytes([1; 16]),
        handle_hash: Digest::sha256(b"handle"),
        tenant_id: "woodgrove".into(),
        user_flow_id: "signup".into(),
        client_id: CLIENT.into(),
        redirect_uri: REDIRECT.into(),
        redemption: None,
        nonce: None,
        app_state: None,
        ui_locales: None,
        context: Default::default(),
        state: FlowState::CollectAttributes {
            identity,
            prefill: BTreeMap::new(),
            message: None,
        },
        created_at: now,
        expires_at: now + Duration::hours(1),
    };
    let policies = guestpass::policy::PolicySet::default()
        .compile()
        .expect("policies");
    let cross_tenant = guestpass::policy::CrossTenantSettings::default();
    let access = guestpass::flow::access::AccessEnv {
        policies: &policies,
        cross_tenant: &cross_tenant,
        agreements: &[],
        step_up: guestpass::flow::access::StepUpMethods::default(),
    };
    group.bench_function("transition", |b| {
        b.iter(|| {
            let env = FlowEnv {
                now,
                rng: &rng,
                keys: &keys,
                passcode: &policy,
                domains: &domains,
                user_flow: Some(uf),
                terms_of_use: None,
                tenant_domain: "woodgrove.example",
                access: &access,
                subject: None,
                language: guestpass::mail::templates::Language::EnUs,
            };
            let t = machine::transition(
                &env,
                black_box(&flow),
                FlowInput::SubmitAttributes {
                    values: values.clone(),
                },
            )
            .expect("transition");
            black_box(t)
        })
    });

    let ring_rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &ring_rng,
    )
    .expect("key");
    let pair = ring::signature::EcdsaKeyPair::from_pkcs8(
        &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        pkcs8.as_ref(),
        &ring_rng,
    )
    .expect("key");
    let message = [7u8; 600];
    group.bench_function("baseline_es256_sign", |b| {
        b.iter(|| black_box(pair.sign(&ring_rng, black_box(&message)).expect("sign")))
    });
    let hmac_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &[9u8; 32]);
    group.bench_function("baseline_hmac_sha256", |b| {
        b.iter(|| black_box(ring::hmac::sign(&hmac_key, black_box(&message[..64]))))
    });
    group.bench_function("baseline_form_decode", |b| {
        b.iter(|| black_box(uf.attributes().decode_form(black_box(FORM), &[]).expect("form")))
    });
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
