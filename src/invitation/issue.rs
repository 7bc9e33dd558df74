//! Invitation issuance: validate a Graph-shaped request, decide against
//! policy, and plan the writes and the mail. Pure: the service performs the
//! plan.

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditKind;
use crate::config::Config;
use crate::directory::{
    CreationType, Expect, ExternalUserState, Invitation, InvitationRecord, InvitationStatus,
    InvitedUserMessageInfo, ObjectRef, User, UserRecord, UserType, Versioned, Write, WriteBatch, guest_upn,
};
use crate::email::EmailAddress;
use crate::error::{Error, InputError};
use crate::id::Id;
use crate::invitation::ticket;
use crate::mail::templates::{
    InvitationContent, Language, is_language_tag, render_invitation, render_invitation_notice,
};
use crate::mail::{Mailbox, Message, MessageKind};
use crate::policy::InviterRole;
use crate::random::SecureRandom;
use crate::secret::SecretString;

/// Longest `invitedUserDisplayName`, in characters.
pub const MAX_DISPLAY_NAME_CHARS: usize = 256;
/// Longest `customizedMessageBody`, in characters.
pub const MAX_MESSAGE_BODY_CHARS: usize = 10_000;
/// Most `ccRecipients` (Graph supports one).
pub const MAX_CC_RECIPIENTS: usize = 1;
/// Most `invitedUserSponsors` (as Graph).
pub const MAX_SPONSORS: usize = 5;

/// The body of Graph's `POST /invitations`.
///
/// ```
/// use guestpass::invitation::InvitationRequest;
/// let r: InvitationRequest = serde_json::from_str(r#"{
///     "invitedUserEmailAddress": "alice@fabrikam.example",
///     "inviteRedirectUrl": "https://app.contoso.example/",
///     "sendInvitationMessage": true
/// }"#).unwrap();
/// assert!(r.send_invitation_message);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InvitationRequest {
    /// The address to invite.
    pub invited_user_email_address: String,
    /// The guest's display name.
    #[serde(default)]
    pub invited_user_display_name: Option<String>,
    /// Where the guest lands after redemption; must be registered.
    pub invite_redirect_url: String,
    /// Whether to mail the invitation.
    #[serde(default)]
    pub send_invitation_message: bool,
    /// Mail options.
    #[serde(default)]
    pub invited_user_message_info: Option<InvitedUserMessageInfo>,
    /// `Guest` (default) or `Member`.
    #[serde(default)]
    pub invited_user_type: Option<UserType>,
    /// Reset an existing user's redemption; needs `invitedUser`.
    #[serde(default)]
    pub reset_redemption: bool,
    /// The user to reset.
    #[serde(default)]
    pub invited_user: Option<ObjectRef>,
    /// Sponsors of the guest.
    #[serde(default)]
    pub invited_user_sponsors: Vec<ObjectRef>,
}

impl InvitationRequest {
    /// A request to invite `email`, landing on `redirect_url`, with a mail.
    pub fn new(email: impl Into<String>, redirect_url: impl Into<String>) -> Self {
        Self {
            invited_user_email_address: email.into(),
            invite_redirect_url: redirect_url.into(),
            send_invitation_message: true,
            ..Self::default()
        }
    }
}

/// Who is inviting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inviter {
    /// The inviter's user id (None for the system or an API client).
    pub id: Option<Id>,
    /// The inviter's role, checked against `allowInvitesFrom`.
    pub role: InviterRole,
}

impl Inviter {
    /// An administrator.
    pub fn admin(id: Option<Id>) -> Self {
        Self {
            id,
            role: InviterRole::Admin,
        }
    }
}

