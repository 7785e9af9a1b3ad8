//! Group commit: concurrent accepts share one transaction (and one fsync).
//!
//! Every accept waits for a durable commit before it answers. Committed
//! one by one, concurrent requests queue for the database's single writer
//! and the rate is one request per fsync. The committer takes whatever
//! requests are waiting, commits them together, and answers each: the same
//! durability, many requests per fsync. A lone request is committed at
//! once, without waiting for company.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::{InsertResult, NewMessage, Result, Store, StoreError};

/// Most messages committed in one group.
const MAX_GROUP_MESSAGES: usize = 2000;

struct Job {
    messages: Vec<NewMessage>,
    now: i64,
    reply: oneshot::Sender<Result<Vec<InsertResult>, Arc<StoreError>>>,
}

/// A handle to the committer task. Cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Job>,
}

impl Committer {
    /// Starts the committer task for `store`. It ends when every handle is
    /// dropped.
    pub fn start(store: Store) -> Self {
        let (tx, rx) = mpsc::channel::<Job>(4096);
        tokio::spawn(run(store, rx));
        Self { tx }
    }

    /// Commits `messages` (alone or with others that are waiting) and
    /// returns one result per message, as [`Store::insert_messages`] does.
    pub async fn insert(&self, messages: Vec<NewMessage>, now: i64) -> Result<Vec<InsertResult>, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        let closed = || Arc::new(StoreError::Closed);
        self.tx.send(Job { messages, now, reply }).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Job>) {
    while let Some(first) = rx.recv().await {
        let mut jobs = vec![first];
        let mut count = jobs[0].messages.len();
        while count < MAX_GROUP_MESSAGES {
            match rx.try_recv() {
                Ok(job) => {
                    count += job.messages.len();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let now = jobs.iter().map(|j| j.now).max().unwrap_or_default();
        let sizes: Vec<usize> = jobs.iter().map(|j| j.messages.len()).collect();
        let mut all = Vec::with_capacity(count);
        let mut replies = Vec::with_capacity(jobs.len());
        for job in jobs {
            all.extend(job.messages);
            replies.push(job.reply);
        }
        match store.insert_messages(all, now).await {
            Ok(results) => {
                let mut results = results.into_iter();
                for (reply, n) in replies.into_iter().zip(sizes) {
                    let _ = reply.send(Ok(results.by_ref().take(n).collect()));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, requests = replies.len(), "group commit failed; nothing of it was accepted");
                let e = Arc::new(e);
                for reply in replies {
                    let _ = reply.send(Err(e.clone()));
                }
            }
        }
    }
}
