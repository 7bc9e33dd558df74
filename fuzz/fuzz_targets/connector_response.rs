//! Fuzzes `parse_response`, the reader of API connector answers.
//!
//! The first two bytes (big-endian) choose the status, folded into 100..=999;
//! the rest is the body, sent with a JSON content type. Parsing must never
//! panic, and what it accepts must hold:
//!
//! - `Unavailable` only for a `5xx` status;
//! - `Continue` and `Block` only with 200, `ValidationError` only with 400;
//! - a user message is trimmed, not empty, within `MAX_USER_MESSAGE_CHARS`
//!   and free of control characters;
//! - `Continue` claims are at most `MAX_RETURNED_CLAIMS`, have valid names and
//!   string, boolean, number or string-array values, and written back as a
//!   `Continue` body they parse to the same claims.

#![no_main]

use guestpass::flow::connector::{
    ClaimValue, ConnectorOutcome, MAX_CLAIM_ARRAY_LEN, MAX_CLAIM_VALUE_CHARS, MAX_RESPONSE_BODY,
    MAX_RETURNED_CLAIMS, MAX_USER_MESSAGE_CHARS, is_valid_claim_name, parse_response,
};
use guestpass::http::{HeaderMap, HeaderValue, StatusCode, header};
use libfuzzer_sys::fuzz_target;

fn check_message(message: &str) {
    assert!(!message.is_empty(), "empty message");
    assert_eq!(message, message.trim(), "message not trimmed");
    assert!(
        message.chars().count() <= MAX_USER_MESSAGE_CHARS,
        "message too long"
    );
    assert!(
        !message.chars().any(char::is_control),
        "control character in {message:?}"
    );
}

fn check_text(text: &str) {
    assert!(text.chars().count() <= MAX_CLAIM_VALUE_CHARS);
    assert!(
        !text.chars().any(char::is_control),
        "control character in {text:?}"
    );
}

fuzz_target!(|data: &[u8]| {
    let (code, body) = match data {
        [a, b, rest @ ..] => (u16::from_be_bytes([*a, *b]), rest),
        _ => (200, data),
    };
    let status = match StatusCode::from_u16(100 + code % 900) {
        Ok(s) => s,
        Err(e) => panic!("status {code} not folded into range: {e}"),
    };
    let mut headers = HeaderMap::new();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));

    match parse_response(status, &headers, body) {
        ConnectorOutcome::Unavailable { .. } => assert!(status.is_server_error()),
        ConnectorOutcome::Block { user_message } => {
            assert_eq!(status, StatusCode::OK);
            check_message(&user_message);
        }
        ConnectorOutcome::ValidationError { user_message } => {
            assert_eq!(status, StatusCode::BAD_REQUEST);
            check_message(&user_message);
        }
        ConnectorOutcome::Continue { claims } => {
            assert_eq!(status, StatusCode::OK);
            assert!(body.len() <= MAX_RESPONSE_BODY);
            assert!(claims.len() <= MAX_RETURNED_CLAIMS);
            for (name, value) in &claims {
                assert!(is_valid_claim_name(name), "claim name {name:?}");
                match value {
                    ClaimValue::Bool(_) | ClaimValue::Number(_) => {}
                    ClaimValue::String(text) => check_text(text),
                    ClaimValue::Array(items) => {
                        assert!(items.len() <= MAX_CLAIM_ARRAY_LEN);
                        for item in items {
                            match item {
                                ClaimValue::String(text) => check_text(text),
                                other => panic!("array element {other:?}"),
                            }
                        }
                    }
                    other => panic!("claim value {other:?}"),
                }
            }
            // Valid claim names need no escaping; `Display` of a value is JSON.
            let mut again = String::from(r#"{"version":"1.0.0","action":"Continue""#);
            for (name, value) in &claims {
                again.push_str(&format!(r#","{name}":{value}"#));
            }
            again.push('}');
            let again = again.into_bytes();
            assert_eq!(
                parse_response(StatusCode::OK, &headers, &again),
                ConnectorOutcome::Continue { claims }
            );
        }
        ConnectorOutcome::Malformed { reason } => {
            let text = reason.to_string();
            assert!(!text.is_empty() && !text.ends_with('.'));
        }
        other => panic!("unknown outcome {other:?}"),
    }
});
