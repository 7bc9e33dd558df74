//! API connectors through the public API: request shape, every response
//! shape, the retry policy, and that the password never leaks.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use base64::Engine as _;
use guestpass::flow::connector::{
    ConnectorAuth, ConnectorConfig, ConnectorError, ConnectorIdentity, ConnectorInput, ConnectorOutcome,
    ConnectorStep, LocalizedMessage, MAX_CLAIM_VALUE_CHARS, MAX_RESPONSE_BODY, MAX_RETURNED_CLAIMS,
    MAX_USER_MESSAGE_CHARS, MalformedReason, OnUnavailable, UnavailableReason, build_request, call,
    is_valid_claim_name, parse_response,
};
use guestpass::http::{FnHttpClient, HeaderMap, HttpError, HttpResponse, StatusCode, header};
use proptest::prelude::*;
use serde_json::{Value, json};

const PASSWORD: &str = "Corr3ct-Horse-Battery";
const URL: &str = "https://approvals.example.com/api/check";

fn config(step: ConnectorStep) -> ConnectorConfig {
    ConnectorConfig::new(
        "Check approval status",
        URL,
        ConnectorAuth::Basic {
            username: "guestpass".into(),
            password: PASSWORD.into(),
        },
        step,
        OnUnavailable::Block(
            LocalizedMessage::new("Sign-up is not available right now")
                .unwrap()
                .with_locale("fr", "L'inscription est indisponible")
                .unwrap(),
        ),
    )
    .unwrap()
}

fn input() -> ConnectorInput {
    ConnectorInput::new("93fd07aa-333c-409d-955d-96008fd08dd9")
        .with_email("johnsmith@fabrikam.example")
        .with_identity(ConnectorIdentity::new("federated", "facebook.com", "0123456789"))
        .with_claim("displayName", "John Smith")
        .with_claim("givenName", "John")
        .with_claim("extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Newsletter", true)
        .with_claim("extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Seats", 12)
        .with_claim(
            "extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Regions",
            json!(["EU", "US"]),
        )
        .with_ui_locales("en-US")
}

fn response(status: u16, body: &str) -> Result<HttpResponse, HttpError> {
    let mut r = HttpResponse::new(body.as_bytes().to_vec());
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, "application/json".parse().unwrap());
    Ok(r)
}

/// A client answering `answers` in order (the last one repeats).
fn scripted(answers: Vec<Result<HttpResponse, HttpError>>) -> FnHttpClient {
    FnHttpClient::new(move |n, _| match answers.get(n).or(answers.last()) {
        Some(Ok(r)) => {
            let mut copy = HttpResponse::new(r.body().clone());
            *copy.status_mut() = r.status();
            *copy.headers_mut() = r.headers().clone();
            Ok(copy)
        }
        Some(Err(e)) => Err(e.clone()),
        None => Err(HttpError::Other {
            message: "no answer scripted".into(),
        }),
    })
}

fn run<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(future)
}

fn call_with(client: &FnHttpClient, step: ConnectorStep) -> ConnectorOutcome {
    run(call(client, &config(step), &input())).unwrap()
}

#[test]
fn request_body_has_exactly_the_entra_fields() {
    let request = build_request(&config(ConnectorStep::PostAttributeCollection), &input()).unwrap();
    let body: Value = serde_json::from_slice(request.body()).unwrap();
    assert_eq!(
        body,
        json!({
            "email": "johnsmith@fabrikam.example",
            "identities": [
                {"signInType": "federated", "issuer": "facebook.com", "issuerAssignedId": "0123456789"}
            ],
            "displayName": "John Smith",
            "givenName": "John",
            "extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Newsletter": true,
            "extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Seats": 12,
            "extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Regions": ["EU", "US"],
            "step": "PostAttributeCollection",
            "client_id": "93fd07aa-333c-409d-955d-96008fd08dd9",
            "ui_locales": "en-US"
        })
    );

    let federation = build_request(&config(ConnectorStep::PostFederationSignup), &input()).unwrap();
    let body: Value = serde_json::from_slice(federation.body()).unwrap();
    assert_eq!(body["step"], "PostFederationSignup");
}

