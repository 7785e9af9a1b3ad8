//! The event log, followed in order: the live stream (SSE) and outgoing
//! webhooks read events from here, never by guessing from statuses.
//!
//! Events get increasing ids, but on PostgreSQL two transactions can commit
//! in the other order, so for a moment id 11 is visible while id 10 is not.
//! A reader that moved past 10 would never see it; [`Tail`] therefore stops
//! before a gap and only steps over it once it has lasted
//! [`GAP_PATIENCE`] (a rolled-back transaction leaves a gap for good).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use epistle_store::{EventRow, Store};
use tokio::sync::{Notify, broadcast, watch};

/// How long a gap in event ids is waited out before it is taken as a
/// rolled-back transaction.
pub const GAP_PATIENCE: Duration = Duration::from_secs(2);

/// An event as published to readers, with its message's tags.
#[derive(Debug, Clone)]
pub struct Published {
    pub row: EventRow,
    pub tags: Vec<String>,
}

/// Reads the event log in id order without skipping late commits.
#[derive(Debug)]
pub struct Tail {
    pub position: i64,
    gap_since: Option<(i64, Instant)>,
}

impl Tail {
    pub fn new(position: i64) -> Self {
        Self { position, gap_since: None }
    }

    /// The next events in order (possibly none), moving the position.
    pub async fn next(&mut self, store: &Store, limit: i64) -> epistle_store::Result<Vec<EventRow>> {
        let rows = store.events_after(self.position, limit).await?;
        let mut out = Vec::with_capacity(rows.len());
        let mut expect = self.position + 1;
        for r in rows {
            if r.id != expect {
                match self.gap_since {
                    Some((at, since)) if at == expect && since.elapsed() >= GAP_PATIENCE => {}
                    Some((at, _)) if at == expect => break,
                    _ => {
                        self.gap_since = Some((expect, Instant::now()));
                        break;
                    }
                }
            }
            self.gap_since = None;
            expect = r.id + 1;
            self.position = r.id;
            out.push(r);
        }
        Ok(out)
    }
}

/// Loads the tags of the messages of `rows`.
pub async fn with_tags(store: &Store, rows: Vec<EventRow>) -> Vec<Published> {
    let mut ids: Vec<String> = rows.iter().map(|r| r.message_id.clone()).collect();
    ids.sort();
    ids.dedup();
    let tags: HashMap<String, Vec<String>> = store.tags_of(&ids).await.unwrap_or_default();
    rows.into_iter()
        .map(|row| Published { tags: tags.get(&row.message_id).cloned().unwrap_or_default(), row })
        .collect()
}

/// Publishes new events to in-process readers (the SSE streams).
pub struct EventHub {
    tx: broadcast::Sender<Arc<Published>>,
    wake: Notify,
    head: AtomicI64,
    /// Held while subscribing, and while the hub, with nobody subscribed,
    /// moves to the end of the log without reading it: a reader that
    /// subscribes and then reads [`EventHub::head`] sees either the old
    /// head (and the hub, subscribed to, publishes what follows it) or the
    /// new one.
    subscribing: std::sync::Mutex<()>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").field("head", &self.head.load(Ordering::Relaxed)).finish()
    }
}

impl EventHub {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            tx: broadcast::channel(4096).0,
            wake: Notify::new(),
            head: AtomicI64::new(-1),
            subscribing: std::sync::Mutex::new(()),
        })
    }

    /// Something was written: look now rather than at the next poll.
    pub fn poke(&self) {
        self.wake.notify_one();
    }

    /// A receiver of what the hub publishes from now on. Read
    /// [`EventHub::head`] after subscribing: events up to it are in the
    /// log, the ones after it will be published.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Published>> {
        let rx = {
            let _guard = self.subscribing.lock().unwrap_or_else(|e| e.into_inner());
            self.tx.subscribe()
        };
        // The hub may be idle: have it read now rather than at its next poll.
        self.wake.notify_one();
        rx
    }

    /// The last event id published (−1 before the hub has started).
    pub fn head(&self) -> i64 {
        self.head.load(Ordering::Acquire)
    }

    /// Follows the log until shutdown. Events written by other nodes show
    /// up within `poll`.
    pub async fn run(self: Arc<Self>, store: Store, poll: Duration, mut shutdown: watch::Receiver<bool>) {
        let start = loop {
            match store.last_event_id().await {
                Ok(id) => break id,
                Err(e) => {
                    tracing::warn!(error = %e, "event stream: cannot read the log yet; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut tail = Tail::new(start);
        self.head.store(start, Ordering::Release);
        loop {
            if self.tx.receiver_count() == 0 {
                // Nobody listens (no event stream open, no webhook
                // endpoint): follow the end of the log without reading it.
                match store.last_event_id().await {
                    Ok(last) if last > tail.position => {
                        let _guard = self.subscribing.lock().unwrap_or_else(|e| e.into_inner());
                        if self.tx.receiver_count() == 0 {
                            tail = Tail::new(last);
                            self.head.store(last, Ordering::Release);
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "event stream: cannot read the log; retrying"),
                }
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.changed() => return,
                }
                continue;
            }
            match tail.next(&store, 1000).await {
                Ok(rows) if !rows.is_empty() => {
                    let full = rows.len() == 1000;
                    for p in with_tags(&store, rows).await {
                        let id = p.row.id;
                        // Store the head before sending, so that a reader
                        // that backfills up to the head and then listens
                        // misses nothing (it drops repeats by id).
                        self.head.store(id, Ordering::Release);
                        let _ = self.tx.send(Arc::new(p));
                    }
                    if full {
                        continue;
                    }
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "event stream: cannot read the log; retrying"),
            }
            let wait = if tail.gap_since.is_some() { Duration::from_millis(50) } else { poll };
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
