//! The attributes a self-service sign-up flow collects, and the decoding of a
//! submitted sign-up form into typed values.
//!
//! A flow lists [`AttributeDefinition`]s (Graph-shaped, camelCase JSON). They
//! are validated once into [`CollectedAttributes`], which cannot hold an
//! unusable definition; its [`decode_form`](CollectedAttributes::decode_form)
//! turns an `application/x-www-form-urlencoded` body into [`AttributeValues`],
//! or into [`FormErrors`] listing every problem of the submission at once,
//! each able to render a message in the person's language.
//!
//! # Attributes
//!
//! Built-in attributes ([`BuiltInAttribute`]) are all of type `string`.
//! Custom attributes are named `extension_<appId>_<name>`, where `appId` is
//! the client id of the application that owns them as 32 lowercase hex
//! digits (no hyphens) and `name` is a letter followed by letters, digits
//! and underscores ([`ExtensionAttributeName`]).
//!
//! Which input type goes with which data type:
//!
//! | data type          | input types                                                   | default                 |
//! |--------------------|---------------------------------------------------------------|-------------------------|
//! | `string`           | `textBox`, `emailBox`, `radioSingleSelect`, `dropdownSingleSelect` | `textBox`          |
//! | `int64`            | `textBox`, `radioSingleSelect`, `dropdownSingleSelect`        | `textBox`               |
//! | `boolean`          | `checkboxSingleSelect`, `radioSingleSelect`, `dropdownSingleSelect` | `checkboxSingleSelect` |
//! | `stringCollection` | `checkboxMultiSelect`                                         | `checkboxMultiSelect`   |
//! | `dateTime`         | `dateTimeDropdown`                                            | `dateTimeDropdown`      |
//!
//! The built-in `email` attribute is always entered in an `emailBox`.
//! Select inputs (`radioSingleSelect`, `dropdownSingleSelect`,
//! `checkboxMultiSelect`) need `userAttributeValues`; every other input type
//! forbids them. `minLength`, `maxLength` and `pattern` apply only to
//! `string` attributes entered in a `textBox` or `emailBox`.
//!
//! # Submitted values
//!
//! - Surrounding white space is trimmed; nothing else is normalised. A value
//!   with a control character left after trimming is rejected.
//! - Lengths count characters (Unicode scalar values), not bytes.
//! - An empty value counts as not given. A required attribute must be given;
//!   an optional one that is not given is left out of the result, except a
//!   `checkboxSingleSelect`, which is `false` when unchecked (and which, when
//!   required, must be checked).
//! - A field may appear once, except a `checkboxMultiSelect`, whose repeated
//!   field carries one chosen value each; choosing a value twice is an
//!   error. The chosen values come back in the order the flow lists them.
//! - Booleans are `true` or `false`; numbers are an optional `-` and ASCII
//!   digits; dates (`dateTimeDropdown`) are `YYYY-MM-DD`.
//! - A field that is no attribute of the flow is rejected, unless the caller
//!   lists it among the fields to ignore (such as a CSRF token).
//! - Bytes that are not UTF-8 decode to U+FFFD, as browsers do.
//!
//! ```
//! use guestpass::flow::attributes::{
//!     AttributeDefinition, AttributeValue, BuiltInAttribute, CollectedAttributes, FieldError,
//! };
//! use guestpass::mail::templates::Language;
//!
//! let spec = CollectedAttributes::from_json(
//!     r#"[
//!         {"name": "givenName"},
//!         {"name": "extension_0f8fad5bd9cb469fa16570867728950e_newsletter",
//!          "dataType": "boolean", "isOptional": true, "label": "Send me news"}
//!     ]"#,
//! )?;
//!
//! let values = spec.decode_form(b"givenName=+Ada+&csrf=x", &["csrf"])?;
//! assert_eq!(values.get("givenName"), Some(&AttributeValue::String("Ada".into())));
//! assert_eq!(
//!     values.get("extension_0f8fad5bd9cb469fa16570867728950e_newsletter"),
//!     Some(&AttributeValue::Boolean(false))
//! );
//!
//! let errors = spec.decode_form(b"givenName=", &[]).unwrap_err();
//! assert!(matches!(errors.fields(), [FieldError::Required { .. }]));
//! assert_eq!(errors.to_string(), "attribute `givenName` is required");
//! assert_eq!(errors.fields()[0].message(Language::DeDe, &spec), "Bitte füllen Sie „Vorname“ aus");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::email::{EmailAddress, EmailError};
use crate::id::Id;
use crate::mail::templates::{Language, is_language_tag};

/// Most attributes one flow may collect.
pub const MAX_ATTRIBUTES: usize = 50;
/// Highest `maxLength` a definition may set, in characters.
pub const MAX_LENGTH_CAP: u32 = 1024;
/// `maxLength` of a custom `string` attribute that sets none, in characters.
pub const DEFAULT_MAX_LENGTH: u32 = 256;
/// Most `userAttributeValues` one attribute may list.
pub const MAX_ALLOWED_VALUES: usize = 100;
/// Longest `value` of a `userAttributeValues` entry, in characters.
pub const MAX_OPTION_VALUE_LEN: usize = 256;
/// Longest text of a label or option name, in characters.
pub const MAX_LABEL_LEN: usize = 256;
/// Most languages one localized text may carry.
pub const MAX_LANGUAGES: usize = 32;
/// Longest `pattern`, in bytes.
pub const MAX_PATTERN_LEN: usize = 512;
/// Most memory a compiled `pattern` may take, in bytes.
pub const PATTERN_SIZE_LIMIT: usize = 256 * 1024;
/// Longest short name of a custom attribute (the part after the app id).
pub const MAX_SHORT_NAME_LEN: usize = 64;
/// Largest form body the decoder reads, in bytes.
pub const MAX_BODY_LEN: usize = 64 * 1024;
/// Most fields (name/value pairs) the decoder reads.
pub const MAX_FIELDS: usize = 1024;
/// Most unknown field names an [`FormError::UnknownFields`] keeps.
pub const MAX_REPORTED_UNKNOWN: usize = 5;
/// Characters of user input an error message quotes before cutting it off.
const QUOTE_LEN: usize = 32;
const EN_US: &str = "en-US";
const EXTENSION_PREFIX: &str = "extension_";
const APP_ID_LEN: usize = 32;

// ---------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------

/// An attribute every directory user has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum BuiltInAttribute {
    /// `displayName`, at most 256 characters.
    DisplayName,
    /// `givenName`, at most 64 characters.
    GivenName,
    /// `surname`, at most 64 characters.
    Surname,
    /// `jobTitle`, at most 128 characters.
    JobTitle,
    /// `streetAddress`, at most 1024 characters.
    StreetAddress,
    /// `city`, at most 128 characters.
    City,
    /// `state` (state or province), at most 128 characters.
    State,
    /// `postalCode`, at most 40 characters.
    PostalCode,
    /// `country` (country or region), at most 128 characters.
    Country,
    /// `email`, at most 254 characters, a valid address, entered in an `emailBox`.
    Email,
}

impl BuiltInAttribute {
    /// Every built-in attribute.
    pub const ALL: [BuiltInAttribute; 10] = [
        BuiltInAttribute::DisplayName,
        BuiltInAttribute::GivenName,
        BuiltInAttribute::Surname,
        BuiltInAttribute::JobTitle,
        BuiltInAttribute::StreetAddress,
        BuiltInAttribute::City,
        BuiltInAttribute::State,
        BuiltInAttribute::PostalCode,
        BuiltInAttribute::Country,
        BuiltInAttribute::Email,
    ];

    /// The attribute's name, as Graph spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            BuiltInAttribute::DisplayName => "displayName",
            BuiltInAttribute::GivenName => "givenName",
            BuiltInAttribute::Surname => "surname",
            BuiltInAttribute::JobTitle => "jobTitle",
            BuiltInAttribute::StreetAddress => "streetAddress",
            BuiltInAttribute::City => "city",
            BuiltInAttribute::State => "state",
            BuiltInAttribute::PostalCode => "postalCode",
            BuiltInAttribute::Country => "country",
            BuiltInAttribute::Email => "email",
        }
    }

    /// The built-in attribute spelled `name` (exactly, case-sensitively).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == name)
    }

    /// The data type; `string` for every built-in attribute.
    pub fn data_type(self) -> DataType {
        DataType::String
    }

    /// The input type used when a definition names none.
    pub fn default_input_type(self) -> InputType {
        match self {
            BuiltInAttribute::Email => InputType::EmailBox,
            _ => InputType::TextBox,
        }
    }

    /// The `maxLength` used when a definition sets none (the directory's
    /// limit for the property).
    pub fn default_max_length(self) -> u32 {
        match self {
            BuiltInAttribute::DisplayName => 256,
            BuiltInAttribute::GivenName | BuiltInAttribute::Surname => 64,
            BuiltInAttribute::JobTitle | BuiltInAttribute::City => 128,
            BuiltInAttribute::State | BuiltInAttribute::Country => 128,
            BuiltInAttribute::StreetAddress => 1024,
            BuiltInAttribute::PostalCode => 40,
            BuiltInAttribute::Email => 254,
        }
    }

    /// The label used when a definition sets none.
    pub fn default_label(self, lang: Language) -> &'static str {
        let [en, de, nl] = match self {
            BuiltInAttribute::DisplayName => ["Display Name", "Anzeigename", "Weergavenaam"],
            BuiltInAttribute::GivenName => ["Given Name", "Vorname", "Voornaam"],
            BuiltInAttribute::Surname => ["Surname", "Nachname", "Achternaam"],
            BuiltInAttribute::JobTitle => ["Job Title", "Position", "Functie"],
            BuiltInAttribute::StreetAddress => ["Street Address", "Straße und Hausnummer", "Adres"],
            BuiltInAttribute::City => ["City", "Ort", "Plaats"],
            BuiltInAttribute::State => ["State/Province", "Bundesland", "Provincie"],
            BuiltInAttribute::PostalCode => ["Postal Code", "Postleitzahl", "Postcode"],
            BuiltInAttribute::Country => ["Country/Region", "Land/Region", "Land/regio"],
            BuiltInAttribute::Email => ["Email Address", "E-Mail-Adresse", "E-mailadres"],
        };
        match lang {
            Language::DeDe => de,
            Language::NlNl => nl,
            _ => en,
        }
    }

    fn default_labels(self) -> LocalizedText {
        let mut text = LocalizedText::new();
        for lang in Language::ALL {
            text.insert(lang.tag(), self.default_label(lang));
        }
        text
    }
}

impl fmt::Display for BuiltInAttribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name of a custom attribute: `extension_<appId>_<name>`.
///
/// ```
/// use guestpass::flow::attributes::ExtensionAttributeName;
/// use guestpass::id::Id;
///
/// let app: Id = "0F8FAD5B-D9CB-469F-A165-70867728950E".parse()?;
/// let name = ExtensionAttributeName::new(app, "loyaltyNumber")?;
/// assert_eq!(name.as_str(), "extension_0f8fad5bd9cb469fa16570867728950e_loyaltyNumber");
/// assert_eq!(name.short_name(), "loyaltyNumber");
/// assert_eq!(ExtensionAttributeName::parse(name.as_str())?, name);
/// assert!(ExtensionAttributeName::new(app, "9lives").is_err());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ExtensionAttributeName {
    full: String,
}

impl ExtensionAttributeName {
    /// The custom attribute `short_name` of the application with client id
    /// `app_client_id`.
    ///
    /// # Errors
    ///
    /// When `short_name` is not a letter followed by at most 63 letters,
    /// digits and underscores.
    pub fn new(app_client_id: Id, short_name: &str) -> Result<Self, AttributeNameError> {
        check_short_name(short_name)?;
        let mut full = String::with_capacity(EXTENSION_PREFIX.len() + APP_ID_LEN + 1 + short_name.len());
        full.push_str(EXTENSION_PREFIX);
        crate::secret::push_hex(&mut full, app_client_id.as_bytes());
        full.push('_');
        full.push_str(short_name);
        Ok(Self { full })
    }

