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

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use epistle_core::clock::SharedClock;
use epistle_deliver::Metrics;
use epistle_store::{DeadLetter, EventAccepted, NewBusinessEvent, Store, StoreError};
use tokio::sync::{Notify, watch};

use crate::events::parse_event;

/// A failpoint for crash tests: with `EPISTLE_FAILPOINT=consumer-after-commit:N`
/// the process aborts right after the Nth consumed event is committed and
/// before the broker is told, as a power cut there would. Unset (always,
/// outside tests), it costs one load of a set-once value.
pub(crate) fn failpoint_after_commit() {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static AT: OnceLock<Option<u64>> = OnceLock::new();
    static SEEN: AtomicU64 = AtomicU64::new(0);
    let at = AT
        .get_or_init(|| std::env::var("EPISTLE_FAILPOINT").ok()?.strip_prefix("consumer-after-commit:")?.parse().ok());
    if let Some(n) = at
        && SEEN.fetch_add(1, Ordering::SeqCst) + 1 == *n
    {
        eprintln!("failpoint consumer-after-commit:{n}: aborting after the commit, before the ack");
        std::process::abort();
    }
}

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
    /// Stores an event (the HTTP API and the consumers alike): counted by
    /// source, and the rules engine woken when it is new.
    pub async fn store_event(&self, e: &NewBusinessEvent) -> Result<EventAccepted, StoreError> {
        let accepted = self.store.accept_event(e, self.clock.now_ms()).await?;
        match &accepted {
            EventAccepted::New(_) => {
                Metrics::source(&self.metrics.events_received, &e.source).inc();
                self.wake.notify_one();
            }
            EventAccepted::Duplicate(_) => {
                Metrics::source(&self.metrics.events_duplicate, &e.source).inc();
            }
        }
        Ok(accepted)
    }

    /// Stores one consumed message body. `Err` means nothing was stored:
    /// leave the message unacknowledged so the broker delivers it again.
    pub async fn take(&self, body: &[u8], tenant_id: &str, source: &str) -> Result<Taken, StoreError> {
        let now = self.clock.now_ms();
        match parse_event(body, tenant_id, source, now) {
            Ok(e) => match self.store_event(&e).await? {
                EventAccepted::New(id) => Ok(Taken::Stored(id)),
                EventAccepted::Duplicate(id) => Ok(Taken::Duplicate(id)),
            },
            Err(err) => {
                let reason = if err.field.is_empty() { err.message } else { format!("{}: {}", err.field, err.message) };
                let cut = body.len().min(MAX_DEAD_PAYLOAD);
                let d = DeadLetter {
                    id: epistle_core::ids::new_id("dlq"),
                    tenant_id: tenant_id.to_string(),
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
fn backoff(failures: u32) -> Duration {
    Duration::from_secs((1u64 << failures.saturating_sub(1).min(5)).min(30))
}

/// Runs `attempt` (connect and consume) again and again until `shutdown`,
/// waiting longer after each quick failure; an attempt that ran a minute
/// starts the count again.
pub(crate) async fn supervise<F, Fut>(what: &str, mut shutdown: watch::Receiver<bool>, mut attempt: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let mut failures = 0u32;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = attempt() => r,
            _ = shutdown.changed() => return,
        };
        if let Err(e) = result {
            tracing::warn!(consumer = %what, error = %e, "event consumer stopped; reconnecting");
        }
        failures = if started.elapsed() > Duration::from_secs(60) { 1 } else { failures + 1 };
        tokio::select! {
            _ = tokio::time::sleep(backoff(failures)) => {}
            _ = shutdown.changed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn backoff_doubles_to_thirty_seconds() {
        let secs: Vec<u64> = (1..=8).map(|f| super::backoff(f).as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 8, 16, 30, 30, 30]);
    }
}
