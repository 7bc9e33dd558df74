//! The OData query options of `GET /v1.0/users` and `GET /v1.0/users/{id}`:
//! `$filter`, `$select`, `$top` and `$skiptoken`, and the projection and
//! collection wrapper of the answers.
//!
//! The parsers are total (every input gives a value or a [`GraphError`],
//! never a panic) and bounded: a query option longer than
//! [`MAX_QUERY_OPTION_LEN`] bytes, or a query string longer than
//! [`MAX_QUERY_LEN`], is refused before it is looked at.
//!
//! `$filter` supports exactly `userType eq 'Guest'|'Member'` and
//! `externalUserState eq 'PendingAcceptance'|'Accepted'`, joined with `and`.
//! Keywords, property names and values are matched case-insensitively (as
//! Graph does); literals are single-quoted with `''` for a quote. Anything
//! else is refused with a 400 naming what is not supported:
//! `Request_UnsupportedQuery` for valid OData this API does not implement
//! (`or`, `ne`, functions, other properties), `Request_BadRequest` for
//! malformed text or unknown properties.
//!
//! ```
//! use guestpass::graph::odata::{Select, UsersQuery};
//!
//! let q = UsersQuery::from_query(Some("$filter=userType%20eq%20'Guest'&$select=displayName,mail&$top=10"))?;
//! assert_eq!(q.filter.as_ref().map(|f| f.to_string()).as_deref(), Some("userType eq 'Guest'"));
//! assert_eq!(q.select.as_ref().map(Select::properties), Some(&["displayName".to_owned(), "mail".to_owned()][..]));
//! assert_eq!(q.top, Some(10));
//!
//! let e = Select::parse("displayName,foo").unwrap_err();
//! assert_eq!(e.message, "property `foo` does not exist on type `user`");
//! # Ok::<(), guestpass::graph::GraphError>(())
//! ```

use std::fmt;

use serde_json::{Map, Value};
use url::Url;

use crate::directory::{ExternalUserState, User, UserType};
use crate::flow::attributes::ExtensionAttributeName;
use crate::graph::{GraphError, api_root, quote};
use crate::id::Id;

/// Longest value of one query option (`$filter`, `$select`, ...), in bytes.
pub const MAX_QUERY_OPTION_LEN: usize = 2048;
/// Longest query string, in bytes.
pub const MAX_QUERY_LEN: usize = 8192;
/// Largest `$top` (as Graph's users endpoint).
pub const MAX_TOP: u32 = 999;
/// Users per page when the request sets no `$top` (as Graph).
pub const DEFAULT_PAGE_SIZE: u32 = 100;

/// The properties of Graph's `user` this directory shows, as the JSON of
/// [`User`] names them (the profile attributes in
/// [`USER_PROFILE_PROPERTIES`] come on top, and custom
/// `extension_<appId>_<name>` attributes).
pub const USER_PROPERTIES: [&str; 14] = [
    "id",
    "userType",
    "externalUserState",
    "externalUserStateChangeDateTime",
    "creationType",
    "identities",
    "mail",
    "otherMails",
    "displayName",
    "userPrincipalName",
    "accountEnabled",
    "sponsors",
    "createdDateTime",
    "agreementAcceptances",
];

/// The built-in profile attributes a user may have (kept in
/// [`User::attributes`]): every [`BuiltInAttribute`](crate::flow::attributes::BuiltInAttribute) but `displayName` and
/// `email`, which are [`User`] fields (`displayName`, `mail`).
pub const USER_PROFILE_PROPERTIES: [&str; 8] = [
    "givenName",
    "surname",
    "jobTitle",
    "streetAddress",
    "city",
    "state",
    "postalCode",
    "country",
];

/// The canonical spelling of a `user` property named `name` in any letter
/// case, or a custom attribute name spelled exactly.
pub(crate) fn canonical_property(name: &str) -> Option<String> {
    USER_PROPERTIES
        .iter()
        .chain(USER_PROFILE_PROPERTIES.iter())
        .find(|p| p.eq_ignore_ascii_case(name))
        .map(|p| (*p).to_owned())
        .or_else(|| {
            ExtensionAttributeName::parse(name)
                .ok()
                .map(|e| e.as_str().to_owned())
        })
}

fn no_such_property(name: &str) -> GraphError {
    GraphError::bad_request(format!(
        "property `{}` does not exist on type `user`",
        quote(name)
    ))
}

// ---------------------------------------------------------------------------
// $filter
// ---------------------------------------------------------------------------