    /// Parses a full custom attribute name.
    ///
    /// # Errors
    ///
    /// An [`AttributeNameError`] naming the part that is wrong.
    pub fn parse(name: &str) -> Result<Self, AttributeNameError> {
        let Some(rest) = name.strip_prefix(EXTENSION_PREFIX) else {
            return Err(AttributeNameError::Unknown { name: quote(name) });
        };
        let app_id = rest.split('_').next().unwrap_or_default();
        if app_id.is_empty() {
            return Err(AttributeNameError::MissingAppId);
        }
        if app_id.len() != APP_ID_LEN || !app_id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            return Err(AttributeNameError::BadAppId {
                app_id: quote(app_id),
            });
        }
        let short = rest.get(APP_ID_LEN + 1..).unwrap_or_default();
        check_short_name(short)?;
        Ok(Self {
            full: name.to_owned(),
        })
    }

    /// The full name, `extension_<appId>_<name>`.
    pub fn as_str(&self) -> &str {
        &self.full
    }

    /// The application's client id as 32 lowercase hex digits.
    pub fn app_id(&self) -> &str {
        let start = EXTENSION_PREFIX.len();
        self.full.get(start..start + APP_ID_LEN).unwrap_or_default()
    }

    /// The part after the application id.
    pub fn short_name(&self) -> &str {
        self.full
            .get(EXTENSION_PREFIX.len() + APP_ID_LEN + 1..)
            .unwrap_or_default()
    }
}

fn check_short_name(short: &str) -> Result<(), AttributeNameError> {
    let mut chars = short.chars();
    match chars.next() {
        None => return Err(AttributeNameError::MissingShortName),
        Some(c) if !c.is_ascii_alphabetic() => {
            return Err(AttributeNameError::BadShortNameStart {
                character: c.escape_default().to_string(),
            });
        }
        Some(_) => {}
    }
    if let Some(c) = chars.find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(AttributeNameError::BadShortNameCharacter {
            character: c.escape_default().to_string(),
        });
    }
    if short.len() > MAX_SHORT_NAME_LEN {
        return Err(AttributeNameError::ShortNameTooLong {
            max: MAX_SHORT_NAME_LEN,
        });
    }
    Ok(())
}

impl fmt::Display for ExtensionAttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

/// Why an attribute name was rejected.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttributeNameError {
    /// The name is neither built in nor an `extension_` name.
    #[error("`{name}` is neither a built-in attribute nor an `extension_<appId>_<name>` attribute")]
    Unknown {
        /// The name (cut off when long).
        name: String,
    },
    /// Nothing follows `extension_`.
    #[error("the application id after `extension_` is missing")]
    MissingAppId,
    /// The application id is not 32 lowercase hex digits.
    #[error("the application id `{app_id}` is not 32 lowercase hex digits")]
    BadAppId {
        /// The part found where the id belongs (cut off when long).
        app_id: String,
    },
    /// Nothing follows the application id.
    #[error("the name after the application id is missing")]
    MissingShortName,
    /// The short name does not start with a letter.
    #[error("the name after the application id must start with a letter, not `{character}`")]
    BadShortNameStart {
        /// The first character (escaped when not printable).
        character: String,
    },
    /// The short name has a character other than a letter, digit or `_`.
    #[error("the name after the application id may not contain `{character}`")]
    BadShortNameCharacter {
        /// The offending character (escaped when not printable).
        character: String,
    },
    /// The short name is too long.
    #[error("the name after the application id is longer than {max} characters")]
    ShortNameTooLong {
        /// The limit.
        max: usize,
    },
}

/// The name of a collected attribute: built in or custom.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AttributeName {
    /// A built-in attribute.
    BuiltIn(BuiltInAttribute),
    /// A custom `extension_<appId>_<name>` attribute.
    Extension(ExtensionAttributeName),
}

impl AttributeName {
    /// Parses a built-in name (exact spelling) or a custom attribute name.
    ///
    /// # Errors
    ///
    /// An [`AttributeNameError`] naming what is wrong.
    pub fn parse(name: &str) -> Result<Self, AttributeNameError> {
        match BuiltInAttribute::from_name(name) {
            Some(b) => Ok(AttributeName::BuiltIn(b)),
            None => ExtensionAttributeName::parse(name).map(AttributeName::Extension),
        }
    }

    /// The name as it appears in JSON and in forms.
    pub fn as_str(&self) -> &str {
        match self {
            AttributeName::BuiltIn(b) => b.as_str(),
            AttributeName::Extension(e) => e.as_str(),
        }
    }

    /// The built-in attribute, if it is one.
    pub fn built_in(&self) -> Option<BuiltInAttribute> {
        match self {
            AttributeName::BuiltIn(b) => Some(*b),
            AttributeName::Extension(_) => None,
        }
    }
}

impl fmt::Display for AttributeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for AttributeName {
    type Err = AttributeNameError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl From<BuiltInAttribute> for AttributeName {
    fn from(b: BuiltInAttribute) -> Self {
        AttributeName::BuiltIn(b)
    }
}

impl From<ExtensionAttributeName> for AttributeName {
    fn from(e: ExtensionAttributeName) -> Self {
        AttributeName::Extension(e)
    }
}

impl Serialize for AttributeName {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for AttributeName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Types
// ---------------------------------------------------------------------------

/// The type of an attribute's value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum DataType {
    /// Text.
    String,
    /// `true` or `false`.
    Boolean,
    /// A signed 64-bit integer.
    Int64,
    /// Several texts, chosen from a list.
    StringCollection,
    /// A calendar date.
    DateTime,
}

impl DataType {
    /// The camelCase name.
    pub fn as_str(self) -> &'static str {
        match self {
            DataType::String => "string",
            DataType::Boolean => "boolean",
            DataType::Int64 => "int64",
            DataType::StringCollection => "stringCollection",
            DataType::DateTime => "dateTime",
        }
    }

    /// The input types this data type may be entered with; the first is the
    /// default.
    pub fn input_types(self) -> &'static [InputType] {
        use InputType::*;
        match self {
            DataType::String => &[TextBox, EmailBox, RadioSingleSelect, DropdownSingleSelect],
            DataType::Int64 => &[TextBox, RadioSingleSelect, DropdownSingleSelect],
            DataType::Boolean => &[CheckboxSingleSelect, RadioSingleSelect, DropdownSingleSelect],
            DataType::StringCollection => &[CheckboxMultiSelect],
            DataType::DateTime => &[DateTimeDropdown],
        }
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How the sign-up page asks for an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub enum InputType {
    /// A one-line text field.
    TextBox,
    /// A text field for an email address.
    EmailBox,
    /// Radio buttons, one choice.
    RadioSingleSelect,
    /// A drop-down list, one choice.
    DropdownSingleSelect,
    /// One check box (`boolean` only); unchecked is `false`.
    CheckboxSingleSelect,
    /// Check boxes, any number of choices (`stringCollection` only).
    CheckboxMultiSelect,
    /// Drop-down lists for day, month and year (`dateTime` only).
    DateTimeDropdown,
}

impl InputType {
    /// The camelCase name.
    pub fn as_str(self) -> &'static str {
        match self {
            InputType::TextBox => "textBox",
            InputType::EmailBox => "emailBox",
            InputType::RadioSingleSelect => "radioSingleSelect",
            InputType::DropdownSingleSelect => "dropdownSingleSelect",
            InputType::CheckboxSingleSelect => "checkboxSingleSelect",
            InputType::CheckboxMultiSelect => "checkboxMultiSelect",
            InputType::DateTimeDropdown => "dateTimeDropdown",
        }
    }

    /// Whether the person picks from `userAttributeValues`.
    pub fn is_select(self) -> bool {
        matches!(
            self,
            InputType::RadioSingleSelect | InputType::DropdownSingleSelect | InputType::CheckboxMultiSelect
        )
    }

    /// Whether the person types the value freely.
    pub fn is_free_text(self) -> bool {
        matches!(self, InputType::TextBox | InputType::EmailBox)
    }
}

impl fmt::Display for InputType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// ---------------------------------------------------------------------------
// Localized text
// ---------------------------------------------------------------------------

/// A text in several languages, keyed by BCP 47 language tag.
///
/// In JSON it is an object (`{"en-US": "City", "de-DE": "Ort"}`) or, as a
/// shorthand for `en-US` only, a string.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LocalizedText(BTreeMap<String, String>);

impl LocalizedText {
    /// No text in any language.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces the text for `tag`, returning the text.
    pub fn with(mut self, tag: &str, text: &str) -> Self {
        self.insert(tag, text);
        self
    }

    /// Adds or replaces the text for `tag`.
    pub fn insert(&mut self, tag: &str, text: &str) {
        self.0.insert(tag.to_owned(), text.to_owned());
    }

    /// The text for `tag` (compared case-insensitively).
    pub fn get(&self, tag: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(tag))
            .map(|(_, v)| v.as_str())
    }

    /// The text in `lang` (exactly, or a tag with the same primary subtag),
    /// else in `fallback`, else in `en-US`.
    pub fn resolve(&self, lang: Language, fallback: Language) -> Option<&str> {
        self.in_language(lang)
            .or_else(|| self.in_language(fallback))
            .or_else(|| self.get(EN_US))
    }

    fn in_language(&self, lang: Language) -> Option<&str> {
        self.get(lang.tag()).or_else(|| {
            self.0
                .iter()
                .find(|(k, _)| Language::from_tag(k) == Some(lang))
                .map(|(_, v)| v.as_str())
        })
    }

    /// Whether there is no text at all.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The (tag, text) pairs, ordered by tag.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    fn check(&self, name: &AttributeName, field: &'static str) -> Result<(), DefinitionError> {
        if self.0.len() > MAX_LANGUAGES {
            return Err(DefinitionError::TooManyLanguages {
                name: name.clone(),
                field,
                max: MAX_LANGUAGES,
            });
        }
        let invalid = |tag: &str, reason| DefinitionError::InvalidText {
            name: name.clone(),
            field,
            tag: quote(tag),
            reason,
        };
        for (i, (tag, text)) in self.0.iter().enumerate() {
            if !is_language_tag(tag) {
                return Err(invalid(tag, "it is not a language tag"));
            }
            if self.0.keys().skip(i + 1).any(|k| k.eq_ignore_ascii_case(tag)) {
                return Err(invalid(tag, "the language is listed twice"));
            }
            if text.trim().is_empty() {
                return Err(invalid(tag, "the text is empty"));
            }
            if text.chars().count() > MAX_LABEL_LEN {
                return Err(invalid(tag, "the text is longer than 256 characters"));
            }
            if text.chars().any(char::is_control) {
                return Err(invalid(tag, "the text has a control character"));
            }
        }
        if self.get(EN_US).is_none() {
            return Err(DefinitionError::MissingEnglishText {
                name: name.clone(),
                field,
            });
        }
        Ok(())
    }
}

impl From<&str> for LocalizedText {
    /// The text in `en-US` only.
    fn from(text: &str) -> Self {
        LocalizedText::new().with(EN_US, text)
    }
}

impl Serialize for LocalizedText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for LocalizedText {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> serde::de::Visitor<'de> for TextVisitor {
            type Value = LocalizedText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a map from language tag to text")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(LocalizedText::from(v))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = BTreeMap::new();
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    if out.len() > MAX_LANGUAGES {
                        return Err(serde::de::Error::custom(format_args!(
                            "more than {MAX_LANGUAGES} languages"
                        )));
                    }
                    if out.insert(k, v).is_some() {
                        return Err(serde::de::Error::custom("a language is listed twice"));
                    }
                }
                Ok(LocalizedText(out))
            }
        }
        d.deserialize_any(TextVisitor)
    }
}

// ---------------------------------------------------------------------------
// Definitions
// ---------------------------------------------------------------------------

