//! The pure steps of the code flow: the authorization URL, the token
//! request and response, the ID token's claims, and userinfo.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use url::Url;

use super::config::{ClientAuth, IssuerRule, Settings};
use crate::email::EmailAddress;
use crate::http::{HttpRequest, HttpResponse, Method, header};
use crate::idp::provider::{ExternalIdentity, IdTokenError, IdpError, match_template, sanitize};
use crate::idp::wire;
use crate::secret::{SecretString, constant_time_eq};

/// Longest `sub`, in characters (OpenID Connect Core §2).
pub(crate) const MAX_SUBJECT_LEN: usize = 255;
/// Longest access token read, in bytes.
const MAX_ACCESS_TOKEN_LEN: usize = 16 * 1024;
/// Longest `oid` kept, in characters.
const MAX_OBJECT_ID_CHARS: usize = 64;
/// Most `amr` entries kept.
const MAX_AMR_ENTRIES: usize = 16;
/// Longest `amr` entry kept, in characters.
const MAX_AMR_ENTRY_CHARS: usize = 32;

/// What goes into the authorization URL besides the extras.
pub(crate) struct AuthorizeParams<'a> {
    pub(crate) client_id: &'a str,
    pub(crate) redirect_uri: &'a str,
    pub(crate) scope: &'a str,
    pub(crate) state: &'a str,
    pub(crate) nonce: Option<&'a str>,
    pub(crate) code_challenge: &'a str,
}

/// The authorization URL: `endpoint` (keeping its own query) plus
/// `response_type=code`, `client_id`, `redirect_uri`, `scope`, `state`,
/// `nonce`, `code_challenge`, `code_challenge_method=S256`, then `extras`.
pub(crate) fn authorization_url(
    endpoint: &Url,
    params: &AuthorizeParams<'_>,
    extras: &[(String, String)],
) -> Url {
    let mut url = endpoint.clone();
    {
        let mut query = url.query_pairs_mut();
        query
            .append_pair("response_type", "code")
            .append_pair("client_id", params.client_id)
            .append_pair("redirect_uri", params.redirect_uri)
            .append_pair("scope", params.scope)
            .append_pair("state", params.state);
        if let Some(nonce) = params.nonce {
            query.append_pair("nonce", nonce);
        }
        query
            .append_pair("code_challenge", params.code_challenge)
            .append_pair("code_challenge_method", "S256");
        for (name, value) in extras {
            query.append_pair(name, value);
        }
    }
    url
}

/// The token request (RFC 6749 §4.1.3 with RFC 7636): a form `POST` of
/// `grant_type=authorization_code`, `code`, `redirect_uri` and
/// `code_verifier`, authenticated as configured.
pub(crate) fn token_request(
    settings: &Settings,
    endpoint: &Url,
    code: &SecretString,
    redirect_uri: &str,
    verifier: &SecretString,
) -> Result<HttpRequest, IdpError> {
    let mut pairs = vec![
        ("grant_type", "authorization_code"),
        ("code", code.expose()),
        ("redirect_uri", redirect_uri),
        ("code_verifier", verifier.expose()),
    ];
    if settings.client_auth == ClientAuth::SecretPost {
        pairs.push(("client_id", &settings.client_id));
        pairs.push(("client_secret", settings.client_secret.expose()));
    }
    let mut request = wire::form_post(endpoint, &pairs)?;
    if settings.client_auth == ClientAuth::SecretBasic {
        let credentials = wire::basic_credentials(&settings.client_id, &settings.client_secret);
        wire::authorize(&mut request, "Basic", &credentials)?;
    }
    Ok(request)
}

/// The tokens of a successful token response.
pub(crate) struct Tokens {
    pub(crate) access_token: SecretString,
    pub(crate) id_token: Option<SecretString>,
}

fn token_response_error(reason: impl Into<String>) -> IdpError {
    IdpError::TokenResponse {
        reason: reason.into(),
    }
}

