//! Group commit: concurrent accepts share one transaction (and one fsync).
//!
//! Every accept waits for a durable commit before it answers. Committed
//! one by one, concurrent requests queue for the database's single writer
//! and the rate is one request per fsync. The committer takes whatever
//! requests are waiting, commits them together, and answers each: the same
//! durability, many requests per fsync. A lone request is committed at
//! once, without waiting for company.
//!
//! With a [`HandOff`], mail that can go now skips the queue: its
//! recipients are inserted already claimed by this node (status `sending`,
//! leased as [`Store::claim_due`] would lease them) and the committed
//! message goes straight to the node's delivery worker, in memory. That
//! saves the worker a claim (a write transaction) and a read of the body
//! it just had. Durability is unchanged: should the node die, the lease
//! runs out and any node claims the recipients, as after a crash mid-send.
//! Only as many messages are handed over as the worker's channel has room
//! for; the rest are queued as before and the worker is woken to claim
//! them.
//!
//! The delivery worker's outcomes can go through here too
//! ([`Committer::record_outcomes`]): they then share the transaction of
//! the next group of accepts instead of taking the writer for one of their
//! own. On SQLite that halves the transactions of a busy node, each a
//! series of round trips to the connection's thread while every accept
//! waits. Outcomes that fail never fail the accepts: they are written
//! first, and the accepts are committed alone after them if they fail.
//! After a shared transaction fails, the next ones are not shared until
//! outcomes alone commit again. Outcomes with no accepts waiting linger a
//! few milliseconds for some ([`RECORD_LINGER`]): a transaction of their
//! own would rewrite the pages the next group writes again, and hold that
//! group up.
//!
//! On SQLite, the committer keeps the store's writer connection from one
//! group to the next while more work is waiting (at most [`MAX_HOLD`]):
//! handing it back to sqlx's pool costs a round trip to the connection's
//! thread, which tests it on the way, and every group used to wait for that.

use std::sync::Arc;

use tokio::sync::{Notify, mpsc, oneshot};

use crate::messages::{Committed, Lease, Recorded, WriterHold};
use crate::{Claimed, DeliveryMessage, InsertResult, NewMessage, Outcome, Result, Store, StoreError};

/// Most messages committed in one group.
const MAX_GROUP_MESSAGES: usize = 2000;

/// Longest the committer keeps the store's writer connection from one group
/// to the next while more work waits; then it lets others write.
const MAX_HOLD: std::time::Duration = std::time::Duration::from_millis(20);

/// How long outcomes with no accepts to share a transaction with wait for
/// some before they are committed alone.
const RECORD_LINGER: std::time::Duration = std::time::Duration::from_millis(5);

struct Job {
    messages: Vec<NewMessage>,
    now: i64,
    reply: oneshot::Sender<Result<Vec<InsertResult>, Arc<StoreError>>>,
}

/// Outcomes to record, from [`Committer::record_outcomes`].
struct Record {
    node: String,
    outcomes: Arc<[Outcome]>,
    now: i64,
    reply: oneshot::Sender<Result<(), Arc<StoreError>>>,
}

enum Work {
    Accept(Job),
    Record(Record),
}

/// A committed message whose recipients are already claimed by this node.
#[derive(Debug)]
pub struct Handed {
    pub message: DeliveryMessage,
    pub recipients: Vec<Claimed>,
    /// The suppressions of its recipients as of the commit, as
    /// [`Store::suppressed_among`] gives them, when the commit read them
    /// (SQLite); `None`: the worker reads them.
    pub suppressed: Option<Vec<(String, String, String)>>,
    /// When it was committed (and `suppressed` read): a worker that gets to
    /// it later than a moment after reads the suppressions again.
    pub committed_at: std::time::Instant,
}

/// Where committed mail goes when it can be sent at once.
pub struct HandOff {
    /// This node's name in leases (the delivery worker's `node`).
    pub node: String,
    /// The worker's lease length.
    pub lease_ms: i64,
    /// The worker's channel of handed-over mail.
    pub tx: mpsc::Sender<Handed>,
    /// Rung when a group queued something that was not handed over.
    pub wake: Arc<Notify>,
}

/// A handle to the committer task. Cheap to clone.
#[derive(Clone)]
pub struct Committer {
    tx: mpsc::Sender<Work>,
}

impl Committer {
    /// Starts the committer task for `store`, with no delivery worker to
    /// hand mail to or wake (tests, tools). It ends when every handle is
    /// dropped.
    pub fn start(store: Store) -> Self {
        Self::spawn(store, None)
    }

    /// Starts the committer task, handing mail that can go now to the
    /// delivery worker and waking it for the rest.
    pub fn start_with_handoff(store: Store, handoff: HandOff) -> Self {
        Self::spawn(store, Some(handoff))
    }