#[test]
fn request_head_is_a_json_post_with_basic_auth() {
    let request = build_request(&config(ConnectorStep::PostAttributeCollection), &input()).unwrap();
    assert_eq!(request.method(), "POST");
    assert_eq!(request.uri(), URL);
    assert_eq!(request.headers()[header::CONTENT_TYPE], "application/json");
    let expected = base64::engine::general_purpose::STANDARD.encode(format!("guestpass:{PASSWORD}"));
    assert_eq!(
        request.headers()[header::AUTHORIZATION],
        format!("Basic {expected}").as_str()
    );
}

#[test]
fn password_never_shows_in_debug_display_or_errors() {
    let c = config(ConnectorStep::PostAttributeCollection);
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("guestpass:{PASSWORD}"));
    let request = build_request(&c, &input()).unwrap();
    let bad_input = build_request(&c, &ConnectorInput::new("c").with_claim("step", "x")).unwrap_err();
    let bad_config = ConnectorConfig::new(
        "x",
        "http://approvals.example.com/",
        c.authentication().clone(),
        ConnectorStep::PostAttributeCollection,
        c.on_unavailable().clone(),
    )
    .unwrap_err();
    let bad_user = ConnectorConfig::new(
        "x",
        URL,
        ConnectorAuth::Basic {
            username: "a:b".into(),
            password: PASSWORD.into(),
        },
        ConnectorStep::PostAttributeCollection,
        c.on_unavailable().clone(),
    )
    .unwrap_err();
    let shown = [
        format!("{c:?}"),
        format!("{:?}", c.authentication()),
        format!("{request:?}"),
        format!("{:?}", request.headers()),
        format!("{bad_input} {bad_input:?}"),
        format!("{bad_config} {bad_config:?}"),
        format!("{bad_user} {bad_user:?}"),
        format!("{}", guestpass::Error::from(bad_user.clone())),
    ];
    for text in shown {
        assert!(!text.contains(PASSWORD), "{text}");
        assert!(!text.contains(&encoded), "{text}");
    }
}

#[test]
fn config_deserializes_from_camel_case_and_refuses_to_continue_when_unavailable() {
    let good = json!({
        "displayName": "Check approval status",
        "targetUrl": URL,
        "authentication": {"type": "basic", "username": "guestpass", "password": PASSWORD},
        "step": "postFederationSignup",
        "onUnavailable": {"block": {"default": "Not now", "localized": {"nl": "Nu niet"}}}
    });
    let c: ConnectorConfig = serde_json::from_value(good.clone()).unwrap();
    assert_eq!(c.step(), ConnectorStep::PostFederationSignup);
    assert_eq!(c.timeout(), Duration::from_secs(20));
    assert_eq!(c.on_unavailable().message().for_locales(Some("nl-NL")), "Nu niet");

    let cert: ConnectorConfig = serde_json::from_value(json!({
        "displayName": "Check approval status",
        "targetUrl": URL,
        "authentication": {"type": "clientCertificate", "certificate": "approvals"},
        "step": "postAttributeCollection",
        "timeoutSeconds": 5,
        "onUnavailable": {"block": {"default": "Not now"}}
    }))
    .unwrap();
    assert_eq!(cert.timeout(), Duration::from_secs(5));

    let variants = [
        ("onUnavailable", json!({"continue": {}})),
        ("onUnavailable", json!("continue")),
        ("onUnavailable", json!({"block": {"default": ""}})),
        ("timeoutSeconds", json!(21)),
        ("timeoutSeconds", json!(0)),
        ("targetUrl", json!("http://approvals.example.com/")),
        ("targetUrl", json!("https://approvals.example.com/#x")),
        ("step", json!("PostFederationSignup")),
        ("authentication", json!({"type": "basic", "username": "u"})),
        ("extraField", json!(1)),
    ];
    for (field, value) in variants {
        let mut bad = good.clone();
        bad[field] = value;
        let err = serde_json::from_value::<ConnectorConfig>(bad)
            .unwrap_err()
            .to_string();
        assert!(!err.contains(PASSWORD), "{field}: {err}");
    }
}

#[test]
fn continue_with_claims() {
    let client = scripted(vec![response(
        200,
        r#"{"version":"1.0.0","action":"Continue","postalCode":"12349","extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Seats":3,"extension_Tier":["gold"]}"#,
    )]);
    let outcome = call_with(&client, ConnectorStep::PostAttributeCollection);
    let expected = BTreeMap::from([
        ("postalCode".to_owned(), json!("12349")),
        (
            "extension_4f1c0e2b9a8d4c3e8b7a6f5e4d3c2b1a_Seats".to_owned(),
            json!(3),
        ),
        ("extension_Tier".to_owned(), json!(["gold"])),
    ]);
    assert_eq!(outcome, ConnectorOutcome::Continue { claims: expected });
    assert_eq!(client.calls(), 1);
}

