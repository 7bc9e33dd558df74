//! Self-service sign-up end to end through the public API on the memory
//! store: the happy path with attributes, API connectors and a verified
//! completion token; existing accounts and no enumeration; CSRF, expiry,
//! step order; attribute form errors; every kind of connector answer;
//! redirect URI attacks; approval; races; passcode limits; and the
//! validation of the configuration. Every refusal is checked to leave the
//! store, the outbox, the audit log and the flow as they were.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use guestpass::audit::AuditKind;
use guestpass::directory::{
    CreationType, DirectoryStore, EMAIL_OTP_ISSUER, ExternalUserState, ObjectIdentity, SignInType, UserType,
};
use guestpass::error::{Category, Denied, PasscodeError, StoreError};
use guestpass::flow::approval::{ApprovalRequest, Approver, ConnectorApprover};
use guestpass::flow::attributes::InputType;
use guestpass::flow::config::{IdentityProviderKind, SignUpConfig, TextKey};
use guestpass::flow::connector::ConnectorConfig;
use guestpass::flow::machine::{ApprovalVerdict, FlowError, FlowState};
use guestpass::flow::token::TokenVerifier;
use guestpass::http::{FnHttpClient, HeaderValue, HttpError, HttpResponse, StatusCode, header};
use guestpass::id::Id;
use guestpass::mail::MessageKind;
use guestpass::mail::templates::Language;
use guestpass::policy::InviterRole;
use guestpass::{Error, FlowAction, FlowPage, FlowStep, FormField, Inviter, SignUpRequest};
use serde_json::{Value, json};
use time::Duration;

const ADA: &str = "Ada@Fabrikam.example";
const NONCE: &str = "n-0S6_WzA2Mj";
const STATE: &str = "af0ifjsldkj";
const PASSWORD: &str = "s3cret-pw";
const BLOCKED_EN: &str = "Sign-up is paused";
const BLOCKED_DE: &str = "Die Registrierung ist pausiert";

// ---------------------------------------------------------------------------
// Configuration pieces
// ---------------------------------------------------------------------------

/// Seven attributes: two built-in, and custom ones of every data type, the
/// custom ones in select inputs (the date in its dropdowns).
fn full_attributes() -> String {
    format!(
        r#""attributes": [
            {{"name": "givenName"}},
            {{"name": "displayName", "label": {{"en-US": "Display name", "de-DE": "Anzeigename"}}}},
            {{"name": "{EXT}tier", "dataType": "string", "userInputType": "radioSingleSelect",
              "label": {{"en-US": "Loyalty tier", "de-DE": "Treuestufe"}},
              "userAttributeValues": [
                {{"name": "Bronze", "value": "bronze"}},
                {{"name": {{"en-US": "Silver", "de-DE": "Silber"}}, "value": "silver"}},
                {{"name": "Gold", "value": "gold"}}]}},
            {{"name": "{EXT}newsletter", "dataType": "boolean", "userInputType": "dropdownSingleSelect",
              "label": {{"en-US": "Newsletter", "de-DE": "Rundbrief"}},
              "userAttributeValues": [{{"name": "Yes", "value": "true"}}, {{"name": "No", "value": "false"}}]}},
            {{"name": "{EXT}seats", "dataType": "int64", "userInputType": "dropdownSingleSelect",
              "label": {{"en-US": "Seats", "de-DE": "Plätze"}},
              "userAttributeValues": [
                {{"name": "One", "value": "1"}}, {{"name": "Five", "value": "5"}}, {{"name": "Ten", "value": "10"}}]}},
            {{"name": "{EXT}interests", "dataType": "stringCollection", "isOptional": true,
              "label": {{"en-US": "Interests", "de-DE": "Interessen"}},
              "userAttributeValues": [
                {{"name": "Recipes", "value": "recipes"}}, {{"name": "Offers", "value": "offers"}},
                {{"name": "Delivery", "value": "delivery"}}]}},
            {{"name": "{EXT}birthday", "dataType": "dateTime", "label": {{"en-US": "Birthday", "de-DE": "Geburtstag"}}}}
        ]"#
    )
}

/// A submission of every attribute of [`full_attributes`].
fn full_body() -> String {
    format!(
        "givenName=Ada&displayName=Ada+Lovelace&{EXT}tier=gold&{EXT}newsletter=true&{EXT}seats=5\
         &{EXT}interests=offers&{EXT}interests=recipes&{EXT}birthday=1990-12-10&csrf_token=ignored&action=next"
    )
}

/// An API connector at `step` calling `https://api.woodgrove.example/{path}`.
fn connector(step: &str, path: &str) -> String {
    format!(
        r#"{{"displayName": "Woodgrove {path}", "targetUrl": "https://api.woodgrove.example/{path}",
            "authentication": {{"type": "basic", "username": "guestpass", "password": "{PASSWORD}"}},
            "step": "{step}",
            "onUnavailable": {{"block": {{"default": "{BLOCKED_EN}", "localized": {{"de": "{BLOCKED_DE}"}}}}}}}}"#
    )
}

/// Both connectors.
fn both_connectors() -> String {
    format!(
        r#""apiConnectors": [{}, {}]"#,
        connector("postFederationSignup", "prefill"),
        connector("postAttributeCollection", "check")
    )
}

/// A flow collecting only `givenName`.
fn simple_config() -> SignUpConfig {
    signup_config(r#""attributes": [{"name": "givenName"}]"#)
}

fn simple_harness() -> Harness {
    signup_harness(simple_config(), |b| b)
}

// ---------------------------------------------------------------------------
// A connector API answered in-process
// ---------------------------------------------------------------------------

type Answer = dyn Fn(usize, &str, &Value) -> Result<HttpResponse, HttpError> + Send + Sync;

/// A client whose answers come from `f(call, step, request body)`.
fn api(
    f: impl Fn(usize, &str, &Value) -> Result<HttpResponse, HttpError> + Send + Sync + 'static,
) -> Arc<FnHttpClient> {
    let f: Box<Answer> = Box::new(f);
    Arc::new(FnHttpClient::new(move |call, request| {
        let body: Value = serde_json::from_slice(request.body()).expect("the request body is json");
        let step = body["step"].as_str().unwrap_or_default().to_owned();
        f(call, &step, &body)
    }))
}

fn reply(status: u16, body: &Value) -> Result<HttpResponse, HttpError> {
    raw_reply(status, serde_json::to_vec(body).unwrap())
}

fn raw_reply(status: u16, body: Vec<u8>) -> Result<HttpResponse, HttpError> {
    let mut r = HttpResponse::new(body);
    *r.status_mut() = StatusCode::from_u16(status).unwrap();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(r)
}

/// `Continue` with `claims` (an object).
fn continue_with(claims: Value) -> Result<HttpResponse, HttpError> {
    let mut body = json!({"version": "1.0.0", "action": "Continue"});
    for (k, v) in claims.as_object().unwrap() {
        body[k] = v.clone();
    }
    reply(200, &body)
}

fn block_page(message: &str) -> Result<HttpResponse, HttpError> {
    reply(
        200,
        &json!({"version": "1.0.0", "action": "ShowBlockPage", "userMessage": message}),
    )
}

fn validation_error(message: &str) -> Result<HttpResponse, HttpError> {
    reply(
        400,
        &json!({"version": "1.0.0", "status": 400, "action": "ValidationError", "userMessage": message}),
    )
}

/// The JSON bodies the client was sent, oldest first.
fn bodies(client: &FnHttpClient) -> Vec<Value> {
    client
        .requests()
        .iter()
        .map(|r| serde_json::from_slice(r.body()).unwrap())
        .collect()
}

// ---------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------

fn field<'a>(page: &'a FlowPage, name: &str) -> &'a FormField {
    let FlowStep::CollectAttributes { fields, .. } = &page.step else {
        panic!("not the attribute page: {:?}", page.step)
    };
    fields
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("no field {name}"))
}

fn completion(page: FlowPage) -> guestpass::Completion {
    match page.step {
        FlowStep::Completed(c) => *c,
        other => panic!("expected completion, got {other:?}"),
    }
}

fn blocked_message(page: &FlowPage) -> &str {
    match &page.step {
        FlowStep::Blocked { message } => message,
        other => panic!("expected a block page, got {other:?}"),
    }
}

fn csrf(e: Error) {
    assert_eq!(e, Error::Flow(FlowError::Csrf));
    assert_eq!(e.status().as_u16(), 403);
}

fn wrong_step(input: &'static str, actual: &'static str) -> Error {
    Error::Flow(FlowError::WrongStep { input, actual })
}

fn verifier(h: &Harness) -> TokenVerifier {
    TokenVerifier::from_jwks(&h.gp.jwks().expect("token keys"), BASE_URL, APP).unwrap()
}

fn admin() -> Inviter {
    Inviter::admin(Some(Id::from_bytes([7; 16])))
}

/// Runs a flow of `simple_config` for `email` to its end.
async fn sign_up_simple(h: &Harness, email: &str) -> guestpass::Completion {
    let (handle, page) = h.flow_past_passcode(signup_request(), email).await;
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Grace".to_vec()),
        )
        .await
        .unwrap();
    completion(page)
}

async fn flows_in_store(h: &Harness) -> u64 {
    // Purging far in the future counts (and removes) every flow.
    h.store
        .purge_expired(h.now() + Duration::days(3650), 10_000)
        .await
        .unwrap()
        .flows
}

// ---------------------------------------------------------------------------
// 1. Happy path
// ---------------------------------------------------------------------------

