//! Outgoing webhooks: events fanned out to each tenant's endpoints, then
//! POSTed with an HMAC signature, retried with backoff for more than a day.
//!
//! Fan-out follows the event log from a cursor kept in the database and
//! writes one delivery row per (endpoint, event) in the same transaction
//! that moves the cursor, so a crash repeats nothing and loses nothing.
//! Where no endpoint wants an event, nothing is written for it: the cursor
//! moves in memory and is stored every [`CURSOR_EVERY`] (after a crash those
//! events are read again, and still want nothing). With no endpoint at all,
//! fan-out does not read the log.
//! Deliveries are claimed under a lease like recipients, so several nodes
//! share the work.
//!
//! The signature header is `Epistle-Signature: t=<unix>,v1=<hex>` where the
//! hex is HMAC-SHA256 with the endpoint's secret over `"<t>.<body>"`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use epistle_core::clock::SharedClock;
use epistle_core::secret::MasterKey;
use epistle_core::timefmt;
use epistle_store::{Store, WebhookJob, WebhookRecord, WebhookResult};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::{Notify, watch};

use crate::events::{EventHub, Published, Tail, with_tags};

/// How often fan-out stores a cursor that only moved over events no
/// endpoint wanted.
const CURSOR_EVERY: Duration = Duration::from_secs(10);

/// When to try again after the `n`th failed attempt (1-based).
const BACKOFF: [Duration; 10] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
    Duration::from_secs(300),
    Duration::from_secs(900),
    Duration::from_secs(1800),
    Duration::from_secs(3600),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(4 * 3600),
    Duration::from_secs(6 * 3600),
];

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub node: String,
    /// Keep trying one delivery this long.
    pub give_up_after: Duration,
    /// Disable an endpoint that has failed without a success this long.
    pub disable_after: Duration,
    /// Allow endpoints on loopback and private addresses (tests, internal
    /// receivers). Off by default: a tenant must not reach the inside.
    pub allow_private: bool,
    pub timeout: Duration,
    pub poll: Duration,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            node: "node".into(),
            give_up_after: Duration::from_secs(26 * 3600),
            disable_after: Duration::from_secs(24 * 3600),
            allow_private: false,
            timeout: Duration::from_secs(10),
            poll: Duration::from_secs(1),
        }
    }
}

/// The signature header value for `body` at Unix time `t`.
pub fn sign(secret: &[u8], t: i64, body: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex::encode(mac.finalize().into_bytes()))
}

/// Loopback, private, link-local and other addresses a tenant's webhook
/// must not reach.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v) => {
            v.is_loopback()
                || v.is_private()
                || v.is_link_local()
                || v.is_unspecified()
                || v.is_broadcast()
                || v.is_documentation()
                || v.octets()[0] == 100 && (v.octets()[1] & 0xc0) == 64
        }
        IpAddr::V6(v) => {
            v.is_loopback()
                || v.is_unspecified()
                || (v.segments()[0] & 0xfe00) == 0xfc00
                || (v.segments()[0] & 0xffc0) == 0xfe80
                || v.to_ipv4_mapped().is_some_and(|m| is_internal(IpAddr::V4(m)))
        }
    }
}

/// The JSON body sent for an event.
pub fn payload(p: &Published) -> String {
    let r = &p.row;
    let mut data = serde_json::json!({
        "message_id": r.message_id,
        "recipient": r.recipient,
        "tags": p.tags,
    });
    if let Some(d) = &r.detail {
        data["detail"] = serde_json::json!(d);
    }
    if let Some(extra) = r.data.as_deref().and_then(|d| serde_json::from_str::<serde_json::Value>(d).ok())
        && let Some(obj) = extra.as_object()
    {
        for (k, v) in obj {
            data[k] = v.clone();
        }
    }
    serde_json::json!({
        "id": format!("evt_{}", r.id),
        "type": r.kind,
        "created_at": timefmt::rfc3339(r.at),
        "data": data,
    })
    .to_string()
}

fn wants(hook: &WebhookRecord, kind: &str) -> bool {
    hook.events.iter().any(|e| e == "*" || e == kind)
}

/// Fans events out to endpoints, and sends them.
pub struct Webhooks {
    store: Store,
    key: MasterKey,
    clock: SharedClock,
    cfg: WebhookConfig,
    http: reqwest::Client,
    wake: Arc<Notify>,
}

