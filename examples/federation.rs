//! Guests who bring their own identity: the identity provider presets, the
//! redemption order, and one invitation redeemed end to end through a real
//! OpenID provider.
//!
//! Run it with `cargo run --example federation --features reqwest`. It
//! needs no network: the presets for Microsoft accounts, Entra
//! organisations, Google and Facebook are configured (nothing is fetched
//! until a guest signs in), and the sign-in that runs goes to a small
//! OpenID provider this example starts on `127.0.0.1` — it stands for
//! Fabrikam's own provider, federated directly for `fabrikam.example`.
//!
//! # Registering the app at each provider
//!
//! Every provider must know its redirect URI exactly as
//! [`GuestPass::federation_redirect_uri`] returns it: the public base URL
//! followed by `federation/callback/` and the provider's id (here
//! `http://127.0.0.1:8080/federation/callback/fabrikam` for Fabrikam,
//! `.../federation/callback/google` for Google, and so on). Then:
//!
//! - **Microsoft account** ([`presets::microsoft_account`]): Entra admin
//!   center → *App registrations* → *New registration*, account types
//!   "Personal Microsoft accounts only", platform *Web* with the redirect
//!   URI; copy the *Application (client) ID*; *Certificates & secrets* → a
//!   new client secret's **Value**; delegated permissions `openid`, `email`,
//!   `profile`.
//! - **Entra organisations** ([`presets::entra_organizations`]): the same,
//!   with account types "Accounts in any organizational directory"; pass
//!   the partner tenants' ids to admit only them, and register the provider
//!   with their verified domains so the redemption order sends their
//!   people there.
//! - **Google** ([`presets::google`]): Google Cloud console → *APIs &
//!   Services* → *OAuth consent screen* (scopes `openid`, `email`,
//!   `profile`) → *Credentials* → *OAuth client ID* of type *Web
//!   application* with the redirect URI; copy the client id and secret. A
//!   Workspace domain restricts sign-in to it (the `hd` claim is enforced).
//! - **Facebook** ([`presets::facebook`]): Meta for Developers → *Create
//!   app* → *Facebook Login* → *Valid OAuth Redirect URIs* with the redirect
//!   URI; copy the App ID and App Secret. Facebook is offered for
//!   self-service sign-up only, never for invitations.
//! - **Direct federation** ([`presets::direct_federation`]): the partner
//!   registers a confidential client in its own OpenID provider with the
//!   redirect URI and the `openid email profile` scopes and gives you the
//!   issuer, client id and secret; the provider is then the authority for
//!   the partner's domain.
//!
//! Secrets here are placeholders; a real host loads them from its secret
//! store.

#[path = "../tests/support/oidc_op.rs"]
mod oidc_op;

use std::sync::Arc;

use guestpass::http::ReqwestClient;
use guestpass::idp::order::{
    CandidateKind, FallbackProvider, PartnerTenant, PrimaryProvider, RedemptionOrder,
};
use guestpass::idp::presets;
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::random::{SecureRandom, SystemRandom};
use guestpass::{ConsentDecision, Finished, GuestPass, InvitationRequest, Inviter, RedemptionStep};

use oidc_op::{OidcTestProvider, OpOptions, TestClient, TestUser};

