//! What the HTTP side shares for the feedback loop: token key, tenant
//! tracking and unsubscribe settings (cached), the recorder that writes
//! opens and clicks in batches, and the provider hook credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use epistle_core::secret::MasterKey;
use epistle_core::token::TokenKey;
use epistle_deliver::events::EventHub;
use epistle_ingest::hooks::ReplayGuard;
use epistle_store::{Engagement, Store};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

/// Where template links to the recipient's unsubscribe page go before
/// each recipient's own address replaces them.
pub const UNSUBSCRIBE_PLACEHOLDER: &str = "epistle-unsubscribe-link";

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Track {
    pub opens: bool,
    pub clicks: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TrackingSettings {
    pub transactional: Track,
    pub broadcast: Track,
    /// Keep the IP address of opens and clicks (off for tenants that must
    /// not store it).
    pub store_ip: bool,
}

impl Default for TrackingSettings {
    fn default() -> Self {
        Self {
            transactional: Track { opens: false, clicks: false },
            broadcast: Track { opens: true, clicks: true },
            store_ip: true,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct UnsubscribeSettings {
    /// Put List-Unsubscribe on transactional mail too (broadcast mail
    /// always has it).
    pub transactional: bool,
}

/// A kind of mail people may opt out of on the preference page.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Category {
    pub name: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A tenant's feedback settings (`GET/PUT /v1/settings`).
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TenantFeedback {
    pub tracking: TrackingSettings,
    pub unsubscribe: UnsubscribeSettings,
    pub categories: Vec<Category>,
}

/// Provider webhook credentials (`[hooks]`).
#[derive(Debug, Clone, Default)]
pub struct HookSettings {
    pub mailgun_signing_key: Option<String>,
    pub sendgrid_public_key: Option<String>,
    pub postmark_username: Option<String>,
    pub postmark_password: Option<String>,
    /// SNS topics whose notifications are taken (empty: none).
    pub ses_topic_arns: Vec<String>,
    /// Where SNS signing certificates may come from besides
    /// `https://sns.<region>.amazonaws.com/`.
    pub sns_cert_prefixes: Vec<String>,
    /// Confirm SNS subscriptions by fetching their SubscribeURL.
    pub sns_auto_confirm: bool,
}

pub struct Feedback {
    pub key: TokenKey,
    /// Seals webhook signing secrets.
    pub master: MasterKey,
    /// `mailto:` unsubscribe and VERP addresses live here (the SMTP
    /// listener takes mail for it).
    pub bounce_domain: Option<String>,
    pub events: Arc<EventHub>,
    pub hooks: HookSettings,
    pub replay: ReplayGuard,
    pub allow_private_webhooks: bool,
    pub http: reqwest::Client,
    pub sns_certs: Mutex<HashMap<String, Vec<u8>>>,
    recorder: mpsc::Sender<Engagement>,
    cache: Mutex<HashMap<String, (Instant, Arc<TenantFeedback>)>>,
}

impl std::fmt::Debug for Feedback {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Feedback").field("bounce_domain", &self.bounce_domain).finish()
    }
}

const SETTINGS_TTL: Duration = Duration::from_secs(5);

impl Feedback {
    /// Starts the recorder task that writes opens and clicks.
    pub fn new(
        store: Store,
        key: TokenKey,
        master: MasterKey,
        bounce_domain: Option<String>,
        events: Arc<EventHub>,
        hooks: HookSettings,
        allow_private_webhooks: bool,
    ) -> Self {
        let (tx, rx) = mpsc::channel(65_536);
        tokio::spawn(record_loop(store, rx, events.clone()));
        Self {
            key,
            master,
            bounce_domain,
            events,
            hooks,
            replay: ReplayGuard::new(),
            allow_private_webhooks,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .expect("an HTTP client with static settings"),
            sns_certs: Mutex::new(HashMap::new()),
            recorder: tx,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Queues an open or click for the next batch write.
    pub async fn record(&self, e: Engagement) {
        if self.recorder.send(e).await.is_err() {
            tracing::warn!("the engagement recorder has stopped; an open or click was not recorded");
        }
    }

    /// The tenant's settings, at most a few seconds old.
    pub async fn settings(
        &self,
        store: &Store,
        tenant_id: &str,
    ) -> Result<Arc<TenantFeedback>, epistle_store::StoreError> {
        if let Some((at, s)) = self.cache.lock().expect("cache lock").get(tenant_id)
            && at.elapsed() < SETTINGS_TTL
        {
            return Ok(s.clone());
        }
        let v = store.tenant_settings(tenant_id).await?;
        let s: TenantFeedback = serde_json::from_value(v).unwrap_or_default();
        let s = Arc::new(s);
        self.cache.lock().expect("cache lock").insert(tenant_id.to_string(), (Instant::now(), s.clone()));
        Ok(s)
    }

    pub fn forget_settings(&self, tenant_id: &str) {
        self.cache.lock().expect("cache lock").remove(tenant_id);
    }
}

/// Writes queued opens and clicks: everything waiting goes in one
/// transaction, so the write rate follows the load.
async fn record_loop(store: Store, mut rx: mpsc::Receiver<Engagement>, events: Arc<EventHub>) {
    let mut batch = Vec::with_capacity(2048);
    while let Some(first) = rx.recv().await {
        batch.push(first);
        while batch.len() < 5000 {
            match rx.try_recv() {
                Ok(e) => batch.push(e),
                Err(_) => break,
            }
        }
        let mut delay = Duration::from_millis(50);
        for _ in 0..20 {
            match store.insert_engagement(&batch).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, pending = batch.len(), "cannot record opens and clicks; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
            }
        }
        batch.clear();
        events.poke();
    }
}

/// Why an open or click looks automatic, if it does: mail privacy
/// proxies fetch every image, security gateways follow every link within
/// seconds of delivery, and neither is a person.
pub fn machine_reason(user_agent: &str, head: bool, seconds_since_sent: i64, click: bool) -> Option<&'static str> {
    let ua = user_agent.to_ascii_lowercase();
    if head {
        return Some("HEAD request (link checker)");
    }
    if ua.contains("googleimageproxy") || ua.contains("ggpht.com") {
        return Some("Gmail image proxy");
    }
    if ua.contains("yahoomailproxy") {
        return Some("Yahoo mail proxy");
    }
    if ua.trim() == "mozilla/5.0" {
        return Some("Apple Mail Privacy Protection");
    }
    const SCANNERS: [&str; 14] = [
        "bot",
        "spider",
        "crawler",
        "curl/",
        "wget/",
        "python-requests",
        "go-http-client",
        "java/",
        "barracuda",
        "mimecast",
        "proofpoint",
        "safelinks",
        "scanner",
        "preview",
    ];
    if ua.is_empty() {
        return Some("no user agent");
    }
    if SCANNERS.iter().any(|s| ua.contains(s)) {
        return Some("known scanner or bot user agent");
    }
    if click && seconds_since_sent < 5 {
        return Some("clicked within seconds of sending (link scanner)");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machines_are_told_apart_from_people() {
        let chrome = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 Chrome/120 Safari/537.36";
        assert_eq!(machine_reason(chrome, false, 600, true), None);
        assert_eq!(machine_reason(chrome, false, 600, false), None);
        assert!(machine_reason(chrome, true, 600, true).is_some());
        assert!(machine_reason(chrome, false, 2, true).is_some());
        assert_eq!(machine_reason(chrome, false, 2, false), None, "an early open is not suspicious by itself");
        assert!(
            machine_reason(
                "Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)",
                false,
                900,
                false
            )
            .is_some()
        );
        assert!(machine_reason("Mozilla/5.0", false, 900, false).is_some());
        assert!(machine_reason("python-requests/2.31", false, 900, true).is_some());
        assert!(machine_reason("", false, 900, true).is_some());
    }

    #[test]
    fn settings_defaults_and_unknown_keys() {
        let s: TenantFeedback = serde_json::from_value(serde_json::json!({})).unwrap();
        assert!(s.tracking.broadcast.opens && !s.tracking.transactional.clicks && s.tracking.store_ip);
        assert!(serde_json::from_value::<TenantFeedback>(serde_json::json!({"trakcing": {}})).is_err());
    }
}
