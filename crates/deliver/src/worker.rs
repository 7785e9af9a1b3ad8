//! The delivery worker: claims due recipients in batches under a lease,
//! sends each message through the route, and records outcomes.
//!
//! Outcomes go through one flusher task that commits whatever has piled up
//! in a single transaction, at once: under load that batches hundreds of
//! outcomes per commit, and when idle a lone outcome is committed within a
//! millisecond. The time between the next hop's `250` and that commit is
//! the only window in which a crash can cause a duplicate.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use epistle_core::clock::SharedClock;
use epistle_store::{Claimed, Committer, DeliveryMessage, HandOff, Handed, Outcome, OutcomeKind, Store};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, watch};
use tokio::task::JoinSet;

use crate::dkim::Keyring;
use crate::metrics::{Metrics, TransportLabels};
use crate::retry::RetryPolicy;
use crate::route::Router;
use crate::transport::{Delivery, Envelope};

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// This node's name in leases and attempts.
    pub node: String,
    /// Recipients claimed per query.
    pub batch_size: usize,
    /// Recipients being sent at once.
    pub max_in_flight: usize,
    /// How long a claim is held; a node that dies loses its work to others
    /// after this.
    pub lease: Duration,
    /// How often to look for work written by other nodes.
    pub poll_interval: Duration,
    /// On shutdown, how long to let messages in flight finish.
    pub shutdown_grace: Duration,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            node: "node".into(),
            batch_size: 200,
            max_in_flight: 400,
            lease: Duration::from_secs(60),
            poll_interval: Duration::from_secs(1),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// How long after its commit handed-over mail is sent on the suppressions
/// read in that commit; later, they are read again.
const SUPPRESSIONS_FRESH: Duration = Duration::from_millis(50);

/// The outcomes of one message, with the in-flight permit of its
/// recipients. The permit is released only once the outcomes are
/// committed, so `max_in_flight` bounds the recipients that are claimed
/// but not yet recorded: the most a crash can send twice.
struct Done {
    outcomes: Vec<Outcome>,
    _permit: Option<OwnedSemaphorePermit>,
}

pub struct Worker {
    store: Store,
    route: Arc<Router>,
    retry: RetryPolicy,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    cfg: WorkerConfig,
    wake: Arc<Notify>,
    keyring: Option<Arc<Keyring>>,
    verp: Option<Verp>,
    handed: Option<mpsc::Receiver<Handed>>,
    committer: Option<Committer>,
}

/// VERP return paths: each recipient's mail goes out with its own
/// envelope sender `bounce+<signed token>@domain`, so a bounce names the
/// recipient it is about whatever the receiving server writes in it.
#[derive(Debug, Clone)]
pub struct Verp {
    pub domain: String,
    pub key: epistle_core::token::TokenKey,
}

impl Verp {
    /// The return path for one recipient of a message.
    pub fn address(&self, message_id: &str, recipient_id: &str) -> Option<String> {
        let index: u16 = recipient_id.rsplit('_').next()?.parse().ok()?;
        Some(format!("{}@{}", self.key.verp_local(message_id, index)?, self.domain))
    }
}

impl Worker {
    pub fn new(
        store: Store,
        route: Arc<Router>,
        retry: RetryPolicy,
        clock: SharedClock,
        metrics: Arc<Metrics>,
        cfg: WorkerConfig,
    ) -> Self {
        let wake = Arc::new(Notify::new());
        Self {
            store,
            route,
            retry,
            clock,
            metrics,
            cfg,
            wake,
            keyring: None,
            verp: None,
            handed: None,
            committer: None,
        }
    }

    /// Lets the group committer hand this worker the mail it commits,
    /// already claimed for this node (see `epistle_store::HandOff`). The
    /// channel holds up to `max_in_flight` messages.
    pub fn hand_off(&mut self) -> HandOff {
        let (tx, rx) = mpsc::channel(self.cfg.max_in_flight.max(16));
        self.handed = Some(rx);
        HandOff {
            node: self.cfg.node.clone(),
            lease_ms: self.cfg.lease.as_millis() as i64,
            tx,
            wake: self.wake.clone(),
        }
    }