/// One `property eq 'value'` comparison of a [`Filter`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clause {
    /// `userType eq 'Guest'` or `'Member'`.
    UserType(UserType),
    /// `externalUserState eq 'PendingAcceptance'` or `'Accepted'`.
    ExternalUserState(ExternalUserState),
}

impl Clause {
    /// Whether `user` satisfies the comparison (a user without an
    /// `externalUserState` satisfies no `externalUserState` clause).
    pub fn matches(&self, user: &User) -> bool {
        match self {
            Clause::UserType(t) => user.user_type == *t,
            Clause::ExternalUserState(s) => user.external_user_state == Some(*s),
        }
    }
}

impl fmt::Display for Clause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Clause::UserType(UserType::Guest) => f.write_str("userType eq 'Guest'"),
            Clause::UserType(UserType::Member) => f.write_str("userType eq 'Member'"),
            Clause::ExternalUserState(ExternalUserState::PendingAcceptance) => {
                f.write_str("externalUserState eq 'PendingAcceptance'")
            }
            Clause::ExternalUserState(ExternalUserState::Accepted) => {
                f.write_str("externalUserState eq 'Accepted'")
            }
        }
    }
}

/// A parsed `$filter`: clauses that must all hold.
///
/// `Display` writes the canonical form, which parses back to the same filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    Str(String),
    Punct(char),
}

impl fmt::Display for Tok<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Tok::Word(w) => write!(f, "`{}`", quote(w)),
            Tok::Str(s) => write!(f, "the string `'{}'`", quote(s)),
            Tok::Punct(c) => write!(f, "`{}`", quote(&c.to_string())),
        }
    }
}

fn lex(s: &str) -> Result<Vec<Tok<'_>>, GraphError> {
    let bytes = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        match b {
            b' ' | b'\t' | b'\r' | b'\n' => i += 1,
            b'\'' => {
                let mut value = String::new();
                let mut j = i + 1;
                loop {
                    // Find the next quote; everything before it is literal.
                    let rest = s.get(j..).unwrap_or_default();
                    let Some(q) = rest.find('\'') else {
                        return Err(GraphError::bad_request(
                            "unterminated string literal in `$filter`",
                        ));
                    };
                    value.push_str(rest.get(..q).unwrap_or_default());
                    j += q + 1;
                    if bytes.get(j) == Some(&b'\'') {
                        value.push('\'');
                        j += 1;
                    } else {
                        break;
                    }
                }
                out.push(Tok::Str(value));
                i = j;
            }
            b'"' => {
                return Err(GraphError::bad_request(
                    "string literals in `$filter` use single quotes",
                ));
            }
            b if b.is_ascii_alphanumeric() || b == b'_' || b == b'.' => {
                let start = i;
                while bytes
                    .get(i)
                    .is_some_and(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'.')
                {
                    i += 1;
                }
                out.push(Tok::Word(s.get(start..i).unwrap_or_default()));
            }
            b'(' | b')' | b',' | b'/' | b'$' | b'-' | b'=' | b'*' | b':' => {
                out.push(Tok::Punct(char::from(b)));
                i += 1;
            }
            _ => {
                let c = s.get(i..).and_then(|r| r.chars().next()).unwrap_or('?');
                return Err(GraphError::bad_request(format!(
                    "unexpected character `{}` in `$filter`",
                    quote(&c.to_string())
                )));
            }
        }
    }
    Ok(out)
}

#[derive(Clone, Copy)]
enum FilterProperty {
    UserType,
    ExternalUserState,
}

impl FilterProperty {
    fn name(self) -> &'static str {
        match self {
            FilterProperty::UserType => "userType",
            FilterProperty::ExternalUserState => "externalUserState",
        }
    }

    fn clause(self, value: &str) -> Result<Clause, GraphError> {
        let found = match self {
            FilterProperty::UserType => [
                ("Guest", Clause::UserType(UserType::Guest)),
                ("Member", Clause::UserType(UserType::Member)),
            ]
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(value)),
            FilterProperty::ExternalUserState => [
                (
                    "PendingAcceptance",
                    Clause::ExternalUserState(ExternalUserState::PendingAcceptance),
                ),
                ("Accepted", Clause::ExternalUserState(ExternalUserState::Accepted)),
            ]
            .into_iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(value)),
        };
        found.map(|(_, c)| c).ok_or_else(|| {
            let expected = match self {
                FilterProperty::UserType => "`'Guest'` or `'Member'`",
                FilterProperty::ExternalUserState => "`'PendingAcceptance'` or `'Accepted'`",
            };
            GraphError::bad_request(format!(
                "`{}` is not a value of `{}`; expected {expected}",
                quote(value),
                self.name()
            ))
        })
    }
}