    fn spawn(store: Store, handoff: Option<HandOff>) -> Self {
        let (tx, rx) = mpsc::channel::<Work>(4096);
        tokio::spawn(run(store, rx, handoff));
        Self { tx }
    }

    /// Commits `messages` (alone or with others that are waiting) and
    /// returns one result per message, as [`Store::insert_messages`] does.
    pub async fn insert(&self, messages: Vec<NewMessage>, now: i64) -> Result<Vec<InsertResult>, Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        let closed = || Arc::new(StoreError::Closed);
        self.tx.send(Work::Accept(Job { messages, now, reply })).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }

    /// Records `outcomes` as [`Store::record_outcomes`] does, in the
    /// transaction of the next group of accepts if there is one.
    pub async fn record_outcomes(&self, node: &str, outcomes: Arc<[Outcome]>, now: i64) -> Result<(), Arc<StoreError>> {
        let (reply, rx) = oneshot::channel();
        let closed = || Arc::new(StoreError::Closed);
        let work = Work::Record(Record { node: node.to_string(), outcomes, now, reply });
        self.tx.send(work).await.map_err(|_| closed())?;
        rx.await.map_err(|_| closed())?
    }
}

/// The delivery worker's view of `m`, if it can be sent now.
fn handable(m: &NewMessage, now: i64) -> Option<Handed> {
    if m.send_at.is_some_and(|t| t > now) {
        return None;
    }
    let recipients: Vec<Claimed> = m
        .recipients
        .iter()
        .enumerate()
        .filter(|(_, r)| r.suppressed.is_none())
        .map(|(i, r)| Claimed {
            id: epistle_core::token::recipient_id(&m.id, i as u16),
            tenant_id: m.tenant_id.clone(),
            message_id: m.id.clone(),
            email: r.email.clone(),
            attempts: 0,
        })
        .collect();
    if recipients.is_empty() {
        return None;
    }
    let message = DeliveryMessage {
        id: m.id.clone(),
        tenant_id: m.tenant_id.clone(),
        envelope_from: m.envelope_from.clone(),
        stream: m.stream.clone(),
        raw: m.raw.clone(),
        created_at: now,
        send_at: m.send_at,
        tags: m.tags.clone(),
        category: m.category.clone(),
        personalized: m.personalized,
    };
    Some(Handed { message, recipients, suppressed: None, committed_at: std::time::Instant::now() })
}

/// What the committer has taken from its channel for the next transaction.
#[derive(Default)]
struct Group {
    jobs: Vec<Job>,
    records: Vec<Record>,
    count: usize,
}

impl Group {
    fn add(&mut self, work: Work) {
        match work {
            Work::Accept(job) => {
                self.count += job.messages.len();
                self.jobs.push(job);
            }
            Work::Record(r) => self.records.push(r),
        }
    }

    /// Adds whatever is waiting, up to [`MAX_GROUP_MESSAGES`].
    fn drain(&mut self, rx: &mut mpsc::Receiver<Work>) {
        while self.count < MAX_GROUP_MESSAGES {
            match rx.try_recv() {
                Ok(work) => self.add(work),
                Err(_) => break,
            }
        }
    }
}

async fn run(store: Store, mut rx: mpsc::Receiver<Work>, handoff: Option<HandOff>) {
    // Cleared when a shared transaction fails, set again when outcomes
    // alone commit.
    let mut share = true;
    // The writer connection while groups follow each other (SQLite), and
    // since when it is held.
    let mut held: Option<WriterHold> = None;
    let mut held_since = std::time::Instant::now();
    while let Some(first) = rx.recv().await {
        let mut group = Group::default();
        group.add(first);
        group.drain(&mut rx);
        if group.jobs.is_empty() && share {
            // Outcomes alone: wait a moment for accepts to share their
            // transaction. Under load one comes within a few milliseconds,
            // and a transaction of outcomes alone rewrites the same pages
            // the next group writes again (and holds that group up). Others
            // may write meanwhile.
            held = None;
            let deadline = tokio::time::Instant::now() + RECORD_LINGER;
            while group.jobs.is_empty() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(work)) => {
                        group.add(work);
                        group.drain(&mut rx);
                    }
                    Ok(None) | Err(_) => break,
                }
            }
        }
        let Group { jobs, mut records, count } = group;
        if held.is_none() {
            held_since = std::time::Instant::now();
        }
        if jobs.is_empty() {
            share = record(&store, records, &mut held).await;
        } else {
            let shared = if share { std::mem::take(&mut records) } else { Vec::new() };
            let sharing = !shared.is_empty();
            if !accept(&store, jobs, count, shared, handoff.as_ref(), &mut held).await && sharing {
                share = false;
            }
            if !records.is_empty() {
                share = record(&store, records, &mut held).await;
            }
        }
        // Keep the writer for the next group only if one is waiting, and
        // not for long: others (claims, the API) write through it too.
        if rx.is_empty() || held_since.elapsed() >= MAX_HOLD {
            held = None;
        }
    }
}

