//! User flows: self-service sign-up, and the invitation redemption that
//! runs on the same engine.
//!
//! - [`config`]: the applications and user flows of a tenant, loaded from
//!   JSON or TOML and validated.
//! - [`attributes`]: the attributes a flow collects and the decoding of its
//!   sign-up form.
//! - [`machine`]: the pure state machine every flow runs on, sign-ups and
//!   redemptions alike.
//! - [`connector`]: the API connectors a flow calls, in Entra's wire format.
//! - [`approval`]: the approver that may hold a sign-up for an administrator.
//! - [`token`]: the signed token a flow completes with, its JWKS, and the
//!   verifier a host application uses.
//!
//! The [`GuestPass`](crate::GuestPass) service drives flows:
//! `start_sign_up`, `view_flow`, `advance_flow`, and for administrators
//! `pending_sign_ups`, `approve_sign_up` and `deny_sign_up`; redemptions go
//! through `start_redemption`, `resend_passcode`, `submit_passcode`,
//! `finish_redemption`, `answer_terms_of_use` and `redemption_step`.

pub mod access;
pub mod approval;
pub mod attributes;
pub mod config;
pub mod connector;
pub mod machine;
pub mod token;