/// A request that passed validation.
#[derive(Debug, Clone)]
pub(crate) struct ValidRequest {
    pub email: EmailAddress,
    pub display_name: Option<String>,
    pub redirect: String,
    pub send: bool,
    pub info: InvitedUserMessageInfo,
    pub cc: Vec<Mailbox>,
    pub language: Language,
    pub user_type: UserType,
    pub reset_user: Option<Id>,
    pub sponsors: Vec<ObjectRef>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> Error {
    Error::Input(InputError::Invalid {
        field,
        reason: reason.into(),
    })
}

fn clean_text(field: &'static str, s: &str, max: usize, multiline: bool) -> Result<(), Error> {
    if s.chars().count() > max {
        return Err(invalid(field, format!("longer than {max} characters")));
    }
    let bad = s
        .chars()
        .find(|c| c.is_control() && !(multiline && matches!(c, '\n' | '\r' | '\t')));
    if let Some(c) = bad {
        return Err(invalid(
            field,
            format!("contains the control character `{}`", c.escape_default()),
        ));
    }
    Ok(())
}

/// Validates every field; nothing is looked up or written.
pub(crate) fn validate(config: &Config, req: &InvitationRequest) -> Result<ValidRequest, Error> {
    if req.invited_user_email_address.trim().is_empty() {
        return Err(InputError::Missing {
            field: "invitedUserEmailAddress",
        }
        .into());
    }
    let email = EmailAddress::parse(&req.invited_user_email_address)?;
    if req.invite_redirect_url.is_empty() {
        return Err(InputError::Missing {
            field: "inviteRedirectUrl",
        }
        .into());
    }
    url::Url::parse(&req.invite_redirect_url).map_err(|e| invalid("inviteRedirectUrl", e.to_string()))?;
    if !config.redirect_urls.iter().any(|r| r == &req.invite_redirect_url) {
        return Err(InputError::RedirectNotRegistered {
            url: req.invite_redirect_url.clone(),
        }
        .into());
    }
    let display_name = match req.invited_user_display_name.as_deref().map(str::trim) {
        Some("") | None => None,
        Some(n) => {
            clean_text("invitedUserDisplayName", n, MAX_DISPLAY_NAME_CHARS, false)?;
            Some(n.to_owned())
        }
    };
    let info = req.invited_user_message_info.clone().unwrap_or_default();
    if info.cc_recipients.len() > MAX_CC_RECIPIENTS {
        return Err(invalid(
            "invitedUserMessageInfo.ccRecipients",
            format!("at most {MAX_CC_RECIPIENTS} recipient is supported"),
        ));
    }
    let mut cc = Vec::new();
    for r in &info.cc_recipients {
        let address = EmailAddress::parse(&r.email_address.address)
            .map_err(|e| invalid("invitedUserMessageInfo.ccRecipients", e.to_string()))?;
        // A copy is mail to an outside address too: the domain rules apply.
        if !config.collaboration.domains.permits(address.domain()) {
            return Err(crate::error::Denied::DomainNotAllowed {
                domain: address.domain().to_owned(),
            }
            .into());
        }
        if let Some(n) = &r.email_address.name {
            clean_text(
                "invitedUserMessageInfo.ccRecipients",
                n,
                MAX_DISPLAY_NAME_CHARS,
                false,
            )?;
        }
        cc.push(Mailbox {
            address,
            name: r.email_address.name.clone(),
        });
    }
    if let Some(body) = &info.customized_message_body {
        clean_text(
            "invitedUserMessageInfo.customizedMessageBody",
            body,
            MAX_MESSAGE_BODY_CHARS,
            true,
        )?;
    }
    if let Some(tag) = &info.message_language
        && !is_language_tag(tag)
    {
        return Err(invalid(
            "invitedUserMessageInfo.messageLanguage",
            format!("`{tag}` is not a language tag"),
        ));
    }
    let language = Language::resolve(info.message_language.as_deref(), config.default_language);
    if req.invited_user_sponsors.len() > MAX_SPONSORS {
        return Err(invalid(
            "invitedUserSponsors",
            format!("at most {MAX_SPONSORS} sponsors"),
        ));
    }
    let reset_user = if req.reset_redemption {
        Some(
            req.invited_user
                .ok_or(InputError::Missing { field: "invitedUser" })?
                .id,
        )
    } else {
        None
    };
    Ok(ValidRequest {
        email,
        display_name,
        redirect: req.invite_redirect_url.clone(),
        send: req.send_invitation_message,
        info,
        cc,
        language,
        user_type: req.invited_user_type.unwrap_or_default(),
        reset_user,
        sponsors: req.invited_user_sponsors.clone(),
    })
}

/// The user the invitation lands on, as found by the service.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// No user has the address: create one.
    New,
    /// A user has the address already.
    Existing(Versioned<UserRecord>),
    /// A reset of this user's redemption.
    Reset(Versioned<UserRecord>),
}

/// The result of planning an invitation.
#[derive(Debug)]
pub(crate) struct Plan {
    pub batch: WriteBatch,
    pub invitation: Invitation,
    pub user_id: Id,
    /// The invitation for the invitee, then the copy for `ccRecipients`.
    pub mails: Vec<Message>,
    pub audit: AuditKind,
    pub redeem_url: Option<SecretString>,
}