/// One choice of a select input.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct UserAttributeValue {
    /// What the person sees (needs `en-US`).
    pub name: LocalizedText,
    /// What the form submits and the attribute stores.
    pub value: String,
    /// Whether the choice is preselected.
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_default: bool,
}

impl UserAttributeValue {
    /// A choice with the English `name` that submits `value`.
    pub fn new(value: &str, name: impl Into<LocalizedText>) -> Self {
        Self {
            name: name.into(),
            value: value.to_owned(),
            is_default: false,
        }
    }

    /// The same choice, preselected.
    pub fn preselected(mut self) -> Self {
        self.is_default = true;
        self
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// How a flow collects one attribute, as configured (not yet validated).
///
/// ```
/// use guestpass::flow::attributes::{AttributeDefinition, BuiltInAttribute, CollectedAttributes};
///
/// let d = AttributeDefinition::built_in(BuiltInAttribute::PostalCode)
///     .optional()
///     .pattern("[0-9]{4} ?[A-Z]{2}");
/// let spec = CollectedAttributes::new(vec![d])?;
/// assert!(spec.decode_form(b"postalCode=1234+AB", &[]).is_ok());
/// assert!(spec.decode_form(b"postalCode=1234+AB+x", &[]).is_err());
/// # Ok::<(), guestpass::flow::attributes::DefinitionError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct AttributeDefinition {
    /// The attribute.
    pub name: AttributeName,
    /// The value type; fixed for built-in attributes, required for custom ones.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_type: Option<DataType>,
    /// The input; the data type's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_input_type: Option<InputType>,
    /// Whether the person may leave it empty (required by default, as in Graph).
    #[serde(default, skip_serializing_if = "is_false")]
    pub is_optional: bool,
    /// The label; needs `en-US`. Built-in attributes have a default label.
    #[serde(default, skip_serializing_if = "LocalizedText::is_empty")]
    pub label: LocalizedText,
    /// The choices of a select input.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_attribute_values: Vec<UserAttributeValue>,
    /// Fewest characters of a free-text `string` value (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_length: Option<u32>,
    /// Most characters of a free-text `string` value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_length: Option<u32>,
    /// A regular expression a free-text `string` value must match as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

impl AttributeDefinition {
    /// A required built-in attribute with its default input and label.
    pub fn built_in(attribute: BuiltInAttribute) -> Self {
        Self::bare(AttributeName::BuiltIn(attribute), None)
    }

    /// A required custom attribute of `data_type` labelled `label` in `en-US`.
    pub fn custom(name: ExtensionAttributeName, data_type: DataType, label: &str) -> Self {
        let mut d = Self::bare(AttributeName::Extension(name), Some(data_type));
        d.label = LocalizedText::from(label);
        d
    }

    fn bare(name: AttributeName, data_type: Option<DataType>) -> Self {
        Self {
            name,
            data_type,
            user_input_type: None,
            is_optional: false,
            label: LocalizedText::new(),
            user_attribute_values: Vec::new(),
            min_length: None,
            max_length: None,
            pattern: None,
        }
    }

    /// Makes the attribute optional.
    pub fn optional(mut self) -> Self {
        self.is_optional = true;
        self
    }

    /// Sets the input type.
    pub fn input(mut self, input: InputType) -> Self {
        self.user_input_type = Some(input);
        self
    }

    /// Sets the label in `tag`.
    pub fn label(mut self, tag: &str, text: &str) -> Self {
        self.label.insert(tag, text);
        self
    }

    /// Adds a choice.
    pub fn choice(mut self, value: UserAttributeValue) -> Self {
        self.user_attribute_values.push(value);
        self
    }

    /// Sets `minLength` and `maxLength`.
    pub fn length(mut self, min: Option<u32>, max: Option<u32>) -> Self {
        self.min_length = min;
        self.max_length = max;
        self
    }

    /// Sets the pattern.
    pub fn pattern(mut self, pattern: &str) -> Self {
        self.pattern = Some(pattern.to_owned());
        self
    }
}

/// Why a list of attribute definitions is unusable. Each names the
/// attribute and, where there is one, the field.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum DefinitionError {
    /// Too many attributes.
    #[error("a flow collects at most {max} attributes, not {count}")]
    TooManyAttributes {
        /// How many were given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// The JSON does not describe a list of definitions.
    #[error("attribute definitions are not valid json: {reason}")]
    Json {
        /// The parser's message.
        reason: String,
    },
    /// The same attribute is listed twice.
    #[error("attribute `{name}` is listed more than once")]
    DuplicateName {
        /// The attribute.
        name: AttributeName,
    },
    /// A custom attribute without `dataType`.
    #[error("attribute `{name}`: field `dataType` is required for a custom attribute")]
    MissingDataType {
        /// The attribute.
        name: AttributeName,
    },
    /// A built-in attribute with another `dataType` than its own.
    #[error("attribute `{name}`: field `dataType` must be `{expected}`, not `{found}`")]
    DataTypeMismatch {
        /// The attribute.
        name: AttributeName,
        /// Its data type.
        expected: DataType,
        /// The configured one.
        found: DataType,
    },
    /// An input type that does not fit the data type.
    #[error("attribute `{name}`: field `userInputType` `{input_type}` cannot enter a `{data_type}` value")]
    InputTypeMismatch {
        /// The attribute.
        name: AttributeName,
        /// The data type.
        data_type: DataType,
        /// The configured input type.
        input_type: InputType,
    },
    /// The built-in `email` attribute in another input than `emailBox`.
    #[error("attribute `{name}`: field `userInputType` must be `emailBox`")]
    EmailBoxRequired {
        /// The attribute.
        name: AttributeName,
    },
    /// A select input without choices.
    #[error("attribute `{name}`: field `userAttributeValues` must list the choices of a `{input_type}`")]
    MissingValues {
        /// The attribute.
        name: AttributeName,
        /// The input type.
        input_type: InputType,
    },
    /// Choices for an input that is not a select.
    #[error("attribute `{name}`: field `userAttributeValues` is not allowed with `{input_type}`")]
    ValuesNotAllowed {
        /// The attribute.
        name: AttributeName,
        /// The input type.
        input_type: InputType,
    },
    /// Too many choices.
    #[error("attribute `{name}`: field `userAttributeValues` has more than {max} entries")]
    TooManyValues {
        /// The attribute.
        name: AttributeName,
        /// The limit.
        max: usize,
    },
    /// A choice's value listed twice.
    #[error("attribute `{name}`: field `userAttributeValues` lists the value `{value}` more than once")]
    DuplicateValue {
        /// The attribute.
        name: AttributeName,
        /// The value (cut off when long).
        value: String,
    },
    /// A choice's value that cannot be stored or submitted.
    #[error("attribute `{name}`: field `userAttributeValues` has the invalid value `{value}`: {reason}")]
    InvalidValue {
        /// The attribute.
        name: AttributeName,
        /// The value (cut off when long).
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// More than one preselected choice for a single select.
    #[error("attribute `{name}`: field `userAttributeValues` preselects more than one value")]
    MultipleDefaults {
        /// The attribute.
        name: AttributeName,
    },
    /// `minLength`, `maxLength` or `pattern` where they do not apply.
    #[error(
        "attribute `{name}`: field `{field}` applies only to `string` attributes entered in a `textBox` or `emailBox`"
    )]
    FieldNotApplicable {
        /// The attribute.
        name: AttributeName,
        /// The field.
        field: &'static str,
    },
    /// `maxLength` of zero.
    #[error("attribute `{name}`: field `maxLength` must be at least 1")]
    ZeroMaxLength {
        /// The attribute.
        name: AttributeName,
    },
    /// `maxLength` above [`MAX_LENGTH_CAP`].
    #[error("attribute `{name}`: field `maxLength` is {value}, above the limit of {cap}")]
    MaxLengthAboveCap {
        /// The attribute.
        name: AttributeName,
        /// The configured value.
        value: u32,
        /// The limit.
        cap: u32,
    },
    /// `minLength` above the (configured or default) `maxLength`.
    #[error("attribute `{name}`: field `minLength` ({min}) is greater than `maxLength` ({max})")]
    LengthRange {
        /// The attribute.
        name: AttributeName,
        /// The configured `minLength`.
        min: u32,
        /// The effective `maxLength`.
        max: u32,
    },
    /// `pattern` longer than [`MAX_PATTERN_LEN`].
    #[error("attribute `{name}`: field `pattern` is longer than {max} bytes")]
    PatternTooLong {
        /// The attribute.
        name: AttributeName,
        /// The limit.
        max: usize,
    },
    /// `pattern` is not a usable regular expression.
    #[error("attribute `{name}`: field `pattern` is not a usable regular expression: {reason}")]
    InvalidPattern {
        /// The attribute.
        name: AttributeName,
        /// What is wrong with it.
        reason: String,
    },
    /// A localized text without `en-US`.
    #[error("attribute `{name}`: field `{field}` needs an `en-US` text")]
    MissingEnglishText {
        /// The attribute.
        name: AttributeName,
        /// `label` or `userAttributeValues.name`.
        field: &'static str,
    },
    /// A localized text with a bad entry.
    #[error("attribute `{name}`: field `{field}` has an invalid entry `{tag}`: {reason}")]
    InvalidText {
        /// The attribute.
        name: AttributeName,
        /// `label` or `userAttributeValues.name`.
        field: &'static str,
        /// The language tag (cut off when long).
        tag: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A localized text in too many languages.
    #[error("attribute `{name}`: field `{field}` has more than {max} languages")]
    TooManyLanguages {
        /// The attribute.
        name: AttributeName,
        /// `label` or `userAttributeValues.name`.
        field: &'static str,
        /// The limit.
        max: usize,
    },
}

#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    regex: Regex,
}

/// One validated attribute of a flow.
#[derive(Debug, Clone)]
pub struct CollectedAttribute {
    definition: AttributeDefinition,
    data_type: DataType,
    input_type: InputType,
    label: LocalizedText,
    min_length: u32,
    max_length: u32,
    pattern: Option<Pattern>,
}

impl PartialEq for CollectedAttribute {
    fn eq(&self, other: &Self) -> bool {
        self.definition == other.definition
    }
}

impl Eq for CollectedAttribute {}

impl CollectedAttribute {
    /// Validates one definition.
    fn new(definition: AttributeDefinition) -> Result<Self, DefinitionError> {
        let name = &definition.name;
        let data_type = match (name.built_in(), definition.data_type) {
            (Some(b), Some(found)) if found != b.data_type() => {
                return Err(DefinitionError::DataTypeMismatch {
                    name: name.clone(),
                    expected: b.data_type(),
                    found,
                });
            }
            (Some(b), _) => b.data_type(),
            (None, Some(t)) => t,
            (None, None) => return Err(DefinitionError::MissingDataType { name: name.clone() }),
        };
        let default_input = match name.built_in() {
            Some(b) => b.default_input_type(),
            None => data_type
                .input_types()
                .first()
                .copied()
                .unwrap_or(InputType::TextBox),
        };
        let input_type = definition.user_input_type.unwrap_or(default_input);
        if !data_type.input_types().contains(&input_type) {
            return Err(DefinitionError::InputTypeMismatch {
                name: name.clone(),
                data_type,
                input_type,
            });
        }
        if name.built_in() == Some(BuiltInAttribute::Email) && input_type != InputType::EmailBox {
            return Err(DefinitionError::EmailBoxRequired { name: name.clone() });
        }

        let label = if definition.label.is_empty() {
            match name.built_in() {
                Some(b) => b.default_labels(),
                None => {
                    return Err(DefinitionError::MissingEnglishText {
                        name: name.clone(),
                        field: "label",
                    });
                }
            }
        } else {
            definition.label.check(name, "label")?;
            definition.label.clone()
        };

        check_values(name, data_type, input_type, &definition.user_attribute_values)?;

        let free_text = data_type == DataType::String && input_type.is_free_text();
        let not_applicable = |field| DefinitionError::FieldNotApplicable {
            name: name.clone(),
            field,
        };
        let (mut min_length, mut max_length, mut pattern) = (0, 0, None);
        if free_text {
            let default_max = name
                .built_in()
                .map_or(DEFAULT_MAX_LENGTH, |b| b.default_max_length());
            max_length = definition.max_length.unwrap_or(default_max);
            if max_length == 0 {
                return Err(DefinitionError::ZeroMaxLength { name: name.clone() });
            }
            if max_length > MAX_LENGTH_CAP {
                return Err(DefinitionError::MaxLengthAboveCap {
                    name: name.clone(),
                    value: max_length,
                    cap: MAX_LENGTH_CAP,
                });
            }
            min_length = definition.min_length.unwrap_or(0);
            if min_length > max_length {
                return Err(DefinitionError::LengthRange {
                    name: name.clone(),
                    min: min_length,
                    max: max_length,
                });
            }
            if let Some(source) = &definition.pattern {
                pattern = Some(Pattern {
                    source: source.clone(),
                    regex: compile_pattern(name, source)?,
                });
            }
        } else if definition.min_length.is_some() {
            return Err(not_applicable("minLength"));
        } else if definition.max_length.is_some() {
            return Err(not_applicable("maxLength"));
        } else if definition.pattern.is_some() {
            return Err(not_applicable("pattern"));
        }

        Ok(Self {
            definition,
            data_type,
            input_type,
            label,
            min_length,
            max_length,
            pattern,
        })
    }

