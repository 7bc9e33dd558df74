//! The Graph-shaped directory model.
//!
//! [`User`] and [`Invitation`] serialize in camelCase exactly as Microsoft
//! Graph's `user` and `invitation` resources do, so people and tools that
//! know Graph can read them. The records around them ([`UserRecord`],
//! [`InvitationRecord`], ...) add what the library needs and Graph does not
//! show: the active ticket's hash, the binding to a tenant, passcode state.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::email::EmailAddress;
use crate::id::Id;
use crate::secret::{Digest, SecretString};

/// Member or guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum UserType {
    /// A member of the tenant.
    Member,
    /// An external guest.
    #[default]
    Guest,
}

/// Whether an external user has redeemed their invitation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ExternalUserState {
    /// Invited, not yet redeemed.
    PendingAcceptance,
    /// Redeemed.
    Accepted,
}

/// How the user object came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreationType {
    /// Created by an invitation.
    Invitation,
    /// Created by a self-service sign-up user flow.
    SelfServiceSignUp,
    /// Created by a local account sign-up.
    LocalAccount,
    /// Verified by email.
    EmailVerified,
}

/// How an identity signs in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum SignInType {
    /// A federated identity (another IdP, or email one-time passcode).
    Federated,
    /// A local email address sign-in.
    EmailAddress,
    /// A local user name sign-in.
    UserName,
    /// The user principal name.
    UserPrincipalName,
}

/// The issuer Graph records for identities proven by email one-time passcode.
pub const EMAIL_OTP_ISSUER: &str = "mail";

/// One way a user signs in. `(issuer, issuerAssignedId)` is unique across
/// the directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectIdentity {
    /// How this identity signs in.
    pub sign_in_type: SignInType,
    /// The issuer (an IdP's issuer URL, or `mail` for email passcodes).
    pub issuer: String,
    /// The subject the issuer assigned.
    pub issuer_assigned_id: String,
}

/// A reference to a directory object by id (`{"id": "..."}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The object's id.
    pub id: Id,
}

/// A user, as Graph's `user` resource shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    /// The object id.
    pub id: Id,
    /// Member or guest.
    pub user_type: UserType,
    /// Redemption state for external users.
    pub external_user_state: Option<ExternalUserState>,
    /// When `externalUserState` last changed.
    #[serde(with = "time::serde::rfc3339::option")]
    pub external_user_state_change_date_time: Option<OffsetDateTime>,
    /// How the object was created.
    pub creation_type: Option<CreationType>,
    /// Ways this user signs in.
    pub identities: Vec<ObjectIdentity>,
    /// The primary mail address (as entered).
    pub mail: Option<EmailAddress>,
    /// Other addresses.
    pub other_mails: Vec<String>,
    /// Display name.
    pub display_name: Option<String>,
    /// `alice_fabrikam.com#EXT#@contoso.example` for guests.
    pub user_principal_name: String,
    /// Whether the account may sign in.
    pub account_enabled: bool,
    /// The sponsors (usually the inviter).
    pub sponsors: Vec<ObjectRef>,
    /// When the object was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_date_time: OffsetDateTime,
    /// The terms of use this user accepted (version and time), newest last.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agreement_acceptances: Vec<AgreementAcceptance>,
    /// Profile attributes a sign-up flow collected, under their Graph names
    /// at the top level of the JSON, as Graph shows them: built-in ones
    /// (`givenName`, `surname`, `city`, ...) and custom ones
    /// (`extension_<appId>_<name>`). `displayName` and `mail` have fields of
    /// their own and are never kept here.
    #[serde(flatten)]
    pub attributes: BTreeMap<String, serde_json::Value>,
}

impl User {
    /// Whether this user already holds the identity `(issuer, subject)`.
    pub fn has_identity(&self, issuer: &str, subject: &str) -> bool {
        self.identities
            .iter()
            .any(|i| i.issuer == issuer && i.issuer_assigned_id == subject)
    }
}

/// Builds a guest user principal name: the address with `@` replaced by
/// `_`, then `#EXT#@` and the tenant's initial domain.
///
/// ```
/// use guestpass::directory::guest_upn;
/// use guestpass::email::EmailAddress;
/// let a = EmailAddress::parse("Alice@Fabrikam.com").unwrap();
/// assert_eq!(guest_upn(&a, "contoso.example"), "alice_fabrikam.com#EXT#@contoso.example");
/// ```
pub fn guest_upn(mail: &EmailAddress, tenant_domain: &str) -> String {
    format!(
        "{}#EXT#@{}",
        mail.comparison_key().replacen('@', "_", 1),
        tenant_domain
    )
}