/// Reads the token response. A non-success status is
/// [`IdpError::TokenEndpoint`] with the OAuth `error` code only (never the
/// description, which may echo the request). On success `access_token` must
/// be present and `token_type` be `Bearer` (any case) when
/// `require_token_type`, or absent or `Bearer` otherwise.
pub(crate) fn token_response(response: &HttpResponse, require_token_type: bool) -> Result<Tokens, IdpError> {
    let status = response.status();
    if !status.is_success() {
        let error = wire::json_object(response.body())
            .ok()
            .and_then(|body| match body.get("error") {
                // Facebook: {"error": {"type": "OAuthException", ...}}
                Some(Value::Object(inner)) => wire::oauth_error_code(inner.get("type")),
                other => wire::oauth_error_code(other),
            });
        return Err(IdpError::TokenEndpoint {
            status: status.as_u16(),
            error,
        });
    }
    let body = wire::json_object(response.body()).map_err(token_response_error)?;
    let access_token = match body.get("access_token") {
        Some(Value::String(t)) if !t.is_empty() && t.len() <= MAX_ACCESS_TOKEN_LEN => {
            SecretString::new(t.clone())
        }
        Some(Value::String(_)) => return Err(token_response_error("`access_token` is empty or too long")),
        _ => return Err(token_response_error("there is no `access_token`")),
    };
    match body.get("token_type") {
        Some(Value::String(t)) if t.eq_ignore_ascii_case("bearer") => {}
        None if !require_token_type => {}
        Some(Value::String(t)) => {
            return Err(token_response_error(format!(
                "token type `{}` is not `Bearer`",
                sanitize(t, 32)
            )));
        }
        _ => return Err(token_response_error("there is no `token_type`")),
    }
    let id_token = match body.get("id_token") {
        None | Some(Value::Null) => None,
        Some(Value::String(t)) => Some(SecretString::new(t.clone())),
        Some(_) => return Err(token_response_error("`id_token` is not a string")),
    };
    Ok(Tokens {
        access_token,
        id_token,
    })
}

/// What the ID token is checked against.
pub(crate) struct Expectations<'a> {
    pub(crate) rule: &'a IssuerRule,
    /// Other spellings of an exact issuer the provider puts into ID tokens.
    pub(crate) issuer_aliases: &'a [String],
    pub(crate) client_id: &'a str,
    pub(crate) nonce: &'a SecretString,
    pub(crate) now: OffsetDateTime,
    pub(crate) leeway: time::Duration,
    pub(crate) hosted_domain: Option<&'a str>,
}

impl<'a> Expectations<'a> {
    /// What a provider configured with `settings` expects of the ID token
    /// of the sign-in whose nonce is `nonce`, at `now`.
    pub(crate) fn new(settings: &'a Settings, nonce: &'a SecretString, now: OffsetDateTime) -> Self {
        Self {
            rule: &settings.rule,
            issuer_aliases: &settings.issuer_aliases,
            client_id: &settings.client_id,
            nonce,
            now,
            leeway: settings.leeway,
            hosted_domain: settings.hosted_domain.as_deref(),
        }
    }
}

/// The claims of an accepted ID token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdTokenClaims {
    pub(crate) issuer: String,
    pub(crate) subject: String,
    pub(crate) tenant_id: Option<String>,
    pub(crate) hosted_domain: Option<String>,
    /// The home organisation, only when the issuer is bound to `tid`
    /// (see [`ExternalIdentity::home_tenant_id`]).
    pub(crate) home_tenant_id: Option<String>,
    pub(crate) object_id: Option<String>,
    pub(crate) amr: Vec<String>,
    pub(crate) profile: Profile,
}

/// The profile claims, from the ID token or userinfo.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Profile {
    /// The address, and whether the same source said it is verified.
    pub(crate) email: Option<(EmailAddress, bool)>,
    pub(crate) name: Option<String>,
    pub(crate) given_name: Option<String>,
    pub(crate) family_name: Option<String>,
}

impl Profile {
    /// Reads `email`, `email_verified`, `name`, `given_name` and
    /// `family_name`. An email that does not parse counts as absent;
    /// `email_verified` is JSON `true` or `"true"` only.
    pub(crate) fn from_claims(claims: &Map<String, Value>) -> Self {
        let email = claims
            .get("email")
            .and_then(Value::as_str)
            .and_then(|e| EmailAddress::parse(e).ok())
            .map(|e| (e, wire::is_true(claims.get("email_verified"))));
        Self {
            email,
            name: wire::profile_string(claims.get("name")),
            given_name: wire::profile_string(claims.get("given_name")),
            family_name: wire::profile_string(claims.get("family_name")),
        }
    }