#[tokio::test]
async fn sign_up_with_attributes_connectors_and_a_verified_token() {
    let client = api(|_, step, _| match step {
        "PostFederationSignup" => continue_with(json!({
            "givenName": "Ada",
            format!("{EXT}tier"): "silver",
            "loyaltyNumber": "not collected, ignored"
        })),
        "PostAttributeCollection" => continue_with(json!({format!("{EXT}seats"): 10})),
        other => panic!("unexpected step {other}"),
    });
    let config = signup_config(&format!("{}, {}", full_attributes(), both_connectors()));
    let h = signup_harness(config, |b| b.http_client(client.clone()));
    let mut request = signup_request();
    request.nonce = Some(NONCE.into());
    request.state = Some(STATE.into());
    request.ui_locales = Some("en-US".into());

    // Start: the provider choice.
    let (handle, page) = h.start_flow(request).await;
    assert_eq!(page.language, Language::EnUs);
    let FlowStep::ChooseProvider { title, providers } = &page.step else {
        panic!("{:?}", page.step)
    };
    assert_eq!(title, "Choose how to sign in");
    assert_eq!(providers, &vec![IdentityProviderKind::EmailOtp]);
    let flow_id = page.flow_id;
    assert_eq!(
        h.flow(&handle).await.unwrap().value.state,
        FlowState::ChooseProvider
    );

    // Choose, enter the address: a code goes out.
    let page = h
        .post(&handle, &page, FlowAction::ChooseProvider("emailOtp".into()))
        .await
        .unwrap();
    assert!(
        matches!(&page.step, FlowStep::EnterEmail { error: None, .. }),
        "{:?}",
        page.step
    );
    let page = h
        .post(&handle, &page, FlowAction::SubmitEmail(ADA.into()))
        .await
        .unwrap();
    let FlowStep::EnterPasscode {
        sent_to,
        delivered,
        refused,
        ..
    } = &page.step
    else {
        panic!("{:?}", page.step)
    };
    assert_eq!((sent_to.as_str(), *delivered, refused), (ADA, true, &None));
    let mails = h.mails_of(MessageKind::Passcode);
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to.address.as_str(), ADA);
    assert_eq!(client.calls(), 0, "no connector before the address is proven");

    // The code: the postFederationSignup connector pre-fills the form.
    let code = h.code_for(ADA);
    let page = h
        .post(&handle, &page, FlowAction::SubmitPasscode(code.into()))
        .await
        .unwrap();
    let FlowStep::CollectAttributes {
        title,
        fields,
        message,
    } = &page.step
    else {
        panic!("{:?}", page.step)
    };
    assert_eq!(title, "Tell us about yourself");
    assert_eq!(message, &None);
    let names: Vec<&str> = fields.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        names,
        vec![
            "givenName".to_owned(),
            "displayName".to_owned(),
            format!("{EXT}tier"),
            format!("{EXT}newsletter"),
            format!("{EXT}seats"),
            format!("{EXT}interests"),
            format!("{EXT}birthday"),
        ]
    );
    assert_eq!(field(&page, "givenName").values, vec!["Ada".to_owned()]);
    assert_eq!(field(&page, "givenName").label, "Given Name");
    let tier = field(&page, &format!("{EXT}tier"));
    assert_eq!(tier.values, vec!["silver".to_owned()]);
    assert_eq!(tier.input_type, InputType::RadioSingleSelect);
    assert_eq!(tier.label, "Loyalty tier");
    assert_eq!(
        tier.choices,
        vec![
            ("bronze".to_owned(), "Bronze".to_owned()),
            ("silver".to_owned(), "Silver".to_owned()),
            ("gold".to_owned(), "Gold".to_owned())
        ]
    );
    assert!(tier.required && !tier.read_only && tier.error.is_none());
    let interests = field(&page, &format!("{EXT}interests"));
    assert_eq!(interests.input_type, InputType::CheckboxMultiSelect);
    assert!(!interests.required);
    assert_eq!(
        field(&page, &format!("{EXT}birthday")).input_type,
        InputType::DateTimeDropdown
    );
    assert_eq!(
        field(&page, &format!("{EXT}seats")).input_type,
        InputType::DropdownSingleSelect
    );

    // The postFederationSignup request, in Entra's wire format.
    let requests = client.requests();
    assert_eq!(requests.len(), 1);
    let expected_auth = format!(
        "Basic {}",
        b64_standard(format!("guestpass:{PASSWORD}").as_bytes())
    );
    assert_eq!(
        requests[0].headers()[header::AUTHORIZATION],
        expected_auth.as_str()
    );
    assert_eq!(requests[0].method(), "POST");
    assert_eq!(requests[0].uri(), "https://api.woodgrove.example/prefill");
    assert_eq!(
        bodies(&client)[0],
        json!({
            "email": ADA,
            "identities": [{"signInType": "federated", "issuer": "mail", "issuerAssignedId": key_of(ADA)}],
            "step": "PostFederationSignup",
            "client_id": APP,
            "ui_locales": "en-US",
        })
    );

    // The form: postAttributeCollection sees every value and overrides one.
    h.clock.advance(Duration::seconds(3));
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(full_body().into_bytes()),
        )
        .await
        .unwrap();
    let done = completion(page);
    let requests = client.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(
        requests[1].headers()[header::AUTHORIZATION],
        expected_auth.as_str()
    );
    assert_eq!(requests[1].uri(), "https://api.woodgrove.example/check");
    assert_eq!(
        bodies(&client)[1],
        json!({
            "email": ADA,
            "identities": [{"signInType": "federated", "issuer": "mail", "issuerAssignedId": key_of(ADA)}],
            "givenName": "Ada",
            "displayName": "Ada Lovelace",
            format!("{EXT}tier"): "gold",
            format!("{EXT}newsletter"): true,
            format!("{EXT}seats"): 5,
            format!("{EXT}interests"): ["recipes", "offers"],
            format!("{EXT}birthday"): "1990-12-10",
            "step": "PostAttributeCollection",
            "client_id": APP,
            "ui_locales": "en-US",
        })
    );

    // The completion goes to the registered redirect with the app's state.
    assert_eq!(done.redirect_uri.as_str(), APP_REDIRECT);
    assert_eq!(done.state.as_deref(), Some(STATE));
    assert!(!done.signed_in);

    // The token verifies with the published keys.
    let token = verifier(&h)
        .verify_with_nonce(done.id_token.expose(), NONCE, h.now())
        .unwrap();
    assert_eq!(token.subject, done.user_id);
    assert_eq!(token.email, ADA);
    assert_eq!(token.identity_provider, "mail");
    assert_eq!(token.amr, vec!["otp".to_owned()]);
    assert_eq!(token.user_type, UserType::Guest);
    assert_eq!(token.nonce.as_deref(), Some(NONCE));
    assert_eq!(token.audience, vec![APP.to_owned()]);
    assert_eq!(token.issuer, BASE_URL);
    assert_eq!(token.tenant_id, h.gp.config().tenant_object_id());
    assert!(
        verifier(&h)
            .verify_with_nonce(done.id_token.expose(), "another nonce", h.now())
            .is_err(),
        "the nonce is bound"
    );
    let other_app = TokenVerifier::from_jwks(&h.gp.jwks().unwrap(), BASE_URL, "another-app").unwrap();
    assert!(
        other_app.verify(done.id_token.expose(), h.now()).is_err(),
        "the audience is bound"
    );

    // The user.
    let users = h.gp.users().await.unwrap();
    assert_eq!(users.len(), 1);
    let user = &users[0];
    assert_eq!(user.id, done.user_id);
    assert_eq!(user.creation_type, Some(CreationType::SelfServiceSignUp));
    assert_eq!(user.user_type, UserType::Guest);
    assert_eq!(user.external_user_state, Some(ExternalUserState::Accepted));
    assert_eq!(user.external_user_state_change_date_time, Some(h.now()));
    assert_eq!(
        user.identities,
        vec![ObjectIdentity {
            sign_in_type: SignInType::Federated,
            issuer: EMAIL_OTP_ISSUER.to_owned(),
            issuer_assigned_id: key_of(ADA),
        }]
    );
    assert_eq!(user.mail.as_ref().map(|m| m.as_str()), Some(ADA));
    assert_eq!(user.display_name.as_deref(), Some("Ada Lovelace"));
    assert_eq!(
        user.user_principal_name,
        "ada_fabrikam.example#EXT#@contoso.example"
    );
    assert!(user.account_enabled);
    let attributes = serde_json::to_value(&user.attributes).unwrap();
    assert_eq!(
        attributes,
        json!({
            "givenName": "Ada",
            format!("{EXT}tier"): "gold",
            format!("{EXT}newsletter"): true,
            format!("{EXT}seats"): 10,
            format!("{EXT}interests"): ["recipes", "offers"],
            format!("{EXT}birthday"): "1990-12-10",
        }),
        "Graph names, the connector's override applied, displayName in its own field"
    );
    // Graph's JSON shows them at the top level.
    let graph = serde_json::to_value(user).unwrap();
    assert_eq!(graph["givenName"], "Ada");
    assert_eq!(graph[format!("{EXT}seats")], 10);
    assert_eq!(graph["creationType"], "SelfServiceSignUp");

    // The flow is completed; its page says so, and it cannot run again.
    let record = h.flow(&handle).await.unwrap();
    assert_eq!(
        record.value.state,
        FlowState::Completed {
            user_id: done.user_id,
            signed_in: false
        }
    );
    let view = h.gp.view_flow(&handle).await.unwrap();
    assert!(matches!(view.step, FlowStep::AlreadyCompleted), "{:?}", view.step);
    assert_eq!(view.flow_id, flow_id);
    assert_eq!(
        h.audit_kinds().last(),
        Some(&AuditKind::SignedUp {
            flow_id,
            user_flow_id: USER_FLOW.to_owned()
        })
    );
    assert_eq!(h.mails_of(MessageKind::Passcode).len(), 1, "one mail in all");
}

#[tokio::test]
async fn a_flow_collecting_email_fixes_it_to_the_proven_address() {
    let client = api(|_, _, _| continue_with(json!({})));
    let config = signup_config(&format!(
        r#""attributes": [{{"name": "email"}}, {{"name": "givenName"}}],
           "apiConnectors": [{}]"#,
        connector("postAttributeCollection", "check")
    ));
    let h = signup_harness(config, |b| b.http_client(client.clone()));
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    let email = field(&page, "email");
    assert_eq!(email.values, vec![ADA.to_owned()]);
    assert!(email.read_only);
    assert_eq!(email.input_type, InputType::EmailBox);

    // Another address in the form is refused with the flow's text.
    let before = h.flow(&handle).await.unwrap();
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"email=mallory%40evil.example&givenName=Ada".to_vec()),
        )
        .await
        .unwrap();
    let FlowStep::CollectAttributes { message, .. } = &page.step else {
        panic!("{:?}", page.step)
    };
    assert_eq!(
        message.as_deref(),
        Some("The email address must be the one you verified")
    );
    assert_eq!(client.calls(), 0);
    assert!(h.gp.users().await.unwrap().is_empty());
    assert!(h.flow(&handle).await.unwrap().version > before.version);

    // The proven address (in another spelling) goes through; the connector
    // gets it once, as `email`.
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"email=ada%40fabrikam.example&givenName=Ada".to_vec()),
        )
        .await
        .unwrap();
    let done = completion(page);
    let sent = &bodies(&client)[0];
    assert_eq!(sent["email"], ADA);
    assert_eq!(sent["givenName"], "Ada");
    let user = h.gp.user(done.user_id).await.unwrap();
    assert_eq!(user.mail.as_ref().map(|m| m.as_str()), Some(ADA));
    assert!(!user.attributes.contains_key("email"), "mail has its own field");
}

// ---------------------------------------------------------------------------
// 2. Existing accounts, no enumeration
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_existing_user_signing_up_again_is_signed_in() {
    let h = simple_harness();
    let first = sign_up_simple(&h, ADA).await;
    assert!(!first.signed_in);
    h.clock.advance(Duration::minutes(5));

    // Again, in another spelling: signed in after the passcode, no form.
    let mut request = signup_request();
    request.nonce = Some("second".into());
    let (handle, page) = h.flow_past_passcode(request, "ada@FABRIKAM.example").await;
    let again = completion(page);
    assert!(again.signed_in);
    assert_eq!(again.user_id, first.user_id);
    assert_eq!(h.gp.users().await.unwrap().len(), 1, "no second user");
    let token = verifier(&h)
        .verify_with_nonce(again.id_token.expose(), "second", h.now())
        .unwrap();
    assert_eq!(token.subject, first.user_id);
    assert_eq!(
        h.flow(&handle).await.unwrap().value.state,
        FlowState::Completed {
            user_id: first.user_id,
            signed_in: true
        }
    );
    let flow_id = h.flow(&handle).await.unwrap().value.id;
    assert_eq!(h.audit_kinds().last(), Some(&AuditKind::SignedIn { flow_id }));
    // The code went to the stored spelling.
    assert_eq!(h.outbox.messages().last().unwrap().to.address.as_str(), ADA);
}

#[tokio::test]
async fn an_invited_pending_address_ends_on_the_account_exists_page() {
    let h = simple_harness();
    let inv = h.invite("carol@fabrikam.example").await;
    let (handle, page) = h
        .flow_past_passcode(signup_request(), "carol@fabrikam.example")
        .await;
    assert_eq!(
        blocked_message(&page),
        "An account already exists for this address. If you were invited, open the link in your invitation"
    );
    let users = h.gp.users().await.unwrap();
    assert_eq!(users.len(), 1, "only the invited user");
    assert_eq!(users[0].id, inv.invited_user.id);
    assert_eq!(
        users[0].external_user_state,
        Some(ExternalUserState::PendingAcceptance)
    );
    assert!(users[0].identities.is_empty(), "the invitation is untouched");
    let view = h.gp.view_flow(&handle).await.unwrap();
    assert!(matches!(view.step, FlowStep::Blocked { .. }));
    let flow_id = view.flow_id;
    assert_eq!(
        h.audit_kinds().last(),
        Some(&AuditKind::SignUpBlocked { flow_id })
    );
    // The invitation still redeems.
    let ticket = h.ticket_for("carol@fabrikam.example");
    h.clock.advance(Duration::seconds(31));
    let redeemed = h.redeem(&ticket, "carol@fabrikam.example").await;
    assert_eq!(redeemed.user.id, inv.invited_user.id);
}

#[tokio::test]
async fn answers_before_the_passcode_are_the_same_for_known_and_unknown_addresses() {
    let h = simple_harness();
    sign_up_simple(&h, "Bea@Fabrikam.example").await;
    h.invite("carol@fabrikam.example").await;

    /// What a person sees, with the address they typed blanked.
    fn shape(page: &FlowPage, typed: &str) -> String {
        format!("{:?} {:?}", page.language, page.step).replace(typed, "<typed>")
    }

    let mut seen: Vec<Vec<String>> = Vec::new();
    for (typed, stored) in [
        ("bea@fabrikam.example", "Bea@Fabrikam.example"),
        ("carol@fabrikam.example", "carol@fabrikam.example"),
        ("dave@fabrikam.example", "dave@fabrikam.example"),
    ] {
        let mails = h.outbox.messages().len();
        let users = h.gp.users().await.unwrap();
        let started = h.gp.start_sign_up(signup_request()).await.unwrap();
        let handle = started.handle.expose().to_owned();
        let chosen = h
            .post(
                &handle,
                &started.page,
                FlowAction::ChooseProvider("emailOtp".into()),
            )
            .await
            .unwrap();
        let sent = h
            .post(&handle, &chosen, FlowAction::SubmitEmail(typed.into()))
            .await
            .unwrap();
        let viewed = h.gp.view_flow(&handle).await.unwrap();
        seen.push(vec![
            shape(&started.page, typed),
            shape(&chosen, typed),
            shape(&sent, typed),
            shape(&viewed, typed),
        ]);
        assert!(matches!(&sent.step, FlowStep::EnterPasscode { sent_to, .. } if sent_to == typed));
        let new_mails = &h.outbox.messages()[mails..];
        assert_eq!(new_mails.len(), 1, "exactly one mail for {typed}");
        assert_eq!(new_mails[0].kind, MessageKind::Passcode);
        assert_eq!(new_mails[0].to.address.as_str(), stored, "to the stored spelling");
        assert_eq!(h.gp.users().await.unwrap(), users, "nothing about users changes");
    }
    assert_eq!(seen[0], seen[2], "a signed-up address answers as an unknown one");
    assert_eq!(seen[1], seen[2], "an invited address answers as an unknown one");
}

// ---------------------------------------------------------------------------
// 3. CSRF
// ---------------------------------------------------------------------------

#[tokio::test]
async fn forms_without_the_pages_csrf_token_are_refused_and_change_nothing() {
    let h = simple_harness();
    h.track_address(ADA);
    let (handle, first) = h.start_flow(signup_request()).await;
    let (other_handle, other_page) = h.start_flow(signup_request()).await;
    let choose = || FlowAction::ChooseProvider("emailOtp".into());
    let forged_tokens = [
        String::new(),
        b64url(&[0u8; 24]),
        b64url(&[0u8; 32]),
        "not base64 at all!".to_owned(),
        "A".repeat(10_000),
        other_page.csrf_token.expose().to_owned(),
    ];
    for token in &forged_tokens {
        let e = h
            .flows_unchanged("forged csrf", h.gp.advance_flow(&handle, token, choose()))
            .await
            .unwrap_err();
        csrf(e);
    }
    // The other flow's token works on the other flow only.
    let other = h.post(&other_handle, &other_page, choose()).await.unwrap();
    assert!(matches!(other.step, FlowStep::EnterEmail { .. }));
    assert_eq!(
        h.flow(&handle).await.unwrap().value.state,
        FlowState::ChooseProvider
    );

    // A token of an earlier step of the same flow is stale.
    let second = h.post(&handle, &first, choose()).await.unwrap();
    csrf(
        h.flows_unchanged("replayed start token", h.post(&handle, &first, choose()))
            .await
            .unwrap_err(),
    );
    let third = h
        .post(&handle, &second, FlowAction::SubmitEmail(ADA.into()))
        .await
        .unwrap();
    // A doubled submission of the address would send a second code.
    csrf(
        h.flows_unchanged(
            "doubled address submission",
            h.post(&handle, &second, FlowAction::SubmitEmail(ADA.into())),
        )
        .await
        .unwrap_err(),
    );
    assert_eq!(h.mails_of(MessageKind::Passcode).len(), 1);
    // A token of a later page of another flow, or of this flow's view, at the same version.
    let viewed = h.gp.view_flow(&handle).await.unwrap();
    assert_eq!(
        viewed.csrf_token, third.csrf_token,
        "a view renders the current token"
    );
    let code = h.code_for(ADA);
    csrf(
        h.flows_unchanged(
            "other flow's token on the passcode",
            h.gp.advance_flow(
                &handle,
                other.csrf_token.expose(),
                FlowAction::SubmitPasscode(code.clone().into()),
            ),
        )
        .await
        .unwrap_err(),
    );
    // The right token still works.
    let page = h
        .post(&handle, &viewed, FlowAction::SubmitPasscode(code.into()))
        .await
        .unwrap();
    assert!(matches!(page.step, FlowStep::CollectAttributes { .. }));
    // The token of a passcode page cannot submit the attribute form.
    csrf(
        h.flows_unchanged(
            "stale token on the form",
            h.post(
                &handle,
                &third,
                FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
            ),
        )
        .await
        .unwrap_err(),
    );
    assert!(h.gp.users().await.unwrap().is_empty());
    // The CSRF check comes before anything else, even the step check.
    csrf(
        h.flows_unchanged(
            "forged token at a wrong step",
            h.gp.advance_flow(&handle, "", FlowAction::Resume),
        )
        .await
        .unwrap_err(),
    );
}

