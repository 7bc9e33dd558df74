//! The guestpass demo portal: Contoso's guest portal on
//! `http://127.0.0.1:8080/`, with a dev mailbox, admin pages, a self-service
//! sign-up user flow and a demo app that shows the signed-in user's claims.
//!
//! ```sh
//! cargo run --features demo --example portal
//! cargo run --features demo --example portal -- --database postgres://postgres@127.0.0.1:5432/postgres
//! cargo run --features demo --example portal -- --help
//! ```
//!
//! The portal prints a one-time administrator sign-in link and an admin API
//! token when it starts.

mod app;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let options = match app::Options::parse(std::env::args().skip(1)) {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{}", app::Options::USAGE);
            return Ok(());
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{}", app::Options::USAGE);
            std::process::exit(2);
        }
    };
    let mut running = app::start(options).await?;
    println!("{}", running.banner());
    println!("Listening on {}; Ctrl-C stops.", running.addr);
    let failed = tokio::select! {
        served = running.serve() => Some(served),
        _ = tokio::signal::ctrl_c() => None,
    };
    match failed {
        Some(outcome) => outcome,
        None => {
            running.stop().await;
            Ok(())
        }
    }
}