const BASE_URL: &str = "http://127.0.0.1:8080/";
const CALLBACK: &str = "http://127.0.0.1:8080/federation/callback/fabrikam";
const APP_URL: &str = "https://app.contoso.example/welcome";

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Fabrikam's OpenID provider, on a loopback port.
    let op = OidcTestProvider::start(OpOptions {
        clients: vec![TestClient::new(
            "contoso-guests",
            "fabrikam-issued-secret",
            &[CALLBACK],
        )],
        ..OpOptions::default()
    })
    .await;
    op.set_user(TestUser::new("5b1c9e2a-alice", "alice@fabrikam.example"));
    println!("Fabrikam's OpenID provider: {}", op.issuer());

    let fabrikam = presets::direct_federation(
        "fabrikam",
        "fabrikam.example",
        op.issuer(),
        "contoso-guests",
        "fabrikam-issued-secret",
    )?;
    let msa = presets::microsoft_account("00000000-0000-0000-0000-00000000c0de", "msa-client-secret")?;
    let entra = presets::entra_organizations(
        "00000000-0000-0000-0000-00000000c0de",
        "entra-client-secret",
        Some(vec!["72f988bf-86f1-41af-91ab-2d7cd011db47".into()]),
    )?;
    let google = presets::google(
        "1234-contoso.apps.googleusercontent.com",
        "google-client-secret",
        None,
    )?;
    let facebook = presets::facebook("1234567890", "facebook-app-secret")?;

    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret)?;
    let outbox = Arc::new(Outbox::new());
    let gp = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(BASE_URL)
        .signing_key(SigningKey::new("2026-12", secret)?)
        .redirect_url(APP_URL)
        .store(Arc::new(guestpass::directory::MemoryStore::new()))
        .mail(outbox.clone())
        .http_client(Arc::new(ReqwestClient::new()?))
        .identity_provider(
            Arc::new(entra),
            CandidateKind::Organization {
                tenants: vec![PartnerTenant::new(
                    "72f988bf-86f1-41af-91ab-2d7cd011db47",
                    ["microsoft.example"],
                )],
            },
        )
        .identity_provider(
            Arc::new(fabrikam),
            CandidateKind::DirectFederation {
                domains: vec!["fabrikam.example".into()],
            },
        )
        .identity_provider(Arc::new(google), CandidateKind::Google { hosted_domain: None })
        .identity_provider(Arc::new(msa), CandidateKind::MicrosoftAccount)
        .identity_provider(Arc::new(facebook), CandidateKind::Facebook)
        .redemption_order(RedemptionOrder::new(
            vec![
                PrimaryProvider::AzureActiveDirectory,
                PrimaryProvider::ExternalFederation,
                PrimaryProvider::SocialIdentityProviders,
            ],
            FallbackProvider::DefaultConfiguredIdp,
            true,
            Some(presets::MICROSOFT_ACCOUNT_ID.into()),
        )?)
        .build()?;
    println!(
        "Redirect URIs to register: {} (Fabrikam), {} (Google), ...",
        gp.federation_redirect_uri("fabrikam")?,
        gp.federation_redirect_uri(presets::GOOGLE_ID)?
    );

    println!("1. Contoso invites alice@fabrikam.example");
    gp.invite(
        &Inviter::admin(None),
        InvitationRequest::new("alice@fabrikam.example", APP_URL),
    )
    .await?;
    let mail = outbox.messages().pop().ok_or("no invitation mail")?;
    let link = mail.link_starting_with(BASE_URL).ok_or("no link")?.to_owned();
    let ticket = link.split("ticket=").nth(1).ok_or("no ticket")?;

    println!("2. Alice opens the link; the redemption order picks Fabrikam's provider");
    let started = gp.start_redemption(ticket).await?;
    let handle = started.handle.expose().to_owned();
    let RedemptionStep::SignInWith { provider, url } = started.step else {
        return Err(format!("expected a federated sign-in, got {:?}", started.step).into());
    };
    println!("   sign in with `{provider}` (no passcode mailed)");

    println!("3. Alice signs in at Fabrikam, which redirects back with a code");
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    let response = browser.get(url.as_str()).send().await?;
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .ok_or("the provider did not redirect")?;
    let query = url::Url::parse(location)?.query().unwrap_or_default().to_owned();

    println!("4. Contoso checks state, PKCE, the ID token and that it is the invited address");
    let step = gp.redemption_callback(&handle, &provider, &query).await?;
    if let RedemptionStep::Consent { organization, .. } = step {
        println!("   {organization} asks for consent");
    }
    match gp.finish_redemption(&handle, ConsentDecision::Accept).await? {
        Finished::Redeemed(done) => {
            for i in &done.user.identities {
                println!(
                    "   accepted; signs in as {} at {}",
                    i.issuer_assigned_id, i.issuer
                );
            }
        }
        other => return Err(format!("not redeemed: {other:?}").into()),
    }

    println!("5. A Gmail address would go to Google, any other to the passcode");
    for address in ["carol@gmail.com", "dave@woodgrove.example"] {
        gp.invite(&Inviter::admin(None), InvitationRequest::new(address, APP_URL))
            .await?;
        let mail = outbox
            .messages()
            .into_iter()
            .rev()
            .find(|m| m.to.address.as_str() == address)
            .ok_or("no invitation mail")?;
        let link = mail.link_starting_with(BASE_URL).ok_or("no link")?.to_owned();
        let ticket = link.split("ticket=").nth(1).ok_or("no ticket")?;
        let view = gp.view_redemption(ticket).await?;
        let way = view.sign_in_with.as_deref().unwrap_or("email one-time passcode");
        println!("   {}: {way}", view.invited_email);
    }
    op.shutdown().await;
    Ok(())
}
