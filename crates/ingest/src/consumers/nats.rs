//! A NATS JetStream consumer: a durable pull consumer on a stream (created
//! when missing), explicit acknowledgement after the commit.

use std::time::Duration;

use async_nats::jetstream::{self, AckKind, consumer::pull, stream};
use futures::StreamExt;
use tokio::sync::watch;

use super::{Intake, supervise};

#[derive(Debug, Clone)]
pub struct NatsConsumer {
    pub url: String,
    pub stream: String,
    /// Subjects to take (`orders.>`); the stream is created with them when
    /// it does not exist.
    pub subject: String,
    pub durable: String,
    pub tenant_id: String,
    /// How long the server waits for an acknowledgement before delivering
    /// again.
    pub ack_wait: Duration,
}

impl NatsConsumer {
    fn source(&self) -> String {
        format!("nats:{}", self.stream)
    }

    /// Consumes until `shutdown`, reconnecting with backoff.
    pub async fn run(self, intake: Intake, shutdown: watch::Receiver<bool>) {
        let what = self.source();
        supervise(&what, shutdown, || self.consume(&intake)).await
    }

    async fn consume(&self, intake: &Intake) -> Result<(), String> {
        let client = async_nats::connect(&self.url).await.map_err(|e| format!("cannot connect: {e}"))?;
        let js = jetstream::new(client);
        let stream = js
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                ..Default::default()
            })
            .await
            .map_err(|e| format!("stream {}: {e}", self.stream))?;
        let consumer: jetstream::consumer::PullConsumer = stream
            .get_or_create_consumer(
                &self.durable,
                pull::Config {
                    durable_name: Some(self.durable.clone()),
                    filter_subject: self.subject.clone(),
                    ack_policy: jetstream::consumer::AckPolicy::Explicit,
                    ack_wait: self.ack_wait,
                    max_ack_pending: 1000,
                    ..Default::default()
                },
            )
            .await
            .map_err(|e| format!("consumer {}: {e}", self.durable))?;
        let mut messages = consumer.messages().await.map_err(|e| format!("cannot pull: {e}"))?;
        tracing::info!(stream = %self.stream, subject = %self.subject, durable = %self.durable, "consuming events from NATS JetStream");
        let source = self.source();
        let lag = super::Metrics::source_gauge(&intake.metrics.consumer_lag, &source);
        let mut info_consumer = consumer.clone();
        let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            let next = tokio::select! {
                m = messages.next() => m,
                _ = lag_tick.tick() => {
                    if let Ok(info) = info_consumer.info().await {
                        lag.set(info.num_pending as i64);
                    }
                    continue;
                }
            };
            let Some(m) = next else { return Err("the message stream ended".into()) };
            let m = m.map_err(|e| format!("pull failed: {e}"))?;
            match intake.take(&m.payload, &self.tenant_id, &source).await {
                Ok(_) => {
                    super::failpoint_after_commit();
                    m.ack().await.map_err(|e| format!("ack failed: {e}"))?
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot store a consumed event; NATS will deliver it again");
                    let _ = m.ack_with(AckKind::Nak(Some(Duration::from_secs(5)))).await;
                }
            }
        }
    }
}