    /// Fills what `self` lacks from `other`. The email and its
    /// verification travel together: a verified flag never attaches to an
    /// address from the other source.
    pub(crate) fn fill_from(&mut self, other: Profile) {
        if self.email.is_none() {
            self.email = other.email;
        }
        self.name = self.name.take().or(other.name);
        self.given_name = self.given_name.take().or(other.given_name);
        self.family_name = self.family_name.take().or(other.family_name);
    }
}

fn malformed(reason: impl Into<String>) -> IdpError {
    IdpError::IdToken(IdTokenError::Malformed {
        reason: reason.into(),
    })
}

/// A NumericDate claim (seconds since the epoch; a fraction is dropped).
fn numeric_date(claims: &Map<String, Value>, name: &str) -> Result<Option<OffsetDateTime>, IdpError> {
    let Some(value) = claims.get(name) else {
        return Ok(None);
    };
    let seconds = match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.is_finite() && f.abs() < 1e15)
                .map(|f| f.floor() as i64)
        }),
        _ => None,
    };
    seconds
        .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
        .map(Some)
        .ok_or_else(|| malformed(format!("`{name}` is not a time")))
}

fn optional_string<'c>(claims: &'c Map<String, Value>, name: &str) -> Result<Option<&'c str>, IdpError> {
    match claims.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(_) => Err(malformed(format!("`{name}` is not a string"))),
    }
}

