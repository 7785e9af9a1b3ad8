//! The capture transport: keeps the mail (the store already holds the raw
//! message) and hands it to nobody. The default when no relay is set, so a
//! newcomer can see their first mail in the web page at `/`.

use async_trait::async_trait;

use crate::transport::{Delivery, Envelope, SessionError, Transport};

#[derive(Debug, Clone)]
pub struct Capture {
    name: String,
}

impl Capture {
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into() }
    }
}

#[async_trait]
impl Transport for Capture {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, envelope: &Envelope, _raw: &[u8]) -> Result<Vec<Delivery>, SessionError> {
        Ok(envelope.rcpts.iter().map(|_| Delivery::Sent("250 captured: kept by Epistle, not sent".into())).collect())
    }
}
