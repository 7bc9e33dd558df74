//! The whole invitation round trip in one process: an administrator of
//! Contoso invites alice@fabrikam.example, the invitation mail arrives in the
//! development outbox, Alice opens the link, proves her address with the
//! one-time passcode mailed to her, accepts consent, and is an accepted
//! guest.
//!
//! Run it with `cargo run --example invite_and_redeem`.

use std::sync::Arc;

use guestpass::audit::MemoryAudit;
use guestpass::directory::MemoryStore;
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::random::{SecureRandom, SystemRandom};
use guestpass::{ConsentDecision, Finished, GuestPass, InvitationRequest, Inviter, RedemptionStep};

const BASE_URL: &str = "http://127.0.0.1:8080/";
const APP_URL: &str = "https://app.contoso.example/welcome";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A fresh key per run; a real host loads its keys from its secret store.
    let mut secret = [0u8; 32];
    SystemRandom::new().fill(&mut secret)?;

    let outbox = Arc::new(Outbox::new());
    let audit = Arc::new(MemoryAudit::new());
    let guestpass = GuestPass::builder()
        .tenant("contoso", "Contoso", "contoso.example")
        .public_base_url(BASE_URL)
        .privacy_statement_url("https://contoso.example/privacy")
        .signing_key(SigningKey::new("2026-11", secret)?)
        .redirect_url(APP_URL)
        .store(Arc::new(MemoryStore::new()))
        .mail(outbox.clone())
        .audit(audit.clone())
        .build()?;

    println!("1. An administrator invites alice@fabrikam.example");
    let mut request = InvitationRequest::new("alice@fabrikam.example", APP_URL);
    request.invited_user_display_name = Some("Alice Smith".into());
    let invitation = guestpass.invite(&Inviter::admin(None), request).await?;
    println!("   invitation {} is {:?}", invitation.id, invitation.status);

    let mail = outbox
        .last_to("alice@fabrikam.example")
        .ok_or("no invitation mail")?;
    println!(
        "2. Mail to {}: \"{}\" ({})",
        mail.to.address, mail.subject, mail.language
    );
    let link = mail
        .link_starting_with(BASE_URL)
        .ok_or("no redemption link in the mail")?;
    let ticket = url::Url::parse(link)?
        .query_pairs()
        .find(|(k, _)| k == "ticket")
        .map(|(_, v)| v.into_owned())
        .ok_or("no ticket in the link")?;
    println!("   the link points at {BASE_URL}redeem?ticket=…");

    println!("3. Alice opens the link (GET: shows, redeems nothing)");
    let view = guestpass.view_redemption(&ticket).await?;
    println!("   \"{} invited {}\"", view.organization, view.invited_email);

    println!("4. Alice continues (POST): a passcode is mailed to her");
    let started = guestpass.start_redemption(&ticket).await?;
    if let RedemptionStep::EnterPasscode { sent_to } = &started.step {
        println!("   passcode sent to {sent_to}");
    }
    let code_mail = outbox
        .last_to("alice@fabrikam.example")
        .ok_or("no passcode mail")?;
    let digits = usize::from(guestpass.config().passcode_policy().digits);
    let code = code_mail.code(digits).ok_or("no passcode in the mail")?;

    println!("5. Alice types a wrong code, then the right one");
    let wrong = if code == "00000000" {
        "11111111"
    } else {
        "00000000"
    };
    if let Err(e) = guestpass.submit_passcode(started.handle.expose(), wrong).await {
        println!("   wrong code: {e} (HTTP {})", e.status().as_u16());
    }
    let step = guestpass.submit_passcode(started.handle.expose(), code).await?;
    if let RedemptionStep::Consent {
        organization,
        permissions,
        ..
    } = &step
    {
        println!(
            "   address proven; {organization} asks for consent to read: {}",
            permissions.join(", ")
        );
    }

    println!("6. Alice accepts");
    match guestpass
        .finish_redemption(started.handle.expose(), ConsentDecision::Accept)
        .await?
    {
        Finished::Redeemed(done) => {
            println!(
                "   {} is {:?}, signs in with {:?}",
                done.user.user_principal_name,
                done.user.external_user_state,
                done.user.identities.iter().map(|i| &i.issuer).collect::<Vec<_>>()
            );
            println!("   redirect to {}", done.redirect_url);
        }
        Finished::Declined => println!("   declined"),
    }

    println!("7. The same link again is refused");
    match guestpass.start_redemption(&ticket).await {
        Err(e) => println!("   {e} (HTTP {})", e.status().as_u16()),
        Ok(_) => return Err("a used ticket was accepted".into()),
    }

    println!("Audit trail:");
    for event in audit.events() {
        println!("   {:?}", event.kind);
    }
    Ok(())
}