#[test]
fn show_block_page() {
    let client = scripted(vec![response(
        200,
        r#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":"Your access request is waiting for approval."}"#,
    )]);
    let outcome = call_with(&client, ConnectorStep::PostFederationSignup);
    assert_eq!(
        outcome,
        ConnectorOutcome::Block {
            user_message: "Your access request is waiting for approval.".into()
        }
    );
    let c = config(ConnectorStep::PostFederationSignup);
    assert_eq!(
        outcome.block_message(c.on_unavailable(), Some("fr")),
        Some("Your access request is waiting for approval.")
    );
    assert_eq!(client.calls(), 1);
}

#[test]
fn validation_error_with_400() {
    let client = scripted(vec![response(
        400,
        r#"{"version":"1.0.0","status":400,"action":"ValidationError","userMessage":"Please enter a valid postal code."}"#,
    )]);
    let outcome = call_with(&client, ConnectorStep::PostAttributeCollection);
    assert_eq!(
        outcome,
        ConnectorOutcome::ValidationError {
            user_message: "Please enter a valid postal code.".into()
        }
    );
    assert_eq!(client.calls(), 1, "a 4xx is not retried");

    let client = scripted(vec![response(
        400,
        r#"{"version":"1.0.0","status":"400","action":"ValidationError","userMessage":"Bad"}"#,
    )]);
    assert_eq!(
        call_with(&client, ConnectorStep::PostFederationSignup),
        ConnectorOutcome::Malformed {
            reason: MalformedReason::ValidationErrorNotAllowed
        }
    );
}

#[test]
fn malformed_answers_are_not_retried_and_block_with_the_configured_message() {
    let cases: Vec<(u16, String, MalformedReason)> = vec![
        (
            200,
            "{not json".into(),
            MalformedReason::InvalidJson { line: 1, column: 2 },
        ),
        (
            200,
            r#"{"version":"1.0.0","action":"Approve"}"#.into(),
            MalformedReason::UnknownAction {
                action: "Approve".into(),
            },
        ),
        (
            200,
            r#"{"version":"1.0","action":"Continue"}"#.into(),
            MalformedReason::UnsupportedVersion {
                version: "1.0".into(),
            },
        ),
        (
            200,
            r#"{"action":"Continue"}"#.into(),
            MalformedReason::MissingField { field: "version" },
        ),
        (200, "42".into(), MalformedReason::NotAnObject),
        (
            200,
            r#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":"x","givenName":"y"}"#.into(),
            MalformedReason::UnexpectedField {
                field: "givenName".into(),
                action: "ShowBlockPage",
            },
        ),
        (
            200,
            r#"{"version":"1.0.0","action":"ShowBlockPage","userMessage":""}"#.into(),
            MalformedReason::InvalidUserMessage { problem: "is empty" },
        ),
        (
            200,
            format!(
                r#"{{"version":"1.0.0","action":"ShowBlockPage","userMessage":"{}"}}"#,
                "a".repeat(MAX_USER_MESSAGE_CHARS + 1)
            ),
            MalformedReason::InvalidUserMessage {
                problem: "is too long",
            },
        ),
        (
            200,
            r#"{"version":"1.0.0","action":"Continue","city":"a\u001bb"}"#.into(),
            MalformedReason::InvalidClaimValue {
                name: "city".into(),
                problem: "string contains control characters",
            },
        ),
        (
            200,
            format!(
                r#"{{"version":"1.0.0","action":"Continue","city":"{}"}}"#,
                "a".repeat(MAX_CLAIM_VALUE_CHARS + 1)
            ),
            MalformedReason::InvalidClaimValue {
                name: "city".into(),
                problem: "string too long",
            },
        ),
        (404, "".into(), MalformedReason::UnexpectedStatus { status: 404 }),
    ];
    let c = config(ConnectorStep::PostAttributeCollection);
    for (status, body, reason) in cases {
        let client = scripted(vec![response(status, &body)]);
        let outcome = call_with(&client, ConnectorStep::PostAttributeCollection);
        assert_eq!(outcome, ConnectorOutcome::Malformed { reason }, "{status} {body}");
        assert_eq!(client.calls(), 1, "{status} {body}");
        assert_eq!(
            outcome.block_message(c.on_unavailable(), Some("fr-FR")),
            Some("L'inscription est indisponible")
        );
    }
}

