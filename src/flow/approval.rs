//! Approval of sign-ups: an [`Approver`] reviews each sign-up of a flow that
//! requires approval, and may approve it at once, deny it, or hold it for an
//! administrator.
//!
//! A held sign-up waits in the directory (state `awaitingApproval`, with an
//! extended lifetime) until an administrator calls
//! [`GuestPass::approve_sign_up`](crate::GuestPass::approve_sign_up) or
//! [`GuestPass::deny_sign_up`](crate::GuestPass::deny_sign_up). The person
//! resumes the *same* flow later with its handle and either gets the account
//! or sees the denial.
//!
//! Without an approver every sign-up of such a flow is held
//! ([`HoldAll`]). [`ConnectorApprover`] asks a web API in the API connector
//! wire format: `Continue` approves, `ShowBlockPage` holds with the API's
//! message, and an API that is down or answers out of format holds too, so
//! an outage never lets a sign-up through unreviewed.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use crate::email::EmailAddress;
use crate::flow::attributes::BuiltInAttribute;
use crate::flow::connector::{self, ConnectorConfig, ConnectorInput, ConnectorOutcome};
use crate::flow::machine::ApprovalVerdict;
use crate::http::HttpClient;
use crate::id::Id;

/// What an approver sees of a sign-up.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ApprovalRequest {
    /// The flow (what an administrator approves by).
    pub flow_id: Id,
    /// The user flow configuration.
    pub user_flow_id: String,
    /// The application signed up to.
    pub client_id: String,
    /// The proven address.
    pub email: EmailAddress,
    /// The collected attributes, as JSON claims by name.
    pub attributes: BTreeMap<String, Value>,
    /// The person's languages.
    pub ui_locales: Option<String>,
}

/// Reviews sign-ups of flows that require approval.
#[async_trait]
pub trait Approver: Send + Sync + std::fmt::Debug {
    /// The verdict on `request`, when the attributes are final. The verdict
    /// is stored with the step that asked for it; if that write loses a
    /// race (a second submission of the same form), the step runs again and
    /// asks again, so an approver must give the same answer to the same
    /// request (API connectors likewise may be called again).
    async fn review(&self, request: &ApprovalRequest) -> ApprovalVerdict;
}

/// Holds every sign-up for an administrator (the default).
#[derive(Debug, Clone, Copy, Default)]
pub struct HoldAll;

#[async_trait]
impl Approver for HoldAll {
    async fn review(&self, _request: &ApprovalRequest) -> ApprovalVerdict {
        ApprovalVerdict::Hold { message: None }
    }
}

/// Asks a web API: `Continue` approves, `ShowBlockPage` holds with the
/// API's message; anything else (the API down, malformed answers) holds
/// with the flow's text.
///
/// The request is the connector request of the configured step, with the
/// collected claims.
#[derive(Clone)]
pub struct ConnectorApprover {
    config: ConnectorConfig,
    client: Arc<dyn HttpClient>,
}

impl std::fmt::Debug for ConnectorApprover {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectorApprover")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl ConnectorApprover {
    /// An approver calling `config` through `client`.
    pub fn new(config: ConnectorConfig, client: Arc<dyn HttpClient>) -> Self {
        Self { config, client }
    }
}

#[async_trait]
impl Approver for ConnectorApprover {
    async fn review(&self, request: &ApprovalRequest) -> ApprovalVerdict {
        let mut input = ConnectorInput::new(request.client_id.clone()).with_email(request.email.as_str());
        for (name, value) in &request.attributes {
            // A collected `email` is the proven address, sent as the
            // request's own `email` (a claim may not repeat it).
            if name != BuiltInAttribute::Email.as_str() {
                input = input.with_claim(name.clone(), value.clone());
            }
        }
        if let Some(locales) = &request.ui_locales {
            input = input.with_ui_locales(locales.clone());
        }
        match connector::call(self.client.as_ref(), &self.config, &input).await {
            Ok(ConnectorOutcome::Continue { .. }) => ApprovalVerdict::Approve,
            Ok(ConnectorOutcome::Block { user_message }) => ApprovalVerdict::Hold {
                message: Some(user_message),
            },
            _ => ApprovalVerdict::Hold { message: None },
        }
    }
}
