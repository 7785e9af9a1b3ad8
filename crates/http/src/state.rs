//! What handlers share.

use std::sync::Arc;

use epistle_core::clock::SharedClock;
use epistle_deliver::{Metrics, Router};
use epistle_store::{Committer, Store};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes (413 above).
    pub max_request_bytes: usize,
    /// Most envelope recipients in one message (to + cc + bcc).
    pub max_recipients: usize,
    /// Base URL for links in mail and pages.
    pub public_url: String,
    /// Shown on the web page (e.g. "captured: not sent").
    pub delivery_mode: String,
}

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    /// Accepts go through group commit.
    pub committer: Committer,
    pub clock: SharedClock,
    pub metrics: Arc<Metrics>,
    /// Wakes the delivery worker after an accept.
    pub wake: Arc<Notify>,
    /// Where business events are stored (and the rules engine woken).
    pub intake: epistle_ingest::consumers::Intake,
    pub router: Option<Arc<Router>>,
    /// Compiled templates by tenant.
    pub templates: Arc<crate::routes::templates::TemplateCache>,
    /// Sending domains and DKIM keys.
    pub domains: Option<Arc<epistle_deliver::domains::Domains>>,
    pub settings: Arc<HttpSettings>,
    /// Tracking, unsubscribe, hooks and events; `None` in a server built
    /// without a master key.
    pub feedback: Option<Arc<crate::feedback::Feedback>>,
}