// ---------------------------------------------------------------------------
// 4. Expiry, ended flows, unknown handles
// ---------------------------------------------------------------------------

#[tokio::test]
async fn an_expired_flow_cannot_be_viewed_or_advanced() {
    let h = simple_harness();
    let (start_handle, start_page) = h.start_flow(signup_request()).await;
    let (handle, page) = h.flow_to_passcode(signup_request(), ADA).await;
    let code = h.code_for(ADA);
    h.clock.advance(Duration::hours(1) + Duration::seconds(1));
    let expired = Error::Flow(FlowError::Expired);
    assert_eq!(expired.status().as_u16(), 410);
    h.flow_fails_unchanged(
        "passcode after expiry",
        h.post(&handle, &page, FlowAction::SubmitPasscode(code.into())),
        expired.clone(),
    )
    .await;
    h.flow_fails_unchanged(
        "resend after expiry",
        h.post(&handle, &page, FlowAction::ResendPasscode),
        expired.clone(),
    )
    .await;
    h.flow_fails_unchanged("view after expiry", h.gp.view_flow(&handle), expired.clone())
        .await;
    h.flow_fails_unchanged(
        "choose after expiry",
        h.post(
            &start_handle,
            &start_page,
            FlowAction::ChooseProvider("emailOtp".into()),
        ),
        expired.clone(),
    )
    .await;
    assert!(h.gp.users().await.unwrap().is_empty());
}

#[tokio::test]
async fn an_expired_attribute_form_is_refused_even_with_errors() {
    let h = simple_harness();
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    h.clock.advance(Duration::hours(2));
    for body in [&b"givenName=Ada"[..], b"", b"unknown=1"] {
        h.flow_fails_unchanged(
            "form after expiry",
            h.post(&handle, &page, FlowAction::SubmitAttributes(body.to_vec())),
            Error::Flow(FlowError::Expired),
        )
        .await;
    }
    assert!(h.gp.users().await.unwrap().is_empty());
}

#[tokio::test]
async fn a_flow_lives_exactly_its_lifetime() {
    let h = simple_harness();
    let (handle, page) = h.start_flow(signup_request()).await;
    h.clock.advance(Duration::hours(1) - Duration::seconds(1));
    let page = h
        .post(&handle, &page, FlowAction::ChooseProvider("emailOtp".into()))
        .await
        .unwrap();
    h.clock.advance(Duration::seconds(1));
    h.flow_fails_unchanged(
        "at the expiry instant",
        h.post(&handle, &page, FlowAction::SubmitEmail(ADA.into())),
        Error::Flow(FlowError::Expired),
    )
    .await;
}

#[tokio::test]
async fn a_completed_or_blocked_flow_cannot_be_advanced() {
    let h = simple_harness();
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    let done = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap();
    let finished = Error::Flow(FlowError::Finished { state: "completed" });
    assert_eq!(finished.status().as_u16(), 410);
    for action in [
        FlowAction::Resume,
        FlowAction::SubmitAttributes(b"givenName=Eve".to_vec()),
        FlowAction::ChooseProvider("emailOtp".into()),
        FlowAction::SubmitEmail("eve@evil.example".into()),
        FlowAction::ResendPasscode,
        FlowAction::SubmitPasscode("12345678".into()),
    ] {
        h.flow_fails_unchanged(
            "action on a completed flow",
            h.post(&handle, &done, action),
            finished.clone(),
        )
        .await;
    }
    // Long after, the page still says it is done (and issues no token).
    h.clock.advance(Duration::days(2));
    let view = h.gp.view_flow(&handle).await.unwrap();
    assert!(matches!(view.step, FlowStep::AlreadyCompleted));
    assert_eq!(h.gp.users().await.unwrap().len(), 1);

    // A blocked flow too.
    let inv_h = simple_harness();
    inv_h.invite("carol@fabrikam.example").await;
    let (handle, page) = inv_h
        .flow_past_passcode(signup_request(), "carol@fabrikam.example")
        .await;
    inv_h
        .flow_fails_unchanged(
            "action on a blocked flow",
            inv_h.post(
                &handle,
                &page,
                FlowAction::SubmitAttributes(b"givenName=C".to_vec()),
            ),
            Error::Flow(FlowError::Finished { state: "blocked" }),
        )
        .await;
}

#[tokio::test]
async fn unknown_and_other_tenants_handles_are_unknown_flows() {
    let h = simple_harness();
    let (handle, page) = h.start_flow(signup_request()).await;
    let other = h
        .sibling(SEED + 1)
        .tenant(OTHER_TENANT, "Fabrikam", "fabrikam.example")
        .sign_up(simple_config())
        .token_keys(token_keys())
        .build()
        .unwrap();
    let unknown = Error::Flow(FlowError::UnknownFlow);
    assert_eq!(unknown.category(), Category::NotFound);
    h.flow_fails_unchanged("other tenant view", other.view_flow(&handle), unknown.clone())
        .await;
    h.flow_fails_unchanged(
        "other tenant advance",
        other.advance_flow(
            &handle,
            page.csrf_token.expose(),
            FlowAction::ChooseProvider("emailOtp".into()),
        ),
        unknown.clone(),
    )
    .await;
    let too_long = "h".repeat(65);
    for bogus in ["", "nope", b64url(&[1u8; 32]).as_str(), too_long.as_str()] {
        h.flow_fails_unchanged("unknown handle view", h.gp.view_flow(bogus), unknown.clone())
            .await;
        h.flow_fails_unchanged(
            "unknown handle advance",
            h.gp.advance_flow(
                bogus,
                page.csrf_token.expose(),
                FlowAction::ChooseProvider("emailOtp".into()),
            ),
            unknown.clone(),
        )
        .await;
    }
    // The other tenant's own flows are its own.
    let theirs = other.start_sign_up(signup_request()).await.unwrap();
    h.flow_fails_unchanged(
        "our view of their flow",
        h.gp.view_flow(theirs.handle.expose()),
        unknown.clone(),
    )
    .await;
    assert!(other.view_flow(theirs.handle.expose()).await.is_ok());
}

// ---------------------------------------------------------------------------
// 5. Step order
// ---------------------------------------------------------------------------

#[tokio::test]
async fn actions_of_other_steps_are_refused_and_change_nothing() {
    let h = simple_harness();
    h.track_address(ADA);
    let attrs = || FlowAction::SubmitAttributes(b"givenName=Ada".to_vec());
    let code = || FlowAction::SubmitPasscode("12345678".into());
    let choose = || FlowAction::ChooseProvider("emailOtp".into());
    let email = || FlowAction::SubmitEmail(ADA.into());

    let (handle, page) = h.start_flow(signup_request()).await;
    for (action, input) in [
        (code(), "submitPasscode"),
        (attrs(), "submitAttributes"),
        (FlowAction::Resume, "resume"),
        (FlowAction::ResendPasscode, "resendPasscode"),
        (email(), "submitEmail"),
    ] {
        h.flow_fails_unchanged(
            "at chooseProvider",
            h.post(&handle, &page, action),
            wrong_step(input, "chooseProvider"),
        )
        .await;
    }
    h.flow_fails_unchanged(
        "a provider the flow does not offer",
        h.post(&handle, &page, FlowAction::ChooseProvider("google".into())),
        Error::Flow(FlowError::ProviderNotOffered {
            provider: "google".into(),
        }),
    )
    .await;
    h.flow_fails_unchanged(
        "a malformed provider name",
        h.post(
            &handle,
            &page,
            FlowAction::ChooseProvider("no such\u{202e}".into()),
        ),
        Error::Flow(FlowError::ProviderNotOffered {
            provider: "no such".into(),
        }),
    )
    .await;

    let page = h.post(&handle, &page, choose()).await.unwrap();
    for (action, input) in [
        (code(), "submitPasscode"),
        (attrs(), "submitAttributes"),
        (FlowAction::Resume, "resume"),
        (FlowAction::ResendPasscode, "resendPasscode"),
        (choose(), "chooseProvider"),
    ] {
        h.flow_fails_unchanged(
            "at enterEmail",
            h.post(&handle, &page, action),
            wrong_step(input, "enterEmail"),
        )
        .await;
    }

    let page = h.post(&handle, &page, email()).await.unwrap();
    for (action, input) in [
        (attrs(), "submitAttributes"),
        (FlowAction::Resume, "resume"),
        (choose(), "chooseProvider"),
        (email(), "submitEmail"),
    ] {
        h.flow_fails_unchanged(
            "at passcode",
            h.post(&handle, &page, action),
            wrong_step(input, "passcode"),
        )
        .await;
    }

    let page = h
        .post(&handle, &page, FlowAction::SubmitPasscode(h.code_for(ADA).into()))
        .await
        .unwrap();
    for (action, input) in [
        (code(), "submitPasscode"),
        (FlowAction::Resume, "resume"),
        (choose(), "chooseProvider"),
        (email(), "submitEmail"),
        (FlowAction::ResendPasscode, "resendPasscode"),
    ] {
        h.flow_fails_unchanged(
            "at attributes",
            h.post(&handle, &page, action),
            wrong_step(input, "attributes"),
        )
        .await;
    }
    assert!(h.gp.users().await.unwrap().is_empty());
    completion(h.post(&handle, &page, attrs()).await.unwrap());
}

// ---------------------------------------------------------------------------
// 6. Attribute form errors
// ---------------------------------------------------------------------------

#[tokio::test]
async fn attribute_errors_come_back_next_to_their_fields_in_the_persons_language() {
    let client = api(|_, _, _| continue_with(json!({})));
    let config = signup_config(&format!("{}, {}", full_attributes(), both_connectors()));
    let h = signup_harness(config, |b| b.http_client(client.clone()));
    let mut request = signup_request();
    request.ui_locales = Some("de-DE en-US".into());
    let (handle, page) = h.flow_past_passcode(request, ADA).await;
    assert_eq!(page.language, Language::DeDe);
    let FlowStep::CollectAttributes { title, .. } = &page.step else {
        panic!("{:?}", page.step)
    };
    assert_eq!(title, "Erzählen Sie uns etwas über sich");
    assert_eq!(field(&page, &format!("{EXT}tier")).label, "Treuestufe");
    assert_eq!(
        field(&page, &format!("{EXT}tier")).choices[1],
        ("silver".to_owned(), "Silber".to_owned())
    );
    let calls = client.calls();
    let good = full_body();

    let long_name = "A".repeat(65);
    let cases: Vec<(String, String, String)> = vec![
        (
            good.replace(&format!("{EXT}seats=5"), &format!("{EXT}seats=viele")),
            format!("{EXT}seats"),
            "„Plätze“ muss eine ganze Zahl sein".to_owned(),
        ),
        (
            good.replace(&format!("{EXT}seats=5"), &format!("{EXT}seats=7")),
            format!("{EXT}seats"),
            "Bitte wählen Sie eine der Optionen für „Plätze“".to_owned(),
        ),
        (
            good.replace("givenName=Ada", &format!("givenName={long_name}")),
            "givenName".to_owned(),
            "„Vorname“ darf höchstens 64 Zeichen lang sein".to_owned(),
        ),
        (
            good.replace(&format!("{EXT}tier=gold"), &format!("{EXT}tier=platinum")),
            format!("{EXT}tier"),
            "Bitte wählen Sie eine der Optionen für „Treuestufe“".to_owned(),
        ),
        (
            good.replace(
                &format!("{EXT}newsletter=true"),
                &format!("{EXT}newsletter=vielleicht"),
            ),
            format!("{EXT}newsletter"),
            "Bitte wählen Sie Ja oder Nein für „Rundbrief“".to_owned(),
        ),
        (
            good.replace("1990-12-10", "1990-02-30"),
            format!("{EXT}birthday"),
            "„Geburtstag“ ist kein gültiges Datum".to_owned(),
        ),
        (
            good.replace(&format!("{EXT}interests=offers"), &format!("{EXT}interests=spam")),
            format!("{EXT}interests"),
            "Bitte wählen Sie eine der Optionen für „Interessen“".to_owned(),
        ),
        (
            good.replace("displayName=Ada+Lovelace&", ""),
            "displayName".to_owned(),
            "Bitte füllen Sie „Anzeigename“ aus".to_owned(),
        ),
    ];
    for (body, name, message) in cases {
        let page = h
            .flows_unchanged(
                &format!("error in {name}"),
                h.post(
                    &handle,
                    &page,
                    FlowAction::SubmitAttributes(body.clone().into_bytes()),
                ),
            )
            .await
            .unwrap();
        let FlowStep::CollectAttributes {
            fields, message: top, ..
        } = &page.step
        else {
            panic!("{:?}", page.step)
        };
        assert_eq!(top, &None, "{name}");
        let f = field(&page, &name);
        assert_eq!(f.error.as_deref(), Some(message.as_str()), "{name}");
        for other in fields.iter().filter(|f| f.name != name) {
            assert_eq!(other.error, None, "only {name} is wrong, not {}", other.name);
        }
        // The submitted values come back to be corrected.
        if name == "givenName" {
            assert_eq!(f.values, vec![long_name.clone()]);
        }
        assert_eq!(
            field(&page, &format!("{EXT}interests")).values.len(),
            2,
            "{name}: both chosen interests come back"
        );
        assert_eq!(page.language, Language::DeDe);
        assert_eq!(client.calls(), calls, "no connector call for a bad form");
    }

    // An unknown field is an error of the form as a whole.
    let page = h
        .flows_unchanged(
            "unknown field",
            h.post(
                &handle,
                &page,
                FlowAction::SubmitAttributes(format!("{good}&isAdmin=true").into_bytes()),
            ),
        )
        .await
        .unwrap();
    let FlowStep::CollectAttributes { message, fields, .. } = &page.step else {
        panic!("{:?}", page.step)
    };
    assert_eq!(
        message.as_deref(),
        Some("Das Formular enthält Felder, die nicht zu dieser Registrierung gehören")
    );
    assert!(fields.iter().all(|f| f.error.is_none()));
    assert!(h.gp.users().await.unwrap().is_empty());

    // Corrected, it completes (the error page's token is still the flow's).
    let done = completion(
        h.post(&handle, &page, FlowAction::SubmitAttributes(good.into_bytes()))
            .await
            .unwrap(),
    );
    assert_eq!(
        h.gp.user(done.user_id).await.unwrap().attributes["givenName"],
        "Ada"
    );
}

