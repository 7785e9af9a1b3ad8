//! Two nodes on one PostgreSQL database share the work and deliver each
//! recipient once; when one dies, the other takes its work over.

use std::time::Duration;

use epistle_testkit::{Engine, SinkConfig, SmtpSink, TestDb, wait_for};
use sqlx::Connection;

use crate::server;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_work_and_deliver_each_recipient_once() {
    let db = TestDb::new(Engine::Postgres).await;
    let sink = SmtpSink::start(SinkConfig { delay: Duration::from_millis(2), ..Default::default() }).await;
    let mut a = server::start(&db.url, sink.port(), &[("EPISTLE_DELIVERY__NODE_NAME", "node-a")]).await;
    let mut b = server::start(&db.url, sink.port(), &[("EPISTLE_DELIVERY__NODE_NAME", "node-b")]).await;
    let client = reqwest::Client::new();

    // Mail enters through both nodes; both claim from the one queue.
    let mut acked = Vec::new();
    for i in 0..8 {
        let node = if i % 2 == 0 { &a.base } else { &b.base };
        acked.extend(server::post_batch(&client, node, &server::batch("n", i * 50, 50)).await);
    }
    assert_eq!(acked.len(), 400);
    let receipts = wait_for("400 recipients at the sink", Duration::from_secs(120), || async {
        let r = server::receipts(&sink);
        (acked.iter().all(|x| r.contains_key(x))).then_some(r)
    })
    .await;
    assert!(receipts.values().all(|n| *n == 1), "each recipient exactly once");

    // The sink's 250 comes before the node commits the outcome: wait for
    // the commits, then count.
    let rows: Vec<(String, i64)> = wait_for("400 attempts recorded", Duration::from_secs(30), || async {
        let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
        let rows: Vec<(String, i64)> =
            sqlx::query_as("SELECT node, COUNT(*) FROM attempts GROUP BY node ORDER BY node")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        (rows.iter().map(|(_, n)| n).sum::<i64>() >= 400).then_some(rows)
    })
    .await;
    println!("attempts per node: {rows:?}");
    assert_eq!(rows.len(), 2, "both nodes delivered: {rows:?}");
    assert_eq!(rows.iter().map(|(_, n)| n).sum::<i64>(), 400, "one attempt per recipient, no more");

    // Node A dies with work accepted and claimed; node B takes it over
    // once A's leases run out.
    let mut more = Vec::new();
    for i in 8..12 {
        more.extend(server::post_batch(&client, &a.base, &server::batch("n", i * 50, 50)).await);
    }
    a.kill9().await;
    wait_for("node B to deliver what node A had", Duration::from_secs(120), || async {
        let r = server::receipts(&sink);
        more.iter().all(|x| r.contains_key(x)).then_some(())
    })
    .await;
    assert!(b.terminate().await.success());
}
