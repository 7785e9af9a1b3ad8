//! Nothing accepted is ever lost: `kill -9` mid-delivery, start again, and
//! every acknowledged recipient arrives. Duplicates are possible only for
//! recipients in flight at the kill; the test measures how many.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use epistle_testkit::{Engine, SinkConfig, SmtpSink, TestDb, wait_for};

use crate::server::{self, Server};

async fn kill9_loses_nothing(engine: Engine) {
    let db = TestDb::new(engine).await;
    // A busy relay (3 ms per message) so that the kill lands mid-flight.
    let sink = SmtpSink::start(SinkConfig { delay: Duration::from_millis(3), ..Default::default() }).await;
    let mut srv: Server = server::start(&db.url, sink.port(), &[]).await;
    let client = reqwest::Client::new();

    // Keep accepting in the background while the kill happens.
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let sender = {
        let (client, base, acked) = (client.clone(), srv.base.clone(), acked.clone());
        tokio::spawn(async move {
            for b in 0..40 {
                let got = server::post_batch(&client, &base, &server::batch("c", b * 50, 50)).await;
                if got.is_empty() {
                    break;
                }
                acked.lock().unwrap().extend(got);
            }
        })
    };
    sink.wait_count(300, Duration::from_secs(60)).await;
    srv.kill9().await;
    let _ = sender.await;
    let acked: Vec<String> = acked.lock().unwrap().clone();
    let before_restart = sink.count();
    assert!(acked.len() >= 300, "accepted {} before the kill", acked.len());

    let mut srv = server::start(&db.url, sink.port(), &[]).await;
    let receipts = wait_for("every acknowledged recipient at the sink", Duration::from_secs(120), || async {
        let r = server::receipts(&sink);
        acked.iter().all(|a| r.contains_key(a)).then_some(r)
    })
    .await;
    let status = srv.terminate().await;
    assert!(status.success(), "SIGTERM exits 0, got {status}");

    let duplicates: usize = receipts.values().map(|n| n - 1).sum();
    println!(
        "[{engine:?}] accepted {} before kill -9, {} delivered before it; after restart all {} delivered; \
         duplicates: {duplicates} (bound: 64 in flight)",
        acked.len(),
        before_restart,
        receipts.len()
    );
    assert!(duplicates <= 64, "duplicates only for recipients in flight at the kill: {duplicates}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_nothing_sqlite() {
    kill9_loses_nothing(Engine::Sqlite).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_loses_nothing_postgres() {
    kill9_loses_nothing(Engine::Postgres).await
}
