//! Building blocks of self-service sign-up user flows: the attributes a
//! flow collects and the decoding of its sign-up form
//! ([`attributes`]), the API connectors it calls in Entra's wire format
//! ([`connector`]), and the signed token it completes with, with its JWKS
//! and the verifier a host application uses ([`token`]).

pub mod attributes;
pub mod connector;
pub mod token;