/// Invitation status values, as Graph names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum InvitationStatus {
    /// Sent, not redeemed.
    PendingAcceptance,
    /// Redemption under way.
    InProgress,
    /// Redeemed.
    Completed,
    /// Failed, revoked or replaced.
    Error,
}

/// A mail recipient as Graph writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recipient {
    /// The address.
    #[serde(rename = "emailAddress")]
    pub email_address: RecipientAddress,
}

/// Address and optional name of a [`Recipient`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecipientAddress {
    /// The address.
    pub address: String,
    /// The display name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// Configuration of the invitation mail.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct InvitedUserMessageInfo {
    /// Extra recipients; at most one is supported.
    #[serde(default)]
    pub cc_recipients: Vec<Recipient>,
    /// A personal note, plain text (never HTML).
    #[serde(default)]
    pub customized_message_body: Option<String>,
    /// The mail's language, such as `de-DE`.
    #[serde(default)]
    pub message_language: Option<String>,
}

/// An invitation, as Graph's `invitation` resource shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Invitation {
    /// The invitation id.
    pub id: Id,
    /// Display name of the invited user.
    pub invited_user_display_name: Option<String>,
    /// The invited address.
    pub invited_user_email_address: EmailAddress,
    /// Mail configuration.
    pub invited_user_message_info: InvitedUserMessageInfo,
    /// Whether a mail was sent.
    pub send_invitation_message: bool,
    /// Where the guest lands after redemption.
    pub invite_redirect_url: String,
    /// The redemption link (read-only). Present in the response to the
    /// request that created the invitation, never stored: it carries the
    /// ticket. `Debug` redacts it.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "redeem_url")]
    pub invite_redeem_url: Option<SecretString>,
    /// `Guest` or `Member`.
    pub invited_user_type: UserType,
    /// Progress of the invitation.
    pub status: InvitationStatus,
    /// Whether this invitation reset an earlier redemption.
    pub reset_redemption: bool,
    /// The user object the invitation belongs to.
    pub invited_user: ObjectRef,
    /// The guest's sponsors.
    pub invited_user_sponsors: Vec<ObjectRef>,
}

/// The active ticket of an invitation. Only the verifier's hash is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TicketBinding {
    /// SHA-256 of the ticket's 256-bit verifier.
    pub verifier_hash: Digest,
    /// When the ticket stops being accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// A stored user: the Graph resource plus library state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The Graph-shaped user.
    pub user: User,
    /// The tenant the user belongs to.
    pub tenant_id: String,
    /// The invitation whose ticket may redeem this user now, if any. A new
    /// invitation, a resend, a revocation and a reset replace or clear it,
    /// which invalidates every earlier ticket in one conditional write.
    pub active_invitation: Option<Id>,
    /// The user's confirmed authenticator app (a TOTP secret, sealed), the
    /// multi-factor step-up method besides an emailed code. Kept off the
    /// Graph-shaped [`User`], so no directory read ever shows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authenticator: Option<crate::idp::totp::TotpEnrollment>,
}

impl UserRecord {
    /// The comparison key of the user's mail, the store's unique mail index.
    pub fn mail_key(&self) -> Option<&str> {
        self.user.mail.as_ref().map(EmailAddress::comparison_key)
    }
}

/// A stored invitation: the Graph resource plus its ticket binding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InvitationRecord {
    /// The Graph-shaped invitation.
    pub invitation: Invitation,
    /// The tenant that issued it; a ticket is redeemable only there.
    pub tenant_id: String,
    /// Who invited (None for the system).
    pub invited_by: Option<Id>,
    /// The active ticket, cleared on completion and revocation.
    pub ticket: Option<TicketBinding>,
    /// When the invitation was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

/// What an invitation-redemption flow redeems: fixed when the flow starts
/// from a verified ticket, checked again at every step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RedemptionBinding {
    /// The invitation being redeemed.
    pub invitation_id: Id,
    /// The invited user.
    pub user_id: Id,
    /// The ticket verifier hash the flow was opened with; every step
    /// requires the invitation to still hold it, so a resent or reset
    /// invitation ends flows opened with the old link.
    pub verifier_hash: Digest,
}

