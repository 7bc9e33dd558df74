//! The OpenID Provider metadata (OpenID Connect Discovery 1.0 §3): fetched
//! once, checked, cached.

use serde_json::{Map, Value};
use url::Url;

use super::config::{IssuerRule, Settings};
use crate::http::{HttpRequest, HttpResponse, Method};
use crate::idp::provider::{IdpError, sanitize};
use crate::idp::wire;

/// The parts of the discovery document the relying party uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Discovery {
    pub(crate) issuer: String,
    pub(crate) authorization_endpoint: Url,
    pub(crate) token_endpoint: Url,
    pub(crate) jwks_uri: Url,
    pub(crate) userinfo_endpoint: Option<Url>,
    /// RFC 9207: the provider puts `iss` into every authorization response.
    pub(crate) iss_parameter_supported: bool,
}

pub(crate) fn request(settings: &Settings) -> Result<HttpRequest, IdpError> {
    wire::request(Method::GET, &settings.discovery_url, Vec::new())
}

fn discovery_error(reason: impl Into<String>) -> IdpError {
    IdpError::Discovery {
        reason: reason.into(),
    }
}

/// Checks the discovery response: status 200, a JSON object whose `issuer`
/// is the configured one (or, for a multi-tenant provider, the template),
/// the endpoints the code flow needs as `https` URLs, `code` among
/// `response_types_supported`, the configured client authentication and
/// `S256` among the advertised methods (when they are listed).
pub(crate) fn parse(settings: &Settings, response: &HttpResponse) -> Result<Discovery, IdpError> {
    if !response.status().is_success() {
        return Err(discovery_error(format!(
            "the document answered with status {}",
            response.status().as_u16()
        )));
    }
    let doc = wire::json_object(response.body()).map_err(discovery_error)?;

    let issuer = string(&doc, "issuer")?.ok_or_else(|| missing("issuer"))?;
    let issuer_ok = match &settings.rule {
        IssuerRule::Exact(expected) => issuer == expected,
        IssuerRule::Template { template, .. } => issuer == template || issuer == settings.issuer,
    };
    if !issuer_ok {
        let expected = match &settings.rule {
            IssuerRule::Exact(expected) => expected.clone(),
            IssuerRule::Template { template, .. } => template.clone(),
        };
        return Err(IdpError::DiscoveryIssuerMismatch {
            expected,
            actual: sanitize(issuer, 256),
        });
    }

    let authorization_endpoint = endpoint(settings, &doc, "authorization_endpoint")?
        .ok_or_else(|| missing("authorization_endpoint"))?;
    let token_endpoint =
        endpoint(settings, &doc, "token_endpoint")?.ok_or_else(|| missing("token_endpoint"))?;
    let jwks_uri = endpoint(settings, &doc, "jwks_uri")?.ok_or_else(|| missing("jwks_uri"))?;
    let userinfo_endpoint = endpoint(settings, &doc, "userinfo_endpoint")?;

    let response_types =
        strings(&doc, "response_types_supported")?.ok_or_else(|| missing("response_types_supported"))?;
    if !response_types.contains(&"code") {
        return Err(discovery_error(
            "the provider does not support the `code` response type",
        ));
    }
    let auth_method = settings.client_auth.method_name();
    match strings(&doc, "token_endpoint_auth_methods_supported")? {
        Some(methods) if !methods.contains(&auth_method) => {
            return Err(discovery_error(format!(
                "the provider does not support `{auth_method}` client authentication"
            )));
        }
        // Absent means `client_secret_basic`; many providers leave it out
        // and still take `client_secret_post`, so only a list is checked.
        _ => {}
    }
    if let Some(methods) = strings(&doc, "code_challenge_methods_supported")?
        && !methods.contains(&"S256")
    {
        return Err(discovery_error(
            "the provider does not support the PKCE method `S256`",
        ));
    }
    let iss_parameter_supported = match doc.get("authorization_response_iss_parameter_supported") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(wrong_type("authorization_response_iss_parameter_supported")),
    };

    Ok(Discovery {
        issuer: issuer.to_owned(),
        authorization_endpoint,
        token_endpoint,
        jwks_uri,
        userinfo_endpoint,
        iss_parameter_supported,
    })
}

fn missing(field: &str) -> IdpError {
    discovery_error(format!("the document has no `{field}`"))
}

fn wrong_type(field: &str) -> IdpError {
    discovery_error(format!("`{field}` has the wrong type"))
}

fn string<'d>(doc: &'d Map<String, Value>, field: &str) -> Result<Option<&'d str>, IdpError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(wrong_type(field)),
    }
}

fn strings<'d>(doc: &'d Map<String, Value>, field: &str) -> Result<Option<Vec<&'d str>>, IdpError> {
    match doc.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| wrong_type(field)))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(_) => Err(wrong_type(field)),
    }
}

/// An endpoint the discovery document names: as [`wire::endpoint`], and,
/// unless the document itself came from a loopback host, never on one (a
/// remote provider's document must not point the server at its own
/// loopback services).
fn endpoint(settings: &Settings, doc: &Map<String, Value>, field: &str) -> Result<Option<Url>, IdpError> {
    match string(doc, field)? {
        None => Ok(None),
        Some(raw) => {
            let url = wire::endpoint(raw).map_err(|reason| discovery_error(format!("`{field}` {reason}")))?;
            if crate::config::is_loopback(&url) && !crate::config::is_loopback(&settings.discovery_url) {
                return Err(discovery_error(format!(
                    "`{field}` points at a loopback host, and the provider is not on one"
                )));
            }
            Ok(Some(url))
        }
    }
}
