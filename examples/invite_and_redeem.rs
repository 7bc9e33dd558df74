//! The whole invitation round trip in one process: an administrator of
//! Contoso invites alice@fabrikam.example, the invitation mail arrives in the
//! development outbox, Alice opens the link, proves her address with the
//! one-time passcode mailed to her, accepts consent and Contoso's terms of
//! use (recorded with their version), and is an accepted guest.
//!
//! Run it with `cargo run --example invite_and_redeem`: the directory is
//! then kept in memory. `--database URL` keeps it in a database instead:
//!
//! - `--database sqlite://PATH` or `--database PATH.db`: a SQLite file,
//!   created if missing (build with `--features sqlite`);
//! - `--database postgres://user@host:port/db`: a PostgreSQL database (build
//!   with `--features postgres`).
//!
//! For example `cargo run --example invite_and_redeem --features sqlite --
//! --database /tmp/guestpass-demo.db`. Use a fresh database: Alice redeems,
//! so a second run on the same one finds her invitation completed already
//! and stops there.

use std::sync::Arc;

use guestpass::audit::MemoryAudit;
use guestpass::directory::{DirectoryStore, InvitationStatus, MemoryStore};
use guestpass::keys::SigningKey;
use guestpass::mail::Outbox;
use guestpass::policy::TermsOfUse;
use guestpass::random::{SecureRandom, SystemRandom};
use guestpass::{ConsentDecision, Finished, GuestPass, InvitationRequest, Inviter, RedemptionStep};

const BASE_URL: &str = "http://127.0.0.1:8080/";
const APP_URL: &str = "https://app.contoso.example/welcome";
const USAGE: &str = "usage: cargo run --example invite_and_redeem [--features sqlite|postgres] -- \
[--database sqlite://PATH | PATH.db | postgres://USER@HOST:PORT/DB]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let Some(database) = database_argument(std::env::args().skip(1))? else {
        println!("{USAGE}");
        return Ok(());
    };
    let store = open_store(database.as_deref()).await?;

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
        .terms_of_use(TermsOfUse::new(
            "contoso-guest-terms",
            "Contoso terms for guests",
            "https://contoso.example/guest-terms",
            1,
        )?)
        .store(store)
        .mail(outbox.clone())
        .audit(audit.clone())
        .build()?;

    println!("1. An administrator invites alice@fabrikam.example");
    let mut request = InvitationRequest::new("alice@fabrikam.example", APP_URL);
    request.invited_user_display_name = Some("Alice Smith".into());
    let invitation = guestpass.invite(&Inviter::admin(None), request).await?;
    println!("   invitation {} is {:?}", invitation.id, invitation.status);
    if invitation.status == InvitationStatus::Completed {
        println!("   Alice redeemed in this directory before: run again on a fresh database");
        return Ok(());
    }

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

    println!("6. Alice consents, then reads and accepts the terms of use");
    let handle = started.handle.expose();
    let mut finished = guestpass
        .finish_redemption(handle, ConsentDecision::Accept)
        .await?;
    if let Finished::TermsOfUse { terms } = &finished {
        println!(
            "   terms: {} version {} at {}",
            terms.display_name(),
            terms.version(),
            terms.url()
        );
        finished = guestpass
            .answer_terms_of_use(handle, ConsentDecision::Accept)
            .await?;
    }
    match finished {
        Finished::Redeemed(done) => {
            println!(
                "   {} is {:?}, signs in with {:?}",
                done.user.user_principal_name,
                done.user.external_user_state,
                done.user.identities.iter().map(|i| &i.issuer).collect::<Vec<_>>()
            );
            for a in &done.user.agreement_acceptances {
                println!(
                    "   accepted {} version {} at {}",
                    a.agreement_id, a.version, a.recorded_date_time
                );
            }
            println!("   redirect to {}", done.redirect_url);
        }
        other => println!("   not redeemed: {other:?}"),
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

/// The `--database` argument: `Ok(None)` for `--help`, `Ok(Some(None))`
/// when there is none.
fn database_argument(
    mut args: impl Iterator<Item = String>,
) -> Result<Option<Option<String>>, Box<dyn std::error::Error>> {
    let mut database = None;
    while let Some(arg) = args.next() {
        if arg == "--help" || arg == "-h" {
            return Ok(None);
        }
        let value = match arg.strip_prefix("--database") {
            Some("") => args.next(),
            Some(rest) => rest.strip_prefix('=').map(str::to_owned),
            None => None,
        };
        match value {
            Some(v) if !v.is_empty() => database = Some(v),
            _ => return Err(format!("unexpected argument `{arg}` (see --help)").into()),
        }
    }
    Ok(Some(database))
}

/// The directory store `--database` names: in memory when absent.
async fn open_store(database: Option<&str>) -> Result<Arc<dyn DirectoryStore>, Box<dyn std::error::Error>> {
    match database {
        None => {
            println!("Directory: in memory");
            Ok(Arc::new(MemoryStore::new()))
        }
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            open_postgres(url).await
        }
        Some(path) if path.starts_with("sqlite:") || path.ends_with(".db") => open_sqlite(path).await,
        Some(other) => Err(format!(
            "--database `{other}` is neither a postgres:// URL, a sqlite:// URL nor a path ending in .db"
        )
        .into()),
    }
}

#[cfg(feature = "sqlite")]
async fn open_sqlite(path: &str) -> Result<Arc<dyn DirectoryStore>, Box<dyn std::error::Error>> {
    let store = guestpass::directory::SqliteStore::open(path).await?;
    println!("Directory: {store:?}");
    Ok(Arc::new(store))
}

#[cfg(not(feature = "sqlite"))]
async fn open_sqlite(path: &str) -> Result<Arc<dyn DirectoryStore>, Box<dyn std::error::Error>> {
    Err(format!(
        "--database `{path}` needs the SQLite store, which this build lacks: \
         run with `cargo run --example invite_and_redeem --features sqlite -- --database {path}`"
    )
    .into())
}

#[cfg(feature = "postgres")]
async fn open_postgres(url: &str) -> Result<Arc<dyn DirectoryStore>, Box<dyn std::error::Error>> {
    let store = guestpass::directory::PostgresStore::connect(url).await?;
    println!("Directory: {store:?}");
    Ok(Arc::new(store))
}

#[cfg(not(feature = "postgres"))]
async fn open_postgres(_url: &str) -> Result<Arc<dyn DirectoryStore>, Box<dyn std::error::Error>> {
    Err(
        "--database postgres://... needs the PostgreSQL store, which this build lacks: \
         run with `cargo run --example invite_and_redeem --features postgres -- --database postgres://...`"
            .into(),
    )
}