/// A guest's acceptance of the tenant's terms of use, recorded on the user
/// when a redemption completes (as Graph's `agreementAcceptance`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgreementAcceptance {
    /// The terms' id.
    pub agreement_id: String,
    /// The version accepted.
    pub version: u32,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_date_time: OffsetDateTime,
}

/// Server-held state of one user flow (a self-service sign-up or sign-in,
/// or an invitation redemption), keyed by the hash of the opaque handle the
/// browser holds.
///
/// Everything the flow has learned so far (the proven address, its inline
/// passcode, the collected attributes, the approval) lives in
/// [`FlowRecord::state`]; every step is one conditional write of the whole
/// record, so of two concurrent steps on one flow exactly one wins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowRecord {
    /// The flow's public id: what administrators approve or deny by.
    pub id: Id,
    /// SHA-256 of the handle; the store's second unique key.
    pub handle_hash: Digest,
    /// The tenant.
    pub tenant_id: String,
    /// The user flow configuration that runs it (empty for a redemption).
    pub user_flow_id: String,
    /// The application the person signs up to (its client id; empty for a
    /// redemption).
    pub client_id: String,
    /// Where the completion is delivered: one of the application's
    /// registered redirect URIs, checked exactly when the flow started (for
    /// a redemption, the invitation's redirect URL, checked again when it
    /// completes).
    pub redirect_uri: String,
    /// The invitation this flow redeems; `None` for a sign-up. A sign-up
    /// handle never advances a redemption and the reverse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redemption: Option<RedemptionBinding>,
    /// The application's `nonce`, echoed in the completion token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<String>,
    /// The application's `state`, handed back with the completion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_state: Option<String>,
    /// The person's languages (`ui_locales`), most preferred first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui_locales: Option<String>,
    /// Where the sign-in comes from (client address and kind), as the flow
    /// was opened: what conditional access evaluates.
    #[serde(default)]
    pub context: crate::flow::access::SignInContext,
    /// Where the flow is.
    pub state: crate::flow::machine::FlowState,
    /// When the flow started.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops being usable (extended while an approval is pending).
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

impl FlowRecord {
    /// Whether an administrator's decision is awaited (the stores index this).
    pub fn awaiting_approval(&self) -> bool {
        matches!(
            self.state,
            crate::flow::machine::FlowState::AwaitingApproval { .. }
        )
    }
}

/// A one-time passcode at rest: a keyed hash, never the digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PasscodeRecord {
    /// The passcode id.
    pub id: Id,
    /// What the code is bound to (the hash of the flow handle that asked).
    pub bound_to: Digest,
    /// The comparison key of the address it was sent to.
    pub address_key: String,
    /// HMAC-SHA256 of id and digits under the passcode key.
    pub code_hash: Digest,
    /// Wrong tries so far.
    pub attempts: u32,
    /// Whether the code was used.
    pub consumed: bool,
    /// When it was sent.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// When it stops being accepted.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// Per-address passcode counters: consecutive failures and recent sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressThrottle {
    /// The address's comparison key.
    pub address_key: String,
    /// Wrong passcodes in a row, across codes; reset by a success or by an
    /// administrator's reset of redemption, never by a new code.
    pub consecutive_failures: u32,
    /// When the latest codes were sent, oldest first (bounded).
    #[serde(with = "rfc3339_vec")]
    pub recent_sends: Vec<OffsetDateTime>,
}

mod rfc3339_vec {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use time::OffsetDateTime;
    use time::format_description::well_known::Rfc3339;

    pub fn serialize<S: Serializer>(v: &[OffsetDateTime], s: S) -> Result<S::Ok, S::Error> {
        let out: Result<Vec<String>, _> = v.iter().map(|t| t.format(&Rfc3339)).collect();
        out.map_err(serde::ser::Error::custom)?.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OffsetDateTime>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|s| OffsetDateTime::parse(s, &Rfc3339).map_err(serde::de::Error::custom))
            .collect()
    }
}

mod redeem_url {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::secret::SecretString;

    pub fn serialize<S: Serializer>(v: &Option<SecretString>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(url) => s.serialize_str(url.expose()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SecretString>, D::Error> {
        Ok(Option::<String>::deserialize(d)?.map(SecretString::new))
    }
}