#[test]
fn huge_body_is_malformed() {
    let huge = format!(
        r#"{{"version":"1.0.0","action":"ShowBlockPage","userMessage":"{}"}}"#,
        "x".repeat(MAX_RESPONSE_BODY)
    );
    let client = scripted(vec![response(200, &huge)]);
    assert_eq!(
        call_with(&client, ConnectorStep::PostAttributeCollection),
        ConnectorOutcome::Malformed {
            reason: MalformedReason::BodyTooLarge {
                limit: MAX_RESPONSE_BODY
            }
        }
    );
    assert_eq!(client.calls(), 1);
    // The same answer handed to the parser directly.
    let outcome = parse_response(StatusCode::OK, &HeaderMap::new(), huge.as_bytes());
    assert!(matches!(
        outcome,
        ConnectorOutcome::Malformed {
            reason: MalformedReason::BodyTooLarge { .. }
        }
    ));
}

#[test]
fn timeout_is_retried_once_then_unavailable() {
    let client = scripted(vec![Err(HttpError::Timeout)]);
    let outcome = call_with(&client, ConnectorStep::PostAttributeCollection);
    assert_eq!(
        outcome,
        ConnectorOutcome::Unavailable {
            reason: UnavailableReason::Timeout
        }
    );
    assert_eq!(client.calls(), 2);
    let c = config(ConnectorStep::PostAttributeCollection);
    assert_eq!(
        outcome.block_message(c.on_unavailable(), None),
        Some("Sign-up is not available right now")
    );
    // Both attempts carry the configured deadline and the body cap.
    for limits in client.limits() {
        assert_eq!(limits.timeout(), Duration::from_secs(20));
        assert_eq!(limits.max_response_bytes(), MAX_RESPONSE_BODY);
    }
    // The retry sends the same request.
    let requests = client.requests();
    assert_eq!(requests[0].body(), requests[1].body());
    assert_eq!(requests[0].headers(), requests[1].headers());
}

#[test]
fn server_error_is_retried_once_then_unavailable() {
    let client = scripted(vec![response(503, "busy")]);
    assert_eq!(
        call_with(&client, ConnectorStep::PostAttributeCollection),
        ConnectorOutcome::Unavailable {
            reason: UnavailableReason::ServerError { status: 503 }
        }
    );
    assert_eq!(client.calls(), 2);
}