const COMPARISON_OPERATORS: [&str; 7] = ["ne", "gt", "ge", "lt", "le", "in", "has"];

impl Filter {
    /// Parses a `$filter` value (already percent-decoded).
    ///
    /// # Errors
    ///
    /// 400 naming what is wrong or unsupported; see the module docs.
    pub fn parse(s: &str) -> Result<Self, GraphError> {
        if s.len() > MAX_QUERY_OPTION_LEN {
            return Err(GraphError::bad_request(format!(
                "`$filter` is longer than {MAX_QUERY_OPTION_LEN} bytes"
            )));
        }
        let toks = lex(s)?;
        let mut it = toks.iter().peekable();
        let mut clauses = Vec::new();
        loop {
            let property = match it.next() {
                None if clauses.is_empty() => return Err(GraphError::bad_request("`$filter` is empty")),
                None => {
                    return Err(GraphError::bad_request(
                        "`$filter` ends after `and`; expected a comparison",
                    ));
                }
                Some(Tok::Punct('(')) => {
                    return Err(GraphError::unsupported_query(
                        "parentheses are not supported in `$filter`",
                    ));
                }
                Some(Tok::Word(w)) if it.peek() == Some(&&Tok::Punct('(')) => {
                    return Err(GraphError::unsupported_query(format!(
                        "function `{}` is not supported in `$filter`",
                        quote(w)
                    )));
                }
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("not") => {
                    return Err(GraphError::unsupported_query(
                        "operator `not` is not supported in `$filter`",
                    ));
                }
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("userType") => FilterProperty::UserType,
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("externalUserState") => {
                    FilterProperty::ExternalUserState
                }
                Some(Tok::Word(w)) => {
                    return Err(match canonical_property(w) {
                        Some(p) => GraphError::unsupported_query(format!(
                            "filtering on property `{p}` is not supported; only `userType` and `externalUserState` are"
                        )),
                        None => no_such_property(w),
                    });
                }
                Some(other) => {
                    return Err(GraphError::bad_request(format!(
                        "expected a property name in `$filter`, found {other}"
                    )));
                }
            };
            match it.next() {
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("eq") => {}
                Some(Tok::Word(w)) if COMPARISON_OPERATORS.iter().any(|o| o.eq_ignore_ascii_case(w)) => {
                    return Err(GraphError::unsupported_query(format!(
                        "operator `{}` is not supported in `$filter`; only `eq` is",
                        w.to_ascii_lowercase()
                    )));
                }
                Some(Tok::Punct('/')) => {
                    return Err(GraphError::unsupported_query(format!(
                        "property paths are not supported in `$filter`; `{}` has no members",
                        property.name()
                    )));
                }
                _ => {
                    return Err(GraphError::bad_request(format!(
                        "expected `eq` after `{}` in `$filter`",
                        property.name()
                    )));
                }
            }
            match it.next() {
                Some(Tok::Str(value)) => clauses.push(property.clause(value)?),
                _ => {
                    return Err(GraphError::bad_request(format!(
                        "`{}` must be compared with a quoted string in `$filter`, such as {}",
                        property.name(),
                        match property {
                            FilterProperty::UserType => "`'Guest'`",
                            FilterProperty::ExternalUserState => "`'Accepted'`",
                        }
                    )));
                }
            }
            match it.next() {
                None => return Ok(Self { clauses }),
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("and") => {}
                Some(Tok::Word(w)) if w.eq_ignore_ascii_case("or") => {
                    return Err(GraphError::unsupported_query(
                        "operator `or` is not supported in `$filter`; join comparisons with `and`",
                    ));
                }
                Some(other) => {
                    return Err(GraphError::bad_request(format!(
                        "expected `and` or the end of `$filter` after a comparison, found {other}"
                    )));
                }
            }
        }
    }

    /// A filter of these clauses (an empty list matches every user).
    pub fn from_clauses(clauses: Vec<Clause>) -> Self {
        Self { clauses }
    }

    /// The clauses, in the order written.
    pub fn clauses(&self) -> &[Clause] {
        &self.clauses
    }