#[tokio::test]
async fn an_oversized_form_is_refused_without_being_read() {
    let h = simple_harness();
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    let mut body = b"givenName=".to_vec();
    body.extend(std::iter::repeat_n(b'x', 1024 * 1024));
    let page = h
        .flows_unchanged(
            "oversized form",
            h.post(&handle, &page, FlowAction::SubmitAttributes(body)),
        )
        .await
        .unwrap();
    let FlowStep::CollectAttributes { message, .. } = &page.step else {
        panic!("{:?}", page.step)
    };
    assert_eq!(message.as_deref(), Some("The form is too large"));
    assert!(
        field(&page, "givenName").values.is_empty(),
        "the huge value is not echoed"
    );
    // Many fields: refused as a whole.
    let body = "givenName=a&".repeat(2000).into_bytes();
    let page = h
        .flows_unchanged(
            "too many fields",
            h.post(&handle, &page, FlowAction::SubmitAttributes(body)),
        )
        .await
        .unwrap();
    assert!(
        matches!(&page.step, FlowStep::CollectAttributes { message: Some(m), .. } if m == "The form has too many fields")
    );
    completion(
        h.post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap(),
    );
}

#[tokio::test]
async fn english_is_the_fallback_language() {
    let h = simple_harness();
    let mut request = signup_request();
    request.ui_locales = Some("fr-FR ja".into());
    let (handle, page) = h.flow_past_passcode(request, ADA).await;
    assert_eq!(page.language, Language::EnUs);
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=".to_vec()),
        )
        .await
        .unwrap();
    assert_eq!(
        field(&page, "givenName").error.as_deref(),
        Some("Please fill in “Given Name”")
    );
}

// ---------------------------------------------------------------------------
// 7. Connector answers
// ---------------------------------------------------------------------------

/// A flow with both connectors: the pre-fill continues, the check answers
/// with `check(call)`. Returns the harness, the client, and a flow on the
/// attribute page.
async fn check_answers(
    ui_locales: Option<&str>,
    check: impl Fn(usize) -> Result<HttpResponse, HttpError> + Send + Sync + 'static,
) -> (Harness, Arc<FnHttpClient>, String, FlowPage) {
    let client = api(move |call, step, _| match step {
        "PostFederationSignup" => continue_with(json!({})),
        _ => check(call),
    });
    let config = signup_config(&format!(
        r#""attributes": [{{"name": "givenName"}}, {{"name": "{EXT}tier", "dataType": "string",
            "userInputType": "dropdownSingleSelect", "label": "Tier",
            "userAttributeValues": [{{"name": "Gold", "value": "gold"}}, {{"name": "Silver", "value": "silver"}}]}},
            {{"name": "{EXT}seats", "dataType": "int64", "label": "Seats", "isOptional": true}}], {}"#,
        both_connectors()
    ));
    let h = signup_harness(config, |b| b.http_client(client.clone()));
    let mut request = signup_request();
    request.ui_locales = ui_locales.map(str::to_owned);
    let (handle, page) = h.flow_past_passcode(request, ADA).await;
    assert!(
        matches!(page.step, FlowStep::CollectAttributes { .. }),
        "{:?}",
        page.step
    );
    assert_eq!(client.calls(), 1);
    (h, client, handle, page)
}

fn tier_body() -> FlowAction {
    FlowAction::SubmitAttributes(format!("givenName=Ada&{EXT}tier=gold").into_bytes())
}

/// Submits the form; the flow must end blocked with `message`, after
/// `calls` calls of the check, with no user.
async fn assert_blocked(
    h: &Harness,
    client: &FnHttpClient,
    handle: &str,
    page: &FlowPage,
    message: &str,
    calls: usize,
) {
    let page = h.post(handle, page, tier_body()).await.unwrap();
    assert_eq!(blocked_message(&page), message);
    assert_eq!(client.calls(), 1 + calls, "calls of the check");
    assert!(
        h.gp.users().await.unwrap().is_empty(),
        "a blocked sign-up creates no user"
    );
    let view = h.gp.view_flow(handle).await.unwrap();
    assert_eq!(blocked_message(&view), message);
    assert!(matches!(
        h.flow(handle).await.unwrap().value.state,
        FlowState::Blocked { .. }
    ));
    assert!(matches!(
        h.audit_kinds().last(),
        Some(AuditKind::SignUpBlocked { .. })
    ));
}

#[tokio::test]
async fn answers_outside_the_wire_format_block_with_the_configured_message() {
    type Check = Box<dyn Fn(usize) -> Result<HttpResponse, HttpError> + Send + Sync>;
    let cases: Vec<(&str, Check)> = vec![
        (
            "malformed json",
            Box::new(|_| raw_reply(200, br#"{"version": "1.0.0", "action": "#.to_vec())),
        ),
        (
            "html",
            Box::new(|_| raw_reply(200, b"<html>oops</html>".to_vec())),
        ),
        (
            "unknown action",
            Box::new(|_| reply(200, &json!({"version": "1.0.0", "action": "Maybe"}))),
        ),
        (
            "wrong version",
            Box::new(|_| reply(200, &json!({"version": "2.0.0", "action": "Continue"}))),
        ),
        (
            "action in lowercase",
            Box::new(|_| reply(200, &json!({"version": "1.0.0", "action": "continue"}))),
        ),
        (
            "huge body",
            Box::new(|_| {
                let mut body = br#"{"version":"1.0.0","action":"Continue","givenName":""#.to_vec();
                body.extend(std::iter::repeat_n(b'a', 70 * 1024));
                body.extend(br#""}"#);
                raw_reply(200, body)
            }),
        ),
        (
            "continue with status 201",
            Box::new(|_| reply(201, &json!({"version": "1.0.0", "action": "Continue"}))),
        ),
        (
            "validation error with status 200",
            Box::new(|_| {
                reply(
                    200,
                    &json!({"version": "1.0.0", "status": 400, "action": "ValidationError", "userMessage": "x"}),
                )
            }),
        ),
        ("redirect", Box::new(|_| reply(302, &json!({})))),
    ];
    for (what, answer) in cases {
        let (h, client, handle, page) = check_answers(None, answer).await;
        let page = h.post(&handle, &page, tier_body()).await.unwrap();
        assert_eq!(blocked_message(&page), BLOCKED_EN, "{what}");
        assert_eq!(client.calls(), 2, "{what}: not retried");
        assert!(h.gp.users().await.unwrap().is_empty(), "{what}");
    }
    // In the person's language.
    let (h, client, handle, page) = check_answers(Some("de-DE"), |_| raw_reply(200, b"{".to_vec())).await;
    assert_blocked(&h, &client, &handle, &page, BLOCKED_DE, 1).await;
}

#[tokio::test]
async fn a_slow_api_is_retried_once_then_blocks() {
    let (h, client, handle, page) = check_answers(None, |_| Err(HttpError::Timeout)).await;
    assert_blocked(&h, &client, &handle, &page, BLOCKED_EN, 2).await;
    // Each attempt had the 20 second deadline and the 64 KiB cap.
    for limits in client.limits() {
        assert_eq!(limits.timeout(), std::time::Duration::from_secs(20));
        assert_eq!(limits.max_response_bytes(), 64 * 1024);
    }
    // A timeout then an answer goes on.
    let (h, client, handle, page) = check_answers(None, |call| {
        if call == 1 {
            Err(HttpError::Timeout)
        } else {
            continue_with(json!({}))
        }
    })
    .await;
    completion(h.post(&handle, &page, tier_body()).await.unwrap());
    assert_eq!(client.calls(), 3);
}

#[tokio::test]
async fn a_server_error_is_retried_once() {
    let (h, client, handle, page) = check_answers(None, |_| reply(503, &json!({}))).await;
    assert_blocked(&h, &client, &handle, &page, BLOCKED_EN, 2).await;

    let (h, client, handle, page) = check_answers(None, |call| {
        if call == 1 {
            reply(500, &json!({}))
        } else {
            continue_with(json!({}))
        }
    })
    .await;
    let done = completion(h.post(&handle, &page, tier_body()).await.unwrap());
    assert_eq!(client.calls(), 3);
    assert_eq!(h.gp.users().await.unwrap()[0].id, done.user_id);

    // A connection failure is retried too; a 4xx is not.
    let (h, client, handle, page) = check_answers(None, |_| {
        Err(HttpError::Connect {
            message: "connection refused".into(),
        })
    })
    .await;
    assert_blocked(&h, &client, &handle, &page, BLOCKED_EN, 2).await;
    let (h, client, handle, page) = check_answers(None, |_| reply(404, &json!({}))).await;
    assert_blocked(&h, &client, &handle, &page, BLOCKED_EN, 1).await;
}

#[tokio::test]
async fn a_block_page_shows_the_apis_message() {
    let (h, client, handle, page) = check_answers(None, |_| {
        block_page("  Sign-ups from your domain need an invitation  ")
    })
    .await;
    assert_blocked(
        &h,
        &client,
        &handle,
        &page,
        "Sign-ups from your domain need an invitation",
        1,
    )
    .await;
}

#[tokio::test]
async fn a_block_at_post_federation_signup_ends_before_the_form() {
    for (answer, message) in [
        (
            block_page("We are not accepting sign-ups"),
            "We are not accepting sign-ups",
        ),
        (validation_error("No form to correct"), BLOCKED_EN),
        (reply(500, &json!({})), BLOCKED_EN),
    ] {
        let answer = Mutex::new(Some(answer));
        let client = api(move |_, _, _| answer.lock().unwrap().clone().unwrap());
        let config = signup_config(&format!(
            r#""attributes": [{{"name": "givenName"}}], "apiConnectors": [{}]"#,
            connector("postFederationSignup", "prefill")
        ));
        let h = signup_harness(config, |b| b.http_client(client.clone()));
        let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
        assert_eq!(blocked_message(&page), message);
        assert!(h.gp.users().await.unwrap().is_empty());
        assert!(matches!(
            h.flow(&handle).await.unwrap().value.state,
            FlowState::Blocked { .. }
        ));
    }
}

#[tokio::test]
async fn a_validation_error_returns_to_the_form_with_the_apis_message() {
    let (h, client, handle, page) = check_answers(None, |call| {
        if call == 1 {
            validation_error("Please choose another tier")
        } else {
            continue_with(json!({}))
        }
    })
    .await;
    let before = h.flow(&handle).await.unwrap().version;
    let page = h.post(&handle, &page, tier_body()).await.unwrap();
    let FlowStep::CollectAttributes { message, .. } = &page.step else {
        panic!("{:?}", page.step)
    };
    assert_eq!(message.as_deref(), Some("Please choose another tier"));
    assert_eq!(
        field(&page, "givenName").values,
        vec!["Ada".to_owned()],
        "values kept"
    );
    assert_eq!(
        field(&page, &format!("{EXT}tier")).values,
        vec!["gold".to_owned()]
    );
    assert!(h.gp.users().await.unwrap().is_empty());
    assert!(h.flow(&handle).await.unwrap().version > before);
    // The view shows the same.
    let view = h.gp.view_flow(&handle).await.unwrap();
    assert!(
        matches!(&view.step, FlowStep::CollectAttributes { message: Some(m), .. } if m == "Please choose another tier")
    );
    // Corrected, it completes.
    let done = completion(
        h.post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(format!("givenName=Ada&{EXT}tier=silver").into_bytes()),
        )
        .await
        .unwrap(),
    );
    assert_eq!(client.calls(), 3);
    assert_eq!(
        h.gp.user(done.user_id).await.unwrap().attributes[&format!("{EXT}tier")],
        "silver"
    );
}

#[tokio::test]
async fn a_continue_whose_values_do_not_fit_blocks() {
    for claims in [
        json!({format!("{EXT}tier"): "platinum"}),
        json!({format!("{EXT}tier"): ["gold"]}),
        json!({format!("{EXT}seats"): "many"}),
        json!({format!("{EXT}seats"): 1.5}),
        json!({"givenName": "A".repeat(65)}),
        json!({"givenName": ""}),
        json!({"givenName": true, format!("{EXT}tier"): 3}),
    ] {
        let answer = claims.clone();
        let (h, client, handle, page) = check_answers(None, move |_| continue_with(answer.clone())).await;
        let page = h.post(&handle, &page, tier_body()).await.unwrap();
        assert_eq!(blocked_message(&page), BLOCKED_EN, "{claims}");
        assert_eq!(client.calls(), 2);
        assert!(h.gp.users().await.unwrap().is_empty(), "{claims}");
    }
    // Values that fit override the collected ones; claims the flow does not
    // collect are ignored.
    let (h, _, handle, page) = check_answers(None, |_| {
        continue_with(json!({format!("{EXT}seats"): 12, "givenName": "Augusta", "jobTitle": "Countess"}))
    })
    .await;
    let done = completion(h.post(&handle, &page, tier_body()).await.unwrap());
    let user = h.gp.user(done.user_id).await.unwrap();
    assert_eq!(user.attributes["givenName"], "Augusta");
    assert_eq!(user.attributes[&format!("{EXT}seats")], 12);
    assert!(!user.attributes.contains_key("jobTitle"));
}

// ---------------------------------------------------------------------------
// 8. Redirect URIs and applications
// ---------------------------------------------------------------------------

#[tokio::test]
async fn start_refuses_any_redirect_uri_but_the_registered_ones() {
    let h = simple_harness();
    for uri in [
        "https://woodgrove.example/signin-oidd",
        "https://woodgrove.example/signin-oid",
        "https://woodgrove.example/signin-oidc2",
        "https://Woodgrove.example/signin-oidc",
        "https://woodgrove.example/SIGNIN-OIDC",
        "HTTPS://woodgrove.example/signin-oidc",
        "https://woodgrove.example/signin-oidc/",
        "https://woodgrove.example/signin-oidc?next=https://evil.example",
        "https://woodgrove.example/signin-oidc#frag",
        "https://woodgrove.example:443/signin-oidc",
        "https://woodgrove.example./signin-oidc",
        "https://woodgrove.example@evil.example/signin-oidc",
        "https://woodgrove.example.evil.example/signin-oidc",
        "http://woodgrove.example/signin-oidc",
        " https://woodgrove.example/signin-oidc",
        "https://woodgrove.example/signin-oidc ",
        "https://woodgrove.example/signin%2Doidc",
        "//evil.example",
        "/\\evil.example",
        "https:evil.example",
        "https:/woodgrove.example/signin-oidc",
        "/signin-oidc",
        "",
    ] {
        let mut request = signup_request();
        request.redirect_uri = uri.to_owned();
        let e = h
            .unchanged(uri, h.gp.start_sign_up(request))
            .await
            .expect_err(uri);
        assert!(
            matches!(&e, Error::Flow(FlowError::RedirectNotRegistered { .. })),
            "{uri}: {e:?}"
        );
        assert_eq!(e.status().as_u16(), 400);
    }
    for client_id in [
        "woodgrove",
        "WOODGROVE-GROCERIES",
        "",
        "woodgrove-groceries ",
        "unassigned",
    ] {
        let mut request = signup_request();
        request.client_id = client_id.to_owned();
        let e = h.gp.start_sign_up(request).await.unwrap_err();
        assert!(
            matches!(&e, Error::Flow(FlowError::UnknownApplication { .. })),
            "{client_id}: {e:?}"
        );
    }
    assert_eq!(flows_in_store(&h).await, 0, "no refused start stored a flow");
    // The registered ones work, and the completion goes exactly there.
    let mut request = signup_request();
    request.redirect_uri = "https://woodgrove.example/other".into();
    let (handle, page) = h.flow_past_passcode(request, ADA).await;
    let done = completion(
        h.post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap(),
    );
    assert_eq!(done.redirect_uri.as_str(), "https://woodgrove.example/other");
}

#[tokio::test]
async fn an_application_without_a_flow_is_unknown() {
    let config = SignUpConfig::from_json(&format!(
        r#"{{"applications": [
              {{"clientId": "{APP}", "displayName": "W", "redirectUris": ["{APP_REDIRECT}"]}},
              {{"clientId": "lonely", "displayName": "L", "redirectUris": ["https://lonely.example/cb"]}}],
            "userFlows": [{{"id": "f", "identityProviders": ["emailOtp"], "attributes": [],
                           "applications": ["{APP}"]}}]}}"#
    ))
    .unwrap();
    let h = signup_harness(config, |b| b);
    let e =
        h.gp.start_sign_up(SignUpRequest::new("lonely", "https://lonely.example/cb"))
            .await
            .unwrap_err();
    assert_eq!(
        e,
        Error::Flow(FlowError::UnknownApplication {
            client_id: "lonely".into()
        })
    );
    // A flow without attributes completes right after the passcode... once
    // the (empty) form is submitted.
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    assert!(matches!(&page.step, FlowStep::CollectAttributes { fields, .. } if fields.is_empty()));
    completion(
        h.post(&handle, &page, FlowAction::SubmitAttributes(Vec::new()))
            .await
            .unwrap(),
    );
}