    /// The attribute's name.
    pub fn name(&self) -> &AttributeName {
        &self.definition.name
    }

    /// The data type.
    pub fn data_type(&self) -> DataType {
        self.data_type
    }

    /// The input type (configured, or the default).
    pub fn input_type(&self) -> InputType {
        self.input_type
    }

    /// Whether the person must give a value.
    pub fn is_required(&self) -> bool {
        !self.definition.is_optional
    }

    /// The label in `lang`, else in `fallback`, else in `en-US`.
    pub fn label(&self, lang: Language, fallback: Language) -> &str {
        self.label
            .resolve(lang, fallback)
            .unwrap_or_else(|| self.definition.name.as_str())
    }

    /// The choices of a select input (empty for other inputs).
    pub fn choices(&self) -> &[UserAttributeValue] {
        &self.definition.user_attribute_values
    }

    /// Fewest characters of a free-text `string` value (0 for other inputs).
    pub fn min_length(&self) -> u32 {
        self.min_length
    }

    /// Most characters of a free-text `string` value; `None` for other inputs.
    pub fn max_length(&self) -> Option<u32> {
        (self.max_length > 0).then_some(self.max_length)
    }

    /// The configured pattern, as written.
    pub fn pattern(&self) -> Option<&str> {
        self.pattern.as_ref().map(|p| p.source.as_str())
    }

    /// Whether `value` matches the pattern as a whole (`true` when there is
    /// no pattern).
    pub fn matches_pattern(&self, value: &str) -> bool {
        self.pattern.as_ref().is_none_or(|p| p.regex.is_match(value))
    }

    /// The definition as configured.
    pub fn definition(&self) -> &AttributeDefinition {
        &self.definition
    }

    fn has_choice(&self, value: &str) -> bool {
        self.choices().iter().any(|c| c.value == value)
    }
}

fn check_values(
    name: &AttributeName,
    data_type: DataType,
    input_type: InputType,
    values: &[UserAttributeValue],
) -> Result<(), DefinitionError> {
    if !input_type.is_select() {
        if values.is_empty() {
            return Ok(());
        }
        return Err(DefinitionError::ValuesNotAllowed {
            name: name.clone(),
            input_type,
        });
    }
    if values.is_empty() {
        return Err(DefinitionError::MissingValues {
            name: name.clone(),
            input_type,
        });
    }
    if values.len() > MAX_ALLOWED_VALUES {
        return Err(DefinitionError::TooManyValues {
            name: name.clone(),
            max: MAX_ALLOWED_VALUES,
        });
    }
    let invalid = |value: &str, reason| DefinitionError::InvalidValue {
        name: name.clone(),
        value: quote(value),
        reason,
    };
    for (i, choice) in values.iter().enumerate() {
        let v = choice.value.as_str();
        if v.is_empty() {
            return Err(invalid(v, "it is empty"));
        }
        if v.trim() != v {
            return Err(invalid(v, "it has surrounding white space"));
        }
        if v.chars().any(char::is_control) {
            return Err(invalid(v, "it has a control character"));
        }
        if v.chars().count() > MAX_OPTION_VALUE_LEN {
            return Err(invalid(v, "it is longer than 256 characters"));
        }
        match data_type {
            DataType::Boolean if parse_bool(v).is_none() => {
                return Err(invalid(v, "it is not `true` or `false`"));
            }
            DataType::Int64 if v.parse::<i64>().map(|n| n.to_string()).as_deref() != Ok(v) => {
                return Err(invalid(v, "it is not an integer in canonical form"));
            }
            _ => {}
        }
        if values.iter().skip(i + 1).any(|c| c.value == v) {
            return Err(DefinitionError::DuplicateValue {
                name: name.clone(),
                value: quote(v),
            });
        }
        choice.name.check(name, "userAttributeValues.name")?;
    }
    if input_type != InputType::CheckboxMultiSelect && values.iter().filter(|c| c.is_default).count() > 1 {
        return Err(DefinitionError::MultipleDefaults { name: name.clone() });
    }
    Ok(())
}

fn compile_pattern(name: &AttributeName, source: &str) -> Result<Regex, DefinitionError> {
    if source.len() > MAX_PATTERN_LEN {
        return Err(DefinitionError::PatternTooLong {
            name: name.clone(),
            max: MAX_PATTERN_LEN,
        });
    }
    let invalid = |reason: String| DefinitionError::InvalidPattern {
        name: name.clone(),
        reason,
    };
    if source.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    let build = |p: &str| {
        RegexBuilder::new(p)
            .size_limit(PATTERN_SIZE_LIMIT)
            .dfa_size_limit(PATTERN_SIZE_LIMIT)
            .nest_limit(64)
            .build()
            .map_err(|e| match e {
                regex::Error::CompiledTooBig(limit) => {
                    invalid(format!("it compiles to more than {limit} bytes"))
                }
                other => invalid(other.to_string().split_whitespace().collect::<Vec<_>>().join(" ")),
            })
    };
    // Compiling the pattern on its own first proves it is one balanced
    // expression, so the anchors around it cannot be escaped (`a)|(b`).
    build(source)?;
    build(&format!(r"\A(?:{source})\z"))
}

/// The validated, ordered attributes one flow collects.
///
/// Built by [`CollectedAttributes::new`] (or deserialized from the JSON list
/// of definitions, which validates the same way), so it is always usable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CollectedAttributes {
    attributes: Vec<CollectedAttribute>,
    default_language: Language,
}

impl CollectedAttributes {
    /// Validates `definitions`; the list order is the display order.
    ///
    /// # Errors
    ///
    /// The first [`DefinitionError`] found.
    pub fn new(definitions: Vec<AttributeDefinition>) -> Result<Self, DefinitionError> {
        if definitions.len() > MAX_ATTRIBUTES {
            return Err(DefinitionError::TooManyAttributes {
                count: definitions.len(),
                max: MAX_ATTRIBUTES,
            });
        }
        let mut attributes: Vec<CollectedAttribute> = Vec::with_capacity(definitions.len());
        for d in definitions {
            if attributes.iter().any(|a| a.name() == &d.name) {
                return Err(DefinitionError::DuplicateName { name: d.name });
            }
            attributes.push(CollectedAttribute::new(d)?);
        }
        Ok(Self {
            attributes,
            default_language: Language::EnUs,
        })
    }

    /// Parses and validates a JSON array of definitions.
    ///
    /// # Errors
    ///
    /// [`DefinitionError::Json`] when the JSON does not describe
    /// definitions, else the first [`DefinitionError`] found.
    pub fn from_json(json: &str) -> Result<Self, DefinitionError> {
        let definitions: Vec<AttributeDefinition> =
            serde_json::from_str(json).map_err(|e| DefinitionError::Json {
                reason: e.to_string(),
            })?;
        Self::new(definitions)
    }

    /// Sets the flow's default language, the fallback for labels missing in
    /// the requested language (`en-US` unless set).
    pub fn with_default_language(mut self, lang: Language) -> Self {
        self.default_language = lang;
        self
    }

    /// The flow's default language.
    pub fn default_language(&self) -> Language {
        self.default_language
    }

    /// The attributes, in display order.
    pub fn attributes(&self) -> &[CollectedAttribute] {
        &self.attributes
    }

    /// The attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&CollectedAttribute> {
        self.attributes.iter().find(|a| a.name().as_str() == name)
    }

    /// The number of attributes.
    pub fn len(&self) -> usize {
        self.attributes.len()
    }

    /// Whether the flow collects no attributes.
    pub fn is_empty(&self) -> bool {
        self.attributes.is_empty()
    }

    /// The definitions, as configured.
    pub fn definitions(&self) -> Vec<AttributeDefinition> {
        self.attributes.iter().map(|a| a.definition.clone()).collect()
    }

    /// Decodes and validates an `application/x-www-form-urlencoded` body.
    ///
    /// Fields named in `ignore` (such as a CSRF token the host checks
    /// itself) are skipped; a name that is also an attribute is decoded as
    /// the attribute.
    ///
    /// ```
    /// use guestpass::flow::attributes::{
    ///     AttributeDefinition, AttributeValue, BuiltInAttribute, CollectedAttributes, FieldError,
    ///     FormError,
    /// };
    ///
    /// let spec = CollectedAttributes::new(vec![
    ///     AttributeDefinition::built_in(BuiltInAttribute::Surname),
    ///     AttributeDefinition::built_in(BuiltInAttribute::City).length(None, Some(5)),
    /// ])?;
    /// let values = spec.decode_form(b"surname=Lovelace&city=Bonn", &[])?;
    /// assert_eq!(values.get("city"), Some(&AttributeValue::String("Bonn".into())));
    ///
    /// // Every problem at once.
    /// let errors = spec.decode_form(b"city=Amsterdam&color=red", &[]).unwrap_err();
    /// assert!(matches!(errors.form(), Some(FormError::UnknownFields { .. })));
    /// assert!(matches!(errors.fields(), [FieldError::Required { .. }, FieldError::TooLong { .. }]));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`FormErrors`] with every field error, and a form error for an
    /// oversized body or unknown fields.
    pub fn decode_form(&self, body: &[u8], ignore: &[&str]) -> Result<AttributeValues, FormErrors> {
        if body.len() > MAX_BODY_LEN {
            return Err(FormErrors::form_only(FormError::TooLarge { max: MAX_BODY_LEN }));
        }
        self.decode_pairs(url::form_urlencoded::parse(body), ignore)
    }

    /// Decodes and validates fields that are already split into (name,
    /// value) pairs, with the same rules and limits as
    /// [`decode_form`](Self::decode_form) (the sum of names and values
    /// counts against [`MAX_BODY_LEN`]).
    ///
    /// # Errors
    ///
    /// As [`decode_form`](Self::decode_form).
    pub fn decode_pairs<I, K, V>(&self, pairs: I, ignore: &[&str]) -> Result<AttributeValues, FormErrors>
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<str>,
        V: AsRef<str>,
    {
        let mut slots: Vec<Vec<String>> = vec![Vec::new(); self.attributes.len()];
        let mut unknown: Vec<String> = Vec::new();
        let mut unknown_count = 0usize;
        let mut total = 0usize;
        for (count, (k, v)) in pairs.into_iter().enumerate() {
            if count >= MAX_FIELDS {
                return Err(FormErrors::form_only(FormError::TooManyFields {
                    max: MAX_FIELDS,
                }));
            }
            let (k, v) = (k.as_ref(), v.as_ref());
            total = total.saturating_add(k.len()).saturating_add(v.len());
            if total > MAX_BODY_LEN {
                return Err(FormErrors::form_only(FormError::TooLarge { max: MAX_BODY_LEN }));
            }
            if let Some(i) = self.attributes.iter().position(|a| a.name().as_str() == k) {
                if let Some(slot) = slots.get_mut(i) {
                    slot.push(v.to_owned());
                }
            } else if !ignore.contains(&k) {
                unknown_count += 1;
                let shown = quote(k);
                if unknown.len() < MAX_REPORTED_UNKNOWN && !unknown.contains(&shown) {
                    unknown.push(shown);
                }
            }
        }

        let mut values = Vec::with_capacity(self.attributes.len());
        let mut fields = Vec::new();
        for (attr, raw) in self.attributes.iter().zip(&slots) {
            match decode_one(attr, raw) {
                Ok(Some(v)) => values.push((attr.name().clone(), v)),
                Ok(None) => {}
                Err(e) => fields.push(e),
            }
        }
        let form = (unknown_count > 0).then_some(FormError::UnknownFields {
            names: unknown,
            count: unknown_count,
        });
        if form.is_none() && fields.is_empty() {
            Ok(AttributeValues(values))
        } else {
            Err(FormErrors { form, fields })
        }
    }
}

