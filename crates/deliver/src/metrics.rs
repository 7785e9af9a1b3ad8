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
    /// Business events stored, by source (`http`, `nats:…`, `amqp:…`).
    pub events_received: Family<SourceLabels, Counter>,
    pub events_duplicate: Family<SourceLabels, Counter>,
    pub dead_letters: Family<SourceLabels, Counter>,
    pub events_processed: Counter,
    pub rule_messages: Counter,
    pub event_to_queue_seconds: Histogram,
    /// Events stored and not yet acted on (read at scrape time).
    pub events_pending: Gauge,
    /// Messages waiting in a consumer's broker queue (NATS num_pending,
    /// AMQP message count), by consumer.
    pub consumer_lag: Family<SourceLabels, Gauge>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SourceLabels {
    pub source: String,
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
             feedback, auto_replied, unsubscribed, unreadable)",
            returned_mail.clone(),
        );
        let events_received = Family::<SourceLabels, Counter>::default();
        registry.register("events_received", "Business events stored, by source", events_received.clone());
        let events_duplicate = Family::<SourceLabels, Counter>::default();
        registry.register(
            "events_duplicate",
            "Business events received again (same type and key) and ignored, by source",
            events_duplicate.clone(),
        );
        let dead_letters = Family::<SourceLabels, Counter>::default();
        registry.register(
            "dead_letters",
            "Events or rule runs that could not be used, by source",
            dead_letters.clone(),
        );
        let events_processed = Counter::default();
        registry.register("events_processed", "Business events the rules have acted on", events_processed.clone());
        let rule_messages = Counter::default();
        registry.register("rule_messages", "Messages queued by rules", rule_messages.clone());
        let event_to_queue_seconds =
            Histogram::new([0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0].into_iter());
        registry.register(
            "event_to_queue_seconds",
            "From storing a business event to committing the mail its rules queue",
            event_to_queue_seconds.clone(),
        );
        let events_pending = Gauge::default();
        registry.register("events_pending", "Business events stored and not yet acted on", events_pending.clone());
        let consumer_lag = Family::<SourceLabels, Gauge>::default();
        registry.register("consumer_lag", "Messages waiting in a consumer's broker queue", consumer_lag.clone());
        Self {
            registry,
            messages_accepted,
            recipients_accepted,
            deliveries,
            attempt_seconds,
            queue_depth,
            circuit_open,
            returned_mail,
            events_received,
            events_duplicate,
            dead_letters,
            events_processed,
            rule_messages,
            event_to_queue_seconds,
            events_pending,
            consumer_lag,
        }
    }

    pub fn delivered(&self, outcome: &str) {
        self.deliveries.get_or_create(&OutcomeLabels { outcome: outcome.to_string() }).inc();
    }

    pub fn source(family: &Family<SourceLabels, Counter>, source: &str) -> Counter {
        family.get_or_create(&SourceLabels { source: source.to_string() }).clone()
    }

    pub fn source_gauge(family: &Family<SourceLabels, Gauge>, source: &str) -> Gauge {
        family.get_or_create(&SourceLabels { source: source.to_string() }).clone()
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}
