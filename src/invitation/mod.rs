//! Invitations: issuing them, their tickets, and redeeming them.

mod issue;
pub mod redeem;
pub mod ticket;

pub use issue::{
    InvitationRequest, Inviter, MAX_CC_RECIPIENTS, MAX_DISPLAY_NAME_CHARS, MAX_MESSAGE_BODY_CHARS,
    MAX_SPONSORS,
};
pub(crate) use issue::{Target, plan, validate};
pub use redeem::{ConsentDecision, Finished, Redeemed, RedemptionStarted, RedemptionStep, RedemptionView};