    /// Whether `user` satisfies every clause.
    pub fn matches(&self, user: &User) -> bool {
        self.clauses.iter().all(|c| c.matches(user))
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, c) in self.clauses.iter().enumerate() {
            if i > 0 {
                f.write_str(" and ")?;
            }
            write!(f, "{c}")?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// $select
// ---------------------------------------------------------------------------

/// A parsed `$select`: `user` property names in their canonical spelling,
/// each once, in the order first named.
///
/// `Display` writes them comma-separated, which parses back to the same
/// selection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Select {
    properties: Vec<String>,
}

impl Select {
    /// Parses a `$select` value (already percent-decoded): property names
    /// separated by commas, spaces around them allowed. Names of
    /// [`USER_PROPERTIES`] and [`USER_PROFILE_PROPERTIES`] match in any
    /// letter case; custom attribute names must be spelled exactly.
    ///
    /// # Errors
    ///
    /// 400 `Request_BadRequest` naming an unknown property, or for an empty
    /// value or name; 400 `Request_UnsupportedQuery` for `*` and paths.
    pub fn parse(s: &str) -> Result<Self, GraphError> {
        if s.len() > MAX_QUERY_OPTION_LEN {
            return Err(GraphError::bad_request(format!(
                "`$select` is longer than {MAX_QUERY_OPTION_LEN} bytes"
            )));
        }
        if s.trim().is_empty() {
            return Err(GraphError::bad_request("`$select` is empty"));
        }
        let mut properties: Vec<String> = Vec::new();
        for raw in s.split(',') {
            let name = raw.trim();
            if name.is_empty() {
                return Err(GraphError::bad_request("`$select` has an empty property name"));
            }
            if name == "*" {
                return Err(GraphError::unsupported_query(
                    "`$select=*` is not supported; name the properties",
                ));
            }
            if name.contains('/') {
                return Err(GraphError::unsupported_query(format!(
                    "property paths such as `{}` are not supported in `$select`",
                    quote(name)
                )));
            }
            let canonical = canonical_property(name).ok_or_else(|| no_such_property(name))?;
            if !properties.contains(&canonical) {
                properties.push(canonical);
            }
        }
        Ok(Self { properties })
    }

    /// The selected properties.
    pub fn properties(&self) -> &[String] {
        &self.properties
    }

    /// Whether `property` (canonical spelling) is selected.
    pub fn contains(&self, property: &str) -> bool {
        self.properties.iter().any(|p| p == property)
    }
}

impl fmt::Display for Select {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.properties.join(","))
    }
}

// ---------------------------------------------------------------------------
// $top, $skiptoken
// ---------------------------------------------------------------------------

/// Parses `$top`: an integer from 1 to [`MAX_TOP`].
///
/// # Errors
///
/// 400 `Request_BadRequest` naming the value.
pub fn parse_top(s: &str) -> Result<u32, GraphError> {
    let bad = || {
        GraphError::bad_request(format!(
            "`$top` must be an integer from 1 to {MAX_TOP}, not `{}`",
            quote(s)
        ))
    };
    if s.is_empty() || s.len() > 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    match s.parse::<u32>() {
        Ok(n) if (1..=MAX_TOP).contains(&n) => Ok(n),
        _ => Err(bad()),
    }
}

fn parse_skip_token(s: &str) -> Result<Id, GraphError> {
    s.parse()
        .map_err(|_| GraphError::bad_request("`$skiptoken` is not valid; use the `@odata.nextLink` as given"))
}

// ---------------------------------------------------------------------------
// Query strings
// ---------------------------------------------------------------------------

const UNSUPPORTED_OPTIONS: [&str; 10] = [
    "$orderby", "$count", "$expand", "$search", "$skip", "$format", "$apply", "$compute", "$levels", "$index",
];

/// The recognised system query options of a query string (percent-decoded,
/// names lowercased). Unknown options without `$` are ignored, as OData
/// custom options.
fn options(query: Option<&str>, allowed: &[&str], target: &str) -> Result<Vec<(String, String)>, GraphError> {
    let query = query.unwrap_or_default();
    if query.len() > MAX_QUERY_LEN {
        return Err(GraphError::bad_request(format!(
            "the query string is longer than {MAX_QUERY_LEN} bytes"
        )));
    }
    let mut out: Vec<(String, String)> = Vec::new();
    for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
        if !key.starts_with('$') {
            continue;
        }
        let key = key.to_ascii_lowercase();
        if !allowed.contains(&key.as_str()) {
            let known = UNSUPPORTED_OPTIONS.contains(&key.as_str())
                || ["$filter", "$select", "$top", "$skiptoken"].contains(&key.as_str());
            return Err(if known {
                GraphError::unsupported_query(format!(
                    "query option `{}` is not supported {target}",
                    quote(&key)
                ))
            } else {
                GraphError::bad_request(format!("query option `{}` is not known", quote(&key)))
            });
        }
        if out.iter().any(|(k, _)| *k == key) {
            return Err(GraphError::bad_request(format!(
                "query option `{key}` is given twice"
            )));
        }
        out.push((key, value.into_owned()));
    }
    Ok(out)
}

