//! A self-service sign-up in one process, as a stranger would go through
//! it on Woodgrove's site: the app sends them to the sign-up flow, they pick
//! the email one-time passcode, prove their address with the code from the
//! development outbox, fill in the attributes the flow collects (the first
//! try has a mistake the form points out), pass the flow's API connector
//! (answered in-process here), and land back at the app with a signed token
//! that the app verifies against the published JWKS. Then they sign up
//! again and are signed in to the same account instead of getting a second
//! one.
//!
//! Run it with `cargo run --example self_service_signup`.

use std::sync::Arc;

use guestpass::clock::{Clock, FixedClock};
use guestpass::directory::MemoryStore;
use guestpass::flow::config::SignUpConfig;
use guestpass::flow::token::{TokenAlgorithm, TokenKeys, TokenSigningKey, TokenVerifier};
use guestpass::http::{FnHttpClient, HttpResponse, header};
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::random::{SecureRandom, SystemRandom};
use guestpass::{FlowAction, FlowPage, FlowStep, GuestPass, SignUpRequest};

const BASE_URL: &str = "http://127.0.0.1:8080/";
const CLIENT_ID: &str = "woodgrove-groceries";
const REDIRECT: &str = "https://woodgrove.example/signin-oidc";

const CONFIG: &str = r#"{
  "applications": [{
    "clientId": "woodgrove-groceries",
    "displayName": "Woodgrove Groceries",
    "redirectUris": ["https://woodgrove.example/signin-oidc"]
  }],
  "userFlows": [{
    "id": "woodgrove-customers",
    "displayName": "Woodgrove customers",
    "identityProviders": ["emailOtp"],
    "applications": ["woodgrove-groceries"],
    "attributes": [
      {"name": "displayName"},
      {"name": "givenName"},
      {"name": "surname"},
      {"name": "city", "isOptional": true},
      {"name": "postalCode", "isOptional": true, "pattern": "[0-9]{4} ?[A-Z]{2}"},
      {"name": "extension_0f8fad5bd9cb469fa16570867728950e_loyaltyTier",
       "dataType": "string", "userInputType": "radioSingleSelect",
       "label": {"en-US": "Loyalty tier", "de-DE": "Treuestufe"},
       "userAttributeValues": [
         {"value": "bronze", "name": "Bronze", "isDefault": true},
         {"value": "gold", "name": "Gold"}
       ]}
    ],
    "apiConnectors": [{
      "displayName": "Loyalty check",
      "targetUrl": "https://loyalty.woodgrove.example/api/check",
      "authentication": {"type": "basic", "username": "guestpass", "password": "example-only"},
      "step": "postAttributeCollection",
      "onUnavailable": {"block": {"default": "Sign-up is not available right now"}}
    }],
    "localization": {"en-US": {"attributesTitle": "Tell Woodgrove about yourself"}}
  }]
}"#;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rng = SystemRandom::new();
    // Fresh keys per run; a real host loads them from its secret store.
    let mut secret = [0u8; 32];
    rng.fill(&mut secret)?;
    let token_keys = TokenKeys::new(TokenSigningKey::generate("2026-12", TokenAlgorithm::Es256, &rng)?);

    // The loyalty API: lets every sign-up through and sets the tier.
    let loyalty = Arc::new(FnHttpClient::new(|_attempt, request| {
        let body: serde_json::Value = serde_json::from_slice(request.body()).unwrap_or_default();
        println!(
            "   (loyalty API called at step {} for {})",
            body["step"], body["email"]
        );
        let mut response =
            HttpResponse::new(br#"{"version":"1.0.0","action":"Continue","city":"Redmond"}"#.to_vec());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            header::HeaderValue::from_static("application/json"),
        );
        Ok(response)
    }));

    let outbox = Arc::new(Outbox::new());
    // The example's own clock, so that "the next day" is one call away.
    let clock = Arc::new(FixedClock::new(time::OffsetDateTime::now_utc()));
    let guestpass = GuestPass::builder()
        .clock(clock.clone())
        .tenant("woodgrove", "Woodgrove", "woodgrove.example")
        .public_base_url(BASE_URL)
        .signing_key(SigningKey::new("2026-12", secret)?)
        .redirect_url(REDIRECT)
        .store(Arc::new(MemoryStore::new()))
        .mail(outbox.clone())
        .sign_up(SignUpConfig::from_json(CONFIG)?)
        .token_keys(token_keys)
        .http_client(loyalty)
        .build()?;

    // The app verifies completion tokens with the published keys.
    let jwks = guestpass.jwks().ok_or("no token keys")?;
    let verifier = TokenVerifier::from_jwks(&jwks, BASE_URL, CLIENT_ID)?;

    println!("1. Ada opens Woodgrove and chooses to sign up");
    let first = sign_up(&guestpass, &outbox, &verifier, &clock, true).await?;
    clock.advance(time::Duration::days(1));
    println!("7. The next day Ada signs up again with the same address");
    let second = sign_up(&guestpass, &outbox, &verifier, &clock, false).await?;
    if first != second {
        return Err("a second sign-up made a second account".into());
    }
    let users = guestpass.users().await?;
    println!(
        "   The directory holds {} user(s): one account, signed in twice",
        users.len()
    );
    for user in users {
        println!(
            "   {} {:?} {:?} created by {:?}, attributes {}",
            user.user_principal_name,
            user.user_type,
            user.external_user_state,
            user.creation_type,
            serde_json::to_string(&user.attributes)?
        );
    }
    Ok(())
}

