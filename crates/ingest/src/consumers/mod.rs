//! Business events from message brokers: NATS JetStream ([`nats`]) and
//! AMQP 0-9-1 / RabbitMQ ([`amqp`]).
//!
//! Each message body is the JSON of `POST /v1/events`. A message is
//! acknowledged only after the event is committed (or, when it cannot be
//! read, after it is stored as a dead letter with the reason), so a crash
//! before the commit means the broker delivers it again; and since events
//! are stored once per `(type, key)`, a redelivery after the commit is a
//! duplicate that triggers nothing.

pub mod amqp;
pub mod nats;

use std::sync::Arc;
use std::time::Duration;

use epistle_core::clock::SharedClock;
use epistle_deliver::Metrics;
use epistle_store::{DeadLetter, EventAccepted, Store, StoreError};
use tokio::sync::Notify;

use crate::events::parse_event;

/// Where consumed events go.
#[derive(Clone)]
pub struct Intake {
    pub store: Store,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Wakes the rules engine.
    pub wake: Arc<Notify>,
}

/// What became of one consumed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    Stored(String),
    Duplicate(String),
    /// Unreadable: kept as a dead letter with the reason.
    DeadLetter(String),
}

/// Dead letters keep at most this much of the body.
const MAX_DEAD_PAYLOAD: usize = 64 * 1024;

impl Intake {
    /// Stores one consumed message body. `Err` means nothing was stored:
    /// leave the message unacknowledged so the broker delivers it again.
    pub async fn take(&self, body: &[u8], tenant_id: &str, source: &str) -> Result<Taken, StoreError> {
        let now = self.clock.now_ms();
        match parse_event(body, tenant_id, source, now) {
            Ok(e) => match self.store.accept_event(&e, now).await? {
                EventAccepted::New(id) => {
                    Metrics::source(&self.metrics.events_received, source).inc();
                    self.wake.notify_one();
                    Ok(Taken::Stored(id))
                }
                EventAccepted::Duplicate(id) => {
                    Metrics::source(&self.metrics.events_duplicate, source).inc();
                    Ok(Taken::Duplicate(id))
                }
            },
            Err(err) => {
                let reason = if err.field.is_empty() { err.message } else { format!("{}: {}", err.field, err.message) };
                let cut = body.len().min(MAX_DEAD_PAYLOAD);
                let d = DeadLetter {
                    id: epistle_core::ids::new_id("dlq"),
                    tenant_id: Some(tenant_id.to_string()),
                    source: source.to_string(),
                    reason: reason.clone(),
                    payload: String::from_utf8_lossy(&body[..cut]).into_owned(),
                    event_id: None,
                    rule_id: None,
                    created_at: now,
                };
                self.store.put_dead_letter(&d).await?;
                Metrics::source(&self.metrics.dead_letters, source).inc();
                tracing::warn!(%source, %reason, "consumed message is not an event; kept as a dead letter");
                Ok(Taken::DeadLetter(d.id))
            }
        }
    }
}

/// Waits before reconnecting: 1 s, doubling to 30 s.
pub(crate) fn backoff(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.min(5)).min(30))
}