/// Checks the claims of a verified ID token, in order: `iss` (exact, or the
/// template with `tid`, whose tenant must be allowed), `aud` contains the
/// client id, `azp` (required with several audiences, and the client id
/// whenever present), `exp` (required, not passed beyond the leeway), `iat`
/// (required, not beyond the leeway in the future), `nbf` (optional), the
/// `nonce` (constant time), `sub` (present, 1 to 255 characters), and the
/// hosted domain `hd` when one is required.
///
/// Then it reads, without refusing the token for them, the home tenant
/// ([`home_tenant`], only when the issuer is bound to `tid`), `oid`
/// ([`object_id`]) and `amr` ([`authentication_methods`]).
pub(crate) fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expectations<'_>,
) -> Result<IdTokenClaims, IdpError> {
    let mut issuer = optional_string(claims, "iss")?.ok_or(IdTokenError::WrongIssuer)?;
    let tid = optional_string(claims, "tid")?;
    // Whether the issuer names the tenant of `tid`, so that `tid` is not
    // merely the provider's say-so.
    let issuer_bound_to_tid;
    let tenant_id = match expect.rule {
        IssuerRule::Exact(expected) => {
            if issuer != expected && !expect.issuer_aliases.iter().any(|a| a == issuer) {
                return Err(IdTokenError::WrongIssuer.into());
            }
            // `issuer` is the configured issuer or one of its aliases.
            issuer_bound_to_tid = tid.is_some_and(|t| entra_issuer_names(issuer, t));
            // An alias names the same issuer: identities carry one spelling.
            issuer = expected;
            tid.map(|t| sanitize(t, 64))
        }
        IssuerRule::Template {
            template,
            allowed_tenants,
        } => {
            let tid = tid.ok_or(IdTokenError::MissingTenantId)?;
            if match_template(template, issuer) != Some(tid) {
                return Err(IdTokenError::WrongIssuer.into());
            }
            if let Some(allowed) = allowed_tenants
                && !allowed.iter().any(|t| t.eq_ignore_ascii_case(tid))
            {
                return Err(IdpError::TenantNotAllowed {
                    tenant_id: tid.to_owned(),
                });
            }
            // A template only binds when it is an Entra issuer's: another
            // issuer (an Azure AD B2C tenant, a realm named by a GUID) may
            // say anything in `tid` and `idp`.
            issuer_bound_to_tid = entra_issuer_names(issuer, tid);
            Some(tid.to_owned())
        }
    };

    let audiences: Vec<&str> = match claims.get("aud") {
        None | Some(Value::Null) => return Err(IdTokenError::MissingAudience.into()),
        Some(Value::String(a)) => vec![a.as_str()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .ok_or_else(|| malformed("`aud` is not a string or array of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(malformed("`aud` is not a string or array of strings")),
    };
    if audiences.is_empty() {
        return Err(IdTokenError::MissingAudience.into());
    }
    if !audiences.contains(&expect.client_id) {
        return Err(IdTokenError::WrongAudience.into());
    }
    match optional_string(claims, "azp")? {
        Some(azp) if azp != expect.client_id => return Err(IdTokenError::AzpMismatch.into()),
        None if audiences.len() > 1 => return Err(IdTokenError::AzpMismatch.into()),
        _ => {}
    }

    let skewed = expect.now.saturating_add(expect.leeway);
    let expires_at = numeric_date(claims, "exp")?.ok_or(IdTokenError::MissingExpiry)?;
    if expect.now >= expires_at.saturating_add(expect.leeway) {
        return Err(IdTokenError::Expired.into());
    }
    let issued_at = numeric_date(claims, "iat")?.ok_or(IdTokenError::MissingIssuedAt)?;
    if issued_at > skewed {
        return Err(IdTokenError::IssuedInFuture.into());
    }
    if let Some(not_before) = numeric_date(claims, "nbf")?
        && not_before > skewed
    {
        return Err(IdTokenError::NotYetValid.into());
    }

    let nonce = optional_string(claims, "nonce")?.ok_or(IdTokenError::NonceMismatch)?;
    if !constant_time_eq(nonce.as_bytes(), expect.nonce.expose().as_bytes()) {
        return Err(IdTokenError::NonceMismatch.into());
    }

    let subject = optional_string(claims, "sub")?
        .filter(|s| !s.is_empty())
        .ok_or(IdTokenError::MissingSubject)?;
    check_subject(subject)?;

    let hd = optional_string(claims, "hd")?;
    if let Some(required) = expect.hosted_domain
        && !hd.is_some_and(|hd| hd.eq_ignore_ascii_case(required))
    {
        return Err(IdpError::HostedDomainNotAllowed {
            hosted_domain: hd.map(|d| sanitize(d, 253)),
        });
    }

    Ok(IdTokenClaims {
        issuer: issuer.to_owned(),
        subject: subject.to_owned(),
        tenant_id,
        hosted_domain: hd.map(|d| d.to_ascii_lowercase()).filter(|d| d.len() <= 253),
        home_tenant_id: tid
            .filter(|_| issuer_bound_to_tid)
            .and_then(|tid| home_tenant(claims, tid)),
        object_id: object_id(claims),
        amr: authentication_methods(claims),
        profile: Profile::from_claims(claims),
    })
}

/// `text` in lowercase when it is a GUID in its `8-4-4-4-12` hex form (as
/// Entra tenant ids are), else `None`.
pub(crate) fn lowercase_guid(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let well_formed = bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        });
    well_formed.then(|| text.to_ascii_lowercase())
}

/// Whether `issuer` is an Entra issuer URL naming the tenant `tid` (see
/// [`entra_issuer_tenant`]).
fn entra_issuer_names(issuer: &str, tid: &str) -> bool {
    entra_issuer_tenant(issuer).is_some_and(|t| Some(t) == lowercase_guid(tid))
}

/// The tenant an Entra issuer URL names: `https://sts.windows.net/{tid}/`
/// (v1.0 tokens) or `https://{authority}/{tid}/v2.0` for the global and
/// national clouds' authorities (`login.microsoftonline.com`,
/// `login.microsoftonline.us`, `login.partner.microsoftonline.cn`), the
/// tenant a GUID; lowercase. `None` for any other issuer.
fn entra_issuer_tenant(issuer: &str) -> Option<String> {
    const AUTHORITIES: [&str; 3] = [
        "https://login.microsoftonline.com/",
        "https://login.microsoftonline.us/",
        "https://login.partner.microsoftonline.cn/",
    ];
    let tenant = issuer
        .strip_prefix("https://sts.windows.net/")
        .and_then(|rest| rest.strip_suffix('/'))
        .or_else(|| {
            AUTHORITIES
                .iter()
                .find_map(|a| issuer.strip_prefix(a).and_then(|rest| rest.strip_suffix("/v2.0")))
        })?;
    lowercase_guid(tenant)
}

/// The user's home tenant for a token whose issuer is bound to `tid`
/// (lowercase; `None` unless it is a GUID). Without an `idp` claim the user
/// belongs to the issuing tenant `tid`; a guest's `idp` names the home
/// tenant's issuer, and an `idp` that is no Entra tenant's issuer (`live.com`,
/// `google.com`, or not a string) names no organisation.
fn home_tenant(claims: &Map<String, Value>, tid: &str) -> Option<String> {
    let tid = lowercase_guid(tid)?;
    match claims.get("idp") {
        None | Some(Value::Null) => Some(tid),
        Some(Value::String(idp)) => entra_issuer_tenant(idp),
        Some(_) => None,
    }
}

/// Whether `text` is a short claim value worth keeping: 1 to `max_chars`
/// characters, none of them a control character.
fn is_short_text(text: &str, max_chars: usize) -> bool {
    !text.is_empty() && text.chars().count() <= max_chars && !text.chars().any(char::is_control)
}

/// `oid`, when it is a string of at most 64 characters (no control
/// characters); anything else is dropped.
fn object_id(claims: &Map<String, Value>) -> Option<String> {
    claims
        .get("oid")
        .and_then(Value::as_str)
        .filter(|oid| is_short_text(oid, MAX_OBJECT_ID_CHARS))
        .map(str::to_owned)
}

/// The string entries of the array `amr` of at most 32 characters (no
/// control characters), the first 16 of them; other entries are dropped,
/// and an `amr` that is no array is ignored.
fn authentication_methods(claims: &Map<String, Value>) -> Vec<String> {
    let Some(Value::Array(items)) = claims.get("amr") else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(Value::as_str)
        .filter(|method| is_short_text(method, MAX_AMR_ENTRY_CHARS))
        .take(MAX_AMR_ENTRIES)
        .map(str::to_owned)
        .collect()
}

fn check_subject(subject: &str) -> Result<(), IdpError> {
    if subject.chars().count() > MAX_SUBJECT_LEN {
        return Err(malformed(format!(
            "`sub` is longer than {MAX_SUBJECT_LEN} characters"
        )));
    }
    if subject.chars().any(char::is_control) {
        return Err(malformed("`sub` contains control characters"));
    }
    Ok(())
}

/// The userinfo request: `GET` with the access token as Bearer.
pub(crate) fn userinfo_request(endpoint: &Url, access_token: &SecretString) -> Result<HttpRequest, IdpError> {
    let mut request = wire::request(Method::GET, endpoint, Vec::new())?;
    wire::authorize(&mut request, "Bearer", access_token.expose())?;
    Ok(request)
}

fn userinfo_error(reason: impl Into<String>) -> IdpError {
    IdpError::Userinfo {
        reason: reason.into(),
    }
}

/// Reads the userinfo response (JSON only; signed responses are not
/// supported). Its `sub` must be the ID token's.
pub(crate) fn userinfo_response(response: &HttpResponse, subject: &str) -> Result<Profile, IdpError> {
    if !response.status().is_success() {
        return Err(userinfo_error(format!(
            "the endpoint answered with status {}",
            response.status().as_u16()
        )));
    }
    let jwt = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim_start().to_ascii_lowercase().starts_with("application/jwt"));
    if jwt {
        return Err(userinfo_error("signed userinfo responses are not supported"));
    }
    let body = wire::json_object(response.body()).map_err(userinfo_error)?;
    match body.get("sub").and_then(Value::as_str) {
        Some(sub) if constant_time_eq(sub.as_bytes(), subject.as_bytes()) => {}
        _ => return Err(IdpError::UserinfoSubjectMismatch),
    }
    Ok(Profile::from_claims(&body))
}

/// The identity: the ID token's claims, its profile filled in from
/// userinfo's where it has none.
pub(crate) fn identity(
    provider_id: &str,
    claims: IdTokenClaims,
    userinfo: Option<Profile>,
) -> ExternalIdentity {
    let mut profile = claims.profile;
    if let Some(extra) = userinfo {
        profile.fill_from(extra);
    }
    let (email, email_verified) = match profile.email {
        Some((email, verified)) => (Some(email), verified),
        None => (None, false),
    };
    ExternalIdentity {
        provider_id: provider_id.to_owned(),
        issuer: claims.issuer,
        subject: claims.subject,
        email,
        email_verified,
        name: profile.name,
        given_name: profile.given_name,
        family_name: profile.family_name,
        tenant_id: claims.tenant_id,
        hosted_domain: claims.hosted_domain,
        home_tenant_id: claims.home_tenant_id,
        object_id: claims.object_id,
        amr: claims.amr,
    }
}