/// The query of `GET /v1.0/users`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsersQuery {
    /// `$filter`.
    pub filter: Option<Filter>,
    /// `$select`.
    pub select: Option<Select>,
    /// `$top`: the page size (else [`DEFAULT_PAGE_SIZE`]).
    pub top: Option<u32>,
    /// `$skiptoken`: where the page starts, from a previous
    /// `@odata.nextLink`.
    pub skip_token: Option<Id>,
}

impl UsersQuery {
    /// Reads the query string of the request (without `?`; `None` when it
    /// has none): `$filter`, `$select`, `$top`, `$skiptoken`, names in any
    /// letter case, each at most once.
    ///
    /// # Errors
    ///
    /// 400 for an option that does not parse, is given twice, or is not
    /// supported (`$orderby`, `$count`, `$expand`, `$search`, ...).
    pub fn from_query(query: Option<&str>) -> Result<Self, GraphError> {
        let mut q = Self::default();
        for (key, value) in options(query, &["$filter", "$select", "$top", "$skiptoken"], "on users")? {
            match key.as_str() {
                "$filter" => q.filter = Some(Filter::parse(&value)?),
                "$select" => q.select = Some(Select::parse(&value)?),
                "$top" => q.top = Some(parse_top(&value)?),
                _ => q.skip_token = Some(parse_skip_token(&value)?),
            }
        }
        Ok(q)
    }

    /// The page size.
    pub fn page_size(&self) -> usize {
        usize::try_from(self.top.unwrap_or(DEFAULT_PAGE_SIZE)).unwrap_or(usize::MAX)
    }

    /// The page of `users` this query asks for: those the filter matches,
    /// ordered by id, after the skip token, at most the page size; and
    /// whether more follow.
    pub fn page(&self, users: Vec<User>) -> (Vec<User>, bool) {
        let mut matching: Vec<User> = users
            .into_iter()
            .filter(|u| self.filter.as_ref().is_none_or(|f| f.matches(u)))
            .filter(|u| self.skip_token.is_none_or(|t| u.id > t))
            .collect();
        matching.sort_by_key(|u| u.id);
        let more = matching.len() > self.page_size();
        matching.truncate(self.page_size());
        (matching, more)
    }

    /// The `200 OK` body for `users` (every user of the tenant, as
    /// `GuestPass::users` returns them): the page, each user projected to
    /// the selection, in the collection wrapper, with an
    /// `@odata.nextLink` when more follow.
    ///
    /// # Errors
    ///
    /// 500 when a user does not serialize.
    pub fn render(&self, users: Vec<User>, base: &Url) -> Result<Value, GraphError> {
        let (page, more) = self.page(users);
        let next = match (more, page.last()) {
            (true, Some(last)) => Some(self.next_link(base, last.id)),
            _ => None,
        };
        let values = page
            .iter()
            .map(|u| project(u, self.select.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(collection(base, self.select.as_ref(), values, next))
    }

    /// The link to the page after the user `last`.
    fn next_link(&self, base: &Url, last: Id) -> String {
        let mut link = format!("{}/users?", api_root(base));
        let mut pairs: Vec<(&str, String)> = Vec::new();
        if let Some(f) = &self.filter {
            pairs.push(("$filter", f.to_string()));
        }
        if let Some(s) = &self.select {
            pairs.push(("$select", s.to_string()));
        }
        if let Some(t) = self.top {
            pairs.push(("$top", t.to_string()));
        }
        pairs.push(("$skiptoken", last.to_string()));
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                link.push('&');
            }
            link.push_str(k);
            link.push('=');
            link.extend(url::form_urlencoded::byte_serialize(v.as_bytes()));
        }
        link
    }
}

/// The query of `GET /v1.0/users/{id}`: only `$select`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EntityQuery {
    /// `$select`.
    pub select: Option<Select>,
}