impl Webhooks {
    pub fn new(store: Store, key: MasterKey, clock: SharedClock, cfg: WebhookConfig) -> Self {
        let http = reqwest::Client::builder()
            .timeout(cfg.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent("Epistle-Webhooks/1")
            .build()
            .expect("building an HTTP client with static settings");
        Self { store, key, clock, cfg, http, wake: Arc::new(Notify::new()) }
    }

    /// Runs fan-out and sending until shutdown. New events on `hub` wake
    /// fan-out; events of other nodes are found by polling.
    pub async fn run(self, hub: Arc<EventHub>, shutdown: watch::Receiver<bool>) {
        let me = Arc::new(self);
        let fan = tokio::spawn(me.clone().fan_out(hub, shutdown.clone()));
        me.send_loop(shutdown).await;
        fan.abort();
    }

    async fn fan_out(self: Arc<Self>, hub: Arc<EventHub>, mut shutdown: watch::Receiver<bool>) {
        let start = loop {
            let r = match self.store.webhook_cursor().await {
                Ok(Some(c)) => Ok(c),
                // First start: begin at the present, not with history.
                Ok(None) => self.store.last_event_id().await,
                Err(e) => Err(e),
            };
            match r {
                Ok(c) => break c,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot read the cursor; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        };
        let mut tail = Tail::new(start);
        // Where the stored cursor is, and since when: a cursor that moved
        // over events nobody wanted is stored now and then, not per batch.
        let mut stored = (start, Instant::now());
        // Subscribed to the hub only while some endpoint exists: with none,
        // neither the hub nor fan-out has a reason to read the log.
        let mut live: Option<tokio::sync::broadcast::Receiver<Arc<Published>>> = None;
        loop {
            let before = tail.position;
            // Where the log ends, read before the endpoints: should there be
            // none, fan-out moves there, and an endpoint made after this
            // read of them still gets every event that follows it.
            let end = self.store.last_event_id().await;
            // The endpoints, for every batch: one made a moment ago gets the
            // events that follow it.
            let hooks = match self.store.active_webhooks().await {
                Ok(h) => h,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot read endpoints; will retry");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            let mut full = false;
            if hooks.is_empty() {
                live = None;
                // Nothing to deliver: move to the end of the log without
                // reading it.
                match end {
                    Ok(last) if last > tail.position => tail = Tail::new(last),
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "webhooks: cannot read the event log"),
                }
            } else {
                if live.is_none() {
                    live = Some(hub.subscribe());
                }
                match tail.next(&self.store, 500).await {
                    Ok(rows) if !rows.is_empty() => {
                        full = rows.len() == 500;
                        let cursor = tail.position;
                        let mut out = Vec::new();
                        let tenants: std::collections::HashSet<&str> =
                            hooks.iter().map(|h| h.tenant_id.as_str()).collect();
                        let wanted: Vec<_> =
                            rows.into_iter().filter(|r| tenants.contains(r.tenant_id.as_str())).collect();
                        for p in with_tags(&self.store, wanted).await {
                            let matching: Vec<&WebhookRecord> = hooks
                                .iter()
                                .filter(|h| {
                                    h.tenant_id == p.row.tenant_id && p.row.id > h.after_event && wants(h, &p.row.kind)
                                })
                                .collect();
                            if matching.is_empty() {
                                continue;
                            }
                            let body = payload(&p);
                            for h in matching {
                                out.push((h.id.clone(), h.tenant_id.clone(), p.row.id, body.clone()));
                            }
                        }
                        if !out.is_empty() {
                            // The deliveries and the cursor in one transaction:
                            // a crash repeats nothing and loses nothing.
                            match self.store.enqueue_webhook_deliveries(out, cursor, self.clock.now_ms()).await {
                                Ok(()) => {
                                    stored = (cursor, Instant::now());
                                    self.wake.notify_one();
                                }
                                Err(e) => {
                                    tracing::warn!(error = %e, "webhooks: cannot queue deliveries; will retry");
                                    tail = Tail::new(before);
                                    full = false;
                                }
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => tracing::warn!(error = %e, "webhooks: cannot read the event log"),
                }
            }
            // Events passed over without a delivery: after a crash they are
            // read again, and still want none (an endpoint made since starts
            // after them).
            if tail.position > stored.0 && stored.1.elapsed() >= CURSOR_EVERY {
                match self.store.enqueue_webhook_deliveries(Vec::new(), tail.position, self.clock.now_ms()).await {
                    Ok(()) => stored = (tail.position, Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "webhooks: cannot store the cursor; will retry"),
                }
            }
            if full {
                continue;
            }
            let woken = async {
                match live.as_mut() {
                    Some(rx) => {
                        let r = rx.recv().await;
                        // One pass for everything published so far.
                        while let Ok(_) | Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) = rx.try_recv() {}
                        !matches!(r, Err(tokio::sync::broadcast::error::RecvError::Closed))
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                open = woken => if !open { return },
                _ = tokio::time::sleep(self.cfg.poll) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    async fn send_loop(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut tasks = tokio::task::JoinSet::new();
        loop {
            while tasks.try_join_next().is_some() {}
            let now = self.clock.now_ms();
            let jobs = match self.store.claim_webhook_jobs(&self.cfg.node, now, 60_000, 32).await {
                Ok(j) => j,
                Err(e) => {
                    tracing::warn!(error = %e, "webhooks: cannot claim deliveries");
                    Vec::new()
                }
            };
            let idle = jobs.is_empty();
            for job in jobs {
                let me = self.clone();
                tasks.spawn(async move { me.deliver(job).await });
            }
            if !idle && tasks.len() < 64 {
                continue;
            }
            tokio::select! {
                _ = self.wake.notified() => {}
                _ = tokio::time::sleep(self.cfg.poll) => {}
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
                _ = shutdown.changed() => {
                    while tasks.join_next().await.is_some() {}
                    return;
                }
            }
        }
    }

    async fn deliver(&self, job: WebhookJob) {
        let started = self.clock.now_ms();
        let t0 = Instant::now();
        let outcome = self.attempt(&job).await;
        let now = self.clock.now_ms();
        let result = match outcome {
            Ok(code) => WebhookResult::Delivered { code },
            Err((code, error, permanent)) => {
                let failing_since = job.failing_since.unwrap_or(started);
                if now - failing_since >= self.cfg.disable_after.as_millis() as i64 {
                    let since = timefmt::rfc3339(failing_since);
                    WebhookResult::GiveUp {
                        code,
                        disable: Some(format!(
                            "disabled: every delivery has failed since {since}; last error: {error}"
                        )),
                        error,
                    }
                } else if permanent || now - job.created_at >= self.cfg.give_up_after.as_millis() as i64 {
                    WebhookResult::GiveUp { code, error, disable: None }
                } else {
                    let step = BACKOFF[(job.attempts as usize).min(BACKOFF.len() - 1)];
                    WebhookResult::Retry { code, error, retry_at: now + step.as_millis() as i64 }
                }
            }
        };
        if let Err(e) = self.store.record_webhook_attempt(&job, &result, now, t0.elapsed().as_millis() as i64).await {
            tracing::warn!(error = %e, delivery = %job.id, "webhooks: cannot record an attempt; the lease will retry it");
        }
    }

    /// One POST. `Err((code, why, permanent))`.
    async fn attempt(&self, job: &WebhookJob) -> Result<i64, (Option<i64>, String, bool)> {
        let secret = self
            .key
            .open(&job.webhook_id, &job.secret)
            .map_err(|e| (None, format!("cannot open the signing secret: {e}"), true))?;
        let url = reqwest::Url::parse(&job.url).map_err(|e| (None, format!("bad URL: {e}"), true))?;
        if !self.cfg.allow_private {
            let host = url.host_str().unwrap_or_default().to_string();
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs = tokio::net::lookup_host((host.trim_matches(['[', ']']), port))
                .await
                .map_err(|e| (None, format!("cannot resolve {host}: {e}"), false))?;
            for a in addrs {
                if is_internal(a.ip()) {
                    return Err((None, format!("refused: {host} resolves to the internal address {}", a.ip()), true));
                }
            }
        }
        let t = self.clock.now_ms() / 1000;
        let r = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .header("epistle-signature", sign(&secret, t, &job.payload))
            .header("epistle-delivery", &job.id)
            .body(job.payload.clone())
            .send()
            .await
            .map_err(|e| (None, format!("{e}"), false))?;
        let code = i64::from(r.status().as_u16());
        if r.status().is_success() {
            return Ok(code);
        }
        let text: String = r.text().await.unwrap_or_default().chars().take(200).collect();
        // 410 Gone: the receiver says this endpoint is no more.
        Err((Some(code), format!("HTTP {code}: {text}"), code == 410))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_of_time_dot_body() {
        // Python: hmac.new(b"whsec", b"1700000000.{}", hashlib.sha256).hexdigest()
        let s = sign(b"whsec", 1_700_000_000, "{}");
        assert_eq!(s, "t=1700000000,v1=7d44587dddbaf4c7f70fef20f48cd594834ffea1641e3ac227b84408298738af");
        assert_ne!(sign(b"whsec", 1_700_000_001, "{}"), s);
        assert_ne!(sign(b"other", 1_700_000_000, "{}"), s);
    }

    #[test]
    fn internal_addresses() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.1",
            "172.16.5.5",
            "169.254.169.254",
            "100.64.0.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
            "0.0.0.0",
        ] {
            assert!(is_internal(a.parse().unwrap()), "{a}");
        }
        for a in ["93.184.216.34", "2606:4700::1111", "8.8.8.8"] {
            assert!(!is_internal(a.parse().unwrap()), "{a}");
        }
    }
}