#[tokio::test]
async fn oversized_request_parameters_are_refused() {
    let h = simple_harness();
    for (field, value) in [
        ("nonce", "n".repeat(513)),
        ("state", "s".repeat(513)),
        ("ui_locales", "de-DE ".repeat(30)),
        ("nonce", String::new()),
        ("state", "a\nb".to_owned()),
    ] {
        let mut request = signup_request();
        match field {
            "nonce" => request.nonce = Some(value),
            "state" => request.state = Some(value),
            _ => request.ui_locales = Some(value),
        }
        let e = h.gp.start_sign_up(request).await.unwrap_err();
        assert!(
            matches!(&e, Error::Flow(FlowError::InvalidParameter { field: f, .. }) if *f == field),
            "{field}: {e:?}"
        );
    }
    assert_eq!(flows_in_store(&h).await, 0);
}

// ---------------------------------------------------------------------------
// 9. Approval
// ---------------------------------------------------------------------------

fn approval_config(extra: &str) -> SignUpConfig {
    signup_config(&format!(
        r#""attributes": [{{"name": "givenName"}}], "approval": {{"required": true}}{extra}"#
    ))
}

/// A flow of `email` submitted for approval; returns the handle and the page.
async fn held(h: &Harness, email: &str) -> (String, FlowPage) {
    let (handle, page) = h.flow_past_passcode(signup_request(), email).await;
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap();
    (handle, page)
}

#[tokio::test]
async fn a_held_sign_up_completes_after_an_administrators_approval() {
    let h = signup_harness(approval_config(""), |b| b);
    let started_at = h.now();
    let (handle, page) = held(&h, ADA).await;
    let FlowStep::AwaitingApproval { message } = &page.step else {
        panic!("{:?}", page.step)
    };
    assert_eq!(message, "Your request is waiting for approval");
    let flow_id = page.flow_id;
    assert!(h.gp.users().await.unwrap().is_empty());
    assert_eq!(h.audit_kinds().last(), Some(&AuditKind::SignUpHeld { flow_id }));

    // Administrators see it; nobody else may.
    let pending = h.gp.pending_sign_ups(&admin(), 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    let p = &pending[0];
    assert_eq!(p.flow_id, flow_id);
    assert_eq!(p.email, ADA);
    assert_eq!(p.client_id, APP);
    assert_eq!(p.user_flow_id, USER_FLOW);
    assert_eq!(p.attributes["givenName"], "Ada");
    assert_eq!(p.created_at, started_at);
    assert_eq!(p.expires_at, h.now() + Duration::days(7));
    for role in [InviterRole::GuestInviter, InviterRole::Member, InviterRole::Guest] {
        let someone = Inviter { id: None, role };
        let admin_only = |e: Error| {
            assert!(matches!(e, Error::Denied(Denied::AdminOnly { .. })), "{e:?}");
            assert_eq!(e.status().as_u16(), 403);
        };
        admin_only(h.gp.pending_sign_ups(&someone, 10).await.unwrap_err());
        admin_only(
            h.flows_unchanged("non-admin approval", h.gp.approve_sign_up(&someone, flow_id))
                .await
                .unwrap_err(),
        );
        admin_only(
            h.flows_unchanged("non-admin denial", h.gp.deny_sign_up(&someone, flow_id, None))
                .await
                .unwrap_err(),
        );
    }

    // Coming back before the decision: still pending, nothing created.
    let page = h
        .flows_unchanged(
            "resume before the decision",
            h.post(&handle, &page, FlowAction::Resume),
        )
        .await
        .unwrap();
    assert!(
        matches!(page.step, FlowStep::AwaitingApproval { .. }),
        "{:?}",
        page.step
    );
    assert!(h.gp.users().await.unwrap().is_empty());

    // The wait outlives the flow's normal hour.
    h.clock.advance(Duration::hours(30));
    let view = h.gp.view_flow(&handle).await.unwrap();
    assert!(
        matches!(view.step, FlowStep::AwaitingApproval { .. }),
        "{:?}",
        view.step
    );

    h.gp.approve_sign_up(&admin(), flow_id).await.unwrap();
    assert!(h.gp.pending_sign_ups(&admin(), 10).await.unwrap().is_empty());
    assert!(
        h.gp.users().await.unwrap().is_empty(),
        "the person's visit creates the account"
    );
    assert_eq!(
        h.audit_kinds().last(),
        Some(&AuditKind::SignUpApproved {
            flow_id,
            admin: admin().id
        })
    );
    // A second decision is refused.
    h.flow_fails_unchanged(
        "second approval",
        h.gp.approve_sign_up(&admin(), flow_id),
        Error::Flow(FlowError::NotAwaitingApproval),
    )
    .await;

    let view = h.gp.view_flow(&handle).await.unwrap();
    let done = completion(h.post(&handle, &view, FlowAction::Resume).await.unwrap());
    assert!(!done.signed_in);
    let user = h.gp.user(done.user_id).await.unwrap();
    assert_eq!(user.creation_type, Some(CreationType::SelfServiceSignUp));
    assert_eq!(user.attributes["givenName"], "Ada");
    assert!(verifier(&h).verify(done.id_token.expose(), h.now()).is_ok());
    assert_eq!(
        h.audit_kinds().last(),
        Some(&AuditKind::SignedUp {
            flow_id,
            user_flow_id: USER_FLOW.to_owned()
        })
    );
}

#[tokio::test]
async fn a_denied_sign_up_shows_the_denial() {
    let h = signup_harness(approval_config(""), |b| b);
    let (handle, page) = held(&h, ADA).await;
    let flow_id = page.flow_id;
    let e = h
        .flows_unchanged(
            "bad denial message",
            h.gp.deny_sign_up(&admin(), flow_id, Some("line\nbreak".into())),
        )
        .await
        .unwrap_err();
    assert_eq!(e.category(), Category::BadRequest);
    h.gp.deny_sign_up(&admin(), flow_id, Some("Staff only, sorry".into()))
        .await
        .unwrap();
    let view = h.gp.view_flow(&handle).await.unwrap();
    let FlowStep::Denied { message } = &view.step else {
        panic!("{:?}", view.step)
    };
    assert_eq!(message, "Staff only, sorry");
    h.flow_fails_unchanged(
        "resume a denied flow",
        h.post(&handle, &view, FlowAction::Resume),
        Error::Flow(FlowError::Finished { state: "denied" }),
    )
    .await;
    h.flow_fails_unchanged(
        "approve a denied flow",
        h.gp.approve_sign_up(&admin(), flow_id),
        Error::Flow(FlowError::Finished { state: "denied" }),
    )
    .await;
    assert!(h.gp.users().await.unwrap().is_empty());
    assert!(h.gp.pending_sign_ups(&admin(), 10).await.unwrap().is_empty());

    // Without a message: the flow's text, in the person's language.
    let mut request = signup_request();
    request.ui_locales = Some("nl-NL".into());
    let (handle, page) = h.flow_past_passcode(request, "bob@fabrikam.example").await;
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Bob".to_vec()),
        )
        .await
        .unwrap();
    assert!(
        matches!(&page.step, FlowStep::AwaitingApproval { message } if message == "Uw aanvraag wacht op goedkeuring")
    );
    h.gp.deny_sign_up(&admin(), page.flow_id, None).await.unwrap();
    let view = h.gp.view_flow(&handle).await.unwrap();
    assert!(matches!(&view.step, FlowStep::Denied { message } if message == "Uw aanvraag is afgewezen"));
}

#[tokio::test]
async fn decisions_on_unknown_expired_or_other_flows_are_refused() {
    let h = signup_harness(approval_config(""), |b| b);
    h.flow_fails_unchanged(
        "unknown flow",
        h.gp.approve_sign_up(&admin(), Id::from_bytes([9; 16])),
        Error::NotFound { what: "sign-up flow" },
    )
    .await;
    // A flow not yet held.
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    h.flow_fails_unchanged(
        "not held",
        h.gp.approve_sign_up(&admin(), page.flow_id),
        Error::Flow(FlowError::NotAwaitingApproval),
    )
    .await;
    // Another tenant's administrator cannot decide on ours.
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap();
    let other = h
        .sibling(SEED + 1)
        .tenant(OTHER_TENANT, "Fabrikam", "fabrikam.example")
        .sign_up(approval_config(""))
        .token_keys(token_keys())
        .build()
        .unwrap();
    h.flow_fails_unchanged(
        "other tenant",
        other.approve_sign_up(&admin(), page.flow_id),
        Error::NotFound { what: "sign-up flow" },
    )
    .await;
    assert!(other.pending_sign_ups(&admin(), 10).await.unwrap().is_empty());
    // After the approval lifetime the request lapses.
    h.clock.advance(Duration::days(7));
    assert!(h.gp.pending_sign_ups(&admin(), 10).await.unwrap().is_empty());
    h.flow_fails_unchanged(
        "lapsed approval",
        h.gp.approve_sign_up(&admin(), page.flow_id),
        Error::Flow(FlowError::Expired),
    )
    .await;
    h.flow_fails_unchanged(
        "lapsed view",
        h.gp.view_flow(&handle),
        Error::Flow(FlowError::Expired),
    )
    .await;
}