/// One pass through the flow; the user id the token names.
async fn sign_up(
    gp: &GuestPass,
    outbox: &Outbox,
    verifier: &TokenVerifier,
    clock: &FixedClock,
    new_person: bool,
) -> Result<String, Box<dyn std::error::Error>> {
    let mut request = SignUpRequest::new(CLIENT_ID, REDIRECT);
    request.nonce = Some("n-0S6_WzA2Mj".into());
    request.state = Some("af0ifjsldkj".into());
    let started = gp.start_sign_up(request).await?;
    let handle = started.handle.expose().to_owned();
    let mut page = started.page;
    if let FlowStep::ChooseProvider { title, providers } = &page.step {
        println!("2. {title}: {providers:?}; Ada picks the email one-time passcode");
    }
    page = next(gp, &handle, &page, FlowAction::ChooseProvider("emailOtp".into())).await?;
    page = next(
        gp,
        &handle,
        &page,
        FlowAction::SubmitEmail("Ada@Fabrikam.example".into()),
    )
    .await?;
    if let FlowStep::EnterPasscode { sent_to, .. } = &page.step {
        println!("3. A code went to {sent_to}");
    }
    let mail = outbox.messages().pop().ok_or("no passcode mail")?;
    let code = mail.code(8).ok_or("no code in the mail")?.to_owned();
    page = next(gp, &handle, &page, FlowAction::SubmitPasscode(code.into())).await?;
    if new_person {
        if let FlowStep::CollectAttributes { title, fields, .. } = &page.step {
            let names: Vec<&str> = fields.iter().map(|f| f.label.as_str()).collect();
            println!("4. {title}: {}", names.join(", "));
        }
        let wrong = b"displayName=Ada+L&givenName=Ada&surname=&postalCode=12345\
&extension_0f8fad5bd9cb469fa16570867728950e_loyaltyTier=gold"
            .to_vec();
        page = next(gp, &handle, &page, FlowAction::SubmitAttributes(wrong)).await?;
        if let FlowStep::CollectAttributes { fields, .. } = &page.step {
            for f in fields.iter().filter(|f| f.error.is_some()) {
                println!(
                    "   the form says {}: {}",
                    f.name,
                    f.error.as_deref().unwrap_or_default()
                );
            }
        }
        let right = b"displayName=Ada+L&givenName=Ada&surname=Lovelace&postalCode=1234+AB\
&extension_0f8fad5bd9cb469fa16570867728950e_loyaltyTier=gold"
            .to_vec();
        println!("5. Ada corrects the form and submits it");
        page = next(gp, &handle, &page, FlowAction::SubmitAttributes(right)).await?;
    }
    let FlowStep::Completed(done) = page.step else {
        return Err(format!("the flow did not complete: {:?}", page.step).into());
    };
    let claims = verifier.verify_with_nonce(done.id_token.expose(), "n-0S6_WzA2Mj", clock.now())?;
    println!(
        "6. Back at {} with state {:?}: token for {} (idp {}, amr {:?}, {}), {}",
        done.redirect_uri,
        done.state.as_deref().unwrap_or_default(),
        claims.email,
        claims.identity_provider,
        claims.amr,
        if done.signed_in {
            "signed in"
        } else {
            "new account"
        },
        claims.subject
    );
    Ok(claims.subject.to_string())
}

async fn next(
    gp: &GuestPass,
    handle: &str,
    page: &FlowPage,
    action: FlowAction,
) -> Result<FlowPage, guestpass::Error> {
    gp.advance_flow(handle, page.csrf_token.expose(), action).await
}
