//! Test helpers shared by Epistle's test suites: a fresh database on either
//! engine, an SMTP sink that misbehaves on request, and a DNS server.

pub mod db;
pub mod dns;
pub mod http;
pub mod moto;
pub mod sink;

pub use db::{Engine, TestDb};
pub use dns::DnsServer;
pub use http::{HttpFake, HttpRequest};
pub use moto::MotoServer;
pub use sink::{Received, SinkConfig, SmtpSink};

/// Polls `f` until it returns `Some`, or panics after `timeout` with `what`.
/// The way tests wait: never a bare sleep.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: std::time::Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