    /// Records outcomes through the group committer, in the transactions of
    /// accepts where it can (see `epistle_store::Committer::record_outcomes`).
    pub fn record_through(&mut self, committer: Committer) {
        self.committer = Some(committer);
    }

    /// Signs outgoing mail with the tenant's DKIM keys for its From domain.
    pub fn with_keyring(mut self, keyring: Arc<Keyring>) -> Self {
        self.keyring = Some(keyring);
        self
    }

    /// Sends every recipient in its own transaction with a VERP return path.
    pub fn with_verp(mut self, verp: Verp) -> Self {
        self.verp = Some(verp);
        self
    }

    /// Notify this to make the worker look for work now (after an accept).
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until `shutdown` turns true, then stops claiming, lets messages
    /// in flight finish (up to the grace period) and commits their outcomes.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut handed = self.handed.take();
        let (tx, rx) = mpsc::channel::<Done>(self.cfg.max_in_flight.max(16));
        let flusher = tokio::spawn(flush_loop(
            Recorder { store: self.store.clone(), committer: self.committer.take() },
            self.cfg.node.clone(),
            rx,
            self.clock.clone(),
            self.metrics.clone(),
            self.wake.clone(),
        ));
        let renewer =
            tokio::spawn(renew_loop(self.store.clone(), self.cfg.node.clone(), self.cfg.lease, self.clock.clone()));
        let permits = Arc::new(Semaphore::new(self.cfg.max_in_flight.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let low_water = (self.cfg.max_in_flight / 4).max(1);
        tracing::info!(node = %self.cfg.node, transports = ?self.route.transport_names(), "delivery worker started");

        loop {
            if *shutdown.borrow() {
                break;
            }
            while tasks.try_join_next().is_some() {}
            let batch = take_waiting(&mut handed, None);
            if !batch.is_empty() {
                self.dispatch_handed(batch, &permits, &mut tasks, &tx).await;
            }
            let free = permits.available_permits();
            if free < low_water {
                // Wait until sends finish and their outcomes are committed.
                tokio::select! {
                    p = permits.clone().acquire_many_owned(low_water as u32) => drop(p),
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let now = self.clock.now_ms();
            let limit = free.min(self.cfg.batch_size) as i64;
            let claimed =
                match self.store.claim_due(&self.cfg.node, now, self.cfg.lease.as_millis() as i64, limit).await {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot claim work; retrying in 1 s");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                };
            // A claim that got less than it asked for took everything due:
            // dispatch it, then wait instead of asking again at once.
            let took_all = (claimed.len() as i64) < limit;
            if !claimed.is_empty() {
                self.dispatch(claimed, &permits, &mut tasks, &tx).await;
            }
            if !took_all {
                continue;
            }
            let wait = match self.store.next_due().await {
                Ok(Some(due)) => {
                    Duration::from_millis((due - now).clamp(5, self.cfg.poll_interval.as_millis() as i64) as u64)
                }
                _ => self.cfg.poll_interval,
            };
            let timer = tokio::time::sleep(wait);
            tokio::pin!(timer);
            // Claim again when the waker rings (queued mail was accepted, or
            // the flusher scheduled a retry), when the next recipient is due,
            // or on shutdown. Mail the committer hands over is sent from here
            // without a claim; finished sends are only reaped.
            loop {
                tokio::select! {
                    _ = self.wake.notified() => break,
                    _ = &mut timer => break,
                    _ = shutdown.changed() => break,
                    Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                    h = recv_handed(&mut handed) => match h {
                        Some(first) => {
                            let batch = take_waiting(&mut handed, Some(first));
                            self.dispatch_handed(batch, &permits, &mut tasks, &tx).await;
                        }
                        None => handed = None,
                    },
                }
            }
        }

        // Mail handed over but not started goes back to the queue now rather
        // than when its lease runs out.
        if let Some(rx) = handed.as_mut() {
            rx.close();
        }
        let left: Vec<Claimed> = take_waiting(&mut handed, None).into_iter().flat_map(|h| h.recipients).collect();
        if !left.is_empty() {
            self.put_back(&left, "stopping before it was sent", &tx).await;
        }
        tracing::info!(in_flight = tasks.len(), "stopping: no new claims; letting messages in flight finish");
        let grace = tokio::time::sleep(self.cfg.shutdown_grace);
        tokio::pin!(grace);
        while !tasks.is_empty() {
            tokio::select! {
                _ = tasks.join_next() => {}
                _ = &mut grace => {
                    tracing::warn!(left = tasks.len(), "grace period over; their leases will expire and another run retries them");
                    tasks.abort_all();
                    break;
                }
            }
        }
        drop(tx);
        let _ = flusher.await;
        renewer.abort();
    }

    /// Releases claimed work unattempted, to be claimed again in a second.
    async fn put_back(&self, claimed: &[Claimed], why: impl std::fmt::Display, tx: &mpsc::Sender<Done>) {
        let retry_at = self.clock.now_ms() + 1000;
        let why = why.to_string();
        let outcomes =
            claimed.iter().map(|c| outcome(c, OutcomeKind::Released { retry_at }, why.clone(), "none", 0, 0)).collect();
        let _ = tx.send(Done { outcomes, _permit: None }).await;
    }

    async fn dispatch(
        &self,
        claimed: Vec<Claimed>,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        tx: &mpsc::Sender<Done>,
    ) {
        let mut ids: Vec<String> = claimed.iter().map(|c| c.message_id.clone()).collect();
        ids.sort();
        ids.dedup();
        let messages = match self.store.load_for_delivery(&ids).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot load claimed messages; putting them back");
                return self.put_back(&claimed, &e, tx).await;
            }
        };
        self.dispatch_loaded(claimed, messages, None, permits, tasks, tx).await;
    }

    /// Sends mail the committer handed over: claimed and loaded already.
    async fn dispatch_handed(
        &self,
        handed: Vec<Handed>,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        tx: &mpsc::Sender<Done>,
    ) {
        let mut claimed = Vec::new();
        let mut messages = Vec::with_capacity(handed.len());
        // The suppressions the commit read, if it read them for every one
        // and only a moment ago (else a suppression added since would be
        // missed: they are read again).
        let mut suppressed = Some(Vec::new());
        for h in handed {
            claimed.extend(h.recipients);
            messages.push(h.message);
            match (&mut suppressed, h.suppressed) {
                (Some(all), Some(these)) if h.committed_at.elapsed() <= SUPPRESSIONS_FRESH => all.extend(these),
                _ => suppressed = None,
            }
        }
        self.dispatch_loaded(claimed, messages, suppressed, permits, tasks, tx).await;
    }

    /// Sends claimed recipients of loaded messages; `suppressed`: their
    /// suppressions if already read (else read here).
    async fn dispatch_loaded(
        &self,
        claimed: Vec<Claimed>,
        messages: Vec<DeliveryMessage>,
        suppressed: Option<Vec<(String, String, String)>>,
        permits: &Arc<Semaphore>,
        tasks: &mut JoinSet<()>,
        tx: &mpsc::Sender<Done>,
    ) {
        // Addresses on their tenant's suppression list are not sent to.
        let suppressed = match suppressed {
            Some(s) => s,
            None => {
                let pairs: Vec<(String, String)> =
                    claimed.iter().map(|c| (c.tenant_id.clone(), c.email.clone())).collect();
                match self.store.suppressed_among(&pairs).await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read the suppression list; putting the work back");
                        return self.put_back(&claimed, &e, tx).await;
                    }
                }
            }
        };
        let mut by_message: HashMap<String, Vec<Claimed>> = HashMap::new();
        let mut skipped = Vec::new();
        for c in claimed {
            let msg = messages.iter().find(|m| m.id == c.message_id);
            let (stream, category) = msg.map(|m| (m.stream.as_str(), m.category.as_deref())).unwrap_or(("", None));
            if suppressed.iter().any(|(t, e, scope)| {
                *t == c.tenant_id
                    && e.eq_ignore_ascii_case(&c.email)
                    && epistle_core::suppression::applies(scope, stream, category)
            }) {
                let why = "not sent: the address is on this tenant's suppression list".to_string();
                skipped.push(outcome(&c, OutcomeKind::Suppressed, why, "none", self.clock.now_ms(), 0));
                continue;
            }
            by_message.entry(c.message_id.clone()).or_default().push(c);
        }
        if !skipped.is_empty() {
            let _ = tx.send(Done { outcomes: skipped, _permit: None }).await;
        }
        // Personalised mail: each recipient after the first has its own body.
        let personal: Vec<String> = by_message
            .iter()
            .filter(|(mid, _)| messages.iter().any(|m| m.id == **mid && m.personalized))
            .flat_map(|(_, rcpts)| rcpts.iter().map(|c| c.id.clone()))
            .collect();
        let mut bodies = if personal.is_empty() {
            HashMap::new()
        } else {
            match self.store.recipient_bodies(&personal).await {
                Ok(b) => b,
                Err(e) => {
                    tracing::error!(error = %e, "cannot load personalised bodies; putting the work back");
                    let all: Vec<Claimed> = by_message.into_values().flatten().collect();
                    return self.put_back(&all, &e, tx).await;
                }
            }
        };
        let mut messages: HashMap<String, DeliveryMessage> = messages.into_iter().map(|m| (m.id.clone(), m)).collect();
        let mut groups: Vec<(DeliveryMessage, Vec<Claimed>, Option<String>)> = Vec::new();
        for (mid, rcpts) in by_message {
            let Some(message) = messages.remove(&mid) else {
                let why = "message body missing from the store";
                let outcomes =
                    rcpts.iter().map(|c| outcome(c, OutcomeKind::Failed, why.into(), "none", 0, 0)).collect();
                let _ = tx.send(Done { outcomes, _permit: None }).await;
                continue;
            };
            if !message.personalized && self.verp.is_none() {
                groups.push((message, rcpts, None));
                continue;
            }
            // One transaction per recipient, with its own body and return path.
            for c in rcpts {
                let mut m = message.clone();
                if let Some(body) = bodies.remove(&c.id) {
                    m.raw = body;
                }
                let return_path = self.verp.as_ref().and_then(|v| v.address(&m.id, &c.id));
                groups.push((m, vec![c], return_path));
            }
        }
        for (message, rcpts, return_path) in groups {
            let Ok(permit) = permits.clone().acquire_many_owned(rcpts.len() as u32).await else { return };
            let route = self.route.clone();
            let retry = self.retry.clone();
            let clock = self.clock.clone();
            let metrics = self.metrics.clone();
            let tx = tx.clone();
            let keyring = self.keyring.clone();
            tasks.spawn(send_one(message, rcpts, return_path, permit, route, retry, clock, metrics, tx, keyring));
        }
    }
}