impl Serialize for CollectedAttributes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.attributes.iter().map(|a| &a.definition))
    }
}

impl<'de> Deserialize<'de> for CollectedAttributes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let definitions = Vec::<AttributeDefinition>::deserialize(d)?;
        Self::new(definitions).map_err(serde::de::Error::custom)
    }
}

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/// A decoded attribute value.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum AttributeValue {
    /// A `string` value (trimmed).
    String(String),
    /// A `boolean` value.
    Boolean(bool),
    /// An `int64` value.
    Int64(i64),
    /// The chosen values of a `stringCollection`, in the flow's order.
    StringCollection(Vec<String>),
    /// A `dateTime` value: the date picked.
    DateTime(time::Date),
}

impl AttributeValue {
    /// The form field values that submit this value (one per chosen value
    /// of a collection).
    pub fn form_values(&self) -> Vec<String> {
        match self {
            AttributeValue::String(s) => vec![s.clone()],
            AttributeValue::Boolean(b) => vec![b.to_string()],
            AttributeValue::Int64(n) => vec![n.to_string()],
            AttributeValue::StringCollection(v) => v.clone(),
            AttributeValue::DateTime(d) => vec![format_date(*d)],
        }
    }

    /// The data type of this value.
    pub fn data_type(&self) -> DataType {
        match self {
            AttributeValue::String(_) => DataType::String,
            AttributeValue::Boolean(_) => DataType::Boolean,
            AttributeValue::Int64(_) => DataType::Int64,
            AttributeValue::StringCollection(_) => DataType::StringCollection,
            AttributeValue::DateTime(_) => DataType::DateTime,
        }
    }
}

impl Serialize for AttributeValue {
    /// A JSON string, boolean, number, array of strings, or `YYYY-MM-DD`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            AttributeValue::String(v) => s.serialize_str(v),
            AttributeValue::Boolean(b) => s.serialize_bool(*b),
            AttributeValue::Int64(n) => s.serialize_i64(*n),
            AttributeValue::StringCollection(v) => v.serialize(s),
            AttributeValue::DateTime(d) => s.serialize_str(&format_date(*d)),
        }
    }
}

/// The values of one submission, in the flow's order, keyed by attribute.
///
/// Serializes as a JSON object from attribute name to value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AttributeValues(Vec<(AttributeName, AttributeValue)>);

impl AttributeValues {
    /// The value of the attribute called `name`.
    pub fn get(&self, name: &str) -> Option<&AttributeValue> {
        self.0.iter().find(|(n, _)| n.as_str() == name).map(|(_, v)| v)
    }

    /// The (name, value) pairs, in the flow's order.
    pub fn iter(&self) -> impl Iterator<Item = (&AttributeName, &AttributeValue)> {
        self.0.iter().map(|(n, v)| (n, v))
    }

    /// The number of values.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are no values.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The values as the form body that submits them.
    pub fn to_form_body(&self) -> String {
        let mut out = url::form_urlencoded::Serializer::new(String::new());
        for (name, value) in &self.0 {
            for v in value.form_values() {
                out.append_pair(name.as_str(), &v);
            }
        }
        out.finish()
    }

    /// The (name, value) pairs.
    pub fn into_vec(self) -> Vec<(AttributeName, AttributeValue)> {
        self.0
    }
}

impl Serialize for AttributeValues {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(n, v)| (n.as_str(), v)))
    }
}

fn format_date(d: time::Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

fn parse_date(s: &str) -> Option<time::Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let year = i32::try_from(num(0..4)?).ok().filter(|y| *y >= 1)?;
    let month = time::Month::try_from(u8::try_from(num(5..7)?).ok()?).ok()?;
    let day = u8::try_from(num(8..10)?).ok()?;
    time::Date::from_calendar_date(year, month, day).ok()
}

fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

fn parse_int(name: &AttributeName, s: &str) -> Result<i64, FieldError> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(FieldError::NotANumber {
            name: name.clone(),
            value: quote(s),
        });
    }
    s.parse().map_err(|_| FieldError::OutOfRange {
        name: name.clone(),
        value: quote(s),
    })
}

fn decode_one(attr: &CollectedAttribute, raw: &[String]) -> Result<Option<AttributeValue>, FieldError> {
    let name = attr.name();
    if attr.input_type == InputType::CheckboxMultiSelect {
        return decode_multi(attr, raw);
    }
    if raw.len() > 1 {
        return Err(FieldError::Repeated { name: name.clone() });
    }
    let value = raw.first().map(|v| v.trim()).unwrap_or_default();
    if value.is_empty() {
        return match (attr.is_required(), attr.input_type) {
            (true, _) => Err(FieldError::Required { name: name.clone() }),
            (false, InputType::CheckboxSingleSelect) => Ok(Some(AttributeValue::Boolean(false))),
            (false, _) => Ok(None),
        };
    }
    if value.chars().any(char::is_control) {
        return Err(FieldError::ControlCharacter { name: name.clone() });
    }
    let not_allowed = || FieldError::NotAllowed {
        name: name.clone(),
        value: quote(value),
    };
    let not_boolean = || FieldError::NotABoolean {
        name: name.clone(),
        value: quote(value),
    };
    let decoded = match attr.data_type {
        DataType::Boolean => {
            let b = parse_bool(value).ok_or_else(not_boolean)?;
            if attr.input_type.is_select() && !attr.has_choice(value) {
                return Err(not_allowed());
            }
            if attr.input_type == InputType::CheckboxSingleSelect && !b && attr.is_required() {
                return Err(FieldError::Required { name: name.clone() });
            }
            AttributeValue::Boolean(b)
        }
        DataType::Int64 => {
            let n = parse_int(name, value)?;
            if attr.input_type.is_select() && !attr.has_choice(value) {
                return Err(not_allowed());
            }
            AttributeValue::Int64(n)
        }
        DataType::DateTime => {
            AttributeValue::DateTime(parse_date(value).ok_or_else(|| FieldError::BadDate {
                name: name.clone(),
                value: quote(value),
            })?)
        }
        DataType::String | DataType::StringCollection => {
            if attr.input_type.is_select() {
                if !attr.has_choice(value) {
                    return Err(not_allowed());
                }
            } else {
                check_text(attr, value)?;
            }
            AttributeValue::String(value.to_owned())
        }
    };
    Ok(Some(decoded))
}

fn check_text(attr: &CollectedAttribute, value: &str) -> Result<(), FieldError> {
    let name = attr.name();
    let limit = usize::try_from(attr.max_length).unwrap_or(usize::MAX);
    let len = value.chars().take(limit.saturating_add(1)).count();
    if len > limit {
        return Err(FieldError::TooLong {
            name: name.clone(),
            max: attr.max_length,
        });
    }
    if len < usize::try_from(attr.min_length).unwrap_or(usize::MAX) {
        return Err(FieldError::TooShort {
            name: name.clone(),
            min: attr.min_length,
        });
    }
    if attr.input_type == InputType::EmailBox {
        EmailAddress::parse(value).map_err(|reason| FieldError::InvalidEmail {
            name: name.clone(),
            reason,
        })?;
    }
    if !attr.matches_pattern(value) {
        return Err(FieldError::PatternMismatch { name: name.clone() });
    }
    Ok(())
}

fn decode_multi(attr: &CollectedAttribute, raw: &[String]) -> Result<Option<AttributeValue>, FieldError> {
    let name = attr.name();
    let mut chosen = vec![false; attr.choices().len()];
    let mut any = false;
    for v in raw.iter().map(|v| v.trim()).filter(|v| !v.is_empty()) {
        if v.chars().any(char::is_control) {
            return Err(FieldError::ControlCharacter { name: name.clone() });
        }
        let Some(i) = attr.choices().iter().position(|c| c.value == v) else {
            return Err(FieldError::NotAllowed {
                name: name.clone(),
                value: quote(v),
            });
        };
        match chosen.get_mut(i) {
            Some(seen) if *seen => {
                return Err(FieldError::DuplicateValue {
                    name: name.clone(),
                    value: quote(v),
                });
            }
            Some(seen) => *seen = true,
            None => {}
        }
        any = true;
    }
    if !any {
        return if attr.is_required() {
            Err(FieldError::Required { name: name.clone() })
        } else {
            Ok(None)
        };
    }
    let values = attr
        .choices()
        .iter()
        .zip(&chosen)
        .filter(|(_, c)| **c)
        .map(|(choice, _)| choice.value.clone())
        .collect();
    Ok(Some(AttributeValue::StringCollection(values)))
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// What is wrong with one attribute of a submission.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FieldError {
    /// A required attribute is missing or empty (or a required check box is
    /// not checked).
    #[error("attribute `{name}` is required")]
    Required {
        /// The attribute.
        name: AttributeName,
    },
    /// A single-value field appears more than once.
    #[error("attribute `{name}` is given more than once")]
    Repeated {
        /// The attribute.
        name: AttributeName,
    },
    /// The value has a control character.
    #[error("attribute `{name}` contains a control character")]
    ControlCharacter {
        /// The attribute.
        name: AttributeName,
    },
    /// The value is longer than `maxLength`.
    #[error("attribute `{name}` is longer than {max} characters")]
    TooLong {
        /// The attribute.
        name: AttributeName,
        /// The limit.
        max: u32,
    },
    /// The value is shorter than `minLength`.
    #[error("attribute `{name}` is shorter than {min} characters")]
    TooShort {
        /// The attribute.
        name: AttributeName,
        /// The limit.
        min: u32,
    },
    /// The value does not match the pattern.
    #[error("attribute `{name}` does not have the required format")]
    PatternMismatch {
        /// The attribute.
        name: AttributeName,
    },
    /// The value is not an email address.
    #[error("attribute `{name}` is not a valid email address: {reason}")]
    InvalidEmail {
        /// The attribute.
        name: AttributeName,
        /// Why the address was rejected.
        reason: EmailError,
    },
    /// The value is not one of the choices.
    #[error("`{value}` is not a choice of attribute `{name}`")]
    NotAllowed {
        /// The attribute.
        name: AttributeName,
        /// The value (cut off when long).
        value: String,
    },
    /// A choice is submitted twice.
    #[error("`{value}` is chosen more than once for attribute `{name}`")]
    DuplicateValue {
        /// The attribute.
        name: AttributeName,
        /// The value (cut off when long).
        value: String,
    },
    /// The value is not an integer.
    #[error("attribute `{name}` must be a whole number, not `{value}`")]
    NotANumber {
        /// The attribute.
        name: AttributeName,
        /// The value (cut off when long).
        value: String,
    },
    /// The integer does not fit in 64 bits.
    #[error("attribute `{name}` is out of range: `{value}`")]
    OutOfRange {
        /// The attribute.
        name: AttributeName,
        /// The value (cut off when long).
        value: String,
    },
    /// The value is not `true` or `false`.
    #[error("attribute `{name}` must be `true` or `false`, not `{value}`")]
    NotABoolean {
        /// The attribute.
        name: AttributeName,
        /// The value (cut off when long).
        value: String,
    },
    /// The value is not a `YYYY-MM-DD` date.
    #[error("attribute `{name}` must be a date as `YYYY-MM-DD`, not `{value}`")]
    BadDate {
        /// The attribute.
        name: AttributeName,
        /// The value (cut off when long).
        value: String,
    },
}

