//! The dev mailbox: every message the portal sent, newest first, with the
//! links of a message clickable. Only when mail stays in the process (the
//! default; `--smtp` sends it out instead).
//!
//! Only links on the portal's own base URL become clickable, so a message
//! cannot turn the mailbox into a way to somewhere else.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use minijinja::context;

use super::{Shared, page};

/// The routes.
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/dev/mailbox", get(list))
        .route("/dev/mailbox/{n}", get(show))
}

fn no_mailbox(portal: &Shared) -> Response {
    page::message(
        portal,
        StatusCode::NOT_FOUND,
        "No dev mailbox",
        "Mail goes to an SMTP server; the dev mailbox is off.",
    )
}

/// `GET /dev/mailbox`.
async fn list(State(portal): State<Shared>) -> Response {
    let Some(outbox) = &portal.deps.outbox else {
        return no_mailbox(&portal);
    };
    let messages: Vec<_> = outbox
        .messages()
        .iter()
        .enumerate()
        .rev()
        .map(|(n, m)| {
            context! {
                n,
                to => m.to.address.to_string(),
                subject => m.subject.clone(),
                kind => format!("{:?}", m.kind),
                language => m.language,
            }
        })
        .collect();
    page::render(&portal, StatusCode::OK, "mailbox.html", context! { messages })
}

/// Pieces of a text body: plain text, or a link on `base`.
pub fn linkify(text: &str, base: &str) -> Vec<(String, bool)> {
    let mut pieces = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(base) {
        let (before, from) = rest.split_at(start);
        if !before.is_empty() {
            pieces.push((before.to_owned(), false));
        }
        let end = from
            .find(|c: char| c.is_whitespace() || c == '<' || c == '>' || c == '"')
            .unwrap_or(from.len());
        let (link, after) = from.split_at(end);
        pieces.push((link.to_owned(), true));
        rest = after;
    }
    if !rest.is_empty() {
        pieces.push((rest.to_owned(), false));
    }
    pieces
}

/// `GET /dev/mailbox/{n}`.
async fn show(State(portal): State<Shared>, Path(n): Path<String>) -> Response {
    let Some(outbox) = &portal.deps.outbox else {
        return no_mailbox(&portal);
    };
    let messages = outbox.messages();
    let Some(m) = n.parse::<usize>().ok().and_then(|n| messages.get(n)) else {
        return page::message(
            &portal,
            StatusCode::NOT_FOUND,
            "No such message",
            "The mailbox has no such message.",
        );
    };
    let pieces: Vec<_> = linkify(&m.text_body, portal.deps.base.as_str())
        .into_iter()
        .map(|(text, link)| context! { text, link })
        .collect();
    page::render(
        &portal,
        StatusCode::OK,
        "mail.html",
        context! {
            to => m.to.address.to_string(),
            subject => m.subject.clone(),
            language => m.language,
            pieces,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::linkify;

    #[test]
    fn only_own_links_become_links() {
        let p = linkify(
            "Open http://127.0.0.1:8080/redeem?ticket=a.b now, not https://evil.example/x",
            "http://127.0.0.1:8080/",
        );
        assert_eq!(
            p,
            vec![
                ("Open ".to_owned(), false),
                ("http://127.0.0.1:8080/redeem?ticket=a.b".to_owned(), true),
                (" now, not https://evil.example/x".to_owned(), false),
            ]
        );
    }
}
