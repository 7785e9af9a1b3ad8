//! Ways mail comes in besides the HTTP API. For now: the SMTP submission
//! listener ([`smtp`]), which takes mail from applications and relays it
//! through the same durable path as `POST /v1/messages`.

pub mod consumers;
pub mod events;
pub mod hooks;
pub mod inbound;
pub mod smtp;
pub mod submission;

pub use smtp::{SmtpListener, SmtpListenerConfig};