#[test]
fn a_retry_that_succeeds_is_used() {
    let client = scripted(vec![
        Err(HttpError::Connect {
            message: "connection refused".into(),
        }),
        response(200, r#"{"version":"1.0.0","action":"Continue"}"#),
    ]);
    assert_eq!(
        call_with(&client, ConnectorStep::PostAttributeCollection),
        ConnectorOutcome::Continue {
            claims: BTreeMap::new()
        }
    );
    assert_eq!(client.calls(), 2);
}

#[test]
fn transport_failures_other_than_timeout_and_connect_are_not_retried() {
    let client = scripted(vec![Err(HttpError::Other {
        message: "connection reset".into(),
    })]);
    assert_eq!(
        call_with(&client, ConnectorStep::PostAttributeCollection),
        ConnectorOutcome::Unavailable {
            reason: UnavailableReason::Transport {
                message: "connection reset".into()
            }
        }
    );
    assert_eq!(client.calls(), 1);
}

#[test]
fn invalid_input_sends_nothing() {
    let counter = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&counter);
    let client = FnHttpClient::new(move |_, _| {
        seen.fetch_add(1, Ordering::SeqCst);
        response(200, r#"{"version":"1.0.0","action":"Continue"}"#)
    });
    let c = config(ConnectorStep::PostAttributeCollection);
    let result = run(call(
        &client,
        &c,
        &ConnectorInput::new("c").with_claim("email", "x@y"),
    ));
    assert_eq!(
        result,
        Err(ConnectorError::ReservedClaim { name: "email".into() })
    );
    assert_eq!(counter.load(Ordering::SeqCst), 0);
    assert_eq!(client.calls(), 0);
}

fn claim_name() -> impl Strategy<Value = String> {
    prop_oneof![
        "[A-Za-z][A-Za-z0-9_]{0,30}",
        "[0-9a-f]{32}".prop_map(|app| format!("extension_{app}_Attr")),
    ]
    .prop_filter("reserved", |n| {
        ![
            "version",
            "action",
            "status",
            "userMessage",
            "email",
            "identities",
            "step",
            "client_id",
            "ui_locales",
        ]
        .contains(&n.as_str())
    })
}

fn claim_value() -> impl Strategy<Value = Value> {
    let text = "[^\\p{Cc}\u{200E}\u{200F}\u{202A}-\u{202E}\u{2066}-\u{2069}]{0,40}";
    prop_oneof![
        text.prop_map(Value::String),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        prop::collection::vec(text, 0..5).prop_map(Value::from),
    ]
}

proptest! {
    #[test]
    fn arbitrary_answers_never_panic(status in 100u16..1000, body in prop::collection::vec(any::<u8>(), 0..512)) {
        let status = StatusCode::from_u16(status).unwrap();
        let outcome = parse_response(status, &HeaderMap::new(), &body);
        match outcome {
            ConnectorOutcome::Block { user_message } | ConnectorOutcome::ValidationError { user_message } => {
                prop_assert!(!user_message.is_empty());
                prop_assert!(user_message.chars().count() <= MAX_USER_MESSAGE_CHARS);
                prop_assert!(!user_message.chars().any(char::is_control));
            }
            ConnectorOutcome::Continue { claims } => {
                prop_assert_eq!(status, StatusCode::OK);
                prop_assert!(claims.len() <= MAX_RETURNED_CLAIMS);
                prop_assert!(claims.keys().all(|k| is_valid_claim_name(k)));
            }
            ConnectorOutcome::Unavailable { .. } => prop_assert!(status.is_server_error()),
            _ => {}
        }
    }

    #[test]
    fn json_shaped_answers_never_panic(
        action in prop_oneof![Just("Continue".to_owned()), Just("ShowBlockPage".to_owned()), Just("ValidationError".to_owned()), "[A-Za-z]{0,12}"],
        version in prop_oneof![Just("1.0.0".to_owned()), "[0-9.]{0,6}"],
        message in proptest::option::of(".{0,40}"),
        extra in prop::collection::btree_map("[A-Za-z_][A-Za-z0-9_-]{0,8}", any::<i32>(), 0..4),
        status in prop_oneof![Just(200u16), Just(400u16), 100u16..600],
    ) {
        let mut object = serde_json::Map::new();
        object.insert("version".into(), json!(version));
        object.insert("action".into(), json!(action));
        if let Some(m) = message {
            object.insert("userMessage".into(), json!(m));
        }
        for (k, v) in extra {
            object.insert(k, json!(v));
        }
        let body = Value::Object(object).to_string();
        let status = StatusCode::from_u16(status).unwrap();
        let _ = parse_response(status, &HeaderMap::new(), body.as_bytes());
    }

    #[test]
    fn continue_claims_round_trip(claims in prop::collection::btree_map(claim_name(), claim_value(), 0..MAX_RETURNED_CLAIMS)) {
        let mut object = serde_json::Map::new();
        object.insert("version".into(), json!("1.0.0"));
        object.insert("action".into(), json!("Continue"));
        for (k, v) in &claims {
            object.insert(k.clone(), v.clone());
        }
        let body = serde_json::to_vec(&Value::Object(object)).unwrap();
        let outcome = parse_response(StatusCode::OK, &HeaderMap::new(), &body);
        prop_assert_eq!(outcome, ConnectorOutcome::Continue { claims });
    }

    #[test]
    fn block_messages_round_trip(message in "[^\\p{Cc}\u{200E}\u{200F}\u{202A}-\u{202E}\u{2066}-\u{2069}]{1,200}") {
        prop_assume!(!message.trim().is_empty());
        let body = json!({"version": "1.0.0", "action": "ShowBlockPage", "userMessage": message}).to_string();
        let outcome = parse_response(StatusCode::OK, &HeaderMap::new(), body.as_bytes());
        prop_assert_eq!(outcome, ConnectorOutcome::Block { user_message: message.trim().to_owned() });
    }
}