/// `first` (if any) and every handed-over message already waiting.
fn take_waiting(rx: &mut Option<mpsc::Receiver<Handed>>, first: Option<Handed>) -> Vec<Handed> {
    let mut batch: Vec<Handed> = first.into_iter().collect();
    if let Some(rx) = rx.as_mut() {
        while let Ok(h) = rx.try_recv() {
            batch.push(h);
        }
    }
    batch
}

/// The next handed-over message; never ready without a channel.
async fn recv_handed(rx: &mut Option<mpsc::Receiver<Handed>>) -> Option<Handed> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn outcome(
    c: &Claimed,
    kind: OutcomeKind,
    response: String,
    transport: &str,
    started_at: i64,
    duration_ms: i64,
) -> Outcome {
    Outcome {
        recipient_id: c.id.clone(),
        tenant_id: c.tenant_id.clone(),
        message_id: c.message_id.clone(),
        email: c.email.clone(),
        kind,
        response,
        transport: transport.to_string(),
        started_at,
        duration_ms,
        cost_micros: 0,
        suppress: None,
    }
}

#[allow(clippy::too_many_arguments)]
async fn send_one(
    message: DeliveryMessage,
    rcpts: Vec<Claimed>,
    return_path: Option<String>,
    permit: OwnedSemaphorePermit,
    route: Arc<Router>,
    retry: RetryPolicy,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    tx: mpsc::Sender<Done>,
    keyring: Option<Arc<Keyring>>,
) {
    // Signed here rather than at accept, so that a rotated key applies to
    // queued mail and `GET …/raw` shows what the sender gave us.
    let signed = match keyring {
        Some(k) => k.sign(&message.tenant_id, &message.raw).await,
        None => None,
    };
    let raw = signed.as_deref().unwrap_or(&message.raw);
    let envelope = Envelope {
        from: return_path.unwrap_or_else(|| message.envelope_from.clone()),
        rcpts: rcpts.iter().map(|c| c.email.clone()).collect(),
    };
    let started_at = clock.now_ms();
    let t0 = Instant::now();
    let sender_domain = message.envelope_from.rsplit_once('@').map(|(_, d)| d).unwrap_or_default();
    let routed = route.select(&message.stream, sender_domain, &message.tags).send(&envelope, raw).await;
    let elapsed = t0.elapsed();
    metrics
        .attempt_seconds
        .get_or_create(&TransportLabels { transport: routed.transport.clone() })
        .observe(elapsed.as_secs_f64());
    let now = clock.now_ms();
    let mut outcomes = Vec::with_capacity(rcpts.len());
    for (c, d) in rcpts.iter().zip(routed.deliveries) {
        let kind = match &d {
            Delivery::Sent(_) => OutcomeKind::Sent,
            Delivery::Permanent(_) => OutcomeKind::Bounced,
            Delivery::Transient(_) => {
                match retry.next_retry(c.attempts + 1, now, message.due_since(), &mut rand::thread_rng()) {
                    Some(retry_at) => OutcomeKind::Deferred { retry_at },
                    None => OutcomeKind::Failed,
                }
            }
        };
        let response = match kind {
            OutcomeKind::Failed => format!("gave up after {} attempts: {}", c.attempts + 1, d.reply()),
            _ => d.reply().to_string(),
        };
        tracing::debug!(message = %c.message_id, rcpt = %c.email, tenant = %c.tenant_id, outcome = ?kind, %response, "attempt");
        let charged = if kind == OutcomeKind::Sent { routed.cost_micros } else { 0 };
        // A refusal that says the address itself is bad suppresses it.
        let hard = matches!(&d, Delivery::Permanent(reply) if is_hard_bounce(&c.email, reply));
        let mut o = outcome(c, kind, response, &routed.transport, started_at, elapsed.as_millis() as i64);
        o.cost_micros = charged;
        o.suppress = hard.then(|| "hard_bounce".to_string());
        outcomes.push(o);
    }
    let _ = tx.send(Done { outcomes, _permit: Some(permit) }).await;
}