/// Plans the writes and the mail for a validated request.
pub(crate) fn plan(
    config: &Config,
    inviter: &Inviter,
    req: ValidRequest,
    target: Target,
    superseded: Option<Versioned<InvitationRecord>>,
    now: OffsetDateTime,
    rng: &dyn SecureRandom,
) -> Result<Plan, Error> {
    let invitation_id = Id::random(rng)?;
    let mut batch = WriteBatch::new();
    let sponsors = if req.sponsors.is_empty() {
        inviter.id.map(|id| vec![ObjectRef { id }]).unwrap_or_default()
    } else {
        req.sponsors.clone()
    };

    // Who the invitation is for, and whether it needs redeeming.
    let (user_record, expect, needs_redemption, replaced, is_reset) = match target {
        Target::New => {
            let user = User {
                id: Id::random(rng)?,
                user_type: req.user_type,
                external_user_state: Some(ExternalUserState::PendingAcceptance),
                external_user_state_change_date_time: Some(now),
                creation_type: Some(CreationType::Invitation),
                identities: Vec::new(),
                mail: Some(req.email.clone()),
                other_mails: Vec::new(),
                display_name: req.display_name.clone(),
                user_principal_name: guest_upn(&req.email, &config.tenant_domain),
                account_enabled: true,
                sponsors: sponsors.clone(),
                created_date_time: now,
                agreement_acceptances: Vec::new(),
                attributes: Default::default(),
            };
            let record = UserRecord {
                user,
                tenant_id: config.tenant_id.clone(),
                active_invitation: None,
                authenticator: None,
            };
            (record, Expect::Absent, true, None, false)
        }
        Target::Existing(v) => {
            let pending = v.value.user.external_user_state == Some(ExternalUserState::PendingAcceptance);
            let replaced = if pending { v.value.active_invitation } else { None };
            (v.value, Expect::Version(v.version), pending, replaced, false)
        }
        Target::Reset(v) => {
            let mut record = v.value;
            record.user.identities.clear();
            // Whoever redeems next proves the address anew; the earlier
            // holder's authenticator app must not vouch for them, nor their
            // acceptances of terms of use stand for the new holder's.
            record.authenticator = None;
            record.user.agreement_acceptances.clear();
            record.user.external_user_state = Some(ExternalUserState::PendingAcceptance);
            record.user.external_user_state_change_date_time = Some(now);
            if record.user.mail.as_ref() != Some(&req.email) {
                if let Some(old) = record.user.mail.take()
                    && !record.user.other_mails.iter().any(|m| m == old.as_str())
                {
                    record.user.other_mails.push(old.as_str().to_owned());
                }
                record.user.mail = Some(req.email.clone());
            }
            let replaced = record.active_invitation;
            (record, Expect::Version(v.version), true, replaced, true)
        }
    };
    let user_id = user_record.user.id;
    // Mail goes to the stored address, never to the submitted spelling.
    let to_address = user_record.user.mail.clone().unwrap_or_else(|| req.email.clone());

    let (status, binding, redeem_url) = if needs_redemption {
        let expires_at = now.saturating_add(config.ticket_lifetime);
        let issued = ticket::issue(&config.keys, &config.tenant_id, invitation_id, expires_at, rng)?;
        let url = SecretString::new(config.redeem_url(issued.token.expose()));
        (InvitationStatus::PendingAcceptance, Some(issued.binding), url)
    } else {
        // Already redeemed: the link just leads to the application.
        (
            InvitationStatus::Completed,
            None,
            SecretString::new(req.redirect.clone()),
        )
    };

    let invitation = Invitation {
        id: invitation_id,
        invited_user_display_name: req.display_name.clone(),
        invited_user_email_address: to_address.clone(),
        invited_user_message_info: req.info.clone(),
        send_invitation_message: req.send,
        invite_redirect_url: req.redirect.clone(),
        invite_redeem_url: None,
        invited_user_type: user_record.user.user_type,
        status,
        reset_redemption: is_reset,
        invited_user: ObjectRef { id: user_id },
        invited_user_sponsors: sponsors,
    };

    if needs_redemption {
        let mut next = user_record.clone();
        next.active_invitation = Some(invitation_id);
        batch.push(Write::User { record: next, expect });
    }
    // The invitation this one replaces stops looking live as well: its
    // ticket binding goes and its status becomes `Error`.
    if let Some(old) = superseded.filter(|o| Some(o.value.invitation.id) == replaced) {
        let mut record = old.value;
        record.invitation.status = InvitationStatus::Error;
        record.ticket = None;
        batch.push(Write::Invitation {
            record,
            expect: Expect::Version(old.version),
        });
    }
    batch.push(Write::Invitation {
        record: InvitationRecord {
            invitation: invitation.clone(),
            tenant_id: config.tenant_id.clone(),
            invited_by: inviter.id,
            ticket: binding,
            created_at: now,
        },
        expect: Expect::Absent,
    });

    let mut mails = Vec::new();
    if req.send {
        let content = InvitationContent {
            org_name: &config.tenant_name,
            redeem_url: redeem_url.expose(),
            note: req.info.customized_message_body.as_deref(),
            privacy_url: config.privacy_statement_url.as_ref().map(url::Url::as_str),
        };
        let rendered = render_invitation(req.language, &content)?;
        mails.push(Message {
            kind: MessageKind::Invitation,
            to: Mailbox {
                address: to_address.clone(),
                name: user_record.user.display_name.clone(),
            },
            subject: rendered.subject,
            text_body: rendered.text,
            html_body: rendered.html,
            language: req.language.tag(),
        });
        for cc in &req.cc {
            let copy = render_invitation_notice(req.language, &content, to_address.as_str())?;
            mails.push(Message {
                kind: MessageKind::InvitationCopy,
                to: cc.clone(),
                subject: copy.subject,
                text_body: copy.text,
                html_body: copy.html,
                language: req.language.tag(),
            });
        }
    }

    let audit = match (is_reset, replaced) {
        (true, _) => AuditKind::RedemptionReset { invitation_id },
        (false, Some(old)) => AuditKind::Resent {
            invitation_id,
            replaced: old,
        },
        (false, None) => AuditKind::Invited {
            invitation_id,
            inviter: inviter.id,
        },
    };

    Ok(Plan {
        batch,
        invitation,
        user_id,
        mails,
        audit,
        redeem_url: Some(redeem_url),
    })
}