impl FieldError {
    /// The attribute the error is about.
    pub fn name(&self) -> &AttributeName {
        match self {
            FieldError::Required { name }
            | FieldError::Repeated { name }
            | FieldError::ControlCharacter { name }
            | FieldError::TooLong { name, .. }
            | FieldError::TooShort { name, .. }
            | FieldError::PatternMismatch { name }
            | FieldError::InvalidEmail { name, .. }
            | FieldError::NotAllowed { name, .. }
            | FieldError::DuplicateValue { name, .. }
            | FieldError::NotANumber { name, .. }
            | FieldError::OutOfRange { name, .. }
            | FieldError::NotABoolean { name, .. }
            | FieldError::BadDate { name, .. } => name,
        }
    }

    /// A message for the person filling in the form, in `lang`, naming the
    /// attribute by its label (in `lang`, else the flow's default language,
    /// else `en-US`).
    ///
    /// ```
    /// use guestpass::flow::attributes::{AttributeDefinition, BuiltInAttribute, CollectedAttributes};
    /// use guestpass::mail::templates::Language;
    ///
    /// let spec = CollectedAttributes::new(vec![AttributeDefinition::built_in(BuiltInAttribute::City)])?;
    /// let errors = spec.decode_form(b"", &[]).unwrap_err();
    /// let e = &errors.fields()[0];
    /// assert_eq!(e.message(Language::EnUs, &spec), "Please fill in “City”");
    /// assert_eq!(e.message(Language::NlNl, &spec), "Vul ‘Plaats’ in");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn message(&self, lang: Language, spec: &CollectedAttributes) -> String {
        let attr = spec.get(self.name().as_str());
        let label = attr.map_or(self.name().as_str(), |a| a.label(lang, spec.default_language()));
        let checkbox = attr.is_some_and(|a| a.input_type() == InputType::CheckboxSingleSelect);
        let (en, de, nl): (String, String, String) = match self {
            FieldError::Required { .. } if checkbox => (
                format!("Please check “{label}”"),
                format!("Bitte bestätigen Sie „{label}“"),
                format!("Vink ‘{label}’ aan"),
            ),
            FieldError::Required { .. } => (
                format!("Please fill in “{label}”"),
                format!("Bitte füllen Sie „{label}“ aus"),
                format!("Vul ‘{label}’ in"),
            ),
            FieldError::Repeated { .. } => (
                format!("“{label}” was sent more than once"),
                format!("„{label}“ wurde mehrfach gesendet"),
                format!("‘{label}’ is meer dan eens verzonden"),
            ),
            FieldError::ControlCharacter { .. } => (
                format!("“{label}” contains characters that are not allowed"),
                format!("„{label}“ enthält unzulässige Zeichen"),
                format!("‘{label}’ bevat tekens die niet zijn toegestaan"),
            ),
            FieldError::TooLong { max, .. } => (
                format!("“{label}” can be at most {max} characters long"),
                format!("„{label}“ darf höchstens {max} Zeichen lang sein"),
                format!("‘{label}’ mag maximaal {max} tekens lang zijn"),
            ),
            FieldError::TooShort { min, .. } => (
                format!("“{label}” must be at least {min} characters long"),
                format!("„{label}“ muss mindestens {min} Zeichen lang sein"),
                format!("‘{label}’ moet minstens {min} tekens lang zijn"),
            ),
            FieldError::PatternMismatch { .. } => (
                format!("“{label}” is not in the expected format"),
                format!("„{label}“ hat nicht das erwartete Format"),
                format!("‘{label}’ heeft niet de verwachte indeling"),
            ),
            FieldError::InvalidEmail { .. } => (
                format!("Please enter a valid email address in “{label}”"),
                format!("Bitte geben Sie in „{label}“ eine gültige E-Mail-Adresse ein"),
                format!("Vul bij ‘{label}’ een geldig e-mailadres in"),
            ),
            FieldError::NotAllowed { .. } => (
                format!("Please choose one of the options for “{label}”"),
                format!("Bitte wählen Sie eine der Optionen für „{label}“"),
                format!("Kies een van de opties voor ‘{label}’"),
            ),
            FieldError::DuplicateValue { .. } => (
                format!("An option for “{label}” was chosen more than once"),
                format!("Eine Option für „{label}“ wurde mehrfach gewählt"),
                format!("Een optie voor ‘{label}’ is meer dan eens gekozen"),
            ),
            FieldError::NotANumber { .. } => (
                format!("“{label}” must be a whole number"),
                format!("„{label}“ muss eine ganze Zahl sein"),
                format!("‘{label}’ moet een geheel getal zijn"),
            ),
            FieldError::OutOfRange { .. } => (
                format!("The number in “{label}” is too large or too small"),
                format!("Die Zahl in „{label}“ ist zu groß oder zu klein"),
                format!("Het getal in ‘{label}’ is te groot of te klein"),
            ),
            FieldError::NotABoolean { .. } => (
                format!("Please choose yes or no for “{label}”"),
                format!("Bitte wählen Sie Ja oder Nein für „{label}“"),
                format!("Kies ja of nee voor ‘{label}’"),
            ),
            FieldError::BadDate { .. } => (
                format!("“{label}” is not a valid date"),
                format!("„{label}“ ist kein gültiges Datum"),
                format!("‘{label}’ is geen geldige datum"),
            ),
        };
        pick(lang, en, de, nl)
    }
}

fn pick<T>(lang: Language, en: T, de: T, nl: T) -> T {
    match lang {
        Language::DeDe => de,
        Language::NlNl => nl,
        _ => en,
    }
}

/// What is wrong with a submission as a whole.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FormError {
    /// The body is larger than [`MAX_BODY_LEN`]; nothing was decoded.
    #[error("the form is larger than {max} bytes")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The body has more than [`MAX_FIELDS`] fields; nothing was decoded.
    #[error("the form has more than {max} fields")]
    TooManyFields {
        /// The limit.
        max: usize,
    },
    /// Fields that are no attribute of the flow and not ignored.
    #[error("the form has unknown fields {}", list_names(names, *count))]
    UnknownFields {
        /// The first few distinct names (each cut off when long).
        names: Vec<String>,
        /// How many unknown fields there were.
        count: usize,
    },
}

fn list_names(names: &[String], count: usize) -> String {
    let mut out = names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ");
    let more = count.saturating_sub(names.len());
    if more > 0 {
        out.push_str(&format!(" and {more} more"));
    }
    out
}

impl FormError {
    /// A message for the person filling in the form, in `lang`.
    pub fn message(&self, lang: Language) -> String {
        let (en, de, nl) = match self {
            FormError::TooLarge { .. } => (
                "The form is too large",
                "Das Formular ist zu groß",
                "Het formulier is te groot",
            ),
            FormError::TooManyFields { .. } => (
                "The form has too many fields",
                "Das Formular hat zu viele Felder",
                "Het formulier heeft te veel velden",
            ),
            FormError::UnknownFields { .. } => (
                "The form contains fields that do not belong to this sign-up",
                "Das Formular enthält Felder, die nicht zu dieser Registrierung gehören",
                "Het formulier bevat velden die niet bij deze registratie horen",
            ),
        };
        pick(lang, en, de, nl).to_owned()
    }
}

/// Every problem of one submission: at most one form error and one error
/// per attribute, in the flow's order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormErrors {
    form: Option<FormError>,
    fields: Vec<FieldError>,
}

impl FormErrors {
    fn form_only(e: FormError) -> Self {
        Self {
            form: Some(e),
            fields: Vec::new(),
        }
    }

    /// The problem with the form as a whole, if any.
    pub fn form(&self) -> Option<&FormError> {
        self.form.as_ref()
    }

    /// The problems with single attributes, in the flow's order.
    pub fn fields(&self) -> &[FieldError] {
        &self.fields
    }

    /// The problem with the attribute called `name`, if any.
    pub fn field(&self, name: &str) -> Option<&FieldError> {
        self.fields.iter().find(|e| e.name().as_str() == name)
    }

    /// Every message in `lang`: the form's first, then the fields'.
    pub fn messages(&self, lang: Language, spec: &CollectedAttributes) -> Vec<String> {
        self.form
            .iter()
            .map(|e| e.message(lang))
            .chain(self.fields.iter().map(|e| e.message(lang, spec)))
            .collect()
    }
}

