//! Prometheus metrics (prometheus-client), rendered at `/metrics`.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransportLabels {
    pub transport: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub status: String,
}

pub struct Metrics {
    pub registry: Registry,
    pub messages_accepted: Counter,
    pub recipients_accepted: Counter,
    pub deliveries: Family<OutcomeLabels, Counter>,
    pub attempt_seconds: Family<TransportLabels, Histogram>,
    pub queue_depth: Family<StatusLabels, Gauge>,
    pub circuit_open: Family<TransportLabels, Gauge>,
    pub returned_mail: Family<OutcomeLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("epistle");
        let messages_accepted = Counter::default();
        registry.register(
            "messages_accepted",
            "Messages accepted (committed) through the API",
            messages_accepted.clone(),
        );
        let recipients_accepted = Counter::default();
        registry.register("recipients_accepted", "Envelope recipients accepted", recipients_accepted.clone());
        let deliveries = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "deliveries",
            "Delivery attempts by outcome (sent, deferred, bounced, failed)",
            deliveries.clone(),
        );
        let attempt_seconds = Family::<TransportLabels, Histogram>::new_with_constructor(|| {
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0].into_iter())
        });
        registry.register(
            "attempt_duration_seconds",
            "Time to hand a message to the next hop",
            attempt_seconds.clone(),
        );
        let queue_depth = Family::<StatusLabels, Gauge>::default();
        registry.register("queue_depth", "Recipients waiting, by status (read at scrape time)", queue_depth.clone());
        let circuit_open = Family::<TransportLabels, Gauge>::default();
        registry.register(
            "transport_circuit_open",
            "1 while a transport's circuit breaker is open",
            circuit_open.clone(),
        );
        let returned_mail = Family::<OutcomeLabels, Counter>::default();
        registry.register(
            "returned_mail",
            "Mail received for the bounce domain, by what it said (bounced, deferred, delivered, complained, \
             auto_replied, unsubscribed, unreadable)",
            returned_mail.clone(),
        );
        Self {
            registry,
            messages_accepted,
            recipients_accepted,
            deliveries,
            attempt_seconds,
            queue_depth,
            circuit_open,
            returned_mail,
        }
    }

    pub fn delivered(&self, outcome: &str) {
        self.deliveries.get_or_create(&OutcomeLabels { outcome: outcome.to_string() }).inc();
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