/// Reads a reply such as `550 5.1.1 <x@y>: user unknown` about `rcpt` with the
/// bounce classifier: true when the address itself is bad. The recipient's
/// domain lets a service's own reading of its replies apply (NTT DOCOMO's and
/// KDDI's "User unknown" that is their reception filter, Gmail's documented codes).
///
/// Only an SMTP 5xx reply about this recipient counts: a provider API's
/// verdict on the whole message (HTTP 400, 422) suppresses nobody.
fn is_hard_bounce(rcpt: &str, reply: &str) -> bool {
    let mut words = reply.trim().splitn(3, ' ');
    let Some(code) = words.next().and_then(|c| c.parse::<u16>().ok()).filter(|c| (500..600).contains(c)) else {
        return false;
    };
    let rest: Vec<&str> = words.collect();
    let (enhanced, text) = match rest.first() {
        Some(w) if w.split('.').count() == 3 && w.split('.').all(|p| p.parse::<u16>().is_ok()) => {
            (Some(*w), rest.get(1).copied().unwrap_or(""))
        }
        _ => (None, reply),
    };
    epistle_mail::bounce::classify_reply_to(rcpt, code, enhanced, text).1
}

/// Renews this node's leases every third of the lease, so that only a dead
/// node's work is ever taken over.
async fn renew_loop(store: Store, node: String, lease: Duration, clock: SharedClock) {
    let every = (lease / 3).max(Duration::from_millis(100));
    loop {
        tokio::time::sleep(every).await;
        if let Err(e) = store.renew_leases(&node, clock.now_ms(), lease.as_millis() as i64).await {
            tracing::warn!(error = %e, "cannot renew leases; if this lasts past the lease, other nodes may resend");
        }
    }
}