/// What [`Store::commit_group`] takes of each record.
fn parts(records: &[Record]) -> Vec<Recorded> {
    records.iter().map(|r| (r.node.clone(), r.outcomes.clone(), r.now)).collect()
}

/// Commits outcomes alone; true if that worked.
async fn record(store: &Store, records: Vec<Record>, held: &mut Option<WriterHold>) -> bool {
    let result =
        store.commit_group(Vec::new(), 0, None, parts(&records), held).await.map(|_| ()).map_err(|(e, _)| Arc::new(e));
    if let Err(e) = &result {
        tracing::error!(error = %e, outcome_batches = records.len(), "cannot record outcomes");
    }
    for r in records {
        let _ = r.reply.send(result.clone());
    }
    result.is_ok()
}

/// Commits a group of accepts, with the outcomes of `records`; true if
/// both worked. Outcomes that fail do not fail the accepts (see
/// [`Store::commit_group`]); accepts that fail take the outcomes down with
/// them.
async fn accept(
    store: &Store,
    jobs: Vec<Job>,
    count: usize,
    mut records: Vec<Record>,
    handoff: Option<&HandOff>,
    held: &mut Option<WriterHold>,
) -> bool {
    let mut shared_failed = false;
    let now = jobs.iter().map(|j| j.now).max().unwrap_or_default();
    let sizes: Vec<usize> = jobs.iter().map(|j| j.messages.len()).collect();
    let mut all = Vec::with_capacity(count);
    let mut replies = Vec::with_capacity(jobs.len());
    for job in jobs {
        all.extend(job.messages);
        replies.push(job.reply);
    }
    // A slot in the worker's channel for each message handed over, taken
    // before the commit so that sending after it cannot block or fail.
    let mut handed = Vec::with_capacity(all.len());
    if let Some(h) = handoff {
        for m in &all {
            // The slot first: no copy of the body for a full channel.
            let slot = h.tx.clone().try_reserve_owned().ok().and_then(|p| handable(m, now).map(|x| (p, x)));
            handed.push(slot);
        }
    }
    let flags: Vec<bool> = handed.iter().map(Option::is_some).collect();
    let lease = || handoff.map(|h| Lease { node: h.node.clone(), until: now + h.lease_ms, messages: flags.clone() });
    let mut result = store.commit_group(all, now, lease(), parts(&records), held).await;
    if let Err((e, Some(all))) = result {
        // The outcomes failed before anything was accepted: they are
        // answered so, and the accepts are committed alone.
        tracing::error!(error = %e, outcome_batches = records.len(), "cannot record outcomes; accepting without them");
        let e = Arc::new(e);
        for r in records.drain(..) {
            let _ = r.reply.send(Err(e.clone()));
        }
        shared_failed = true;
        result = store.commit_group(all, now, lease(), Vec::new(), held).await;
    }
    let result = result.map_err(|(e, _)| e);
    match result {
        Ok(Committed { results, suppressed }) => {
            let mut queued = false;
            for (i, r) in results.iter().enumerate() {
                match handed.get_mut(i).and_then(Option::take) {
                    Some((permit, mut h)) if *r == InsertResult::Inserted => {
                        h.committed_at = std::time::Instant::now();
                        h.suppressed = suppressed.as_ref().map(|all| {
                            all.iter()
                                .filter(|(t, e, _)| {
                                    h.recipients.iter().any(|c| c.tenant_id == *t && c.email.eq_ignore_ascii_case(e))
                                })
                                .cloned()
                                .collect()
                        });
                        permit.send(h);
                    }
                    _ => queued |= *r == InsertResult::Inserted,
                }
            }
            if queued && let Some(h) = handoff {
                h.wake.notify_one();
            }
            let mut results = results.into_iter();
            for (reply, n) in replies.into_iter().zip(sizes) {
                let _ = reply.send(Ok(results.by_ref().take(n).collect()));
            }
            for r in records {
                let _ = r.reply.send(Ok(()));
            }
            !shared_failed
        }
        Err(e) => {
            tracing::error!(
                error = %e,
                requests = replies.len(),
                outcome_batches = records.len(),
                "group commit failed; nothing of it was accepted or recorded"
            );
            let e = Arc::new(e);
            for reply in replies {
                let _ = reply.send(Err(e.clone()));
            }
            for r in records {
                let _ = r.reply.send(Err(e.clone()));
            }
            false
        }
    }
}
