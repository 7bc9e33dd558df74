#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
pub mod clock;
pub mod config;
pub mod directory;
pub mod email;
pub mod error;
pub mod flow;
pub mod graph;
pub mod http;
pub mod id;
pub mod idp;
pub mod invitation;
pub mod keys;
pub mod mail;
pub mod metrics;
pub mod policy;
pub mod random;
pub mod secret;
mod service;
#[cfg(feature = "axum")]
pub mod web;

pub use error::Error;
pub use invitation::{ConsentDecision, Finished, InvitationRequest, Inviter, RedemptionStep};
pub use service::{
    COMPLETION_DELIVERY_WINDOW, Completion, FEDERATION_CALLBACK_PATH, FlowAction, FlowPage, FlowStarted,
    FlowStep, FormField, GuestPass, GuestPassBuilder, PendingSignUp, SignUpRequest,
};