#[tokio::test]
async fn two_approved_flows_of_one_address_create_one_user() {
    let h = signup_harness(approval_config(""), |b| b);
    let (first, first_page) = held(&h, ADA).await;
    let (second, second_page) = held(&h, "ada@fabrikam.example").await;
    assert_eq!(h.gp.pending_sign_ups(&admin(), 10).await.unwrap().len(), 2);
    h.gp.approve_sign_up(&admin(), first_page.flow_id).await.unwrap();
    h.gp.approve_sign_up(&admin(), second_page.flow_id).await.unwrap();
    let page = h.gp.view_flow(&second).await.unwrap();
    let created = completion(h.post(&second, &page, FlowAction::Resume).await.unwrap());
    assert!(!created.signed_in);
    let page = h.gp.view_flow(&first).await.unwrap();
    let signed_in = completion(h.post(&first, &page, FlowAction::Resume).await.unwrap());
    assert!(signed_in.signed_in);
    assert_eq!(signed_in.user_id, created.user_id);
    assert_eq!(h.gp.users().await.unwrap().len(), 1);
}

#[derive(Debug, Default)]
struct ApproveAll(Mutex<Vec<ApprovalRequest>>);

#[async_trait::async_trait]
impl Approver for ApproveAll {
    async fn review(&self, request: &ApprovalRequest) -> ApprovalVerdict {
        self.0.lock().unwrap().push(request.clone());
        ApprovalVerdict::Approve
    }
}

#[derive(Debug)]
struct DenyAll;

#[async_trait::async_trait]
impl Approver for DenyAll {
    async fn review(&self, _: &ApprovalRequest) -> ApprovalVerdict {
        ApprovalVerdict::Deny {
            message: Some("Not this time".into()),
        }
    }
}

#[tokio::test]
async fn an_approver_may_approve_or_deny_at_once() {
    let approver = Arc::new(ApproveAll::default());
    let h = signup_harness(approval_config(""), |b| b.approver(approver.clone()));
    let (_, page) = held(&h, ADA).await;
    let done = completion(page);
    assert!(!done.signed_in);
    assert_eq!(h.gp.users().await.unwrap().len(), 1);
    let reviewed = approver.0.lock().unwrap().clone();
    assert_eq!(reviewed.len(), 1);
    assert_eq!(reviewed[0].email.as_str(), ADA);
    assert_eq!(reviewed[0].client_id, APP);
    assert_eq!(reviewed[0].attributes["givenName"], "Ada");
    assert!(h.gp.pending_sign_ups(&admin(), 10).await.unwrap().is_empty());

    let h = signup_harness(approval_config(""), |b| b.approver(Arc::new(DenyAll)));
    let (handle, page) = held(&h, ADA).await;
    assert!(matches!(&page.step, FlowStep::Denied { message } if message == "Not this time"));
    assert!(h.gp.users().await.unwrap().is_empty());
    assert!(matches!(
        h.flow(&handle).await.unwrap().value.state,
        FlowState::Denied { .. }
    ));
}