/// Where the flusher commits outcomes: through the group committer when
/// the node has one, else straight to the store.
struct Recorder {
    store: Store,
    committer: Option<Committer>,
}

impl Recorder {
    async fn record(&self, node: &str, outcomes: &Arc<[Outcome]>, now: i64) -> Result<(), String> {
        match &self.committer {
            Some(c) => c.record_outcomes(node, outcomes.clone(), now).await.map_err(|e| e.to_string()),
            None => self.store.record_outcomes(node, outcomes, now).await.map_err(|e| e.to_string()),
        }
    }
}

async fn flush_loop(
    recorder: Recorder,
    node: String,
    mut rx: mpsc::Receiver<Done>,
    clock: SharedClock,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
) {
    let mut done: Vec<Done> = Vec::with_capacity(256);
    while let Some(first) = rx.recv().await {
        done.push(first);
        while done.len() < 500 {
            match rx.try_recv() {
                Ok(d) => done.push(d),
                Err(_) => break,
            }
        }
        let mut batch: Arc<[Outcome]> = done.iter_mut().flat_map(|d| d.outcomes.drain(..)).collect();
        let mut delay = Duration::from_millis(100);
        let mut tries_while_stopping = 0;
        loop {
            match recorder.record(&node, &batch, clock.now_ms()).await {
                Ok(()) => break,
                Err(e) if rx.is_closed() && tries_while_stopping >= 10 => {
                    // Stopping, and the database is gone: the recipients stay
                    // leased and are retried after the lease (possibly twice).
                    tracing::error!(error = %e, lost = batch.len(), "giving up recording outcomes at shutdown");
                    batch = Arc::new([]);
                    break;
                }
                Err(e) => {
                    if rx.is_closed() {
                        tries_while_stopping += 1;
                    }
                    tracing::error!(error = %e, pending = batch.len(), "cannot record outcomes; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
            }
        }
        // Committed: the recipients' in-flight permits go back now, and a
        // waiting claim loop learns of retries that may be due before the
        // time it waits for.
        done.clear();
        if batch.iter().any(|o| matches!(o.kind, OutcomeKind::Deferred { .. } | OutcomeKind::Released { .. })) {
            wake.notify_one();
        }
        for o in batch.iter() {
            let label = match o.kind {
                OutcomeKind::Sent => "sent",
                OutcomeKind::Deferred { .. } => "deferred",
                OutcomeKind::Bounced => "bounced",
                OutcomeKind::Failed => "failed",
                OutcomeKind::Suppressed => "suppressed",
                OutcomeKind::Released { .. } => continue,
            };
            metrics.delivered(label);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::is_hard_bounce;

    #[test]
    fn only_smtp_permanent_replies_about_the_address_suppress() {
        let rcpt = "x@y.example";
        assert!(is_hard_bounce(rcpt, "550 5.1.1 <x@y.example>: Recipient address rejected: User unknown"));
        assert!(is_hard_bounce(rcpt, "550 no such user here"));
        assert!(!is_hard_bounce(rcpt, "552 5.2.2 mailbox full"));
        assert!(!is_hard_bounce(rcpt, "400 postmark: ErrorCode 300: Invalid 'To' address"));
        assert!(!is_hard_bounce(rcpt, "422 sendgrid: Does not contain a valid address."));
        assert!(!is_hard_bounce(rcpt, "no code at all: user unknown"));
        // Postfix checks the sender at RCPT TO by default (smtpd_delay_reject): a refusal of
        // our sender, whatever its code, says nothing about the recipient.
        assert!(!is_hard_bounce(
            rcpt,
            "550 5.1.0 <bounce@shop.example>: Sender address rejected: User unknown in local recipient table"
        ));
        assert!(!is_hard_bounce(rcpt, "553 5.1.8 <bounce@shop.example>: Sender address rejected: Domain not found"));
    }

    #[test]
    fn a_service_that_says_user_unknown_for_its_filter_does_not_suppress() {
        // KDDI (au) answers "550 : User unknown", with no address, from its reception
        // filter: the mailbox exists, so the address must not be suppressed.
        assert!(!is_hard_bounce("someone@ezweb.ne.jp", "550 : User unknown"));
        assert!(is_hard_bounce("someone@other.example", "550 : User unknown"));
        assert!(is_hard_bounce("someone@ezweb.ne.jp", "550 <someone@ezweb.ne.jp>: User unknown"));
    }
}