impl EntityQuery {
    /// Reads the query string (without `?`).
    ///
    /// # Errors
    ///
    /// 400 for a `$select` that does not parse, or any other system query
    /// option.
    pub fn from_query(query: Option<&str>) -> Result<Self, GraphError> {
        let mut q = Self::default();
        for (_, value) in options(query, &["$select"], "on a single user")? {
            q.select = Some(Select::parse(&value)?);
        }
        Ok(q)
    }
}

// ---------------------------------------------------------------------------
// Rendering
// ---------------------------------------------------------------------------

/// The JSON of `user`, keeping only the selected properties plus `id`
/// (a selected property the user has no value for is `null`, as Graph
/// shows it). Without a selection, every property [`User`] serializes.
///
/// # Errors
///
/// 500 when the user does not serialize (a date outside the years 0 to 9999).
pub fn project(user: &User, select: Option<&Select>) -> Result<Value, GraphError> {
    let full = serde_json::to_value(user).map_err(|_| GraphError::internal())?;
    let Some(select) = select else {
        return Ok(full);
    };
    let Value::Object(mut full) = full else {
        return Err(GraphError::internal());
    };
    let mut out = Map::new();
    out.insert("id".to_owned(), full.remove("id").unwrap_or(Value::Null));
    for p in &select.properties {
        let v = full.remove(p).unwrap_or(Value::Null);
        out.entry(p.clone()).or_insert(v);
    }
    Ok(Value::Object(out))
}

/// `<root>/$metadata#users`, or `#users(a,b)` for a selection.
pub fn users_context(base: &Url, select: Option<&Select>) -> String {
    match select {
        Some(s) => format!("{}/$metadata#users({s})", api_root(base)),
        None => format!("{}/$metadata#users", api_root(base)),
    }
}

/// The collection wrapper: `{"@odata.context": ..., "value": [...]}`, and
/// `@odata.nextLink` when given.
pub fn collection(
    base: &Url,
    select: Option<&Select>,
    values: Vec<Value>,
    next_link: Option<String>,
) -> Value {
    let mut out = Map::new();
    out.insert(
        "@odata.context".to_owned(),
        Value::String(users_context(base, select)),
    );
    if let Some(link) = next_link {
        out.insert("@odata.nextLink".to_owned(), Value::String(link));
    }
    out.insert("value".to_owned(), Value::Array(values));
    Value::Object(out)
}