impl fmt::Display for FormErrors {
    /// The problems, separated by `; `.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        let all = self
            .form
            .iter()
            .map(|e| e as &dyn fmt::Display)
            .chain(self.fields.iter().map(|e| e as &dyn fmt::Display));
        for e in all {
            if !first {
                f.write_str("; ")?;
            }
            first = false;
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for FormErrors {}

/// User input as an error quotes it: at most [`QUOTE_LEN`] characters, then
/// `…`.
fn quote(s: &str) -> String {
    match s.char_indices().nth(QUOTE_LEN) {
        Some((i, _)) => format!("{}…", s.get(..i).unwrap_or_default()),
        None => s.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APP: &str = "0f8fad5bd9cb469fa16570867728950e";

    fn ext(short: &str) -> ExtensionAttributeName {
        ExtensionAttributeName::parse(&format!("extension_{APP}_{short}")).unwrap()
    }

    fn choice(v: &str) -> UserAttributeValue {
        UserAttributeValue::new(v, v)
    }

    fn spec(defs: Vec<AttributeDefinition>) -> CollectedAttributes {
        CollectedAttributes::new(defs).unwrap()
    }

    fn one_error(spec: &CollectedAttributes, body: &str) -> FieldError {
        let errors = spec.decode_form(body.as_bytes(), &[]).unwrap_err();
        assert_eq!(errors.form(), None, "{body}");
        assert_eq!(errors.fields().len(), 1, "{body}: {errors}");
        errors.fields()[0].clone()
    }

    #[test]
    fn extension_names_are_checked_part_by_part() {
        use AttributeNameError::*;
        let cases: [(String, AttributeNameError); 8] = [
            (
                "nickname".into(),
                Unknown {
                    name: "nickname".into(),
                },
            ),
            ("extension_".into(), MissingAppId),
            (
                format!("extension_{}_x", APP.to_uppercase()),
                BadAppId {
                    app_id: APP.to_uppercase(),
                },
            ),
            ("extension_abc_x".into(), BadAppId { app_id: "abc".into() }),
            (format!("extension_{APP}"), MissingShortName),
            (format!("extension_{APP}_"), MissingShortName),
            (
                format!("extension_{APP}_1x"),
                BadShortNameStart {
                    character: "1".into(),
                },
            ),
            (
                format!("extension_{APP}_a-b"),
                BadShortNameCharacter {
                    character: "-".into(),
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(AttributeName::parse(&input), Err(want), "{input}");
        }
        assert_eq!(
            AttributeName::parse(&format!("extension_{APP}_{}", "a".repeat(65))),
            Err(ShortNameTooLong { max: 64 })
        );
        let ok = AttributeName::parse(&format!("extension_{APP}_a_B9")).unwrap();
        assert!(matches!(&ok, AttributeName::Extension(e) if e.app_id() == APP && e.short_name() == "a_B9"));
        assert_eq!(
            AttributeName::parse("givenName"),
            Ok(BuiltInAttribute::GivenName.into())
        );
        assert!(
            AttributeName::parse("GivenName").is_err(),
            "built-in names are case-sensitive"
        );
        let long = AttributeName::parse(&"x".repeat(1000)).unwrap_err().to_string();
        assert!(long.len() < 150, "long input is cut off: {long}");
    }

    #[test]
    fn extension_name_from_client_id() {
        let id: Id = "0F8FAD5B-D9CB-469F-A165-70867728950E".parse().unwrap();
        let n = ExtensionAttributeName::new(id, "tier").unwrap();
        assert_eq!(n, ext("tier"));
        assert_eq!(
            ExtensionAttributeName::new(id, "ti er"),
            Err(AttributeNameError::BadShortNameCharacter {
                character: " ".into()
            })
        );
    }

    #[test]
    fn data_and_input_types_must_fit() {
        use DataType as D;
        use InputType as I;
        let all_inputs = [
            I::TextBox,
            I::EmailBox,
            I::RadioSingleSelect,
            I::DropdownSingleSelect,
            I::CheckboxSingleSelect,
            I::CheckboxMultiSelect,
            I::DateTimeDropdown,
        ];
        let all_types = [D::String, D::Boolean, D::Int64, D::StringCollection, D::DateTime];
        for dt in all_types {
            for it in all_inputs {
                let mut d = AttributeDefinition::custom(ext("x"), dt, "X").input(it);
                if it.is_select() {
                    d = d.choice(choice(if dt == D::Boolean { "true" } else { "1" }));
                }
                let got = CollectedAttributes::new(vec![d]);
                let ok = dt.input_types().contains(&it);
                assert_eq!(got.is_ok(), ok, "{dt} {it}: {got:?}");
                if !ok {
                    assert_eq!(
                        got.unwrap_err(),
                        DefinitionError::InputTypeMismatch {
                            name: ext("x").into(),
                            data_type: dt,
                            input_type: it
                        }
                    );
                }
            }
        }
    }

    #[test]
    fn definition_errors_name_attribute_and_field() {
        let x = || AttributeDefinition::custom(ext("x"), DataType::String, "X");
        let name: AttributeName = ext("x").into();
        let cases: Vec<(AttributeDefinition, DefinitionError)> = vec![
            (
                x().input(InputType::RadioSingleSelect),
                DefinitionError::MissingValues {
                    name: name.clone(),
                    input_type: InputType::RadioSingleSelect,
                },
            ),
            (
                x().choice(choice("a")),
                DefinitionError::ValuesNotAllowed {
                    name: name.clone(),
                    input_type: InputType::TextBox,
                },
            ),
            (
                x().input(InputType::DropdownSingleSelect)
                    .choice(choice("a"))
                    .choice(choice("a")),
                DefinitionError::DuplicateValue {
                    name: name.clone(),
                    value: "a".into(),
                },
            ),
            (
                x().input(InputType::DropdownSingleSelect)
                    .choice(choice("a").preselected())
                    .choice(choice("b").preselected()),
                DefinitionError::MultipleDefaults { name: name.clone() },
            ),
            (
                x().length(Some(5), Some(4)),
                DefinitionError::LengthRange {
                    name: name.clone(),
                    min: 5,
                    max: 4,
                },
            ),
            (
                x().length(Some(300), None),
                DefinitionError::LengthRange {
                    name: name.clone(),
                    min: 300,
                    max: DEFAULT_MAX_LENGTH,
                },
            ),
            (
                x().length(None, Some(0)),
                DefinitionError::ZeroMaxLength { name: name.clone() },
            ),
            (
                x().length(None, Some(2000)),
                DefinitionError::MaxLengthAboveCap {
                    name: name.clone(),
                    value: 2000,
                    cap: MAX_LENGTH_CAP,
                },
            ),
            (
                AttributeDefinition::custom(ext("x"), DataType::Int64, "X").length(None, Some(3)),
                DefinitionError::FieldNotApplicable {
                    name: name.clone(),
                    field: "maxLength",
                },
            ),
            (
                x().input(InputType::RadioSingleSelect)
                    .choice(choice("a"))
                    .pattern("a"),
                DefinitionError::FieldNotApplicable {
                    name: name.clone(),
                    field: "pattern",
                },
            ),
            (
                x().pattern(&"a".repeat(MAX_PATTERN_LEN + 1)),
                DefinitionError::PatternTooLong {
                    name: name.clone(),
                    max: MAX_PATTERN_LEN,
                },
            ),
            (
                AttributeDefinition {
                    label: LocalizedText::new().with("de-DE", "X"),
                    ..x()
                },
                DefinitionError::MissingEnglishText {
                    name: name.clone(),
                    field: "label",
                },
            ),
            (
                AttributeDefinition {
                    label: LocalizedText::new(),
                    ..x()
                },
                DefinitionError::MissingEnglishText {
                    name: name.clone(),
                    field: "label",
                },
            ),
            (
                x().input(InputType::RadioSingleSelect)
                    .choice(UserAttributeValue::new(
                        "a",
                        LocalizedText::new().with("nl-NL", "A"),
                    )),
                DefinitionError::MissingEnglishText {
                    name: name.clone(),
                    field: "userAttributeValues.name",
                },
            ),
            (
                x().label("not a tag", "X"),
                DefinitionError::InvalidText {
                    name: name.clone(),
                    field: "label",
                    tag: "not a tag".into(),
                    reason: "it is not a language tag",
                },
            ),
            (
                x().label("de-DE", " "),
                DefinitionError::InvalidText {
                    name: name.clone(),
                    field: "label",
                    tag: "de-DE".into(),
                    reason: "the text is empty",
                },
            ),
            (
                AttributeDefinition::built_in(BuiltInAttribute::Email).input(InputType::TextBox),
                DefinitionError::EmailBoxRequired {
                    name: BuiltInAttribute::Email.into(),
                },
            ),
            (
                AttributeDefinition {
                    data_type: Some(DataType::Int64),
                    ..AttributeDefinition::built_in(BuiltInAttribute::City)
                },
                DefinitionError::DataTypeMismatch {
                    name: BuiltInAttribute::City.into(),
                    expected: DataType::String,
                    found: DataType::Int64,
                },
            ),
            (
                AttributeDefinition {
                    data_type: None,
                    ..x()
                },
                DefinitionError::MissingDataType { name: name.clone() },
            ),
        ];
        for (def, want) in cases {
            let got = CollectedAttributes::new(vec![def.clone()]);
            assert_eq!(got, Err(want.clone()), "{def:?}");
            let msg = want.to_string();
            assert!(msg.contains(&format!("`{}`", def.name)), "{msg}");
            assert!(!msg.ends_with('.'), "{msg}");
        }
    }

    #[test]
    fn choice_values_must_fit_the_data_type() {
        let b = |v: &str| {
            AttributeDefinition::custom(ext("b"), DataType::Boolean, "B")
                .input(InputType::RadioSingleSelect)
                .choice(choice(v))
        };
        assert!(CollectedAttributes::new(vec![b("true")]).is_ok());
        assert!(matches!(
            CollectedAttributes::new(vec![b("yes")]),
            Err(DefinitionError::InvalidValue { .. })
        ));
        let n = |v: &str| {
            AttributeDefinition::custom(ext("n"), DataType::Int64, "N")
                .input(InputType::DropdownSingleSelect)
                .choice(choice(v))
        };
        assert!(CollectedAttributes::new(vec![n("-42")]).is_ok());
        for bad in ["042", "+1", "1.5", "99999999999999999999", " 1", ""] {
            assert!(
                matches!(
                    CollectedAttributes::new(vec![n(bad)]),
                    Err(DefinitionError::InvalidValue { .. })
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn list_limits() {
        let many: Vec<_> = (0..=MAX_ATTRIBUTES)
            .map(|i| AttributeDefinition::custom(ext(&format!("a{i}")), DataType::String, "A"))
            .collect();
        assert_eq!(
            CollectedAttributes::new(many),
            Err(DefinitionError::TooManyAttributes {
                count: MAX_ATTRIBUTES + 1,
                max: MAX_ATTRIBUTES
            })
        );
        let city = AttributeDefinition::built_in(BuiltInAttribute::City);
        assert_eq!(
            CollectedAttributes::new(vec![city.clone(), city]),
            Err(DefinitionError::DuplicateName {
                name: BuiltInAttribute::City.into()
            })
        );
        assert!(CollectedAttributes::new(vec![]).unwrap().is_empty());
    }

    #[test]
    fn patterns_are_anchored_and_bounded() {
        let s = spec(vec![
            AttributeDefinition::built_in(BuiltInAttribute::PostalCode).pattern("[0-9]+"),
        ]);
        assert!(s.decode_form(b"postalCode=123", &[]).is_ok());
        for bad in ["a123", "123a", "12%0A3"] {
            let body = format!("postalCode={bad}");
            let e = s.decode_form(body.as_bytes(), &[]).unwrap_err();
            assert!(
                matches!(
                    e.fields(),
                    [FieldError::PatternMismatch { .. } | FieldError::ControlCharacter { .. }]
                ),
                "{bad}: {e}"
            );
        }
        // An alternation matches the whole value only.
        let alt = spec(vec![
            AttributeDefinition::built_in(BuiltInAttribute::City).pattern("a|ab"),
        ]);
        assert!(alt.decode_form(b"city=ab", &[]).is_ok());
        assert!(alt.decode_form(b"city=abc", &[]).is_err());
        // A pattern cannot break out of the anchoring group.
        let escape = CollectedAttributes::new(vec![
            AttributeDefinition::built_in(BuiltInAttribute::City).pattern("a)|(?:b"),
        ]);
        assert!(
            matches!(escape, Err(DefinitionError::InvalidPattern { .. })),
            "{escape:?}"
        );
        for bad in ["(", "", "\\"] {
            assert!(
                matches!(
                    CollectedAttributes::new(vec![
                        AttributeDefinition::built_in(BuiltInAttribute::City).pattern(bad)
                    ]),
                    Err(DefinitionError::InvalidPattern { .. })
                ),
                "{bad:?}"
            );
        }
        let huge = CollectedAttributes::new(vec![
            AttributeDefinition::built_in(BuiltInAttribute::City).pattern(r"\w{1000}\w{1000}"),
        ]);
        match huge {
            Err(DefinitionError::InvalidPattern { reason, .. }) => {
                assert!(reason.contains("compiles to more than"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
        let ci = spec(vec![
            AttributeDefinition::built_in(BuiltInAttribute::City).pattern("(?i)bonn"),
        ]);
        assert!(ci.decode_form(b"city=BONN", &[]).is_ok());
    }

    fn everything() -> CollectedAttributes {
        spec(vec![
            AttributeDefinition::built_in(BuiltInAttribute::GivenName),
            AttributeDefinition::built_in(BuiltInAttribute::Email).optional(),
            AttributeDefinition::built_in(BuiltInAttribute::City)
                .optional()
                .length(Some(2), Some(6)),
            AttributeDefinition::custom(ext("age"), DataType::Int64, "Age").optional(),
            AttributeDefinition::custom(ext("size"), DataType::Int64, "Size")
                .optional()
                .input(InputType::RadioSingleSelect)
                .choice(choice("1"))
                .choice(choice("2")),
            AttributeDefinition::custom(ext("terms"), DataType::Boolean, "Terms"),
            AttributeDefinition::custom(ext("news"), DataType::Boolean, "News")
                .optional()
                .input(InputType::DropdownSingleSelect)
                .choice(choice("true")),
            AttributeDefinition::custom(ext("topics"), DataType::StringCollection, "Topics")
                .optional()
                .choice(choice("a"))
                .choice(choice("b"))
                .choice(choice("c")),
            AttributeDefinition::custom(ext("born"), DataType::DateTime, "Born").optional(),
        ])
    }

    fn body(pairs: &[(&str, &str)]) -> String {
        let mut s = url::form_urlencoded::Serializer::new(String::new());
        for (k, v) in pairs {
            let k = match *k {
                "givenName" | "email" | "city" => (*k).to_owned(),
                short => format!("extension_{APP}_{short}"),
            };
            s.append_pair(&k, v);
        }
        s.finish()
    }

    #[test]
    fn decodes_every_type() {
        let s = everything();
        let b = body(&[
            ("givenName", "  Ada \t"),
            ("email", "Ada@Example.com"),
            ("city", "Köln"),
            ("age", "-7"),
            ("size", "2"),
            ("terms", "true"),
            ("news", "true"),
            ("topics", "c"),
            ("topics", "a"),
            ("born", "1815-12-10"),
        ]);
        let v = s.decode_form(b.as_bytes(), &[]).unwrap();
        let get = |k: &str| v.get(&format!("extension_{APP}_{k}")).cloned();
        assert_eq!(v.get("givenName"), Some(&AttributeValue::String("Ada".into())));
        assert_eq!(
            v.get("email"),
            Some(&AttributeValue::String("Ada@Example.com".into()))
        );
        assert_eq!(v.get("city"), Some(&AttributeValue::String("Köln".into())));
        assert_eq!(get("age"), Some(AttributeValue::Int64(-7)));
        assert_eq!(get("size"), Some(AttributeValue::Int64(2)));
        assert_eq!(get("terms"), Some(AttributeValue::Boolean(true)));
        assert_eq!(get("news"), Some(AttributeValue::Boolean(true)));
        assert_eq!(
            get("topics"),
            Some(AttributeValue::StringCollection(vec!["a".into(), "c".into()])),
            "in the flow's order"
        );
        assert_eq!(
            get("born"),
            Some(AttributeValue::DateTime(time::macros::date!(1815 - 12 - 10)))
        );
        let names: Vec<_> = v.iter().map(|(n, _)| n.clone()).collect();
        let order: Vec<_> = s.attributes().iter().map(|a| a.name().clone()).collect();
        assert_eq!(names, order, "values keep the flow's order");
        assert_eq!(s.decode_form(v.to_form_body().as_bytes(), &[]).unwrap(), v);
        let json = serde_json::to_value(&v).unwrap();
        assert_eq!(json["givenName"], "Ada");
        assert_eq!(json[format!("extension_{APP}_born")], "1815-12-10");
        assert_eq!(json[format!("extension_{APP}_age")], -7);
    }

    #[test]
    fn optional_values_are_left_out_and_unchecked_is_false() {
        let s = everything();
        let v = s
            .decode_form(
                body(&[("givenName", "Ada"), ("terms", "true"), ("city", " ")]).as_bytes(),
                &[],
            )
            .unwrap();
        assert_eq!(v.len(), 2);
        let s2 = spec(vec![
            AttributeDefinition::custom(ext("news"), DataType::Boolean, "News").optional(),
        ]);
        assert_eq!(
            s2.decode_form(b"", &[])
                .unwrap()
                .get(&format!("extension_{APP}_news")),
            Some(&AttributeValue::Boolean(false))
        );
    }

    #[test]
    fn each_problem_has_its_own_error() {
        let s = everything();
        let base = [("givenName", "Ada"), ("terms", "true")];
        let with = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.retain(|(k, _)| !extra.iter().any(|(e, _)| e == k));
            all.extend_from_slice(extra);
            body(&all)
        };
        type Check = fn(&FieldError) -> bool;
        let cases: Vec<(String, Check)> = vec![
            (with(&[("givenName", "")]), |e| {
                matches!(e, FieldError::Required { .. })
            }),
            (with(&[("terms", "false")]), |e| {
                matches!(e, FieldError::Required { .. })
            }),
            (with(&[("city", "a"), ("city", "b")]), |e| {
                matches!(e, FieldError::Repeated { .. })
            }),
            (with(&[("city", "Bonn\u{7}")]), |e| {
                matches!(e, FieldError::ControlCharacter { .. })
            }),
            (with(&[("city", "Amsterdam")]), |e| {
                matches!(e, FieldError::TooLong { max: 6, .. })
            }),
            (with(&[("city", "X")]), |e| {
                matches!(e, FieldError::TooShort { min: 2, .. })
            }),
            (with(&[("email", "nope")]), |e| {
                matches!(e, FieldError::InvalidEmail { .. })
            }),
            (with(&[("size", "3")]), |e| {
                matches!(e, FieldError::NotAllowed { .. })
            }),
            (with(&[("news", "false")]), |e| {
                matches!(e, FieldError::NotAllowed { .. })
            }),
            (with(&[("topics", "d")]), |e| {
                matches!(e, FieldError::NotAllowed { .. })
            }),
            (with(&[("topics", "a"), ("topics", " a")]), |e| {
                matches!(e, FieldError::DuplicateValue { .. })
            }),
            (with(&[("age", "1e3")]), |e| {
                matches!(e, FieldError::NotANumber { .. })
            }),
            (with(&[("age", "+1")]), |e| {
                matches!(e, FieldError::NotANumber { .. })
            }),
            (with(&[("size", "x")]), |e| {
                matches!(e, FieldError::NotANumber { .. })
            }),
            (with(&[("age", "9223372036854775808")]), |e| {
                matches!(e, FieldError::OutOfRange { .. })
            }),
            (with(&[("terms", "yes")]), |e| {
                matches!(e, FieldError::NotABoolean { .. })
            }),
            (with(&[("terms", "TRUE")]), |e| {
                matches!(e, FieldError::NotABoolean { .. })
            }),
            (with(&[("born", "2023-02-29")]), |e| {
                matches!(e, FieldError::BadDate { .. })
            }),
            (with(&[("born", "0000-01-01")]), |e| {
                matches!(e, FieldError::BadDate { .. })
            }),
            (with(&[("born", "2023-1-01")]), |e| {
                matches!(e, FieldError::BadDate { .. })
            }),
            (with(&[("born", "+2023-01-1")]), |e| {
                matches!(e, FieldError::BadDate { .. })
            }),
        ];
        for (b, check) in cases {
            let e = one_error(&s, &b);
            assert!(check(&e), "{b}: {e:?}");
            let msg = e.to_string();
            assert!(
                msg.contains("`extension_")
                    || msg.contains("`givenName`")
                    || msg.contains("`city`")
                    || msg.contains("`email`"),
                "{msg}"
            );
            assert!(!msg.ends_with('.'), "{msg}");
        }
        assert!(
            s.decode_form(with(&[("age", "-9223372036854775808")]).as_bytes(), &[])
                .is_ok()
        );
        assert!(
            s.decode_form(with(&[("born", "2024-02-29")]).as_bytes(), &[])
                .is_ok()
        );
    }

    #[test]
    fn collects_every_problem_and_names_unknown_fields() {
        let s = everything();
        let b = format!("{}&csrf=1&x=1&x=2&y=3", body(&[("city", "A"), ("age", "z")]));
        let e = s.decode_form(b.as_bytes(), &["csrf"]).unwrap_err();
        assert_eq!(
            e.form(),
            Some(&FormError::UnknownFields {
                names: vec!["x".into(), "y".into()],
                count: 3
            })
        );
        let kinds: Vec<_> = e.fields().iter().map(|f| f.name().to_string()).collect();
        assert_eq!(
            kinds,
            vec![
                "givenName".to_owned(),
                "city".to_owned(),
                format!("extension_{APP}_age"),
                format!("extension_{APP}_terms"),
            ]
        );
        assert!(
            e.to_string()
                .starts_with("the form has unknown fields `x`, `y` and 1 more; "),
            "{e}"
        );
        assert_eq!(e.messages(Language::NlNl, &s).len(), 5);
        assert!(e.field("city").is_some());
    }

    #[test]
    fn bounds_are_enforced() {
        let s = everything();
        let big = vec![b'a'; MAX_BODY_LEN + 1];
        let e = s.decode_form(&big, &[]).unwrap_err();
        assert_eq!(e.form(), Some(&FormError::TooLarge { max: MAX_BODY_LEN }));
        let many = "csrf=1&".repeat(MAX_FIELDS + 1);
        let e = s.decode_form(many.as_bytes(), &["csrf"]).unwrap_err();
        assert_eq!(e.form(), Some(&FormError::TooManyFields { max: MAX_FIELDS }));
        // Pairs count their bytes too.
        let long = "x".repeat(MAX_BODY_LEN);
        let e = s
            .decode_pairs([("givenName", long.as_str()), ("csrf", "1")], &["csrf"])
            .unwrap_err();
        assert_eq!(e.form(), Some(&FormError::TooLarge { max: MAX_BODY_LEN }));
        // Quoted input is cut off.
        let e = one_error(&s, &body(&[("givenName", "Ada"), ("terms", &"y".repeat(5000))]));
        assert!(e.to_string().len() < 150, "{e}");
    }

    #[test]
    fn ignore_list_does_not_hide_attributes() {
        let s = everything();
        let e = s
            .decode_form(body(&[("terms", "true")]).as_bytes(), &["givenName"])
            .unwrap_err();
        assert_eq!(e.form(), None);
        assert!(matches!(e.fields(), [FieldError::Required { name }] if name.as_str() == "givenName"));
    }

    #[test]
    fn messages_are_localized_with_labels() {
        let s = spec(vec![
            AttributeDefinition::built_in(BuiltInAttribute::GivenName),
            AttributeDefinition::custom(ext("terms"), DataType::Boolean, "Terms of use")
                .label("de-DE", "Nutzungsbedingungen"),
            AttributeDefinition::custom(ext("n"), DataType::Int64, "Number").label("nl-NL", "Nummer"),
        ])
        .with_default_language(Language::NlNl);
        let e = s
            .decode_form(format!("extension_{APP}_n=x").as_bytes(), &[])
            .unwrap_err();
        let de = e.messages(Language::DeDe, &s);
        assert_eq!(
            de,
            vec![
                "Bitte füllen Sie „Vorname“ aus".to_owned(),
                "Bitte bestätigen Sie „Nutzungsbedingungen“".to_owned(),
                "„Nummer“ muss eine ganze Zahl sein".to_owned(),
            ],
            "missing German label falls back to the flow's default language"
        );
        let en = e.messages(Language::EnUs, &s);
        assert_eq!(en[0], "Please fill in “Given Name”");
        assert_eq!(en[2], "“Number” must be a whole number");
        assert_eq!(
            FormError::TooLarge { max: 1 }.message(Language::DeDe),
            "Das Formular ist zu groß"
        );
        for lang in Language::ALL {
            for m in e.messages(lang, &s) {
                assert!(!m.ends_with('.'), "{m}");
            }
        }
    }

    #[test]
    fn json_round_trip_and_strictness() {
        let json = format!(
            r#"[
              {{"name": "country", "userInputType": "dropdownSingleSelect",
                "userAttributeValues": [
                  {{"name": {{"en-US": "Netherlands", "nl-NL": "Nederland"}}, "value": "NL", "isDefault": true}},
                  {{"name": "Germany", "value": "DE"}}
                ]}},
              {{"name": "extension_{APP}_tier", "dataType": "int64", "isOptional": true,
                "label": {{"en-US": "Tier"}}, "userInputType": "radioSingleSelect",
                "userAttributeValues": [{{"name": "Gold", "value": "1"}}]}}
            ]"#
        );
        let s = CollectedAttributes::from_json(&json).unwrap();
        assert_eq!(
            s.attributes()[0].choices()[0].name.get("nl-nl"),
            Some("Nederland")
        );
        let out = serde_json::to_string(&s).unwrap();
        let back: CollectedAttributes = serde_json::from_str(&out).unwrap();
        assert_eq!(back, s);
        assert!(matches!(
            CollectedAttributes::from_json(r#"[{"name": "city", "colour": "red"}]"#),
            Err(DefinitionError::Json { .. })
        ));
        assert!(matches!(
            CollectedAttributes::from_json(r#"[{"name": "nickname"}]"#),
            Err(DefinitionError::Json { .. })
        ));
        assert!(
            serde_json::from_str::<CollectedAttributes>(r#"[{"name": "city", "maxLength": 0}]"#).is_err()
        );
    }

    #[test]
    fn quote_cuts_on_character_boundaries() {
        assert_eq!(quote("abc"), "abc");
        let q = quote(&"ä".repeat(40));
        assert_eq!(q.chars().count(), QUOTE_LEN + 1);
        assert!(q.ends_with('…'));
    }
}
