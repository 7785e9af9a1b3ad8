//! An SMTP relay as a [`Transport`].

use async_trait::async_trait;

use super::client::{SmtpError, SmtpSettings, TransactionReplies};
use super::pool::Pool;
use crate::transport::{Delivery, Envelope, SessionError, Transport};

pub struct SmtpRelay {
    name: String,
    pool: Pool,
}

impl SmtpRelay {
    pub fn new(name: impl Into<String>, settings: SmtpSettings, max_connections: usize) -> Self {
        Self { name: name.into(), pool: Pool::new(settings, max_connections) }
    }

    pub async fn close(&self) {
        self.pool.close_idle().await;
    }
}

pub(crate) fn judge(replies: &TransactionReplies) -> Vec<Delivery> {
    replies
        .rcpt
        .iter()
        .map(|r| {
            let decisive = if !replies.mail.is_positive() {
                &replies.mail
            } else if !r.is_positive() {
                r
            } else {
                match &replies.data {
                    Some(d) => d,
                    None => return Delivery::Transient("no reply to DATA".into()),
                }
            };
            if decisive.is_positive() {
                Delivery::Sent(decisive.to_string())
            } else if decisive.is_permanent() {
                Delivery::Permanent(decisive.to_string())
            } else {
                Delivery::Transient(decisive.to_string())
            }
        })
        .collect()
}

#[async_trait]
impl Transport for SmtpRelay {
    fn name(&self) -> &str {
        &self.name
    }

    async fn send(&self, envelope: &Envelope, raw: &[u8]) -> Result<Vec<Delivery>, SessionError> {
        let describe =
            |e: &SmtpError| format!("{} ({}:{}): {e}", self.name, self.pool.settings().host, self.pool.settings().port);
        let mut lease = self.pool.get().await.map_err(|e| SessionError(describe(&e)))?;
        let mut result = lease.conn.send(&envelope.from, &envelope.rcpts, raw).await;
        if result.is_err() && lease.reused {
            // An idle connection the server had closed: one fresh try.
            lease = self.pool.reconnect(lease).await.map_err(|e| SessionError(describe(&e)))?;
            result = lease.conn.send(&envelope.from, &envelope.rcpts, raw).await;
        }
        let out = match result {
            Ok(replies) => Ok(judge(&replies)),
            // Mid-transaction trouble on a working session: the message may
            // or may not have arrived; retry later on this route.
            Err(e) => Ok(envelope.rcpts.iter().map(|_| Delivery::Transient(describe(&e))).collect()),
        };
        self.pool.put(lease).await;
        out
    }
}