/// The `200 OK` body of `GET /v1.0/users/{id}`: the projected user with
/// `"@odata.context": "<root>/$metadata#users/$entity"`.
///
/// # Errors
///
/// As [`project`].
pub fn user_entity(user: &User, select: Option<&Select>, base: &Url) -> Result<Value, GraphError> {
    let mut v = project(user, select)?;
    if let Value::Object(map) = &mut v {
        map.insert(
            "@odata.context".to_owned(),
            Value::String(format!("{}/$entity", users_context(base, select))),
        );
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(s: &str) -> (u16, &'static str, String) {
        let e = Filter::parse(s).unwrap_err();
        (e.status.as_u16(), e.code, e.message)
    }

    #[test]
    fn filter_accepts_exactly_the_supported_forms() {
        let f = Filter::parse("userType eq 'Guest'").unwrap();
        assert_eq!(f.clauses(), [Clause::UserType(UserType::Guest)]);
        let f = Filter::parse("  USERTYPE EQ 'member'   And externaluserstate eq 'ACCEPTED' ").unwrap();
        assert_eq!(
            f.clauses(),
            [
                Clause::UserType(UserType::Member),
                Clause::ExternalUserState(ExternalUserState::Accepted)
            ]
        );
        assert_eq!(
            f.to_string(),
            "userType eq 'Member' and externalUserState eq 'Accepted'"
        );
        let f = Filter::parse("externalUserState eq'PendingAcceptance'").unwrap();
        assert_eq!(
            f.clauses(),
            [Clause::ExternalUserState(ExternalUserState::PendingAcceptance)]
        );
    }

    #[test]
    fn filter_refusals_name_what_is_unsupported() {
        let u = "Request_UnsupportedQuery";
        let b = "Request_BadRequest";
        let cases: Vec<(&str, &str, &str)> = vec![
            ("", b, "`$filter` is empty"),
            (
                "userType eq 'Guest' and",
                b,
                "`$filter` ends after `and`; expected a comparison",
            ),
            (
                "userType eq 'Guest' or userType eq 'Member'",
                u,
                "operator `or` is not supported in `$filter`; join comparisons with `and`",
            ),
            (
                "userType ne 'Guest'",
                u,
                "operator `ne` is not supported in `$filter`; only `eq` is",
            ),
            (
                "userType EQ 'Guest' and userType GE 'x'",
                u,
                "operator `ge` is not supported in `$filter`; only `eq` is",
            ),
            (
                "startswith(displayName,'a')",
                u,
                "function `startswith` is not supported in `$filter`",
            ),
            (
                "(userType eq 'Guest')",
                u,
                "parentheses are not supported in `$filter`",
            ),
            (
                "not userType eq 'Guest'",
                u,
                "operator `not` is not supported in `$filter`",
            ),
            (
                "displayName eq 'Alice'",
                u,
                "filtering on property `displayName` is not supported; only `userType` and `externalUserState` are",
            ),
            ("foo eq 'x'", b, "property `foo` does not exist on type `user`"),
            (
                "userType eq 'Admin'",
                b,
                "`Admin` is not a value of `userType`; expected `'Guest'` or `'Member'`",
            ),
            (
                "externalUserState eq 'Pending'",
                b,
                "`Pending` is not a value of `externalUserState`; expected `'PendingAcceptance'` or `'Accepted'`",
            ),
            (
                "externalUserState eq null",
                b,
                "`externalUserState` must be compared with a quoted string in `$filter`, such as `'Accepted'`",
            ),
            (
                "userType eq",
                b,
                "`userType` must be compared with a quoted string in `$filter`, such as `'Guest'`",
            ),
            (
                "userType 'Guest'",
                b,
                "expected `eq` after `userType` in `$filter`",
            ),
            (
                "userType eq 'Guest",
                b,
                "unterminated string literal in `$filter`",
            ),
            (
                "userType eq \"Guest\"",
                b,
                "string literals in `$filter` use single quotes",
            ),
            (
                "userType eq 'Guest' userType",
                b,
                "expected `and` or the end of `$filter` after a comparison, found `userType`",
            ),
            (
                "userType eq 'Guest' 'x'",
                b,
                "expected `and` or the end of `$filter` after a comparison, found the string `'x'`",
            ),
            (
                "userType eq 'Guest'; drop",
                b,
                "unexpected character `;` in `$filter`",
            ),
            (
                "userType eq 'Guest' and é",
                b,
                "unexpected character `é` in `$filter`",
            ),
            (
                "'x' eq userType",
                b,
                "expected a property name in `$filter`, found the string `'x'`",
            ),
        ];
        for (input, code, message) in cases {
            assert_eq!(err(input), (400, code, message.to_owned()), "{input}");
        }
        let long = format!("userType eq '{}'", "G".repeat(MAX_QUERY_OPTION_LEN));
        assert_eq!(
            err(&long),
            (
                400,
                "Request_BadRequest",
                "`$filter` is longer than 2048 bytes".to_owned()
            )
        );
    }

    #[test]
    fn doubled_quotes_are_one_quote() {
        // A value with a quote is still not a userType, and says so.
        assert_eq!(
            err("userType eq 'Gu''est'").2,
            "`Gu'est` is not a value of `userType`; expected `'Guest'` or `'Member'`"
        );
        assert_eq!(
            err("userType eq ''").2,
            "`` is not a value of `userType`; expected `'Guest'` or `'Member'`"
        );
    }

    #[test]
    fn select_canonicalises_and_names_unknown_properties() {
        let s = Select::parse(
            " DisplayName , mail,displayname,givenname,extension_0f8fad5bd9cb469fa16570867728950e_loyalty",
        )
        .unwrap();
        assert_eq!(
            s.properties(),
            [
                "displayName",
                "mail",
                "givenName",
                "extension_0f8fad5bd9cb469fa16570867728950e_loyalty"
            ]
        );
        assert_eq!(Select::parse(&s.to_string()).unwrap(), s);
        for (input, code, message) in [
            ("", "Request_BadRequest", "`$select` is empty"),
            (
                "displayName,,mail",
                "Request_BadRequest",
                "`$select` has an empty property name",
            ),
            (
                "displayName,",
                "Request_BadRequest",
                "`$select` has an empty property name",
            ),
            (
                "*",
                "Request_UnsupportedQuery",
                "`$select=*` is not supported; name the properties",
            ),
            (
                "manager/id",
                "Request_UnsupportedQuery",
                "property paths such as `manager/id` are not supported in `$select`",
            ),
            (
                "displayName,foo",
                "Request_BadRequest",
                "property `foo` does not exist on type `user`",
            ),
            (
                "extension_0F8FAD5BD9CB469FA16570867728950E_x",
                "Request_BadRequest",
                "property `extension_0F8FAD5BD9CB469FA16570867728950E_x` does not exist on type `user`",
            ),
            (
                "email",
                "Request_BadRequest",
                "property `email` does not exist on type `user`",
            ),
        ] {
            let e = Select::parse(input).unwrap_err();
            assert_eq!(
                (e.status.as_u16(), e.code, e.message.as_str()),
                (400, code, message),
                "{input}"
            );
        }
    }

    #[test]
    fn property_lists_match_the_model() {
        use crate::directory::{AgreementAcceptance, CreationType};
        use crate::flow::attributes::BuiltInAttribute;
        use time::macros::datetime;
        let at = datetime!(2026-03-01 09:00 UTC);
        let user = User {
            id: Id::from_bytes([1; 16]),
            user_type: UserType::Guest,
            external_user_state: None,
            external_user_state_change_date_time: None,
            creation_type: Some(CreationType::Invitation),
            identities: Vec::new(),
            mail: None,
            other_mails: Vec::new(),
            display_name: None,
            user_principal_name: String::new(),
            account_enabled: true,
            sponsors: Vec::new(),
            created_date_time: at,
            agreement_acceptances: vec![AgreementAcceptance {
                agreement_id: "t".into(),
                version: 1,
                recorded_date_time: at,
            }],
            attributes: Default::default(),
        };
        let v = serde_json::to_value(&user).unwrap();
        let mut keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        keys.sort_unstable();
        let mut expected = USER_PROPERTIES.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        let profile: Vec<&str> = BuiltInAttribute::ALL
            .iter()
            .map(|a| a.as_str())
            .filter(|a| !matches!(*a, "displayName" | "email"))
            .collect();
        assert_eq!(profile, USER_PROFILE_PROPERTIES);
    }

    #[test]
    fn top_is_bounded() {
        assert_eq!(parse_top("1").unwrap(), 1);
        assert_eq!(parse_top("999").unwrap(), 999);
        assert_eq!(parse_top("007").unwrap(), 7);
        for bad in [
            "0",
            "1000",
            "-1",
            "+5",
            " 5",
            "5 ",
            "1e3",
            "",
            "99999999999999999999",
        ] {
            let e = parse_top(bad).unwrap_err();
            assert_eq!(e.status.as_u16(), 400, "{bad}");
            assert!(
                e.message.starts_with("`$top` must be an integer from 1 to 999"),
                "{bad}"
            );
        }
    }

    #[test]
    fn query_strings_refuse_unsupported_and_repeated_options() {
        let q = UsersQuery::from_query(Some("$FILTER=userType+eq+'Guest'&api-version=1&$Top=5")).unwrap();
        assert_eq!(
            q.filter,
            Some(Filter::from_clauses(vec![Clause::UserType(UserType::Guest)]))
        );
        assert_eq!(q.top, Some(5));
        assert_eq!(UsersQuery::from_query(None).unwrap(), UsersQuery::default());
        assert_eq!(UsersQuery::from_query(Some("")).unwrap(), UsersQuery::default());
        for (query, code, message) in [
            (
                "$orderby=displayName",
                "Request_UnsupportedQuery",
                "query option `$orderby` is not supported on users",
            ),
            (
                "$count=true",
                "Request_UnsupportedQuery",
                "query option `$count` is not supported on users",
            ),
            (
                "$bogus=1",
                "Request_BadRequest",
                "query option `$bogus` is not known",
            ),
            (
                "$top=1&$top=2",
                "Request_BadRequest",
                "query option `$top` is given twice",
            ),
            (
                "$skiptoken=abc",
                "Request_BadRequest",
                "`$skiptoken` is not valid; use the `@odata.nextLink` as given",
            ),
        ] {
            let e = UsersQuery::from_query(Some(query)).unwrap_err();
            assert_eq!((e.code, e.message.as_str()), (code, message), "{query}");
        }
        let long = format!("x={}", "a".repeat(MAX_QUERY_LEN));
        assert_eq!(
            UsersQuery::from_query(Some(&long)).unwrap_err().status.as_u16(),
            400
        );
        let e = EntityQuery::from_query(Some("$top=1")).unwrap_err();
        assert_eq!(e.message, "query option `$top` is not supported on a single user");
        assert!(
            EntityQuery::from_query(Some("$select=mail"))
                .unwrap()
                .select
                .is_some()
        );
    }
}
