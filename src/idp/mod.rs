//! Identity providers. Today: the email one-time passcode provider, which
//! every invitation can fall back to.

pub mod email_otp;

pub use email_otp::PasscodePolicy;
