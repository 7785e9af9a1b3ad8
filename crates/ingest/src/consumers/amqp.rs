//! An AMQP 0-9-1 (RabbitMQ) consumer: a durable queue (declared when
//! missing), bounded prefetch, manual acknowledgement after the commit.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use tokio::sync::watch;

use super::{Intake, supervise};

#[derive(Debug, Clone)]
pub struct AmqpConsumer {
    pub url: String,
    pub queue: String,
    pub prefetch: u16,
    pub tenant_id: String,
}

impl AmqpConsumer {
    fn source(&self) -> String {
        format!("amqp:{}", self.queue)
    }

    /// Consumes until `shutdown`, reconnecting with backoff.
    pub async fn run(self, intake: Intake, shutdown: watch::Receiver<bool>) {
        let what = self.source();
        supervise(&what, shutdown, || self.consume(&intake)).await
    }

    async fn consume(&self, intake: &Intake) -> Result<(), String> {
        let conn = Connection::connect(&self.url, ConnectionProperties::default())
            .await
            .map_err(|e| format!("cannot connect: {e}"))?;
        let ch = conn.create_channel().await.map_err(|e| format!("cannot open a channel: {e}"))?;
        ch.basic_qos(self.prefetch, BasicQosOptions::default()).await.map_err(|e| format!("qos: {e}"))?;
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(self.queue.as_str().into(), durable, FieldTable::default())
            .await
            .map_err(|e| format!("queue {}: {e}", self.queue))?;
        let mut deliveries = ch
            .basic_consume(
                self.queue.as_str().into(),
                "epistle".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| format!("cannot consume {}: {e}", self.queue))?;
        tracing::info!(queue = %self.queue, prefetch = self.prefetch, "consuming events from AMQP");
        let source = self.source();
        let lag = super::Metrics::source_gauge(&intake.metrics.consumer_lag, &source);
        let mut lag_tick = tokio::time::interval(Duration::from_secs(5));
        let passive = QueueDeclareOptions { passive: true, durable: true, ..Default::default() };
        loop {
            let next = tokio::select! {
                d = deliveries.next() => d,
                _ = lag_tick.tick() => {
                    if let Ok(q) = ch.queue_declare(self.queue.as_str().into(), passive, FieldTable::default()).await {
                        lag.set(i64::from(q.message_count()));
                    }
                    continue;
                }
            };
            let Some(d) = next else { return Err("the channel closed".into()) };
            let d = d.map_err(|e| format!("delivery failed: {e}"))?;
            match intake.take(&d.data, &self.tenant_id, &source).await {
                Ok(_) => {
                    super::failpoint_after_commit();
                    d.ack(BasicAckOptions::default()).await.map_err(|e| format!("ack failed: {e}"))?;
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot store a consumed event; RabbitMQ will deliver it again");
                    let _ = d.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
                }
            }
        }
    }
}