#[tokio::test]
async fn a_connector_approver_approves_on_continue_and_holds_otherwise() {
    let approval_connector = || -> ConnectorConfig {
        serde_json::from_str(&connector("postAttributeCollection", "approve")).unwrap()
    };
    // Continue approves; the request carries the claims, email included once.
    let client = api(|_, _, _| continue_with(json!({})));
    let config = signup_config(
        r#""attributes": [{"name": "email"}, {"name": "givenName"}], "approval": {"required": true}"#,
    );
    let approver = Arc::new(ConnectorApprover::new(approval_connector(), client.clone()));
    let h = signup_harness(config.clone(), |b| b.approver(approver));
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    let page = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"email=Ada%40Fabrikam.example&givenName=Ada".to_vec()),
        )
        .await
        .unwrap();
    completion(page);
    let sent = &bodies(&client)[0];
    assert_eq!(sent["email"], ADA);
    assert_eq!(sent["givenName"], "Ada");
    assert_eq!(sent["client_id"], APP);

    // A block page holds with the API's message; an API that is down holds.
    for (answer, message) in [
        (
            block_page("Your manager will review this"),
            "Your manager will review this",
        ),
        (reply(503, &json!({})), "Your request is waiting for approval"),
        (
            raw_reply(200, b"nonsense".to_vec()),
            "Your request is waiting for approval",
        ),
    ] {
        let answer = Mutex::new(answer);
        let client = api(move |_, _, _| answer.lock().unwrap().clone());
        let approver = Arc::new(ConnectorApprover::new(approval_connector(), client));
        let h = signup_harness(approval_config(""), |b| b.approver(approver));
        let (_, page) = held(&h, ADA).await;
        assert!(
            matches!(&page.step, FlowStep::AwaitingApproval { message: m } if m == message),
            "{:?}",
            page.step
        );
        assert!(h.gp.users().await.unwrap().is_empty());
        assert_eq!(h.gp.pending_sign_ups(&admin(), 10).await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn approval_comes_after_the_attribute_connector() {
    let client = api(|_, _, _| continue_with(json!({"givenName": "Augusta"})));
    let config = approval_config(&format!(
        r#", "apiConnectors": [{}]"#,
        connector("postAttributeCollection", "check")
    ));
    let h = signup_harness(config, |b| b.http_client(client.clone()));
    let (handle, page) = held(&h, ADA).await;
    assert!(matches!(page.step, FlowStep::AwaitingApproval { .. }));
    let pending = h.gp.pending_sign_ups(&admin(), 10).await.unwrap();
    assert_eq!(
        pending[0].attributes["givenName"], "Augusta",
        "the override is what is reviewed"
    );
    h.gp.approve_sign_up(&admin(), page.flow_id).await.unwrap();
    // The decision changed the flow: the held page's token is stale.
    csrf(h.post(&handle, &page, FlowAction::Resume).await.unwrap_err());
    let page = h.gp.view_flow(&handle).await.unwrap();
    let done = completion(h.post(&handle, &page, FlowAction::Resume).await.unwrap());
    assert_eq!(
        h.gp.user(done.user_id).await.unwrap().attributes["givenName"],
        "Augusta"
    );
    assert_eq!(client.calls(), 1, "the connector is not called again on resume");
}

// ---------------------------------------------------------------------------
// 10. Races
// ---------------------------------------------------------------------------

fn racy_harness(config: SignUpConfig) -> Harness {
    Harness::racy(|b| {
        b.sign_up(config)
            .token_keys(token_keys())
            .passcode_policy(permissive_policy())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_flows_of_one_address_racing_create_one_user() {
    for round in 0..10 {
        let h = racy_harness(simple_config());
        let email = format!("racer{round}@fabrikam.example");
        let (h1, p1) = h.flow_past_passcode(signup_request(), &email).await;
        let (h2, p2) = h.flow_past_passcode(signup_request(), &email).await;
        let runs = [
            (h1, p1.csrf_token.expose().to_owned()),
            (h2, p2.csrf_token.expose().to_owned()),
        ];
        let gp = h.gp.clone();
        let results = race(2, |i| {
            let gp = gp.clone();
            let (handle, token) = runs[i].clone();
            async move {
                gp.advance_flow(
                    &handle,
                    &token,
                    FlowAction::SubmitAttributes(b"givenName=R".to_vec()),
                )
                .await
            }
        })
        .await;
        let done: Vec<guestpass::Completion> = results.into_iter().map(|r| completion(r.unwrap())).collect();
        let users = h.gp.users().await.unwrap();
        assert_eq!(users.len(), 1, "round {round}: exactly one user");
        assert!(done.iter().all(|d| d.user_id == users[0].id), "round {round}");
        let created = done.iter().filter(|d| !d.signed_in).count();
        assert_eq!(created, 1, "round {round}: one created, the other signed in");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_submissions_of_one_step_apply_once() {
    for round in 0..4 {
        let h = racy_harness(simple_config());
        let email = format!("double{round}@fabrikam.example");
        let (handle, page) = h.flow_past_passcode(signup_request(), &email).await;
        let token = page.csrf_token.expose().to_owned();
        let gp = h.gp.clone();
        let results = race(16, |_| {
            let (gp, handle, token) = (gp.clone(), handle.clone(), token.clone());
            async move {
                gp.advance_flow(
                    &handle,
                    &token,
                    FlowAction::SubmitAttributes(b"givenName=R".to_vec()),
                )
                .await
            }
        })
        .await;
        let mut applied = 0;
        for r in results {
            match r {
                Ok(page) => {
                    completion(page);
                    applied += 1;
                }
                Err(Error::Store(StoreError::Conflict { .. })) | Err(Error::Flow(FlowError::Csrf)) => {}
                Err(e) => panic!("round {round}: unexpected {e:?}"),
            }
        }
        assert_eq!(applied, 1, "round {round}");
        assert_eq!(h.gp.users().await.unwrap().len(), 1, "round {round}");

        // The address step: one code goes out.
        let (handle, page) = h.start_flow(signup_request()).await;
        let page = h
            .post(&handle, &page, FlowAction::ChooseProvider("emailOtp".into()))
            .await
            .unwrap();
        let token = page.csrf_token.expose().to_owned();
        let mails = h.outbox.messages().len();
        let address = format!("mails{round}@fabrikam.example");
        let results = race(16, |_| {
            let (gp, handle, token, address) = (gp.clone(), handle.clone(), token.clone(), address.clone());
            async move {
                gp.advance_flow(&handle, &token, FlowAction::SubmitEmail(address))
                    .await
            }
        })
        .await;
        assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "round {round}");
        assert_eq!(
            h.outbox.messages().len(),
            mails + 1,
            "round {round}: one code mailed"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_passcode_guesses_count_once_each_applied() {
    for round in 0..4 {
        let h = racy_harness(simple_config());
        let email = format!("guess{round}@fabrikam.example");
        let (handle, page) = h.flow_to_passcode(signup_request(), &email).await;
        let wrong = wrong_code(&h.code_for(&email));
        let token = page.csrf_token.expose().to_owned();
        let gp = h.gp.clone();
        let results = race(16, |_| {
            let (gp, handle, token, wrong) = (gp.clone(), handle.clone(), token.clone(), wrong.clone());
            async move {
                gp.advance_flow(&handle, &token, FlowAction::SubmitPasscode(wrong.into()))
                    .await
            }
        })
        .await;
        let applied = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(applied, 1, "round {round}");
        let FlowState::AwaitingPasscode { passcode, .. } = h.flow(&handle).await.unwrap().value.state else {
            panic!("round {round}: not at the passcode")
        };
        assert_eq!(passcode.attempts, 1, "round {round}: one guess counted");
        assert_eq!(h.consecutive_failures(&email).await, 1, "round {round}");
    }
}

// ---------------------------------------------------------------------------
// 11. Passcodes
// ---------------------------------------------------------------------------

fn refused(page: &FlowPage) -> Option<PasscodeError> {
    match &page.step {
        FlowStep::EnterPasscode { refused, .. } => refused.clone(),
        other => panic!("expected the passcode page, got {other:?}"),
    }
}

#[tokio::test]
async fn a_code_allows_five_wrong_tries() {
    let h = simple_harness();
    let (handle, mut page) = h.flow_to_passcode(signup_request(), ADA).await;
    let code = h.code_for(ADA);
    let wrong = wrong_code(&code);
    for remaining in (1..5).rev() {
        page = h
            .post(&handle, &page, FlowAction::SubmitPasscode(wrong.clone().into()))
            .await
            .unwrap();
        assert_eq!(refused(&page), Some(PasscodeError::Incorrect { remaining }));
    }
    page = h
        .post(&handle, &page, FlowAction::SubmitPasscode(wrong.clone().into()))
        .await
        .unwrap();
    assert_eq!(refused(&page), Some(PasscodeError::TooManyAttempts));
    assert_eq!(h.consecutive_failures(ADA).await, 5);
    // The code is burnt: even the right one is refused now.
    h.flow_fails_unchanged(
        "right code after five wrong ones",
        h.post(&handle, &page, FlowAction::SubmitPasscode(code.clone().into())),
        Error::Passcode(PasscodeError::TooManyAttempts),
    )
    .await;
    h.flow_fails_unchanged(
        "malformed code",
        h.post(&handle, &page, FlowAction::SubmitPasscode("12ab".into())),
        Error::Passcode(PasscodeError::Malformed),
    )
    .await;
    // The view shows the passcode page without a refusal.
    let view = h.gp.view_flow(&handle).await.unwrap();
    assert_eq!(refused(&view), None);
    // A new code works, and resets the failures.
    let page = h.post(&handle, &page, FlowAction::ResendPasscode).await.unwrap();
    let fresh = h.code_for(ADA);
    assert_ne!(fresh, code);
    h.flow_fails_unchanged(
        "old code after a resend",
        h.post(&handle, &page, FlowAction::SubmitPasscode("1234".into())),
        Error::Passcode(PasscodeError::Malformed),
    )
    .await;
    let page = h
        .post(&handle, &page, FlowAction::SubmitPasscode(fresh.into()))
        .await
        .unwrap();
    assert!(matches!(page.step, FlowStep::CollectAttributes { .. }));
    assert_eq!(h.consecutive_failures(ADA).await, 0);
}

#[tokio::test]
async fn a_resend_is_rate_limited_and_replaces_the_code() {
    let h = signup_harness(simple_config(), |b| b.passcode_policy(Default::default()));
    let (handle, page) = h.flow_to_passcode(signup_request(), ADA).await;
    let first = h.code_for(ADA);
    let e = h
        .flows_unchanged(
            "resend at once",
            h.post(&handle, &page, FlowAction::ResendPasscode),
        )
        .await
        .unwrap_err();
    assert_eq!(
        e,
        Error::Passcode(PasscodeError::RateLimited { retry_after_secs: 30 })
    );
    assert_eq!(e.status().as_u16(), 429);
    h.clock.advance(Duration::seconds(30));
    let page = h.post(&handle, &page, FlowAction::ResendPasscode).await.unwrap();
    assert_eq!(h.mails_of(MessageKind::Passcode).len(), 2);
    let second = h.code_for(ADA);
    // The first code no longer works.
    if first != second {
        let page = h
            .post(&handle, &page, FlowAction::SubmitPasscode(first.into()))
            .await
            .unwrap();
        assert_eq!(refused(&page), Some(PasscodeError::Incorrect { remaining: 4 }));
        let page = h
            .post(&handle, &page, FlowAction::SubmitPasscode(second.into()))
            .await
            .unwrap();
        assert!(matches!(page.step, FlowStep::CollectAttributes { .. }));
    }
    // The send window counts flows and redemptions alike: five sends an hour.
    let h = signup_harness(simple_config(), |b| {
        b.passcode_policy(guestpass::idp::PasscodePolicy {
            min_send_interval: Duration::ZERO,
            ..Default::default()
        })
    });
    let (handle, mut page) = h.flow_to_passcode(signup_request(), ADA).await;
    for _ in 0..4 {
        page = h.post(&handle, &page, FlowAction::ResendPasscode).await.unwrap();
    }
    let e = h
        .flows_unchanged("sixth send", h.post(&handle, &page, FlowAction::ResendPasscode))
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Passcode(PasscodeError::RateLimited { .. })),
        "{e:?}"
    );
    let (other, other_page) = h.start_flow(signup_request()).await;
    let other_page = h
        .post(&other, &other_page, FlowAction::ChooseProvider("emailOtp".into()))
        .await
        .unwrap();
    let e = h
        .flows_unchanged(
            "sixth send from another flow",
            h.post(&other, &other_page, FlowAction::SubmitEmail(ADA.to_lowercase())),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(e, Error::Passcode(PasscodeError::RateLimited { .. })),
        "{e:?}"
    );
}

#[tokio::test]
async fn the_lockout_is_shared_with_invitations() {
    let policy = guestpass::idp::PasscodePolicy {
        max_consecutive_failures: 3,
        ..permissive_policy()
    };
    let h = signup_harness(simple_config(), |b| b.passcode_policy(policy));

    // Failures in a redemption lock the address for sign-up.
    let (_, session, _) = h.invite_and_start("alice@fabrikam.example").await;
    let errors = h.submit_wrong_codes(&session, "alice@fabrikam.example", 3).await;
    assert_eq!(
        errors.last(),
        Some(&Error::Passcode(PasscodeError::AddressLocked))
    );
    let (handle, page) = h.start_flow(signup_request()).await;
    let page = h
        .post(&handle, &page, FlowAction::ChooseProvider("emailOtp".into()))
        .await
        .unwrap();
    h.flow_fails_unchanged(
        "sign-up of a locked address",
        h.post(
            &handle,
            &page,
            FlowAction::SubmitEmail("Alice@fabrikam.example".into()),
        ),
        Error::Passcode(PasscodeError::AddressLocked),
    )
    .await;

    // Failures in a flow lock the address for redemption.
    let (_, ticket) = h.invite_with_ticket("bob@fabrikam.example").await;
    let session = h.start(&ticket).await;
    let redemption_code = h.code_for("bob@fabrikam.example");
    let (handle, mut page) = h.flow_to_passcode(signup_request(), "bob@fabrikam.example").await;
    let flow_code = h.code_for("bob@fabrikam.example");
    let wrong = wrong_code(&flow_code);
    for expected in [
        Some(PasscodeError::Incorrect { remaining: 4 }),
        Some(PasscodeError::Incorrect { remaining: 3 }),
        Some(PasscodeError::AddressLocked),
    ] {
        page = h
            .post(&handle, &page, FlowAction::SubmitPasscode(wrong.clone().into()))
            .await
            .unwrap();
        assert_eq!(refused(&page), expected);
    }
    h.flow_fails_unchanged(
        "right code of a locked address",
        h.post(&handle, &page, FlowAction::SubmitPasscode(flow_code.into())),
        Error::Passcode(PasscodeError::AddressLocked),
    )
    .await;
    assert_eq!(
        h.gp.submit_passcode(&session, &redemption_code)
            .await
            .unwrap_err(),
        Error::Passcode(PasscodeError::AddressLocked)
    );
    assert!(
        h.gp.users()
            .await
            .unwrap()
            .iter()
            .all(|u| u.identities.is_empty()),
        "nobody got in"
    );
}

#[tokio::test]
async fn a_code_from_one_flow_does_not_work_in_another() {
    let h = simple_harness();
    let (first, first_page) = h.flow_to_passcode(signup_request(), ADA).await;
    let first_code = h.code_for(ADA);
    let (second, second_page) = h.flow_to_passcode(signup_request(), ADA).await;
    let second_code = h.code_for(ADA);
    if first_code != second_code {
        let page = h
            .post(
                &second,
                &second_page,
                FlowAction::SubmitPasscode(first_code.clone().into()),
            )
            .await
            .unwrap();
        assert_eq!(refused(&page), Some(PasscodeError::Incorrect { remaining: 4 }));
        let page = h
            .post(
                &first,
                &first_page,
                FlowAction::SubmitPasscode(second_code.clone().into()),
            )
            .await
            .unwrap();
        assert_eq!(refused(&page), Some(PasscodeError::Incorrect { remaining: 4 }));
    }
    // Each flow's own code works there.
    let page = h.gp.view_flow(&first).await.unwrap();
    let page = h
        .post(&first, &page, FlowAction::SubmitPasscode(first_code.into()))
        .await
        .unwrap();
    assert!(matches!(page.step, FlowStep::CollectAttributes { .. }));
    // A code of a redemption session does not work in a flow either.
    let (_, ticket) = h.invite_with_ticket("carol@fabrikam.example").await;
    h.start(&ticket).await;
    let redemption_code = h.code_for("carol@fabrikam.example");
    h.clock.advance(Duration::seconds(1));
    let (flow, page) = h
        .flow_to_passcode(signup_request(), "carol@fabrikam.example")
        .await;
    let flow_code = h.code_for("carol@fabrikam.example");
    if redemption_code != flow_code {
        let page = h
            .post(&flow, &page, FlowAction::SubmitPasscode(redemption_code.into()))
            .await
            .unwrap();
        assert_eq!(refused(&page), Some(PasscodeError::Incorrect { remaining: 4 }));
    }
    let _ = second;
}

// ---------------------------------------------------------------------------
// 12. Configuration
// ---------------------------------------------------------------------------

fn config_error(json: &str) -> (String, String) {
    let e = SignUpConfig::from_json(json).expect_err(json);
    (e.path, e.reason)
}

#[test]
fn config_errors_name_their_path() {
    // An unknown application.
    let (path, reason) = config_error(
        r#"{"applications": [], "userFlows": [{"id": "x", "identityProviders": ["emailOtp"],
            "attributes": [], "applications": ["nope"]}]}"#,
    );
    assert_eq!(path, "userFlows[0].applications[0]");
    assert_eq!(reason, "no application has client id `nope`");

    // An application assigned to two flows.
    let (path, reason) = config_error(&format!(
        r#"{{"applications": [{{"clientId": "{APP}", "displayName": "W", "redirectUris": ["{APP_REDIRECT}"]}}],
            "userFlows": [
              {{"id": "a", "identityProviders": ["emailOtp"], "attributes": [], "applications": ["{APP}"]}},
              {{"id": "b", "identityProviders": ["emailOtp"], "attributes": [], "applications": ["{APP}"]}}]}}"#
    ));
    assert_eq!(path, "userFlows[1].applications[0]");
    assert!(reason.contains("already assigned to user flow `a`"), "{reason}");

    // Two connectors at one step.
    let (path, reason) = config_error(&signup_json(&format!(
        r#""attributes": [], "apiConnectors": [{}, {}]"#,
        connector("postAttributeCollection", "a"),
        connector("postAttributeCollection", "b")
    )));
    assert_eq!(path, "userFlows[0].apiConnectors[1].step");
    assert!(
        reason.contains("at most one connector at `PostAttributeCollection`"),
        "{reason}"
    );

    // A bad redirect URI.
    for uri in [
        "http://woodgrove.example/cb",
        "https://woodgrove.example/cb#x",
        "not a url",
    ] {
        let (path, _) = config_error(&format!(
            r#"{{"applications": [{{"clientId": "{APP}", "displayName": "W", "redirectUris": ["{uri}"]}}]}}"#
        ));
        assert_eq!(path, "applications[0].redirectUris[0]", "{uri}");
    }
    let (path, _) = config_error(&format!(
        r#"{{"applications": [{{"clientId": "{APP}", "displayName": "W",
             "redirectUris": ["{APP_REDIRECT}", "{APP_REDIRECT}"]}}]}}"#
    ));
    assert_eq!(path, "applications[0].redirectUris[1]");

    // Attribute definitions: the attribute's index and field.
    let (path, reason) = config_error(&signup_json(
        r#""attributes": [{"name": "givenName"}, {"name": "city", "maxLength": 5000}]"#,
    ));
    assert_eq!(path, "userFlows[0].attributes[1].maxLength", "{reason}");
    let (path, reason) = config_error(&signup_json(&format!(
        r#""attributes": [{{"name": "givenName"}}, {{"name": "city"}},
            {{"name": "{EXT}tier", "dataType": "string", "userInputType": "radioSingleSelect", "label": "Tier"}}]"#
    )));
    assert_eq!(path, "userFlows[0].attributes[2].userAttributeValues", "{reason}");
    let (path, reason) = config_error(&signup_json(
        r#""attributes": [{"name": "givenName"}, {"name": "givenName"}]"#,
    ));
    assert!(path.starts_with("userFlows[0].attributes[1]"), "{path}: {reason}");
    let (path, reason) = config_error(&signup_json(
        r#""attributes": [{"name": "givenName"}, {"name": "city", "dataType": "sometimes"}]"#,
    ));
    assert!(path.starts_with("userFlows[0].attributes[1]"), "{path}: {reason}");

    // Unknown fields, anywhere.
    let (path, reason) = config_error(r#"{"applications": [], "userflows": []}"#);
    assert!(reason.contains("userflows"), "{path}: {reason}");
    let (path, reason) = config_error(&format!(
        r#"{{"applications": [{{"clientId": "{APP}", "displayName": "W", "redirectUris": ["{APP_REDIRECT}"],
             "colour": "red"}}]}}"#
    ));
    assert!(path.starts_with("applications[0]"), "{path}");
    assert!(reason.contains("colour"), "{reason}");
    let (path, reason) = config_error(&signup_json(r#""attributes": [], "approvers": []"#));
    assert!(path.starts_with("userFlows[0]"), "{path}");
    assert!(reason.contains("approvers"), "{reason}");
    let (path, reason) = config_error(&signup_json(r#""attributes": [{"name": "city", "hint": "x"}]"#));
    assert!(path.starts_with("userFlows[0].attributes[0]"), "{path}");
    assert!(reason.contains("hint"), "{reason}");
    let (path, reason) = config_error(&signup_json(
        r#""attributes": [], "approval": {"required": true, "escalate": true}"#,
    ));
    assert!(path.starts_with("userFlows[0].approval"), "{path}");
    assert!(reason.contains("escalate"), "{reason}");

    // Localization.
    let (path, reason) = config_error(&signup_json(
        r#""attributes": [], "localization": {"fr-FR": {"attributesTitle": "Parlez-nous de vous"}}"#,
    ));
    assert_eq!(path, "userFlows[0].localization.fr-FR");
    assert!(reason.contains("not a supported language"), "{reason}");
    let (path, _) = config_error(&signup_json(
        r#""attributes": [], "localization": {"de": {"attributesTitle": "Hallo"}}"#,
    ));
    assert_eq!(path, "userFlows[0].localization.de");
    let (path, _) = config_error(&signup_json(
        r#""attributes": [], "localization": {"de-DE": {"attributesTitle": ""}}"#,
    ));
    assert_eq!(path, "userFlows[0].localization.de-DE.attributesTitle");
    let (path, _) = config_error(&signup_json(
        r#""attributes": [], "localization": {"de-DE": {"welcomeTitle": "Hallo"}}"#,
    ));
    assert!(path.starts_with("userFlows[0].localization"), "{path}");
    let (path, _) = config_error(&signup_json(r#""attributes": [], "defaultLanguage": "fr-FR""#));
    assert_eq!(path, "userFlows[0].defaultLanguage");

    // Ranges.
    let (path, _) = config_error(&signup_json(
        r#""attributes": [], "approval": {"required": true, "pendingLifetimeDays": 0}"#,
    ));
    assert_eq!(path, "userFlows[0].approval.pendingLifetimeDays");
    let (path, _) = config_error(&signup_json(r#""attributes": [], "flowLifetimeMinutes": 2"#));
    assert_eq!(path, "userFlows[0].flowLifetimeMinutes");
    let (path, _) = config_error(&signup_json(r#""attributes": [], "identityProviders": []"#));
    assert!(path.starts_with("userFlows[0]"), "{path}");

    // Trailing garbage.
    let (path, _) = config_error(r#"{"applications": []} {"#);
    assert_eq!(path, ".");
}

#[test]
fn a_localized_flow_uses_its_overrides_in_their_language_only() {
    let config = signup_config(
        r#""attributes": [], "defaultLanguage": "de-DE",
           "localization": {"de-DE": {"attributesTitle": "Ihr Profil"}, "nl-NL": {"approvalPending": "Even geduld"}}"#,
    );
    let flow = config.flow_for_application(APP).unwrap();
    assert_eq!(flow.text(TextKey::AttributesTitle, Language::DeDe), "Ihr Profil");
    assert_eq!(
        flow.text(TextKey::AttributesTitle, Language::EnUs),
        "Tell us about yourself"
    );
    assert_eq!(flow.text(TextKey::ApprovalPending, Language::NlNl), "Even geduld");
    assert_eq!(flow.language(None), Language::DeDe);
    assert_eq!(flow.language(Some("fr-FR nl")), Language::NlNl);
}

#[test]
fn toml_and_json_configurations_are_the_same() {
    let json = signup_json(&format!(
        r#""displayName": "Woodgrove sign-up",
           "attributes": [{{"name": "givenName"}},
                          {{"name": "{EXT}tier", "dataType": "string", "userInputType": "dropdownSingleSelect",
                            "label": {{"en-US": "Tier", "de-DE": "Stufe"}},
                            "userAttributeValues": [{{"name": "Gold", "value": "gold", "isDefault": true}},
                                                    {{"name": "Silver", "value": "silver"}}]}}],
           "apiConnectors": [{}],
           "approval": {{"required": true, "pendingLifetimeDays": 3}},
           "defaultLanguage": "nl-NL",
           "localization": {{"de-DE": {{"attributesTitle": "Ihr Profil"}}}},
           "flowLifetimeMinutes": 30"#,
        connector("postAttributeCollection", "check")
    ));
    let toml = format!(
        r#"
[[applications]]
clientId = "{APP}"
displayName = "Woodgrove Groceries"
redirectUris = ["{APP_REDIRECT}", "https://woodgrove.example/other"]

[[userFlows]]
id = "{USER_FLOW}"
displayName = "Woodgrove sign-up"
identityProviders = ["emailOtp"]
applications = ["{APP}"]
defaultLanguage = "nl-NL"
flowLifetimeMinutes = 30

[userFlows.approval]
required = true
pendingLifetimeDays = 3

[userFlows.localization.de-DE]
attributesTitle = "Ihr Profil"

[[userFlows.attributes]]
name = "givenName"

[[userFlows.attributes]]
name = "{EXT}tier"
dataType = "string"
userInputType = "dropdownSingleSelect"
label = {{ "en-US" = "Tier", "de-DE" = "Stufe" }}
userAttributeValues = [
  {{ name = "Gold", value = "gold", isDefault = true }},
  {{ name = "Silver", value = "silver" }},
]

[[userFlows.apiConnectors]]
displayName = "Woodgrove check"
targetUrl = "https://api.woodgrove.example/check"
step = "postAttributeCollection"
authentication = {{ type = "basic", username = "guestpass", password = "{PASSWORD}" }}
onUnavailable = {{ block = {{ default = "{BLOCKED_EN}", localized = {{ de = "{BLOCKED_DE}" }} }} }}
"#
    );
    let from_json = SignUpConfig::from_json(&json).unwrap();
    let from_toml = SignUpConfig::from_toml(&toml).unwrap();
    assert_eq!(from_json.applications(), from_toml.applications());
    assert_eq!(
        format!("{:?}", from_json.user_flows()),
        format!("{:?}", from_toml.user_flows())
    );
    let flow = from_toml.flow_for_application(APP).unwrap();
    assert_eq!(flow.approval_lifetime(), Duration::days(3));
    assert_eq!(flow.lifetime(), Duration::minutes(30));
    assert_eq!(flow.default_language(), Language::NlNl);
    assert!(flow.approval_required());
    assert_eq!(flow.attributes().len(), 2);
    assert!(
        !format!("{flow:?}").contains(PASSWORD),
        "the password stays out of Debug"
    );

    // TOML errors name their path too.
    let bad = toml.replace(
        "pendingLifetimeDays = 3",
        "pendingLifetimeDays = 3\nescalate = true",
    );
    let e = SignUpConfig::from_toml(&bad).unwrap_err();
    assert!(e.path.starts_with("userFlows[0].approval"), "{e}");
    let bad = toml.replace(r#"name = "givenName""#, "name = \"givenName\"\nmaxLength = 5000");
    let e = SignUpConfig::from_toml(&bad).unwrap_err();
    assert_eq!(e.path, "userFlows[0].attributes[0].maxLength", "{e}");
    let e = SignUpConfig::from_toml("[[applications]\n").unwrap_err();
    assert_eq!(e.path, ".");
}

#[test]
fn the_builder_needs_token_keys_and_an_http_client() {
    let e = Harness::try_with(|b| b.sign_up(simple_config())).unwrap_err();
    assert!(e.to_string().contains("token_keys"), "{e}");
    let with_connector = signup_config(&format!(
        r#""attributes": [], "apiConnectors": [{}]"#,
        connector("postFederationSignup", "prefill")
    ));
    let e = Harness::try_with(|b| b.sign_up(with_connector).token_keys(token_keys())).unwrap_err();
    assert!(e.to_string().contains("http_client"), "{e}");
}

// ---------------------------------------------------------------------------
// Request parameters that only fail later
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_nonce_the_token_cannot_carry_is_refused_at_the_start() {
    let h = simple_harness();
    let mut request = signup_request();
    request.nonce = Some("n".repeat(guestpass::flow::token::MAX_NONCE_LEN + 1));
    let e = h.gp.start_sign_up(request).await.unwrap_err();
    assert!(
        matches!(
            &e,
            Error::Flow(FlowError::InvalidParameter { field: "nonce", .. })
        ),
        "{e:?}"
    );
    // The longest nonce the token carries completes and is echoed.
    let nonce = "n".repeat(guestpass::flow::token::MAX_NONCE_LEN);
    let mut request = signup_request();
    request.nonce = Some(nonce.clone());
    let (handle, page) = h.flow_past_passcode(request, ADA).await;
    let done = completion(
        h.post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap(),
    );
    let token = verifier(&h)
        .verify_with_nonce(done.id_token.expose(), &nonce, h.now())
        .unwrap();
    assert_eq!(token.nonce.as_deref(), Some(nonce.as_str()));
}

#[tokio::test]
async fn ui_locales_a_connector_cannot_send_are_refused_at_the_start() {
    let client = api(|_, _, _| continue_with(json!({})));
    let config = signup_config(&format!(
        r#""attributes": [{{"name": "givenName"}}], "apiConnectors": [{}]"#,
        connector("postFederationSignup", "prefill")
    ));
    let h = signup_harness(config, |b| b.http_client(client.clone()));
    for locales in [" ", "  \t", "de-DE\u{202E}", "de-DE\u{200F} en", "<script>"] {
        let mut request = signup_request();
        request.ui_locales = Some(locales.into());
        let e = h.gp.start_sign_up(request).await.unwrap_err();
        assert!(
            matches!(
                &e,
                Error::Flow(FlowError::InvalidParameter {
                    field: "ui_locales",
                    ..
                })
            ),
            "{locales:?}: {e:?}"
        );
    }
    // Lists as browsers and apps send them work.
    for locales in ["de-DE en-US", "nl", "de-DE,de;q=0.9,en;q=0.8", "zh-Hant-TW"] {
        let mut request = signup_request();
        request.ui_locales = Some(locales.into());
        let (_, page) = h.flow_past_passcode(request, ADA).await;
        assert!(
            matches!(page.step, FlowStep::CollectAttributes { .. }),
            "{locales}: {:?}",
            page.step
        );
        assert_eq!(bodies(&client).last().unwrap()["ui_locales"], locales);
    }
}

#[tokio::test]
async fn a_failed_passcode_mail_is_shown_and_a_resend_helps() {
    let h = simple_harness();
    h.outbox.fail_next(1);
    let (handle, page) = h.start_flow(signup_request()).await;
    let page = h
        .post(&handle, &page, FlowAction::ChooseProvider("emailOtp".into()))
        .await
        .unwrap();
    let page = h
        .post(&handle, &page, FlowAction::SubmitEmail(ADA.into()))
        .await
        .unwrap();
    assert!(
        matches!(page.step, FlowStep::EnterPasscode { delivered: false, .. }),
        "{:?}",
        page.step
    );
    assert!(h.mails_of(MessageKind::Passcode).is_empty());
    // A reload says so too: the failure is stored with the flow.
    let reloaded = h.gp.view_flow(&handle).await.unwrap();
    assert!(
        matches!(reloaded.step, FlowStep::EnterPasscode { delivered: false, .. }),
        "{:?}",
        reloaded.step
    );
    let page = h.post(&handle, &page, FlowAction::ResendPasscode).await.unwrap();
    assert!(matches!(
        page.step,
        FlowStep::EnterPasscode { delivered: true, .. }
    ));
    let page = h
        .post(&handle, &page, FlowAction::SubmitPasscode(h.code_for(ADA).into()))
        .await
        .unwrap();
    assert!(matches!(page.step, FlowStep::CollectAttributes { .. }));
}

#[tokio::test]
async fn addresses_that_may_not_sign_up_are_refused_before_any_mail() {
    let settings = guestpass::policy::CollaborationSettings {
        domains: guestpass::policy::DomainRestriction::deny(["evil.example"]).unwrap(),
        ..Default::default()
    };
    let h = signup_harness(simple_config(), |b| b.collaboration(settings));
    let (handle, page) = h.start_flow(signup_request()).await;
    let page = h
        .post(&handle, &page, FlowAction::ChooseProvider("emailOtp".into()))
        .await
        .unwrap();
    for bad in ["not an address", "", "a@", "@fabrikam.example"] {
        let e = h
            .flows_unchanged(
                "bad address",
                h.post(&handle, &page, FlowAction::SubmitEmail(bad.into())),
            )
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Email(_)), "{bad}: {e:?}");
    }
    for denied in [
        "mallory@evil.example",
        "mallory@EVIL.example",
        "Mallory@evil.Example",
    ] {
        let e = h
            .flows_unchanged(
                "denied domain",
                h.post(&handle, &page, FlowAction::SubmitEmail(denied.into())),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(e, Error::Denied(Denied::DomainNotAllowed { .. })),
            "{denied}: {e:?}"
        );
    }
    assert!(h.mails_of(MessageKind::Passcode).is_empty());
    // Lookalikes are other domains.
    completion({
        let page = h
            .post(
                &handle,
                &page,
                FlowAction::SubmitEmail("ada@evil-example.com".into()),
            )
            .await
            .unwrap();
        let page = h
            .post(
                &handle,
                &page,
                FlowAction::SubmitPasscode(h.code_for("ada@evil-example.com").into()),
            )
            .await
            .unwrap();
        h.post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap()
    });
}

#[tokio::test]
async fn a_disabled_account_ends_on_its_page() {
    let h = simple_harness();
    let first = sign_up_simple(&h, ADA).await;
    let mut record = h.user(first.user_id).await;
    record.value.user.account_enabled = false;
    h.store
        .commit(
            guestpass::directory::WriteBatch::new().with(guestpass::directory::Write::User {
                record: record.value.clone(),
                expect: guestpass::directory::Expect::Version(record.version),
            }),
        )
        .await
        .unwrap();
    let (_, page) = h.flow_past_passcode(signup_request(), ADA).await;
    assert_eq!(blocked_message(&page), "Your account is disabled");
    assert_eq!(h.gp.users().await.unwrap().len(), 1);
}

// ---------------------------------------------------------------------------
// A completion that cannot hand out its token is not stored
// ---------------------------------------------------------------------------

#[tokio::test]
async fn completion_that_cannot_sign_stores_nothing() {
    let h = simple_harness();
    let (handle, page) = h.flow_past_passcode(signup_request(), ADA).await;
    assert!(
        matches!(page.step, FlowStep::CollectAttributes { .. }),
        "{:?}",
        page.step
    );
    // A second instance on the same store whose configuration no longer
    // registers the flow's redirect URI (a rolling configuration change).
    let narrowed = SignUpConfig::from_json(
        &signup_json(r#""attributes": [{"name": "givenName"}]"#)
            .replace(&format!(r#""{APP_REDIRECT}", "#), ""),
    )
    .unwrap();
    assert!(
        !narrowed.applications()[0]
            .redirect_uris
            .iter()
            .any(|u| u == APP_REDIRECT)
    );
    let other = guestpass::GuestPass::builder()
        .tenant(TENANT, TENANT_NAME, TENANT_DOMAIN)
        .public_base_url(BASE_URL)
        .signing_key(signing_key())
        .redirect_url(REDIRECT)
        .store(h.store.clone())
        .mail(h.outbox.clone())
        .clock(h.clock.clone())
        .sign_up(narrowed)
        .token_keys(token_keys())
        .build()
        .unwrap();
    let before = h.flow(&handle).await;
    let users = h.gp.users().await.unwrap().len();
    let err = other
        .advance_flow(
            &handle,
            page.csrf_token.expose(),
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Flow(FlowError::RedirectNotRegistered { .. })),
        "{err:?}"
    );
    assert_eq!(h.flow(&handle).await, before, "the flow moved on without a token");
    assert_eq!(
        h.gp.users().await.unwrap().len(),
        users,
        "a user was created without a token"
    );
    // The instance that still registers the URI completes the same step.
    let done = h
        .post(
            &handle,
            &page,
            FlowAction::SubmitAttributes(b"givenName=Ada".to_vec()),
        )
        .await
        .unwrap();
    assert!(matches!(done.step, FlowStep::Completed(_)), "{:?}", done.step);
}

#[test]
fn config_errors_never_quote_a_connector_password() {
    let toml = format!(
        r#"
[[applications]]
clientId = "{APP}"
displayName = "Woodgrove"
redirectUris = ["{APP_REDIRECT}"]

[[userFlows]]
id = "{USER_FLOW}"
identityProviders = ["emailOtp"]
applications = ["{APP}"]
attributes = []

[[userFlows.apiConnectors]]
displayName = "Check"
targetUrl = "https://api.woodgrove.example/check"
step = "postAttributeCollection"
authentication = {{ type = "basic", username = "svc", password = 20240101 }}
onUnavailable = {{ block = {{ default = "Try later" }} }}
"#
    );
    let err = SignUpConfig::from_toml(&toml).unwrap_err();
    assert!(err.path.ends_with("apiConnectors[0].authentication"), "{err}");
    assert!(!err.to_string().contains("20240101"), "{err}");
    let json = signup_json(
        r#""attributes": [], "apiConnectors": [{"displayName": "Check",
            "targetUrl": "https://api.woodgrove.example/check", "step": "postAttributeCollection",
            "authentication": {"type": "basic", "username": "svc", "password": 987654321},
            "onUnavailable": {"block": {"default": "Try later"}}}]"#,
    );
    let err = SignUpConfig::from_json(&json).unwrap_err();
    assert!(!err.to_string().contains("987654321"), "{err}");
}

#[tokio::test]
async fn sign_up_turned_off_in_the_collaboration_settings_starts_nothing() {
    let h = signup_harness(signup_config(r#""attributes": [{"name": "givenName"}]"#), |b| {
        b.collaboration(guestpass::policy::CollaborationSettings {
            self_service_sign_up_enabled: false,
            ..Default::default()
        })
    });
    h.fails_unchanged_with(
        "sign-up turned off",
        h.gp.start_sign_up(signup_request()),
        Error::Denied(guestpass::error::Denied::SelfServiceSignUpDisabled),
    )
    .await;
}
