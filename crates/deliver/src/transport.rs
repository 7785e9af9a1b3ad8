//! The transport seam: a way out for mail.

use async_trait::async_trait;

/// Who the message goes to, as handed to the next hop.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub from: String,
    pub rcpts: Vec<String>,
}

/// What became of one recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// Accepted by the next hop; the reply is kept.
    Sent(String),
    /// Try again later (4xx, timeouts, dropped connections).
    Transient(String),
    /// Refused for good (5xx).
    Permanent(String),
}

impl Delivery {
    pub fn reply(&self) -> &str {
        match self {
            Delivery::Sent(r) | Delivery::Transient(r) | Delivery::Permanent(r) => r,
        }
    }
}

/// The whole session failed before any recipient could be judged: the
/// server could not be reached, refused us, or TLS/AUTH failed. The route
/// fails over to the next transport.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct SessionError(pub String);

#[async_trait]
pub trait Transport: Send + Sync + 'static {
    /// A name for logs, attempts and metrics.
    fn name(&self) -> &str;

    /// Hands one message to the next hop. Returns one [`Delivery`] per
    /// envelope recipient, in order.
    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Vec<Delivery>, SessionError>;
}
