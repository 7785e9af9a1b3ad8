//! SMTP client side: one connection ([`client`]) and a pool of them
//! ([`pool`]), wrapped as a [`crate::Transport`] in [`relay`].

pub mod client;
pub mod pool;
pub mod relay;
pub mod tls;

pub use client::{Reply, SmtpError, SmtpSettings, TlsMode};
pub use relay::SmtpRelay;
